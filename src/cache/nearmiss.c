/*
 * nearmiss.c - the near-miss guard: do two prompts whose embeddings are
 * close still ask different things?
 *
 * A sentence encoder puts "turn on dark mode" and "turn off dark mode" at
 * a cosine of 0.95, closer than many true paraphrases, so no threshold
 * separates them. The guard compares the words instead. Each prompt is cut
 * into words (UTF-8, folded to lower case without accents with the
 * encoder's Unicode tables; a run of CJK ideographs is one word), each is
 * classified (number, negation, function word, listed class, capitalised
 * name, code identifier) and stemmed lightly; then, in order:
 *
 *   1. numbers (digits or number words) must be the same multiset;
 *   2. negations must be as many (not, never, n't, without, ...);
 *   3. no word of one may face its opposite in the other (on/off, max/min,
 *      before/after, ..., and the un-/in-/im-/il-/ir-/dis-/non- forms);
 *   4. shared words must not be reversed around a relation ("USD to EUR"
 *      against "EUR to USD"; "and", "or", "vs" keep the meaning);
 *   5. a content word replaced by another must not be a name, identifier,
 *      language, unit, currency, date, place or relative, nor a close
 *      substitution (at most two words each way with the rest shared);
 *      a name or identifier present on one side only also differs.
 *
 * Heavier rewordings pass: the embedding threshold judges those. Word
 * lists are in nearmiss_words.c; docs/cache.md ("Near misses") has the
 * figures; nearmiss_split.c cuts prompts into words and nearmiss_lex.c
 * holds the lexicon. Read cache_nearmiss_differs() first.
 */
#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/nearmiss.h"
#include "util/alloc.h"

#define MAX_SWAP 2      /* one word replaced by at most this many (or the
                           other way round) is a near miss */
#define QUOTE_MAX 40    /* bytes of a word quoted in a reason */

/* Per-thread scratch (two prompts, about 170 KB): allocated at a
 * thread's first call and freed when the thread ends, so the guard runs
 * on any thread without allocating per call, and threads that never call
 * it pay nothing (a static _Thread_local block of that size would be
 * zeroed for every thread the process creates). */
static _Thread_local struct nm_text *scratch;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void make_scratch_key(void)
{
    int rc = pthread_key_create(&scratch_key, free);
    assert(rc == 0);
    (void)rc;
}

static struct nm_text *thread_scratch(void)
{
    if (scratch == NULL) {
        pthread_once(&scratch_once, make_scratch_key);
        scratch = rl_calloc(2, sizeof(*scratch));
        pthread_setspecific(scratch_key, scratch);
    }
    return scratch;
}

/* ---------------------------------------------------------------------
 * Word sets
 * ------------------------------------------------------------------- */

static struct nm_slot *set_find(struct nm_slot *set, uint32_t gen, uint64_t key,
                                bool add)
{
    size_t i = (size_t)key & (NM_SET_SLOTS - 1);
    while (set[i].gen == gen && set[i].key != key) {
        i = (i + 1) & (NM_SET_SLOTS - 1);
    }
    if (set[i].gen != gen) {
        if (!add) {
            return NULL;
        }
        set[i] = (struct nm_slot){.key = key, .gen = gen};
    }
    return &set[i];
}

/* How many words of t have key (content: synonym key of content words). */
static uint32_t count(struct nm_text *t, bool content, uint64_t key)
{
    struct nm_slot *s = set_find(content ? t->content : t->all, t->gen, key,
                                  false);
    return s != NULL ? s->count : 0;
}

static bool is_content(const struct nm_word *w)
{
    return !(w->flags & (NM_W_STOP | NM_W_NEG | NM_W_NUMBER | NM_W_SKIP));
}

/* Fills t's word sets; a new generation empties the previous call's. */
static void index_words(struct nm_text *t)
{
    t->gen++;
    if (t->gen == 0) { /* wrapped: clear for real once */
        memset(t->all, 0, sizeof(t->all));
        memset(t->content, 0, sizeof(t->content));
        t->gen = 1;
    }
    for (size_t i = 0; i < t->nw; i++) {
        const struct nm_word *w = &t->w[i];
        if (w->flags & NM_W_SKIP) {
            continue;
        }
        struct nm_slot *s = set_find(t->all, t->gen, w->key, true);
        if (s->count++ == 0) {
            s->first = (uint32_t)i;
        }
        if (is_content(w)) {
            s = set_find(t->content, t->gen, w->syn, true);
            if (s->count++ == 0) {
                s->first = (uint32_t)i;
            }
        }
    }
}

/* ---------------------------------------------------------------------
 * Reasons
 * ------------------------------------------------------------------- */

/* Copies word w of t as written, at most QUOTE_MAX bytes, never cutting a
 * UTF-8 sequence, into out (room for QUOTE_MAX + 1). */
static const char *quote(const struct nm_text *t, const struct nm_word *w,
                         char *out)
{
    size_t n = w->src_len;
    const struct nm_word *last = w;
    while ((w->flags & NM_W_CAP) && last + 1 < t->w + t->nw
           && (last[1].flags & NM_W_CAP) && !(last[1].flags & NM_W_START)
           && last[1].src - (last->src + last->src_len) == 1
           && t->src[last->src + last->src_len] == ' ') {
        last++; /* a name of several words: Barack Obama */
    }
    n = last->src + last->src_len - w->src;
    if (n > QUOTE_MAX) {
        n = QUOTE_MAX;
        while (n > 0 && ((unsigned char)t->src[w->src + n] & 0xC0) == 0x80) {
            n--;
        }
    }
    memcpy(out, t->src + w->src, n);
    out[n] = '\0';
    return out;
}

/* Cuts a UTF-8 sequence that snprintf truncated off the end of s. */
static void utf8_trim(char *s)
{
    size_t len = strlen(s);
    size_t lead = len;
    while (lead > 0 && ((unsigned char)s[lead - 1] & 0xC0) == 0x80) {
        lead--;
    }
    if (lead == 0) {
        return;
    }
    unsigned char c = (unsigned char)s[lead - 1];
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (len - (lead - 1) < need) {
        s[lead - 1] = '\0';
    }
}

static const char *side(bool stored)
{
    return stored ? "stored" : "asked";
}

/* ---------------------------------------------------------------------
 * The checks, each: a is the stored prompt, b the asked one; true (with
 * the reason written) when they differ in what the check looks at.
 * ------------------------------------------------------------------- */

/* The first word of x with flag whose key x has more often than y. */
static const struct nm_word *excess(struct nm_text *x, struct nm_text *y,
                                    unsigned flag)
{
    for (size_t i = 0; i < x->nw; i++) {
        const struct nm_word *w = &x->w[i];
        if ((w->flags & flag) && !(w->flags & NM_W_SKIP)
            && count(x, false, w->key) > count(y, false, w->key)) {
            return w;
        }
    }
    return NULL;
}

/* 1. The same numbers, as many times each. */
static bool numbers_differ(struct nm_text *a, struct nm_text *b, char *reason,
                           size_t n)
{
    const struct nm_word *wa = excess(a, b, NM_W_NUMBER);
    const struct nm_word *wb = excess(b, a, NM_W_NUMBER);
    char qa[QUOTE_MAX + 1];
    char qb[QUOTE_MAX + 1];
    if (wa != NULL && wb != NULL) {
        snprintf(reason, n, "the numbers differ: %s vs %s", quote(a, wa, qa),
                 quote(b, wb, qb));
    } else if (wa != NULL || wb != NULL) {
        snprintf(reason, n, "the number %s is only in the %s prompt",
                 wa ? quote(a, wa, qa) : quote(b, wb, qb), side(wa != NULL));
    }
    return wa != NULL || wb != NULL;
}

static size_t negations(const struct nm_text *t)
{
    size_t k = 0;
    for (size_t i = 0; i < t->nw; i++) {
        k += (t->w[i].flags & NM_W_NEG) != 0;
    }
    return k;
}

/* 2. As many negations. */
static bool negation_differs(struct nm_text *a, struct nm_text *b,
                             char *reason, size_t n)
{
    size_t na = negations(a);
    size_t nb = negations(b);
    if (na == nb) {
        return false;
    }
    struct nm_text *more = na > nb ? a : b;
    struct nm_text *less = na > nb ? b : a;
    const struct nm_word *w = excess(more, less, NM_W_NEG);
    for (size_t i = 0; w == NULL && i < more->nw; i++) {
        w = (more->w[i].flags & NM_W_NEG) ? &more->w[i] : NULL;
    }
    char q[QUOTE_MAX + 1];
    snprintf(reason, n, "negation: '%s' only in the %s prompt",
             quote(more, w, q), side(more == a));
    return true;
}

/* Whether y has more words with key than x ("turn on Bluetooth on my
 * laptop" has one "on" more than "turn off Bluetooth on my laptop"). */
static bool more_in(struct nm_text *y, struct nm_text *x, uint64_t key)
{
    return count(y, false, key) > count(x, false, key);
}

/* The word of y whose key y has more often than x and is an opposite of
 * w (a word x has more often than y): a listed opposite, or w with a
 * negating prefix (safe and unsafe, legal and illegal, connect and
 * disconnect). */
static const struct nm_word *opposite_of(struct nm_text *x, struct nm_text *y,
                                         const struct nm_word *w)
{
    const struct nm_entry *e = nm_lookup(w->key);
    for (unsigned k = 0; e != NULL && k < e->nopp; k++) {
        if (more_in(y, x, e->opp[k])) {
            const struct nm_word *o =
                &y->w[set_find(y->all, y->gen, e->opp[k], false)->first];
            if (!e->question || (w->flags & o->flags & NM_W_START)) {
                return o;
            }
        }
    }
    static const char *const prefixes[] = {"un", "in", "im", "il", "ir",
                                           "dis", "non"};
    if (!is_content(w) || w->canon_len < 3 || w->canon_len > 40) {
        return NULL;
    }
    for (size_t k = 0; k < sizeof(prefixes) / sizeof(prefixes[0]); k++) {
        char p[48];
        size_t pl = strlen(prefixes[k]);
        memcpy(p, prefixes[k], pl);
        memcpy(p + pl, x->buf + w->canon, w->canon_len);
        uint64_t key = nm_hash(p, pl + w->canon_len);
        if (more_in(y, x, key)) {
            return &y->w[set_find(y->all, y->gen, key, false)->first];
        }
    }
    return NULL;
}

/* 3. No word facing its opposite. */
static bool opposites_differ(struct nm_text *a, struct nm_text *b,
                             char *reason, size_t n)
{
    for (int dir = 0; dir < 2; dir++) {
        struct nm_text *x = dir == 0 ? a : b;
        struct nm_text *y = dir == 0 ? b : a;
        for (size_t i = 0; i < x->nw; i++) {
            const struct nm_word *w = &x->w[i];
            if ((w->flags & NM_W_SKIP) || !more_in(x, y, w->key)) {
                continue;
            }
            const struct nm_word *o = opposite_of(x, y, w);
            if (o != NULL) {
                char qa[QUOTE_MAX + 1];
                char qb[QUOTE_MAX + 1];
                snprintf(reason, n, "opposite words: '%s' vs '%s'",
                         dir == 0 ? quote(x, w, qa) : quote(y, o, qa),
                         dir == 0 ? quote(y, o, qb) : quote(x, w, qb));
                return true;
            }
        }
    }
    return false;
}

#define ORDER_MAX 32 /* longest differing stretch searched for a swap */

/* The words of x whose key y has too, in order (indices into x->w). */
static size_t shared_words(struct nm_text *x, struct nm_text *y, uint32_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < x->nw; i++) {
        const struct nm_word *w = &x->w[i];
        if (!(w->flags & (NM_W_SKIP | NM_W_NEG))
            && count(y, false, w->key) > 0) {
            out[k++] = (uint32_t)i;
        }
    }
    return k;
}

static bool same_keys(const struct nm_text *x, const uint32_t *p,
                      const struct nm_text *y, const uint32_t *q, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (x->w[p[i]].key != y->w[q[i]].key) {
            return false;
        }
    }
    return true;
}

/* The first content word of x among p[0, len), or NULL. */
static const struct nm_word *content_in(const struct nm_text *x,
                                        const uint32_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (is_content(&x->w[p[i]]) || (x->w[p[i]].flags & NM_W_NUMBER)) {
            return &x->w[p[i]];
        }
    }
    return NULL;
}

/* Whether a relation p[0, len) is one whose sides may swap ("and"). */
static bool symmetric(const struct nm_text *x, const uint32_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        const struct nm_entry *e = nm_lookup(x->w[p[i]].key);
        if (e == NULL || !e->symmetric) {
            return false;
        }
    }
    return true;
}

/* 4. Shared words not swapped around a relation: where the two differ,
 * a is X R Y and b is Y R X ("USD to EUR", "Alice older than Bob"). */
static bool order_differs(struct nm_text *a, struct nm_text *b, char *reason,
                          size_t n)
{
    uint32_t sa[CACHE_NEARMISS_MAX_WORDS];
    uint32_t sb[CACHE_NEARMISS_MAX_WORDS];
    size_t na = shared_words(a, b, sa);
    size_t nb = shared_words(b, a, sb);
    size_t lo = 0;
    while (lo < na && lo < nb && a->w[sa[lo]].key == b->w[sb[lo]].key) {
        lo++;
    }
    size_t hi = 0;
    while (hi < na - lo && hi < nb - lo
           && a->w[sa[na - 1 - hi]].key == b->w[sb[nb - 1 - hi]].key) {
        hi++;
    }
    size_t m = na - lo - hi;
    if (na != nb || m < 3 || m > ORDER_MAX) {
        return false;
    }
    const uint32_t *pa = sa + lo;
    const uint32_t *pb = sb + lo;
    for (size_t x = 1; x + 2 <= m; x++) {
        for (size_t y = 1; x + y < m; y++) {
            size_t r = m - x - y;
            if (!same_keys(a, pa, b, pb + y + r, x)
                || !same_keys(a, pa + x, b, pb + y, r)
                || !same_keys(a, pa + x + r, b, pb, y)
                || symmetric(a, pa + x, r)) {
                continue;
            }
            const struct nm_word *wx = content_in(a, pa, x);
            const struct nm_word *wy = content_in(a, pa + x + r, y);
            if (wx == NULL || wy == NULL) {
                continue;
            }
            char qx[QUOTE_MAX + 1];
            char qy[QUOTE_MAX + 1];
            snprintf(reason, n, "order of '%s' and '%s' is reversed",
                     quote(a, wx, qx), quote(a, wy, qy));
            return true;
        }
    }
    return false;
}

/* What kind of name a word is, for the substitution check and its
 * reason; NM_NONE for a plain content word. */
enum name_kind {
    K_PLAIN,    /* an ordinary word */
    K_IDENT,    /* code: camelCase, a_b, a.b, c#, -r */
    K_NAME,     /* capitalised, an acronym or a listed place */
    K_CLASS,    /* a listed language, unit, currency, date, relative */
};

static enum name_kind name_kind(const struct nm_word *w)
{
    enum nm_class cls = w->e != NULL ? w->e->cls : NM_NONE;
    if (cls == NM_LANGUAGE || cls == NM_UNIT || cls == NM_CURRENCY
        || cls == NM_DATE || cls == NM_RELATIVE) {
        return K_CLASS;
    }
    if (w->flags & NM_W_IDENT) {
        return K_IDENT;
    }
    if (cls == NM_PLACE || (w->flags & NM_W_ACRONYM)
        || ((w->flags & NM_W_CAP) && !(w->flags & NM_W_START))) {
        return K_NAME;
    }
    return K_PLAIN;
}

/* Whether plain words p and q are one word in two forms: a shared
 * prefix of 5+ bytes that leaves at most 2 of the shorter (thicker and
 * thicken, convert and conversion); for names, the shorter starts the
 * longer (Brazil and Brazilians). */
static bool same_root(const struct nm_text *x, const struct nm_word *p,
                      const struct nm_text *y, const struct nm_word *q)
{
    enum name_kind kp = name_kind(p);
    enum name_kind kq = name_kind(q);
    if (kp == K_IDENT || kp == K_CLASS || kq == K_IDENT || kq == K_CLASS) {
        return false;
    }
    const char *a = x->buf + p->canon;
    const char *b = y->buf + q->canon;
    size_t la = p->canon_len;
    size_t lb = q->canon_len;
    size_t shorter = la < lb ? la : lb;
    size_t l = 0;
    while (l < shorter && a[l] == b[l]) {
        l++;
    }
    if (kp == K_NAME || kq == K_NAME) {
        return l == shorter && shorter >= 4;
    }
    return l >= 5 && l + 2 >= shorter;
}

/* The key of words a and b of t written as one word (0 if too long). */
static uint64_t joined_key(const struct nm_text *t, const struct nm_word *a,
                           const struct nm_word *b)
{
    char c[128];
    char st[128];
    size_t len = a->fold_len + b->fold_len;
    if (len > sizeof(c)) {
        return 0;
    }
    memcpy(c, t->buf + a->fold, a->fold_len);
    memcpy(c + a->fold_len, t->buf + b->fold, b->fold_len);
    return nm_hash(st, nm_stem(c, len, st));
}

/* Whether word i of x is one of two words written as one in y, or one
 * written as two ("back up" and "backup", "blue-green" and "blue
 * green"). */
static bool joined_in(struct nm_text *x, size_t i, struct nm_text *y)
{
    const struct nm_word *w = &x->w[i];
    if ((i + 1 < x->nw && count(y, false, joined_key(x, w, &x->w[i + 1])))
        || (i > 0 && count(y, false, joined_key(x, &x->w[i - 1], w)))) {
        return true;
    }
    for (size_t k = 0; k + 1 < y->nw; k++) {
        if (joined_key(y, &y->w[k], &y->w[k + 1]) == w->key) {
            return true;
        }
    }
    return false;
}

/* Whether content word w of x is in y: the same synonym key, another
 * form of the same root, or two words of y joined. */
static bool found_in(struct nm_text *x, size_t i, struct nm_text *y)
{
    const struct nm_word *w = &x->w[i];
    if (count(y, true, w->syn) > 0 || joined_in(x, i, y)) {
        return true;
    }
    for (size_t k = 0; k < y->nw; k++) {
        if (is_content(&y->w[k]) && same_root(x, w, y, &y->w[k])) {
            return true;
        }
    }
    return false;
}

/* The content words of x that y lacks (the first of each). */
static size_t only_content(struct nm_text *x, struct nm_text *y, uint32_t *out,
                           size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < x->nw && k < max; i++) {
        const struct nm_word *w = &x->w[i];
        if (is_content(w)
            && set_find(x->content, x->gen, w->syn, false)->first == i
            && !found_in(x, i, y)) {
            out[k++] = (uint32_t)i;
        }
    }
    return k;
}

/* How telling a replaced pair is: a shared class, then two names, then
 * one; 0 for two plain words. */
static int pair_score(const struct nm_word *x, const struct nm_word *y)
{
    enum nm_class cx = x->e != NULL ? x->e->cls : NM_NONE;
    enum nm_class cy = y->e != NULL ? y->e->cls : NM_NONE;
    enum name_kind kx = name_kind(x);
    enum name_kind ky = name_kind(y);
    const struct nm_entry *ex = nm_lookup(x->key);
    const struct nm_entry *ey = nm_lookup(y->key);
    bool polar = ex != NULL && ex->nopp > 0 && ey != NULL && ey->nopp > 0;
    return (cx == cy && kx == K_CLASS ? 4 : 0) + (polar ? 4 : 0)
           + (kx != K_PLAIN && ky != K_PLAIN ? 2 : 0) + (kx != K_PLAIN)
           + (ky != K_PLAIN);
}

/* Writes why x (in a) was replaced by y (in b). */
static void replaced(struct nm_text *a, const struct nm_word *x,
                     struct nm_text *b, const struct nm_word *y, char *reason,
                     size_t n)
{
    static const char *const label[] = {
        [NM_LANGUAGE] = "languages", [NM_UNIT] = "units",
        [NM_CURRENCY] = "currencies", [NM_DATE] = "dates",
        [NM_RELATIVE] = "people", [NM_PLACE] = "places"};
    enum name_kind kx = name_kind(x);
    enum name_kind ky = name_kind(y);
    enum nm_class cls = x->e != NULL ? x->e->cls : NM_NONE;
    enum name_kind k = kx == K_IDENT || ky == K_IDENT ? K_IDENT
                       : kx == K_PLAIN || ky == K_PLAIN ? K_PLAIN
                       : kx == K_CLASS && ky == K_CLASS && y->e->cls == cls
                           ? K_CLASS
                           : K_NAME;
    char qx[QUOTE_MAX + 1];
    char qy[QUOTE_MAX + 1];
    const char *what = k == K_IDENT  ? "identifiers differ"
                       : k == K_NAME ? "named entity differs"
                       : k == K_CLASS && cls < NM_NUMWORD && label[cls]
                           ? label[cls]
                           : "words differ";
    bool plural = k == K_CLASS;
    snprintf(reason, n, "%s%s: %s%s%s vs %s%s%s", what,
             plural ? " differ" : "", k == K_PLAIN ? "'" : "",
             quote(a, x, qx), k == K_PLAIN ? "'" : "", k == K_PLAIN ? "'" : "",
             quote(b, y, qy), k == K_PLAIN ? "'" : "");
}

#define MAX_ONLY 64 /* words only on one side that are looked at */

/* 5. No telling word replaced (a name, an identifier, a listed class; or
 * any word when at most MAX_SWAP change each way), and no name or
 * identifier on one side only. */
static bool words_differ(struct nm_text *a, struct nm_text *b, char *reason,
                         size_t n)
{
    uint32_t da[MAX_ONLY];
    uint32_t db[MAX_ONLY];
    size_t na = only_content(a, b, da, MAX_ONLY);
    size_t nb = only_content(b, a, db, MAX_ONLY);
    if (na > 0 && nb > 0) {
        int best = -1;
        const struct nm_word *bx = NULL;
        const struct nm_word *by = NULL;
        for (size_t i = 0; i < na; i++) {
            for (size_t j = 0; j < nb; j++) {
                int s = pair_score(&a->w[da[i]], &b->w[db[j]]);
                if (s > best) {
                    best = s;
                    bx = &a->w[da[i]];
                    by = &b->w[db[j]];
                }
            }
        }
        size_t lo = na < nb ? na : nb;
        size_t hi = na < nb ? nb : na;
        if (best >= 4 || (lo <= 1 && hi <= MAX_SWAP)) {
            replaced(a, bx, b, by, reason, n);
            return true;
        }
        return false;
    }
    struct nm_text *x = na > 0 ? a : b;
    const uint32_t *d = na > 0 ? da : db;
    for (size_t i = 0; i < na + nb; i++) {
        const struct nm_word *w = &x->w[d[i]];
        enum name_kind k = name_kind(w);
        if (k != K_PLAIN) {
            char q[QUOTE_MAX + 1];
            snprintf(reason, n, "'%s' is only in the %s prompt",
                     quote(x, w, q), side(x == a));
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------------
 * The guard
 * ------------------------------------------------------------------- */

bool cache_nearmiss_differs(struct str stored, struct str asked, char *reason,
                            size_t n)
{
    char none[1];
    if (n == 0) {
        reason = none;
        n = sizeof(none);
    }
    reason[0] = '\0';
    if (stored.len == asked.len
        && (stored.len == 0 || memcmp(stored.p, asked.p, stored.len) == 0)) {
        return false;
    }
    nm_lexicon_init();
    struct nm_text *a = &thread_scratch()[0];
    struct nm_text *b = a + 1;
    nm_split(a, stored);
    nm_split(b, asked);
    if (a->overflow || b->overflow) {
        snprintf(reason, n, "a prompt is too long for the near-miss guard "
                 "(over %d words): only the same text hits",
                 CACHE_NEARMISS_MAX_WORDS);
        return true;
    }
    index_words(a);
    index_words(b);
    bool differs = numbers_differ(a, b, reason, n)
                   || negation_differs(a, b, reason, n)
                   || opposites_differ(a, b, reason, n)
                   || order_differs(a, b, reason, n)
                   || words_differ(a, b, reason, n);
    utf8_trim(reason);
    return differs;
}
