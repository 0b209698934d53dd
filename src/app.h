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

#endif
