/* ---- image.ImageModel and image.WeightedImageModel (weighted): the pixel predictor of the mixer, for all
   lanes (the same integers as their numpy code) ---- */

enum { IMG_PREDICTORS = 8, IMG_ACTIVITY = 8, IMG_ERROR_SHIFT = 4, IMG_MIN_SCALE = 8,
       WIMG_SPATIAL = 12, WIMG_PREDICTORS = 24, WIMG_ACTIVITY = 4, WIMG_ERROR_SHIFT = 3, WIMG_MED = 4,
       WIMG_EXACT_SCALE = 4, WIMG_FRACTION = 4 };

typedef struct {
    i64 L, channels, width, offset, band_chunks, chunk_size, round_chunks, q_max;
    i64 weighted;                  /* 0: ImageModel (formats 8-13), 1: WeightedImageModel (format 14) */
    const i64 *starts;             /* [L] */
    i64 *error;                    /* [L, channels, activities, predictors] (IMG_ or WIMG_) */
    i64 *scale, *bias;             /* [L, channels, activities] */
    i64 *context;                  /* [L, 3]: active, channel, activity of the byte */
    i64 *preds;                    /* [L, predictors] */
    i64 *guess;                    /* [L] */
    const i64 *exp;                /* [q_max + 1] (pcm.EXP) */
} ImageState;


/* image.coded_index for one chunk */
INLINE i64 coded_chunk(i64 j, i64 round_chunks, i64 band_chunks) {
    if (!band_chunks || j >= round_chunks * band_chunks) return j;
    return (j % band_chunks) * round_chunks + j / band_chunks;
}

/* image.ImageModel._neighbours for one lane l and lag: the byte lag positions before the lane's position t
   (its own bytes so far, own [L, own_width], or the earlier rounds', history [n]), and whether it is known */
INLINE i64 pixel_byte(const ImageState *s, i64 l, i64 t, i64 lag, const i64 *own, i64 own_width,
                      const uint8_t *history, i64 n, i64 *known) {
    const i64 CS = s->chunk_size, q = s->starts[l] + t - lag, inside = q >= s->starts[l] && lag <= t;
    const i64 q0 = q > 0 ? q : 0, hpos = coded_chunk(q0 / CS, s->round_chunks, s->band_chunks) * CS + q0 % CS;
    const i64 in_history = !inside && q >= 0 && hpos >= 0 && hpos < n;
    *known = inside || in_history;
    if (in_history) return history[clip64(hpos, 0, n - 1)];
    return inside ? own[l * own_width + clip64(t - lag, 0, own_width - 1)] : 0;
}

/* the blend of K predictions (x16) by 1/e^2 of their errors e (x16), floored as numpy's // */
INLINE i64 blended_guess(const i64 *preds, const i64 *e, int K) {
    i64 num = 0, den = 0;
    for (int k = 0; k < K; k++) {
        const i64 inv = ((i64)1 << 40) / (e[k] * e[k] + 1);
        num += preds[k] * inv;
        den += inv;
    }
    return floordiv(num, den > 1 ? den : 1);
}

/* lane l's guess and context (what the update learns from), and its distribution p [256]: a Laplace of this
   scale around center, summing to about ONE */
INLINE void pixel_distribution(ImageState *s, i64 l, i64 guess, i64 active, i64 ch, i64 activity, i64 center,
                               i64 scale, i64 *pl) {
    s->guess[l] = guess;
    s->context[l * 3] = active;
    s->context[l * 3 + 1] = ch;
    s->context[l * 3 + 2] = activity;
    i64 sum = 0;
    laplace_row(s->exp, s->q_max, -center, 16, 32, scale, pl, 256, 0);
    for (int k = 0; k < 256; k++) sum += pl[k];
    const double inv_sum = 1.0 / (double)sum;
    for (int k = 0; k < 256; k++) pl[k] = div_pos(pl[k] * ONE, sum, inv_sum);
}

static void weighted_frequencies(ImageState *s, i64 t, const i64 *own, i64 own_width, const uint8_t *history,
                                 i64 n, i64 *p, i64 *active_out);

/* distributions p [L, 256] and active [L] of each lane's byte at position t; own [L, own_width] the lanes'
   bytes so far, history [n] the earlier rounds' */
VECTOR_CLONES void image_frequencies(ImageState *s, i64 t, const i64 *own, i64 own_width, const uint8_t *history,
                                     i64 n, i64 *p, i64 *active_out) {
    if (s->weighted) {
        weighted_frequencies(s, t, own, own_width, history, n, p, active_out);
        return;
    }
    const i64 C = s->channels, S = s->width * s->channels;
    const i64 lags[7] = {C, S, S + C, S - C, 1, C + 1, S + 1};
    for (i64 l = 0; l < s->L; l++) {
        const i64 pos = s->starts[l] + t - s->offset, active = pos >= 0;
        const i64 ch = active ? floormod(pos, C) : 0, x = active ? floormod(pos / C, s->width) : 0;
        i64 v[7], known[7];
        for (int g = 0; g < 7; g++) v[g] = pixel_byte(s, l, t, lags[g], own, own_width, history, n, known + g);
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
        i64 e[IMG_PREDICTORS];
        for (int k = 0; k < IMG_PREDICTORS; k++) e[k] = k >= 6 && !has_u ? (i64)1 << 20 : err[k];
        const i64 guess = blended_guess(preds, e, IMG_PREDICTORS);
        const i64 center = clip64(guess + s->bias[ctx], 0, 16 * 255);
        const i64 scale = s->scale[ctx] > IMG_MIN_SCALE ? s->scale[ctx] : IMG_MIN_SCALE;
        pixel_distribution(s, l, guess, active, ch, activity, center, scale, p + l * 256);
        active_out[l] = active;
    }
}

/* learn from the byte [L] each lane just coded at the position of the last image_frequencies */
VECTOR_CLONES void image_update(ImageState *s, const i64 *byte) {
    if (s->weighted) {
        for (i64 l = 0; l < s->L; l++) {
            const i64 *c = s->context + l * 3;
            if (!c[0]) continue;
            const i64 ctx = (l * s->channels + c[1]) * WIMG_ACTIVITY + c[2], v = 16 * byte[l], one = 1 << WIMG_FRACTION;
            i64 *e = s->error + ctx * WIMG_PREDICTORS;
            for (int k = 0; k < WIMG_PREDICTORS; k++)
                e[k] += (one * abs64(v - s->preds[l * WIMG_PREDICTORS + k]) - e[k]) >> WIMG_ERROR_SHIFT;
            const i64 miss = v - s->guess[l], bias = (s->bias[ctx] + one / 2) >> WIMG_FRACTION;   /* as used */
            s->bias[ctx] += (one * miss - s->bias[ctx]) >> WIMG_ERROR_SHIFT;
            s->scale[ctx] += (one * abs64(miss - bias) - s->scale[ctx]) >> WIMG_ERROR_SHIFT;
        }
        return;
    }
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


/* ---- image.WeightedImageModel (format 14): 24 predictions (12 from the neighbours, 12 of them corrected by
   the channel before's miss), weighted by their error in the activity context and at the four neighbours
   coded before, and a Laplace scale from the context's and the neighbours' misses (half the usual least
   where the neighbours were all met exactly); every neighbour's predictions are recomputed from the bytes
   themselves, so a lane needs no state beyond its tables, which hold WIMG_FRACTION bits more than they are
   used with ---- */

/* the 12 predictions raw [12] of the byte d positions before lane l's position t (x: its column) from its
   neighbours, as ImageModel finds them; returns has_w | has_n << 1 */
INLINE i64 weighted_spatial(const ImageState *s, i64 l, i64 t, i64 d, i64 x, const i64 *own, i64 own_width,
                            const uint8_t *history, i64 n, i64 *raw) {
    const i64 C = s->channels, S = s->width * C, last = s->width - 1;
    i64 kw, kn, knw, kne, kww, knn, knne;
    const i64 vw = pixel_byte(s, l, t, d + C, own, own_width, history, n, &kw);
    const i64 vn = pixel_byte(s, l, t, d + S, own, own_width, history, n, &kn);
    const i64 vnw = pixel_byte(s, l, t, d + S + C, own, own_width, history, n, &knw);
    const i64 vne = pixel_byte(s, l, t, d + S - C, own, own_width, history, n, &kne);
    const i64 vww = pixel_byte(s, l, t, d + 2 * C, own, own_width, history, n, &kww);
    const i64 vnn = pixel_byte(s, l, t, d + 2 * S, own, own_width, history, n, &knn);
    const i64 vnne = pixel_byte(s, l, t, d + 2 * S - C, own, own_width, history, n, &knne);
    const i64 has_w = kw && x > 0, has_n = kn;
    const i64 w = has_w ? vw : has_n ? vn : 128, nn = has_n ? vn : w;
    const i64 nw = knw && has_w && has_n ? vnw : nn, ne = kne && x < last && has_n ? vne : nn;
    const i64 ww = kww && x > 1 ? vww : w, n2 = knn ? vnn : nn, nne = knne && x < last && has_n ? vnne : ne;
    const i64 mx = nn > w ? nn : w, mn = nn < w ? nn : w;
    raw[0] = w; raw[1] = nn; raw[2] = ne; raw[3] = nn + w - nw;
    raw[4] = nw >= mx ? mn : nw <= mn ? mx : nn + w - nw;
    raw[5] = (w + ne) >> 1; raw[6] = w + ne - nn; raw[7] = nn + ne - nne; raw[8] = 2 * w - ww;
    raw[9] = 2 * nn - n2; raw[10] = (w + nn + 1) >> 1; raw[11] = nw;
    return has_w | has_n << 1;
}

/* the 24 predictions x16, clipped: the 12 of raw, then each corrected by the channel before's miss (u - its
   own prediction, before) where that channel is known, else the 12 again */
INLINE void weighted_combine(const i64 *raw, const i64 *before, i64 known_u, i64 u, i64 *preds) {
    for (int k = 0; k < WIMG_SPATIAL; k++) {
        preds[k] = clip64(16 * raw[k], 0, 16 * 255);
        preds[WIMG_SPATIAL + k] = clip64(16 * (known_u ? raw[k] + u - before[k] : raw[k]), 0, 16 * 255);
    }
}

/* the 24 predictions of the (known) byte d positions before lane l's position t, in column x and channel ch */
INLINE void weighted_predictions(const ImageState *s, i64 l, i64 t, i64 d, i64 x, i64 ch, const i64 *own,
                                 i64 own_width, const uint8_t *history, i64 n, i64 *preds) {
    i64 raw[WIMG_SPATIAL], before[WIMG_SPATIAL], known_u = 0;
    weighted_spatial(s, l, t, d, x, own, own_width, history, n, raw);
    const i64 u = ch > 0 ? pixel_byte(s, l, t, d + 1, own, own_width, history, n, &known_u) : 0;
    if (known_u) weighted_spatial(s, l, t, d + 1, x, own, own_width, history, n, before);
    weighted_combine(raw, before, known_u, u, preds);
}

static void weighted_frequencies(ImageState *s, i64 t, const i64 *own, i64 own_width, const uint8_t *history,
                                 i64 n, i64 *p, i64 *active_out) {
    const i64 C = s->channels, S = s->width * C, last = s->width - 1;
    for (i64 l = 0; l < s->L; l++) {
        const i64 pos = s->starts[l] + t - s->offset, active = pos >= 0;
        const i64 ch = active ? floormod(pos, C) : 0, x = active ? floormod(pos / C, s->width) : 0;
        i64 raw[WIMG_SPATIAL], before[WIMG_SPATIAL], has_u = 0, kuw, kun;
        const i64 flags = weighted_spatial(s, l, t, 0, x, own, own_width, history, n, raw);
        const i64 u = ch > 0 ? pixel_byte(s, l, t, 1, own, own_width, history, n, &has_u) : 0;
        if (has_u) weighted_spatial(s, l, t, 1, x, own, own_width, history, n, before);
        i64 *preds = s->preds + l * WIMG_PREDICTORS;
        weighted_combine(raw, before, has_u, u, preds);
        const i64 vuw = pixel_byte(s, l, t, C + 1, own, own_width, history, n, &kuw);
        const i64 vun = pixel_byte(s, l, t, S + 1, own, own_width, history, n, &kun);
        const i64 uw = has_u && kuw && (flags & 1) ? vuw : u, un = has_u && kun && (flags & 2) ? vun : u;
        const i64 w = raw[0], nn = raw[1], ne = raw[2], nw = raw[11];
        const i64 act = abs64(w - nw) + abs64(nn - nw) + abs64(nn - ne) + (has_u ? abs64(u - uw) + abs64(u - un) : 0);
        i64 activity = 63 - __builtin_clzll((unsigned long long)(act + 1));     /* floor(log2(act + 1)) */
        activity = activity < WIMG_ACTIVITY - 1 ? activity : WIMG_ACTIVITY - 1;
        /* the predictions' errors at the neighbours W, N, NW, NE, and the corrected MED's miss there (x2 at W
           and N) and at the channel before */
        const i64 lags[4] = {C, S, S + C, S - C}, columns[4] = {x - 1, x, x - 1, x + 1}, weights[4] = {2, 2, 1, 1};
        i64 sums[WIMG_PREDICTORS] = {0}, count = 0, energy = 0, parts = 0, np[WIMG_PREDICTORS], known;
        for (int g = 0; g < 4; g++) {
            const i64 v = 16 * pixel_byte(s, l, t, lags[g], own, own_width, history, n, &known);
            if (!known || columns[g] < 0 || columns[g] > last) continue;
            weighted_predictions(s, l, t, lags[g], columns[g], ch, own, own_width, history, n, np);
            for (int k = 0; k < WIMG_PREDICTORS; k++) sums[k] += abs64(v - np[k]);
            count++;
            energy += weights[g] * abs64(v - np[WIMG_SPATIAL + WIMG_MED]);
            parts += weights[g];
        }
        if (has_u && !(parts && !energy)) {         /* not where the neighbours were all met exactly */
            weighted_predictions(s, l, t, 1, x, ch - 1, own, own_width, history, n, np);
            energy += 2 * abs64(16 * u - np[WIMG_SPATIAL + WIMG_MED]);
            parts += 2;
        }
        const i64 ctx = (l * C + ch) * WIMG_ACTIVITY + activity;
        const i64 *err = s->error + ctx * WIMG_PREDICTORS;
        i64 e[WIMG_PREDICTORS];
        for (int k = 0; k < WIMG_PREDICTORS; k++) {
            const i64 in_context = err[k] >> WIMG_FRACTION;
            e[k] = k >= WIMG_SPATIAL && !has_u ? (i64)1 << 20 : count ? (in_context + sums[k] / count) >> 1 : in_context;
        }
        const i64 guess = blended_guess(preds, e, WIMG_PREDICTORS);
        const i64 bias = (s->bias[ctx] + (1 << WIMG_FRACTION) / 2) >> WIMG_FRACTION;
        const i64 in_context = s->scale[ctx] >> WIMG_FRACTION, least = parts && !energy ? WIMG_EXACT_SCALE : IMG_MIN_SCALE;
        const i64 scale = parts ? (in_context + energy / parts) >> 1 : in_context;
        pixel_distribution(s, l, guess, active, ch, activity, clip64(guess + bias, 0, 16 * 255),
                           scale > least ? scale : least, p + l * 256);
        active_out[l] = active;
    }
}
