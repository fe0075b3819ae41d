"""Fuzz target for the archive parser and decoder (hypothesis).

Whatever bytes it is given, `read_info` returns or raises `FormatError`, and `Decompressor.decompress`
returns the bytes the end record vouches for or raises a `BytezipError`: never another exception, never a
hang, and a damaged copy of a known archive never decodes to anything but its original.

Two generators: archives built from the format's grammar with fields drawn near and beyond their limits,
and valid seed archives (neural, zstd, raw chunks) damaged by a few mutations.

The suite runs a few hundred examples. Run longer by hand, e.g.

    BYTEZIP_FUZZ_EXAMPLES=100000 nice pytest -s tests/test_fuzz.py
    python tests/test_fuzz.py 100000
"""
import hashlib
import io
import os
import re
import signal
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

import bytezip
from bytezip import codec, format as fmt
from bytezip.format import LZMA, MIXED, NEURAL, RAW, ZSTD, BytezipError, FormatError
from conftest import ARCHIVE_START, english_text
from bytezip.model import save_model

EXAMPLES = int(os.environ.get("BYTEZIP_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
NAME = "fuzz-model"


@pytest.fixture(scope="module")
def model(trained_model, tmp_path_factory):
    """conftest's trained tiny model (it codes text below 8 bits a byte), found by name as archives do."""
    d = tmp_path_factory.mktemp("models")
    save_model(trained_model, str(d / NAME), extra={"name": NAME})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(codec, "MODELS_DIR", d)
        mp.delenv("BYTEZIP_MODEL", raising=False)
        yield bytezip.coding_model(str(d / NAME))


def neural_payload(m, chunk: bytes) -> bytes:
    return codec.neural_encode(codec.neural_frequencies(m, [chunk])[0], chunk)


def build(m, chunks: list[tuple[int, bytes]], chunk_size: int, with_model: bool) -> bytes:
    """A valid archive holding `chunks` as (codec, raw bytes), whichever codec is asked for."""
    head = fmt.Header(chunk_size, NAME, m.digest) if with_model else fmt.Header(chunk_size)
    coders = {RAW: lambda raw: raw, ZSTD: codec._zstd_compress, LZMA: codec._lzma_compress,
              NEURAL: lambda raw: neural_payload(m, raw)}
    return fmt.archive_bytes(head, [(c, raw, coders[c](raw)) for c, raw in chunks])


@pytest.fixture(scope="module")
def seeds(model):
    """(archive, original) pairs: neural + zstd + lzma + raw with a model, mixed chunks reading a shared
    history (rounds of 2 chunks), zstd + raw without a model, empty."""
    text = english_text()[3000:3100]
    rnd = np.random.default_rng(0).bytes(64)
    mixed = [(NEURAL, text[:32]), (ZSTD, b"ab" * 16), (LZMA, (b"abc" * 11)[:32]), (RAW, rnd[:32]), (NEURAL, text[32:52])]
    out = [(build(model, mixed, 32, True), b"".join(r for _, r in mixed))]
    rounds = text[:48] * 3
    out.append((bytezip.Compressor(model=model, chunk_size=32, round_chunks=2, solid=False).compress(rounds), rounds))
    assert MIXED in [c.codec for c in bytezip.read_info(io.BytesIO(out[-1][0])).chunks]
    plain = b"ab" * 24 + rnd[:48] + b"xyz" * 10
    out.append((bytezip.Compressor(neural=False, chunk_size=48, solid=False).compress(plain), plain))
    out.append((bytezip.Compressor(neural=False).compress(b""), b""))
    assert [c.codec for c in bytezip.read_info(io.BytesIO(out[2][0])).chunks] == [ZSTD, RAW, ZSTD]
    for blob, original in out:
        assert bytezip.decompress(blob) == original
    return out


class Hang(Exception):
    pass


def kind_of(message: str) -> str:
    """The message with names and numbers blanked, for hypothesis's statistics."""
    return re.sub(r"[0-9a-f]*[0-9][0-9a-f]*", "N", re.sub(r"'[^']*'", "M", message))[:60]


def check(blob: bytes) -> bytes | None:
    """The fuzz property: returns the decoded bytes, or None for a BytezipError; fails on anything else."""
    def expire(signum, frame):
        raise Hang("decoding ran for more than 30 s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, 30)
    try:
        try:
            info = bytezip.read_info(io.BytesIO(blob))
        except FormatError:
            info = None
        try:
            out = bytezip.Decompressor().decompress(blob)
        except BytezipError as e:
            assert str(e) and "\n" not in str(e) and str(e).isprintable(), repr(str(e))
            event(f"{type(e).__name__}: {kind_of(str(e))}")
            return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert info is not None, "decoded an archive whose structure read_info rejects"
    assert len(out) == info.trailer.original_size == sum(c.raw_size for c in info.chunks)
    reader = fmt.Reader(io.BytesIO(blob))
    reader.header()      # version 9's checksum covers the header as read, then the output (version 8's: the output)
    covered = reader.header_bytes if reader.version >= 9 else b""
    assert hashlib.sha256(covered + out).digest()[:8] == info.trailer.checksum
    event("decoded")
    return out


# -- generator 1: the grammar, fields near and beyond their limits --------------------------------------
def sometimes(draw, valid, invalid, one_in: int = 24):
    """`valid`, or once in `one_in` draws something drawn from the strategy `invalid` (shrinks to valid)."""
    return draw(invalid) if draw(st.integers(0, one_in - 1)) == one_in - 1 else valid


def sizes(limit: int):
    return st.one_of(st.integers(0, 80), st.sampled_from([limit - 1, limit + 1, 1 << 24, (1 << 24) + 1,
                                                           1 << 40, 1 << 61, (1 << 70) - 1]))


@st.composite
def varints(draw, value):
    """The minimal encoding, sometimes padded with 0x80 groups (overlong)."""
    enc = bytearray(fmt.encode_varint(max(0, value)))
    pad = sometimes(draw, 0, st.sampled_from([1, 2, 9]), 64)
    if pad:
        enc[-1] |= 0x80
        enc += b"\x80" * (pad - 1) + b"\x00"
    return bytes(enc)


@st.composite
def grammar_archives(draw, m):
    """Header, 0-4 chunk records and an end record, each field valid most of the time."""
    chunk_size = sometimes(draw, draw(st.integers(1, 32)), st.sampled_from([0, 64, 65, 1 << 24, (1 << 24) + 1]))
    with_model = draw(st.booleans())
    mid = sometimes(draw, NAME.encode(), st.sampled_from([b"", b"other", b"a\nb", b"\xff"])) if with_model else b""
    dig = sometimes(draw, m.digest, st.sampled_from([bytes(8), bytes(range(8)), b"", m.digest[:3]])) if mid else b""
    rounds = sometimes(draw, draw(st.integers(0, 3)) if with_model else 0, st.sampled_from([1, 1024, 1025]), 32)
    parts = [sometimes(draw, fmt.MAGIC, st.binary(min_size=4, max_size=4), 32),
             bytes([sometimes(draw, 2, st.sampled_from([1, 3]), 32), sometimes(draw, 0, st.sampled_from([1, 0x80]), 32)]),
             draw(varints(chunk_size)), draw(varints(rounds)), bytes([len(mid)]), mid, dig]
    digest_of, total, n = hashlib.sha256(), 0, 0
    for i in range(draw(st.integers(0, 4))):
        codec_ = draw(st.sampled_from([RAW, ZSTD, LZMA, NEURAL, MIXED] if with_model else [RAW, ZSTD, LZMA]))
        codec_ = sometimes(draw, codec_, st.sampled_from([NEURAL, MIXED, 5, 0x7F, 0xFE]), 32)
        size = min(chunk_size, 32) if i < 3 else draw(st.integers(1, max(1, min(chunk_size, 32))))
        raw = draw(st.one_of(st.binary(min_size=size, max_size=size), st.just(b"ab" * size),
                             st.just(english_text()[i * 40:i * 40 + size])))[:max(1, size)]
        payload = {RAW: raw, ZSTD: codec._zstd_compress(raw), LZMA: codec._lzma_compress(raw)}.get(codec_, raw)
        if codec_ == NEURAL and with_model and 0 < len(raw) <= 64:
            payload = neural_payload(m, raw)
        if codec_ in (ZSTD, LZMA, NEURAL) and (payload is None or len(payload) > len(raw)):   # what the encoder does
            # (neural_encode gives None for a payload shorter than the information it decodes to: rejected)
            codec_, payload = RAW, raw
        raw_size = sometimes(draw, len(raw), sizes(chunk_size))
        coded = sometimes(draw, len(payload), sizes(raw_size))
        payload = sometimes(draw, payload, st.binary(max_size=40))
        parts += [bytes([codec_]), draw(varints(raw_size)), draw(varints(coded)), payload]
        digest_of.update(raw)
        total, n = total + len(raw), n + 1
    if sometimes(draw, True, st.just(False), 32):
        parts += [b"\xff", draw(varints(sometimes(draw, n, sizes(n)))), draw(varints(sometimes(draw, total, sizes(total)))),
                  sometimes(draw, digest_of.digest()[:8], st.binary(min_size=8, max_size=8))]
    parts.append(sometimes(draw, b"", st.sampled_from([b"\0", b"junk", fmt.MAGIC])))
    return b"".join(parts)


@FUZZ
@given(data=st.data())
def test_fuzz_grammar(model, data):
    check(data.draw(grammar_archives(model)))


# -- generator 2: damaged seed archives ----------------------------------------------------------------
@st.composite
def mutations(draw, blob: bytes):
    b = bytearray(blob)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip"] * 3 + ["set", "insert", "delete", "truncate", "duplicate", "varint"]))
        last = max(0, len(b) - 1)                  # positions mostly past the magic, version and flags
        pos = draw(st.integers(min(6, last) if draw(st.integers(0, 15)) else 0, last))
        if op == "flip" and b:
            b[pos] ^= draw(st.integers(1, 255))
        elif op == "set" and b:
            b[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFE, 0xFF]))
        elif op == "insert":
            b[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del b[pos:pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del b[pos:]
        elif op == "duplicate":
            b[pos:pos] = b[pos:pos + draw(st.integers(1, 16))]
        elif op == "varint":
            b[pos:pos + 1] = fmt.encode_varint(draw(st.sampled_from([1 << 24, 1 << 40, 1 << 63])))
    return bytes(b)


@FUZZ
@given(data=st.data())
def test_fuzz_damaged_seeds(seeds, data):
    blob, original = data.draw(st.sampled_from([seeds[0]] * 4 + seeds))
    out = check(data.draw(mutations(blob)))
    assert out is None or out == original, "a damaged archive decoded to other bytes"


@FUZZ
@given(blob=st.one_of(st.binary(max_size=200), st.binary(max_size=60).map(lambda b: ARCHIVE_START + b"\0" + b)))
def test_fuzz_arbitrary_bytes(model, blob):
    assert check(blob) is None or blob[:4] == fmt.MAGIC



# -- the coverage-guided target (tests/fuzz_archive.py, atheris) ------------------------------------------
FUZZ_TARGET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz_archive.py")
FINDINGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz_findings")
FUZZ_SECONDS = int(os.environ.get("BYTEZIP_FUZZ_SECONDS", "15"))
DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)/\S+ .*?exec/s: (\d+) rss: (\d+)Mb")


def need_atheris():
    try:
        import atheris  # noqa: F401
    except ImportError:
        pytest.skip("atheris is not installed (pip install atheris, or the test extra): "
                    "the coverage-guided fuzz target cannot run")


def test_atheris_short_run(tmp_path, record_property):
    """tests/fuzz_archive.py under libFuzzer for FUZZ_SECONDS (15) from its seeds of every chunk kind: no
    crash, hang or memory blow-up. Prints the executions and coverage reached (run with -s to see them)."""
    need_atheris()
    import subprocess
    corpus = tmp_path / "corpus"
    cmd = [sys.executable, FUZZ_TARGET, f"-max_total_time={FUZZ_SECONDS}", "-rss_limit_mb=2048", "-timeout=20",
           "-print_final_stats=1", f"-artifact_prefix={tmp_path}{os.sep}", str(corpus)]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=FUZZ_SECONDS + 240)
    log = run.stdout + run.stderr
    findings = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-")))
    done = DONE.search(log)
    if done:
        execs, cov, ft, corp, speed, rss = map(int, done.groups())
        print(f"\natheris {FUZZ_SECONDS} s: {execs} executions ({speed}/s), cov {cov} ft {ft}, corpus {corp} "
              f"inputs (from {len(list(corpus.glob('seed-*')))} seeds), peak rss {rss} MB")
        for k, v in dict(executions=execs, coverage=cov, features=ft, corpus=corp, exec_per_s=speed).items():
            record_property(f"fuzz_{k}", v)
    assert run.returncode == 0 and not findings and done, (
        f"the fuzzer found {findings or 'something'} (exit {run.returncode}); reproduce with "
        f"`python tests/fuzz_archive.py <file>`:\n" + "\n".join(
            l for l in log.splitlines() if not l.startswith(("seed ", "INFO: Instrumenting", "#")))[-6000:])
    seeded = re.search(r"bytezip fuzz: (\d+) seeds .*\(missing: ([^)]*)\)", log)
    assert seeded and seeded.group(2) == "none", "the seeds do not cover every chunk kind: " + (
        seeded.group(0) if seeded else log[-3000:])
    assert int(seeded.group(1)) >= 20 and execs > int(seeded.group(1))


def finding_files() -> list[str]:
    if not os.path.isdir(FINDINGS):
        return []
    return sorted(f for f in os.listdir(FINDINGS) if not f.startswith(".") and not f.endswith((".md", ".expect")))


@pytest.mark.parametrize("name", finding_files() or [pytest.param("", marks=pytest.mark.skip(
    reason="no fuzz findings recorded in tests/fuzz_findings"))])
def test_fuzz_finding_stays_fixed(name):
    """Every input the coverage-guided fuzzer found (tests/fuzz_findings/) through the same property, in a
    process of its own (a finding may be a hang or a memory blow-up): libFuzzer replays it with the target's
    limits (-timeout, -rss_limit_mb) and must exit 0. NAME.expect, where present, holds the SHA-256 of the
    only output allowed (the original of the archive the finding damaged)."""
    need_atheris()
    import subprocess
    path = os.path.join(FINDINGS, name)
    expect = open(path + ".expect").read().strip() if os.path.exists(path + ".expect") else ""
    run = subprocess.run([sys.executable, FUZZ_TARGET, "-rss_limit_mb=2048", "-timeout=20", path],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "BYTEZIP_FUZZ_IGNORE": "", "BYTEZIP_FUZZ_EXPECT": expect})
    log = run.stdout + run.stderr
    why = re.search(r"=== Uncaught Python exception: ===\n(.*?)(?:==\d+== ERROR|\Z)", log, re.S)
    assert run.returncode == 0, f"{name}: the fuzz property fails (exit {run.returncode}):\n" + (
        why.group(1) if why else "\n".join(l for l in log.splitlines() if not l.startswith(("seed ", "INFO: ")))[-4000:])


def test_v8_banded_archive_with_another_band_or_round_count_is_rejected_or_right():
    """The first finding of tests/fuzz_archive.py (tests/fuzz_findings/v8-banded-band-chunks-reorder-*), on the
    committed version 8 archive of random pixels (raw chunks in band order): any value of the round size or
    band chunks fields either is rejected or decodes to the original (version 8's checksum covers the chunks
    in record order, so a reordered output passed it: issue 21, finding 1)."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "archives", "v8")
    blob = open(os.path.join(here, "noise.ppm.bzp"), "rb").read()
    original = open(os.path.join(here, "noise.ppm"), "rb").read()
    head = fmt.Reader(io.BytesIO(blob))
    header = head.header()
    assert header.signal.band_chunks and header.round_chunks and blob[5] == 0
    # magic, version, flags, chunk_size (2-byte varint), round_chunks, signal 3, width (1 byte), channels, offset, bands
    rounds_at, bands_at = 8, 13
    assert blob[rounds_at] == header.round_chunks and blob[bands_at] == header.signal.band_chunks
    wrong = []
    for at in (rounds_at, bands_at):
        for value in range(128):
            damaged = bytearray(blob)
            damaged[at] = value
            try:
                out = bytezip.decompress(bytes(damaged))
            except BytezipError:
                continue
            if out != original:
                wrong.append((at, value))
    assert not wrong, f"{len(wrong)} damaged archives decoded to wrong bytes: (byte, value) {wrong[:10]} ..."



def test_png_envelope_declaring_an_exabyte_is_a_format_error():
    """Fuzz finding 2 (tests/fuzz_findings/png-envelope-declared-size-memoryerror-*): a PNG envelope is a zstd
    frame, and zstandard allocates the content size a frame declares whatever max_output_size says, so a
    63-byte archive whose envelope frame declares 2^62 bytes made `read_info` (`bytezip list`, `test`, `-d`)
    raise MemoryError instead of a FormatError (one declaring a few GB has them allocated before the frame fails)."""
    import struct
    from bytezip import png
    from bytezip.image import ImageLayout
    env = png.Envelope(4, 2, 3, png.SIGNATURE, b"", (10,), (9, 15, 8, 0), b"\0\0", 100, bytes(8))
    head = fmt.Header(64, NAME, bytes(8), 1, ImageLayout(4, 3), b"", env).to_bytes()
    stored = fmt.encode_varint(len(fmt.envelope_bytes(env))) + fmt.envelope_bytes(env)
    assert head.endswith(stored)
    end = b"\xff\0\0" + bytes(8)
    assert bytezip.read_info(io.BytesIO(head + end)).header.png == env
    for declared in (1 << 62, 1 << 40, 1 << 34):
        frame = b"\x28\xb5\x2f\xfd\xe0" + struct.pack("<Q", declared) + b"\x19\0\0abc"   # one raw block, "abc"
        blob = head[:-len(stored)] + fmt.encode_varint(len(frame)) + frame + end
        with pytest.raises(FormatError):
            bytezip.read_info(io.BytesIO(blob))
        with pytest.raises(BytezipError):
            bytezip.Decompressor().decompress(blob)


if __name__ == "__main__":
    os.environ["BYTEZIP_FUZZ_EXAMPLES"] = sys.argv[1] if len(sys.argv) > 1 else "20000"
    sys.exit(pytest.main(["-s", "-p", "no:cacheprovider", __file__]))
