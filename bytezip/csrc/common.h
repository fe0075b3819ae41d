/* What every kernel file uses: fixed-size integers, the vector clones, the CPU's extras, exact sums and
   integer division helpers. Included once, first, by _kernels.c. */
#include <stdint.h>
#include <string.h>

typedef int64_t i64;

/* the hot functions are compiled for AVX-512, AVX2 and the baseline, picked at load time; without FMA
   contraction (-ffp-contract=off) every clone computes the same IEEE results */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define VECTOR_CLONES_FMA __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#define VECTOR_CLONES_FMA
#endif
#define INLINE static inline __attribute__((always_inline))   /* into each clone, compiled for its target */
#define MAX(a, b) ((a) > (b) ? (a) : (b))  /* of numbers, never NaN: no libm call, and vectorised */
/* scratch rows are written before they are read, through loops GCC cannot count */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

/* what the CPU has beyond the baseline (detect_cpu sets them): AVX-512 for the mixer's table gathers, int8
   products of the linear layers with VNNI (use_vnni) or else AVX2 (use_int8: either) */
static int use_avx512 = 0, use_vnni = 0, use_int8 = 0, use_avx2 = 0;   /* use_avx2: AVX2 and FMA */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define HAVE_X86 1
#define AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define AVX2 __attribute__((target("avx2")))
#define AVX2_FMA __attribute__((target("avx2,fma")))
#endif

typedef float v16 __attribute__((vector_size(64)));   /* 16 floats: one AVX-512 register, or 2 or 4 narrower */
typedef double v8d __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
/* the bit tricks below compare integers in 256-bit vectors: GCC splits 512-bit integer compares and selects into
   scalar code through the stack in the AVX2 clone (the mixer's row maximum cost 8% of a decode there) */
typedef int32_t v8i32 __attribute__((vector_size(32)));
typedef int64_t v4i __attribute__((vector_size(32)));

/* max |x[k]| (0 for none), a register of lanes at a time: |x| as bits, and non-negative floats order as their
   bits (GCC does not vectorise a floating-point max by itself) */
#define ABS_MAX(name, real, bits_t, vbits, lanes, sign_off, fabs_)                                        \
    INLINE real name(const real *x, i64 n) {                                                               \
        vbits m = {0};                                                                                     \
        i64 k = 0;                                                                                         \
        for (; k + lanes <= n; k += lanes) {                                                               \
            vbits v;                                                                                       \
            memcpy(&v, x + k, sizeof v);                                                                   \
            v &= sign_off;                                                                                 \
            const vbits gt = m > v;                                                                        \
            m = (m & gt) | (v & ~gt);                                                                      \
        }                                                                                                  \
        real r = 0;                                                                                        \
        for (int u = 0; u < lanes; u++) {                                                                  \
            real f;                                                                                        \
            memcpy(&f, (const bits_t *)&m + u, sizeof f);                                                  \
            r = MAX(r, f);                                                                                 \
        }                                                                                                  \
        for (; k < n; k++) r = MAX(r, fabs_(x[k]));                                                        \
        return r;                                                                                          \
    }
ABS_MAX(abs_max_f32, float, int32_t, v8i32, 8, 0x7fffffff, fabsf)
ABS_MAX(abs_max_f64, double, int64_t, v4i, 4, 0x7fffffffffffffffLL, fabs)

/* max x[k] (-inf for none), 4 lanes at a time: doubles order as their bits when non-negative, reversed when
   negative (GCC does not vectorise a floating-point max by itself) */
INLINE double max_f64(const double *x, i64 n) {
    v4i m = {0};
    i64 j = 0;
    double r = -INFINITY;
    for (; j + 4 <= n; j += 4) {
        v4i v;
        memcpy(&v, x + j, sizeof v);
        v ^= (v < 0) & 0x7fffffffffffffffLL;
        const v4i gt = m > v;
        m = j == 0 ? v : (m & gt) | (v & ~gt);
    }
    for (int u = 0; u < 4 && j; u++) {
        i64 bits = m[u];
        bits = bits < 0 ? (bits ^ 0x7fffffffffffffffLL) : bits;
        double f;
        memcpy(&f, &bits, sizeof f);
        r = MAX(r, f);
    }
    for (; j < n; j++) r = MAX(r, x[j]);
    return r;
}

/* the sum of x[k]^2 where every x[k] is an integer and the sum below 2^24: exact in any order */
INLINE float integer_squares_f32(const float *x, i64 n) {
    v16 acc = {0};
    i64 k = 0;
    for (; k + 16 <= n; k += 16) {
        v16 v;
        memcpy(&v, x + k, sizeof v);
        acc += v * v;
    }
    float r = 0.0f;
    for (int u = 0; u < 16; u++) r += acc[u];
    for (; k < n; k++) r += x[k] * x[k];
    return r;
}

/* sum of a[i] b[i] where every partial sum is an integer below 2^53, so exact in any order: vector partial
   sums (the compiler may not reorder a floating-point sum by itself) */
INLINE double exact_dot(const double *a, const double *b, i64 n) {
    v8d acc[4] = {{0}};                                /* 4 sums in flight */
    i64 i = 0;
    for (; i + 32 <= n; i += 32)
        for (int u = 0; u < 4; u++) {
            v8d x, y;
            memcpy(&x, a + i + 8 * u, sizeof x);
            memcpy(&y, b + i + 8 * u, sizeof y);
            acc[u] += x * y;
        }
    for (; i + 8 <= n; i += 8) {
        v8d x, y;
        memcpy(&x, a + i, sizeof x);
        memcpy(&y, b + i, sizeof y);
        acc[0] += x * y;
    }
    acc[0] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    double sum = 0.0;
    for (int k = 0; k < 8; k++) sum += acc[0][k];
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

INLINE i64 floordiv(i64 a, i64 b) {     /* numpy's // for b > 0 */
    i64 q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* a // d for 0 <= a < 2^52, 0 < d < 2^52, inv = 1.0 / d: the float estimate is within one of the quotient,
   and the remainder corrects it; all in doubles, exactly (every value an integer below 2^53), as integer
   division and 64-bit multiplies are the mixer's slowest instructions */
INLINE double div_pos_f64(double x, double dd, double inv) {     /* the same, of integers held as doubles */
    const double q = __builtin_trunc(x * inv), r = x - q * dd;     /* (double)(i64) below 2^63, in one instruction */
    return q + (double)(r >= dd) - (double)(r < 0);
}

INLINE i64 div_pos(i64 a, i64 d, double inv) { return (i64)div_pos_f64((double)a, (double)d, inv); }

/* out[k] = x[k] for integers 0 <= x[k] < 2^52 held as doubles: the bits of 2^52 + x less those of 2^52, which
   vectorises where a double-to-int64 conversion does not (AVX2 has none) */
INLINE void integers_to_i64(const double *x, i64 *out, int n) {
    for (int k = 0; k < n; k++) {
        const double y = x[k] + 0x1p52;
        i64 bits;
        memcpy(&bits, &y, sizeof bits);
        out[k] = bits - 0x4330000000000000LL;
    }
}


INLINE i64 clip64(i64 v, i64 lo, i64 hi) { return v < lo ? lo : v > hi ? hi : v; }
INLINE i64 floormod(i64 a, i64 b) { i64 r = a % b; return r < 0 ? r + b : r; }
INLINE i64 abs64(i64 v) { return v < 0 ? -v : v; }
