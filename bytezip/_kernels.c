/* Compiled kernels of bytezip's coding loop, called through ctypes (bytezip/kernels.py).

   mixer_mix / mixer_update: one step of `mixing.Mixer` for all lanes, the same integer arithmetic as its
   numpy code (floor division and arithmetic shifts as numpy's // and >>).
   global_step / local_step: one patch / one byte of the exact model (`exact.Stepper`) for all lanes, and
   attention_forward the exact attention of the parallel forward: the same IEEE operations as the torch
   code in the same order (compiled without FMA contraction), and sums of integers as there.
   So archives are the same byte for byte whichever path codes them; tests/test_kernels.py compares them.

   Built by setuptools as an optional extension: where it cannot be built, bytezip runs the numpy code. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef int64_t i64;

/* the hot functions are compiled for AVX-512, AVX2 and the baseline, picked at load time; without FMA
   contraction (-ffp-contract=off) every clone computes the same IEEE results */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define VECTOR_CLONES_FMA __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#define VECTOR_CLONES_FMA
#endif
#define INLINE static inline __attribute__((always_inline))   /* into each clone, compiled for its target */
#define MAX(a, b) ((a) > (b) ? (a) : (b))  /* of numbers, never NaN: no libm call, and vectorised */
/* scratch rows are written before they are read, through loops GCC cannot count */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

/* what the CPU has beyond the baseline (detect_cpu sets them): AVX-512 for the mixer's table gathers, VNNI for
   the int8 products of the linear layers */
static int use_avx512 = 0, use_int8 = 0;
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define HAVE_X86 1
#define AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#endif

typedef float v16 __attribute__((vector_size(64)));   /* 16 floats: one AVX-512 register, or 2 or 4 narrower */
typedef double v8d __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef int64_t v8i __attribute__((vector_size(64)));

/* max |x[k]| (0 for none), a register of lanes at a time: |x| as bits, and non-negative floats order as their
   bits (GCC does not vectorise a floating-point max by itself) */
#define ABS_MAX(name, real, bits_t, vbits, lanes, sign_off, fabs_)                                        \
    INLINE real name(const real *x, i64 n) {                                                               \
        vbits m = {0};                                                                                     \
        i64 k = 0;                                                                                         \
        for (; k + lanes <= n; k += lanes) {                                                               \
            vbits v;                                                                                       \
            memcpy(&v, x + k, sizeof v);                                                                   \
            v &= sign_off;                                                                                 \
            const vbits gt = m > v;                                                                        \
            m = (m & gt) | (v & ~gt);                                                                      \
        }                                                                                                  \
        real r = 0;                                                                                        \
        for (int u = 0; u < lanes; u++) {                                                                  \
            real f;                                                                                        \
            memcpy(&f, (const bits_t *)&m + u, sizeof f);                                                  \
            r = MAX(r, f);                                                                                 \
        }                                                                                                  \
        for (; k < n; k++) r = MAX(r, fabs_(x[k]));                                                        \
        return r;                                                                                          \
    }
ABS_MAX(abs_max_f32, float, int32_t, v16i, 16, 0x7fffffff, fabsf)
ABS_MAX(abs_max_f64, double, int64_t, v8i, 8, 0x7fffffffffffffffLL, fabs)

/* max x[k] (-inf for none), 8 lanes at a time: doubles order as their bits when non-negative, reversed when
   negative (GCC does not vectorise a floating-point max by itself) */
INLINE double max_f64(const double *x, i64 n) {
    v8i m = {0};
    i64 j = 0;
    double r = -INFINITY;
    for (; j + 8 <= n; j += 8) {
        v8i v;
        memcpy(&v, x + j, sizeof v);
        v ^= (v < 0) & 0x7fffffffffffffffLL;
        const v8i gt = m > v;
        m = j == 0 ? v : (m & gt) | (v & ~gt);
    }
    for (int u = 0; u < 8 && j; u++) {
        i64 bits = m[u];
        bits = bits < 0 ? (bits ^ 0x7fffffffffffffffLL) : bits;
        double f;
        memcpy(&f, &bits, sizeof f);
        r = MAX(r, f);
    }
    for (; j < n; j++) r = MAX(r, x[j]);
    return r;
}

/* the sum of x[k]^2 where every x[k] is an integer and the sum below 2^24: exact in any order */
INLINE float integer_squares_f32(const float *x, i64 n) {
    v16 acc = {0};
    i64 k = 0;
    for (; k + 16 <= n; k += 16) {
        v16 v;
        memcpy(&v, x + k, sizeof v);
        acc += v * v;
    }
    float r = 0.0f;
    for (int u = 0; u < 16; u++) r += acc[u];
    for (; k < n; k++) r += x[k] * x[k];
    return r;
}

/* sum of a[i] b[i] where every partial sum is an integer below 2^53, so exact in any order: vector partial
   sums (the compiler may not reorder a floating-point sum by itself) */
INLINE double exact_dot(const double *a, const double *b, i64 n) {
    v8d acc[4] = {{0}};                                /* 4 sums in flight */
    i64 i = 0;
    for (; i + 32 <= n; i += 32)
        for (int u = 0; u < 4; u++) {
            v8d x, y;
            memcpy(&x, a + i + 8 * u, sizeof x);
            memcpy(&y, b + i + 8 * u, sizeof y);
            acc[u] += x * y;
        }
    for (; i + 8 <= n; i += 8) {
        v8d x, y;
        memcpy(&x, a + i, sizeof x);
        memcpy(&y, b + i, sizeof y);
        acc[0] += x * y;
    }
    acc[0] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    double sum = 0.0;
    for (int k = 0; k < 8; k++) sum += acc[0][k];
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

enum {
    ONE = 1 << 16, N_BUCKETS = 4, N_SETS = 16, N_MODELS = 14, N_MATCH = 3, N_GEO = 2, GEO_SETS = 36,
    N_OWN = 3, N_SHARED = 5, MATCH_MIN = 4, MATCH_BITS = 12, HISTORY_MATCH_MIN = 5, HISTORY_MATCH_BITS = 20,
    OWN_BITS = 10, SHARED_BITS = 16, W_SHIFT = 3, BLEND_SHIFT = 4, BLEND_MIN = ONE >> 5, EXP_RANGE = 16 * 256,
    GEO_W_MAX = 16 * ONE, PCM_INPUT = 11, IMAGE_INPUT = 12, DICTIONARY_MATCH = 13, HIT_HALVE = 1000,
};
static const i64 MUL = 0x2F0B3, MASK = 0xFFFFFF;
static const int OWN_ORDERS[N_OWN] = {1, 2, 3};
static const int SHARED_ORDERS[N_SHARED] = {1, 2, 3, 4, 6};

/* What the second and third match models and the shared context models read (a History, read only). */
typedef struct {
    const uint8_t *data;           /* [n] bytes of the history (NULL: no such source) */
    i64 n;
    const i64 *match_table;        /* [2^HISTORY_MATCH_BITS] */
    const uint16_t *counts[N_SHARED];  /* [rows, 256] per order */
} Source;

/* Every array of one Mixer (numpy-owned, C-contiguous), and the step's scratch that update() reads. */
typedef struct {
    i64 L, width, t, geometric, has_priors;
    i64 *hist;                     /* [L, width] bytes coded so far */
    const i64 *sizes;              /* [L] */
    i64 *match_table;              /* [L, 2^MATCH_BITS] */
    i64 *ptr, *len;                /* [N_MATCH, L] */
    i64 *hits, *tries;             /* [N_MATCH, L, N_BUCKETS] */
    int16_t *counts[N_OWN];        /* [L, rows, 256] */
    i64 *weights;                  /* [L, N_SETS, N_MODELS] */
    const i64 *floor;              /* [N_MODELS] */
    i64 *geo_weights;              /* [L, GEO_SETS, N_MODELS] */
    i64 *blend;                    /* [L, N_BUCKETS, 1 + N_GEO] */
    i64 *final_geo, *final_blend;  /* the same, as each lane's chunk ended */
    Source history, dict_match, priors;  /* match sources 1, 2 and the dictionary's counts (priors) */
    const int32_t *log2;           /* [ONE + 1] log2 table as int32 (gathered 16 at a time) */
    const i64 *exp2, *byte_class;
    /* scratch, written by mix, read by update */
    double *inputs;                /* [L, N_MODELS, 256] the inputs' distributions (integers below 2^33) */
    i64 *mixed;                    /* [L, 256] */
    double *expected;              /* [L, N_GEO, N_MODELS] sum over k of q[k] log2 input[k] (integers), per mix */
    i64 *q_sum, *geo;              /* [N_GEO, L] sum of the unnormalised geometric mix q, [N_GEO, L, 256] */
    i64 *varies;                   /* [L, 1 + N_MODELS]: how many inputs vary with the byte, and which */
    i64 *bucket, *wset, *gset;     /* [L], [L], [N_GEO, L] */
    i64 *has, *predicted, *rows;   /* [N_MATCH, L], [N_MATCH, L], [N_OWN, L] */
} Mixer;

INLINE i64 floordiv(i64 a, i64 b) {     /* numpy's // for b > 0 */
    i64 q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* a // d for 0 <= a < 2^52, 0 < d < 2^52, inv = 1.0 / d: the float estimate is within one of the quotient,
   and the remainder corrects it; all in doubles, exactly (every value an integer below 2^53), as integer
   division and 64-bit multiplies are the mixer's slowest instructions */
INLINE double div_pos_f64(double x, double dd, double inv) {     /* the same, of integers held as doubles */
    const double q = (double)(i64)(x * inv), r = x - q * dd;
    return q + (double)(r >= dd) - (double)(r < 0);
}

INLINE i64 div_pos(i64 a, i64 d, double inv) { return (i64)div_pos_f64((double)a, (double)d, inv); }

INLINE i64 prev(const Mixer *m, i64 lane, int j) {
    return m->t >= j ? m->hist[lane * m->width + m->t - j] : 0;
}

INLINE i64 hash_last(const Mixer *m, i64 lane, int n, int bits) {
    i64 h = 0;
    for (int j = 1; j <= n; j++) h = (h * MUL + prev(m, lane, j)) & MASK;
    return (h ^ (h >> bits)) & ((1 << bits) - 1);
}

/* context_rows: order 1 is the previous byte, higher orders a hash of the last k bytes */
INLINE void context_rows(const Mixer *m, i64 lane, const int *orders, int n_orders, int bits, i64 *out) {
    i64 h = 0;
    int k = 0;
    for (int j = 1; j <= orders[n_orders - 1]; j++) {
        i64 p = prev(m, lane, j);
        h = (h * MUL + p + 1) & MASK;
        if (j == orders[k]) out[k++] = j == 1 ? p : ((h ^ (h >> bits)) & ((1 << bits) - 1));
    }
}

/* one order of ppm_blend: (c ONE + escape below) // (sum c + escape), escape = max(distinct, 1), over int16
   (a lane's own) or uint16 (the history's) counts; the distributions are integers held as doubles (below
   2^33 here: exact) */
#define PPM_ORDER(name, count_t)                                                                          \
    INLINE void name(const count_t *c, const double *below, double *out) {                              \
        i64 sum = 0, distinct = 0;                                                                        \
        for (int k = 0; k < 256; k++) { sum += c[k]; distinct += c[k] > 0; }                              \
        if (sum == 0) {                                   /* an unseen context: (0 + 1 below) // 1 */     \
            memcpy(out, below, 256 * sizeof(double));                                                     \
            return;                                                                                       \
        }                                                                                                 \
        i64 esc = distinct > 0 ? distinct : 1, den = sum + esc;                                           \
        const double inv = 1.0 / (double)den, dd = (double)den, de = (double)esc;                        \
        for (int k = 0; k < 256; k++) out[k] = div_pos_f64((double)c[k] * ONE + de * below[k], dd, inv); \
    }
PPM_ORDER(ppm_order_i16, int16_t)
PPM_ORDER(ppm_order_u16, uint16_t)

INLINE void match_input(const Mixer *m, int mm, i64 lane, i64 bucket, i64 predicted, double *p) {
    if (m->ptr[mm * m->L + lane] < 0) {
        for (int k = 0; k < 256; k++) p[k] = ONE >> 8;
        return;
    }
    i64 at = (mm * m->L + lane) * N_BUCKETS + bucket;
    i64 hit = m->hits[at] * ONE / m->tries[at];
    hit = hit < (ONE >> 9) ? (ONE >> 9) : hit > ONE - (ONE >> 9) ? ONE - (ONE >> 9) : hit;
    i64 rest = (ONE - hit) / 255;
    for (int k = 0; k < 256; k++) p[k] = (double)rest;
    p[predicted] = (double)hit;
}

INLINE i64 source_byte(const Source *s, i64 ptr) {
    return s->data && s->n ? s->data[ptr > 0 ? ptr : 0] : 0;
}

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
#endif

INLINE i64 log2_of(const int32_t *log2, i64 v) { return log2[v < 1 ? 1 : v > ONE ? ONE : v]; }

INLINE void log2_row(const int32_t *log2, const double *in, double *out) {
#ifdef HAVE_X86
    if (use_avx512) {
        log2_row_avx512(log2, in, out);
        return;
    }
#endif
    for (int k = 0; k < 256; k++) out[k] = (double)log2_of(log2, (i64)in[k]);
}

/* q[k] = exp2[min((zmax - z[k]) >> 16, EXP_RANGE)] (the unnormalised geometric mix); returns the sum of q */
INLINE i64 exp2_row(const i64 *exp2, const double *z, i64 zmax, double *q) {
#ifdef HAVE_X86
    if (use_avx512) return exp2_row_avx512(exp2, z, zmax, q);
#endif
    i64 qs = 0;
    for (int k = 0; k < 256; k++) {
        i64 d = (zmax - (i64)z[k]) >> 16;
        q[k] = (double)exp2[d < EXP_RANGE ? d : EXP_RANGE];
        qs += (i64)q[k];
    }
    return qs;
}

/* lane l's context rows (own and shared orders), and a start on loading the count rows its mix will read (rows
   of 512 bytes, mostly far apart in tables of megabytes), so that they arrive while the lane before is mixed */
INLINE void rows_and_prefetch(const Mixer *m, i64 l, i64 *own, i64 *shared) {
    context_rows(m, l, OWN_ORDERS, N_OWN, OWN_BITS, own);
    context_rows(m, l, SHARED_ORDERS, N_SHARED, SHARED_BITS, shared);
    for (int k = 0; k < N_OWN; k++) {
        const char *row = (const char *)(m->counts[k] + (l * (OWN_ORDERS[k] == 1 ? 256 : 1 << OWN_BITS) + own[k]) * 256);
        for (int c = 0; c < 512; c += 64) __builtin_prefetch(row + c);
    }
    for (int k = 0; k < N_SHARED; k++) {
        const uint16_t *rows[2] = {m->history.counts[k], m->has_priors ? m->priors.counts[k] : NULL};
        for (int r = 0; r < 2; r++)
            if (rows[r])
                for (int c = 0; c < 512; c += 64) __builtin_prefetch((const char *)(rows[r] + shared[k] * 256) + c);
    }
}

/* each lane's neural frequencies nn[l] [256], p_pcm / p_image [L, 256] and wset_offset [L] (from the signal
   predictor, computed in Python) -> each lane's mixed frequencies out[l] [256] (each >= 1) */
INLINE void mix_lanes(Mixer *m, const i64 *const *nn_rows, i64 *const *out_rows, const i64 *p_pcm,
                      const i64 *p_image, const i64 *wset_offset) {
    const i64 L = m->L;
    i64 rows[2][N_OWN + N_SHARED];                  /* this lane's context rows and the next one's */
    if (L) rows_and_prefetch(m, 0, rows[0], rows[0] + N_OWN);
    for (i64 l = 0; l < L; l++) {
        const i64 *own = rows[l & 1], *shared = own + N_OWN;
        if (l + 1 < L) rows_and_prefetch(m, l + 1, rows[(l + 1) & 1], rows[(l + 1) & 1] + N_OWN);
        double *in = m->inputs + l * N_MODELS * 256;
        i64 *out = out_rows[l];
        const i64 *nn = nn_rows[l];
        i64 s = 0;
        for (int k = 0; k < 256; k++) s += nn[k];
        double inv_s = 1.0 / (double)s;
        for (int k = 0; k < 256; k++) in[k] = (double)div_pos(nn[k] * ONE, s, inv_s);
        i64 longest = -1;
        for (int mm = 0; mm < N_MATCH; mm++) {
            i64 has = m->ptr[mm * L + l] >= 0;
            m->has[mm * L + l] = has;
            if (has && m->len[mm * L + l] > longest) longest = m->len[mm * L + l];
        }
        i64 bucket = longest < 0 ? 0 : longest < 4 ? 1 : longest < 16 ? 2 : 3;
        m->bucket[l] = bucket;
        i64 p0 = m->ptr[l];
        m->predicted[l] = m->hist[l * m->width + (p0 > 0 ? p0 : 0)];
        m->predicted[L + l] = source_byte(&m->history, m->ptr[L + l]);
        m->predicted[2 * L + l] = source_byte(&m->dict_match, m->ptr[2 * L + l]);
        for (int k = 0; k < N_OWN; k++) m->rows[k * L + l] = own[k];
        i64 wset = bucket + wset_offset[l];
        m->wset[l] = wset;
        match_input(m, 0, l, bucket, m->predicted[l], in + 1 * 256);
        match_input(m, 1, l, bucket, m->predicted[L + l], in + 2 * 256);
        match_input(m, 2, l, bucket, m->predicted[2 * L + l], in + DICTIONARY_MATCH * 256);
        const double *below = in;                                        /* the neural distribution */
        for (int k = 0; k < N_OWN; k++) {
            i64 rows = OWN_ORDERS[k] == 1 ? 256 : 1 << OWN_BITS;
            ppm_order_i16(m->counts[k] + (l * rows + own[k]) * 256, below, in + (3 + k) * 256);
            below = in + (3 + k) * 256;
        }
        double prior[256];
        below = in;
        for (int k = 0; k < N_SHARED; k++) {
            const double *fallback = below;
            if (m->has_priors) {                 /* the dictionary's same order, itself blended upwards */
                ppm_order_u16(m->priors.counts[k] + shared[k] * 256, k ? prior : in, prior);
                fallback = prior;
            }
            ppm_order_u16(m->history.counts[k] + shared[k] * 256, fallback, in + (6 + k) * 256);
            below = in + (6 + k) * 256;
        }
        for (int k = 0; k < 256; k++) {
            in[PCM_INPUT * 256 + k] = (double)p_pcm[l * 256 + k];
            in[IMAGE_INPUT * 256 + k] = (double)p_image[l * 256 + k];
        }
        /* sums of integer products below 2^40: exact in double whatever the order, and they vectorise */
        const i64 *w = m->weights + (l * N_SETS + wset) * N_MODELS;
        i64 *mixed = m->mixed + l * 256;
        double acc[256] = {0};
        for (int i = 0; i < N_MODELS; i++) {
            double wi = (double)w[i];
            const double *row = in + (i64)i * 256;
            for (int k = 0; k < 256; k++) acc[k] += wi * row[k];
        }
        for (int k = 0; k < 256; k++) mixed[k] = (i64)acc[k] >> 16;
        if (!m->geometric) {
            for (int k = 0; k < 256; k++) out[k] = mixed[k] + 1;
            continue;
        }
        /* an input that is the same for every byte (the PCM and image inputs where the geometric mix runs, a
           match model without a match) adds the same to every z[k] and learns a zero gradient: it is left out,
           exactly; `varies` lists the others for update() */
        double lp[N_MODELS * 256];                 /* log2 of the inputs that vary (integers), this lane's only */
        i64 *varies = m->varies + l * (N_MODELS + 1), nv = 0;
        for (int i = 0; i < N_MODELS; i++) {
            const int flat = i == PCM_INPUT || i == IMAGE_INPUT || (i == 1 && !m->has[l]) ||
                             (i == 2 && !m->has[L + l]) || (i == DICTIONARY_MATCH && !m->has[2 * L + l]);
            if (flat) continue;
            varies[++nv] = i;
            log2_row(m->log2, in + i * 256, lp + i * 256);
        }
        varies[0] = nv;
        /* both geometric mixes in one pass over the log rows: z[g][k] = sum over inputs of w[g][i] lp[i][k] */
        _Static_assert(N_GEO == 2, "one weight per geometric mix below");
        const i64 gsets[N_GEO] = {bucket, N_BUCKETS * (1 + m->byte_class[prev(m, l, 1)]) + bucket};
        const i64 *gw[N_GEO];
        double z[N_GEO][256] = {{0}};
        for (int g = 0; g < N_GEO; g++) {
            m->gset[g * L + l] = gsets[g];
            gw[g] = m->geo_weights + (l * GEO_SETS + gsets[g]) * N_MODELS;
        }
        for (i64 v = 1; v <= nv; v++) {
            const i64 i = varies[v];
            const double *row = lp + i * 256, w0 = (double)gw[0][i], w1 = (double)gw[1][i];
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
            double *expected = m->expected + (l * N_GEO + g) * N_MODELS;
            for (i64 v = 1; v <= nv; v++) expected[varies[v]] = exact_dot(lp + varies[v] * 256, q, 256);  /* < 2^37 */
            i64 *geo = m->geo + (g * L + l) * 256;
            double inv_q = 1.0 / (double)qs;
            for (int k = 0; k < 256; k++) geo[k] = div_pos((i64)q[k] * ONE, qs, inv_q);
        }
        const i64 *b = m->blend + (l * N_BUCKETS + bucket) * (1 + N_GEO);
        const i64 *g0 = m->geo + l * 256, *g1 = m->geo + (L + l) * 256;
        for (int k = 0; k < 256; k++)
            out[k] = ((b[0] * mixed[k] + b[1] * g0[k] + b[2] * g1[k]) >> 16) + 1;
    }
}

/* neural [L, 256] -> out [L, 256] (the decoder's step); 0, or -1 when out of memory */
VECTOR_CLONES int mixer_mix(Mixer *m, const i64 *neural, const i64 *p_pcm, const i64 *p_image,
                            const i64 *wset_offset, i64 *out) {
    const i64 **nn = malloc(sizeof(i64 *) * m->L);
    i64 **o = malloc(sizeof(i64 *) * m->L);
    if (nn && o) {
        for (i64 l = 0; l < m->L; l++) {
            nn[l] = neural + l * 256;
            o[l] = out + l * 256;
        }
        mix_lanes(m, nn, o, p_pcm, p_image, wset_offset);
    }
    free(nn); free(o);
    return nn && o ? 0 : -1;
}

/* the encoder's step at position t: lane l's frequencies are rows t of neural[l] [sizes[l], 256] and go to
   rows t of out[l] (a lane whose chunk has ended reads a row of ones and writes a scratch row) */
VECTOR_CLONES int mixer_mix_rows(Mixer *m, const i64 *const *neural, i64 *const *out, const i64 *p_pcm,
                                 const i64 *p_image, const i64 *wset_offset) {
    const i64 **nn = malloc(sizeof(i64 *) * m->L);
    i64 **o = malloc(sizeof(i64 *) * m->L), *ones = malloc(sizeof(i64) * 512);
    if (nn && o && ones) {
        for (int k = 0; k < 256; k++) ones[k] = 1;
        for (i64 l = 0; l < m->L; l++) {
            const int inside = m->t < m->sizes[l];
            nn[l] = inside ? neural[l] + m->t * 256 : ones;
            o[l] = inside ? out[l] + m->t * 256 : ones + 256;
        }
        mix_lanes(m, nn, o, p_pcm, p_image, wset_offset);
    }
    free(nn); free(o); free(ones);
    return nn && o && ones ? 0 : -1;
}

/* bayes_update on one row of n weights */
INLINE void bayes_update(i64 *w, const i64 *p_x, const i64 *floor, i64 floor_all, int n, int shift) {
    i64 s = 0;
    for (int i = 0; i < n; i++) s += w[i] * p_x[i];
    i64 m_x = s >> 16;
    m_x = m_x > 1 ? m_x : 1;
    i64 total = 0;
    for (int i = 0; i < n; i++) {
        i64 f = floor ? floor[i] : floor_all;
        i64 v = w[i] + (floordiv(w[i] * (p_x[i] - m_x), m_x) >> shift);
        w[i] = v > f ? v : f;
        total += w[i];
    }
    for (int i = 0; i < n; i++) w[i] = w[i] * ONE / total;
}

INLINE void find_source_match(Mixer *m, const Source *s, i64 *ptr, i64 lane, i64 h) {
    if (!s->data || !s->n) return;
    i64 found = s->match_table[h];
    if (found < 0 || *ptr >= 0) return;
    for (int j = 1; j <= HISTORY_MATCH_MIN; j++) {
        i64 at = found - j;
        if (s->data[at > 0 ? at : 0] != prev(m, lane, j)) return;
    }
    *ptr = found;
}

/* learn from byte [L] each lane just coded (after mixer_mix at this position; the signal predictor is updated
   in Python), then advance */
VECTOR_CLONES void mixer_update(Mixer *m, const i64 *byte) {
    const i64 L = m->L, t = m->t;
    for (i64 l = 0; l < L; l++) {
        const i64 x = byte[l], bucket = m->bucket[l];
        const double *in = m->inputs + l * N_MODELS * 256;
        i64 p_x[N_MODELS];
        for (int i = 0; i < N_MODELS; i++) p_x[i] = (i64)in[i * 256 + x];
        bayes_update(m->weights + (l * N_SETS + m->wset[l]) * N_MODELS, p_x, m->floor, 0, N_MODELS, W_SHIFT);
        if (m->geometric) {
            i64 mixes[1 + N_GEO] = {m->mixed[l * 256 + x]};
            for (int g = 0; g < N_GEO; g++) {
                const double *expected = m->expected + (l * N_GEO + g) * N_MODELS;
                i64 qs = m->q_sum[g * L + l];
                i64 *gw = m->geo_weights + (l * GEO_SETS + m->gset[g * L + l]) * N_MODELS;
                const i64 *varies = m->varies + l * (N_MODELS + 1);
                for (i64 u = 1; u <= varies[0]; u++) {
                    const int i = (int)varies[u];
                    i64 v = gw[i] + log2_of(m->log2, p_x[i]) - (i64)expected[i] / qs;   /* both >= 0 */
                    gw[i] = v < -GEO_W_MAX ? -GEO_W_MAX : v > GEO_W_MAX ? GEO_W_MAX : v;
                }
                mixes[1 + g] = m->geo[(g * L + l) * 256 + x];
            }
            bayes_update(m->blend + (l * N_BUCKETS + bucket) * (1 + N_GEO), mixes, NULL, BLEND_MIN, 1 + N_GEO,
                         BLEND_SHIFT);
        }
        /* match models: score the predictions, follow or drop the matches */
        for (int mm = 0; mm < N_MATCH; mm++) {
            i64 at = mm * L + l, has = m->has[at], good = has && m->predicted[at] == x;
            i64 *tries = m->tries + at * N_BUCKETS + bucket, *hits = m->hits + at * N_BUCKETS + bucket;
            *tries += has;
            *hits += good;
            if (*tries > HIT_HALVE) { *tries >>= 1; *hits >>= 1; }
            m->len[at] = good ? m->len[at] + 1 : 0;
            m->ptr[at] = good ? m->ptr[at] + 1 : -1;
        }
        if (m->ptr[L + l] >= m->history.n && m->history.data) m->ptr[L + l] = -1;
        if (m->ptr[2 * L + l] >= m->dict_match.n && m->dict_match.data) m->ptr[2 * L + l] = -1;
        for (int mm = 0; mm < N_MATCH; mm++)
            if (m->ptr[mm * L + l] < 0) m->len[mm * L + l] = 0;
        for (int k = 0; k < N_OWN; k++) {
            i64 rows = OWN_ORDERS[k] == 1 ? 256 : 1 << OWN_BITS;
            m->counts[k][(l * rows + m->rows[k * L + l]) * 256 + x] += 1;
        }
        m->hist[l * m->width + t] = x;
    }
    m->t = t + 1;
    for (i64 l = 0; l < L; l++) {
        if (m->geometric && m->sizes[l] == m->t) {
            memcpy(m->final_geo + l * GEO_SETS * N_MODELS, m->geo_weights + l * GEO_SETS * N_MODELS,
                   GEO_SETS * N_MODELS * sizeof(i64));
            memcpy(m->final_blend + l * N_BUCKETS * (1 + N_GEO), m->blend + l * N_BUCKETS * (1 + N_GEO),
                   N_BUCKETS * (1 + N_GEO) * sizeof(i64));
        }
        /* index the context that ends here; pick up matches where there are none */
        if (m->t >= MATCH_MIN) {
            i64 h = hash_last(m, l, MATCH_MIN, MATCH_BITS);
            i64 *slot = m->match_table + l * (1 << MATCH_BITS) + h;
            if (m->ptr[l] < 0 && *slot >= 0) m->ptr[l] = *slot;
            *slot = m->t;
        }
        if (m->t >= HISTORY_MATCH_MIN) {
            i64 h = hash_last(m, l, HISTORY_MATCH_MIN, HISTORY_MATCH_BITS);
            find_source_match(m, &m->history, m->ptr + L + l, l, h);
            find_source_match(m, &m->dict_match, m->ptr + 2 * L + l, l, h);
        }
    }
}

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

INLINE i64 clip64(i64 v, i64 lo, i64 hi) { return v < lo ? lo : v > hi ? hi : v; }
INLINE i64 floormod(i64 a, i64 b) { i64 r = a % b; return r < 0 ? r + b : r; }
INLINE i64 abs64(i64 v) { return v < 0 ? -v : v; }

/* out[k] (+)= exp[min(|base + k step| mult // scale, q_max)] for k < n (a multiple of 8): the Laplace tables of
   the PCM and image predictors; |d| mult < 2^52, 0 < scale < 2^52; 8 at a time (division, gather) with AVX-512 */
#ifdef HAVE_X86
AVX512 static void laplace_row_avx512(const i64 *exp, i64 q_max, i64 base, i64 step, i64 mult, i64 scale, i64 *out,
                                      int n, int accumulate) {
    const __m512i iota = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), top = _mm512_set1_epi64(q_max);
    const __m512i vstep = _mm512_set1_epi64(step), vmult = _mm512_set1_epi64(mult), one = _mm512_set1_epi64(1);
    const __m512d dd = _mm512_set1_pd((double)scale), inv = _mm512_set1_pd(1.0 / (double)scale);
    for (int k = 0; k < n; k += 8) {
        const __m512i d = _mm512_add_epi64(_mm512_set1_epi64(base + k * step), _mm512_mullo_epi64(iota, vstep));
        const __m512d x = _mm512_cvtepi64_pd(_mm512_mullo_epi64(_mm512_abs_epi64(d), vmult));
        const __m512i q0 = _mm512_cvttpd_epi64(_mm512_mul_pd(x, inv));         /* as div_pos, 8 at a time */
        const __m512d r = _mm512_sub_pd(x, _mm512_mul_pd(_mm512_cvtepi64_pd(q0), dd));
        __m512i q = _mm512_mask_add_epi64(q0, _mm512_cmp_pd_mask(r, dd, _CMP_GE_OQ), q0, one);
        q = _mm512_mask_sub_epi64(q, _mm512_cmp_pd_mask(r, _mm512_setzero_pd(), _CMP_LT_OQ), q, one);
        __m512i v = _mm512_i64gather_epi64(_mm512_min_epi64(q, top), exp, 8);
        if (accumulate) v = _mm512_add_epi64(v, _mm512_loadu_si512(out + k));
        _mm512_storeu_si512(out + k, v);
    }
}
#endif

INLINE void laplace_row(const i64 *exp, i64 q_max, i64 base, i64 step, i64 mult, i64 scale, i64 *out, int n,
                        int accumulate) {
#ifdef HAVE_X86
    if (use_avx512) {
        laplace_row_avx512(exp, q_max, base, step, mult, scale, out, n, accumulate);
        return;
    }
#endif
    const double inv = 1.0 / (double)scale;
    for (int k = 0; k < n; k++) {
        const i64 q = div_pos(abs64(base + k * step) * mult, scale, inv), v = exp[q < q_max ? q : q_max];
        out[k] = accumulate ? out[k] + v : v;
    }
}

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

/* ---- pcm.PcmModel: the 16-bit sample predictor of the mixer, for all lanes (the same integers as its numpy
   code) ---- */

enum { PCM_PREDICTORS = 6, PCM_ORDER = 16, PCM_TAPS = 18, PCM_ERROR_SHIFT = 4, PCM_MIN_ERROR = 8, PCM_HI_WINDOW = 2,
       PCM_Q_SCALE = 512, PCM_LMS_SHIFT = 14, PCM_LMS_RATE = 11, PCM_LMS_EPS = 1 << 10 };

typedef struct {
    i64 L, channels, offset, q_max;
    const i64 *starts;             /* [L] */
    i64 *samples;                  /* [L, channels, 3] newest first */
    i64 *error;                    /* [L, channels, PCM_PREDICTORS] */
    i64 *guess, *scale;            /* [L] */
    i64 *preds;                    /* [L, PCM_PREDICTORS] */
    i64 *steps;                    /* [L, channels, PCM_ORDER] */
    i64 *lms;                      /* [L, channels, PCM_TAPS] */
    i64 *lms_input;                /* [L, PCM_TAPS] */
    const i64 *exp;                /* [q_max + 1] */
} PcmState;

/* distributions p [L, 256], active and high [L] of each lane's byte at position t; previous [L] the byte
   before (the low byte, for a high byte) */
VECTOR_CLONES void pcm_frequencies(PcmState *s, i64 t, const i64 *previous, i64 *p, i64 *active_out,
                                   i64 *high_out) {
    const i64 C = s->channels, *exp = s->exp, q_max = s->q_max;   /* locals: through s they might alias p */
    for (i64 l = 0; l < s->L; l++) {
        const i64 pos = s->starts[l] + t - s->offset, slot = floormod(pos, 2 * C), ch = slot >> 1, high = slot & 1;
        i64 *pl = p + l * 256, sum = 0;
        if (!high) {                                   /* a low byte starts a sample: predictor and scale now */
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
            s->guess[l] = preds[best];
            s->scale[l] = err[best] > PCM_MIN_ERROR ? err[best] : PCM_MIN_ERROR;
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
#endif

INLINE double softmax_weights(const Attn *a, double *dr, i64 n, double to_index) {
    const double dmax = max_f64(dr, n);
    double sum = 0.0;
    i64 j;
#ifdef HAVE_X86
    if (use_avx512) return softmax_weights_avx512(a, dr, n, dmax, to_index);
#endif
    for (j = 0; j < n; j++) {
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

/* exact.ExactMegabyte._frequencies after the head: logits [rows, 256] -> integer frequencies [rows, 256] */
INLINE void logits_to_frequencies(const LocalModel *m, i64 rows, const float *logits, i64 *freqs) {
    for (i64 b = 0; b < rows; b++) {
        const float *lg = logits + b * 256;
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


/* ---- int8 matrix products with AVX-512 VNNI, where the CPU has it (use_int8): the same integer sums as
   matmul_exact's float32 ones, so the same results, about 4 times faster ---- */
#ifdef HAVE_X86

/* y [R rows, 16 C columns from j0] = a [R, 4 K4] (bytes: int8 + 128) . w [K4, N, 4] - w_sum: each vpdpbusd adds
   4 products of a byte and a weight to 16 int32 sums; the sums are integers below 2^24, so as floats they
   equal matmul_exact's float32 sums exactly */
VNNI INLINE void int8_tile(const uint8_t *a, i64 a_stride, const int8_t *w, const int32_t *w_sum, float *y,
                           i64 K4, i64 N, i64 j0, const int R, const int C) {
    __m512i acc[4][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_si512();
    for (i64 k = 0; k < K4; k++) {
        __m512i wv[4];
        for (int c = 0; c < C; c++) wv[c] = _mm512_loadu_si512(w + (k * N + j0 + 16 * c) * 4);
        for (int r = 0; r < R; r++) {
            int32_t four;
            memcpy(&four, a + r * a_stride + 4 * k, 4);
            const __m512i av = _mm512_set1_epi32(four);
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], av, wv[c]);
        }
    }
    for (int c = 0; c < C; c++) {
        const __m512i sum = _mm512_loadu_si512(w_sum + j0 + 16 * c);
        for (int r = 0; r < R; r++)
            _mm512_storeu_ps(y + r * N + j0 + 16 * c, _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][c], sum)));
    }
}

/* y [B, N] = the int8 product, N a multiple of 16: 4 rows by 64 columns at a time, the rest narrower */
VNNI static void matmul_int8(const uint8_t *a, const int8_t *w, const int32_t *w_sum, float *y, i64 B, i64 K4,
                             i64 N) {
    const i64 stride = 4 * K4;
    i64 b = 0;
    for (; b + 4 <= B; b += 4) {
        i64 j = 0;
        for (; j + 64 <= N; j += 64) int8_tile(a + b * stride, stride, w, w_sum, y + b * N, K4, N, j, 4, 4);
        for (; j + 32 <= N; j += 32) int8_tile(a + b * stride, stride, w, w_sum, y + b * N, K4, N, j, 4, 2);
        for (; j < N; j += 16) int8_tile(a + b * stride, stride, w, w_sum, y + b * N, K4, N, j, 4, 1);
    }
    for (; b < B; b++) {
        i64 j = 0;
        for (; j + 64 <= N; j += 64) int8_tile(a + b * stride, stride, w, w_sum, y + b * N, K4, N, j, 1, 4);
        for (; j < N; j += 16) int8_tile(a + b * stride, stride, w, w_sum, y + b * N, K4, N, j, 1, 1);
    }
}

/* Finds what the CPU has and uses it where `allow` is set, else the compilers' code alone (to test both);
   returns 1 + 2 (AVX-512, VNNI), as used */
int detect_cpu(int allow) {
    __builtin_cpu_init();
    use_avx512 = allow && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    use_int8 = use_avx512 && __builtin_cpu_supports("avx512vnni");
    return use_avx512 + 2 * use_int8;
}
#else
static void matmul_int8(const uint8_t *a, const int8_t *w, const int32_t *w_sum, float *y, i64 B, i64 K4, i64 N) {
    (void)a; (void)w; (void)w_sum; (void)y; (void)B; (void)K4; (void)N;
}
int detect_cpu(int allow) { (void)allow; return 0; }
#endif

/* y [B, N] = q [B, K] @ wq [K, N] where q and wq hold int8 values, K <= 1040: every partial sum is an integer
   below 2^24, exact in float32 in any order and with or without fused multiply-adds, which this function alone
   may use (the pragma; everything above is compiled without contraction). */
#pragma GCC optimize("fp-contract=fast")
VECTOR_CLONES_FMA void matmul_exact(const float *q, const float *wq, float *y, i64 B, i64 K, i64 N) {
    /* sums of int8 products below 2^24: exact in float32 in any order, so they may be blocked at will: each
       step of k loads a strip of 32 weights once for 4 lanes, whose 4 x 32 sums stay in registers, and the
       strip [K, 32] serves every block of lanes from L2 before the next is read */
    const i64 b4 = N % 32 == 0 ? B - B % 4 : 0;       /* lanes in blocks of 4; the strip stays in L2 across them */
    for (i64 j0 = 0; j0 < N && b4; j0 += 32)
        for (i64 b0 = 0; b0 < b4; b0 += 4) {
            v16 acc[4][2] = {{{0}}};
            for (i64 k = 0; k < K; k++) {
                v16 w0, w1;
                memcpy(&w0, wq + k * N + j0, sizeof w0);
                memcpy(&w1, wq + k * N + j0 + 16, sizeof w1);
                for (int r = 0; r < 4; r++) {
                    const float a = q[(b0 + r) * K + k];
                    acc[r][0] += a * w0;
                    acc[r][1] += a * w1;
                }
            }
            for (int r = 0; r < 4; r++) {
                memcpy(y + (b0 + r) * N + j0, &acc[r][0], sizeof acc[r][0]);
                memcpy(y + (b0 + r) * N + j0 + 16, &acc[r][1], sizeof acc[r][1]);
            }
        }
    for (i64 b = b4; b < B; b++) {                     /* the lanes left over, or any width */
        float *yb = y + b * N;
        for (i64 j = 0; j < N; j++) yb[j] = 0.0f;
        for (i64 k = 0; k < K; k++) {
            const float a = q[b * K + k], *w = wq + k * N;
            for (i64 j = 0; j < N; j++) yb[j] += a * w[j];
        }
    }
}

/* out[u] = the sum of a[u]'s lanes, for 8 vectors, by a transposing tree (3 levels of shuffles and
   adds, not 8 scalar chains); for sums of integers, exact in any order */
INLINE void hsum8(const v8d a[8], double *out) {
    v8d b[4], c[2];
    for (int i = 0; i < 4; i++)     /* b[i]: 4 partial sums of a[2i] (lanes 0-3) and 4 of a[2i+1] (lanes 4-7) */
        b[i] = __builtin_shufflevector(a[2 * i], a[2 * i + 1], 0, 1, 2, 3, 8, 9, 10, 11) +
               __builtin_shufflevector(a[2 * i], a[2 * i + 1], 4, 5, 6, 7, 12, 13, 14, 15);
    for (int i = 0; i < 2; i++)     /* c[i]: 2 partials each of a[4i], a[4i+2], a[4i+1], a[4i+3] */
        c[i] = __builtin_shufflevector(b[2 * i], b[2 * i + 1], 0, 1, 8, 9, 4, 5, 12, 13) +
               __builtin_shufflevector(b[2 * i], b[2 * i + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    const v8d d = __builtin_shufflevector(c[0], c[1], 0, 8, 2, 10, 4, 12, 6, 14) +   /* sums of a[0, 4, 2, 6, 1, */
                  __builtin_shufflevector(c[0], c[1], 1, 9, 3, 11, 5, 13, 7, 15);    /* 5, 3, 7]: back in order */
    const v8d sums = __builtin_shufflevector(d, d, 0, 4, 2, 6, 1, 5, 3, 7);
    memcpy(out, &sums, sizeof sums);
}

/* acc[r] = lanewise products of query row r0 + r (r < R) and key k over its first dv (a multiple of 8) of dh */
INLINE void key_products(const double *q, const float *k, i64 dv, i64 dh, i64 r0, i64 R, v8d *acc) {
    for (i64 r = 0; r < R; r++) acc[r] = (v8d){0};
    for (i64 e = 0; e < dv; e += 8) {
        v8f kf;
        memcpy(&kf, k + e, sizeof kf);
        const v8d kd = __builtin_convertvector(kf, v8d);
        for (i64 r = 0; r < R; r++) {
            v8d qv;
            memcpy(&qv, q + (r0 + r) * dh + e, sizeof qv);
            acc[r] += qv * kd;
        }
    }
}

/* rows r0 .. r0 + R of dots [rep, n] over keys j0 .. j0 + 8 (dh a multiple of 8) */
INLINE void dots_8_keys(const double *q, const float *keys, i64 n, i64 dh, i64 r0, i64 j0, double *dots,
                        const int R) {
    v8d part[4][8];
    for (int u = 0; u < 8; u++) {
        v8d acc[4];
        const char *ahead = (const char *)(keys + (j0 + u + 16) * dh);   /* the next blocks' keys, from memory */
        for (i64 c = 0; c < dh * 4; c += 64) __builtin_prefetch(ahead + c);
        key_products(q, keys + (j0 + u) * dh, dh, dh, r0, R, acc);
        for (int r = 0; r < R; r++) part[r][u] = acc[r];
    }
    for (int r = 0; r < R; r++) hsum8(part[r], dots + (r0 + r) * n + j0);
}

/* dots [rep, n] = q [rep, dh] . keys [0 .. n) [dh]: products of integers below 2^35 summed over dh <= 256
   terms, exact in any order and with fused multiply-adds; the rep query heads share each key's load, and
   blocks of 8 keys share one horizontal sum */
VECTOR_CLONES_FMA void attention_dots(const double *q, const float *keys, i64 n, i64 dh, i64 rep, double *dots) {
    const i64 dv = dh - dh % 8;
    for (i64 r0 = 0; r0 < rep; r0 += 4) {
        const i64 nr = rep - r0 < 4 ? rep - r0 : 4;
        i64 j = 0;
        for (; dv == dh && j + 8 <= n; j += 8)
            switch (nr) {
            case 1: dots_8_keys(q, keys, n, dh, r0, j, dots, 1); break;
            case 2: dots_8_keys(q, keys, n, dh, r0, j, dots, 2); break;
            case 3: dots_8_keys(q, keys, n, dh, r0, j, dots, 3); break;
            default: dots_8_keys(q, keys, n, dh, r0, j, dots, 4);
            }
        for (; j < n; j++) {                               /* the keys left over, or any dh */
            const float *k = keys + j * dh;
            v8d acc[4];
            key_products(q, k, dv, dh, r0, nr, acc);
            for (i64 r = 0; r < nr; r++) {
                double sum = 0.0;
                for (int u = 0; u < 8; u++) sum += acc[r][u];
                for (i64 e = dv; e < dh; e++) sum += q[(r0 + r) * dh + e] * (double)k[e];
                dots[(r0 + r) * n + j] = sum;
            }
        }
    }
}

INLINE void dots_tile(const double *q, const double *tile, i64 i, i64 dh, i64 n, i64 j0, i64 nj, double *dots,
                      const int R) {
    v8d acc[8][2] = {{{0}}};
    for (i64 e = 0; e < dh; e++) {
        v8d k0, k1;
        memcpy(&k0, tile + e * 16, sizeof k0);
        memcpy(&k1, tile + e * 16 + 8, sizeof k1);
        for (int r = 0; r < R; r++) {
            const double qe = q[(i + r) * dh + e];
            acc[r][0] += qe * k0;
            acc[r][1] += qe * k1;
        }
    }
    for (int r = 0; r < R; r++) {
        double *out = dots + (i + r) * n + j0;
        for (i64 u = 0; u < nj; u++) out[u] = u < 8 ? acc[r][0][u] : acc[r][1][u - 8];
    }
}

/* dots [rows, n] = q [rows, dh] . keys [0 .. n) where query row i (head-major groups of rep rows) needs only
   keys 0 .. first + i / rep; the keys as doubles in tiles of 16, kt [ceil(n / 16), dh, 16]; 8 rows at a time
   (integers below 2^42: exact in any order) */
VECTOR_CLONES_FMA void attention_dots_tiled(const double *q, const double *kt, i64 rows, i64 rep, i64 first, i64 n,
                                            i64 dh, double *dots) {
    for (i64 j0 = 0; j0 < n; j0 += 16) {
        const i64 nj = n - j0 < 16 ? n - j0 : 16;
        const double *tile = kt + j0 * dh;
        i64 i = j0 > first ? (j0 - first) * rep : 0;  /* rows whose last key is below j0 skip the tile */
        for (; i + 8 <= rows; i += 8) dots_tile(q, tile, i, dh, n, j0, nj, dots, 8);
        for (; i < rows; i++) dots_tile(q, tile, i, dh, n, j0, nj, dots, 1);
    }
}

/* rows r0 .. r0 + R of num [rep, dh], columns e0 .. e0 + 32: the sum over keys j < n of w[r, j] vals[j, :],
   in registers, each value converted once for the R rows */
INLINE void sum_32_columns(const double *w, i64 stride, const float *vals, i64 n, i64 dh, i64 r0, i64 e0,
                           double *num, const int R) {
    v8d acc[4][4] = {{{0}}};
    for (i64 j = 0; j < n; j++) {
        v8d v[4];
        const char *ahead = (const char *)(vals + (j + 16) * dh + e0);      /* later values, from memory */
        __builtin_prefetch(ahead);
        __builtin_prefetch(ahead + 64);
        for (int c = 0; c < 4; c++) {
            v8f f;
            memcpy(&f, vals + j * dh + e0 + 8 * c, sizeof f);
            v[c] = __builtin_convertvector(f, v8d);
        }
        for (int r = 0; r < R; r++) {
            const double wr = w[(r0 + r) * stride + j];
            for (int c = 0; c < 4; c++) acc[r][c] += wr * v[c];
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < 4; c++) memcpy(num + (r0 + r) * dh + e0 + 8 * c, &acc[r][c], sizeof acc[r][c]);
}

/* num [rep, dh] = sum over j < n of w[r, j] vals[j, :] (w rows `stride` apart): integers below 2^45, exact
   in any order; the rep heads share each value's load */
VECTOR_CLONES_FMA void attention_sum(const double *w, i64 stride, const float *vals, i64 n, i64 dh, i64 rep,
                                     double *num) {
    if (dh % 32 == 0) {                 /* zero weights add exact zeros: the same sums as skipping them below */
        for (i64 r0 = 0; r0 < rep; r0 += 4)
            for (i64 e0 = 0; e0 < dh; e0 += 32)
                switch (rep - r0 < 4 ? rep - r0 : 4) {
                case 1: sum_32_columns(w, stride, vals, n, dh, r0, e0, num, 1); break;
                case 2: sum_32_columns(w, stride, vals, n, dh, r0, e0, num, 2); break;
                case 3: sum_32_columns(w, stride, vals, n, dh, r0, e0, num, 3); break;
                default: sum_32_columns(w, stride, vals, n, dh, r0, e0, num, 4);
                }
        return;
    }
    for (i64 e = 0; e < rep * dh; e++) num[e] = 0.0;
    for (i64 j = 0; j < n; j++) {
        const float *v = vals + j * dh;
        for (i64 r = 0; r < rep; r++) {
            const double wr = w[r * stride + j];
            if (wr == 0.0) continue;
            double *nr = num + r * dh;
            for (i64 e = 0; e < dh; e++) nr[e] += wr * (double)v[e];
        }
    }
}

/* rows r0 .. r0 + R of num [., dh], columns e0 .. e0 + 8 C: the sum over keys j < n of w[r, j] vd[j, :] */
INLINE void sum_tile(const double *w, i64 stride, const double *vd, i64 dh, i64 r0, i64 e0, i64 n, double *num,
                     const int R, const int C) {
    v8d acc[8][2] = {{{0}}};
    for (i64 j = 0; j < n; j++) {
        v8d v[2];
        for (int c = 0; c < C; c++) memcpy(&v[c], vd + j * dh + e0 + 8 * c, sizeof v[c]);
        for (int r = 0; r < R; r++) {
            const double wr = w[(r0 + r) * stride + j];
            for (int c = 0; c < C; c++) acc[r][c] += wr * v[c];
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) memcpy(num + (r0 + r) * dh + e0 + 8 * c, &acc[r][c], sizeof acc[r][c]);
}

/* num [rows, dh] = w [rows, stride] @ vd [stride, dh] (the values as doubles) where row i's weights are zero
   beyond key first + i / rep (dh a multiple of 8): tiles of 8 rows by 16 columns (8 where 16 do not divide
   dh), each weight broadcast once for 16 products; integers below 2^45, exact in any order */
VECTOR_CLONES_FMA void attention_sum_tiled(const double *w, i64 stride, const double *vd, i64 rows, i64 rep,
                                           i64 first, i64 dh, double *num) {
    for (i64 r0 = 0; r0 < rows; r0 += 8) {
        const i64 nr = rows - r0 < 8 ? rows - r0 : 8, n = first + (r0 + nr - 1) / rep + 1;
        for (i64 e0 = 0; e0 < dh; e0 += e0 + 16 <= dh ? 16 : 8) {
            const int wide = e0 + 16 <= dh;
            if (nr == 8 && wide) sum_tile(w, stride, vd, dh, r0, e0, n, num, 8, 2);
            else if (nr == 8) sum_tile(w, stride, vd, dh, r0, e0, n, num, 8, 1);
            else
                for (i64 r = r0; r < r0 + nr; r++)
                    if (wide) sum_tile(w, stride, vd, dh, r, e0, n, num, 1, 2);
                    else sum_tile(w, stride, vd, dh, r, e0, n, num, 1, 1);
        }
    }
}

static struct PyModuleDef kernels_module = {PyModuleDef_HEAD_INIT, "_kernels",
                                            "bytezip's compiled coding kernels (called through ctypes)", -1};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&kernels_module); }
