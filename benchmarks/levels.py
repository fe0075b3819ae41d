"""Levels and sizes: bits per byte, whole-process encode / decode speed and peak memory of `bytezip -N` per
level, input kind and input size, beside zstd -19, xz -9e and brotli 11 on the same inputs, with a plot of
ratio against decode speed.

    python benchmarks/levels.py --out benchmarks/runs/DATE-levels --kinds text,image,audio \\
        --sizes 32K,256K --levels 1,3,6,9
    python benchmarks/levels.py --out benchmarks/runs/DATE-levels --kinds text --sizes 8M --levels 1,6
    python benchmarks/levels.py --out benchmarks/runs/DATE-levels --report-only

Inputs, none of them in `bench/` nor in the training part of `train/` (so nothing here was tuned on):

- text: Python's standard library (code and its docstrings), then C++ and C headers, in sorted order, each
  file once, cut to the size (`TEXT_SOURCES`);
- image: matplotlib's sample photo grace_hopper.jpg as a PPM (RGB), its first rows up to the size (the whole
  photo is 921,615 bytes: larger sizes get the whole photo);
- audio: a WAV of the held-out `train/audio/loop_compus.flac` (stereo, 44.1 kHz), its first samples up to
  the size (1,144,216 bytes of PCM at most);
- PATHS given on the command line, each cut to each size as a user would have it (image as a PPM of its
  first rows, a WAV or FLAC as a WAV of its first samples, anything else its first bytes).

Every command runs in a process of its own (start-up and model load included), every round trip is compared,
and the peak resident memory of each bytezip process is taken from the kernel (`wait4`). Each run appends to
results.jsonl in --out; README.md and levels.png are written anew from all of it, so runs of different sizes
and levels add up to one report.
"""
from __future__ import annotations

import argparse
import glob
import io
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bytezip.cli import SizeType
from bytezip.speed import DEFAULT_CORPUS

SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
TEXT_SOURCES = (str(SITE / "*.py"), str(SITE / "*" / "*.py"), "/usr/include/c++/*/bits/*.h", "/usr/include/*.h")
PHOTO = SITE / "site-packages" / "matplotlib" / "mpl-data" / "sample_data" / "grace_hopper.jpg"
RECORDING = DEFAULT_CORPUS / "audio" / "loop_compus.flac"
OTHERS = {"zstd -19": (["zstd", "-19", "-q", "-c"], ["zstd", "-d", "-q", "-c"]),
          "xz -9e": (["xz", "-9e", "-c"], ["xz", "-d", "-c"]),
          "brotli 11": (["brotli", "-q", "11", "-c"], ["brotli", "-d", "-c"])}


def ppm(path: Path, limit: int) -> bytes:
    """A PPM (RGB) of the image's first rows, at most `limit` bytes of pixels."""
    from PIL import Image
    with Image.open(path) as im:
        img = im.convert("RGB")
    rows = max(1, min(img.height, limit // (3 * img.width)))
    return f"P6\n{img.width} {rows}\n255\n".encode() + img.crop((0, 0, img.width, rows)).tobytes()


def wav(path: Path, limit: int) -> bytes:
    """A 16-bit WAV of the recording's first samples, at most `limit` bytes of PCM."""
    import soundfile
    pcm, rate = soundfile.read(path, dtype="int16", always_2d=True)
    out = io.BytesIO()
    soundfile.write(out, pcm[:limit // (2 * pcm.shape[1])], rate, subtype="PCM_16", format="WAV")
    return out.getvalue()


def text(limit: int) -> bytes:
    """`TEXT_SOURCES`' files in order, each file once (no links, no second copy of the same bytes: a run of
    duplicated licences would measure lzma's whole-file chunk, not the model), cut to `limit` bytes."""
    out, seen, got = [], set(), 0
    for pattern in TEXT_SOURCES:
        for name in sorted(glob.glob(pattern)):
            if got >= limit:
                break
            if os.path.isfile(name) and not os.path.islink(name):
                data = Path(name).read_bytes()
                if data not in seen:
                    seen.add(data)
                    out.append(data)
                    got += len(data)
    return b"".join(out)[:limit]


def size_tag(n: int) -> str:
    """32K for 32768, 1M for 1048576 (SizeType's units), else the number."""
    return f"{n >> 20}M" if n % (1 << 20) == 0 else f"{n >> 10}K" if n % 1024 == 0 else str(n)


def sample(what: str, limit: int) -> tuple[str, bytes]:
    """(file name, bytes) of the input `what` (a kind or a path) at about `limit` bytes."""
    tag = size_tag(limit)
    if what == "text":
        return f"text-{tag}.txt", text(limit)
    if what == "image":
        return f"image-{tag}.ppm", ppm(PHOTO, limit)
    if what == "audio":
        return f"audio-{tag}.wav", wav(RECORDING, limit)
    path = Path(what)
    if path.suffix.lower() in (".png", ".jpg", ".ppm"):
        return f"{path.stem}-{tag}.ppm", ppm(path, limit)
    if path.suffix.lower() in (".wav", ".flac"):
        return f"{path.stem}-{tag}.wav", wav(path, limit)
    return f"{path.name}-{tag}", path.read_bytes()[:limit]


def run(cmd: list[str], cwd: Path, stdin: Path | None = None, stdout: Path | None = None) -> tuple[float, int]:
    """(wall seconds, peak resident KiB) of one process running `cmd`."""
    t = time.monotonic()
    with open(stdin or os.devnull, "rb") as fin, open(stdout or os.devnull, "wb") as fout:
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=fin, stdout=fout, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode(errors='replace')}")
    return wall, usage.ru_maxrss


def measure(name: str, data: bytes, levels: list[int], work: Path) -> list[dict]:
    (work / name).write_bytes(data)
    rows = []
    for level in levels:
        enc, enc_kib = run([sys.executable, "-m", "bytezip", "-f", "-q", f"--level={level}", name], work)
        size = (work / f"{name}.bzp").stat().st_size
        dec, dec_kib = run([sys.executable, "-m", "bytezip", "-d", "-f", "-q", "-o", f"{name}.out", f"{name}.bzp"],
                           work)
        assert (work / f"{name}.out").read_bytes() == data, f"{name} level {level}: round trip"
        rows.append(dict(tool="bytezip", level=level, archive=size, encode_s=enc, decode_s=dec,
                         encode_peak_mib=round(enc_kib / 1024, 1), decode_peak_mib=round(dec_kib / 1024, 1)))
    for tool, (compress, decompress) in OTHERS.items():
        enc, _ = run(compress, work, stdin=work / name, stdout=work / f"{name}.other")
        dec, _ = run(decompress, work, stdin=work / f"{name}.other", stdout=work / f"{name}.out")
        assert (work / f"{name}.out").read_bytes() == data, f"{name} {tool}: round trip"
        rows.append(dict(tool=tool, level=None, archive=(work / f"{name}.other").stat().st_size,
                         encode_s=enc, decode_s=dec))
    for r in rows:
        r.update(sample=name, bytes=len(data), bpb=round(8 * r["archive"] / len(data), 4),
                 encode_s=round(r["encode_s"], 4), decode_s=round(r["decode_s"], 4),
                 encode_kb_s=round(len(data) / r["encode_s"] / 1e3, 2),
                 decode_kb_s=round(len(data) / r["decode_s"] / 1e3, 2))
    return rows


def label(r: dict) -> str:
    return f"bytezip -{r['level']}" if r["tool"] == "bytezip" else r["tool"]


def totals(rows: list[dict]) -> dict[tuple[int, str], dict]:
    """Per (size, tool and level), in report order: inputs, bits per byte and encode / decode KB/s of all the
    kinds together (what the report's second table and the plot show)."""
    out = {}
    for size in sorted({r["size"] for r in rows}):
        here = [r for r in rows if r["size"] == size]
        for name in sorted({label(r) for r in here}, key=lambda s: (not s.startswith("bytezip"), s)):
            rs = [r for r in here if label(r) == name]
            n = sum(r["bytes"] for r in rs)
            out[size, name] = dict(inputs=len(rs), bpb=8 * sum(r["archive"] for r in rs) / n,
                                   encode_kb_s=n / sum(r["encode_s"] for r in rs) / 1e3,
                                   decode_kb_s=n / sum(r["decode_s"] for r in rs) / 1e3)
    return out


def plot(rows: list[dict], path: Path):
    """Bits per byte against decode speed (log scale), one panel per input size, one mark per tool and level."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sizes = sorted({r["size"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 4.2), squeeze=False)
    summary = totals(rows)
    for ax, size in zip(axes[0], sizes):
        for (at, name), t in summary.items():
            if at == size:
                ax.scatter(t["decode_kb_s"], t["bpb"], marker="o" if name.startswith("bytezip") else "s")
                ax.annotate(name, (t["decode_kb_s"], t["bpb"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("decode KB/s, whole process (log)")
        ax.set_ylabel("bits per byte, all kinds")
        ax.set_title(f"inputs of up to {size_tag(size)} bytes")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(out: Path, command: str):
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    started = min(r["date"] for r in rows)
    lines = ["# Levels and sizes: ratio, whole-process speed and memory", "",
             f"- Runs: {started} to {max(r['date'] for r in rows)}",
             f"- Machine: {rows[-1]['machine']}",
             "- Times: wall time of each process (start-up and model load included); KB = 1000 bytes; peak memory: "
             "the bytezip process's maximum resident set (wait4)",
             f"- Regenerate with the commands in `benchmarks/levels.py`'s docstring, e.g. `{command}`", "",
             "| input | bytes | tool | bits per byte | encode s | decode s | encode KB/s | decode KB/s | "
             "peak MiB enc / dec |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mem = f"{r['encode_peak_mib']:.0f} / {r['decode_peak_mib']:.0f}" if r["tool"] == "bytezip" else ""
        lines.append(f"| {r['sample']} | {r['bytes']:,} | {label(r)} | {r['bpb']:.3f} | {r['encode_s']:.2f} | "
                     f"{r['decode_s']:.2f} | {r['encode_kb_s']:.1f} | {r['decode_kb_s']:.1f} | {mem} |")
    lines += ["", "Per size, all kinds together:", "",
              "| size | tool | inputs | bits per byte | encode KB/s | decode KB/s |", "|---:|---|---:|---:|---:|---:|"]
    lines += [f"| {size:,} | {name} | {t['inputs']} | {t['bpb']:.3f} | {t['encode_kb_s']:.1f} | "
              f"{t['decode_kb_s']:.1f} |" for (size, name), t in totals(rows).items()]
    lines += ["", "![bits per byte against decode speed](levels.png)"]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    plot(rows, out / "levels.png")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--kinds", default="text,image,audio", help="built-in inputs (see the docstring); '' for none")
    ap.add_argument("--sizes", default="32K")
    ap.add_argument("--levels", default="1,6,9")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bytezip-levels"))
    ap.add_argument("--report-only", action="store_true", help="write README.md and levels.png from results.jsonl")
    args = ap.parse_args(argv)
    command = f"python {' '.join([sys.argv[0], *(argv or sys.argv[1:])])}"
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        args.work.mkdir(parents=True, exist_ok=True)
        levels = [int(x) for x in args.levels.split(",")]
        inputs = [k for k in args.kinds.split(",") if k] + args.paths
        machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores; Python {platform.python_version()}")
        for size in (SizeType().convert(s, None, None) for s in args.sizes.split(",")):
            for what in inputs:
                name, data = sample(what, size)
                for row in measure(name, data, levels, args.work):
                    row.update(size=size, date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               machine=f"{machine}; load average {os.getloadavg()[0]:.1f}")
                    print(json.dumps(row), flush=True)
                    with open(args.out / "results.jsonl", "a") as fh:
                        fh.write(json.dumps(row) + "\n")
    report(args.out, command)


if __name__ == "__main__":
    main()
