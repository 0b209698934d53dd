/* stats.h -- the daemon's counters and its operator endpoints:
 *
 *   GET /stats     JSON: connections, sessions by transport, sockets and
 *                  rooms, users (this instance, the cluster's from the
 *                  store, by role here, and in the cluster for the roles
 *                  the profile counts), events in and out (totals, per
 *                  second over the last 10 s, the busiest names), the store
 *                  and Redis, the process. The shape is aeolusd(8)'s, plus
 *                  the profile's fields (stats_profile_fields).
 *   GET /metrics   the same and more as Prometheus text (format 0.0.4).
 *
 * The counters are incremented where things happen, at one place each:
 * client events (sio.c, as they are dispatched), events sent (sio.c, per
 * recipient socket), users (app.c, as a socket is accepted and goes),
 * store operations (a store_timed_new() wrapper), API requests (the API).
 * The rest is read when asked: eio_get_stats(), ws_count(), the
 * namespaces (sio_foreach_nsp()), the process (/proc, getrusage).
 *
 * Every label set is bounded: event names are the profile's vocabulary
 * (at most 128) plus "other"; roles the first 16 seen plus "other"; HTTP
 * statuses 100..599; store operations and namespaces are fixed. The
 * counters are per process: with server.workers, each worker answers for
 * itself (as /health does), and a scraper sums them. */
#ifndef AEOLUS_STATS_H
#define AEOLUS_STATS_H

#include <stddef.h>
#include <event2/event.h>
#include <json-c/json.h>

#include "config.h"
#include "profile.h"
#include "redis.h"
#include "store.h"

/* --- counters: cheap, callable from anywhere, before stats_start too --- */

/* A client sent the event name (NUL-terminated). */
void stats_event_in(const char *name);
/* The event whose name is name[0..len) as it is written in the packet
 * (JSON-escaped, not NUL-terminated) went out to n sockets. */
void stats_events_out(const char *name, size_t len, size_t n);
/* A socket of user, with role (NULL: none), was accepted / has gone. A
 * user is online while it has a socket here. */
void stats_user_on(const char *user, const char *role);
void stats_user_off(const char *user, const char *role);
/* The HTTP API answered a request with status. */
void stats_api_request(unsigned status);

/* The roles a profile's stats.roles names are counted across the cluster
 * (users.cluster_by_role): the application makes each socket of a user
 * with such a role present, in the store, in the role's group as well as in
 * its namespace. A group is a presence namespace of its own, "role:ROLE"
 * (a Socket.IO namespace starts with '/'): its name goes into buf (at least
 * STATS_GROUP_MAX bytes for a role of the profile). Returns 0, or -1 when
 * it does not fit. */
#define STATS_GROUP_MAX 256
int stats_role_group(const char *role, char *buf, size_t len);

/* Adds the profile's fields (its member "http", aeolus-profile(5)) for the
 * document at path ("/", "/health", "/stats") to doc, each evaluated over
 * doc as it was; a field of the same name is replaced. Nothing without a
 * profile (stats_start) or fields for path. */
void stats_profile_fields(const char *path, json_object *doc);

/* --- the endpoints --- */

/* Adds the routes /stats and /metrics; p (NULL: the conformance profile)
 * gives the event names counted by name, and must outlive the stats.
 * Returns 0, or -1 when the routes cannot be added. */
int stats_start(struct event_base *base, const struct config *cfg, const struct profile *p);
/* The store to report on, wrapped to time its operations (use the store
 * returned: it owns st), and the application's Redis connection (NULL:
 * none). */
struct store *stats_watch_store(struct store *st, struct redis *redis);
/* Answers the /stats requests still waiting on the store: before
 * http_stop(). */
void stats_stop(void);

#endif
