/*
 * semsync.h - the semantic index's one writer thread (semsync.c): adds
 * this process's entries, removes stale and expired ones, and reads the
 * entries of every gateway from Redis (a stream per scope), from the
 * beginning at start (the rebuild) and then incrementally.
 *
 * Inside src/cache only (semantic.c uses it).
 */
#ifndef RL_CACHE_SEMSYNC_H
#define RL_CACHE_SEMSYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/internal.h"

/* Every scope that has a semantic stream, scored by its last write (Unix
 * ms): gateways read the streams of scopes written since they last
 * looked. One key for all scopes (outside any {c:scope} slot). */
#define SEMSYNC_SCOPES_KEY "relay:cache:semantic:scopes"

/*
 * Starts the thread over set (which must outlive cache_semsync_stop):
 * with redis_url (NULL or empty: in-process only) it reads
 * relay:{c:<scope>}:sem streams every sync_ms, keeping only entries of
 * model fingerprint fp and dim floats.
 */
void cache_semsync_start(struct cache_semset *set, const char *redis_url,
                         const char fp[17], size_t dim, uint64_t sync_ms);
/* Stops and joins the thread; what was not applied is dropped. */
void cache_semsync_stop(void);
/* Queues a copy of it for the index (any thread, never blocks long). */
void cache_semsync_put(const struct cache_semset_item *it);
/* Queues the removal of (scope, id). */
void cache_semsync_remove(const char *scope, const unsigned char id[32]);
/* Whether the first full read of Redis is done (true without Redis). */
bool cache_semsync_ready(void);

#endif
