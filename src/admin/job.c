/*
 * job.c - one admin API operation run off the event loop: the request's
 * store work on libuv's thread pool, with its own store connection, and
 * the answer from the after-work callback on the loop. keys.c and
 * analytics.c describe their operation in a struct admin_job and call
 * admin_job_start(); this file owns the thread hop, the client leaving
 * meanwhile, and the mapping of the outcome to an answer.
 */
#include "admin/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "config/config.h"
#include "gateway/gateway.h"
#include "reply.h"
#include "request.h"
#include "server/server.h"

static void work(uv_work_t *w)
{
    struct admin_job *j = w->data;
    struct store_db db;
    if (store_db_open(j->r->cfg->store, true, &db, j->message,
                      sizeof(j->message)) != RL_OK) {
        j->err = RL_E_UPSTREAM_CONNECT; /* the store, not the request */
        return;
    }
    j->run(j, &db);
    store_db_close(&db);
}

static void on_gone(void *ctx)
{
    struct admin_job *j = ctx;
    j->gone = true;
    j->r->conn = NULL;
    j->r->client_gone = true;
    j->r->status = 499;
}

/* Answers a failed operation: the request's own mistake when the job
 * names a code for it, else the store's failure (503). */
static void reply_failure(struct admin_job *j)
{
    struct api_error e;
    if (j->err == RL_E_NOT_FOUND && j->not_found_code) {
        errors_from_rl(RL_E_NOT_FOUND, j->message, j->param, &e);
        e.code = j->not_found_code;
    } else if (j->err == RL_E_INVALID_REQUEST && j->invalid_code) {
        errors_from_rl(RL_E_INVALID_REQUEST, j->message, j->param, &e);
        e.code = j->invalid_code;
    } else {
        char msg[700];
        snprintf(msg, sizeof(msg), "%s: %s", j->failure, j->message);
        errors_from_rl(RL_E_INTERNAL, msg, NULL, &e);
        e.status = 503;
        e.code = "store_unavailable";
    }
    reply_api_error(j->r, &e);
}

static void after_work(uv_work_t *w, int status)
{
    struct admin_job *j = w->data;
    struct req *r = j->r;
    if (j->gone) {
        /* Nothing to answer; the request is still logged, once. */
    } else if (status != 0) {
        reply_error(r, RL_E_INTERNAL, NULL, NULL);
    } else if (j->err == RL_OK && j->body) {
        reply_json(r, j->status ? j->status : 200, str_from(j->body));
    } else if (j->err == RL_OK) {
        reply_error(r, RL_E_INTERNAL, NULL, NULL); /* no JSON was made */
    } else {
        reply_failure(j);
    }
    free(j->body);
    free(j);
    req_free(r);
}

void admin_job_start(struct gw_worker *w, struct conn *c,
                     struct admin_job *j)
{
    j->work.data = j;
    server_on_abort(c, on_gone, j);
    if (uv_queue_work(w->loop, &j->work, work, after_work) != 0) {
        server_on_abort(c, NULL, NULL);
        reply_error(j->r, RL_E_INTERNAL, NULL, NULL);
        struct req *r = j->r;
        free(j);
        req_free(r);
    }
}
