"""Match models, the numpy twin of csrc/match.c: where the bytes before this one occurred before, in the lane's
own chunk (match 0), the shared history (match 1) or the priming dictionary (match 2), the byte that followed
there is predicted, with the hit rate learnt per match-length bucket."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .base import ONE
from .context import MASK, MUL

MATCH_MIN = 4                 # bytes of context hashed to find a match inside the chunk
MATCH_HASH_BITS = 12          # chunk match table entries per lane
HISTORY_MATCH_MIN = 5         # bytes of context hashed to find a match in the history or the dictionary
HISTORY_MATCH_BITS = 20       # their match table entries
HIT_HALVE = 1000              # a bucket's hit and try counts halve beyond this many tries


def hash_last(prev: Callable[[int], np.ndarray], n: int, bits: int) -> np.ndarray:
    """Hash of the last n bytes into `bits` bits; prev(j) gives the j-th previous byte (1 = the last one) for
    every lane or position. One function for lanes and for the history, so both index the same entries."""
    h = 0
    for j in range(1, n + 1):
        h = (h * MUL + prev(j)) & MASK
    return (h ^ (h >> bits)) & ((1 << bits) - 1)


def bucket_of(longest: np.ndarray) -> np.ndarray:
    """The match-length bucket [L] of the longest current match (-1: none), which picks weight sets."""
    return np.where(longest < 0, 0, np.where(longest < 4, 1, np.where(longest < 16, 2, 3)))


def match_distribution(has: np.ndarray, hits: np.ndarray, tries: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """[L, 256]: the predicted byte [L] at the hit rate hits / tries [L] of the lane's bucket, the rest spread
    evenly; flat where a lane has no match (has [L] False)."""
    L = np.arange(len(has))
    hit = np.clip(hits * ONE // tries, ONE >> 9, ONE - (ONE >> 9))
    p = np.broadcast_to(((ONE - hit) // 255)[:, None], (len(L), 256)).copy()
    p[L, predicted] = hit
    p[~has] = ONE >> 8
    return p
