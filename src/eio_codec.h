/* eio_codec.h -- Engine.IO v4 packets and polling payloads, and the shared
 * outgoing message.
 *
 * Pure code: bytes in, values out; no sockets, no globals.
 *
 * Wire format (v4): a packet is a type digit followed by data. Over
 * WebSocket a text frame carries one packet and a binary frame carries one
 * binary message. Over polling, packets are joined with the record
 * separator 0x1e, and a binary message is written 'b' + base64. */
#ifndef AEOLUS_EIO_CODEC_H
#define AEOLUS_EIO_CODEC_H

#include <stddef.h>

#include "buf.h"

enum eio_type {
	EIO_OPEN = 0, EIO_CLOSE, EIO_PING, EIO_PONG, EIO_MESSAGE, EIO_UPGRADE, EIO_NOOP,
};

#define EIO_RS '\x1e'

struct eio_packet {
	enum eio_type type;
	int binary;             /* a binary message (type is EIO_MESSAGE) */
	const char *data;       /* points into the input, or into a scratch buffer for base64 */
	size_t len;
};

/* Parses one packet from a WebSocket text frame. Returns 0, or -1 when the
 * type is missing or unknown. */
int eio_packet_parse(const char *s, size_t n, struct eio_packet *p);

/* Walks a polling payload, calling cb for each packet in order; binary
 * records are base64-decoded into a scratch buffer that lives only during
 * the callback. Returns 0; -1 when a record is malformed (nothing after it
 * is delivered); or the callback's non-zero return value, which stops the walk. */
typedef int (*eio_packet_cb)(const struct eio_packet *p, void *ud);
int eio_payload_decode(const char *s, size_t n, eio_packet_cb cb, void *ud);

/* An outgoing message: a complete Engine.IO packet as it goes on the wire,
 * text ("4..." -- type digit included) or binary (raw bytes). Reference
 * counted so that a broadcast is encoded once and the same bytes are queued
 * for every recipient. The creator holds one reference; each queue that
 * keeps the message takes its own. */
struct eio_msg {
	unsigned refs;
	unsigned char binary;
	unsigned char ws_hlen;  /* length of the WebSocket header in ws_head, 0 until built */
	size_t len;
	char ws_head[10];       /* room for a WebSocket frame header, just before data */
	char data[];            /* NUL-terminated for text */
};

/* A text packet: type digit + data. NULL when out of memory. */
struct eio_msg *eio_msg_text(enum eio_type type, const char *data, size_t len);
/* A binary message. */
struct eio_msg *eio_msg_binary(const void *data, size_t len);
/* A text packet from a buffer whose text already starts with the type
 * digit (built with a leading '4', say). The bytes are copied; b is reset. */
struct eio_msg *eio_msg_from_buf(struct buf *b);
static inline struct eio_msg *eio_msg_ref(struct eio_msg *m) { m->refs++; return m; }
void eio_msg_unref(struct eio_msg *m);

/* The message as one unmasked WebSocket frame (server to client), header
 * and payload contiguous: built once, in place, and shared by every
 * connection that sends it. */
const char *eio_msg_ws_frame(struct eio_msg *m, size_t *len);

/* A message as one record of a polling payload: text as it is, binary as
 * 'b' + base64. A new NUL-terminated string (the caller frees it) and its
 * length; NULL when out of memory. */
char *eio_msg_record(const struct eio_msg *m, size_t *len);
/* The message a record stands for; NULL when it is not one (or out of
 * memory). */
struct eio_msg *eio_msg_unrecord(const char *r, size_t len);

/* A FIFO of message references: a connection's or a session's output.
 * The queue owns one reference to each message in it. */
struct eio_msgq {
	struct eio_msg **v;
	size_t head, len, cap;
	size_t bytes;                /* sum of the messages' lengths */
};

/* Takes a new reference to m. Returns 0, or -1 when out of memory. */
int eio_msgq_push(struct eio_msgq *q, struct eio_msg *m);
/* The oldest message (its reference passes to the caller), or NULL. */
struct eio_msg *eio_msgq_pop(struct eio_msgq *q);
/* The i-th oldest message, borrowed. */
static inline struct eio_msg *eio_msgq_at(const struct eio_msgq *q, size_t i)
{
	return q->v[(q->head + i) % q->cap];
}
/* Drops the newest messages until keep are left. */
void eio_msgq_truncate(struct eio_msgq *q, size_t keep);
/* Drops everything and frees the queue's memory. */
void eio_msgq_free(struct eio_msgq *q);

/* Appends a message to a polling payload being built in out (adding the
 * separator when out is not empty). Returns 0 or -1 (out's limit reached). */
int eio_payload_append(struct buf *out, const struct eio_msg *m);

#endif
