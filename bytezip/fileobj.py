"""`bytezip.open`: archives as file objects, like `gzip.open` and `zstandard.open`.

    with bytezip.open("log.txt.bzp", "wt", model="bytezip-v1") as f:
        f.write("one line\n")
    with bytezip.open("log.txt.bzp", "rt") as f:
        for line in f: ...

Both directions stream in bounded memory. Writing feeds a background thread that runs
`Compressor(...).copy_stream(pipe, fh)`; reading runs `Decompressor(...).copy_stream(fh, pipe)` in a background
thread and `read` takes the decoded bytes from the pipe. The pipe between the caller and the thread holds at
most `capacity` pieces of at most `piece` bytes (1 MiB by default), so a reader that stops reading stops the
decoder, and a large archive is never held whole. What the coder itself holds is the codec's: the compressor
reads up to 16 MiB ahead (to know an input's size, and to try it as one lzma/zstd chunk), the decompressor holds a
round of chunks and the shared history, and an image coded in bands or a PNG file is rebuilt whole before any
of it is written.

Reading is seekable where the archive is: with a seek table (an archive compressed with a `frame_size`),
`seek` restarts the decoder at the frame that holds the byte and `frames_decoded` counts the frames it began;
without one, it decodes forward to the byte (from the start, to go back).

An error of the coder (a corrupted archive, a wrong model, a failing disk) is raised in the caller: by `read`
once the data before it has been read, by `write` or `close` when compressing. Like gzip's, the checksum of
an archive covers the whole output, so the last `read` is the one that confirms the data.
"""
from __future__ import annotations

import io
import os
import threading
from collections import deque
from typing import BinaryIO

from . import format as fmt
from . import frames
from .format import BytezipError

PIECE = 1 << 16          # bytes per piece in the pipe
CAPACITY = 16            # pieces the pipe holds before the producer waits


class _Closed(Exception):
    """The other end of the pipe went away (the file was closed, or the coder failed)."""


class Pipe:
    """A bounded byte queue between one producer and one consumer thread, with file-like ends: the
    producer calls `write` (waits while `capacity` pieces are queued) and `finish`, the consumer `read`
    (waits for data; b"" at the end, or the producer's error) and `close`. `peak` is the most pieces ever
    queued (never above `capacity`)."""

    def __init__(self, capacity: int = CAPACITY, piece: int = PIECE):
        self.capacity, self.piece = max(1, capacity), max(1, piece)
        self._queue: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._finished = False           # the producer is done (self.error set if it failed)
        self._closed = False             # the consumer is gone
        self.error: BaseException | None = None
        self.peak = 0

    # the producer's end
    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        for start in range(0, n, self.piece):
            part = bytes(view[start:start + self.piece])     # a copy: the caller may reuse its buffer
            with self._cond:
                while len(self._queue) >= self.capacity and not self._closed:
                    self._cond.wait()
                if self._closed:
                    raise _Closed("the reading end of the pipe is closed")
                self._queue.append(part)
                self.peak = max(self.peak, len(self._queue))
                self._cond.notify_all()
        return n

    def flush(self):
        pass

    def finish(self, error: BaseException | None = None):
        with self._cond:
            self._finished, self.error = True, error
            self._cond.notify_all()

    # the consumer's end
    def read(self, n: int = -1) -> bytes:
        """Up to n bytes (all until the end with n < 0); fewer only at the end. Raises the producer's error
        once everything before it has been read."""
        parts, got = [], 0
        with self._cond:
            while n < 0 or got < n:
                while not self._queue and not self._finished:
                    if self._closed:
                        raise ValueError("read from a closed pipe")
                    self._cond.wait()
                if not self._queue:
                    if self.error is not None and not parts:
                        raise self.error
                    break
                head = self._queue[0]
                take = len(head) if n < 0 else min(len(head), n - got)
                if take == len(head):
                    self._queue.popleft()
                else:
                    self._queue[0] = head[take:]
                parts.append(head[:take] if take < len(head) else head)
                got += take
                self._cond.notify_all()
                if parts and n >= 0:
                    break                 # what is there now: callers loop (as they do on a pipe)
        return b"".join(parts)

    def close(self):
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()

    def abort(self, error: BaseException):
        """The consumer's side failing the producer (writing side: the caller gave up)."""
        with self._cond:
            self.error = error
            self._finished = True
            self._queue.clear()
            self._cond.notify_all()


def _seek_table(fh) -> tuple[int | None, list[tuple[int, int]] | None]:
    """(where the archive starts in fh, its seek table) for a seekable fh, (None, None) otherwise; a table that
    does not parse is left to the decoder, which checks the one it meets at the end."""
    try:
        if not fh.seekable():
            return None, None
        origin = fh.tell()
    except (AttributeError, OSError, ValueError):
        return None, None
    try:
        return origin, fmt.read_seek_table(fh) if origin == 0 else None
    except BytezipError:
        return origin, None
    finally:
        fh.seek(origin)


class _PipeReader(io.RawIOBase):
    """The consumer's end of a Pipe as a raw stream (what io.BufferedReader wraps)."""

    def __init__(self, pipe: Pipe):
        self.pipe = pipe
        self.pos = 0

    def readable(self):
        return True

    def readinto(self, b) -> int:
        data = self.pipe.read(len(b))
        b[:len(data)] = data
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos


class _Producer:
    """The compressor's input while writing: what the caller wrote, through the pipe (`Pipe.abort` makes the
    next read fail)."""

    def __init__(self, pipe: Pipe):
        self.pipe = pipe

    def read(self, n: int = -1) -> bytes:
        return self.pipe.read(n)


class BytezipFile(io.BufferedIOBase):
    """A .bzp archive opened for reading ("rb") or writing ("wb", "xb"); see the module's docstring.
    `compressor_options` / `decompressor_options` go to `Compressor` / `Decompressor`."""

    def __init__(self, file, mode: str = "rb", *, capacity: int = CAPACITY, piece: int = PIECE,
                 **options):
        from .codec import Compressor, Decompressor     # here: bytezip/__init__ imports this module
        self._thread: threading.Thread | None = None    # until started, close() has nothing to stop
        self._closing, self._owns = False, False
        mode = mode.replace("b", "")
        if mode not in ("r", "w", "x"):
            raise ValueError(f"invalid mode: {mode!r} (bytezip.open takes r, w, x, with b or t)")
        self._mode = mode
        self._owns = isinstance(file, (str, bytes, os.PathLike))
        if self._owns:
            self._fh: BinaryIO = io.open(file, "rb" if mode == "r" else mode + "b")
            self.name = os.fsdecode(file)
        elif hasattr(file, "read" if mode == "r" else "write"):
            self._fh = file
            self.name = getattr(file, "name", "")
        else:
            raise TypeError("file must be a path or a file object with " + ("read" if mode == "r" else "write"))
        self._capacity, self._piece = capacity, piece
        self._error: BaseException | None = None
        self._pos = 0               # writing: bytes written; reading: the output byte the current decoder began at
        self.frames_decoded = 0     # reading an archive with a seek table: frames whose decoding began
        try:
            if mode == "r":
                self._coder = Decompressor(**options)
                self._origin, self._table = _seek_table(self._fh)
                self._start(self._decoder(0))
            else:
                coder = Compressor(**options)
                self._start(lambda: coder.copy_stream(_Producer(self.pipe), self._fh))
        except BaseException:
            if self._owns:
                self._fh.close()
            raise

    def _start(self, target):
        """A fresh pipe, and a thread to run target (the coder) into or out of it: at once when writing, at the
        first read when reading (a seek first decodes nothing it does not need)."""
        self.pipe = Pipe(self._capacity, self._piece)
        self._thread = threading.Thread(target=self._run, args=(target,), daemon=True,
                                        name=f"bytezip-{'decoder' if self._mode == 'r' else 'encoder'}")
        if self._mode == "r":
            self._buffer = io.BufferedReader(_PipeReader(self.pipe), self._piece)
        else:
            self._thread.start()

    def _reading(self) -> io.BufferedReader:
        """The decoded bytes, the decoder started if it was not."""
        self._check("r")
        if self._thread.ident is None:
            self._thread.start()
        return self._buffer

    def _decoder(self, pos: int):
        """What the decoding thread runs to output from byte `pos` on: with a seek table, the frames from the one
        holding it (`_pos` is then that frame's first byte); without, the whole stream from its start."""
        if self._table is None:
            self._pos = 0
            return lambda: self._coder.copy_stream(self._fh, self.pipe)
        self._pos = frames.locate(self._table, pos)[1]

        def decode():
            for blob, size in frames.frames_at(self._fh, self._table, pos, origin=self._origin):
                self.frames_decoded += 1
                frames.decode_frame(self._coder, blob, size, self.pipe)
        return decode

    def _run(self, target):
        try:
            target()
        except _Closed:                   # the reader closed the file early: nothing to report
            self.pipe.finish()
        except BaseException as e:        # handed to the caller
            self._error = e
            self.pipe.finish(e)
            if self._mode != "r":
                self.pipe.close()         # a writer waiting for room must not wait forever
        else:
            self.pipe.finish()

    # what kind of file this is
    def readable(self) -> bool:
        self._check_open()
        return self._mode == "r"

    def writable(self) -> bool:
        self._check_open()
        return self._mode != "r"

    def seekable(self) -> bool:
        """Reading a seekable archive: `seek` goes anywhere (forward only, by decoding, otherwise)."""
        self._check_open()
        return self._mode == "r" and self._origin is not None

    @property
    def mode(self) -> str:
        return "rb" if self._mode == "r" else self._mode + "b"

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a bytezip stream has no file descriptor of its own")

    def _check_open(self):
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def _check(self, mode: str):
        self._check_open()
        if (mode == "r") != (self._mode == "r"):
            raise io.UnsupportedOperation(f"not {'readable' if mode == 'r' else 'writable'}")

    def tell(self) -> int:
        """Bytes of uncompressed data read or written so far (reading: the position `seek` moves)."""
        self._check_open()
        return self._pos + self._buffer.tell() if self._mode == "r" else self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Reading, move to byte `offset` of the uncompressed data (from the start, the current position or,
        with a seek table, the end). An archive with a seek table (compressed with a frame_size) restarts
        decoding at the frame that holds the byte, decoding none before it; otherwise a seek forward decodes
        and drops the bytes on the way, and one backward decodes again from the start (a seekable archive
        only), as gzip files do. A position past the end reads b""."""
        self._check("r")
        pos = self.tell()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = pos + offset
        elif whence == io.SEEK_END and self._table is not None:
            target = sum(size for _, size in self._table) + offset
        elif whence == io.SEEK_END:
            raise io.UnsupportedOperation("seeking from the end needs a seek table (compress with a frame_size)")
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        frame_of = lambda p: frames.locate(self._table, p)[0] if self._table is not None else 0
        if target < pos or frame_of(target) != frame_of(pos):
            if not self.seekable():
                raise io.UnsupportedOperation("cannot seek backward in an archive read from a stream")
            self._stop()
            self._fh.seek(self._origin)
            self._start(self._decoder(target))
        while self.tell() < target and self._reading().read(min(target - self.tell(), 1 << 20)):
            pass
        return self.tell()

    def _halt(self):
        """Stop the decoding thread, if it started: its next write into the closed pipe fails."""
        self.pipe.close()
        if self._thread.ident is not None:
            self._thread.join()

    def _stop(self):
        """Stop the decoding thread to start another; raise what it failed with, if it did."""
        self._halt()
        if self._error is not None:
            raise self._error

    # reading
    def read(self, size: int | None = -1) -> bytes:
        return self._reading().read(-1 if size is None else size)

    def read1(self, size: int = -1) -> bytes:
        return self._reading().read1(size)

    def readinto(self, b) -> int:
        return self._reading().readinto(b)

    def readinto1(self, b) -> int:
        return self._reading().readinto1(b)

    def peek(self, size: int = 0) -> bytes:
        return self._reading().peek(size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._reading().readline(-1 if size is None else size)

    def __iter__(self):
        self._check("r")
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    # writing
    def write(self, data) -> int:
        self._check("w")
        if self._error is not None:
            raise self._error
        try:
            n = self.pipe.write(data)
        except _Closed:                   # the compressor failed meanwhile
            raise self._error or BytezipError("the compressor stopped") from None
        self._pos += n
        return n

    def flush(self):
        """Nothing to flush: the compressor codes whole chunks (and looks 16 MiB ahead), so data written
        reaches the archive only as chunks fill or at close."""
        self._check_open()

    # the end
    def close(self):
        """Finish the archive (writing) or stop the decoder (reading); raises a compressor's error."""
        if self.closed or self._closing:
            return
        self._closing = True
        try:
            if self._thread is None:
                pass
            elif self._mode == "r":
                self._halt()
            else:
                self.pipe.finish()            # end of input: the compressor writes the last chunks and the end
                self._thread.join()
                if self._error is not None:
                    raise self._error
                if hasattr(self._fh, "flush"):
                    self._fh.flush()
        finally:
            try:
                if self._owns:
                    self._fh.close()
            finally:
                super().close()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self._mode != "r" and not self.closed:
            # the caller failed while writing: stop the compressor without finishing the archive
            self.pipe.abort(BytezipError("writing was abandoned"))
            self._thread.join()
            self._error = None
            self._closing = True
            try:
                if self._owns:
                    self._fh.close()
            finally:
                super().close()
            return False
        return super().__exit__(exc_type, exc, tb)

    def __repr__(self):
        return f"<bytezip file {self.name!r} mode {self.mode!r}>"


def open(file, mode: str = "rb", *, encoding: str | None = None, errors: str | None = None,
         newline: str | None = None, **options):
    """Open a .bzp archive as a file object: `file` is a path or a binary file object; `mode` is "rb"/"r",
    "wb"/"w", "xb"/"x" for bytes, "rt", "wt", "xt" for text (with `encoding`, `errors`, `newline`, as
    `io.TextIOWrapper` takes them). The other keyword arguments go to `bytezip.Compressor` when writing
    (model, chunk_size, solid, ...) or `bytezip.Decompressor` when reading (model, device, lanes, ...).
    Streams in bounded memory both ways (see bytezip.fileobj)."""
    if not isinstance(mode, str) or len(set(mode)) != len(mode) or not set(mode) <= set("rwxbt") \
            or len(set(mode) & set("rwx")) != 1 or {"b", "t"} <= set(mode):
        raise ValueError(f"invalid mode: {mode!r}")
    if "t" in mode:
        binary = BytezipFile(file, mode.replace("t", ""), **options)
        return io.TextIOWrapper(binary, encoding=encoding, errors=errors, newline=newline)
    if encoding is not None or errors is not None or newline is not None:
        raise ValueError("encoding, errors and newline are for text mode ('rt', 'wt') only")
    return BytezipFile(file, mode, **options)
