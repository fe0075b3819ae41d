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
incremental steps) run the same operations in the same order, with no torch call per operator.
"""
from __future__ import annotations

from decimal import Decimal, getcontext

import ctypes

import numpy as np
import torch

from . import kernels
from .model import Attention, Block, Megabyte

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
        self.c = None
        if kernels.available() and self.wq.is_cpu:                      # what the C kernels read
            K, N = self.wq.shape
            w8 = torch.zeros(-(-K // 4) * 4, N, dtype=torch.int8)       # K padded to a multiple of 4
            w8[:K] = self.wq.to(torch.int8)
            self.w8 = w8.view(-1, 4, N).transpose(1, 2).contiguous()     # [K / 4, N, 4] for the VNNI kernel
            self.w8_sum = (self.wq.sum(0) * 128).to(torch.int32)           # [N]
            self.c = kernels.Linear(self.wq.data_ptr(), self.ws.data_ptr(), K, N, self.norm,
                                    self.w8.data_ptr(), self.w8_sum.data_ptr())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.c is not None and kernels.available():          # the same arithmetic, fused, in C
            rows = x.reshape(-1, x.shape[-1]).contiguous()
            y = torch.empty(rows.shape[0], self.wq.shape[1])
            if kernels.LIB.linear_forward(ctypes.byref(self.c), rows.shape[0], rows.data_ptr(), y.data_ptr()):
                raise MemoryError("a linear layer is out of memory")
            return y.view(*x.shape[:-1], -1)
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
    """Preallocated keys and values of one layer, as fixed-point integers [B, n_kv, length, dh]: float64 for the
    torch code, float32 (which holds them exactly, in half the memory) for the C kernels (`kernel`)."""

    def __init__(self, batch: int, n_kv: int, length: int, dh: int, device, kernel: bool = False):
        self.kernel, self.length = kernel, length
        dtype = torch.float32 if kernel else torch.float64
        self.k = torch.zeros(batch, n_kv, length, dh, dtype=dtype, device=device)
        self.v = torch.zeros(batch, n_kv, length, dh, dtype=dtype, device=device)

    def put(self, start: int, k: torch.Tensor, v: torch.Tensor):  # k, v [B, n_kv, T, dh] float32
        end = start + k.shape[2]
        self.k[:, :, start:end] = to_fixed_point(k)
        self.v[:, :, start:end] = to_fixed_point(v)


def to_fixed_point(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.double() * KV_GRID).clamp_(-KV_MAX, KV_MAX)


class ExactAttention:
    def __init__(self, attn: Attention, gain: torch.Tensor, device):
        self.qkv = ExactLinear(attn.qkv.weight, gain, device)
        self.proj = ExactLinear(attn.proj.weight, device=device)
        self.n_heads, self.n_kv, self.dh = attn.n_heads, attn.n_kv, attn.dh
        self.att_table = torch.tensor(ATT_TABLE, dtype=torch.float64, device=device)
        self.score_to_index = ATT_STEPS / (self.dh ** 0.5 * KV_GRID)
        self.c = (kernels.Attn(self.n_heads, self.n_kv, self.dh, self.att_table.data_ptr(), ATT_LEN,
                                    self.score_to_index) if kernels.available() and self.att_table.is_cpu else None)

    def __call__(self, x: torch.Tensor, cache: KVCache, start: int) -> torch.Tensor:
        """x [B, T, d] at positions start..start+T-1; attends to cached positions < start and causally within."""
        B, T, d = x.shape
        qkv = self.qkv(x)
        H, Hk, dh = self.n_heads, self.n_kv, self.dh
        if cache.kernel:                                          # the same arithmetic, fused, in C
            y, qkv = torch.empty(B, T, d), qkv.contiguous()      # held for the call, which has only addresses
            if kernels.LIB.attention_forward(ctypes.byref(self.c), B, T, start, qkv.data_ptr(),
                                             cache.k.data_ptr(), cache.v.data_ptr(), cache.length, y.data_ptr()):
                raise MemoryError("attention is out of memory")
            return self.proj(y)
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
    def __init__(self, blk: Block, device):
        self.attn = ExactAttention(blk.attn, blk.norm1.weight, device)
        self.fc = ExactLinear(blk.mlp.fc.weight, blk.norm2.weight, device)
        self.out = ExactLinear(blk.mlp.out.weight, device=device)
        self.c = kernels.Block(self.attn.qkv.c, self.attn.proj.c, self.fc.c, self.out.c) if self.fc.c else None

    def __call__(self, x, cache: KVCache, start: int):
        x = x + self.attn(x, cache, start)
        if self.c is not None and kernels.available():           # the MLP fused in C, by rows
            rows = x.reshape(-1, x.shape[-1]).contiguous()
            y = torch.empty_like(rows)
            if kernels.LIB.mlp_forward(ctypes.byref(self.c), rows.shape[0], rows.data_ptr(), y.data_ptr()):
                raise MemoryError("an MLP is out of memory")
            return x + y.view(x.shape)
        return x + self.out(torch.relu(self.fc(x)).square())


def _stack(blocks: list[ExactBlock], d: int) -> kernels.Stack:
    return kernels.Stack(d, len(blocks), (kernels.Block * kernels.MAX_LAYERS)(*(b.c for b in blocks)),
                         blocks[0].attn.c)


class ExactMegabyte:
    """Integer-valued MEGABYTE: `freqs` (parallel, encoding) and `Stepper` (incremental, decoding) agree exactly."""

    def __init__(self, model: Megabyte, device="cpu"):
        cfg = self.cfg = model.cfg
        self.device = torch.device(device)
        f = lambda t: t.detach().float().to(self.device)
        self.P, self.dg, self.dl = cfg.patch_size, cfg.d_global, cfg.d_local
        self.g_emb, self.g_start, self.g_pos = f(model.global_byte_emb.weight), f(model.global_start), f(model.global_pos)
        self.g_blocks = [ExactBlock(b, self.device) for b in model.global_blocks]
        self.g_norm = f(model.global_norm.weight)
        self.g_to_l = ExactLinear(model.global_to_local.weight, device=self.device)
        self.l_emb, self.l_pos = f(model.local_byte_emb.weight), f(model.local_pos)
        self.l_blocks = [ExactBlock(b, self.device) for b in model.local_blocks]
        self.head = ExactLinear(model.head.weight, model.local_norm.weight, self.device)
        self.out_table = torch.tensor(OUT_TABLE, dtype=torch.int64, device=self.device)
        self.g_kv = (cfg.n_kv_heads, cfg.d_global // cfg.n_global_heads)
        self.l_kv = (cfg.n_kv_heads, cfg.d_local // cfg.n_local_heads)
        # the incremental steps as the C kernels read them (the tensors stay owned here), where they run
        fits = kernels.available() and self.device.type == "cpu" and \
            max(len(self.g_blocks), len(self.l_blocks)) <= kernels.MAX_LAYERS
        self.local_kernel = kernels.LocalModel(
            _stack(self.l_blocks, self.dl), self.P, self.l_emb.data_ptr(), self.l_pos.data_ptr(), self.head.c,
            self.out_table.data_ptr(), OUT_LEN, float(OUT_STEPS)) if fits else None
        self.global_kernel = kernels.GlobalModel(
            _stack(self.g_blocks, self.dg), self.P, self.g_emb.data_ptr(), self.g_start.data_ptr(),
            self.g_pos.data_ptr(), self.g_norm.data_ptr(), self.g_to_l.c) if fits else None

    # -- pieces shared by both paths -------------------------------------------------------------
    def _global(self, prev_patches: torch.Tensor, caches, start: int) -> torch.Tensor:
        """prev_patches [B, T, P] bytes (the patch before each position) -> local conditioning [B, T, P, dl]."""
        B, T, P = prev_patches.shape
        h = self.g_emb[prev_patches].reshape(B, T, self.dg)
        if start == 0:
            h[:, 0] = self.g_start
        h = h + self.g_pos[start:start + T]
        for blk, cache in zip(self.g_blocks, caches):
            h = blk(h, cache, start)
        return self.g_to_l(rms_norm(h, self.g_norm).reshape(B, T, P, self.dg // P))

    def _local_in(self, prev_bytes: torch.Tensor, pos: slice, g: torch.Tensor) -> torch.Tensor:
        return self.l_emb[prev_bytes] + self.l_pos[pos] + g

    def _frequencies(self, z: torch.Tensor) -> torch.Tensor:
        """Final local states [..., dl] -> integer next-byte frequencies [..., 256] (int64, each >= 1)."""
        if self.local_kernel is not None and kernels.available():
            rows = z.reshape(-1, self.dl).contiguous()
            freqs = torch.empty(rows.shape[0], 256, dtype=torch.int64)
            if kernels.LIB.head_frequencies(ctypes.byref(self.local_kernel), rows.shape[0], rows.data_ptr(),
                                            freqs.data_ptr()):
                raise MemoryError("the output layer is out of memory")
            return freqs.view(*z.shape[:-1], 256)
        logits = self.head(z)
        idx = torch.round((logits.amax(-1, keepdim=True) - logits) * float(OUT_STEPS)).clamp_(max=OUT_LEN)
        return self.out_table[idx.long()]

    def _caches(self, batch: int, n_layers: int, length: int, kv):
        kernel = self.g_blocks[0].attn.c is not None and kernels.available()     # then attention runs in C
        return [KVCache(batch, kv[0], length, kv[1], self.device, kernel) for _ in range(n_layers)]

    # -- parallel path ------------------------------------------------------------------------------
    @torch.no_grad()
    def frequencies(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, n] bytes (n a multiple of P) -> frequencies [B, n, 256] of each byte given those before it."""
        x = x.to(self.device)
        B, n = x.shape
        P = self.P
        T = n // P
        assert T * P == n and T <= self.cfg.max_patches
        patches = x.reshape(B, T, P)
        prev_patches = torch.cat([torch.zeros_like(patches[:, :1]), patches[:, :-1]], 1)
        g = self._global(prev_patches, self._caches(B, len(self.g_blocks), T, self.g_kv), 0)
        prev = torch.cat([torch.full_like(patches[..., :1], 256), patches[..., :-1]], -1)
        z = self._local_in(prev, slice(0, P), g).reshape(B * T, P, self.dl)
        caches = self._caches(B * T, len(self.l_blocks), P, self.l_kv)
        for blk, cache in zip(self.l_blocks, caches):
            z = blk(z, cache, 0)
        return self._frequencies(z).reshape(B, n, 256)

    def stepper(self, batch: int, max_patches: int | None = None) -> "Stepper":
        return Stepper(self, batch, max_patches or self.cfg.max_patches)


class Stepper:
    """Incremental decoding of `batch` lanes in lockstep: one global step per patch, one local step per byte."""

    def __init__(self, m: ExactMegabyte, batch: int, max_patches: int):
        self.m, self.B = m, batch
        self.g_caches = m._caches(batch, len(m.g_blocks), max_patches, m.g_kv)
        self.l_caches = m._caches(batch, len(m.l_blocks), m.P, m.l_kv)
        self.patch = torch.zeros(batch, m.P, dtype=torch.int64, device=m.device)  # bytes of the current patch
        self.t = 0   # bytes seen so far (same for every lane)
        self.g = None
        self.kernel = m.local_kernel is not None and kernels.available()    # the C steps, if built
        if self.kernel:
            self._caches = {part: [(ctypes.c_void_p * len(caches))(*(getattr(c, n).data_ptr() for c in caches))
                                   for n in ("k", "v")] for part, caches in (("g", self.g_caches), ("l", self.l_caches))}

    @torch.no_grad()
    def next_frequencies(self) -> torch.Tensor:
        """Frequencies [B, 256] of the next byte of every lane, given the bytes pushed so far."""
        m, P = self.m, self.m.P
        k, p = divmod(self.t, P)
        prev = self.patch[:, p - 1].contiguous() if p else torch.full((self.B,), 256, dtype=torch.int64,
                                                                      device=m.device)
        if self.kernel:                               # one C call per patch and one per byte, GIL released
            lib, (gk, gv), (lk, lv) = kernels.LIB, self._caches["g"], self._caches["l"]
            if p == 0:
                self.g = torch.empty(self.B, P, m.dl)
                if lib.global_step(ctypes.byref(m.global_kernel), self.B, k, self.patch.data_ptr(), gk, gv,
                                   self.g_caches[0].length, self.g.data_ptr()):
                    raise MemoryError("the global model's step is out of memory")
            freqs = torch.empty(self.B, 256, dtype=torch.int64)
            if lib.local_step(ctypes.byref(m.local_kernel), self.B, p, prev.data_ptr(), self.g.data_ptr(), lk, lv,
                              freqs.data_ptr()):
                raise MemoryError("the local model's step is out of memory")
            return freqs
        if p == 0:
            self.g = m._global(self.patch[:, None, :], self.g_caches, k)[:, 0]      # [B, P, dl]
        z = m._local_in(prev, p, self.g[:, p])[:, None, :]                          # [B, 1, dl]
        for blk, cache in zip(m.l_blocks, self.l_caches):
            z = blk(z, cache, p)
        return m._frequencies(z[:, 0])

    def push(self, byte: torch.Tensor):
        """Record the byte [B] each lane just coded."""
        self.patch[:, self.t % self.m.P] = byte.to(self.m.device)
        self.t += 1
