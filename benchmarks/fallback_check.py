"""Check the fallback on a bench result: no bytezip archive is larger than the same input with every 4 KB
chunk coded by zstd -19 in bytezip's container. Usage:

    python benchmarks/fallback_check.py benchmarks/results.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from bytezip import codec, format as fmt
from bytezip.bench import Source, load_items


def all_zstd_size(data: bytes, chunk_size: int) -> int:
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]
    coded = []
    for c in chunks:
        z = codec._zstd_compress(c)
        coded.append((fmt.ZSTD, c, z) if len(z) < len(c) else (fmt.RAW, c, c))   # what a zstd-only coder stores
    return len(fmt.archive_bytes(fmt.Header(chunk_size), coded))


def main(path: str) -> int:
    res = json.loads(Path(path).read_text())
    worst = 0
    for f in res["files"]:
        r = f["results"].get("bytezip")
        if not r or "compressed_bytes" not in r:
            continue
        src = Source(f["name"], Path(f["path"]), f["modality"])
        item = next(i for i in load_items(src, res.get("limit_bytes")) if i.representation == f["representation"])
        z = all_zstd_size(item.data, 4096)
        worst = max(worst, r["compressed_bytes"] - z)
        print(f"{f['name']:34s} {f['representation']:4s} bytezip {r['compressed_bytes']:>9,}  "
              f"every chunk zstd -19 {z:>9,}  {'ok' if r['compressed_bytes'] <= z else 'LARGER'}")
    print("every file at most its all-zstd size" if worst <= 0 else f"some file is larger by {worst} bytes")
    return 0 if worst <= 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
