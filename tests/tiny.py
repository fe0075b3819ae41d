"""The tiny model that the tests and the fuzz target share: its config, the text it learns from, its training."""
import inspect

import numpy as np
import torch

from bytezip.model import Megabyte, ModelConfig

TINY = ModelConfig(d_global=64, n_global_layers=1, n_global_heads=2, d_local=32, n_local_layers=1,
                   n_local_heads=2, max_patches=64)      # a context of 256 bytes


def english_text() -> bytes:
    """Some tens of KB of real prose and code from the standard library (no files outside the repo)."""
    import argparse, json as js, textwrap
    return "\n".join(inspect.getsource(m) for m in (argparse, js.decoder, textwrap)).encode()


def trained_tiny(steps: int) -> Megabyte:
    """The tiny model after `steps` AdamW steps on `english_text` from seed 0, in eval mode (~2 s for 120 steps:
    good enough that neural chunks beat zstd on text)."""
    torch.manual_seed(0)
    model = Megabyte(TINY)
    data = np.frombuffer(english_text(), dtype=np.uint8)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = np.random.default_rng(0)
    n = 64 * 4
    for _ in range(steps):
        starts = g.integers(0, len(data) - n - 1, 16)
        x = torch.from_numpy(np.stack([data[s:s + n] for s in starts]).astype(np.int64))
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, 256), x.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
