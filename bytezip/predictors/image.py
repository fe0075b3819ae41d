"""The pixel predictor of the mixer (an external input; `bytezip.image` finds where pixels lie).

The byte-level model codes raw RGB pixels at about 5.8 bits per byte, above PNG (5.1): it reads the row
above only inside its 4 KB window, and a row is 1.5-3 KB. Lossless image coders (LOCO-I, CALIC, WebP)
predict each sample from its causal neighbours, W, N, NW, NE, and from the channels of the same pixel coded
before it. `ImageModel` does that for the mixer: several fixed predictors, blended with weights from their
running error in the local activity context, a bias correction per context (as LOCO-I), and a Laplace
distribution of the remaining error whose scale is learned per context. Its C twin is csrc/image.c.

The row above must be decodable when a byte is: the codec codes an image's chunks band by band
(`image.coded_index`), so the chunk above a chunk is in an earlier round, in the shared history.
"""
from __future__ import annotations

import ctypes

import numpy as np

from .. import kernels
from ..image import ImageLayout, coded_index
from .pcm import EXP, Q_MAX

ONE = 1 << 16                  # distributions sum to about ONE (as the mixer's)
N_ACTIVITY = 8                 # local activity contexts: log2 of |W-NW| + |N-NW| + |N-NE| (+ the channel before)
ERROR_SHIFT = 4                # running errors forget with rate 1/16
INITIAL_ERROR = 16 * 16        # before any sample: mean |error| 16 (predictions and errors are kept x16)
MIN_SCALE = 8                  # the Laplace scale is at least a mean |error| of 0.5
N_PREDICTORS = 8               # W, N, NE, gradient, MED, (W+NE)/2; with a channel before: W, N following it
W_SPATIAL = 12                 # WeightedImageModel: predictions from the neighbours (then as many corrected) ...
W_MED = 4                      # ... MED among them (its corrected miss gives the neighbours' error energy) ...
EXACT_SCALE = 4                # ... and the least Laplace scale where those misses were all 0 (a grey image as
                               # RGB, flat graphics), when the channel before's own miss is left out


def _blended(preds: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """The blend [L] of predictions [K, L] (x16) by 1/e^2 of their errors [K, L] (x16), floored."""
    inv = (1 << 40) // (errors * errors + 1)
    return (preds * inv).sum(0) // np.maximum(inv.sum(0), 1)


def _laplace(center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Distributions [L, 256] summing to about ONE: a Laplace of this scale (x16) around center (x16)."""
    d = np.abs(16 * np.arange(256)[None, :] - center[:, None])
    p = EXP[np.minimum(d * 32 // scale[:, None], Q_MAX)]
    return p * ONE // p.sum(-1, keepdims=True)


class ImageModel:
    """Per-lane predictor state for `lanes` chunks in lockstep, lane i coding the input's bytes from starts[i]
    on, in an archive of `chunk_size` chunks and `round_chunks` per round (the history holds the chunks
    coded before this round, in record order; formats 8-12)."""

    carries = False            # CarriedImageModel: each lane starts where the chunk before its own ended
    n_activity, n_predictors, error_shift = N_ACTIVITY, N_PREDICTORS, ERROR_SHIFT    # its tables and rate
    fraction = 0               # bits the tables hold beyond those used
    weighted = 0               # csrc/image.c's switch: 1 for WeightedImageModel

    def __init__(self, layout: ImageLayout, starts: np.ndarray, chunk_size: int, round_chunks: int,
                 carried: dict[int, dict[str, np.ndarray]] | None = None):
        L = len(starts)
        self.layout, self.starts, self.chunk_size = layout, starts.astype(np.int64), chunk_size
        self.round_chunks = round_chunks
        self.lanes = np.arange(L)
        C, A, K = layout.channels, self.n_activity, self.n_predictors
        self.error = np.full((L, C, A, K), INITIAL_ERROR << self.fraction, dtype=np.int64)
        self.scale = np.full((L, C, A), INITIAL_ERROR << self.fraction, dtype=np.int64)
        self.bias = np.zeros((L, C, A), dtype=np.int64)                # mean signed error x16, per context
        self.context = np.zeros((L, 3), dtype=np.int64)                # (active, channel, activity) of the byte
        self.preds = np.zeros((L, K), dtype=np.int64)                  # x16
        self.guess = np.zeros(L, dtype=np.int64)                       # x16, before the bias
        ptr = kernels.pointer
        self._kernel = kernels.ImageState(
            L, C, layout.width, layout.offset, layout.band_chunks, chunk_size, round_chunks, Q_MAX, self.weighted,
            ptr(self.starts),
            ptr(self.error), ptr(self.scale), ptr(self.bias), ptr(self.context), ptr(self.preds), ptr(self.guess),
            ptr(EXP)) if kernels.available() else None                 # the same integers, in C
        for lane, j in enumerate(self.starts // chunk_size if self.carries and carried else ()):
            for name, start in carried.get(int(j) - 1, {}).items():
                getattr(self, name)[lane] = start

    def final_states(self, lanes: np.ndarray) -> dict[int, dict[str, np.ndarray]]:
        """What `CarriedImageModel` carries from these lanes (bool [L]) at their chunks' end: by input chunk,
        the error, scale and bias tables."""
        return {int(j): {name: getattr(self, name)[lane].copy() for name in ("error", "scale", "bias")}
                for lane, j in enumerate(self.starts // self.chunk_size) if lanes[lane]}

    def _neighbours(self, t: int, own: np.ndarray, history: np.ndarray, lags: list[int]
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Values [len(lags), L] of the bytes lag positions before each lane's position t, and whether known."""
        L, C = self.lanes, self.chunk_size
        p = self.starts + t
        vals, known = [], []
        for lag in lags:
            q = p - lag
            inside = (q >= self.starts) & (lag <= t)
            q0 = np.maximum(q, 0)
            hpos = coded_index(q0 // C, self.round_chunks, self.layout.band_chunks) * C + q0 % C
            in_history = ~inside & (q >= 0) & (hpos >= 0) & (hpos < len(history))
            v = np.where(inside, own[L, np.clip(t - lag, 0, own.shape[1] - 1)], 0)
            if in_history.any():
                v = np.where(in_history, history[np.clip(hpos, 0, max(len(history) - 1, 0))], v)
            vals.append(v)
            known.append(inside | in_history)
        return np.stack(vals), np.stack(known)

    def frequencies(self, t: int, own: np.ndarray, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(active [L], distribution [L, 256] summing to about ONE) for each lane's byte at position t; `own`:
        the lanes' bytes so far [L, >= t], `history`: the bytes of earlier rounds (uint8)."""
        if self._kernel is not None:
            p, active = np.empty((len(self.lanes), 256), dtype=np.int64), np.empty(len(self.lanes), dtype=np.int64)
            own = np.ascontiguousarray(own, dtype=np.int64)
            ptr = kernels.pointer
            kernels.LIB.image_frequencies(ctypes.byref(self._kernel), t, ptr(own), own.shape[1], ptr(history),
                                          len(history), ptr(p), ptr(active))
            return active.astype(bool), p
        lay, L = self.layout, self.lanes
        C, S = lay.channels, lay.stride
        pos = self.starts + t - lay.offset
        active = pos >= 0
        ch = np.where(active, pos % C, 0)
        x = np.where(active, (pos // C) % lay.width, 0)
        (w, n, nw, ne, u, uw, un), known = self._neighbours(
            t, own, history, [C, S, S + C, S - C, 1, C + 1, S + 1])
        has_w, has_n = known[0] & (x > 0), known[1]
        has_ne = known[3] & (x < lay.width - 1) & has_n
        has_u = known[4] & (ch > 0)
        w = np.where(has_w, w, np.where(has_n, n, 128))
        n = np.where(has_n, n, w)
        nw = np.where(known[2] & has_w & has_n, nw, n)
        ne = np.where(has_ne, ne, n)
        grad = np.clip(n + w - nw, 0, 255)
        med = np.where(nw >= np.maximum(n, w), np.minimum(n, w),
                       np.where(nw <= np.minimum(n, w), np.maximum(n, w), n + w - nw))
        uw = np.where(has_u & known[5] & has_w, uw, u)
        un = np.where(has_u & known[6] & has_n, un, u)
        preds = 16 * np.stack([w, n, ne, grad, med, (w + ne) // 2,
                               np.where(has_u, w + u - uw, w), np.where(has_u, n + u - un, n)], 1)
        preds = np.clip(preds, 0, 16 * 255)
        act = np.abs(w - nw) + np.abs(n - nw) + np.abs(n - ne) + np.where(has_u, np.abs(u - uw) + np.abs(u - un), 0)
        activity = np.minimum(np.log2(act + 1).astype(np.int64), N_ACTIVITY - 1)
        err = self.error[L, ch, activity]                               # [L, N_PREDICTORS] x16
        err[:, 6:] = np.where(has_u[:, None], err[:, 6:], 1 << 20)       # no channel before: not used
        guess = _blended(preds.T, err.T)
        self.preds, self.guess, self.context = preds, guess, np.stack([active, ch, activity], 1)
        center = np.clip(guess + self.bias[L, ch, activity], 0, 16 * 255)
        return active, _laplace(center, np.maximum(self.scale[L, ch, activity], MIN_SCALE))

    def update(self, byte: np.ndarray):
        """After each lane's byte at the position of the last `frequencies` call is coded: learn from it."""
        if self._kernel is not None:
            byte = np.ascontiguousarray(byte, dtype=np.int64)
            kernels.LIB.image_update(ctypes.byref(self._kernel), kernels.pointer(byte))
            return
        active, ch, activity = self.context.T
        if not active.any():
            return
        L, shift = self.lanes[active.astype(bool)], self.error_shift
        ch, activity = ch[L], activity[L]
        v = 16 * byte[L].astype(np.int64)
        e = self.error[L, ch, activity]
        e += (np.abs(v[:, None] - self.preds[L]) - e) >> shift
        self.error[L, ch, activity] = e
        miss = v - self.guess[L]
        self.bias[L, ch, activity] += (miss - self.bias[L, ch, activity]) >> shift
        s = self.scale[L, ch, activity]
        self.scale[L, ch, activity] = s + ((np.abs(miss - self.bias[L, ch, activity]) - s) >> shift)

    # -- as an input of the mixer (`predictors.base.Predictor`) --
    geometric = False          # image bytes keep the linear mix alone

    def mixer_input(self, mixer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        active, p = self.frequencies(mixer.t, mixer.hist, mixer.history.data)
        return active, p, np.where(active, 3, 0)              # weight group "image"

    def learn(self, mixer, byte: np.ndarray):
        self.update(byte)


class CarriedImageModel(ImageModel):
    """Format 13's pixel predictor: `ImageModel` whose lanes start from the error, scale and bias tables that
    the chunk before their own (the band's, a round earlier) ended with, where it was a mixed chunk
    (`mixing.History.carried_signal`), not from nothing: a 4 KiB chunk is one to three rows of a photo, short of
    what 8 activity contexts x 8 predictors need to settle (held-out images, mixed chunks: 1.4-1.6% smaller)."""

    carries = True


class WeightedImageModel(CarriedImageModel):
    """Format 14's pixel predictor: `CarriedImageModel` with 24 predictions (12 from the neighbours -- W, N, NE,
    the gradient, MED, (W+NE)/2, W+NE-N, N+NE-NNE, 2W-WW, 2N-NN, (W+N)/2, NW -- and each of them corrected by
    the channel before's miss at the same pixel, as a colour transform would), blended by their errors in the
    activity context and at the four neighbours coded before (JPEG-XL's weighted predictor weighs by the
    latter), and a Laplace scale halfway between the context's and the corrected MED's misses at the neighbours
    and the channel before (CALIC's error energy; where the neighbours were all met exactly, the channel before
    is left out and the scale may be half as small, so a grey image stored as RGB codes its second and third
    channels almost free). A neighbour's predictions are computed again from the bytes themselves, so a lane
    keeps nothing per position. Chosen on held-out images (the held-out part of `train/`, photos of Debian's
    mate-backgrounds, matplotlib's grace_hopper): on them the predictor alone codes 9.7% smaller than
    ImageModel's, the archives 2-11% smaller (`benchmarks/runs/2026-12-08-format14/`)."""

    n_activity, n_predictors, error_shift = 4, 2 * W_SPATIAL, 3
    # with 4 more bits a rate of 1/8 moves the tables by any miss: ImageModel's bias stalls up to 7/16 of a
    # level below a mean miss it rises to (a grey image as RGB: 2.22 bits a byte alone, 1.87 with them)
    fraction = 4
    weighted = 1
    # its bytes take the geometric mixes too (format 13's stay linear): its sharper distributions gain from
    # them, the tuning images' archives 0.1-4.5% smaller for 12-17% more encoding time
    geometric = True

    def update(self, byte: np.ndarray):
        if self._kernel is not None:
            return super().update(byte)
        active, ch, activity = self.context.T
        L, shift, one = self.lanes[active.astype(bool)], self.error_shift, 1 << self.fraction
        ch, activity = ch[L], activity[L]
        v = 16 * byte[L].astype(np.int64)
        e = self.error[L, ch, activity]
        self.error[L, ch, activity] = e + ((one * np.abs(v[:, None] - self.preds[L]) - e) >> shift)
        miss, bias = v - self.guess[L], self._used(self.bias[L, ch, activity])
        self.bias[L, ch, activity] += (one * miss - self.bias[L, ch, activity]) >> shift
        s = self.scale[L, ch, activity]
        self.scale[L, ch, activity] = s + ((one * np.abs(miss - bias) - s) >> shift)

    def _used(self, bias: np.ndarray) -> np.ndarray:
        """The bias table's entries as the prediction uses them (rounded to its units)."""
        return (bias + (1 << self.fraction) // 2) >> self.fraction

    def frequencies(self, t: int, own: np.ndarray, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._kernel is not None:
            return super().frequencies(t, own, history)
        lay, L = self.layout, self.lanes
        C, S, last = lay.channels, lay.stride, lay.width - 1
        pos = self.starts + t - lay.offset
        active = pos >= 0
        ch = np.where(active, pos % C, 0)
        x = np.where(active, (pos // C) % lay.width, 0)
        sites = [0, 1, C, S, S + C, S - C]                             # the byte, its channel before, W N NW NE
        lags = sorted({d + e for d in sites + [d + 1 for d in sites]
                       for e in (0, 1, C, S, S + C, S - C, 2 * C, 2 * S, 2 * S - C, C + 1, S + 1)})
        vals, known = self._neighbours(t, own, history, lags)
        V, K = dict(zip(lags, vals)), dict(zip(lags, known))
        raw, has_w, has_n = self._spatial(V, K, 0, x)
        has_u = (ch > 0) & K[1]
        u = V[1]
        preds = self._combine(raw, self._spatial(V, K, 1, x)[0], has_u, u)        # [24, L]
        uw = np.where(has_u & K[C + 1] & has_w, V[C + 1], u)
        un = np.where(has_u & K[S + 1] & has_n, V[S + 1], u)
        w, n, ne, nw = raw[0], raw[1], raw[2], raw[11]
        act = np.abs(w - nw) + np.abs(n - nw) + np.abs(n - ne) + np.where(has_u, np.abs(u - uw) + np.abs(u - un), 0)
        activity = np.minimum(np.log2(act + 1).astype(np.int64), self.n_activity - 1)
        sums, count = np.zeros_like(preds), np.zeros(len(L), dtype=np.int64)
        energy, parts = np.zeros(len(L), dtype=np.int64), np.zeros(len(L), dtype=np.int64)
        for lag, column, weight in ((C, x - 1, 2), (S, x, 2), (S + C, x - 1, 1), (S - C, x + 1, 1)):
            there = K[lag] & (column >= 0) & (column <= last)
            v = 16 * V[lag]
            np_ = self._predictions(V, K, lag, column, ch)
            sums += np.where(there, np.abs(v - np_), 0)
            count += there
            energy += np.where(there, weight * np.abs(v - np_[W_SPATIAL + W_MED]), 0)
            parts += np.where(there, weight, 0)
        np_ = self._predictions(V, K, 1, x, ch - 1)
        with_u = has_u & ~((parts > 0) & (energy == 0))                 # not where the neighbours were met
        energy += np.where(with_u, 2 * np.abs(16 * u - np_[W_SPATIAL + W_MED]), 0)
        parts += np.where(with_u, 2, 0)
        err = self.error[L, ch, activity].T >> self.fraction                    # [24, L]
        e = np.where(count > 0, (err + sums // np.maximum(count, 1)) >> 1, err)
        e[W_SPATIAL:] = np.where(has_u, e[W_SPATIAL:], 1 << 20)
        guess = _blended(preds, e)
        self.preds, self.guess, self.context = preds.T.copy(), guess, np.stack([active, ch, activity], 1)
        center = np.clip(guess + self._used(self.bias[L, ch, activity]), 0, 16 * 255)
        scale = self.scale[L, ch, activity] >> self.fraction
        least = np.where((parts > 0) & (energy == 0), EXACT_SCALE, MIN_SCALE)
        scale = np.maximum(np.where(parts > 0, (scale + energy // np.maximum(parts, 1)) >> 1, scale), least)
        return active, _laplace(center, scale)

    def _spatial(self, V: dict, K: dict, d: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The 12 predictions [12, L] of the byte d positions before each lane's (in column x) from its
        neighbours (V, K: the bytes and whether known, by lag), with whether its W and N are there."""
        C, S, last = self.layout.channels, self.layout.stride, self.layout.width - 1
        has_w, has_n = K[d + C] & (x > 0), K[d + S]
        w = np.where(has_w, V[d + C], np.where(has_n, V[d + S], 128))
        n = np.where(has_n, V[d + S], w)
        nw = np.where(K[d + S + C] & has_w & has_n, V[d + S + C], n)
        ne = np.where(K[d + S - C] & (x < last) & has_n, V[d + S - C], n)
        ww = np.where(K[d + 2 * C] & (x > 1), V[d + 2 * C], w)
        n2 = np.where(K[d + 2 * S], V[d + 2 * S], n)
        nne = np.where(K[d + 2 * S - C] & (x < last) & has_n, V[d + 2 * S - C], ne)
        med = np.where(nw >= np.maximum(n, w), np.minimum(n, w),
                       np.where(nw <= np.minimum(n, w), np.maximum(n, w), n + w - nw))
        raw = np.stack([w, n, ne, n + w - nw, med, (w + ne) >> 1, w + ne - n, n + ne - nne, 2 * w - ww,
                        2 * n - n2, (w + n + 1) >> 1, nw])
        return raw, has_w, has_n

    @staticmethod
    def _combine(raw: np.ndarray, before: np.ndarray, known_u: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The 24 predictions x16 [24, L]: raw's, then each corrected by the channel before's miss where known."""
        corrected = np.where(known_u, raw + u - before, raw)
        return np.clip(16 * np.concatenate([raw, corrected]), 0, 16 * 255)

    def _predictions(self, V: dict, K: dict, d: int, x: np.ndarray, ch: np.ndarray) -> np.ndarray:
        """The 24 predictions [24, L] of the byte d positions before each lane's, in column x and channel ch."""
        known_u = (ch > 0) & K[d + 1]
        return self._combine(self._spatial(V, K, d, x)[0], self._spatial(V, K, d + 1, x)[0], known_u, V[d + 1])


kernels.check_constants({"IMG_PREDICTORS": ImageModel.n_predictors, "IMG_ACTIVITY": ImageModel.n_activity,
                         "IMG_ERROR_SHIFT": ImageModel.error_shift, "WIMG_SPATIAL": W_SPATIAL, "WIMG_MED": W_MED,
                         "WIMG_EXACT_SCALE": EXACT_SCALE, "WIMG_FRACTION": WeightedImageModel.fraction,
                         "WIMG_PREDICTORS": WeightedImageModel.n_predictors,
                         "WIMG_ACTIVITY": WeightedImageModel.n_activity,
                         "WIMG_ERROR_SHIFT": WeightedImageModel.error_shift})
