/*
 * encoder_internal.h - the parts of the sentence encoder that encoder.c
 * builds on and the unit tests check one by one: the WordPiece tokenizer
 * (tokenizer.c) and the safetensors reader (safetensors.c). Not for use
 * outside src/cache/ and tests/unit/test_encoder.c.
 */
#ifndef RL_CACHE_ENCODER_INTERNAL_H
#define RL_CACHE_ENCODER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* ---- tokenizer.c: BERT WordPiece, uncased -------------------------- */

struct encoder_tokenizer;

/*
 * Reads vocab.txt at path (one token a line, id = line number) and returns
 * a new tokenizer in *out, owned by the caller (encoder_tokenizer_free).
 * [CLS], [SEP] and [UNK] must be in it. On failure writes a sentence to
 * err (n bytes) and returns RL_E_IO or RL_E_CONFIG.
 */
enum rl_err encoder_tokenizer_new(const char *path,
                                  struct encoder_tokenizer **out, char *err,
                                  size_t n);
/* Frees t and the vocabulary it owns; NULL is a no-op. */
void encoder_tokenizer_free(struct encoder_tokenizer *t);
/* The vocabulary's size (ids are 0 .. size-1). */
size_t encoder_tokenizer_size(const struct encoder_tokenizer *t);

/*
 * Tokenises the len bytes of UTF-8 text as BertTokenizer does for an
 * uncased model: clean (controls dropped, whitespace to spaces), Chinese
 * characters isolated, accents stripped and lower case (for the blocks
 * tokenizer_table.c covers), split on whitespace and punctuation, then
 * greedy longest-match WordPiece. Writes [CLS] ids [SEP] to ids, truncated
 * to max_ids in all (max_ids >= 2), and their count to *nids. Thread-safe:
 * t is only read. RL_E_INVALID_UTF8 when text is not UTF-8.
 */
enum rl_err encoder_tokenizer_encode(const struct encoder_tokenizer *t,
                                     const char *text, size_t len,
                                     int32_t *ids, size_t max_ids,
                                     size_t *nids);

/* ---- safetensors.c: a read-only mmap of a .safetensors file -------- */

struct encoder_safetensors;

/*
 * Maps the file at path and parses its JSON header; returns a new handle
 * in *out, owned by the caller (encoder_safetensors_close, which unmaps).
 * On failure writes a sentence to err and returns RL_E_IO or RL_E_CONFIG.
 */
enum rl_err encoder_safetensors_open(const char *path,
                                     struct encoder_safetensors **out,
                                     char *err, size_t n);
/* Unmaps the file and frees st with its F16 copies: every pointer
 * encoder_safetensors_f32 returned dies here. NULL is a no-op. */
void encoder_safetensors_close(struct encoder_safetensors *st);

/*
 * Finds tensor name, checks that its shape is dims[0..ndims) and that its
 * dtype is F32 or F16, and returns float32 data in *out: a pointer into
 * the mapping for F32, or a heap copy for F16 that st owns and frees on
 * close. Not thread-safe (call it while loading). RL_E_CONFIG with a
 * sentence in err when absent or of another shape or dtype.
 */
enum rl_err encoder_safetensors_f32(struct encoder_safetensors *st,
                                    const char *name, const size_t *dims,
                                    size_t ndims, const float **out,
                                    char *err, size_t n);

/* ---- gemm.c: the linear layers and GELU, per CPU kernel ------------- */

/* How the linear layers multiply (docs/internals/encoder.md). */
enum encoder_kernel {
    ENCODER_KERNEL_AUTO,   /* the best the CPU has (encoder_kernel_best) */
    ENCODER_KERNEL_BLAS,   /* cblas_sgemm on the fp32 weights, libm erff */
    ENCODER_KERNEL_AVX2,   /* fp16 strips, AVX2 + FMA + F16C */
    ENCODER_KERNEL_AVX512, /* fp16 strips, AVX-512F */
    ENCODER_KERNEL_AMX,    /* bf16 tiles, AMX-BF16 (+ AVX-512 for GELU) */
};

/* True when this CPU (and OS) can run kernel k; AUTO and BLAS always. */
bool encoder_kernel_supported(enum encoder_kernel k);
/* The fastest supported kernel: AMX, else AVX512, else AVX2, else BLAS. */
enum encoder_kernel encoder_kernel_best(void);
/* "auto", "blas", "avx2", "avx512" or "amx" (a static string). */
const char *encoder_kernel_name(enum encoder_kernel k);
/* Parses one of those names into *out; false for anything else. */
bool encoder_kernel_parse(const char *s, enum encoder_kernel *out);

struct encoder_matrix;

/*
 * A weight matrix w ([nout][nin], row-major) with its bias b ([nout]) for
 * kernel k (not AUTO; supported). w and b are not copied for BLAS and
 * must outlive the matrix; other kernels pack an fp16 (AMX: bf16) copy
 * (the matrix owns it), and fall back to BLAS when a weight does not fit
 * in fp16 (AMX: is not finite).
 * Returns a new matrix owned by the caller (encoder_matrix_free).
 */
struct encoder_matrix *encoder_matrix_new(enum encoder_kernel k,
                                          const float *w, const float *b,
                                          size_t nout, size_t nin);
/* Frees m and its packed copy; NULL is a no-op. */
void encoder_matrix_free(struct encoder_matrix *m);
/* The kernel m multiplies with (BLAS after a failed pack). */
enum encoder_kernel encoder_matrix_kernel(const struct encoder_matrix *m);
/* out[n][nout] = x[n][nin] W^T + b. Only reads m: thread-safe. */
void encoder_matrix_apply(const struct encoder_matrix *m, const float *x,
                          size_t n, float *out);
/* x[i] = x[i]/2 (1 + erf(x[i]/sqrt 2)) for i < len, with kernel k's erf
 * (libm erff for BLAS and AUTO, a rational approximation otherwise). */
void encoder_gelu(enum encoder_kernel k, float *x, size_t len);
/* Each row of s ([n][n]) becomes its softmax (libm expf for BLAS and
 * AUTO; a vectorised exp, within 2e-7 relative, otherwise). */
void encoder_softmax(enum encoder_kernel k, float *s, size_t n);
/* x[n][hsz] = LayerNorm(x + add) (add may be NULL) with weight w, bias b,
 * on kernel k; false, and nothing done, for BLAS or a hsz that is not a
 * multiple of the vector width (the caller's scalar code then runs). */
bool encoder_add_norm(enum encoder_kernel k, float *x, const float *add,
                      size_t n, size_t hsz, const float *w, const float *b,
                      double eps);

/* ---- encoder.c: the kernel, chosen by the caller -------------------- */

struct encoder;

/*
 * encoder_open (encoder.h) with the kernel given here instead of from
 * $RELAY_ENCODER_KERNEL: for the tests and benchmarks, which run every
 * kernel the CPU has. RL_E_CONFIG when the CPU cannot run kernel.
 */
enum rl_err encoder_open_kernel(const char *dir, enum encoder_kernel kernel,
                                struct encoder **out, char *err, size_t n);
/* The kernel e runs (never AUTO). */
enum encoder_kernel encoder_kernel_of(const struct encoder *e);

#endif
