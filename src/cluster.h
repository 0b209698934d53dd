/* cluster.h -- what the instances sharing one Redis know of each other:
 * each process's instance id, and the bus between them (Redis pub/sub).
 *
 * Without redis.url there is no cluster: cluster_enabled() is 0, the
 * instance id is still set (the memory store does not need it) and every
 * bus call is a no-op.
 *
 * Channels, under the key prefix P:
 *   P:bus           every instance: broadcasts (one publish per emit)
 *   P:inst:ID       one instance: packets for sessions it owns, wake-ups
 *                   for GETs it holds
 *
 * Keys of the Engine.IO sessions (see eio.c):
 *   P:eio:SID       hash {owner, ws}: the session exists while this does
 *                   (TTL pingInterval + pingTimeout, refreshed by the owner)
 *   P:eio:SID:q     list: packets waiting for the client's next GET
 *   P:eio:SID:w     the instance holding the client's GET (PX) */
#ifndef AEOLUS_CLUSTER_H
#define AEOLUS_CLUSTER_H

#include <stddef.h>
#include <event2/event.h>

#include "config.h"
#include "util.h"

/* Sets the instance id and, with redis.url set, opens the publishing and
 * the subscribing connections. Returns 0, or -1 with a message in err. */
int cluster_init(struct event_base *base, const struct config *cfg, char *err, size_t errlen);
void cluster_free(void);

int cluster_enabled(void);
/* This process's id: ID_LEN characters, new at every start (and in every
 * worker). */
const char *cluster_instance(void);

#endif
