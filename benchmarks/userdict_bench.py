"""Many small JSON records compressed one file each: bytezip -D against zstd -19 -D (issue 22).

The records are a real JSON data set that ships with torch (`torch/_dynamo/graph_break_registry.json`, 517
records, BSD-3-Clause, part of the torch package: one object per graph-break type), split into one file per
record (`{"GBxxxx": [...]}`, one line each). A fixed shuffle (seed 22) gives the training set (the first
`--train` records) and the measured set (the next `--files`), disjoint. Both dictionaries are trained on the
training set only, with each tool's own trainer and defaults: `zstd --train` (maxdict 112640) and
`bytezip --train-dict`. Every file is then compressed alone, with and without the dictionary: `zstd -19 [-D]`
(the CLI's defaults: checksum and dictionary id on) and `bytezip [-D]` (one process for all files, as a user
would run it); the bytezip -D archives are decoded (`bytezip -t -D`) and checked. The table gives totals in
bytes, and bytezip -D's split into payload (the chunks' coded bytes) and overhead (header, chunk records, end
record).

    python benchmarks/userdict_bench.py [--files 200] [--train 200] [--workdir DIR] [--json OUT]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def default_source() -> Path:
    import torch
    return Path(torch.__file__).parent / "_dynamo" / "graph_break_registry.json"


def split_records(source: Path, out: Path, n_train: int, n_files: int, seed: int = 22) -> tuple[list[Path], list[Path]]:
    """One file per record of a JSON object of records; (training files, measured files), disjoint."""
    data = json.loads(source.read_text())
    keys = sorted(data)
    random.Random(seed).shuffle(keys)
    if n_train + n_files > len(keys):
        sys.exit(f"{source} has {len(keys)} records; asked for {n_train} + {n_files}")
    sets = []
    for name, ks in (("train", keys[:n_train]), ("files", keys[n_train:n_train + n_files])):
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        paths = []
        for k in ks:
            p = d / f"{k}.json"
            p.write_text(json.dumps({k: data[k]}) + "\n")
            paths.append(p)
        sets.append(paths)
    return sets[0], sets[1]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


def zstd_sizes(files: list[Path], dictionary: Path | None) -> int:
    total = 0
    for f in files:
        cmd = ["zstd", "-q", "-19", "-c", str(f)] + (["-D", str(dictionary)] if dictionary else [])
        total += len(run(cmd).stdout)
    return total


def bytezip_sizes(files: list[Path], suffix_dir: Path, dictionary: Path | None) -> tuple[int, int, float]:
    """(total archive bytes, total payload bytes, seconds) compressing each file alone into suffix_dir."""
    from bytezip.codec import read_info
    suffix_dir.mkdir(parents=True, exist_ok=True)
    copies = []
    for f in files:
        c = suffix_dir / f.name
        c.write_bytes(f.read_bytes())
        copies.append(c)
    t0 = time.time()
    run([sys.executable, "-m", "bytezip", "-q", "-f"] + (["-D", str(dictionary)] if dictionary else [])
        + [str(c) for c in copies])
    seconds = time.time() - t0
    total = payload = 0
    for c in copies:
        blob = Path(str(c) + ".bzp").read_bytes()
        total += len(blob)
        payload += sum(r.coded_size for r in read_info(io.BytesIO(blob)).chunks)
    return total, payload, seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=None, help="JSON object of records (default: torch's "
                                                              "graph_break_registry.json)")
    ap.add_argument("--files", type=int, default=200, help="records measured")
    ap.add_argument("--train", type=int, default=200, help="records the dictionaries are trained on")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here too")
    a = ap.parse_args(argv)
    source = a.source or default_source()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="userdict-bench-"))
    train, files = split_records(source, work, a.train, a.files)
    raw = sum(f.stat().st_size for f in files)

    zdict = work / "zstd.dict"
    run(["zstd", "-q", "-f", "--train", *map(str, train), "-o", str(zdict)])
    bdict = work / "bytezip.dict"
    t0 = time.time()
    run([sys.executable, "-m", "bytezip", "--train-dict", str(work / "train"), "-o", str(bdict), "-f", "-q"])
    train_seconds = time.time() - t0

    z_d, z_0 = zstd_sizes(files, zdict), zstd_sizes(files, None)
    b_d, b_d_payload, b_d_s = bytezip_sizes(files, work / "bz-dict", bdict)
    t0 = time.time()
    run([sys.executable, "-m", "bytezip", "-t", "-q", "-D", str(bdict),
         *[str(work / "bz-dict" / (f.name + ".bzp")) for f in files]])
    test_seconds = time.time() - t0
    b_0, b_0_payload, b_0_s = bytezip_sizes(files, work / "bz-plain", None)

    n = len(files)
    rows = [("zstd -19 -D", z_d), ("bytezip -D", b_d), ("zstd -19 (no dictionary)", z_0),
            ("bytezip (no dictionary)", b_0)]
    zver = run(["zstd", "--version"], text=True).stdout.strip()
    print(f"source: {source} ({json.loads(source.read_text()).__len__()} records), training records {a.train}, "
          f"measured {n}, workdir {work}")
    print(f"dictionaries: zstd {zdict.stat().st_size} bytes ({zver}); bytezip {bdict.stat().st_size} bytes "
          f"(trained in {train_seconds:.0f} s)")
    print()
    print(f"| files | total raw | zstd -19 -D | bytezip -D | zstd -19 | bytezip |")
    print(f"|---:|---:|---:|---:|---:|---:|")
    print(f"| {n} | {raw} | {z_d} | **{b_d}** | {z_0} | {b_0} |")
    print()
    print("| compressor | total bytes | per file | of raw |")
    print("|---|---:|---:|---:|")
    for name, total in rows:
        print(f"| {name} | {total} | {total / n:.1f} | {100 * total / raw:.2f}% |")
    print()
    print(f"bytezip -D: payload {b_d_payload} bytes ({b_d_payload / n:.1f} a file), overhead {b_d - b_d_payload} "
          f"({(b_d - b_d_payload) / n:.1f} a file: header, chunk record, end record); "
          f"without a dictionary: payload {b_0_payload}, overhead {b_0 - b_0_payload} ({(b_0 - b_0_payload) / n:.1f} a file)")
    print(f"bytezip -D compress {b_d_s:.0f} s for {n} files in one process, decode check (bytezip -t -D) "
          f"{test_seconds:.0f} s: all OK; bytezip without a dictionary {b_0_s:.0f} s")
    print(f"bytezip -D / zstd -19 -D = {b_d / z_d:.3f}")
    if a.json:
        a.json.write_text(json.dumps(dict(
            files=n, train=a.train, raw=raw, zstd_dict=z_d, bytezip_dict=b_d, bytezip_dict_payload=b_d_payload,
            zstd=z_0, bytezip=b_0, bytezip_payload=b_0_payload, zstd_dict_size=zdict.stat().st_size,
            bytezip_dict_size=bdict.stat().st_size, train_seconds=train_seconds, compress_seconds=b_d_s,
            test_seconds=test_seconds, machine=platform.processor() or platform.machine(),
            date=time.strftime("%Y-%m-%dT%H:%M:%S%z")), indent=1) + "\n")
    return 0 if b_d <= z_d else 1


if __name__ == "__main__":
    sys.exit(main())
