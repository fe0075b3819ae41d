/* Compiled kernels of bytezip's coding loop, called through ctypes (bytezip/kernels.py).

   mixer_mix / mixer_update: one step of `mixing.Mixer` for all lanes, the same integer arithmetic as its
   numpy code (floor division and arithmetic shifts as numpy's // and >>), so archives are the same byte for
   byte whichever path codes them; tests/test_kernels.py compares the two on text, audio and images.

   Built by setuptools as an optional extension: where it cannot be built, bytezip runs the numpy code. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef int64_t i64;

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
    const int16_t *log2;           /* [ONE + 1] log2 table as int16 (values <= 4096: a quarter the cache) */
    const i64 *exp2, *byte_class;
    /* scratch, written by mix, read by update */
    i64 *inputs;                   /* [L, N_MODELS, 256] */
    double *logp;                  /* [L, N_MODELS, 256] log2 of the inputs, integers held as doubles */
    i64 *mixed;                    /* [L, 256] */
    double *q;                     /* [N_GEO, L, 256] unnormalised geometric mixes (integers) */
    i64 *q_sum, *geo;              /* [N_GEO, L], [N_GEO, L, 256] */
    i64 *bucket, *wset, *gset;     /* [L], [L], [N_GEO, L] */
    i64 *has, *predicted, *rows;   /* [N_MATCH, L], [N_MATCH, L], [N_OWN, L] */
} Mixer;

static inline i64 floordiv(i64 a, i64 b) {     /* numpy's // for b > 0 */
    i64 q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* a // d for 0 <= a < 2^50, 0 < d < 2^31, inv = 1.0 / d: the float estimate is within one of the quotient,
   and the remainder corrects it (integer division is the mixer's slowest instruction) */
static inline i64 div_pos(i64 a, i64 d, double inv) {
    i64 q = (i64)((double)a * inv), r = a - q * d;
    return q + (r >= d) - (r < 0);
}

static inline i64 prev(const Mixer *m, i64 lane, int j) {
    return m->t >= j ? m->hist[lane * m->width + m->t - j] : 0;
}

static inline i64 hash_last(const Mixer *m, i64 lane, int n, int bits) {
    i64 h = 0;
    for (int j = 1; j <= n; j++) h = (h * MUL + prev(m, lane, j)) & MASK;
    return (h ^ (h >> bits)) & ((1 << bits) - 1);
}

/* context_rows: order 1 is the previous byte, higher orders a hash of the last k bytes */
static void context_rows(const Mixer *m, i64 lane, const int *orders, int n_orders, int bits, i64 *out) {
    i64 h = 0;
    int k = 0;
    for (int j = 1; j <= orders[n_orders - 1]; j++) {
        i64 p = prev(m, lane, j);
        h = (h * MUL + p + 1) & MASK;
        if (j == orders[k]) out[k++] = j == 1 ? p : ((h ^ (h >> bits)) & ((1 << bits) - 1));
    }
}

/* one order of ppm_blend: (c ONE + escape below) // (sum c + escape), escape = max(distinct, 1) */
static inline void ppm_order_i16(const int16_t *c, const i64 *below, i64 *out) {
    i64 sum = 0, distinct = 0;
    for (int k = 0; k < 256; k++) { sum += c[k]; distinct += c[k] > 0; }
    i64 esc = distinct > 0 ? distinct : 1, den = sum + esc;
    double inv = 1.0 / (double)den;
    for (int k = 0; k < 256; k++) out[k] = div_pos((i64)c[k] * ONE + esc * below[k], den, inv);
}

static inline void ppm_order_u16(const uint16_t *c, const i64 *below, i64 *out) {
    i64 sum = 0, distinct = 0;
    for (int k = 0; k < 256; k++) { sum += c[k]; distinct += c[k] > 0; }
    i64 esc = distinct > 0 ? distinct : 1, den = sum + esc;
    double inv = 1.0 / (double)den;
    for (int k = 0; k < 256; k++) out[k] = div_pos((i64)c[k] * ONE + esc * below[k], den, inv);
}

static void match_input(const Mixer *m, int mm, i64 lane, i64 bucket, i64 predicted, i64 *p) {
    if (m->ptr[mm * m->L + lane] < 0) {
        for (int k = 0; k < 256; k++) p[k] = ONE >> 8;
        return;
    }
    i64 at = (mm * m->L + lane) * N_BUCKETS + bucket;
    i64 hit = m->hits[at] * ONE / m->tries[at];
    hit = hit < (ONE >> 9) ? (ONE >> 9) : hit > ONE - (ONE >> 9) ? ONE - (ONE >> 9) : hit;
    i64 rest = (ONE - hit) / 255;
    for (int k = 0; k < 256; k++) p[k] = rest;
    p[predicted] = hit;
}

static i64 source_byte(const Source *s, i64 ptr) {
    return s->data && s->n ? s->data[ptr > 0 ? ptr : 0] : 0;
}

/* neural [L, 256] frequencies, p_pcm / p_image [L, 256] and wset_offset [L] (from the signal predictor,
   computed in Python) -> out [L, 256] mixed frequencies (each >= 1) */
void mixer_mix(Mixer *m, const i64 *neural, const i64 *p_pcm, const i64 *p_image, const i64 *wset_offset,
               i64 *out) {
    const i64 L = m->L;
    for (i64 l = 0; l < L; l++) {
        i64 *in = m->inputs + l * N_MODELS * 256;
        const i64 *nn = neural + l * 256;
        i64 s = 0;
        for (int k = 0; k < 256; k++) s += nn[k];
        double inv_s = 1.0 / (double)s;
        for (int k = 0; k < 256; k++) in[k] = div_pos(nn[k] * ONE, s, inv_s);
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
        i64 own[N_OWN], shared[N_SHARED];
        context_rows(m, l, OWN_ORDERS, N_OWN, OWN_BITS, own);
        context_rows(m, l, SHARED_ORDERS, N_SHARED, SHARED_BITS, shared);
        for (int k = 0; k < N_OWN; k++) m->rows[k * L + l] = own[k];
        i64 wset = bucket + wset_offset[l];
        m->wset[l] = wset;
        match_input(m, 0, l, bucket, m->predicted[l], in + 1 * 256);
        match_input(m, 1, l, bucket, m->predicted[L + l], in + 2 * 256);
        match_input(m, 2, l, bucket, m->predicted[2 * L + l], in + DICTIONARY_MATCH * 256);
        const i64 *below = in;                                           /* the neural distribution */
        for (int k = 0; k < N_OWN; k++) {
            i64 rows = OWN_ORDERS[k] == 1 ? 256 : 1 << OWN_BITS;
            ppm_order_i16(m->counts[k] + (l * rows + own[k]) * 256, below, in + (3 + k) * 256);
            below = in + (3 + k) * 256;
        }
        i64 prior[256];
        below = in;
        for (int k = 0; k < N_SHARED; k++) {
            const i64 *fallback = below;
            if (m->has_priors) {                 /* the dictionary's same order, itself blended upwards */
                ppm_order_u16(m->priors.counts[k] + shared[k] * 256, k ? prior : in, prior);
                fallback = prior;
            }
            ppm_order_u16(m->history.counts[k] + shared[k] * 256, fallback, in + (6 + k) * 256);
            below = in + (6 + k) * 256;
        }
        memcpy(in + PCM_INPUT * 256, p_pcm + l * 256, 256 * sizeof(i64));
        memcpy(in + IMAGE_INPUT * 256, p_image + l * 256, 256 * sizeof(i64));
        /* sums of integer products below 2^40: exact in double whatever the order, and they vectorise */
        const i64 *w = m->weights + (l * N_SETS + wset) * N_MODELS;
        i64 *mixed = m->mixed + l * 256;
        double acc[256] = {0};
        for (int i = 0; i < N_MODELS; i++) {
            double wi = (double)w[i];
            for (int k = 0; k < 256; k++) acc[k] += wi * (double)in[i * 256 + k];
        }
        for (int k = 0; k < 256; k++) mixed[k] = (i64)acc[k] >> 16;
        if (!m->geometric) {
            for (int k = 0; k < 256; k++) out[l * 256 + k] = mixed[k] + 1;
            continue;
        }
        double *lp = m->logp + l * N_MODELS * 256;
        for (int i = 0; i < N_MODELS * 256; i++) {
            i64 v = in[i] < 1 ? 1 : in[i] > ONE ? ONE : in[i];
            lp[i] = (double)m->log2[v];
        }
        i64 gsets[N_GEO] = {bucket, N_BUCKETS * (1 + m->byte_class[prev(m, l, 1)]) + bucket};
        for (int g = 0; g < N_GEO; g++) {
            m->gset[g * L + l] = gsets[g];
            const i64 *gw = m->geo_weights + (l * GEO_SETS + gsets[g]) * N_MODELS;
            double z[256] = {0}, zmax;
            for (int i = 0; i < N_MODELS; i++) {
                double wi = (double)gw[i];
                for (int k = 0; k < 256; k++) z[k] += wi * lp[i * 256 + k];
            }
            zmax = z[0];
            for (int k = 1; k < 256; k++) zmax = z[k] > zmax ? z[k] : zmax;
            double *q = m->q + (g * L + l) * 256;
            i64 qs = 0;
            for (int k = 0; k < 256; k++) {
                i64 d = ((i64)zmax - (i64)z[k]) >> 16;
                q[k] = (double)m->exp2[d < EXP_RANGE ? d : EXP_RANGE];
                qs += (i64)q[k];
            }
            m->q_sum[g * L + l] = qs;
            i64 *geo = m->geo + (g * L + l) * 256;
            double inv_q = 1.0 / (double)qs;
            for (int k = 0; k < 256; k++) geo[k] = div_pos((i64)q[k] * ONE, qs, inv_q);
        }
        const i64 *b = m->blend + (l * N_BUCKETS + bucket) * (1 + N_GEO);
        const i64 *g0 = m->geo + l * 256, *g1 = m->geo + (L + l) * 256;
        for (int k = 0; k < 256; k++)
            out[l * 256 + k] = ((b[0] * mixed[k] + b[1] * g0[k] + b[2] * g1[k]) >> 16) + 1;
    }
}

/* bayes_update on one row of n weights */
static void bayes_update(i64 *w, const i64 *p_x, const i64 *floor, i64 floor_all, int n, int shift) {
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

static void find_source_match(Mixer *m, const Source *s, i64 *ptr, i64 lane, i64 h) {
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
void mixer_update(Mixer *m, const i64 *byte) {
    const i64 L = m->L, t = m->t;
    for (i64 l = 0; l < L; l++) {
        const i64 x = byte[l], bucket = m->bucket[l];
        const i64 *in = m->inputs + l * N_MODELS * 256;
        i64 p_x[N_MODELS];
        for (int i = 0; i < N_MODELS; i++) p_x[i] = in[i * 256 + x];
        bayes_update(m->weights + (l * N_SETS + m->wset[l]) * N_MODELS, p_x, m->floor, 0, N_MODELS, W_SHIFT);
        if (m->geometric) {
            const double *lp = m->logp + l * N_MODELS * 256;
            i64 mixes[1 + N_GEO] = {m->mixed[l * 256 + x]};
            for (int g = 0; g < N_GEO; g++) {
                const double *q = m->q + (g * L + l) * 256;
                i64 qs = m->q_sum[g * L + l];
                i64 *gw = m->geo_weights + (l * GEO_SETS + m->gset[g * L + l]) * N_MODELS;
                for (int i = 0; i < N_MODELS; i++) {
                    double e = 0;       /* below 2^37: exact */
                    for (int k = 0; k < 256; k++) e += lp[i * 256 + k] * q[k];
                    i64 v = gw[i] + (i64)lp[i * 256 + x] - (i64)e / qs;   /* both >= 0 */
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

static struct PyModuleDef kernels_module = {PyModuleDef_HEAD_INIT, "_kernels",
                                            "bytezip's compiled coding kernels (called through ctypes)", -1};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&kernels_module); }
