/* ---- pcm.PcmModel and pcm.CascadePcmModel (cascade): the 16-bit sample predictor of the mixer, for all lanes
   (the same integers as their numpy code) ---- */

enum { PCM_PREDICTORS = 6, PCM_ORDER = 16, PCM_TAPS = 18, PCM_ERROR_SHIFT = 4, PCM_MIN_ERROR = 8, PCM_HI_WINDOW = 2,
       PCM_Q_SCALE = 512, PCM_LMS_SHIFT = 14, PCM_LMS_RATE = 11, PCM_LMS_EPS = 1 << 10, PCM_STAGE2_TAPS = 16,
       PCM_STAGE2_RATE = 9 };

typedef struct {
    i64 L, channels, offset, q_max, cascade;
    const i64 *starts;             /* [L] */
    i64 *samples;                  /* [L, channels, 3] newest first */
    i64 *error;                    /* [L, channels, PCM_PREDICTORS] */
    i64 *guess, *scale;            /* [L] */
    i64 *preds;                    /* [L, PCM_PREDICTORS] */
    i64 *steps;                    /* [L, channels, PCM_ORDER] */
    i64 *lms;                      /* [L, channels, PCM_TAPS] */
    i64 *lms_input;                /* [L, PCM_TAPS] */
    i64 *residuals, *stage2;       /* [L, channels, PCM_STAGE2_TAPS]: the first stage's residuals, newest first,
                                      and the second stage's weights (cascade) */
    i64 *cascade_error;            /* [L, channels] running mean |error| x16 of the two stages' guess ... */
    i64 *cascaded;                 /* [L] ... that guess (cascade) */
    i64 *first, *correction;       /* [L] the first stage's guess and the second's (cascade) */
    const i64 *exp;                /* [q_max + 1] */
} PcmState;

/* a low byte starts a sample of channel ch in lane l: its predictions, guess and scale */
INLINE void pcm_predict(PcmState *s, i64 l, i64 ch) {
    const i64 C = s->channels;
    const i64 *x = s->samples + (l * C + ch) * 3, *y = s->samples + l * C * 3;
    i64 *u = s->lms_input + l * PCM_TAPS, *preds = s->preds + l * PCM_PREDICTORS;
    for (int k = 0; k < PCM_ORDER; k++) u[k] = s->steps[(l * C + ch) * PCM_ORDER + k];
    for (int k = 0; k < 2; k++) u[PCM_ORDER + k] = ch > 0 ? s->steps[l * C * PCM_ORDER + k] : 0;
    i64 dot = 0;
    for (int k = 0; k < PCM_TAPS; k++) dot += s->lms[(l * C + ch) * PCM_TAPS + k] * u[k];
    const i64 order2 = 2 * x[0] - x[1];
    const i64 raw[PCM_PREDICTORS] = {x[0], order2, 3 * x[0] - 3 * x[1] + x[2], x[0] + y[0] - y[1],
                                     order2 + y[0] - (2 * y[1] - y[2]), x[0] + (dot >> PCM_LMS_SHIFT)};
    const i64 *err = s->error + (l * C + ch) * PCM_PREDICTORS;
    i64 best = 0, best_err = 0;
    for (int k = 0; k < PCM_PREDICTORS; k++) {
        preds[k] = clip64(raw[k], -32768, 32767);
        const i64 e = err[k] + (ch == 0 && (k == 3 || k == 4) ? (i64)1 << 50 : 0);
        if (k == 0 || e < best_err) { best = k; best_err = e; }
    }
    i64 guess = preds[best], scale = err[best];
    if (s->cascade) {
        const i64 *r = s->residuals + (l * C + ch) * PCM_STAGE2_TAPS, *w = s->stage2 + (l * C + ch) * PCM_STAGE2_TAPS;
        i64 correction = 0;
        for (int k = 0; k < PCM_STAGE2_TAPS; k++) correction += w[k] * r[k];
        correction >>= PCM_LMS_SHIFT;
        s->first[l] = guess;
        s->correction[l] = correction;
        s->cascaded[l] = clip64(guess + correction, -32768, 32767);
        const i64 cascade_error = s->cascade_error[l * C + ch];
        if (cascade_error < scale) {    /* the two stages' sum, where its running error is the smaller */
            guess = s->cascaded[l];
            scale = cascade_error;
        }
    }
    s->guess[l] = guess;
    s->scale[l] = scale > PCM_MIN_ERROR ? scale : PCM_MIN_ERROR;
}

/* distributions p [L, 256], active and high [L] of each lane's byte at position t; previous [L] the byte
   before (the low byte, for a high byte) */
VECTOR_CLONES void pcm_frequencies(PcmState *s, i64 t, const i64 *previous, i64 *p, i64 *active_out,
                                   i64 *high_out) {
    const i64 C = s->channels, *exp = s->exp, q_max = s->q_max;   /* locals: through s they might alias p */
    for (i64 l = 0; l < s->L; l++) {
        const i64 pos = s->starts[l] + t - s->offset, slot = floormod(pos, 2 * C), ch = slot >> 1, high = slot & 1;
        i64 *pl = p + l * 256, sum = 0;
        if (!high) {                                   /* a low byte starts a sample: predictor and scale now */
            pcm_predict(s, l, ch);
            const i64 guess = s->guess[l], center = guess >> 8;
            for (int k = 0; k < 256; k++) pl[k] = 0;
            for (i64 dk = -PCM_HI_WINDOW; dk <= PCM_HI_WINDOW; dk++) {
                const i64 hi = center + dk;
                if (hi < -128 || hi >= 128) continue;
                laplace_row(exp, q_max, hi * 256 - guess, 1, PCM_Q_SCALE, s->scale[l], pl, 256, 1);
            }
        } else {                  /* the sample is hi * 256 + previous, hi signed: bytes 128.. are hi = -128.. */
            const i64 at = previous[l] - s->guess[l];
            laplace_row(exp, q_max, at, 256, PCM_Q_SCALE, s->scale[l], pl, 128, 0);
            laplace_row(exp, q_max, at - 128 * 256, 256, PCM_Q_SCALE, s->scale[l], pl + 128, 128, 0);
        }
        for (int k = 0; k < 256; k++) sum += pl[k];
        sum = sum > 1 ? sum : 1;
        const double inv_sum = 1.0 / (double)sum;
        for (int k = 0; k < 256; k++) pl[k] = div_pos(pl[k] * ONE, sum, inv_sum);
        active_out[l] = pos >= 0;
        high_out[l] = high;
    }
}

/* after the byte [L] at t is coded: learn from the samples it completes */
VECTOR_CLONES void pcm_update(PcmState *s, i64 t, const i64 *byte, const i64 *previous) {
    const i64 C = s->channels;
    for (i64 l = 0; l < s->L; l++) {
        const i64 pos = s->starts[l] + t - s->offset, slot = floormod(pos, 2 * C), ch = slot >> 1;
        if (pos < 0 || !(slot & 1)) continue;
        const i64 hi = byte[l], sample = (hi >= 128 ? hi - 256 : hi) * 256 + previous[l];
        const i64 *preds = s->preds + l * PCM_PREDICTORS, *u = s->lms_input + l * PCM_TAPS;
        i64 *e = s->error + (l * C + ch) * PCM_PREDICTORS, *x = s->samples + (l * C + ch) * 3;
        if (s->cascade) {
            const i64 first = sample - s->first[l], miss = first - s->correction[l];
            i64 *r = s->residuals + (l * C + ch) * PCM_STAGE2_TAPS, *w = s->stage2 + (l * C + ch) * PCM_STAGE2_TAPS;
            i64 energy = PCM_LMS_EPS;
            for (int k = 0; k < PCM_STAGE2_TAPS; k++) energy += r[k] * r[k];
            for (int k = 0; k < PCM_STAGE2_TAPS; k++)
                w[k] += floordiv(miss * r[k] * ((i64)1 << PCM_STAGE2_RATE), energy);
            for (int k = PCM_STAGE2_TAPS - 1; k > 0; k--) r[k] = r[k - 1];
            r[0] = first;
            i64 *f = s->cascade_error + l * C + ch;
            *f += ((abs64(sample - s->cascaded[l]) << PCM_ERROR_SHIFT) - *f) >> PCM_ERROR_SHIFT;
        }
        for (int k = 0; k < PCM_PREDICTORS; k++) {
            const i64 v = e[k] + (((abs64(sample - preds[k]) << PCM_ERROR_SHIFT) - e[k]) >> PCM_ERROR_SHIFT);
            e[k] = v < ((i64)1 << 40) ? v : (i64)1 << 40;
        }
        const i64 s0 = x[0];
        x[2] = x[1];
        x[1] = x[0];
        x[0] = sample;
        const i64 err = sample - preds[PCM_PREDICTORS - 1];
        i64 energy = PCM_LMS_EPS;
        for (int k = 0; k < PCM_TAPS; k++) energy += u[k] * u[k];
        i64 *w = s->lms + (l * C + ch) * PCM_TAPS;
        for (int k = 0; k < PCM_TAPS; k++) w[k] += floordiv(err * u[k] * ((i64)1 << PCM_LMS_RATE), energy);
        i64 *st = s->steps + (l * C + ch) * PCM_ORDER;
        for (int k = PCM_ORDER - 1; k > 0; k--) st[k] = st[k - 1];
        st[0] = sample - s0;
    }
}


/* the warm start (pcm.CascadePcmModel._warm): each lane learns from its n bytes of samples (bytes [L, n]), the
   first at its start; returns 0, or -1 when out of memory */
VECTOR_CLONES int pcm_learn(PcmState *s, const uint8_t *bytes, i64 n) {
    const i64 L = s->L, C = s->channels;
    i64 *byte = malloc(sizeof(i64) * L), *previous = calloc(L, sizeof(i64));
    if (byte && previous)
        for (i64 t = 0; t < n; t++) {
            for (i64 l = 0; l < L; l++) {
                const i64 slot = floormod(s->starts[l] + t - s->offset, 2 * C);
                if (!(slot & 1)) pcm_predict(s, l, slot >> 1);
                byte[l] = bytes[l * n + t];
            }
            pcm_update(s, t, byte, previous);
            for (i64 l = 0; l < L; l++) previous[l] = byte[l];
        }
    const int failed = !byte || !previous;
    free(byte); free(previous);
    return failed ? -1 : 0;
}
