/*
 * tokenizer.c - BERT WordPiece tokenisation for uncased models.
 *
 * Reproduces Hugging Face's BertNormalizer + BertPreTokenizer + WordPiece
 * (what sentence-transformers runs for all-MiniLM-L6-v2): per code point,
 * drop NUL, U+FFFD and controls, turn whitespace into a space, isolate CJK
 * ideographs, strip accents (NFD, drop nonspacing marks) and lower-case;
 * then split on spaces and punctuation (each punctuation mark is a word)
 * and cut each word into the longest vocabulary pieces, "##" marking a
 * continuation; a word with no cut, or over 100 characters, is [UNK].
 *
 * The Unicode data (each code point's fold and class) is generated into
 * tokenizer_fold.c and tokenizer_table.c by tools/encoder_unicode.py from
 * the reference library itself, one code point at a time, so the two
 * agree on all of Unicode (its tables are older than Python's). Folding is
 * per code point: NFD's canonical reordering is moot since every
 * nonspacing mark is dropped. The text is streamed: no allocation per
 * call, and the work stops once max_ids is reached. Read
 * encoder_tokenizer_encode first.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/encoder_internal.h"
#include "cache/tokenizer_table.h"
#include "util/alloc.h"

/* BertTokenizer's max_input_chars_per_word. */
#define WORD_MAX_CHARS 100
/* Bytes for a word of WORD_MAX_CHARS characters plus the "##" prefix. */
#define WORD_MAX_BYTES (WORD_MAX_CHARS * 4 + 2)

struct encoder_tokenizer {
    char *text;          /* vocab.txt's bytes, '\n's turned into NULs */
    const char **tokens; /* tokens[id]: NUL-terminated, into text */
    size_t ntokens;      /* vocabulary size */
    int32_t *slots;      /* open-addressing hash of ids, -1 empty */
    size_t nslots;       /* a power of two, > 2 * ntokens */
    int32_t cls_id;      /* id of [CLS] */
    int32_t sep_id;      /* id of [SEP] */
    int32_t unk_id;      /* id of [UNK] */
};

/* The word being gathered and the output it goes to. */
struct word_state {
    const struct encoder_tokenizer *t;
    char bytes[WORD_MAX_BYTES]; /* the word's UTF-8, after "##" room */
    size_t len;                 /* bytes used in bytes[2..] */
    size_t nchars;              /* characters in the word so far */
    int32_t *ids;               /* output */
    size_t nids;                /* ids written */
    size_t max_word_ids;        /* room for word pieces (max_ids - 1) */
};

/* ---- vocabulary ----------------------------------------------------- */

static uint64_t hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Returns the id of the len bytes at s, or -1. */
static int32_t lookup(const struct encoder_tokenizer *t, const char *s,
                      size_t len)
{
    size_t i = hash(s, len) & (t->nslots - 1);
    while (t->slots[i] >= 0) {
        const char *tok = t->tokens[t->slots[i]];
        if (strncmp(tok, s, len) == 0 && tok[len] == '\0') {
            return t->slots[i];
        }
        i = (i + 1) & (t->nslots - 1);
    }
    return -1;
}

static void insert(struct encoder_tokenizer *t, int32_t id)
{
    const char *s = t->tokens[id];
    size_t i = hash(s, strlen(s)) & (t->nslots - 1);
    while (t->slots[i] >= 0) {
        if (strcmp(t->tokens[t->slots[i]], s) == 0) {
            return; /* a duplicate line: the first id wins */
        }
        i = (i + 1) & (t->nslots - 1);
    }
    t->slots[i] = id;
}

static enum rl_err read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return RL_E_IO;
    }
    size_t cap = 1 << 16;
    size_t n = 0;
    char *p = rl_malloc(cap);
    for (;;) {
        size_t got = fread(p + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) {
            break;
        }
        if (cap - n - 1 == 0) {
            cap *= 2;
            p = rl_realloc(p, cap);
        }
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad) {
        free(p);
        return RL_E_IO;
    }
    p[n] = '\0';
    *out = p;
    *len = n;
    return RL_OK;
}

/* Splits t->text into lines (a trailing '\r' dropped) and indexes them. */
static void index_lines(struct encoder_tokenizer *t, size_t len)
{
    size_t cap = 1024;
    t->tokens = rl_malloc(cap * sizeof(*t->tokens));
    char *p = t->text;
    char *end = t->text + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl != NULL ? nl : end;
        *stop = '\0';
        if (stop > p && stop[-1] == '\r') {
            stop[-1] = '\0';
        }
        if (t->ntokens == cap) {
            cap *= 2;
            t->tokens = rl_realloc(t->tokens, cap * sizeof(*t->tokens));
        }
        t->tokens[t->ntokens++] = p;
        p = stop + 1;
    }
    t->nslots = 1;
    while (t->nslots <= 2 * t->ntokens) {
        t->nslots *= 2;
    }
    t->slots = rl_malloc(t->nslots * sizeof(*t->slots));
    memset(t->slots, 0xff, t->nslots * sizeof(*t->slots));
    for (size_t i = 0; i < t->ntokens; i++) {
        insert(t, (int32_t)i);
    }
}

enum rl_err encoder_tokenizer_new(const char *path,
                                  struct encoder_tokenizer **out, char *err,
                                  size_t n)
{
    struct encoder_tokenizer *t = rl_calloc(1, sizeof(*t));
    size_t len = 0;
    if (read_file(path, &t->text, &len) != RL_OK) {
        snprintf(err, n, "reading the vocabulary %s failed", path);
        free(t);
        return RL_E_IO;
    }
    index_lines(t, len);
    t->cls_id = lookup(t, "[CLS]", 5);
    t->sep_id = lookup(t, "[SEP]", 5);
    t->unk_id = lookup(t, "[UNK]", 5);
    if (t->cls_id < 0 || t->sep_id < 0 || t->unk_id < 0) {
        snprintf(err, n, "the vocabulary %s lacks [CLS], [SEP] or [UNK]",
                 path);
        encoder_tokenizer_free(t);
        return RL_E_CONFIG;
    }
    *out = t;
    return RL_OK;
}

/* Frees t and everything it owns; NULL is a no-op. */
void encoder_tokenizer_free(struct encoder_tokenizer *t)
{
    if (t == NULL) {
        return;
    }
    free(t->slots);
    free(t->tokens);
    free(t->text);
    free(t);
}

size_t encoder_tokenizer_size(const struct encoder_tokenizer *t)
{
    return t->ntokens;
}

/* ---- Unicode -------------------------------------------------------- */

bool tokenizer_in_ranges(const struct tokenizer_range *r, size_t n,
                         uint32_t cp)
{
    size_t lo = 0;
    size_t hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].lo) {
            hi = mid;
        } else if (cp > r[mid].hi) {
            lo = mid + 1;
        } else {
            return true;
        }
    }
    return false;
}

/* bsearch comparator: both fold structs start with their uint32_t cp. */
static int cmp_cp(const void *key, const void *elem)
{
    uint32_t a = *(const uint32_t *)key;
    uint32_t b = *(const uint32_t *)elem;
    return a < b ? -1 : a > b;
}

bool tokenizer_fold_cp(uint32_t cp, uint32_t *to, const char **many)
{
    const struct tokenizer_fold1 *f1 =
        bsearch(&cp, tokenizer_folds1, tokenizer_folds1_len,
                sizeof(tokenizer_folds1[0]), cmp_cp);
    if (f1 != NULL) {
        *to = f1->to;
        return true;
    }
    const struct tokenizer_fold *f =
        bsearch(&cp, tokenizer_folds, tokenizer_folds_len,
                sizeof(tokenizer_folds[0]), cmp_cp);
    if (f != NULL) {
        *many = f->utf8;
        return true;
    }
    return false;
}

#define IN(table, cp) tokenizer_in_ranges(table, table##_len, (cp))

bool tokenizer_utf8_next(const unsigned char *s, size_t len, size_t *i,
                         uint32_t *cp)
{
    unsigned c = s[*i];
    size_t extra = c < 0x80 ? 0 : c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
    if ((c >= 0x80 && c < 0xC2) || c > 0xF4 || *i + extra >= len) {
        return false;
    }
    uint32_t v = extra == 0 ? c : c & (0x3F >> extra);
    for (size_t k = 1; k <= extra; k++) {
        if ((s[*i + k] & 0xC0) != 0x80) {
            return false;
        }
        v = (v << 6) | (s[*i + k] & 0x3F);
    }
    static const uint32_t min[4] = {0, 0x80, 0x800, 0x10000};
    if (v < min[extra] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        return false;
    }
    *i += extra + 1;
    *cp = v;
    return true;
}

size_t tokenizer_utf8_put(uint32_t cp, unsigned char *p)
{
    if (cp < 0x80) {
        p[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        p[0] = (unsigned char)(0xC0 | (cp >> 6));
        p[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        p[0] = (unsigned char)(0xE0 | (cp >> 12));
        p[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        p[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    p[0] = (unsigned char)(0xF0 | (cp >> 18));
    p[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    p[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    p[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- words ---------------------------------------------------------- */

static bool full(const struct word_state *w)
{
    return w->nids >= w->max_word_ids;
}

/* Cuts the gathered word into WordPiece ids (all or [UNK]) and resets. */
static void flush_word(struct word_state *w)
{
    if (w->nchars == 0) {
        return;
    }
    char *word = w->bytes + 2;
    size_t len = w->len;
    int32_t pieces[WORD_MAX_CHARS];
    size_t npieces = 0;
    bool unk = w->nchars > WORD_MAX_CHARS;
    size_t start = 0;
    while (!unk && start < len) {
        size_t end = len;
        int32_t id = -1;
        while (end > start) {
            char *s = word + start;
            size_t slen = end - start;
            if (start > 0) {
                s -= 2; /* overwrite the previous bytes with "##" */
                char saved[2] = {s[0], s[1]};
                s[0] = '#';
                s[1] = '#';
                id = lookup(w->t, s, slen + 2);
                s[0] = saved[0];
                s[1] = saved[1];
            } else {
                id = lookup(w->t, s, slen);
            }
            if (id >= 0) {
                break;
            }
            do {
                end--;
            } while (end > start && ((unsigned char)word[end] & 0xC0) == 0x80);
        }
        if (id < 0) {
            unk = true;
            break;
        }
        pieces[npieces++] = id;
        start = end;
    }
    if (unk) {
        pieces[0] = w->t->unk_id;
        npieces = 1;
    }
    for (size_t i = 0; i < npieces && !full(w); i++) {
        w->ids[w->nids++] = pieces[i];
    }
    w->len = 0;
    w->nchars = 0;
}

/* Appends one normalised code point to the word (bytes past the cap only
 * count: such a word is [UNK] anyway). */
static void push_cp(struct word_state *w, uint32_t cp)
{
    w->nchars++;
    if (w->nchars > WORD_MAX_CHARS) {
        return;
    }
    unsigned char *p = (unsigned char *)w->bytes + 2 + w->len;
    w->len += tokenizer_utf8_put(cp, p);
}

/* Feeds one normalised code point (never a space) to the splitter:
 * punctuation, and what isolate asks for (CJK), is a word of its own. */
static void feed(struct word_state *w, uint32_t cp, bool isolate)
{
    if (isolate || IN(tokenizer_punct, cp)) {
        flush_word(w);
        push_cp(w, cp);
        flush_word(w);
    } else {
        push_cp(w, cp);
    }
}

/* Cleans and folds one input code point, feeding what it becomes. */
static void normalise(struct word_state *w, uint32_t cp)
{
    if (cp >= 'A' && cp <= 'Z') {
        feed(w, cp + ('a' - 'A'), false);
        return;
    }
    if (IN(tokenizer_dropped, cp)) {
        return;
    }
    if (IN(tokenizer_space, cp)) {
        flush_word(w);
        return;
    }
    if (cp >= 0xAC00 && cp <= 0xD7A3) { /* Hangul: NFD is arithmetic */
        uint32_t si = cp - 0xAC00;
        feed(w, 0x1100 + si / 588, false);
        feed(w, 0x1161 + (si % 588) / 28, false);
        if (si % 28 != 0) {
            feed(w, 0x11A7 + si % 28, false);
        }
        return;
    }
    bool cjk = IN(tokenizer_chinese, cp);
    uint32_t to = cp;
    const char *many = NULL;
    tokenizer_fold_cp(cp, &to, &many);
    if (many == NULL) {
        feed(w, to, cjk);
        return;
    }
    size_t flen = strlen(many);
    size_t i = 0;
    uint32_t c = 0;
    while (i < flen
           && tokenizer_utf8_next((const unsigned char *)many, flen, &i,
                                  &c)) {
        feed(w, c, cjk);
    }
}

enum rl_err encoder_tokenizer_encode(const struct encoder_tokenizer *t,
                                     const char *text, size_t len,
                                     int32_t *ids, size_t max_ids,
                                     size_t *nids)
{
    if (max_ids < 2) {
        return RL_E_INTERNAL;
    }
    struct word_state state;
    struct word_state *w = &state;
    w->t = t;
    w->len = 0;
    w->nchars = 0;
    w->ids = ids;
    w->nids = 0;
    w->max_word_ids = max_ids - 1;
    ids[w->nids++] = t->cls_id;
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    enum rl_err result = RL_OK;
    while (i < len && !full(w)) {
        uint32_t cp = 0;
        if (!tokenizer_utf8_next(s, len, &i, &cp)) {
            result = RL_E_INVALID_UTF8;
            goto out;
        }
        normalise(w, cp);
    }
    if (!full(w)) {
        flush_word(w);
    }
    ids[w->nids++] = t->sep_id;
    *nids = w->nids;
out:
    return result;
}
