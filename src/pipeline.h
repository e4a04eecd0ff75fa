/*
 * pipeline.h - the path of one chat completion through the six steps.
 */
#ifndef RL_PIPELINE_H
#define RL_PIPELINE_H

struct gw_worker;
struct conn;
struct http_request;

/* Serves POST /v1/chat/completions on c. */
void pipeline_chat(struct gw_worker *w, struct conn *c,
                   struct http_request *http);

#endif
