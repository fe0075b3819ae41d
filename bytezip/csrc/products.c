/* ---- integer-valued matrix products of the exact model (matmul_exact, attention dots and sums): sums of
   integers, exact in any order, so this file alone is compiled with fused multiply-adds allowed (the pragma
   below holds to the end of the translation unit: _kernels.c includes it last) ---- */

#pragma GCC optimize("fp-contract=fast")
typedef double v4d __attribute__((vector_size(32)));   /* 4 doubles: where AVX-512 is off (see dots_tile4) */

/* y [j0 .. j0 + 8 C) = q [K] @ wq [K, N]'s columns j0 .. j0 + 8 C, one row of the product: C chains of sums in
   flight (8 hide the latency of the adds), each weight loaded once */
INLINE void row_strip(const float *q, const float *wq, float *y, i64 K, i64 N, i64 j0, const int C) {
    v8f acc[8] = {{0}};
    for (i64 k = 0; k < K; k++) {
        const float a = q[k];
        const v8f av = {a, a, a, a, a, a, a, a};
        for (int c = 0; c < C; c++) {
            v8f w;
            memcpy(&w, wq + k * N + j0 + 8 * c, sizeof w);
            acc[c] += av * w;
        }
    }
    for (int c = 0; c < C; c++) memcpy(y + j0 + 8 * c, &acc[c], sizeof acc[c]);
}

/* y [B, N] = q [B, K] @ wq [K, N] where q and wq hold int8 values, K <= 1040: every partial sum is an integer
   below 2^24, exact in float32 in any order and with or without fused multiply-adds, which this file alone
   may use (the pragma; everything before it is compiled without contraction). */
VECTOR_CLONES_FMA void matmul_exact(const float *q, const float *wq, float *y, i64 B, i64 K, i64 N) {
    /* sums of int8 products below 2^24: exact in float32 in any order, so they may be blocked at will: each
       step of k loads a strip of 16 weights once for 4 lanes, whose 4 x 16 sums stay in registers (8 of an
       AVX2 machine's 16), and the strip [K, 16] serves every block of lanes from L2 before the next is read.
       Vectors of 8 floats, not 16: GCC builds a 16-float vector from a scalar through the stack in the AVX2
       clone, which made this loop 20 to 30 times slower there (1.7 GFLOP/s on an AVX2 EPYC) */
    const i64 b4 = N % 16 == 0 ? B - B % 4 : 0;       /* lanes in blocks of 4; the strip stays in L2 across them */
    for (i64 j0 = 0; j0 < N && b4; j0 += 16)
        for (i64 b0 = 0; b0 < b4; b0 += 4) {
            v8f acc[4][2] = {{{0}}};
            for (i64 k = 0; k < K; k++) {
                v8f w0, w1;
                memcpy(&w0, wq + k * N + j0, sizeof w0);
                memcpy(&w1, wq + k * N + j0 + 8, sizeof w1);
                for (int r = 0; r < 4; r++) {
                    const float a = q[(b0 + r) * K + k];
                    const v8f av = {a, a, a, a, a, a, a, a};
                    acc[r][0] += av * w0;
                    acc[r][1] += av * w1;
                }
            }
            for (int r = 0; r < 4; r++) {
                memcpy(y + (b0 + r) * N + j0, &acc[r][0], sizeof acc[r][0]);
                memcpy(y + (b0 + r) * N + j0 + 8, &acc[r][1], sizeof acc[r][1]);
            }
        }
    for (i64 b = b4; b < B; b++) {                     /* the lanes left over, or any width: a row at a time */
        const float *qb = q + b * K;
        float *yb = y + b * N;
        i64 j0 = 0;
        for (; j0 + 64 <= N; j0 += 64) row_strip(qb, wq, yb, K, N, j0, 8);
        for (; j0 + 32 <= N; j0 += 32) row_strip(qb, wq, yb, K, N, j0, 4);
        for (; j0 + 8 <= N; j0 += 8) row_strip(qb, wq, yb, K, N, j0, 1);
        for (; j0 < N; j0++) {
            float sum = 0.0f;
            for (i64 k = 0; k < K; k++) sum += qb[k] * wq[k * N + j0];
            yb[j0] = sum;
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

#ifdef HAVE_X86
/* rows r0 .. r0 + R of dots [rep, n] over keys j .. j + KB, with AVX2 intrinsics where AVX-512 is off (GCC's
   generic vectors of 4 floats went through the stack there, and 12 sums spilled): R x KB <= 8 sums, KB keys
   and a query vector in registers; each key's floats converted once for the R rows */
AVX2_FMA INLINE void dots_keys_avx2(const double *q, const float *keys, i64 n, i64 dh, i64 r0, i64 j, double *dots,
                                    const int R, const int KB) {
    __m256d acc[4][4];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < KB; u++) acc[r][u] = _mm256_setzero_pd();
    for (i64 e = 0; e < dh; e += 4) {
        __m256d k[4];
        for (int u = 0; u < KB; u++) k[u] = _mm256_cvtps_pd(_mm_loadu_ps(keys + (j + u) * dh + e));
        for (int r = 0; r < R; r++) {
            const __m256d qv = _mm256_loadu_pd(q + (r0 + r) * dh + e);
            for (int u = 0; u < KB; u++) acc[r][u] = _mm256_fmadd_pd(qv, k[u], acc[r][u]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int u = 0; u < KB; u += 2) {          /* [a0 + a1, b0 + b1, a2 + a3, b2 + b3] -> [a, b] */
            const __m256d h = _mm256_hadd_pd(acc[r][u], acc[r][u + 1]);
            _mm_storeu_pd(dots + (r0 + r) * n + j + u,
                          _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1)));
        }
}

/* attention_dots with AVX2 (dh a multiple of 4): 2 rows by 4 keys, or 3 rows by 2 */
AVX2_FMA static void attention_dots_avx2(const double *q, const float *keys, i64 n, i64 dh, i64 rep, double *dots) {
    for (i64 r0 = 0; r0 < rep; r0 += 3) {
        const i64 nr = rep - r0 < 3 ? rep - r0 : 3;
        i64 j = 0;
        if (nr == 3)
            for (; j + 2 <= n; j += 2) dots_keys_avx2(q, keys, n, dh, r0, j, dots, 3, 2);
        else if (nr == 2)
            for (; j + 4 <= n; j += 4) dots_keys_avx2(q, keys, n, dh, r0, j, dots, 2, 4);
        else
            for (; j + 4 <= n; j += 4) dots_keys_avx2(q, keys, n, dh, r0, j, dots, 1, 4);
        for (; j < n; j++)                                 /* the keys left over */
            for (i64 r = r0; r < r0 + nr; r++) {
                double sum = 0.0;
                for (i64 e = 0; e < dh; e++) sum += q[r * dh + e] * (double)keys[j * dh + e];
                dots[r * n + j] = sum;
            }
    }
}

/* rows r0 .. r0 + R of num [rep, dh], columns e0 .. e0 + 4 C, with AVX2 intrinsics (see dots_keys_avx2):
   R x C <= 8 sums, C value vectors and a broadcast weight in registers */
AVX2_FMA INLINE void sum_columns_avx2(const double *w, i64 stride, const float *vals, i64 n, i64 dh, i64 r0,
                                      i64 e0, double *num, const int R, const int C) {
    __m256d acc[4][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_pd();
    for (i64 j = 0; j < n; j++) {
        __m256d v[4];
        for (int c = 0; c < C; c++) v[c] = _mm256_cvtps_pd(_mm_loadu_ps(vals + j * dh + e0 + 4 * c));
        for (int r = 0; r < R; r++) {
            const __m256d wr = _mm256_broadcast_sd(w + (r0 + r) * stride + j);
            for (int c = 0; c < C; c++) acc[r][c] = _mm256_fmadd_pd(wr, v[c], acc[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) _mm256_storeu_pd(num + (r0 + r) * dh + e0 + 4 * c, acc[r][c]);
}

/* attention_sum with AVX2 (dh a multiple of 16): 3 rows by 8 columns, or 2 by 16 */
AVX2_FMA static void attention_sum_avx2(const double *w, i64 stride, const float *vals, i64 n, i64 dh, i64 rep,
                                        double *num) {
    for (i64 r0 = 0; r0 < rep; r0 += 3) {
        const i64 nr = rep - r0 < 3 ? rep - r0 : 3;
        for (i64 e0 = 0; e0 < dh; e0 += nr == 3 ? 8 : 16)
            switch (nr) {
            case 1: sum_columns_avx2(w, stride, vals, n, dh, r0, e0, num, 1, 4); break;
            case 2: sum_columns_avx2(w, stride, vals, n, dh, r0, e0, num, 2, 4); break;
            default: sum_columns_avx2(w, stride, vals, n, dh, r0, e0, num, 3, 2);
            }
    }
}
#endif

/* dots [rep, n] = q [rep, dh] . keys [0 .. n) [dh]: products of integers below 2^35 summed over dh <= 256
   terms, exact in any order and with fused multiply-adds; the rep query heads share each key's load, and
   blocks of 8 keys share one horizontal sum */
VECTOR_CLONES_FMA void attention_dots(const double *q, const float *keys, i64 n, i64 dh, i64 rep, double *dots) {
    const i64 dv = dh - dh % 8;
#ifdef HAVE_X86
    if (use_avx2 && !use_avx512 && dh % 4 == 0) {
        attention_dots_avx2(q, keys, n, dh, rep, dots);
        return;
    }
#endif
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

/* dots_tile in vectors of 4 doubles, for CPUs without AVX-512 (GCC's AVX2 clone builds an 8-double vector from
   a scalar through the stack, lane by lane, which made the tiles several times slower): R <= 4 rows by the 8
   keys from j0 + h (h = 0 or 8 in the tile of 16), 8 sums, two key vectors and a query in the 16 AVX2
   registers (4 rows by 16 keys would need all 16 for the sums alone, and spilled) */
INLINE void dots_tile4(const double *q, const double *tile, i64 i, i64 dh, i64 n, i64 j0, i64 h, i64 nj,
                       double *dots, const int R) {
    v4d acc[4][2] = {{{0}}};
    for (i64 e = 0; e < dh; e++) {
        v4d k[2];                                       /* one vector at a time: a copy of both at once went */
        for (int c = 0; c < 2; c++)                     /* through the stack in halves, and stalled the loads */
            memcpy(&k[c], tile + e * 16 + h + 4 * c, sizeof k[c]);
        for (int r = 0; r < R; r++) {
            const double x = q[(i + r) * dh + e];
            const v4d qe = {x, x, x, x};
            for (int c = 0; c < 2; c++) acc[r][c] += qe * k[c];
        }
    }
    for (int r = 0; r < R; r++) {
        double *out = dots + (i + r) * n + j0 + h;
        for (i64 u = 0; u < nj - h && u < 8; u++) out[u] = acc[r][u / 4][u % 4];
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
        if (!use_avx512) {
            for (i64 h = 0; h < nj; h += 8) {
                i64 r = i;
                for (; r + 4 <= rows; r += 4) dots_tile4(q, tile, r, dh, n, j0, h, nj, dots, 4);
                for (; r < rows; r++) dots_tile4(q, tile, r, dh, n, j0, h, nj, dots, 1);
            }
            continue;
        }
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
#ifdef HAVE_X86
    if (use_avx2 && !use_avx512 && dh % 16 == 0) {
        attention_sum_avx2(w, stride, vals, n, dh, rep, num);
        return;
    }
#endif
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

/* rows r0 .. r0 + R of num [., dh], columns e0 .. e0 + L C: the sum over keys j < n of w[r, j] vd[j, :], for
   vectors of L doubles: sum_tile 8 (AVX-512), sum_tile4 4 (without it: see dots_tile4); SPLAT(x) is x in
   every lane, or x itself where GCC's own broadcast is good */
#define SUM_TILE(name, vec, L, ROWS, COLS, SPLAT)                                                            \
    INLINE void name(const double *w, i64 stride, const double *vd, i64 dh, i64 r0, i64 e0, i64 n,            \
                     double *num, const int R, const int C) {                                                \
        vec acc[ROWS][COLS] = {{{0}}};                                                                       \
        for (i64 j = 0; j < n; j++) {                                                                        \
            vec v[COLS];                                                                                     \
            for (int c = 0; c < C; c++) memcpy(&v[c], vd + j * dh + e0 + L * c, sizeof v[c]);               \
            for (int r = 0; r < R; r++) {                                                                    \
                const double x = w[(r0 + r) * stride + j];                                                   \
                for (int c = 0; c < C; c++) acc[r][c] += SPLAT(x) * v[c];                                    \
            }                                                                                                \
        }                                                                                                    \
        for (int r = 0; r < R; r++)                                                                          \
            for (int c = 0; c < C; c++) memcpy(num + (r0 + r) * dh + e0 + L * c, &acc[r][c], sizeof acc[r][c]); \
    }
#define SAME(x) (x)
#define SPLAT4(x) ((v4d){x, x, x, x})
SUM_TILE(sum_tile, v8d, 8, 8, 2, SAME)
SUM_TILE(sum_tile4, v4d, 4, 4, 2, SPLAT4)

/* num [rows, dh] = w [rows, stride] @ vd [stride, dh] (the values as doubles) where row i's weights are zero
   beyond key first + i / rep (dh a multiple of 8): tiles of 8 rows by 16 columns (8 where 16 do not divide
   dh), each weight broadcast once for 16 products; integers below 2^45, exact in any order */
VECTOR_CLONES_FMA void attention_sum_tiled(const double *w, i64 stride, const double *vd, i64 rows, i64 rep,
                                           i64 first, i64 dh, double *num) {
    if (!use_avx512) {                  /* 4 rows by 8 columns: 8 sums in registers, as in dots_tile4 */
        for (i64 r0 = 0; r0 < rows; r0 += 4) {
            const i64 nr = rows - r0 < 4 ? rows - r0 : 4, n = first + (r0 + nr - 1) / rep + 1;
            for (i64 e0 = 0; e0 < dh; e0 += 8) {
                if (nr == 4) sum_tile4(w, stride, vd, dh, r0, e0, n, num, 4, 2);
                else
                    for (i64 r = r0; r < r0 + nr; r++) sum_tile4(w, stride, vd, dh, r, e0, n, num, 1, 2);
            }
        }
        return;
    }
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
