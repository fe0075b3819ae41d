"""Frames: an input coded as independent archives of `frame_size` bytes each, concatenated, and frames coded or
decoded in parallel worker processes.

Why a module of its own: a frame is a whole archive (`format`: concatenated archives decode to the
concatenated inputs), so work splits into pieces that share nothing, which processes (here) or a cluster's
workers can take; the codec itself codes one frame. Each frame's bytes depend on its input alone, so an archive
is the same for any number of processes. A frame loses what a single archive would learn across the frame
boundary (the shared history restarts), which is why frames are large (tens of MB) and off by default.

Workers are spawned (not forked: the parent may hold threads) and each builds its Compressor or Decompressor
once, with one thread (the processes are the parallelism); at most `processes` frames are in flight, so memory
follows processes x frame size.
"""
from __future__ import annotations

import io
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from typing import BinaryIO, Callable, Iterator

from . import format as fmt
from .format import BytezipError
from .options import CodingOptions, all_cores

_coder = None          # the worker process's Compressor or Decompressor


def _start_worker(role: str, options: CodingOptions):
    global _coder
    from .codec import Compressor, Decompressor
    _coder = (Compressor if role == "compress" else Decompressor)(options=options)


def _compress(data: bytes) -> bytes:
    return _coder.compress(data)


def _decompress(blob: bytes) -> bytes:
    return _coder.decompress(blob)


def worker_count(options: CodingOptions) -> int:
    return all_cores() if options.processes == 0 else options.processes


def _pool(role: str, options: CodingOptions, n: int) -> ProcessPoolExecutor:
    """n spawned workers, each coding with one thread (`options` must pickle: a model by name or path)."""
    if not (options.model is None or isinstance(options.model, (str, os.PathLike))):
        raise BytezipError("worker processes need the model by name or path, not a loaded model")
    single = CodingOptions(**{**options.__dict__, "threads": 1, "workers": 1, "processes": 1, "frame_size": None})
    return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                               initargs=(role, single))


def _in_order(pool: ProcessPoolExecutor | None, work: Callable[[bytes], bytes], items: Iterator[bytes],
              n: int) -> Iterator[tuple[bytes, bytes]]:
    """(item, work(item)) in order, with at most n items in flight on the pool (none: here, one by one)."""
    if pool is None:
        for item in items:
            yield item, work(item)
        return
    flight: list[tuple[bytes, Future]] = []
    for item in items:
        flight.append((item, pool.submit(work, item)))
        if len(flight) >= n:
            done, fut = flight.pop(0)
            yield done, fut.result()
    for item, fut in flight:
        yield item, fut.result()


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    parts, got = [], 0
    while got < n and (b := fh.read(n - got)):
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def compress(compressor, ifh: BinaryIO, ofh: BinaryIO, progress: Callable[[int], None] | None = None
             ) -> tuple[int, int]:
    """ifh as frames of the compressor's frame_size bytes (an empty input: one empty frame) to ofh, each coded
    by `compressor` itself or, with processes > 1, by worker processes. Returns (bytes read, bytes written)."""
    options = compressor.options
    n = worker_count(options)

    def pieces() -> Iterator[bytes]:
        first = True
        while (piece := _read_exact(ifh, options.frame_size)) or first:
            first = False
            yield piece

    pool = _pool("compress", options, n) if n > 1 else None
    table = []
    try:
        for piece, blob in _in_order(pool, _compress if pool else compressor.compress_frame, pieces(), n):
            table.append((ofh.write(blob), len(piece)))
            if progress:
                progress(len(piece))
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    tail = ofh.write(fmt.seek_table_bytes(table))
    return sum(b for _, b in table), sum(a for a, _ in table) + tail


class Frames:
    """The frames of an archive stream, each as its bytes (parsed, not decoded: every field is checked); once
    iterated, `seek_table` holds the table that ended the stream, if one did."""

    def __init__(self, ifh: BinaryIO):
        self.ifh, self.seek_table = ifh, None

    def __iter__(self) -> Iterator[bytes]:
        recorder = _Recorder(self.ifh)
        reader = fmt.Reader(recorder)
        while True:
            for _ in reader.records(reader.header()):
                pass
            frame = recorder.take()
            following = reader.next_frame()          # its magic, read here, starts the next frame's bytes
            yield frame
            if following is None:
                self.seek_table = reader.seek_table
                return
            reader = following


def seek_table_size(table: list[tuple[int, int]] | None) -> int:
    return len(fmt.seek_table_bytes(table)) if table is not None else 0


def check_seek_table(table: list[tuple[int, int]] | None, seen: list[tuple[int, int]]):
    """A seek table must list the frames decoded before it, (bytes, size) each."""
    if table is not None and table != seen:
        raise fmt.FormatError("corrupted archive (the seek table does not match the frames)")


def decompress(decompressor, ifh: BinaryIO, ofh: BinaryIO, progress: Callable[[int], None] | None = None
               ) -> tuple[int, int]:
    """An archive's frames decoded by worker processes (`processes` at once), written in order. Returns (bytes
    read, bytes written)."""
    n = worker_count(decompressor.options)
    pool, frames, seen = _pool("decompress", decompressor.options, n), Frames(ifh), []
    try:
        for blob, data in _in_order(pool, _decompress, iter(frames), n):
            seen.append((len(blob), ofh.write(data)))
            if progress:
                progress(len(data))
    finally:
        pool.shutdown(cancel_futures=True)
    check_seek_table(frames.seek_table, seen)
    return sum(a for a, _ in seen) + seek_table_size(frames.seek_table), sum(b for _, b in seen)


def read_range(decompressor, fh: BinaryIO, start: int, end: int) -> tuple[bytes, int]:
    """Bytes start..end (end excluded, clipped to the output) of a seekable archive with a seek table, decoding
    only the frames that hold them (by `decompressor`, one after another). Returns (bytes, frames decoded)."""
    table = fmt.read_seek_table(fh)
    if table is None:
        raise BytezipError("archive has no seek table (compress with --frame-size to make one)")
    out, offset, first, decoded = [], 0, 0, 0
    for size_in_stream, size in table:
        if first + size > start and first < end and size:
            fh.seek(offset)
            data = decompressor.decompress(_read_exact(fh, size_in_stream))
            if len(data) != size:
                raise fmt.FormatError("corrupted archive (a frame's size is not the seek table's)")
            out.append(data[max(0, start - first):max(0, end - first)])
            decoded += 1
        offset += size_in_stream
        first += size
    return b"".join(out), decoded


class _Recorder:
    """A stream that keeps what is read from it until `take`."""

    def __init__(self, fh: BinaryIO):
        self.fh, self.kept = fh, []

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        self.kept.append(data)
        return data

    def take(self) -> bytes:
        out, self.kept = b"".join(self.kept), []
        return out
