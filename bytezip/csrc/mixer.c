/* ---- the mixer's wiring (`mixing.Mixer`, its numpy twin): each step, for every lane, the inputs the
   declaration lists (`Input`, in its order) are computed into rows of `inputs`, mixed linearly with the
   weight set of the lane's match bucket and byte kind and, where no signal predictor runs, blended with two
   geometric mixes; after the byte is coded every weight set, and each input, learns from it. A new input
   kind is a case in `input_row` and `input_update`, its code in its own file. ---- */

/* out[k] = log2[clamp(in[k], 1, ONE)] for 256 integer inputs below 2^31, gathered 16 at a time where AVX-512 is */
#ifdef HAVE_X86
AVX512 static void log2_row_avx512(const int32_t *log2, const double *in, double *out) {
    const __m512i lo = _mm512_set1_epi32(1), hi = _mm512_set1_epi32(ONE);
    for (int k = 0; k < 256; k += 16) {
        const __m256i a = _mm512_cvttpd_epi32(_mm512_loadu_pd(in + k));
        const __m256i b = _mm512_cvttpd_epi32(_mm512_loadu_pd(in + k + 8));
        __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
        idx = _mm512_min_epi32(_mm512_max_epi32(idx, lo), hi);
        const __m512i v = _mm512_i32gather_epi32(idx, log2, 4);
        _mm512_storeu_pd(out + k, _mm512_cvtepi32_pd(_mm512_castsi512_si256(v)));
        _mm512_storeu_pd(out + k + 8, _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(v, 1)));
    }
}

/* exp2_row with AVX-512: z holds integers below 2^53 */
AVX512 static i64 exp2_row_avx512(const i64 *exp2, const double *z, i64 zmax, double *q) {
    const __m512i top = _mm512_set1_epi64(zmax), range = _mm512_set1_epi64(EXP_RANGE);
    __m512i sum = _mm512_setzero_si512();
    for (int k = 0; k < 256; k += 8) {
        __m512i d = _mm512_srai_epi64(_mm512_sub_epi64(top, _mm512_cvttpd_epi64(_mm512_loadu_pd(z + k))), 16);
        const __m512i v = _mm512_i64gather_epi64(_mm512_min_epi64(d, range), exp2, 8);
        _mm512_storeu_pd(q + k, _mm512_cvtepi64_pd(v));
        sum = _mm512_add_epi64(sum, v);
    }
    return _mm512_reduce_add_epi64(sum);
}

/* log2_row and exp2_row with AVX2 (GCC does not gather by itself there): 4 doubles at a time. In exp2_row_avx2
   the shift is a floor of a product by 2^-16, in doubles: zmax - z[k] is an integer below 2^38 (|z| < 2^37:
   at most 32 inputs of weight below 2^20 times a log2 below 2^12), so every step is exact, and the table's
   values (below 2^17) become doubles by the exponent trick: the bits of 2^52 + v, less 2^52 */
AVX2 static void log2_row_avx2(const int32_t *log2, const double *in, double *out) {
    const __m256d lo = _mm256_set1_pd(1.0), hi = _mm256_set1_pd((double)ONE);
    for (int k = 0; k < 256; k += 4) {
        const __m256d v = _mm256_min_pd(_mm256_max_pd(_mm256_loadu_pd(in + k), lo), hi);
        _mm256_storeu_pd(out + k, _mm256_cvtepi32_pd(_mm_i32gather_epi32(log2, _mm256_cvttpd_epi32(v), 4)));
    }
}

AVX2 static i64 exp2_row_avx2(const i64 *exp2, const double *z, i64 zmax, double *q) {
    const __m256d top = _mm256_set1_pd((double)zmax), scale = _mm256_set1_pd(0x1p-16),
                  range = _mm256_set1_pd((double)EXP_RANGE), two52 = _mm256_set1_pd(0x1p52);
    const __m256i two52_bits = _mm256_castpd_si256(two52);
    __m256i sum = _mm256_setzero_si256();
    for (int k = 0; k < 256; k += 4) {
        const __m256d d = _mm256_min_pd(_mm256_floor_pd(_mm256_mul_pd(_mm256_sub_pd(top, _mm256_loadu_pd(z + k)),
                                                                      scale)), range);
        const __m256i v = _mm256_i32gather_epi64((const long long *)exp2, _mm256_cvttpd_epi32(d), 8);
        _mm256_storeu_pd(q + k, _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(v, two52_bits)), two52));
        sum = _mm256_add_epi64(sum, v);
    }
    i64 lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, sum);
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}
#endif

INLINE i64 log2_of(const int32_t *log2, i64 v) { return log2[v < 1 ? 1 : v > ONE ? ONE : v]; }

INLINE void log2_row(const int32_t *log2, const double *in, double *out) {
#ifdef HAVE_X86
    if (use_avx512) {
        log2_row_avx512(log2, in, out);
        return;
    }
    if (use_avx2) {
        log2_row_avx2(log2, in, out);
        return;
    }
#endif
    for (int k = 0; k < 256; k++) out[k] = (double)log2_of(log2, (i64)in[k]);
}

/* q[k] = exp2[min((zmax - z[k]) >> 16, EXP_RANGE)] (the unnormalised geometric mix); returns the sum of q */
INLINE i64 exp2_row(const i64 *exp2, const double *z, i64 zmax, double *q) {
#ifdef HAVE_X86
    if (use_avx512) return exp2_row_avx512(exp2, z, zmax, q);
    if (use_avx2) return exp2_row_avx2(exp2, z, zmax, q);
#endif
    i64 qs = 0;
    for (int k = 0; k < 256; k++) {
        i64 d = (zmax - (i64)z[k]) >> 16;
        q[k] = (double)exp2[d < EXP_RANGE ? d : EXP_RANGE];
        qs += (i64)q[k];
    }
    return qs;
}

/* what the context models of one lane blend on: the neural distribution, the order under the next context
   model of each kind (and which input's row each is: the first input of the same row, `root` below), and the
   dictionary's orders (blended upwards as the history's are read) */
typedef struct {
    const double *neural, *own, *shared;
    i64 neural_i, own_i, shared_i;
    double prior[256];
} Below;

/* lane l's distribution of input s (the i-th) into p [256]; nn: its neural frequencies, own / shared: its context
   rows. Returns the first input whose row p is, by construction, bit for bit (i itself, or for a context that
   is unseen or off the input it was blended on: its row is copied from there): the mixes add such rows once,
   with the sum of their weights, which is exact (integer products and sums below 2^53) */
INLINE i64 input_row(const Mixer *m, const Input *s, i64 i, i64 l, i64 bucket, const i64 *nn,
                     const i64 *const *external, const i64 *own, const i64 *shared, const i64 *root, Below *below,
                     double *p) {
    switch (s->kind) {
    case KIND_NEURAL: {
        i64 sum = 0;
        for (int k = 0; k < 256; k++) sum += nn[k];
        const double inv = 1.0 / (double)sum, ds = (double)sum;
        for (int k = 0; k < 256; k++) p[k] = div_pos_f64((double)(nn[k] * ONE), ds, inv);
        below->neural = below->own = below->shared = p;
        below->neural_i = below->own_i = below->shared_i = i;
        return i;
    }
    case KIND_MATCH:
        match_input(m, s->arg, l, bucket, p);
        return i;
    case KIND_CHUNK_ORDER:
        if (m->own_orders[s->arg] >= SKIP_2_3)            /* not in the chain of orders: on the neural alone */
            return chunk_order_input(m, s->arg, l, own[s->arg], below->neural, p) ? i : root[below->neural_i];
        {
            const i64 r = chunk_order_input(m, s->arg, l, own[s->arg], below->own, p) ? i : root[below->own_i];
            below->own = p;
            below->own_i = i;
            return r;
        }
    case KIND_HISTORY_ORDER: {
        const int computed = history_order_input(m, s->arg, shared[s->arg], below->shared, below->neural,
                                                 below->prior, p);
        const i64 r = computed ? i : root[below->shared_i];
        below->shared = p;
        below->shared_i = i;
        return r;
    }
    case KIND_EXTERNAL:
        for (int k = 0; k < 256; k++) p[k] = (double)external[s->arg][l * 256 + k];
        return i;
    }
    return i;
}

/* each lane's neural frequencies nn[l] [256], the external inputs' distributions external[e] [L, 256] and
   wset_offset [L] (from the signal predictor, computed in Python) -> each lane's mixed frequencies out[l] [256]
   (each >= 1) */
INLINE void mix_lanes(Mixer *m, const i64 *const *nn_rows, i64 *const *out_rows, const i64 *const *external,
                      const i64 *wset_offset) {
    const i64 L = m->L, n = m->n_inputs;
    i64 rows[2][2 * MAX_ORDERS];                    /* this lane's context rows and the next one's */
    if (L) rows_and_prefetch(m, 0, rows[0], rows[0] + MAX_ORDERS);
    for (i64 l = 0; l < L; l++) {
        const i64 *own = rows[l & 1], *shared = own + MAX_ORDERS;
        if (l + 1 < L) rows_and_prefetch(m, l + 1, rows[(l + 1) & 1], rows[(l + 1) & 1] + MAX_ORDERS);
        double *in = m->inputs + l * n * 256;
        i64 *out = out_rows[l];
        const i64 bucket = match_prepare(m, l);
        m->bucket[l] = bucket;
        for (i64 k = 0; k < m->n_own; k++) m->rows[k * L + l] = own[k];
        const i64 wset = bucket + wset_offset[l];
        m->wset[l] = wset;
        Below below;
        i64 root[MAX_INPUTS];
        for (i64 i = 0; i < n; i++)
            root[i] = input_row(m, m->spec + i, i, l, bucket, nn_rows[l], external, own, shared, root, &below,
                                in + i * 256);
        /* sums of integer products below 2^40: exact in double whatever the order, and they vectorise; a row that
           repeats an earlier one is added once, with the sum of its weights (w a + w' a = (w + w') a exactly) */
        const i64 *w = m->weights + (l * N_SETS + wset) * n;
        i64 *mixed = m->mixed + l * 256;
        double acc[256] = {0};
        i64 wr[MAX_INPUTS] = {0};
        for (i64 i = 0; i < n; i++) wr[root[i]] += w[i];
        for (i64 i = 0; i < n; i++) {
            if (root[i] != i || !wr[i]) continue;
            const double wi = (double)wr[i], *row = in + i * 256;
            for (int k = 0; k < 256; k++) acc[k] += wi * row[k];
        }
        /* the tail in doubles, which vectorise: acc is a non-negative integer below 2^40, so acc >> 16 is
           floor(acc 2^-16) exactly; below, every product and sum is an integer below 2^35 */
        double md[256], gd[N_GEO][256];
        for (int k = 0; k < 256; k++) md[k] = __builtin_floor(acc[k] * 0x1p-16);
        integers_to_i64(md, mixed, 256);
        if (!m->geometric) {
            for (int k = 0; k < 256; k++) md[k] += 1.0;
            integers_to_i64(md, out, 256);
            continue;
        }
        /* an input that is the same for every byte (an external input without its predictor, a match model
           without a match) adds the same to every z[k] and learns a zero gradient: it is left out, exactly;
           `varies` lists the others for update() */
        double lp[MAX_INPUTS * 256];      /* log2 of the inputs that vary (integers), this lane's only, once a row */
        i64 *varies = m->varies + l * (n + 1), nv = 0;
        for (i64 i = 0; i < n; i++) {
            const Input *s = m->spec + i;
            if (s->flat || (s->kind == KIND_MATCH && !m->has[s->arg * L + l])) continue;
            varies[++nv] = i;
            if (root[i] == i) log2_row(m->log2, in + i * 256, lp + i * 256);
        }
        varies[0] = nv;
        /* both geometric mixes in one pass over the log rows: z[g][k] = sum over inputs of w[g][i] lp[i][k], a
           repeated row once with the sum of its weights (integers below 2^25; a root varies as its copies do) */
        _Static_assert(N_GEO == 2, "one weight per geometric mix below");
        const i64 gsets[N_GEO] = {bucket, N_BUCKETS * (1 + m->byte_class[prev(m, l, 1)]) + bucket};
        const i64 *gw[N_GEO];
        double z[N_GEO][256] = {{0}};
        i64 gr[N_GEO][MAX_INPUTS] = {{0}};
        for (int g = 0; g < N_GEO; g++) {
            m->gset[g * L + l] = gsets[g];
            gw[g] = m->geo_weights + (l * GEO_SETS + gsets[g]) * n;
            for (i64 v = 1; v <= nv; v++) gr[g][root[varies[v]]] += gw[g][varies[v]];
        }
        for (i64 v = 1; v <= nv; v++) {
            const i64 i = varies[v];
            if (root[i] != i) continue;
            const double *row = lp + i * 256, w0 = (double)gr[0][i], w1 = (double)gr[1][i];
            for (int k = 0; k < 256; k++) {
                z[0][k] += w0 * row[k];
                z[1][k] += w1 * row[k];
            }
        }
        for (int g = 0; g < N_GEO; g++) {
            double q[256];
            const i64 qs = exp2_row(m->exp2, z[g], (i64)max_f64(z[g], 256), q);
            m->q_sum[g * L + l] = qs;
            /* what update() needs of q and the log rows, while they are in cache: E_q[log2 input] x qs */
            double *expected = m->expected + (l * N_GEO + g) * n;
            for (i64 v = 1; v <= nv; v++) {                      /* roots first: a copy follows its root */
                const i64 i = varies[v];
                if (root[i] == i) expected[i] = exact_dot(lp + i * 256, q, 256);    /* < 2^37 */
            }
            for (i64 v = 1; v <= nv; v++) expected[varies[v]] = expected[root[varies[v]]];
            const double inv_q = 1.0 / (double)qs, dqs = (double)qs;
            for (int k = 0; k < 256; k++) gd[g][k] = div_pos_f64(q[k] * ONE, dqs, inv_q);   /* q ONE < 2^33 */
            integers_to_i64(gd[g], m->geo + (g * L + l) * 256, 256);
        }
        const i64 *b = m->blend + (l * N_BUCKETS + bucket) * (1 + N_GEO);
        const double b0 = (double)b[0], b1 = (double)b[1], b2 = (double)b[2];   /* each > 0 (BLEND_MIN) */
        for (int k = 0; k < 256; k++)
            md[k] = __builtin_floor((b0 * md[k] + b1 * gd[0][k] + b2 * gd[1][k]) * 0x1p-16) + 1.0;
        integers_to_i64(md, out, 256);
    }
}

/* neural [L, 256] -> out [L, 256] (the decoder's step); 0, or -1 when out of memory */
VECTOR_CLONES int mixer_mix(Mixer *m, const i64 *neural, const i64 *const *external, const i64 *wset_offset,
                            i64 *out) {
    const i64 **nn = malloc(sizeof(i64 *) * m->L);
    i64 **o = malloc(sizeof(i64 *) * m->L);
    if (nn && o) {
        for (i64 l = 0; l < m->L; l++) {
            nn[l] = neural + l * 256;
            o[l] = out + l * 256;
        }
        mix_lanes(m, nn, o, external, wset_offset);
    }
    free(nn); free(o);
    return nn && o ? 0 : -1;
}

/* the encoder's step at position t: lane l's frequencies are rows t of neural[l] [sizes[l], 256] and go to
   rows t of out[l] (a lane whose chunk has ended reads a row of ones and writes a scratch row) */
VECTOR_CLONES int mixer_mix_rows(Mixer *m, const i64 *const *neural, i64 *const *out, const i64 *const *external,
                                 const i64 *wset_offset) {
    const i64 **nn = malloc(sizeof(i64 *) * m->L);
    i64 **o = malloc(sizeof(i64 *) * m->L), *ones = malloc(sizeof(i64) * 512);
    if (nn && o && ones) {
        for (int k = 0; k < 256; k++) ones[k] = 1;
        for (i64 l = 0; l < m->L; l++) {
            const int inside = m->t < m->sizes[l];
            nn[l] = inside ? neural[l] + m->t * 256 : ones;
            o[l] = inside ? out[l] + m->t * 256 : ones + 256;
        }
        mix_lanes(m, nn, o, external, wset_offset);
    }
    free(nn); free(o); free(ones);
    return nn && o && ones ? 0 : -1;
}

/* bayes_update on one row of n weights */
INLINE void bayes_update(i64 *w, const i64 *p_x, const i64 *floor, i64 floor_all, i64 n, int shift) {
    i64 s = 0;
    for (i64 i = 0; i < n; i++) s += w[i] * p_x[i];
    i64 m_x = s >> 16;
    m_x = m_x > 1 ? m_x : 1;
    i64 total = 0;
    for (i64 i = 0; i < n; i++) {
        i64 f = floor ? floor[i] : floor_all;
        i64 v = w[i] + (floordiv(w[i] * (p_x[i] - m_x), m_x) >> shift);
        w[i] = v > f ? v : f;
        total += w[i];
    }
    for (i64 i = 0; i < n; i++) w[i] = w[i] * ONE / total;
}

/* learn from byte [L] each lane just coded (after mixer_mix at this position; external predictors are updated
   in Python), then advance */
VECTOR_CLONES void mixer_update(Mixer *m, const i64 *byte) {
    const i64 L = m->L, t = m->t, n = m->n_inputs;
    for (i64 l = 0; l < L; l++) {
        const i64 x = byte[l], bucket = m->bucket[l];
        const double *in = m->inputs + l * n * 256;
        i64 p_x[MAX_INPUTS];
        for (i64 i = 0; i < n; i++) p_x[i] = (i64)in[i * 256 + x];
        bayes_update(m->weights + (l * N_SETS + m->wset[l]) * n, p_x, m->floor, 0, n, W_SHIFT);
        if (m->geometric) {
            i64 mixes[1 + N_GEO] = {m->mixed[l * 256 + x]};
            for (int g = 0; g < N_GEO; g++) {
                const double *expected = m->expected + (l * N_GEO + g) * n;
                i64 qs = m->q_sum[g * L + l];
                i64 *gw = m->geo_weights + (l * GEO_SETS + m->gset[g * L + l]) * n;
                const i64 *varies = m->varies + l * (n + 1);
                for (i64 u = 1; u <= varies[0]; u++) {
                    const i64 i = varies[u];
                    i64 v = gw[i] + log2_of(m->log2, p_x[i]) - (i64)expected[i] / qs;   /* both >= 0 */
                    gw[i] = v < -GEO_W_MAX ? -GEO_W_MAX : v > GEO_W_MAX ? GEO_W_MAX : v;
                }
                mixes[1 + g] = m->geo[(g * L + l) * 256 + x];
            }
            bayes_update(m->blend + (l * N_BUCKETS + bucket) * (1 + N_GEO), mixes, NULL, BLEND_MIN, 1 + N_GEO,
                         BLEND_SHIFT);
        }
        for (i64 i = 0; i < n; i++) {
            const Input *s = m->spec + i;
            if (s->kind == KIND_MATCH) match_update(m, s->arg, l, x, bucket);
            else if (s->kind == KIND_CHUNK_ORDER) chunk_order_update(m, s->arg, l, x);
        }
        if (m->record) record_learn(m->record + l * RECORD_STATE, t, x);
        m->hist[l * m->width + t] = x;
    }
    m->t = t + 1;
    for (i64 l = 0; l < L; l++) {
        if (m->geometric && m->sizes[l] == m->t) {
            memcpy(m->final_geo + l * GEO_SETS * n, m->geo_weights + l * GEO_SETS * n, GEO_SETS * n * sizeof(i64));
            memcpy(m->final_blend + l * N_BUCKETS * (1 + N_GEO), m->blend + l * N_BUCKETS * (1 + N_GEO),
                   N_BUCKETS * (1 + N_GEO) * sizeof(i64));
        }
        i64 h = -1;                                  /* the history hash, shared by the matches that read it */
        for (i64 i = 0; i < n; i++)
            if (m->spec[i].kind == KIND_MATCH) match_find(m, m->spec[i].arg, l, &h);
    }
}
