"""The sample predictor for 16-bit audio: where samples are found, what it predicts, and archives that use it."""
import io
import wave

import numpy as np
import pytest

import bytezip
from bytezip import format as fmt
from bytezip.pcm import PcmLayout, detect_layout
from bytezip.predictors import PcmModel
from conftest import english_text, wav_bytes


def stereo_samples(frames=6000, seed=1) -> np.ndarray:
    """Two correlated channels of tones plus a little noise, int16 [frames, 2]."""
    t = np.arange(frames) / 16000
    g = np.random.default_rng(seed)
    left = 6000 * np.sin(2 * np.pi * 330 * t) + g.normal(0, 20, frames)
    right = 0.8 * left + 1500 * np.sin(2 * np.pi * 97 * t) + g.normal(0, 20, frames)
    return np.stack([left, right], 1).astype("<i2")


def stereo_wav(frames=6000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(stereo_samples(frames).tobytes())
    return buf.getvalue()


def test_layout_from_a_wav_header_or_from_raw_samples():
    assert detect_layout(wav_bytes()) == PcmLayout(1, 44)
    assert detect_layout(stereo_wav()) == PcmLayout(2, 44)
    raw = stereo_samples().tobytes()
    assert detect_layout(raw) == PcmLayout(2, 0)
    assert detect_layout(b"\x7f" + raw) == PcmLayout(2, 1)          # samples start at the second byte
    assert detect_layout(raw[2:]) == PcmLayout(2, 2)                # the right channel comes first


@pytest.mark.parametrize("data", [english_text(), np.random.default_rng(0).bytes(50_000), bytes(50_000),
                                  b"RIFF\0\0\0\0WAVEfmt " + bytes(100)])
def test_what_is_not_16_bit_audio_has_no_layout(data):
    assert detect_layout(data) is None


def ideal_bits(layout: PcmLayout, data: bytes, chunk=4096) -> float:
    """Bits to code `data` under the sample predictor alone (chunks as lanes, as the mixer runs it)."""
    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    x = np.zeros((len(chunks), chunk), dtype=np.int64)
    for i, c in enumerate(chunks):
        x[i, :len(c)] = np.frombuffer(c, dtype=np.uint8)
    model = PcmModel(layout, chunk * np.arange(len(chunks)))
    lanes, bits, previous = np.arange(len(chunks)), 0.0, np.zeros(len(chunks), dtype=np.int64)
    for t in range(chunk):
        active, _, p = model.frequencies(t, previous)
        p = p + 1
        here = np.array([t < len(c) for c in chunks]) & active
        bits -= np.log2(p[lanes, x[:, t]] / p.sum(-1))[here].sum()
        model.update(t, x[:, t], previous)
        previous = x[:, t]
    return bits


def test_the_predictor_codes_audio_far_below_eight_bits_per_byte():
    raw = stereo_samples().tobytes()
    assert ideal_bits(PcmLayout(2, 0), raw) / len(raw) < 4.0       # the noise (sd 20) alone costs 3.2
    assert ideal_bits(PcmLayout(2, 1), raw) / len(raw) > 6         # misaligned: no better than bytes


def test_audio_archives_record_the_layout_and_round_trip(trained_model):
    cm = bytezip.coding_model(trained_model)
    data = stereo_wav(3000)
    with_pcm = bytezip.Compressor(model=cm, chunk_size=256).compress(data)
    without = bytezip.Compressor(model=cm, chunk_size=256, audio=False).compress(data)
    info = bytezip.read_info(io.BytesIO(with_pcm))
    rounds = info.header.round_chunks                  # banded (format 13): each band's chunks in as many rounds
    assert info.header.signal == PcmLayout(2, 44, band_chunks=len(data) // 256 // rounds) and rounds > 1
    assert not isinstance(bytezip.read_info(io.BytesIO(without)).header.signal, PcmLayout)   # (periodic tones
    # may still pass for an image: the pixel predictor then reads the signal a period back)
    assert fmt.MIXED in [c.codec for c in info.chunks]
    assert len(with_pcm) < 0.8 * len(without)
    for lanes in (1, 7, 256):
        assert bytezip.Decompressor(model=cm, lanes=lanes).decompress(with_pcm) == data
