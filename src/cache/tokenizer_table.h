/*
 * tokenizer_table.h - the Unicode data tokenizer.c needs, generated into
 * tokenizer_table.c by tools/encoder_unicode.py. Internal to src/cache/.
 */
#ifndef RL_CACHE_TOKENIZER_TABLE_H
#define RL_CACHE_TOKENIZER_TABLE_H

#include <stddef.h>
#include <stdint.h>

/* One folded code point: NFD, nonspacing marks dropped, lower case. */
struct tokenizer_fold {
    uint32_t cp;      /* the code point as written */
    const char *utf8; /* its folded form, NUL-terminated UTF-8 */
};

/* An inclusive range of code points [lo, hi]. */
struct tokenizer_range {
    uint32_t lo; /* first code point */
    uint32_t hi; /* last code point */
};

/* Sorted by cp. */
extern const struct tokenizer_fold tokenizer_folds[];
extern const size_t tokenizer_folds_len;
/* Sorted, disjoint: Mn, P*, Zs, and Cc/Cf/Co code points. */
extern const struct tokenizer_range tokenizer_marks[];
extern const size_t tokenizer_marks_len;
extern const struct tokenizer_range tokenizer_punct[];
extern const size_t tokenizer_punct_len;
extern const struct tokenizer_range tokenizer_space[];
extern const size_t tokenizer_space_len;
extern const struct tokenizer_range tokenizer_control[];
extern const size_t tokenizer_control_len;

#endif
