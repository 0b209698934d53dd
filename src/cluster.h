/* cluster.h -- what the instances sharing one Redis know of each other:
 * each process's instance id, the bus between them (Redis pub/sub), and
 * the Lua scripts the modules run there.
 *
 * Without redis.url there is no cluster: cluster_enabled() is 0, the
 * instance id is still set, and the bus calls do nothing.
 *
 * Two connections of our own: one for commands (PUBLISH, EVALSHA), one
 * subscribed to two channels under the key prefix P:
 *   P:bus           every instance: broadcasts (one publish per emit)
 *   P:inst:ID       this instance: messages for the sessions it owns and
 *                   wake-ups for the requests it holds (eio.c)
 * A message on P:inst:ID is a kind byte and a body; the kinds belong to
 * whoever registered for them (cluster_on_direct).
 *
 * While Redis is down, publishing does nothing and script calls fail at
 * once: each instance goes on serving its own connections. */
#ifndef AEOLUS_CLUSTER_H
#define AEOLUS_CLUSTER_H

#include <stddef.h>
#include <event2/event.h>

#include "buf.h"
#include "config.h"
#include "eio_codec.h"
#include "redis.h"
#include "util.h"

/* Sets the instance id and, with redis.url set, opens the connections.
 * Returns 0, or -1 with a message in err. */
int cluster_init(struct event_base *base, const struct config *cfg, char *err, size_t errlen);
void cluster_free(void);

int cluster_enabled(void);
/* Both connections up and subscribed. */
int cluster_up(void);
/* This process's id: ID_LEN characters, new at every start (and in every
 * worker). */
const char *cluster_instance(void);
/* redis.prefix. */
const char *cluster_prefix(void);

/* --- broadcasts --- */

/* A broadcast as sio_broadcast() takes it; skip is a socket id or NULL; m
 * are the encoded packets (a packet and its attachments). With disconnect
 * set it carries no packets (n is 0): the sockets it targets (in rooms, or
 * with one of ids) are disconnected instead (sio_disconnect_where). */
struct cluster_bcast {
	const char *path;            /* the Socket.IO server's path */
	const char *nsp;
	const char *const *rooms;
	size_t nrooms;
	const char *const *except;
	size_t nexcept;
	const char *skip;
	const char *offset;          /* connection state recovery's, or "" */
	struct eio_msg *const *m;
	int n;
	int disconnect;
	const char *const *ids;      /* disconnect: socket ids */
	size_t nids;
};

/* Publishes b for the other instances (one PUBLISH). Does nothing when not
 * in a cluster or Redis is down. */
void cluster_broadcast(const struct cluster_bcast *b);
/* cb gets every broadcast another instance published (everything in b is
 * borrowed for the call). One callback per path; at most 4. */
typedef void (*cluster_bcast_cb)(const struct cluster_bcast *b, void *ud);
int cluster_on_broadcast(const char *path, cluster_bcast_cb cb, void *ud);

/* The message that carries a broadcast on the bus, and back (pure: for
 * the fuzzer and the tests). decode calls cb (with everything borrowed
 * for the call) and returns 0, or returns -1 when the message does not
 * parse, every field checked against its end. */
void cluster_bcast_encode(struct buf *out, const char *origin, const struct cluster_bcast *b);
typedef void (*cluster_decoded_cb)(const struct cluster_bcast *b, const char *origin, void *ud);
int cluster_bcast_decode(const char *msg, size_t len, cluster_decoded_cb cb, void *ud);

/* --- messages to one instance --- */

typedef void (*cluster_direct_cb)(const char *body, size_t len, void *ud);
/* cb gets the messages of this kind sent to this instance. */
void cluster_on_direct(char kind, cluster_direct_cb cb, void *ud);

/* cb learns when the command connection goes down (up = 0) and comes
 * back (up = 1). One callback. */
void cluster_on_state(void (*cb)(int up, void *ud), void *ud);

/* --- scripts --- */

/* Registers a Lua script (the text must stay valid); loaded on every
 * connect. Call before cluster_init. Returns its number, or -1. */
int cluster_script(const char *lua);
/* EVALSHA with no keys and these arguments (NULL lens: C strings).
 * Returns 0, or -1 when Redis is down (cb is then not called). */
int cluster_eval(int script, redis_reply_cb cb, void *ud, int argc, const char **argv,
                 const size_t *lens);
/* Any command (argv[0] is its name). Returns 0, or -1 when Redis is down. */
int cluster_command(redis_reply_cb cb, void *ud, int argc, const char **argv,
                    const size_t *lens);
/* PUBLISH P:inst:ID kind+body. */
int cluster_send(const char *instance, char kind, const char *body, size_t len);

#endif
