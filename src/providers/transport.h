/*
 * transport.h - libcurl's multi interface driven by a worker's libuv loop.
 *
 * Internal to src/providers/. One transport per worker thread: its multi
 * handle owns the worker's upstream connection pool (keep-alive, TLS
 * sessions), so nothing here is shared between threads. upstream.c adds
 * easy handles; the transport tells it when each one is done.
 */
#ifndef RL_TRANSPORT_H
#define RL_TRANSPORT_H

#include <curl/curl.h>
#include <uv.h>

struct transport;

/* Called once per finished easy handle, after it has been removed from the
 * multi handle; the callee owns easy again (give it back with
 * transport_easy_put). */
typedef void (*transport_done_fn)(CURL *easy, CURLcode code);

/* Returns a transport on loop. */
struct transport *transport_new(uv_loop_t *loop, transport_done_fn done);
/* Closes the handles; every easy handle must be done or removed before. */
void transport_free(struct transport *t);
/* Returns a reset easy handle from the pool (or a new one). */
CURL *transport_easy_get(struct transport *t);
/* Gives an easy handle back to the pool (it is reset on reuse). */
void transport_easy_put(struct transport *t, CURL *easy);
/* Starts a configured transfer. Returns 0 or a CURLMcode. */
int transport_add(struct transport *t, CURL *easy);
/* Stops a transfer without calling done; the caller owns easy again.
 * Must not be called from inside one of easy's own curl callbacks. */
void transport_remove(struct transport *t, CURL *easy);

#endif
