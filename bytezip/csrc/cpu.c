/* ---- what the CPU has (detect_cpu), and int8 matrix products with AVX-512 VNNI or AVX2 where it has them
   (use_int8): the same integer sums as matmul_exact's float32 ones, so the same results, with a quarter of
   the weights' bytes to read ---- */
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

/* int8_tile for AVX2 without VNNI: y [R rows, 8 C columns from j0], R C <= 4. Each 16 bytes of w (4 columns by
   4 values of k) widen to 16 int16, and vpmaddwd adds pairs of their products with the row's 4 bytes (also
   widened) into 8 int32: a column's two partial sums side by side, added by one vphaddd at the end. Products
   below 2^15 x 2, sums below 2^31: the same integers as the VNNI tile's */
AVX2 INLINE void int8_tile_avx2(const uint8_t *a, i64 a_stride, const int8_t *w, const int32_t *w_sum, float *y,
                                i64 K4, i64 N, i64 j0, const int R, const int C) {
    __m256i acc[4][4][2];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c][0] = acc[r][c][1] = _mm256_setzero_si256();
    for (i64 k = 0; k < K4; k++) {
        __m256i wv[4][2];
        for (int c = 0; c < C; c++)
            for (int h = 0; h < 2; h++)
                wv[c][h] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + (k * N + j0 + 8 * c + 4 * h) * 4)));
        for (int r = 0; r < R; r++) {
            int32_t four;
            memcpy(&four, a + r * a_stride + 4 * k, 4);
            const __m256i av = _mm256_cvtepu8_epi16(_mm_set1_epi32(four));
            for (int c = 0; c < C; c++)
                for (int h = 0; h < 2; h++)
                    acc[r][c][h] = _mm256_add_epi32(acc[r][c][h], _mm256_madd_epi16(av, wv[c][h]));
        }
    }
    for (int c = 0; c < C; c++) {
        const __m256i sum = _mm256_loadu_si256((const __m256i *)(w_sum + j0 + 8 * c));
        for (int r = 0; r < R; r++) {    /* columns 0 1 4 5 | 2 3 6 7 after the pairwise add: lanes in order */
            const __m256i cols = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[r][c][0], acc[r][c][1]), 0xD8);
            _mm256_storeu_ps(y + r * N + j0 + 8 * c, _mm256_cvtepi32_ps(_mm256_sub_epi32(cols, sum)));
        }
    }
}

AVX2 static void matmul_int8_avx2(const uint8_t *a, const int8_t *w, const int32_t *w_sum, float *y, i64 B,
                                  i64 K4, i64 N) {
    const i64 stride = 4 * K4;
    i64 b = 0;
    for (; b + 4 <= B; b += 4)
        for (i64 j = 0; j < N; j += 8) int8_tile_avx2(a + b * stride, stride, w, w_sum, y + b * N, K4, N, j, 4, 1);
    for (; b + 2 <= B; b += 2)
        for (i64 j = 0; j < N; j += 16) int8_tile_avx2(a + b * stride, stride, w, w_sum, y + b * N, K4, N, j, 2, 2);
    for (; b < B; b++) {
        i64 j = 0;
        for (; j + 32 <= N; j += 32) int8_tile_avx2(a + b * stride, stride, w, w_sum, y + b * N, K4, N, j, 1, 4);
        for (; j < N; j += 8) int8_tile_avx2(a + b * stride, stride, w, w_sum, y + b * N, K4, N, j, 1, 1);
    }
}

/* y [B, N] = the int8 product, N a multiple of 16: 4 rows by 64 columns at a time, the rest narrower; with
   AVX2 alone, matmul_int8_avx2 */
VNNI static void matmul_int8_vnni(const uint8_t *a, const int8_t *w, const int32_t *w_sum, float *y, i64 B, i64 K4,
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

static void matmul_int8(const uint8_t *a, const int8_t *w, const int32_t *w_sum, float *y, i64 B, i64 K4, i64 N) {
    if (use_vnni) matmul_int8_vnni(a, w, w_sum, y, B, K4, N);
    else matmul_int8_avx2(a, w, w_sum, y, B, K4, N);
}

/* Finds what the CPU has and uses it where `allow` is set, else the compilers' code alone (to test both);
   returns 1 + 2 + 4 (AVX-512, VNNI, AVX2's int8 products), as used */
int detect_cpu(int allow) {
    __builtin_cpu_init();
    use_avx512 = allow && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    use_vnni = use_avx512 && __builtin_cpu_supports("avx512vnni");
    use_avx2 = allow && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const int avx2 = use_avx2 && !use_vnni;
    use_int8 = use_vnni || avx2;
    return use_avx512 + 2 * use_vnni + 4 * avx2;
}
#else
static void matmul_int8(const uint8_t *a, const int8_t *w, const int32_t *w_sum, float *y, i64 B, i64 K4, i64 N) {
    (void)a; (void)w; (void)w_sum; (void)y; (void)B; (void)K4; (void)N;
}
int detect_cpu(int allow) { (void)allow; return 0; }
#endif

