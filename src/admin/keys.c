/*
 * keys.c - the admin API for keys, behind the master key (admin_key):
 *
 *   GET    /admin/keys        the keys, live and revoked (never a hash)
 *   POST   /admin/keys        a new key: 201 with the key, shown once
 *   DELETE /admin/keys/{id}   revokes it: 200, or 404
 *
 * The store calls block (libpq, SQLite), so each operation is a job on
 * libuv's thread pool (uv_queue_work on the worker's loop) with a store
 * connection of its own, and the answer is sent from the after-work
 * callback on the loop. If the client leaves meanwhile the job finishes
 * anyway (a key made is made) but its connection is not touched. Read
 * admin_serve() first.
 */
#include "admin/admin.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "auth/auth.h"
#include "config/config.h"
#include "gateway/gateway.h"
#include "reply.h"
#include "request.h"
#include "server/server.h"
#include "util/alloc.h"

enum job_op {
    JOB_LIST,
    JOB_CREATE,
    JOB_REVOKE,
};

struct job {
    struct admin_job base;   /* first: the job frees the whole struct */
    enum job_op op;
    struct store_key spec;   /* create: the key to make */
    char target[64];         /* revoke: the id */
};

/* ---------------------------------------------------------------------
 * On the thread pool
 * ------------------------------------------------------------------- */

static char *dump(json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    return text;
}

static void do_list(struct job *j, struct store_db *db)
{
    struct store_key *keys = NULL;
    size_t n = 0;
    j->base.err = store_keys_list(db, true, &keys, &n, j->base.message,
                             sizeof(j->base.message));
    if (j->base.err == RL_OK) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(a, admin_key_json(&keys[i]));
        }
        j->base.body = dump(json_pack("{s:s, s:o}", "object", "list", "data", a));
        j->base.status = 200;
    }
    free(keys);
}

static void do_create(struct job *j, struct store_db *db)
{
    struct auth_new_key nk;
    if (auth_key_generate(&nk) != RL_OK) {
        j->base.err = RL_E_IO;
        snprintf(j->base.message, sizeof(j->base.message), "no random bytes");
        return;
    }
    memcpy(j->spec.id, nk.id, sizeof(j->spec.id));
    memcpy(j->spec.prefix, nk.prefix, sizeof(j->spec.prefix));
    memcpy(j->spec.sha256_hex, nk.sha256_hex, sizeof(j->spec.sha256_hex));
    j->base.err = store_key_insert(db, &j->spec, j->base.message, sizeof(j->base.message));
    if (j->base.err == RL_OK) {
        json_t *o = admin_key_json(&j->spec);
        json_object_set_new(o, "key", json_string(nk.key));
        j->base.body = dump(o);
        j->base.status = 201;
    }
    explicit_bzero(&nk, sizeof(nk));
}

static void do_revoke(struct job *j, struct store_db *db)
{
    struct store_key k;
    j->base.err = store_key_revoke(db, j->target, &k, j->base.message,
                              sizeof(j->base.message));
    if (j->base.err == RL_OK) {
        j->base.body = dump(admin_key_json(&k));
        j->base.status = 200;
    }
}

/* On the pool thread: the operation j asks for. */
static void run(struct admin_job *base, struct store_db *db)
{
    struct job *j = (struct job *)base;
    if (j->op == JOB_LIST) {
        do_list(j, db);
    } else if (j->op == JOB_CREATE) {
        do_create(j, db);
    } else {
        do_revoke(j, db);
    }
    if (base->err == RL_OK && j->op != JOB_LIST) {
        keycache_refresh(); /* this gateway sees its own change at once */
    }
}

bool admin_authorized(struct req *r, const struct http_request *http)
{
    const char *admin = r->cfg->admin_key;
    if (!admin || !*admin) {
        reply_error(r, RL_E_FORBIDDEN, "The admin API is off: no admin_key "
                    "is configured. Set admin_key in relay.yaml (admin_key: "
                    "${RELAY_ADMIN_KEY}) and reload.", NULL);
        return false;
    }
    struct str v = str_trim(server_header(http, "authorization"));
    bool bearer = v.len > 7 && strncasecmp(v.p, "Bearer ", 7) == 0;
    struct str key = bearer ? str_trim((struct str){v.p + 7, v.len - 7})
                            : (struct str){"", 0};
    unsigned char want[32];
    unsigned char got[32];
    SHA256((const unsigned char *)admin, strlen(admin), want);
    SHA256((const unsigned char *)key.p, key.len, got);
    if (!bearer || CRYPTO_memcmp(want, got, sizeof(got)) != 0) {
        reply_error(r, RL_E_UNAUTHORIZED, bearer
                    ? "Incorrect admin key. The admin API wants "
                      "Authorization: Bearer <admin_key of relay.yaml>."
                    : "Missing admin key. Send Authorization: Bearer "
                      "<admin_key of relay.yaml>.", NULL);
        return false;
    }
    return true;
}

/* Reads what the request asks for into j; answers 400/404/405 and returns
 * false when it cannot be done. */
static bool route(struct req *r, const struct http_request *http,
                  struct job *j)
{
    struct str path = http->path;
    size_t base = strlen("/admin/keys");
    bool collection = path.len == base || (path.len == base + 1);
    if (collection && http->method == SERVER_GET) {
        j->op = JOB_LIST;
        return true;
    }
    if (collection && http->method == SERVER_POST) {
        char err[400];
        const char *param = NULL;
        struct str body = {http->body.p ? http->body.p : "", http->body.len};
        if (!admin_body_parse(body, &j->spec, err, sizeof(err), &param)) {
            reply_error(r, RL_E_INVALID_REQUEST, err, param);
            return false;
        }
        j->op = JOB_CREATE;
        return true;
    }
    struct str id = {path.p + base + 1, path.len > base + 1
                                            ? path.len - base - 1 : 0};
    if (!collection && http->method == SERVER_DELETE && id.len > 0 &&
        id.len < sizeof(j->target)) {
        j->op = JOB_REVOKE;
        memcpy(j->target, id.p, id.len);
        j->target[id.len] = '\0';
        return true;
    }
    reply_error(r, RL_E_METHOD, collection
                ? "Use GET to list keys or POST to create one."
                : "Use DELETE /admin/keys/{id} to revoke a key.", NULL);
    return false;
}

void admin_serve(struct gw_worker *w, struct conn *c,
                 struct http_request *http)
{
    struct req *r = req_new(w, c, http);
    struct job *j = rl_calloc(1, sizeof(*j));
    j->base.r = r;
    bool allowed = admin_authorized(r, http);
    if (!allowed) {
        req_hide_path(r, strlen("/admin/keys")); /* it may hold anything */
    }
    if (!allowed || !route(r, http, j)) {
        free(j);
        req_free(r);
        return;
    }
    j->base.run = run;
    j->base.failure = "The key store failed";
    j->base.param = "id";
    j->base.not_found_code = "key_not_found";
    j->base.invalid_code = "invalid_key";
    admin_job_start(w, c, &j->base);
}
