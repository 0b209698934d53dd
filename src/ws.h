/* ws.h -- a WebSocket connection (RFC 6455, server side) on a socket that
 * libmicrohttpd has handed over after the 101 upgrade.
 *
 * Framing, masking rules, fragmentation, control frames and UTF-8
 * validation are wslay's; this module adds the libevent I/O, the limits
 * (largest message, largest output queue), and the lifecycle:
 *
 *   ws_conn_new()  -- takes over the socket; the connection owns itself.
 *   ops->on_message() for every complete text or binary message.
 *   ws_send()      -- queues a message; writes happen before the loop sleeps.
 *   ws_close()     -- starts the close handshake.
 *   ops->on_close() once, when the connection is gone for any reason
 *                   (peer closed, protocol error, ws_close done, slow
 *                   consumer). The ws_conn is freed right after: do not use
 *                   it from then on.
 *
 * Nothing is freed inside wslay's callbacks: teardown happens in a deferred
 * pass of the event loop. */
#ifndef AEOLUS_WS_H
#define AEOLUS_WS_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include <microhttpd.h>

#include "eio_codec.h"

struct ws_conn;

struct ws_ops {
	void (*on_message)(struct ws_conn *c, int binary, const char *data, size_t len, void *ud);
	void (*on_close)(struct ws_conn *c, void *ud);
};

/* Where a client's byte stream stands between frames, from wslay's frame
 * callbacks: ws.c frees wslay's context (two 4 KB buffers) while a
 * connection holds nothing half read, and makes a new one when bytes come.
 * Pure, so that a fuzzer checks the rule against a context kept for good. */
struct ws_frames {
	uint64_t in;                 /* bytes given to wslay */
	uint64_t done;               /* bytes of the frames it finished */
	uint64_t cur;                /* the frame being read: header and payload */
	unsigned frag : 1;           /* a fragmented message is under way */
};

/* A frame's header was read (wslay's on_frame_recv_start). */
void ws_frames_start(struct ws_frames *f, int fin, int opcode, uint64_t payload_length);
/* Its payload too (on_frame_recv_end). */
void ws_frames_end(struct ws_frames *f);
/* Nothing half read: every byte given belongs to a finished frame, and no
 * fragmented message is under way. A header written longer than needed
 * only ever answers 0. */
int ws_frames_between(const struct ws_frames *f);

struct ws_limits {
	size_t max_message;          /* larger messages are refused with 1009 */
	size_t max_queue;            /* more unsent bytes than this: cut off */
	int nodelay;                 /* TCP_NODELAY (see ws.c) */
};

/* Sets the loop that every connection uses. */
void ws_init(struct event_base *base);

/* Takes over fd (and extra, the bytes the client sent after its upgrade
 * request, copied). Returns NULL on failure, after releasing the socket. */
struct ws_conn *ws_conn_new(int fd, struct MHD_UpgradeResponseHandle *urh,
                            const char *extra, size_t extra_len,
                            const struct ws_limits *lim, const struct ws_ops *ops, void *ud);

/* Changes who receives the callbacks (or NULL ops: nobody). */
void ws_set_handler(struct ws_conn *c, const struct ws_ops *ops, void *ud);

/* Queues one message (text or binary as m says), taking a reference.
 * Returns 0, or -1 when the connection is closing or its queue is over
 * the limit (it is then being closed). */
int ws_send(struct ws_conn *c, struct eio_msg *m);

/* Sends a close frame with code and reason, then closes when the peer
 * answers or after a short grace period. */
void ws_close(struct ws_conn *c, uint16_t code, const char *reason);

/* Open connections. */
unsigned ws_count(void);

#endif
