"""Archives pinned byte for byte: a restructuring that means to change no archive byte is checked against the
SHA-256 of archives recorded before it (tests/archives/golden/digests.json), with the shipped model, for a
fixed set of inputs: text, code, an image, a WAV, a piece of an executable, random bytes, empty.

A change that is meant to alter what the coder writes is a new format version (`format.py`); then the
digests are recorded again (`python tests/test_golden.py --record`) in the same commit, and said so."""
import hashlib
import json
import sys
from pathlib import Path

import pytest

import bytezip

HERE = Path(__file__).parent / "archives"
DIGESTS = HERE / "golden" / "digests.json"
CASES = {
    "text": lambda: (HERE / "v9" / "text.txt").read_bytes(),
    "code": lambda: (HERE / "golden" / "code.py.txt").read_bytes(),
    "image": lambda: (HERE / "v9" / "gradient.ppm").read_bytes(),
    "wav": lambda: (HERE / "v9" / "tone.wav").read_bytes(),
    "binary": lambda: (HERE / "golden" / "binary.elf").read_bytes(),
    "random": lambda: b"".join(hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(128)),
    "empty": lambda: b"",
}
OPTIONS = {                              # the library's defaults (several rounds here), the command line's, no model
    "library": {},
    "cli": {"solid": True},
    "plain": {"neural": False},
}
KEYS = [f"{case}/{options}" for case in CASES for options in OPTIONS
        if options != "cli" or case in ("random", "empty")]   # elsewhere "cli" writes what "library" does


def archive_of(case: str, options: str) -> bytes:
    return bytezip.compress(CASES[case](), **OPTIONS[options])


@pytest.mark.parametrize("key", KEYS)
def test_archive_bytes_unchanged(key):
    """(Decoding these inputs' archives is `test_codec.py`'s sample-archive test.)"""
    blob = archive_of(*key.split("/"))
    assert hashlib.sha256(blob).hexdigest() == json.loads(DIGESTS.read_text())[key]


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    DIGESTS.write_text(json.dumps({key: hashlib.sha256(archive_of(*key.split("/"))).hexdigest() for key in KEYS},
                                  indent=1) + "\n")
