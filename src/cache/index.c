/*
 * index.c - one approximate nearest-neighbour graph of the semantic cache:
 * HNSW (Malkov and Yashunin, 2016) over L2-normalised vectors, similarity
 * being the dot product. docs/decisions.md 24 says why this and not FAISS.
 *
 * Slots hold vectors; a deleted slot stays in the graph as a waypoint (it
 * is never returned) and is the first reused by the next add, which
 * writes the new vector into it and links it again as a fresh insert
 * would (the old in-links of the slot stay, as extra long-range links).
 * So a graph never holds more slots than its most live entries, and no
 * rebuild is needed after deletions.
 *
 * Not thread-safe: one writer at a time, readers excluded from writes by
 * the caller (semset.c holds a rwlock). Searches use thread-local scratch.
 * Read cache_index_add() and cache_index_search() first.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cache/internal.h"
#include "util/alloc.h"

#define HNSW_M 16               /* links per node above level 0 */
#define HNSW_M0 (2 * HNSW_M)    /* links per node at level 0 */
#define HNSW_EF_CONSTRUCTION 100 /* beam while inserting */
#define HNSW_MAX_LEVEL 15

struct cache_index {
    size_t dim;          /* floats per vector */
    size_t cap;          /* slots allocated */
    size_t n;            /* slots used (live + deleted) */
    size_t live;         /* slots not deleted */
    float *vecs;         /* [cap][dim] */
    uint32_t *links0;    /* [cap][1 + M0]: count, then neighbours */
    uint32_t **upper;    /* [cap]: levels 1..level, each [1 + M] */
    uint8_t *level;      /* [cap]: the node's top level */
    uint8_t *deleted;    /* [cap]: 1 when deleted */
    uint32_t *free_slot; /* deleted slots, reused last first */
    size_t nfree;
    uint32_t entry;      /* the entry point (valid when n > 0) */
    int top;             /* the entry point's level */
    uint64_t rng;        /* xorshift state for levels */
};

/* ---- heaps of (distance, slot) --------------------------------------- */

struct cand {
    float d;     /* distance: 1 - dot */
    uint32_t id; /* slot */
};

struct heap {
    struct cand *a;
    size_t n, cap;
    bool max; /* max-heap (the farthest on top) or min-heap */
};

static bool above(const struct heap *h, size_t i, size_t j)
{
    return h->max ? h->a[i].d > h->a[j].d : h->a[i].d < h->a[j].d;
}

static void heap_push(struct heap *h, float d, uint32_t id)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 64;
        h->a = rl_realloc(h->a, h->cap * sizeof(*h->a));
    }
    size_t i = h->n++;
    h->a[i] = (struct cand){d, id};
    while (i && above(h, i, (i - 1) / 2)) {
        struct cand t = h->a[i];
        h->a[i] = h->a[(i - 1) / 2];
        h->a[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static struct cand heap_pop(struct heap *h)
{
    struct cand top = h->a[0];
    h->a[0] = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        if (l < h->n && above(h, l, best)) {
            best = l;
        }
        if (r < h->n && above(h, r, best)) {
            best = r;
        }
        if (best == i) {
            break;
        }
        struct cand t = h->a[i];
        h->a[i] = h->a[best];
        h->a[best] = t;
        i = best;
    }
    return top;
}

/* ---- thread-local scratch -------------------------------------------- */

struct scratch {
    uint32_t *mark;    /* [nmark]: == gen when visited this search */
    size_t nmark;
    uint32_t gen;
    struct heap cands; /* min-heap: to expand */
    struct heap found; /* max-heap: the ef best so far */
};

static _Thread_local struct scratch tls;

/* Starts a search over n slots: nothing visited. */
static void visit_reset(size_t n)
{
    if (tls.nmark < n) {
        free(tls.mark);
        tls.nmark = n + n / 2 + 64;
        tls.mark = rl_calloc(tls.nmark, sizeof(*tls.mark));
        tls.gen = 0;
    }
    if (++tls.gen == 0) {
        memset(tls.mark, 0, tls.nmark * sizeof(*tls.mark));
        tls.gen = 1;
    }
}

/* True the first time id is seen in this search. */
static bool visit(uint32_t id)
{
    if (tls.mark[id] == tls.gen) {
        return false;
    }
    tls.mark[id] = tls.gen;
    return true;
}

void cache_index_thread_exit(void)
{
    free(tls.mark);
    free(tls.cands.a);
    free(tls.found.a);
    memset(&tls, 0, sizeof(tls));
}

/* ---- vectors ---------------------------------------------------------- */

float cache_index_dot(const float *a, const float *b, size_t dim)
{
    /* Four independent sums, so the compiler keeps four lanes busy. */
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= dim; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < dim; i++) {
        s0 += a[i] * b[i];
    }
    return (s0 + s1) + (s2 + s3);
}

float cache_similarity(const float *a, const float *b, size_t dim)
{
    return cache_index_dot(a, b, dim);
}

static const float *vec(const struct cache_index *ix, uint32_t id)
{
    return ix->vecs + (size_t)id * ix->dim;
}

static float dist(const struct cache_index *ix, const float *q, uint32_t id)
{
    return 1.0f - cache_index_dot(q, vec(ix, id), ix->dim);
}

/* The link list of id at level lc: [0] is the count. */
static uint32_t *links(const struct cache_index *ix, uint32_t id, int lc)
{
    if (lc == 0) {
        return ix->links0 + (size_t)id * (1 + HNSW_M0);
    }
    return ix->upper[id] + (size_t)(lc - 1) * (1 + HNSW_M);
}

/* ---- the graph --------------------------------------------------------- */

struct cache_index *cache_index_new(size_t dim, uint64_t seed)
{
    struct cache_index *ix = rl_calloc(1, sizeof(*ix));
    ix->dim = dim;
    ix->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
    return ix;
}

void cache_index_free(struct cache_index *ix)
{
    if (!ix) {
        return;
    }
    for (size_t i = 0; i < ix->n; i++) {
        free(ix->upper[i]);
    }
    free(ix->vecs);
    free(ix->links0);
    free(ix->upper);
    free(ix->level);
    free(ix->deleted);
    free(ix->free_slot);
    free(ix);
}

static void grow(struct cache_index *ix)
{
    size_t cap = ix->cap ? 2 * ix->cap : 16;
    ix->vecs = rl_realloc(ix->vecs, cap * ix->dim * sizeof(float));
    ix->links0 = rl_realloc(ix->links0,
                            cap * (1 + HNSW_M0) * sizeof(uint32_t));
    ix->upper = rl_realloc(ix->upper, cap * sizeof(*ix->upper));
    ix->level = rl_realloc(ix->level, cap);
    ix->deleted = rl_realloc(ix->deleted, cap);
    ix->free_slot = rl_realloc(ix->free_slot, cap * sizeof(uint32_t));
    ix->cap = cap;
}

static int random_level(struct cache_index *ix)
{
    ix->rng ^= ix->rng << 13;
    ix->rng ^= ix->rng >> 7;
    ix->rng ^= ix->rng << 17;
    double u = ((double)(ix->rng >> 11) + 1.0) / 9007199254740993.0;
    int l = (int)(-log(u) / log((double)HNSW_M));
    return l > HNSW_MAX_LEVEL ? HNSW_MAX_LEVEL : l;
}

/* Greedy walk at level lc from ep towards q; returns the closest found. */
static uint32_t greedy(const struct cache_index *ix, const float *q,
                       uint32_t ep, int lc)
{
    float best = dist(ix, q, ep);
    bool moved = true;
    while (moved) {
        moved = false;
        const uint32_t *l = links(ix, ep, lc);
        for (uint32_t i = 1; i <= l[0]; i++) {
            float d = dist(ix, q, l[i]);
            if (d < best) {
                best = d;
                ep = l[i];
                moved = true;
            }
        }
    }
    return ep;
}

/* Beam search at level lc from ep; leaves the ef best in tls.found (a
 * max-heap), deleted slots included (they are waypoints). */
static void beam(const struct cache_index *ix, const float *q, uint32_t ep,
                 size_t ef, int lc)
{
    visit_reset(ix->n);
    tls.cands.n = 0;
    tls.cands.max = false;
    tls.found.n = 0;
    tls.found.max = true;
    float d0 = dist(ix, q, ep);
    visit(ep);
    heap_push(&tls.cands, d0, ep);
    heap_push(&tls.found, d0, ep);
    while (tls.cands.n) {
        struct cand c = heap_pop(&tls.cands);
        if (c.d > tls.found.a[0].d && tls.found.n >= ef) {
            break;
        }
        const uint32_t *l = links(ix, c.id, lc);
        for (uint32_t i = 1; i <= l[0]; i++) {
            uint32_t e = l[i];
            if (!visit(e)) {
                continue;
            }
            float d = dist(ix, q, e);
            if (tls.found.n < ef || d < tls.found.a[0].d) {
                heap_push(&tls.cands, d, e);
                heap_push(&tls.found, d, e);
                if (tls.found.n > ef) {
                    heap_pop(&tls.found);
                }
            }
        }
    }
}

static int by_distance(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    return (x->d > y->d) - (x->d < y->d);
}

/* The HNSW heuristic: from c (sorted nearest first), keeps at most m
 * candidates each closer to the base than to any kept one. Writes the
 * kept slots to out; returns their count. */
static uint32_t select_links(const struct cache_index *ix, struct cand *c,
                             size_t nc, size_t m, uint32_t *out)
{
    uint32_t kept = 0;
    for (size_t i = 0; i < nc && kept < m; i++) {
        bool good = true;
        for (uint32_t j = 0; j < kept && good; j++) {
            good = dist(ix, vec(ix, c[i].id), out[j]) >= c[i].d;
        }
        if (good) {
            out[kept++] = c[i].id;
        }
    }
    return kept;
}

/* Adds s to e's links at level lc, pruning them when they are full. */
static void link_back(struct cache_index *ix, uint32_t e, uint32_t s, int lc)
{
    uint32_t *l = links(ix, e, lc);
    size_t m = lc ? HNSW_M : HNSW_M0;
    for (uint32_t i = 1; i <= l[0]; i++) {
        if (l[i] == s) {
            return;
        }
    }
    if (l[0] < m) {
        l[++l[0]] = s;
        return;
    }
    struct cand c[HNSW_M0 + 1];
    const float *ve = vec(ix, e);
    for (uint32_t i = 1; i <= l[0]; i++) {
        c[i - 1] = (struct cand){dist(ix, ve, l[i]), l[i]};
    }
    c[m] = (struct cand){dist(ix, ve, s), s};
    qsort(c, m + 1, sizeof(c[0]), by_distance);
    l[0] = select_links(ix, c, m + 1, m, l + 1);
}

/* Takes a slot for a new vector: a deleted one, else a new one. */
static uint32_t take_slot(struct cache_index *ix, bool *reused)
{
    *reused = ix->nfree > 0;
    if (*reused) {
        return ix->free_slot[--ix->nfree];
    }
    if (ix->n == ix->cap) {
        grow(ix);
    }
    uint32_t s = (uint32_t)ix->n++;
    int lv = random_level(ix);
    ix->level[s] = (uint8_t)lv;
    ix->upper[s] = lv ? rl_calloc((size_t)lv * (1 + HNSW_M),
                                  sizeof(uint32_t))
                      : NULL;
    return s;
}

/* The entry point's slot is about to be reused: the highest other node
 * (a deleted one too: it is a waypoint) becomes the entry point. */
static void move_entry(struct cache_index *ix, uint32_t s)
{
    int best = -1;
    for (size_t i = 0; i < ix->n; i++) {
        if (i != s && ix->level[i] > best) {
            best = ix->level[i];
            ix->entry = (uint32_t)i;
        }
    }
    ix->top = best;
}

uint32_t cache_index_add(struct cache_index *ix, const float *v)
{
    bool reused;
    uint32_t s = take_slot(ix, &reused);
    if (reused && s == ix->entry && ix->n > 1) {
        move_entry(ix, s);
    }
    memcpy(ix->vecs + (size_t)s * ix->dim, v, ix->dim * sizeof(float));
    ix->deleted[s] = 0;
    ix->live++;
    int lv = ix->level[s];
    links(ix, s, 0)[0] = 0;
    for (int lc = 1; lc <= lv; lc++) {
        links(ix, s, lc)[0] = 0;
    }
    if (ix->live == 1 && !reused && ix->n == 1) {
        ix->entry = s;
        ix->top = lv;
        return s;
    }
    const float *q = vec(ix, s);
    uint32_t ep = ix->entry;
    for (int lc = ix->top; lc > lv; lc--) {
        ep = greedy(ix, q, ep, lc);
    }
    for (int lc = lv < ix->top ? lv : ix->top; lc >= 0; lc--) {
        beam(ix, q, ep, HNSW_EF_CONSTRUCTION, lc);
        size_t nc = 0;
        struct cand *c = rl_malloc(tls.found.n * sizeof(*c));
        while (tls.found.n) {
            struct cand x = heap_pop(&tls.found);
            if (x.id != s) {
                c[nc++] = x;
            }
        }
        qsort(c, nc, sizeof(c[0]), by_distance);
        uint32_t *l = links(ix, s, lc);
        l[0] = select_links(ix, c, nc, lc ? HNSW_M : HNSW_M0, l + 1);
        for (uint32_t i = 1; i <= l[0]; i++) {
            link_back(ix, l[i], s, lc);
        }
        if (nc) {
            ep = c[0].id;
        }
        free(c);
    }
    if (lv > ix->top) {
        ix->entry = s;
        ix->top = lv;
    }
    return s;
}

void cache_index_delete(struct cache_index *ix, uint32_t slot)
{
    if (slot >= ix->n || ix->deleted[slot]) {
        return;
    }
    ix->deleted[slot] = 1;
    ix->live--;
    ix->free_slot[ix->nfree++] = slot;
}

size_t cache_index_search(const struct cache_index *ix, const float *q,
                          size_t k, size_t ef,
                          struct cache_index_hit *out)
{
    if (!ix->live || !k) {
        return 0;
    }
    uint32_t ep = ix->entry;
    for (int lc = ix->top; lc > 0; lc--) {
        ep = greedy(ix, q, ep, lc);
    }
    beam(ix, q, ep, ef > k ? ef : k, 0);
    /* The heap pops farthest first: fill from the back, then compact. */
    size_t n = tls.found.n;
    struct cand *all = rl_malloc(n * sizeof(*all));
    for (size_t i = n; i > 0; i--) {
        all[i - 1] = heap_pop(&tls.found);
    }
    size_t got = 0;
    for (size_t i = 0; i < n && got < k; i++) {
        if (!ix->deleted[all[i].id]) {
            out[got++] = (struct cache_index_hit){all[i].id,
                                                  1.0f - all[i].d};
        }
    }
    free(all);
    return got;
}

size_t cache_index_live(const struct cache_index *ix)
{
    return ix->live;
}

size_t cache_index_bytes(const struct cache_index *ix)
{
    size_t per = ix->dim * sizeof(float) + (1 + HNSW_M0) * 4 + 2 + 4 +
                 sizeof(uint32_t *);
    size_t b = sizeof(*ix) + ix->cap * per;
    for (size_t i = 0; i < ix->n; i++) {
        b += (size_t)ix->level[i] * (1 + HNSW_M) * 4;
    }
    return b;
}
