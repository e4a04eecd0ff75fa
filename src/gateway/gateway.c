/*
 * gateway.c - `relay serve`: the workers' context, the HTTP routes, and the
 * main thread's signals (SIGHUP reloads, SIGTERM and SIGINT drain).
 *
 * Routes: POST /v1/chat/completions, GET /v1/models[/{id}], GET /healthz,
 * GET /dashboard/... (the built dashboard, src/dashboard/; also at / on
 * the dashboard's own listener, dashboard.listen), GET /readyz,
 * GET|HEAD /metrics (src/metrics/), /admin/keys[/{id}]
 * (src/admin/keys.c), GET /admin/analytics (src/admin/analytics.c).
 * Anything else is 404 (or 405 on a known path) in OpenAI's error shape.
 * Read on_request() and gateway_serve() first.
 */
#include "gateway/gateway.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <uv.h>

#include "admin/admin.h"
#include "api/api.h"
#include "auth/auth.h"
#include "cache/cache.h"
#include "config/config.h"
#include "dashboard/dashboard.h"
#include "limits/limits.h"
#include "metrics/metrics.h"
#include "pipeline.h"
#include "reply.h"
#include "request.h"
#include "store/store.h"
#include "util/alloc.h"
#include "util/log.h"

#define LOG_FLUSH_MS 100

static struct config *current; /* the main thread's snapshot */
static uv_signal_t sig_hup;
static uv_signal_t sig_term;
static uv_signal_t sig_int;

/* ---------------------------------------------------------------------
 * Workers
 * ------------------------------------------------------------------- */

static void set_limits(struct gw_worker *w)
{
    const struct config *c = w->cfg;
    w->limits = (struct server_limits){
        .max_body_bytes = c->max_body_bytes,
        .max_header_bytes = c->max_header_bytes,
        .read_timeout_ms = c->read_timeout_ms,
        .idle_timeout_ms = c->idle_timeout_ms,
        .shutdown_grace_ms = c->shutdown_grace_ms,
        .output_high_water_bytes = c->output_high_water_bytes,
        .write_timeout_ms = c->write_timeout_ms,
    };
}

/* The worker's limiter. A Redis URL that cannot be used was refused by
 * config_load already; one whose host does not resolve leaves the worker
 * limiting in-process (logged by limits_new), as if Redis were down. */
static struct limits *start_limits(struct uv_loop_s *loop,
                                   const struct config *c)
{
    struct limits_opts o = {
        .redis_url = c->redis,
        .policy = c->limits_fail_closed ? LIMITS_FAIL_CLOSED
                                        : LIMITS_FAIL_OPEN,
        .redis_timeout_ms = c->limits_redis_timeout_ms,
    };
    struct limits *l = NULL;
    if (limits_new(loop, &o, &l) != RL_OK) {
        o.redis_url = NULL;
        limits_new(loop, &o, &l);
    }
    return l;
}

static void *worker_start(struct uv_loop_s *loop, int id, void *arg)
{
    struct gw_worker *w = rl_calloc(1, sizeof(*w));
    w->id = id;
    w->loop = loop;
    w->cfg = config_ref(arg);
    set_limits(w);
    w->upstream = upstream_new(loop);
    w->limiter = start_limits(loop, w->cfg);
    w->cache = cache_new(loop, w->cfg);
    w->metrics = metrics_worker(id);
    if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || !w->rng) {
        w->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)id;
    }
    return w;
}

static void free_dead(struct gw_worker *w)
{
    while (w->dead) {
        struct req *r = w->dead;
        w->dead = r->next_dead;
        req_free(r);
    }
}

static void worker_stop(void *wctx)
{
    struct gw_worker *w = wctx;
    free_dead(w);
    cache_free(w->cache); /* its handles close as the loop runs down */
    upstream_free(w->upstream);
    limits_free(w->limiter); /* its handles close as the loop runs down */
    keycache_thread_exit();
    config_unref(w->cfg);
    log_flush();
    free(w);
}

/* Copies the limiter's figures into the worker's metrics, where a scrape
 * on another worker may read them (the limiter is this thread's alone). */
static void note_limits(struct gw_worker *w)
{
    struct limits_stats st;
    limits_stats_get(w->limiter, &st);
    bool configured = w->cfg->redis && *w->cfg->redis;
    metrics_limits_note(w->metrics, configured, limits_redis_up(w->limiter),
                        st.redis_decisions, st.local_decisions);
    metrics_redis_note(w->metrics, st.redis_moved, st.redis_asked,
                       st.redis_tryagain);
}

static void on_tick(void *wctx)
{
    struct gw_worker *w = wctx;
    free_dead(w);
    note_limits(w);
    /* Log lines are written when 32 KiB have gathered (log.c) or at the
     * latest every LOG_FLUSH_MS, so a busy worker makes one write for many
     * requests instead of one per loop iteration. */
    uint64_t now = uv_now(w->loop);
    if (now - w->log_flushed_ms >= LOG_FLUSH_MS) {
        w->log_flushed_ms = now;
        log_flush();
    }
}

static const struct server_limits *limits(void *wctx)
{
    struct gw_worker *w = wctx;
    return &w->limits;
}

/* Runs in each worker: takes the reference the main thread made for it. */
static void swap_config(void *wctx, void *arg)
{
    struct gw_worker *w = wctx;
    struct config *old = w->cfg;
    w->cfg = arg;
    set_limits(w);
    config_unref(old);
}

/* ---------------------------------------------------------------------
 * Routes
 * ------------------------------------------------------------------- */

static void serve_models(struct req *r, const struct http_request *http)
{
    if (!pipeline_authenticate(r, http)) {
        return;
    }
    struct buf body;
    buf_init(&body, 1 << 20);
    struct str path = http->path;
    size_t prefix = strlen("/v1/models");
    if (path.len == prefix || (path.len == prefix + 1)) {
        api_models_list(r->cfg, &body);
        reply_json(r, 200, (struct str){body.p, body.len});
    } else {
        struct str id = {path.p + prefix + 1, path.len - prefix - 1};
        if (api_models_get(r->cfg, id, &body) == RL_OK) {
            reply_json(r, 200, (struct str){body.p, body.len});
        } else {
            char msg[400];
            char shown[STR_SHOWN_MAX + 4];
            snprintf(msg, sizeof(msg), "The model '%s' does not exist. "
                     "GET /v1/models lists the models this gateway serves.",
                     str_shown(id, shown, sizeof(shown)));
            req_hide_path(r, prefix + 1);
            reply_error(r, RL_E_MODEL_NOT_FOUND, msg, "model");
        }
    }
    buf_free(&body);
}

static void serve_health(struct req *r, struct conn *c, bool ready)
{
    r->accounted = true; /* probes are not requests worth a log line */
    if (ready && server_draining(c)) {
        reply_json(r, 503, STR_LIT("{\"status\":\"draining\"}"));
    } else {
        reply_json(r, 200, ready ? STR_LIT("{\"status\":\"ready\"}")
                                 : STR_LIT("{\"status\":\"ok\"}"));
    }
}

/* GET /metrics: the Prometheus text of every worker's counters. Like the
 * probes, a scrape is no request to log or count. No key is asked unless
 * metrics.admin_key_required (docs/metrics.md: never expose it publicly
 * without). */
static void serve_metrics(struct req *r, const struct http_request *http)
{
    r->accounted = true;
    if (http->method != SERVER_GET && http->method != SERVER_HEAD) {
        reply_error(r, RL_E_METHOD, "Use GET for /metrics.", NULL);
        return;
    }
    if (r->cfg->metrics_admin_key_required && !admin_authorized(r, http)) {
        return;
    }
    struct metrics_breaker breakers[256];
    struct metrics_extra x;
    metrics_extra_collect(&x, breakers, sizeof(breakers) /
                                            sizeof(breakers[0]));
    struct buf body;
    buf_init(&body, 8 << 20);
    if (metrics_expose(&x, &body) != RL_OK) {
        log_write(LOG_WARN, "metrics exposition over its 8 MiB cap; "
                  "scrape cut short", NULL);
    }
    r->status = 200;
    if (r->conn) {
        server_on_abort(r->conn, NULL, NULL);
        server_respond(r->conn, 200, "text/plain; version=0.0.4; "
                       "charset=utf-8", STR_LIT(""),
                       (struct str){body.p ? body.p : "", body.len});
    }
    buf_free(&body);
}

/* Answers with the dashboard's file for rel (docs/dashboard.md). Its
 * files are not requests to log, as the probes are not. */
static void serve_static(struct req *r, const struct http_request *http,
                         struct str rel)
{
    r->accounted = true;
    if (http->method != SERVER_GET && http->method != SERVER_HEAD) {
        reply_error(r, RL_E_METHOD, "The dashboard's files take GET.", NULL);
        return;
    }
    char path[2048];
    if (!dashboard_path(r->cfg->dashboard_dir, rel, path, sizeof(path))) {
        reply_error(r, RL_E_NOT_FOUND, NULL, NULL);
        return;
    }
    struct buf body;
    buf_init(&body, DASHBOARD_MAX_FILE);
    int status = dashboard_read(path, &body);
    if (status == 200 && r->conn) {
        bool index = strstr(path, "/index.html") != NULL;
        r->status = 200;
        server_on_abort(r->conn, NULL, NULL);
        server_respond(r->conn, 200, dashboard_content_type(path),
                       index ? STR_LIT("Cache-Control: no-cache\r\n")
                             : STR_LIT("Cache-Control: max-age=3600\r\n"),
                       (struct str){body.p ? body.p : "", body.len});
    } else if (status != 200) {
        char msg[2200];
        char shown[STR_SHOWN_MAX + 4];
        snprintf(msg, sizeof(msg), status == 413
                 ? "%s/%s is over the size cap."
                 : "No file %s/%s: is the dashboard built? Run make "
                 "dashboard (or set dashboard.dir in relay.yaml).",
                 r->cfg->dashboard_dir, str_shown(rel, shown, sizeof(shown)));
        reply_error(r, status == 413 ? RL_E_BODY_TOO_LARGE : RL_E_NOT_FOUND,
                    msg, NULL);
    }
    buf_free(&body);
}

/* The dashboard's own listener: its files at /, and /admin/analytics,
 * without the admin key when dashboard.local_admin is set. */
static void on_dashboard(struct gw_worker *w, struct conn *c,
                         struct http_request *http)
{
    if (str_eq_lit(http->path, "/admin/analytics")) {
        admin_analytics_serve(w, c, http, w->cfg->dashboard_local_admin);
        return;
    }
    struct req *r = req_new(w, c, http);
    serve_static(r, http, http->path);
    req_free(r);
}

static void on_request(void *wctx, struct conn *c, struct http_request *http)
{
    struct gw_worker *w = wctx;
    struct str path = http->path;
    bool get = http->method == SERVER_GET || http->method == SERVER_HEAD;
    if (server_listener(c) == SERVER_EXTRA) {
        on_dashboard(w, c, http);
        return;
    }
    if (str_eq_lit(path, "/v1/chat/completions") ||
        str_eq_lit(path, "/chat/completions")) {
        if (http->method == SERVER_POST) {
            pipeline_chat(w, c, http);
            return;
        }
    }
    if (str_eq_lit(path, "/admin/keys") ||
        str_starts_with(path, "/admin/keys/")) {
        admin_serve(w, c, http);
        return;
    }
    if (str_eq_lit(path, "/admin/analytics")) {
        admin_analytics_serve(w, c, http, false);
        return;
    }
    struct req *r = req_new(w, c, http);
    if (str_eq_lit(path, "/v1/chat/completions") ||
        str_eq_lit(path, "/chat/completions")) {
        reply_error(r, RL_E_METHOD, "Use POST for /v1/chat/completions.",
                    NULL);
    } else if (str_eq_lit(path, "/healthz") || str_eq_lit(path, "/readyz")) {
        if (get) {
            serve_health(r, c, str_eq_lit(path, "/readyz"));
        } else {
            reply_error(r, RL_E_METHOD, NULL, NULL);
        }
    } else if (str_eq_lit(path, "/metrics")) {
        serve_metrics(r, http);
    } else if (str_starts_with(path, "/dashboard/")) {
        struct str rel = {path.p + 11, path.len - 11};
        serve_static(r, http, rel);
    } else if (str_eq_lit(path, "/dashboard")) {
        r->accounted = true;
        r->status = 308; /* so the page's relative asset paths resolve */
        server_respond(c, 308, "text/plain",
                       STR_LIT("Location: /dashboard/\r\n"), STR_LIT(""));
    } else if (str_eq_lit(path, "/v1/models") ||
               str_starts_with(path, "/v1/models/")) {
        if (get) {
            serve_models(r, http);
        } else {
            reply_error(r, RL_E_METHOD, NULL, NULL);
        }
    } else {
        req_hide_path(r, 0);
        reply_error(r, RL_E_NOT_FOUND, NULL, NULL);
    }
    req_free(r);
}

static void on_reject(void *wctx, struct conn *c, enum rl_err err)
{
    struct req *r = req_new(wctx, c, NULL);
    reply_error(r, err, NULL, NULL);
    req_free(r);
}

/* ---------------------------------------------------------------------
 * The main thread: signals, reload, drain
 * ------------------------------------------------------------------- */

static int nworkers_started;

static void on_hup(uv_signal_t *sig, int signum)
{
    (void)sig;
    (void)signum;
    struct buf errors;
    buf_init(&errors, 1 << 20);
    struct config *next = NULL;
    if (config_load(current->path, &next, &errors) != RL_OK) {
        /* Keep serving with what we have; say exactly what is wrong. */
        buf_append(&errors, "", 0);
        struct buf esc;
        buf_init(&esc, 2 << 20);
        buf_append(&esc, "", 0);
        buf_append_json_escaped(&esc, errors.p, errors.len);
        log_write(LOG_ERROR, "reload failed; still serving the previous "
                  "configuration", "\"errors\":\"%s\"", esc.p);
        buf_free(&esc);
        buf_free(&errors);
        return;
    }
    buf_free(&errors);
    for (int i = 0; i < nworkers_started; i++) {
        config_ref(next); /* one for each worker's swap_config */
    }
    server_broadcast(swap_config, next);
    config_unref(current);
    current = next;
    log_set_level(current->log_level);
    log_write(LOG_INFO, "configuration reloaded", "\"models\":%zu",
              current->nmodels);
}

static void on_stop(uv_signal_t *sig, int signum)
{
    log_write(LOG_INFO, "shutting down", "\"signal\":%d", signum);
    uv_close((uv_handle_t *)&sig_hup, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    (void)sig;
}

static bool open_log(const struct config *cfg)
{
    log_set_level(cfg->log_level);
    if (!cfg->log_file) {
        return true;
    }
    int fd = open(cfg->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                  0640);
    if (fd < 0) {
        log_write(LOG_ERROR, "cannot open log_file", "\"path\":\"%s\"",
                  cfg->log_file);
        return false;
    }
    log_set_fd(fd);
    return true;
}

/* Reads --listen HOST:PORT into opts (host copied into host). */
static bool parse_listen(const char *arg, char *host, size_t cap,
                         struct server_opts *opts)
{
    const char *colon = strrchr(arg, ':');
    if (!colon || colon == arg || (size_t)(colon - arg) >= cap) {
        return false;
    }
    memcpy(host, arg, (size_t)(colon - arg));
    host[colon - arg] = '\0';
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (!end || *end || colon[1] == '\0' || port < 0 || port > 65535) {
        return false;
    }
    opts->host = host;
    opts->port = (int)port;
    return true;
}

static void watch_signals(uv_loop_t *loop)
{
    uv_signal_init(loop, &sig_hup);
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_hup, on_hup, SIGHUP);
    uv_signal_start(&sig_term, on_stop, SIGTERM);
    uv_signal_start(&sig_int, on_stop, SIGINT);
}

int gateway_serve(struct config *cfg, const char *listen_override)
{
    current = cfg;
    if (!open_log(cfg)) {
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct server_opts opts = {
        .host = cfg->listen_host,
        .port = cfg->listen_port,
        .workers = cfg->workers,
        .extra_host = cfg->dashboard_host,
        .extra_port = cfg->dashboard_port,
    };
    char host[256];
    if (listen_override &&
        !parse_listen(listen_override, host, sizeof(host), &opts)) {
        fprintf(stderr, "relay serve: --listen expects HOST:PORT like "
                "127.0.0.1:8080, got \"%s\"\n", listen_override);
        return 2;
    }
    static struct server_hooks hooks = {
        .worker_start = worker_start,
        .worker_stop = worker_stop,
        .on_request = on_request,
        .on_reject = on_reject,
        .limits = limits,
        .on_tick = on_tick,
    };
    hooks.arg = cfg;
    /* Signal handlers first: a SIGTERM that comes as soon as the port
     * answers must drain, not kill. */
    uv_loop_t *loop = uv_default_loop();
    watch_signals(loop);
    /* The request log before the workers (migrations, a journal left by
     * an earlier run); a store that is down is no reason not to serve. */
    if (store_open(cfg->store, &(struct store_opts){
                       .retention_days = cfg->log_retention_days}) != RL_OK) {
        return 1;
    }
    /* The keys of the store, loaded before the first request; a store
     * that is down is retried by the cache's thread. */
    if (keycache_start(cfg->store, NULL) != RL_OK) {
        store_close();
        return 1;
    }
    if (server_start(&opts, &hooks) != RL_OK) {
        keycache_stop();
        store_close();
        return 1;
    }
    nworkers_started = opts.workers;
    if (cfg->nkeys == 0 && cfg->store && strcmp(cfg->store, "none") == 0) {
        log_write(LOG_WARN, "no API keys: auth.keys is empty and store: "
                  "none keeps no keys, so every /v1 request will get 401",
                  "\"hint\":\"list keys under auth.keys, or use a store "
                  "and relay keys create\"");
    }
    log_write(LOG_INFO, "relay listening",
              "\"address\":\"%s:%d\",\"workers\":%d,\"models\":%zu,"
              "\"config\":\"%s\"",
              opts.host, server_port(), opts.workers, cfg->nmodels,
              cfg->path);
    if (opts.extra_host) {
        log_write(LOG_INFO, "dashboard listening", "\"address\":\"%s:%d\","
                  "\"dir\":\"%s\"", opts.extra_host, server_extra_port(),
                  cfg->dashboard_dir);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    server_drain_and_join();
    keycache_stop();
    store_close(); /* every worker is done: drain the queue, then stop */
    uv_loop_close(loop);
    log_write(LOG_INFO, "stopped", NULL);
    config_unref(current);
    curl_global_cleanup();
    log_thread_exit();
    return 0;
}
