/* sio.h -- the Socket.IO v5 server on top of an Engine.IO endpoint:
 * namespaces, sockets, rooms, events, acks, binary attachments.
 *
 * The application registers namespaces with callbacks:
 *
 *   on_connect(socket, auth)   a client asks to join the namespace. Decide
 *                              now or later (asynchronous auth) by calling
 *                              sio_accept() or sio_refuse(); until then the
 *                              socket is not connected and gets no packets.
 *   on_event(socket, ev)       an EVENT or BINARY_EVENT from the client.
 *   on_disconnect(socket, why) the socket is gone; it is freed right after.
 *                              Called for every socket given to on_connect
 *                              (connected or still being decided), except
 *                              one refused with sio_refuse().
 *
 * Emits are encoded once (struct sio_out) and the same bytes are queued
 * for every recipient; sio_broadcast() walks the target rooms, skipping
 * sockets in the excluded rooms, and gives a socket in several target rooms
 * one copy. Sending never calls back into the application. */
#ifndef AEOLUS_SIO_H
#define AEOLUS_SIO_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#include "config.h"
#include "eio.h"
#include "eio_codec.h"
#include "sio_codec.h"

struct sio_server;
struct sio_nsp;
struct sio_socket;

/* An event from a client. data is the packet's array: [name, arg1, ...];
 * binary arguments are placeholders {"_placeholder":true,"num":i} whose
 * bytes are atts[i]. All of it belongs to the caller of on_event and lives
 * until it returns (take references to keep any). */
struct sio_event {
	const char *name;
	json_object *data;
	struct eio_msg *const *atts;
	int natts;
	int64_t ack_id;              /* -1: the client wants no ack */
};

struct sio_nsp_ops {
	void (*on_connect)(struct sio_socket *s, json_object *auth, void *ud);
	void (*on_event)(struct sio_socket *s, const struct sio_event *ev, void *ud);
	void (*on_disconnect)(struct sio_socket *s, const char *reason, void *ud);
	/* Connection state recovery (socketio.recovery_window), optional:
	 * on_save, just before on_disconnect of a socket that may come back,
	 * returns the application's state to keep (a new reference, or NULL);
	 * on_restore gives it back (borrowed) to the socket that came back,
	 * from inside sio_accept(), before the CONNECT: it returns 0, or -1 to
	 * refuse it (another user's, say), and the connection is then a new
	 * one. */
	json_object *(*on_save)(struct sio_socket *s, void *ud);
	int (*on_restore)(struct sio_socket *s, json_object *state, void *ud);
};

/* An encoded packet and its attachments, ready for any number of sockets.
 * Made by sio_encode(); the creator frees it with sio_out_free() after the
 * sends (each send takes its own references to the messages). */
struct sio_out {
	int n;
	struct eio_msg *m[];
};

struct sio_server *sio_server_new(struct event_base *base, const struct config *cfg,
                                  const char *path);
/* Namespaces must be registered before clients connect; name must stay valid. */
struct sio_nsp *sio_nsp_add(struct sio_server *srv, const char *name,
                            const struct sio_nsp_ops *ops, void *ud);

void sio_accept(struct sio_socket *s);
/* Refuses the connection with CONNECT_ERROR {message, data?}; data is
 * borrowed. The socket is disconnected (on_disconnect is not called: it was
 * never connected). */
void sio_refuse(struct sio_socket *s, const char *message, json_object *data);
/* Disconnects from the server side (the client gets DISCONNECT). */
void sio_disconnect(struct sio_socket *s);
/* Disconnects the connected sockets of nsp that are in any of rooms or
 * have one of ids, on every instance (one publish on the bus). Returns how
 * many were here. */
size_t sio_disconnect_where(struct sio_nsp *nsp, const char *const *rooms, size_t nrooms,
                            const char *const *ids, size_t nids);

/* Encodes a packet: EVENT or ACK (BINARY_* when natts > 0). data is
 * borrowed. NULL when out of memory. */
struct sio_out *sio_encode(enum sio_type type, const char *nsp, int64_t id,
                           json_object *data, struct eio_msg *const *atts, int natts);
/* Encodes an EVENT [name, args...] from a name and an array of arguments
 * (args may be NULL: no arguments). */
struct sio_out *sio_encode_event(const char *nsp, const char *name, json_object *args);
void sio_out_free(struct sio_out *o);

int sio_send(struct sio_socket *s, const struct sio_out *o);
/* Convenience: encode and send one event with one argument (borrowed; NULL
 * for none). */
int sio_emit(struct sio_socket *s, const char *name, json_object *arg);
/* Acks the client's event id with the array args (borrowed). */
int sio_ack(struct sio_socket *s, int64_t id, json_object *args,
            struct eio_msg *const *atts, int natts);

/* Sends o to every connected socket of nsp in any of rooms (all of the
 * namespace when nrooms is 0), except those in any of except_rooms and the
 * socket skip (may be NULL). Returns the number of recipients. */
size_t sio_broadcast(struct sio_nsp *nsp, const char *const *rooms, size_t nrooms,
                     const char *const *except_rooms, size_t nexcept,
                     const struct sio_socket *skip, const struct sio_out *o);

/* The same on this instance's sockets only, for a message that every
 * instance receives by itself (a profile's bus routes): nothing is
 * published for the others. With connection state recovery the packet
 * gets an offset of this instance and is logged, as any broadcast. */
size_t sio_broadcast_local(struct sio_nsp *nsp, const char *const *rooms, size_t nrooms,
                           const char *const *except_rooms, size_t nexcept,
                           const struct sio_out *o);

int sio_join(struct sio_socket *s, const char *room);
void sio_leave(struct sio_socket *s, const char *room);
int sio_in_room(const struct sio_socket *s, const char *room);
size_t sio_room_size(struct sio_nsp *nsp, const char *room);

const char *sio_id(const struct sio_socket *s);
/* The socket came back with its state (connection state recovery). */
int sio_recovered(const struct sio_socket *s);
const char *sio_nsp_name(const struct sio_socket *s);
const char *sio_nsp_name_of(const struct sio_nsp *nsp);
struct sio_nsp *sio_socket_nsp(const struct sio_socket *s);
struct eio_session *sio_session(const struct sio_socket *s);
void sio_set_data(struct sio_socket *s, void *data);
void *sio_data(const struct sio_socket *s);
size_t sio_nsp_sockets(const struct sio_nsp *nsp);
/* The connected socket of nsp with this id, or NULL. */
struct sio_socket *sio_find(struct sio_nsp *nsp, const char *id);

/* Calls cb for every namespace of every server (for /stats): the server's
 * path, the namespace's name, its connected sockets and its rooms. */
typedef void (*sio_nsp_visit_cb)(const char *path, const char *nsp, size_t sockets,
                                 size_t rooms, void *ud);
void sio_foreach_nsp(sio_nsp_visit_cb cb, void *ud);

#endif
