"""The MEGABYTE byte predictor (arXiv 2305.07185), in one file.

A patch embedder concatenates the byte embeddings of each patch of P bytes; a global transformer runs over
patches (shifted by one patch, so patch k sees patches < k); a local transformer runs over the P bytes of a
patch, conditioned on the global output for that patch. `Megabyte.forward` is the plain float model used for
training. Linear layers can train with fake int8 quantisation (`quantize=True`) so that the exact integer
model in `bytezip.exact` loses almost nothing against it.
"""
from __future__ import annotations

import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .weights import ModelConfig  # noqa: F401  (defined here before; configs are read without torch)


def fake_quant_rows(x: torch.Tensor) -> torch.Tensor:
    """Round each row to 255 levels of its own absmax (straight-through gradient): what the exact path does."""
    s = x.detach().abs().amax(-1, keepdim=True).clamp_min(1e-8) / 127
    return x + (torch.round(x / s) * s - x).detach()


class QLinear(nn.Linear):
    """Bias-free linear layer; with `quantize`, weights per output row and inputs per row go through int8."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__(d_in, d_out, bias=False)
        self.quantize = False

    def forward(self, x):
        if not self.quantize:
            return F.linear(x, self.weight)
        return F.linear(fake_quant_rows(x), fake_quant_rows(self.weight))


class RMSNorm(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Attention(nn.Module):
    """Causal multi-query attention: n_heads query heads share n_kv_heads key/value heads (small KV cache)."""

    def __init__(self, d: int, n_heads: int, n_kv_heads: int):
        super().__init__()
        self.n_heads, self.n_kv, self.dh = n_heads, n_kv_heads, d // n_heads
        self.qkv = QLinear(d, (n_heads + 2 * n_kv_heads) * self.dh)
        self.proj = QLinear(d, d)

    def split(self, qkv):  # [B, T, (H + 2Hkv) dh] -> q [B, H, T, dh], k, v [B, Hkv, T, dh]
        B, T, _ = qkv.shape
        q, k, v = qkv.split([self.n_heads * self.dh, self.n_kv * self.dh, self.n_kv * self.dh], -1)
        return (q.view(B, T, self.n_heads, self.dh).transpose(1, 2),
                k.view(B, T, self.n_kv, self.dh).transpose(1, 2),
                v.view(B, T, self.n_kv, self.dh).transpose(1, 2))

    def forward(self, x):  # x: [B, T, d]
        q, k, v = self.split(self.qkv(x))
        rep = self.n_heads // self.n_kv
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, dh]
        return self.proj(y.transpose(1, 2).reshape(x.shape))


class MLP(nn.Module):
    """Squared-ReLU MLP: the nonlinearity is exact in floating point, so no lookup table is needed."""

    def __init__(self, d: int, ratio: int):
        super().__init__()
        self.fc = QLinear(d, ratio * d)
        self.out = QLinear(ratio * d, d)

    def forward(self, x):
        return self.out(F.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, d: int, n_heads: int, n_kv_heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1, self.attn = RMSNorm(d), Attention(d, n_heads, n_kv_heads)
        self.norm2, self.mlp = RMSNorm(d), MLP(d, mlp_ratio)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Megabyte(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        assert cfg.d_global % cfg.patch_size == 0 and cfg.d_global % cfg.n_global_heads == 0
        assert cfg.d_local % cfg.n_local_heads == 0
        self.cfg = cfg
        P, dg, dl = cfg.patch_size, cfg.d_global, cfg.d_local
        self.global_byte_emb = nn.Embedding(256, dg // P)       # patch embedder: P of these concatenated
        self.global_start = nn.Parameter(torch.zeros(dg))         # stands in for the patch before the first
        self.global_pos = nn.Parameter(torch.zeros(cfg.max_patches, dg))
        self.global_blocks = nn.ModuleList(
            Block(dg, cfg.n_global_heads, cfg.n_kv_heads, cfg.mlp_ratio) for _ in range(cfg.n_global_layers))
        self.global_norm = RMSNorm(dg)
        self.global_to_local = QLinear(dg // P, dl)               # one slice of the patch output per byte
        self.local_byte_emb = nn.Embedding(257, dl)               # 256 = start of patch
        self.local_pos = nn.Parameter(torch.zeros(P, dl))
        self.local_blocks = nn.ModuleList(
            Block(dl, cfg.n_local_heads, cfg.n_kv_heads, cfg.mlp_ratio) for _ in range(cfg.n_local_layers))
        self.local_norm = RMSNorm(dl)
        self.head = QLinear(dl, 256)
        self.apply(self._init)
        for name, p in self.named_parameters():  # scaled init of residual outputs, as GPT-2 does
            if name.endswith(("proj.weight", "out.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * (cfg.n_global_layers + cfg.n_local_layers)))
        nn.init.normal_(self.global_pos, std=0.02)
        nn.init.normal_(self.local_pos, std=0.02)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def set_quantize(self, on: bool):
        for m in self.modules():
            if isinstance(m, QLinear):
                m.quantize = on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T*P] bytes (int64) -> logits [B, T*P, 256] for each byte given the bytes before it."""
        B, n = x.shape
        P, dg = self.cfg.patch_size, self.cfg.d_global
        T = n // P
        assert T * P == n and T <= self.cfg.max_patches
        patches = self.global_byte_emb(x).reshape(B, T, dg)                           # [B, T, dg]
        h = torch.cat([self.global_start.expand(B, 1, dg), patches[:, :-1]], 1)
        h = h + self.global_pos[:T]
        for blk in self.global_blocks:
            h = blk(h)
        g = self.global_to_local(self.global_norm(h).reshape(B, T, P, dg // P))      # [B, T, P, dl]
        prev = torch.cat([torch.full_like(x[:, :1], 256), x[:, :-1]], 1).reshape(B, T, P)
        prev[:, :, 0] = 256                                                          # patches start afresh
        z = (self.local_byte_emb(prev) + self.local_pos + g).reshape(B * T, P, -1)   # [B*T, P, dl]
        for blk in self.local_blocks:
            z = blk(z)
        return self.head(self.local_norm(z)).reshape(B, n, 256)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def canonical_weights(model: Megabyte) -> bytes:
    """The float32 weights as safetensors bytes: the shipped file, and what archives' model digests hash."""
    from safetensors.torch import save
    return save({k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()})


def numpy_weights(model: Megabyte) -> dict[str, "np.ndarray"]:
    """The model's state dict as float32 numpy arrays (what `weights.read_weights` gives for its file)."""
    return {k: v.detach().float().cpu().contiguous().numpy() for k, v in model.state_dict().items()}


def save_model(model: Megabyte, path_prefix: str, extra: dict | None = None) -> None:
    """Write `<prefix>.safetensors` and `<prefix>.json` (config + metadata): the model rebuilds from these alone."""
    with open(path_prefix + ".safetensors", "wb") as f:
        f.write(canonical_weights(model))
    meta = {"config": json.loads(model.cfg.to_json()), **(extra or {})}
    with open(path_prefix + ".json", "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)


def load_model(path_prefix: str) -> Megabyte:
    from safetensors.torch import load_file
    with open(path_prefix + ".json") as f:
        meta = json.load(f)
    model = Megabyte(ModelConfig.from_dict(meta["config"]))
    model.load_state_dict(load_file(path_prefix + ".safetensors"))
    return model.eval()
