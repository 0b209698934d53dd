/* eio.h -- the Engine.IO v4 server: sessions over HTTP long-polling and
 * WebSocket, the upgrade between them, and the heartbeat.
 *
 * An endpoint is a path ("/socket.io/") served by a table of callbacks.
 * For every session the endpoint sees, in order:
 *
 *   on_open     once, after the handshake was sent;
 *   on_message  for every message packet (text or binary) the client sent;
 *   on_close    once, with the reason; the session is freed right after.
 *
 * The endpoint sends with eio_send(), which never calls back into the
 * endpoint: a send that finds the session over its limits marks it closing
 * and on_close comes later, from the loop. So it is safe to send to many
 * sessions while walking a list of them. eio_close() likewise only marks
 * the session; the transport is released and on_close called in a later
 * pass of the loop. */
#ifndef AEOLUS_EIO_H
#define AEOLUS_EIO_H

#include <stddef.h>
#include <event2/event.h>
#include <json-c/json.h>

#include "config.h"
#include "eio_codec.h"

struct eio_session;

struct eio_endpoint_ops {
	void (*on_open)(struct eio_session *s, void *ud);
	/* Returns 0, or -1 when the message breaks the protocol above (the
	 * session is then closed with "parse error"). */
	int (*on_message)(struct eio_session *s, const char *data, size_t len, int binary, void *ud);
	void (*on_close)(struct eio_session *s, const char *reason, void *ud);
};

/* What the client's handshake request said, kept for the session's life. */
struct eio_handshake {
	char addr[64];               /* peer address */
	json_object *query;          /* the query parameters, decoded: {"k": "v", ...} */
	char *authorization;         /* the Authorization header, or NULL */
	char *origin;                /* the Origin header, or NULL */
};

void eio_init(struct event_base *base, const struct config *cfg);
/* Serves path (which must stay valid) with ops. Returns 0 or -1. */
int eio_endpoint_add(const char *path, const struct eio_endpoint_ops *ops, void *ud);

/* Queues m for the client (the session takes its own reference). Returns
 * 0, or -1 if the session is closing or was just cut off for its limits. */
int eio_send(struct eio_session *s, struct eio_msg *m);
/* Closes the session from the server side. */
void eio_close(struct eio_session *s, const char *reason);
/* Closes every session, telling clients to reconnect (shutdown). */
void eio_close_all(const char *reason);
/* Answers every request still waiting (on Redis): before http_stop(). */
void eio_stop(void);

const char *eio_sid(const struct eio_session *s);
const char *eio_transport(const struct eio_session *s);   /* "polling" or "websocket" */
const struct eio_handshake *eio_handshake(const struct eio_session *s);
void eio_set_data(struct eio_session *s, void *data);
void *eio_data(const struct eio_session *s);

/* Counters for /stats and the shutdown wait. */
struct eio_stats {
	unsigned sessions;
	unsigned polling;
	unsigned websocket;
	unsigned long long opened;
	unsigned long long msgs_in, msgs_out;
	unsigned suspended;          /* requests waiting on Redis (cluster) */
};
void eio_get_stats(struct eio_stats *st);

#endif
