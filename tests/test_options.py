"""One set of coding options (`bytezip.options.CodingOptions`) for the library, the command line and the
benchmarks: the same defaults (so `bytezip.compress(data)` writes what `bytezip FILE` writes), and invalid
values refused in one line, never silently replaced by a default."""
import dataclasses

import pytest
from click.testing import CliRunner

import bytezip
from bytezip.bench import bench_command
from bytezip.cli import cli
from bytezip.options import CodingOptions, OptionError, coding_options

from conftest import english_text, one_error_line


@pytest.fixture
def shipped(monkeypatch):
    """The shipped model, as a plain `bytezip FILE` finds it."""
    monkeypatch.delenv("BYTEZIP_MODEL", raising=False)


def cli_archive(tmp_path, data: bytes, *args: str) -> bytes:
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    r = CliRunner().invoke(cli, ["-c", *args, str(path)], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    return r.stdout_bytes


@pytest.mark.parametrize("name", ["text", "repetitive"])
def test_library_default_is_the_command_lines(name, shipped, tmp_path):
    """Text (the model's chunks win) and a repetitive input (the whole-input zstd/lzma archive wins, which
    the library skipped before its solid default became the command line's)."""
    data = {"text": english_text()[:600], "repetitive": b"ab" * 3000}[name]
    blob = bytezip.compress(data)
    assert blob == cli_archive(tmp_path, data)
    info = bytezip.read_info(__import__("io").BytesIO(blob))
    assert (info.header.model_id == "") == (name == "repetitive")     # the solid archive needs no model
    assert bytezip.decompress(blob) == data


def test_no_model_default_is_the_command_lines(tmp_path):
    data = english_text()[:3000]
    assert bytezip.compress(data, neural=False) == cli_archive(tmp_path, data, "--model", "none")


def test_one_set_of_defaults():
    o = CodingOptions()
    assert (o.solid, o.history, o.mixing, o.neural, o.device, o.lanes, o.chunk_size) == \
        (True, True, True, True, "auto", None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.solid = False
    with pytest.raises(TypeError):
        CodingOptions(None)                                         # keyword-only
    c = bytezip.Compressor(neural=False)
    assert c.options == CodingOptions(neural=False) and c.solid
    d = bytezip.Decompressor(options=CodingOptions(lanes=5), workers=1)
    assert d.lanes == 5 and d.workers == 1 and d.options.lanes == 5


def test_round_chunks_is_the_old_name_of_lanes():
    assert coding_options(round_chunks=4) == CodingOptions(lanes=4)
    with pytest.raises(TypeError, match="old name"):
        coding_options(round_chunks=4, lanes=4)
    with pytest.raises(TypeError, match="unknown coding option 'batch'"):
        bytezip.Compressor(neural=False, batch=64)


BAD = [
    (dict(chunk_size=0), "chunk_size", "chunk size must be between 1 and"),
    (dict(chunk_size=-5), "chunk_size", "not -5"),
    (dict(chunk_size=(1 << 24) + 1), "chunk_size", "chunk size"),
    (dict(lanes=0), "lanes", "lanes (chunks coded together) must be between 1 and 1024, not 0"),
    (dict(lanes=1025), "lanes", "not 1025"),
    (dict(lanes=2.5), "lanes", "whole number"),
    (dict(threads=-1), "threads", "threads must be at least 0, not -1"),
    (dict(workers=0), "workers", "workers must be at least 1, not 0"),
    (dict(device="gpu"), "device", "device must be auto, cpu or cuda"),
]


@pytest.mark.parametrize("kw,field,message", BAD, ids=[next(iter(b[0])) + "=" + str(next(iter(b[0].values())))
                                                       for b in BAD])
def test_library_refuses_invalid_values(kw, field, message):
    for make in (CodingOptions, lambda **k: bytezip.Compressor(neural=False, **k), bytezip.Decompressor,
                 lambda **k: bytezip.compress(b"x", **k), lambda **k: bytezip.decompress(b"", **k)):
        with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
            make(**kw)
        assert e.value.field == field and isinstance(e.value, bytezip.BytezipError)


@pytest.mark.parametrize("args,flag", [
    (["--chunk-size", "0"], "--chunk-size"),
    (["--lanes", "0"], "--lanes"),
    (["--lanes", "2000"], "--lanes"),
    (["-T", "-1"], "-T/--threads"),
    (["-d", "--lanes", "0"], "--lanes"),
    (["-t", "-T", "-3"], "-T/--threads"),
])
def test_command_line_refuses_invalid_values_in_one_line(args, flag, tmp_path):
    (tmp_path / "a.txt").write_bytes(b"spam")
    r = CliRunner().invoke(cli, [*args, str(tmp_path / "a.txt")], catch_exceptions=False)
    assert r.exit_code == 1
    one_error_line(r, f"invalid {flag}:", "must be")
    assert not (tmp_path / "a.txt.bzp").exists()


def test_bench_refuses_invalid_values(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"spam")
    for args in (["--lanes", "0"], ["--chunk-size", "0"], ["--speed", "--threads", "-1"]):
        r = CliRunner().invoke(bench_command, [*args, str(tmp_path / "a.txt")])
        assert r.exit_code == 1 and "invalid --" in r.output, r.output
