/*
 * gemm.c - the encoder's kernels: its linear layers (out = x W^T + b) for
 * the few rows (tokens) of one prompt, and its GELU, softmax and
 * LayerNorm, per instruction set.
 *
 * cblas_sgemm packs (copies) the whole weight matrix on every call, which
 * for a prompt of 15 tokens costs more than the arithmetic: 42 MB copied
 * per embed. Here each weight matrix is packed once, at encoder_open, into
 * strips of 2*VW outputs stored input-major in fp16, and the kernel
 * (gemm_simd.h) reads each strip once per call, with the rows' partial
 * sums in registers. Where the CPU has AMX (Sapphire Rapids and later),
 * the multiply runs on its bf16 tiles instead: the weights are packed into
 * the tiles' pair-interleaved layout, each call rounds its rows to bf16,
 * and 16 or 32 rows by 32 outputs of sums live in tile registers (see
 * "AMX" below); rounding the rows costs accuracy (cosine 1 - 4e-5 with the
 * reference, against 1 - 5e-7 for the fp16 strips).
 *
 * The kernel is chosen once at run time from what the CPU has (AMX, else
 * AVX-512F, else AVX2 + FMA + F16C, else OpenBLAS with the fp32 weights
 * and libm, exactly as before); functions carry their own target
 * attribute, so the build stays portable (-march is not raised). The
 * kernels win at every prompt length up to the model's 256 tokens, so
 * there is no switch back to OpenBLAS for long prompts. Read
 * encoder_matrix_apply first; docs/internals/encoder.md has the
 * measurements.
 */
#include <assert.h>
#include <cblas.h>
#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

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
    size_t nin_pad;             /* AMX: nin rounded up to 32 */
    uint16_t *packed;           /* [nstrips][nin][width] fp16, owned;
                                   AMX: see amx_pack */
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
#define V_ADD(a, b) _mm512_add_ps((a), (b))
#define V_SUB(a, b) _mm512_sub_ps((a), (b))
#define V_ROUND(a)                                                         \
    _mm512_roundscale_ps((a), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_POW2(p, n) _mm512_scalef_ps((p), (n))
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
#undef V_ADD
#undef V_SUB
#undef V_ROUND
#undef V_POW2

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
#define V_ADD(a, b) _mm256_add_ps((a), (b))
#define V_SUB(a, b) _mm256_sub_ps((a), (b))
#define V_ROUND(a)                                                         \
    _mm256_round_ps((a), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
/* p 2^n: n (an integer in [-126, 0] here) into the exponent field. */
#define V_POW2(p, n)                                                       \
    _mm256_mul_ps((p), _mm256_castsi256_ps(_mm256_slli_epi32(              \
                           _mm256_add_epi32(_mm256_cvtps_epi32(n),         \
                                            _mm256_set1_epi32(127)),       \
                           23)))
#include "cache/gemm_simd.h"

/* ---- AMX ------------------------------------------------------------- */

/* clang before 16 does not compile the AMX intrinsics in a function with
 * a target attribute (the fuzz build is clang 14's): no AMX kernel there. */
#if defined(__clang__) && __clang_major__ < 16
#define GEMM_AMX 0
#else
#define GEMM_AMX 1
#endif

/*
 * A tile holds 16 rows of 64 bytes. TDPBF16PS C += A B takes A as 16 rows
 * of 32 bf16 (16 tokens x 32 inputs) and B as 16 rows of 16 pairs (input
 * pair p, output j: W[j][2p], W[j][2p+1]), and adds into C, 16 x 16
 * floats. A matrix is packed as, for each block of 32 outputs and each
 * step of 32 inputs, two B tiles (outputs 0-15, 16-31) of 1 KB each,
 * zero-padded past nout and nin.
 */
#define AMX_K 32            /* inputs per tile step */
#define AMX_ROWS 16         /* rows per tile */
#define AMX_TILE_HALFS 512  /* bf16 in one B tile */
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

/* The tile registers' shapes (LDTILECFG's 64 bytes, palette 1). */
struct amx_config {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

static bool amx_granted; /* written once, under amx_once */
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

static void amx_ask(void)
{
    amx_granted = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM,
                          XFEATURE_XTILEDATA) == 0;
}

/* Linux hands AMX's 8 KB of tile state to a process only when asked
 * (asked once; the answer holds for every thread). It refuses, for one,
 * when a thread's signal stack is too small for that state. */
static bool amx_permitted(void)
{
    pthread_once(&amx_once, amx_ask);
    return amx_granted;
}

#if GEMM_AMX
/* float to bf16, rounding to nearest even (weights are finite). */
static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Converts w to bf16 tiles in m->packed; false when a weight is not
 * finite, and then the matrix stays on BLAS. */
static bool amx_pack(struct encoder_matrix *m)
{
    size_t nsteps = m->nin_pad / AMX_K;
    m->packed = rl_calloc(m->nstrips * nsteps * 2 * AMX_TILE_HALFS,
                          sizeof(uint16_t));
    m->bias = rl_calloc(m->nstrips * m->width, sizeof(float));
    memcpy(m->bias, m->b, m->nout * sizeof(float));
    for (size_t o = 0; o < m->nout; o++) {
        size_t half = (o % 32) / 16;
        size_t j = o % 16;
        for (size_t k = 0; k < m->nin; k++) {
            float v = m->w[o * m->nin + k];
            if (!isfinite(v)) {
                return false;
            }
            size_t tile = ((o / 32) * nsteps + k / AMX_K) * 2 + half;
            size_t in_tile = ((k % AMX_K) / 2) * 32 + j * 2 + k % 2;
            m->packed[tile * AMX_TILE_HALFS + in_tile] = to_bf16(v);
        }
    }
    return true;
}

/* x's n rows as bf16 into xb (npad x nin_pad, zero-padded). */
static __attribute__((target("avx512f,avx512bf16,avx512vl"))) void
amx_rows(const struct encoder_matrix *m, const float *x, size_t n,
         size_t npad, uint16_t *xb)
{
    memset(xb, 0, npad * m->nin_pad * sizeof(uint16_t));
    for (size_t r = 0; r < n; r++) {
        const float *src = x + r * m->nin;
        uint16_t *dst = xb + r * m->nin_pad;
        size_t k = 0;
        for (; k + 16 <= m->nin; k += 16) {
            __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + k));
            memcpy(dst + k, &h, sizeof(h));
        }
        for (; k < m->nin; k++) {
            dst[k] = to_bf16(src[k]);
        }
    }
}

/* Tile c (16 x 16 floats, row stride 64 bytes) plus the bias into out's
 * rows [0, rows) and columns [col, col + 16), cut at nout. */
static void amx_store(const struct encoder_matrix *m, const float *c,
                      size_t rows, size_t col, float *out)
{
    if (col >= m->nout) {
        return;
    }
    size_t ncols = m->nout - col < 16 ? m->nout - col : 16;
    for (size_t r = 0; r < rows; r++) {
        for (size_t j = 0; j < ncols; j++) {
            out[r * m->nout + col + j] = c[r * 16 + j] + m->bias[col + j];
        }
    }
}

/* The B tiles of strip s, one pair per step of 32 inputs. */
static const uint16_t *amx_strip(const struct encoder_matrix *m, size_t s)
{
    return m->packed + s * (m->nin_pad / AMX_K) * 2 * AMX_TILE_HALFS;
}

/* Rows [0, 32) of xb (rows of them real) times strip s, into out:
 * four C tiles (2 row blocks x 2 halves of the strip), so each B tile
 * loaded serves 32 rows. */
static __attribute__((target("amx-tile,amx-bf16"))) void
amx_block2(const struct encoder_matrix *m, const uint16_t *xb, size_t s,
           size_t rows, float *out)
{
    size_t nsteps = m->nin_pad / AMX_K;
    const uint16_t *w = amx_strip(m, s);
    size_t lda = m->nin_pad * sizeof(uint16_t);
    const uint16_t *xb1 = xb + AMX_ROWS * m->nin_pad;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (size_t t = 0; t < nsteps; t++) {
        _tile_loadd(4, xb + t * AMX_K, lda);
        _tile_loadd(5, xb1 + t * AMX_K, lda);
        _tile_loadd(6, w + t * 2 * AMX_TILE_HALFS, 64);
        _tile_loadd(7, w + (t * 2 + 1) * AMX_TILE_HALFS, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    float c[4][AMX_ROWS * 16];
    _tile_stored(0, c[0], 64);
    _tile_stored(1, c[1], 64);
    _tile_stored(2, c[2], 64);
    _tile_stored(3, c[3], 64);
    size_t low = rows < AMX_ROWS ? rows : AMX_ROWS;
    amx_store(m, c[0], low, s * 32, out);
    amx_store(m, c[1], low, s * 32 + 16, out);
    if (rows > AMX_ROWS) {
        float *high = out + AMX_ROWS * m->nout;
        amx_store(m, c[2], rows - AMX_ROWS, s * 32, high);
        amx_store(m, c[3], rows - AMX_ROWS, s * 32 + 16, high);
    }
}

/* Rows [0, 16) of xb (rows of them real) times strip s, into out;
 * two input steps at a time on alternate A and B tiles, so that the loads
 * of one step go on while the other's products run. */
static __attribute__((target("amx-tile,amx-bf16"))) void
amx_block(const struct encoder_matrix *m, const uint16_t *xb, size_t s,
          size_t rows, float *out)
{
    size_t nsteps = m->nin_pad / AMX_K;
    const uint16_t *w = amx_strip(m, s);
    size_t lda = m->nin_pad * sizeof(uint16_t);
    _tile_zero(0);
    _tile_zero(1);
    size_t t = 0;
    for (; t + 2 <= nsteps; t += 2) {
        _tile_loadd(2, xb + t * AMX_K, lda);
        _tile_loadd(3, w + t * 2 * AMX_TILE_HALFS, 64);
        _tile_loadd(4, w + (t * 2 + 1) * AMX_TILE_HALFS, 64);
        _tile_loadd(5, xb + (t + 1) * AMX_K, lda);
        _tile_loadd(6, w + (t * 2 + 2) * AMX_TILE_HALFS, 64);
        _tile_loadd(7, w + (t * 2 + 3) * AMX_TILE_HALFS, 64);
        _tile_dpbf16ps(0, 2, 3);
        _tile_dpbf16ps(1, 2, 4);
        _tile_dpbf16ps(0, 5, 6);
        _tile_dpbf16ps(1, 5, 7);
    }
    if (t < nsteps) {
        _tile_loadd(2, xb + t * AMX_K, lda);
        _tile_loadd(3, w + t * 2 * AMX_TILE_HALFS, 64);
        _tile_loadd(4, w + (t * 2 + 1) * AMX_TILE_HALFS, 64);
        _tile_dpbf16ps(0, 2, 3);
        _tile_dpbf16ps(1, 2, 4);
    }
    float c[2][AMX_ROWS * 16];
    _tile_stored(0, c[0], 64);
    _tile_stored(1, c[1], 64);
    amx_store(m, c[0], rows, s * 32, out);
    amx_store(m, c[1], rows, s * 32 + 16, out);
}

/* All rows in bf16 first; then strip by strip (so a strip's weights are
 * read from memory once), 32 rows at a time, 16 for the last odd block. */
static __attribute__((target("amx-tile,amx-bf16"))) void
amx_apply(const struct encoder_matrix *m, const float *x, size_t n,
          float *out)
{
    struct amx_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = AMX_ROWS;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
    size_t npad = (n + 2 * AMX_ROWS - 1) / (2 * AMX_ROWS) * 2 * AMX_ROWS;
    uint16_t *xb = rl_malloc(npad * m->nin_pad * sizeof(uint16_t));
    amx_rows(m, x, n, npad, xb);
    for (size_t s = 0; s < m->nstrips; s++) {
        for (size_t r0 = 0; r0 < n; r0 += 2 * AMX_ROWS) {
            size_t rows = n - r0 < 2 * AMX_ROWS ? n - r0 : 2 * AMX_ROWS;
            const uint16_t *a = xb + r0 * m->nin_pad;
            float *o = out + r0 * m->nout;
            if (rows > AMX_ROWS) {
                amx_block2(m, a, s, rows, o);
            } else {
                amx_block(m, a, s, rows, o);
            }
        }
    }
    free(xb);
    _tile_release();
}

#else
/* No AMX kernel in this build: never chosen (kernel_usable), never run. */
static bool amx_pack(struct encoder_matrix *m)
{
    (void)m;
    return false;
}

static void amx_apply(const struct encoder_matrix *m, const float *x,
                      size_t n, float *out)
{
    (void)m;
    (void)x;
    (void)n;
    (void)out;
}
#endif

/* ---- choosing a kernel ---------------------------------------------- */

/* CPUID leaf, subleaf: bit of register reg (0 eax, 1 ebx, 2 ecx, 3 edx).
 * For the features clang 14's __builtin_cpu_supports does not name. */
static bool cpuid_bit(unsigned leaf, unsigned sub, int reg, int bit)
{
    unsigned r[4] = {0, 0, 0, 0};
    if (!__get_cpuid_count(leaf, sub, &r[0], &r[1], &r[2], &r[3])) {
        return false;
    }
    return (r[reg] >> bit) & 1u;
}

bool encoder_kernel_supported(enum encoder_kernel k)
{
    __builtin_cpu_init();
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                && cpuid_bit(1, 0, 2, 29); /* f16c */
    switch (k) {
    case ENCODER_KERNEL_BLAS:
    case ENCODER_KERNEL_AUTO:
        return true;
    case ENCODER_KERNEL_AVX2:
        return avx2;
    case ENCODER_KERNEL_AVX512:
        return avx2 && __builtin_cpu_supports("avx512f");
    case ENCODER_KERNEL_AMX:
        return GEMM_AMX && avx2 && __builtin_cpu_supports("avx512f")
               && cpuid_bit(7, 0, 3, 24)  /* amx-tile */
               && cpuid_bit(7, 0, 3, 22)  /* amx-bf16 */
               && cpuid_bit(7, 1, 0, 5)   /* avx512bf16 */
               && amx_permitted();
    }
    return false;
}

enum encoder_kernel encoder_kernel_best(void)
{
    if (encoder_kernel_supported(ENCODER_KERNEL_AMX)) {
        return ENCODER_KERNEL_AMX;
    }
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
    case ENCODER_KERNEL_AMX:
        return "amx";
    }
    return "?";
}

bool encoder_kernel_parse(const char *s, enum encoder_kernel *out)
{
    for (int k = ENCODER_KERNEL_AUTO; k <= ENCODER_KERNEL_AMX; k++) {
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
    m->width = k == ENCODER_KERNEL_AVX2 ? 16 : 32;
    m->nstrips = (nout + m->width - 1) / m->width;
    m->nin_pad = (nin + AMX_K - 1) / AMX_K * AMX_K;
    if (!(k == ENCODER_KERNEL_AMX ? amx_pack(m) : pack(m))) {
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
    if (m->kernel == ENCODER_KERNEL_AMX) {
        amx_apply(m, x, n, out);
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

bool encoder_add_norm(enum encoder_kernel k, float *x, const float *add,
                      size_t n, size_t hsz, const float *w, const float *b,
                      double eps)
{
    if ((k == ENCODER_KERNEL_AVX512 || k == ENCODER_KERNEL_AMX)
        && hsz % 16 == 0) {
        add_norm_avx512(x, add, n, hsz, w, b, eps);
        return true;
    }
    if (k == ENCODER_KERNEL_AVX2 && hsz % 8 == 0) {
        add_norm_avx2(x, add, n, hsz, w, b, eps);
        return true;
    }
    return false;
}

void encoder_softmax(enum encoder_kernel k, float *s, size_t n)
{
    if (k == ENCODER_KERNEL_AVX512 || k == ENCODER_KERNEL_AMX) {
        softmax_avx512(s, n);
        return;
    }
    if (k == ENCODER_KERNEL_AVX2) {
        softmax_avx2(s, n);
        return;
    }
    for (size_t r = 0; r < n; r++) {
        float *row = s + r * n;
        float max = row[0];
        for (size_t c = 1; c < n; c++) {
            max = row[c] > max ? row[c] : max;
        }
        double sum = 0;
        for (size_t c = 0; c < n; c++) {
            row[c] = expf(row[c] - max);
            sum += row[c];
        }
        float inv = (float)(1.0 / sum);
        for (size_t c = 0; c < n; c++) {
            row[c] *= inv;
        }
    }
}

void encoder_gelu(enum encoder_kernel k, float *x, size_t len)
{
    if (k == ENCODER_KERNEL_AVX512 || k == ENCODER_KERNEL_AMX) {
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
