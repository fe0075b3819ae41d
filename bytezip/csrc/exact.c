/* ---- the exact local model's step (exact.Stepper): the same IEEE operations as exact.py, in its order ---- */

#include <math.h>
#include <stdlib.h>

typedef struct {                   /* exact.ExactLinear */
    const float *wq;               /* [K, N] int8 values */
    const float *ws;               /* [N] row scales */
    i64 K, N, norm;                /* norm: an RMS norm folded in */
    const int8_t *w8;              /* [ceil(K / 4), N, 4]: wq as bytes, 4 values of k per column together */
    const int32_t *w8_sum;         /* [N] 128 x the sum of column j of wq */
} Linear;

typedef struct { Linear qkv, proj, fc, out; } Block;

enum { MAX_LAYERS = 8, ROW_BLOCK = 64, QUERY_BLOCK = 32 };


typedef struct {                   /* exact.ExactAttention's shape and softmax table */
    i64 n_heads, n_kv, dh;
    const double *att_table;       /* [att_len + 1] */
    i64 att_len;
    double score_to_index;
} Attn;

typedef struct {                   /* a stack of exact.ExactBlock */
    i64 d, n_layers;
    Block blocks[MAX_LAYERS];
    Attn attn;
} Stack;

typedef struct {
    Stack stack;
    i64 P;
    const float *emb;              /* [257, d] */
    const float *pos;              /* [P, d] */
    Linear head;                   /* with the final norm folded in */
    const i64 *out_table;          /* [out_len + 1] */
    i64 out_len;
    float out_steps;
} LocalModel;

typedef struct {
    Stack stack;
    i64 P;
    const float *emb;              /* [256, d / P] */
    const float *start;            /* [d] in place of the first patch's embedding */
    const float *pos;              /* [max_patches, d] */
    const float *norm;             /* [d] */
    Linear to_local;               /* [d / P] -> [dl] */
} GlobalModel;

void matmul_exact(const float *q, const float *wq, float *y, i64 B, i64 K, i64 N);
static void matmul_int8(const uint8_t *a, const int8_t *w, const int32_t *w_sum, float *y, i64 B, i64 K4, i64 N);

/* y [B, N] = ExactLinear(x [B, K]); q [B, K] and s [B] are scratch */
INLINE void exact_linear(const Linear *lin, i64 B, const float *x, float *y, float *q, float *s) {
    const i64 K = lin->K, N = lin->N, K4 = (K + 3) / 4;
    const int int8 = use_int8 && lin->w8 && N % 16 == 0;
    uint8_t *a = (uint8_t *)q;                          /* [B, 4 K4] the int8 values + 128, when int8 */
    const float inv_one = (float)(1.0 / 127.0), inv_k = (float)(1.0 / (double)K), eps = (float)1e-6;
    float row[int8 ? K : 1];                            /* a row's int8 values, before they become bytes */
    for (i64 b = 0; b < B; b++) {
        const float *xb = x + b * K;
        float *qb = int8 ? row : q + b * K, amax = abs_max_f32(xb, K);
        amax = amax < 0x1p-60f ? 0x1p-60f : amax;
        const float mul = 127.0f * (1.0f / amax);
        for (i64 k = 0; k < K; k++) {
            float v = rintf(xb[k] * mul);
            qb[k] = v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v;
        }
        if (int8) {
            uint8_t *ab = a + b * 4 * K4;
            for (i64 k = 0; k < K; k++) ab[k] = (uint8_t)((int)qb[k] + 128);
            for (i64 k = K; k < 4 * K4; k++) ab[k] = 128;  /* (zero) against the zero padding of w8 */
        }
        float sb = amax * inv_one;
        if (lin->norm) {
            const float ss = integer_squares_f32(qb, K) * inv_k;
            sb = sb * (1.0f / sqrtf(ss * (sb * sb) + eps));
        }
        s[b] = sb;
    }
    if (int8)
        matmul_int8(a, lin->w8, lin->w8_sum, y, B, K4, N);
    else
        matmul_exact(q, lin->wq, y, B, K, N);
    for (i64 b = 0; b < B; b++)
        for (i64 j = 0; j < N; j++) y[b * N + j] = (y[b * N + j] * s[b]) * lin->ws[j];
}

void attention_dots(const double *q, const float *keys, i64 n, i64 dh, i64 rep, double *dots);
void attention_dots_tiled(const double *q, const double *kt, i64 rows, i64 rep, i64 first, i64 n, i64 dh,
                          double *dots);
void attention_sum(const double *w, i64 stride, const float *vals, i64 n, i64 dh, i64 rep, double *num);
void attention_sum_tiled(const double *w, i64 stride, const double *vd, i64 rows, i64 rep, i64 first, i64 dh,
                         double *num);

/* the softmax weights of one query's dots dr [n] (integers), in their place: att_table[floor(the distance
   below the row's max x to_index)], and their sum (integers below 2^25: exact in any order) */
#ifdef HAVE_X86
AVX512 static double softmax_weights_avx512(const Attn *a, double *dr, i64 n, double dmax, double to_index) {
    const __m512d top = _mm512_set1_pd(dmax), scale = _mm512_set1_pd(to_index), last = _mm512_set1_pd((double)a->att_len);
    __m512d sum = _mm512_setzero_pd();
    for (i64 j = 0; j < n; j += 8) {
        const __mmask8 in = n - j >= 8 ? 0xFF : (__mmask8)((1u << (n - j)) - 1);
        __m512d below = _mm512_mul_pd(_mm512_sub_pd(top, _mm512_maskz_loadu_pd(in, dr + j)), scale);
        below = _mm512_min_pd(below, last);                    /* below > last ? last : below (never NaN) */
        const __m512d w = _mm512_mask_i64gather_pd(_mm512_setzero_pd(), in, _mm512_cvttpd_epi64(below),
                                                   a->att_table, 8);
        _mm512_mask_storeu_pd(dr + j, in, w);
        sum = _mm512_add_pd(sum, w);
    }
    return _mm512_reduce_add_pd(sum);
}

/* the same with AVX2, 4 at a time, the rest (n % 4) as the scalar loop below */
AVX2 static double softmax_weights_avx2(const Attn *a, double *dr, i64 n, double dmax, double to_index, i64 *done) {
    const __m256d top = _mm256_set1_pd(dmax), scale = _mm256_set1_pd(to_index), last = _mm256_set1_pd((double)a->att_len);
    __m256d sum = _mm256_setzero_pd();
    i64 j = 0;
    for (; j + 4 <= n; j += 4) {
        __m256d below = _mm256_mul_pd(_mm256_sub_pd(top, _mm256_loadu_pd(dr + j)), scale);
        below = _mm256_min_pd(below, last);                    /* below > last ? last : below (never NaN) */
        const __m256d w = _mm256_i32gather_pd(a->att_table, _mm256_cvttpd_epi32(below), 8);
        _mm256_storeu_pd(dr + j, w);
        sum = _mm256_add_pd(sum, w);
    }
    double s[4];
    _mm256_storeu_pd(s, sum);
    *done = j;
    return (s[0] + s[1]) + (s[2] + s[3]);
}
#endif

INLINE double softmax_weights(const Attn *a, double *dr, i64 n, double to_index) {
    const double dmax = max_f64(dr, n);
    double sum = 0.0;
    i64 j = 0;
#ifdef HAVE_X86
    if (use_avx512) return softmax_weights_avx512(a, dr, n, dmax, to_index);
    if (use_avx2) sum = softmax_weights_avx2(a, dr, n, dmax, to_index, &j);
#endif
    for (; j < n; j++) {
        double below = (dmax - dr[j]) * to_index;
        below = below > (double)a->att_len ? (double)a->att_len : below;
        dr[j] = a->att_table[(i64)below];
        sum += dr[j];
    }
    return sum;
}

/* exact.ExactAttention: T queries per lane at positions start .. start + T - 1, each attending to the cached
   positions before it and to itself; qkv [B, T, (H + 2 Hk) dh] float32; writes the keys and values of these
   positions (fixed point: integers below 2^21, exact in float32) into kc, vc [B, Hk, cache_len, dh], and
   the output into y [B, T, H dh]. Returns 0, or -1 when out of memory. */
INLINE int attention(const Attn *a, i64 B, i64 T, i64 start, const float *qkv, float *kc, float *vc,
                     i64 cache_len, float *y) {
    const i64 H = a->n_heads, Hk = a->n_kv, dh = a->dh, rep = H / Hk, width = (H + 2 * Hk) * dh;
    const i64 qb = T < QUERY_BLOCK ? T : QUERY_BLOCK, span = start + T;     /* queries per block, longest row */
    double *qd = malloc(sizeof(double) * qb * rep * dh), *dots = malloc(sizeof(double) * qb * rep * span),
           *num = malloc(sizeof(double) * qb * rep * dh), *to_index = malloc(sizeof(double) * qb * rep),
           *wsum = malloc(sizeof(double) * qb * rep);
    double *kt = T > 1 ? malloc(sizeof(double) * 16 * dh * ((span + 15) / 16)) : NULL,
           *vd = T > 1 ? malloc(sizeof(double) * dh * span) : NULL;
    if (!qd || !dots || !num || !to_index || !wsum || (T > 1 && (!kt || !vd))) {
        free(qd); free(dots); free(num); free(to_index); free(wsum); free(kt); free(vd);
        return -1;
    }
    for (i64 b = 0; b < B; b++) {
        for (i64 i = 0; i < T; i++) {                        /* this lane's new keys and values, fixed point */
            const float *row = qkv + (b * T + i) * width;
            for (i64 hk = 0; hk < Hk; hk++) {
                float *kk = kc + ((b * Hk + hk) * cache_len + start + i) * dh;
                float *vv = vc + ((b * Hk + hk) * cache_len + start + i) * dh;
                for (i64 e = 0; e < dh; e++) {
                    double k = rint((double)row[(H + hk) * dh + e] * 8192.0);
                    double v = rint((double)row[(H + Hk + hk) * dh + e] * 8192.0);
                    kk[e] = (float)(k < -1048576.0 ? -1048576.0 : k > 1048576.0 ? 1048576.0 : k);
                    vv[e] = (float)(v < -1048576.0 ? -1048576.0 : v > 1048576.0 ? 1048576.0 : v);
                }
            }
        }
        for (i64 hk = 0; hk < Hk; hk++) {
            const float *keys = kc + (b * Hk + hk) * cache_len * dh, *vals = vc + (b * Hk + hk) * cache_len * dh;
            if (T > 1) {         /* every key as doubles in tiles [dh, 16], and every value, once for all queries */
                for (i64 j0 = 0; j0 < span; j0 += 16)
                    for (i64 e = 0; e < dh; e++)
                        for (i64 u = 0; u < 16; u++)
                            kt[(j0 * dh) + e * 16 + u] = j0 + u < span ? (double)keys[(j0 + u) * dh + e] : 0.0;
                for (i64 e = 0; e < span * dh; e++) vd[e] = (double)vals[e];
            }
            for (i64 i0 = 0; i0 < T; i0 += qb) {
                const i64 nb = T - i0 < qb ? T - i0 : qb, stride = start + i0 + nb;   /* dots row length */
                for (i64 i = 0; i < nb; i++)
                    for (i64 r = 0; r < rep; r++) {        /* the query heads sharing this key head */
                        const float *qr = qkv + (b * T + i0 + i) * width + (hk * rep + r) * dh;
                        double *q = qd + (i * rep + r) * dh, amax = 0.0;
                        for (i64 e = 0; e < dh; e++) q[e] = (double)qr[e];
                        amax = abs_max_f64(q, dh);
                        amax = amax < 0x1p-60 ? 0x1p-60 : amax;
                        const double mul = 32768.0 * (1.0 / amax);
                        to_index[i * rep + r] = (amax * (1.0 / 32768.0)) * a->score_to_index;
                        for (i64 e = 0; e < dh; e++) {
                            double v = rint(q[e] * mul);
                            q[e] = v < -32768.0 ? -32768.0 : v > 32768.0 ? 32768.0 : v;
                        }
                    }
                /* dots [nb * rep, stride]: query row i sees keys 0 .. start + i0 + i */
                if (nb == 1)
                    attention_dots(qd, keys, stride, dh, rep, dots);
                else
                    attention_dots_tiled(qd, kt, nb * rep, rep, start + i0, stride, dh, dots);
                for (i64 i = 0; i < nb; i++) {                  /* the softmax weights, in place of the dots */
                    const i64 n = start + i0 + i + 1;
                    for (i64 r = 0; r < rep; r++) {
                        double *dr = dots + (i * rep + r) * stride;
                        wsum[i * rep + r] = softmax_weights(a, dr, n, to_index[i * rep + r]);
                        for (i64 j = n; j < stride; j++) dr[j] = 0.0;      /* keys after this query */
                    }
                }
                if (nb > 1 && dh % 8 == 0)
                    attention_sum_tiled(dots, stride, vd, nb * rep, rep, start + i0, dh, num);
                else
                    for (i64 i = 0; i < nb; i++)
                        attention_sum(dots + i * rep * stride, stride, vals, start + i0 + i + 1, dh, rep,
                                      num + i * rep * dh);
                for (i64 i = 0; i < nb; i++)
                    for (i64 r = 0; r < rep; r++) {
                        const double scale = (1.0 / wsum[i * rep + r]) * (1.0 / 8192.0);
                        const double *nr = num + (i * rep + r) * dh;
                        float *out = y + (b * T + i0 + i) * H * dh + (hk * rep + r) * dh;
                        for (i64 e = 0; e < dh; e++) out[e] = (float)(nr[e] * scale);
                    }
            }
        }
    }
    free(qd); free(dots); free(num); free(to_index); free(wsum); free(kt); free(vd);
    return 0;
}

VECTOR_CLONES int attention_forward(const Attn *a, i64 B, i64 T, i64 start, const float *qkv, float *kc,
                                    float *vc, i64 cache_len, float *y) {
    return attention(a, B, T, start, qkv, kc, vc, cache_len, y);
}

INLINE void relu_square(float *t, i64 n) {          /* torch.relu(t).square() */
    for (i64 i = 0; i < n; i++) {
        float r = t[i] > 0.0f ? t[i] : 0.0f;
        t[i] = r * r;
    }
}

/* y [rows, N] = ExactLinear(x [rows, K]) for the parallel forward, ROW_BLOCK rows at a time (bounded
   scratch). Returns 0, or -1 when out of memory. */
VECTOR_CLONES int linear_forward(const Linear *lin, i64 rows, const float *x, float *y) {
    float *q = malloc(sizeof(float) * ROW_BLOCK * lin->K), *s = malloc(sizeof(float) * ROW_BLOCK);
    if (q && s)
        for (i64 r = 0; r < rows; r += ROW_BLOCK) {
            const i64 n = rows - r < ROW_BLOCK ? rows - r : ROW_BLOCK;
            exact_linear(lin, n, x + r * lin->K, y + r * lin->N, q, s);
        }
    free(q); free(s);
    return q && s ? 0 : -1;
}

/* y [rows, d] = out(relu(fc(x))^2) for x [rows, d] (exact.ExactBlock's MLP, parallel forward), ROW_BLOCK
   rows at a time. Returns 0, or -1 when out of memory. */
VECTOR_CLONES int mlp_forward(const Block *blk, i64 rows, const float *x, float *y) {
    const i64 d = blk->fc.K, hidden = blk->fc.N;
    float *h = malloc(sizeof(float) * ROW_BLOCK * hidden), *q = malloc(sizeof(float) * ROW_BLOCK * hidden),
          *s = malloc(sizeof(float) * ROW_BLOCK);
    if (h && q && s)
        for (i64 r = 0; r < rows; r += ROW_BLOCK) {
            const i64 n = rows - r < ROW_BLOCK ? rows - r : ROW_BLOCK;
            exact_linear(&blk->fc, n, x + r * d, h, q, s);
            relu_square(h, n * hidden);
            exact_linear(&blk->out, n, h, y + r * d, q, s);
        }
    free(h); free(q); free(s);
    return h && q && s ? 0 : -1;
}

#ifdef HAVE_X86
/* one row of logits_to_frequencies with AVX2, 8 at a time: the same operations (rintf rounds to nearest even, as
   _MM_FROUND_TO_NEAREST_INT; the max of numbers is the same in any order, and mx - lg[k] the same for either
   zero) */
AVX2 static void frequencies_row_avx2(const LocalModel *m, const float *lg, i64 *freqs) {
    __m256 top = _mm256_loadu_ps(lg);
    for (int k = 8; k < 256; k += 8) top = _mm256_max_ps(top, _mm256_loadu_ps(lg + k));
    top = _mm256_max_ps(top, _mm256_permute2f128_ps(top, top, 1));
    top = _mm256_max_ps(top, _mm256_permute_ps(top, 0x4E));
    top = _mm256_max_ps(top, _mm256_permute_ps(top, 0xB1));
    const __m256 steps = _mm256_set1_ps(m->out_steps), last = _mm256_set1_ps((float)m->out_len);
    for (int k = 0; k < 256; k += 8) {
        __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_sub_ps(top, _mm256_loadu_ps(lg + k)), steps),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256i at = _mm256_cvttps_epi32(_mm256_min_ps(v, last));
        const long long *table = (const long long *)m->out_table;
        _mm256_storeu_si256((__m256i *)(freqs + k), _mm256_i32gather_epi64(table, _mm256_castsi256_si128(at), 8));
        _mm256_storeu_si256((__m256i *)(freqs + k + 4),
                            _mm256_i32gather_epi64(table, _mm256_extracti128_si256(at, 1), 8));
    }
}
#endif

/* exact.ExactMegabyte._frequencies after the head: logits [rows, 256] -> integer frequencies [rows, 256] */
INLINE void logits_to_frequencies(const LocalModel *m, i64 rows, const float *logits, i64 *freqs) {
    for (i64 b = 0; b < rows; b++) {
        const float *lg = logits + b * 256;
#ifdef HAVE_X86
        if (use_avx2) {
            frequencies_row_avx2(m, lg, freqs + b * 256);
            continue;
        }
#endif
        float mx = lg[0];
        for (int k = 1; k < 256; k++) mx = MAX(mx, lg[k]);
        for (int k = 0; k < 256; k++) {
            float v = rintf((mx - lg[k]) * m->out_steps);
            v = v > (float)m->out_len ? (float)m->out_len : v;
            freqs[b * 256 + k] = m->out_table[(i64)v];
        }
    }
}

/* the next-byte frequencies [rows, 256] of final local states z [rows, d] (parallel forward) */
VECTOR_CLONES int head_frequencies(const LocalModel *m, i64 rows, const float *z, i64 *freqs) {
    float *logits = malloc(sizeof(float) * ROW_BLOCK * 256), *q = malloc(sizeof(float) * ROW_BLOCK * m->head.K),
          *s = malloc(sizeof(float) * ROW_BLOCK);
    if (logits && q && s)
        for (i64 r = 0; r < rows; r += ROW_BLOCK) {
            const i64 n = rows - r < ROW_BLOCK ? rows - r : ROW_BLOCK;
            exact_linear(&m->head, n, z + r * m->head.K, logits, q, s);
            logits_to_frequencies(m, n, logits, freqs + r * 256);
        }
    free(q); free(s); free(logits);
    return logits && q && s ? 0 : -1;
}

/* x [B, d] += the blocks of `st` at position `start` (one query per lane), with their KV caches
   (k_caches[l], v_caches[l]: [B, n_kv, cache_len, dh]). Returns 0, or -1 when out of memory. */
INLINE int run_blocks(const Stack *st, i64 B, i64 start, float *x, float **k_caches, float **v_caches,
                      i64 cache_len) {
    const i64 d = st->d, hidden = st->blocks[0].fc.N, qkv_n = st->blocks[0].qkv.N;
    const i64 widest = hidden > qkv_n ? hidden : qkv_n;
    float *t = malloc(sizeof(float) * B * widest), *u = malloc(sizeof(float) * B * d),
          *q = malloc(sizeof(float) * B * widest), *s = malloc(sizeof(float) * B);
    int failed = !t || !u || !q || !s;
    for (i64 l = 0; l < st->n_layers && !failed; l++) {
        const Block *blk = &st->blocks[l];
        exact_linear(&blk->qkv, B, x, t, q, s);
        failed = attention(&st->attn, B, 1, start, t, k_caches[l], v_caches[l], cache_len, u);
        exact_linear(&blk->proj, B, u, t, q, s);
        for (i64 i = 0; i < B * d; i++) x[i] = x[i] + t[i];
        exact_linear(&blk->fc, B, x, t, q, s);
        relu_square(t, B * hidden);
        exact_linear(&blk->out, B, t, u, q, s);
        for (i64 i = 0; i < B * d; i++) x[i] = x[i] + u[i];
    }
    free(t); free(u); free(q); free(s);
    return failed ? -1 : 0;
}

/* One local step for B lanes at byte p of their patches: prev [B] (256 at a patch start), g [B, P, d] the
   global model's conditioning; writes the local KV caches ([B, n_kv, P, dh] per layer) and the next-byte
   frequencies [B, 256]. Returns 0, or -1 when out of memory. */
VECTOR_CLONES int local_step(const LocalModel *m, i64 B, i64 p, const i64 *prev, const float *g, float **k_caches,
                             float **v_caches, i64 *freqs) {
    const i64 d = m->stack.d;
    float *x = malloc(sizeof(float) * B * d), *t = malloc(sizeof(float) * B * 256),
          *q = malloc(sizeof(float) * B * d), *s = malloc(sizeof(float) * B);
    int failed = !x || !t || !q || !s;
    if (!failed) {
        for (i64 b = 0; b < B; b++)
            for (i64 i = 0; i < d; i++)
                x[b * d + i] = (m->emb[prev[b] * d + i] + m->pos[p * d + i]) + g[(b * m->P + p) * d + i];
        failed = run_blocks(&m->stack, B, p, x, k_caches, v_caches, m->P);
    }
    if (!failed) {
        exact_linear(&m->head, B, x, t, q, s);
        logits_to_frequencies(m, B, t, freqs);
    }
    free(x); free(t); free(q); free(s);
    return failed ? -1 : 0;
}

/* exact.rms_norm of one row x [K] into out: the sum of squares of 20-bit integers, in float64 */
INLINE void rms_norm_row(const float *x, const float *gain, i64 K, float *out) {
    double amax = 0.0, ss = 0.0;
    for (i64 k = 0; k < K; k++) amax = MAX(amax, fabs((double)x[k]));
    amax = amax < 0x1p-60 ? 0x1p-60 : amax;
    const double mul = 1048576.0 * (1.0 / amax), scale = amax * (1.0 / 1048576.0);
    for (i64 k = 0; k < K; k++) {
        double v = rint((double)x[k] * mul);
        v = v < -1048576.0 ? -1048576.0 : v > 1048576.0 ? 1048576.0 : v;
        ss += v * v;                                   /* below 2^53: exact */
    }
    const double rms = scale * sqrt(ss * (1.0 / (double)K));
    const float inv = (float)(1.0 / sqrt(rms * rms + 1e-6));
    for (i64 k = 0; k < K; k++) out[k] = (x[k] * inv) * gain[k];
}

/* One global step for B lanes at patch k: patch [B, P] the bytes of the patch before (ignored at k = 0);
   writes the global KV caches ([B, n_kv, cache_len, dh] per layer) and the local conditioning g [B, P, dl].
   Returns 0, or -1 when out of memory. */
VECTOR_CLONES int global_step(const GlobalModel *m, i64 B, i64 k, const i64 *patch, float **k_caches,
                              float **v_caches, i64 cache_len, float *g) {
    const i64 d = m->stack.d, P = m->P, e = d / P;
    float *h = malloc(sizeof(float) * B * d), *n = malloc(sizeof(float) * B * d),
          *q = malloc(sizeof(float) * B * d), *s = malloc(sizeof(float) * B * P);
    int failed = !h || !n || !q || !s;
    if (!failed) {
        for (i64 b = 0; b < B; b++)
            for (i64 i = 0; i < d; i++) {
                float v = k == 0 ? m->start[i] : m->emb[patch[b * P + i / e] * e + i % e];
                h[b * d + i] = v + m->pos[k * d + i];
            }
        failed = run_blocks(&m->stack, B, k, h, k_caches, v_caches, cache_len);
    }
    if (!failed) {
        for (i64 b = 0; b < B; b++) rms_norm_row(h + b * d, m->norm, d, n + b * d);
        exact_linear(&m->to_local, B * P, n, g, q, s);       /* the normed row as P rows of d / P */
    }
    free(h); free(n); free(q); free(s);
    return failed ? -1 : 0;
}


