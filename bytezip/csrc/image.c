/* ---- image.ImageModel: the pixel predictor of the mixer, for all lanes (the same integers as its numpy code) ---- */

enum { IMG_PREDICTORS = 8, IMG_ACTIVITY = 8, IMG_ERROR_SHIFT = 4, IMG_MIN_SCALE = 8 };

typedef struct {
    i64 L, channels, width, offset, band_chunks, chunk_size, round_chunks, q_max;
    const i64 *starts;             /* [L] */
    i64 *error;                    /* [L, channels, IMG_ACTIVITY, IMG_PREDICTORS] */
    i64 *scale, *bias;             /* [L, channels, IMG_ACTIVITY] */
    i64 *context;                  /* [L, 3]: active, channel, activity of the byte */
    i64 *preds;                    /* [L, IMG_PREDICTORS] */
    i64 *guess;                    /* [L] */
    const i64 *exp;                /* [q_max + 1] (pcm.EXP) */
} ImageState;


/* image.coded_index for one chunk */
INLINE i64 coded_chunk(i64 j, i64 round_chunks, i64 band_chunks) {
    if (!band_chunks || j >= round_chunks * band_chunks) return j;
    return (j % band_chunks) * round_chunks + j / band_chunks;
}

/* distributions p [L, 256] and active [L] of each lane's byte at position t; own [L, own_width] the lanes'
   bytes so far, history [n] the earlier rounds' */
VECTOR_CLONES void image_frequencies(ImageState *s, i64 t, const i64 *own, i64 own_width, const uint8_t *history,
                                     i64 n, i64 *p, i64 *active_out) {
    const i64 C = s->channels, S = s->width * s->channels, CS = s->chunk_size;
    const i64 lags[7] = {C, S, S + C, S - C, 1, C + 1, S + 1};
    for (i64 l = 0; l < s->L; l++) {
        const i64 pos = s->starts[l] + t - s->offset, active = pos >= 0;
        const i64 ch = active ? floormod(pos, C) : 0, x = active ? floormod(pos / C, s->width) : 0;
        i64 v[7], known[7];
        for (int g = 0; g < 7; g++) {                  /* image.ImageModel._neighbours */
            const i64 lag = lags[g], q = s->starts[l] + t - lag, inside = q >= s->starts[l] && lag <= t;
            const i64 q0 = q > 0 ? q : 0, hpos = coded_chunk(q0 / CS, s->round_chunks, s->band_chunks) * CS + q0 % CS;
            const i64 in_history = !inside && q >= 0 && hpos >= 0 && hpos < n;
            v[g] = inside ? own[l * own_width + clip64(t - lag, 0, own_width - 1)] : 0;
            if (in_history) v[g] = history[clip64(hpos, 0, n - 1)];
            known[g] = inside || in_history;
        }
        const i64 has_w = known[0] && x > 0, has_n = known[1], has_ne = known[3] && x < s->width - 1 && has_n;
        const i64 has_u = known[4] && ch > 0, u = v[4];
        const i64 w = has_w ? v[0] : has_n ? v[1] : 128;
        const i64 nn = has_n ? v[1] : w;
        const i64 nw = known[2] && has_w && has_n ? v[2] : nn;
        const i64 ne = has_ne ? v[3] : nn;
        const i64 grad = clip64(nn + w - nw, 0, 255);
        const i64 mx = nn > w ? nn : w, mn = nn < w ? nn : w;
        const i64 med = nw >= mx ? mn : nw <= mn ? mx : nn + w - nw;
        const i64 uw = has_u && known[5] && has_w ? v[5] : u, un = has_u && known[6] && has_n ? v[6] : u;
        i64 *preds = s->preds + l * IMG_PREDICTORS;
        const i64 raw[IMG_PREDICTORS] = {w, nn, ne, grad, med, (w + ne) / 2, has_u ? w + u - uw : w,
                                         has_u ? nn + u - un : nn};
        for (int k = 0; k < IMG_PREDICTORS; k++) preds[k] = clip64(16 * raw[k], 0, 16 * 255);
        const i64 act = abs64(w - nw) + abs64(nn - nw) + abs64(nn - ne) + (has_u ? abs64(u - uw) + abs64(u - un) : 0);
        i64 activity = 63 - __builtin_clzll((unsigned long long)(act + 1));     /* floor(log2(act + 1)) */
        activity = activity < IMG_ACTIVITY - 1 ? activity : IMG_ACTIVITY - 1;
        const i64 ctx = (l * C + ch) * IMG_ACTIVITY + activity;
        const i64 *err = s->error + ctx * IMG_PREDICTORS;
        i64 num = 0, den = 0;
        for (int k = 0; k < IMG_PREDICTORS; k++) {
            const i64 e = k >= 6 && !has_u ? (i64)1 << 20 : err[k];
            const i64 inv = ((i64)1 << 40) / (e * e + 1);
            num += preds[k] * inv;
            den += inv;
        }
        s->guess[l] = floordiv(num, den > 1 ? den : 1);
        s->context[l * 3] = active;
        s->context[l * 3 + 1] = ch;
        s->context[l * 3 + 2] = activity;
        const i64 center = clip64(s->guess[l] + s->bias[ctx], 0, 16 * 255);
        const i64 scale = s->scale[ctx] > IMG_MIN_SCALE ? s->scale[ctx] : IMG_MIN_SCALE;
        i64 *pl = p + l * 256, sum = 0;
        laplace_row(s->exp, s->q_max, -center, 16, 32, scale, pl, 256, 0);
        for (int k = 0; k < 256; k++) sum += pl[k];
        const double inv_sum = 1.0 / (double)sum;
        for (int k = 0; k < 256; k++) pl[k] = div_pos(pl[k] * ONE, sum, inv_sum);
        active_out[l] = active;
    }
}

/* learn from the byte [L] each lane just coded at the position of the last image_frequencies */
VECTOR_CLONES void image_update(ImageState *s, const i64 *byte) {
    for (i64 l = 0; l < s->L; l++) {
        const i64 *c = s->context + l * 3;
        if (!c[0]) continue;
        const i64 ctx = (l * s->channels + c[1]) * IMG_ACTIVITY + c[2], v = 16 * byte[l];
        i64 *e = s->error + ctx * IMG_PREDICTORS;
        for (int k = 0; k < IMG_PREDICTORS; k++) e[k] += (abs64(v - s->preds[l * IMG_PREDICTORS + k]) - e[k]) >> IMG_ERROR_SHIFT;
        const i64 miss = v - s->guess[l];
        s->bias[ctx] += (miss - s->bias[ctx]) >> IMG_ERROR_SHIFT;
        s->scale[ctx] += (abs64(miss - s->bias[ctx]) - s->scale[ctx]) >> IMG_ERROR_SHIFT;
    }
}

