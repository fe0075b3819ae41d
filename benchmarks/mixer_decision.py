"""Issue 23: keep mixing 256-symbol distributions, or move to binary decisions (paq8px / cmix style)?

Measured on held-out data only (never `../shared/corpus/bench`). For each sample the script

1. runs the shipped model and the current mixer (`bytezip.mixing.mix_round`, with history, dictionary and
   rounds as the codec makes them) and records, at every byte, the mixer's 14 input distributions
   (`mixer._scratch["inputs"]`), its coded (mixed) row and the match bucket. Only what a binary decomposition
   of the coded byte needs is kept: for each input and each of the 8 bits, the frequency mass of the two
   children of the node on the coded byte's path (so p_i(bit = 1 | bits so far)). Cached in --cache as .npz,
   so reruns skip the slow model (~0.7 ms a byte here);
2. costs (a): the current mixer, bits actually coded = mean -log2(mixed[x] / sum(mixed));
3. costs (b): a paq-style binary mixer over the SAME 14 inputs (each turned into 8 bit predictions as cmix does
   with its LSTM's distribution), stretched, mixed by online logistic mixing (weight sets per bit position x
   match bucket, and per partial byte, a small final mixer over the two), (b') then two APM/SSE stages
   (order 0: partial byte; order 1: previous byte and partial byte), as lpaq's; float arithmetic here,
   production would be fixed point like lpaq's;
4. optionally (c): (b') plus cheap bitwise inputs that binary CM makes easy (order-1..4 bitwise context models
   with adaptive-rate counters over everything coded so far), reported apart: other inputs, not a like-for-like
   comparison;
5. times the mixing cores in comparable C (compiled at run time with `cc -O2`, both scalar loops, same inputs):
   the 256-symbol mix (linear + two geometric + blend, and their updates) and the binary one (prefix sums over
   256 per input, stretch, mix, APMs, updates), and counts their operations per byte.

The binary mixer's learning rates are tuned on a separate tuning set (other held-out bytes, not the samples).
Lanes: samples are 32 KiB (8 chunks), for which the codec codes 8 rounds of one chunk each (R = 1), so every
chunk sees all bytes before it and a mixer's state can be carried from chunk to chunk exactly as one stream.

    python benchmarks/mixer_decision.py            # everything (first run: ~5-10 min of model time)
    python benchmarks/mixer_decision.py --help
"""
from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHUNK = 4096
N_IN = 14                       # bytezip.mixing.N_MODELS
CORPUS = ROOT.parent / "shared" / "corpus" / "train"


# -- held-out data ---------------------------------------------------------------------------------------
def _held_general(kind: str) -> list[str]:
    """System files of one kind that `bytezip.train` holds out (crc32(path) % 10 == 0), in its fixed order."""
    from bytezip.train import _fixed_shuffle, _general_files
    return [p for p in _fixed_shuffle(_general_files()[kind]) if zlib.crc32(p.encode()) % 10 == 0]


def _concat(paths: list[str], skip: int, n: int) -> tuple[bytes, list[str]]:
    """n bytes of the files concatenated (as a tar would), after the first `skip` bytes of that stream."""
    from bytezip.train import _read_maybe_gz
    out, used = b"", []
    for p in paths:
        try:
            d = _read_maybe_gz(p, 1 << 20)
        except (OSError, EOFError):
            continue
        if len(d) < 64:
            continue
        if skip >= len(d):
            skip -= len(d)
            continue
        d, skip = d[skip:], 0
        out += d
        used.append(p)
        if len(out) >= n:
            break
    return out[:n], used


def _slice_of_big(paths: list[str], index: int, n: int, min_size: int = 256 << 10) -> tuple[bytes, list[str]]:
    """n bytes from the middle third of the index-th held-out file of at least min_size bytes."""
    big = [p for p in paths if os.path.getsize(p) >= min_size]
    p = big[index]
    with open(p, "rb") as f:
        size = os.path.getsize(p)
        f.seek(size // 3)
        return f.read(n), [p]


def _text_tail(name: str, offset: int, n: int) -> tuple[bytes, list[str]]:
    """n bytes at `offset` into the held-out tail (the last tenth) of a train/text file (`train.load_corpus`)."""
    data = (CORPUS / "text" / name).read_bytes()
    cut = len(data) - len(data) // 10
    return data[cut + offset:cut + offset + n], [f"train/text/{name} (held-out tail +{offset})"]


def samples(n: int) -> dict[str, tuple[str, bytes, list[str]]]:
    """name -> (group, data, sources): the evaluation samples, then the tuning samples (tune_*)."""
    py, doc, man = _held_general("py"), _held_general("doc"), _held_general("man")
    so, exe = _held_general("so"), _held_general("exe")
    docman = [p for pair in itertools.zip_longest(doc, man) for p in pair if p]
    t = n * 3 // 8                # tuning samples: 12 KiB each, bytes disjoint from the evaluation samples
    return {
        "bible": ("text", *_text_tail("bible.txt", 0, n)),
        "bible_2": ("text", *_text_tail("bible.txt", 100_000, n)),
        "world192": ("text", *_text_tail("world192.txt", 0, n)),
        "world192_2": ("text", *_text_tail("world192.txt", 100_000, n)),
        "python": ("code", *_concat(py, 0, n)),
        "python_2": ("code", *_concat(py, 2 * n, n)),
        "doc_man": ("code", *_concat(docman, 0, n)),
        "doc_man_2": ("code", *_concat(docman, 2 * n, n)),
        "so": ("binary", *_slice_of_big(so, 0, n)),
        "so_2": ("binary", *_slice_of_big(so, 2, n)),
        "exe": ("binary", *_slice_of_big(exe, 0, n)),
        "exe_2": ("binary", *_slice_of_big(exe, 1, n)),
        "tune_text": ("tune", *_text_tail("bible.txt", 200_000, t)),
        "tune_code": ("tune", *_concat(py, 4 * n, t)),
        "tune_binary": ("tune", *_slice_of_big(so, 1, t)),
    }


# -- capture: run the codec's model and mixer, keep the bit-path masses ---------------------------------
def path_masses(freqs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """freqs [L, M, 256], coded bytes x [L] -> [L, M, 8, 2]: for bit k (MSB first), the mass of the node's
    0-child and 1-child on x's path."""
    cs = np.concatenate([np.zeros(freqs.shape[:-1] + (1,)), np.cumsum(freqs, -1)], -1)     # [L, M, 257]
    k = np.arange(8)
    lo = (x[:, None] >> (8 - k)) << (8 - k)                                                  # [L, 8]
    mid, hi = lo + (1 << (7 - k)), lo + (1 << (8 - k))
    g = lambda i: np.take_along_axis(cs, np.broadcast_to(i[:, None, :], cs.shape[:2] + (8,)), -1)
    return np.stack([g(mid) - g(lo), g(hi) - g(mid)], -1)


def capture(name: str, data: bytes, cm, cache: Path, full_steps: int = 0) -> dict:
    """Model + current mixer over `data` as the codec codes a file of this size; returns (and caches) x, the
    bit-path masses of the 14 inputs and of the mixed row [n, 15, 8, 2], the bucket, and the bits of (a)."""
    f = cache / f"{name}.npz"
    if f.exists():
        return dict(np.load(f))
    try:
        from bytezip.codec import ROUNDS, neural_frequencies
    except ImportError:                        # the codec's restructuring may move them
        from bytezip.neural import neural_frequencies
        ROUNDS = 8
    from bytezip.mixing import History, Mixer
    chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]
    nf = cache / f"{name}.neural.npy"
    t0 = time.time()
    if nf.exists():
        nn = list(np.load(nf).astype(np.int64).reshape(len(chunks), CHUNK, 256))
    else:
        nn = neural_frequencies(cm, chunks)
        np.save(nf, np.stack(nn).astype(np.int32))
    t_model = time.time() - t0
    R = max(1, -(-len(chunks) // ROUNDS))          # Compressor.round_chunks_for
    history = History()
    out = {k: [] for k in ("x", "masses", "bucket", "bits_a", "bits_neural", "mixed_p")}
    full = []
    t0, steps = time.time(), 0
    for a in range(0, len(chunks), R):
        part, freqs = chunks[a:a + R], nn[a:a + R]
        mixer = Mixer([len(c) for c in part], history, None, cm.dictionary)
        outs = [np.empty_like(q) for q in freqs]
        X = np.zeros((CHUNK, len(part)), dtype=np.int64)
        for i, c in enumerate(part):
            X[:len(c), i] = np.frombuffer(c, dtype=np.uint8)
        rec = []
        for t in range(max(map(len, part))):
            mixer.mix_rows(freqs, outs)
            x = X[t]
            inputs = mixer._scratch["inputs"]
            mixed = np.stack([o[t] for o in outs]).astype(np.float64)
            rec.append((x.copy(), path_masses(np.concatenate([inputs, mixed[:, None]], 1), x).astype(np.float32),
                        mixer._scratch["bucket"].copy()))
            if len(full) < full_steps:
                full.append(np.clip(inputs[0], 0, None).astype(np.int32))
            mixer.update(x)
            steps += 1
        history.learn_weights([(mixer, np.ones(len(part), dtype=bool))])
        history.extend(b"".join(part))
        for lane, c in enumerate(part):          # lanes back into file order
            xs = np.array([r[0][lane] for r in rec[:len(c)]])
            out["x"].append(xs)
            out["masses"].append(np.stack([r[1][lane] for r in rec[:len(c)]]))
            out["bucket"].append(np.array([r[2][lane] for r in rec[:len(c)]]))
            m = outs[lane]
            p = m[np.arange(len(c)), xs] / m.sum(-1)
            out["mixed_p"].append(p)
            out["bits_a"].append(-np.log2(p))
            q = freqs[lane]
            out["bits_neural"].append(-np.log2(q[np.arange(len(c)), xs] / q.sum(-1)))
    res = {k: np.concatenate(v) for k, v in out.items()}
    res["x"] = res["x"].astype(np.uint8)
    res["bucket"] = res["bucket"].astype(np.int8)
    res["seconds_model"] = np.float64(t_model)
    res["seconds_mixer"] = np.float64(time.time() - t0)
    res["round_chunks"] = np.int64(R)
    np.savez(f, **res)
    if full:
        np.save(cache / f"{name}.full_inputs.npy", np.stack(full))
    return res


# -- the two mixers in C (compiled at run time) ----------------------------------------------------------
C_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NI 15            /* the mixer's 14 inputs, then the 256-symbol mixer's own output */
#define NX 5             /* extra bitwise context models (orders 1, 2, 3, 4, 6) */
#define MAXIN (NI + NX + 1)
#define SA 32            /* weight sets of mixer A: bit position x match bucket */
#define SB 256           /* weight sets of mixer B: partial byte */
#define SC (8 * 4 * 8)   /* weight sets of mixer C (with `mixer_c`): bit position x bucket x previous byte's class */
#define APM_N 33
#define XBITS 22
#define CHUNK 4096

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

typedef struct {
    double lr, lr_final, apm_rate, apm_w, clip;
    int64_t mask;        /* bit i: input i feeds the mixer */
    int64_t extras;      /* the NX bitwise context models feed it too */
    int64_t reset_apm;   /* the APMs restart at every chunk (what a lane could not carry) */
    int64_t tables;      /* stretch and squash by 4096-entry tables (as paq), else logf/expf */
    int64_t init_uniform;/* initial weights 0.3 each, else 1.0 on the neural input and 0 elsewhere */
    int64_t mixer_c;     /* a third first-layer mixer, its weights selected by the previous byte's class too */
} Params;

/* bytezip.mixing.BYTE_CLASS: space and control, lower, upper, digit, markup, punctuation, other ASCII, non-ASCII */
static int byte_class(int c) {
    if (c < 33) return 0;
    if (c >= 128) return 7;
    if (c >= 'a' && c <= 'z') return 1;
    if (c >= 'A' && c <= 'Z') return 2;
    if (c >= '0' && c <= '9') return 3;
    if (c == '<' || c == '>' || c == '/' || c == '=' || c == '"' || c == '&') return 4;
    if (c == '.' || c == ',' || c == ';' || c == ':' || c == '!' || c == '?') return 5;
    return 6;
}

typedef struct {
    float wa[SA][MAXIN], wb[SB][MAXIN], wc[SC][MAXIN], wf[8][4];
    float apm1[256][APM_N], apm2[65536][APM_N];
    float *xp; uint8_t *xn;          /* extra context models: probability and count per slot */
    uint32_t xh[NX];                 /* their context hashes for this byte */
    uint8_t hist[8];
    float ST[4096], SQ[4096];
} State;

static float squash_f(float s) { return 1.0f / (1.0f + expf(-s)); }

static inline float stretch(const State *S, const Params *P, float p) {
    if (P->tables) return S->ST[(int)(p * 4095.0f + 0.5f)];
    return logf(p / (1.0f - p));
}
static inline float squash(const State *S, const Params *P, float s) {
    if (P->tables) { int i = (int)((s + 8.0f) * 256.0f); return S->SQ[i < 0 ? 0 : i > 4095 ? 4095 : i]; }
    if (s > 30.0f) s = 30.0f; if (s < -30.0f) s = -30.0f;
    return squash_f(s);
}
static inline float clipp(float p, float c) { return p < c ? c : p > 1.0f - c ? 1.0f - c : p; }

static void apm_init(float *t) { for (int j = 0; j < APM_N; j++) t[j] = squash_f((float)j * 0.5f - 8.0f); }

static State *state_new(const Params *P) {
    State *S = (State *)calloc(1, sizeof(State));
    if (!S) return NULL;
    for (int i = 0; i < 4096; i++) {
        float p = clipp((float)i / 4095.0f, 1.0f / 8192.0f);
        S->ST[i] = logf(p / (1.0f - p));
        S->SQ[i] = squash_f((float)i / 256.0f - 8.0f);
    }
    for (int s = 0; s < SA; s++) for (int i = 0; i < MAXIN; i++) S->wa[s][i] = P->init_uniform ? 0.3f : (i == 0);
    for (int s = 0; s < SB; s++) for (int i = 0; i < MAXIN; i++) S->wb[s][i] = P->init_uniform ? 0.3f : (i == 0);
    for (int s = 0; s < SC; s++) for (int i = 0; i < MAXIN; i++) S->wc[s][i] = P->init_uniform ? 0.3f : (i == 0);
    for (int s = 0; s < 8; s++) {
        S->wf[s][0] = S->wf[s][1] = P->mixer_c ? 1.0f / 3 : 0.5f;
        S->wf[s][2] = P->mixer_c ? 1.0f / 3 : 0.0f; S->wf[s][3] = 0.0f;
    }
    for (int c = 0; c < 256; c++) apm_init(S->apm1[c]);
    for (int c = 0; c < 65536; c++) apm_init(S->apm2[c]);
    if (P->extras) {
        S->xp = (float *)malloc(sizeof(float) * ((size_t)NX << XBITS));
        S->xn = (uint8_t *)calloc((size_t)NX << XBITS, 1);
        for (size_t i = 0; i < ((size_t)NX << XBITS); i++) S->xp[i] = 0.5f;
    }
    return S;
}
static void state_free(State *S) { if (S) { free(S->xp); free(S->xn); free(S); } }

static inline float apm_p(const float *t, float s, int *j, float *f) {
    float pos = (s < -8.0f ? -8.0f : s > 8.0f ? 8.0f : s) * 2.0f + 16.0f;
    int i = (int)pos; if (i > 31) i = 31;
    *j = i; *f = pos - (float)i;
    return t[i] * (1.0f - *f) + t[i + 1] * *f;
}
static inline void apm_update(float *t, int j, float f, int y, float rate) {
    t[j] += rate * (1.0f - f) * ((float)y - t[j]);
    t[j + 1] += rate * f * ((float)y - t[j + 1]);
}

/* Code one byte x bit by bit. m: [NI][8][2] masses of each input's two children on x's path. Adds the bits
   of the mixer (b) and of the mixer + APMs (b') to cost[0], cost[1]. */
static void code_byte(State *S, const Params *P, const float *m, int x, int bucket, float *cost) {
    float in[MAXIN];
    int n_in, c0 = 1, c1 = S->hist[0];
    float clip = (float)P->clip;
    if (P->extras) {                          /* context hashes of orders 1, 2, 3, 4, 6 */
        static const int orders[NX] = {1, 2, 3, 4, 6};
        for (int o = 0; o < NX; o++) {
            uint32_t h = (uint32_t)(o + 1) * 0x9E3779B1u;
            for (int j = 0; j < orders[o]; j++) h = (h ^ S->hist[j]) * 0x01000193u;
            S->xh[o] = h;
        }
    }
    for (int k = 0; k < 8; k++) {
        int y = (x >> (7 - k)) & 1;
        n_in = 0;
        for (int i = 0; i < NI; i++) {
            if (!((P->mask >> i) & 1)) continue;
            float m0 = m[(i * 8 + k) * 2], m1 = m[(i * 8 + k) * 2 + 1];
            float p = m0 + m1 > 0.0f ? m1 / (m0 + m1) : 0.5f;
            in[n_in++] = stretch(S, P, clipp(p, clip));
        }
        size_t slot[NX];
        if (P->extras)
            for (int o = 0; o < NX; o++) {
                slot[o] = ((size_t)o << XBITS) | (((S->xh[o] + (uint32_t)c0 * 0x2F0B3u) * 0x9E3779B1u) >> (32 - XBITS));
                in[n_in++] = stretch(S, P, clipp(S->xp[slot[o]], 1.0f / 4096.0f));
            }
        in[n_in++] = 0.25f;                   /* bias */
        float *wa = S->wa[k * 4 + bucket], *wb = S->wb[c0], *wc = S->wc[(k * 4 + bucket) * 8 + byte_class(c1)];
        float da = 0.0f, db = 0.0f, dc = 0.0f;
        for (int i = 0; i < n_in; i++) { da += wa[i] * in[i]; db += wb[i] * in[i]; }
        if (P->mixer_c) for (int i = 0; i < n_in; i++) dc += wc[i] * in[i];
        float pa = clipp(squash(S, P, da), 1e-6f), pb = clipp(squash(S, P, db), 1e-6f);
        float pc = clipp(squash(S, P, dc), 1e-6f);
        float sa = stretch(S, P, pa), sb = stretch(S, P, pb), sc = P->mixer_c ? stretch(S, P, pc) : 0.0f;
        float *wf = S->wf[k];
        float df = wf[0] * sa + wf[1] * sb + wf[2] * sc + wf[3] * 0.25f;
        float p = clipp(squash(S, P, df), 1.0f / 65536.0f);
        float s = stretch(S, P, p);
        int j1, j2; float f1, f2;
        float *t1 = S->apm1[c0], *t2 = S->apm2[(c1 << 8) | c0];
        float q1 = apm_p(t1, s, &j1, &f1), q2 = apm_p(t2, s, &j2, &f2);
        float w = (float)P->apm_w;
        float pf = clipp((1.0f - w) * p + w * 0.5f * (q1 + q2), 1.0f / 65536.0f);
        cost[0] += -log2f(y ? p : 1.0f - p);
        cost[1] += -log2f(y ? pf : 1.0f - pf);
        /* learn */
        float ea = (float)y - pa, eb = (float)y - pb, ec = (float)y - pc, ef = (float)y - p;
        float lr = (float)P->lr, lf = (float)P->lr_final;
        for (int i = 0; i < n_in; i++) { wa[i] += lr * ea * in[i]; wb[i] += lr * eb * in[i]; }
        if (P->mixer_c) for (int i = 0; i < n_in; i++) wc[i] += lr * ec * in[i];
        wf[0] += lf * ef * sa; wf[1] += lf * ef * sb; wf[2] += lf * ef * sc; wf[3] += lf * ef * 0.25f;
        apm_update(t1, j1, f1, y, (float)P->apm_rate);
        apm_update(t2, j2, f2, y, (float)P->apm_rate);
        if (P->extras)
            for (int o = 0; o < NX; o++) {
                uint8_t n = S->xn[slot[o]];
                S->xp[slot[o]] += ((float)y - S->xp[slot[o]]) / ((float)n + 1.5f);
                if (n < 60) S->xn[slot[o]] = n + 1;
            }
        c0 = (c0 << 1) | y;
    }
    memmove(S->hist + 1, S->hist, 7);
    S->hist[0] = (uint8_t)x;
}

/* The whole sample as one stream (rounds of one chunk: every state carried); cost [n][2]. */
int binary_run(const float *masses, const uint8_t *x, const int8_t *bucket, int64_t n, const Params *P,
               float *cost) {
    State *S = state_new(P);
    if (!S) return 1;
    for (int64_t t = 0; t < n; t++) {
        if (P->reset_apm && t % CHUNK == 0) {
            for (int c = 0; c < 256; c++) apm_init(S->apm1[c]);
            for (int c = 0; c < 65536; c++) apm_init(S->apm2[c]);
        }
        cost[2 * t] = cost[2 * t + 1] = 0.0f;
        code_byte(S, P, masses + t * NI * 16, x[t], bucket[t], cost + 2 * t);
    }
    state_free(S);
    return 0;
}

/* Timing, binary: from the 14 full input distributions [T][14][256] (int32) as the mixer would get them:
   each input's total and, for each bit, the mass of the 1-child of the node on x's path (integer sums over
   256 + 255 entries), then code_byte. Returns the seconds of the loop (state set up before the clock starts);
   the bits of (b') in *bits. */
double binary_time(const int32_t *inputs, const uint8_t *x, const int8_t *bucket, int64_t T, const Params *P,
                   double *bits) {
    State *S = state_new(P);
    float m[NI * 16], cost[2] = {0, 0};
    memset(m, 0, sizeof m);
    double t0 = now();
    for (int64_t t = 0; t < T; t++) {
        const int32_t *in = inputs + t * 14 * 256;
        for (int i = 0; i < 14; i++) {
            if (!((P->mask >> i) & 1)) continue;
            const int32_t *r = in + i * 256;
            int32_t node = 0, lo = 0;
            for (int k = 0; k < 256; k++) node += r[k];
            for (int k = 0; k < 8; k++) {
                int half = 1 << (7 - k), mid = lo + half;
                int32_t s1 = 0;
                for (int j = mid; j < mid + half; j++) s1 += r[j];
                m[(i * 8 + k) * 2] = (float)(node - s1);
                m[(i * 8 + k) * 2 + 1] = (float)s1;
                if ((x[t] >> (7 - k)) & 1) { lo = mid; node = s1; } else node -= s1;
            }
        }
        code_byte(S, P, m, x[t], bucket[t], cost);
    }
    double dt = now() - t0;
    state_free(S);
    *bits = cost[1];
    return dt;
}

/* Timing, 256 symbols: the current mixer's arithmetic in float (linear mix with a weight set per bucket and a
   damped Bayesian update; two geometric mixes over log2 tables with exp2 by table and their gradient update;
   the blend of the three and its update; the sum a range coder needs). Returns the loop's seconds, the bits
   in *bits_out. */
#define GSETS 36
double mix256_time(const int32_t *inputs, const uint8_t *x, const int8_t *bucket, int64_t T,
                   const int64_t *byte_class, double *bits_out) {
    static float LOG2[65537], EXP2[4097];
    for (int i = 0; i <= 65536; i++) LOG2[i] = log2f((float)(i ? i : 1));
    for (int i = 0; i <= 4096; i++) EXP2[i] = exp2f(-(float)i / 256.0f);
    float w[4][14], gw[GSETS][14], bl[4][3], lin[256], lp[14][256], q[2][256], z[256];
    for (int s = 0; s < 4; s++) { for (int i = 0; i < 14; i++) w[s][i] = 1.0f / 14; bl[s][0] = bl[s][1] = bl[s][2] = 1.0f / 3; }
    for (int s = 0; s < GSETS; s++) for (int i = 0; i < 14; i++) gw[s][i] = i == 0;
    double bits = 0.0, t0 = now();
    int prev = 0;
    for (int64_t t = 0; t < T; t++) {
        const int32_t *in = inputs + t * 14 * 256;
        int s = bucket[t], gs[2] = {s, 4 * (1 + (int)byte_class[prev]) + s}, xt = x[t];
        for (int k = 0; k < 256; k++) lin[k] = 0.0f;
        for (int i = 0; i < 14; i++) for (int k = 0; k < 256; k++) lin[k] += w[s][i] * (float)in[i * 256 + k];
        for (int i = 0; i < 14; i++) for (int k = 0; k < 256; k++) {
            int v = in[i * 256 + k]; lp[i][k] = LOG2[v < 0 ? 0 : v > 65536 ? 65536 : v];
        }
        float S[2];
        for (int g = 0; g < 2; g++) {
            float zmax = -1e30f;
            for (int k = 0; k < 256; k++) z[k] = 0.0f;
            for (int i = 0; i < 14; i++) for (int k = 0; k < 256; k++) z[k] += gw[gs[g]][i] * lp[i][k];
            for (int k = 0; k < 256; k++) zmax = z[k] > zmax ? z[k] : zmax;
            S[g] = 0.0f;
            for (int k = 0; k < 256; k++) {
                int d = (int)((zmax - z[k]) * 256.0f); q[g][k] = EXP2[d > 4096 ? 4096 : d]; S[g] += q[g][k];
            }
        }
        float L = 0.0f, tot = 0.0f, out_x = 0.0f;
        for (int k = 0; k < 256; k++) L += lin[k];
        for (int k = 0; k < 256; k++) {
            float o = bl[s][0] * lin[k] / L + bl[s][1] * q[0][k] / S[0] + bl[s][2] * q[1][k] / S[1] + 1e-7f;
            tot += o; if (k == xt) out_x = o;
        }
        bits += -log2((double)out_x / tot);
        /* updates */
        float px = lin[xt] / L;
        for (int i = 0; i < 14; i++) {
            float pi = (float)in[i * 256 + xt] / 65536.0f;
            w[s][i] += w[s][i] * (pi - px) / (px + 1e-9f) * 0.125f;
            if (w[s][i] < 1.0f / 256) w[s][i] = 1.0f / 256;
        }
        for (int g = 0; g < 2; g++)
            for (int i = 0; i < 14; i++) {
                float e = 0.0f;
                for (int k = 0; k < 256; k++) e += lp[i][k] * q[g][k];
                float v = gw[gs[g]][i] + 0.0056f * (lp[i][xt] - e / S[g]);
                gw[gs[g]][i] = v > 16.0f ? 16.0f : v < -16.0f ? -16.0f : v;
            }
        float mx[3] = {lin[xt] / L, q[0][xt] / S[0], q[1][xt] / S[1]}, P = 0.0f;
        for (int j = 0; j < 3; j++) P += bl[s][j] * mx[j];
        for (int j = 0; j < 3; j++) { bl[s][j] += bl[s][j] * (mx[j] - P) / (P + 1e-9f) * 0.0625f; if (bl[s][j] < 1.0f / 32) bl[s][j] = 1.0f / 32; }
        prev = xt;
    }
    *bits_out = bits;
    return now() - t0;
}
"""


class Params(ctypes.Structure):
    _fields_ = [("lr", ctypes.c_double), ("lr_final", ctypes.c_double), ("apm_rate", ctypes.c_double),
                ("apm_w", ctypes.c_double), ("clip", ctypes.c_double), ("mask", ctypes.c_int64),
                ("extras", ctypes.c_int64), ("reset_apm", ctypes.c_int64), ("tables", ctypes.c_int64),
                ("init_uniform", ctypes.c_int64), ("mixer_c", ctypes.c_int64)]


SAME_INPUTS = (1 << N_IN) - 1            # the 14 inputs of the current mixer
DEFAULTS = dict(lr=0.002, lr_final=0.002, apm_rate=0.02, apm_w=0.5, clip=1 / 65536, mask=SAME_INPUTS, extras=0,
                reset_apm=0, tables=0, init_uniform=0, mixer_c=0)


def build_lib(cache: Path, cflags: str = "-O2") -> ctypes.CDLL:
    tag = zlib.crc32(cflags.encode())
    src, so = cache / "mixer_decision.c", cache / f"mixer_decision_{tag:08x}.so"
    src.write_text(C_SOURCE)
    subprocess.run(["cc", *cflags.split(), "-shared", "-fPIC", "-o", str(so), str(src), "-lm"], check=True)
    lib = ctypes.CDLL(str(so))
    p = ctypes.c_void_p
    lib.binary_run.argtypes = [p, p, p, ctypes.c_int64, ctypes.POINTER(Params), p]
    lib.binary_run.restype = ctypes.c_int
    lib.binary_time.argtypes = [p, p, p, ctypes.c_int64, ctypes.POINTER(Params), p]
    lib.binary_time.restype = ctypes.c_double
    lib.mix256_time.argtypes = [p, p, p, ctypes.c_int64, p, p]
    lib.mix256_time.restype = ctypes.c_double
    return lib


def binary_cost(lib, s: dict, **kw) -> np.ndarray:
    """Bits per byte [n, 2] of the binary mixer (b) and of mixer + APMs (b') on a captured sample."""
    prm = Params(**{**DEFAULTS, **{k: v for k, v in kw.items() if k in DEFAULTS}})
    masses = np.ascontiguousarray(s["masses"], dtype=np.float32)
    x, b = np.ascontiguousarray(s["x"]), np.ascontiguousarray(s["bucket"])
    cost = np.zeros((len(x), 2), dtype=np.float32)
    if lib.binary_run(masses.ctypes.data, x.ctypes.data, b.ctypes.data, len(x), ctypes.byref(prm),
                      cost.ctypes.data):
        raise MemoryError
    return cost


# -- tuning, evaluation, timing --------------------------------------------------------------------------
VARIANTS = {   # the rows beyond (b) and (b'): what they change, with their learning rate tuned apart
    "b'3": dict(mixer_c=1),                          # (b') with a third first-layer mixer (previous byte's class)
    "c": dict(extras=1),                             # (b') + bitwise context models: other inputs
    "d": dict(mask=1 << N_IN),                       # the 256-symbol mixer's output alone -> bits + APMs
    "e": dict(mask=(1 << (N_IN + 1)) - 1),           # the 14 inputs and the 256-symbol mix, mixed bitwise
    "f": dict(mask=1 << N_IN, extras=1),             # d + the bitwise context models
}
LABELS = {"neural": "model alone", "a": "(a) 256 mixer", "b": "(b) binary, same inputs",
          "b'": "(b') binary + APMs", "b' APMs restarted per chunk": "(b') APMs restarted per chunk",
          "b' stretch/squash tables": "(b') 12-bit tables",
          "b'3": "(b'3) b' + 3rd mixer (prev. byte class)", "c": "(c) b' + bitwise CMs",
          "d": "(d) 256 mix -> bits + APMs", "d before APMs": "(d) before APMs", "e": "(e) 14 inputs + 256 mix, binary", "f": "(f) d + bitwise CMs"}


def tune(lib, tuning: list[dict]) -> tuple[dict, dict]:
    """Coordinate search on the tuning samples only: the mixer's rates, clip and start (on (b)), then the APMs'
    rate and weight (on (b')), then each further variant's learning rate. Returns (parameters, the tuning
    set's bits per byte)."""
    def bpb(col, **kw):
        tot = sum(binary_cost(lib, s, **kw)[:, col].sum() for s in tuning)
        return float(tot / sum(len(s["x"]) for s in tuning))
    grid = itertools.product([0.001, 0.002, 0.003, 0.005, 0.007, 0.01, 0.015, 0.02], [0.0005, 0.002, 0.005, 0.01],
                             [1 / 4096, 1 / 65536], [0, 1])
    best = min(grid, key=lambda g: bpb(0, lr=g[0], lr_final=g[1], clip=g[2], init_uniform=g[3]))
    p = dict(lr=best[0], lr_final=best[1], clip=best[2], init_uniform=best[3])
    best = min(itertools.product([0.005, 0.01, 0.02, 0.04], [0.25, 0.5, 0.75]),
               key=lambda g: bpb(1, **p, apm_rate=g[0], apm_w=g[1]))
    p.update(apm_rate=best[0], apm_w=best[1])
    scores = {"b": bpb(0, **p), "b'": bpb(1, **p)}
    for v, kw in VARIANTS.items():
        p["lr_" + v] = min([0.0005, 0.001, 0.002, 0.003, 0.005, 0.007, 0.01, 0.015],
                           key=lambda lr: bpb(1, **{**p, **kw, "lr": lr}))
        scores[v] = bpb(1, **{**p, **kw, "lr": p["lr_" + v]})
    return p, scores


def evaluate(lib, s: dict, p: dict) -> dict:
    n = len(s["x"])
    b = binary_cost(lib, s, **p).mean(0)
    r = {"bytes": n, "neural": float(s["bits_neural"].mean()), "a": float(s["bits_a"].mean()),
         "b": float(b[0]), "b'": float(b[1]),
         "b' APMs restarted per chunk": float(binary_cost(lib, s, **p, reset_apm=1)[:, 1].mean()),
         "b' stretch/squash tables": float(binary_cost(lib, s, **p, tables=1)[:, 1].mean())}
    for v, kw in VARIANTS.items():
        c = binary_cost(lib, s, **{**p, **kw, "lr": p["lr_" + v]}).mean(0)
        r[v] = float(c[1])
        if v == "d":
            r["d before APMs"] = float(c[0])
    return r


def timings(lib, cache: Path, sample: dict, p: dict, cm, data: bytes, repeats: int = 5) -> dict:
    """Seconds per byte of the two mixing cores in C on the same full inputs (best of `repeats`), and of the
    production mixer (input construction included) for reference."""
    from bytezip.mixing import BYTE_CLASS, History, mix_round
    full = np.ascontiguousarray(np.load(cache / "bible.full_inputs.npy"))        # [T, 14, 256] int32
    T = len(full)
    x, b = np.ascontiguousarray(sample["x"][:T]), np.ascontiguousarray(sample["bucket"][:T])
    cls = np.ascontiguousarray(BYTE_CLASS, dtype=np.int64)
    out = {"steps": T, "us_per_byte": {}, "bits_per_byte": {}}
    us, bits_of = out["us_per_byte"], out["bits_per_byte"]

    def best(name, f):
        bits, runs = ctypes.c_double(), []
        for _ in range(repeats):
            runs.append(f(ctypes.byref(bits)))
        us[name], bits_of[name] = 1e6 * min(runs) / T, bits.value / T
    best("(a) 256 mixer core", lambda bits: lib.mix256_time(full.ctypes.data, x.ctypes.data, b.ctypes.data, T,
                                                            cls.ctypes.data, bits))
    base = {k: v for k, v in p.items() if k in DEFAULTS}
    for name, kw in (("(b') binary + APMs, logf/expf", {}), ("(b') binary + APMs", {"tables": 1}),
                     ("(b'3) b' + 3rd mixer", {"tables": 1, "mixer_c": 1, "lr": p["lr_b'3"]}),
                     ("(c) b' + bitwise CMs", {"tables": 1, "extras": 1, "lr": p["lr_c"]}),
                     ("(d) add-on: 1 distribution -> bits + APMs", {"tables": 1, "mask": 1, "lr": p["lr_d"]}),
                     ("(f) add-on: d + bitwise CMs", {"tables": 1, "mask": 1, "extras": 1, "lr": p["lr_f"]})):
        # d and f read the 256 mixer's output row, which the timing inputs lack: their add-on is timed on one
        # input (the neural one) in its place, the same arithmetic
        prm = Params(**{**DEFAULTS, **base, **kw})
        best(name, lambda bits: lib.binary_time(full.ctypes.data, x.ctypes.data, b.ctypes.data, T,
                                                ctypes.byref(prm), bits))
    bits_of["(a) production, same steps"] = float(sample["bits_a"][:T].mean())
    bits_of["(b') binary_run, same steps"] = float(binary_cost(lib, sample, **p)[:T, 1].mean())
    nf = cache / "bible.neural.npy"
    nn = list(np.load(nf)[:1].astype(np.int64))
    chunk = [data[:CHUNK]]
    t0 = time.perf_counter()
    for _ in range(repeats):
        mix_round(nn, chunk, History(), None, cm.dictionary)
    us["production mixer, 1 lane (kernel + Python step loop, inputs built)"] = \
        1e6 * (time.perf_counter() - t0) / repeats / CHUNK
    nn8 = list(np.load(nf).astype(np.int64))
    chunks8 = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]
    t0 = time.perf_counter()
    mix_round(nn8, chunks8, History(), None, cm.dictionary)
    us["production mixer, 8 lanes (per lane-byte)"] = 1e6 * (time.perf_counter() - t0) / len(data)
    return out


def operations() -> dict:
    """Operations per byte, counted from the C code above (14 inputs, 256 symbols, 8 bits)."""
    M, K = N_IN, 256

    def binary(m: int, first: int = 2) -> dict:
        n = m + 1                                             # inputs + bias
        ops = {f"path masses ({m} x (256 + 255) integer adds)": m * (K + K - 1),
               "bit probabilities (divisions)": 8 * m, "stretch": 8 * (m + first + 1),
               "first-layer mixers MACs": 8 * first * n, "final mixer MACs": 8 * (first + 1),
               "squash": 8 * (first + 1), "APM lookups + interpolation": 8 * 2 * 2,
               "weight updates MACs": 8 * (first * n + first + 1), "APM updates": 8 * 4}
        return {**ops, "total": sum(ops.values())}
    ops256 = {"linear mix MACs": M * K, "log2 lookups": M * K, "geometric mixes MACs": 2 * M * K,
              "exp2 lookups": 2 * K, "blend + normalise": 4 * K,
              "geometric gradient MACs (E_q log p)": 2 * M * K, "linear + blend updates": 3 * M + 6}
    extras = {"hashed table lookups (random memory)": 8 * 5, "stretch": 8 * 5, "mixer MACs": 8 * 2 * 5,
              "update MACs": 8 * 2 * 5, "counter updates (1 division)": 8 * 5}
    return {"(a) 256": {**ops256, "total": sum(ops256.values())}, "(b') binary, same inputs": binary(M),
            "(d) add-on after the 256 mix": binary(1),
            "bitwise CMs, extra per byte (5 orders)": {**extras, "total": sum(extras.values())}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bytes", type=int, default=32768, help="bytes per evaluation sample (tuning: 3/8 of it)")
    ap.add_argument("--cache", default="/tmp/mixer_decision", help="where captures and the C library go")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the model (a shared machine)")
    ap.add_argument("--no-timing", action="store_true", help="skip the timings")
    ap.add_argument("--json", default=None, help="write all results here as JSON")
    ap.add_argument("--cflags", default="-O2", help="C compiler flags for both mixers (default: -O2)")
    args = ap.parse_args(argv)
    import torch
    import bytezip
    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    cm = bytezip.coding_model()
    data = samples(args.bytes)
    caps = {}
    for name, (group, d, src) in data.items():
        t0 = time.time()
        caps[name] = capture(name, d, cm, cache, full_steps=CHUNK if name == "bible" else 0)
        print(f"captured {name} ({group}, {len(d)} bytes, {src[0]}{' ...' if len(src) > 1 else ''}) "
              f"in {time.time() - t0:.0f} s", flush=True)
    lib = build_lib(cache, args.cflags)
    p, tuned = tune(lib, [caps[k] for k in data if data[k][0] == "tune"])
    print("tuned on the tuning samples:", json.dumps({**p, **tuned}), flush=True)
    res = {"params": p, "tuning": tuned, "samples": {}, "groups": {},
           "sources": {k: v[2] for k, v in data.items()}}
    for name, (group, _, _) in data.items():
        if group != "tune":
            res["samples"][name] = {"group": group, **evaluate(lib, caps[name], p)}
    for g in ("text", "code", "binary", "all"):
        rows = [r for r in res["samples"].values() if g in ("all", r["group"])]
        n = sum(r["bytes"] for r in rows)
        res["groups"][g] = {"bytes": n, **{k: sum(r[k] * r["bytes"] for r in rows) / n
                                           for k in rows[0] if k not in ("group", "bytes")}}
    cols = [k for k in res["groups"]["all"] if k != "bytes"]
    print("\n| sample | bytes | " + " | ".join(LABELS[c] for c in cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    for name, r in list(res["samples"].items()) + [(f"**{g}**", r) for g, r in res["groups"].items()]:
        print(f"| {name} | {r['bytes']:,} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    print("\nchange against (a), per group:")
    for g, r in res["groups"].items():
        print(f"  {g}: " + ", ".join(f"{c} {100 * (r[c] / r['a'] - 1):+.1f}%" for c in cols if c not in ("a", "neural")))
    res["operations"] = operations()
    print(json.dumps(res["operations"], indent=1))
    if not args.no_timing:
        res["timing"] = timings(lib, cache, caps["bible"], p, cm, data["bible"][1])
        print(f"\ntimings on {res['timing']['steps']} steps of bible (best of 5):")
        for k, v in res["timing"]["us_per_byte"].items():
            print(f"  {k}: {v:.2f} us/byte")
        print("  checks, bits per byte on those steps: " + json.dumps(
            {k: round(v, 4) for k, v in res["timing"]["bits_per_byte"].items()}))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
