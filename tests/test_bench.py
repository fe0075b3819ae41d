"""The benchmark on a few small generated files: JSON structure, round trips, report, CLI options."""
import json
import math
import wave

import numpy as np
import pytest
from click.testing import CliRunner

import bytezip
from bytezip import bench
from bytezip.bench import Codec, RoundTripError, bench_command, run_bench, select_codecs

RESULT_KEYS = {"raw_bytes", "input_bytes", "compressed_bytes", "bpb", "ratio", "enc_s", "dec_s", "enc_MBps",
               "dec_MBps", "roundtrip_ok"}
W, H = 24, 16                 # test image
RATE, CHANNELS, FRAMES = 8000, 2, 800


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """bench-like folders: text/, other/, image/ (a PNG), audio/ (a 16-bit stereo WAV)."""
    from PIL import Image
    root = tmp_path_factory.mktemp("corpus")
    g = np.random.default_rng(0)
    words = "the of and to a in that is was he for it with as his on be at by had".split()
    (root / "text").mkdir()
    (root / "text" / "prose.txt").write_text(" ".join(g.choice(words, 900)) + "\n")
    (root / "text" / "tiny.c").write_text("int main(void) { return 0; }\n")
    (root / "other").mkdir()
    (root / "other" / "blob.bin").write_bytes(bytes(g.integers(0, 16, 3000, dtype=np.uint8)) + bytes(1000))
    (root / "image").mkdir()
    y, x = np.mgrid[0:H, 0:W]
    px = np.stack([x * 10, y * 15, (x + y) * 5], -1) + g.integers(0, 4, (H, W, 3))
    Image.fromarray(px.clip(0, 255).astype(np.uint8), "RGB").save(root / "image" / "grad.png")
    (root / "audio").mkdir()
    t = np.arange(FRAMES) / RATE
    pcm = np.stack([6000 * np.sin(2 * np.pi * 440 * t), 3000 * np.sin(2 * np.pi * 660 * t)], -1)
    pcm = (pcm + g.normal(0, 100, pcm.shape)).astype("<i2")
    with wave.open(str(root / "audio" / "tone.wav"), "wb") as w:
        w.setnchannels(CHANNELS)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    return root


def check_structure(res: dict):
    assert res["version"] == 1 and res["date"] and res["command"]
    assert res["machine"]["cpu_count"] >= 1
    names = {c["name"] for c in res["compressors"]}
    for f in res["files"]:
        assert {"name", "path", "modality", "representation", "group", "input_bytes", "raw_bytes", "results"} <= set(f)
        assert f["results"], f["name"]
        for name, r in f["results"].items():
            assert name in names
            assert RESULT_KEYS <= set(r), (f["name"], name, r)
            assert r["roundtrip_ok"] is True          # every reported size round-tripped
            assert r["compressed_bytes"] > 0 and r["enc_s"] > 0 and r["dec_s"] > 0
            assert math.isclose(r["bpb"], 8 * r["compressed_bytes"] / f["raw_bytes"])
    for g, t in res["totals"].items():
        files = [f for f in res["files"] if f["group"] == g or (g == "all" and f["representation"] == "raw")]
        assert t["files"] == len(files) and t["raw_bytes"] == sum(f["raw_bytes"] for f in files)
        for name, c in t["compressors"].items():
            rows = [f["results"][name] for f in files if name in f["results"]]
            assert c["compressed_bytes"] == sum(r["compressed_bytes"] for r in rows)
            assert c["complete"] == (len(rows) == len(files)) and c["roundtrip_ok"]
            assert math.isclose(c["bpb"], 8 * c["compressed_bytes"] / c["raw_bytes"])


def test_classical_bench(corpus, tmp_path):
    out = tmp_path / "r.json"
    # zstd --ultra -22 --long costs ~0.3 s a call whatever the size (128 MiB window): tested on its own below
    res = run_bench([corpus], json_path=out, report_dir=tmp_path / "report", compressors="classical,-zstd-22-long",
                    progress=False, show=False, min_time=0)
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    check_structure(res)
    by = {(f["name"], f["representation"]): f for f in res["files"]}
    assert set(by) == {("text/prose.txt", "raw"), ("text/tiny.c", "raw"), ("other/blob.bin", "raw"),
                       ("image/grad.png", "raw"), ("image/grad.png", "file"),
                       ("audio/tone.wav", "raw"), ("audio/tone.wav", "file")}
    img, wav = by["image/grad.png", "raw"], by["audio/tone.wav", "raw"]
    assert img["raw_bytes"] == W * H * 3 and (img["width"], img["height"]) == (W, H)
    assert wav["raw_bytes"] == FRAMES * CHANNELS * 2 and wav["rate"] == RATE
    # files as stored count against their pixels / PCM
    assert by["image/grad.png", "file"]["raw_bytes"] == W * H * 3
    assert by["audio/tone.wav", "file"]["input_bytes"] == FRAMES * CHANNELS * 2 + 44
    avail = {c.name for c in select_codecs("classical")[0]}
    general = {"zstd-3", "zstd-19", "xz-9e", "brotli-11", "gzip-9"}
    for f in res["files"]:
        expect = set(general)
        if f["representation"] == "raw" and f["modality"] == "image":
            expect |= {"png", "webp", "jxl"}
        if f["representation"] == "raw" and f["modality"] == "audio":
            expect |= {"flac", "wavpack"}
        assert set(f["results"]) == expect & avail, f["name"]
    assert set(res["totals"]) == {"text", "other", "image", "audio", "image-file", "audio-file", "all"}
    assert res["model"] is None
    rep = tmp_path / "report"
    readme = (rep / "README.md").read_text()
    assert "bytezip bench" in readme or res["command"] in readme
    assert "| text |" in readme and "Machine:" in readme and "Device:" in readme
    for png in ("bpb_by_modality.png", "ratio_vs_decode_speed.png"):
        assert (rep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_subset(corpus, tmp_path):
    out = tmp_path / "r.json"
    r = CliRunner().invoke(bench_command, [str(corpus), "--files", "text/*,audio/*", "--limit-bytes", "1K",
                                           "--compressors", "zstd-19,xz,flac", "--json", str(out), "-q",
                                           "--min-time", "0", "-v", "--markdown", "--no-files"])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    check_structure(res)
    assert {f["name"] for f in res["files"]} == {"text/prose.txt", "text/tiny.c", "audio/tone.wav"}
    assert all(f["input_bytes"] <= 1024 and f["representation"] == "raw" for f in res["files"])
    assert [c["name"] for c in res["compressors"]] == [n for n in ("zstd-19", "xz-9e", "flac")
                                                       if n in {c.name for c in select_codecs("zstd-19,xz,flac")[0]}]
    assert res["command"].startswith("bytezip bench")
    assert "| text |" in r.output


def test_cli_level_is_the_library_level(corpus, tmp_path):
    """`bytezip bench --level 1` codes each input as `bytezip.compress(data, level=1)` does (no model)."""
    out = tmp_path / "r.json"
    r = CliRunner().invoke(bench_command, [str(corpus), "--files", "text/prose.txt", "--limit-bytes", "1K",
                                           "--compressors", "bytezip", "--level", "1", "--json", str(out), "-q",
                                           "--min-time", "0", "--no-files"])
    assert r.exit_code == 0, r.output
    f = json.loads(out.read_text())["files"][0]
    data = (corpus / "text" / "prose.txt").read_bytes()[:1024]
    assert f["results"]["bytezip"]["compressed_bytes"] == len(bytezip.compress(data, level=1))
    bad = CliRunner().invoke(bench_command, [str(corpus), "--level", "10"])
    assert bad.exit_code == 2 and "--level" in bad.output


def test_zstd_long(corpus):
    res = run_bench([corpus], files="tiny.c", compressors="zstd-22-long", progress=False, show=False, min_time=0)
    check_structure(res)
    assert res["files"][0]["results"]["zstd-22-long"]["compressed_bytes"] > 0


def test_selection():
    names = lambda spec: [c.name for c in select_codecs(spec)[0]] + select_codecs(spec)[1]
    assert names("zstd") == ["zstd-3", "zstd-19", "zstd-22-long"]
    assert "bytezip" not in names("-bytezip") and "xz-9e" in names("-bytezip")
    # every other registered compressor, in any order (the ones missing on this machine come last)
    assert sorted(names("all,-zstd,-bytezip")) == sorted(n for n in bench.REGISTRY
                                                         if not n.startswith("zstd") and not n.startswith("bytezip"))
    # the model-alone baseline runs only when named, with mixing off whatever the options say
    assert "bytezip-neural" not in names("all") + names("bytezip") + names("classical")
    chosen = select_codecs("bytezip,bytezip-neural", {"mixing": True})[0]
    assert [c.name for c in chosen] == ["bytezip", "bytezip-neural"]
    assert chosen[0].options.get("mixing") is True and chosen[1].options["mixing"] is False
    with pytest.raises(bench.BenchError):
        select_codecs("lz5")


def test_modality_guess(tmp_path):
    (tmp_path / "notes").write_text("plain words\n" * 10)
    (tmp_path / "data").write_bytes(bytes(range(256)))
    (tmp_path / "x.png").write_bytes(b"")
    assert bench.guess_modality(tmp_path / "notes") == "text"
    assert bench.guess_modality(tmp_path / "data") == "other"
    assert bench.guess_modality(tmp_path / "x.png") == "image"
    assert bench.guess_modality(tmp_path / "data", ("bench", "text")) == "text"


class Broken(Codec):
    name, label = "broken", "broken"

    def compress(self, data, info=None):
        return data

    def decompress(self, blob, info=None):
        return blob[:-1]


def test_roundtrip_failure_is_loud(corpus, monkeypatch):
    monkeypatch.setitem(bench.REGISTRY, "broken", Broken())
    with pytest.raises(RoundTripError, match="did not round-trip"):
        run_bench([corpus], files="text/*", compressors="broken", progress=False, show=False, min_time=0)


# -- bytezip itself, through a tiny random model ---------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model():
    pytest.importorskip("bytezip.codec")
    import torch
    from bytezip.model import Megabyte, ModelConfig
    torch.manual_seed(0)
    cfg = ModelConfig(d_global=32, n_global_layers=1, n_global_heads=2, d_local=16, n_local_layers=1,
                      n_local_heads=1, max_patches=64, mlp_ratio=2)
    return Megabyte(cfg).eval()


def test_bytezip_bench(corpus, tmp_path, tiny_model):
    res = run_bench([corpus], compressors="bytezip,zstd-19", limit_bytes=1024, progress=False, show=False,
                    min_time=0, bytezip_options={"model": tiny_model, "device": "cpu"},
                    json_path=tmp_path / "r.json")
    check_structure(res)
    assert len(res["files"]) == 7
    for f in res["files"]:
        r = f["results"]["bytezip"]
        assert r["roundtrip_ok"] is True and r["compressed_bytes"] > 0
    m = res["model"]
    assert m["bytes"] > 0
    t = res["totals"]["all"]["compressors"]["bytezip"]
    assert t["compressed_plus_model_bytes"] == t["compressed_bytes"] + m["bytes"]
    assert "including the model" in bench.model_line(res)


def test_merge_joins_runs_over_disjoint_inputs(corpus, tmp_path):
    """Two runs over halves of the corpus, merged by `bench --merge`, give the whole run's sizes and totals."""
    kw = dict(compressors="zstd-19,xz-9e", progress=False, show=False, min_time=0)
    whole = run_bench([corpus], **kw)
    for name, glob in (("a", ["text/*", "other/*"]), ("b", ["image/*", "audio/*"])):
        run_bench([corpus], json_path=tmp_path / f"{name}.json", files=glob, **kw)
    r = CliRunner().invoke(bench_command, ["--merge", str(tmp_path / "a.json"), "--merge", str(tmp_path / "b.json"),
                                           "--json", str(tmp_path / "m.json"), "--report", str(tmp_path / "rep"),
                                           "--markdown"])
    assert r.exit_code == 0, r.output
    merged = json.loads((tmp_path / "m.json").read_text())
    check_structure(merged)
    size = lambda res: {(f["name"], f["representation"], c): v["compressed_bytes"]
                        for f in res["files"] for c, v in f["results"].items()}
    assert size(merged) == size(whole)
    assert {g: {c: v["compressed_bytes"] for c, v in t["compressors"].items()} for g, t in merged["totals"].items()} \
        == {g: {c: v["compressed_bytes"] for c, v in t["compressors"].items()} for g, t in whole["totals"].items()}
    assert len(merged["merged_commands"]) == 2 and (tmp_path / "rep" / "README.md").exists()
    r = CliRunner().invoke(bench_command, ["--merge", str(tmp_path / "a.json"), "--merge", str(tmp_path / "b.json"),
                                           "--report", str(tmp_path / "bare"), "--no-plots", "-q"])
    assert r.exit_code == 0, r.output       # a report for git: no plots, and none named in its README
    assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == ["README.md", "results.json"]
    assert "![" not in (tmp_path / "bare" / "README.md").read_text()
    r = CliRunner().invoke(bench_command, ["--merge", str(tmp_path / "a.json"), "--merge", str(tmp_path / "a.json")])
    assert r.exit_code != 0 and "more than one run" in r.output
