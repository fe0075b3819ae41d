"""Levels, as zstd's: -1 ... -9, --fast, --best on the command line and `level=` in the library write the same
archive; a level only groups chunks into rounds (the header says how), so any level decodes with any lanes and
threads, and the same bytes come out of any number of workers."""
import io
import subprocess
import sys

import pytest

import bytezip
from bytezip import format as fmt
from bytezip.options import DEFAULT_LEVEL, LEVELS
from conftest import english_text

DATA = english_text()[:5000]          # 20 chunks of the tiny model's 256 bytes


def bz(*args, cwd):
    return subprocess.run([sys.executable, "-m", "bytezip", *args], cwd=cwd, capture_output=True)


def test_every_level_is_the_same_archive_from_the_library_and_the_command_line(tmp_path, model_files):
    (tmp_path / "a").write_bytes(DATA)
    flags = {1: ["-1"], 2: ["--level", "2"], 6: [], 9: ["--best"]}
    for level, flag in flags.items():
        assert bz("-f", "--model", model_files, *flag, "a", cwd=tmp_path).returncode == 0, level
        assert (tmp_path / "a.bzp").read_bytes() == bytezip.compress(DATA, model=model_files, level=level), level
    assert bz("-f", "--fast", "--model", model_files, "a", cwd=tmp_path).returncode == 0
    assert (tmp_path / "a.bzp").read_bytes() == bytezip.compress(DATA, model=model_files, level=1)
    assert bytezip.compress(DATA, model=model_files) == bytezip.compress(DATA, model=model_files, level=DEFAULT_LEVEL)


def test_levels_group_chunks_into_rounds_as_their_table_says(model_files):
    rounds = {}
    for level in LEVELS:
        blob = bytezip.compress(DATA, model=model_files, level=level, solid=False)   # the chunks, not one lzma
        info = bytezip.read_info(io.BytesIO(blob))
        rounds[level] = info.header.round_chunks
    assert rounds[1] == 0                                     # no model
    assert rounds[9] == 1                                     # one chunk a round
    assert rounds[2] >= rounds[6] >= rounds[8] >= 1           # fewer rounds, more lanes each
    assert bytezip.read_info(io.BytesIO(
        bytezip.compress(DATA, model=model_files, level=9, lanes=4, solid=False))).header.round_chunks == 4   # lanes given wins


def test_level_1_runs_no_model(model_files):
    info = bytezip.read_info(io.BytesIO(bytezip.compress(DATA, model=model_files, level=1, solid=False)))
    assert info.header.model_id == "" and {c.codec for c in info.chunks} <= {fmt.RAW, fmt.ZSTD, fmt.LZMA}
    assert bytezip.compress(DATA, model=model_files, level=1) == bytezip.compress(DATA, neural=False)


@pytest.mark.parametrize("level", [1, 4, 9])
def test_each_level_is_the_same_for_any_workers_and_decodes_with_any_lanes(level, model_files):
    blobs = [bytezip.compress(DATA, model=model_files, level=level, workers=w) for w in (1, 3)]
    assert blobs[0] == blobs[1]
    for lanes in (1, 64):
        assert bytezip.decompress(blobs[0], model=model_files, lanes=lanes, workers=2) == DATA


@pytest.mark.parametrize("args, message", [(["--level", "0"], "level must be between 1 and 9, not 0"),
                                           (["--level", "10"], "level must be between 1 and 9, not 10")])
def test_a_level_out_of_range_is_refused_in_one_line(tmp_path, args, message):
    (tmp_path / "a").write_bytes(b"x")
    r = bz(*args, "a", cwd=tmp_path)
    assert r.returncode == 1 and message in r.stderr.decode() and r.stderr.count(b"\n") == 1
    assert not (tmp_path / "a.bzp").exists()
    with pytest.raises(bytezip.BytezipError, match="level must be"):
        bytezip.compress(b"x", level=0)


def test_a_negative_thread_count_is_not_a_level(tmp_path):
    (tmp_path / "a").write_bytes(b"x")
    r = bz("-T", "-1", "a", cwd=tmp_path)
    assert r.returncode == 1 and b"threads must be at least 0" in r.stderr
