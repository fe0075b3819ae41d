"""The `bytezip` command: compress, decompress, test and list .bzp archives with zstd's conventions.

    bytezip FILE...                  compress each FILE to FILE.bzp (same as `bytezip compress` / `bytezip -z`)
    bytezip -d FILE.bzp...           decompress to FILE             (`bytezip decompress`)
    bytezip -t FILE.bzp...           decode and verify, write nothing (`bytezip test`)
    bytezip -l FILE.bzp...           show what an archive holds     (`bytezip list`)
    bytezip -9 FILE / --fast FILE    levels, as zstd's (1: no model ... 9: one chunk a round; default 6)
    bytezip --frame-size 8M -T2 FILE independent frames, 2 at a time, and a seek table
    bytezip -d --range 1M:2M FILE.bzp  a byte range of the output, from the frames that hold it
    bytezip bench ... / bytezip train ...

Inputs are never modified. Every output goes to a temporary file beside its destination that is fsync'd and
renamed into place only once complete; a failure or an interrupt removes it. A destination that is a character
or block device or a FIFO (`-o /dev/null`) is written in place instead, never replaced. An existing file is
never overwritten without -f; inputs are removed only with --rm, after a verified success. `-r` works on the
files under directories; `-T0` uses every core; `--` ends the options. Each problem is one line on stderr,
`bytezip: FILE: problem` (names escaped, `_display`); the remaining files are still processed, and the exit
status is 1 if any failed (130 after an interrupt).
"""
from __future__ import annotations

import os
import re
import signal
import stat
import sys
import tempfile
import threading
import time
import traceback
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

import click

from . import __version__
from . import format as fmt
from . import userdict
from .format import BytezipError
from .options import CodingOptions, OptionError, all_cores  # noqa: F401  (all_cores: -T0, as before)

SUFFIX = ".bzp"
STDIO = "-"
PROGRESS_DELAY = 1.0    # seconds of work before a progress bar appears
EXIT_INTERRUPTED = 130     # 128 + SIGINT, as a shell reports it
EXIT_TERMINATED = 143      # 128 + SIGTERM

if TYPE_CHECKING:
    from .codec import Compressor, Decompressor
# The codec (the model, the kernels, the mixer) is imported by the commands that code, when they first need it,
# so that `bytezip --version`, `--help` and usage errors answer at once (issue 27).


def read_info(fh: BinaryIO):
    from .codec import read_info
    return read_info(fh)


def resolve_model_path(name):
    from .loading import resolve_model_path
    return resolve_model_path(name)


def resolve_device(device):
    from .loading import resolve_device
    return resolve_device(device)


# -- small helpers (module level so that tests can stand in for a terminal or a failing disk) -------------
def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _open_read(path: str) -> BinaryIO:
    return open(path, "rb")


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _display(name: str) -> str:
    """A file name as messages show it: `stdin` for `-`; a name with a control character (a newline...),
    or bytes that are not UTF-8 (decoded with surrogateescape), escaped as Python would write it
    (`a\\nb`, `\\xff`), so that every message stays on one line."""
    if name == STDIO:
        return "stdin"
    if name.isprintable():            # False for control characters and for surrogates
        return name
    out = []
    for ch in name:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif "\udc80" <= ch <= "\udcff":           # a byte that was not UTF-8
            out.append(f"\\x{ord(ch) - 0xdc00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out)


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 byte`, `0 bytes`, `2 files`: every count the command line prints goes through here."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def _binary_stream(name: str) -> BinaryIO:
    """sys.stdin/sys.stdout as bytes (what click's deprecated get_binary_stream returned)."""
    stream = getattr(sys, name)
    return getattr(stream, "buffer", stream)


class Failure(Exception):
    """One file failed: `bytezip: name: message`."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name, self.message = name, message


class Fatal(Failure):
    """A failure that every remaining file would share (the model cannot be loaded, ...): stop there."""


class BrokenPipe(Failure):
    """The reader of stdout went away (`bytezip -dc x.bzp | head`): stop quietly, as gzip does."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like ^C so that temporary files are removed."""


def _os_message(e: OSError) -> str:
    return e.strerror or str(e)


def human(n: int) -> str:
    """1.23 KiB (1259 B), as zstd -l writes sizes."""
    if n < 1024:
        return f"{n} B"
    value, unit = float(n), "B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024:
            break
    return f"{value:.2f} {unit} ({n} B)"


class SizeType(click.ParamType):
    """An integer with an optional K/M suffix (powers of 1024): 4096, 64K, 1M."""
    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*(\d+)\s*(?:([kKmM])(?:i?[bB])?)?\s*", str(value))
        if not m:
            self.fail(f"{value!r} is not a size (examples: 4096, 64K, 1M)", param, ctx)
        return int(m.group(1)) << {None: 0, "k": 10, "m": 20}[m.group(2) and m.group(2).lower()]


class RangeType(click.ParamType):
    """START:END, each a SIZE or left out (from the start, to the end): (start, end or None)."""
    name = "RANGE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        start, sep, end = str(value).partition(":")
        if not sep:
            self.fail(f"{value!r} is not a range START:END (examples: 1M:2M, 4096:, :64K)", param, ctx)
        lo = SizeType().convert(start, param, ctx) if start.strip() else 0
        hi = SizeType().convert(end, param, ctx) if end.strip() else None
        if hi is not None and hi < lo:
            self.fail(f"{value!r} ends before it starts", param, ctx)
        return lo, hi


# -- output: a temporary file renamed into place, or stdout ---------------------------------------------
class AtomicOutput:
    """A temporary file in the destination's directory; `commit` syncs it and renames it to `dest`."""

    def __init__(self, dest: str, force: bool):
        self.dest, self.force = dest, force
        directory = os.path.dirname(os.path.abspath(dest))
        try:
            fd, self.tmp = tempfile.mkstemp(prefix="." + os.path.basename(dest) + ".", suffix=".tmp",
                                            dir=directory)
        except OSError as e:
            raise Failure(dest, f"cannot create output: {_os_message(e)}") from None
        self.fh = os.fdopen(fd, "wb")
        self.done = False

    def commit(self, like: os.stat_result | None):
        """Make the data durable, give it the input's permissions and times, and rename it into place."""
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            if like is not None and stat.S_ISREG(like.st_mode):
                os.fchmod(self.fh.fileno(), stat.S_IMODE(like.st_mode))
            else:
                umask = os.umask(0)
                os.umask(umask)
                os.fchmod(self.fh.fileno(), 0o666 & ~umask)
            self.fh.close()
            if like is not None and stat.S_ISREG(like.st_mode):
                os.utime(self.tmp, ns=(like.st_atime_ns, like.st_mtime_ns))
            if self.force:
                os.replace(self.tmp, self.dest)
            else:
                self._rename_no_clobber()
            self.done = True
        except OSError as e:
            raise Failure(self.dest, _os_message(e)) from None
        _fsync_dir(os.path.dirname(os.path.abspath(self.dest)))

    def _rename_no_clobber(self):
        """Rename without ever replacing a file that appeared meanwhile (a hard link fails if dest exists)."""
        try:
            os.link(self.tmp, self.dest)
        except FileExistsError:
            raise Failure(self.dest, "already exists; not overwritten (use -f to overwrite)") from None
        except OSError:  # no hard links on this file system: check, then rename
            if os.path.lexists(self.dest):
                raise Failure(self.dest, "already exists; not overwritten (use -f to overwrite)") from None
            os.rename(self.tmp, self.dest)
            return
        os.unlink(self.tmp)

    def discard(self):
        if self.done:
            return
        try:
            self.fh.close()
        except OSError:
            pass
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


def _target(dest: str | None) -> str:
    return "stdout" if dest is None else _display(dest)


def _open_special(dest: str) -> BinaryIO:
    """Open a character or block device or a FIFO for writing in place: never created, truncated or replaced
    (a FIFO's open waits for its reader, as zstd's does)."""
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise Failure(dest, f"cannot open the output: {_os_message(e)}") from None
    st = os.fstat(fd)
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        os.close(fd)          # replaced by something else since it was checked
        raise Failure(dest, "changed while being opened; not written")
    return os.fdopen(fd, "wb")


def _fsync_dir(directory: str):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _NullSink:
    def write(self, b) -> int:
        return len(b)


# -- progress bar on stderr ---------------------------------------------------------------------------
class ProgressBar:
    """A rich progress bar that appears only after PROGRESS_DELAY seconds of work; a no-op when disabled."""

    def __init__(self, enabled: bool, label: str, total: int | None):
        self.enabled, self.label, self.total = enabled, label, total
        self.done = 0
        self._progress = self._task = self._timer = None
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self):
        if self.enabled:
            self._timer = threading.Timer(PROGRESS_DELAY, self._start)
            self._timer.daemon = True
            self._timer.start()
        return self

    def _start(self):
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, SpinnerColumn, TaskProgressColumn,
                                   TextColumn, TimeElapsedColumn, TimeRemainingColumn)
        with self._lock:
            if self._closed:
                return
            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                DownloadColumn(binary_units=True), TimeElapsedColumn(), TimeRemainingColumn(), console=Console(file=sys.stderr, force_terminal=True), transient=True)
            self._task = self._progress.add_task(self.label, total=self.total, completed=self.done)
            self._progress.start()

    def phase(self, label: str, total: int | None):
        """Start over with a new label (e.g. verifying after compressing)."""
        with self._lock:
            self.label, self.total, self.done = label, total, 0
            if self._progress is not None:
                self._progress.reset(self._task, total=total, completed=0, description=label)

    def advance(self, n: int):
        with self._lock:
            self.done += n
            if self._progress is not None:
                self._progress.update(self._task, completed=self.done)

    def __exit__(self, *exc):
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            if self._progress is not None:
                self._progress.stop()
        return False


# -- the work --------------------------------------------------------------------------------------
@dataclass
class Options:
    output: str | None = None
    stdout: bool = False
    remove: bool = False
    force: bool = False
    verbosity: int = 1           # 0 with -q, 2 with -v, 3 with -vv
    recursive: bool = False
    dictionary: str | None = None    # -D: a user dictionary (bytezip --train-dict), loaded once by Session
    byte_range: tuple[int, int | None] | None = None   # -d --range START:END: output bytes START..END only
    coding: CodingOptions = field(default_factory=CodingOptions)   # --model none: neural=False, model=None


@dataclass
class Result:
    name: str
    n_in: int
    n_out: int
    dest: str | None
    seconds: float


class Session:
    """Processes the files of one command line, reusing one compressor or decompressor for all."""

    def __init__(self, mode: str, opts: Options):
        self.mode, self.opts = mode, opts
        self._compressor: Compressor | None = None
        self._decompressor: Decompressor | None = None
        self._dictionary: userdict.UserDictionary | None = None
        self._listed = 0
        self.stdout = _binary_stream("stdout")
        self.stdin = _binary_stream("stdin")

    # messages
    def error(self, name: str, message: str):
        click.echo(f"bytezip: {_display(name)}: {message}", err=True)

    def note(self, line: str, level: int = 2):
        if self.opts.verbosity >= level:
            click.echo(line, err=True)

    def _bar(self, label: str, total: int | None, to_stdout: bool) -> ProgressBar:
        enabled = (self.opts.verbosity >= 1 and _isatty(sys.stderr)
                   and not (to_stdout and _isatty(sys.stdout)))
        return ProgressBar(enabled, label, total)

    # coders, made on first use
    def dictionary(self, name: str) -> userdict.UserDictionary | None:
        """The -D dictionary, loaded once (a failure stops every file)."""
        if self.opts.dictionary is not None and self._dictionary is None:
            try:
                self._dictionary = userdict.load(self.opts.dictionary)
            except BytezipError as e:
                raise Fatal(name, str(e)) from None
        return self._dictionary

    def compressor(self, name: str, size: int | None = None) -> Compressor:
        """The session's compressor; for a file of `size` <= MODEL_MIN_BYTES (with --solid, no -D), one that
        loads no model: the codec would not use it (the same archive, without the model's start-up)."""
        from .codec import MODEL_MIN_BYTES, Compressor
        o = self.opts
        if size is not None and size <= MODEL_MIN_BYTES and o.coding.solid and o.dictionary is None:
            return Compressor(options=dataclasses.replace(o.coding, neural=False, model=None))
        if self._compressor is None:
            try:
                self._compressor = Compressor(options=o.coding, dictionary=self.dictionary(name))
            except BytezipError as e:
                raise Fatal(name, str(e)) from None
        return self._compressor

    def decompressor(self, model=None, name: str = STDIO, frames: int = 1) -> Decompressor:
        """The session's decompressor; for an archive of several frames with -T N, one that decodes them in N
        worker processes (a single frame gets the N threads instead)."""
        from .codec import Decompressor
        o = self.opts
        if model is not None:
            return Decompressor(options=o.coding, model=model, dictionary=self.dictionary(name))
        if frames > 1 and o.coding.processes != 1:
            return Decompressor(options=o.coding, dictionary=self.dictionary(name))
        if self._decompressor is None:
            self._decompressor = Decompressor(options=dataclasses.replace(o.coding, processes=1),
                                              dictionary=self.dictionary(name))
        return self._decompressor

    # inputs and outputs
    def open_input(self, name: str) -> tuple[BinaryIO, os.stat_result | None]:
        if name == STDIO:
            if _isatty(sys.stdin) and not self.opts.force:
                raise Failure(name, "is a terminal; not reading data from it (use -f to force)")
            return self.stdin, None
        try:
            st = os.stat(name)
        except OSError as e:
            raise Failure(name, _os_message(e)) from None
        if stat.S_ISDIR(st.st_mode):
            raise Failure(name, "is a directory -- ignored" + ("" if self.opts.recursive else " (use -r to recurse into it)"))
        try:
            fh = _open_read(name)
        except OSError as e:
            raise Failure(name, _os_message(e)) from None
        return fh, os.fstat(fh.fileno())

    def destination(self, name: str) -> str | None:
        """The output path, or None for stdout."""
        o = self.opts
        if o.stdout:
            return None
        if o.output:
            return o.output
        if name == STDIO or o.byte_range is not None:   # a part of the output never takes the archive's name
            return None
        if self.mode == "compress":
            if name.endswith(SUFFIX) and not o.force:
                raise Failure(name, f"already has the {SUFFIX} suffix -- ignored (use -f to compress it again)")
            return name + SUFFIX
        if not name.endswith(SUFFIX):
            raise Failure(name, f"unknown suffix -- ignored (expected {SUFFIX}; use -o or -c to name the output)")
        if not os.path.basename(name[:-len(SUFFIX)]):
            raise Failure(name, f"nothing left of the name without {SUFFIX} (use -o to name the output)")
        return name[:-len(SUFFIX)]

    def check_destination(self, name: str, dest: str | None, st: os.stat_result | None) -> bool:
        """Refuse a destination we must not write; True when dest is a device or FIFO, written into in place
        (as zstd does: `-o /dev/null`, a named pipe) rather than replaced by a new file."""
        if dest is None:
            if self.mode == "compress" and _isatty(sys.stdout) and not self.opts.force:
                raise Failure("stdout", "is a terminal; not writing compressed data to it (use -f to force)")
            return False
        try:
            dst = os.stat(dest)
        except OSError:
            return False
        if st is not None and os.path.samestat(st, dst):
            raise Failure(name, f"the output {_display(dest)} is the input itself -- ignored")
        if stat.S_ISDIR(dst.st_mode):
            raise Failure(dest, "is a directory; cannot write the output there")
        if stat.S_ISCHR(dst.st_mode) or stat.S_ISFIFO(dst.st_mode):
            return True
        if stat.S_ISBLK(dst.st_mode):
            if not self.opts.force:
                raise Failure(dest, "is a block device; not written (use -f to write into it)")
            return True
        if not stat.S_ISREG(dst.st_mode):
            raise Failure(dest, "is not a regular file, device or FIFO; cannot write the output there")
        if not self.opts.force:
            raise Failure(dest, "already exists; not overwritten (use -f to overwrite)")
        return False

    def write(self, dest: str | None, st, work, special: bool = False):
        """Run work(ofh, path) into dest (through a temporary file at `path`), into the device or FIFO dest
        (`special`; path None) or stdout (dest and path None)."""
        if dest is None:
            try:
                result = work(self.stdout, None)
                self.stdout.flush()
            except BrokenPipeError:
                _silence_stdout()
                raise BrokenPipe("stdout", "broken pipe") from None
            return result
        if special:
            with _open_special(dest) as fh:
                return work(fh, None)
        out = AtomicOutput(dest, self.opts.force)
        try:
            result = work(out.fh, out.tmp)
            out.commit(st)
            return result
        finally:
            out.discard()

    def remove_input(self, name: str, st: os.stat_result | None, dest: str | None, special: bool = False):
        if not self.opts.remove or name == STDIO:
            return
        if dest is None or special:
            self.note(f"bytezip: {_display(name)}: kept (--rm applies only when writing to a regular file)", 1)
            return
        if st is None or not stat.S_ISREG(st.st_mode):
            self.note(f"bytezip: {_display(name)}: not a regular file; kept", 1)
            return
        try:
            os.unlink(name)
        except OSError as e:
            raise Failure(name, f"cannot remove: {_os_message(e)}") from None

    # the modes
    def compress(self, name: str) -> Result:
        fh, st = self.open_input(name)
        try:
            dest = self.destination(name)
            special = self.check_destination(name, dest, st)
            total = st.st_size if st is not None and stat.S_ISREG(st.st_mode) else None
            comp = self.compressor(name, total)
            t0 = time.monotonic()

            def work(ofh, path):
                with self._bar(_display(name), total, dest is None) as bar:
                    n_in, n_out = comp.copy_stream(fh, ofh, progress=bar.advance)
                    if self.opts.remove and path is not None:  # decode what was written before deleting anything
                        bar.phase(f"verifying {_display(name)}", n_in)
                        ofh.flush()
                        with open(path, "rb") as check:
                            _, n_back = self.decompressor(comp.model, name).copy_stream(check, _NullSink(),
                                                                                   progress=bar.advance)
                        if n_back != n_in:
                            raise BytezipError(f"verification failed ({plural(n_back, 'byte')} decoded, "
                                               f"{n_in} read)")
                return n_in, n_out

            try:
                n_in, n_out = self.write(dest, st, work, special)
            except BytezipError as e:
                raise Failure(name, str(e)) from None
            except OSError as e:
                raise Failure(dest or "stdout", _os_message(e)) from None
            self.remove_input(name, st, dest, special)
        finally:
            if fh is not self.stdin:
                fh.close()
        r = Result(name, n_in, n_out, dest, time.monotonic() - t0)
        pct = f"{100 * r.n_out / r.n_in:.2f}% " if r.n_in else ""
        bpb = f", {8 * r.n_out / r.n_in:.3f} bits/byte" if r.n_in else ""
        self.note(f"{_display(name)} : {pct}({r.n_in} => {plural(r.n_out, 'byte')}, {_target(dest)}){bpb}"
                  f"{self._speed(r.seconds, r.n_in)}")
        return r

    def decompress(self, name: str, test: bool = False) -> Result:
        fh, st = self.open_input(name)
        try:
            dest = None if test else self.destination(name)
            special = not test and self.check_destination(name, dest, st)
            t0 = time.monotonic()
            total, frames = None, 1
            try:
                if st is not None and stat.S_ISREG(st.st_mode):  # check the structure (and learn the size) first
                    info = read_info(fh)
                    total, frames = info.trailer.original_size, info.frames   # progress counts the records
                    fh.seek(0)
                dec = self.decompressor(name=name, frames=frames)

                def work(ofh, path):
                    if self.opts.byte_range is not None:
                        return self._copy_range(fh, ofh, name)
                    with self._bar(_display(name), total, dest is None and not test) as bar:
                        return dec.copy_stream(fh, ofh, progress=bar.advance)

                n_in, n_out = work(_NullSink(), None) if test else self.write(dest, st, work, special)
            except BytezipError as e:
                raise Failure(name, str(e)) from None
            except OSError as e:
                raise Failure(dest or name, _os_message(e)) from None
            if not test:
                self.remove_input(name, st, dest, special)
        finally:
            if fh is not self.stdin:
                fh.close()
        r = Result(name, n_in, n_out, dest, time.monotonic() - t0)
        if test:
            self.note(f"{_display(name)} : OK ({r.n_in} => {plural(r.n_out, 'byte')}){self._speed(r.seconds, r.n_out)}")
        else:
            self.note(f"{_display(name)} : {plural(r.n_out, 'byte')} ({r.n_in} => {plural(r.n_out, 'byte')}, "
                      f"{_target(dest)}){self._speed(r.seconds, r.n_out)}")
        return r

    def _copy_range(self, fh: BinaryIO, ofh: BinaryIO, name: str) -> tuple[int, int]:
        """--range START:END: output bytes START..END (END excluded) of the archive fh, as `bytezip.open(...).seek`
        reaches them: with a seek table only the frames that hold them are decoded. Returns (archive bytes read,
        bytes written)."""
        from .fileobj import BytezipFile
        start, end = self.opts.byte_range
        coding = dataclasses.replace(self.opts.coding, processes=1)
        written = 0
        with BytezipFile(fh, options=coding, dictionary=self.dictionary(name)) as f:
            f.seek(start)
            while end is None or f.tell() < end:
                data = f.read(1 << 20 if end is None else min(1 << 20, end - f.tell()))
                if not data:
                    break
                written += ofh.write(data)
            self.note(f"{_display(name)} : bytes {start}..{start + written} decoded from "
                      f"{plural(f.frames_decoded, 'frame') if f.seekable() else 'the start'}", 3)
            return fh.tell(), written

    def list(self, name: str) -> Result:
        fh, st = self.open_input(name)
        try:
            info = read_info(fh)
        except BytezipError as e:
            raise Failure(name, str(e)) from None
        except OSError as e:
            raise Failure(name, _os_message(e)) from None
        finally:
            if fh is not self.stdin:
                fh.close()
        if self._listed:
            click.echo()
        click.echo(format_info(_display(name), info))
        self._listed += 1
        return Result(name, info.archive_size, info.original_size, None, 0.0)

    def _speed(self, seconds: float, original: int) -> str:
        """With -vv: the time, and the speed in bytes of the original data a second (none for an empty
        input, or a time too short to measure)."""
        if self.opts.verbosity < 3:
            return ""
        speed = f", {original / seconds / 1024:.1f} KiB/s" if original and seconds > 1e-6 else ""
        return f", {seconds:.2f} s{speed}"


def format_info(name: str, info) -> str:
    """What `bytezip list` shows for one archive (the fields of `zstd -lv`, plus the chunk codecs)."""
    h, t = info.header, info.trailer
    original, archive = info.original_size, info.archive_size
    lines = [name]
    add = lambda k, v: lines.append(f"  {k + ':':<17}{v}")
    add("Original size", human(original))
    add("Compressed size", human(archive))
    if original:
        add("Ratio", f"{original / archive:.3f} ({100 * archive / original:.2f}%)")
        add("Bits per byte", f"{8 * archive / original:.3f}")
    else:
        add("Ratio", "- (empty input)")
        add("Bits per byte", "-")
    if info.frames > 1 or info.seek_table is not None:
        add("Frames", f"{info.frames}" + (", with a seek table" if info.seek_table is not None else ""))
    add("Chunk size", human(h.chunk_size))
    add("Chunks", str(len(info.chunks)))
    if h.png:
        e = h.png
        add("PNG", f"{e.width} x {e.height} x {e.channels} coded as {plural(e.pixel_bytes, 'byte')} of pixels, "
                   f"rebuilt with zlib level {e.zlib_settings[0]}")
    add("History", f"rounds of {plural(h.round_chunks, 'chunk')}" if h.round_chunks else "none (chunks independent)")
    for codec, cname in fmt.CODEC_NAMES.items():
        recs = [c for c in info.chunks if c.codec == codec]
        raw, coded = sum(c.raw_size for c in recs), sum(c.coded_size for c in recs)
        detail = f", {raw} => {plural(coded, 'byte')}" if recs else ""
        if recs and raw:
            detail += f" ({8 * coded / raw:.3f} bits/byte)"
        lines.append(f"    {cname + ':':<15}{len(recs)}{detail}")
    overhead = archive - sum(c.coded_size for c in info.chunks)
    add("Overhead", f"{plural(overhead, 'byte')} (header, chunk records, end record)")
    if h.user_digest:
        add("Model", f"the one user dictionary {h.user_digest.hex()} names (-D)")
    elif h.model_id:
        add("Model", f"{h.model_id} (digest {h.model_digest.hex()})")
    else:
        add("Model", "none (lzma/zstd/raw only)")
    add("Check", f"SHA-256/{8 * fmt.DIGEST_BYTES} {t.checksum.hex()}")
    return "\n".join(lines)


def _silence_stdout():
    """After EPIPE, point stdout at /dev/null so that the final flush at exit does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def expand(mode: str, names: list[str], opts: Options) -> tuple[list[str], int]:
    """With -r, each directory among `names` becomes the files under it, in sorted order: for compress the
    regular files not already ending in .bzp, for the other modes the regular files ending in .bzp. Of those,
    what is not a regular file (a symbolic link, a FIFO, a device, a socket) is skipped with a one-line note,
    as are symbolic links to directories (never followed); a directory that cannot be read is an error.
    Returns the files and the number of errors reported."""
    if not opts.recursive:
        return names, 0
    out, errors = [], 0

    def note(path, why):
        if opts.verbosity >= 1:
            click.echo(f"bytezip: {_display(path)}: {why} -- ignored", err=True)

    for name in names:
        if name == STDIO or not os.path.isdir(name):
            out.append(name)
            continue
        failures = []
        for root, dirs, fnames in os.walk(name, onerror=failures.append):
            for e in failures:
                click.echo(f"bytezip: {_display(e.filename or root)}: {_os_message(e)}", err=True)
            errors += len(failures)
            failures.clear()
            for d in [d for d in dirs if os.path.islink(os.path.join(root, d))]:
                note(os.path.join(root, d), "is a symbolic link")
            dirs.sort()
            for f in sorted(fnames):
                path = os.path.join(root, f)
                try:
                    st = os.lstat(path)
                except OSError as e:
                    click.echo(f"bytezip: {_display(path)}: {_os_message(e)}", err=True)
                    errors += 1
                    continue
                if (mode == "compress") == path.endswith(SUFFIX):
                    continue          # not a file this mode works on (an archive, or not one)
                if stat.S_ISLNK(st.st_mode):
                    note(path, "is a symbolic link")
                elif not stat.S_ISREG(st.st_mode):
                    note(path, "is not a regular file")
                else:
                    out.append(path)
        for e in failures:
            click.echo(f"bytezip: {_display(e.filename or name)}: {_os_message(e)}", err=True)
        errors += len(failures)
    return out, errors


def run(mode: str, files: tuple[str, ...], opts: Options) -> int:
    """Process every file, report each failure in one line, return the exit status."""
    if files and opts.recursive:
        files, walk_errors = expand(mode, list(files), opts)
        if not files:
            return 1 if walk_errors else 0
    else:
        walk_errors = 0
    files = list(files) or [STDIO]
    if opts.output == STDIO:
        opts.output, opts.stdout = None, True
    if opts.output and len(files) > 1:
        raise click.UsageError("-o/--output takes a single input file")
    if opts.output and opts.stdout:
        raise click.UsageError("-o/--output and -c/--stdout exclude each other")
    if files.count(STDIO) > 1:
        raise click.UsageError("standard input ('-') can be read only once")
    if mode == "compress" and (opts.stdout or (STDIO in files and not opts.output)) and len(files) > 1:
        raise click.UsageError("several archives on stdout could not be told apart; compress one file to stdout")
    try:
        if opts.coding.model is not None and mode != "list":
            resolve_model_path(opts.coding.model)
        if mode != "list":
            resolve_device(opts.coding.device)
    except BytezipError as e:
        click.echo(f"bytezip: {e}", err=True)
        return 1
    session = Session(mode, opts)
    failed, results = walk_errors, []
    for name in files:
        try:
            if mode == "compress":
                results.append(session.compress(name))
            elif mode == "list":
                results.append(session.list(name))
            else:
                results.append(session.decompress(name, test=(mode == "test")))
        except BrokenPipe:
            return 1
        except Fatal as e:
            session.error(e.name, e.message)
            return 1
        except Failure as e:
            session.error(e.name, e.message)
            failed += 1
        except KeyboardInterrupt as e:
            session.error(name, "interrupted; no output left behind")
            return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
        except Exception as e:  # a bug: still one line, the traceback only with -vv
            if opts.verbosity >= 3:
                traceback.print_exc()
            session.error(name, f"internal error: {type(e).__name__}: {e}")
            failed += 1
    if len(results) > 1:
        n_in, n_out = sum(r.n_in for r in results), sum(r.n_out for r in results)
        if mode == "compress":
            pct = f"{100 * n_out / n_in:.2f}% " if n_in else ""
            session.note(f"{plural(len(results), 'file')} compressed : {pct}({n_in} => {plural(n_out, 'byte')})")
        elif mode == "list":
            ratio = f", ratio {n_out / n_in:.3f}" if n_in else ""
            click.echo(f"{plural(len(results), 'archive')}: {human(n_out)} original, {human(n_in)} compressed{ratio}")
        else:
            session.note(f"{plural(len(results), 'file')} {'tested' if mode == 'test' else 'decompressed'} : "
                         f"{n_in} => {plural(n_out, 'byte')}")
    return 1 if failed else 0


# -- the command line --------------------------------------------------------------------------------
MODE_FLAGS = {"-z": "compress", "--compress": "compress", "-d": "decompress", "--decompress": "decompress",
              "--uncompress": "decompress", "-t": "test", "--test": "test", "-l": "list", "--list": "list",
              "--train-dict": "train-dict"}
SHORT_MODES = {"z": "compress", "d": "decompress", "t": "test", "l": "list"}
VALUE_OPTIONS = {"-o", "--output", "--model", "--device", "-T", "--threads", "--chunk-size", "--lanes", "-D",
                 "--dict", "--maxdict", "--frame-size", "--range", "--level"}
LEVEL_ALIASES = {"--fast": "1", "--best": "9"}
SHORT_VALUE_OPTIONS = {"o", "T", "D"}


def level_flags(args: list[str]) -> list[str]:
    """zstd's level flags as `--level N`: -1 ... -9, --fast (-1), --best (-9); option values (`-T -1`) and the
    words after `--` are left alone."""
    out, i = [], 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return out + args[i:]
        if a in VALUE_OPTIONS:
            out += args[i:i + 2]
            i += 2
            continue
        level = LEVEL_ALIASES.get(a) or (a[1] if re.fullmatch(r"-[1-9]", a) else None)
        out += ["--level", level] if level else [a]
        i += 1
    return out


def split_mode(args: list[str]) -> tuple[str | None, list[str]]:
    """Take zstd's mode flags (-z -d -t -l, also inside clusters such as -dc) out of args; the last one wins."""
    mode, rest, i = None, [], 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i:])
            break
        if a in MODE_FLAGS:
            mode = MODE_FLAGS[a]
        elif a in VALUE_OPTIONS:
            rest.extend(args[i:i + 2])
            i += 1
        elif a.startswith("-") and not a.startswith("--") and len(a) > 2:
            kept = ""
            for j, ch in enumerate(a[1:], 1):
                if ch in SHORT_VALUE_OPTIONS:
                    kept += a[j:]
                    if j == len(a) - 1 and i + 1 < len(args):  # -co FILE: the value is the next word
                        rest.extend(["-" + kept, args[i + 1]])
                        i += 1
                        kept = None
                    break
                if ch in SHORT_MODES:
                    mode = SHORT_MODES[ch]
                else:
                    kept += ch
            if kept:
                rest.append("-" + kept)
        else:
            rest.append(a)
        i += 1
    return mode, rest


def error_line(e: click.ClickException) -> str:
    """A click error (a usage error, or bench's) as the one line every bytezip error is: `bytezip: ...`."""
    message = " ".join(e.format_message().split())
    ctx = getattr(e, "ctx", None)
    if isinstance(e, click.UsageError) and ctx is not None:
        message += f" (see '{ctx.command_path} -h')"
    return f"bytezip: {message}"


class BytezipGroup(click.Group):
    """Subcommands, plus zstd's shorthands: `bytezip FILE` compresses, `bytezip -d|-z|-t|-l ...` pick a mode."""

    COMMANDS = ["compress", "decompress", "test", "list", "train-dict", "bench", "train"]

    def parse_args(self, ctx, args):
        args = level_flags(list(args))
        if args and (args[0] in self.COMMANDS or (len(args) == 1 and args[0] in ("-h", "--help", "-V", "--version"))):
            return super().parse_args(ctx, args)
        mode, rest = split_mode(args)
        return super().parse_args(ctx, [mode or "compress", *rest])

    def list_commands(self, ctx):
        return list(self.COMMANDS)

    def get_command(self, ctx, name):
        if name == "bench":
            return _bench_command()
        return super().get_command(ctx, name)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Like click's, but every error exits with status 1 (as zstd and gzip do), usage errors included."""
        try:
            rv = super().main(args, prog_name or "bytezip", complete_var, standalone_mode=False, **extra)
        except click.ClickException as e:
            click.echo(error_line(e), err=True)
            rv = 1
        except click.Abort:
            rv = EXIT_INTERRUPTED
        rv = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(rv)
        return rv


CONTEXT = dict(help_option_names=["-h", "--help"], max_content_width=100)
DEFAULTS = CodingOptions()      # the coding options' defaults, shown in --help (the library's own)


@click.group(cls=BytezipGroup, context_settings=CONTEXT, invoke_without_command=False,
             epilog="Shorthands as in zstd: `bytezip FILE...` compresses; `bytezip -d|-z|-t|-l [OPTIONS] "
                    "FILE...` decompresses, compresses, tests, lists. `-` or no FILE: stdin to stdout.")
@click.version_option(__version__, "-V", "--version", prog_name="bytezip")
def cli():
    """bytezip: lossless compression with a MEGABYTE transformer and a range coder."""


def _common(f, *, output=True, compress=False, coder=True):
    """Attach the options shared by the modes (the same names zstd uses)."""
    opts = []
    if output:
        opts += [
            click.option("-o", "--output", metavar="FILE", help="Write to FILE (single input only; '-' = stdout)."),
            click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write to standard output."),
            click.option("--rm/--keep", " /-k", "remove", default=False,
                         help="Remove each input after a verified success (default: keep, -k)."),
            click.option("-f", "--force", is_flag=True,
                         help="Overwrite existing files; read from / write binary to a terminal."),
        ]
    opts += [click.option("-r", "--recursive", is_flag=True,
                          help="Operate on the files under each directory (compress: every regular file to "
                               "FILE.bzp beside it; the other modes: every FILE.bzp)."),
             click.option("-q", "--quiet", count=True, help="Only errors: no progress bar, no notes."),
             click.option("-v", "--verbose", count=True, help="A line per file (sizes, ratio, bits per byte); "
                                                              "-vv adds time and speed.")]
    if coder:
        opts += [
            click.option("-D", "--dict", "dictionary", metavar="DICT",
                         help="A user dictionary (bytezip --train-dict): compress priming the coder with it; the "
                              "archive records its digest and decodes only with it." if compress else
                              "The user dictionary the archive was made with (bytezip --train-dict)."),
            click.option("--model", metavar="NAME|PATH",
                         help="Model name (in models/) or path prefix of <prefix>.safetensors/.json; default: "
                              "$BYTEZIP_MODEL or bytezip-v1 to compress, the archive's own to decompress. "
                              "'none' compresses with lzma/zstd/raw only." if compress else
                              "Model name or path prefix (default: the one named in the archive)."),
            click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=DEFAULTS.device,
                         show_default=True,
                         help="Where the model runs (archives decode the same on any device)."),
            click.option("-T", "--threads", type=int, default=DEFAULTS.threads, metavar="N",
                         help="Parallel work, as zstd -T: an input in frames (--frame-size, or an archive of "
                              "several frames) is coded N frames at once in worker processes, the same archive for "
                              "any N; a single frame gets N threads for the model (0 = all cores; default: "
                              "torch's, one per physical core, and one frame at a time)."),
            click.option("--lanes", type=int, default=DEFAULTS.lanes, metavar="N",
                         help=f"Chunks coded together, 1-{fmt.MAX_ROUND_CHUNKS}: chunks per round, each round "
                              f"decoding as N lanes and reading the rounds before it (default: from the input "
                              f"size, 1-64); with --no-history, chunks coded as one batch (default 64)." if compress
                         else f"At most N neural chunks decoded together, 1-{fmt.MAX_ROUND_CHUNKS} (memory grows "
                              f"with it; default: two a thread, 64 on a GPU)."),
        ]
    if compress:
        opts.append(click.option("--level", type=int, default=DEFAULTS.level, metavar="N", show_default=True,
                                 help="1 (fastest) to 9 (smallest), also as -1 ... -9, --fast (-1), --best (-9): "
                                      "1 runs no model (lzma/zstd, as --model none: MB/s); 2-9 group the chunks "
                                      "into fewer or more rounds (9: one chunk a round, every chunk reading all "
                                      "before it). Any level decodes anywhere."))
        opts.append(click.option("--chunk-size", type=SizeType(), metavar="SIZE",
                                 help="Bytes per chunk, e.g. 4K (default and maximum: the model's context)."))
        opts.append(click.option("--frame-size", type=SizeType(), metavar="SIZE",
                                 help="Code the input as independent frames of SIZE bytes (e.g. 8M) and end the "
                                      "archive with a seek table: frames code in parallel (-T) and `-d --range` "
                                      "decodes only the frames it needs (default: one frame)."))
        opts.append(click.option("--solid/--no-solid", default=DEFAULTS.solid, show_default=True,
                                 help="Also try one lzma/zstd chunk over a whole input of up to 16 MiB; keep the smaller."))
        opts.append(click.option("--history/--no-history", default=DEFAULTS.history, show_default=True,
                                 help="Mixed chunks read the rounds before theirs (--no-history: every chunk "
                                      "independent, decodable with any lanes)."))
        opts.append(click.option("--audio/--no-audio", default=DEFAULTS.audio, show_default=True,
                                 help="Mix in a sample predictor when the input is 16-bit PCM (a WAV file or raw "
                                      "samples, detected from its start)."))
        opts.append(click.option("--image/--no-image", default=DEFAULTS.image, show_default=True,
                                 help="Mix in a pixel predictor when the input is an 8-bit image (a PPM/PGM file, "
                                      "raw pixels detected from its start, or a PNG file, coded as its pixels)."))
    for o in reversed(opts):
        f = o(f)
    return f


FLAGS = {"model": "--model", "device": "--device", "threads": "-T/--threads", "lanes": "--lanes",
         "chunk_size": "--chunk-size", "workers": "--workers", "frame_size": "--frame-size",
         "processes": "-T/--threads", "level": "--level"}     # CodingOptions fields as the command line names them


def _options(kw) -> Options:
    """The command line's options; the coding ones as `CodingOptions` (whose defaults are the library's), an
    invalid value refused in one line naming its flag (a usage error: exit status 1)."""
    coding = {k: kw[k] for k in ("model", "device", "threads", "chunk_size", "lanes", "solid", "history", "audio",
                                 "image", "frame_size", "level") if kw.get(k) is not None}
    if kw.get("threads") is not None:          # -T N: N frames at once too, where the input has several
        coding["processes"] = kw["threads"]
    if coding.get("model") == "none":      # --model none: lzma/zstd/raw only
        coding.update(model=None, neural=False)
    try:
        coding = CodingOptions(**coding)
    except OptionError as e:
        raise click.UsageError(f"invalid {FLAGS.get(e.field, e.field)}: {e}", click.get_current_context(silent=True))
    return Options(output=kw.get("output"), stdout=kw.get("to_stdout", False), remove=kw.get("remove", False),
                   force=kw.get("force", False), verbosity=1 - kw.get("quiet", 0) + kw.get("verbose", 0),
                   recursive=kw.get("recursive", False), dictionary=kw.get("dictionary"), coding=coding,
                   byte_range=kw.get("byte_range"))


@cli.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, metavar="[FILE]...")
@lambda f: _common(f, compress=True)
def compress(files, **kw):
    """Compress each FILE to FILE.bzp (`-` or none: stdin to stdout)."""
    return run("compress", files, _options(kw))


@cli.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, metavar="[FILE.bzp]...")
@click.option("--range", "byte_range", type=RangeType(), metavar="START:END",
              help="Only bytes START to END (END excluded; either may be left out; 4K, 1M allowed) of the output, "
                   "to stdout unless -o is given; with a seek table (--frame-size) only the frames that hold them "
                   "are decoded.")
@_common
def decompress(files, **kw):
    """Decompress each FILE.bzp to FILE (`-` or none: stdin to stdout)."""
    return run("decompress", files, _options(kw))


@cli.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, metavar="[FILE.bzp]...")
@lambda f: _common(f, output=False)
def test(files, **kw):
    """Decode each archive and verify its checksum, writing nothing."""
    return run("test", files, _options(kw))


@cli.command("list", context_settings=CONTEXT)
@click.argument("files", nargs=-1, metavar="[FILE.bzp]...")
@lambda f: _common(f, output=False, coder=False)
def list_(files, **kw):
    """Show sizes, ratio, bits per byte, chunks by codec, model and checksum of each archive (no decoding)."""
    return run("list", files, _options(kw))


@cli.command("train-dict", context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, metavar="DIR_OR_FILE...")
@click.option("-o", "--output", required=True, metavar="DICT", help="Where to write the dictionary.")
@click.option("--maxdict", type=SizeType(), default=userdict.MAX_DICT_SIZE, metavar="SIZE",
              help=f"Sample bytes the dictionary keeps at most (default and maximum: "
                   f"{human(userdict.MAX_DICT_SIZE)}); files are taken evenly across the list.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing dictionary file.")
@click.option("-q", "--quiet", count=True, help="Only errors.")
@click.option("-v", "--verbose", count=True, help="(accepted for symmetry; one line is printed anyway)")
@click.option("--model", metavar="NAME|PATH", help="The model the dictionary is for (default: $BYTEZIP_MODEL or "
                                                   "bytezip-v1); archives made with the dictionary use it.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=DEFAULTS.device, show_default=True,
              help="Where the model runs while the mixer's start weights are learnt.")
@click.option("-T", "--threads", type=int, default=DEFAULTS.threads, metavar="N", help="CPU threads (0 = all cores).")
def train_dict(paths, output, maxdict, force, quiet, verbose, model, device, threads):
    """Build a user dictionary from sample files (directories are walked) for `bytezip -D DICT`, as zstd --train."""
    import torch
    coding = _options({"device": device, "threads": threads}).coding
    if coding.torch_threads:
        torch.set_num_threads(coding.torch_threads)
    if output != STDIO and os.path.exists(output) and not force:
        click.echo(f"bytezip: {output}: already exists; not overwritten (use -f to force)", err=True)
        return 1
    try:
        files = userdict.sample_files(paths)
        ud = userdict.train_files(files, model=model, device=resolve_device(coding.device), max_size=maxdict)
        blob = ud.to_bytes()
        if output == STDIO:
            _binary_stream("stdout").write(blob)
        else:
            with open(output, "wb") as f:
                f.write(blob)
    except BytezipError as e:
        click.echo(f"bytezip: {e}", err=True)
        return 1
    except OSError as e:
        click.echo(f"bytezip: {output}: {_os_message(e)}", err=True)
        return 1
    if quiet <= 0:
        click.echo(f"bytezip: {_display(output)}: dictionary {ud.digest.hex()} for model '{ud.model_id}', "
                   f"{plural(len(ud.data), 'sample byte')} from {plural(len(files), 'file')}, "
                   f"{plural(len(blob), 'byte')}", err=True)
    return 0


@cli.command(context_settings=dict(ignore_unknown_options=True, allow_extra_args=True, help_option_names=[]),
             add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train(args):
    """Train a model (all arguments go to bytezip.train; see `bytezip train --help`)."""
    from .train import main as train_main
    rv = train_main(list(args))
    return rv if isinstance(rv, int) else 0


def _bench_command() -> click.Command:
    """bytezip.bench's `bench_command`, imported only when asked for; a stand-in that says why if it fails."""
    try:
        from .bench import bench_command
        return bench_command
    except Exception as e:  # missing module or a broken import: the rest of the CLI must keep working
        reason = f"{type(e).__name__}: {e}"

    @click.command("bench", context_settings=dict(ignore_unknown_options=True, allow_extra_args=True),
                   help=f"Benchmark bytezip against other compressors (unavailable here: {reason}).")
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def unavailable(args):
        click.echo(f"bytezip: bench: not available ({reason})", err=True)
        return 1
    return unavailable


def main(argv: list[str] | None = None):
    """Console entry point: SIGTERM cleans up like ^C does."""
    def on_term(signum, frame):
        raise Terminated()
    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread
        pass
    cli.main(args=argv, prog_name="bytezip")


if __name__ == "__main__":
    main()
