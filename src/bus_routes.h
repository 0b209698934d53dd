/* bus_routes.h -- a profile's bus routes at work: events the backend
 * publishes on Redis in its own shape become emits.
 *
 * The routes (aeolus-profile(5), BUS ROUTES) name the channels or glob
 * patterns to listen to and what each message becomes: an event name, its
 * data and the rooms it goes to, all templates over the message.
 *
 * Every instance subscribes by itself, on a Redis connection of its own
 * (PSUBSCRIBE for the patterns, SUBSCRIBE for the plain channels; again
 * after each reconnect), and delivers what it receives to its own sockets
 * only (sio_broadcast_local): the backend's one publish reaches every
 * instance already, so nothing goes on the cluster bus. All the rooms of a
 * message go into one broadcast, so a socket in several of them gets one
 * copy.
 *
 * Routing is pure (routes_route: a message in, an emit out), so the tests
 * and the fuzzer drive it without Redis or sockets. */
#ifndef AEOLUS_BUS_ROUTES_H
#define AEOLUS_BUS_ROUTES_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include <json-c/json.h>

#include "config.h"
#include "profile.h"

#define ROUTES_MAX_MESSAGE (1 << 20)  /* larger messages are dropped */
#define ROUTES_MAX_CHANNEL 1024       /* longer channel names too */
#define ROUTES_MAX_ROOMS 256          /* rooms of one emit; more are left out */
#define ROUTES_MAX_NAME 512           /* longer room or event names are left out */

struct routes;

/* The routes of p with their channels evaluated over the configuration
 * ({events.redis_channel}, {redis.prefix}). p must outlive them. NULL with
 * a message in err when a channel is empty or longer than
 * ROUTES_MAX_CHANNEL. */
struct routes *routes_new(const struct profile *p, const struct config *cfg, char *err,
                          size_t errlen);
void routes_free(struct routes *r);

/* The distinct plain channels (patterns = 0) or glob patterns (1) to
 * subscribe to; *out is borrowed. */
size_t routes_subscriptions(const struct routes *r, int patterns, const char *const **out);

/* How target names become rooms (the application's rules): a user id
 * through the personal room (NULL: none), a role through the role rooms.
 * Both return malloc'd names. */
struct route_rooms {
	char *(*user_room)(void *ud, const char *user_id);
	size_t (*role_rooms)(void *ud, const char *role, char **out, size_t max);
	void *ud;
};

/* What a message becomes. all: every socket (rooms is then empty). */
struct route_emit {
	size_t route;                /* its index in the profile */
	char *event;
	json_object *args;           /* [data], or [] */
	int all;
	char *rooms[ROUTES_MAX_ROOMS];
	size_t nrooms;
	char *except[ROUTES_MAX_ROOMS];
	size_t nexcept;
};

/* Routes the message (len bytes) that came on channel through the
 * subscription sub (a glob pattern when pattern is set), at now_ms: the
 * routes of that subscription are tried in order and the first whose
 * condition holds makes the emit. Returns 1 with *out filled (free it with
 * route_emit_clear), or 0 with the reason in why. */
int routes_route(const struct routes *r, const char *sub, int pattern, const char *channel,
                 const char *msg, size_t len, uint64_t now_ms, const struct route_rooms *rr,
                 struct route_emit *out, char *why, size_t whylen);
void route_emit_clear(struct route_emit *e);

/* Does channel match the glob pattern (Redis's syntax: * ? [abc] [^a]
 * [a-z] \x)? What each '*' matched goes into caps (offset, length), at
 * most ncaps of them. Returns 1, or 0 (also when the pattern needs too much
 * work). */
struct route_cap {
	size_t off, len;
};
int routes_glob(const char *pattern, const char *channel, struct route_cap *caps, size_t ncaps);

/* --- the runtime --- */

struct app;
struct bus_routes;

/* Starts listening for the profile's routes on the application's namespace.
 * Without routes or without redis.url it does nothing (and says so once
 * when there are routes). NULL with err on a bad channel. */
struct bus_routes *bus_routes_start(struct event_base *base, const struct config *cfg,
                                    struct app *app, char *err, size_t errlen);
void bus_routes_free(struct bus_routes *b);

#endif
