/* ---- match models (mixing.py's numpy twin: `predictors.match`): where the bytes before this one occurred
   before, in the lane's own chunk (match 0: a table of the last position of each MATCH_MIN-byte context), in
   the shared history (match 1) or the priming dictionary (match 2) (their tables hash HISTORY_MATCH_MIN bytes),
   the byte that followed there is predicted with the hit rate learnt per match-length bucket. ---- */

INLINE const Source *match_source(const Mixer *m, i64 mm) { return mm == 1 ? &m->history : &m->dict_match; }

INLINE i64 source_byte(const Source *s, i64 ptr) {
    return s->data && s->n ? s->data[ptr > 0 ? ptr : 0] : 0;
}

/* lane l's match state before its mix: whether each match model has a match and the byte it predicts; returns
   the longest current match's bucket (0: no match, then lengths 0-3, 4-15, 16+), which picks weight sets */
INLINE i64 match_prepare(Mixer *m, i64 l) {
    const i64 L = m->L;
    i64 longest = -1;
    for (i64 mm = 0; mm < m->n_match; mm++) {
        const i64 at = mm * L + l, has = m->ptr[at] >= 0;
        m->has[at] = has;
        if (has && m->len[at] > longest) longest = m->len[at];
        m->predicted[at] = mm == 0 ? m->hist[l * m->width + (m->ptr[at] > 0 ? m->ptr[at] : 0)]
                                   : source_byte(match_source(m, mm), m->ptr[at]);
    }
    return longest < 0 ? 0 : longest < 4 ? 1 : longest < 16 ? 2 : 3;
}

/* the distribution of match mm for lane l: its predicted byte at the bucket's hit rate, flat without a match */
INLINE void match_input(const Mixer *m, i64 mm, i64 lane, i64 bucket, double *p) {
    if (m->ptr[mm * m->L + lane] < 0) {
        for (int k = 0; k < 256; k++) p[k] = ONE >> 8;
        return;
    }
    i64 at = (mm * m->L + lane) * N_BUCKETS + bucket;
    i64 hit = m->hits[at] * ONE / m->tries[at];
    hit = hit < (ONE >> 9) ? (ONE >> 9) : hit > ONE - (ONE >> 9) ? ONE - (ONE >> 9) : hit;
    i64 rest = (ONE - hit) / 255;
    for (int k = 0; k < 256; k++) p[k] = (double)rest;
    p[m->predicted[mm * m->L + lane]] = (double)hit;
}

/* after lane l coded x: score match mm's prediction, follow the match or drop it */
INLINE void match_update(Mixer *m, i64 mm, i64 l, i64 x, i64 bucket) {
    const i64 at = mm * m->L + l, has = m->has[at], good = has && m->predicted[at] == x;
    i64 *tries = m->tries + at * N_BUCKETS + bucket, *hits = m->hits + at * N_BUCKETS + bucket;
    *tries += has;
    *hits += good;
    if (*tries > HIT_HALVE) { *tries >>= 1; *hits >>= 1; }
    m->len[at] = good ? m->len[at] + 1 : 0;
    m->ptr[at] = good ? m->ptr[at] + 1 : -1;
    if (mm > 0) {                                    /* ran off the end of what it reads */
        const Source *s = match_source(m, mm);
        if (m->ptr[at] >= s->n && s->data) m->ptr[at] = -1;
    }
    if (m->ptr[at] < 0) m->len[at] = 0;
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

/* once lane l's byte is in (m->t advanced): index the context that ends here, and pick up a match for match
   mm where it has none; *h caches the history hash (-1: not yet computed) for the matches that share it */
INLINE void match_find(Mixer *m, i64 mm, i64 l, i64 *h) {
    if (mm == 0) {
        if (m->t < MATCH_MIN) return;
        const i64 hc = hash_last(m, l, MATCH_MIN, MATCH_BITS);
        i64 *slot = m->match_table + l * (1 << MATCH_BITS) + hc;
        if (m->ptr[l] < 0 && *slot >= 0) m->ptr[l] = *slot;
        *slot = m->t;
        return;
    }
    if (m->t < HISTORY_MATCH_MIN) return;
    if (*h < 0) *h = hash_last(m, l, HISTORY_MATCH_MIN, HISTORY_MATCH_BITS);
    find_source_match(m, match_source(m, mm), m->ptr + mm * m->L + l, l, *h);
}
