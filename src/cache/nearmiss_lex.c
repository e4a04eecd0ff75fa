/*
 * nearmiss_lex.c - the near-miss guard's lexicon: the word lists of
 * nearmiss_words.c read once into one hash table (class, number value,
 * synonym, opposites), and the light stemmer both the lists and the
 * prompts go through. Read nm_lexicon_init() and nm_stem() first.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/nearmiss.h"

#define WORD_SLOTS 4096 /* the listed words: a power of two */

/* ---------------------------------------------------------------------
 * Keys and the table of listed words
 * ------------------------------------------------------------------- */

uint64_t nm_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    }
    return h | 1; /* 0 marks an empty slot */
}

static struct nm_entry table[WORD_SLOTS];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static struct nm_entry *slot(uint64_t key, bool add)
{
    size_t i = (size_t)key & (WORD_SLOTS - 1);
    while (table[i].key != 0 && table[i].key != key) {
        i = (i + 1) & (WORD_SLOTS - 1);
    }
    if (table[i].key == 0) {
        if (!add) {
            return NULL;
        }
        table[i].key = key;
    }
    return &table[i];
}

const struct nm_entry *nm_lookup(uint64_t key)
{
    return slot(key, false);
}

/* The key of w's stem (the lists are stemmed as the prompts are). */
static uint64_t stem_key(const char *w, size_t len)
{
    char s[64];
    if (len >= sizeof(s)) {
        return nm_hash(w, len);
    }
    return nm_hash(s, nm_stem(w, len, s));
}

/* Calls fn on each space-separated word of list. */
static void each_word(const char *list, void (*fn)(const char *, size_t,
                                                   void *),
                      void *ctx)
{
    const char *p = list;
    while (*p) {
        while (*p == ' ') {
            p++;
        }
        size_t len = strcspn(p, " ");
        if (len > 0) {
            fn(p, len, ctx);
        }
        p += len;
    }
}

static void add_class(const char *w, size_t len, void *ctx)
{
    enum nm_class cls = *(const enum nm_class *)ctx;
    struct nm_entry *by_form = slot(nm_hash(w, len), true);
    struct nm_entry *by_stem = cls == NM_LANGUAGE /* not "going" as Go */
                                ? by_form
                                : slot(stem_key(w, len), true);
    if (by_form->cls == NM_NONE) {
        by_form->cls = cls;
    }
    if (by_stem->cls == NM_NONE) {
        by_stem->cls = cls;
    }
}

static void add_number_word(const char *w, size_t len, void *ctx)
{
    (void)ctx;
    const char *eq = memchr(w, '=', len);
    struct nm_entry *e = slot(nm_hash(w, (size_t)(eq - w)), true);
    e->cls = NM_NUMWORD;
    e->value = strtol(eq + 1, NULL, 10);
}

static void add_pair(const char *w, size_t len, void *ctx)
{
    char sep = *(const char *)ctx;
    const char *mid = memchr(w, sep, len);
    size_t alen = (size_t)(mid - w);
    uint64_t a = stem_key(w, alen);
    uint64_t b = stem_key(mid + 1, len - alen - 1);
    struct nm_entry *ea = slot(a, true);
    if (sep == '=') {
        ea->syn = b;
        return;
    }
    struct nm_entry *eb = slot(b, true);
    if (ea->nopp < NM_MAX_OPP) {
        ea->opp[ea->nopp++] = b;
    }
    if (eb->nopp < NM_MAX_OPP) {
        eb->opp[eb->nopp++] = a;
    }
}

static void add_symmetric(const char *w, size_t len, void *ctx)
{
    (void)ctx;
    slot(nm_hash(w, len), true)->symmetric = true;
}

static void add_question(const char *w, size_t len, void *ctx)
{
    (void)ctx;
    slot(nm_hash(w, len), true)->question = true;
}

static void build_table(void)
{
    for (size_t i = 0; i < nm_lists_len; i++) {
        each_word(nm_lists[i].words, add_class, (void *)&nm_lists[i].cls);
    }
    each_word(nm_numbers, add_number_word, NULL);
    each_word(nm_opposites, add_pair, "/");
    each_word(nm_synonyms, add_pair, "=");
    each_word(nm_symmetric, add_symmetric, NULL);
    each_word("when where why who", add_question, NULL);
}

/* ---------------------------------------------------------------------
 * Stemming: plurals, -ing, -ed, -ise, a final e (ASCII words only)
 * ------------------------------------------------------------------- */

static bool ends(const char *w, size_t len, const char *suffix)
{
    size_t n = 0;
    while (suffix[n] != '\0') {
        n++;
    }
    if (len <= n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (w[len - n + i] != suffix[i]) {
            return false;
        }
    }
    return true;
}

static bool vowel(char c)
{
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

/* Drops a doubled final consonant left by -ing/-ed ("runn" -> "run"). */
static size_t undouble(const char *w, size_t len)
{
    if (len >= 3 && w[len - 1] == w[len - 2] && !vowel(w[len - 1])
        && w[len - 1] != 'l' && w[len - 1] != 's' && w[len - 1] != 'z') {
        return len - 1;
    }
    return len;
}

/* British -ise spellings as -ize: "caramelised" as "caramelized". */
static void ize(char *w, size_t len)
{
    if (len < 6 || memchr(w + len - 6, 's', 6) == NULL) {
        return; /* every form below has an s in its last 6 letters */
    }
    static const char *const forms[] = {"ise", "ises", "ised", "iser",
                                        "isers", "ising", "isation"};
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        size_t n = strlen(forms[i]);
        if (len > n + 2 && memcmp(w + len - n, forms[i], n) == 0) {
            w[len - n + 1] = 'z';
            return;
        }
    }
}

size_t nm_stem(const char *w, size_t len, char *out)
{
    memcpy(out, w, len);
    for (size_t i = 0; i < len; i++) {
        if (w[i] < 'a' || w[i] > 'z') {
            return len;
        }
    }
    if (len <= 3) {
        return len;
    }
    ize(out, len);
    if (ends(out, len, "ies") && len > 4) {
        len -= 2;
        out[len - 1] = 'y';
    } else if (ends(out, len, "sses") || ends(out, len, "xes")
               || ends(out, len, "ches") || ends(out, len, "shes")) {
        len -= 2;
    } else if (out[len - 1] == 's' && !ends(out, len, "ss")
               && !ends(out, len, "us") && !ends(out, len, "is")) {
        len -= 1;
    }
    if (ends(out, len, "ing") && len >= 6) {
        len = undouble(out, len - 3);
    } else if (ends(out, len, "ed") && len >= 5) {
        len = undouble(out, len - 2);
    }
    if (len >= 4 && out[len - 1] == 'e') {
        len -= 1;
    }
    return len;
}


void nm_lexicon_init(void)
{
    pthread_once(&table_once, build_table);
}
