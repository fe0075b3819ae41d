"""The mixer's inputs as one declaration (`bytezip.predictors`): a new model joins by a line, and a C build
that disagrees with the Python side is refused."""
import ctypes

import numpy as np
import pytest

from bytezip import kernels, mixing
from bytezip.predictors import INPUTS, Input, Kind, check
from bytezip.predictors.base import ONE
from conftest import english_text


class OrderZero:
    """A toy external model, written here and nowhere else: each lane's byte frequencies so far."""
    geometric = True

    def __init__(self, lanes: int):
        self.counts = np.ones((lanes, 256), dtype=np.int64)

    def mixer_input(self, mixer):
        p = self.counts * ONE // self.counts.sum(-1, keepdims=True)
        return np.ones(len(p), dtype=bool), p, np.zeros(len(p), dtype=np.int64)

    def learn(self, mixer, byte):
        self.counts[np.arange(len(byte)), byte] += 16


WITH_TOY = INPUTS + (Input("order 0", Kind.EXTERNAL, ONE >> 6, arg=2, predictor=OrderZero),)


def _rounds(chunks, inputs, signal=None):
    """Encoder side (mix_round) and decoder side (mix, update step by step) over one round of lanes."""
    rng = np.random.default_rng(0)
    neural = [rng.integers(1, 100, (len(c), 256)).astype(np.int64) for c in chunks]
    enc, mixer = mixing.mix_round([n.copy() for n in neural], chunks, signal=signal(), inputs=inputs)
    dec_mixer = mixing.Mixer([len(c) for c in chunks], signal=signal(), inputs=inputs)
    dec = np.zeros((len(chunks), max(map(len, chunks)), 256), dtype=np.int64)
    data = np.zeros((len(chunks), dec.shape[1]), dtype=np.int64)
    for i, c in enumerate(chunks):
        data[i, :len(c)] = np.frombuffer(c, dtype=np.uint8)
    for t in range(dec.shape[1]):
        rows = np.stack([n[t] if t < len(n) else np.ones(256, dtype=np.int64) for n in neural])
        dec[:, t] = dec_mixer.mix(rows)
        dec_mixer.update(data[:, t])
    return enc, dec, mixer, data


def _bits(freqs, data):
    return sum(-np.log2(f[np.arange(len(f)), d[:len(f)]] / f.sum(-1)).sum() for f, d in zip(freqs, data))


@pytest.mark.parametrize("with_kernels", [True, False])
def test_a_new_model_joins_by_one_declaration(monkeypatch, with_kernels):
    if not with_kernels:
        monkeypatch.setattr(kernels, "LIB", None)
    elif not kernels.available():
        pytest.skip("C kernels not built")
    text = english_text()
    chunks = [text[i:i + 300] for i in range(0, 1200, 300)]
    toy = lambda: (OrderZero(len(chunks)),)
    enc, dec, mixer, data = _rounds(chunks, WITH_TOY, toy)
    for lane, c in enumerate(chunks):                              # the decoder sees what the encoder coded
        assert np.array_equal(enc[lane], dec[lane, :len(c)])
    toy_weight = mixer.weights[:, :, -1]                           # it took part, and learnt
    assert mixer.inputs[-1].name == "order 0" and (toy_weight != toy_weight[0, 0]).any()
    plain, _, _, _ = _rounds(chunks, INPUTS, lambda: None)
    assert _bits(enc, data) != _bits(plain, data)


def test_the_shipped_declaration_is_what_the_kernel_and_the_weights_assume():
    assert [i.name for i in INPUTS][:2] == ["neural", "chunk match"] and len(INPUTS) == mixing.N_MODELS
    assert tuple(i.order for i in INPUTS if i.kind == Kind.HISTORY_ORDER) == mixing.SHARED_ORDERS
    with pytest.raises(ValueError, match="named twice"):
        check(INPUTS + (INPUTS[1],))
    with pytest.raises(ValueError, match="args"):
        check(INPUTS + (Input("stray", Kind.EXTERNAL, 1, arg=7, predictor=OrderZero),))


@pytest.mark.skipif(not kernels.available(), reason="C kernels not built")
def test_a_mismatched_c_build_is_refused_at_load(monkeypatch):
    class OldMixer(ctypes.Structure):                               # a Python side one field short of the build
        _fields_ = kernels.MixerState._fields_[:-1]
    monkeypatch.setitem(kernels.STRUCTURES, "Mixer", OldMixer)
    with pytest.raises(ImportError, match=r"do not match this Python code \(sizeof Mixer: C \d+, Python \d+\)"):
        kernels._load()
    with pytest.raises(ImportError, match="N_SETS: C 16, Python 20"):
        kernels.check_constants({"N_SETS": 20})


def test_the_record_length_is_found_from_the_bytes_so_far():
    """The record context's length (paq8's record model): a table of 14-byte structures is found after a few
    records, a change to 9-byte ones moves it, and text with its irregular lines has none."""
    from bytezip.predictors import record
    from conftest import english_text, structures

    def lengths(data: bytes) -> list[int]:
        state, out = record.fresh_state(1), []
        for t, b in enumerate(data):
            out.append(int(record.record_length(state)[0]))
            record.learn(state, t, np.array([b]))
        return out

    found = lengths(structures(30, 14) + structures(40, 9))
    assert found[0] == 0 and 0 < found.index(14) < 14 * 12 and found[14 * 30 - 1] == 14
    assert found[-1] == 9 and found.index(9) < 14 * 30 + 9 * 12
    assert set(lengths(english_text()[:3000])) == {0}


def test_the_audio_predictor_starts_from_the_chunks_before_its_own():
    """Format 13's `CascadePcmModel` warm start: each lane learns from the two input chunks before its own where
    earlier rounds hold them (in band order, the rounds before), from one where only one is held, and from the
    history's last two where its own neighbour is in its round; nothing without a history."""
    from conftest import wav_bytes
    from bytezip.pcm import PcmLayout
    from bytezip.predictors import CascadePcmModel
    audio = np.frombuffer(wav_bytes(0.5, seed=4), dtype=np.uint8)
    C, R = 1000, 3

    def history(chunks):
        h = mixing.History()
        h.extend(b"".join(audio[j * C:(j + 1) * C].tobytes() for j in chunks))
        return h

    def learnt(layout, chunks):       # a fresh model's state after learning from these input chunks, in order
        m = CascadePcmModel(layout, np.array([chunks[0] * C]))
        m._learn(np.array([0]), m.starts, audio[chunks[0] * C:(chunks[-1] + 1) * C][None])
        return m.lms[0], m.stage2[0]

    banded = PcmLayout(1, 44, band_chunks=3)     # bands 0-2, 3-5, 6-8; round 2 holds chunks 2, 5, 8
    m = CascadePcmModel(banded, C * np.array([2, 5, 8]), history((0, 3, 6, 1, 4, 7)), 6, C, R)
    for lane, chunk in enumerate((2, 5, 8)):
        expected = learnt(banded, [chunk - 2, chunk - 1])
        assert np.array_equal(m.lms[lane], expected[0]) and np.array_equal(m.stage2[lane], expected[1])
    m = CascadePcmModel(banded, C * np.array([1, 4, 7]), history((0, 3, 6)), 3, C, R)     # round 1: one chunk
    for lane, chunk in enumerate((1, 4, 7)):
        assert np.array_equal(m.lms[lane], learnt(banded, [chunk - 1])[0])
    plain = PcmLayout(1, 44)                     # in input order: the history's last two chunks for every lane
    m = CascadePcmModel(plain, C * np.array([4, 5]), history(range(4)), 4, C, R)
    assert np.array_equal(m.lms, np.stack([learnt(plain, [2, 3])[0]] * 2)) and m.lms.any()
    assert not CascadePcmModel(plain, C * np.array([0, 1]), mixing.History(), 0, C, R).lms.any()


def test_the_pixel_predictor_starts_where_the_chunk_before_ended():
    """Format 13's `CarriedImageModel`: a lane whose input chunk's predecessor was a mixed chunk of the round
    before starts from the tables that chunk ended with (`History.carried_signal`, by input chunk); others, and
    format 12's `ImageModel`, start from nothing."""
    from bytezip.image import ImageLayout
    from bytezip.predictors import CarriedImageModel, ImageModel
    C, layout = 600, ImageLayout(100, 3, 0, 2)
    ended = ImageModel(layout, np.array([3 * C]), C, 4)
    ended.error[0] += np.arange(ended.error[0].size).reshape(ended.error[0].shape)
    ended.bias[0] -= 7
    carried = ended.final_states(np.array([True]))
    assert list(carried) == [3]
    m = CarriedImageModel(layout, np.array([4 * C, 6 * C]), C, 4, carried)
    fresh = ImageModel(layout, np.array([4 * C, 6 * C]), C, 4, carried)
    for name in ("error", "scale", "bias"):
        assert np.array_equal(getattr(m, name)[0], getattr(ended, name)[0])
        assert np.array_equal(getattr(m, name)[1], getattr(fresh, name)[1])
        assert np.array_equal(getattr(fresh, name)[0], getattr(fresh, name)[1])
    assert not np.array_equal(m.error[0], fresh.error[0])
