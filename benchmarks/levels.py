"""Levels: bits per byte and whole-process encode / decode speed of `bytezip -N` per level and input.

    python benchmarks/levels.py --out benchmarks/runs/DATE-levels --levels 1,6,9 --limit-bytes 32K PATHS...

Each path becomes a file of at most --limit-bytes as a user would have it: an image as a PPM of its first rows
(RGB), a WAV file as a WAV of its first samples, anything else as its first bytes; the command line codes it
in a process of its own (start-up and model load included), every round trip compared. Choose the samples
outside `bench/`. Writes results.jsonl and README.md to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bytezip.cli import SizeType


def sample(path: Path, limit: int) -> tuple[str, bytes]:
    """(file name, bytes) of the file a user would compress, cut to about `limit` bytes."""
    if path.suffix.lower() in (".png", ".jpg", ".ppm"):
        from PIL import Image
        img = Image.open(path).convert("RGB")
        rows = max(1, min(img.height, limit // (3 * img.width)))
        pixels = img.crop((0, 0, img.width, rows)).tobytes()
        return path.stem + ".ppm", f"P6\n{img.width} {rows}\n255\n".encode() + pixels
    if path.suffix.lower() in (".wav", ".flac"):
        import io
        import soundfile
        pcm, rate = soundfile.read(path, dtype="int16", always_2d=True)
        out = io.BytesIO()
        soundfile.write(out, pcm[:limit // (2 * pcm.shape[1])], rate, subtype="PCM_16", format="WAV")
        return path.stem + ".wav", out.getvalue()
    return path.name, path.read_bytes()[:limit]


def run(args: list[str], cwd: Path) -> float:
    t = time.monotonic()
    subprocess.run([sys.executable, "-m", "bytezip", *args], cwd=cwd, check=True, capture_output=True)
    return time.monotonic() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--levels", default="1,6,9")
    ap.add_argument("--limit-bytes", default="32K")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bytezip-levels"))
    args = ap.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    started, rows = datetime.now(timezone.utc), []
    for path in args.paths:
        name, data = sample(Path(path), SizeType().convert(args.limit_bytes, None, None))
        (args.work / name).write_bytes(data)
        for level in levels:
            enc = run(["-f", "-q", f"--level={level}", name], args.work)
            size = (args.work / f"{name}.bzp").stat().st_size
            dec = run(["-d", "-f", "-q", "-o", f"{name}.out", f"{name}.bzp"], args.work)
            assert (args.work / f"{name}.out").read_bytes() == data, f"{name} level {level}: round trip"
            row = dict(sample=name, level=level, bytes=len(data), archive=size,
                       bpb=round(8 * size / len(data), 4), encode_s=round(enc, 2), decode_s=round(dec, 2),
                       encode_kb_s=round(len(data) / enc / 1e3, 2),
                       decode_kb_s=round(len(data) / dec / 1e3, 2))
            rows.append(row)
            print(json.dumps(row), flush=True)
            with open(args.out / "results.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
    lines = ["# Levels: ratio against whole-process speed", "",
             f"- Date: {started.isoformat(timespec='seconds')}",
             f"- Machine: {platform.machine()}, {os.cpu_count()} CPU cores; Python {platform.python_version()}; "
             f"load average at the end {os.getloadavg()[0]:.1f}",
             "- Times: wall time of each `bytezip` process (start-up and model load included); KB = 1000 bytes",
             "", f"Regenerate with `python {' '.join([sys.argv[0], *(argv or sys.argv[1:])])}`.", "",
             "| sample | bytes | level | bits per byte | encode s | decode s | encode KB/s | decode KB/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['sample']} | {r['bytes']:,} | {r['level']} | {r['bpb']:.3f} | {r['encode_s']:.1f} | "
              f"{r['decode_s']:.1f} | {r['encode_kb_s']:.2f} | {r['decode_kb_s']:.2f} |" for r in rows]
    lines += ["", "| level | bits per byte, all samples | encode s, all | decode s, all |", "|---:|---:|---:|---:|"]
    for level in levels:
        rs = [r for r in rows if r["level"] == level]
        lines.append(f"| {level} | {8 * sum(r['archive'] for r in rs) / sum(r['bytes'] for r in rs):.3f} | "
                     f"{sum(r['encode_s'] for r in rs):.1f} | {sum(r['decode_s'] for r in rs):.1f} |")
    (args.out / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
