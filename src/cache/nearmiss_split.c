/*
 * nearmiss_split.c - cuts a prompt into the near-miss guard's words:
 * UTF-8 decoded, folded (lower case, no accents) with the encoder's
 * Unicode tables (a run of CJK ideographs is one word: the guard compares
 * words, not WordPiece pieces); "it's", "3.5", "node.js",
 * "wi-fi", "1,000", "std::vector", "c++", "-r" kept whole; numbers put in
 * a normal form ("1,000.50" is 1000.5, "three" is 3, "7am" is 7 and am);
 * contractions undone ("don't" is do and n't); each word stemmed and
 * looked up in the lexicon. Read nm_split() first.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/nearmiss.h"
#include "cache/tokenizer_table.h"

/* What one code point is to the word splitter. */
enum cp_kind { CP_SPACE, CP_DROP, CP_LETTER, CP_DIGIT, CP_PUNCT };

static enum cp_kind kind_of(uint32_t cp)
{
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')
            || cp == '_') {
            return CP_LETTER;
        }
        if (cp >= '0' && cp <= '9') {
            return CP_DIGIT;
        }
        return cp <= ' ' || cp == 0x7F ? CP_SPACE : CP_PUNCT;
    }
    if (tokenizer_in_ranges(tokenizer_space, tokenizer_space_len, cp)) {
        return CP_SPACE;
    }
    if (tokenizer_in_ranges(tokenizer_dropped, tokenizer_dropped_len, cp)) {
        return CP_DROP;
    }
    if (cp == 0x20AC || cp == 0xA3 || cp == 0xA5 || cp == 0x20B9) {
        return CP_PUNCT; /* euro, pound, yen, rupee: currency words */
    }
    if (tokenizer_in_ranges(tokenizer_punct, tokenizer_punct_len, cp)) {
        return CP_PUNCT;
    }
    return CP_LETTER;
}

/* Whether cp is written in capitals (ASCII, Latin-1, Greek, Cyrillic). */
static bool upper(uint32_t cp)
{
    return (cp >= 'A' && cp <= 'Z') || (cp >= 0xC0 && cp <= 0xDE
                                        && cp != 0xD7)
           || (cp >= 0x391 && cp <= 0x3A9) || (cp >= 0x400 && cp <= 0x42F);
}

/* A cursor over the prompt's code points. */
struct cursor {
    const unsigned char *s;
    size_t len;
    size_t i; /* byte offset of the next code point */
};

/* The code point at byte offset i (U+FFFD for a malformed byte) and the
 * offset after it. */
static uint32_t cp_at(const struct cursor *c, size_t i, size_t *next)
{
    uint32_t cp = 0xFFFD;
    size_t j = i;
    if (i >= c->len) {
        *next = i;
        return 0;
    }
    if (c->s[i] < 0x80) {
        *next = i + 1;
        return c->s[i];
    }
    if (!tokenizer_utf8_next(c->s, c->len, &j, &cp)) {
        cp = 0xFFFD;
        j = i + 1;
    }
    *next = j;
    return cp;
}

static bool alnum_kind(enum cp_kind k)
{
    return k == CP_LETTER || k == CP_DIGIT;
}

/* Appends bytes to t->buf; returns their offset (t->overflow if full). */
static uint32_t put_bytes(struct nm_text *t, const char *p, size_t n)
{
    uint32_t off = (uint32_t)t->len;
    if (t->len + n > NM_MAX_BYTES) {
        t->overflow = true;
        return off;
    }
    memmove(t->buf + t->len, p, n);
    t->len += n;
    return off;
}

/* Appends cp folded (lower case, no accents) to t->buf; false if full. */
static bool put_folded(struct nm_text *t, uint32_t cp)
{
    uint32_t to = cp;
    const char *many = NULL;
    unsigned char one[4];
    size_t n = 0;
    if (cp >= 'A' && cp <= 'Z') {
        to = cp + ('a' - 'A');
    } else if (cp >= 0x80) {
        tokenizer_fold_cp(cp, &to, &many);
    }
    if (many == NULL) {
        n = tokenizer_utf8_put(to, one);
        many = (const char *)one;
    } else {
        n = strlen(many);
    }
    put_bytes(t, many, n);
    return !t->overflow;
}

/* Whether the three code points after i are digits and the fourth is
 * not (a thousands separator: "1,000"). */
static bool thousands_at(const struct cursor *c, size_t i)
{
    size_t j = i;
    for (int k = 0; k < 3; k++) {
        size_t next;
        if (kind_of(cp_at(c, j, &next)) != CP_DIGIT || next == j) {
            return false;
        }
        j = next;
    }
    size_t next;
    return j >= c->len || kind_of(cp_at(c, j, &next)) != CP_DIGIT;
}

/* Whether the punctuation cp at i, between prev and the code point at
 * next, joins the two halves into one word: it's, 3.5, node.js, wi-fi,
 * 1,000, std::vector. *skip is set to the bytes it takes. */
static bool joins(const struct cursor *c, uint32_t cp, enum cp_kind prev,
                  size_t next, size_t *skip)
{
    size_t after;
    uint32_t ncp = cp_at(c, next, &after);
    enum cp_kind nk = kind_of(ncp);
    *skip = next;
    if ((cp == '\'' || cp == 0x2019) && prev == CP_LETTER) {
        return nk == CP_LETTER;
    }
    if (cp == '.' || cp == '-') {
        return alnum_kind(prev) && alnum_kind(nk)
               && !(cp == '-' && prev == CP_DIGIT && nk == CP_DIGIT);
    }
    if (cp == ',') {
        return prev == CP_DIGIT && thousands_at(c, next);
    }
    if (cp == ':' && ncp == ':' && alnum_kind(prev)) {
        size_t after2;
        *skip = after;
        return alnum_kind(kind_of(cp_at(c, after, &after2)));
    }
    return false;
}

/* How a word was written. */
struct shape {
    unsigned flags;  /* NM_W_CAP, NM_W_ACRONYM, NM_W_IDENT */
    size_t apos_src; /* offset of its last apostrophe, or 0 */
    size_t nletters; /* letters */
    size_t nupper;   /* letters in capitals */
};

/* Folds the word src[start, end) into t->buf and describes its shape. */
static void fold_word(struct nm_text *t, const struct cursor *c, size_t start,
                      size_t end, struct shape *sh)
{
    bool prev_lower = false;
    bool digits = false;
    size_t i = start;
    while (i < end) {
        size_t next;
        uint32_t cp = cp_at(c, i, &next);
        enum cp_kind k = kind_of(cp);
        bool interior = i > start && next < end;
        if (cp == '\'' || cp == 0x2019) {
            sh->apos_src = i;
            cp = '\'';
        } else if (cp == '-' && interior && sh->nletters + digits > 0) {
            i = next; /* wi-fi is wifi */
            continue;
        } else if (k == CP_LETTER && cp != '_') {
            sh->nletters++;
            sh->nupper += upper(cp);
            if (upper(cp) && prev_lower) {
                sh->flags |= NM_W_IDENT; /* camelCase */
            }
            prev_lower = !upper(cp);
        } else if (k == CP_DIGIT) {
            digits = true;
        } else if (k != CP_DROP) {
            sh->flags |= NM_W_IDENT; /* _ . :: # ++ or a leading - */
        }
        if (k != CP_DROP && !put_folded(t, cp)) {
            return;
        }
        i = next;
    }
    if (digits && sh->nletters > 0) {
        sh->flags |= NM_W_IDENT;
    }
    uint32_t first = cp_at(c, start, &i);
    if (upper(first)) {
        sh->flags |= NM_W_CAP;
    }
    if (sh->nletters >= 2 && sh->nupper == sh->nletters) {
        sh->flags |= NM_W_ACRONYM;
    }
}

/* Where the word starting at start ends: letters, digits and the
 * joiners between them, and a trailing ++ or # (c++, c#). */
static size_t word_end(const struct cursor *c, size_t start)
{
    size_t i = start;
    enum cp_kind prev = CP_SPACE;
    while (i < c->len) {
        size_t next;
        uint32_t cp = cp_at(c, i, &next);
        enum cp_kind k = kind_of(cp);
        size_t skip;
        if (alnum_kind(k) || k == CP_DROP) {
            prev = k == CP_DROP ? prev : k;
            i = next;
        } else if (cp == '-' && i == start) {
            i = next; /* -r, --force, -5 */
            while (i < c->len && c->s[i] == '-') {
                i++;
            }
        } else if (k == CP_PUNCT && joins(c, cp, prev, next, &skip)) {
            i = skip;
        } else if (prev == CP_LETTER && cp == '+' && next < c->len
                   && c->s[next] == '+') {
            return next + 1;
        } else if (prev == CP_LETTER && cp == '#') {
            return next;
        } else {
            break;
        }
    }
    return i;
}


/* Adds one word: src[s, s+slen) as written, fold[0, flen) in t->buf. */
static void add_word(struct nm_text *t, size_t s, size_t slen, uint32_t fold,
                     size_t flen, unsigned flags)
{
    if (t->nw >= CACHE_NEARMISS_MAX_WORDS || t->overflow) {
        t->overflow = true;
        return;
    }
    struct nm_word *w = &t->w[t->nw];
    *w = (struct nm_word){.src = (uint32_t)s, .src_len = (uint32_t)slen,
                       .fold = fold, .fold_len = (uint32_t)flen,
                       .canon = fold, .canon_len = (uint32_t)flen,
                       .flags = flags};
    const char *f = t->buf + fold;
    if (flags & NM_W_IDENT) {
        w->e = nm_lookup(nm_hash(f, flen)); /* c++, c#, objective-c */
        w->e = w->e != NULL && w->e->cls == NM_LANGUAGE ? w->e : NULL;
    } else if (!(flags & NM_W_NUMBER)) {
        char st[64];
        size_t n = flen < sizeof(st) ? nm_stem(f, flen, st) : 0;
        w->e = nm_lookup(nm_hash(f, flen));
        if (n > 0) {
            const struct nm_entry *by_stem = nm_lookup(nm_hash(st, n));
            w->e = w->e != NULL && w->e->cls != NM_NONE ? w->e : by_stem;
            w->canon = put_bytes(t, st, n);
            w->canon_len = (uint32_t)n;
        }
    }
    w->key = nm_hash(t->buf + w->canon, w->canon_len);
    w->syn = w->key;
    for (int hop = 0; hop < 3; hop++) { /* holiday -> vacation -> travel */
        const struct nm_entry *e = nm_lookup(w->syn);
        if (e == NULL || e->syn == 0) {
            break;
        }
        w->syn = e->syn;
    }
    if (w->e != NULL) {
        w->flags |= w->e->cls == NM_STOP      ? NM_W_STOP
                    : w->e->cls == NM_NEG     ? NM_W_NEG
                    : w->e->cls == NM_NUMWORD ? NM_W_NUMBER | NM_W_NUMWORD
                                              : 0;
    }
    if (w->flags & NM_W_NUMWORD) {
        char v[24];
        int n = snprintf(v, sizeof(v), "%ld", w->e->value);
        w->canon = put_bytes(t, v, (size_t)n);
        w->canon_len = (uint32_t)n;
        w->key = nm_hash(v, (size_t)n);
        w->syn = w->key;
    }
    t->nw++;
}

/* Writes the normal form of the number f[0, len) ("-0012.50" ->
 * "-12.5", "1,000" -> "1000") to t->buf; returns its offset, *out_len. */
static uint32_t put_number(struct nm_text *t, const char *f, size_t len,
                           size_t *out_len)
{
    char v[64];
    size_t n = 0;
    size_t i = 0;
    if (i < len && f[i] == '-') {
        v[n++] = f[i++];
    }
    while (i + 1 < len && f[i] == '0' && f[i + 1] != '.') {
        i++;
    }
    size_t dot = 0;
    for (; i < len && n < sizeof(v); i++) {
        if (f[i] == '.') {
            dot = n + 1;
        }
        if (f[i] != ',') {
            v[n++] = f[i];
        }
    }
    while (dot > 0 && n > dot && v[n - 1] == '0') {
        n--;
    }
    if (dot > 0 && n == dot) {
        n--;
    }
    *out_len = n;
    return put_bytes(t, v, n);
}

/* A word that starts with a digit (or -digit): the number, then its
 * suffix as a word of its own (7am, 5km) unless an ordinal (1st, 5th).
 * false when it is not a plain number (1.2.3, 3d2): an identifier. */
static bool add_number(struct nm_text *t, size_t s, uint32_t fold, size_t flen,
                       unsigned flags)
{
    const char *f = t->buf + fold;
    size_t i = f[0] == '-' ? 1 : 0;
    size_t dots = 0;
    while (i < flen && ((f[i] >= '0' && f[i] <= '9') || f[i] == ','
                        || f[i] == '.')) {
        dots += f[i] == '.';
        i++;
    }
    size_t num = i;
    while (i < flen && f[i] >= 'a' && f[i] <= 'z') {
        i++;
    }
    if (i < flen || dots > 1 || f[num - 1] == '.') {
        return false;
    }
    size_t suffix = flen - num;
    size_t nlen;
    uint32_t canon = put_number(t, f, num, &nlen);
    add_word(t, s, num, canon, nlen, NM_W_NUMBER | (flags & NM_W_START));
    f = t->buf + fold; /* unchanged: buf is not moved, only appended */
    bool ordinal = suffix == 2
                   && (memcmp(f + num, "st", 2) == 0
                       || memcmp(f + num, "nd", 2) == 0
                       || memcmp(f + num, "rd", 2) == 0
                       || memcmp(f + num, "th", 2) == 0);
    if (suffix > 0 && !ordinal) {
        add_word(t, s + num, suffix, fold + (uint32_t)num, suffix, 0);
    }
    return true;
}

/* don't -> do + n't; it's, France's, we're -> it, France, we; O'Hare ->
 * ohare. q is the apostrophe's offset in the fold, aq in the source. */
static void add_contraction(struct nm_text *t, size_t s, size_t slen,
                            uint32_t fold, size_t flen, size_t q, size_t aq,
                            unsigned flags)
{
    const char *f = t->buf + fold;
    const char *suf = f + q + 1;
    size_t suf_len = flen - q - 1;
    if (suf_len == 1 && suf[0] == 't' && q >= 2 && f[q - 1] == 'n') {
        static const char *const fix[][2] = {
            {"ca", "can"}, {"wo", "will"}, {"sha", "shall"}, {"ai", "is"}};
        uint32_t base = fold;
        size_t blen = q - 1;
        for (size_t i = 0; i < sizeof(fix) / sizeof(fix[0]); i++) {
            if (blen == strlen(fix[i][0]) && memcmp(f, fix[i][0], blen) == 0) {
                blen = strlen(fix[i][1]);
                base = put_bytes(t, fix[i][1], blen);
            }
        }
        add_word(t, s, slen, base, blen, flags);
        uint32_t neg = put_bytes(t, "n't", 3);
        add_word(t, s, slen, neg, 3, 0);
        return;
    }
    static const char *const drop[] = {"s", "re", "ll", "ve", "d", "m"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
        if (suf_len == strlen(drop[i]) && memcmp(suf, drop[i], suf_len) == 0) {
            add_word(t, s, aq - s, fold, q, flags);
            return;
        }
    }
    memmove(t->buf + fold + q, t->buf + fold + q + 1, suf_len);
    add_word(t, s, slen, fold, flen - 1, flags);
}

/* Cuts the word src[start, end) out of the prompt. */
static void add_token(struct nm_text *t, const struct cursor *c, size_t start,
                      size_t end, bool sentence_start)
{
    struct shape sh = {0};
    uint32_t fold = (uint32_t)t->len;
    fold_word(t, c, start, end, &sh);
    size_t flen = t->len - fold;
    if (t->overflow || flen == 0) {
        return;
    }
    unsigned flags = sh.flags | (sentence_start ? NM_W_START : 0);
    const char *f = t->buf + fold;
    bool digit = (f[0] >= '0' && f[0] <= '9')
                 || (f[0] == '-' && flen > 1 && f[1] >= '0' && f[1] <= '9');
    if (digit && add_number(t, start, fold, flen, flags)) {
        return;
    }
    const char *q = memchr(f, '\'', flen);
    if (q != NULL && !(flags & NM_W_IDENT)) {
        const char *last = q;
        while ((q = memchr(q + 1, '\'', flen - (size_t)(q + 1 - f))) != NULL) {
            last = q;
        }
        add_contraction(t, start, end - start, fold, flen,
                        (size_t)(last - f), sh.apos_src, flags);
        return;
    }
    add_word(t, start, end - start, fold, flen, flags);
}

/* The word a symbol stands for ($ -> usd, % -> percent), or NULL. */
static const char *symbol_word(uint32_t cp)
{
    switch (cp) {
    case '$': return "usd";
    case 0x20AC: return "eur";
    case 0xA3: return "gbp";
    case 0xA5: return "jpy";
    case 0x20B9: return "inr";
    case '%': return "percent";
    case '&': return "and";
    default: return NULL;
    }
}

/* Merges runs of number words: "twenty five" is 25, "two hundred" 200. */
static void merge_number_words(struct nm_text *t)
{
    for (size_t i = 0; i < t->nw; i++) {
        if (!(t->w[i].flags & NM_W_NUMWORD)) {
            continue;
        }
        long total = 0;
        long part = 0;
        size_t j = i;
        for (; j < t->nw && (t->w[j].flags & NM_W_NUMWORD); j++) {
            long v = t->w[j].e->value;
            if (v >= 1000) {
                total += (part ? part : 1) * v;
                part = 0;
            } else if (v == 100) {
                part = (part ? part : 1) * 100;
            } else {
                part += v;
            }
            if (j > i) {
                t->w[j].flags |= NM_W_SKIP;
            }
        }
        if (j > i + 1) {
            char v[24];
            int n = snprintf(v, sizeof(v), "%ld", total + part);
            struct nm_word *w = &t->w[i];
            w->canon = put_bytes(t, v, (size_t)n);
            w->canon_len = (uint32_t)n;
            w->key = nm_hash(v, (size_t)n);
            w->syn = w->key;
            w->src_len = t->w[j - 1].src + t->w[j - 1].src_len - w->src;
        }
        i = j - 1;
    }
}

/* Title Case or ALL CAPS prompts: capitals name nothing there. */
static void drop_noise_capitals(struct nm_text *t)
{
    size_t n = 0;
    size_t ncap = 0;
    for (size_t i = 0; i < t->nw; i++) {
        unsigned f = t->w[i].flags;
        if (!(f & (NM_W_START | NM_W_NUMBER | NM_W_SKIP))) {
            n++;
            ncap += (f & (NM_W_CAP | NM_W_ACRONYM)) != 0;
        }
    }
    if (ncap >= 3 && ncap * 2 > n) {
        for (size_t i = 0; i < t->nw; i++) {
            t->w[i].flags &= ~(unsigned)(NM_W_CAP | NM_W_ACRONYM);
        }
    }
}

void nm_split(struct nm_text *t, struct str src)
{
    t->src = src.p;
    t->src_len = src.len;
    t->len = 0;
    t->nw = 0;
    t->overflow = false;
    struct cursor c = {(const unsigned char *)src.p, src.len, 0};
    bool start = true;
    size_t i = 0;
    while (i < c.len && !t->overflow) {
        size_t next;
        uint32_t cp = cp_at(&c, i, &next);
        enum cp_kind k = kind_of(cp);
        size_t after;
        size_t run = next;
        while (cp == '-' && run < c.len && c.s[run] == '-') {
            run++; /* --force */
        }
        bool dash = cp == '-' && (i == 0 || c.s[i - 1] <= ' ')
                    && alnum_kind(kind_of(cp_at(&c, run, &after)));
        if (alnum_kind(k) || dash) {
            size_t end = word_end(&c, i);
            add_token(t, &c, i, end, start);
            start = false;
            i = end > i ? end : next;
            continue;
        }
        const char *sym = k == CP_PUNCT ? symbol_word(cp) : NULL;
        if (sym != NULL) {
            uint32_t f = put_bytes(t, sym, strlen(sym));
            add_word(t, i, next - i, f, strlen(sym), 0);
            start = false;
        } else if (cp == '.' || cp == '?' || cp == '!' || cp == ';'
                   || cp == ':' || cp == '\n' || cp == 0x3002) {
            start = true;
        }
        i = next;
    }
    merge_number_words(t);
    drop_noise_capitals(t);
}

