/*
 * pipeline.h - the path of one chat completion through the six steps.
 */
#ifndef RL_PIPELINE_H
#define RL_PIPELINE_H

#include <stdbool.h>

struct gw_worker;
struct conn;
struct http_request;
struct req;

/* Step 1 for any route that needs an API key: checks http's Authorization
 * header and records who is calling in r (key id, name, prefix, allowed
 * models; r->who in r's arena). Returns false after answering 401 (the
 * message says why, never the key). */
bool pipeline_authenticate(struct req *r, const struct http_request *http);

/* Serves POST /v1/chat/completions on c. */
void pipeline_chat(struct gw_worker *w, struct conn *c,
                   struct http_request *http);

#endif
