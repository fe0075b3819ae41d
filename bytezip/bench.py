"""Benchmark: bytezip against the compressors people would otherwise pick, on text, images and audio.

One loop measures every compressor the same way: compress, decompress, compare with the input (a
compressor whose output does not decode to its input stops the run), time both directions. Compressors are
small objects in a registry (`REGISTRY`); adding a competitor is a few lines::

    register(PipeCodec("lz4-9", "lz4 -9", ["lz4", "-9", "-c"], ["lz4", "-d", "-c"]))

Inputs have a modality (text, other, image, audio), from the bench folder names or guessed from the file.
Images are measured as raw RGB pixels (decoded from the file, 3 bytes per pixel) and as the files
themselves; audio as its PCM samples and as the WAV file. Bits per byte are always 8 x compressed bytes
over the *raw* bytes (the file for text/other, the pixels or the PCM samples for image/audio), as in
shared/README.md, so the two representations of a file compare directly. The model's size is reported
separately, as the Large Text Compression Benchmark does: a line with the model files' size and the total
compressed size including it.

Classical codecs are run the way shared/README.md measured them: the zstd, gzip, flac and wavpack binaries
through stdin/stdout pipes, xz as python's lzma (preset 9 | extreme, byte-identical to `xz -9e`), brotli as
the python module with the CLI's 16 MiB window (lgwin 24; identical to `brotli -q 11`), PNG and WebP through Pillow, JPEG-XL through cjxl/djxl.
When a binary is missing, zstd and gzip fall back to their python modules (sizes then differ by a few bytes).

Entry points: `run_bench(...)` (returns the JSON-able dict) and the click command `bench_command`
(`bytezip bench`, or `python -m bytezip.bench`).
"""
from __future__ import annotations

import datetime
import gzip
import io
import json
import lzma
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import click

from .benchmarking import (DEFAULT_BENCH, BenchError, Info, Item, checked_options, collect_sources,  # noqa: F401
                           guess_modality, load_items, machine_info, make_wav, md_table, model_size, parse_size,
                           read_wav)

GROUP_ORDER = ("text", "other", "image", "audio", "image-file", "audio-file", "all")
MB = 1e6  # throughput in MB/s with MB = 10^6 bytes, as zstd -b reports



class RoundTripError(BenchError):
    """A compressor's output did not decode to its input. Never reported as a result."""


class Codec:
    """The compressor protocol. Subclasses set name/label and implement compress/decompress."""
    name: str = ""             # registry key, used by --compressors
    label: str = ""            # as shown in tables ("zstd -19")
    kind: str = "general"      # general | image | audio | model
    modalities: tuple[str, ...] | None = None   # None: every modality
    raw_only: bool = False     # domain codecs take pixels/PCM, not files

    def applies_to(self, modality: str, representation: str = "raw") -> bool:
        if self.modalities is not None and modality not in self.modalities:
            return False
        return not (self.raw_only and representation != "raw")

    def available(self) -> bool:
        return True

    def version(self) -> str:
        return ""

    def compress(self, data: bytes, info: Info | None = None) -> bytes:
        raise NotImplementedError

    def decompress(self, blob: bytes, info: Info | None = None) -> bytes:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "label": self.label, "kind": self.kind, "version": self.version(),
                "modalities": list(self.modalities) if self.modalities else "all",
                "input": "pixels/PCM only" if self.raw_only else "any bytes"}


class FunctionCodec(Codec):
    """A compressor given as two python functions of bytes."""

    def __init__(self, name, label, compress: Callable[[bytes], bytes], decompress: Callable[[bytes], bytes],
                 version: str | Callable[[], str] = "", available: Callable[[], bool] = lambda: True):
        self.name, self.label = name, label
        self._c, self._d, self._v, self._a = compress, decompress, version, available

    def available(self):
        return self._a()

    def version(self):
        return self._v() if callable(self._v) else self._v

    def compress(self, data, info=None):
        return self._c(data)

    def decompress(self, blob, info=None):
        return self._d(blob)


def _run(cmd: list[str], data: bytes) -> bytes:
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} exited with {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
    return p.stdout


def _tool_version(cmd: list[str], pattern=r"v?(\d+\.\d+(?:\.\d+)?)") -> str:
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        m = re.search(pattern, p.stdout.decode(errors="replace"))
        return f"{Path(cmd[0]).name} {m.group(1)}" if m else Path(cmd[0]).name
    except (OSError, subprocess.SubprocessError):
        return ""


class PipeCodec(Codec):
    """A command-line compressor reading stdin and writing stdout; optional python fallback when absent."""

    def __init__(self, name, label, compress_cmd: list[str], decompress_cmd: list[str],
                 fallback: Codec | None = None, version_cmd: list[str] | None = None):
        self.name, self.label = name, label
        self.ccmd, self.dcmd, self.fallback = compress_cmd, decompress_cmd, fallback
        self.version_cmd = version_cmd or [compress_cmd[0], "--version"]

    def _binary(self) -> bool:
        return shutil.which(self.ccmd[0]) is not None and shutil.which(self.dcmd[0]) is not None

    def available(self):
        return self._binary() or (self.fallback is not None and self.fallback.available())

    def version(self):
        if self._binary():
            return f"{_tool_version(self.version_cmd)} (CLI, stdin/stdout)"
        return self.fallback.version() if self.fallback else ""

    def compress(self, data, info=None):
        return _run(self.ccmd, data) if self._binary() else self.fallback.compress(data, info)

    def decompress(self, blob, info=None):
        return _run(self.dcmd, blob) if self._binary() else self.fallback.decompress(blob, info)


# -- image codecs (input: RGB pixels + width/height) -------------------------------------------------
def _image(data: bytes, info: Info):
    from PIL import Image
    return Image.frombytes("RGB", (info.width, info.height), data)


def _pixels(blob: bytes) -> bytes:
    from PIL import Image
    with Image.open(io.BytesIO(blob)) as im:
        return im.convert("RGB").tobytes()


class PillowCodec(Codec):
    kind, modalities, raw_only = "image", ("image",), True

    def __init__(self, name, label, fmt: str, **save_options):
        self.name, self.label, self.fmt, self.save_options = name, label, fmt, save_options

    def available(self):
        try:
            from PIL import features
            return self.fmt != "WEBP" or bool(features.check("webp"))
        except ImportError:
            return False

    def version(self):
        import PIL
        opts = ", ".join(f"{k}={v}" for k, v in self.save_options.items())
        return f"Pillow {PIL.__version__} ({self.fmt} {opts})"

    def compress(self, data, info=None):
        buf = io.BytesIO()
        _image(data, info).save(buf, self.fmt, **self.save_options)
        return buf.getvalue()

    def decompress(self, blob, info=None):
        return _pixels(blob)


class JxlCodec(Codec):
    """cjxl -q 100 -e 9 (mathematically lossless) on a PNG of the pixels; djxl back to PNG."""
    name, label, kind, modalities, raw_only = "jxl", "JPEG-XL e9", "image", ("image",), True

    def __init__(self, effort: int = 9):
        self.effort = effort

    def available(self):
        return bool(shutil.which("cjxl") and shutil.which("djxl"))

    def version(self):
        return f"{_tool_version(['cjxl', '--version'])} (-q 100 -e {self.effort})"

    def compress(self, data, info=None):
        with tempfile.TemporaryDirectory(prefix="bzbench") as d:
            _image(data, info).save(os.path.join(d, "in.png"), compress_level=1)
            _run(["cjxl", "-q", "100", "-e", str(self.effort), os.path.join(d, "in.png"), os.path.join(d, "out.jxl")], b"")
            return Path(d, "out.jxl").read_bytes()

    def decompress(self, blob, info=None):
        with tempfile.TemporaryDirectory(prefix="bzbench") as d:
            Path(d, "in.jxl").write_bytes(blob)
            _run(["djxl", os.path.join(d, "in.jxl"), os.path.join(d, "out.png")], b"")
            return _pixels(Path(d, "out.png").read_bytes())


# -- audio codecs (input: PCM + channels/rate/sample width) -----------------------------------------
class WavPipeCodec(PipeCodec):
    """An audio CLI that takes a WAV on stdin and gives one back when decoding (flac, wavpack)."""
    kind, modalities, raw_only = "audio", ("audio",), True

    def available(self):
        return self._binary()

    def compress(self, data, info=None):
        return _run(self.ccmd, make_wav(data, info.channels, info.rate, info.sampwidth))

    def decompress(self, blob, info=None):
        return read_wav(_run(self.dcmd, blob))[0]


# -- bytezip ------------------------------------------------------------------------------------------
class BytezipCodec(Codec):
    """bytezip through `bytezip.codec.Compressor` / `Decompressor`; options are `bytezip.options.CodingOptions`
    fields (model, device, chunk_size, lanes, threads...). The model is loaded once, outside the timings."""
    name, label, kind = "bytezip", "bytezip", "model"

    def __init__(self, options: dict | None = None):
        self.options = {k: v for k, v in (options or {}).items() if v is not None}
        self._c = self._d = None
        self.model_info: dict | None = None
        self.load_s = 0.0

    def available(self):
        try:
            import bytezip.codec  # noqa: F401
            return True
        except Exception:  # not written yet, or torch/constriction missing
            return False

    def _setup(self):
        if self._c is not None:
            return
        from bytezip import codec as bc
        from bytezip.options import coding_options
        opts = coding_options(**self.options)     # the command line's defaults: they are the library's
        t0 = time.perf_counter()
        self.model_info = model_size(opts.model)
        if opts.neural:          # load/convert the model once, share it with both sides
            opts = coding_options(opts, model=bc.coding_model(opts.model, opts.device))
            if self.model_info is not None:
                self.model_info.setdefault("id", opts.model.model_id)
        self._c = bc.Compressor(options=opts)
        self._d = bc.Decompressor(options=opts)
        self._d.decompress(self._c.compress(b"warm-up, not timed " * 64))   # first-call costs out of the timings
        self.load_s = time.perf_counter() - t0

    def version(self):
        try:
            import bytezip
            return f"bytezip {bytezip.__version__}"
        except Exception:
            return ""

    def compress(self, data, info=None):
        self._setup()
        return self._c.compress(data)

    def decompress(self, blob, info=None):
        self._setup()
        return self._d.decompress(blob)


class BytezipNeuralCodec(BytezipCodec):
    """bytezip with the model alone (no mixing): the baseline the mixer's gain is measured against. Only run
    when named (`--compressors bytezip,bytezip-neural`): it doubles the benchmark's slowest part."""
    name, label = "bytezip-neural", "bytezip model alone"

    def __init__(self, options: dict | None = None):
        super().__init__({**(options or {}), "mixing": False})


# -- the registry --------------------------------------------------------------------------------------
REGISTRY: dict[str, Codec] = {}


def register(codec: Codec) -> Codec:
    REGISTRY[codec.name] = codec
    return codec


def _zstd_py(level: int, long: bool = False) -> Codec:
    def params():
        import zstandard
        if long:
            return zstandard.ZstdCompressionParameters.from_level(level, enable_ldm=True, window_log=27)
        return zstandard.ZstdCompressionParameters.from_level(level)

    def comp(d):
        import zstandard
        return zstandard.ZstdCompressor(compression_params=params()).compress(d)

    def decomp(b):
        import zstandard
        return zstandard.ZstdDecompressor(max_window_size=1 << 31).decompress(b)

    def version():
        import zstandard
        return f"python-zstandard {zstandard.__version__} (libzstd {'.'.join(map(str, zstandard.ZSTD_VERSION))})"

    def avail():
        try:
            import zstandard  # noqa: F401
            return True
        except ImportError:
            return False
    return FunctionCodec("zstd-py", "zstd (python)", comp, decomp, version, avail)


def _brotli_ok():
    try:
        import brotli  # noqa: F401
        return True
    except ImportError:
        return False


def _brotli_version():
    import brotli
    return f"python brotli {getattr(brotli, '__version__', '?')} (quality 11, lgwin 24 as the brotli CLI)"


def _default_registry():
    register(PipeCodec("zstd-3", "zstd -3", ["zstd", "-3", "-c", "-q"], ["zstd", "-d", "-c", "-q"], _zstd_py(3)))
    register(PipeCodec("zstd-19", "zstd -19", ["zstd", "-19", "-c", "-q"], ["zstd", "-d", "-c", "-q"], _zstd_py(19)))
    register(PipeCodec("zstd-22-long", "zstd -22 --long", ["zstd", "--ultra", "-22", "--long", "-c", "-q"],
                       ["zstd", "-d", "--long", "-c", "-q"], _zstd_py(22, long=True)))
    register(FunctionCodec("xz-9e", "xz -9e", lambda d: lzma.compress(d, preset=9 | lzma.PRESET_EXTREME),
                           lzma.decompress, "python lzma (liblzma), preset 9 + PRESET_EXTREME, CRC64 check"))
    register(FunctionCodec("brotli-11", "brotli 11", lambda d: __import__("brotli").compress(d, quality=11, lgwin=24),
                           lambda b: __import__("brotli").decompress(b), _brotli_version, _brotli_ok))
    register(PipeCodec("gzip-9", "gzip -9", ["gzip", "-9", "-n", "-c"], ["gzip", "-d", "-c"],
                       FunctionCodec("gzip-py", "gzip (python)", lambda d: gzip.compress(d, 9, mtime=0),
                                     gzip.decompress, "python gzip (zlib), level 9")))
    register(PillowCodec("png", "PNG", "PNG", optimize=True))
    register(PillowCodec("webp", "WebP m6", "WEBP", lossless=True, method=6, quality=100))
    register(JxlCodec())
    register(WavPipeCodec("flac", "FLAC -8", ["flac", "-8", "-s", "-c", "-"], ["flac", "-d", "-s", "-c", "-"]))
    register(WavPipeCodec("wavpack", "WavPack -hhx6", ["wavpack", "-hhx6", "-q", "-y", "-", "-o", "-"],
                          ["wvunpack", "-q", "-y", "-", "-o", "-"]))
    register(BytezipCodec())
    register(BytezipNeuralCodec())


_default_registry()

OPT_IN = ("bytezip-neural",)    # run only when named exactly
ALIASES = {"classical": lambda n: REGISTRY[n].kind != "model", "all": lambda n: n not in OPT_IN,
           "general": lambda n: REGISTRY[n].kind == "general",
           "domain": lambda n: REGISTRY[n].kind in ("image", "audio")}


def select_codecs(spec: str | Iterable[str] | None, bytezip_options: dict | None = None,
                  warn: Callable[[str], None] = lambda s: None) -> tuple[list[Codec], list[str]]:
    """--compressors: comma-separated names, prefixes ("zstd") or aliases (all, classical, general,
    domain); "-name" removes from the selection (alone, from all). Returns (available codecs, missing)."""
    if spec is None:
        items = ["all"]
    else:
        items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
        if items and all(s.startswith("-") for s in items):
            items = ["all"] + items
    chosen: list[str] = []
    for item in items:
        neg, key = item.startswith("-"), item.lstrip("-").lower()
        if key in ALIASES:
            names = [n for n in REGISTRY if ALIASES[key](n)]
        else:
            names = [n for n in REGISTRY if n == key or (n not in OPT_IN and (n.startswith(key + "-")
                                                                                or REGISTRY[n].label.lower() == key))]
        if not names:
            raise BenchError(f"unknown compressor '{item}' (known: {', '.join(REGISTRY)}; aliases: {', '.join(ALIASES)})")
        for n in names:
            if neg and n in chosen:
                chosen.remove(n)
            elif not neg and n not in chosen:
                chosen.append(n)
    chosen.sort(key=list(REGISTRY).index)
    codecs, missing = [], []
    for n in chosen:
        c = REGISTRY[n]
        if isinstance(c, BytezipCodec):
            c = type(c)(bytezip_options)
        if c.available():
            codecs.append(c)
        else:
            missing.append(n)
            if spec is not None and any(not s.startswith("-") and s.lower() not in ALIASES for s in items):
                warn(f"{c.label} is not available here; skipped")
    return codecs, missing


def representations(modality: str) -> tuple[str, ...]:
    return ("raw", "file") if modality in ("image", "audio") else ("raw",)


# -- measuring ----------------------------------------------------------------------------------------
def _timed(fn, arg, min_time: float):
    """Run once; when that took under min_time, repeat (up to 10 times in all) and keep the fastest."""
    t0 = time.perf_counter()
    out = fn(arg)
    best = spent = time.perf_counter() - t0
    runs = 1
    while spent < min_time and runs < 10:
        t0 = time.perf_counter()
        fn(arg)
        dt = time.perf_counter() - t0
        best, spent, runs = min(best, dt), spent + dt, runs + 1
    return out, best


def measure(codec: Codec, item: Item, min_time: float = 0.1) -> dict:
    """Compress, decompress, compare, time. Raises RoundTripError when the output differs."""
    info = item.info
    blob, enc_s = _timed(lambda d: codec.compress(d, info), item.data, min_time)
    out, dec_s = _timed(lambda b: codec.decompress(b, info), blob, min_time)
    if out != item.data:
        where = next((i for i, (a, b) in enumerate(zip(out, item.data)) if a != b), min(len(out), len(item.data)))
        raise RoundTripError(
            f"{codec.label} did not round-trip {item.source.name} ({item.representation}): decoded "
            f"{len(out)} bytes for {len(item.data)}, first difference at byte {where}. Result not reported.")
    n = len(blob)
    return {"input_bytes": len(item.data), "raw_bytes": item.raw_bytes, "compressed_bytes": n,
            "bpb": 8 * n / item.raw_bytes if item.raw_bytes else 0.0,
            "ratio": len(item.data) / n if n else 0.0,
            "enc_s": enc_s, "dec_s": dec_s,
            "enc_MBps": len(item.data) / MB / enc_s if enc_s > 0 else None,
            "dec_MBps": len(item.data) / MB / dec_s if dec_s > 0 else None,
            "roundtrip_ok": True}


def _total(rows: list[dict]) -> dict:
    raw = sum(r["raw_bytes"] for r in rows)
    inp = sum(r["input_bytes"] for r in rows)
    comp = sum(r["compressed_bytes"] for r in rows)
    enc, dec = sum(r["enc_s"] for r in rows), sum(r["dec_s"] for r in rows)
    return {"files": len(rows), "input_bytes": inp, "raw_bytes": raw, "compressed_bytes": comp,
            "bpb": 8 * comp / raw if raw else 0.0, "ratio": inp / comp if comp else 0.0,
            "enc_s": enc, "dec_s": dec, "enc_MBps": inp / MB / enc if enc > 0 else None,
            "dec_MBps": inp / MB / dec if dec > 0 else None,
            "roundtrip_ok": all(r["roundtrip_ok"] for r in rows)}


def totals(files: list[dict], names: list[str]) -> dict:
    """Per group (modality for raw bytes, "<modality>-file" for image/audio files, "all" for every raw
    input): sums over the files each compressor coded. `complete` says it coded every file of the group."""
    groups: dict[str, list[dict]] = {}
    for f in files:
        groups.setdefault(f["group"], []).append(f)
        if f["representation"] == "raw":
            groups.setdefault("all", []).append(f)
    out = {}
    for g in sorted(groups, key=lambda g: GROUP_ORDER.index(g) if g in GROUP_ORDER else 99):
        fs = groups[g]
        entry = {"files": len(fs), "raw_bytes": sum(f["raw_bytes"] for f in fs),
                 "input_bytes": sum(f["input_bytes"] for f in fs), "compressors": {}}
        for name in names:
            rows = [f["results"][name] for f in fs if "compressed_bytes" in f["results"].get(name, {})]
            if rows:
                entry["compressors"][name] = {**_total(rows), "complete": len(rows) == len(fs)}
        out[g] = entry
    return out


# -- the benchmark ------------------------------------------------------------------------------------
def run_bench(paths=None, *, json_path=None, report_dir=None, files=None, limit_bytes=None, compressors=None,
              progress=True, bytezip_options=None, verbose=False, show=True, markdown=False, command=None,
              min_time: float = 0.1, include_files: bool = True, include_raw: bool = True, plots: bool = True,
              console=None) -> dict:
    """Run the benchmark and return every number as a JSON-able dict (also written to json_path, and with
    a markdown report and plots to report_dir). paths: files or folders (default: the bench corpus).
    files: glob(s) on the names shown (e.g. "text/*"). compressors: see `select_codecs`. progress: a
    progress bar on stderr when it is a terminal. bytezip_options: keyword arguments for bytezip's
    Compressor/Decompressor (model, device, chunk_size, lanes, threads). min_time: fast codecs are
    repeated until this many seconds and timed by their fastest run (0: time one run). include_files:
    also measure image/audio files as stored (False: pixels/PCM only, half the work for slow codecs);
    include_raw: the pixels/PCM and text/other inputs (False: files only, to run the two halves apart)."""
    from rich.console import Console

    out_console = console or Console(width=None if sys.stdout.isatty() else 200)
    err_console = Console(stderr=True)
    warnings: list[str] = []

    def warn(msg):
        warnings.append(msg)
        if progress:
            err_console.print(f"[yellow]warning:[/] {msg}", highlight=False)

    bytezip_options = dict(bytezip_options or {})
    codecs, missing = select_codecs(compressors, bytezip_options, warn)
    if not codecs:
        raise BenchError("no compressor available among those asked for")
    for c in codecs:
        if isinstance(c, BytezipCodec):   # load the model now: a missing model fails before any work
            try:
                c._setup()
            except Exception as e:
                raise BenchError(f"cannot set up bytezip's codec: {e}") from e
    sources = collect_sources(paths, files)
    if not sources:
        raise BenchError("no input files" + (f" match {files!r}" if files else ""))

    kept = lambda r: include_raw if r == "raw" else include_files
    reps = lambda m: [r for r in representations(m) if kept(r)]
    steps = sum(1 for s in sources for r in reps(s.modality) for c in codecs if c.applies_to(s.modality, r))
    show_progress = progress and err_console.is_terminal
    results: list[dict] = []
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.perf_counter()

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err_console, disable=not show_progress, transient=True)
    with bar:
        task = bar.add_task("bench", total=steps)
        for src in sources:
            items = [i for i in load_items(src, limit_bytes, warn) if kept(i.representation)]
            for item in items:
                entry = {"name": src.name, "path": str(src.path), "modality": src.modality,
                         "representation": item.representation, "group": item.group,
                         "input_bytes": len(item.data), "raw_bytes": item.raw_bytes, "results": {}}
                for k in ("width", "height", "channels", "rate", "sampwidth"):
                    if getattr(item.info, k):
                        entry[k] = getattr(item.info, k)
                for codec in codecs:
                    if not codec.applies_to(src.modality, item.representation):
                        continue
                    bar.update(task, description=f"{src.name} ({item.representation}) [bold]{codec.label}[/]")
                    try:
                        r = measure(codec, item, min_time)
                    except RoundTripError:
                        raise
                    except Exception as e:
                        if codec.kind == "model":
                            raise
                        warn(f"{codec.label} failed on {src.name} ({item.representation}): {e}")
                        r = {"error": str(e), "roundtrip_ok": False}
                    entry["results"][codec.name] = r
                    bar.advance(task)
                    if verbose and "compressed_bytes" in r:
                        (bar.console if show_progress else err_console).print(zstd_line(entry, codec, r), markup=False, highlight=False)
                results.append(entry)

    model = None
    for c in codecs:
        if isinstance(c, BytezipCodec) and c._c is not None:
            model = dict(c.model_info or {"name": "unknown", "bytes": None})
            model["load_s"] = c.load_s
    res = {
        "version": 1,
        "date": started.isoformat(timespec="seconds"),
        "elapsed_s": time.perf_counter() - t_start,
        "command": command or shlex.join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "paths": [str(p) for p in (paths or [DEFAULT_BENCH])],
        "files_glob": files, "limit_bytes": limit_bytes, "include_files": include_files, "include_raw": include_raw,
        "machine": machine_info(bytezip_options.get("device"), any(c.kind == "model" for c in codecs)),
        "bytezip_options": {k: (v if isinstance(v, (str, int, float, bool, type(None))) else type(v).__name__)
                            for k, v in bytezip_options.items()},
        "compressors": [c.describe() for c in codecs],
        "unavailable": missing,
        "model": model,
        "files": results,
        "warnings": warnings,
    }
    add_totals(res)
    finish(res, json_path, report_dir, show, markdown, out_console, plots)
    return res


def add_totals(res: dict) -> None:
    """Group totals of res["files"] for every compressor in res["compressors"], with the model's size."""
    res["totals"] = totals(res["files"], [c["name"] for c in res["compressors"]])
    model = res.get("model")
    if model and model.get("bytes") is not None:
        for g in res["totals"].values():
            t = g["compressors"].get("bytezip")
            if t:
                t["model_bytes"] = model["bytes"]
                t["compressed_plus_model_bytes"] = t["compressed_bytes"] + model["bytes"]
                t["bpb_plus_model"] = 8 * t["compressed_plus_model_bytes"] / t["raw_bytes"] if t["raw_bytes"] else 0.0


def merge_results(parts: list[dict], command: str | None = None) -> dict:
    """One result from runs over disjoint inputs (e.g. two processes, one per half of the corpus): files and
    compressors joined, totals recomputed. The runs must share the machine, model and bytezip options."""
    first = parts[0]
    for key in ("version", "bytezip_options", "model", "limit_bytes"):   # (which representations: any)
        differ = [p.get(key) for p in parts if p.get(key) != first.get(key)]
        if key == "model":   # load times and checkouts differ between processes; the model itself must not
            same = lambda m: {k: v for k, v in (m or {}).items() if k not in ("load_s", "files")}
            differ = [p for p in parts if same(p.get(key)) != same(first.get(key))]
        if differ:
            raise BenchError(f"cannot merge: the runs differ in {key}")
    seen = [(f["name"], f["representation"]) for p in parts for f in p["files"]]
    if len(seen) != len(set(seen)):
        raise BenchError("cannot merge: an input was measured by more than one run")
    compressors = {}
    for p in parts:
        for c in p["compressors"]:
            compressors.setdefault(c["name"], c)
    res = {**first, "date": min(p["date"] for p in parts),
           "elapsed_s": max(p["elapsed_s"] for p in parts),
           "command": command or first["command"], "merged_commands": [p["command"] for p in parts],
           "files_glob": [g for p in parts for g in _as_list(p.get("files_glob"))] or None,
           "compressors": list(compressors.values()),
           "unavailable": sorted({u for p in parts for u in p.get("unavailable", [])}),
           "files": sorted((f for p in parts for f in p["files"]), key=lambda f: (f["name"], f["representation"])),
           "warnings": [w for p in parts for w in p.get("warnings", [])]}
    add_totals(res)
    return res


def finish(res: dict, json_path=None, report_dir=None, show=True, markdown=False, console=None,
           plots=True) -> None:
    """Write the JSON and the report (with its plots unless told not to), print the tables."""
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(res, indent=1) + "\n")
    if report_dir:
        write_report(res, Path(report_dir), plots)
    if show:
        from rich.console import Console
        console = console or Console(width=None if sys.stdout.isatty() else 200)
        if markdown:
            console.print(markdown_tables(res), markup=False, highlight=False)
        else:
            print_tables(res, console)


# -- output ------------------------------------------------------------------------------------------
def _labels(res: dict) -> dict[str, str]:
    return {c["name"]: c["label"] for c in res["compressors"]}


def _as_list(x) -> list:
    return [x] if isinstance(x, str) else list(x or [])


def _mbps(x) -> str:
    return "-" if x is None else (f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.3f}")


def zstd_line(entry: dict, codec: Codec, r: dict) -> str:
    rep = "" if entry["representation"] == "raw" else " (file)"
    return (f"{entry['name']}{rep} [{codec.label}] : {r['input_bytes']} -> {r['compressed_bytes']} "
            f"({r['ratio']:.3f}x, {r['bpb']:.3f} bpb), {_mbps(r['enc_MBps'])} MB/s, {_mbps(r['dec_MBps'])} MB/s")


GROUP_TITLE = {"text": "text", "other": "other", "image": "image (raw RGB pixels)", "audio": "audio (PCM samples)",
               "image-file": "image files as stored (bpb against pixels)",
               "audio-file": "audio files as stored (bpb against PCM)", "all": "all raw inputs"}


def _group_codecs(res: dict, group: str) -> list[str]:
    names = [c["name"] for c in res["compressors"]]
    return [n for n in names if any(n in f["results"] for f in res["files"] if f["group"] == group)]


def table_rows(res: dict, group: str) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, rows (files then TOTAL) of bpb, and for each row the column index of the best value."""
    labels = _labels(res)
    names = _group_codecs(res, group)
    header = ["file", "raw bytes"] + [labels[n] for n in names]
    rows, best = [], []
    files = [f for f in res["files"] if f["group"] == group]
    tot = res["totals"].get(group, {}).get("compressors", {})
    for f in files + [None]:
        if f is None:
            vals = [tot[n]["bpb"] if n in tot and tot[n]["complete"] else None for n in names]
            row = ["TOTAL", f"{res['totals'][group]['raw_bytes']:,}"]
        else:
            vals = [f["results"].get(n, {}).get("bpb") for n in names]
            row = [f["name"], f"{f['raw_bytes']:,}"]
        row += ["" if v is None else f"{v:.3f}" for v in vals]
        present = [(v, i) for i, v in enumerate(vals) if v is not None]
        best.append(2 + min(present)[1] if present else -1)
        rows.append(row)
    return header, rows, best


def summary_rows(res: dict) -> tuple[list[str], list[list[str]]]:
    """One row per group; a column per compressor with a result in some group (text-only input: no empty
    image and audio columns)."""
    labels = _labels(res)
    names = [c["name"] for c in res["compressors"]
             if any(c["name"] in t["compressors"] and t["compressors"][c["name"]]["complete"]
                    for t in res["totals"].values())]
    header = ["group", "raw bytes"] + [labels[n] for n in names]
    rows = []
    for g, t in res["totals"].items():
        cs = t["compressors"]
        rows.append([g, f"{t['raw_bytes']:,}"] + [f"{cs[n]['bpb']:.3f}" if n in cs and cs[n]["complete"] else ""
                                                   for n in names])
    return header, rows


def speed_rows(res: dict) -> tuple[list[str], list[list[str]]]:
    """Throughput per compressor over everything it coded (raw and file inputs)."""
    labels = _labels(res)
    header = ["compressor", "version", "inputs", "input bytes", "compressed", "enc MB/s", "dec MB/s"]
    rows = []
    for c in res["compressors"]:
        rs = [f["results"][c["name"]] for f in res["files"] if "compressed_bytes" in f["results"].get(c["name"], {})]
        if not rs:
            continue
        t = _total(rs)
        rows.append([labels[c["name"]], c["version"], str(t["files"]), f"{t['input_bytes']:,}",
                     f"{t['compressed_bytes']:,}", _mbps(t["enc_MBps"]), _mbps(t["dec_MBps"])])
    return header, rows


def model_line(res: dict) -> str | None:
    """Large Text Compression Benchmark style: the model counted separately, then the total including it."""
    m = res.get("model")
    t = res["totals"].get("all", {}).get("compressors", {}).get("bytezip")
    if not m or m.get("bytes") is None or not t:
        return None
    return (f"bytezip model '{m.get('id') or m['name']}': {m['bytes']:,} bytes. All raw inputs "
            f"({t['raw_bytes']:,} bytes): compressed {t['compressed_bytes']:,} bytes ({t['bpb']:.3f} bpb); "
            f"including the model {t['compressed_plus_model_bytes']:,} bytes ({t['bpb_plus_model']:.3f} bpb).")


def print_tables(res: dict, console) -> None:
    from rich.table import Table
    for g in res["totals"]:
        if g == "all":
            continue
        header, rows, best = table_rows(res, g)
        tab = Table(title=f"{GROUP_TITLE.get(g, g)}: bits per byte (lower is better)", title_justify="left")
        for i, h in enumerate(header):
            tab.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for i, (row, b) in enumerate(zip(rows, best)):
            cells = [f"[bold green]{c}[/]" if j == b else c for j, c in enumerate(row)]
            tab.add_row(*cells, end_section=i == len(rows) - 2)
        console.print(tab)
    header, rows = summary_rows(res)
    tab = Table(title="totals per group: bits per byte of the raw bytes", title_justify="left")
    for i, h in enumerate(header):
        tab.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        tab.add_row(*r)
    console.print(tab)
    header, rows = speed_rows(res)
    keep = [i for i in range(len(header)) if i != 1 or console.width >= 140]   # versions: --list, the report
    tab = Table(title="throughput (MB = 10^6 bytes of input per second)", title_justify="left")
    for i in keep:
        tab.add_column(header[i], justify="left" if i < 2 else "right")
    for r in rows:
        tab.add_row(*[r[i] for i in keep])
    console.print(tab)
    line = model_line(res)
    if line:
        console.print(line, highlight=False)
    if res["unavailable"]:
        console.print(f"not available here: {', '.join(res['unavailable'])}", highlight=False)


def markdown_tables(res: dict) -> str:
    parts = ["### Totals: bits per byte of the raw bytes (lower is better)", "", md_table(*summary_rows(res)), ""]
    line = model_line(res)
    if line:
        parts += [line, ""]
    parts += ["### Throughput (MB = 10^6 bytes of input per second)", "", md_table(*speed_rows(res), left=2), ""]
    for g in res["totals"]:
        if g != "all":
            parts += [f"### {GROUP_TITLE.get(g, g)}: bits per byte", "", md_table(*table_rows(res, g)), ""]
    return "\n".join(parts)


def write_report(res: dict, out: Path, plots: bool = True) -> None:
    """README.md (tables, machine, device, date, command), results.json and two PNG plots (`plots`)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    images = plot(res, out) if plots else []
    m = res["machine"]
    machine = (f"{m.get('cpu', '?')}, {m.get('cpus_usable', m.get('cpu_count'))} usable CPU cores"
               f"{', %s GiB RAM' % m['memory_GiB'] if 'memory_GiB' in m else ''}; {m['platform']}; "
               f"Python {m['python']}" + (f"; torch {m['torch']} ({m.get('torch_threads')} threads)" if "torch" in m else ""))
    device = m.get("device", "cpu") + (f" ({m['gpu']})" if "gpu" in m else "")
    versions = "\n".join(f"- {c['label']}: {c['version']}" for c in res["compressors"])
    notes = [
        "- Bits per byte = 8 x compressed bytes / raw bytes, where the raw bytes are the file for text and other, "
        "the decoded RGB pixels (3 bytes per pixel) for images and the PCM samples for audio. The `-file` groups "
        "compress the PNG/WAV files as stored, still counted against their pixels/PCM, so they compare directly.",
        "- PNG, WebP, JPEG-XL, FLAC and WavPack code the pixels/PCM (no metadata such as ICC profiles).",
        "- Every result was decompressed and compared with its input before being reported.",
        "- Throughput counts input bytes; command-line codecs include process start-up and pipes. Inputs that "
        "code in under 0.1 s are repeated and timed by the fastest run.",
    ]
    if res.get("limit_bytes"):
        notes.append(f"- Inputs truncated to {res['limit_bytes']:,} bytes (`--limit-bytes`).")
    if res.get("warnings"):
        notes += [f"- warning: {w}" for w in res["warnings"]]
    text = [
        "# bytezip benchmark", "",
        f"- Date: {res['date']} (run took {res['elapsed_s']:.0f} s)",
        f"- Machine: {machine}",
        f"- Device: {device}; load average at start {m.get('loadavg_1m', '?')}",
        f"- Inputs: {', '.join(res['paths'])}" + (f" matching {', '.join(f'`{g}`' for g in _as_list(res['files_glob']))}" if res.get("files_glob") else ""),
        "", "Regenerate with:", "", "```sh", res["command"], "```", "",
    ]
    text += [markdown_tables(res), ""]
    text += [f"![{p.stem}]({p.name})" for p in images] + [""]
    text += ["## Compressors", "", versions, "", "## Notes", ""] + notes + [""]
    (out / "README.md").write_text("\n".join(text))


def plot(res: dict, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = _labels(res)
    groups = [g for g in res["totals"] if g != "all"]
    names = [c["name"] for c in res["compressors"]]
    cmap = plt.get_cmap("tab20")
    color = {n: cmap(i % 20) for i, n in enumerate(names)}
    paths = []

    fig, ax = plt.subplots(figsize=(max(7, 1.5 * len(groups) + 3.5), 4.5))
    width = 0.8 / max(1, len(names))
    for i, n in enumerate(names):
        xs, ys = [], []
        for j, g in enumerate(groups):
            t = res["totals"][g]["compressors"].get(n)
            if t and t["complete"]:
                xs.append(j + (i - (len(names) - 1) / 2) * width)
                ys.append(t["bpb"])
        if xs:
            ax.bar(xs, ys, width, label=labels[n], color=color[n])
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("bits per byte of raw bytes (lower is better)")
    ax.set_title("Compressed size per modality")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    paths.append(out / "bpb_by_modality.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8.5, 5))
    markers = dict(zip(GROUP_ORDER, "osD^vP*"))
    for g in groups:
        for n in names:
            t = res["totals"][g]["compressors"].get(n)
            if t and t["complete"] and t["dec_MBps"]:
                ax.scatter(t["dec_MBps"], t["raw_bytes"] / t["compressed_bytes"], color=color[n],
                           marker=markers.get(g, "x"), s=40)
    for n in names:
        ax.scatter([], [], color=color[n], label=labels[n])
    for g in groups:
        ax.scatter([], [], color="gray", marker=markers.get(g, "x"), label=g)
    ax.set_xscale("log")
    ax.set_xlabel("decode throughput, MB/s (log scale)")
    ax.set_ylabel("compression ratio (raw bytes / compressed = 8 / bpb)")
    ax.set_title("Ratio against decode speed (one point per compressor and group)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    paths.append(out / "ratio_vs_decode_speed.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


# -- the command ----------------------------------------------------------------------------------------
def _command_string() -> str:
    argv = sys.argv[1:]
    if "bench" in argv:
        argv = argv[argv.index("bench") + 1:]
    return shlex.join(["bytezip", "bench"] + argv)


def list_compressors(console=None) -> None:
    from rich.console import Console
    from rich.table import Table
    tab = Table(title="compressors (bytezip bench --compressors NAME,...)", title_justify="left")
    for h in ("name", "label", "applies to", "available", "version"):
        tab.add_column(h)
    for c in REGISTRY.values():
        ok = c.available()
        mods = ", ".join(c.modalities) if c.modalities else "all"
        if c.raw_only:
            mods += " (pixels/PCM)"
        tab.add_row(c.name, c.label, mods, "yes" if ok else "no", c.version() if ok else "")
    (console or Console()).print(tab)


@click.command("bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write every number to this JSON file.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write README.md, results.json and PNG plots to this folder.")
@click.option("--files", "files", multiple=True, metavar="GLOB", help="Only inputs whose name matches (e.g. 'text/*'); repeatable.")
@click.option("--limit-bytes", "limit_bytes", metavar="N", help="Truncate each input to N bytes (64K, 1M...).")
@click.option("--compressors", "-c", "compressors", metavar="LIST",
              help="Comma-separated names/prefixes/aliases (all, classical, general, domain); -NAME removes, "
                   "e.g. --compressors=-bytezip. Default: all available.")
@click.option("--model", "-m", default=None, help="bytezip model name or path prefix (default: the shipped model).")
@click.option("--device", default=None, help="bytezip device: auto, cpu, cuda (default: bytezip's, auto).")
@click.option("--chunk-size", type=int, default=None, help="bytezip chunk size (as bytezip --chunk-size).")
@click.option("--lanes", type=int, default=None, help="bytezip lanes: chunks coded together (as bytezip --lanes).")
@click.option("--level", type=click.IntRange(1, 9), default=None,
              help="bytezip's level, 1 (fastest) to 9 (smallest), as bytezip -1 ... -9 (default: 6).")
@click.option("--threads", type=int, default=None, help="bytezip torch threads (as bytezip -T).")
@click.option("--no-mixing", is_flag=True, help="bytezip with the model alone (no match/context mixing).")
@click.option("--no-solid", is_flag=True, help="bytezip without the whole-input zstd fallback.")
@click.option("--min-time", type=float, default=0.1, show_default=True,
              help="Repeat fast codecs up to this many seconds and time the fastest run (0: one run).")
@click.option("--no-files", is_flag=True, help="Measure images/audio as pixels/PCM only, not also as files.")
@click.option("--no-raw", is_flag=True, help="Measure images/audio as files only (and skip text/other).")
@click.option("--markdown", is_flag=True, help="Print markdown tables instead of rich tables.")
@click.option("--no-plots", is_flag=True, help="A --report without the PNG plots (e.g. one kept in git).")
@click.option("--merge", "merge", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="JSON", help="Join the --json results of runs over disjoint inputs (e.g. one process per "
                                   "half of the corpus) into one result and report; repeatable.")
@click.option("--verbose", "-v", is_flag=True, help="A zstd-like line per file and compressor as it finishes.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or warnings on stderr.")
@click.option("--list", "list_only", is_flag=True, help="List the compressors and whether they are available, then exit.")
@click.option("--speed", is_flag=True,
              help="Instead: bytezip's encode/decode bytes/s on 1 MB each of held-out text, image and audio (or on "
                   "PATHS), FLOPs per byte against the measured matmul rate, where decode time goes (bytezip.speed).")
@click.option("--sweep-lanes", default=None, metavar="LIST",
              help="With --speed: decode bytes/s at these lanes (default 1,16,64,256; '' for none).")
def bench_command(paths, json_path, report_dir, files, limit_bytes, compressors, model, device, chunk_size, lanes,
                  level, threads, no_mixing, no_solid, min_time, no_files, no_raw, markdown, no_plots, merge, verbose, quiet,
                  list_only, speed, sweep_lanes):
    """Compressed size (bits per byte) and speed of bytezip against zstd, xz, brotli, gzip, PNG, WebP,
    JPEG-XL, FLAC and WavPack on PATHS (default: the bench corpus, ../shared/corpus/bench).
    With --speed, bytezip's own throughput report instead (see bytezip.speed)."""
    if list_only:
        list_compressors()
        return
    if merge:
        parts = []
        for p in merge:
            try:
                parts.append(json.loads(p.read_text()))
            except (OSError, ValueError) as e:
                raise BenchError(f"{p}: not a bench result ({e})") from None
        finish(merge_results(parts, _command_string()), json_path, report_dir, markdown=markdown,
               plots=not no_plots)
        return
    options = {"model": model, "device": device, "chunk_size": chunk_size, "lanes": lanes, "level": level,
               "threads": threads,
               "mixing": False if no_mixing else None, "solid": False if no_solid else None}
    options = {k: v for k, v in options.items() if v is not None}
    checked_options(options)
    if speed:
        from .speed import _parse_lanes, run_speed, samples_from_paths
        if report_dir or files or compressors:
            raise BenchError("--speed takes no --report, --files or --compressors")
        limit = parse_size(limit_bytes)
        run_speed(samples_from_paths(paths, limit) if paths else None, model=model, device=device, lanes=lanes,
                  chunk_size=chunk_size, threads=threads, limit_bytes=limit, sweep_lanes=_parse_lanes(sweep_lanes),
                  json_path=json_path, markdown=markdown, progress=not quiet, command=_command_string())
        return
    run_bench(list(paths) or None, json_path=json_path, report_dir=report_dir, files=list(files) or None,
              limit_bytes=parse_size(limit_bytes), compressors=compressors, progress=not quiet,
              bytezip_options=options, verbose=verbose,
              markdown=markdown, command=_command_string(), min_time=min_time, include_files=not no_files,
              include_raw=not no_raw, plots=not no_plots)


if __name__ == "__main__":
    bench_command()
