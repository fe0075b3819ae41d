"""Exact integer-valued inference of a trained `Megabyte`, for coding.

The range decoder must see bit-identical distributions to the encoder's, whatever the batch size, thread
count, code path (parallel forward or KV-cached step) or device. Floating-point sums are the only thing that
depends on those, so every sum here is a sum of integers that float32/float64 holds exactly:

- linear layers: int8 weights (per output row) x int8 activations (per input row), K <= 1040, so
  |sum| < 2^24 is exact in float32 whatever order a kernel picks; per-row scales are applied afterwards;
- RMS norm: folded into the next linear layer where there is one (squares of its int8 row, float32),
  else squares of 20-bit integers (each row quantised against its own max) summed in float64;
- attention: 16-bit queries (per row) x 21-bit keys and values on a fixed grid, dot products and
  weighted sums in float64, softmax weights from an integer exp table indexed by the distance of each
  (integer) dot product below the row's maximum;
- next-byte distribution: logits -> integer frequencies through an exp table.

Between sums only elementwise IEEE operations appear (+ - * sqrt, reciprocal, round), never a platform
exp/rsqrt or a fused kernel, and every elementwise formula is one function shared by both paths. torch's CPU
sqrt is not IEEE's (one float32 result in six is an ulp off here, float64 too), so `ieee_sqrt` takes numpy's.
On the CPU the C kernels (`_kernels.c`: linear layers, MLPs, attention, the output table, and the whole
incremental steps) run the same operations in the same order, over numpy arrays: that path never imports
torch (the little glue between kernels, embeddings and the global RMS norm, is numpy's elementwise IEEE
operations in the torch code's order). The torch code runs on a GPU, where the kernels are not built
(BYTEZIP_KERNELS=0), and for models deeper than the kernels take (`kernels.MAX_LAYERS`).
"""
from __future__ import annotations

import ctypes
from decimal import Decimal, getcontext
from typing import Any

import numpy as np

from . import kernels
from .weights import ModelConfig

torch: Any = None           # imported by the torch code path only (`_import_torch`), never by the kernels'


def _import_torch():
    global torch
    if torch is None:
        import torch as module
        torch = module
    return torch


NORM_BITS = 20              # RMS norm: each element as an integer of NORM_BITS bits against the row max
Q_ONE = 2.0 ** 15           # queries: per-row integers in [-2^15, 2^15]
KV_GRID = 2.0 ** 13         # keys and values: fixed point 2^-13, |x| < 2^7 -> 20-bit integers
KV_MAX = 2.0 ** 20
ATT_STEPS = 64              # softmax table: steps per nat below the row max (index = floor)
ATT_LEN = 16 * ATT_STEPS    # weights below e^-16 of the max are zero
OUT_STEPS = 32              # output table: steps per nat below the most likely byte
OUT_LEN = 20 * OUT_STEPS    # beyond that every byte keeps frequency 1
ATT_ONE, OUT_ONE = 2 ** 15, 2 ** 16
QUERY_BLOCK = 256           # parallel attention works on this many queries at a time (bounds memory)


def _exp_table(steps: int, length: int, one: int, floor: int, tail: int, offset: float) -> list[int]:
    """round(one * e^(-(i + offset)/steps)) for i < length, then `tail`; Decimal.exp is correctly rounded."""
    getcontext().prec = 40
    table = [max(floor, int((Decimal(one) * (-(Decimal(i) + Decimal(offset)) / steps).exp()).to_integral_value()))
             for i in range(length)]
    return table + [tail]


ATT_TABLE = _exp_table(ATT_STEPS, ATT_LEN, ATT_ONE, 0, 0, 0.5)   # indexed by floor: the bin's middle
OUT_TABLE = _exp_table(OUT_STEPS, OUT_LEN, OUT_ONE, 1, 1, 0.0)




class Device:
    """The CPU without torch (`.type` as a torch.device has); the torch code turns it into a torch.device."""

    def __init__(self, type: str = "cpu"):
        self.type = type

    def __str__(self):
        return self.type

    def __repr__(self):
        return f"device(type='{self.type}')"

    def __eq__(self, other):
        return str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


def device_type(device) -> str:
    return getattr(device, "type", None) or str(device or "cpu").split(":")[0]


# -- numpy: the glue of the kernels' path (the same IEEE operations, in the same order, as the torch code's) ---
def quantize_rows_np(x: np.ndarray, one: float) -> tuple[np.ndarray, np.ndarray]:
    """`quantize_rows` in numpy: x [..., K] (float32 or float64) -> (integers in [-one, one], row scale)."""
    f = x.dtype.type
    amax = np.maximum(np.abs(x).max(-1, keepdims=True), f(2.0 ** -60))
    ints = np.clip(np.rint(x * (f(one) * np.reciprocal(amax))), f(-one), f(one))
    return ints, amax * f(1.0 / one)


def rms_norm_np(x: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """`rms_norm` in numpy (float64 sums of integers, numpy's correctly rounded sqrt)."""
    ints, scale = quantize_rows_np(x.astype(np.float64), 2.0 ** NORM_BITS)
    ss = (ints * ints).sum(-1, keepdims=True)
    rms = scale * np.sqrt(ss * (1.0 / x.shape[-1]))
    inv = np.reciprocal(np.sqrt(rms * rms + 1e-6))
    return x * inv.astype(np.float32) * gain


def _rows(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=np.float32)


class KernelLinear:
    """`ExactLinear` over numpy arrays, run by the C kernels (weights quantised as `ExactLinear` does)."""

    def __init__(self, weight: np.ndarray, norm_gain: np.ndarray | None = None):
        assert weight.shape[1] <= 1040, "int8 dot products stay exact in float32 only up to K = 1040"
        weight = np.asarray(weight, dtype=np.float32)
        if norm_gain is not None:
            weight = weight * np.asarray(norm_gain, dtype=np.float32)
        self.norm = norm_gain is not None
        wq, ws = quantize_rows_np(weight, 127.0)
        self.wq = np.ascontiguousarray(wq.T)                               # [in, out]
        self.ws = np.ascontiguousarray(ws.reshape(-1))                     # [out]
        K, N = self.wq.shape
        w8 = np.zeros((-(-K // 4) * 4, N), dtype=np.int8)                 # K padded to a multiple of 4
        w8[:K] = self.wq.astype(np.int8)
        self.w8 = np.ascontiguousarray(w8.reshape(-1, 4, N).transpose(0, 2, 1))   # [K / 4, N, 4] for VNNI
        self.w8_sum = (self.wq.sum(0) * np.float32(128)).astype(np.int32)        # [N]
        self.c = kernels.Linear(self.wq.ctypes.data, self.ws.ctypes.data, K, N, self.norm,
                                self.w8.ctypes.data, self.w8_sum.ctypes.data)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        rows = _rows(x)
        y = np.empty((rows.shape[0], self.wq.shape[1]), dtype=np.float32)
        if kernels.LIB.linear_forward(ctypes.byref(self.c), rows.shape[0], rows.ctypes.data, y.ctypes.data):
            raise MemoryError("a linear layer is out of memory")
        return y.reshape(*x.shape[:-1], -1)


class KernelKV:
    """Keys and values of one layer for the C kernels: fixed-point integers in float32 [B, n_kv, length, dh]."""

    def __init__(self, batch: int, n_kv: int, length: int, dh: int):
        self.length = length
        self.k = np.zeros((batch, n_kv, length, dh), dtype=np.float32)
        self.v = np.zeros((batch, n_kv, length, dh), dtype=np.float32)


class KernelAttention:
    def __init__(self, qkv: np.ndarray, proj: np.ndarray, gain: np.ndarray, n_heads: int, n_kv: int):
        self.qkv, self.proj = KernelLinear(qkv, gain), KernelLinear(proj)
        self.n_heads, self.n_kv, self.dh = n_heads, n_kv, proj.shape[0] // n_heads
        self.att_table = np.array(ATT_TABLE, dtype=np.float64)
        self.score_to_index = ATT_STEPS / (self.dh ** 0.5 * KV_GRID)
        self.c = kernels.Attn(self.n_heads, self.n_kv, self.dh, self.att_table.ctypes.data, ATT_LEN,
                              self.score_to_index)

    def __call__(self, x: np.ndarray, cache: KernelKV, start: int) -> np.ndarray:
        B, T, d = x.shape
        qkv = np.ascontiguousarray(self.qkv(x))
        y = np.empty((B, T, d), dtype=np.float32)
        if kernels.LIB.attention_forward(ctypes.byref(self.c), B, T, start, qkv.ctypes.data, cache.k.ctypes.data,
                                         cache.v.ctypes.data, cache.length, y.ctypes.data):
            raise MemoryError("attention is out of memory")
        return self.proj(y)


class KernelBlock:
    def __init__(self, w: dict[str, np.ndarray], prefix: str, n_heads: int, n_kv: int):
        self.attn = KernelAttention(w[prefix + "attn.qkv.weight"], w[prefix + "attn.proj.weight"],
                                    w[prefix + "norm1.weight"], n_heads, n_kv)
        self.fc = KernelLinear(w[prefix + "mlp.fc.weight"], w[prefix + "norm2.weight"])
        self.out = KernelLinear(w[prefix + "mlp.out.weight"])
        self.c = kernels.Block(self.attn.qkv.c, self.attn.proj.c, self.fc.c, self.out.c)

    def __call__(self, x: np.ndarray, cache: KernelKV, start: int) -> np.ndarray:
        x = x + self.attn(x, cache, start)
        rows = _rows(x)
        y = np.empty_like(rows)
        if kernels.LIB.mlp_forward(ctypes.byref(self.c), rows.shape[0], rows.ctypes.data, y.ctypes.data):
            raise MemoryError("an MLP is out of memory")
        return x + y.reshape(x.shape)


# -- torch: the same model where the kernels do not run (GPU, not built, BYTEZIP_KERNELS=0) ---------------
def ieee_sqrt(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root (numpy's, the hardware instruction, on the CPU; CUDA's sqrt is)."""
    return torch.from_numpy(np.sqrt(x.numpy())) if x.device.type == "cpu" else torch.sqrt(x)


def quantize_rows(x: torch.Tensor, one: float):
    """x [..., K] -> (integers in [-one, one] as x.dtype, row scale [..., 1]); x ~= ints * scale."""
    amax = x.abs().amax(-1, keepdim=True).clamp_min(2.0 ** -60)
    ints = torch.round(x * (one * torch.reciprocal(amax))).clamp_(-one, one)
    return ints, amax * (1.0 / one)


class ExactLinear:
    """int8 x int8 linear layer with exact float32 accumulation (K <= 1040).

    With `norm_gain`, an RMS norm is folded in: W @ (g * x / rms(x)) = (W diag g) @ x / rms(x), and rms(x)
    comes from the same int8 row (sum of squares <= 127^2 K < 2^24, exact in float32)."""

    def __init__(self, weight: torch.Tensor, norm_gain: torch.Tensor | None = None, device="cpu"):
        assert weight.shape[1] <= 1040, "int8 dot products stay exact in float32 only up to K = 1040"
        weight = weight.detach().float()
        if norm_gain is not None:
            weight = weight * norm_gain.detach().float()
        self.norm = norm_gain is not None
        wq, ws = quantize_rows(weight, 127.0)
        self.wq = wq.t().contiguous().to(device)                       # [in, out]
        self.ws = ws.reshape(-1).contiguous().to(device)               # [out]
        self.c = None                                                   # (the kernels' path is KernelLinear)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        q, s = quantize_rows(x, 127.0)
        if self.norm:
            ss = (q * q).sum(-1, keepdim=True) * (1.0 / x.shape[-1])
            s = s * torch.reciprocal(ieee_sqrt(ss * (s * s) + 1e-6))
        return (q @ self.wq) * s * self.ws


def rms_norm(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """RMS norm whose sum of squares is a sum of integers (exact in float64 for K <= 2^12)."""
    ints, scale = quantize_rows(x.double(), 2.0 ** NORM_BITS)
    ss = (ints * ints).sum(-1, keepdim=True)
    rms = scale * ieee_sqrt(ss * (1.0 / x.shape[-1]))
    inv = torch.reciprocal(ieee_sqrt(rms * rms + 1e-6))
    return x * inv.float() * gain


class KVCache:
    """Preallocated keys and values of one layer, as fixed-point integers [B, n_kv, length, dh] in float64."""

    def __init__(self, batch: int, n_kv: int, length: int, dh: int, device):
        self.length = length
        self.k = torch.zeros(batch, n_kv, length, dh, dtype=torch.float64, device=device)
        self.v = torch.zeros(batch, n_kv, length, dh, dtype=torch.float64, device=device)

    def put(self, start: int, k: torch.Tensor, v: torch.Tensor):  # k, v [B, n_kv, T, dh] float32
        end = start + k.shape[2]
        self.k[:, :, start:end] = to_fixed_point(k)
        self.v[:, :, start:end] = to_fixed_point(v)


def to_fixed_point(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.double() * KV_GRID).clamp_(-KV_MAX, KV_MAX)


class ExactAttention:
    def __init__(self, qkv: torch.Tensor, proj: torch.Tensor, gain: torch.Tensor, n_heads: int, n_kv: int, device):
        self.qkv = ExactLinear(qkv, gain, device)
        self.proj = ExactLinear(proj, device=device)
        self.n_heads, self.n_kv, self.dh = n_heads, n_kv, proj.shape[0] // n_heads
        self.att_table = torch.tensor(ATT_TABLE, dtype=torch.float64, device=device)
        self.score_to_index = ATT_STEPS / (self.dh ** 0.5 * KV_GRID)
        self.c = None

    def __call__(self, x: torch.Tensor, cache: KVCache, start: int) -> torch.Tensor:
        """x [B, T, d] at positions start..start+T-1; attends to cached positions < start and causally within."""
        B, T, d = x.shape
        qkv = self.qkv(x)
        H, Hk, dh = self.n_heads, self.n_kv, self.dh
        q, k, v = qkv.split([H * dh, Hk * dh, Hk * dh], -1)
        cache.put(start, k.view(B, T, Hk, dh).transpose(1, 2), v.view(B, T, Hk, dh).transpose(1, 2))
        q = q.view(B, T, Hk, H // Hk, dh).permute(0, 2, 3, 1, 4)                     # [B, Hk, rep, T, dh]
        qi, qs = quantize_rows(q.double(), Q_ONE)
        to_index = qs * self.score_to_index                                          # [B, Hk, rep, T, 1]
        rep = H // Hk
        out = torch.empty(B, Hk, rep, T, dh, dtype=torch.float64, device=x.device)
        for a in range(0, T, QUERY_BLOCK):
            b = min(T, a + QUERY_BLOCK)
            n, n_keys = b - a, start + b
            keys, vals = cache.k[:, :, :n_keys], cache.v[:, :, :n_keys]                 # [B, Hk, n_keys, dh]
            # the query heads sharing a key head become rows of one matmul (no broadcast copies of the cache)
            dots = (qi[..., a:b, :].reshape(B, Hk, rep * n, dh) @ keys.transpose(-1, -2)).view(
                B, Hk, rep, n, n_keys)                                                # exact integers
            if n > 1:  # causal mask on the block's own keys: query start+i sees keys <= start+i
                own = dots[..., start + a:]
                own.masked_fill_(torch.ones(n, n, dtype=torch.bool, device=x.device).triu_(1), float("-inf"))
            below_max = torch.sub(dots.amax(-1, keepdim=True), dots, out=dots).mul_(to_index[..., a:b, :])
            weights = self.att_table[below_max.clamp_(max=ATT_LEN).long()]         # integers <= 2^15
            num = (weights.view(B, Hk, rep * n, n_keys) @ vals).view(B, Hk, rep, n, dh)  # exact in float64
            out[..., a:b, :] = num * (torch.reciprocal(weights.sum(-1, keepdim=True)) * (1.0 / KV_GRID))
        y = out.float().permute(0, 3, 1, 2, 4).reshape(B, T, d)
        return self.proj(y)


class ExactBlock:
    def __init__(self, w: dict[str, torch.Tensor], prefix: str, n_heads: int, n_kv: int, device):
        self.attn = ExactAttention(w[prefix + "attn.qkv.weight"], w[prefix + "attn.proj.weight"],
                                   w[prefix + "norm1.weight"], n_heads, n_kv, device)
        self.fc = ExactLinear(w[prefix + "mlp.fc.weight"], w[prefix + "norm2.weight"], device)
        self.out = ExactLinear(w[prefix + "mlp.out.weight"], device=device)
        self.c = None

    def __call__(self, x, cache: KVCache, start: int):
        x = x + self.attn(x, cache, start)
        return x + self.out(torch.relu(self.fc(x)).square())


def _stack(blocks: list[KernelBlock], d: int) -> kernels.Stack:
    return kernels.Stack(d, len(blocks), (kernels.Block * kernels.MAX_LAYERS)(*(b.c for b in blocks)),
                         blocks[0].attn.c)


def kernels_fit(cfg: ModelConfig, device="cpu") -> bool:
    """Whether the C kernels run this model on this device (then coding needs neither torch nor a Megabyte)."""
    return kernels.available() and device_type(device) == "cpu" and \
        max(cfg.n_global_layers, cfg.n_local_layers) <= kernels.MAX_LAYERS


class ExactMegabyte:
    """Integer-valued MEGABYTE: `frequencies` (parallel, encoding) and `Stepper` (incremental, decoding) agree
    exactly. Made from a `Megabyte`, or from its config and weights as numpy arrays (`from_weights`, what
    `weights.read_weights` gives): on the CPU with the C kernels built it runs them over numpy arrays and never
    imports torch; elsewhere the torch code. `frequencies` answers in the kind of array it is given (numpy or
    torch); the steppers' frequencies are torch tensors for a model made from a `Megabyte`, else numpy arrays."""

    def __init__(self, model, device="cpu", *, cfg: ModelConfig | None = None):
        if cfg is None:                                              # a Megabyte
            cfg, self.torch_io = model.cfg, True
        else:                                                        # numpy weights
            self.torch_io = False
        self.cfg = cfg
        self.P, self.dg, self.dl = cfg.patch_size, cfg.d_global, cfg.d_local
        self.g_kv = (cfg.n_kv_heads, cfg.d_global // cfg.n_global_heads)
        self.l_kv = (cfg.n_kv_heads, cfg.d_local // cfg.n_local_heads)
        self.kernel = kernels_fit(cfg, device)
        self._twin = None
        if self.kernel:
            self.device = Device("cpu")
            self._weights = model
            w = model if not self.torch_io else {
                k: v.detach().float().cpu().contiguous().numpy() for k, v in model.state_dict().items()}
            self._init_kernels(w)
        else:
            _import_torch()
            self.device = torch.device(str(device))
            w = model.state_dict() if self.torch_io else {k: torch.from_numpy(v) for k, v in model.items()}
            self._init_torch({k: v.detach().float() for k, v in w.items()})

    @classmethod
    def from_weights(cls, cfg: ModelConfig, weights: dict[str, np.ndarray], device="cpu") -> "ExactMegabyte":
        return cls(weights, device, cfg=cfg)

    def _init_kernels(self, w: dict[str, np.ndarray]):
        cfg, f = self.cfg, (lambda a: np.ascontiguousarray(a, dtype=np.float32))
        self.g_emb, self.g_start, self.g_pos = f(w["global_byte_emb.weight"]), f(w["global_start"]), f(w["global_pos"])
        self.g_blocks = [KernelBlock(w, f"global_blocks.{i}.", cfg.n_global_heads, cfg.n_kv_heads)
                         for i in range(cfg.n_global_layers)]
        self.g_norm = f(w["global_norm.weight"])
        self.g_to_l = KernelLinear(w["global_to_local.weight"])
        self.l_emb, self.l_pos = f(w["local_byte_emb.weight"]), f(w["local_pos"])
        self.l_blocks = [KernelBlock(w, f"local_blocks.{i}.", cfg.n_local_heads, cfg.n_kv_heads)
                         for i in range(cfg.n_local_layers)]
        self.head = KernelLinear(w["head.weight"], w["local_norm.weight"])
        self.out_table = np.array(OUT_TABLE, dtype=np.int64)
        # the incremental steps as the C kernels read them (the arrays stay owned here)
        self.local_kernel = kernels.LocalModel(
            _stack(self.l_blocks, self.dl), self.P, self.l_emb.ctypes.data, self.l_pos.ctypes.data, self.head.c,
            self.out_table.ctypes.data, OUT_LEN, float(OUT_STEPS))
        self.global_kernel = kernels.GlobalModel(
            _stack(self.g_blocks, self.dg), self.P, self.g_emb.ctypes.data, self.g_start.ctypes.data,
            self.g_pos.ctypes.data, self.g_norm.ctypes.data, self.g_to_l.c)

    def _init_torch(self, w: dict[str, torch.Tensor]):
        cfg, f = self.cfg, (lambda t: t.to(self.device))
        self.g_emb, self.g_start, self.g_pos = f(w["global_byte_emb.weight"]), f(w["global_start"]), f(w["global_pos"])
        self.g_blocks = [ExactBlock(w, f"global_blocks.{i}.", cfg.n_global_heads, cfg.n_kv_heads, self.device)
                         for i in range(cfg.n_global_layers)]
        self.g_norm = f(w["global_norm.weight"])
        self.g_to_l = ExactLinear(w["global_to_local.weight"], device=self.device)
        self.l_emb, self.l_pos = f(w["local_byte_emb.weight"]), f(w["local_pos"])
        self.l_blocks = [ExactBlock(w, f"local_blocks.{i}.", cfg.n_local_heads, cfg.n_kv_heads, self.device)
                         for i in range(cfg.n_local_layers)]
        self.head = ExactLinear(w["head.weight"], w["local_norm.weight"], self.device)
        self.out_table = torch.tensor(OUT_TABLE, dtype=torch.int64, device=self.device)
        self.local_kernel = self.global_kernel = None

    def _torch_twin(self) -> "ExactMegabyte":
        """The torch code over the same weights, for a kernels' model asked to run while the kernels are off
        (tests turn them off to compare paths)."""
        if self._twin is None:
            self._twin = ExactMegabyte(self._weights, "cpu", cfg=None if self.torch_io else self.cfg)
        return self._twin

    # -- pieces shared by both paths -------------------------------------------------------------
    def _global(self, prev_patches, caches, start: int):
        """prev_patches [B, T, P] bytes (the patch before each position) -> local conditioning [B, T, P, dl]."""
        B, T, P = prev_patches.shape
        h = self.g_emb[prev_patches].reshape(B, T, self.dg)
        if start == 0:
            h[:, 0] = self.g_start
        h = h + self.g_pos[start:start + T]
        for blk, cache in zip(self.g_blocks, caches):
            h = blk(h, cache, start)
        norm = rms_norm_np if self.kernel else rms_norm
        return self.g_to_l(norm(h, self.g_norm).reshape(B, T, P, self.dg // P))

    def _local_in(self, prev_bytes, pos, g):
        return self.l_emb[prev_bytes] + self.l_pos[pos] + g

    def _frequencies(self, z):
        """Final local states [..., dl] -> integer next-byte frequencies [..., 256] (int64, each >= 1)."""
        if self.kernel:
            rows = _rows(z)
            freqs = np.empty((rows.shape[0], 256), dtype=np.int64)
            if kernels.LIB.head_frequencies(ctypes.byref(self.local_kernel), rows.shape[0], rows.ctypes.data,
                                            freqs.ctypes.data):
                raise MemoryError("the output layer is out of memory")
            return freqs.reshape(*z.shape[:-1], 256)
        logits = self.head(z)
        idx = torch.round((logits.amax(-1, keepdim=True) - logits) * float(OUT_STEPS)).clamp_(max=OUT_LEN)
        return self.out_table[idx.long()]

    def _caches(self, batch: int, n_layers: int, length: int, kv):
        if self.kernel:
            return [KernelKV(batch, kv[0], length, kv[1]) for _ in range(n_layers)]
        return [KVCache(batch, kv[0], length, kv[1], self.device) for _ in range(n_layers)]

    def _off(self) -> bool:
        """A kernels' model while the kernels are off: its torch twin runs instead."""
        return self.kernel and not kernels.available()

    # -- parallel path ------------------------------------------------------------------------------
    def frequencies(self, x):
        """x [B, n] bytes (n a multiple of P; numpy or torch) -> frequencies [B, n, 256] (int64, the same kind of
        array) of each byte given those before it."""
        if self._off():
            return self._torch_twin().frequencies(x)
        given_numpy = isinstance(x, np.ndarray)
        B, n = x.shape
        P = self.P
        T = n // P
        assert T * P == n and T <= self.cfg.max_patches
        if self.kernel:
            x = np.asarray(x if given_numpy else x.cpu(), dtype=np.int64)
            patches = x.reshape(B, T, P)
            prev_patches = np.concatenate([np.zeros_like(patches[:, :1]), patches[:, :-1]], 1)
            g = self._global(prev_patches, self._caches(B, len(self.g_blocks), T, self.g_kv), 0)
            prev = np.concatenate([np.full_like(patches[..., :1], 256), patches[..., :-1]], -1)
            f = self._local_frequencies(self._local_in(prev, slice(0, P), g), B, T, n)
            return f if given_numpy else _import_torch().from_numpy(f)
        with torch.no_grad():
            x = (torch.from_numpy(x) if given_numpy else x).to(self.device).long()
            patches = x.reshape(B, T, P)
            prev_patches = torch.cat([torch.zeros_like(patches[:, :1]), patches[:, :-1]], 1)
            g = self._global(prev_patches, self._caches(B, len(self.g_blocks), T, self.g_kv), 0)
            prev = torch.cat([torch.full_like(patches[..., :1], 256), patches[..., :-1]], -1)
            f = self._local_frequencies(self._local_in(prev, slice(0, P), g), B, T, n)
        return f.cpu().numpy() if given_numpy else f

    def _local_frequencies(self, z, B: int, T: int, n: int):
        z = z.reshape(B * T, self.P, self.dl)
        caches = self._caches(B * T, len(self.l_blocks), self.P, self.l_kv)
        for blk, cache in zip(self.l_blocks, caches):
            z = blk(z, cache, 0)
        return self._frequencies(z).reshape(B, n, 256)

    def stepper(self, batch: int, max_patches: int | None = None) -> "Stepper":
        if self._off():
            return self._torch_twin().stepper(batch, max_patches)
        return Stepper(self, batch, max_patches or self.cfg.max_patches)


class Stepper:
    """Incremental decoding of `batch` lanes in lockstep: one global step per patch, one local step per byte."""

    def __init__(self, m: ExactMegabyte, batch: int, max_patches: int):
        self.m, self.B = m, batch
        self.g_caches = m._caches(batch, len(m.g_blocks), max_patches, m.g_kv)
        self.l_caches = m._caches(batch, len(m.l_blocks), m.P, m.l_kv)
        self.t = 0   # bytes seen so far (same for every lane)
        self.g = None  # the global model's conditioning of the current patch [B, P, dl]
        self.kernel = m.kernel                        # the C steps
        if self.kernel:
            self.patch = np.zeros((batch, m.P), dtype=np.int64)   # bytes of the current patch
            self.prev = np.zeros(batch, dtype=np.int64)             # the byte before this one (256: none)
            self.g = np.empty((batch, m.P, m.dl), dtype=np.float32)
            self._addresses = self.patch.ctypes.data, self.prev.ctypes.data, self.g.ctypes.data
            self._caches = {part: [(ctypes.c_void_p * len(caches))(*(getattr(c, n).ctypes.data for c in caches))
                                   for n in ("k", "v")] for part, caches in (("g", self.g_caches), ("l", self.l_caches))}
        else:
            self.patch = torch.zeros(batch, m.P, dtype=torch.int64, device=m.device)

    def next_frequencies(self):
        """Frequencies [B, 256] of the next byte of every lane, given the bytes pushed so far (a torch tensor
        for a model made from a `Megabyte`, else a numpy array)."""
        m = self.m
        if self.kernel:
            freqs = self._kernel_step()
            return _import_torch().from_numpy(freqs) if m.torch_io else freqs
        with torch.no_grad():
            freqs = self._torch_step()
        return freqs if m.torch_io else freqs.cpu().numpy()

    def _kernel_step(self) -> np.ndarray:            # one C call per patch and one per byte, GIL released
        m, P = self.m, self.m.P
        k, p = divmod(self.t, P)
        patch, prev, g = self._addresses
        lib, (gk, gv), (lk, lv) = kernels.LIB, self._caches["g"], self._caches["l"]
        if p == 0:
            self.prev.fill(256)
            if lib.global_step(ctypes.byref(m.global_kernel), self.B, k, patch, gk, gv, self.g_caches[0].length, g):
                raise MemoryError("the global model's step is out of memory")
        else:
            self.prev[:] = self.patch[:, p - 1]
        freqs = np.empty((self.B, 256), dtype=np.int64)
        if lib.local_step(ctypes.byref(m.local_kernel), self.B, p, prev, g, lk, lv, freqs.ctypes.data):
            raise MemoryError("the local model's step is out of memory")
        return freqs

    def kernel_steps(self) -> dict | None:
        """The fields of a `kernels.Decoding` that let the C decoding loop (csrc/steps.c) take this stepper's
        steps, or None where they run in torch. Set `t` after."""
        if not self.kernel or self.m.torch_io:
            return None
        (gk, gv), (lk, lv) = self._caches["g"], self._caches["l"]
        patch, prev, g = self._addresses
        return dict(B=self.B, P=self.m.P, t=self.t, global_=ctypes.addressof(self.m.global_kernel),
                    local=ctypes.addressof(self.m.local_kernel), patch=patch, prev=prev, g=g,
                    gk=ctypes.addressof(gk), gv=ctypes.addressof(gv), lk=ctypes.addressof(lk),
                    lv=ctypes.addressof(lv), g_length=self.g_caches[0].length)

    def _torch_step(self) -> torch.Tensor:
        m, P = self.m, self.m.P
        k, p = divmod(self.t, P)
        prev = self.patch[:, p - 1].contiguous() if p else torch.full((self.B,), 256, dtype=torch.int64,
                                                                      device=m.device)
        if p == 0:
            self.g = m._global(self.patch[:, None, :], self.g_caches, k)[:, 0]      # [B, P, dl]
        z = m._local_in(prev, p, self.g[:, p])[:, None, :]                          # [B, 1, dl]
        for blk, cache in zip(m.l_blocks, self.l_caches):
            z = blk(z, cache, p)
        return m._frequencies(z[:, 0])

    def push(self, byte):
        """Record the byte [B] (numpy or torch) each lane just coded."""
        if self.kernel:
            self.patch[:, self.t % self.m.P] = byte if isinstance(byte, np.ndarray) else byte.cpu().numpy()
        else:
            self.patch[:, self.t % self.m.P] = torch.as_tensor(byte).to(self.m.device)
        self.t += 1
