"""Frames: an input coded as independent archives of `frame_size` bytes each, concatenated, and frames coded or
decoded in parallel worker processes.

Why a module of its own: a frame is a whole archive (`format`: concatenated archives decode to the
concatenated inputs), so work splits into pieces that share nothing, which processes (here) or a cluster's
workers can take; the codec itself codes one frame. Each frame's bytes depend on its input alone, so an archive
is the same for any number of processes. A frame loses what a single archive would learn across the frame
boundary (the shared history restarts), which is why frames are large (tens of MB) and off by default.

Workers are spawned (not forked: the parent may hold threads) and each builds its Compressor or Decompressor
once, with one thread (the processes are the parallelism); at most `processes` frames are in flight, so memory
follows processes x frame size. A cluster (`bytezip.cluster`) takes frames through the same `submit`.
"""
from __future__ import annotations

import io
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import BinaryIO, Callable, Iterator

from . import format as fmt
from .format import BytezipError
from .options import CodingOptions, all_cores

_coders: dict = {}     # a worker process's Compressor / Decompressor per (role, options): the model loads once


def coder(role: str, options: CodingOptions):
    key = (role, repr(options))
    if key not in _coders:
        from .codec import Compressor, Decompressor      # here: codec imports this module
        _coders[key] = (Compressor if role == "compress" else Decompressor)(options=options)
    return _coders[key]


def code(role: str, options: CodingOptions, data: bytes) -> bytes:
    """A worker's task: one frame compressed, or one frame's bytes decompressed."""
    c = coder(role, options)
    return c.compress(data) if role == "compress" else c.decompress(data)


def worker_options(options: CodingOptions) -> CodingOptions:
    """What a worker codes a frame with: the same options, one thread (the workers are the parallelism), and
    the model by name or path (a loaded model does not travel to other processes)."""
    if not (options.model is None or isinstance(options.model, (str, os.PathLike))):
        raise BytezipError("worker processes need the model by name or path, not a loaded model")
    return CodingOptions(**{**options.__dict__, "threads": 1, "workers": 1, "processes": 1, "frame_size": None})


def worker_count(options: CodingOptions) -> int:
    return all_cores() if options.processes == 0 else options.processes


class _Processes:
    """`processes` spawned workers (not forked: the parent may hold threads) coding frames for `role`."""

    def __init__(self, role: str, options: CodingOptions, n: int):
        self.role, self.options = role, worker_options(options)
        self.pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, data: bytes) -> Future:
        return self.pool.submit(code, self.role, self.options, data)

    def close(self):
        self.pool.shutdown(cancel_futures=True)


def in_order(submit: Callable[[bytes], Future], items: Iterator[bytes], n: int) -> Iterator[tuple[bytes, bytes]]:
    """(item, its result) in order, with at most n items in flight (`submit` returns a future: of a process
    pool, of a Dask client, or already done)."""
    flight: list[tuple[bytes, Future]] = []
    for item in items:
        flight.append((item, submit(item)))
        if len(flight) >= n:
            done, fut = flight.pop(0)
            yield done, fut.result()
    for item, fut in flight:
        yield item, fut.result()


def _here(work: Callable[[bytes], bytes]) -> Callable[[bytes], Future]:
    """A submit that does the work at once, in this process."""
    def submit(item: bytes) -> Future:
        fut = Future()
        fut.set_result(work(item))
        return fut
    return submit


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    parts, got = [], 0
    while got < n and (b := fh.read(n - got)):
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def pieces(ifh: BinaryIO, frame_size: int) -> Iterator[bytes]:
    """The input's frames (an empty input: one empty frame)."""
    first = True
    while (piece := _read_exact(ifh, frame_size)) or first:
        first = False
        yield piece


def compress(compressor, ifh: BinaryIO, ofh: BinaryIO, progress: Callable[[int], None] | None = None,
             submit: Callable[[bytes], Future] | None = None, in_flight: int = 1) -> tuple[int, int]:
    """ifh as frames of the compressor's frame_size bytes to ofh, then the seek table; each frame coded by
    `compressor` itself, by `processes` worker processes, or by `submit` (a cluster's, `in_flight` at once).
    Returns (bytes read, bytes written)."""
    n = worker_count(compressor.options)
    pool = _Processes("compress", compressor.options, n) if submit is None and n > 1 else None
    submit = submit or (pool.submit if pool else _here(compressor.compress_frame))
    table = []
    try:
        for piece, blob in in_order(submit, pieces(ifh, compressor.options.frame_size), max(n, in_flight)):
            table.append((ofh.write(blob), len(piece)))
            if progress:
                progress(len(piece))
    finally:
        if pool:
            pool.close()
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


def decompress(decompressor, ifh: BinaryIO, ofh: BinaryIO, progress: Callable[[int], None] | None = None,
               submit: Callable[[bytes], Future] | None = None, in_flight: int = 1) -> tuple[int, int]:
    """An archive's frames decoded `processes` at once, or by `submit` (a cluster's), written in order. Frames
    coded without a model decode in threads of this process (lzma and zstd release the GIL, and a frame
    decodes faster than a process starts); the others in worker processes, started when the first such frame
    comes. Returns (bytes read, bytes written)."""
    n = worker_count(decompressor.options)
    threads = ThreadPoolExecutor(n) if submit is None else None
    pool: _Processes | None = None

    def here_or_in_a_worker(blob: bytes) -> Future:
        nonlocal pool
        if not needs_model(blob):
            return threads.submit(decode_here, decompressor, blob)
        pool = pool or _Processes("decompress", decompressor.options, n)
        return pool.submit(blob)

    frames, seen = Frames(ifh), []
    try:
        for blob, data in in_order(submit or here_or_in_a_worker, iter(frames), max(n, in_flight)):
            seen.append((len(blob), ofh.write(data)))
            if progress:
                progress(len(data))
    finally:
        if threads:
            threads.shutdown(cancel_futures=True)
        if pool:
            pool.close()
    check_seek_table(frames.seek_table, seen)
    return sum(a for a, _ in seen) + seek_table_size(frames.seek_table), sum(b for _, b in seen)


def needs_model(blob: bytes) -> bool:
    """Whether a frame's header names a model (or a user dictionary, which names one)."""
    header = fmt.Reader(io.BytesIO(blob)).header()
    return bool(header.model_id or header.user_digest)


def decode_here(decompressor, blob: bytes) -> bytes:
    out = io.BytesIO()
    decompressor.copy_frames(io.BytesIO(blob), out)
    return out.getvalue()


def locate(table: list[tuple[int, int]], pos: int) -> tuple[int, int, int]:
    """(index, first output byte, offset in the archive) of the frame of a seek table that holds output byte
    `pos`; past the end: (len(table), the output's size, the frames' bytes)."""
    first = offset = 0
    for k, (size_in_stream, size) in enumerate(table):
        if first + size > pos:
            return k, first, offset
        first, offset = first + size, offset + size_in_stream
    return len(table), first, offset


def frames_at(fh: BinaryIO, table: list[tuple[int, int]], start: int, end: int | None = None,
              origin: int = 0) -> Iterator[tuple[bytes, int]]:
    """(frame bytes, size it decodes to) of each frame holding output bytes start..end (end excluded; None: to
    the end) of a seekable archive that begins at `origin` in fh, read in turn: the frames before are never
    read."""
    k, first, offset = locate(table, start)
    fh.seek(origin + offset)
    for size_in_stream, size in table[k:]:
        if end is not None and first >= end:
            return
        blob = _read_exact(fh, size_in_stream)
        if len(blob) != size_in_stream:
            raise fmt.FormatError("truncated archive (ends inside a frame the seek table lists)")
        yield blob, size
        first += size


def read_range(decompressor, fh: BinaryIO, start: int, end: int) -> tuple[bytes, int]:
    """Bytes start..end (end excluded, clipped to the output) of a seekable archive with a seek table, decoding
    only the frames that hold them (by `decompressor`, one after another). Returns (bytes, frames decoded)."""
    table = fmt.read_seek_table(fh)
    if table is None:
        raise BytezipError("archive has no seek table (compress with --frame-size to make one)")
    first, out, decoded = locate(table, start)[1], io.BytesIO(), 0
    for blob, size in frames_at(fh, table, start, end):
        decode_frame(decompressor, blob, size, out)
        decoded += 1
    return out.getvalue()[start - first:end - first], decoded


def decode_frame(decompressor, blob: bytes, size: int, ofh: BinaryIO):
    """One frame decoded to ofh as it decodes, in this thread (never a pool of processes for one frame), checked
    to be the size its seek table says."""
    if decompressor.copy_frames(io.BytesIO(blob), ofh)[1] != size:
        raise fmt.FormatError("corrupted archive (a frame's size is not the seek table's)")


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
