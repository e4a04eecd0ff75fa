/*
 * fuzz_chat.c - a client's POST /v1/chat/completions body, down the real
 * path up to the upstream request: the check and parse (api_chat_parse,
 * src/api/chat.c), the prompt estimate (accounting/tokens.c), the routing
 * plan with the body's "routing" object (routing/routing.c), the exact
 * cache key (cache/exact.c), and each of the four adapters' build_request
 * (providers/openai.c, anthropic.c, gemini.c, ollama.c), which turn the
 * OpenAI request into the provider's body.
 *
 * Contracts checked besides "no crash, no leak, no undefined behaviour": a
 * refused body has a message; an upstream body built is one well-formed
 * JSON object with a URL to send it to; a refusal by an adapter is an
 * invalid-request error with a 4xx status.
 */
#include "accounting/accounting.h"
#include "api/api.h"
#include "cache/cache.h"
#include "fuzz.h"
#include "routing/routing.h"
#include "util/arena.h"
#include "util/buf.h"

#define NKINDS 4

static const char *const kinds[NKINDS] = {"openai", "anthropic", "gemini",
                                          "ollama"};
static struct fuzz_model models[NKINDS];
static struct model_cfg model_list[NKINDS];
static struct config cfg;

/* A configuration with one model of each kind, the cache on. */
static void setup(void)
{
    static const char *const names[NKINDS] = {"gpt-small", "claude-small",
                                              "gemini-small", "llama-local"};
    for (int i = 0; i < NKINDS; i++) {
        fuzz_model_init(&models[i], kinds[i]);
        model_list[i] = models[i].model;
        model_list[i].name = (char *)names[i];
        model_list[i].tier = 1 + i % 3;
        model_list[i].input_nusd_per_mtok = 100000 * (i + 1);
        model_list[i].output_nusd_per_mtok = 300000 * (i + 1);
        model_list[i].prior_ttft_ms = 200;
        model_list[i].prior_tokens_per_s = 100;
    }
    cfg.models = model_list;
    cfg.nmodels = NKINDS;
    cfg.default_max_latency_ms = 2000;
    cfg.default_min_quality_tier = 1;
    config_routing_knobs_default(&cfg.routing);
    config_cache_knobs_default(&cfg.cache);
    cfg.cache.enabled = true;
}

static void route(const struct chat_req *req, const char *model)
{
    struct arena a;
    arena_init(&a, 8192);
    struct routing_request rq = {
        .model = model,
        .routing = req->routing,
        .prompt_tokens = accounting_tokens_prompt(req->raw),
        .max_tokens = req->max_tokens,
        .stream = req->stream,
    };
    FUZZ_CHECK(rq.prompt_tokens >= 0);
    struct routing_plan plan;
    if (routing_plan(&cfg, &rq, NULL, &a, &plan) == RL_OK) {
        FUZZ_CHECK(plan.norder >= 1 && plan.norder <= NKINDS);
        char why[1024];
        routing_explain(&plan, why, sizeof(why));
    }
    arena_free(&a);
}

static void build(const struct chat_req *req, int i)
{
    struct upstream_req ureq;
    buf_init(&ureq.url, 8192);
    buf_init(&ureq.headers, 16384);
    buf_init(&ureq.body, 64u << 20);
    struct provider_error perr;
    memset(&perr, 0, sizeof(perr));
    const struct provider_ops *ops = models[i].provider.ops;
    enum rl_err err = ops->build_request(req, &models[i].model, &ureq, &perr);
    if (err == RL_OK) {
        FUZZ_CHECK(ureq.url.len > 0);
        FUZZ_CHECK(fuzz_is_object(ureq.body.p, ureq.body.len));
    } else {
        FUZZ_CHECK(err == RL_E_INVALID_REQUEST);
        FUZZ_CHECK(perr.status >= 400 && perr.status < 500);
        FUZZ_CHECK(perr.message[0] != '\0');
    }
    buf_free(&ureq.url);
    buf_free(&ureq.headers);
    buf_free(&ureq.body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cfg.models) {
        setup();
    }
    char *p = fuzz_copy(data, size);
    struct chat_req req;
    struct api_problem problem;
    enum rl_err err = api_chat_parse((struct str){p, size}, &req, &problem);
    if (err != RL_OK) {
        FUZZ_CHECK(err == RL_E_INVALID_JSON || err == RL_E_INVALID_UTF8 ||
                   err == RL_E_INVALID_REQUEST);
        FUZZ_CHECK(problem.message[0] != '\0');
        free(p);
        return 0;
    }
    FUZZ_CHECK(req.raw.p == p && req.raw.len <= size);
    route(&req, req.model);
    route(&req, "auto");
    struct cache_key key;
    cache_key_make(&cfg, req.raw, "auto>=1", "key_fuzz", false, &key);
    for (int i = 0; i < NKINDS; i++) {
        build(&req, i);
    }
    free(p);
    return 0;
}
