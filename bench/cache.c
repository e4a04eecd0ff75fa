/*
 * bench/cache.c - `make bench-cache`, the in-process part: the real
 * encoder's time per prompt, and the semantic index (src/cache/semset.c
 * over index.c, the code the gateway runs) at 10k and 100k entries:
 * insert and lookup time, recall of the nearest neighbour against a flat
 * scan, memory per entry.
 *
 * Vectors: the first 10k are real embeddings (all-MiniLM-L6-v2) of
 * varied English sentences (bench/cache_texts.py); 100k adds 90k
 * synthetic ones, each a real vector mixed with another (weight 0.35)
 * and noise (0.02 per dimension), renormalised: they stay near the real
 * ones' manifold, as a heavy tenant's traffic would. Queries are the
 * embeddings of 1000 held-out sentences. The vectors are kept in
 * build/bench/cache_vectors.f32 for the next run and for the gateway's
 * end-to-end part (bench/cache_e2e.py).
 *
 * usage: cache MODEL_DIR TEXTS VECTORS_OUT
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "cache/encoder.h"
#include "cache/internal.h"

#define NREAL 10000
#define NQUERY 1000
#define NBIG 100000
#define NTIMED 500

static struct encoder *enc;
static size_t dim;
static char **texts;
static size_t ntexts;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double p)
{
    qsort(v, n, sizeof(*v), cmp_double);
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return v[i];
}

static void read_texts(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        exit(1);
    }
    char line[4096];
    texts = calloc(NREAL + NQUERY, sizeof(*texts));
    while (ntexts < NREAL + NQUERY && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        texts[ntexts++] = strdup(line);
    }
    fclose(f);
    if (ntexts < NREAL + NQUERY) {
        fprintf(stderr, "bench-cache: %s has %zu lines, %d needed\n", path,
                ntexts, NREAL + NQUERY);
        exit(1);
    }
}

/* ---- embeddings ---------------------------------------------------------- */

struct span {
    size_t from, to;
    float *out;
};

static void *embed_span(void *arg)
{
    struct span *s = arg;
    for (size_t i = s->from; i < s->to; i++) {
        encoder_embed(enc, texts[i], strlen(texts[i]), s->out + i * dim);
    }
    return NULL;
}

/* Embeds texts[0..n) into out with two threads. */
static void embed_all(float *out, size_t n)
{
    pthread_t t[2];
    struct span s[2] = {{0, n / 2, out}, {n / 2, n, out}};
    for (int i = 0; i < 2; i++) {
        pthread_create(&t[i], NULL, embed_span, &s[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
}

static void time_embeds(void)
{
    double ms[NTIMED];
    size_t tokens = 0;
    float *v = malloc(dim * sizeof(float));
    int32_t ids[512];
    for (size_t i = 0; i < NTIMED; i++) {
        size_t nids = 0;
        encoder_tokenize(enc, texts[i], strlen(texts[i]), ids, 512, &nids);
        tokens += nids;
        double t0 = now_ms();
        encoder_embed(enc, texts[i], strlen(texts[i]), v);
        ms[i] = now_ms() - t0;
    }
    free(v);
    printf("| embedding, one thread, %d varied sentences (%.0f tokens on "
           "average) | p50 %.2f ms | p99 %.2f ms |\n",
           NTIMED, (double)tokens / NTIMED, pct(ms, NTIMED, 50),
           pct(ms, NTIMED, 99));
    const char *shortp = "What is the capital of France?";
    double sm[200];
    float w[1024];
    for (size_t i = 0; i < 200; i++) {
        double t0 = now_ms();
        encoder_embed(enc, shortp, strlen(shortp), w);
        sm[i] = now_ms() - t0;
    }
    printf("| embedding, one thread, a short prompt (9 tokens) | p50 %.2f "
           "ms | p99 %.2f ms |\n", pct(sm, 200, 50), pct(sm, 200, 99));
}

/* The vectors: read back, or embedded and made, then saved. */
static float *vectors(const char *path)
{
    size_t want = (size_t)(NBIG + NQUERY) * dim;
    float *v = malloc(want * sizeof(float));
    FILE *f = fopen(path, "rb");
    if (f && fread(v, sizeof(float), want, f) == want) {
        fclose(f);
        printf("(vectors read from %s)\n", path);
        return v;
    }
    if (f) {
        fclose(f);
    }
    double t0 = now_ms();
    /* Real: NREAL stored, then NQUERY queries, stored after the big set. */
    float *real = malloc((size_t)(NREAL + NQUERY) * dim * sizeof(float));
    embed_all(real, NREAL + NQUERY);
    printf("(embedded %d sentences with two threads in %.1f s)\n",
           NREAL + NQUERY, (now_ms() - t0) / 1000);
    memcpy(v, real, (size_t)NREAL * dim * sizeof(float));
    memcpy(v + (size_t)NBIG * dim, real + (size_t)NREAL * dim,
           (size_t)NQUERY * dim * sizeof(float));
    uint64_t r = 12345;
    for (size_t i = NREAL; i < NBIG; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        const float *a = real + ((r >> 33) % NREAL) * dim;
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        const float *b = real + ((r >> 33) % NREAL) * dim;
        float *o = v + i * dim;
        double s = 0;
        for (size_t d = 0; d < dim; d++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            double noise = ((double)(r >> 11) / 9007199254740992.0 - 0.5);
            o[d] = (float)(a[d] + 0.35 * b[d] + 0.04 * noise);
            s += (double)o[d] * o[d];
        }
        for (size_t d = 0; d < dim; d++) {
            o[d] = (float)(o[d] / sqrt(s));
        }
    }
    free(real);
    f = fopen(path, "wb");
    if (f) {
        fwrite(v, sizeof(float), want, f);
        fclose(f);
    }
    return v;
}

/* ---- the index ------------------------------------------------------ */

static void bench_index(const float *v, size_t n)
{
    struct cache_semset *s = cache_semset_new(dim, n);
    double t0 = now_ms();
    size_t text_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        text_bytes += strlen(texts[i % NREAL]);
        struct cache_semset_item it = {
            .scope = "bench",
            .vec = v + i * dim,
            .text = {texts[i % NREAL], strlen(texts[i % NREAL])},
            .expires_s = 4000000000LL,
        };
        memset(it.id, 0, 32);
        memcpy(it.id, &i, sizeof(i));
        memset(it.ctx, 7, 32);
        cache_semset_put(s, &it, 1);
    }
    double build = now_ms() - t0;
    const float *q = v + (size_t)NBIG * dim;
    double ms[NQUERY], flat[50];
    size_t right = 0;
    for (size_t j = 0; j < NQUERY; j++) {
        struct cache_semset_ask ask = {
            .scope = "bench",
            .vec = q + j * dim,
            .text = STR_LIT("q"),
            .threshold = -1, /* the nearest is "accepted": its id */
        };
        memset(ask.ctx, 7, 32);
        struct cache_semset_found f;
        double t1 = now_ms();
        cache_semset_find(s, &ask, 1, &f);
        ms[j] = now_ms() - t1;
        t1 = now_ms();
        size_t best = 0;
        float bs = -2;
        for (size_t i = 0; i < n; i++) {
            float d = cache_index_dot(q + j * dim, v + i * dim, dim);
            if (d > bs) {
                bs = d;
                best = i;
            }
        }
        if (j < 50) {
            flat[j] = now_ms() - t1;
        }
        size_t got = 0;
        memcpy(&got, f.id, sizeof(got));
        right += got == best;
    }
    struct cache_semset_stats st;
    cache_semset_stats(s, &st);
    printf("| index, %zuk entries: insert | %.3f ms per entry (%.1f s for "
           "all) | |\n", n / 1000, build / (double)n, build / 1000);
    printf("| index, %zuk entries: lookup (k=8, ef=64, decide) | p50 %.3f "
           "ms | p99 %.3f ms |\n", n / 1000, pct(ms, NQUERY, 50),
           pct(ms, NQUERY, 99));
    printf("| index, %zuk entries: recall@1 vs flat scan | %.3f | flat scan "
           "p50 %.2f ms |\n", n / 1000, (double)right / NQUERY,
           pct(flat, 50, 50));
    printf("| index, %zuk entries: memory | %.0f bytes per entry (%.1f MB; "
           "prompt texts %.0f bytes on average) | |\n", n / 1000,
           (double)st.bytes / (double)st.entries, st.bytes / 1e6,
           (double)text_bytes / (double)n);
    cache_semset_free(s);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL_DIR TEXTS VECTORS_OUT\n", argv[0]);
        return 2;
    }
    char err[512];
    if (encoder_open(argv[1], &enc, err, sizeof(err)) != RL_OK) {
        fprintf(stderr, "bench-cache: %s\n", err);
        return 1;
    }
    dim = encoder_dim(enc);
    read_texts(argv[2]);
    printf("\n| bench-cache (in process) | figure | |\n|---|---|---|\n");
    time_embeds();
    float *v = vectors(argv[3]);
    bench_index(v, NREAL);
    bench_index(v, NBIG);
    free(v);
    encoder_close(enc);
    return 0;
}
