"""Shared fixtures: tiny models (random, and briefly trained so that neural chunks win) and sample inputs."""
import io
import wave

import bytezip  # noqa: F401  (first: sets passive OpenMP waiting before torch starts its threads)
import numpy as np
import pytest
import torch

from bytezip import format as fmt
from bytezip.model import Megabyte, save_model
from tiny import TINY, english_text, trained_tiny  # noqa: F401  (english_text: imported from here by tests)

ARCHIVE_START = fmt.MAGIC + bytes([fmt.VERSION])   # how every archive this bytezip writes begins


@pytest.fixture(scope="session")
def random_model():
    torch.manual_seed(0)
    return Megabyte(TINY).eval()


@pytest.fixture(scope="session")
def trained_model():
    """The tiny model after ~2 s of training on text: good enough that neural chunks beat zstd on text."""
    return trained_tiny(120)


@pytest.fixture
def model_files(tmp_path, trained_model):
    """The trained tiny model saved as a shipped model would be; yields the path prefix."""
    prefix = str(tmp_path / "tiny")
    save_model(trained_model, prefix, extra={"name": "tiny-test"})
    return prefix


def wav_bytes(seconds=0.25, rate=16000, seed=0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 300, t.shape)
    pcm = (8000 * np.sin(2 * np.pi * 440 * t) + noise).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def image_pixels(h=48, w=64, seed=0) -> bytes:
    y, x = np.mgrid[0:h, 0:w]
    noise = np.random.default_rng(seed).integers(0, 8, (h, w, 3))
    img = np.stack([x * 4, y * 5, (x + y) * 2], -1) + noise
    return img.clip(0, 255).astype(np.uint8).tobytes()


def structures(n: int, size: int, seed=0) -> bytes:
    """n fixed-size binary records (a counter, a tag, a small random field, zero padding) of `size` >= 8 bytes
    each: data with a record length and no newline."""
    rng = np.random.default_rng(seed)
    return b"".join(i.to_bytes(2, "little") + b"\xab" + bytes(rng.integers(0, 4, 2, dtype=np.uint8))
                    + b"R" + bytes(size - 6) for i in range(n))


def one_error_line(r, *parts):
    """stderr is exactly one line `bytezip: ...` containing every part, with no traceback."""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("bytezip: ") and "Traceback" not in r.stderr
    for p in parts:
        assert p in lines[0], (p, lines[0])
    return lines[0]
