/* sio_codec.h -- Socket.IO v5 packets.
 *
 * Pure code: bytes in, values out. A packet travels as the data of one
 * Engine.IO message:
 *
 *   <type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]
 *
 * where the namespace is written only when it is not "/", and the binary
 * types (5, 6) are followed by <attachments> Engine.IO binary messages whose
 * places in the JSON are marked {"_placeholder":true,"num":N}. */
#ifndef AEOLUS_SIO_CODEC_H
#define AEOLUS_SIO_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "buf.h"

enum sio_type {
	SIO_CONNECT = 0, SIO_DISCONNECT, SIO_EVENT, SIO_ACK, SIO_CONNECT_ERROR,
	SIO_BINARY_EVENT, SIO_BINARY_ACK,
};

#define SIO_NSP_MAX 256          /* longest namespace name accepted */
#define SIO_ATTACHMENTS_MAX 1000 /* hard cap; the configured limit is lower */
#define SIO_JSON_DEPTH 32        /* nesting depth accepted in packet data */

struct sio_packet {
	enum sio_type type;
	int attachments;             /* binary types: count announced */
	char nsp[SIO_NSP_MAX + 1];   /* "/" when absent */
	int64_t id;                  /* ack id, -1 when absent */
	json_object *data;           /* owned by the packet; NULL when absent */
};

/* Parses and validates a packet: the data must have the shape its type
 * requires (CONNECT: object or none; DISCONNECT: none; EVENT: non-empty
 * array whose first element is a string that is not a reserved event name;
 * ACK: array; CONNECT_ERROR: object or string), and a binary packet's
 * placeholders must name attachments that exist. On error returns -1 and
 * sets *err to a static description; p holds nothing to free. On success
 * the caller frees p with sio_packet_clear(). */
int sio_packet_decode(const char *s, size_t n, struct sio_packet *p, const char **err);
void sio_packet_clear(struct sio_packet *p);

/* Is name one of the event names Socket.IO keeps for itself (connect,
 * connect_error, disconnect, disconnecting, newListener, removeListener)? */
int sio_reserved_event(const char *name);

/* The name of an EVENT or BINARY_EVENT packet as written in it: *name
 * points into s, at the characters between the quotes (JSON escapes left
 * as they are), *len of them. Reads only as far as the name; checks nothing
 * else. Returns 0, or -1 for any other packet. */
int sio_event_name(const char *s, size_t n, const char **name, size_t *len);

/* Appends the encoded header (type, attachments, namespace, id) and data to
 * out. data may be NULL. Returns 0 or -1. */
int sio_packet_encode(struct buf *out, enum sio_type type, const char *nsp,
                      int64_t id, int attachments, json_object *data);

/* Serialises JSON as the reference implementation does (no spaces, no
 * escaped slashes). Returns a string owned by obj. */
const char *sio_json(json_object *obj, size_t *len);

/* Is s exactly one JSON text per RFC 8259, valid UTF-8, nested at most
 * SIO_JSON_DEPTH deep? */
int sio_json_valid(const char *s, size_t n);

/* Parses one complete JSON text (sio_json_valid first, then json-c).
 * Returns a new reference or NULL. */
json_object *sio_json_parse(const char *s, size_t n);

/* Counts the placeholders in data and checks each names 0 <= num < max.
 * Returns the count, or -1 when one is invalid. */
int sio_placeholders_check(json_object *data, int max);

#endif
