"""Train the MEGABYTE predictor and export the weights the coder ships.

Run `python -m bytezip.train --minutes 110` (or `torchrun --nproc_per_node N -m bytezip.train ...`).

Data
----
Everything is loaded once into memory, as byte streams grouped by modality, because the model only ever sees
bytes and the sampler must be able to mix modalities in set proportions:

- ``text``: ``train/text/*`` as is.
- ``image``: each ``train/image/*.png`` decoded with Pillow to raw RGB pixels (3 bytes a pixel, the way the
  coder counts images) and, separately, as a PPM file (``P6`` header + the same pixels), so the model learns
  both header-less pixels and files with a header.
- ``audio``: ``train/audio/*.flac`` decoded with soundfile to int16 PCM and wrapped as WAV file bytes (44-byte
  header + interleaved little-endian samples); ``*.wav`` taken as is. WAV bytes cover the raw-PCM case too.
  Stereo training files also come as (near-)mono variants (`mono_variants`): no stereo file in the corpus
  has equal channels, yet mono recordings stored as two identical channels are common (one bench-like loop
  is), and a model that never saw R == L cannot predict the right channel from the left.
- ``code_docs`` and ``binary``: what a general-purpose compressor also meets and the corpus lacks (a model
  trained on prose alone costs more than 8 bits per byte on spreadsheets and fax bitmaps): Python standard
  library sources, /usr/share/doc text, man pages (gunzipped); executables from /usr/bin and shared libraries
  from /usr/lib/x86_64-linux-gnu. Files are picked in a fixed pseudo-random order and capped
  (``--general-mb``), so loading takes seconds and the same machine gives the same data.

Held-out split (rule; ``../shared/corpus/bench`` is never read here)
---------------------------------------------------------------------
- text: the last 10% of every text file;
- image: the images at positions 7 and 15 of the name-sorted list (every 8th, two of sixteen), whole;
- audio: the files at positions i with i % 10 == 9 in the name-sorted list (~10%), whole;
- code_docs / binary: files whose zlib.crc32 of the path is 0 modulo 10 (~10%), whole.
Held-out evaluation uses fixed, evenly spaced windows of ``chunk_size`` bytes from each modality's held-out
stream, so numbers from different runs and steps compare.

Sampling
--------
Each training window is ``chunk_size`` bytes (default patch_size * max_patches) of one modality, chosen by
``--mix`` proportions. A quarter of windows start at the start of a file (the coder resets its context at
file/chunk starts, and headers only occur there); the rest start anywhere in the modality's concatenated
stream. The sampler is stateless: window picks come from a generator seeded with (seed, rank, step), so a
resumed run draws exactly the windows an uninterrupted run would, on every rank, with no state to save.

Optimisation
------------
AdamW (betas 0.9/0.95, weight decay on matrices only), linear warmup then cosine decay to 10% of the peak over
``--steps`` or ``--minutes`` (whichever is given; with minutes the schedule runs on wall time, carried over
resumes), gradient clipping 1.0, fp32 on CPU and bf16 autocast on CUDA. Loss is cross-entropy in bits per
byte. From ``--qat-from`` of the schedule on, linear layers train with int8 fake quantisation, because the
exact coder (`bytezip.exact`) runs int8 weights and activations; the last part of training adapts to that.

On a CPU shared with other jobs, run with ``OMP_WAIT_POLICY=PASSIVE`` in the environment (it must be set
before torch loads): with the default spinning OpenMP threads, 2 threads on 2 busy cores ran 2-4x slower
than with passive waiting, and int8 QAT (many small elementwise kernels) suffered most.

Checkpoints (private, torch.save) go to ``checkpoints/latest.pt`` every ``--ckpt-minutes``; ``--resume``
continues exactly from there. Every ``--eval-minutes`` rank 0 measures held-out bits per byte and, when it is
the best so far, exports the weights with `save_model` (safetensors + JSON card metadata). Once QAT is on, a
quantisation-trained model always supersedes float-only ones, since those are what the coder runs best.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import gzip
import io
import json
import math
import os
import platform
import stat
import sysconfig
import time
import wave
import zlib
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F

from .model import Megabyte, ModelConfig, load_model, save_model

MODALITIES = ("text", "code_docs", "binary", "image", "audio")
DEFAULT_MIX = "text=0.25,code_docs=0.2,binary=0.1,image=0.25,audio=0.2"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CORPUS = os.path.join(REPO_ROOT, "..", "shared", "corpus", "train")
LN2 = math.log(2.0)


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------
class Stream:
    """The files of one modality concatenated into one uint8 array, with the offset where each file starts."""

    def __init__(self, docs: list[bytes | np.ndarray]):
        arrays = [np.frombuffer(d, dtype=np.uint8) if isinstance(d, (bytes, bytearray)) else d for d in docs]
        arrays = [a for a in arrays if len(a)]
        self.data = np.concatenate(arrays) if arrays else np.zeros(0, np.uint8)
        self.starts = np.cumsum([0] + [len(a) for a in arrays[:-1]]).astype(np.int64) if arrays else \
            np.zeros(0, np.int64)

    def __len__(self):
        return len(self.data)


def decode_image(path: str) -> tuple[bytes, bytes]:
    """PNG -> (raw RGB pixels, the same pixels as a binary PPM file)."""
    from PIL import Image
    with Image.open(path) as im:
        rgb = im.convert("RGB")
        raw = rgb.tobytes()
        header = f"P6\n{rgb.width} {rgb.height}\n255\n".encode()
    return raw, header + raw


def decode_audio(path: str) -> bytes:
    """FLAC/other -> WAV file bytes with int16 PCM (the form the coder sees); WAV files are taken as is."""
    if path.lower().endswith(".wav"):
        with open(path, "rb") as f:
            return f.read()
    import soundfile as sf
    pcm, rate = sf.read(path, dtype="int16", always_2d=True)
    return _wav_bytes(pcm, rate)


def mono_variants(wav: bytes, index: int) -> list[bytes]:
    """Extra training copies of a stereo int16 WAV: file index % 3 == 0 gives dual mono (R = L), == 1 near
    mono (R = L + (R - L) // 16: channels a few steps apart), == 2 none. Mono files give none."""
    with wave.open(io.BytesIO(wav)) as w:
        if w.getnchannels() != 2 or w.getsampwidth() != 2 or index % 3 == 2:
            return []
        rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    left = pcm[:, 0].astype(np.int32)
    right = left if index % 3 == 0 else left + (pcm[:, 1].astype(np.int32) - left) // 16
    return [_wav_bytes(np.stack([left, right], 1).astype("<i2"), rate)]


def _wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    """int16 PCM [frames, channels] -> WAV file bytes."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return buf.getvalue()


def _read_maybe_gz(path: str, limit: int) -> bytes:
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        return f.read(limit)


def _fixed_shuffle(paths: list[str]) -> list[str]:
    """Sorted, then ordered by crc32: a pseudo-random order that is the same on every run and machine."""
    return sorted(sorted(set(paths)), key=lambda p: zlib.crc32(p.encode()))


def _general_files() -> dict[str, list[str]]:
    """Candidate system files for the code_docs and binary modalities (lists of paths per source)."""
    stdlib = sysconfig.get_paths()["stdlib"]
    py = [p for p in glob.glob(os.path.join(stdlib, "**", "*.py"), recursive=True) if "site-packages" not in p]
    py += glob.glob("/usr/lib/python3*/**/*.py", recursive=True)
    doc = [p for p in glob.glob("/usr/share/doc/**/*", recursive=True)
           if os.path.isfile(p) and not p.endswith((".png", ".jpg", ".gif", ".ico", ".pdf", ".woff", ".ttf"))]
    man = [p for p in glob.glob("/usr/share/man/man*/*") if os.path.isfile(p)]
    exe = []
    for p in glob.glob("/usr/bin/*"):
        try:
            st = os.stat(p)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            with open(p, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    exe.append(p)
    so = [p for p in glob.glob("/usr/lib/x86_64-linux-gnu/**/*.so*", recursive=True)
          if os.path.isfile(p) and not os.path.islink(p)]
    return {"py": py, "doc": doc, "man": man, "exe": exe, "so": so}


def load_general(total_mb: float, file_cap: int = 1 << 20) -> dict[str, list[tuple[str, bytes]]]:
    """Pick system files up to `total_mb` MB (half code/docs, half binaries); each file cut to `file_cap` bytes.

    Within code_docs the budget is split py 40% / doc 30% / man 30%, within binary exe 50% / so 50%.
    """
    files = _general_files()
    budget = total_mb * 1e6
    shares = {"py": ("code_docs", 0.2), "doc": ("code_docs", 0.15), "man": ("code_docs", 0.15),
              "exe": ("binary", 0.25), "so": ("binary", 0.25)}
    out: dict[str, list[tuple[str, bytes]]] = {"code_docs": [], "binary": []}
    for src, (modality, share) in shares.items():
        left = budget * share
        for p in _fixed_shuffle(files[src]):
            if left <= 0:
                break
            try:
                data = _read_maybe_gz(p, min(file_cap, int(left) + 1))
            except (OSError, EOFError, gzip.BadGzipFile):
                continue
            if len(data) < 64:
                continue
            out[modality].append((p, data))
            left -= len(data)
    return out


def load_corpus(root: str | None, general_mb: float = 40.0) -> tuple[dict[str, Stream], dict[str, Stream], dict]:
    """Load and split everything: (train streams, held-out streams, description) keyed by modality.

    The split rule is the one in the module docstring. Modalities with no data are left out.
    """
    train: dict[str, list] = {m: [] for m in MODALITIES}
    held: dict[str, list] = {m: [] for m in MODALITIES}
    files: dict[str, list[str]] = {m: [] for m in MODALITIES}
    if root and os.path.isdir(root):
        for p in sorted(glob.glob(os.path.join(root, "text", "*"))):
            with open(p, "rb") as f:
                data = f.read()
            cut = len(data) - len(data) // 10
            train["text"].append(data[:cut])
            held["text"].append(data[cut:])
            files["text"].append(os.path.basename(p))
        for i, p in enumerate(sorted(glob.glob(os.path.join(root, "image", "*.png")))):
            raw, ppm = decode_image(p)
            (held if i % 8 == 7 else train)["image"].extend([raw, ppm])
            files["image"].append(os.path.basename(p) + (" (held out)" if i % 8 == 7 else ""))
        audio = sorted(glob.glob(os.path.join(root, "audio", "*.flac")) + glob.glob(os.path.join(root, "audio", "*.wav")))
        for i, p in enumerate(audio):
            wav = decode_audio(p)
            if i % 10 == 9:
                held["audio"].append(wav)
            else:
                train["audio"] += [wav] + mono_variants(wav, i)
            files["audio"].append(os.path.basename(p) + (" (held out)" if i % 10 == 9 else ""))
    if general_mb > 0:
        for modality, items in load_general(general_mb).items():
            for p, data in items:
                (held if zlib.crc32(p.encode()) % 10 == 0 else train)[modality].append(data)
                files[modality].append(p)
    tr = {m: Stream(d) for m, d in train.items() if sum(len(x) for x in d)}
    he = {m: Stream(d) for m, d in held.items() if sum(len(x) for x in d)}
    desc = {m: {"files": len(files[m]), "train_bytes": len(tr[m]) if m in tr else 0,
                "heldout_bytes": len(he[m]) if m in he else 0} for m in MODALITIES}
    return tr, he, desc


def parse_mix(spec: str, available) -> dict[str, float]:
    """'text=0.25,image=0.25,...' -> normalised proportions over the modalities that have data."""
    mix = {}
    for part in spec.split(","):
        if part.strip():
            k, v = part.split("=")
            if k.strip() not in MODALITIES:
                raise ValueError(f"unknown modality {k!r}; known: {', '.join(MODALITIES)}")
            mix[k.strip()] = float(v)
    mix = {k: v for k, v in mix.items() if k in available and v > 0}
    if not mix:
        raise ValueError("no modality in --mix has data")
    total = sum(mix.values())
    return {k: v / total for k, v in mix.items()}


def _window(stream: Stream, start: int, n: int) -> np.ndarray:
    """n bytes from `start`, wrapping round the end of the stream (short streams are repeated)."""
    idx = (start + np.arange(n)) % len(stream.data)
    return stream.data[idx]


def sample_batch(streams: dict[str, Stream], mix: dict[str, float], batch: int, n: int,
                 seed: int, rank: int, step: int, doc_start_p: float = 0.25) -> torch.Tensor:
    """A [batch, n] int64 batch of windows; a pure function of (seed, rank, step), hence exactly resumable."""
    rng = np.random.default_rng([seed, rank, step])
    names = list(mix)
    picks = rng.choice(len(names), size=batch, p=[mix[k] for k in names])
    out = np.empty((batch, n), dtype=np.uint8)
    for i, k in enumerate(picks):
        s = streams[names[k]]
        if rng.random() < doc_start_p:
            start = int(s.starts[rng.integers(len(s.starts))])
        else:
            start = int(rng.integers(max(1, len(s) - n + 1)))
        out[i] = _window(s, start, n)
    return torch.from_numpy(out).long()


def eval_windows(held: dict[str, Stream], n: int, count: int) -> dict[str, torch.Tensor]:
    """Fixed held-out windows: `count` evenly spaced windows of n bytes per modality (fewer if it is short)."""
    out = {}
    for m, s in held.items():
        k = max(1, min(count, len(s) // n))
        starts = np.linspace(0, max(0, len(s) - n), k).astype(np.int64)
        out[m] = torch.from_numpy(np.stack([_window(s, int(a), n) for a in starts])).long()
    return out


# ---------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: Megabyte, windows: dict[str, torch.Tensor], exact: bool = False, batch_size: int = 4,
             device: str | torch.device = "cpu") -> dict[str, float]:
    """Held-out bits per byte per modality (and 'mean', unweighted over modalities).

    With exact=False the float model is measured in its current quantisation mode; with exact=True the
    integer model the coder runs (`ExactMegabyte.frequencies`), bits = -log2(freq[byte] / sum(freq)), so the
    size cost of exact inference can be read off against the float figure.
    """
    was_training = model.training
    model.eval()
    engine = None
    if exact:
        from .exact import ExactMegabyte
        engine = ExactMegabyte(model, device=device)
    out = {}
    for m, w in windows.items():
        bits, count = 0.0, 0
        for i in range(0, len(w), batch_size):
            x = w[i:i + batch_size].to(device)
            if exact:
                freq = engine.frequencies(x).double()
                p = freq.gather(-1, x[..., None])[..., 0] / freq.sum(-1)
                bits += float(-torch.log2(p).sum())
            else:
                logits = model(x).float()
                bits += float(F.cross_entropy(logits.reshape(-1, 256), x.reshape(-1), reduction="sum")) / LN2
            count += x.numel()
        out[m] = bits / count
    out["mean"] = sum(out[m] for m in windows) / len(windows)
    model.train(was_training)
    return out


# ---------------------------------------------------------------------------------------------------------
# Schedule, optimiser, checkpoints
# ---------------------------------------------------------------------------------------------------------
def lr_at(step: int, progress: float, peak: float, warmup: int, final_frac: float = 0.1) -> float:
    """Linear warmup over `warmup` steps, then cosine from peak to final_frac * peak as progress goes 0 -> 1."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    p = min(1.0, max(0.0, progress))
    return peak * warm * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with weight decay on weight matrices only (not embeddings' gains, norms, positions or starts)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() == 2 and "pos" not in name and "emb" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)


def save_checkpoint(path: str, state: dict) -> None:
    """Atomic write: a run killed mid-save leaves the previous checkpoint intact."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bytezip train", description="Train the bytezip MEGABYTE predictor.")
    p.add_argument("--corpus", default=DEFAULT_CORPUS, help="training corpus folder (text/, image/, audio/)")
    p.add_argument("--general-mb", type=float, default=40.0,
                   help="MB of system files (code, docs, man pages, binaries) to add; 0 = none")
    p.add_argument("--mix", default=DEFAULT_MIX, help="sampling proportions per modality")
    p.add_argument("--config", default="{}", help="JSON overrides of ModelConfig fields")
    p.add_argument("--chunk-size", type=int, default=0, help="window bytes (default patch_size * max_patches)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per step per process")
    p.add_argument("--steps", type=int, default=0, help="schedule length in steps")
    p.add_argument("--minutes", type=float, default=0.0, help="schedule length in wall-clock minutes")
    p.add_argument("--stop-at-step", type=int, default=0, help="stop (with a checkpoint) at this step")
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--warmup", type=int, default=100, help="warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--qat-from", type=float, default=0.7, help="fraction of the schedule where int8 QAT starts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0 = cores / processes)")
    p.add_argument("--ckpt-dir", default=os.path.join(REPO_ROOT, "checkpoints"))
    p.add_argument("--ckpt-minutes", type=float, default=5.0)
    p.add_argument("--resume", action="store_true", help="continue from <ckpt-dir>/latest.pt if it exists")
    p.add_argument("--init-from", default="", help="models/<name>: start from shipped weights (no checkpoint)")
    p.add_argument("--export", default=os.path.join(REPO_ROOT, "models", "bytezip-v1"),
                   help="path prefix for the best weights (.safetensors + .json); '' = no export")
    p.add_argument("--eval-minutes", type=float, default=5.0)
    p.add_argument("--eval-every", type=int, default=0, help="also evaluate every N steps (0 = time only)")
    p.add_argument("--eval-windows", type=int, default=8, help="held-out windows per modality")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-only", action="store_true",
                   help="report held-out bits per byte (float and exact) of --model and exit")
    p.add_argument("--model", default="", help="with --eval-only: model prefix (default: --export)")
    p.add_argument("--no-exact", action="store_true", help="with --eval-only: skip the exact model")
    return p


def _dist_env():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def train(args) -> dict:
    """Run training as `args` says; returns a summary (losses per step etc., on rank 0)."""
    world, rank, local_rank = _dist_env()
    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if world > 1:
        import torch.distributed as dist
        if use_cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if not use_cuda:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // local_world))
    main_proc = rank == 0
    log = (lambda *a: print(*a, flush=True)) if main_proc else (lambda *a: None)
    if not (args.steps or args.minutes):
        raise SystemExit("give --steps or --minutes")

    # Model: checkpoint > --init-from > fresh from config.
    ckpt_path = os.path.join(args.ckpt_dir, "latest.pt")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False) \
        if args.resume and os.path.exists(ckpt_path) else None
    if ckpt is not None:
        cfg = ModelConfig.from_dict(ckpt["config"])
        model = Megabyte(cfg)
        model.load_state_dict(ckpt["model"])
        log(f"resuming from {ckpt_path} at step {ckpt['step']}")
    elif args.init_from:
        model = load_model(args.init_from)
        cfg = model.cfg
        log(f"starting from {args.init_from}")
    else:
        cfg = ModelConfig.from_dict({**asdict(ModelConfig()), **json.loads(args.config)})
        torch.manual_seed(args.seed)
        model = Megabyte(cfg)
    model.to(device).train()
    n = args.chunk_size or cfg.patch_size * cfg.max_patches
    assert n % cfg.patch_size == 0 and n // cfg.patch_size <= cfg.max_patches, "chunk_size must fit the config"

    t0 = time.time()
    tr, held, desc = load_corpus(args.corpus, args.general_mb)
    mix = parse_mix(args.mix, tr)
    windows = eval_windows(held, n, args.eval_windows)
    log(f"data loaded in {time.time() - t0:.1f}s: " +
        ", ".join(f"{m} {d['train_bytes'] / 1e6:.1f}+{d['heldout_bytes'] / 1e6:.1f} MB" for m, d in desc.items()))
    log(f"model {model.num_params() / 1e6:.2f}M params, config {json.dumps(asdict(cfg))}, window {n}, "
        f"batch {args.batch_size} x {world} processes, mix {mix}")

    opt = make_optimizer(model, args.lr, args.weight_decay)
    step, bytes_seen, wall_prev = 0, 0, 0.0
    best = {"key": None, "bpb": None}
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer"])
        step, bytes_seen, wall_prev = ckpt["step"], ckpt["bytes_seen"], ckpt["wall_time"]
        best = ckpt.get("best", best)
        torch.set_rng_state(ckpt["torch_rng"])
    ddp = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        ddp = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)

    start = time.time()
    total_s = args.minutes * 60

    def progress_now(s: int) -> float:
        p = s / args.steps if args.steps else 0.0
        if total_s:
            el = wall_prev + time.time() - start
            if world > 1:  # every rank must agree on the schedule, or they would stop/switch apart
                import torch.distributed as dist
                t = torch.tensor([el], dtype=torch.float64, device=device if use_cuda else "cpu")
                dist.broadcast(t, 0)
                el = float(t)
            p = max(p, el / total_s)
        return p

    def checkpoint():
        if not main_proc:
            return
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "bytes_seen": bytes_seen,
            "wall_time": wall_prev + time.time() - start, "torch_rng": torch.get_rng_state(),
            "sampler": {"seed": args.seed, "world_size": world, "next_step": step}, "config": asdict(cfg),
            "args": vars(args), "best": best})

    def evaluate_and_export(qat: bool):
        if not main_proc:
            return
        te = time.time()
        res = evaluate(model, windows, device=device)
        key = [int(qat), -res["mean"]]
        improved = best["key"] is None or key > best["key"]
        log(f"eval step {step}: " + " ".join(f"{m} {v:.3f}" for m, v in res.items()) +
            f" bpb{' (qat)' if qat else ''} [{time.time() - te:.1f}s]{' -> export' if improved and args.export else ''}")
        with open(os.path.join(args.ckpt_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({"step": step, "bytes_seen": bytes_seen, "qat": qat, "heldout_bpb": res,
                                "wall_time": wall_prev + time.time() - start}) + "\n")
        if improved:
            best["key"], best["bpb"] = key, res
            if args.export:
                os.makedirs(os.path.dirname(args.export) or ".", exist_ok=True)
                save_model(model, args.export, extra={
                    "training": {
                        "steps": step, "bytes_seen": bytes_seen,
                        "wall_time_s": round(wall_prev + time.time() - start, 1),
                        "hardware": hardware(), "processes": world, "qat": qat,
                        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                        "heldout_bpb": {k: round(v, 4) for k, v in res.items()},
                        "heldout_windows": {m: list(w.shape) for m, w in windows.items()},
                        "data": desc, "mix": mix, "window": n,
                        "split": "text: last 10% of each file; image: sorted index % 8 == 7; audio: sorted "
                                 "index % 10 == 9; system files: crc32(path) % 10 == 0",
                        "args": {k: v for k, v in vars(args).items() if k not in ("eval_only", "model", "no_exact")},
                        "torch": torch.__version__,
                    }})

    if main_proc:
        os.makedirs(args.ckpt_dir, exist_ok=True)
    losses: list[float] = []
    last_ckpt = last_eval = time.time()
    last_eval_step = -1
    interval_bits, interval_steps, interval_t = 0.0, 0, time.time()
    qat = False
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if use_cuda else torch.autocast("cpu", enabled=False)
    while True:
        progress = progress_now(step)
        if progress >= 1.0 or (args.stop_at_step and step >= args.stop_at_step):
            break
        if progress >= args.qat_from and not qat:
            qat = True
            model.set_quantize(True)
            log(f"step {step}: int8 quantisation-aware training on")
        lr = lr_at(step, progress, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x = sample_batch(tr, mix, args.batch_size, n, args.seed, rank, step).to(device)
        with amp:
            logits = ddp(x)
        loss = F.cross_entropy(logits.float().reshape(-1, 256), x.reshape(-1)) / LN2  # bits per byte
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        step += 1
        bytes_seen += x.numel() * world
        lv = loss.item()
        if not math.isfinite(lv):
            raise FloatingPointError(f"loss is {lv} at step {step}")
        losses.append(lv)
        interval_bits += lv
        interval_steps += 1
        if step % args.log_every == 0:
            dt = time.time() - interval_t
            log(f"step {step} progress {progress:.3f} lr {lr:.2e} loss {interval_bits / interval_steps:.4f} bpb "
                f"{interval_steps * x.numel() * world / dt / 1e3:.1f} KB/s seen {bytes_seen / 1e6:.1f} MB "
                f"elapsed {(wall_prev + time.time() - start) / 60:.1f} min")
            interval_bits, interval_steps, interval_t = 0.0, 0, time.time()
        if time.time() - last_eval >= args.eval_minutes * 60 or (args.eval_every and step % args.eval_every == 0):
            evaluate_and_export(qat)
            last_eval, last_eval_step = time.time(), step
        if time.time() - last_ckpt >= args.ckpt_minutes * 60:
            checkpoint()
            last_ckpt = time.time()
    if last_eval_step != step:
        evaluate_and_export(qat)
    checkpoint()
    log(f"done: step {step}, {bytes_seen / 1e6:.1f} MB seen, {(wall_prev + time.time() - start) / 60:.1f} min")
    if world > 1:
        import torch.distributed as dist
        dist.destroy_process_group()
    return {"losses": losses, "step": step, "bytes_seen": bytes_seen, "best": best["bpb"]}


def eval_only(args) -> dict:
    """Held-out bits per byte of a shipped model, float and exact, per modality (the model card's numbers)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    prefix = args.model or args.export
    model = load_model(prefix)
    n = args.chunk_size or model.cfg.patch_size * model.cfg.max_patches
    _, held, _ = load_corpus(args.corpus, args.general_mb)
    windows = eval_windows(held, n, args.eval_windows)
    t = time.time()
    model.set_quantize(False)
    res = {"float": evaluate(model, windows)}
    model.set_quantize(True)
    res["float_int8"] = evaluate(model, windows)
    model.set_quantize(False)
    if not args.no_exact:
        res["exact"] = evaluate(model, windows, exact=True)
    res["windows"] = {m: list(w.shape) for m, w in windows.items()}
    res["seconds"] = round(time.time() - t, 1)
    print(json.dumps({"model": prefix, **res}, indent=2))
    return res


def main(argv=None):
    args = build_parser().parse_args(argv)
    return eval_only(args) if args.eval_only else train(args)


if __name__ == "__main__":
    main()
