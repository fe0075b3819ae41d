"""Fast checks of the training pipeline on a tiny model and a small corpus made here (no system files)."""
import io
import json
import math
import wave

import numpy as np
import pytest
import torch

from bytezip.model import load_model
from bytezip.train import decode_audio, decode_image, load_corpus, main

TINY = '{"d_global":64,"n_global_layers":1,"d_local":32,"n_local_layers":1,"max_patches":32}'


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from PIL import Image
    import soundfile as sf
    root = tmp_path_factory.mktemp("corpus")
    (root / "text").mkdir()
    (root / "image").mkdir()
    (root / "audio").mkdir()
    (root / "text" / "a.txt").write_bytes(b"the quick brown fox jumps over the lazy dog. " * 400)
    rng = np.random.default_rng(0)
    for i in range(8):  # index 7 is held out
        px = (np.arange(32 * 24 * 3) % 251).astype(np.uint8).reshape(24, 32, 3) + i
        Image.fromarray(px, "RGB").save(root / "image" / f"im{i}.png")
    t = np.arange(4000)
    for i in range(10):  # index 9 is held out
        pcm = (3000 * np.sin(t * (0.01 + 0.002 * i))[:, None] * [1, 0.5]).astype(np.int16)
        sf.write(root / "audio" / f"s{i}.flac", pcm, 44100, subtype="PCM_16")
    sf.write(root / "audio" / "z.wav", rng.integers(-99, 99, (500, 1)).astype(np.int16), 8000, subtype="PCM_16")
    return root


def run(corpus, tmp, *extra):
    return main(["--corpus", str(corpus), "--general-mb", "0", "--config", TINY, "--threads", "1",
                 "--batch-size", "8", "--log-every", "1000", "--eval-windows", "2",
                 "--ckpt-dir", str(tmp / "ckpt"), "--export", str(tmp / "models" / "m"), *extra])


def test_decoders_and_split(corpus):
    raw, ppm = decode_image(str(corpus / "image" / "im0.png"))
    assert len(raw) == 32 * 24 * 3 and ppm.startswith(b"P6\n32 24\n255\n") and ppm.endswith(raw)
    with wave.open(io.BytesIO(decode_audio(str(corpus / "audio" / "s0.flac")))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getnframes()) == (2, 2, 4000)
    tr, held, desc = load_corpus(str(corpus), general_mb=0)
    assert set(tr) == {"text", "image", "audio"} and set(held) == set(tr)
    assert desc["text"]["heldout_bytes"] == len(b"the quick brown fox jumps over the lazy dog. " * 400) // 10
    assert desc["image"]["heldout_bytes"] == 2 * 32 * 24 * 3 + len(b"P6\n32 24\n255\n")  # image 7, raw + PPM


def test_loss_finite_and_decreasing(corpus, tmp_path):
    out = run(corpus, tmp_path, "--steps", "30", "--mix", "text=1", "--lr", "3e-3", "--warmup", "5",
              "--qat-from", "0.8")
    losses = out["losses"]
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0


def test_resume_is_exact(corpus, tmp_path):
    args = ["--steps", "10", "--warmup", "3", "--qat-from", "0.6", "--eval-minutes", "1000"]
    full = run(corpus, tmp_path / "a", *args)
    first = run(corpus, tmp_path / "b", *args, "--stop-at-step", "5")
    second = run(corpus, tmp_path / "b", *args, "--resume")
    assert first["step"] == 5 and second["step"] == 10
    assert first["losses"] == full["losses"][:5]
    assert second["losses"] == full["losses"][5:]


def test_export_loads(corpus, tmp_path):
    run(corpus, tmp_path, "--steps", "4", "--qat-from", "0.5")
    prefix = str(tmp_path / "models" / "m")
    model = load_model(prefix)
    meta = json.load(open(prefix + ".json"))
    assert meta["config"]["d_global"] == 64 and meta["training"]["steps"] == 4
    assert set(meta["training"]["heldout_bpb"]) == {"text", "image", "audio", "mean"}
    x = torch.randint(0, 256, (1, 64))
    assert model(x).shape == (1, 64, 256)
    res = main(["--eval-only", "--model", prefix, "--corpus", str(corpus), "--general-mb", "0",
                "--eval-windows", "1"])
    for kind in ("float", "float_int8", "exact"):
        assert all(math.isfinite(v) and 0 < v < 16 for v in res[kind].values())
    assert abs(res["exact"]["mean"] - res["float_int8"]["mean"]) < 0.5
