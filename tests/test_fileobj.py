"""bytezip.open: file objects over archives, streaming both ways in bounded memory (bytezip/fileobj.py)."""
import io
import time

import pytest

import bytezip
from bytezip import fileobj

from conftest import english_text

TEXT = english_text()[:12_000]


def test_binary_round_trip_with_a_model(tmp_path, random_model):
    data = TEXT[:6000]                                      # the model codes slowly: less of it
    path = tmp_path / "t.bzp"
    with bytezip.open(path, "wb", model=random_model, solid=False) as f:    # the model's chunks, not zstd's
        assert f.writable() and not f.readable() and not f.seekable()
        assert f.write(data[:100]) == 100
        f.write(bytearray(data[100:5000]))
        f.write(memoryview(data)[5000:])                    # any bytes-like object
        assert f.tell() == len(data)
        with pytest.raises(io.UnsupportedOperation):
            f.read()
    assert f.closed
    blob = path.read_bytes()
    assert bytezip.decompress(blob, model=random_model) == data
    assert bytezip.read_info(io.BytesIO(blob)).header.model_id == "custom"
    with bytezip.open(path, model=random_model) as f:          # "rb" is the default
        assert f.readable() and not f.writable() and f.seekable() and f.mode == "rb"
        assert f.read(10) == data[:10] and f.tell() == 10
        assert f.readline() == data[10:data.index(b"\n", 10) + 1]
        with pytest.raises(io.UnsupportedOperation):
            f.seek(0, io.SEEK_END)                     # no seek table
        with pytest.raises(io.UnsupportedOperation):
            f.write(b"x")
        pos = f.tell()
        assert f.seek(5) == 5 and f.read(5) == data[5:10]      # backward: decoded again from the start
        assert f.seek(pos) == pos
        rest = f.read()
        assert f.read() == b"" and f.tell() == len(data)
    assert data[:10] + data[10:data.index(b"\n", 10) + 1] + rest == data
    with pytest.raises(ValueError):
        f.read()


def test_file_objects_and_lines(random_model):
    buf = io.BytesIO()
    f = bytezip.open(buf, "wb", neural=False, chunk_size=1000)
    f.write(TEXT)
    f.close()
    f.close()                                               # twice is fine
    assert not buf.closed                                   # the caller's file stays open
    assert bytezip.decompress(buf.getvalue()) == TEXT
    buf.seek(0)
    with bytezip.open(buf, "rb") as f:
        assert list(f) == TEXT.splitlines(keepends=True)
    with pytest.raises(TypeError):
        bytezip.open(object(), "rb")


def test_text_mode(tmp_path):
    path = tmp_path / "t.txt.bzp"
    lines = ["première ligne\n", "second line\n", "√ third\n"]
    with bytezip.open(path, "wt", encoding="utf-8", neural=False) as f:
        f.writelines(lines)
    assert bytezip.decompress(path.read_bytes()) == "".join(lines).encode("utf-8")
    with bytezip.open(path, "rt", encoding="utf-8") as f:
        assert list(f) == lines
    with bytezip.open(path, "rt", encoding="ascii", errors="replace") as f:
        assert f.read().startswith("premi\ufffd")
    with bytezip.open(path, "rt", encoding="utf-8", newline="") as f:
        assert f.readline() == lines[0]
    with pytest.raises(FileExistsError):
        bytezip.open(path, "xt", neural=False)


@pytest.mark.parametrize("mode", ["rw", "r+", "rbt", "a", "", "wbb"])
def test_bad_modes(tmp_path, mode):
    with pytest.raises(ValueError):
        bytezip.open(tmp_path / "x", mode)


def test_text_options_only_in_text_mode(tmp_path):
    with pytest.raises(ValueError):
        bytezip.open(tmp_path / "x", "wb", encoding="utf-8")


def _archive(size=1 << 20, chunk=4096) -> bytes:
    data = (TEXT * (size // len(TEXT) + 1))[:size]
    return data, bytezip.compress(data, neural=False, chunk_size=chunk)


def test_corrupted_archive_raises_on_read(tmp_path):
    data, blob = _archive(64 << 10)
    info = bytezip.read_info(io.BytesIO(blob))
    rec = info.chunks[len(info.chunks) // 2]
    bad = bytearray(blob)
    bad[rec.offset + rec.coded_size // 2] ^= 0x55           # inside a payload in the middle
    with bytezip.open(io.BytesIO(bytes(bad))) as f:
        with pytest.raises(bytezip.BytezipError):
            while f.read(1000):
                pass
        with pytest.raises(bytezip.BytezipError):           # and again: the archive stays bad
            f.read()
    for broken in (blob[:len(blob) // 2], b"not an archive at all", b""):
        with bytezip.open(io.BytesIO(broken)) as f:
            with pytest.raises(bytezip.BytezipError):
                f.read()
    path = tmp_path / "flip.bzp"
    bad = bytearray(blob)
    bad[-1] ^= 1                                             # the checksum: only the last read can tell
    path.write_bytes(bytes(bad))
    with bytezip.open(path) as f:
        got = f.read(len(data))
        assert got == data                                   # the bytes came (unverified)...
        with pytest.raises(bytezip.ChecksumError):
            f.read(1)                                        # ...and the end says they are not confirmed


def test_write_errors_reach_the_caller():
    class Full(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            raise OSError(28, "No space left on device")
    f = bytezip.open(Full(), "wb", neural=False)
    f.write(TEXT)
    with pytest.raises(OSError, match="No space"):
        f.close()
    assert f.closed
    with pytest.raises(bytezip.BytezipError):                # a model that cannot be loaded: at open
        bytezip.open(io.BytesIO(), "wb", model="no-such-model")


def test_an_exception_while_writing_abandons_the_archive(tmp_path):
    path = tmp_path / "x.bzp"
    with pytest.raises(RuntimeError):
        with bytezip.open(path, "wb", neural=False) as f:
            f.write(TEXT)
            raise RuntimeError("caller failed")
    assert f.closed and not f._thread.is_alive()
    with pytest.raises(bytezip.BytezipError):                # no complete archive was written
        bytezip.decompress(path.read_bytes())


def test_a_stalled_reader_bounds_what_is_decoded():
    """The decoder runs ahead of the reader by at most `capacity` pieces, then waits."""
    data, blob = _archive(1 << 20)
    src = io.BytesIO(blob)
    with bytezip.open(src, "rb", capacity=4, piece=4096) as f:
        assert f.read(1) == data[:1]
        deadline = time.monotonic() + 10
        while f.pipe.peak < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)                                      # the reader stalls; the decoder must wait
        assert f.pipe.peak == 4 and len(f.pipe._queue) <= 4
        assert f._thread.is_alive()                          # still waiting for room, not done
        assert f.read() == data[1:]
        assert f.pipe.peak <= 4
    assert not src.closed


def test_closing_early_stops_the_decoder(tmp_path):
    data, blob = _archive(1 << 20)
    path = tmp_path / "big.bzp"
    path.write_bytes(blob)
    f = bytezip.open(path, "rb", capacity=2, piece=1024)
    assert f.read(100) == data[:100]
    f.close()                                                # no error, the thread gone, the file closed
    assert not f._thread.is_alive() and f._fh.closed


def test_writing_is_bounded_too():
    data = (TEXT * 100)[:1 << 20]
    out = io.BytesIO()
    with bytezip.open(out, "wb", neural=False, capacity=3, piece=1000) as f:
        for i in range(0, len(data), 50_000):
            f.write(data[i:i + 50_000])
        assert f.pipe.peak <= 3
    assert bytezip.decompress(out.getvalue()) == data


def test_exported():
    assert bytezip.open is fileobj.open and "open" in bytezip.__all__
    with bytezip.open(io.BytesIO(), "wb", neural=False) as f:
        assert isinstance(f, bytezip.BytezipFile)


def test_model_by_path_prefix(tmp_path, random_model):
    from bytezip.model import save_model
    save_model(random_model, str(tmp_path / "r"), {"name": "r"})
    path = tmp_path / "p.bzp"
    with bytezip.open(path, "wt", model=str(tmp_path / "r"), solid=False, encoding="utf-8") as f:
        f.write("ünïcode text\n" * 40)
    assert bytezip.read_info(open(path, "rb")).header.model_id == "r"
    with bytezip.open(path, "rt", model=str(tmp_path / "r"), encoding="utf-8") as f:
        assert f.read() == "ünïcode text\n" * 40
