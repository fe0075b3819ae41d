"""What both benchmarks share (`bytezip.bench`, sizes against other compressors, and `bytezip.speed`,
bytezip's own throughput): the inputs (corpus files found and their modality guessed, images as pixels and
audio as PCM), the machine's description, the model's size, sizes like 64K, markdown tables and the error
they report in one line.

Why a module of its own: `bytezip.speed` needed these from `bytezip.bench`, and `bench --speed` needs
`bytezip.speed`, an import cycle; now both import this module, which imports neither.
"""
from __future__ import annotations

import fnmatch
import io
import os
import platform
import re
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import click

MODALITIES = ("text", "other", "image", "audio")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BENCH = REPO_ROOT.parent / "shared" / "corpus" / "bench"
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm",
             ".tga", ".qoi"}
AUDIO_EXT = {".wav", ".wave", ".flac", ".aif", ".aiff", ".ogg"}
TEXT_EXT = {".txt", ".md", ".rst", ".html", ".htm", ".xml", ".json", ".csv", ".tsv", ".c", ".h", ".cc",
            ".cpp", ".hpp", ".py", ".js", ".ts", ".java", ".rs", ".go", ".sh", ".lsp", ".lisp", ".tex",
            ".css", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".log", ".svg", ".sql", ".pl", ".rb"}


class BenchError(click.ClickException):
    """A benchmark that cannot run as asked (bad path, unknown compressor...): one line `bytezip: ...`, as
    every bytezip error (the `bytezip` command prints it so itself; this is for `python -m bytezip.bench`)."""

    def show(self, file=None) -> None:
        click.echo(f"bytezip: {' '.join(self.format_message().split())}", file=file, err=file is None)


# -- what a compressor sees -------------------------------------------------------------------------
@dataclass(frozen=True)
class Info:
    """Side information about an input. representation "raw" is the file's bytes for text/other, RGB
    pixels (width x height x 3, row-major) for images, interleaved little-endian PCM for audio; "file" is
    an image or audio file as stored."""
    modality: str
    representation: str = "raw"
    width: int = 0
    height: int = 0
    channels: int = 0
    rate: int = 0
    sampwidth: int = 0


# -- WAV files ----------------------------------------------------------------------------------------
def make_wav(pcm: bytes, channels: int, rate: int, sampwidth: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(sampwidth)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def read_wav(blob: bytes) -> tuple[bytes, int, int, int]:
    """WAV bytes -> (pcm, channels, rate, sampwidth); trusts the data actually present over header sizes."""
    with wave.open(io.BytesIO(blob)) as w:
        return w.readframes(w.getnframes()), w.getnchannels(), w.getframerate(), w.getsampwidth()


# -- inputs -------------------------------------------------------------------------------------------
@dataclass
class Source:
    name: str          # shown and matched by --files: path relative to the argument it came from
    path: Path
    modality: str


@dataclass
class Item:
    source: Source
    representation: str   # raw | file
    data: bytes
    raw_bytes: int        # bits per byte are counted against this
    info: Info

    @property
    def group(self) -> str:
        return self.source.modality if self.representation == "raw" else f"{self.source.modality}-file"


def guess_modality(path: Path, folders: Iterable[str] = ()) -> str:
    """From the nearest of `folders` named text/other/image/audio, else the extension, else the bytes."""
    for part in reversed(list(folders)):
        if part in MODALITIES:
            return part
    ext = path.suffix.lower()
    if ext in IMAGE_EXT:
        return "image"
    if ext in AUDIO_EXT:
        return "audio"
    if ext in TEXT_EXT:
        return "text"
    with open(path, "rb") as f:
        head = f.read(65536)
    if not head or b"\0" in head:
        return "other"
    try:
        s = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:   # not just a character cut at the end of the sample
            return "other"
        s = head[:e.start].decode("utf-8")
    printable = sum(c.isprintable() or c in "\n\r\t\f" for c in s)
    return "text" if printable >= 0.95 * max(1, len(s)) else "other"


def collect_sources(paths: Iterable[str | os.PathLike] | None, files: str | Iterable[str] | None = None) -> list[Source]:
    if not paths:
        if not DEFAULT_BENCH.is_dir():
            raise BenchError(f"no paths given and the bench corpus ({DEFAULT_BENCH}) is not here")
        paths = [DEFAULT_BENCH]
    globs = [g.strip() for g in ([files] if isinstance(files, str) else (files or [])) for g in g.split(",") if g.strip()]
    out: list[Source] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and not any(s.startswith(".") for s in f.relative_to(p).parts))
            for f in found:
                rel = f.relative_to(p)
                out.append(Source(rel.as_posix(), f, guess_modality(f, (p.resolve().name,) + rel.parent.parts)))
        elif p.is_file():
            out.append(Source(p.name, p, guess_modality(p, (p.resolve().parent.name,))))
        else:
            raise BenchError(f"{p}: no such file or directory")
    if globs:
        out = [s for s in out if any(fnmatch.fnmatch(s.name, g) or fnmatch.fnmatch(s.path.name, g) for g in globs)]
    return out


def load_items(src: Source, limit_bytes: int | None = None, warn: Callable[[str], None] = lambda s: None) -> list[Item]:
    """The representations of one input, each truncated to limit_bytes (pixels to whole rows, PCM to
    whole frames). A truncated file representation counts bits per byte against its own length."""
    raw_file = src.path.read_bytes()
    cut = (lambda b: b[:limit_bytes]) if limit_bytes else (lambda b: b)
    if src.modality == "image":
        try:
            from PIL import Image
            with Image.open(io.BytesIO(raw_file)) as im:
                im.load()
                rgb = im.convert("RGB")
            w, h = rgb.size
            pixels = rgb.tobytes()
            if limit_bytes and len(pixels) > limit_bytes:
                h = max(1, limit_bytes // (3 * w))
                pixels = pixels[:3 * w * h]
            file_data = cut(raw_file)
            return [Item(src, "raw", pixels, len(pixels), Info("image", "raw", width=w, height=h)),
                    Item(src, "file", file_data, len(file_data) if len(file_data) < len(raw_file) else len(pixels),
                         Info("image", "file"))]
        except Exception as e:
            warn(f"{src.name}: cannot decode as an image ({e}); measured as other")
            src.modality = "other"
    if src.modality == "audio":
        try:
            pcm, ch, rate, sw = read_audio(src.path, raw_file)
            if limit_bytes and len(pcm) > limit_bytes:
                frame = ch * sw
                pcm = pcm[:max(frame, limit_bytes // frame * frame)]
            file_data = cut(raw_file)
            return [Item(src, "raw", pcm, len(pcm), Info("audio", "raw", channels=ch, rate=rate, sampwidth=sw)),
                    Item(src, "file", file_data, len(file_data) if len(file_data) < len(raw_file) else len(pcm),
                         Info("audio", "file"))]
        except Exception as e:
            warn(f"{src.name}: cannot decode as audio ({e}); measured as other")
            src.modality = "other"
    data = cut(raw_file)
    return [Item(src, "raw", data, len(data), Info(src.modality))]


def read_audio(path: Path, blob: bytes) -> tuple[bytes, int, int, int]:
    try:
        return read_wav(blob)      # integer PCM WAV: the samples exactly as stored
    except (wave.Error, EOFError):
        import soundfile
        samples, rate = soundfile.read(io.BytesIO(blob), dtype="int16", always_2d=True)
        return samples.astype("<i2").tobytes(), samples.shape[1], rate, 2


# -- the machine, the model, sizes and tables ---------------------------------------------------------
def machine_info(device: str | None = None, with_torch: bool = False) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": platform.processor(),
            "cpu_count": os.cpu_count()}
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_GiB"] = round(int(line.split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    info["device"] = device or "cpu"
    if with_torch:
        try:
            import torch
            info["torch"] = torch.__version__
            info["torch_threads"] = torch.get_num_threads()
            if str(device or "cpu").startswith(("cuda", "auto")) and torch.cuda.is_available():
                info["gpu"] = torch.cuda.get_device_name(0)
        except Exception:
            pass
    return info


def model_size(model) -> dict | None:
    """Bytes of the model as shipped (safetensors + json), LTCB style. A `Megabyte` object counts as its
    safetensors serialisation plus its config; a name or path prefix resolves as bytezip.codec does."""
    try:
        from bytezip.model import Megabyte
    except Exception:
        Megabyte = ()
    if isinstance(model, Megabyte):
        from bytezip.model import canonical_weights
        n = len(canonical_weights(model)) + len(model.cfg.to_json().encode())
        return {"name": "custom (in memory)", "files": [], "bytes": n, "params": model.num_params()}
    if model is not None and not isinstance(model, (str, os.PathLike)):
        return None
    try:
        from bytezip.loading import resolve_model_path
        base = resolve_model_path(model)
    except Exception:
        return None
    files = [Path(str(base) + ext) for ext in (".safetensors", ".json")]
    return {"name": base.name, "files": [str(f) for f in files], "bytes": sum(f.stat().st_size for f in files)}


def parse_size(value) -> int | None:
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)i?[bB]?\s*", str(value))
    if not m:
        raise click.BadParameter(f"not a size: {value!r} (e.g. 65536, 64K, 1M)")
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]


def md_table(header: list[str], rows: list[list[str]], best: list[int] | None = None, left: int = 1) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|"]
    for k, r in enumerate(rows):
        cells = [c.replace("|", "\\|") for c in r]
        cells = [f"**{c}**" if best and j == best[k] and c else c for j, c in enumerate(cells)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checked_options(options: dict):
    """bytezip's coding options as `bytezip.options.CodingOptions` (its defaults for what is not given); an
    invalid value is a BenchError naming the option."""
    from .options import OptionError, coding_options
    try:
        return coding_options(**options)
    except OptionError as e:
        raise BenchError(f"invalid --{e.field.replace('_', '-')}: {e}") from None
