import os
import numpy as np
from bytezip.predictors import pcm as base
from bytezip.predictors.pcm import *
S2 = int(os.environ.get('S2', '16'))      # stage-2 taps (0 off)
S2RATE = int(os.environ.get('S2RATE', '9'))
BIAS = int(os.environ.get('BIAS', '0'))
class PcmModel(base.PcmModel):
    def __init__(self, *a):
        super().__init__(*a); self._kernel = None
        L, C = len(self.starts), self.layout.channels
        self.res = np.zeros((L, C, max(S2, 2)), dtype=np.int64)     # final residuals, newest first
        self.w2 = np.zeros((L, C, max(S2, 2)), dtype=np.int64)
        self.corr = np.zeros(L, dtype=np.int64)
        self.base_guess = np.zeros(L, dtype=np.int64)
        self.e2 = np.full((L, C), INITIAL_ERROR, dtype=np.int64)
        self.bias = np.zeros((L, C, 4), dtype=np.int64)
        self.bctx = np.zeros(L, dtype=np.int64)
    def frequencies(self, t, previous):
        active, slot = self.phase(t)
        channel, high = slot >> 1, (slot & 1).astype(bool)
        L, low = self.lanes, ~high
        values = np.arange(256, dtype=np.int64)[None, :]
        p = np.zeros((len(L), 256), dtype=np.int64)
        if low.any():
            preds, u = self._predictions(channel)
            preds = np.clip(preds, -32768, 32767)
            err = self.error[L, channel]
            mask = np.where(channel[:, None] > 0, 0, base._FIRST_CHANNEL_MASK)
            best = (err + mask).argmin(1)
            g = preds[L, best]
            if hasattr(self, 'use_long'): g = np.where(self.use_long, self.lpred, g)
            if S2:
                r = self.res[L, channel]
                c = (self.w2[L, channel] * r).sum(1) >> 14
            else:
                c = 0
            ctx = (self.res[L, channel, 0] > 0).astype(np.int64) * 2 + (self.res[L, channel, 1] > 0)
            bias = (self.bias[L, channel, ctx] >> 4) if BIAS else 0
            self.bctx[low] = ctx[low]
            self.base_guess[low] = g[low]
            self.corr[low] = (np.zeros_like(g) + c)[low]
            self.preds[low] = preds[low]
            self.lms_input[low] = u[low]
            self.guess[low] = np.clip(g + c + bias, -32768, 32767)[low]
            self.cg = getattr(self, 'cg', np.zeros_like(self.guess)); self.cg[low] = self.guess[low]
            sc = self.e2[L, channel] if S2 or BIAS else err[L, best]
            if os.environ.get('PICK'):
                use = self.e2[L, channel] < err[L, best]
                self.guess[low] = np.where(use, self.guess, g)[low]
                sc = np.where(use, self.e2[L, channel], err[L, best])
            self.scale[low] = np.maximum(sc[low], MIN_ERROR)
            guess, scale = self.guess[low, None], self.scale[low, None]
            center = guess >> 8
            for k in range(-HI_WINDOW, HI_WINDOW + 1):
                hi = center + k
                p[low] += np.where((hi >= -128) & (hi < 128), self._laplace(hi * 256 + values - guess, scale), 0)
        if high.any():
            guess, scale = self.guess[high, None], self.scale[high, None]
            hi_signed = np.where(values >= 128, values - 256, values)
            p[high] = self._laplace(hi_signed * 256 + previous[high, None] - guess, scale)
        p = p * ONE // np.maximum(p.sum(-1, keepdims=True), 1)
        return active, high, p

    def update(self, t, byte, previous):
        active, slot = self.phase(t)
        done = active & ((slot & 1) == 1)
        if done.any():
            L = self.lanes[done]; ch = slot[done] >> 1
            hi = byte[done].astype(np.int64)
            sample = np.where(hi >= 128, hi - 256, hi) * 256 + previous[done]
            b = self.e2[L, ch]
            self.e2[L, ch] = b + (((np.abs(sample - self.cg[L]) << ERROR_SHIFT) - b) >> ERROR_SHIFT)
            r1 = sample - self.base_guess[L]               # residual of stage 1
            if S2:
                r = self.res[L, ch]
                e = r1 - self.corr[L]
                energy = (r * r).sum(1) + LMS_EPS
                self.w2[L, ch] += (e[:, None] * r << S2RATE) // energy[:, None]
                self.res[L, ch] = np.concatenate([r1[:, None], r[:, :-1]], 1)
            else:
                r = self.res[L, ch]; self.res[L, ch] = np.concatenate([r1[:, None], r[:, :-1]], 1)
            if BIAS:
                fb = sample - self.base_guess[L] - self.corr[L]
                bb = self.bias[L, ch, self.bctx[L]]
                self.bias[L, ch, self.bctx[L]] = bb + (((fb << 4) - bb) >> 5)
        super().update(t, byte, previous)
