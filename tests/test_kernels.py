"""The compiled kernels compute exactly what the numpy code does: step by step, and whole archives."""
import io
import re

import numpy as np
import pytest

import bytezip
from bytezip import format as fmt, kernels, mixing, neural

from bytezip.predictors import record
from conftest import english_text, structures, wav_bytes
from test_image import photo

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the C kernels were not built (no C compiler at "
                                                                "install, or BYTEZIP_KERNELS=0): numpy codes alone")


@pytest.fixture(params=["avx512", "compiled"])
def vector_code(request):
    """A test runs on the intrinsics where this CPU has them (AVX-512 / VNNI, or AVX2's int8 products), and on
    the compilers' code alone."""
    if request.param == "avx512" and not kernels.intrinsics(True):
        pytest.skip("this CPU has neither AVX-512 nor AVX2: the compilers' code alone runs here")
    used = kernels.intrinsics(request.param == "avx512")
    yield used
    kernels.intrinsics(True)


def mixers(monkeypatch, *args, **kwargs) -> tuple[mixing.Mixer, mixing.Mixer]:
    """The same Mixer twice: on the numpy code, and on the kernels."""
    with monkeypatch.context() as m:
        m.setattr(kernels, "LIB", None)
        slow = mixing.Mixer(*args, **kwargs)
    fast = mixing.Mixer(*args, **kwargs)
    assert slow._kernel is None and fast._kernel is not None
    return slow, fast


@pytest.mark.parametrize("with_dictionary", [False, True])
def test_mixer_steps_match_numpy_exactly(monkeypatch, with_dictionary, vector_code):
    text = english_text()
    history, dictionary = mixing.History(), None
    history.extend(text[:30000])
    if with_dictionary:
        dictionary = mixing.History()
        dictionary.extend(text[-20000:])
    n, sizes = 700, [700, 700, 300, 650, 1]                 # lanes of different lengths end at different steps
    data = np.zeros((len(sizes), n), dtype=np.int64)
    for i, size in enumerate(sizes):
        data[i, :size] = np.frombuffer(text[30000 + 997 * i:][:size], dtype=np.uint8)
    # a table for the field context: delimited lines, then a line longer than its window
    table = b"".join(b"%d,%d\t%x;%d|x\n" % (i, i * i, i * 7919, i % 7) for i in range(24)) + b"7," * 150
    data[3, :650] = np.frombuffer(table[:650], dtype=np.uint8)
    # records for the record context: 14-byte structures, then 9-byte ones (the length found changes)
    records = structures(25, 14, seed=1)[:350] + structures(40, 9, seed=2)[:350]
    data[1, :700] = np.frombuffer(records, dtype=np.uint8)
    neural = np.random.default_rng(0).integers(1, 3000, (len(sizes), n, 256))
    slow, fast = mixers(monkeypatch, sizes, history, None, dictionary)
    for t in range(n):
        np.testing.assert_array_equal(fast.mix(neural[:, t]), slow.mix(neural[:, t]), err_msg=f"step {t}")
        slow.update(data[:, t])
        fast.update(data[:, t])
    for name in ("weights", "geo_weights", "blend", "ptr", "len", "hits", "tries", "match_table", "hist", "record"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
    assert fast.record[1, record.LENGTH] == 9               # the record context was on in lane 1, and moved
    for name in slow.final:
        np.testing.assert_array_equal(fast.final[name], slow.final[name], err_msg=f"final {name}")
    assert (fast.final["blend"] != slow.blend).any()        # the short lanes' snapshots are not the end state


def test_mixer_holds_every_table_its_kernel_reads(monkeypatch):
    """The kernel state keeps only addresses, so the Mixer must own the tables behind them, even tables that
    no cache holds (two decoding threads' first calls of the cached table builder each build a pair, and one
    pair was freed under a running mixer: decodes of fresh processes failed a third of the time)."""
    import gc
    import weakref
    build, built = mixing._log_exp_tables.__wrapped__, []

    def uncached():
        tables = build()
        built.extend(weakref.ref(t) for t in tables)
        return tables
    monkeypatch.setattr(mixing, "_log_exp_tables", uncached)
    mixer = mixing.Mixer([64, 64])
    gc.collect()
    assert mixer._kernel is not None and built and all(ref() is not None for ref in built[1:])  # exp2 alive
    assert mixer._kernel.exp2 == built[1]().ctypes.data


@pytest.mark.parametrize("kind", ["text", "audio", "image"])
def test_archives_are_the_same_with_and_without_kernels(trained_model, monkeypatch, kind):
    cm = bytezip.coding_model(trained_model)
    data = {"text": english_text()[:12000], "audio": wav_bytes(0.2), "image": photo(h=40).tobytes()}[kind]
    fast = bytezip.Compressor(model=cm, chunk_size=256, solid=False).compress(data)
    with monkeypatch.context() as m:
        m.setattr(kernels, "LIB", None)
        slow = bytezip.Compressor(model=cm, chunk_size=256, solid=False).compress(data)
        assert bytezip.Decompressor(model=cm, lanes=7).decompress(fast) == data
    assert fast == slow
    assert fmt.MIXED in [c.codec for c in bytezip.read_info(io.BytesIO(fast)).chunks]
    assert bytezip.Decompressor(model=cm).decompress(slow) == data


def decode_both_loops(cm, payloads, sizes, mixed, history_bytes, **kw):
    """neural_decode's steps in C and in Python (`timings` keeps them there), each with a fresh history of
    `history_bytes` (decoding hands weights on to it): (output or error text) each."""
    results = []
    for timings in (None, {}):
        history = mixing.History()
        history.extend(history_bytes)
        try:
            results.append(neural.neural_decode(cm, payloads, sizes, mixed, timings=timings, history=history, **kw))
        except fmt.FormatError as e:
            results.append(str(e))
    return results


def test_the_c_decoding_loop_decodes_what_the_python_loop_does(trained_model):
    """csrc/steps.c reimplements constriction's range decoder and its lazy categorical model: every stream
    decodes to the same bytes in both loops, neural and mixed lanes of different lengths together, one
    batch or split among threads; damaged and random payloads fail with the same error, or decode alike."""
    cm = bytezip.coding_model(trained_model)
    text = english_text()
    chunks = [text[i * 256:i * 256 + n] for i, n in enumerate([256, 213, 64, 256, 1, 133])]
    history = mixing.History()
    history.extend(text[-9000:])
    neural_payloads, mixed_payloads, _ = neural.encode_lanes(cm, chunks, True, history)
    mixed = [i % 2 == 1 for i in range(len(chunks))]
    payloads = [m if x else n for n, m, x in zip(neural_payloads, mixed_payloads, mixed)]
    sizes = [len(c) for c in chunks]
    for workers in (1, 3):
        c_loop, python_loop = decode_both_loops(cm, payloads, sizes, mixed, text[-9000:], workers=workers)
        assert c_loop == python_loop == chunks
    rng = np.random.default_rng(1)
    outcomes = set()
    for trial in range(25):
        damaged = list(payloads)
        i = trial % len(damaged)
        if trial < 12:                                       # one byte changed
            b = bytearray(damaged[i])
            b[rng.integers(len(b))] ^= int(rng.integers(1, 256))
            damaged[i] = bytes(b)
        elif trial < 24:                                     # random bytes, of every length up to 40
            damaged[i] = rng.integers(0, 256, int(rng.integers(1, 41)), dtype=np.uint8).tobytes()
        else:                                                # a point no interval holds (constriction's InvalidData)
            damaged[i] = b"\xff" * 8
        c_loop, python_loop = decode_both_loops(cm, damaged, sizes, mixed, text[-9000:], whole=trial % 3 > 0)
        assert c_loop == python_loop, trial
        outcomes.add(re.sub(r".*chunk (.*)\)", r"\1", re.sub(r"\d+", "N", c_loop)) if isinstance(c_loop, str)
                     else "decoded")
    assert outcomes == {"decoded", "decodes to more than its N bytes can hold", "is longer than what it decodes to",
                        "is not a valid range-coder stream"}, outcomes


@pytest.mark.parametrize("config, lanes", [(None, 9), ({"d_local": 24, "n_local_layers": 2}, 5)])
def test_model_steps_and_forward_match_torch_exactly(random_model, monkeypatch, config, lanes, vector_code):
    """The C local step and attention against the torch code, for the blocked widths (multiples of 32) and
    any other: the incremental steps and the parallel forward; with the int8 products where VNNI is."""
    import dataclasses

    import torch
    from bytezip.exact import ExactMegabyte
    from bytezip.model import Megabyte
    from conftest import TINY
    if config:
        torch.manual_seed(1)
        model = Megabyte(dataclasses.replace(TINY, **config)).eval()
    else:
        model = random_model
    fast = ExactMegabyte(model)
    with monkeypatch.context() as m:
        m.setattr(kernels, "LIB", None)
        slow = ExactMegabyte(model)
    assert fast.local_kernel is not None and fast.g_blocks[0].attn.c is not None
    assert slow.local_kernel is None and slow.g_blocks[0].attn.c is None
    data = torch.from_numpy(np.frombuffer(english_text()[:lanes * 64], dtype=np.uint8).astype(np.int64)
                            .reshape(lanes, 64))
    a, b = fast.stepper(lanes, 16), slow.stepper(lanes, 16)
    parallel = slow.frequencies(data)                       # the encoder's path
    assert torch.equal(fast.frequencies(data), parallel)
    for t in range(64):
        got = a.next_frequencies()
        assert torch.equal(got, b.next_frequencies()) and torch.equal(got, parallel[:, t]), f"byte {t}"
        a.push(data[:, t])
        b.push(data[:, t])


def test_pcm_and_image_predictors_match_numpy_exactly(monkeypatch, vector_code):
    """The C sample and pixel predictors against the numpy code, byte by byte, lanes at different phases (their
    Laplace rows with AVX-512 and without); format 13's audio predictor warm-started from the band's chunk before
    each lane's; format 14's pixel predictor in colour, grey and grey as RGB, a lane starting in the header."""
    from bytezip.image import ImageLayout
    from bytezip.mixing import History
    from bytezip.pcm import PcmLayout
    from bytezip.predictors import CascadePcmModel, ImageModel, PcmModel, WeightedImageModel
    audio = np.frombuffer(wav_bytes(0.3, seed=3), dtype=np.uint8)[44:].astype(np.int64)
    pixels = photo(h=60).reshape(-1).astype(np.int64)
    n, chunk = 600, 800
    def history(chunks):
        h = History()
        h.extend(b"".join(audio[j * 800:(j + 1) * 800].astype(np.uint8).tobytes() for j in chunks))
        return h
    # three bands of 800-byte chunks: of two, round 1 (chunks 1, 3, 5) learns from one chunk each; of three, round
    # 2 (chunks 2, 5, 8) from two
    two, three = history((0, 2, 4)), history((0, 3, 6, 1, 4, 7))
    cases = [(lambda: PcmModel(PcmLayout(2, 1), np.array([0, 801, 1602, 2403])), audio),
             (lambda: CascadePcmModel(PcmLayout(2, 1, 2), np.array([800, 2400, 4000]), two, 3, 800, 3), audio),
             (lambda: CascadePcmModel(PcmLayout(2, 1, 3), np.array([1600, 4000, 6400]), three, 6, 800, 3), audio),
             (lambda: ImageModel(ImageLayout(80, 3), np.array([3 * 800, 5 * 800, 7 * 800]), chunk, 3), pixels),
             (lambda: WeightedImageModel(ImageLayout(80, 3), np.array([3 * 800, 5 * 800, 7 * 800]), chunk, 3),
              pixels),
             (lambda: WeightedImageModel(ImageLayout(100, 1, 7), np.array([0, 3 * 800 + 7, 5 * 800 + 100]), chunk,
                                         3), pixels),
             (lambda: WeightedImageModel(ImageLayout(80, 3), np.array([3 * 800, 5 * 800, 7 * 800]), chunk, 3),
              np.repeat(photo(h=60, channels=1), 3, axis=-1).reshape(-1).astype(np.int64))]      # grey as RGB
    for make, data in cases:
        with monkeypatch.context() as m:
            m.setattr(kernels, "LIB", None)
            slow = make()
        fast = make()
        assert slow._kernel is None and fast._kernel is not None
        if isinstance(fast, CascadePcmModel):               # warm before its first byte, the same in both
            assert fast.stage2.any() and fast.lms.any()
            np.testing.assert_array_equal(fast.stage2, slow.stage2)
        starts = fast.starts
        own = np.zeros((len(starts), n + 1), dtype=np.int64)
        history = data[:3 * chunk].astype(np.uint8)
        for t in range(n):
            byte, previous = data[starts + t], own[:, t - 1] if t else np.zeros(len(starts), dtype=np.int64)
            if isinstance(fast, PcmModel):
                for a, b in zip(fast.frequencies(t, previous), slow.frequencies(t, previous)):
                    np.testing.assert_array_equal(a, b, err_msg=f"byte {t}")
                fast.update(t, byte, previous)
                slow.update(t, byte, previous)
            else:
                for a, b in zip(fast.frequencies(t, own, history), slow.frequencies(t, own, history)):
                    np.testing.assert_array_equal(a, b, err_msg=f"byte {t}")
                fast.update(byte)
                slow.update(byte)
            own[:, t] = byte
        for name in ("error", "scale", "guess", "preds") + (("residuals", "stage2", "cascade_error", "lms")
                                                             if isinstance(fast, CascadePcmModel) else ()):
            np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
            if name == "stage2":
                assert getattr(fast, name).any()
