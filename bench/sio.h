/* sio.h -- a minimal Socket.IO v5 client for load generation.
 *
 * One sio_ctx describes the target (address, path, namespace, query, auth,
 * transport) and the callbacks; it opens any number of sio_conn on one
 * libevent base. Each connection opens an Engine.IO v4 session (over a
 * WebSocket, or over HTTP long-polling), answers Engine.IO pings, and does
 * the Socket.IO CONNECT to its namespace.
 *
 * Callback rules (as in libuv and hiredis):
 *  - callbacks run only from the event loop, never from inside a sio_* call;
 *  - a sio_connect() that returned NULL never fires a callback;
 *  - 'closed' fires at most once per connection, except after sio_abort(),
 *    which is silent;
 *  - the caller owns every sio_conn and frees it with sio_conn_free(), but
 *    never from inside one of its callbacks.
 */
#ifndef AEOLUS_BENCH_SIO_H
#define AEOLUS_BENCH_SIO_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct sio_ctx sio_ctx;
typedef struct sio_conn sio_conn;

/* Socket.IO packet types. */
enum { SIO_CONNECT = 0, SIO_DISCONNECT, SIO_EVENT, SIO_ACK,
       SIO_CONNECT_ERROR, SIO_BINARY_EVENT, SIO_BINARY_ACK };

/* A Socket.IO packet of the connection's namespace. 'data' points into the
 * receive buffer and is valid only during the callback. */
typedef struct sio_packet {
    int type;
    long id;              /* ack id, -1 when absent */
    const char *data;     /* JSON payload, not NUL terminated */
    size_t len;
} sio_packet;

typedef struct sio_callbacks {
    void (*ready)(sio_conn *c, void *udata);     /* CONNECT acknowledged */
    void (*packet)(sio_conn *c, void *udata, const sio_packet *p);
    void (*closed)(sio_conn *c, void *udata, const char *err); /* err NULL: clean */
} sio_callbacks;

typedef struct sio_options {
    const char *host;
    int port;
    const char *path;     /* "/socket.io/" */
    const char *nsp;      /* "/" */
    const char *query;    /* extra "k=v&..." or NULL */
    const char *auth;     /* CONNECT auth JSON or NULL */
    int kernel_rx_time;   /* take receive times from SO_TIMESTAMPNS */
    size_t max_message;   /* largest WebSocket message accepted */
    int polling;          /* 1: HTTP long-polling instead of a WebSocket */
    int rcvbuf;           /* SO_RCVBUF of each WebSocket socket, 0: system */
} sio_options;

/* Counters over all connections of a context. */
typedef struct sio_stats {
    uint64_t pings;       /* Engine.IO pings answered */
    uint64_t ping_delay_max; /* longest receipt-to-pong delay, microseconds */
    uint64_t kernel_rx;   /* reads that carried a kernel timestamp */
} sio_stats;

/* Resolves the target and builds the request. Returns NULL and writes a
 * reason into err on failure. The strings in 'o' are copied. */
sio_ctx *sio_ctx_new(struct event_base *base, const sio_options *o,
                     const sio_callbacks *cb, char *err, size_t errlen);
void sio_ctx_free(sio_ctx *x);
const sio_stats *sio_ctx_stats(const sio_ctx *x);

/* Starts a connection. Returns NULL with errno set when the socket could not
 * even be created; later failures arrive through the 'closed' callback. */
sio_conn *sio_connect(sio_ctx *x, void *udata);

/* Sends EVENT ["event", args] (args: JSON values joined by commas, may be
 * empty) with ack id 'id' (-1: none). Returns 0, or -1 once the connection
 * has failed or is not ready; the failure itself is reported by 'closed'. */
int sio_emit(sio_conn *c, long id, const char *event,
             const char *args, size_t argslen);

/* Graceful close: Socket.IO DISCONNECT, then a WebSocket close handshake.
 * 'closed' fires with err NULL when the server has answered. */
void sio_close(sio_conn *c);

/* Closes the socket at once; no callback follows. */
void sio_abort(sio_conn *c);

/* Stops reading the connection's socket for good (WebSocket only): nothing
 * is read, no ping is answered and no callback fires any more, whatever the
 * server does; only sio_abort() and sio_conn_free() remain. For simulating
 * a client that has stopped reading. */
void sio_pause(sio_conn *c);

/* The WebSocket connection's socket, -1 for polling or once closed. */
int sio_fd(const sio_conn *c);

/* Frees a connection, aborting it first if needed. */
void sio_conn_free(sio_conn *c);

/* Monotonic time in microseconds at which the bytes of the packet being
 * delivered reached this host (kernel timestamp when enabled and available,
 * else the time the read returned). */
uint64_t sio_rx_time(const sio_conn *c);

/* Helpers for EVENT payloads. sio_event_args() checks that the payload is
 * an array whose first element is the JSON string 'name' and returns the
 * rest of the array (after the comma, before the closing bracket). */
int sio_event_args(const sio_packet *p, const char *name,
                   const char **args, size_t *len);

/* Monotonic clock in microseconds. */
uint64_t sio_now_us(void);

#endif
