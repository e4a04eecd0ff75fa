/*
 * bench/encoder.c - the sentence encoder's time per embed, one kernel
 * against another in the same run (part of `make bench-cache`).
 *
 * Opens the model once per kernel the CPU can run (blas, the code before
 * the strip kernels; avx2; avx512; amx) and, for each prompt, runs ROUNDS
 * rounds in which every kernel embeds the prompt once, the kernel that
 * goes first rotating from round to round: on a loaded machine the
 * kernels then see the same load. Prints p50/p99 per prompt and kernel,
 * the load average before and after, and the lowest cosine between a
 * kernel's vector and blas's.
 *
 * usage: encoder MODEL_DIR [ROUNDS]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/encoder.h"
#include "cache/encoder_internal.h"

#define MAX_ROUNDS 5000

static struct encoder *encs[4];
static enum encoder_kernel kinds[4];
static size_t nencs;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double p)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return v[(size_t)(p / 100.0 * (double)(n - 1) + 0.5)];
}

static void loadavg(char *out, size_t n)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double a = 0;
    double b = 0;
    double c = 0;
    if (f == NULL || fscanf(f, "%lf %lf %lf", &a, &b, &c) != 3) {
        snprintf(out, n, "?");
    } else {
        snprintf(out, n, "%.2f %.2f %.2f", a, b, c);
    }
    if (f != NULL) {
        fclose(f);
    }
}

static double cosine(const float *a, const float *b, size_t n)
{
    double dot = 0;
    double na = 0;
    double nb = 0;
    for (size_t i = 0; i < n; i++) {
        dot += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    return dot / sqrt(na * nb);
}

/* One table row per kernel for text. */
static void bench_prompt(const char *label, const char *text, size_t rounds)
{
    static double ms[4][MAX_ROUNDS];
    float v[4][1024];
    size_t len = strlen(text);
    int32_t ids[512];
    size_t ntok = 0;
    encoder_tokenize(encs[0], text, len, ids, 512, &ntok);
    char before[64];
    loadavg(before, sizeof(before));
    for (size_t r = 0; r < rounds; r++) {
        for (size_t j = 0; j < nencs; j++) {
            size_t k = (r + j) % nencs;
            double t0 = now_ms();
            encoder_embed(encs[k], text, len, v[k]);
            ms[k][r] = now_ms() - t0;
        }
    }
    char after[64];
    loadavg(after, sizeof(after));
    for (size_t k = 0; k < nencs; k++) {
        double c = cosine(v[k], v[0], encoder_dim(encs[0]));
        printf("| %s (%zu tokens) | %s | %.2f ms | %.2f ms | 1 - %.1e | "
               "%s -> %s |\n",
               label, ntok, encoder_kernel_name(kinds[k]),
               pct(ms[k], rounds, 50), pct(ms[k], rounds, 99), 1.0 - c,
               before, after);
    }
}

/* "word0 word1 ..." cut to at most want tokens, in a static buffer. */
static const char *words(size_t want)
{
    static char text[8192];
    size_t len = 0;
    for (int i = 0; len + 16 < sizeof(text); i++) {
        len += (size_t)snprintf(text + len, sizeof(text) - len, "word%d ", i);
    }
    int32_t ids[1024];
    size_t n = 0;
    while (len > 0) {
        encoder_tokenize(encs[0], text, len, ids, 1024, &n);
        if (n <= want) {
            break;
        }
        len--;
    }
    text[len] = '\0';
    return text;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [ROUNDS]\n", argv[0]);
        return 2;
    }
    size_t rounds = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 300;
    rounds = rounds < 10 ? 10 : rounds > MAX_ROUNDS ? MAX_ROUNDS : rounds;
    enum encoder_kernel all[] = {ENCODER_KERNEL_BLAS, ENCODER_KERNEL_AVX2,
                                 ENCODER_KERNEL_AVX512, ENCODER_KERNEL_AMX};
    for (size_t i = 0; i < 4; i++) {
        char err[512];
        if (!encoder_kernel_supported(all[i])) {
            continue;
        }
        if (encoder_open_kernel(argv[1], all[i], &encs[nencs], err,
                                sizeof(err))
            != RL_OK) {
            fprintf(stderr, "bench-encoder: %s\n", err);
            return 1;
        }
        kinds[nencs++] = all[i];
    }
    printf("\n| encoder, one thread, %zu rounds (kernels alternate) | "
           "kernel | p50 | p99 | cosine with blas | load average |\n"
           "|---|---|---|---|---|---|\n",
           rounds);
    bench_prompt("short", "What is the capital of France?", rounds);
    bench_prompt("short",
                 "How do I reverse a linked list in place using Python?",
                 rounds);
    bench_prompt("100-token", words(100), rounds / 3);
    bench_prompt("256-token", words(256), rounds / 10);
    for (size_t k = 0; k < nencs; k++) {
        encoder_close(encs[k]);
    }
    return 0;
}
