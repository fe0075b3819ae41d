"""A model on disk without torch: its config (`ModelConfig`), the names and shapes of its weights, and the
weights as numpy arrays (`read_model`), with the canonical bytes whose digest archives record.

Why a module of its own: coding on the CPU with the C kernels needs only numpy arrays of the weights, so
loading them must not import torch (2 s and 400 MB for a one-byte file); training and the torch code paths
(`bytezip.model`) build a `Megabyte` from the same config and the same state dict names.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class ModelConfig:
    patch_size: int = 4        # P: bytes per patch (global step once per patch)
    max_patches: int = 1024    # global positions; chunk_size <= patch_size * max_patches
    d_global: int = 256        # global width = P byte embeddings of d_global // P, concatenated
    n_global_layers: int = 4   # global transformer depth
    n_global_heads: int = 4    # global query heads (head dim d_global // n_global_heads)
    d_local: int = 128         # local width
    n_local_layers: int = 2    # local transformer depth
    n_local_heads: int = 2     # local query heads
    n_kv_heads: int = 1        # key/value heads shared by query heads (1 = multi-query attention)
    mlp_ratio: int = 4         # MLP hidden width = mlp_ratio * width

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def check(self):
        """What `Megabyte` asserts of its config, as a ValueError."""
        if not (self.d_global % self.patch_size == 0 and self.d_global % self.n_global_heads == 0
                and self.d_local % self.n_local_heads == 0):
            raise ValueError(f"inconsistent model config {asdict(self)}")


def parameter_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The names and shapes of `Megabyte(cfg).state_dict()` (a test checks they agree)."""
    P, dg, dl = cfg.patch_size, cfg.d_global, cfg.d_local
    shapes: dict[str, tuple[int, ...]] = {"global_start": (dg,), "global_pos": (cfg.max_patches, dg),
                                          "local_pos": (P, dl), "global_byte_emb.weight": (256, dg // P)}

    def blocks(prefix: str, n: int, d: int, heads: int):
        dh = d // heads
        for i in range(n):
            b = f"{prefix}.{i}."
            shapes.update({b + "norm1.weight": (d,), b + "attn.qkv.weight": ((heads + 2 * cfg.n_kv_heads) * dh, d),
                           b + "attn.proj.weight": (d, d), b + "norm2.weight": (d,),
                           b + "mlp.fc.weight": (cfg.mlp_ratio * d, d), b + "mlp.out.weight": (d, cfg.mlp_ratio * d)})
    blocks("global_blocks", cfg.n_global_layers, dg, cfg.n_global_heads)
    shapes.update({"global_norm.weight": (dg,), "global_to_local.weight": (dl, dg // P),
                   "local_byte_emb.weight": (257, dl)})
    blocks("local_blocks", cfg.n_local_layers, dl, cfg.n_local_heads)
    shapes.update({"local_norm.weight": (dl,), "head.weight": (256, dl)})
    return shapes


def read_config(path_prefix: str | os.PathLike) -> tuple[ModelConfig, dict]:
    """`<prefix>.json`: the config and the whole metadata."""
    with open(str(path_prefix) + ".json") as f:
        meta = json.load(f)
    return ModelConfig.from_dict(meta["config"]), meta


def read_weights(path_prefix: str | os.PathLike, cfg: ModelConfig) -> dict[str, np.ndarray] | None:
    """`<prefix>.safetensors` as float32 numpy arrays, checked against the config as `load_state_dict` checks
    them (a ValueError naming what differs); None when a tensor is not float32 (bfloat16 has no numpy type:
    the torch code loads such files)."""
    from safetensors import safe_open
    cfg.check()
    with safe_open(str(path_prefix) + ".safetensors", framework="numpy") as f:
        names = set(f.keys())
        want = parameter_shapes(cfg)
        if names != set(want):
            missing, unexpected = sorted(set(want) - names), sorted(names - set(want))
            raise ValueError(f"weights do not match the config (missing: {missing}, unexpected: {unexpected})")
        try:
            weights = {k: f.get_tensor(k) for k in sorted(names)}
        except (TypeError, ValueError):    # a dtype numpy does not have
            return None
    for k, v in weights.items():
        if v.dtype != np.float32:
            return None
        if v.shape != want[k]:
            raise ValueError(f"weight {k} has shape {tuple(v.shape)}, the config asks for {want[k]}")
    return weights


def canonical_bytes(weights: dict[str, np.ndarray]) -> bytes:
    """The float32 weights as safetensors bytes: the same bytes as `model.canonical_weights` of the model they
    load into (a test checks it), what archives' model digests hash."""
    from safetensors.numpy import save
    return save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()})
