/* sio_int.h -- what sio.c and sio_recovery.c share: the Socket.IO
 * server's structures and the recovery's entry points. Private to them. */
#ifndef AEOLUS_SIO_INT_H
#define AEOLUS_SIO_INT_H

#include <event2/event.h>

#include "dict.h"
#include "sio.h"
#include "util.h"

struct room {
	char *name;
	struct dict members;         /* socket id -> socket */
};

/* The broadcasts of the recovery window, oldest first (sio_recovery.c). */
struct rec_log {
	struct rec_entry *v;
	size_t head, len, cap;
};

struct sio_nsp {
	struct sio_nsp *next;
	struct sio_server *srv;
	const char *name;
	const struct sio_nsp_ops *ops;
	void *ud;
	struct dict sockets;         /* id -> connected socket */
	struct dict rooms;           /* name -> struct room */
	struct rec_log log;
};

struct sio_server {
	struct event_base *base;
	const struct config *cfg;
	const char *path;
	struct sio_nsp *nsps;
	unsigned long epoch;         /* broadcast stamp, see sio_broadcast */
	struct sio_server *next;     /* all servers (recovery finds them by path) */
};

struct sio_client {
	struct sio_server *srv;
	struct eio_session *eio;
	struct sio_socket *sockets;
	struct event *connect_timer;
	struct sio_packet pending;   /* binary packet waiting for attachments */
	int pending_active;
	int natts;
	struct eio_msg **atts;       /* max_attachments slots, when needed */
};

struct sio_socket {
	char id[ID_LEN + 1];
	struct sio_nsp *nsp;
	struct sio_client *client;
	struct sio_socket *next;
	int connected;
	struct room **rooms;
	size_t nrooms, caprooms;
	unsigned long epoch;
	void *data;
	char pid[ID_LEN + 1];        /* recovery: the private id, "" when off */
	int recovered;               /* came back with its state */
	struct recovery *rec;        /* recovery under way, or NULL */
};

/* --- sio.c, for the recovery --- */

void sio_send_packet(struct sio_client *c, enum sio_type type, const char *nsp, json_object *data);
struct sio_nsp *sio_find_nsp(struct sio_server *srv, const char *name);
struct sio_server *sio_servers(void);

/* --- sio_recovery.c: connection state recovery (Socket.IO >= 4.6) ---
 *
 * With socketio.recovery_window > 0, every socket gets a private id (pid)
 * in its CONNECT, and every broadcast event an offset as its last
 * argument, which the client keeps. A socket that goes away without
 * asking is saved (its id, rooms and the application's state) for the
 * window; a client that connects again with {pid, offset} in its auth
 * payload, on any instance, gets the same id, its rooms, and every
 * broadcast it missed since that offset, in order, once. Each instance
 * logs the broadcasts it delivers for the window; the instance the socket
 * left answers for the packets it missed. */

#define REC_OFF_LEN 40

/* Stamps an event broadcast with a new offset (written into off) and logs
 * it: the packet to send instead (the caller frees it), or NULL when
 * recovery is off or o is not an event (off is then ""). */
struct sio_out *rec_stamp(struct sio_nsp *nsp, const struct sio_out *o,
                          const char *const *rooms, size_t nrooms,
                          const char *const *except, size_t nexcept,
                          const char *skip, char off[REC_OFF_LEN]);
/* Logs a broadcast that another instance stamped. */
void rec_log_add(struct sio_nsp *nsp, const char *off, const struct sio_out *o,
                 const char *const *rooms, size_t nrooms,
                 const char *const *except, size_t nexcept, const char *skip);
/* A CONNECT with {pid, offset}: 1 when a recovery started (it calls the
 * namespace's on_connect itself, later), 0 when none applies. */
int rec_begin(struct sio_socket *s, json_object *auth);
/* In sio_accept(), before the CONNECT: settles the socket's id and pid
 * (the old ones when recovered). */
void rec_settle(struct sio_socket *s);
/* In sio_accept(), after the CONNECT: the application's state and the
 * missed packets. */
void rec_replay(struct sio_socket *s);
/* A broadcast reached a socket still recovering (in its rooms, not yet
 * connected): kept until the replay. */
void rec_buffer(struct sio_socket *s, const char *off, const struct sio_out *o);
/* The socket goes, for reason: saved when recoverable; a recovery under
 * way is dropped. */
void rec_socket_gone(struct sio_socket *s, const char *reason);
void rec_init(void);

#endif
