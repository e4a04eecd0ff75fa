/*
 * encoder_internal.h - the parts of the sentence encoder that encoder.c
 * builds on and the unit tests check one by one: the WordPiece tokenizer
 * (tokenizer.c) and the safetensors reader (safetensors.c). Not for use
 * outside src/cache/ and tests/unit/test_encoder.c.
 */
#ifndef RL_CACHE_ENCODER_INTERNAL_H
#define RL_CACHE_ENCODER_INTERNAL_H

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

#endif
