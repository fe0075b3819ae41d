"""The speed benchmark with a tiny random model on a few KB: JSON structure, round trips, FLOP count, CLI."""
import json
import math

import pytest
import torch
from click.testing import CliRunner

import bytezip
from bytezip import speed
from bytezip.bench import bench_command
from bytezip.model import save_model
from bytezip.speed import BREAKDOWN_PARTS, Sample, flops_per_byte, run_speed

from conftest import TINY, english_text, image_pixels, wav_bytes

CHUNK = 256                     # the tiny model's context (P x max_patches)
FAST = dict(chunk_size=CHUNK, sweep_lanes=(1, 4), profile_steps=8, matmul_min_time=0.005, matmul_square=128,
            show=False, progress=False)


@pytest.fixture(scope="module")
def samples():
    return [Sample("text", english_text()[:3 * CHUNK], ["english_text()"]),
            Sample("image", image_pixels(16, 24), ["image_pixels()"]),
            Sample("audio", wav_bytes(0.03)[44:], ["wav_bytes()"])]


@pytest.fixture(scope="module")
def result(random_model, samples, tmp_path_factory):
    path = tmp_path_factory.mktemp("speed") / "speed.json"
    res = run_speed(samples, model=random_model, lanes=2, json_path=path, **FAST)
    assert json.loads(path.read_text()) == json.loads(json.dumps(res))
    return res


def test_structure_and_round_trips(result, samples):
    res = result
    assert res["version"] == 1 and res["kind"] == "bytezip-speed" and res["date"] and res["command"]
    m = res["machine"]
    assert m["cpu_count"] >= 1 and m["cpu"] and m["torch"] == torch.__version__ and m["torch_threads"] >= 1
    assert res["device"] == "cpu" and m["device"] == "cpu"
    assert res["settings"]["lanes"] == 2 and res["settings"]["chunk_size"] == CHUNK
    assert res["model"]["config"]["d_global"] == TINY.d_global and res["model"]["params"] > 0

    assert [s["name"] for s in res["samples"]] == ["text", "image", "audio"]
    for s, r in zip(samples, res["samples"]):
        assert r["roundtrip_ok"] is True and r["bytes"] == len(s.data)
        assert r["encode_s"] > 0 and r["decode_s"] > 0
        assert math.isclose(r["decode_Bps"], r["bytes"] / r["decode_s"])
        assert sum(r["chunks"].values()) in (1, -(-len(s.data) // CHUNK))   # 1: the whole-input (solid) archive
    t = res["total"]
    assert t["roundtrip_ok"] is True and t["bytes"] == sum(len(s.data) for s in samples)

    assert len(res["matmul"]) == 4 and all(r["flops_per_s"] > 0 for r in res["matmul"])
    assert res["matmul"][-1]["shape"] == [128, 128, 128]
    assert res["matmul"][0]["shape"] == [2, TINY.d_local, TINY.mlp_ratio * TINY.d_local]
    h = res["hardware"]
    assert h["flops_per_byte"] == res["flops"]["total"] > 0
    assert math.isclose(h["decode_fraction_of_peak"], t["decode_Bps"] * h["flops_per_byte"] / h["peak_flops_per_s"])

    b = res["decode_breakdown"]
    assert b["roundtrip_ok"] is True and b["lanes"] == 2 and b["steps"] == CHUNK and b["bytes"] == 2 * CHUNK
    assert set(b["parts"]) == {k for k, _ in BREAKDOWN_PARTS} and all(v >= 0 for v in b["parts"].values())
    assert sum(b["parts"].values()) == pytest.approx(b["total_s"], rel=1e-6)
    e = res["encode_breakdown"]
    assert e["chunks"] == 3 and e["bytes"] == len(samples[0].data) and e["total_s"] > 0
    assert sum(e["parts"].values()) == pytest.approx(e["total_s"], rel=1e-6)
    assert res["torch_profile"] and all({"op", "calls", "self_cpu_ms"} <= set(p) for p in res["torch_profile"])

    sweep = res["lanes_sweep"]
    assert [r["lanes"] for r in sweep] == [1, 4]
    assert [r["bytes"] for r in sweep] == [CHUNK, 3 * CHUNK]     # one chunk per lane, as far as the text goes
    assert all(r["roundtrip_ok"] is True and r["decode_Bps"] > 0 for r in sweep)
    assert sweep[0]["chunks"]["mixed"] + sweep[0]["chunks"]["raw"] == 1


def test_flops_formula_matches_torch_count(random_model):
    """Everything but attention equals torch's count of the float model's matmuls (per byte)."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.randint(0, 256, (1, CHUNK))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        random_model(x)
    counts = counter.get_flop_counts()["Global"]
    linear = sum(v for k, v in counts.items() if str(k).split(".")[-1] in ("mm", "addmm"))
    f = flops_per_byte(TINY, CHUNK)
    assert f["total"] - f["attention_per_byte"] == pytest.approx(linear / CHUNK)
    assert f["avg_global_keys"] == (CHUNK // TINY.patch_size + 1) / 2


def test_bench_speed_command(tmp_path, random_model, monkeypatch):
    from bytezip import speed
    quick = speed.matmul_rates
    monkeypatch.setattr(speed, "matmul_rates", lambda *a, **k: quick(*a, **{**k, "min_time": 0.005, "square": 128}))
    prefix = str(tmp_path / "tiny")
    save_model(random_model, prefix, extra={"name": "tiny-random"})
    (tmp_path / "a.txt").write_bytes(english_text()[:2 * CHUNK])
    out = tmp_path / "s.json"
    r = CliRunner().invoke(bench_command, ["--speed", str(tmp_path / "a.txt"), "--model", prefix, "--chunk-size",
                                           str(CHUNK), "--lanes", "2", "--sweep-lanes", "2", "--json", str(out),
                                           "--markdown", "--quiet"])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["model"]["id"] == "tiny-random" and res["samples"][0]["name"] == "a.txt"
    assert res["samples"][0]["roundtrip_ok"] and res["lanes_sweep"][0]["roundtrip_ok"]
    assert "where decode time goes" in r.output and "| lanes |" in r.output


def test_forced_model_chunks_decode_with_the_models_dictionary(random_model):
    """The lanes sweep's archives: chunks forced to the mixer, with the model's priming dictionary as the
    archive header says, decode (they did not when the encoder left the dictionary out)."""
    import io
    from bytezip.codec import CodingModel, coding_model
    from bytezip.mixing import History
    text = english_text()
    dictionary = History()
    dictionary.extend(text[-20000:])
    base = coding_model(random_model)
    cm = CodingModel(base.exact, base.model_id, base.digest, dictionary, b"\x07" * 8)
    comp = bytezip.Compressor(model=cm, chunk_size=CHUNK, history=False)
    chunks, payloads, _, _, timings = speed.forced_model_chunks(comp, text, 5)
    assert {"model", "mixer", "coder", "zstd", "lzma"} <= {k for k, v in timings.items() if v > 0}
    blob = speed.model_archive(comp, chunks, payloads)
    assert bytezip.read_info(io.BytesIO(blob)).header.dictionary_digest == b"\x07" * 8
    assert bytezip.Decompressor(model=cm, lanes=3).decompress(blob) == b"".join(chunks)
