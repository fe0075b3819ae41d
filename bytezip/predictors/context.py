"""Context models, the numpy twin of csrc/context.c: byte counts per context of order k (the previous byte for
order 1, a hash of the last k bytes above), over the lane's own chunk and over the shared history, each order
blended with the one below it as PPM does (the neural distribution below the first order), with an escape
weight from the number of distinct bytes seen in the context."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .base import ONE

OWN_HASH_BITS = 10            # hashed contexts per lane and order, over the chunk
SHARED_HASH_BITS = 16         # hashed contexts per order, over the history (uint16 counts: 32 MB a table)
ESCAPE = 1                    # a context's weight on the order below: ESCAPE x distinct bytes seen, vs its count
MUL, MASK = 0x2F0B3, 0xFFFFFF  # the rolling hash of contexts (and of the match models' keys)


def context_rows(prev: Callable[[int], np.ndarray], orders: tuple[int, ...], bits: int) -> list[np.ndarray]:
    """Each context model's row for the next byte: the previous byte (order 1), or a hash of the last k; prev(j)
    gives the j-th previous byte (1 = the last one) for every lane or position."""
    out, h = [], 0
    for j in range(1, max(orders) + 1):
        p = prev(j)
        h = (h * MUL + p + 1) & MASK
        if j in orders:
            out.append(p if j == 1 else (h ^ (h >> bits)) & ((1 << bits) - 1))
    return out


def ppm_blend(base: np.ndarray, counts: list[np.ndarray], priors: list[np.ndarray] | None = None
              ) -> list[np.ndarray]:
    """Distributions [L, 256] of context models of rising order from their byte counts [L, 256]: each is its
    counts plus ESCAPE x (distinct bytes seen) times the one below (`base` below the first), normalised;
    an unseen context gives the one below unchanged. With `priors`, order k falls back on priors[k] instead."""
    out, p = [], base
    for k, c in enumerate(counts):
        below = priors[k] if priors else p
        c = c.astype(np.int64)
        escape = ESCAPE * np.maximum((c > 0).sum(-1, keepdims=True), 1)
        p = (c * ONE + escape * below) // (c.sum(-1, keepdims=True) + escape)
        out.append(p)
    return out
