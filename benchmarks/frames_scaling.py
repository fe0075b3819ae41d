"""How coding in frames scales: worker processes on one machine (`-T`) and a local Dask cluster
(`bytezip.cluster`), whole-process wall time, archives checked identical and round trips checked exact.

    python benchmarks/frames_scaling.py --out benchmarks/runs/DATE-frames

The inputs are files of this machine's packages (documentation, headers, programs), never `bench/`: the first
`--size` bytes of their concatenation in name order, coded without a model (`--model none`, lzma/zstd frames,
the I/O and process overhead) and the first `--neural-size` bytes with the default model (the neural coder,
where the time goes). Writes results.jsonl and README.md (a table per input) to --out.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

SOURCES = ["/usr/share/doc", "/usr/include", "/usr/bin"]


def collect(size: int, sources: list[str]) -> bytes:
    """The first `size` bytes of the regular files under `sources`, in name order."""
    parts, got = [], 0
    for root in sources:
        for path in sorted(Path(root).rglob("*")):
            if got >= size:
                break
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()[:size - got]
                parts.append(data)
                got += len(data)
    return b"".join(parts)


def timed(args: list[str], cwd: Path) -> float:
    t = time.monotonic()
    subprocess.run([sys.executable, "-m", "bytezip", *args], cwd=cwd, check=True, capture_output=True)
    return time.monotonic() - t


def measure_cli(work: Path, name: str, data: bytes, frame_size: str, model: list[str], workers: list[int],
                log, compress_workers: list[int] | None = None) -> dict[int, bytes]:
    """Compress (with each of `compress_workers`, default `workers`) and decompress `data` with each worker
    count: wall time, frames per second per worker."""
    (work / name).write_bytes(data)
    archives = {}
    runs = [("compress", t) for t in (compress_workers or workers)] + [("decompress", t) for t in workers]
    for mode, t in sorted(runs, key=lambda run: run[0] == "decompress"):
        if mode == "compress":
            args = [*model, "-f", "-q", f"-T{t}", "--frame-size", frame_size, name]
        else:
            args = ["-d", "-f", "-q", f"-T{t}", "-o", f"{name}.out", f"{name}.bzp"]
        seconds = timed(args, work)
        if mode == "compress":
            archives[t] = (work / f"{name}.bzp").read_bytes()
        else:
            assert (work / f"{name}.out").read_bytes() == data, "round trip failed"
        frames = -(-len(data) // parse_size(frame_size))
        archive = len(next(iter(archives.values())))
        log(dict(input=name, mode=mode, engine=f"bytezip -T{t}", workers=t, bytes=len(data), frames=frames,
                 archive=archive, seconds=round(seconds, 2),
                 kb_per_s=round(len(data) / seconds / 1e3, 1), frames_per_s_per_worker=round(frames / seconds / t, 4)))
    assert len(set(archives.values())) == 1, "archives differ between worker counts"
    return archives


def measure_cluster(work: Path, name: str, data: bytes, frame_size: str, model: dict, workers: int, log):
    """The same through `bytezip.cluster` on a local Dask cluster (its start included): the archive must be
    the command line's."""
    from bytezip import cluster
    expected = (work / f"{name}.bzp").read_bytes()
    frames = -(-len(data) // parse_size(frame_size))
    for mode in ("compress", "decompress"):
        (work / (f"{name}.bzp" if mode == "compress" else name)).unlink()
        t = time.monotonic()
        if mode == "compress":
            cluster.compress([work / name], workers=workers, frame_size=parse_size(frame_size), **model)
            assert (work / f"{name}.bzp").read_bytes() == expected, "the cluster's archive differs"
        else:
            cluster.decompress([work / f"{name}.bzp"], workers=workers)
            assert (work / name).read_bytes() == data, "the cluster's round trip failed"
        seconds = time.monotonic() - t
        log(dict(input=name, mode=mode, engine=f"dask local cluster, {workers} workers", workers=workers,
                 bytes=len(data), frames=frames, archive=len(expected), seconds=round(seconds, 2),
                 kb_per_s=round(len(data) / seconds / 1e3, 1),
                 frames_per_s_per_worker=round(frames / seconds / workers, 4)))


def parse_size(s: str) -> int:
    return int(s[:-1]) << {"K": 10, "M": 20}[s[-1]] if s[-1] in "KM" else int(s)


def report(rows: list[dict], out: Path, command: str, sources: list[str]):
    lines = ["# Frames: worker processes and a local Dask cluster", "",
             f"- Date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
             f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores; "
             f"Python {platform.python_version()}; load average at the end {os.getloadavg()[0]:.1f}",
             f"- Inputs: the first bytes of the files under {', '.join(sources)} in name order (not `bench/`)",
             "- Times: whole-process wall time of the `bytezip` command (start-up and model load included); the "
             "cluster rows include starting the local cluster and its workers' model load.", "",
             f"Regenerate with `{command}`.", ""]
    for name in dict.fromkeys(r["input"] for r in rows):
        group = [r for r in rows if r["input"] == name]
        first = group[0]
        lines += [f"## {name}: {first['bytes']:,} bytes in {first['frames']} frames, archive {first['archive']:,} bytes "
                  f"({8 * first['archive'] / first['bytes']:.3f} bits per byte)", "",
                  "| mode | engine | seconds | KB/s | frames/s per worker | speed-up on 1 process |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in group:
            base = next((b for b in group if b["mode"] == r["mode"] and b["engine"] == "bytezip -T1"), None)
            speedup = f"{base['seconds'] / r['seconds']:.2f}x" if base else ""
            lines.append(f"| {r['mode']} | {r['engine']} | {r['seconds']:.1f} | {r['kb_per_s']:.1f} | "
                         f"{r['frames_per_s_per_worker']:.3f} | {speedup} |")
        lines.append("")
    (out / "README.md").write_text("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--inputs", default="plain,neural", help="which inputs: plain (no model), neural, or both")
    ap.add_argument("--size", default="32M", help="bytes of the input coded without a model")
    ap.add_argument("--neural-size", default="256K", help="bytes of the input coded with the default model "
                                                          "(about 2 KB/s a core on a CPU without AVX-512)")
    ap.add_argument("--neural-frame-size", default="64K")
    ap.add_argument("--work", type=Path, default=Path("/tmp/frames-scaling"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []

    def log(row):
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(args.out / "results.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")

    inputs = args.inputs.split(",")
    data = collect(max(parse_size(args.size), parse_size(args.neural_size)), SOURCES)
    print(f"input: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}", flush=True)
    if "plain" in inputs:
        name, plain = f"packages-none-{args.size}", data[:parse_size(args.size)]
        measure_cli(args.work, name, plain, "8M", ["--model", "none"], [1, 2], log)
        measure_cluster(args.work, name, plain, "8M", dict(neural=False), 2, log)
    if "neural" in inputs:       # compressed with 2 workers only: the archive is the same for any number (tests)
        name, neural = f"packages-neural-{args.neural_size}", data[:parse_size(args.neural_size)]
        measure_cli(args.work, name, neural, args.neural_frame_size, [], [1, 2], log, compress_workers=[2])
        measure_cluster(args.work, name, neural, args.neural_frame_size, {}, 2, log)
    report(rows, args.out, "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]), SOURCES)


if __name__ == "__main__":
    main()
