/* Shared by the pixel and sample predictors (image.c, pcm.c): the Laplace tables of their distributions. */

/* out[k] (+)= exp[min(|base + k step| mult // scale, q_max)] for k < n (a multiple of 8): the Laplace tables of
   the PCM and image predictors; |d| mult < 2^52, 0 < scale < 2^52; 8 at a time (division, gather) with AVX-512 */
#ifdef HAVE_X86
AVX512 static void laplace_row_avx512(const i64 *exp, i64 q_max, i64 base, i64 step, i64 mult, i64 scale, i64 *out,
                                      int n, int accumulate) {
    const __m512i iota = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), top = _mm512_set1_epi64(q_max);
    const __m512i vstep = _mm512_set1_epi64(step), vmult = _mm512_set1_epi64(mult), one = _mm512_set1_epi64(1);
    const __m512d dd = _mm512_set1_pd((double)scale), inv = _mm512_set1_pd(1.0 / (double)scale);
    for (int k = 0; k < n; k += 8) {
        const __m512i d = _mm512_add_epi64(_mm512_set1_epi64(base + k * step), _mm512_mullo_epi64(iota, vstep));
        const __m512d x = _mm512_cvtepi64_pd(_mm512_mullo_epi64(_mm512_abs_epi64(d), vmult));
        const __m512i q0 = _mm512_cvttpd_epi64(_mm512_mul_pd(x, inv));         /* as div_pos, 8 at a time */
        const __m512d r = _mm512_sub_pd(x, _mm512_mul_pd(_mm512_cvtepi64_pd(q0), dd));
        __m512i q = _mm512_mask_add_epi64(q0, _mm512_cmp_pd_mask(r, dd, _CMP_GE_OQ), q0, one);
        q = _mm512_mask_sub_epi64(q, _mm512_cmp_pd_mask(r, _mm512_setzero_pd(), _CMP_LT_OQ), q, one);
        __m512i v = _mm512_i64gather_epi64(_mm512_min_epi64(q, top), exp, 8);
        if (accumulate) v = _mm512_add_epi64(v, _mm512_loadu_si512(out + k));
        _mm512_storeu_si512(out + k, v);
    }
}
#endif

INLINE void laplace_row(const i64 *exp, i64 q_max, i64 base, i64 step, i64 mult, i64 scale, i64 *out, int n,
                        int accumulate) {
#ifdef HAVE_X86
    if (use_avx512) {
        laplace_row_avx512(exp, q_max, base, step, mult, scale, out, n, accumulate);
        return;
    }
#endif
    const double inv = 1.0 / (double)scale;
    for (int k = 0; k < n; k++) {
        const i64 q = div_pos(abs64(base + k * step) * mult, scale, inv), v = exp[q < q_max ? q : q_max];
        out[k] = accumulate ? out[k] + v : v;
    }
}
