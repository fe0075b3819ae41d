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

/* int8_tile for AVX2 without VNNI: y [R rows, 8 C columns from j0], R C <= 4. 32 bytes of w hold 8 columns by 4
   values of k; vpmaddubsw multiplies |w| (as unsigned bytes) by the row's x = a - 128 given w's sign (vpsignb;
   |x| <= 127) and adds pairs into int16 (|sum| <= 2 x 128 x 127 < 2^15: no saturation), and vpmaddwd by ones
   adds the pairs into each column's int32 sum of 4 products: the sum of x w itself (no w_sum to subtract),
   the same integers as the VNNI tile's */
AVX2 INLINE void int8_tile_avx2(const uint8_t *a, i64 a_stride, const int8_t *w, float *y, i64 K4, i64 N, i64 j0,
                                const int R, const int C) {
    __m256i acc[4][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_si256();
    const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    for (i64 k = 0; k < K4; k++) {
        __m256i wv[4], wa[4];
        for (int c = 0; c < C; c++) {
            wv[c] = _mm256_loadu_si256((const __m256i *)(w + (k * N + j0 + 8 * c) * 4));
            wa[c] = _mm256_abs_epi8(wv[c]);
        }
        for (int r = 0; r < R; r++) {
            int32_t four;
            memcpy(&four, a + r * a_stride + 4 * k, 4);
            const __m256i xv = _mm256_xor_si256(_mm256_set1_epi32(four), flip);     /* a - 128 as int8 */
            for (int c = 0; c < C; c++)
                acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(
                    _mm256_maddubs_epi16(wa[c], _mm256_sign_epi8(xv, wv[c])), ones));
        }
    }
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++) _mm256_storeu_ps(y + r * N + j0 + 8 * c, _mm256_cvtepi32_ps(acc[r][c]));
}

AVX2 static void matmul_int8_avx2(const uint8_t *a, const int8_t *w, float *y, i64 B, i64 K4, i64 N) {
    const i64 stride = 4 * K4;
    i64 b = 0;
    for (; b + 4 <= B; b += 4)
        for (i64 j = 0; j < N; j += 8) int8_tile_avx2(a + b * stride, stride, w, y + b * N, K4, N, j, 4, 1);
    for (; b + 2 <= B; b += 2)
        for (i64 j = 0; j < N; j += 16) int8_tile_avx2(a + b * stride, stride, w, y + b * N, K4, N, j, 2, 2);
    for (; b < B; b++) {
        i64 j = 0;
        for (; j + 32 <= N; j += 32) int8_tile_avx2(a + b * stride, stride, w, y + b * N, K4, N, j, 1, 4);
        for (; j < N; j += 8) int8_tile_avx2(a + b * stride, stride, w, y + b * N, K4, N, j, 1, 1);
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
    else matmul_int8_avx2(a, w, y, B, K4, N);
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

