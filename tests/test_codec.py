"""Codec round trips and exactness: parallel forward (encode) vs incremental steps (decode)."""
import dataclasses
import inspect
import io
import lzma
from pathlib import Path

import numpy as np
import pytest
import torch

import bytezip
from bytezip import codec, format as fmt
from bytezip.exact import ExactMegabyte
from bytezip.model import Megabyte
from conftest import TINY, english_text, image_pixels, wav_bytes


def codecs_used(blob: bytes) -> list[int]:
    return [r.codec for r in bytezip.read_info(io.BytesIO(blob)).chunks]


INPUTS = {
    "empty": b"",
    "one byte": b"x",
    "all byte values": bytes(range(256)),
    "text": english_text()[:3000],
    "image pixels": image_pixels(),
    "wav": wav_bytes(),
    "long repeats": b"abcdefgh" * 700 + b"\0" * 3000,
    "odd size": english_text()[:257 * 3 + 1],
    "one under a patch": b"abc",
}


@pytest.mark.parametrize("name", list(INPUTS))
def test_round_trip(name, trained_model):
    data = INPUTS[name]
    cm = bytezip.coding_model(trained_model)
    blob = bytezip.compress(data, model=cm)
    assert bytezip.decompress(blob, model=cm) == data


def test_text_uses_neural_chunks(trained_model):
    data = english_text()[5000:9000]
    blob = bytezip.compress(data, model=trained_model)
    assert set(fmt.MODEL_CODECS) & set(codecs_used(blob))
    assert len(blob) < len(data) * 0.6
    assert bytezip.decompress(blob, model=trained_model) == data


def test_random_megabyte_stays_near_raw(random_model):
    data = np.random.default_rng(1).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    cm = bytezip.coding_model(random_model)
    comp = bytezip.Compressor(model=cm, solid=False)
    blob = comp.compress(data)
    n_chunks = -(-len(data) // comp.chunk_size)
    assert len(blob) <= len(data) + 64 + 6 * n_chunks
    assert fmt.ZSTD not in codecs_used(blob)
    assert bytezip.decompress(blob, model=cm) == data


def test_zstd_only_needs_no_model():
    data = b"spam and eggs " * 1000
    blob = bytezip.Compressor(neural=False).compress(data)
    assert bytezip.read_info(io.BytesIO(blob)).header.model_id == ""
    assert bytezip.decompress(blob, model="no-such-model") == data


@pytest.mark.parametrize("lanes", [1, 3, 64])
@pytest.mark.parametrize("threads", [1, 2])
def test_parallel_encode_incremental_decode_identical(trained_model, lanes, threads):
    """Encode with the parallel forward in one batch; decode step by step with other lane/thread counts."""
    data = english_text()[:1000] + image_pixels()[:500] + b"\x01\x02" * 150
    cm = bytezip.coding_model(trained_model)
    old = torch.get_num_threads()
    try:
        blob = bytezip.Compressor(model=cm, solid=False).compress(data)
        assert sum(c in fmt.MODEL_CODECS for c in codecs_used(blob)) >= 4
        torch.set_num_threads(threads)
        assert bytezip.Decompressor(model=cm, lanes=lanes).decompress(blob) == data
        # and the archive does not depend on the encoder's workers or threads either, nor (without a shared
        # history) on how many chunks are coded together
        assert bytezip.Compressor(model=cm, solid=False, workers=1).compress(data) == blob
        independent = bytezip.Compressor(model=cm, solid=False, history=False, lanes=64).compress(data)
        assert bytezip.Compressor(model=cm, solid=False, history=False, lanes=1).compress(data) == independent
    finally:
        torch.set_num_threads(old)


def test_frequencies_independent_of_other_lanes(trained_model):
    """A chunk's distributions are the same alone, in a batch, and next to different neighbours."""
    em = ExactMegabyte(trained_model)
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (5, 256), generator=g)
    together = em.frequencies(x)
    other = x.clone()
    other[[0, 2, 3, 4]] = torch.randint(0, 256, (4, 256), generator=g)
    assert torch.equal(em.frequencies(x[1:2])[0], together[1])
    assert torch.equal(em.frequencies(other)[1], together[1])
    stepper = em.stepper(5)
    for t in range(256):
        assert torch.equal(stepper.next_frequencies(), together[:, t])
        stepper.push(x[:, t])


def test_exact_model_costs_under_one_percent(trained_model):
    """Code length under the exact integer model vs the float model's cross-entropy on the same bytes."""
    data = np.frombuffer(english_text()[20000:20000 + 8 * 256], dtype=np.uint8)
    x = torch.from_numpy(data.astype(np.int64)).reshape(8, 256)
    with torch.no_grad():
        float_bits = torch.nn.functional.cross_entropy(
            trained_model(x).reshape(-1, 256).double(), x.reshape(-1), reduction="sum").item() / np.log(2)
    f = ExactMegabyte(trained_model).frequencies(x).double()
    exact_bits = -torch.log2(f.gather(-1, x[..., None])[..., 0] / f.sum(-1)).sum().item()
    assert exact_bits < float_bits * 1.01
    coded = sum(len(codec.neural_encode(fi.long().numpy(), bytes(row.tolist())))
                for fi, row in zip(f, x.to(torch.uint8)))
    assert coded * 8 < exact_bits * 1.01 + 8 * 8 * 8   # range coder: a few bytes per chunk at most


def test_solid_fallback_keeps_repeats_longer_than_a_chunk(trained_model):
    """A block repeated far beyond the chunk size: the whole-input zstd archive wins and needs no model."""
    data = np.random.default_rng(5).integers(0, 256, 1024, dtype=np.uint8).tobytes() * 40
    cm = bytezip.coding_model(trained_model)
    solid = bytezip.Compressor(model=cm).compress(data)              # solid is the default
    chunked = bytezip.Compressor(model=cm, solid=False).compress(data)
    assert len(solid) < 2000 < len(chunked)
    info = bytezip.read_info(io.BytesIO(solid))
    assert info.header.model_id == "" and [c.codec for c in info.chunks] == [fmt.ZSTD]
    assert bytezip.decompress(solid, model="no-such-model") == data
    text = english_text()[:3000]               # otherwise: the smaller of the two archives
    both = [bytezip.Compressor(model=cm, solid=s).compress(text) for s in (True, False)]
    assert len(both[0]) <= len(both[1]) and bytezip.decompress(both[0], model=cm) == text


def test_each_chunk_takes_the_smaller_of_lzma_and_zstd():
    """Without a model every chunk is the smallest of lzma, zstd and raw; both kinds decode."""
    pcm, rnd = wav_bytes(seconds=1)[44:44 + 8192], np.random.default_rng(1).bytes(4096)
    data = english_text()[:4096] + pcm + rnd + bytes(100) * 40
    blob = bytezip.Compressor(neural=False, chunk_size=4096).compress(data)
    info = bytezip.read_info(io.BytesIO(blob))
    for rec, chunk in zip(info.chunks, [data[i:i + 4096] for i in range(0, len(data), 4096)]):
        best = min(len(codec._lzma_compress(chunk)), len(codec._zstd_compress(chunk)), len(chunk))
        assert rec.coded_size == best
    assert {fmt.LZMA, fmt.ZSTD, fmt.RAW} <= {r.codec for r in info.chunks}
    assert bytezip.decompress(blob) == data


def test_a_block_repeated_costs_a_few_bytes_a_chunk():
    """4 KB chunks that repeat earlier rounds are history zstd chunks (format 11) of a few bytes each: the model
    may not code a chunk in under 1/8 bit a byte (MAX_MODEL_RATIO), and zstd alone costs a kilobyte a chunk."""
    torch.manual_seed(0)
    cm = bytezip.coding_model(Megabyte(dataclasses.replace(TINY, max_patches=1024)).eval())   # a 4 KB context
    block = english_text()[:40_000]
    once, twice = (bytezip.Compressor(model=cm, solid=False).compress(d) for d in (block, block * 2))
    repeats = [r.coded_size for r in bytezip.read_info(io.BytesIO(twice)).chunks if r.codec == fmt.HISTORY_ZSTD]
    assert sum(size < 40 for size in repeats) >= 9                   # of the 10 chunks that repeat the first 10
    assert len(twice) < len(once) + 1000                            # (the rounds differ: 3 and 2 chunks)
    assert bytezip.decompress(twice, model=cm) == block * 2


@pytest.mark.slow     # ~1 minute: 600 KB through the shipped model, both ways
def test_a_300_kb_block_written_twice_codes_below_xz():
    """Issue 24: the same 300 KB block written twice (stdlib source, prose and code) codes below xz -9e by the
    model-coded archive, and that is the archive the defaults write."""
    import argparse, typing, textwrap
    block = "\n".join(inspect.getsource(m) for m in (argparse, inspect, typing, textwrap)).encode()[:300_000]
    data = block * 2
    blob = bytezip.compress(data)
    xz = len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    used = codecs_used(blob)
    print(f"\n{len(data)} -> {len(blob)} bytes (xz -9e {xz}): {used.count(fmt.HISTORY_ZSTD)} history zstd chunks, "
          f"{used.count(fmt.MIXED)} mixed, {len(used)} in all")
    assert len(blob) < xz and set(used) <= {fmt.MIXED, fmt.NEURAL, fmt.HISTORY_ZSTD}
    assert bytezip.decompress(blob) == data


ARCHIVES = Path(__file__).parent / "archives"


@pytest.mark.parametrize("archive", sorted(ARCHIVES.glob("v*/*.bzp")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_format_version_still_decodes(archive):
    """Archives are forever: a sample of each format version that has shipped (tests/archives/vN, made by the
    bytezip of that version with the shipped model) decodes to its original, and `read_info` reads it."""
    original = archive.parent / ("text.txt" if archive.name.startswith("text-") else archive.stem)
    blob = archive.read_bytes()
    assert blob[4] == int(archive.parent.name[1:])
    dictionary = archive.parent / "records.dict" if blob[5] & fmt.FLAG_USER_DICT else None   # (its README)
    assert bytezip.decompress(blob, dictionary=dictionary) == original.read_bytes()
    assert bytezip.read_info(io.BytesIO(blob)).original_size == original.stat().st_size
