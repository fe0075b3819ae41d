"""Online mixing of the MEGABYTE distribution with adaptive match and context models (codec "mixed").

A small model with a 4 KB window misses what repeats inside a chunk as exactly as it repeats; paq and cmix
win such data by mixing predictors. Here three adaptive predictors see every byte already coded in the chunk:

- a match model: hash of the last MATCH_MIN bytes -> last position seen -> predicted next byte, with a hit
  rate learned per match-length bucket;
- order-1, and hashed order-2 and order-3 context models (byte counts);

and a mixer combines them with the neural distribution linearly, its weights (one set per match-length
bucket) learned online from each coded byte by a Bayesian-style multiplicative update.

Everything is int64 numpy arithmetic (integer division, shifts), vectorised across lanes, so the encoder and
the decoder compute identical frequencies on every platform. The encoder drives it byte by byte over a batch
of chunks; the decoder one step per byte for all lanes, right after the model step.
"""
from __future__ import annotations

import numpy as np

ONE = 1 << 16                 # every predictor's distribution sums to about ONE
MATCH_MIN = 4                 # bytes of context hashed to find a match
MATCH_HASH_BITS = 12          # match table entries per lane
CONTEXT_ORDERS = (1, 2, 3)    # context models: order 1 indexed directly, higher orders hashed
CTX_HASH_BITS = 10            # hashed contexts per lane and order
N_BUCKETS = 4                 # weight sets: no match, match length 0-7, 8-23, 24+
W_MIN = ONE >> 8              # every predictor keeps a little weight so it can come back
LR_SHIFT = 3                  # weight update rate 1/8 of the Bayesian step
N_MODELS = 2 + len(CONTEXT_ORDERS)   # neural, match, then the context models
COUNT_WEIGHT = 4096           # a context model's count vs its +1 prior: nearly deterministic once seen
INITIAL_WEIGHTS = (ONE - (N_MODELS - 1) * (ONE >> 5),) + (ONE >> 5,) * (N_MODELS - 1)


def _bucket(match_len: np.ndarray, has_match: np.ndarray) -> np.ndarray:
    b = np.where(match_len < 8, 1, np.where(match_len < 24, 2, 3))
    return np.where(has_match, b, 0)


class Mixer:
    """Mixing state of `lanes` chunks coded in lockstep (position t is the same for every lane)."""

    def __init__(self, lanes: int, length: int):
        L = lanes
        self.lanes = np.arange(L)
        self.hist = np.zeros((L, length + 1), dtype=np.int64)
        self.t = 0
        self.match_table = np.full((L, 1 << MATCH_HASH_BITS), -1, dtype=np.int64)
        self.match_ptr = np.full(L, -1, dtype=np.int64)        # position of the predicted byte, -1 = none
        self.match_len = np.zeros(L, dtype=np.int64)
        self.hits = np.ones((L, N_BUCKETS), dtype=np.int64)     # match model hit rate per bucket
        self.tries = np.full((L, N_BUCKETS), 2, dtype=np.int64)
        self.counts = [np.zeros((L, 256 if k == 1 else 1 << CTX_HASH_BITS, 256), dtype=np.int16)
                       for k in CONTEXT_ORDERS]                             # counts < 2^15: chunks <= 32 KB
        self.weights = np.tile(np.array(INITIAL_WEIGHTS, dtype=np.int64), (L, N_BUCKETS, 1))

    def _contexts(self) -> list[np.ndarray]:
        """Each context model's row for the next byte: the previous byte, or a hash of the last k."""
        out, h = [], np.zeros(len(self.lanes), dtype=np.int64)
        for j in range(1, max(CONTEXT_ORDERS) + 1):
            prev = self.hist[:, self.t - j] if self.t >= j else np.zeros(len(self.lanes), dtype=np.int64)
            h = (h * 0x2F0B3 + prev + 1) & 0xFFFFFF
            if j in CONTEXT_ORDERS:
                out.append(prev if j == 1 else (h ^ (h >> CTX_HASH_BITS)) & ((1 << CTX_HASH_BITS) - 1))
        return out

    def mix(self, neural: np.ndarray) -> np.ndarray:
        """Neural frequencies [L, 256] (int64) -> mixed frequencies [L, 256] (int64, each >= 1)."""
        L = len(self.lanes)
        p_nn = neural * ONE // neural.sum(-1, keepdims=True)
        has = self.match_ptr >= 0
        bucket = _bucket(self.match_len, has)
        predicted = self.hist[self.lanes, np.maximum(self.match_ptr, 0)]
        hit = self.hits[self.lanes, bucket] * ONE // self.tries[self.lanes, bucket]
        hit = np.clip(hit, ONE >> 9, ONE - (ONE >> 9))
        p_match = np.broadcast_to(((ONE - hit) // 255)[:, None], (L, 256)).copy()
        p_match[self.lanes, predicted] = hit
        p_match[~has] = ONE >> 8
        rows = self._contexts()
        inputs = (p_nn, p_match) + tuple(self._counts_to_p(table[self.lanes, row])
                                         for table, row in zip(self.counts, rows))
        w = self.weights[self.lanes, bucket]                                 # [L, N_MODELS]
        mixed = w[:, 0:1] * p_nn
        for i in range(1, N_MODELS):
            mixed += w[:, i:i + 1] * inputs[i]
        mixed >>= 16                                                         # [L, 256]
        # what update() learns from: the same predictions, not recomputed
        self._inputs, self._bucket, self._mixed = inputs, bucket, mixed
        self._has, self._predicted, self._rows = has, predicted, rows
        return mixed + 1

    @staticmethod
    def _counts_to_p(counts: np.ndarray) -> np.ndarray:
        c = counts.astype(np.int64) * COUNT_WEIGHT + 1
        return c * ONE // c.sum(-1, keepdims=True)

    def update(self, byte: np.ndarray):
        """Learn from the byte [L] each lane just coded (after `mix` for this position), then advance."""
        L, t = self.lanes, self.t
        byte = byte.astype(np.int64)
        # mixer: w_i += w_i (p_i(x) - p(x)) / p(x), damped; floor; renormalise to ONE
        p_x = np.stack([p[L, byte] for p in self._inputs], 1)                # [L, N_MODELS]
        m_x = np.maximum(self._mixed[L, byte], 1)[:, None]
        w = self.weights[L, self._bucket]
        w = w + ((w * (p_x - m_x) // m_x) >> LR_SHIFT)
        w = np.maximum(w, W_MIN)
        self.weights[L, self._bucket] = w * ONE // w.sum(-1, keepdims=True)
        # match model: score the prediction, follow or drop the match
        has = self._has
        good = has & (self._predicted == byte)
        self.tries[L, self._bucket] += has
        self.hits[L, self._bucket] += good
        halve = self.tries[L, self._bucket] > 1000
        self.tries[L[halve], self._bucket[halve]] >>= 1
        self.hits[L[halve], self._bucket[halve]] >>= 1
        self.match_len = np.where(good, self.match_len + 1, 0)
        self.match_ptr = np.where(good, self.match_ptr + 1, -1)
        # context models
        for table, row in zip(self.counts, self._rows):
            table[L, row, byte] += 1
        self.hist[:, t] = byte
        self.t = t + 1
        # index the context that ends here; pick up a match if we have none
        if self.t >= MATCH_MIN:
            h = np.zeros(len(L), dtype=np.int64)
            for k in range(MATCH_MIN):
                h = (h * 0x2F0B3 + self.hist[:, self.t - 1 - k]) & 0xFFFFFF
            h = (h ^ (h >> MATCH_HASH_BITS)) & ((1 << MATCH_HASH_BITS) - 1)
            found = self.match_table[L, h]
            pick = (self.match_ptr < 0) & (found >= 0)
            self.match_ptr = np.where(pick, found, self.match_ptr)
            self.match_table[L, h] = self.t


def mixed_frequencies(neural: list[np.ndarray], chunks: list[bytes]) -> list[np.ndarray]:
    """Encoder side: run the mixer over a batch of chunks (as lanes) and return each chunk's mixed frequencies."""
    longest = max(map(len, chunks))
    data = np.zeros((len(chunks), longest), dtype=np.int64)
    nn = np.ones((len(chunks), longest, 256), dtype=np.int64)
    for i, (c, f) in enumerate(zip(chunks, neural)):
        data[i, :len(c)] = np.frombuffer(c, dtype=np.uint8)
        nn[i, :len(c)] = f
    mixer = Mixer(len(chunks), longest)
    out = np.empty_like(nn)
    for t in range(longest):
        out[:, t] = mixer.mix(nn[:, t])
        mixer.update(data[:, t])
    return [out[i, :len(c)] for i, c in enumerate(chunks)]
