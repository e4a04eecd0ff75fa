/*
 * models.c - GET /v1/models and /v1/models/{id} in OpenAI's list shape,
 * from the configured models (plus "auto", which routes).
 */
#include <string.h>

#include "api/api.h"
#include "config/config.h"

/* The time the model objects say they were created: fixed, as the
 * configuration has no such date. */
#define MODELS_CREATED 1735689600

static void model_object(struct buf *out, const char *id, const char *owner)
{
    buf_append_cstr(out, "{\"id\":\"");
    buf_append_json_escaped(out, id, strlen(id));
    buf_printf(out, "\",\"object\":\"model\",\"created\":%d,"
               "\"owned_by\":\"", MODELS_CREATED);
    buf_append_json_escaped(out, owner, strlen(owner));
    buf_append_cstr(out, "\"}");
}

void api_models_list(const struct config *cfg, struct buf *out)
{
    buf_append_cstr(out, "{\"object\":\"list\",\"data\":[");
    model_object(out, "auto", "relay");
    for (size_t i = 0; i < cfg->nmodels; i++) {
        const struct model_cfg *m = &cfg->models[i];
        buf_append_cstr(out, ",");
        model_object(out, m->name, m->provider->name);
    }
    buf_append_cstr(out, "]}");
}

enum rl_err api_models_get(const struct config *cfg, struct str id,
                           struct buf *out)
{
    if (str_eq_lit(id, "auto")) {
        model_object(out, "auto", "relay");
        return RL_OK;
    }
    const struct model_cfg *m = config_model(cfg, id.p, id.len);
    if (!m) {
        return RL_E_MODEL_NOT_FOUND;
    }
    model_object(out, m->name, m->provider->name);
    return RL_OK;
}
