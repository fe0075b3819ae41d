"""User dictionaries, as zstd's `--train` / `-D`: a sample of a user's files that primes the coder.

Many small similar files (JSON records, log lines) give a file's own match and context models nothing to learn
from. `bytezip --train-dict DIR_OR_FILES... -o DICT` keeps a sample of such files; `bytezip -D DICT FILE` then
codes FILE with a shared history (`mixing.History`) that has already read the sample before the first round, so
the history match model finds the sample's repeats and the history context models start from its statistics,
and with the mixer's weights where coding such files left them, in the encoder and the decoder alike. The
archive records only the dictionary's digest (`format.Header.user_digest`, flag 0x02): the dictionary names the
model, so a small file's header has no model fields, and a decoder refuses the archive without the dictionary.

The dictionary file:

    magic b"\\x89BZD" | version u8 = 3 | a zstd frame, with its content size, of the body:
    body   model_id_len u8 | model_id (ASCII, a plain model name) | model_digest 8 bytes | priming u8 (0, or 1:
           the model's priming dictionary digest follows) | priming_digest 8 bytes | weights u8 (0, or 1: the
           mixer's start weights follow) | geo_weights GEO_SETS x (the mixer's inputs) and blend N_BUCKETS x
           (1 + N_GEO) as little-endian int64 (`History.carried`) | sample bytes (the rest)

Version 3 (format 12) has a column of geo_weights for each of `predictors.INPUTS`; version 2 (format 11), still
read, one for each of `predictors.INPUTS_V11`, and version 1 one for each of `predictors.INPUTS_V10`: a mixer
with other inputs starts from the columns of the inputs it shares (`predictors.carry_over`), so an older
dictionary keeps decoding its archives and codes new ones.

The sample is the files' bytes one after another, at most MAX_DICT_SIZE (1 MiB) in all: identical files are
kept once, and when there are more, files are taken evenly across the (sorted) list until the size is reached;
a single file longer than that gives its first MAX_DICT_SIZE bytes. The start weights are learnt at training
time by coding a few of the sample's pieces (WEIGHT_BYTES at most, files taken evenly, each as its own chunk)
against a history of the rest, as small files are coded against the dictionary. The dictionary's identity,
what archives record, is the SHA-256 prefix of the body: the model, its priming dictionary, the weights and the
sample, so an archive never decodes against a different one.
"""
from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import zstandard

# numpy is imported where a dictionary is read: the command line imports this module for its options, and
# --help and --version load no numpy
from .format import DIGEST_BYTES, MODEL_NAME, BytezipError, ModelError

if TYPE_CHECKING:
    from .mixing import History

MAGIC = b"\x89BZD"
VERSION = 3
READ_VERSIONS = (1, 2, 3)
MAX_DICT_SIZE = 1 << 20       # sample bytes a dictionary holds at most (and a reader accepts)
WEIGHT_BYTES = 1 << 14        # sample bytes coded at training time to learn the mixer's start weights
WEIGHT_ROUND = 8              # ... as rounds of this many chunks
ZSTD_LEVEL = 19


def weight_inputs(version: int = VERSION) -> tuple:
    """The mixer inputs whose columns a dictionary of this version's geo_weights has."""
    from .predictors import INPUTS, INPUTS_V10, INPUTS_V11
    return {1: INPUTS_V10, 2: INPUTS_V11}.get(version, INPUTS)


def shapes(version: int = VERSION) -> dict[str, tuple[int, int]]:
    """The mixer's start weights a dictionary carries, by name (`SHAPES`; the mixer, and its kernels, are
    imported when a dictionary is first read or made, not with this module: the command line imports it)."""
    from .mixing import GEO_SETS, N_BUCKETS, N_GEO
    return {"geo_weights": (GEO_SETS, len(weight_inputs(version))), "blend": (N_BUCKETS, 1 + N_GEO)}


def __getattr__(name: str):
    if name == "SHAPES":
        return shapes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class DictionaryError(BytezipError):
    """A dictionary file that cannot be read or made."""


@dataclass
class UserDictionary:
    """A user dictionary: the model it is for, the mixer's start weights and the sample bytes. `digest` is what
    archives record, `history()` a shared history primed with it."""
    data: bytes
    model_id: str
    model_digest: bytes
    priming_digest: bytes = b""                 # the model's own priming dictionary (`bytezip.dictionary`), if any
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    path: str | None = None
    version: int = VERSION                      # of the file it was read from: what its weights' columns follow
    _primed: History | None = field(default=None, repr=False, compare=False)

    def body(self) -> bytes:
        mid = self.model_id.encode("ascii")
        head = bytes([len(mid)]) + mid + self.model_digest
        head += bytes([1]) + self.priming_digest if self.priming_digest else bytes([0])
        if self.weights:
            head += bytes([1]) + b"".join(self.weights[k].astype("<i8").tobytes() for k in shapes(self.version))
        else:
            head += bytes([0])
        return head + self.data

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.body()).digest()[:DIGEST_BYTES]

    def history(self) -> History:
        """A fresh shared history that has read the sample and starts the mixer from the weights (a copy:
        coding a file grows it)."""
        if self._primed is None:
            from .mixing import History
            primed = History()
            primed.extend(self.data)
            primed.carried = {k: v.copy() for k, v in self.weights.items()}
            primed.carried_inputs = weight_inputs(self.version)
            self._primed = primed
        return copy.deepcopy(self._primed)

    def to_bytes(self) -> bytes:
        return MAGIC + bytes([self.version]) + zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(self.body())

    def save(self, path: str | os.PathLike) -> int:
        blob = self.to_bytes()
        Path(path).write_bytes(blob)
        return len(blob)


def from_bytes(blob: bytes, path: str | None = None) -> UserDictionary:
    import numpy as np
    name = path or "dictionary"
    if not blob.startswith(MAGIC):
        raise DictionaryError(f"{name}: not a bytezip dictionary (bad magic)")
    if len(blob) < len(MAGIC) + 1 or blob[len(MAGIC)] not in READ_VERSIONS:
        raise DictionaryError(f"{name}: unsupported dictionary version (this bytezip reads versions "
                              f"{', '.join(map(str, READ_VERSIONS))})")
    version = blob[len(MAGIC)]
    frame = blob[len(MAGIC) + 1:]
    limit = MAX_DICT_SIZE + 4096 + 8 * sum(a * b for a, b in shapes(version).values())
    try:
        size = zstandard.get_frame_parameters(frame).content_size
        if size == zstandard.CONTENTSIZE_UNKNOWN or size > limit:
            raise DictionaryError(f"{name}: corrupted dictionary (declares {size} bytes)")
        body = zstandard.ZstdDecompressor().decompress(frame, max_output_size=limit)
    except zstandard.ZstdError as e:
        raise DictionaryError(f"{name}: corrupted dictionary ({e})") from None
    at = 0

    def take(n: int) -> bytes:
        nonlocal at
        if at + n > len(body):
            raise DictionaryError(f"{name}: corrupted dictionary (truncated)")
        at += n
        return body[at - n:at]
    mid = take(take(1)[0])
    if not MODEL_NAME.fullmatch(mid.decode("latin-1")):
        raise DictionaryError(f"{name}: corrupted dictionary (the model id is not a plain model name)")
    model_digest = take(DIGEST_BYTES)
    flag = take(1)[0]
    priming = take(DIGEST_BYTES) if flag == 1 else b""
    has_weights = take(1)[0]
    if flag > 1 or has_weights > 1:
        raise DictionaryError(f"{name}: corrupted dictionary (flags {flag}, {has_weights})")
    weights = {}
    if has_weights:
        for k, shape in shapes(version).items():
            weights[k] = np.frombuffer(take(8 * shape[0] * shape[1]), dtype="<i8").astype(np.int64).reshape(shape)
        from .mixing import BLEND_MIN, GEO_W_MAX, ONE
        if np.abs(weights["geo_weights"]).max() > GEO_W_MAX or not (
                (weights["blend"] >= BLEND_MIN // 2).all() and (weights["blend"] <= ONE).all()):
            raise DictionaryError(f"{name}: corrupted dictionary (mixer weights out of range)")
    data = body[at:]
    if len(data) > MAX_DICT_SIZE:
        raise DictionaryError(f"{name}: corrupted dictionary ({len(data)} sample bytes)")
    return UserDictionary(data, mid.decode("ascii"), model_digest, priming, weights, path, version)


def load(path: str | os.PathLike) -> UserDictionary:
    try:
        blob = Path(path).read_bytes()
    except OSError as e:
        raise DictionaryError(f"cannot read dictionary {path}: {e.strerror or e}") from None
    return from_bytes(blob, str(path))


def resolve(dictionary) -> UserDictionary | None:
    """What `Compressor(dictionary=...)` / `Decompressor(dictionary=...)` take: None, a path or the loaded
    object."""
    if dictionary is None or isinstance(dictionary, UserDictionary):
        return dictionary
    return load(dictionary)


def sample_files(paths: list[str | os.PathLike]) -> list[str]:
    """Every regular file named or under a named directory, sorted within each argument (links not followed)."""
    out = []
    for p in map(str, paths):
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                out += [os.path.join(root, f) for f in sorted(files)
                        if os.path.isfile(os.path.join(root, f)) and not os.path.islink(os.path.join(root, f))]
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise DictionaryError(f"{p}: no such file or directory")
    return out


def _even(items: list, fraction: float) -> list:
    """About `fraction` of the items, taken evenly across the list (at least one)."""
    if fraction >= 1:
        return list(items)
    return [s for i, s in enumerate(items) if int((i + 1) * fraction) > int(i * fraction)] or items[:1]


def choose(samples: list[bytes], max_size: int = MAX_DICT_SIZE) -> bytes:
    """The sample bytes: identical samples kept once, an even choice when they hold more than max_size."""
    if not 1 <= max_size <= MAX_DICT_SIZE:
        raise DictionaryError(f"dictionary size must be between 1 and {MAX_DICT_SIZE} bytes")
    seen, unique = set(), []
    for s in samples:
        h = hashlib.sha256(s).digest()
        if s and h not in seen:
            seen.add(h)
            unique.append(s)
    if not unique:
        raise DictionaryError("no sample bytes to train a dictionary on (empty or no files)")
    return b"".join(_even(unique, max_size / sum(map(len, unique))))[:max_size]


def train(samples: list[bytes], model=None, device="cpu", max_size: int = MAX_DICT_SIZE,
          weight_bytes: int = WEIGHT_BYTES, workers: int | None = None) -> UserDictionary:
    """A dictionary for `model` (as `Compressor(model=...)`; default the shipped one) from the samples, in order."""
    from .codec import Compressor, coding_model
    data = choose(samples, max_size)
    m = coding_model(model, device)
    if not MODEL_NAME.fullmatch(m.model_id):
        raise DictionaryError(f"model '{m.model_id}' has no plain name to record in a dictionary")
    ud = UserDictionary(data, m.model_id, m.digest, m.dictionary_digest)
    # the start weights: a few pieces (each its own chunk, as a small file is) coded against the rest
    C = m.context
    kept = [s for s in samples if s]
    kept_set = {hashlib.sha256(s).digest() for s in kept}
    pieces = [s[i:i + C] for s in dict.fromkeys(kept) for i in range(0, len(s), C)]
    if len(pieces) >= 2 and weight_bytes > 0 and len(kept_set):
        held = _even(pieces, min(0.5, weight_bytes / sum(map(len, pieces))))
        held_ids = {id(p) for p in held}
        rest = choose([p for p in pieces if id(p) not in held_ids] or [b"\0"], max_size)
        coder = Compressor(model=m, device=device, workers=workers)
        from .mixing import History
        primed = History()
        primed.extend(rest)
        for r in range(0, len(held), WEIGHT_ROUND):
            history = copy.deepcopy(primed)
            history.carried = ud.weights
            coder.code_chunks(held[r:r + WEIGHT_ROUND], history, None, None, 1)
            ud.weights = history.carried
    return ud


def train_files(paths: list[str | os.PathLike], model=None, device="cpu", max_size: int = MAX_DICT_SIZE,
                **kw) -> UserDictionary:
    samples = []
    for p in sample_files(paths):
        try:
            with open(p, "rb") as f:
                samples.append(f.read(max_size))
        except OSError as e:
            raise DictionaryError(f"{p}: {e.strerror or e}") from None
    return train(samples, model, device, max_size, **kw)


def missing(digest: bytes) -> ModelError:
    return ModelError(f"archive needs dictionary {digest.hex()}; give it with -D")


def wrong(digest: bytes, have: UserDictionary) -> ModelError:
    name = f" ({have.path})" if have.path else ""
    return ModelError(f"archive needs dictionary {digest.hex()}, but the dictionary given{name} is "
                      f"{have.digest.hex()}")
