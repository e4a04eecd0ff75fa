/*
 * gemm.c - the encoder's linear layers (out = x W^T + b) and its GELU,
 * for the few rows (tokens) of one prompt.
 *
 * cblas_sgemm packs (copies) the whole weight matrix on every call, which
 * for a prompt of 15 tokens costs more than the arithmetic: 42 MB copied
 * per embed. Here each weight matrix is packed once, at encoder_open, into
 * strips of 2*VW outputs stored input-major in fp16, and the kernel
 * (gemm_simd.h) reads each strip once per call, with the rows' partial
 * sums in registers. The kernel is chosen once at run time from what the
 * CPU has (AVX-512F, else AVX2 + FMA + F16C, else OpenBLAS with the fp32
 * weights, exactly as before); functions carry their own target
 * attribute, so the build stays portable (-march is not raised). The
 * strips win at every prompt length up to the model's 256 tokens, so
 * there is no switch back to OpenBLAS for long prompts. Read
 * encoder_matrix_apply first; docs/internals/encoder.md has the
 * measurements.
 */
#include <assert.h>
#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/encoder_internal.h"
#include "util/alloc.h"

/* The widest strip (AVX-512: 2 x 16 floats) and the most rows a kernel
 * keeps in registers, for the scratch of a partial strip. */
#define GEMM_MAX_WIDTH 32
#define GEMM_MAX_ROWS 12

/*
 * GELU's erf: erf(z) ~= z P(z^2) / Q(z^2) for |z| <= GELU_CLAMP (beyond,
 * erf is within 1.6e-8 of +-1 and z is clamped). Fitted for this file
 * (a weighted least-squares rational fit of erf(z)/z on [0, 4], iterated
 * towards equal error); the absolute error of erf in float32 is below
 * 5e-7, checked by tests/unit/test_encoder.c against erf() in double.
 */
#define GELU_CLAMP 4.0f
#define GELU_SQRT1_2 0.70710678118654752f
#define GELU_NP 7
#define GELU_NQ 5
static const float GELU_P[GELU_NP] = {
    1.128378630e+00f, 2.139014751e-01f, 5.242763087e-02f, 4.291190300e-03f,
    1.554907503e-04f, -1.990131977e-06f, 1.921799431e-08f,
};
static const float GELU_Q[GELU_NQ] = {
    1.000000000e+00f, 5.228928924e-01f, 1.207816452e-01f, 1.554733515e-02f,
    1.097582048e-03f,
};

struct encoder_matrix {
    enum encoder_kernel kernel; /* how apply multiplies */
    size_t nout;                /* outputs (rows of W) */
    size_t nin;                 /* inputs (columns of W) */
    const float *w;             /* [nout][nin] fp32, not owned */
    const float *b;             /* [nout] fp32, not owned */
    size_t width;               /* outputs per strip: 2 vectors */
    size_t nstrips;             /* ceil(nout / width) */
    uint16_t *packed;           /* [nstrips][nin][width] fp16, owned */
    float *bias;                /* [nstrips * width], zero padded, owned */
};

/* ---- the kernels, once per instruction set -------------------------- */

/* SIMD_CASES lists the row counts of a kernel (1 .. SIMD_ROWS). */
#define SIMD_CASES_6                                                       \
    SIMD_CASE(1) SIMD_CASE(2) SIMD_CASE(3) SIMD_CASE(4) SIMD_CASE(5)      \
    SIMD_CASE(6)

#define SIMD_FN avx512
#define SIMD_CASES                                                         \
    SIMD_CASES_6 SIMD_CASE(7) SIMD_CASE(8) SIMD_CASE(9) SIMD_CASE(10)     \
    SIMD_CASE(11) SIMD_CASE(12)
#define SIMD_TARGET "avx512f,avx2,fma,f16c"
#define SIMD_ROWS 12
#define VF __m512
#define VW 16
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, v) _mm512_storeu_ps((p), (v))
#define V_LOADH(p)                                                         \
    _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(p)))
#define V_SET1(x) _mm512_set1_ps(x)
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define V_MUL(a, b) _mm512_mul_ps((a), (b))
#define V_DIV(a, b) _mm512_div_ps((a), (b))
#define V_MIN(a, b) _mm512_min_ps((a), (b))
#define V_MAX(a, b) _mm512_max_ps((a), (b))
#include "cache/gemm_simd.h"
#undef SIMD_FN
#undef SIMD_CASES
#undef SIMD_TARGET
#undef SIMD_ROWS
#undef VF
#undef VW
#undef V_LOAD
#undef V_STORE
#undef V_LOADH
#undef V_SET1
#undef V_FMA
#undef V_MUL
#undef V_DIV
#undef V_MIN
#undef V_MAX

#define SIMD_FN avx2
#define SIMD_CASES SIMD_CASES_6
#define SIMD_TARGET "avx2,fma,f16c"
#define SIMD_ROWS 6
#define VF __m256
#define VW 8
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, v) _mm256_storeu_ps((p), (v))
#define V_LOADH(p)                                                         \
    _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define V_SET1(x) _mm256_set1_ps(x)
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define V_MUL(a, b) _mm256_mul_ps((a), (b))
#define V_DIV(a, b) _mm256_div_ps((a), (b))
#define V_MIN(a, b) _mm256_min_ps((a), (b))
#define V_MAX(a, b) _mm256_max_ps((a), (b))
#include "cache/gemm_simd.h"

/* ---- choosing a kernel ---------------------------------------------- */

bool encoder_kernel_supported(enum encoder_kernel k)
{
    __builtin_cpu_init();
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                && __builtin_cpu_supports("f16c");
    switch (k) {
    case ENCODER_KERNEL_BLAS:
    case ENCODER_KERNEL_AUTO:
        return true;
    case ENCODER_KERNEL_AVX2:
        return avx2;
    case ENCODER_KERNEL_AVX512:
        return avx2 && __builtin_cpu_supports("avx512f");
    }
    return false;
}

enum encoder_kernel encoder_kernel_best(void)
{
    if (encoder_kernel_supported(ENCODER_KERNEL_AVX512)) {
        return ENCODER_KERNEL_AVX512;
    }
    if (encoder_kernel_supported(ENCODER_KERNEL_AVX2)) {
        return ENCODER_KERNEL_AVX2;
    }
    return ENCODER_KERNEL_BLAS;
}

const char *encoder_kernel_name(enum encoder_kernel k)
{
    switch (k) {
    case ENCODER_KERNEL_AUTO:
        return "auto";
    case ENCODER_KERNEL_BLAS:
        return "blas";
    case ENCODER_KERNEL_AVX2:
        return "avx2";
    case ENCODER_KERNEL_AVX512:
        return "avx512";
    }
    return "?";
}

bool encoder_kernel_parse(const char *s, enum encoder_kernel *out)
{
    for (int k = ENCODER_KERNEL_AUTO; k <= ENCODER_KERNEL_AVX512; k++) {
        if (strcmp(s, encoder_kernel_name((enum encoder_kernel)k)) == 0) {
            *out = (enum encoder_kernel)k;
            return true;
        }
    }
    return false;
}

/* ---- packing -------------------------------------------------------- */

/* Converts w to fp16 strips in m->packed; false when a weight is not
 * finite in fp16 (|w| > 65504), and then the matrix stays on BLAS. */
static __attribute__((target("f16c"))) bool pack(struct encoder_matrix *m)
{
    size_t width = m->width;
    m->packed = rl_calloc(m->nstrips * m->nin * width, sizeof(uint16_t));
    m->bias = rl_calloc(m->nstrips * width, sizeof(float));
    memcpy(m->bias, m->b, m->nout * sizeof(float));
    for (size_t o = 0; o < m->nout; o++) {
        uint16_t *strip = m->packed + (o / width) * m->nin * width;
        for (size_t k = 0; k < m->nin; k++) {
            float v = m->w[o * m->nin + k];
            if (!(fabsf(v) <= 65504.0f)) {
                return false;
            }
            strip[k * width + o % width] = _cvtss_sh(v, 0);
        }
    }
    return true;
}

struct encoder_matrix *encoder_matrix_new(enum encoder_kernel k,
                                          const float *w, const float *b,
                                          size_t nout, size_t nin)
{
    assert(k != ENCODER_KERNEL_AUTO);
    struct encoder_matrix *m = rl_calloc(1, sizeof(*m));
    *m = (struct encoder_matrix){
        .kernel = k, .nout = nout, .nin = nin, .w = w, .b = b};
    if (k == ENCODER_KERNEL_BLAS) {
        return m;
    }
    m->width = k == ENCODER_KERNEL_AVX512 ? 32 : 16;
    m->nstrips = (nout + m->width - 1) / m->width;
    if (!pack(m)) {
        free(m->packed);
        free(m->bias);
        m->packed = NULL;
        m->bias = NULL;
        m->kernel = ENCODER_KERNEL_BLAS;
    }
    return m;
}

void encoder_matrix_free(struct encoder_matrix *m)
{
    if (m == NULL) {
        return;
    }
    free(m->packed);
    free(m->bias);
    free(m);
}

enum encoder_kernel encoder_matrix_kernel(const struct encoder_matrix *m)
{
    return m->kernel;
}

/* ---- multiplying ---------------------------------------------------- */

static void blas_apply(const struct encoder_matrix *m, const float *x,
                       size_t n, float *out)
{
    for (size_t r = 0; r < n; r++) {
        memcpy(out + r * m->nout, m->b, m->nout * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n,
                (int)m->nout, (int)m->nin, 1.0f, x, (int)m->nin, m->w,
                (int)m->nin, 1.0f, out, (int)m->nout);
}

/* rows rows of x times strip s into out (row stride ldo). */
static void strip(const struct encoder_matrix *m, size_t s, const float *x,
                  size_t rows, float *out, size_t ldo)
{
    const uint16_t *w = m->packed + s * m->nin * m->width;
    const float *b = m->bias + s * m->width;
    if (m->kernel == ENCODER_KERNEL_AVX512) {
        strip_avx512(x, m->nin, m->nin, w, b, out, ldo, rows);
    } else {
        strip_avx2(x, m->nin, m->nin, w, b, out, ldo, rows);
    }
}

void encoder_matrix_apply(const struct encoder_matrix *m, const float *x,
                          size_t n, float *out)
{
    if (m->kernel == ENCODER_KERNEL_BLAS) {
        blas_apply(m, x, n, out);
        return;
    }
    /* Rows in even tiles (15 rows: 8 + 7, not 12 + 3). */
    size_t rmax = m->kernel == ENCODER_KERNEL_AVX512 ? 12 : 6;
    size_t ntiles = (n + rmax - 1) / rmax;
    size_t per = (n + ntiles - 1) / ntiles;
    for (size_t s = 0; s < m->nstrips; s++) {
        size_t col = s * m->width;
        size_t ncols = m->nout - col < m->width ? m->nout - col : m->width;
        for (size_t r0 = 0; r0 < n; r0 += per) {
            size_t rows = n - r0 < per ? n - r0 : per;
            const float *xr = x + r0 * m->nin;
            if (ncols == m->width) {
                strip(m, s, xr, rows, out + r0 * m->nout + col, m->nout);
                continue;
            }
            float tmp[GEMM_MAX_ROWS * GEMM_MAX_WIDTH];
            strip(m, s, xr, rows, tmp, m->width);
            for (size_t r = 0; r < rows; r++) {
                memcpy(out + (r0 + r) * m->nout + col, tmp + r * m->width,
                       ncols * sizeof(float));
            }
        }
    }
}

void encoder_gelu(enum encoder_kernel k, float *x, size_t len)
{
    if (k == ENCODER_KERNEL_AVX512) {
        gelu_avx512(x, len);
        return;
    }
    if (k == ENCODER_KERNEL_AVX2) {
        gelu_avx2(x, len);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
    }
}
