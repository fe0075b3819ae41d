#!/usr/bin/env python3
"""Coverage-guided fuzz target (atheris / libFuzzer) for the archive reader and the decoder.

Every input is fed to `bytezip.codec.read_info` and to `Decompressor(model=<tiny model>).decompress`. The
allowed outcomes are success or a `BytezipError` (any subclass) whose message is one printable line. Anything
else is a finding: another exception, a hang (libFuzzer's -timeout), an input that raises the peak memory
to more than BYTEZIP_FUZZ_MEMORY_MB (256) above what the process held when the input began (or beyond
libFuzzer's -rss_limit_mb), or a wrong success:

- `decompress` succeeds where `read_info` rejects the archive, or returns other than `info.original_size` bytes;
- two archives whose end records carry the same checksum (and, for a PNG coded as pixels, the same envelope
  digest) decode to different bytes. The seeds' checksums are known from the start, so a damaged seed that
  still decodes must decode to that seed's original; an archive whose checksum covers less than what the
  user gets (the order of the output chunks, say) shows up as soon as one damaged copy decodes;
- without a shared history, a decode with 2 lanes gives other bytes than one with the default lanes.

The seed corpus is made at start-up by the current encoder with a tiny model trained for a few seconds with
a fixed seed (so the same model, digest and seeds every run): every chunk kind (raw, zstd, lzma, neural,
mixed), with and without a shared history, with and without the model's priming dictionary, with a user
dictionary (`bytezip.userdict`, given to the decoder too), PCM audio (mono,
stereo), images (PPM, PGM, banded, random pixels in raw chunks), a PNG coded as its pixels, archives without a
model, and the committed sample archives of tests/archives/. The seeds are written into the first corpus
directory (created if missing) as seed-*.bzp, replacing those of an earlier run.

BYTEZIP_FUZZ_IGNORE=<regex> lets a long run go past findings already known (matched against
"ExceptionType: message @ file.py:function", the innermost frame; each is counted on stderr) instead of
stopping at the first, e.g. BYTEZIP_FUZZ_IGNORE='^MemoryError: .*@ format.py:parse_envelope'.

By hand (libFuzzer flags; -timeout, -rss_limit_mb and -max_len get defaults below if not given):

    python tests/fuzz_archive.py -max_total_time=3600 /tmp/fuzzcorpus
    python tests/fuzz_archive.py crash-0123abcd             # replay one input (a finding)
    python tests/fuzz_archive.py -minimize_crash=1 -runs=2000 crash-0123abcd

Findings are written as crash-*/timeout-*/oom-* in the current directory (-artifact_prefix= moves them);
minimised, they go to tests/fuzz_findings/, which tests/test_fuzz.py replays the same way (a finding whose
archive decoded to wrong bytes gets a NAME.expect beside it: the SHA-256 (hex) of the only output allowed,
passed as BYTEZIP_FUZZ_EXPECT, so that it stays a test when the seeds change).
tests/test_fuzz.py also runs this target for 15 s in the default suite (`test_atheris_short_run`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import random
import re
import struct
import sys
import tempfile
import traceback
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
FUZZING = __name__ == "__main__"

if FUZZING:   # coverage of bytezip's Python code only (instrumenting torch and numpy would cost far more)
    import atheris
    with atheris.instrument_imports(include=["bytezip"]):
        import bytezip
        from bytezip import codec, format as fmt, image, mixing, pcm, png  # noqa: F401
else:
    import bytezip
    from bytezip import codec, format as fmt, mixing

import numpy as np
import torch

from bytezip.format import BytezipError

HAS_USER_DICT = importlib.util.find_spec("bytezip.userdict") is not None   # (issue 22's -D)
from tiny import english_text, trained_tiny   # tests/tiny.py: the tests' tiny model

MAX_INPUT = 1 << 16          # inputs above this are skipped (and -max_len is 1 << 14 unless given)
DEFAULT_FLAGS = {"-timeout": "20", "-rss_limit_mb": "4096", "-max_len": str(1 << 14)}
TRAIN_STEPS = 40           # enough for neural chunks to beat zstd on text (2-3 s)
KNOWN_MAX = 20_000           # outputs remembered by checksum (for the "same checksum, same bytes" property)
PAIR_MAX = 1024              # ... with the archive itself when it is at most this long
MEMORY_MB = int(os.environ.get("BYTEZIP_FUZZ_MEMORY_MB", "256"))   # an input may raise the peak RSS this much
HEADER_BYTES = 48            # the custom mutator changes one of these bytes in a quarter of the mutations


class Finding(AssertionError):
    """An outcome the decoder must never have."""


# -- the tiny model, and the seeds -------------------------------------------------------------------------
def tiny_models() -> tuple[codec.CodingModel, codec.CodingModel]:
    """(plain, primed): the tiny model trained briefly on text (fixed seed, one thread: the same weights every
    run), without and with a priming dictionary. `primed` decodes archives made with either."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = trained_tiny(TRAIN_STEPS)
    finally:
        torch.set_num_threads(threads)
    plain = codec.coding_model(model)
    plain = codec.CodingModel(plain.exact, "fuzz-tiny", plain.digest)
    words = english_text()[-20000:]
    dictionary = mixing.History()
    dictionary.extend(words)
    primed = codec.CodingModel(plain.exact, "fuzz-tiny", plain.digest, dictionary,
                               hashlib.sha256(words).digest()[:fmt.DIGEST_BYTES])
    return plain, primed


def user_dictionary(plain: codec.CodingModel):
    """A user dictionary (`bytezip.userdict`, as `bytezip --train-dict`) of some text, for the tiny model."""
    from bytezip import userdict
    text = english_text()
    return userdict.train([text[i:i + 300] for i in range(20000, 26000, 300)], model=plain, weight_bytes=600,
                          workers=1)


def wav(samples: np.ndarray, channels: int, rate: int = 16000) -> bytes:
    import wave
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def pixels(h: int, w: int, c: int, seed: int = 0, noise: int = 8) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 4, y * 5, (x + y) * 2, 255 - x][:c], -1)
    return (base + np.random.default_rng(seed).integers(0, noise, (h, w, c))).clip(0, 255).astype(np.uint8)


def png_file(img: np.ndarray) -> bytes:
    """A PNG written by zlib itself (filter 0 rows), which bytezip can take apart and rebuild."""
    h, w, c = img.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = b"".join(b"\0" + img[r].tobytes() for r in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def seeds(plain: codec.CodingModel, primed: codec.CodingModel, user=None) -> list[tuple[str, bytes, bytes | None]]:
    """(name, archive, original or None when unknown) for every kind of chunk and header the encoder writes,
    each decodable in a few milliseconds by `primed` (and the user dictionary `user`)."""
    from bytezip.format import HISTORY_ZSTD, LZMA, MIXED, NEURAL, RAW, ZSTD
    from bytezip.plain import history_zstd_compress
    text = english_text()
    out: list[tuple[str, bytes, bytes | None]] = []

    def add(name: str, data: bytes, **options):
        out.append((name, codec.Compressor(**{"solid": False, **options}).compress(data), data))

    # every codec in one archive, each chunk coded as asked (not as the encoder would choose)
    raw = np.random.default_rng(0).bytes(32)
    parts = [(NEURAL, text[3000:3032]), (ZSTD, b"ab" * 16), (LZMA, (b"abc" * 11)[:32]), (RAW, raw),
             (NEURAL, text[3032:3050])]
    coders = {RAW: lambda r: r, ZSTD: codec._zstd_compress, LZMA: codec._lzma_compress,
              NEURAL: lambda r: codec.neural_encode(codec.neural_frequencies(plain, [r])[0], r)}
    head = fmt.Header(32, plain.model_id, plain.digest)
    assert all(coders[c](r) is not None for c, r in parts), "a neural payload the decoder would reject"
    out.append(("every-codec", fmt.archive_bytes(head, [(c, r, coders[c](r)) for c, r in parts]),
                b"".join(r for _, r in parts)))
    repeat = text[4000:4032]                # a history zstd chunk: the second round repeats the first
    out.append(("history-zstd", fmt.archive_bytes(fmt.Header(32, plain.model_id, plain.digest, round_chunks=1), [
        (RAW, repeat, repeat), (HISTORY_ZSTD, repeat, history_zstd_compress(repeat, 0, repeat))]), repeat * 2))
    add("text-history", text[:48] * 3 + text[5000:5100], model=plain, chunk_size=32, round_chunks=2)
    add("text-history-dict", text[6000:6200], model=primed, chunk_size=32, round_chunks=4)
    add("text-nohistory", text[7000:7200], model=plain, chunk_size=64, history=False)
    add("text-nohistory-dict", text[7200:7400], model=primed, chunk_size=64, history=False)
    add("text-neural-only", text[8000:8200], model=plain, chunk_size=64, mixing=False)
    add("text-solid", text[9000:9400] * 2, model=plain, chunk_size=128, solid=True)
    add("mixed-kinds", b"ab" * 40 + raw * 3 + text[100:260] + bytes(100), model=plain, chunk_size=64,
        round_chunks=3)
    add("nomodel", b"ab" * 24 + raw + b"xyz" * 10, neural=False, chunk_size=48)
    add("nomodel-lzma", (text[:300] + raw) * 3, neural=False, chunk_size=1024)
    add("nomodel-empty", b"", neural=False)
    add("model-empty", b"", model=plain, chunk_size=64)
    add("model-one-byte", b"x", model=plain, chunk_size=64, round_chunks=1)
    t = np.arange(240)
    tone = 8000 * np.sin(2 * np.pi * 440 * t / 16000) + np.random.default_rng(1).normal(0, 300, t.shape)
    add("wav-mono", wav(tone, 1), model=plain, chunk_size=32, round_chunks=4)
    add("wav-stereo", wav(np.stack([tone[:120], tone[120:] / 2], -1).reshape(-1), 2), model=plain, chunk_size=32,
        round_chunks=4)
    add("pcm-raw", (tone.astype("<i2")).tobytes() * 2, model=plain, chunk_size=64, round_chunks=8)
    add("ppm-banded", b"P6\n16 12\n255\n" + pixels(12, 16, 3).tobytes(), model=plain, chunk_size=16,
        round_chunks=4)
    add("pgm-banded", b"P5\n24 16\n255\n" + pixels(16, 24, 1).tobytes(), model=plain, chunk_size=16,
        round_chunks=6)
    add("ppm-noise-banded", b"P6\n16 12\n255\n" + np.random.default_rng(2).bytes(16 * 12 * 3), model=plain,
        chunk_size=32, round_chunks=2)
    add("ppm-unbanded", b"P6\n8 4\n255\n" + pixels(4, 8, 3).tobytes(), model=plain, chunk_size=64, round_chunks=2)
    add("png-pixels", png_file(pixels(16, 16, 3, noise=2)), model=plain, chunk_size=64, round_chunks=2)
    add("png-pixels-rgba", png_file(pixels(8, 8, 4, noise=2)), model=plain, chunk_size=128, round_chunks=1)
    add("png-pixels-grey", png_file(pixels(16, 16, 1, noise=2)), model=plain, chunk_size=128, round_chunks=1)
    add("png-file", png_file(pixels(10, 12, 3, noise=40)), model=plain, chunk_size=64, round_chunks=2)
    if user is not None:
        add("user-dictionary", text[22000:22100] + text[30000:30080], model=plain, dictionary=user, chunk_size=64)
    for p in sorted((HERE / "archives").glob("*/*.bzp")):   # committed archives of earlier versions
        original = p.with_suffix("")
        out.append((f"committed-{p.parent.name}-{p.stem}", p.read_bytes(), original.read_bytes() if original.is_file() else None))
    return out


def missing_kinds(all_seeds) -> list[str]:
    """What the seeds should hold and do not (empty when the corpus covers every chunk kind and header)."""
    want = {"raw", "zstd", "lzma", "neural", "mixed", "history zstd", "history", "no history", "dictionary", "no model",
            "pcm mono", "pcm stereo", "image", "banded image", "banded raw image", "png", "empty"}
    want |= {"user dictionary"} if HAS_USER_DICT else set()
    for _, blob, _ in all_seeds:
        try:
            info = codec.read_info(io.BytesIO(blob))
        except BytezipError:
            continue
        h, codecs = info.header, {fmt.CODEC_NAMES[c.codec] for c in info.chunks}
        signal = h.signal
        banded = getattr(signal, "band_chunks", 0) > 0
        want -= codecs
        want -= {"history" if h.round_chunks else "no history"}
        want -= {"dictionary"} if h.dictionary_digest else set()
        want -= {"no model"} if not h.model_id else set()
        want -= {"empty"} if not info.chunks else set()
        want -= {"png"} if h.png else set()
        want -= {"user dictionary"} if getattr(h, "user_digest", b"") else set()
        if signal is not None and hasattr(signal, "width"):
            want -= {"image", "banded image"} if banded else {"image"}
            want -= {"banded raw image"} if banded and codecs == {"raw"} else set()
        elif signal is not None:
            want -= {f"pcm {'mono' if signal.channels == 1 else 'stereo'}"}
    return sorted(want)


def describe(blob: bytes) -> str:
    try:
        info = codec.read_info(io.BytesIO(blob))
    except BytezipError as e:
        return f"rejected: {e}"
    h = info.header
    kinds = "".join(fmt.CODEC_NAMES[c.codec][0] for c in info.chunks)
    return (f"{len(blob)} B, chunk {h.chunk_size}, rounds {h.round_chunks}, signal {h.signal}, "
            f"dict {bool(h.dictionary_digest)}, user dict {bool(getattr(h, 'user_digest', b''))}, png {bool(h.png)}, "
            f"chunks {kinds}")


# -- the property ----------------------------------------------------------------------------------------
class Target:
    """The fuzz property over one input (call it); raises `Finding` (or lets another exception through)."""

    def __init__(self, model: codec.CodingModel, known: list[tuple[str, bytes, bytes | None]] = (), user=None):
        extra = {"dictionary": user} if user is not None else {}
        self.decoder = codec.Decompressor(model=model, workers=1, **extra)
        self.narrow = codec.Decompressor(model=model, workers=1, lanes=2, **extra)
        self.known: dict[tuple, tuple[bytes, bytes | None, str]] = {}
        self.expect: bytes | None = None    # the SHA-256 of the only output allowed (replaying a finding)
        for name, blob, original in known:
            if original is not None:
                self.remember(blob, original, name)

    @staticmethod
    def key(info) -> tuple:
        png_ = info.header.png
        return (info.trailer.checksum, png_.digest if png_ else None)

    def remember(self, blob: bytes, out: bytes, name: str = "") -> None:
        try:
            info = codec.read_info(io.BytesIO(blob))
        except BytezipError:
            return          # an earlier version's archive
        if len(self.known) < KNOWN_MAX:
            self.known.setdefault(self.key(info), (hashlib.sha256(out).digest(),
                                                   blob if len(blob) <= PAIR_MAX else None, name))

    @staticmethod
    def one_line(e: BytezipError) -> None:
        msg = str(e)
        if not msg or "\n" in msg or not msg.isprintable():
            raise Finding(f"{type(e).__name__} message is not one printable line: {msg!r}")

    def __call__(self, blob: bytes) -> bytes | None:
        """The decoded bytes, or None when the archive is rejected with a BytezipError."""
        try:
            info = codec.read_info(io.BytesIO(blob))
        except BytezipError as e:
            self.one_line(e)
            info = None
        try:
            out = self.decoder.decompress(blob)
        except BytezipError as e:
            self.one_line(e)
            return None
        if info is None:
            raise Finding("decompress accepted an archive that read_info rejects")
        if len(out) != info.original_size:
            raise Finding(f"decoded {len(out)} bytes, the archive declares {info.original_size}")
        if not info.header.round_chunks and self.narrow.decompress(blob) != out:   # (a history fixes the rounds)
            raise Finding("decoding with 2 lanes gives other bytes than with the default lanes")
        if self.expect is not None and hashlib.sha256(out).digest() != self.expect:
            raise Finding("decoded to other bytes than the original this archive was made from (BYTEZIP_FUZZ_EXPECT)")
        digest, earlier, name = self.known.get(self.key(info), (None, None, None))
        if digest is None:
            self.remember(blob, out)
        elif digest != hashlib.sha256(out).digest():
            where = f"seed {name}" if name else "an earlier input"
            if earlier is not None and not name:
                path = Path(tempfile.gettempdir()) / f"fuzz-earlier-{hashlib.sha1(earlier).hexdigest()}"
                path.write_bytes(earlier)
                where += f" (saved as {path})"
            raise Finding(f"decoded to other bytes than {where} with the same checksum: a damaged archive "
                          f"decodes to wrong data and passes the checksum")
        return out


_target: Target | None = None


def target() -> Target:
    """The Target with the tiny model and the seeds' originals (built once per process, a few seconds)."""
    global _target
    if _target is None:
        plain, primed = tiny_models()
        user = user_dictionary(plain) if HAS_USER_DICT else None
        _target = Target(primed, seeds(plain, primed, user), user)
    return _target


def check(blob: bytes) -> bytes | None:
    return target()(blob)


# -- libFuzzer -------------------------------------------------------------------------------------------
def peak_rss_mb() -> int:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10


def rss_mb() -> int:
    """The resident memory now. (It creeps up by some KB per input under atheris' instrumentation, not in a
    plain process: hence a limit per input, and a -rss_limit_mb default that leaves a long run room.)"""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
    except OSError:
        return peak_rss_mb()


def write_seeds(corpus: Path, all_seeds) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for old in corpus.glob("seed-*.bzp"):
        old.unlink()
    for name, blob, _ in all_seeds:
        (corpus / f"seed-{name}.bzp").write_bytes(blob)


def main(argv: list[str]) -> None:
    global _target
    torch.set_num_threads(1)
    args = list(argv)
    for flag, value in DEFAULT_FLAGS.items():
        if not any(a.startswith(flag + "=") for a in args[1:]):
            args.insert(1, f"{flag}={value}")
    positional = [a for a in args[1:] if not a.startswith("-")]
    replaying = any(Path(a).is_file() for a in positional)
    plain, primed = tiny_models()
    user = user_dictionary(plain) if HAS_USER_DICT else None
    all_seeds = seeds(plain, primed, user)
    _target = Target(primed, all_seeds, user)
    if os.environ.get("BYTEZIP_FUZZ_EXPECT"):
        _target.expect = bytes.fromhex(os.environ["BYTEZIP_FUZZ_EXPECT"])
    if not replaying:
        if not positional:
            positional = [tempfile.mkdtemp(prefix="bytezip-fuzz-")]
            args.append(positional[0])
        write_seeds(Path(positional[0]), all_seeds)
        for name, blob, original in all_seeds:
            line = describe(blob)
            print(f"seed {name}: {line}", file=sys.stderr)
            out = check(blob)
            if original is not None and out != original and not (out is None and name.startswith("committed-")):
                raise Finding(f"seed {name} does not decode to its original")     # (those need the shipped model)
        missing = missing_kinds(all_seeds)
        print(f"bytezip fuzz: {len(all_seeds)} seeds in {positional[0]} (missing: {', '.join(missing) or 'none'}), "
              f"model {primed.digest.hex()}, format version {fmt.VERSION}", file=sys.stderr)
    sys.stderr.flush()

    ignore = re.compile(os.environ["BYTEZIP_FUZZ_IGNORE"]) if os.environ.get("BYTEZIP_FUZZ_IGNORE") else None
    ignored: dict[str, int] = {}
    def test_one_input(data: bytes) -> None:
        if len(data) > MAX_INPUT:
            return
        try:
            before, peak = rss_mb(), peak_rss_mb()
            _target(data)
            if peak_rss_mb() > peak and peak_rss_mb() - before > MEMORY_MB:   # (the peak only grows)
                raise Finding(f"this input took the process to {peak_rss_mb()} MB, {peak_rss_mb() - before} MB "
                              f"above the {before} MB it started from (BYTEZIP_FUZZ_MEMORY_MB={MEMORY_MB})")
        except Exception as e:    # a finding: unless it is a known one the run was told to go past
            where = traceback.extract_tb(e.__traceback__)[-1]
            kind = f"{type(e).__name__}: {e} @ {Path(where.filename).name}:{where.name}"
            if ignore is None or not ignore.search(kind):
                raise
            ignored[kind[:200]] = ignored.get(kind[:200], 0) + 1
            if ignored[kind[:200]] in (1, 10, 100, 1000, 10000):
                print(f"bytezip fuzz: ignored x{ignored[kind[:200]]} (BYTEZIP_FUZZ_IGNORE): {kind[:200]}",
                      file=sys.stderr)

    def mutate(data: bytes, max_size: int, seed: int) -> bytes:
        """libFuzzer's mutations, and one in four times a small change to one of the first bytes: the header
        fields (sizes, round and band counts, signal, flags) decide how everything after them is read."""
        if data and seed % 4 == 0:
            rnd = random.Random(seed)
            b = bytearray(data)
            pos = rnd.randrange(min(len(b), HEADER_BYTES))
            b[pos] = rnd.choice([b[pos] ^ (1 << rnd.randrange(8)), (b[pos] + 1) & 0xFF, (b[pos] - 1) & 0xFF,
                                 rnd.randrange(256), rnd.choice([0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF])])
            return bytes(b)
        return atheris.Mutate(data, max_size)

    atheris.Setup(args, test_one_input, custom_mutator=mutate)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
