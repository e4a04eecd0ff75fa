/*
 * gemm_simd.h - the encoder's SIMD kernels, written once and compiled
 * once per instruction set: src/cache/gemm.c includes this file twice,
 * after defining the vector type and operations of AVX-512 and then of
 * AVX2 (VF, VW, V_*), the function suffix (SIMD_FN) and the target
 * attribute (SIMD_TARGET). Nothing here is used outside gemm.c, and there
 * is no include guard on purpose.
 *
 * Two kernels:
 * - strip: rows of x times one strip of a packed weight matrix. A strip
 *   is 2*VW outputs wide and stored input-major in fp16 (for each input
 *   k, the 2*VW weights of that input), so the kernel reads it once,
 *   front to back; R rows (R <= SIMD_ROWS) by 2 vectors of outputs stay
 *   in registers, and each step is one broadcast of x[r][k] and two FMAs
 *   per row.
 * - gelu: x/2 (1 + erf(x/sqrt 2)) with erf as a rational function (see
 *   GELU_P and GELU_Q in gemm.c), VW lanes at a time.
 * - softmax: each row of attention scores, with exp as 2^n e^r (r within
 *   ln2/2 of 0, e^r by its Taylor series to r^7).
 * - add_norm: the residual and LayerNorm, with the statistics summed in
 *   VW float lanes and the lanes in double.
 */

#define SIMD_CAT2(a, b) a##_##b
#define SIMD_CAT(a, b) SIMD_CAT2(a, b)
#define SIMD_NAME(name) SIMD_CAT(name, SIMD_FN)

/* R rows of one strip: out[r][0 .. 2*VW) = bias + x[r] . strip. R is a
 * constant after inlining, so acc lives in registers. */
static inline __attribute__((always_inline, target(SIMD_TARGET))) void
SIMD_NAME(strip_rows)(const float *x, size_t ldx, size_t nin,
                      const uint16_t *w, const float *bias, float *out,
                      size_t ldo, const size_t R)
{
    VF acc[SIMD_ROWS][2];
    VF b0 = V_LOAD(bias);
    VF b1 = V_LOAD(bias + VW);
#pragma GCC unroll 16
    for (size_t r = 0; r < R; r++) {
        acc[r][0] = b0;
        acc[r][1] = b1;
    }
    for (size_t k = 0; k < nin; k++) {
        VF w0 = V_LOADH(w + k * 2 * VW);
        VF w1 = V_LOADH(w + k * 2 * VW + VW);
#pragma GCC unroll 16
        for (size_t r = 0; r < R; r++) {
            VF xr = V_SET1(x[r * ldx + k]);
            acc[r][0] = V_FMA(xr, w0, acc[r][0]);
            acc[r][1] = V_FMA(xr, w1, acc[r][1]);
        }
    }
#pragma GCC unroll 16
    for (size_t r = 0; r < R; r++) {
        V_STORE(out + r * ldo, acc[r][0]);
        V_STORE(out + r * ldo + VW, acc[r][1]);
    }
}

/* rows (1 .. SIMD_ROWS) rows of one strip; see strip_rows. */
static __attribute__((target(SIMD_TARGET))) void
SIMD_NAME(strip)(const float *x, size_t ldx, size_t nin, const uint16_t *w,
                 const float *bias, float *out, size_t ldo, size_t rows)
{
    switch (rows) {
#define SIMD_CASE(R)                                                      \
    case R:                                                               \
        SIMD_NAME(strip_rows)(x, ldx, nin, w, bias, out, ldo, R);         \
        break;
        SIMD_CASES
#undef SIMD_CASE
    default:
        break;
    }
}

/* x[i] = GELU(x[i]) for VW lanes; erf(z) = z P(z^2) / Q(z^2) on the
 * clamped z. */
static inline __attribute__((always_inline, target(SIMD_TARGET))) VF
SIMD_NAME(gelu_v)(VF x)
{
    VF z = V_MUL(x, V_SET1(GELU_SQRT1_2));
    z = V_MIN(V_MAX(z, V_SET1(-GELU_CLAMP)), V_SET1(GELU_CLAMP));
    VF s = V_MUL(z, z);
    VF p = V_SET1(GELU_P[GELU_NP - 1]);
    for (int i = GELU_NP - 2; i >= 0; i--) {
        p = V_FMA(p, s, V_SET1(GELU_P[i]));
    }
    VF q = V_SET1(GELU_Q[GELU_NQ - 1]);
    for (int i = GELU_NQ - 2; i >= 0; i--) {
        q = V_FMA(q, s, V_SET1(GELU_Q[i]));
    }
    VF erf = V_DIV(V_MUL(z, p), q);
    VF half_x = V_MUL(x, V_SET1(0.5f));
    return V_FMA(half_x, erf, half_x);
}

static __attribute__((target(SIMD_TARGET))) void
SIMD_NAME(gelu)(float *x, size_t len)
{
    size_t i = 0;
    for (; i + VW <= len; i += VW) {
        V_STORE(x + i, SIMD_NAME(gelu_v)(V_LOAD(x + i)));
    }
    if (i < len) {
        float tail[VW] = {0};
        memcpy(tail, x + i, (len - i) * sizeof(float));
        V_STORE(tail, SIMD_NAME(gelu_v)(V_LOAD(tail)));
        memcpy(x + i, tail, (len - i) * sizeof(float));
    }
}

/* e^x for x <= 0 (an attention score minus its row's maximum). */
static inline __attribute__((always_inline, target(SIMD_TARGET))) VF
SIMD_NAME(exp_v)(VF x)
{
    x = V_MAX(x, V_SET1(-87.0f));
    VF n = V_ROUND(V_MUL(x, V_SET1(1.44269504088896341f)));
    VF r = V_FMA(n, V_SET1(-0.693145751953125f), x);
    r = V_FMA(n, V_SET1(-1.42860682030941723e-6f), r);
    VF p = V_SET1(1.0f / 5040.0f);
    static const float taylor[] = {1.0f / 720.0f, 1.0f / 120.0f,
                                   1.0f / 24.0f,  1.0f / 6.0f,
                                   0.5f,          1.0f,
                                   1.0f};
    for (size_t i = 0; i < sizeof(taylor) / sizeof(taylor[0]); i++) {
        p = V_FMA(p, r, V_SET1(taylor[i]));
    }
    return V_POW2(p, n);
}

/* Each of the n rows of s ([n][n]) becomes its softmax. */
static __attribute__((target(SIMD_TARGET))) void
SIMD_NAME(softmax)(float *s, size_t n)
{
    float tail[VW];
    for (size_t r = 0; r < n; r++) {
        float *row = s + r * n;
        float max = row[0];
        for (size_t c = 1; c < n; c++) {
            max = row[c] > max ? row[c] : max;
        }
        VF vmax = V_SET1(max);
        VF vsum = V_SET1(0.0f);
        size_t c = 0;
        for (; c + VW <= n; c += VW) {
            VF e = SIMD_NAME(exp_v)(V_SUB(V_LOAD(row + c), vmax));
            V_STORE(row + c, e);
            vsum = V_ADD(vsum, e);
        }
        V_STORE(tail, vsum);
        double sum = 0;
        for (size_t i = 0; i < VW; i++) {
            sum += tail[i];
        }
        for (; c < n; c++) {
            V_STORE(tail, SIMD_NAME(exp_v)(V_SET1(row[c] - max)));
            row[c] = tail[0];
            sum += row[c];
        }
        VF inv = V_SET1((float)(1.0 / sum));
        for (c = 0; c + VW <= n; c += VW) {
            V_STORE(row + c, V_MUL(V_LOAD(row + c), inv));
        }
        for (; c < n; c++) {
            row[c] *= (float)(1.0 / sum);
        }
    }
}

/* The sum of v's lanes, in double. */
static inline __attribute__((always_inline, target(SIMD_TARGET))) double
SIMD_NAME(lanes_sum)(VF v)
{
    float lanes[VW];
    V_STORE(lanes, v);
    double sum = 0;
    for (size_t i = 0; i < VW; i++) {
        sum += lanes[i];
    }
    return sum;
}

/* x[r] = LayerNorm(x[r] + add[r]) for n rows of hsz floats (hsz a
 * multiple of VW; add may be NULL). */
static __attribute__((target(SIMD_TARGET))) void
SIMD_NAME(add_norm)(float *x, const float *add, size_t n, size_t hsz,
                    const float *w, const float *b, double eps)
{
    for (size_t r = 0; r < n; r++) {
        float *row = x + r * hsz;
        VF sum = V_SET1(0.0f);
        for (size_t c = 0; c < hsz; c += VW) {
            VF v = V_LOAD(row + c);
            if (add != NULL) {
                v = V_ADD(v, V_LOAD(add + r * hsz + c));
                V_STORE(row + c, v);
            }
            sum = V_ADD(sum, v);
        }
        VF mean = V_SET1((float)(SIMD_NAME(lanes_sum)(sum) / (double)hsz));
        VF sq = V_SET1(0.0f);
        for (size_t c = 0; c < hsz; c += VW) {
            VF d = V_SUB(V_LOAD(row + c), mean);
            sq = V_FMA(d, d, sq);
        }
        double var = SIMD_NAME(lanes_sum)(sq) / (double)hsz;
        VF inv = V_SET1((float)(1.0 / sqrt(var + eps)));
        for (size_t c = 0; c < hsz; c += VW) {
            VF y = V_MUL(V_SUB(V_LOAD(row + c), mean), inv);
            V_STORE(row + c, V_FMA(y, V_LOAD(w + c), V_LOAD(b + c)));
        }
    }
}

#undef SIMD_NAME
#undef SIMD_CAT
#undef SIMD_CAT2
