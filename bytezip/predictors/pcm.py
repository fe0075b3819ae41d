"""The 16-bit sample predictor of the mixer (an external input; `bytezip.pcm` finds where samples lie).

The byte-level model codes audio at about 4.7 bits per byte, above xz; FLAC and WavPack reach 2.7 by
predicting each sample from the ones before and coding the small residual. `PcmModel` does the same for
the mixer: a few fixed linear predictors per channel (FLAC's orders 1-3, plus, for the second channel of a
stereo pair, ones that follow the first channel's step) and an adaptive one (NLMS over the last 16 sample
differences, and the first channel's), the one with the smallest running error chosen,
and a Laplace distribution of that error turned into byte distributions: the low byte first (summed over
the likely high bytes), then the high byte given the low one. Integer arithmetic only (an exponential table
built by an integer recurrence), so the encoder and the decoder agree on every platform. Its C twin is
csrc/pcm.c.

Format 13's `CascadePcmModel` adds what the leading lossless audio coders (Monkey's Audio, OptimFROG) do
beyond one prediction: a second stage, an NLMS over the last STAGE2_TAPS residuals of the first that predicts
the next one, its guess added to the first stage's where the sum's running error is the smaller; and
a warm start: a 4 KiB chunk is 1024 stereo frames, and a predictor learning from nothing spends a good part
of it converging, so each lane's predictor first runs over the two chunks of samples before its own, which
the codec's band order (`bytezip.pcm.PcmLayout.band_chunks`, as an image's) puts in earlier rounds for all but
the first round's lanes (the second round's lanes have one), else over the history's last two. Chosen on the
held-out recordings of `train/` (the predictor alone, 4 KiB chunks: 3.657 bits a byte cold, 3.63 with the
second stage, 3.57 warm from samples 8 chunks back, 3.47 from the chunk just before, 3.456 from the two).
"""
from __future__ import annotations

import ctypes

import numpy as np

from .. import kernels
from ..image import coded_index, input_index
from ..pcm import PcmLayout

ONE = 1 << 16                  # distributions sum to about ONE (as the mixer's)
Q_SCALE = 512                  # q = |error| * Q_SCALE / (16 x mean |error|): 32 steps per mean error
Q_MAX = 32 * 24                # exp(-24) and beyond count as exp(-24)
_EXP_STEP = 1040447468         # round(2^30 * exp(-1/32))
EXP = np.zeros(Q_MAX + 1, dtype=np.int64)           # EXP[q] ~ 2^30 exp(-q / 32), by integer recurrence
EXP[0] = 1 << 30
for _q in range(1, Q_MAX + 1):
    EXP[_q] = (int(EXP[_q - 1]) * _EXP_STEP) >> 30
HI_WINDOW = 2                  # the low byte's distribution sums over high bytes within this of the predicted
ERROR_SHIFT = 4                # running mean |error| (x16) forgets with rate 1/16
INITIAL_ERROR = 16 * 2048      # before any sample: a wide distribution
MIN_ERROR = 8                  # mean |error| at least 0.5
N_PREDICTORS = 6               # order 1, 2, 3; for a second channel order 1, 2 plus the first's residual; NLMS
_FIRST_CHANNEL_MASK = np.array([0, 0, 0, 1 << 50, 1 << 50, 0])   # the first channel has no cross predictors
LMS_ORDER = 16                 # the NLMS predictor: the last LMS_ORDER steps (sample differences) of the channel,
LMS_TAPS = LMS_ORDER + 2       # and for a second channel the first one's last two steps (the current one first)
LMS_SHIFT = 14                 # its weights in units of 2^-14
LMS_RATE = 11                  # step size 2^(LMS_RATE - LMS_SHIFT) of the normalised update
LMS_EPS = 1 << 10              # added to the input energy (silence does not blow the weights up)
STAGE2_TAPS = 16               # CascadePcmModel: the second stage reads the first stage's last 16 residuals,
STAGE2_RATE = 9                # with step size 2^(STAGE2_RATE - LMS_SHIFT), weights in units of 2^-LMS_SHIFT
WARM_CHUNKS = 2                # CascadePcmModel: the chunks before its own a lane learns from first


class PcmModel:
    """Per-lane predictor state for `lanes` chunks in lockstep; lane i's chunk starts at byte `starts[i]`
    (formats 8-12). `CascadePcmModel` warm-starts from the `history` before the round, which holds its records
    before `first_record`, in an archive of `chunk_size` chunks and `round_chunks` per round."""

    cascade = False            # the second stage and the warm start (CascadePcmModel)

    def __init__(self, layout: PcmLayout, starts: np.ndarray, history=None, first_record: int = 0,
                 chunk_size: int = 0, round_chunks: int = 0):
        L, C = len(starts), layout.channels
        self.layout, self.starts = layout, starts.astype(np.int64)
        self.lanes = np.arange(L)
        self.samples = np.zeros((L, C, 3), dtype=np.int64)          # last three samples per channel, newest first
        self.error = np.full((L, C, N_PREDICTORS), INITIAL_ERROR, dtype=np.int64)
        self.guess = np.zeros(L, dtype=np.int64)                    # predicted sample of the current frame slot
        self.scale = np.full(L, INITIAL_ERROR, dtype=np.int64)
        self.preds = np.zeros((L, N_PREDICTORS), dtype=np.int64)
        self.steps = np.zeros((L, C, LMS_ORDER), dtype=np.int64)       # sample differences, newest first
        self.lms = np.zeros((L, C, LMS_TAPS), dtype=np.int64)           # NLMS weights per channel
        self.lms_input = np.zeros((L, LMS_TAPS), dtype=np.int64)
        self.residuals = np.zeros((L, C, STAGE2_TAPS), dtype=np.int64)   # the first stage's, newest first
        self.stage2 = np.zeros((L, C, STAGE2_TAPS), dtype=np.int64)      # the second stage's weights
        self.cascade_error = np.full((L, C), INITIAL_ERROR, dtype=np.int64)   # running mean |error| (x16) ...
        self.cascaded = np.zeros(L, dtype=np.int64)                       # ... of the two stages' guess
        self.first = np.zeros(L, dtype=np.int64)                          # the first stage's guess
        self.correction = np.zeros(L, dtype=np.int64)                     # the second stage's
        ptr = kernels.pointer
        self._kernel = kernels.PcmState(
            L, C, layout.offset, Q_MAX, int(self.cascade),
            *map(ptr, (self.starts, self.samples, self.error, self.guess, self.scale, self.preds, self.steps,
                       self.lms, self.lms_input, self.residuals, self.stage2, self.cascade_error, self.cascaded,
                       self.first, self.correction, EXP))
        ) if kernels.available() else None                              # the same integers, in C
        if self.cascade and history is not None and first_record:
            self._warm(history, first_record, chunk_size, round_chunks)

    def _warm(self, history, first_record: int, chunk_size: int, round_chunks: int):
        """Each lane first learns from the WARM_CHUNKS chunks of samples before its own, as far as earlier rounds
        coded them (its chunk and theirs start at multiples of chunk_size), else from the history's last one
        and the one before it."""
        C, R, bands, data = chunk_size, round_chunks, self.layout.band_chunks, history.data

        def coded(k: np.ndarray) -> np.ndarray:       # input chunks k coded in an earlier round
            return (k >= 0) & (coded_index(np.maximum(k, 0), R, bands) < first_record)

        j = self.starts // C
        last = np.where(coded(j - 1), j - 1, input_index(first_record - 1, R, bands))   # the last chunk learnt
        first = last.copy()
        for _ in range(WARM_CHUNKS - 1):
            first = np.where(coded(first - 1), first - 1, first)
        for n in np.unique(last - first + 1):                  # lanes that learn from n chunks, together
            lanes = np.flatnonzero(last - first + 1 == n)
            at = len(data) - (first_record - coded_index(first[lanes, None] + np.arange(n), R, bands)) * C
            held = (at >= 0).all(1)
            if not held.any():
                continue
            lanes, at = lanes[held], at[held]
            chunks = np.stack([np.concatenate([data[a:a + C] for a in row]) for row in at])
            self._learn(lanes, first[lanes] * C, chunks)

    def _learn(self, lanes: np.ndarray, starts: np.ndarray, chunks: np.ndarray):
        """Lanes `lanes` learn from the samples chunks [len(lanes), n], input bytes starts .. starts + n - 1."""
        warm = type(self)(self.layout, starts)
        if warm._kernel is not None:
            if kernels.LIB.pcm_learn(ctypes.byref(warm._kernel), kernels.pointer(chunks), chunks.shape[1]) < 0:
                raise MemoryError("the audio predictor is out of memory")
        else:
            previous = np.zeros(len(chunks), dtype=np.int64)
            for t in range(chunks.shape[1]):
                byte = chunks[:, t].astype(np.int64)
                warm._predict(t)
                warm.update(t, byte, previous)
                previous = byte
        for name in ("samples", "error", "steps", "lms", "residuals", "stage2", "cascade_error"):
            getattr(self, name)[lanes] = getattr(warm, name)

    def phase(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(active, slot) per lane at chunk position t: slot = byte index within the sample frame."""
        pos = self.starts + t - self.layout.offset
        return pos >= 0, pos % self.layout.frame

    def _predictions(self, channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every predictor's guess [L, N_PREDICTORS] for the next sample of `channel`, and the NLMS input."""
        L = self.lanes
        x1, x2, x3 = (self.samples[L, channel, j] for j in range(3))
        y0, y1, y2 = (self.samples[L, 0, j] for j in range(3))     # the first channel, its current sample first
        order2 = 2 * x1 - x2
        cross = np.where(channel[:, None] > 0, self.steps[L, 0, :2], 0)
        u = np.concatenate([self.steps[L, channel], cross], 1)        # [L, LMS_TAPS]
        lms = x1 + ((self.lms[L, channel] * u).sum(1) >> LMS_SHIFT)
        return np.stack([x1, order2, 3 * x1 - 3 * x2 + x3,
                         x1 + y0 - y1, order2 + y0 - (2 * y1 - y2), lms], 1), u

    def frequencies(self, t: int, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(active [L], high-byte flag [L], distribution [L, 256] summing to about ONE) for position t;
        `previous` is each lane's byte at t - 1 (the low byte, when this is a high byte)."""
        if self._kernel is not None:
            L = len(self.lanes)
            p, active, high = np.empty((L, 256), dtype=np.int64), np.empty(L, dtype=np.int64), np.empty(L, dtype=np.int64)
            previous = np.ascontiguousarray(previous, dtype=np.int64)
            kernels.LIB.pcm_frequencies(ctypes.byref(self._kernel), t, *map(kernels.pointer, (previous, p, active,
                                                                                               high)))
            return active.astype(bool), high.astype(bool), p
        active, slot = self.phase(t)
        channel, high = slot >> 1, (slot & 1).astype(bool)
        L, low = self.lanes, ~high
        values = np.arange(256, dtype=np.int64)[None, :]
        p = np.zeros((len(L), 256), dtype=np.int64)
        # (the lanes of a round share their phase: each part below usually runs for all lanes or none)
        if low.any():
            self._predict(t)
            # low byte: summed over the high bytes near the guess
            guess, scale = self.guess[low, None], self.scale[low, None]
            center = guess >> 8
            for k in range(-HI_WINDOW, HI_WINDOW + 1):
                hi = center + k
                p[low] += np.where((hi >= -128) & (hi < 128), self._laplace(hi * 256 + values - guess, scale), 0)
        if high.any():
            # high byte: the sample is hi * 256 + previous (hi signed)
            guess, scale = self.guess[high, None], self.scale[high, None]
            hi_signed = np.where(values >= 128, values - 256, values)
            p[high] = self._laplace(hi_signed * 256 + previous[high, None] - guess, scale)
        p = p * ONE // np.maximum(p.sum(-1, keepdims=True), 1)
        return active, high, p

    def _predict(self, t: int):
        """A low byte starts a sample: the guess and scale of the lanes whose byte at t is a low one."""
        _, slot = self.phase(t)
        channel, low = slot >> 1, (slot & 1) == 0
        L = self.lanes
        preds, u = self._predictions(channel)
        preds = np.clip(preds, -32768, 32767)
        err = self.error[L, channel]                                  # [L, N_PREDICTORS]
        best = np.where(channel[:, None] > 0, err, err + _FIRST_CHANNEL_MASK).argmin(1)
        guess, scale = preds[L, best], err[L, best]
        if self.cascade:          # the two stages' sum, where its running error is the smaller
            self.first[low] = guess[low]
            correction = (self.stage2[L, channel] * self.residuals[L, channel]).sum(1) >> LMS_SHIFT
            self.correction[low] = correction[low]
            cascaded, cascade_error = np.clip(guess + correction, -32768, 32767), self.cascade_error[L, channel]
            self.cascaded[low] = cascaded[low]
            guess, scale = np.where(cascade_error < scale, cascaded, guess), np.minimum(cascade_error, scale)
        self.preds[low] = preds[low]
        self.lms_input[low] = u[low]
        self.guess[low] = guess[low]
        self.scale[low] = np.maximum(scale[low], MIN_ERROR)

    @staticmethod
    def _laplace(d: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return EXP[np.minimum(np.abs(d) * Q_SCALE // scale, Q_MAX)]

    def update(self, t: int, byte: np.ndarray, previous: np.ndarray):
        """After the byte at t is coded: when it completes a sample, learn from it."""
        if self._kernel is not None:
            byte, previous = (np.ascontiguousarray(a, dtype=np.int64) for a in (byte, previous))
            kernels.LIB.pcm_update(ctypes.byref(self._kernel), t, kernels.pointer(byte), kernels.pointer(previous))
            return
        active, slot = self.phase(t)
        done = active & ((slot & 1) == 1)
        if not done.any():
            return
        L = self.lanes[done]
        channel = slot[done] >> 1
        hi = byte[done].astype(np.int64)
        sample = np.where(hi >= 128, hi - 256, hi) * 256 + previous[done]
        if self.cascade:
            first = sample - self.first[L]                            # the first stage's residual
            r = self.residuals[L, channel]
            energy = (r * r).sum(1, keepdims=True) + LMS_EPS
            self.stage2[L, channel] += ((first - self.correction[L])[:, None] * r << STAGE2_RATE) // energy
            self.residuals[L, channel] = np.concatenate([first[:, None], r[:, :-1]], 1)
            f = self.cascade_error[L, channel]
            self.cascade_error[L, channel] = f + (((np.abs(sample - self.cascaded[L]) << ERROR_SHIFT) - f)
                                                  >> ERROR_SHIFT)
        e = self.error[L, channel]
        e += ((np.abs(sample[:, None] - self.preds[L]) << ERROR_SHIFT) - e) >> ERROR_SHIFT
        self.error[L, channel] = np.minimum(e, 1 << 40)
        s = self.samples[L, channel]
        self.samples[L, channel] = np.stack([sample, s[:, 0], s[:, 1]], 1)
        # NLMS: w += rate * error * input / (|input|^2 + eps)
        u = self.lms_input[L]
        err = (sample - self.preds[L, N_PREDICTORS - 1])[:, None]
        energy = (u * u).sum(1, keepdims=True) + LMS_EPS
        self.lms[L, channel] += (err * u << LMS_RATE) // energy
        steps = self.steps[L, channel]
        self.steps[L, channel] = np.concatenate([(sample - s[:, 0])[:, None], steps[:, :-1]], 1)

    # -- as an input of the mixer (`predictors.base.Predictor`) --
    geometric = False          # audio bytes keep the linear mix alone

    def mixer_input(self, mixer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        active, high, p = self.frequencies(mixer.t, mixer.prev(1))
        return active, p, np.where(active, 1 + high, 0)      # weight groups "audio low byte", "audio high byte"

    def learn(self, mixer, byte: np.ndarray):
        self.update(mixer.t, byte, mixer.prev(1))


class CascadePcmModel(PcmModel):
    """Format 13's sample predictor: `PcmModel` with a second stage on its residual, warm-started from the
    history (see the module's docstring)."""

    cascade = True
