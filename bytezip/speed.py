"""Speed benchmark: encode and decode bytes/s of the full codec, set against what the hardware could do.

`bytezip bench --speed` (or `python -m bytezip.speed`, which has a few more options) measures, for one model
(default: the shipped one):

1. encode and decode throughput of the full codec (`Compressor` / `Decompressor`, default lanes) on ~1 MB
   (10^6 bytes) each of text, image pixels and audio PCM, every round trip checked;
2. the model's FLOPs per byte (analytic, below) and the machine's measured fp32 matmul rate (torch, at the
   shapes decoding and encoding use and one large square), hence the fraction of that limit reached;
3. where decode time goes: the codec's own decode loop (`neural.neural_decode`) with its stopwatch on
   (`timings`: global model step, local model step, mixer, coder, the rest; timed, the steps run in the loop's
   Python twin, not in C, so the coder and the rest read higher than in the codec's own runs), plus the top
   torch operators from `torch.profiler` over a few steps; and where encode time goes, the same way from the
   encoder's own timings (`Compressor.code_candidates`: model forward, mixer, range coder, zstd, lzma);
4. decode bytes/s at lanes 1, 16, 64, 256 on the text sample (its first `lanes` chunks, coded as mixed chunks
   whichever codec would have won, so that the model's path is measured; the breakdown decodes those too).

Default samples, from the held-out part of ../shared/corpus/train (the split in `bytezip.train`):

- text: the held-out last 10% of world192.txt, then the last bytes of bible.txt (its held-out last 10% and,
  since the held-out text is only 652 KB, the bytes just before it) up to 10^6 bytes;
- image: the RGB pixels (Pillow, 3 bytes a pixel) of gravel.png then text.png (sorted positions 7 and 15);
- audio: the int16 interleaved PCM (soundfile) of the audio files at sorted positions i % 10 == 9, in order.

Each sample is cut to `--limit-bytes` (default 10^6). Given PATHS, each file is a sample instead (images
as pixels, audio as PCM, like `bytezip bench`).

FLOPs per byte
--------------
A multiply-add counts 2 FLOPs. With P = patch_size, dg/dl = d_global/d_local, Lg/Ll = layers, Hg/Hl =
query heads, k = n_kv_heads, r = mlp_ratio, dhg = dg/Hg, dhl = dl/Hl, one transformer block of width d
and head dim dh, for one token attending to n keys, costs

    block(d, dh, n) = 2 d (d + 2 k dh)        qkv projection
                    + 2 d^2                   output projection
                    + 4 r d^2                 MLP (d -> r d -> d)
                    + 4 d n                   attention: q.K (2 d n) and weights.V (2 d n), all heads

and one byte costs

    F = [ Lg block(dg, dhg, n_g) + 2 dg dl ] / P      global model, once per patch (+ global-to-local)
      + Ll block(dl, dhl, n_l) + 2 dl 256             local model and head, once per byte

at the average context of a chunk of N bytes: n_g = (T + 1) / 2 with T = ceil(N / P) patches (patch t
attends to t + 1 patches), n_l = (P + 1) / 2. Embedding look-ups, norms, softmax tables, quantisation and
rounding (O(d) elementwise work per token) are not counted. Encoding (one parallel forward) does the same
arithmetic as decoding (one incremental step per byte), so F serves both directions. Note that the exact
model's attention runs in float64, so the fp32 matmul rate flatters the attention part of the limit.

The fraction of the hardware limit is `bytes/s x F / (measured fp32 FLOP/s)`, against the large square
matmul (the machine's best) and against matmuls shaped like one decode step ([lanes x d] @ [d x 4d]).
"""
from __future__ import annotations

import datetime
import glob
import io
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import click

from . import kernels
from .benchmarking import (REPO_ROOT, BenchError, checked_options, collect_sources, load_items, machine_info,
                           md_table, model_size, parse_size)

MB = 1_000_000
DEFAULT_BYTES = MB
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "corpus" / "train"
SWEEP_LANES = (1, 16, 64, 256)
TORCH_PROFILE_STEPS = 64
HELD_OUT_IMAGES = ("gravel.png", "text.png")


# -- samples ---------------------------------------------------------------------------------------------
@dataclass
class Sample:
    name: str                       # text | image | audio, or a file name
    data: bytes
    sources: list[str] = field(default_factory=list)   # where the bytes come from, in order
    note: str = ""


def _text_sample(corpus: Path, n: int) -> Sample:
    world = (corpus / "text" / "world192.txt").read_bytes()
    bible = (corpus / "text" / "bible.txt").read_bytes()
    w_cut = len(world) - len(world) // 10           # bytezip.train: the last 10% of each text file is held out
    b_cut = len(bible) - len(bible) // 10
    head = world[w_cut:][:n]
    tail = bible[max(0, len(bible) - (n - len(head))):] if n > len(head) else b""
    held = len(head) + min(len(tail), len(bible) - b_cut)
    return Sample("text", head + tail,
                  [f"text/world192.txt[{w_cut}:{w_cut + len(head)}]",
                   f"text/bible.txt[{len(bible) - len(tail)}:{len(bible)}]"] if tail else
                  [f"text/world192.txt[{w_cut}:{w_cut + len(head)}]"],
                  f"{held:,} of {len(head) + len(tail):,} bytes held out from training")


def _image_sample(corpus: Path, n: int) -> Sample:
    from PIL import Image
    parts, names = [], []
    for name in HELD_OUT_IMAGES:
        with Image.open(corpus / "image" / name) as im:
            rgb = im.convert("RGB")
            parts.append(rgb.tobytes())
            names.append(f"image/{name} ({rgb.width}x{rgb.height} RGB)")
        if sum(map(len, parts)) >= n:
            break
    return Sample("image", b"".join(parts)[:n], names, "raw RGB pixels, 3 bytes a pixel; all held out")


def _audio_sample(corpus: Path, n: int) -> Sample:
    import soundfile
    files = sorted(glob.glob(str(corpus / "audio" / "*.flac")) + glob.glob(str(corpus / "audio" / "*.wav")))
    parts, names, got = [], [], 0
    for i, p in enumerate(files):
        if i % 10 != 9:
            continue
        pcm, rate = soundfile.read(p, dtype="int16", always_2d=True)
        parts.append(pcm.astype("<i2").tobytes())
        names.append(f"audio/{Path(p).name} ({pcm.shape[1]} ch, {rate} Hz)")
        got += len(parts[-1])
        if got >= n:
            break
    data = b"".join(parts)
    return Sample("audio", data[:n - n % 4] if len(data) > n else data, names,
                  "int16 little-endian interleaved PCM; all held out")


def default_samples(corpus: str | os.PathLike | None = None, limit_bytes: int | None = None,
                    names: Iterable[str] = ("text", "image", "audio")) -> list[Sample]:
    corpus = Path(corpus or DEFAULT_CORPUS)
    if not corpus.is_dir():
        raise BenchError(f"the training corpus ({corpus}) is not here: give --corpus or files to measure")
    n = limit_bytes or DEFAULT_BYTES
    make = {"text": _text_sample, "image": _image_sample, "audio": _audio_sample}
    out = []
    for name in names:
        if name not in make:
            raise BenchError(f"unknown sample '{name}' (known: text, image, audio)")
        try:
            out.append(make[name](corpus, n))
        except (OSError, RuntimeError) as e:
            raise BenchError(f"cannot build the {name} sample from {corpus}: {e}") from e
    return out


def samples_from_paths(paths, limit_bytes: int | None = None) -> list[Sample]:
    """Each file is one sample: images as RGB pixels, audio as PCM, anything else as is."""
    out = []
    for src in collect_sources(paths):
        item = next(i for i in load_items(src, limit_bytes or DEFAULT_BYTES) if i.representation == "raw")
        out.append(Sample(src.name, item.data, [str(src.path)], f"{src.modality}, {item.representation}"))
    return out


# -- FLOPs and the machine's matmul rate --------------------------------------------------------------
def flops_per_byte(cfg, chunk_size: int) -> dict:
    """The analytic count in the module docstring, with its parts, for chunks of `chunk_size` bytes."""
    P, dg, dl, k, r = cfg.patch_size, cfg.d_global, cfg.d_local, cfg.n_kv_heads, cfg.mlp_ratio
    T = -(-chunk_size // P)
    n_g, n_l = (T + 1) / 2, (P + 1) / 2

    def block(d, dh, n):
        return {"qkv": 2 * d * (d + 2 * k * dh), "proj": 2 * d * d, "mlp": 4 * r * d * d, "attention": 4 * d * n}

    g = block(dg, dg // cfg.n_global_heads, n_g)
    l = block(dl, dl // cfg.n_local_heads, n_l)
    global_patch = cfg.n_global_layers * sum(g.values()) + 2 * dg * dl
    local_byte = cfg.n_local_layers * sum(l.values())
    head = 2 * dl * 256
    total = global_patch / P + local_byte + head
    return {
        "total": total,
        "global_per_byte": global_patch / P,
        "global_per_patch": global_patch,
        "local_per_byte": local_byte,
        "head_per_byte": head,
        "attention_per_byte": cfg.n_global_layers * g["attention"] / P + cfg.n_local_layers * l["attention"],
        "global_block_per_patch": g,
        "local_block_per_byte": l,
        "avg_global_keys": n_g,
        "avg_local_keys": n_l,
        "chunk_size": chunk_size,
        "formula": "F = [Lg*block(dg, dg/Hg, (T+1)/2) + 2*dg*dl]/P + Ll*block(dl, dl/Hl, (P+1)/2) + 2*dl*256, "
                   "block(d, dh, n) = 2d(d + 2k*dh) + 2d^2 + 4r*d^2 + 4d*n, T = ceil(chunk/P); 2 FLOPs a multiply-add",
    }


def _sync(device):
    import torch
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(m: int, k: int, n: int, device="cpu", min_time: float = 0.25, max_runs: int = 10000) -> dict:
    """Measured fp32 FLOP/s of [m x k] @ [k x n] (best of repeated runs after a warm-up)."""
    import torch
    g = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=g).to(device)
    b = torch.randn(k, n, generator=g).to(device)
    out = torch.empty(m, n, device=device)
    torch.matmul(a, b, out=out)
    _sync(device)
    best, spent, runs, reps = float("inf"), 0.0, 0, 1
    while spent < min_time and runs < max_runs:
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b, out=out)
        _sync(device)
        dt = time.perf_counter() - t0
        best, spent, runs = min(best, dt / reps), spent + dt, runs + reps
        if dt < 1e-3:                   # tiny matmuls: time many per reading
            reps = min(reps * 4, 4096)
    flops = 2.0 * m * k * n
    return {"shape": [m, k, n], "flops": flops, "seconds": best, "flops_per_s": flops / best, "runs": runs}


def matmul_rates(cfg, lanes: int, device="cpu", encode_rows: int = 16 * 1024, min_time: float = 0.25,
                 square: int | None = None) -> list[dict]:
    """fp32 FLOP/s at the shapes of a decode step, an encode batch and a large square (the last entry)."""
    import torch
    big = square or (8192 if torch.device(device).type == "cuda" else 2048)
    shapes = [
        ("decode step, local MLP: [lanes x dl] @ [dl x 4dl]", lanes, cfg.d_local, cfg.mlp_ratio * cfg.d_local),
        ("decode step, global MLP: [lanes x dg] @ [dg x 4dg]", lanes, cfg.d_global, cfg.mlp_ratio * cfg.d_global),
        ("encode batch, global MLP: [16 chunks x T x dg] @ [dg x 4dg]", encode_rows, cfg.d_global,
         cfg.mlp_ratio * cfg.d_global),
        (f"large square {big}^3", big, big, big),
    ]
    out = []
    for label, m, k, n in shapes:
        r = matmul_rate(m, k, n, device, min_time)
        r["label"] = label
        out.append(r)
    return out


# -- where decode time goes ------------------------------------------------------------------------------
BREAKDOWN_PARTS = (
    ("model_global", "model: global step (once per patch)"),
    ("model_local", "model: local step + head (every byte)"),
    ("model_push", "model: push the decoded bytes"),
    ("mixer_mix", "mixer: mix"),
    ("mixer_update", "mixer: update"),
    ("coder_probs", "coder: frequencies -> float64 probabilities"),
    ("coder_decode", "coder: constriction decode calls (one per lane)"),
    ("setup", "setup: decoders, KV caches, mixer state"),
    ("rest", "rest: Python loop, bookkeeping"),
)


ENCODE_PARTS = (            # the parts `Compressor.code_candidates` times (its `timings`), and the rest
    ("model", "model: parallel forward (neural_frequencies)"),
    ("mixer", "mixer: mix_round (byte loop over the batch)"),
    ("coder", "coder: range-encode the neural and the mixed candidates"),
    ("zstd", "zstd -19 candidate"),
    ("lzma", "lzma (xz -9e) candidate"),
    ("rest", "rest: batching, picking the smallest"),
)


def forced_model_chunks(comp, data: bytes, count: int) -> tuple[list, list, list, list, dict]:
    """The first `count` chunks of data coded by `comp.code_candidates` (no shared history, `comp.lanes` or
    DEFAULT_LANES chunks a batch) with the codec's own timings, each kept as its mixed (or, without mixing,
    neural) payload whatever would have won: (chunks, payloads, sizes, mixed flags, {part: seconds, ...})."""
    from .options import DEFAULT_LANES
    C = comp.chunk_size
    chunks = [data[i:i + C] for i in range(0, min(len(data), count * C), C)]
    batch = comp.lanes or DEFAULT_LANES
    tm: dict[str, float] = {k: 0.0 for k, _ in ENCODE_PARTS}
    payloads = []
    t_begin = time.perf_counter()
    for a in range(0, len(chunks), batch):
        payloads += [c.mixed if comp.mixing else c.neural
                     for c in comp.code_candidates(chunks[a:a + batch], timings=tm)]
    total = time.perf_counter() - t_begin
    tm["rest"] = max(0.0, total - sum(tm.values()))
    tm["total"] = total
    return chunks, payloads, [len(c) for c in chunks], [comp.mixing] * len(chunks), tm


def model_archive(comp, chunks: list[bytes], payloads: list[bytes]) -> bytes:
    """A valid archive of these chunks with the given model payloads (a payload the format forbids -- none, no
    shorter than its chunk, or beyond MAX_MODEL_RATIO -- is stored raw instead)."""
    from . import format as fmt
    codec = fmt.MIXED if comp.mixing else fmt.NEURAL
    return fmt.archive_bytes(comp.header(), [
        (codec, c, p) if p and fmt.model_payload_fits(len(c), len(p)) else (fmt.RAW, c, c)
        for c, p in zip(chunks, payloads)])


def decode_breakdown(m, payloads: list[bytes], sizes: list[int], mixed: list[bool],
                     steps: int | None = None) -> tuple[list[bytes], dict]:
    """`codec.neural_decode` with its stopwatch on; decodes the first `steps` bytes per lane (None: all).
    Returns (decoded prefixes, {part: seconds, ...})."""
    from .neural import neural_decode

    n_steps = max(sizes) if steps is None else min(steps, max(sizes))
    laps: dict[str, float] = {}
    t_begin = time.perf_counter()
    out = neural_decode(m, payloads, [min(n, n_steps) for n in sizes], mixed, timings=laps, dictionary=m.dictionary,
                        whole=n_steps >= max(sizes))
    total = time.perf_counter() - t_begin
    P = m.exact.cfg.patch_size
    n_patch = -(-n_steps // P)
    n_other = n_steps - n_patch
    patch_s, other_s = laps.pop("model_patch_steps", 0.0), laps.pop("model_byte_steps", 0.0)
    local_step = other_s / n_other if n_other else patch_s / max(1, n_patch)
    tm = {k: laps.get(k, 0.0) for k, _ in BREAKDOWN_PARTS[:-1]}
    tm["model_local"] = local_step * n_steps
    tm["model_global"] = max(0.0, patch_s - local_step * n_patch)
    tm["rest"] = max(0.0, total - sum(tm.values()))
    tm["total"] = total
    tm["steps"] = n_steps
    return out, tm


def torch_profile(m, payloads, sizes, mixed, steps: int, top: int = 15) -> list[dict]:
    """torch.profiler over `steps` decode steps: the operators with the most self CPU time."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if m.exact.device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        decode_breakdown(m, payloads, sizes, mixed, steps)
    rows = []
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]:
        rows.append({"op": e.key, "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1e3,
                     "cpu_total_ms": e.cpu_time_total / 1e3,
                     "self_cpu_share": e.self_cpu_time_total / total if total else 0.0})
    return rows


# -- the benchmark ------------------------------------------------------------------------------------------
def _chunk_codecs(blob: bytes) -> dict:
    from .codec import read_info
    from .format import CODEC_NAMES
    counts = {name: 0 for name in CODEC_NAMES.values()}
    for rec in read_info(io.BytesIO(blob)).chunks:
        counts[CODEC_NAMES[rec.codec]] += 1
    return counts


def _first_difference(a: bytes, b: bytes) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _roundtrip(comp, decomp, data: bytes, what: str) -> dict:
    t0 = time.perf_counter()
    blob = comp.compress(data)
    t1 = time.perf_counter()
    back = decomp.decompress(blob)
    t2 = time.perf_counter()
    if back != data:
        raise BenchError(f"{what}: the round trip failed (decoded {len(back)} bytes for {len(data)}, first "
                         f"difference at byte {_first_difference(back, data)})")
    n = len(data)
    return {"bytes": n, "compressed_bytes": len(blob), "bpb": 8 * len(blob) / n if n else 0.0,
            "chunks": _chunk_codecs(blob), "encode_s": t1 - t0, "decode_s": t2 - t1,
            "encode_Bps": n / (t1 - t0), "decode_Bps": n / (t2 - t1), "roundtrip_ok": True}


def _command_string() -> str:
    argv = sys.argv[1:]
    if "bench" in argv:
        return shlex.join(["bytezip", "bench"] + argv[argv.index("bench") + 1:])
    return shlex.join(["python", "-m", "bytezip.speed"] + argv)


def run_speed(samples: list[Sample] | None = None, *, model=None, device=None, lanes: int | None = None,
              chunk_size: int | None = None, threads: int | None = None, limit_bytes: int | None = None,
              corpus=None, sweep_lanes: Iterable[int] | None = SWEEP_LANES, breakdown_steps: int | None = None,
              profile_steps: int = TORCH_PROFILE_STEPS, matmul_min_time: float = 0.25,
              matmul_square: int | None = None, json_path=None,
              show: bool = True, markdown: bool = False, progress: bool = True, command: str | None = None,
              console=None) -> dict:
    """Run the speed benchmark; returns every number as a JSON-able dict (also written to json_path).

    samples: default `default_samples(corpus, limit_bytes)`. model/device/chunk_size/threads: coding options
    (`bytezip.options.CodingOptions`; None: its defaults, those of `bytezip FILE`); lanes: the decoder's (the
    encoder's rounds follow the input size, as by default). sweep_lanes: decode bytes/s at these lanes on the text (first) sample's first
    `lanes` chunks (so that every run fills its lanes), coded as model chunks whichever codec would have won
    (so that the model path is what is measured), through `Decompressor` (empty: no sweep).
    breakdown_steps: bytes per lane of the timed decode loop (None: whole chunks). profile_steps: decode
    steps under torch.profiler (0: none). matmul_min_time, matmul_square: timing of each matmul shape and
    the side of the large square (default 2048 on CPU, 8192 on GPU)."""
    import torch
    from rich.console import Console
    from . import codec as bc
    from .options import DEFAULT_LANES, coding_options

    err = Console(stderr=True)
    say = (lambda msg: err.print(f"[dim]{msg}[/]", highlight=False)) if progress else (lambda msg: None)
    given = dict(model=model, device=device, chunk_size=chunk_size, threads=threads)
    opts = coding_options(**{k: v for k, v in given.items() if v is not None})
    device = bc.resolve_device(opts.device)
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.perf_counter()
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    say("loading the model")
    t0 = time.perf_counter()
    m = bc.coding_model(model, device)
    opts = coding_options(opts, model=m)
    load_s = time.perf_counter() - t0
    cfg = m.exact.cfg
    comp = bc.Compressor(options=opts)
    decomp = bc.Decompressor(options=opts, lanes=lanes)
    lanes = decomp.lanes
    chunk_size = comp.chunk_size
    decomp.decompress(comp.compress(b"warm-up, not timed " * 64))
    if samples is None:
        samples = default_samples(corpus, limit_bytes)
    elif limit_bytes:
        samples = [Sample(s.name, s.data[:limit_bytes], s.sources, s.note) for s in samples]
    if not samples or not all(s.data for s in samples):
        raise BenchError("nothing to measure (an empty sample)")

    info = model_size(model) if model is None or isinstance(model, (str, os.PathLike)) else None
    model_entry = {"name": (info or {}).get("name", m.model_id), "id": m.model_id, "digest": m.digest.hex(),
                   "bytes": (info or {}).get("bytes"), "config": json.loads(cfg.to_json()),
                   "load_s": load_s}
    from .model import Megabyte
    model_entry["params"] = Megabyte(cfg).num_params()
    flops = flops_per_byte(cfg, chunk_size)

    results = []
    for s in samples:
        say(f"{s.name}: {len(s.data):,} bytes, encode + decode")
        r = _roundtrip(comp, decomp, s.data, s.name)
        results.append({"name": s.name, "sources": s.sources, "note": s.note, **r})
    tot_n = sum(r["bytes"] for r in results)
    tot_c = sum(r["compressed_bytes"] for r in results)
    enc_s, dec_s = sum(r["encode_s"] for r in results), sum(r["decode_s"] for r in results)
    total = {"bytes": tot_n, "compressed_bytes": tot_c, "bpb": 8 * tot_c / tot_n, "encode_s": enc_s,
             "decode_s": dec_s, "encode_Bps": tot_n / enc_s, "decode_Bps": tot_n / dec_s,
             "roundtrip_ok": all(r["roundtrip_ok"] for r in results)}

    say("fp32 matmul rates")
    mm = matmul_rates(cfg, lanes, device, min_time=matmul_min_time, square=matmul_square)
    peak = mm[-1]["flops_per_s"]
    decode_shaped = max(mm[0]["flops_per_s"], mm[1]["flops_per_s"])
    hw = {"flops_per_byte": flops["total"], "peak_flops_per_s": peak, "decode_shaped_flops_per_s": decode_shaped,
          "encode_shaped_flops_per_s": mm[2]["flops_per_s"],
          "decode_achieved_flops_per_s": total["decode_Bps"] * flops["total"],
          "encode_achieved_flops_per_s": total["encode_Bps"] * flops["total"]}
    hw["decode_fraction_of_peak"] = hw["decode_achieved_flops_per_s"] / peak
    hw["decode_fraction_of_decode_shaped"] = hw["decode_achieved_flops_per_s"] / decode_shaped
    hw["encode_fraction_of_peak"] = hw["encode_achieved_flops_per_s"] / peak
    hw["decode_Bps_at_peak"] = peak / flops["total"]

    text = samples[0]
    n_forced = max([lanes, *(sweep_lanes or ())])
    say(f"{text.name}: coding up to {n_forced} chunks as {'mixed' if comp.mixing else 'neural'} chunks")
    timed = bc.Compressor(options=opts, workers=1)      # one worker: the parts add up to the wall time
    chunks, payloads, sizes, mixed, etm = forced_model_chunks(timed, text.data, n_forced)
    e_bytes = sum(sizes)
    encode_breakdown = {"sample": text.name, "chunks": len(chunks), "batch": timed.lanes or DEFAULT_LANES, "bytes": e_bytes,
                        "total_s": etm["total"], "encode_Bps": e_bytes / etm["total"],
                        "parts": {k: etm[k] for k, _ in ENCODE_PARTS}, "labels": dict(ENCODE_PARTS)}
    b_lanes = min(lanes, len(chunks))
    say(f"where decode time goes ({text.name}, {b_lanes} lanes)")
    decoded, tm = decode_breakdown(m, payloads[:b_lanes], sizes[:b_lanes], mixed[:b_lanes], breakdown_steps)
    ok = all(d == c[:len(d)] for d, c in zip(decoded, chunks))
    if not ok:
        raise BenchError("the timed copy of the decode loop did not reproduce its input")
    n_bytes = sum(len(d) for d in decoded)
    breakdown = {"sample": text.name, "lanes": b_lanes, "chunk_size": chunk_size, "steps": tm["steps"],
                 "bytes": n_bytes, "codec": "mixed" if comp.mixing else "neural", "total_s": tm["total"],
                 "decode_Bps": n_bytes / tm["total"], "roundtrip_ok": ok,
                 "parts": {k: tm[k] for k, _ in BREAKDOWN_PARTS},
                 "labels": dict(BREAKDOWN_PARTS)}
    profile = []
    if profile_steps:
        say(f"torch.profiler over {profile_steps} decode steps")
        profile = torch_profile(m, payloads[:b_lanes], sizes[:b_lanes], mixed[:b_lanes], profile_steps)

    sweep = []
    for L in sweep_lanes or ():
        n = min(L, len(chunks))
        blob = model_archive(comp, chunks[:n], payloads[:n])
        data = b"".join(chunks[:n])
        say(f"lanes {L}: decode {len(data):,} bytes")
        d = bc.Decompressor(options=opts, lanes=L)
        t0 = time.perf_counter()
        back = d.decompress(blob)
        dt = time.perf_counter() - t0
        if back != data:
            raise BenchError(f"{text.name} at lanes {L}: the round trip failed")
        sweep.append({"lanes": L, "bytes": len(data), "compressed_bytes": len(blob), "chunks": _chunk_codecs(blob),
                      "decode_s": dt, "decode_Bps": len(data) / dt, "roundtrip_ok": True})

    machine = machine_info(str(device), with_torch=True)
    machine["torch_threads"] = torch.get_num_threads()
    machine["torch_interop_threads"] = torch.get_num_interop_threads()
    machine["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "")
    machine["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS", "")
    if load0 is not None:
        machine["loadavg_1m"] = round(load0, 2)
        machine["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    if torch.device(device).type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(0)
    res = {
        "version": 1,
        "kind": "bytezip-speed",
        "date": started.isoformat(timespec="seconds"),
        "elapsed_s": time.perf_counter() - t_start,
        "command": command or _command_string(),
        "machine": machine,
        "device": str(device),
        "settings": {"lanes": lanes, "chunk_size": chunk_size, "threads": torch.get_num_threads(),
                     "limit_bytes": limit_bytes, "mixing": comp.mixing, "encode_batch": timed.lanes or DEFAULT_LANES,
                     "workers": decomp.workers, "kernels": kernels.available()},
        "model": model_entry,
        "flops": flops,
        "samples": results,
        "total": total,
        "matmul": mm,
        "hardware": hw,
        "decode_breakdown": breakdown,
        "encode_breakdown": encode_breakdown,
        "torch_profile": profile,
        "lanes_sweep": sweep,
    }
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(res, indent=1) + "\n")
    if show:
        out = console or Console(width=None if sys.stdout.isatty() else 160)
        if markdown:
            out.print(markdown_report(res), markup=False, highlight=False)
        else:
            print_report(res, out)
    return res


# -- output ------------------------------------------------------------------------------------------------
def _kbps(x: float) -> str:
    return f"{x / 1e3:,.1f}" if x < 1e5 else f"{x / 1e3:,.0f}"


def _flops(x: float) -> str:
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.3g} {unit}"
    return f"{x:.3g} "


def header_lines(res: dict) -> list[str]:
    m, mod, s = res["machine"], res["model"], res["settings"]
    cfg = mod["config"]
    device = res["device"] + (f" ({m['gpu']})" if "gpu" in m else "")
    load = f"load average {m.get('loadavg_1m', '?')} at start, {m.get('loadavg_1m_end', '?')} at end"
    return [
        f"Date: {res['date']} (run took {res['elapsed_s']:.0f} s)",
        f"Machine: {m.get('cpu', '?')}, {m.get('cpus_usable', m.get('cpu_count'))} usable cores"
        + (f", {m['memory_GiB']} GiB" if "memory_GiB" in m else "") + f"; {load}",
        f"Device: {device}; torch {m.get('torch', '?')}, {m.get('torch_threads')} threads "
        f"(interop {m.get('torch_interop_threads')}); OMP_WAIT_POLICY={m.get('omp_wait_policy') or 'unset'}"
        f", OMP_NUM_THREADS={m.get('omp_num_threads') or 'unset'}",
        f"Model: {mod['id']} ({mod.get('params', 0):,} parameters; P={cfg['patch_size']}, global "
        f"{cfg['n_global_layers']}x{cfg['d_global']}, local {cfg['n_local_layers']}x{cfg['d_local']}); "
        f"{_flops(res['flops']['total'])}FLOPs per byte at chunk {s['chunk_size']}",
        f"Codec: lanes {s['lanes']}, chunk size {s['chunk_size']}, mixing {'on' if s['mixing'] else 'off'}, "
        f"{s.get('workers', 1)} worker threads, C kernels {'on' if s.get('kernels') else 'off'}",
        f"Command: {res['command']}",
    ]


def _codec_counts(c: dict) -> str:
    return "/".join(str(c.get(k, 0)) for k in ("mixed", "neural", "lzma", "zstd", "raw"))


def throughput_rows(res: dict):
    header = ["sample", "bytes", "compressed", "bpb", "chunks (mixed/neural/lzma/zstd/raw)", "encode KB/s",
              "decode KB/s", "round trip"]
    rows = []
    for r in res["samples"] + [dict(res["total"], name="TOTAL")]:
        c = r.get("chunks")
        rows.append([r["name"], f"{r['bytes']:,}", f"{r['compressed_bytes']:,}", f"{r['bpb']:.3f}",
                     _codec_counts(c) if c else "",
                     _kbps(r["encode_Bps"]), _kbps(r["decode_Bps"]), "ok" if r["roundtrip_ok"] else "FAILED"])
    return header, rows


def hardware_rows(res: dict):
    header = ["fp32 matmul", "shape m,k,n", "GFLOP/s"]
    rows = [[r["label"], ",".join(map(str, r["shape"])), f"{r['flops_per_s'] / 1e9:.1f}"] for r in res["matmul"]]
    return header, rows


def hardware_lines(res: dict) -> list[str]:
    h = res["hardware"]
    return [
        f"Decode: {_kbps(res['total']['decode_Bps'])} KB/s x {_flops(h['flops_per_byte'])}FLOP/byte = "
        f"{h['decode_achieved_flops_per_s'] / 1e9:.2f} GFLOP/s = {100 * h['decode_fraction_of_peak']:.2f}% of the "
        f"large-matmul rate ({100 * h['decode_fraction_of_decode_shaped']:.2f}% of the decode-shaped matmul rate); "
        f"at the large-matmul rate decode would run at {_kbps(h['decode_Bps_at_peak'])} KB/s.",
        f"Encode: {_kbps(res['total']['encode_Bps'])} KB/s = {h['encode_achieved_flops_per_s'] / 1e9:.2f} GFLOP/s "
        f"= {100 * h['encode_fraction_of_peak']:.2f}% of the large-matmul rate.",
    ]


def breakdown_rows(b: dict, what: str, per: str, digits: int):
    """Seconds, share and microseconds per `per` (a count in `b`) for each part of a timed breakdown."""
    header = [f"{what} part", "seconds", "share", f"us per {per.rstrip('s')}"]
    rows = [[b["labels"][k], f"{v:.3f}", f"{100 * v / b['total_s']:.1f}%", f"{1e6 * v / b[per]:.{digits}f}"]
            for k, v in b["parts"].items()]
    rows.append(["TOTAL", f"{b['total_s']:.3f}", "100%", f"{1e6 * b['total_s'] / b[per]:.{digits}f}"])
    return header, rows


def breakdown_title(res: dict) -> str:
    b = res["decode_breakdown"]
    return (f"where decode time goes: {b['lanes']} lanes x {b['steps']} steps of {b['sample']} coded as "
            f"{b['codec']} chunks, {b['bytes']:,} bytes at {_kbps(b['decode_Bps'])} KB/s "
            f"(round trip {'ok' if b['roundtrip_ok'] else 'FAILED'})")


def profile_rows(res: dict):
    header = ["torch op (self CPU time)", "calls", "self ms", "share"]
    rows = [[p["op"], str(p["calls"]), f"{p['self_cpu_ms']:.1f}", f"{100 * p['self_cpu_share']:.1f}%"]
            for p in res["torch_profile"]]
    return header, rows


def sweep_rows(res: dict):
    header = ["lanes", "bytes", "chunks (mixed/neural/lzma/zstd/raw)", "decode KB/s", "round trip"]
    rows = []
    for r in res["lanes_sweep"]:
        c = r["chunks"]
        rows.append([str(r["lanes"]), f"{r['bytes']:,}", _codec_counts(c),
                     _kbps(r["decode_Bps"]), "ok" if r["roundtrip_ok"] else "FAILED"])
    return header, rows


def _tables(res: dict):
    """(title, header, rows, lines after) for each table."""
    out = [("throughput of the full codec (KB = 10^3 bytes)", *throughput_rows(res), []),
           ("hardware limit", *hardware_rows(res), hardware_lines(res) + [
               f"FLOPs per byte: {res['flops']['formula']}"]),
           (breakdown_title(res), *breakdown_rows(res["decode_breakdown"], "decode", "steps", 1), [])]
    e = res["encode_breakdown"]
    out.append((f"where encode time goes: {e['chunks']} chunks of {e['sample']} in batches of {e['batch']}, "
                f"{e['bytes']:,} bytes at {_kbps(e['encode_Bps'])} KB/s", *breakdown_rows(e, "encode", "bytes", 2), []))
    if res["torch_profile"]:
        out.append(("torch.profiler: top operators over a short decode", *profile_rows(res), []))
    if res["lanes_sweep"]:
        out.append(("decode throughput against lanes (the text sample's first chunks, one per lane, coded as "
                    f"{res['decode_breakdown']['codec']} chunks)",
                    *sweep_rows(res), []))
    return out


def print_report(res: dict, console) -> None:
    from rich.markup import escape
    from rich.table import Table
    console.print("[bold]bytezip speed[/]")
    for line in header_lines(res):
        console.print(line, highlight=False, markup=False)
    for title, header, rows, after in _tables(res):
        tab = Table(title=escape(title), title_justify="left")
        for i, h in enumerate(header):
            tab.add_column(h, justify="left" if i == 0 else "right")
        for i, r in enumerate(rows):
            tab.add_row(*map(escape, r), end_section=r[0] == "TOTAL" or i == len(rows) - 2 and rows[-1][0] == "TOTAL")
        console.print(tab)
        for line in after:
            console.print(line, highlight=False, markup=False)


def markdown_report(res: dict) -> str:
    parts = ["# bytezip speed", ""] + [f"- {line}" for line in header_lines(res)] + [""]
    for title, header, rows, after in _tables(res):
        parts += [f"### {title}", "", md_table(header, rows), ""] + [f"{line}" for line in after] + ([""] if after else [])
    return "\n".join(parts)


# -- the command ------------------------------------------------------------------------------------------
def _parse_lanes(value) -> tuple[int, ...]:
    if value is None:
        return SWEEP_LANES
    try:
        out = tuple(int(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"not a comma-separated list of lanes: {value!r}") from None
    if any(v < 1 for v in out):
        raise click.BadParameter("lanes must be >= 1")
    return out


@click.command("speed", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--model", "-m", default=None, help="Model name or path prefix (default: the shipped model).")
@click.option("--device", default=None, help="auto, cpu, cuda (default: bytezip's, auto).")
@click.option("--lanes", type=int, default=None, help="Decode lanes (default: the codec's, 64).")
@click.option("--chunk-size", type=int, default=None, help="Chunk size (default: the model's context).")
@click.option("--threads", "-T", type=int, default=None, help="torch threads (default: torch's; 0: all cores).")
@click.option("--limit-bytes", metavar="N", default=None, help="Bytes per sample (default 10^6; 64K, 1M...).")
@click.option("--corpus", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"Where the default samples come from (default: {DEFAULT_CORPUS}).")
@click.option("--sweep-lanes", default=None, metavar="LIST",
              help="Decode bytes/s at these lanes on the text sample (default 1,16,64,256; '' for none).")
@click.option("--breakdown-steps", type=click.IntRange(min=1), default=None,
              help="Bytes per lane in the timed decode loop (default: whole chunks).")
@click.option("--profile-steps", type=click.IntRange(min=0), default=TORCH_PROFILE_STEPS, show_default=True,
              help="Decode steps under torch.profiler (0: none).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write every number to this JSON file.")
@click.option("--markdown", is_flag=True, help="Print markdown instead of rich tables.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def speed_command(paths, model, device, lanes, chunk_size, threads, limit_bytes, corpus, sweep_lanes, breakdown_steps,
                  profile_steps, json_path, markdown, quiet):
    """Encode/decode bytes/s of bytezip on 1 MB each of held-out text, image pixels and audio PCM (or on
    PATHS), the model's FLOPs per byte against the measured fp32 matmul rate, where decode time goes, and
    decode speed against lanes."""
    checked_options({k: v for k, v in dict(device=device, lanes=lanes, chunk_size=chunk_size,
                                           threads=threads).items() if v is not None})
    limit = parse_size(limit_bytes)
    samples = samples_from_paths(paths, limit or DEFAULT_BYTES) if paths else None
    run_speed(samples, model=model, device=device, lanes=lanes, chunk_size=chunk_size, threads=threads,
              limit_bytes=limit, corpus=corpus, sweep_lanes=_parse_lanes(sweep_lanes), breakdown_steps=breakdown_steps,
              profile_steps=profile_steps, json_path=json_path, markdown=markdown, progress=not quiet)


def main():
    speed_command(prog_name="python -m bytezip.speed")


if __name__ == "__main__":
    main()
