/* ---- the coding loops in C, so that a step costs no Python and holds no lock (a round's lanes split among
   threads code in parallel, and a lane alone pays for its arithmetic only). Decoding (`neural._decode_lanes`,
   whose Python loop is its twin where this one cannot run): each step, the exact model's frequencies for
   every lane (exact.c), mixed where the lane is mixed (mixer.c), one symbol of each unfinished lane's
   range-coder stream under them, checked against what its payload can hold, then fed back to the model and
   the mixer. Encoding (`mixing.mix_round`): the mixer over a round whose bytes are known, step by step.
   Both run the sample and pixel predictors (pcm.c, image.c) where the mixer has them.

   The range decoder is constriction's (0.5: `stream.queue.RangeDecoder`, 32-bit words and a 64-bit state, and
   `stream.model.Categorical(perfect=False)`, its lazy categorical model of float64 probabilities at 24-bit
   precision) operation for operation, so that what constriction's encoder wrote decodes here, and fails here
   where it fails there; tests/test_kernels.py decodes the same streams with both. ---- */

enum { CODER_PRECISION = 24, CODER_FREE = (1 << CODER_PRECISION) - 256 };
enum { NO_PREDICTOR, SAMPLES, PIXELS };  /* an external input's predictor: none, PcmState, ImageState */

/* What a mixer's steps read beyond `Mixer` (mirrors `kernels.MixerSteps`; `mixing.Mixer.kernel_steps`) */
typedef struct {
    Mixer *mixer;
    i64 *const *external;          /* the external inputs [L, 256] and weight set offsets [L]: written each step
                                      where a predictor is, else flat */
    i64 *wset_offset;
    i64 n_external;
    const i64 *predictor_kind;     /* [n_external] */
    void *const *predictor;        /* [n_external] the predictors' kernel states (`mixing.Mixer.external`) */
    const uint8_t *history;        /* what the pixel predictor reads of earlier rounds */
    i64 history_n;
    i64 *scratch;                  /* [L, 256 + 3] a predictor's distributions, active and high flags, prev */
} MixerSteps;

/* The state of one decoding batch (mirrors `kernels.Decoding`); the arrays are numpy's, the caches and
   model steppers' those of `exact.Stepper`. */
typedef struct {
    i64 B, P, t, whole;            /* lanes, patch size, steps done, 1: check each chunk's end */
    const GlobalModel *global;
    const LocalModel *local;
    i64 *patch, *prev;             /* [B, P] this patch's bytes, [B] the byte before this one */
    float *g;                      /* [B, P, dl] the global model's conditioning of this patch */
    float **gk, **gv, **lk, **lv;  /* the caches' keys and values, a pointer per layer */
    i64 g_length;                  /* the global caches' length in patches */
    MixerSteps mix;                /* mix.mixer NULL: no lane is mixed */
    const i64 *mixed_lane;         /* [B] 1 where the lane is mixed (NULL: all are) */
    const uint32_t *const *words;  /* [B] each lane's payload as 32-bit words (little-endian bytes) */
    const i64 *n_words;            /* [B] */
    i64 *next;                     /* [B] the next word to read */
    uint64_t *lower, *range, *point;   /* [B] each lane's range decoder */
    const i64 *lengths;            /* [B] bytes to decode per lane */
    const double *payload_bits;    /* [B] 8 x each payload's bytes */
    double slack;                  /* format.INFO_SLACK_BITS: payload and information differ by at most this */
    double *bits;                  /* [B] information decoded so far */
    uint8_t *out;                  /* [B, width] */
    i64 width;
    i64 *freqs, *mixed, *symbols;  /* scratch [B, 256], [B, 256] and the step's symbols [B] */
    i64 failed_lane;               /* set where decode_steps fails */
} Decoding;

/* what decode_steps returns */
enum { DECODED = 0, NOT_A_STREAM = 1, TOO_MUCH_INFORMATION = 2, LONGER_THAN_DECODED = 3, OUT_OF_MEMORY = -1 };

/* constriction's `read_point`: the first two words, the first one high; missing words are zeros */
void decoding_start(Decoding *d) {
    for (i64 b = 0; b < d->B; b++) {
        uint64_t point = 0;
        i64 n = d->n_words[b] < 2 ? d->n_words[b] : 2;
        for (i64 i = 0; i < n; i++) point = point << 32 | d->words[b][i];
        d->point[b] = n ? point << (32 * (2 - n)) : 0;
        d->lower[b] = 0;
        d->range[b] = UINT64_MAX;
        d->next[b] = n;
    }
}

/* One symbol of lane b under the integer frequencies f [256] (the coder sees f / sum f as float64, as numpy's
   `neural.probabilities` computes them: the integer sum is exact in double). Returns the symbol, or -1 where
   the stream is invalid (constriction's InvalidData); *p: the symbol's float probability. */
INLINE int decode_symbol(Decoding *d, i64 b, const i64 *f, double *p) {
    double prob[256];
    i64 total = 0;
    for (int k = 0; k < 256; k++) total += f[k];
    const double sum = (double)total;
    double normalization = -0.0;                 /* Rust's float Sum: a left fold */
    for (int k = 0; k < 256; k++) {
        prob[k] = (double)f[k] / sum;
        normalization += prob[k];
    }
    const double scale = (double)CODER_FREE / normalization;
    const uint64_t coder_scale = d->range[b] >> CODER_PRECISION;
    const uint64_t quantile = (d->point[b] - d->lower[b]) / coder_scale;
    if (quantile >= (1ull << CODER_PRECISION)) return -1;
    /* the lazy model's left cumulative of symbol s: (u32)(sum of prob[0..s) x scale) + s; the last ends at
       2^24 */
    double cumulative = 0.0;
    uint32_t left = 0, right = 0;
    int s = 0;
    for (; s < 256; s++) {
        const double next = cumulative + prob[s];
        right = s == 255 ? 1u << CODER_PRECISION : (uint32_t)(next * scale) + (uint32_t)s + 1;
        if (right > quantile) break;
        left = right;
        cumulative = next;
    }
    d->lower[b] += coder_scale * left;
    d->range[b] = coder_scale * (right - left);
    if (d->range[b] < (1ull << 32)) {
        d->lower[b] <<= 32;
        d->range[b] <<= 32;
        d->point[b] <<= 32;
        if (d->next[b] < d->n_words[b]) d->point[b] |= d->words[b][d->next[b]++];
    }
    *p = prob[s];
    return s;
}

/* the external inputs' rows and weight set offsets for this step, as `mixing.Mixer._external_inputs` has
   them: each predictor's distribution where it is active, else flat, and the group of the last active one */
static void predict(MixerSteps *d) {
    const Mixer *m = d->mixer;
    const i64 B = m->L, t = m->t;
    i64 *p = d->scratch, *active = p + B * 256, *high = active + B, *prev = high + B;
    for (i64 b = 0; b < B; b++) {
        prev[b] = t >= 1 ? m->hist[b * m->width + t - 1] : 0;
        d->wset_offset[b] = 0;
    }
    for (i64 e = 0; e < d->n_external; e++) {
        if (d->predictor_kind[e] == NO_PREDICTOR) continue;
        if (d->predictor_kind[e] == SAMPLES) {
            pcm_frequencies(d->predictor[e], t, prev, p, active, high);
        } else {
            image_frequencies(d->predictor[e], t, m->hist, m->width, d->history, d->history_n, p, active);
        }
        i64 *row = d->external[e];
        for (i64 b = 0; b < B; b++) {
            if (active[b]) {
                memcpy(row + b * 256, p + b * 256, sizeof(i64) * 256);
                d->wset_offset[b] = N_BUCKETS * (d->predictor_kind[e] == SAMPLES ? 1 + high[b] : 3);
            } else {
                for (int k = 0; k < 256; k++) row[b * 256 + k] = ONE >> 8;
            }
        }
    }
}

/* after the step's bytes [L] are coded: the predictors learn from them, then the mixer (as in Python) */
static void learn(MixerSteps *d, const i64 *byte) {
    const i64 B = d->mixer->L;
    const i64 *prev = d->scratch + B * 256 + 2 * B;
    for (i64 e = 0; e < d->n_external; e++) {
        if (d->predictor_kind[e] == SAMPLES) pcm_update(d->predictor[e], d->mixer->t, byte, prev);
        if (d->predictor_kind[e] == PIXELS) image_update(d->predictor[e], byte);
    }
    mixer_update(d->mixer, byte);
}

/* The encoder's mixer over a round (`mixing.mix_round`): for each step t < steps, row t of each lane's neural
   frequencies neural[l] [size, 256] mixed into row t of out[l] (lanes whose chunk has ended skipped), then
   the bytes data[t] [L] learnt. Returns 0, or -1 out of memory. */
int mix_round_steps(MixerSteps *d, const i64 *const *neural, i64 *const *out, const i64 *data, i64 steps) {
    const i64 L = d->mixer->L;
    for (i64 t = 0; t < steps; t++) {
        predict(d);
        if (mixer_mix_rows(d->mixer, neural, out, (const i64 *const *)d->external, d->wset_offset)) return -1;
        learn(d, data + t * L);
    }
    return 0;
}

/* `steps` steps of every lane (or fewer, to the longest lane's end). Returns DECODED, or what went wrong
   (failed_lane: the first lane, in lane order, where it did) */
int decode_steps(Decoding *d, i64 steps) {
    const i64 B = d->B, P = d->P;
    for (i64 n = 0; n < steps; n++, d->t++) {
        const i64 t = d->t, k = t / P, p = t % P;
        int any = 0;
        for (i64 b = 0; b < B; b++) any |= t < d->lengths[b];
        if (!any) break;
        if (p == 0) {
            for (i64 b = 0; b < B; b++) d->prev[b] = 256;
            if (global_step(d->global, B, k, d->patch, d->gk, d->gv, d->g_length, d->g)) return OUT_OF_MEMORY;
        } else {
            for (i64 b = 0; b < B; b++) d->prev[b] = d->patch[b * P + p - 1];
        }
        if (local_step(d->local, B, p, d->prev, d->g, d->lk, d->lv, d->freqs)) return OUT_OF_MEMORY;
        MixerSteps *mix = &d->mix;
        if (mix->mixer) {
            predict(mix);
            if (mixer_mix(mix->mixer, d->freqs, (const i64 *const *)mix->external, mix->wset_offset, d->mixed))
                return OUT_OF_MEMORY;
        }
        double probability[B > 0 ? B : 1];
        for (i64 b = 0; b < B; b++) {
            if (t >= d->lengths[b]) continue;
            const int mixed = mix->mixer && (!d->mixed_lane || d->mixed_lane[b]);
            const int s = decode_symbol(d, b, (mixed ? d->mixed : d->freqs) + b * 256, probability + b);
            if (s < 0) {
                d->failed_lane = b;
                return NOT_A_STREAM;
            }
            d->symbols[b] = s;
        }
        for (i64 b = 0; b < B; b++) {               /* -log2 p, at most the coder's precision */
            if (t >= d->lengths[b]) continue;
            d->bits[b] += -log2(MAX(probability[b], 0x1p-24));
            if (d->bits[b] > d->payload_bits[b] + d->slack) {
                d->failed_lane = b;
                return TOO_MUCH_INFORMATION;
            }
        }
        for (i64 b = 0; b < B; b++)                  /* a payload longer than its chunk's information */
            if (d->whole && t == d->lengths[b] - 1 && d->payload_bits[b] > d->bits[b] + d->slack) {
                d->failed_lane = b;
                return LONGER_THAN_DECODED;
            }
        for (i64 b = 0; b < B; b++) {
            d->out[b * d->width + t] = (uint8_t)d->symbols[b];
            d->patch[b * P + p] = d->symbols[b];
        }
        if (mix->mixer) learn(mix, d->symbols);
    }
    return DECODED;
}
