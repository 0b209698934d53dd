/* app.h -- the application layer: a profile's vocabulary served on a
 * Socket.IO namespace, with authentication, automatic rooms, join policies,
 * presence, typing, history, slow mode and limits, all state in a store.
 *
 * Flow of a client event: rate limit -> the profile's event spec -> required
 * fields -> the action (app.c: checks, store operations, asynchronous) ->
 * the spec's emits, built from templates over the action's context, each
 * encoded once and broadcast -> the ack. A refusal becomes the profile's
 * error ack or error event; it never closes the connection. */
#ifndef AEOLUS_APP_H
#define AEOLUS_APP_H

#include <stdint.h>
#include <event2/event.h>

#include "config.h"
#include "profile.h"
#include "redis.h"
#include "store.h"

struct app;

/* Serves profile p on the configuration's path (or the profile's). The app
 * borrows p, st and redis (may be NULL) for its whole life. */
/* Checks what app_start would refuse (join policies, role rooms, keys,
 * the Redis URL) without starting anything, so that a bad value stops the
 * start before the daemon detaches. Returns 0, or -1 with a message. */
int app_check(const struct config *cfg, struct profile *p, char *err, size_t errlen);

struct app *app_start(struct event_base *base, const struct config *cfg, struct profile *p,
                      struct store *st, struct redis *redis, char *err, size_t errlen);

/* --- the HTTP API's entry points (api.c) --- */

struct sio_nsp;

/* How app_run ended: code NULL when the event ran, reply then being the
 * data of its reply emit (borrowed for the callback; NULL when it has
 * none); otherwise the refusal: code ("bad_request", "forbidden",
 * "not_member", "not_found", "slow_mode", "rate_limited", "too_large",
 * "unavailable"), message, and retry_ms for slow_mode. */
struct app_outcome {
	const char *code;
	const char *message;
	uint64_t retry_ms;
	json_object *reply;
};
typedef void (*app_run_cb)(const struct app_outcome *o, void *ud);

/* Runs the profile's event (a client event, or one of its "api" member)
 * with no socket, on behalf of user ({"id", "name"?, "role"?}; NULL for no
 * one, but a send needs one), with payload as the client's payload (req)
 * and api as "api" in the context (both borrowed, may be NULL). Everything
 * a client's event goes through applies (required fields, the action's
 * checks, slow mode, size limits, history), except the rate limit and the
 * admin role of init: the API holds the server secret. Emits that leave
 * out the sender leave out no one (no socket of the user sent it). Actions
 * that need a socket (join, leave, typing) are refused with not_found.
 * cb is called exactly once, possibly before app_run returns. */
void app_run(struct app *a, json_object *user, const char *event, json_object *payload,
             json_object *api, app_run_cb cb, void *ud);

/* The namespace the profile is served on (for the API's emits). */
struct sio_nsp *app_nsp(const struct app *a);
const struct profile *app_profile(const struct app *a);
/* The personal room of a user (malloc'd), or NULL when the profile has none. */
char *app_user_room(struct app *a, const char *user_id);
/* The automatic rooms of a role (compared without case; "*" and "else"
 * entries aside), malloc'd into out; returns how many (at most max). */
size_t app_role_rooms(const struct app *a, const char *role, char **out, size_t max);
/* The automatic rooms a user of this role joins for it: those naming the
 * role (without case), or, when none does, those listing "else" ("*"
 * rooms aside). malloc'd into out; returns how many (at most max). */
size_t app_rooms_of_role(const struct app *a, const char *role, char **out, size_t max);
/* Is name reserved: Socket.IO's own, or one the vocabulary sends or
 * receives (the relay action refuses them)? */
int app_reserved_event(struct app *a, const char *name);

#endif
