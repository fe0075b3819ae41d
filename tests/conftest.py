"""Shared fixtures: tiny models (random, and briefly trained so that neural chunks win) and sample inputs."""
import inspect
import io
import wave

import bytezip  # noqa: F401  (first: sets passive OpenMP waiting before torch starts its threads)
import numpy as np
import pytest
import torch

from bytezip import format as fmt
from bytezip.model import Megabyte, ModelConfig, save_model

ARCHIVE_START = fmt.MAGIC + bytes([fmt.VERSION])   # how every archive this bytezip writes begins

TINY = ModelConfig(d_global=64, n_global_layers=1, n_global_heads=2, d_local=32, n_local_layers=1,
                   n_local_heads=2, max_patches=64)


def english_text() -> bytes:
    """Some tens of KB of real prose and code from the standard library (no files outside the repo)."""
    import argparse, json as js, textwrap
    return "\n".join(inspect.getsource(m) for m in (argparse, js.decoder, textwrap)).encode()


@pytest.fixture(scope="session")
def random_model():
    torch.manual_seed(0)
    return Megabyte(TINY).eval()


@pytest.fixture(scope="session")
def trained_model():
    """The tiny model after ~2 s of training on text: good enough that neural chunks beat zstd on text."""
    torch.manual_seed(0)
    model = Megabyte(TINY)
    data = np.frombuffer(english_text(), dtype=np.uint8)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = np.random.default_rng(0)
    n = 64 * 4
    for step in range(120):
        starts = g.integers(0, len(data) - n - 1, 16)
        x = torch.from_numpy(np.stack([data[s:s + n] for s in starts]).astype(np.int64))
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, 256), x.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


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
