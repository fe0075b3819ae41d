"""Frames: archives concatenate (`cat a.bzp b.bzp` decodes to both inputs), an input in frames coded by worker
processes gives the same archive for any number of them, and what follows an end record is checked."""
import io
import subprocess
import sys

import pytest

import bytezip
from bytezip import frames
from bytezip import format as fmt
from conftest import english_text

TEXT = english_text()[:6000]


def test_concatenated_archives_decode_to_the_concatenated_inputs(tmp_path, model_files):
    a = bytezip.compress(TEXT[:2500], model=model_files)
    b = bytezip.compress(b"\x00\x01" * 900, neural=False)
    (tmp_path / "ab.bzp").write_bytes(a + b)
    out = subprocess.run([sys.executable, "-m", "bytezip", "-d", "-c", "--model", model_files,
                          str(tmp_path / "ab.bzp")], capture_output=True, check=True).stdout
    assert out == TEXT[:2500] + b"\x00\x01" * 900
    info = bytezip.read_info(io.BytesIO(a + b))
    assert info.frames == 2 and info.original_size == len(out) and info.archive_size == len(a + b)
    assert list(frames.Frames(io.BytesIO(a + b))) == [a, b]


@pytest.mark.parametrize("after, message", [(b"x", "data after the end record"),
                                            (b"\x89BZ", "ends inside the next frame's header"),
                                            (None, "truncated archive")])
def test_what_follows_an_end_record_is_a_whole_frame(after, message):
    a = bytezip.compress(TEXT[:300], neural=False)
    blob = a + (after if after is not None else a[:len(a) // 2])
    with pytest.raises(bytezip.FormatError, match=message):
        bytezip.decompress(blob)


def test_frames_are_the_same_for_any_number_of_processes(model_files):
    """Frames coded here, by 2 and by 4 worker processes: the same bytes; decoded by 2 processes too."""
    data = TEXT + bytes(range(256)) * 4
    blobs = [bytezip.compress(data, model=model_files, frame_size=1500, processes=n) for n in (1, 2, 4)]
    assert blobs[0] == blobs[1] == blobs[2]
    assert bytezip.read_info(io.BytesIO(blobs[0])).frames == -(-len(data) // 1500)
    assert bytezip.decompress(blobs[0], model=model_files, processes=2) == data
    assert bytezip.decompress(blobs[0], model=model_files) == data
    assert bytezip.decompress(bytezip.compress(b"", neural=False, frame_size=10)) == b""


def test_worker_processes_need_a_model_they_can_load(trained_model):
    with pytest.raises(bytezip.BytezipError, match="model by name or path"):
        bytezip.compress(TEXT, model=trained_model, frame_size=1000, processes=2)


def test_a_byte_range_decodes_only_the_frames_that_hold_it(model_files):
    data = TEXT[:5000]
    blob = bytezip.compress(data, model=model_files, frame_size=1000)
    info = bytezip.read_info(io.BytesIO(blob))
    assert info.frames == 5 and info.archive_size == len(blob)
    assert info.seek_table == [(a, 1000) for a, _ in info.seek_table] and len(info.seek_table) == 5
    d = bytezip.Decompressor(model=model_files)
    assert frames.read_range(d, io.BytesIO(blob), 2100, 2900) == (data[2100:2900], 1)
    assert frames.read_range(d, io.BytesIO(blob), 1900, 3100) == (data[1900:3100], 3)
    assert frames.read_range(d, io.BytesIO(blob), 4990, 9999) == (data[4990:], 1)
    assert bytezip.decompress(blob, model=model_files) == data
    with pytest.raises(bytezip.BytezipError, match="no seek table"):
        frames.read_range(d, io.BytesIO(bytezip.compress(data, neural=False)), 0, 10)


def test_a_seek_table_that_does_not_match_its_frames_is_refused():
    blob = bytezip.compress(TEXT[:3000], neural=False, frame_size=1000)
    table = bytezip.read_info(io.BytesIO(blob)).seek_table
    body = blob[:len(blob) - len(fmt.seek_table_bytes(table))]
    wrong = [table[0], table[1], (table[2][0], table[2][1] - 1)]
    with pytest.raises(bytezip.FormatError, match="seek table does not match"):
        bytezip.decompress(body + fmt.seek_table_bytes(wrong))
    damaged = bytearray(blob)
    damaged[-20] ^= 1
    with pytest.raises(bytezip.FormatError, match="seek table"):
        bytezip.decompress(bytes(damaged))


def test_the_middle_of_a_32_mb_archive_decodes_from_its_frame_alone(tmp_path):
    """A 4 KB range from the middle of a 32 MB archive with a seek table: one frame of four decoded, by
    `bytezip.open(...).seek`, by `frames.read_range` and by `bytezip -d --range`."""
    data = b"".join((k.to_bytes(4, "little") + bytes(range(252))) * 4096 for k in range(32))   # 32 MiB, 1 MiB blocks
    path = tmp_path / "big.bzp"
    path.write_bytes(bytezip.compress(data, neural=False, frame_size=8 << 20))
    start = (16 << 20) + 12345
    with bytezip.open(path) as f:
        assert f.seek(start) == start and f.read(4096) == data[start:start + 4096]
        assert f.frames_decoded == 1
        assert f.seek(-10, io.SEEK_END) == len(data) - 10 and f.read() == data[-10:]
        assert f.seek(100) == 100 and f.read(5) == data[100:105] and f.frames_decoded == 3
    with open(path, "rb") as fh:
        assert frames.read_range(bytezip.Decompressor(), fh, start, start + 4096) == (data[start:start + 4096], 1)
    cli = subprocess.run([sys.executable, "-m", "bytezip", "-d", "-vv", "--range", f"{start}:{start + 4096}",
                          str(path)], capture_output=True)
    assert cli.returncode == 0 and cli.stdout == data[start:start + 4096]
    assert b"decoded from 1 frame" in cli.stderr


def test_the_command_line_codes_frames_with_workers_and_decodes_ranges(tmp_path, model_files):
    """--frame-size and -T: the archive of -T1 and -T2 is the library's; -T2 decodes it in 2 processes; -l counts
    the frames; --range writes a part of the output to stdout (or -o); an empty or reversed range is refused."""
    data = TEXT[:2500] + bytes(range(256)) * 4
    (tmp_path / "a").write_bytes(data)
    bz = lambda *args: subprocess.run([sys.executable, "-m", "bytezip", "--model", model_files, *args],
                                      cwd=tmp_path, capture_output=True)
    archives = []
    for t in ("1", "2"):
        assert bz("-f", "-T", t, "--frame-size", "1K", "a").returncode == 0
        archives.append((tmp_path / "a.bzp").read_bytes())
    assert archives[0] == archives[1] == bytezip.compress(data, model=model_files, frame_size=1024)
    assert bz("-d", "-c", "-T2", "a.bzp").stdout == data
    listed = subprocess.run([sys.executable, "-m", "bytezip", "-l", "a.bzp"], cwd=tmp_path, capture_output=True)
    assert b"Frames:          4, with a seek table" in listed.stdout
    assert bz("-d", "--range", "1000:2100", "a.bzp").stdout == data[1000:2100]
    assert bz("-d", "--range", "3K:", "-o", "part", "a.bzp").returncode == 0
    assert (tmp_path / "part").read_bytes() == data[3072:]
    r = bz("-d", "--range", "9:3", "a.bzp")
    assert r.returncode == 1 and b"ends before it starts" in r.stderr
