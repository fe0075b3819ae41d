/* ---- context models (mixing.py's numpy twin: `predictors.context`): byte counts per context of order k (the
   previous byte for order 1, a hash of the last k bytes above) over the lane's own chunk (int16 counts, one
   table per lane and order) and over the shared history (uint16 counts, read only); each order blended with
   the one below it as PPM does (the neural distribution below the first), with an escape weight from the
   number of distinct bytes seen; with a priming dictionary, each history order with the dictionary's same
   order instead. ---- */

INLINE int is_delimiter(i64 b) { return b == ',' || b == '\t' || b == ';' || b == '|'; }

/* where the next byte is in its line, from one scan of FIELD_WINDOW bytes back: field, the delimiters since the
   last newline (up to FIELD_MAX, plus FIELD_MAX + 1 where no newline is in the window); since, the bytes since
   the last delimiter or newline (up to SINCE_MAX); above, the byte in the line above at the next byte's column
   (0 where that line is shorter or not in the window) */
typedef struct {
    i64 field, since, above;
} LinePosition;

INLINE LinePosition line_position(const Mixer *m, i64 lane) {
    i64 f = 0, s = SINCE_MAX, j1 = 0, above = 0;        /* j1: the last newline, bytes back */
    int stopped = 0;
    for (int j = 1; j <= FIELD_WINDOW; j++) {
        const i64 b = prev(m, lane, j);
        const int nl = b == '\n', delim = is_delimiter(b);
        if ((nl || delim) && !stopped) {
            stopped = 1;
            if (j <= SINCE_MAX) s = j - 1;
        }
        if (nl) {
            if (j1) {                                   /* the newline before it: the line above is in the window */
                above = j - j1 > j1 ? prev(m, lane, j - j1) : 0;
                break;
            }
            j1 = j;
        }
        if (!j1) f += delim;
    }
    return (LinePosition){(f < FIELD_MAX ? f : FIELD_MAX) + (j1 ? 0 : FIELD_MAX + 1), s, above};
}

/* a context row from the rolling hash of its keys */
INLINE i64 hashed_row(i64 h, int bits) { return (h ^ (h >> bits)) & ((1 << bits) - 1); }

/* the row of an own context that is not the last k bytes (SKIP_2_3, FIELDS, ABOVE, RECORD): a hash of its keys,
   or -1 where it is off (RECORD before a record length is found); `line`: the lane's line_position, for FIELDS
   and ABOVE */
INLINE i64 skip_row(const Mixer *m, i64 lane, i64 code, const LinePosition *line, int bits) {
    i64 keys[3], n = 2, h = 0;
    if (code == RECORD) {
        const i64 r = m->record[lane * RECORD_STATE + REC_LENGTH];
        if (!r) return -1;
        keys[0] = prev(m, lane, (int)r);
        keys[1] = prev(m, lane, (int)(2 * r));
    } else if (code == SKIP_2_3) {
        keys[0] = prev(m, lane, 2);
        keys[1] = prev(m, lane, 3);
    } else if (code == ABOVE) {
        keys[0] = line->above;
        keys[1] = prev(m, lane, 1);
    } else {
        keys[0] = line->field;
        keys[1] = line->since;
        keys[2] = prev(m, lane, 1);
        n = 3;
    }
    for (i64 i = 0; i < n; i++) h = (h * MUL + keys[i] + 1) & MASK;
    return hashed_row(h, bits);
}

/* context_rows: order 1 is the previous byte, higher orders a hash of the last k bytes; after the orders, the
   contexts that are not the last k bytes (codes SKIP_2_3 and up, rising: the line is scanned once for FIELDS
   and ABOVE) */
INLINE void context_rows(const Mixer *m, i64 lane, const i64 *orders, i64 n_orders, int bits, i64 *out) {
    i64 h = 0, chain = 0;
    while (chain < n_orders && orders[chain] < SKIP_2_3) chain++;
    int k = 0;
    for (int j = 1; chain && j <= orders[chain - 1]; j++) {
        i64 p = prev(m, lane, j);
        h = (h * MUL + p + 1) & MASK;
        if (j == orders[k]) out[k++] = j == 1 ? p : hashed_row(h, bits);
    }
    LinePosition line = {0, 0, 0};
    for (i64 i = chain; i < n_orders; i++)
        if (orders[i] == FIELDS || orders[i] == ABOVE) {
            line = line_position(m, lane);
            break;
        }
    for (i64 i = chain; i < n_orders; i++) out[i] = skip_row(m, lane, orders[i], &line, bits);
}

INLINE i64 own_rows(const Mixer *m, i64 k) { return m->own_orders[k] == 1 ? 256 : 1 << OWN_BITS; }

/* one order of ppm_blend: (c ONE + escape below) // (sum c + escape), escape = max(distinct, 1), over int16
   (a lane's own) or uint16 (the history's) counts; the distributions are integers held as doubles (below
   2^33 here: exact). Returns 0 where the context is unseen and out is below itself, else 1 */
#define PPM_ORDER(name, count_t)                                                                          \
    INLINE int name(const count_t *c, const double *below, double *out) {                               \
        i64 sum = 0, distinct = 0;                                                                        \
        for (int k = 0; k < 256; k++) { sum += c[k]; distinct += c[k] > 0; }                              \
        if (sum == 0) {                                   /* an unseen context: (0 + 1 below) // 1 */     \
            memcpy(out, below, 256 * sizeof(double));                                                     \
            return 0;                                                                                     \
        }                                                                                                 \
        i64 esc = distinct > 0 ? distinct : 1, den = sum + esc;                                           \
        const double inv = 1.0 / (double)den, dd = (double)den, de = (double)esc;                        \
        for (int k = 0; k < 256; k++) out[k] = div_pos_f64((double)c[k] * ONE + de * below[k], dd, inv); \
        return 1;                                                                                         \
    }
PPM_ORDER(ppm_order_i16, int16_t)
PPM_ORDER(ppm_order_u16, uint16_t)

/* lane l's context rows (own and shared orders), and a start on loading the count rows its mix will read (rows
   of 512 bytes, mostly far apart in tables of megabytes), so that they arrive while the lane before is mixed */
INLINE void rows_and_prefetch(const Mixer *m, i64 l, i64 *own, i64 *shared) {
    context_rows(m, l, m->own_orders, m->n_own, OWN_BITS, own);
    context_rows(m, l, m->shared_orders, m->n_shared, SHARED_BITS, shared);
    for (i64 k = 0; k < m->n_own; k++) {
        if (own[k] < 0) continue;
        const char *row = (const char *)(m->counts[k] + (l * own_rows(m, k) + own[k]) * 256);
        for (int c = 0; c < 512; c += 64) __builtin_prefetch(row + c);
    }
    for (i64 k = 0; k < m->n_shared; k++) {
        const uint16_t *rows[2] = {m->history.counts[k], m->has_priors ? m->priors.counts[k] : NULL};
        for (int r = 0; r < 2; r++)
            if (rows[r])
                for (int c = 0; c < 512; c += 64) __builtin_prefetch((const char *)(rows[r] + shared[k] * 256) + c);
    }
}

/* own order k of lane l at context row `row`, blended on `below` (below itself where the context is off, row -1,
   as from an unseen context); 0 where p is below itself */
INLINE int chunk_order_input(const Mixer *m, i64 k, i64 l, i64 row, const double *below, double *p) {
    if (row >= 0) return ppm_order_i16(m->counts[k] + (l * own_rows(m, k) + row) * 256, below, p);
    memcpy(p, below, 256 * sizeof(double));
    return 0;
}

/* history order k at context row `row`, blended on `below` (the order under it) or, with a priming dictionary,
   on the dictionary's same order, itself blended upwards from `neural` in `prior` (this lane's, order by order);
   0 where p is `below` itself (never with a dictionary: the prior is no input of the mixer) */
INLINE int history_order_input(const Mixer *m, i64 k, i64 row, const double *below, const double *neural,
                               double *prior, double *p) {
    if (m->has_priors) {
        ppm_order_u16(m->priors.counts[k] + row * 256, k ? prior : neural, prior);
        ppm_order_u16(m->history.counts[k] + row * 256, prior, p);
        return 1;
    }
    return ppm_order_u16(m->history.counts[k] + row * 256, below, p);
}

/* after lane l coded x: count it in its own order k's context (where it is on) */
INLINE void chunk_order_update(Mixer *m, i64 k, i64 l, i64 x) {
    const i64 row = m->rows[k * m->L + l];
    if (row >= 0) m->counts[k][(l * own_rows(m, k) + row) * 256 + x] += 1;
}
