/* ---- the mixer's shared declarations: what every mixer input (match.c, context.c, external ones) and the
   wiring (mixer.c) read. The inputs themselves are declared once, in Python (`bytezip.predictors`): the
   mixer receives that declaration as an array of `Input` and loops over it; bytezip/kernels.py checks the
   constants and structure sizes below against its own at load (`kernel_layout`). ---- */

enum {
    ONE = 1 << 16, N_BUCKETS = 4, N_SETS = 16, N_GEO = 2, GEO_SETS = 36, MAX_INPUTS = 32, MAX_ORDERS = 8,
    MATCH_MIN = 4, MATCH_BITS = 12, HISTORY_MATCH_MIN = 5, HISTORY_MATCH_BITS = 20, OWN_BITS = 10,
    SHARED_BITS = 16, W_SHIFT = 3, BLEND_SHIFT = 4, BLEND_MIN = ONE >> 5, EXP_RANGE = 16 * 256,
    GEO_W_MAX = 16 * ONE, HIT_HALVE = 1000,
    /* the chunk contexts that are not the last k bytes (predictors/context.py) */
    SKIP_2_3 = 65, FIELDS = 66, ABOVE = 67, RECORD = 68, FIELD_WINDOW = 256, FIELD_MAX = 31, SINCE_MAX = 15,
    RECORD_STATE = 4 * 256 + 5, RECORD_VOTES = 16,   /* csrc/record.c */
};
static const i64 MUL = 0x2F0B3, MASK = 0xFFFFFF;

/* The kinds of mixer input (`predictors.Kind` mirrors them): the neural distribution; a match model (arg: 0
   the lane's own chunk, 1 the history, 2 the dictionary); a context model over the lane's chunk or over the
   history (arg: its index among the orders of its kind); a distribution computed elsewhere (arg: which of
   the `external` rows). */
enum { KIND_NEURAL, KIND_MATCH, KIND_CHUNK_ORDER, KIND_HISTORY_ORDER, KIND_EXTERNAL, N_KINDS };

typedef struct {
    i64 kind, arg;
    i64 flat;                      /* 1: the same for every byte here (an external input with no predictor) */
} Input;

/* What the second and third match models and the shared context models read (a History, read only). */
typedef struct {
    const uint8_t *data;           /* [n] bytes of the history (NULL: no such source) */
    i64 n;
    const i64 *match_table;        /* [2^HISTORY_MATCH_BITS] */
    const uint16_t *counts[MAX_ORDERS];  /* [rows, 256] per order */
} Source;

/* Every array of one Mixer (numpy-owned, C-contiguous), and the step's scratch that update() reads.
   n = n_inputs below. */
typedef struct {
    i64 L, width, t, geometric, has_priors;
    i64 n_inputs, n_match, n_own, n_shared;
    const Input *spec;             /* [n] the declaration, in mixing order */
    i64 own_orders[MAX_ORDERS], shared_orders[MAX_ORDERS];
    i64 *hist;                     /* [L, width] bytes coded so far */
    const i64 *sizes;              /* [L] */
    i64 *match_table;              /* [L, 2^MATCH_BITS] */
    i64 *ptr, *len;                /* [n_match, L] */
    i64 *hits, *tries;             /* [n_match, L, N_BUCKETS] */
    int16_t *counts[MAX_ORDERS];   /* [L, rows, 256] per own order */
    i64 *record;                   /* [L, RECORD_STATE] each lane's record length finder (NULL: no RECORD order) */
    i64 *weights;                  /* [L, N_SETS, n] */
    const i64 *floor;              /* [n] */
    i64 *geo_weights;              /* [L, GEO_SETS, n] */
    i64 *blend;                    /* [L, N_BUCKETS, 1 + N_GEO] */
    i64 *final_geo, *final_blend;  /* the same, as each lane's chunk ended */
    Source history, dict_match, priors;  /* match sources 1, 2 and the dictionary's counts (priors) */
    const int32_t *log2;           /* [ONE + 1] log2 table as int32 (gathered 16 at a time) */
    const i64 *exp2, *byte_class;
    /* scratch, written by mix, read by update */
    double *inputs;                /* [L, n, 256] the inputs' distributions (integers below 2^33) */
    i64 *mixed;                    /* [L, 256] */
    double *expected;              /* [L, N_GEO, n] sum over k of q[k] log2 input[k] (integers), per mix */
    i64 *q_sum, *geo;              /* [N_GEO, L] sum of the unnormalised geometric mix q, [N_GEO, L, 256] */
    i64 *varies;                   /* [L, 1 + n]: how many inputs vary with the byte, and which */
    i64 *bucket, *wset, *gset;     /* [L], [L], [N_GEO, L] */
    i64 *has, *predicted, *rows;   /* [n_match, L], [n_match, L], [n_own, L] */
} Mixer;

INLINE i64 prev(const Mixer *m, i64 lane, int j) {
    return m->t >= j ? m->hist[lane * m->width + m->t - j] : 0;
}

INLINE i64 hash_last(const Mixer *m, i64 lane, int n, int bits) {
    i64 h = 0;
    for (int j = 1; j <= n; j++) h = (h * MUL + prev(m, lane, j)) & MASK;
    return (h ^ (h >> bits)) & ((1 << bits) - 1);
}
