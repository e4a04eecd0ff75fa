/*
 * nearmiss.h - the near-miss guard of the semantic cache (nearmiss.c)
 * and its word lists (nearmiss_words.c). Internal to src/cache/: the one
 * caller is cache_semantic_decide() (decide.c); the unit tests call the
 * guard directly. docs/cache.md, "Near misses", says what it checks.
 */
#ifndef RL_CACHE_NEARMISS_H
#define RL_CACHE_NEARMISS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/str.h"

/*
 * Whether two prompts that embed close together still ask different
 * things: a number, a negation, an opposite word, a reversed order, a
 * named entity, a unit, a language, a code identifier or a close
 * substitution of a content word differs between them. On true writes why
 * to reason (n bytes, NUL-terminated, quoting the prompts' own words); on
 * false writes "". Pure and thread-safe; allocates only at a thread's
 * first call (its scratch, freed when the thread ends); a few
 * microseconds for prompts of a few dozen words. Texts of more than
 * CACHE_NEARMISS_MAX_WORDS words differ unless they are byte-identical.
 */
bool cache_nearmiss_differs(struct str stored, struct str asked, char *reason,
                            size_t n);

#define CACHE_NEARMISS_MAX_WORDS 512 /* words compared per prompt */

/* ---- nearmiss_words.c: the lists the guard reads --------------------- */

/* What a listed word is to the guard. */
enum nm_class {
    NM_NONE = 0,
    NM_STOP,     /* function word or question phrasing: not content */
    NM_NEG,      /* negation: not, never, no, without, ... */
    NM_LANGUAGE, /* a programming or human language */
    NM_UNIT,     /* a unit of measure */
    NM_CURRENCY, /* a currency */
    NM_DATE,     /* a month, a weekday, a season, a relative day */
    NM_PLACE,    /* a country or a large city */
    NM_RELATIVE, /* a family member */
    NM_NUMWORD,  /* a number written as a word (nm_numbers) */
};

/* The words of one class, separated by spaces: lower case, unaccented. */
struct nm_list {
    enum nm_class cls; /* what they are */
    const char *words; /* "a an the ..." */
};

extern const struct nm_list nm_lists[];
extern const size_t nm_lists_len;
/* "zero=0 one=1 ... hundred=100": number words and their values. */
extern const char nm_numbers[];
/* "on/off enable/disable ...": pairs of opposite words. */
extern const char nm_opposites[];
/* "purchase=buy large=big ...": a word and the word it is taken as. */
extern const char nm_synonyms[];
/* "and or vs ...": between two swapped words, these keep the meaning. */
extern const char nm_symmetric[];

/* ---- nearmiss_lex.c: the lexicon ------------------------------------ */

#define NM_MAX_OPP 6 /* opposites kept per listed word */

/* What the lists say about one word (by its folded form or its stem). */
struct nm_entry {
    uint64_t key;             /* hash of the form; 0: empty slot */
    enum nm_class cls;        /* class, NM_NONE if only paired */
    long value;               /* NM_NUMWORD: the number */
    uint64_t syn;             /* key of the word it is taken as, or 0 */
    uint64_t opp[NM_MAX_OPP]; /* keys of its opposites */
    unsigned nopp;            /* opposites in opp */
    bool symmetric;           /* "and", "or": order around it is free */
    bool question;            /* when, where, why, who: opposed only when
                                 both prompts open with them */
};

/* Reads the lists into the lexicon, once per process (thread-safe). */
void nm_lexicon_init(void);
/* What the lexicon says about the word or stem with key, or NULL. */
const struct nm_entry *nm_lookup(uint64_t key);
/* The key of len bytes of s (never 0). */
uint64_t nm_hash(const char *s, size_t len);
/* Writes the stem of the folded word w (len bytes) to out (room for len
 * bytes): plurals, -ing, -ed, a final e, British -ise as -ize; only for
 * words of ASCII letters. Returns its length. */
size_t nm_stem(const char *w, size_t len, char *out);

/* ---- nearmiss_split.c: a prompt cut into words ---------------------- */

#define NM_MAX_BYTES 8192 /* folded bytes (words and stems) per prompt */
#define NM_SET_SLOTS 1024 /* per-prompt word set: a power of two */

/* What a word of a prompt is (struct nm_word.flags). */
enum {
    NM_W_START = 1 << 0,   /* first word of a sentence */
    NM_W_CAP = 1 << 1,     /* capitalised as written */
    NM_W_ACRONYM = 1 << 2, /* two or more letters, all capitals */
    NM_W_IDENT = 1 << 3,   /* code-like: camelCase, a_b, a.b, a::b, c#, -r */
    NM_W_NUMBER = 1 << 4,  /* a number: canon is its normal form */
    NM_W_STOP = 1 << 5,    /* function word or question phrasing */
    NM_W_NEG = 1 << 6,     /* a negation */
    NM_W_NUMWORD = 1 << 7, /* a number written as a word ("three") */
    NM_W_SKIP = 1 << 8,    /* merged into the number word before it */
};

/* One word of a prompt. */
struct nm_word {
    uint32_t src, src_len;     /* as written: bytes of the prompt */
    uint32_t fold, fold_len;   /* folded as written, in text.buf */
    uint32_t canon, canon_len; /* stem or number, in text.buf */
    uint64_t key;              /* hash of canon */
    uint64_t syn;              /* key of the synonym it is taken as */
    const struct nm_entry *e;  /* what the lists say, or NULL */
    unsigned flags;            /* NM_W_* */
};

/* A word set: key -> how many words of the prompt have it. */
struct nm_slot {
    uint64_t key;   /* the word's key */
    uint32_t gen;   /* the call that filled it: older slots are empty */
    uint32_t count; /* words with this key */
    uint32_t first; /* index of the first of them */
};

/* One prompt, cut into words. */
struct nm_text {
    const char *src;        /* the prompt (not owned) */
    size_t src_len;         /* its bytes */
    char buf[NM_MAX_BYTES]; /* folded words and their stems */
    size_t len;             /* bytes of buf used */
    struct nm_word w[CACHE_NEARMISS_MAX_WORDS]; /* the words, in order */
    size_t nw;              /* words in w */
    bool overflow;          /* more than fits: compared as bytes */
    uint32_t gen;           /* this call's set generation */
    struct nm_slot all[NM_SET_SLOTS];     /* every word, by key */
    struct nm_slot content[NM_SET_SLOTS]; /* content words, by synonym */
};

/* Cuts src into t's words (t->overflow when they do not fit). The
 * lexicon must be initialised. */
void nm_split(struct nm_text *t, struct str src);

#endif
