"""Compressing and decompressing across a Dask cluster: files and frames as tasks, the driver writing archives.

Why a module of its own: a user with a large dataset already runs a cluster; this module hands the frames of
their files (`bytezip.frames`: independent archives of `frame_size` bytes) to its workers, each of which loads
the model once and codes frames (`frames.code`), while the driver reads the inputs, writes each archive
(its frames in order and the seek table, exactly what `bytezip --frame-size` writes here) through a temporary
file renamed into place, and checks every frame it gets back (it parses, and decodes to as many bytes as its
piece). Decompressing is the same the other way, and the outputs decode with the plain command line. Without
an address a local cluster of `workers` processes is started (a laptop); with one (`tcp://host:8786`) the
scheduler's workers are used, wherever they run: they need bytezip and its model installed. A script that
starts a local cluster needs the `if __name__ == "__main__":` guard that any multiprocessing code needs
(the workers are spawned, and import the main module).
"""
from __future__ import annotations

import io
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from . import format as fmt
from . import frames
from .format import BytezipError
from .options import CodingOptions, coding_options

FRAME_SIZE = 8 << 20           # input bytes per frame by default: the unit of work a worker takes
SUFFIX = ".bzp"


@contextmanager
def client(address: str | None = None, workers: int = 2, existing=None):
    """A Dask client for the work inside the `with`: `existing` (the caller's, left open), or one of the
    scheduler at `address`, or of a new local cluster of `workers` processes with one thread each (closed,
    with the cluster, at the end)."""
    if existing is not None:
        yield existing
        return
    import logging

    from distributed import Client, LocalCluster
    if address:
        with Client(address) as c:
            yield c
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.WARNING) as local, Client(local) as c:
        yield c


def walk(paths: Iterable[str | os.PathLike], archives: bool) -> list[Path]:
    """The files named, directories walked in name order: archives (FILE.bzp) or everything else."""
    out = []
    for p in map(Path, paths):
        found = sorted(f for f in p.rglob("*") if f.is_file() and not f.is_symlink()) if p.is_dir() else [p]
        out += [f for f in found if (f.suffix == SUFFIX) == archives]
    return out


def _in_flight(c, workers: int) -> int:
    """Frames sent ahead: two per worker the scheduler has (`workers` if it lists none yet)."""
    return 2 * max(1, len(c.scheduler_info().get("workers", {})) or workers)


def _submitter(c, role: str, options: CodingOptions):
    wopts = frames.worker_options(options)
    return lambda item: c.submit(frames.code, role, wopts, item[1], pure=False)


def compress(paths: Iterable[str | os.PathLike], *, address: str | None = None, workers: int = 2, dask=None,
             frame_size: int = FRAME_SIZE, force: bool = False, **options) -> list[tuple[Path, int, int]]:
    """Compress each file (directories walked) to FILE.bzp on the cluster, the archive `bytezip --frame-size
    frame_size FILE` writes; returns (archive, bytes in, bytes out) per file. `options` as for
    `bytezip.Compressor` (a model by name or path). `dask`: a client to use (default: one made here for
    `address`, or a local cluster of `workers`)."""
    opts = coding_options(frame_size=frame_size, **options)
    files = walk(paths, archives=False)
    _refuse_existing([Path(f"{f}{SUFFIX}") for f in files], force)
    with client(address, workers, dask) as c:

        def items() -> Iterator[tuple[int, bytes]]:
            for i, f in enumerate(files):
                with open(f, "rb") as fh:
                    for piece in frames.pieces(fh, frame_size):
                        yield i, piece
        return _write(files, frames.in_order(_submitter(c, "compress", opts), items(), _in_flight(c, workers)),
                      lambda f: Path(f"{f}{SUFFIX}"), _checked_frame,
                      tail=lambda seen: fmt.seek_table_bytes([(out, inp) for inp, out in seen]))


def decompress(paths: Iterable[str | os.PathLike], *, address: str | None = None, workers: int = 2, dask=None,
               force: bool = False, **options) -> list[tuple[Path, int, int]]:
    """Decompress each FILE.bzp (directories walked) to FILE on the cluster, frame by frame; returns (output,
    bytes in (frames), bytes out) per archive."""
    opts = coding_options(**options)
    files = walk(paths, archives=True)
    _refuse_existing([f.with_suffix("") for f in files], force)
    with client(address, workers, dask) as c:
        tables: dict[int, frames.Frames] = {}

        def items() -> Iterator[tuple[int, bytes]]:
            for i, f in enumerate(files):
                with open(f, "rb") as fh:
                    tables[i] = frames.Frames(fh)
                    for blob in tables[i]:
                        yield i, blob
        return _write(files, frames.in_order(_submitter(c, "decompress", opts), items(), _in_flight(c, workers)),
                      lambda f: f.with_suffix(""), lambda item, data: data,
                      check=lambda i, seen: frames.check_seek_table(tables[i].seek_table, seen))


def _checked_frame(item: tuple[int, bytes], blob: bytes) -> bytes:
    """A frame a worker returns must parse as one whole archive of as many bytes as the piece it was given."""
    reader = fmt.Reader(io.BytesIO(blob))
    header = reader.header()
    size = sum(rec.raw_size for rec, _ in reader.records(header))
    size = header.png.size if header.png else size
    if reader.next_frame() is not None or size != len(item[1]):
        raise BytezipError(f"a worker returned a frame of {size} bytes for a piece of {len(item[1])}")
    return blob


def _refuse_existing(outputs: list[Path], force: bool):
    there = [p for p in outputs if p.exists()]
    if there and not force:
        raise BytezipError(f"{there[0]}: already exists; not overwritten (force=True to overwrite)")


def _write(files: list[Path], results, output_of, checked, tail=None, check=None) -> list[tuple[Path, int, int]]:
    """Write each file's results, in order, to a temporary file renamed to its output once complete; `seen`
    holds (bytes in, bytes out) per frame of the current file, for `tail` (what ends the file) and `check`."""
    done, current, out, tmp, seen = [], None, None, None, []

    def finish():
        if tail is not None:
            out.write(tail(seen))
        if check is not None:
            check(current, seen)
        out.close()
        os.replace(tmp, output_of(files[current]))
        done.append((output_of(files[current]), sum(a for a, _ in seen), output_of(files[current]).stat().st_size))

    try:
        for item, result in results:
            i = item[0]
            if i != current:
                if current is not None:
                    finish()
                current, seen = i, []
                target = output_of(files[i])
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
                out = os.fdopen(fd, "wb")
            data = checked(item, result)
            out.write(data)
            seen.append((len(item[1]), len(data)))
        if current is not None:
            finish()
    except BaseException:
        if out is not None and not out.closed:
            out.close()
            os.unlink(tmp)
        raise
    return done
