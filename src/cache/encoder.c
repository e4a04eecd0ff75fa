/*
 * encoder.c - the BERT forward pass of the sentence encoder.
 *
 * One sequence at a time, no padding (so the attention mask is all ones
 * over the real tokens): embeddings (word + position + token type 0, then
 * LayerNorm), N layers of post-norm self-attention and a GELU (erf) feed
 * forward, each with a residual and a LayerNorm, then mean pooling over
 * all tokens ([CLS] and [SEP] included, as sentence-transformers does) or
 * the [CLS] vector, then L2 normalisation. The linear layers, GELU and
 * softmax run on the kernel chosen at open (gemm.c: AMX, AVX-512 or AVX2
 * where the CPU has them, else OpenBLAS); the attention products are
 * cblas_sgemm. Weights are read-only after encoder_open, and
 * encoder_embed allocates its scratch per call, so calls may run
 * concurrently. Read encoder_embed first; the math is in
 * docs/internals/encoder.md.
 */
#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cache/encoder.h"
#include "cache/encoder_internal.h"
#include "util/alloc.h"

/* The weights of one transformer layer; W is [out][in], row-major. */
struct layer {
    const float *q_w, *q_b;     /* query: [H][H], [H] */
    const float *k_w, *k_b;     /* key */
    const float *v_w, *v_b;     /* value */
    const float *o_w, *o_b;     /* attention output: [H][H], [H] */
    const float *ln1_w, *ln1_b; /* LayerNorm after attention: [H] */
    const float *i_w, *i_b;     /* intermediate: [I][H], [I] */
    const float *f_w, *f_b;     /* output: [H][I], [H] */
    const float *ln2_w, *ln2_b; /* LayerNorm after the FFN: [H] */
    /* The six linear layers above, packed for the kernel (gemm.c). */
    struct encoder_matrix *q, *k, *v, *o, *i, *f;
};

struct encoder {
    size_t hidden;       /* H: hidden size (384) */
    size_t nlayers;      /* transformer layers (6) */
    size_t nheads;       /* attention heads (12) */
    size_t inter;        /* I: feed-forward size (1536) */
    size_t max_pos;      /* max_position_embeddings (512) */
    size_t vocab;        /* vocabulary size */
    size_t ntypes;       /* type_vocab_size (2); only type 0 is used */
    size_t max_tokens;   /* tokens per embed, [CLS]/[SEP] included */
    double eps;          /* layer_norm_eps */
    bool cls_pooling;    /* true: [CLS] vector; false: mean of tokens */
    const float *word;   /* word embeddings: [vocab][H] */
    const float *pos;    /* position embeddings: [max_pos][H] */
    const float *type0;  /* token type 0 embedding: [H] */
    const float *eln_w;  /* embedding LayerNorm: [H] */
    const float *eln_b;
    struct layer *layers; /* nlayers entries, owned */
    enum encoder_kernel kernel; /* the multiply and GELU (gemm.c) */
    struct encoder_tokenizer *tok;  /* owned */
    struct encoder_safetensors *st; /* owned; weights point into it */
};

/* Per-call scratch, one allocation. n tokens. */
struct scratch {
    float *h;      /* hidden states [n][H] */
    float *q;      /* queries [n][H] */
    float *k;      /* keys [n][H] */
    float *v;      /* values [n][H] */
    float *ctx;    /* attention context [n][H] */
    float *tmp;    /* a projection before its residual [n][H] */
    float *ffn;    /* intermediate [n][I] */
    float *scores; /* one head's attention [n][n] */
};

/* ---- the math ------------------------------------------------------- */

/* x[n][H] = LayerNorm(x + add) with weight w and bias b (add may be NULL),
 * on e's kernel where it has one (gemm.c), else here, in double. */
static void add_norm(const struct encoder *e, float *x, const float *add,
                     size_t n, const float *w, const float *b)
{
    size_t hsz = e->hidden;
    double eps = e->eps;
    if (encoder_add_norm(e->kernel, x, add, n, hsz, w, b, eps)) {
        return;
    }
    for (size_t r = 0; r < n; r++) {
        float *row = x + r * hsz;
        if (add != NULL) {
            for (size_t c = 0; c < hsz; c++) {
                row[c] += add[r * hsz + c];
            }
        }
        double mean = 0;
        for (size_t c = 0; c < hsz; c++) {
            mean += row[c];
        }
        mean /= (double)hsz;
        double var = 0;
        for (size_t c = 0; c < hsz; c++) {
            double d = row[c] - mean;
            var += d * d;
        }
        var /= (double)hsz;
        double inv = 1.0 / sqrt(var + eps);
        for (size_t c = 0; c < hsz; c++) {
            row[c] = (float)((row[c] - mean) * inv) * w[c] + b[c];
        }
    }
}

/* Multi-head self-attention of s->h into s->ctx (before the output). */
static void attention(const struct encoder *e, const struct layer *l,
                      struct scratch *s, size_t n)
{
    size_t hsz = e->hidden;
    size_t hd = hsz / e->nheads;
    encoder_matrix_apply(l->q, s->h, n, s->q);
    encoder_matrix_apply(l->k, s->h, n, s->k);
    encoder_matrix_apply(l->v, s->h, n, s->v);
    float scale = (float)(1.0 / sqrt((double)hd));
    for (size_t h = 0; h < e->nheads; h++) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n,
                    (int)hd, scale, s->q + h * hd, (int)hsz, s->k + h * hd,
                    (int)hsz, 0.0f, s->scores, (int)n);
        encoder_softmax(e->kernel, s->scores, n);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n,
                    (int)hd, (int)n, 1.0f, s->scores, (int)n, s->v + h * hd,
                    (int)hsz, 0.0f, s->ctx + h * hd, (int)hsz);
    }
}

/* One post-norm transformer layer, in place on s->h. */
static void layer_forward(const struct encoder *e, const struct layer *l,
                          struct scratch *s, size_t n)
{
    attention(e, l, s, n);
    encoder_matrix_apply(l->o, s->ctx, n, s->tmp);
    add_norm(e, s->h, s->tmp, n, l->ln1_w, l->ln1_b);
    encoder_matrix_apply(l->i, s->h, n, s->ffn);
    encoder_gelu(e->kernel, s->ffn, n * e->inter);
    encoder_matrix_apply(l->f, s->ffn, n, s->tmp);
    add_norm(e, s->h, s->tmp, n, l->ln2_w, l->ln2_b);
}

static struct scratch *scratch_new(const struct encoder *e, size_t n)
{
    size_t hsz = e->hidden;
    size_t floats = 6 * n * hsz + n * e->inter + n * n;
    struct scratch *s = rl_malloc(sizeof(*s) + floats * sizeof(float));
    float *p = (float *)(void *)(s + 1);
    float **parts[] = {&s->h, &s->q, &s->k, &s->v, &s->ctx, &s->tmp};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        *parts[i] = p;
        p += n * hsz;
    }
    s->ffn = p;
    p += n * e->inter;
    s->scores = p;
    return s;
}

enum rl_err encoder_embed(const struct encoder *e, const char *text,
                          size_t len, float *out)
{
    int32_t *ids = rl_malloc(e->max_tokens * sizeof(int32_t));
    size_t n = 0;
    enum rl_err result = encoder_tokenizer_encode(e->tok, text, len, ids,
                                                  e->max_tokens, &n);
    if (result != RL_OK) {
        free(ids);
        return result;
    }
    size_t hsz = e->hidden;
    struct scratch *s = scratch_new(e, n);
    for (size_t t = 0; t < n; t++) {
        const float *w = e->word + (size_t)ids[t] * hsz;
        const float *p = e->pos + t * hsz;
        for (size_t c = 0; c < hsz; c++) {
            s->h[t * hsz + c] = w[c] + p[c] + e->type0[c];
        }
    }
    add_norm(e, s->h, NULL, n, e->eln_w, e->eln_b);
    for (size_t l = 0; l < e->nlayers; l++) {
        layer_forward(e, &e->layers[l], s, n);
    }
    size_t rows = e->cls_pooling ? 1 : n;
    double norm = 0;
    for (size_t c = 0; c < hsz; c++) {
        double sum = 0;
        for (size_t t = 0; t < rows; t++) {
            sum += s->h[t * hsz + c];
        }
        out[c] = (float)(sum / (double)rows);
        norm += (double)out[c] * out[c];
    }
    float inv = (float)(1.0 / fmax(sqrt(norm), 1e-12));
    for (size_t c = 0; c < hsz; c++) {
        out[c] *= inv;
    }
    free(s);
    free(ids);
    return RL_OK;
}

/* ---- loading -------------------------------------------------------- */

/* Reads a JSON file; NULL (err written) when absent or malformed. */
static json_t *load_json(const char *dir, const char *name, bool optional,
                         bool *absent, char *err, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    *absent = j == NULL && je.line == -1;
    if (j == NULL && !(optional && *absent)) {
        snprintf(err, n, "%s: %s", path, je.text);
    }
    return j;
}

/* A positive integer member of config.json into *out. */
static bool config_size(json_t *cfg, const char *key, size_t *out, char *err,
                        size_t n)
{
    json_t *v = json_object_get(cfg, key);
    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        snprintf(err, n, "config.json: %s is missing or not positive", key);
        return false;
    }
    *out = (size_t)json_integer_value(v);
    return true;
}

static enum rl_err read_config(struct encoder *e, const char *dir, char *err,
                               size_t n)
{
    bool absent = false;
    json_t *cfg = load_json(dir, "config.json", false, &absent, err, n);
    if (cfg == NULL) {
        return absent ? RL_E_IO : RL_E_CONFIG;
    }
    enum rl_err result = RL_E_CONFIG;
    const char *act = json_string_value(json_object_get(cfg, "hidden_act"));
    json_t *eps = json_object_get(cfg, "layer_norm_eps");
    if (!config_size(cfg, "hidden_size", &e->hidden, err, n)
        || !config_size(cfg, "num_hidden_layers", &e->nlayers, err, n)
        || !config_size(cfg, "num_attention_heads", &e->nheads, err, n)
        || !config_size(cfg, "intermediate_size", &e->inter, err, n)
        || !config_size(cfg, "max_position_embeddings", &e->max_pos, err, n)
        || !config_size(cfg, "vocab_size", &e->vocab, err, n)) {
        goto out;
    }
    if (act == NULL || strcmp(act, "gelu") != 0
        || e->hidden % e->nheads != 0) {
        snprintf(err, n, "config.json: only hidden_act \"gelu\" and a "
                         "hidden_size divisible by the heads are supported");
        goto out;
    }
    e->eps = json_is_number(eps) ? json_number_value(eps) : 1e-12;
    json_t *types = json_object_get(cfg, "type_vocab_size");
    e->ntypes = json_is_integer(types) && json_integer_value(types) > 0
                    ? (size_t)json_integer_value(types)
                    : 2;
    result = RL_OK;
out:
    json_decref(cfg);
    return result;
}

/* False (err written) when modules.json lists a module after pooling
 * that would change the vector (a Dense projection, say). */
static bool modules_supported(const char *dir, char *err, size_t n)
{
    bool absent = false;
    json_t *mods = load_json(dir, "modules.json", true, &absent, err, n);
    bool ok = mods != NULL || absent;
    for (size_t i = 0; i < json_array_size(mods); i++) {
        const char *type = json_string_value(
            json_object_get(json_array_get(mods, i), "type"));
        if (type != NULL && strstr(type, "Transformer") == NULL
            && strstr(type, "Pooling") == NULL
            && strstr(type, "Normalize") == NULL) {
            snprintf(err, n, "modules.json: module %s is not supported",
                     type);
            ok = false;
            break;
        }
    }
    json_decref(mods);
    return ok;
}

/* The optional files: pooling, max_seq_length, casing, modules. An absent
 * file means the default; a malformed one is an error. */
static enum rl_err read_options(struct encoder *e, const char *dir,
                                char *err, size_t n)
{
    bool absent[3] = {false, false, false};
    json_t *st = load_json(dir, "sentence_bert_config.json", true,
                           &absent[0], err, n);
    json_t *pool = load_json(dir, "1_Pooling/config.json", true, &absent[1],
                             err, n);
    json_t *tc = load_json(dir, "tokenizer_config.json", true, &absent[2],
                           err, n);
    enum rl_err result = RL_E_CONFIG;
    if ((st == NULL && !absent[0]) || (pool == NULL && !absent[1])
        || (tc == NULL && !absent[2])) {
        goto out;
    }
    e->max_tokens = e->max_pos;
    json_t *len = json_object_get(st, "max_seq_length");
    if (json_is_integer(len) && json_integer_value(len) > 2
        && (size_t)json_integer_value(len) < e->max_pos) {
        e->max_tokens = (size_t)json_integer_value(len);
    }
    e->cls_pooling =
        json_is_true(json_object_get(pool, "pooling_mode_cls_token"));
    if (json_is_false(json_object_get(tc, "do_lower_case"))) {
        snprintf(err, n, "tokenizer_config.json: cased models "
                         "(do_lower_case false) are not supported");
        goto out;
    }
    if (modules_supported(dir, err, n)) {
        result = RL_OK;
    }
out:
    json_decref(st);
    json_decref(pool);
    json_decref(tc);
    return result;
}

/* Finds prefix+name (prefix "" or "bert.") with the given shape. */
static bool tensor(struct encoder *e, const char *prefix, const char *name,
                   size_t d0, size_t d1, const float **out, char *err,
                   size_t n)
{
    char full[256];
    snprintf(full, sizeof(full), "%s%s", prefix, name);
    size_t dims[2] = {d0, d1};
    return encoder_safetensors_f32(e->st, full, dims, d1 == 0 ? 1 : 2, out,
                                   err, n) == RL_OK;
}

static bool load_layer(struct encoder *e, const char *pre, size_t i,
                       struct layer *l, char *err, size_t n)
{
    size_t h = e->hidden;
    size_t in = e->inter;
    struct {
        const char *name;
        size_t d0, d1;
        const float **out;
    } want[] = {
        {"attention.self.query.weight", h, h, &l->q_w},
        {"attention.self.query.bias", h, 0, &l->q_b},
        {"attention.self.key.weight", h, h, &l->k_w},
        {"attention.self.key.bias", h, 0, &l->k_b},
        {"attention.self.value.weight", h, h, &l->v_w},
        {"attention.self.value.bias", h, 0, &l->v_b},
        {"attention.output.dense.weight", h, h, &l->o_w},
        {"attention.output.dense.bias", h, 0, &l->o_b},
        {"attention.output.LayerNorm.weight", h, 0, &l->ln1_w},
        {"attention.output.LayerNorm.bias", h, 0, &l->ln1_b},
        {"intermediate.dense.weight", in, h, &l->i_w},
        {"intermediate.dense.bias", in, 0, &l->i_b},
        {"output.dense.weight", h, in, &l->f_w},
        {"output.dense.bias", h, 0, &l->f_b},
        {"output.LayerNorm.weight", h, 0, &l->ln2_w},
        {"output.LayerNorm.bias", h, 0, &l->ln2_b},
    };
    for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
        char name[160];
        snprintf(name, sizeof(name), "encoder.layer.%zu.%s", i, want[k].name);
        if (!tensor(e, pre, name, want[k].d0, want[k].d1, want[k].out, err,
                    n)) {
            return false;
        }
    }
    l->q = encoder_matrix_new(e->kernel, l->q_w, l->q_b, h, h);
    l->k = encoder_matrix_new(e->kernel, l->k_w, l->k_b, h, h);
    l->v = encoder_matrix_new(e->kernel, l->v_w, l->v_b, h, h);
    l->o = encoder_matrix_new(e->kernel, l->o_w, l->o_b, h, h);
    l->i = encoder_matrix_new(e->kernel, l->i_w, l->i_b, in, h);
    l->f = encoder_matrix_new(e->kernel, l->f_w, l->f_b, h, in);
    return true;
}

static void free_layer(struct layer *l)
{
    struct encoder_matrix *m[] = {l->q, l->k, l->v, l->o, l->i, l->f};
    for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
        encoder_matrix_free(m[k]);
    }
}

static enum rl_err load_weights(struct encoder *e, const char *dir,
                                char *err, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    enum rl_err result = encoder_safetensors_open(path, &e->st, err, n);
    if (result != RL_OK) {
        return result;
    }
    size_t h = e->hidden;
    /* Checkpoints saved from BertForXxx prefix every name with "bert.". */
    const char *pre = "";
    char probe[256];
    if (!tensor(e, pre, "embeddings.word_embeddings.weight", e->vocab, h,
                &e->word, probe, sizeof(probe))) {
        pre = "bert.";
    }
    if (!tensor(e, pre, "embeddings.word_embeddings.weight", e->vocab, h,
                &e->word, err, n)
        || !tensor(e, pre, "embeddings.position_embeddings.weight",
                   e->max_pos, h, &e->pos, err, n)
        || !tensor(e, pre, "embeddings.token_type_embeddings.weight",
                   e->ntypes, h, &e->type0, err, n)
        || !tensor(e, pre, "embeddings.LayerNorm.weight", h, 0, &e->eln_w,
                   err, n)
        || !tensor(e, pre, "embeddings.LayerNorm.bias", h, 0, &e->eln_b,
                   err, n)) {
        return RL_E_CONFIG;
    }
    e->layers = rl_calloc(e->nlayers, sizeof(*e->layers));
    for (size_t i = 0; i < e->nlayers; i++) {
        if (!load_layer(e, pre, i, &e->layers[i], err, n)) {
            return RL_E_CONFIG;
        }
    }
    return RL_OK;
}

enum rl_err encoder_open(const char *dir, struct encoder **out, char *err,
                         size_t n)
{
    enum encoder_kernel k = ENCODER_KERNEL_AUTO;
    const char *want = getenv("RELAY_ENCODER_KERNEL");
    if (want != NULL && want[0] != '\0' && !encoder_kernel_parse(want, &k)) {
        snprintf(err, n, "RELAY_ENCODER_KERNEL is \"%s\": auto, blas, "
                         "avx2 or avx512", want);
        return RL_E_CONFIG;
    }
    return encoder_open_kernel(dir, k, out, err, n);
}

enum rl_err encoder_open_kernel(const char *dir, enum encoder_kernel kernel,
                                struct encoder **out, char *err, size_t n)
{
    if (!encoder_kernel_supported(kernel)) {
        snprintf(err, n, "this CPU cannot run the %s encoder kernel",
                 encoder_kernel_name(kernel));
        return RL_E_CONFIG;
    }
    struct encoder *e = rl_calloc(1, sizeof(*e));
    e->kernel = kernel == ENCODER_KERNEL_AUTO ? encoder_kernel_best() : kernel;
    char path[4096];
    enum rl_err result = read_config(e, dir, err, n);
    if (result == RL_OK) {
        result = read_options(e, dir, err, n);
    }
    if (result == RL_OK) {
        snprintf(path, sizeof(path), "%s/vocab.txt", dir);
        result = encoder_tokenizer_new(path, &e->tok, err, n);
    }
    if (result == RL_OK && encoder_tokenizer_size(e->tok) != e->vocab) {
        snprintf(err, n, "%s has %zu tokens, config.json says %zu", path,
                 encoder_tokenizer_size(e->tok), e->vocab);
        result = RL_E_CONFIG;
    }
    if (result == RL_OK) {
        result = load_weights(e, dir, err, n);
    }
    if (result != RL_OK) {
        encoder_close(e);
        return result;
    }
    /* Matrices of a few hundred rows gain little from BLAS threads, and
     * embeds already run concurrently on the encoder pool. */
    openblas_set_num_threads(1);
    *out = e;
    return RL_OK;
}

size_t encoder_dim(const struct encoder *e)
{
    return e->hidden;
}

size_t encoder_max_tokens(const struct encoder *e)
{
    return e->max_tokens;
}

enum encoder_kernel encoder_kernel_of(const struct encoder *e)
{
    return e->kernel;
}

enum rl_err encoder_tokenize(const struct encoder *e, const char *text,
                             size_t len, int32_t *ids, size_t max_ids,
                             size_t *nids)
{
    size_t max = max_ids < e->max_tokens ? max_ids : e->max_tokens;
    return encoder_tokenizer_encode(e->tok, text, len, ids, max, nids);
}

void encoder_close(struct encoder *e)
{
    if (e == NULL) {
        return;
    }
    for (size_t i = 0; e->layers != NULL && i < e->nlayers; i++) {
        free_layer(&e->layers[i]);
    }
    free(e->layers);
    encoder_tokenizer_free(e->tok);
    encoder_safetensors_close(e->st);
    free(e);
}
