/* Pixel predictor simulator (format 14's choices): the ideal code length, in bits per byte, of a pixel
   predictor's Laplace distribution alone, coding a whole PPM/PGM sequentially (one lane, no chunks, no mixer).

   usage: pixel_sim FILE POSW ECTX UCTX [NACT SHIFT MASK LSCALE BCTX ESRC]
     POSW    0: weights from the errors in the activity context; 1: at the four neighbours; 2: the mean of both
     ECTX    1, 2: the neighbours' miss energy as a further context of the tables (rejected)
     UCTX    1: the channel before's miss as a further context (rejected)
     NACT    activity contexts (8 in format 13, 4 chosen)
     SHIFT   the tables' rate 1/2^SHIFT (4 in format 13, 3 chosen)
     MASK    which of the 24 predictions are blended (bits 0-11 from the neighbours, 12-23 corrected by the
             channel before's miss; format 13's 8 = 0x303F)
     LSCALE  the Laplace scale blended with the neighbours' miss energy, (8 - a) / 8 context and a / 8 energy
             for a = LSCALE & 7, +8: with the channel before's miss (12 chosen)
     BCTX    1, 2: bias by a texture pattern (rejected)
     ESRC    the energy's misses: 0 the final residual, 1 MED, 2 the gradient, 3 the best prediction,
             5 the blend, 6 the corrected MED (chosen: the codec recomputes it from the bytes)
   compile: -DPOW=2 -DMINS=8 (the weights 1/e^POW, the least scale), with -DZMIN=4 -DUZ=1 format 14's rule:
   the least scale ZMIN where the neighbours' misses were all 0, the channel before's miss then left out;
   -DHP=4 -DSHP=4 -DEHP=4: the bias, scale and error tables with 4 more bits (format 14). */
#ifndef HP
#define HP 0
#endif
#ifndef SHP
#define SHP 0
#endif
#ifndef EHP
#define EHP 0
#endif
#ifndef UZ
#define UZ 0
#endif
#ifndef POW
#define POW 2
#endif
#ifndef MINS
#define MINS 8
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <stdint.h>
typedef int64_t i64;
#define K 24
#define NA 16
static i64 EXP[769];
static int Q_MAX = 768;
static i64 clip(i64 v, i64 a, i64 b) { return v < a ? a : v > b ? b : v; }
static i64 ab(i64 v) { return v < 0 ? -v : v; }
static void spatial(const uint8_t *img, i64 p, i64 C, i64 S, i64 W, i64 x, i64 y, i64 *raw) {
    int hw = x > 0, hn = y > 0, hne = hn && x < W - 1;
    i64 w = hw ? img[p - C] : hn ? img[p - S] : 128;
    i64 n = hn ? img[p - S] : w;
    i64 nw = hw && hn ? img[p - S - C] : n;
    i64 ne = hne ? img[p - S + C] : n;
    i64 ww = x > 1 ? img[p - 2 * C] : w, nn = y > 1 ? img[p - 2 * S] : n;
    i64 nne = y > 1 && x < W - 1 ? img[p - 2 * S + C] : ne;
    i64 grad = n + w - nw;
    i64 mxx = n > w ? n : w, mnn = n < w ? n : w;
    i64 med = nw >= mxx ? mnn : nw <= mnn ? mxx : n + w - nw;
    i64 r[12] = {w, n, ne, grad, med, (w + ne) / 2, w + ne - n, n + ne - nne, 2 * w - ww, 2 * n - nn, (w + n + 1) / 2, nw};
    for (int k = 0; k < 12; k++) raw[k] = r[k];
}
static int lg(i64 v) { return 63 - __builtin_clzll((unsigned long long)(v + 1)); }

int main(int argc, char **argv) {
    int pos_w = atoi(argv[2]), ectx = atoi(argv[3]), uctx = atoi(argv[4]);
    int nact = argc > 5 ? atoi(argv[5]) : 8;
    int shift = argc > 6 ? atoi(argv[6]) : 4;
    int kk = argc > 7 ? (int)strtol(argv[7], 0, 0) : 0xFF;           /* predictors used */
    int lscale = argc > 8 ? atoi(argv[8]) : 0;
    int bctx = argc > 9 ? atoi(argv[9]) : 0;
    int esrc = argc > 10 ? atoi(argv[10]) : 0;       /* scale blended with local residual energy */
    EXP[0] = 1 << 30;
    for (int q = 1; q <= Q_MAX; q++) EXP[q] = (EXP[q - 1] * 1040447468LL) >> 30;
    FILE *f = fopen(argv[1], "rb");
    char magic[3]; int W, H, mx;
    if (fscanf(f, "%2s %d %d %d", magic, &W, &H, &mx) != 4) return 1;
    fgetc(f);
    int C = magic[1] == '6' ? 3 : 1;
    i64 S = (i64)W * C, N = S * H;
    uint8_t *img = malloc(N);
    if (fread(img, 1, N, f) != (size_t)N) return 1;
    /* per-position errors of each predictor (x16) and final residual (x16) */
    i64 *perr = calloc(N * K, sizeof(i64)), *res = calloc(N, sizeof(i64)), *res2 = calloc(N, sizeof(i64));
    int nctx = NA * 8 * 8;
    i64 *error = malloc(sizeof(i64) * C * nctx * K), *scale = malloc(sizeof(i64) * C * nctx),
        *bias = calloc(C * nctx, sizeof(i64)), *tbias = calloc(C * 4096, sizeof(i64));
    for (i64 i = 0; i < C * nctx * K; i++) error[i] = 256 << EHP;
    for (i64 i = 0; i < C * nctx; i++) scale[i] = 256 << SHP;
    double bits = 0;
    for (i64 p = 0; p < N; p++) {
        i64 ch = p % C, x = (p / C) % W, y = p / S;
        int hw = x > 0, hn = y > 0, hne = hn && x < W - 1, hu = ch > 0;
        i64 raw[K], nsp = 12;
        spatial(img, p, C, S, W, x, y, raw);
        if (hu) {
            i64 r2[K];
            spatial(img, p - 1, C, S, W, x, y, r2);
            for (int k = 0; k < nsp; k++) raw[nsp + k] = raw[k] + img[p - 1] - r2[k];
        } else for (int k = 0; k < nsp; k++) raw[nsp + k] = raw[k];
        i64 w = raw[0], n = raw[1], ne = raw[2];
        i64 nw = hw && hn ? img[p - S - C] : n;
        i64 u = hu ? img[p - 1] : 0, uw = hu && hw ? img[p - C - 1] : u, un = hu && hn ? img[p - S - 1] : u;
        i64 preds[K];
        for (int k = 0; k < K; k++) preds[k] = clip(16 * raw[k], 0, 16 * 255);
        int which[K], nk = 0; for (int k = 0; k < K; k++) if ((kk >> k) & 1) which[nk++] = k;
        i64 act = ab(w - nw) + ab(n - nw) + ab(n - ne) + (hu ? ab(u - uw) + ab(u - un) : 0);
        int a = lg(act); a = a < nact - 1 ? a : nact - 1;
        int e2 = 0, e3 = 0;
        if (ectx) {           /* final residual energy at W and N (and NW NE) */
            i64 E = (hw ? ab(res[p - C]) : 0) + (hn ? ab(res[p - S]) : 0);
            if (ectx >= 2) E += ((hn && hw ? ab(res[p - S - C]) : 0) + (hne ? ab(res[p - S + C]) : 0)) / 2;
            e2 = lg(E / 16); e2 = e2 < 7 ? e2 : 7;
        }
        if (uctx && hu) { e3 = 1 + lg(ab(res[p - 1]) / 16); e3 = e3 < 7 ? e3 : 7; }
        int ctx = ((int)ch * nctx) + (a * 8 + e2) * 8 + e3;
        i64 *err = error + (i64)ctx * K;
        i64 num = 0, den = 0;
        for (int j = 0; j < nk; j++) { int k = which[j];
            i64 e = k >= 12 && !hu ? (i64)1 << 20 : (err[k] >> EHP);
            if (pos_w) {        /* positional errors at W, N, NW, NE */
                i64 s = 0, c = 0;
                if (hw) { s += perr[(p - C) * K + k]; c++; }
                if (hn) { s += perr[(p - S) * K + k]; c++; }
                if (hn && hw) { s += perr[(p - S - C) * K + k]; c++; }
                if (hne) { s += perr[(p - S + C) * K + k]; c++; }
                if (c) s = s / c;
                else s = e;
                if (pos_w == 1) e = s;
                else e = (e + s) / 2;
                if (k >= 12 && !hu) e = (i64)1 << 20;
            }
            i64 inv = POW == 2 ? ((i64)1 << 40) / (e * e + 1) : POW == 3 ? (i64)(1e15 / ((double)e * e * e + 1)) : ((i64)1 << 40) / (e + 1);
            num += preds[k] * inv; den += inv;
        }
        i64 guess = num / (den > 1 ? den : 1);
        i64 *bp = bias + ctx;
        if (bctx) {
            i64 g = guess;
            int t = (16 * w > g) | (16 * n > g) << 1 | (16 * nw > g) << 2 | (16 * ne > g) << 3;
            i64 ww2 = x > 1 ? img[p - 2 * C] : w, nn2 = y > 1 ? img[p - 2 * S] : n;
            t |= (16 * ww2 > g) << 4 | (16 * nn2 > g) << 5;
            int ec = a < 3 ? a : 3;
            if (bctx >= 2 && hu) t |= (res[p - 1] > 0) << 6 | 1 << 7;
            bp = tbias + ch * 4096 + t * 4 + ec;
        }
        i64 bias_used = HP ? (*bp + (1 << (HP - 1))) >> HP : *bp;
        i64 center = clip(guess + bias_used, 0, 16 * 255);
        i64 sc = SHP ? (scale[ctx] >> SHP) : scale[ctx];
        int Ezero = 0;
        if (lscale) {
            i64 E = 0, c = 0;
            i64 *res = res2;
            if (hw) { E += 2 * ab(res[p - C]); c += 2; }
            if (hn) { E += 2 * ab(res[p - S]); c += 2; }
            if (hn && hw) { E += ab(res[p - S - C]); c++; }
            if (hne) { E += ab(res[p - S + C]); c++; }
            if (hu && lscale >= 8 && !(UZ && c > 0 && E == 0)) { E += 2 * ab(res[p - 1]); c += 2; }
            if (c) sc = (sc * (8 - (lscale & 7)) + (lscale & 7) * E / c) / 8;
            Ezero = c > 0 && E == 0;
        }
        #ifdef ZMIN
        { i64 m = MINS; if (lscale && Ezero) m = ZMIN; sc = sc > m ? sc : m; }
#else
        sc = sc > MINS ? sc : MINS;
#endif
        i64 pr[256], sum = 0;
        for (int v = 0; v < 256; v++) {
            i64 q = ab(16 * v - center) * 32 / sc;
            pr[v] = EXP[q < Q_MAX ? q : Q_MAX];
#ifdef MIX2
            i64 q2 = ab(16 * v - center) * 32 / (sc * MIX2 / 4);
            pr[v] = pr[v] / 2 + EXP[q2 < Q_MAX ? q2 : Q_MAX] / 2 * 4 / MIX2;
#endif
            sum += pr[v];
        }
        i64 v = img[p];
        double pv = (double)(pr[v] * 65536 / sum);
        if (pv < 1) pv = 1;
        bits += -log2(pv / 65536.0);
        i64 vv = 16 * v;
        for (int k = 0; k < K; k++) {
            perr[p * K + k] = ab(vv - preds[k]);
            err[k] += ((ab(vv - preds[k]) << EHP) - err[k]) >> shift;
        }
        i64 miss = vv - guess;
        res[p] = vv - center;
        { i64 m = 1 << 30; for (int k = 0; k < K; k++) if (perr[p * K + k] < m) m = perr[p * K + k];
          res2[p] = esrc == 1 ? perr[p * K + 4] : esrc == 2 ? perr[p * K + 3] : esrc == 3 ? m : esrc == 5 ? vv - guess : esrc == 6 ? perr[p*K+16] : res[p]; }
        *bp += ((miss << HP) - *bp) >> shift;
        scale[ctx] += ((ab(miss - bias_used) << SHP) - scale[ctx]) >> shift;
    }
    printf("%.4f\n", bits / N);
    return 0;
}
