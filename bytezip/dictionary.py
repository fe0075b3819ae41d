"""The priming dictionary: text, markup and code the mixer's context models know before a file's first byte.

A small file gives its own context models little to learn from; brotli wins there with a built-in dictionary.
The shipped model carries one too (`models/<name>.dict.xz`, half a MB of typical text from the training
sources), read by `mixing.Mixer` as the prior below each order of the file's own shared-history counts: where
the file has seen a context, its counts dominate; where not, the dictionary's do.

    python -m bytezip.dictionary models/bytezip-v1.dict.xz     # rebuild it from the training sources
"""
from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import lzma
import os
import zlib
from pathlib import Path

from .format import DIGEST_BYTES
from .mixing import History

SUFFIX = ".dict.xz"
# bytes per source: the training text (the first 9/10 of each file, the rest is held out for evaluation),
# and HTML, C headers, man pages and Python taken from this machine (files with crc32 % 10 == 0 held out)
BUDGET = {"text": 1 << 18, "html": 1 << 16, "c": 1 << 16, "man": 1 << 16, "py": 1 << 16}
FILE_MAX = 1 << 15            # at most this much of any one file


def held_out(path: str) -> bool:
    """Files kept out of the dictionary (and out of choices made with it), by a hash of their path."""
    return zlib.crc32(path.encode()) % 10 == 0


def _sources() -> dict[str, list[str]]:
    from .train import _general_files
    general = _general_files()
    return {"html": [p for p in glob.glob("/usr/share/doc/**/*.html", recursive=True) if os.path.isfile(p)],
            "c": [p for p in glob.glob("/usr/include/**/*.h", recursive=True) if os.path.isfile(p)],
            "man": general["man"], "py": general["py"]}


def _read(path: str, limit: int) -> bytes:
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        return f.read(limit)


def build(corpus: str) -> bytes:
    """The dictionary's bytes, from the training corpus's text and this machine's documentation and code."""
    from .train import _fixed_shuffle
    parts = []
    texts = sorted(glob.glob(os.path.join(corpus, "text", "*")))
    for p in texts:
        data = Path(p).read_bytes()
        parts.append(data[:len(data) - len(data) // 10][:BUDGET["text"] // max(1, len(texts))])
    sources = _sources()
    for kind, paths in sources.items():
        left = BUDGET[kind]
        for p in _fixed_shuffle([p for p in paths if not held_out(p)]):
            if left <= 0:
                break
            try:
                data = _read(p, min(left, FILE_MAX))
            except (OSError, EOFError, zlib.error):
                continue
            if len(data) >= 256:
                parts.append(data)
                left -= len(data)
    return b"".join(parts)


def digest(data: bytes) -> bytes:
    """The identity archives record of a dictionary: SHA-256 prefix of its bytes."""
    return hashlib.sha256(data).digest()[:DIGEST_BYTES]


def load(path: str | os.PathLike) -> tuple[History, bytes]:
    """(the dictionary's statistics, its digest) from a `.dict.xz` file."""
    data = lzma.decompress(Path(path).read_bytes())
    history = History()
    history.extend(data)
    return history, digest(data)


def main(argv=None):
    from .train import DEFAULT_CORPUS
    ap = argparse.ArgumentParser(prog="python -m bytezip.dictionary", description=__doc__.splitlines()[0])
    ap.add_argument("out", help="where to write the dictionary (.dict.xz)")
    ap.add_argument("--corpus", default=DEFAULT_CORPUS, help="training corpus folder (its text/ is used)")
    a = ap.parse_args(argv)
    data = build(a.corpus)
    Path(a.out).write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    print(f"{a.out}: {len(data):,} bytes ({digest(data).hex()}), {Path(a.out).stat().st_size:,} compressed")


if __name__ == "__main__":
    main()
