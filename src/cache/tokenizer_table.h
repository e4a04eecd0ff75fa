/*
 * tokenizer_table.h - the Unicode data tokenizer.c needs, generated into
 * tokenizer_fold.c and tokenizer_table.c by tools/encoder_unicode.py.
 * Internal to src/cache/.
 */
#ifndef RL_CACHE_TOKENIZER_TABLE_H
#define RL_CACHE_TOKENIZER_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A code point that folds to one code point (A -> a, e-acute -> e). */
struct tokenizer_fold1 {
    uint32_t cp; /* the code point as written */
    uint32_t to; /* NFD, nonspacing marks dropped, lower case */
};

/* A code point that folds to several: NFD, marks dropped, lower case. */
struct tokenizer_fold {
    uint32_t cp;      /* the code point as written */
    const char *utf8; /* its folded form, NUL-terminated UTF-8 */
};

/* An inclusive range of code points [lo, hi]. */
struct tokenizer_range {
    uint32_t lo; /* first code point */
    uint32_t hi; /* last code point */
};

/* Sorted by cp (tokenizer_fold.c). */
extern const struct tokenizer_fold1 tokenizer_folds1[];
extern const size_t tokenizer_folds1_len;
extern const struct tokenizer_fold tokenizer_folds[];
extern const size_t tokenizer_folds_len;
/* Sorted, disjoint (tokenizer_table.c): what the reference drops, turns
 * into a space, isolates as a CJK ideograph, or isolates as punctuation. */
extern const struct tokenizer_range tokenizer_dropped[];
extern const size_t tokenizer_dropped_len;
extern const struct tokenizer_range tokenizer_space[];
extern const size_t tokenizer_space_len;
extern const struct tokenizer_range tokenizer_chinese[];
extern const size_t tokenizer_chinese_len;
extern const struct tokenizer_range tokenizer_punct[];
extern const size_t tokenizer_punct_len;

/* ---- tokenizer.c: lookups shared with the near-miss guard ----------- */

/* Whether cp is in one of the n sorted, disjoint ranges r. */
bool tokenizer_in_ranges(const struct tokenizer_range *r, size_t n,
                         uint32_t cp);
/* Decodes one code point at s[*i] into *cp and moves *i past it; false
 * on malformed UTF-8 (*i unchanged). */
bool tokenizer_utf8_next(const unsigned char *s, size_t len, size_t *i,
                         uint32_t *cp);
/* Writes cp as UTF-8 to p (room for 4 bytes); returns its length. */
size_t tokenizer_utf8_put(uint32_t cp, unsigned char *p);
/* How the uncased normaliser folds cp (NFD, marks dropped, lower case):
 * true with *to (one code point) or *many (UTF-8, NUL-terminated) set;
 * false when cp stays itself. */
bool tokenizer_fold_cp(uint32_t cp, uint32_t *to, const char **many);

#endif
