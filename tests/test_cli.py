"""The `bytezip` command line, through click's CliRunner (and once through a real process).

Models are tiny and made here, never the shipped one: a random model (its chunks end up zstd or raw) and an
"oracle" whose weights are set by hand so that it predicts one fixed 256-byte sequence almost surely, which
makes every chunk of that sequence neural.
"""
import io
import os
import random
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

import bytezip
from bytezip import cli as cli_mod, codec
from bytezip import format as fmt
from bytezip.cli import cli
from bytezip.model import Megabyte, ModelConfig, save_model
from conftest import one_error_line

CFG = ModelConfig(d_global=64, n_global_layers=1, n_global_heads=2, d_local=32, n_local_layers=1,
                  n_local_heads=2, max_patches=64)
ORACLE_CFG = ModelConfig(**{**CFG.__dict__, "max_patches": 16})     # context 64 bytes: quick to decode
ALPHABET = b"abcdefghijklmnop"
SEQ = bytes(random.Random(0).choice(ALPHABET) for _ in range(ORACLE_CFG.patch_size * ORACLE_CFG.max_patches))
NEURAL_DATA = SEQ * 3 + SEQ[:20]             # every chunk (64 bytes) starts the sequence afresh
TEXT = b"".join(b"line %d of a small test file for bytezip\n" % i for i in range(60))


def oracle_model(seq: bytes) -> Megabyte:
    """A MEGABYTE whose prediction at position t is seq[t] with probability ~0.996, whatever the input:
    residual blocks are zeroed, the global position embedding holds one-hot codes of seq, and the head reads
    them back."""
    m = Megabyte(ORACLE_CFG)
    P = ORACLE_CFG.patch_size
    with torch.no_grad():
        for p in (m.global_byte_emb.weight, m.global_start, m.local_byte_emb.weight, m.local_pos,
                  m.global_pos, m.global_to_local.weight, m.head.weight):
            p.zero_()
        for blk in [*m.global_blocks, *m.local_blocks]:
            blk.attn.proj.weight.zero_()
            blk.mlp.out.weight.zero_()
        for t, b in enumerate(seq):
            k, j = divmod(t, P)
            m.global_pos[k, j * 16 + ALPHABET.index(b)] = 1.0
        m.global_to_local.weight[:16, :16] = torch.eye(16)
        for i, b in enumerate(ALPHABET):
            m.head.weight[b, i] = 10.0
    return m.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Path prefixes of the two tiny models (names recorded in archives: 'oracle-test', 'random-test')."""
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    save_model(Megabyte(CFG), str(d / "random-test"), {"name": "random-test"})
    save_model(oracle_model(SEQ), str(d / "oracle-test"), {"name": "oracle-test"})
    return types.SimpleNamespace(dir=d, random=str(d / "random-test"), oracle=str(d / "oracle-test"))


@pytest.fixture
def work(tmp_path, monkeypatch, models):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BYTEZIP_MODEL", raising=False)
    monkeypatch.setattr(codec, "MODELS_DIR", models.dir / "installed")     # archives find random-test by name
    (models.dir / "installed").mkdir(exist_ok=True)
    for ext in ("json", "safetensors"):
        shutil.copy(f"{models.random}.{ext}", models.dir / "installed")
    (tmp_path / "a.txt").write_bytes(TEXT)
    (tmp_path / "n.txt").write_bytes(NEURAL_DATA)
    return tmp_path


def bz(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def files(d: Path) -> set:
    return {p.name for p in d.iterdir()}


def codecs(path) -> list:
    return [c.codec for c in bytezip.read_info(open(path, "rb")).chunks]


# -- round trips --------------------------------------------------------------------------------
def test_compress_decompress_round_trip(work, models):
    os.utime("a.txt", (1_000_000_000, 1_000_000_000))
    os.chmod("a.txt", 0o640)
    r = bz("compress", "--no-solid", "--model", models.random, "a.txt")
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == ""
    assert (work / "a.txt").read_bytes() == TEXT                         # input kept by default
    assert (work / "a.txt.bzp").stat().st_size < len(TEXT)
    assert fmt.NEURAL not in codecs("a.txt.bzp")       # a random model never wins alone (mixed chunks may:
                                                       # the history holds the earlier lines)
    os.rename("a.txt", "orig.txt")
    r = bz("decompress", "a.txt.bzp")
    assert r.exit_code == 0 and r.stderr == ""
    assert (work / "a.txt").read_bytes() == TEXT and (work / "a.txt.bzp").exists()
    st = os.stat("a.txt")                                                # mode and mtime follow the input
    assert st.st_mtime == 1_000_000_000 and st.st_mode & 0o777 == 0o640
    assert files(work) == {"a.txt", "a.txt.bzp", "n.txt", "orig.txt"}    # no temporary file left


def test_neural_chunks_round_trip_and_model_found_by_name(work, models, monkeypatch):
    r = bz("compress", "--no-solid", "--model", models.oracle, "n.txt")
    assert r.exit_code == 0, r.stderr
    assert codecs("n.txt.bzp") == [fmt.NEURAL] * 4
    info = bytezip.read_info(open("n.txt.bzp", "rb"))
    assert sum(c.coded_size for c in info.chunks) <= 20                  # 212 bytes -> 4 x 4 bytes of payload
    assert (work / "n.txt.bzp").stat().st_size < len(NEURAL_DATA) // 2   # the rest is the format's framing
    installed = work / "installed"                                       # the archive names its model, found
    installed.mkdir()                                                    # among the installed ones
    for ext in ("json", "safetensors"):
        shutil.copy(f"{models.oracle}.{ext}", installed / f"oracle-test.{ext}")
    monkeypatch.setattr(codec, "MODELS_DIR", installed)
    r = bz("decompress", "-c", "n.txt.bzp")                              # no --model: found by its id
    assert r.exit_code == 0 and r.stdout_bytes == NEURAL_DATA
    r = bz("-d", "-f", "--lanes", "1", "-T", "1", "--device", "cpu", "n.txt.bzp")
    assert r.exit_code == 0 and (work / "n.txt").read_bytes() == NEURAL_DATA


def test_shorthands(work, models):
    m = ("--model", models.random)
    assert bz("a.txt", *m).exit_code == 0 and (work / "a.txt.bzp").exists()           # bytezip FILE
    assert bz("-z", *m, "-o", "z.bzp", "a.txt").exit_code == 0
    assert (work / "z.bzp").read_bytes() == (work / "a.txt.bzp").read_bytes()
    r = bz("-dc", "a.txt.bzp")                                                          # cluster: -d -c
    assert r.exit_code == 0 and r.stdout_bytes == TEXT
    assert bz("-t", "a.txt.bzp").exit_code == 0
    r = bz("-l", "a.txt.bzp")
    assert r.exit_code == 0 and "Original size:" in r.stdout
    r = bz("-dkfo", "out.txt", "z.bzp")                                                 # -d -k -f -o out.txt
    assert r.exit_code == 0 and (work / "out.txt").read_bytes() == TEXT and (work / "z.bzp").exists()
    r = bz("-vdc", "a.txt.bzp")
    assert r.stdout_bytes == TEXT and "a.txt.bzp :" in r.stderr


def test_stdout_option(work, models):
    r = bz("compress", "-c", "--model", models.random, "a.txt")
    assert r.exit_code == 0 and not (work / "a.txt.bzp").exists()
    assert bytezip.decompress(r.stdout_bytes) == TEXT
    (work / "x.bzp").write_bytes(r.stdout_bytes)
    r = bz("decompress", "--stdout", "x.bzp", "x.bzp")                  # several archives: concatenated
    assert r.exit_code == 0 and r.stdout_bytes == TEXT + TEXT and not (work / "x").exists()


def test_output_option(work, models):
    assert bz("compress", "--no-solid", "--model", models.random, "-o", "sub.bzp", "a.txt").exit_code == 0
    assert files(work) == {"a.txt", "n.txt", "sub.bzp"}
    r = bz("decompress", "--output", "restored.bin", "sub.bzp")          # any suffix goes with -o
    assert r.exit_code == 0 and (work / "restored.bin").read_bytes() == TEXT
    r = bz("compress", "--no-solid", "--model", models.random, "-o", "x.bzp", "a.txt", "n.txt")
    assert r.exit_code == 1 and "single input" in r.stderr and not (work / "x.bzp").exists()
    r = bz("decompress", "-o", "-", "sub.bzp")                           # -o - is stdout
    assert r.exit_code == 0 and r.stdout_bytes == TEXT


def test_stdin_to_stdout(work, models):
    r = bz("compress", "--no-solid", "--model", models.random, "-", input=TEXT)
    assert r.exit_code == 0 and bytezip.decompress(r.stdout_bytes) == TEXT
    blob = r.stdout_bytes
    r = bz("--no-solid", "--model", models.random, input=TEXT)          # no file at all: stdin to stdout
    assert r.exit_code == 0 and r.stdout_bytes == blob
    r = bz("-d", input=blob)
    assert r.exit_code == 0 and r.stdout_bytes == TEXT
    r = bz("decompress", "-", input=blob)
    assert r.exit_code == 0 and r.stdout_bytes == TEXT
    r = bz("test", "-", input=blob)
    assert r.exit_code == 0 and r.stdout_bytes == b""
    r = bz("compress", "--no-solid", "--model", models.random, "-o", "in.bzp", input=TEXT)   # stdin to a file
    assert r.exit_code == 0 and bytezip.decompress((work / "in.bzp").read_bytes()) == TEXT
    assert files(work) == {"a.txt", "n.txt", "in.bzp"}
    r = bz("-d", "-v", input=b"garbage")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: stdin: not a bytezip archive")


def test_refuses_to_overwrite_without_force(work, models):
    (work / "a.txt.bzp").write_bytes(b"precious")
    r = bz("compress", "--no-solid", "--model", models.random, "a.txt")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: a.txt.bzp: already exists", "-f")
    assert (work / "a.txt.bzp").read_bytes() == b"precious" and files(work) == {"a.txt", "a.txt.bzp", "n.txt"}
    r = bz("compress", "-f", "--model", models.random, "a.txt")
    assert r.exit_code == 0 and bytezip.decompress((work / "a.txt.bzp").read_bytes()) == TEXT
    r = bz("decompress", "a.txt.bzp")                                    # decompressing onto a.txt
    assert r.exit_code == 1
    one_error_line(r, "bytezip: a.txt: already exists")
    assert bz("decompress", "--force", "a.txt.bzp").exit_code == 0 and (work / "a.txt").read_bytes() == TEXT


def test_output_appearing_meanwhile_is_not_overwritten(work, models, monkeypatch):
    real = bytezip.Compressor.copy_stream

    def racing(self, ifh, ofh, progress=None):
        (work / "a.txt.bzp").write_bytes(b"appeared")
        return real(self, ifh, ofh, progress)
    monkeypatch.setattr(bytezip.Compressor, "copy_stream", racing)
    r = bz("compress", "--no-solid", "--model", models.random, "a.txt")
    assert r.exit_code == 1
    one_error_line(r, "a.txt.bzp: already exists")
    assert (work / "a.txt.bzp").read_bytes() == b"appeared" and files(work) == {"a.txt", "a.txt.bzp", "n.txt"}


def test_rm_removes_inputs_only_after_success(work, models):
    r = bz("compress", "--rm", "--model", models.random, "a.txt")
    assert r.exit_code == 0 and files(work) == {"a.txt.bzp", "n.txt"}
    r = bz("decompress", "--rm", "a.txt.bzp")
    assert r.exit_code == 0 and files(work) == {"a.txt", "n.txt"} and (work / "a.txt").read_bytes() == TEXT
    r = bz("compress", "--rm", "-k", "--model", models.random, "a.txt")    # the last of --rm / -k wins
    assert r.exit_code == 0 and files(work) == {"a.txt", "a.txt.bzp", "n.txt"}
    r = bz("compress", "--rm", "-c", "--model", models.random, "n.txt")    # to stdout: nothing removed
    assert r.exit_code == 0 and (work / "n.txt").exists() and "kept" in r.stderr


def test_rm_keeps_inputs_on_failure(work, models, monkeypatch):
    good = (work / "a.txt").read_bytes()
    (work / "bad.bzp").write_bytes(b"\x89BZP\x01\x00" + b"\xff" * 10)
    r = bz("decompress", "--rm", "bad.bzp")
    assert r.exit_code == 1 and (work / "bad.bzp").exists() and not (work / "bad").exists()

    def broken(self, ifh, ofh, progress=None):                           # the verification decode fails
        raise bytezip.ChecksumError("checksum mismatch: the decoded data is not the original")
    monkeypatch.setattr(bytezip.Decompressor, "copy_stream", broken)
    r = bz("compress", "--rm", "--model", models.random, "a.txt")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: a.txt: checksum mismatch")
    assert (work / "a.txt").read_bytes() == good and files(work) == {"a.txt", "bad.bzp", "n.txt"}


def test_keep_is_the_default_and_accepted(work, models):
    assert bz("compress", "-k", "--model", models.random, "a.txt").exit_code == 0
    assert bz("decompress", "--keep", "-c", "a.txt.bzp").exit_code == 0
    assert files(work) == {"a.txt", "a.txt.bzp", "n.txt"}


def test_test_command(work, models):
    bz("compress", "--no-solid", "--model", models.oracle, "n.txt")
    r = bz("test", "--model", models.oracle, "n.txt.bzp")
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == ""
    r = bz("test", "-v", "--model", models.oracle, "n.txt.bzp")
    assert r.exit_code == 0 and r.stderr.strip() == f"n.txt.bzp : OK ({(work / 'n.txt.bzp').stat().st_size} => {len(NEURAL_DATA)} bytes)"
    assert files(work) == {"a.txt", "n.txt", "n.txt.bzp"}


def test_list_output(work, models):
    bz("compress", "--no-solid", "--model", models.oracle, "n.txt")
    bz("compress", "--no-solid", "--model", models.random, "a.txt")
    r = bz("list", "n.txt.bzp")
    assert r.exit_code == 0
    size = (work / "n.txt.bzp").stat().st_size
    info = bytezip.read_info(open("n.txt.bzp", "rb"))
    out = r.stdout
    assert out.splitlines()[0] == "n.txt.bzp"
    n = len(NEURAL_DATA)
    assert re.search(rf"Original size: +{n} B\n", out)
    assert re.search(rf"Compressed size: +{size} B\n", out)
    assert f"Ratio:           {n / size:.3f} ({100 * size / n:.2f}%)" in out
    assert f"Bits per byte:   {8 * size / n:.3f}" in out
    assert "Chunk size:      64 B" in out and re.search(r"Chunks: +4\n", out)
    assert re.search(rf"neural: +4, {n} => \d+ bytes", out) and re.search(r"zstd: +0\n", out)
    assert f"Model:           oracle-test (digest {info.header.model_digest.hex()})" in out
    assert f"Check:           SHA-256/64 {info.trailer.checksum.hex()}" in out
    r = bz("-l", "a.txt.bzp", "n.txt.bzp")
    assert r.exit_code == 0 and "random-test" in r.stdout and r.stdout.strip().splitlines()[-1].startswith("2 archives")
    assert "Ratio:           - (empty input)" in bz("-l", "-", input=bytezip.compress(b"", neural=False)).stdout


# -- errors: one line each, exit status 1, no output left, input untouched -------------------------
def test_missing_file_and_the_rest_go_on(work, models):
    r = bz("compress", "--no-solid", "--model", models.random, "missing.txt", "a.txt")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: missing.txt: No such file or directory")
    assert (work / "a.txt.bzp").exists()                                 # the other file was processed
    r = bz("decompress", "nothere.bzp")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: nothere.bzp: No such file or directory")


def test_directory_and_unreadable_file(work, models, monkeypatch):
    (work / "dir").mkdir()
    r = bz("compress", "--no-solid", "--model", models.random, "dir")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: dir: is a directory")

    def denied(path):
        raise PermissionError(13, "Permission denied", path)
    monkeypatch.setattr(cli_mod, "_open_read", denied)                   # root reads anything: simulate
    r = bz("compress", "--no-solid", "--model", models.random, "a.txt")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: a.txt: Permission denied")
    assert files(work) == {"a.txt", "n.txt", "dir"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a file without read permission")
def test_unreadable_file_for_real(work, models):
    os.chmod("a.txt", 0)
    r = bz("compress", "--no-solid", "--model", models.random, "a.txt")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: a.txt: Permission denied")


def test_not_an_archive(work):
    r = bz("decompress", "-f", "-o", "out", "a.txt")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: a.txt: not a bytezip archive")
    assert files(work) == {"a.txt", "n.txt"}
    for mode in ("test", "list"):
        r = bz(mode, "a.txt")
        assert r.exit_code == 1
        one_error_line(r, "bytezip: a.txt: not a bytezip archive")
    shutil.copy("a.txt", "fake.bzp")
    r = bz("-d", "fake.bzp")
    assert r.exit_code == 1 and not (work / "fake").exists()


def test_unknown_suffix(work):
    r = bz("-d", "a.txt")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: a.txt: unknown suffix", "-o")


def test_truncated_archive(work, models):
    bz("compress", "--no-solid", "--model", models.random, "a.txt")
    blob = (work / "a.txt.bzp").read_bytes()
    for cut in (3, 10, len(blob) // 2, len(blob) - 1):
        (work / "t.bzp").write_bytes(blob[:cut])
        for args in (("decompress",), ("test",), ("list",)):
            r = bz(*args, "t.bzp")
            assert r.exit_code == 1, (cut, args)
            line = one_error_line(r, "bytezip: t.bzp: ")
            assert "truncated archive" in line or (cut == 3 and "not a bytezip archive" in line)
    assert files(work) == {"a.txt", "a.txt.bzp", "n.txt", "t.bzp"}


def test_corrupted_archive(work, models):
    bz("compress", "--no-solid", "--model", models.random, "a.txt")
    blob = bytearray((work / "a.txt.bzp").read_bytes())
    rec = bytezip.read_info(io.BytesIO(bytes(blob))).chunks[0]
    assert rec.codec == fmt.ZSTD
    blob[rec.offset + rec.coded_size // 2] ^= 0x55                      # inside the first zstd payload
    (work / "c.bzp").write_bytes(bytes(blob))
    r = bz("decompress", "c.bzp")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: c.bzp: ", "corrupted archive")
    assert not (work / "c").exists() and files(work) == {"a.txt", "a.txt.bzp", "c.bzp", "n.txt"}
    assert bz("test", "c.bzp").exit_code == 1


def test_checksum_mismatch(work, models):
    bz("compress", "--no-solid", "--model", models.oracle, "n.txt")
    blob = bytearray((work / "n.txt.bzp").read_bytes())
    blob[-1] ^= 1                                                        # the stored checksum
    (work / "k.bzp").write_bytes(bytes(blob))
    for args in (("decompress", "--model", models.oracle, "k.bzp"), ("test", "--model", models.oracle, "k.bzp")):
        r = bz(*args)
        assert r.exit_code == 1
        one_error_line(r, "bytezip: k.bzp: checksum mismatch")
    assert not (work / "k").exists()


def test_unknown_model(work, models):
    r = bz("compress", "--model", "no-such-model", "a.txt")
    assert r.exit_code == 1
    one_error_line(r, "model 'no-such-model' not found")
    assert files(work) == {"a.txt", "n.txt"}
    bz("compress", "--no-solid", "--model", models.oracle, "n.txt")
    os.rename("n.txt", "n.orig")
    r = bz("decompress", "n.txt.bzp")                                    # oracle-test is not here or in models/
    assert r.exit_code == 1
    one_error_line(r, "bytezip: n.txt.bzp: ", "needs model 'oracle-test'", "not available")
    assert files(work) == {"a.txt", "n.orig", "n.txt.bzp"}


def test_mismatched_model(work, models):
    bz("compress", "--no-solid", "--model", models.oracle, "n.txt")
    r = bz("decompress", "-f", "--model", models.random, "n.txt.bzp")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: n.txt.bzp: archive was made with model 'oracle-test'", "'random-test'")
    assert (work / "n.txt").read_bytes() == NEURAL_DATA                # -f, but the failure touched nothing


def test_failure_and_interrupt_leave_no_temporary_file(work, models, monkeypatch):
    def dying(exc):
        def copy_stream(self, ifh, ofh, progress=None):
            ofh.write(b"half an archive")
            raise exc
        return copy_stream
    monkeypatch.setattr(bytezip.Compressor, "copy_stream", dying(bytezip.BytezipError("disk on fire")))
    r = bz("compress", "--no-solid", "--model", models.random, "a.txt")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: a.txt: disk on fire")
    assert files(work) == {"a.txt", "n.txt"}
    monkeypatch.setattr(bytezip.Compressor, "copy_stream", dying(KeyboardInterrupt()))
    r = bz("compress", "--rm", "--model", models.random, "a.txt", "n.txt")
    assert r.exit_code == 130
    one_error_line(r, "bytezip: a.txt: interrupted")
    assert files(work) == {"a.txt", "n.txt"} and (work / "a.txt").read_bytes() == TEXT


def test_usage_errors_exit_1(work, models):
    r = bz("compress", "--no-such-option", "a.txt")
    assert r.exit_code == 1 and "No such option" in r.stderr
    r = bz("compress", "-c", "--model", models.random, "a.txt", "n.txt")
    assert r.exit_code == 1 and "stdout" in r.stderr
    r = bz("compress", "--chunk-size", "lots", "a.txt")
    assert r.exit_code == 1 and "not a size" in r.stderr


def test_chunk_size_option(work, models):
    r = bz("compress", "--no-solid", "--model", models.random, "--chunk-size", "100", "a.txt")
    assert r.exit_code == 0 and bytezip.read_info(open("a.txt.bzp", "rb")).header.chunk_size == 100
    r = bz("compress", "-f", "--no-solid", "--model", "none", "--chunk-size", "1K", "a.txt")  # zstd/raw
    info = bytezip.read_info(open("a.txt.bzp", "rb"))
    assert r.exit_code == 0 and info.header.chunk_size == 1024 and info.header.model_id == ""
    r = bz("compress", "-f", "--model", models.random, "--chunk-size", "1M", "a.txt")  # beyond the context
    assert r.exit_code == 1
    one_error_line(r, "bytezip: a.txt: chunk size 1048576 exceeds the model's context of 256")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda(work, models):
    r = bz("compress", "--device", "cuda", "--model", models.random, "a.txt")
    assert r.exit_code == 1 and "no CUDA device" in r.stderr and not (work / "a.txt.bzp").exists()
    r = bz("compress", "--device", "gpu", "a.txt")
    assert r.exit_code == 1 and "'gpu' is not one of" in r.stderr


# -- terminals, verbosity, progress --------------------------------------------------------------
def test_terminal_refusals(work, models, monkeypatch):
    monkeypatch.setattr(cli_mod, "_isatty", lambda stream: True)
    r = bz("compress", "--no-solid", "--model", models.random, "-c", "a.txt")
    assert r.exit_code == 1 and r.stdout_bytes == b""
    one_error_line(r, "bytezip: stdout: is a terminal", "-f")
    r = bz("compress", "-f", "-q", "--model", models.random, "-c", "a.txt")
    assert r.exit_code == 0 and bytezip.decompress(r.stdout_bytes) == TEXT
    r = bz("compress", "--no-solid", "--model", models.random, "-o", "x.bzp", "-")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: stdin: is a terminal")
    bz("compress", "-q", "--model", models.random, "a.txt")
    r = bz("decompress", "-q", "-c", "a.txt.bzp")                        # plain data may go to a terminal
    assert r.exit_code == 0 and r.stdout_bytes == TEXT


def test_verbose_and_quiet(work, models):
    r = bz("compress", "-v", "--model", models.random, "a.txt", "n.txt")
    assert r.exit_code == 0
    a = (work / "a.txt.bzp").stat().st_size
    lines = r.stderr.splitlines()
    assert lines[0] == (f"a.txt : {100 * a / len(TEXT):.2f}% ({len(TEXT)} => {a} bytes, a.txt.bzp), "
                        f"{8 * a / len(TEXT):.3f} bits/byte")
    assert lines[1].startswith("n.txt : ") and lines[2].startswith("2 files compressed : ")
    r = bz("decompress", "-vv", "-c", "a.txt.bzp")
    assert re.fullmatch(rf"a.txt.bzp : {len(TEXT)} bytes \({a} => {len(TEXT)} bytes, stdout\), "
                        r"[\d.]+ s, [\d.]+ KiB/s\n", r.stderr)
    r = bz("compress", "-q", "-f", "--rm", "-c", "--model", models.random, "a.txt")
    assert r.exit_code == 0 and r.stderr == ""


def test_progress_bar_only_on_a_terminal_and_not_with_q(work, models, monkeypatch):
    real = bytezip.Compressor.copy_stream

    def slow(self, ifh, ofh, progress=None):
        import time
        time.sleep(0.25)
        return real(self, ifh, ofh, progress)
    monkeypatch.setattr(bytezip.Compressor, "copy_stream", slow)
    monkeypatch.setattr(cli_mod, "PROGRESS_DELAY", 0.02)
    r = bz("compress", "--no-solid", "--model", models.random, "a.txt")                # stderr is not a terminal here
    assert r.exit_code == 0 and r.stderr == ""
    monkeypatch.setattr(cli_mod, "_isatty", lambda stream: stream is sys.stderr)
    r = bz("compress", "-f", "--model", models.random, "a.txt")
    assert r.exit_code == 0 and "a.txt" in r.stderr and "\x1b[" in r.stderr
    r = bz("compress", "-f", "-q", "--model", models.random, "a.txt")
    assert r.exit_code == 0 and r.stderr == ""
    monkeypatch.setattr(cli_mod, "PROGRESS_DELAY", 5.0)                 # quick work: no bar at all
    r = bz("compress", "-f", "--model", models.random, "a.txt")
    assert r.exit_code == 0 and r.stderr == ""


# -- the other commands and the real process --------------------------------------------------------
def test_help_version_and_subcommands_exist(work):
    r = bz("--help")
    assert r.exit_code == 0
    for name in ("compress", "decompress", "test", "list", "bench", "train"):
        assert re.search(rf"^  {name} ", r.stdout, re.M), name
    assert bz("--version").stdout.strip() == f"bytezip, version {bytezip.__version__}"
    assert "--chunk-size" in bz("compress", "-h").stdout


def test_train_passes_its_arguments_through(work, monkeypatch):
    seen = []
    monkeypatch.setitem(sys.modules, "bytezip.train", types.SimpleNamespace(main=seen.append))
    r = bz("train", "--steps", "5", "--help", "-x", "data dir")
    assert r.exit_code == 0 and seen == [["--steps", "5", "--help", "-x", "data dir"]]


def test_bench_is_registered_lazily(work, monkeypatch):
    @click.command()
    @click.option("--quick", is_flag=True)
    def bench_command(quick):
        click.echo(f"bench quick={quick}")
    monkeypatch.setitem(sys.modules, "bytezip.bench", types.SimpleNamespace(bench_command=bench_command))
    r = bz("bench", "--quick")
    assert r.exit_code == 0 and r.stdout == "bench quick=True\n"
    monkeypatch.setitem(sys.modules, "bytezip.bench", None)             # as if the module were missing
    assert bz("--help").exit_code == 0
    assert bz("a.txt", "--model", "none").exit_code == 0                 # the rest of the CLI works
    r = bz("bench")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: bench: not available")


def test_real_process_reports_one_line_per_failure(work, models):
    bz("compress", "--no-solid", "--model", "none", "a.txt")
    shutil.copy("a.txt", "fake.bzp")
    env = dict(os.environ, PYTHONPATH=str(Path(bytezip.__file__).resolve().parent.parent))
    p = subprocess.run([sys.executable, "-m", "bytezip.cli", "-t", "missing.bzp", "fake.bzp", "a.txt.bzp"],
                       capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
    assert p.returncode == 1 and p.stdout == b""
    assert p.stderr.decode().splitlines() == ["bytezip: missing.bzp: No such file or directory",
                                             "bytezip: fake.bzp: not a bytezip archive (bad magic)"]


# -- zstd's habits: -r, -T0, --, tar -I ------------------------------------------------------------
def test_no_deprecated_click_api(work, models, monkeypatch):
    """click 8.5 deprecates get_binary_stream (gone in 9): the command must not touch it."""
    import warnings

    def deprecated(name):
        warnings.warn("get_binary_stream is deprecated", DeprecationWarning, stacklevel=2)
        raise AssertionError("click.get_binary_stream used")
    with warnings.catch_warnings():       # click 8.5 warns on reading the old attribute, which setattr does
        warnings.simplefilter("ignore", DeprecationWarning)
        monkeypatch.setattr(click, "get_binary_stream", deprecated)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        r = bz("compress", "-c", "--model", "none", "a.txt")
        assert r.exit_code == 0 and bytezip.decompress(r.stdout_bytes) == TEXT
        r = bz("-d", input=r.stdout_bytes)
        assert r.exit_code == 0 and r.stdout_bytes == TEXT


def test_recursive(work, models):
    tree = work / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "top.txt").write_bytes(TEXT)
    (tree / "sub" / "x.txt").write_bytes(NEURAL_DATA)
    (tree / "sub" / "deeper" / "empty").write_bytes(b"")
    (tree / "old.bzp").write_bytes(bytezip.compress(b"old", neural=False))    # already an archive: left alone
    os.mkfifo(tree / "sub" / "fifo")
    os.symlink("top.txt", tree / "link.txt")
    os.symlink("sub", tree / "dirlink")
    r = bz("-r", "--model", models.random, "tree", "a.txt")
    assert r.exit_code == 0, r.stderr
    assert sorted(r.stderr.splitlines()) == ["bytezip: tree/dirlink: is a symbolic link -- ignored",
                                             "bytezip: tree/link.txt: is a symbolic link -- ignored",
                                             "bytezip: tree/sub/fifo: is not a regular file -- ignored"]
    made = sorted(str(p.relative_to(work)) for p in work.rglob("*.bzp"))
    assert made == ["a.txt.bzp", "tree/old.bzp", "tree/sub/deeper/empty.bzp", "tree/sub/x.txt.bzp",
                    "tree/top.txt.bzp"]                                    # each beside its input: the tree kept
    for p in ("top.txt", "sub/x.txt", "sub/deeper/empty"):
        os.rename(tree / p, tree / (p + ".orig"))
    r = bz("-d", "-r", "-q", "tree")
    assert r.exit_code == 0 and r.stderr == ""                                # -q: no notes
    for p in ("top.txt", "sub/x.txt", "sub/deeper/empty"):
        assert (tree / p).read_bytes() == (tree / (p + ".orig")).read_bytes()
    assert (tree / "old").read_bytes() == b"old"
    r = bz("-t", "-r", "-v", "tree")
    assert r.exit_code == 0 and r.stderr.count(": OK (") == 4
    r = bz("-l", "-r", "tree")
    assert r.exit_code == 0 and r.stdout.strip().splitlines()[-1].startswith("4 archives")
    r = bz("-r", "-q", "--model", models.random, "tree")                      # outputs exist: one line each
    assert r.exit_code == 1 and r.stderr.count("already exists") == 4
    r = bz("--model", models.random, "tree")                                  # without -r, as before
    assert r.exit_code == 1
    one_error_line(r, "bytezip: tree: is a directory", "-r")
    (work / "none").mkdir()
    r = bz("-r", "--model", models.random, "none")                            # nothing to do is no error,
    assert r.exit_code == 0 and r.stdout_bytes == b""                         # and never stdin to stdout


def test_threads_zero_is_all_cores(work, models):
    before = torch.get_num_threads()
    try:
        zero = cli_mod._options({"threads": 0}).coding
        assert zero.threads == 0 and zero.torch_threads == cli_mod.all_cores() == len(os.sched_getaffinity(0))
        assert cli_mod._options({"threads": 3}).coding.torch_threads == 3
        assert cli_mod._options({}).coding.torch_threads is None
        r = bz("-T0", "--model", models.random, "a.txt")
        assert r.exit_code == 0 and torch.get_num_threads() == cli_mod.all_cores()
        r = bz("-dcT", "1", "a.txt.bzp")
        assert r.exit_code == 0 and r.stdout_bytes == TEXT and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_double_dash_before_names_starting_with_a_dash(work, models):
    (work / "-x.txt").write_bytes(TEXT)
    r = bz("--model", models.random, "-x.txt")
    assert r.exit_code == 1 and "No such option" in r.stderr
    r = bz("--model", models.random, "--", "-x.txt")
    assert r.exit_code == 0 and (work / "-x.txt.bzp").exists()
    os.unlink("-x.txt")
    r = bz("-d", "-v", "--", "-x.txt.bzp")
    assert r.exit_code == 0 and (work / "-x.txt").read_bytes() == TEXT, r.stderr
    blob = (work / "-x.txt.bzp").read_bytes()
    r = bz("-dc", "--", "-x.txt.bzp", "-", input=blob)                       # `-` after `--`: still stdin
    assert r.exit_code == 0 and r.stdout_bytes == TEXT + TEXT


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs tar")
def test_tar_use_compress_program(tmp_path, models):
    """tar runs the program with no arguments to compress (stdin to stdout) and with -d to decompress; the
    model comes from $BYTEZIP_MODEL."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bytezip").write_text(f"#!/bin/sh\nexec {sys.executable} -m bytezip.cli \"$@\"\n")
    (bin_dir / "bytezip").chmod(0o755)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(TEXT)
    (src / "sub" / "n.txt").write_bytes(NEURAL_DATA)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", BYTEZIP_MODEL=models.oracle,
               PYTHONPATH=str(Path(bytezip.__file__).resolve().parent.parent))
    tar = lambda *args: subprocess.run(["tar", *map(str, args)], capture_output=True, env=env, cwd=models.dir,
                                       stdin=subprocess.DEVNULL, timeout=300)
    # -I is --use-compress-program's short spelling: one creates, the other extracts (tar execs the same
    # command for both). Solid wins on tar's zero padding, so the archive usually needs no model to extract.
    archive = tmp_path / "src.tar.bzp"
    p = tar("-I", "bytezip", "-cf", archive, "-C", src, ".")
    assert p.returncode == 0, p.stderr
    assert bytezip.read_info(open(archive, "rb")).original_size % 512 == 0
    out = tmp_path / "out"
    out.mkdir()
    p = tar("--use-compress-program=bytezip", "-xf", archive, "-C", out)
    assert p.returncode == 0, p.stderr
    assert (out / "a.txt").read_bytes() == TEXT and (out / "sub" / "n.txt").read_bytes() == NEURAL_DATA


# -- where output goes: devices and FIFOs are written into, never replaced ----------------------------
def _refuse_replacing(monkeypatch, victim: str):
    """Make any rename or link onto `victim` fail, so that a bytezip that would replace it (as root could)
    fails instead of damaging the machine running the tests."""
    real = {f: getattr(os, f) for f in ("replace", "rename", "link")}

    def guard(f):
        def call(src, dst, *a, **k):
            if os.path.realpath(dst) == os.path.realpath(victim):
                raise PermissionError(1, f"test guard: {f} onto {victim}", dst)
            return real[f](src, dst, *a, **k)
        return call
    for f in real:
        monkeypatch.setattr(os, f, guard(f))


def test_output_to_dev_null_writes_into_it(work, models, monkeypatch):
    import stat as st_
    bz("compress", "--model", models.random, "a.txt")
    _refuse_replacing(monkeypatch, os.devnull)
    for args in (("-d", "-f", "-o", os.devnull), ("-d", "-o", os.devnull), ("-z", "-f", "-o", os.devnull)):
        r = bz(*args, "--rm", "a.txt.bzp" if args[0] == "-d" else "a.txt", *(("--model", models.random) if args[0] == "-z" else ()))
        assert r.exit_code == 0, (args, r.stderr)
        assert "kept" in r.stderr                                  # --rm: nothing was stored, so nothing removed
        assert st_.S_ISCHR(os.stat(os.devnull).st_mode)
    assert files(work) == {"a.txt", "a.txt.bzp", "n.txt"}          # no temporary file left anywhere
    assert not [n for n in os.listdir(os.path.dirname(os.devnull)) if n.startswith(".null.")]


@pytest.mark.skipif(not hasattr(os, "mknod"), reason="needs mknod")
def test_output_to_a_character_device_node(work, models):
    """The finding as root would see it, on a private node of /dev/null's device (no harm if it breaks)."""
    import stat as st_
    try:
        os.mknod("null", 0o666 | st_.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs privileges")
    bz("compress", "--model", models.random, "a.txt")
    r = bz("-d", "-f", "-o", "null", "a.txt.bzp")
    assert r.exit_code == 0, r.stderr
    assert st_.S_ISCHR(os.stat("null").st_mode) and os.stat("null").st_rdev == os.makedev(1, 3)


def test_output_to_a_fifo(work, models):
    import threading
    bz("compress", "--model", models.random, "a.txt")
    os.mkfifo("pipe")
    got = []
    reader = threading.Thread(target=lambda: got.append(open("pipe", "rb").read()), daemon=True)
    reader.start()
    r = bz("-d", "-o", "pipe", "a.txt.bzp")                      # no -f needed: nothing is overwritten
    reader.join(10)                                              # the reader sees end of file once bytezip closes
    if reader.is_alive():                                        # a bytezip that never opened it: unblock the
        os.close(os.open("pipe", os.O_WRONLY | os.O_NONBLOCK))   # reader (still blocked in open) before failing
        reader.join(10)
    assert r.exit_code == 0, r.stderr
    assert got == [TEXT] and stat_is_fifo("pipe")


def stat_is_fifo(path) -> bool:
    import stat as st_
    return st_.S_ISFIFO(os.lstat(path).st_mode)


def test_output_to_a_socket_or_directory_is_refused(work, models):
    import socket
    import stat as st_
    bz("compress", "--model", models.random, "a.txt")
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind("sock")
        r = bz("-d", "-f", "-o", "sock", "a.txt.bzp")
        assert r.exit_code == 1
        one_error_line(r, "bytezip: sock: is not a regular file, device or FIFO")
        assert st_.S_ISSOCK(os.lstat("sock").st_mode)
    finally:
        s.close()
    (work / "dir").mkdir()
    r = bz("-d", "-f", "-o", "dir", "a.txt.bzp")
    assert r.exit_code == 1
    one_error_line(r, "bytezip: dir: is a directory")


# -- messages ---------------------------------------------------------------------------------------
def test_control_characters_in_names_make_one_line(work, models):
    (work / "new\nline.txt").write_bytes(TEXT)
    r = bz("-v", "--model", models.random, "new\nline.txt", "gone\n.txt", "tab\there.txt")
    assert r.exit_code == 1
    lines = r.stderr.splitlines()
    assert lines[0].startswith("new\\nline.txt : ") and "new\\nline.txt.bzp)" in lines[0]
    assert lines[1] == "bytezip: gone\\n.txt: No such file or directory"
    assert lines[2] == "bytezip: tab\\there.txt: No such file or directory"
    (work / "bad\r\x1b[2J.bzp").write_bytes(b"not an archive")
    r = bz("-t", "bad\r\x1b[2J.bzp")
    one_error_line(r, "bytezip: bad\\r\\x1b[2J.bzp: not a bytezip archive")
    name = os.fsdecode(b"\xff\xfe.bzp")                          # not UTF-8
    (work / name).write_bytes(b"not an archive")
    r = bz("-t", name)
    one_error_line(r, "bytezip: \\xff\\xfe.bzp: not a bytezip archive")
    r = bz("-l", "new\nline.txt.bzp")
    assert r.exit_code == 0 and r.stdout.splitlines()[0] == "new\\nline.txt.bzp"


def test_plurals_and_no_speed_for_empty_input(work, models):
    (work / "one").write_bytes(b"x")
    (work / "empty").write_bytes(b"")
    r = bz("-vv", "--model", models.random, "one", "empty")
    assert r.exit_code == 0
    assert not re.search(r"\b1 bytes", r.stderr) and "(1 => " in r.stderr
    empty_line = [l for l in r.stderr.splitlines() if l.startswith("empty :")][0]
    assert "KiB/s" not in empty_line and re.fullmatch(r"empty : \(0 => \d+ bytes, empty.bzp\), [\d.]+ s", empty_line)
    r = bz("-d", "-vv", "-c", "one.bzp")
    assert r.stdout_bytes == b"x" and re.match(r"one.bzp : 1 byte \(\d+ => 1 byte, stdout\)", r.stderr)
    r = bz("-t", "-vv", "empty.bzp")
    assert "KiB/s" not in r.stderr and " => 0 bytes)" in r.stderr, r.stderr
    r = bz("-l", "one.bzp")
    assert not re.search(r"\b1 bytes", r.stdout) and re.search(r"1 => \d+ bytes|1 => 1 byte\b", r.stdout), r.stdout
    assert cli_mod.plural(1, "byte") == "1 byte" and cli_mod.plural(0, "byte") == "0 bytes"
    assert cli_mod.plural(2, "archive") == "2 archives"


def test_usage_and_bench_errors_are_one_bytezip_line(work, tmp_path):
    r = bz("compress", "--no-such-option", "a.txt")
    one_error_line(r, "No such option", "-h")
    r = bz("bench", str(tmp_path / "missing"))
    assert r.exit_code == 1
    one_error_line(r, "does not exist")
    (work / "empty-dir").mkdir()
    r = bz("bench", "empty-dir", "-q", "--compressors", "zstd-3")
    assert r.exit_code == 1
    one_error_line(r, "no input files")


def test_bench_tables_show_only_columns_with_results():
    from bytezip import bench
    res = {"compressors": [{"name": "zstd-19", "label": "zstd -19"}, {"name": "png", "label": "PNG"},
                           {"name": "flac", "label": "FLAC -8"}],
           "totals": {"text": {"raw_bytes": 100, "compressors": {"zstd-19": {"bpb": 3.0, "complete": True}}},
                      "all": {"raw_bytes": 100, "compressors": {"zstd-19": {"bpb": 3.0, "complete": True}}}}}
    header, rows = bench.summary_rows(res)
    assert header == ["group", "raw bytes", "zstd -19"] and rows == [["text", "100", "3.000"], ["all", "100", "3.000"]]
