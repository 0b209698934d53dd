/* sio.c -- Socket.IO v5 client connections for aeolus-bench.
 *
 * Design
 * ------
 * A connection is a non-blocking TCP socket with two libevent events (a
 * persistent read event, and a one-shot write event armed only while output
 * is pending) and an input and an output evbuffer. It walks these states:
 *
 *   CONNECTING  TCP connect in progress (waiting on the write event)
 *   UPGRADING   HTTP upgrade request sent, waiting for "101"
 *   OPENING     waiting for the Engine.IO open packet "0{...}"
 *   JOINING     Socket.IO CONNECT "40..." sent, waiting for "40{...}"
 *   READY       events flow; Engine.IO pings "2" are answered with "3"
 *   CLOSING     "41" and a WebSocket close sent, waiting for the server's
 *   CLOSED      socket closed; only sio_conn_free() remains
 *
 * Input. Every read lands in one scratch buffer owned by the context. When
 * the connection holds no partial data, frames are parsed straight from the
 * scratch buffer and only an incomplete tail is copied into the connection's
 * evbuffer; 'need' then says how many buffered bytes the next frame needs,
 * so a large frame is made contiguous once, not once per read. An idle
 * connection therefore holds no input memory at all.
 *
 * Reads use recvmsg() so that the kernel's receive timestamp (SO_TIMESTAMPNS)
 * can be taken: latency is then measured to the moment the bytes reached the
 * host, not to the moment this single-threaded client got round to them.
 *
 * Output. Frames are masked straight into the output evbuffer and written at
 * once; the write event is armed only when the socket would block. Masking
 * keys come from a xorshift generator seeded from RAND_bytes(): unpredictable
 * enough for a benchmark, and cheap.
 *
 * Errors are sticky and reported from the loop: a write error inside
 * sio_emit() is remembered and the read event activated, so teardown and the
 * 'closed' callback never run inside a caller's own sio_* call.
 *
 * Polling. With sio_options.polling a connection is an Engine.IO session
 * over HTTP long-polling instead, made of two libevent evhttp connections:
 * one always holds a GET open (the server answers it with a payload of
 * packets separated by \x1e, and the next GET goes out at once), the other
 * carries POSTs, one at a time; packets queued meanwhile go together in the
 * next POST. The states are the same from OPENING on (the handshake GET
 * answers with the open packet and its sid). Receive times are the times
 * the responses were read (no kernel timestamps). The 'rev' event has no
 * socket then: it only carries deferred outcomes, and the evhttp
 * connections are freed from it when teardown happens inside one of their
 * own callbacks.
 */
#define _GNU_SOURCE
#include "sio.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define SCRATCH_SIZE (64 * 1024)
#define HTTP_MAX 8192
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_TEXT 0x1
#define WS_BINARY 0x2
#define WS_CLOSE 0x8
#define WS_PING 0x9
#define WS_PONG 0xA

enum { ST_CONNECTING, ST_UPGRADING, ST_OPENING, ST_JOINING, ST_READY,
       ST_CLOSING, ST_CLOSED };

/* Deferred outcomes handled by the read callback (see 'defer'). */
#define DEFER_CLEAN (-1)

struct sio_ctx {
    struct event_base *base;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    sio_callbacks cb;
    char *request;        /* upgrade request up to the key */
    char *nsp;            /* "/" or "/name" */
    char *nsp_prefix;     /* "" or "/name," */
    char *connect_pkt;    /* Engine.IO message "40[/name,][auth]" */
    char *disconnect_pkt; /* Engine.IO message "41[/name,]" */
    char *event_prefix;   /* "42[/name,]" */
    int kernel_rx_time;
    int rcvbuf;
    size_t max_message;
    int polling;
    int port;
    char numhost[64];     /* the resolved address, numeric, for evhttp */
    char *host_header;    /* "host:port" */
    char *poll_uri;       /* "PATH?EIO=4&transport=polling[&query]" */
    uint64_t mask_state;
    sio_stats stats;
    unsigned char scratch[SCRATCH_SIZE];
};

struct sio_conn {
    sio_ctx *x;
    void *udata;
    int fd;
    int state;
    int defer;            /* 0, an errno from a write, or DEFER_CLEAN */
    struct event *rev, *wev;
    struct evbuffer *in, *out;
    struct evbuffer *frag; /* fragmented message being reassembled */
    int frag_op;
    size_t need;          /* buffered bytes needed before parsing again */
    uint64_t rx_us;
    char key[32];
    /* polling */
    int polling;
    int post_busy;        /* a POST is in flight */
    int in_cb;            /* inside one of this connection's evhttp callbacks */
    struct evhttp_connection *get_con, *post_con;
    struct evbuffer *post_q; /* packets for the next POST, \x1e separated */
    char sid[64];
};

typedef struct ws_frame {
    int fin, op;
    size_t hlen;
    uint64_t plen;
} ws_frame;

static void conn_readable(evutil_socket_t fd, short what, void *arg);
static void conn_writable(evutil_socket_t fd, short what, void *arg);
static int poll_queue(sio_conn *c, const struct iovec *iov, int iovcnt);
static void poll_release(sio_conn *c);

/* ---------------------------------------------------------------- utils */

uint64_t sio_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* malloc'd printf; NULL when out of memory. */
static char *str_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static uint64_t mask_next(sio_ctx *x) {
    uint64_t s = x->mask_state;
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    x->mask_state = s;
    return s * 2685821657736338717ULL;
}

/* base64(SHA-1(key GUID)), the expected Sec-WebSocket-Accept. */
static int ws_accept_for(const char *key, char out[32]) {
    char buf[64];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int n = snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID);
    if (n < 0 || (size_t)n >= sizeof(buf)) return -1;
    if (!EVP_Digest(buf, (size_t)n, md, &mdlen, EVP_sha1(), NULL)) return -1;
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
    return 0;
}

/* ------------------------------------------------------------- context */

static int ctx_resolve(sio_ctx *x, const char *host, int port,
                       char *err, size_t errlen) {
    struct addrinfo hints, *res = NULL;
    char portstr[16];
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(portstr, sizeof(portstr), "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(&x->addr, res->ai_addr, res->ai_addrlen);
    x->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    x->port = port;
    if (getnameinfo((struct sockaddr *)&x->addr, x->addrlen, x->numhost,
                    sizeof(x->numhost), NULL, 0, NI_NUMERICHOST) != 0) {
        snprintf(err, errlen, "cannot print the address of %s", host);
        return -1;
    }
    return 0;
}

static int ctx_build_strings(sio_ctx *x, const sio_options *o) {
    const char *q = o->query ? o->query : "";
    while (*q == '?' || *q == '&') q++;
    int v6 = strchr(o->host, ':') != NULL;
    x->request = str_printf(
        "GET %s?EIO=4&transport=websocket%s%s HTTP/1.1\r\n"
        "Host: %s%s%s:%d\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: ",
        o->path, *q ? "&" : "", q,
        v6 ? "[" : "", o->host, v6 ? "]" : "", o->port);
    x->host_header = str_printf("%s%s%s:%d", v6 ? "[" : "", o->host,
                                v6 ? "]" : "", o->port);
    x->poll_uri = str_printf("%s?EIO=4&transport=polling%s%s", o->path,
                             *q ? "&" : "", q);
    if (!x->host_header || !x->poll_uri) return -1;
    int root = strcmp(o->nsp, "/") == 0;
    x->nsp = strdup(o->nsp);
    x->nsp_prefix = root ? strdup("") : str_printf("%s,", o->nsp);
    if (!x->nsp_prefix) return -1;
    x->connect_pkt = str_printf("40%s%s", x->nsp_prefix, o->auth ? o->auth : "");
    x->disconnect_pkt = str_printf("41%s", x->nsp_prefix);
    x->event_prefix = str_printf("42%s", x->nsp_prefix);
    return (x->request && x->nsp && x->connect_pkt && x->disconnect_pkt &&
            x->event_prefix) ? 0 : -1;
}

sio_ctx *sio_ctx_new(struct event_base *base, const sio_options *o,
                     const sio_callbacks *cb, char *err, size_t errlen) {
    if (o->nsp[0] != '/') {
        snprintf(err, errlen, "namespace must start with '/'");
        return NULL;
    }
    sio_ctx *x = calloc(1, sizeof(*x));
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    x->base = base;
    x->cb = *cb;
    x->kernel_rx_time = o->kernel_rx_time && !o->polling;
    x->rcvbuf = o->rcvbuf;
    x->polling = o->polling;
    x->max_message = o->max_message;
    if (RAND_bytes((unsigned char *)&x->mask_state, sizeof(x->mask_state)) != 1)
        x->mask_state = sio_now_us();
    x->mask_state |= 1;
    if (ctx_resolve(x, o->host, o->port, err, errlen) < 0) goto fail;
    if (ctx_build_strings(x, o) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return x;
fail:
    sio_ctx_free(x);
    return NULL;
}

void sio_ctx_free(sio_ctx *x) {
    if (!x) return;
    free(x->request);
    free(x->nsp);
    free(x->nsp_prefix);
    free(x->connect_pkt);
    free(x->disconnect_pkt);
    free(x->event_prefix);
    free(x->host_header);
    free(x->poll_uri);
    free(x);
}

const sio_stats *sio_ctx_stats(const sio_ctx *x) {
    return &x->stats;
}

/* ---------------------------------------------------- teardown, errors */

static void conn_teardown(sio_conn *c) {
    if (c->state == ST_CLOSED) return;
    if (c->rev) event_del(c->rev);
    if (c->wev) event_del(c->wev);
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = ST_CLOSED;
    if (!c->polling) return;
    /* an evhttp connection is not freed from inside its own callback */
    if (c->in_cb) event_active(c->rev, EV_READ, 0);
    else poll_release(c);
}

/* Tears the connection down and reports 'err' (NULL: clean close). Called
 * only from event callbacks. */
static void conn_finish(sio_conn *c, const char *err) {
    conn_teardown(c);
    if (c->x->cb.closed) c->x->cb.closed(c, c->udata, err);
}

static void conn_fail(sio_conn *c, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    conn_finish(c, msg);
}

/* Hands an outcome found inside an API call over to the read callback. */
static void conn_defer(sio_conn *c, int what) {
    if (!c->defer) c->defer = what;
    event_active(c->rev, EV_READ, 0);
}

/* --------------------------------------------------------------- output */

static int conn_flush(sio_conn *c) {
    if (c->defer || c->state == ST_CLOSED) return -1;
    if (event_pending(c->wev, EV_WRITE, NULL)) return 0;
    while (evbuffer_get_length(c->out) > 0) {
        int n = evbuffer_write(c->out, c->fd);
        if (n > 0) continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            event_add(c->wev, NULL);
            return 0;
        }
        conn_defer(c, n < 0 ? errno : EPIPE);
        return -1;
    }
    return 0;
}

static size_t ws_put_header(unsigned char *h, int op, size_t len) {
    size_t n = 2;
    h[0] = (unsigned char)(0x80 | op);
    if (len < 126) {
        h[1] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        n = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        n = 10;
    }
    return n;
}

/* Queues one masked frame made of the concatenated iov parts and tries to
 * write it at once. */
static int ws_send(sio_conn *c, int op, const struct iovec *iov, int iovcnt) {
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++) len += iov[i].iov_len;
    if (c->defer || c->state == ST_CLOSED || c->state == ST_CLOSING) return -1;

    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(c->out, (ev_ssize_t)(len + 14), &v, 1) < 1) {
        conn_defer(c, ENOMEM);
        return -1;
    }
    unsigned char *p = v.iov_base;
    size_t hlen = ws_put_header(p, op, len);
    uint64_t r = mask_next(c->x);
    unsigned char *key = p + hlen;
    memcpy(key, &r, 4);
    p += hlen + 4;
    size_t k = 0;
    for (int i = 0; i < iovcnt; i++) {
        const unsigned char *s = iov[i].iov_base;
        for (size_t j = 0; j < iov[i].iov_len; j++, k++)
            *p++ = s[j] ^ key[k & 3];
    }
    v.iov_len = hlen + 4 + len;
    evbuffer_commit_space(c->out, &v, 1);
    return conn_flush(c);
}

/* Sends one Engine.IO packet made of the iov parts, on either transport. */
static int eio_send(sio_conn *c, const struct iovec *iov, int iovcnt) {
    if (c->polling) {
        if (c->defer || c->state == ST_CLOSED || c->state == ST_CLOSING) return -1;
        return poll_queue(c, iov, iovcnt);
    }
    return ws_send(c, WS_TEXT, iov, iovcnt);
}

static int eio_send_text(sio_conn *c, const char *s, size_t len) {
    struct iovec iov = { (void *)s, len };
    return eio_send(c, &iov, 1);
}

int sio_emit(sio_conn *c, long id, const char *event,
             const char *args, size_t argslen) {
    char idbuf[24] = "";
    if (c->state != ST_READY) return -1;
    if (id >= 0) snprintf(idbuf, sizeof(idbuf), "%ld", id);
    struct iovec iov[7] = {
        { c->x->event_prefix, strlen(c->x->event_prefix) },
        { idbuf, strlen(idbuf) },
        { "[\"", 2 },
        { (void *)event, strlen(event) },
        { "\",", argslen ? 2 : 1 },
        { (void *)args, argslen },
        { "]", 1 },
    };
    return eio_send(c, iov, 7);
}

/* ---------------------------------------------------------- Socket.IO */

/* Parses a Socket.IO packet (without the Engine.IO '4'). Returns 0 for a
 * packet of namespace 'nsp', 1 for another namespace, -1 when malformed. */
static int sio_parse(const char *s, size_t n, const char *nsp, sio_packet *p) {
    size_t i = 1;
    if (n < 1 || s[0] < '0' || s[0] > '6') return -1;
    p->type = s[0] - '0';
    if (p->type == SIO_BINARY_EVENT || p->type == SIO_BINARY_ACK) {
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        if (i >= n || s[i++] != '-') return -1;
    }
    const char *pn = "/";
    size_t pnlen = 1;
    if (i < n && s[i] == '/') {
        size_t start = i;
        while (i < n && s[i] != ',') i++;
        pn = s + start;
        pnlen = i - start;
        if (i < n) i++;
    }
    if (pnlen != strlen(nsp) || memcmp(pn, nsp, pnlen) != 0) return 1;
    p->id = -1;
    if (i < n && s[i] >= '0' && s[i] <= '9') {
        size_t start = i;
        long id = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 18)
            id = id * 10 + (s[i++] - '0');
        p->id = id;
    }
    p->data = s + i;
    p->len = n - i;
    return 0;
}

static void sio_joining(sio_conn *c, const sio_packet *p) {
    if (p->type == SIO_CONNECT) {
        c->state = ST_READY;
        if (c->x->cb.ready) c->x->cb.ready(c, c->udata);
    } else if (p->type == SIO_CONNECT_ERROR) {
        conn_fail(c, "connect_error: %.*s", (int)(p->len > 200 ? 200 : p->len),
                  p->data);
    }
}

static void sio_message(sio_conn *c, const char *s, size_t n) {
    sio_packet p;
    int rc = sio_parse(s, n, c->x->nsp, &p);
    if (rc < 0) {
        conn_fail(c, "socket.io: malformed packet");
        return;
    }
    if (rc > 0) return;
    if (c->state == ST_JOINING) {
        sio_joining(c, &p);
    } else if (c->state == ST_READY) {
        if (p.type == SIO_DISCONNECT)
            conn_fail(c, "socket.io: server disconnected the namespace");
        else if ((p.type == SIO_EVENT || p.type == SIO_ACK) && c->x->cb.packet)
            c->x->cb.packet(c, c->udata, &p);
    }
}

/* ---------------------------------------------------------- Engine.IO */

static void ping_answered(sio_conn *c) {
    uint64_t delay = sio_now_us() - c->rx_us;
    c->x->stats.pings++;
    if (delay > c->x->stats.ping_delay_max) c->x->stats.ping_delay_max = delay;
}

static void eio_message(sio_conn *c, const char *m, size_t n) {
    if (n == 0) return;
    switch (m[0]) {
    case '0':
        if (c->state != ST_OPENING) return;
        if (c->polling) {
            const char *sid = memmem(m, n, "\"sid\":\"", 7);
            size_t i = 0;
            if (sid)
                for (sid += 7; sid + i < m + n && sid[i] != '"' &&
                               i < sizeof(c->sid) - 1; i++)
                    c->sid[i] = sid[i];
            c->sid[i] = '\0';
            if (!i) {
                conn_fail(c, "engine.io: open packet without a sid");
                return;
            }
        }
        c->state = ST_JOINING;
        eio_send_text(c, c->x->connect_pkt, strlen(c->x->connect_pkt));
        break;
    case '1':
        conn_fail(c, "engine.io: server closed the session");
        break;
    case '2': {
        char pong[64] = "3";
        size_t len = n > sizeof(pong) ? sizeof(pong) : n;
        memcpy(pong + 1, m + 1, len - 1);
        eio_send_text(c, pong, len);
        ping_answered(c);
        break;
    }
    case '3':
    case '6':
        break;
    case '4':
        sio_message(c, m + 1, n - 1);
        break;
    default:
        conn_fail(c, "engine.io: unknown packet type '%c'", m[0]);
    }
}

/* ----------------------------------------------------------- WebSocket */

/* Returns 1 with *f filled, 0 when more bytes are needed, -1 when the
 * header is not one a server may send. */
static int ws_parse_header(const unsigned char *p, size_t n, ws_frame *f) {
    if (n < 2) return 0;
    if ((p[0] & 0x70) || (p[1] & 0x80)) return -1;
    f->fin = (p[0] & 0x80) != 0;
    f->op = p[0] & 0x0f;
    f->plen = p[1] & 0x7f;
    f->hlen = 2;
    if (f->plen == 126) {
        if (n < 4) return 0;
        f->plen = (uint64_t)p[2] << 8 | p[3];
        f->hlen = 4;
    } else if (f->plen == 127) {
        if (n < 10) return 0;
        f->plen = 0;
        for (int i = 0; i < 8; i++) f->plen = f->plen << 8 | p[2 + i];
        f->hlen = 10;
    }
    if (f->op >= WS_CLOSE && (!f->fin || f->plen > 125)) return -1;
    return 1;
}

static void ws_close_received(sio_conn *c, const unsigned char *p, size_t n) {
    if (c->state == ST_CLOSING) {
        conn_finish(c, NULL);
        return;
    }
    int code = n >= 2 ? (p[0] << 8 | p[1]) : 1005;
    struct iovec iov = { (void *)p, n >= 2 ? 2 : 0 };
    ws_send(c, WS_CLOSE, &iov, 1);
    conn_fail(c, "websocket: server closed (code %d)", code);
}

static void ws_fragment(sio_conn *c, const ws_frame *f, const unsigned char *p) {
    if ((f->op == 0) != (c->frag != NULL)) {
        conn_fail(c, "websocket: bad fragmentation");
        return;
    }
    if (!c->frag) {
        if (!(c->frag = evbuffer_new())) {
            conn_fail(c, "out of memory");
            return;
        }
        c->frag_op = f->op;
    }
    if (evbuffer_get_length(c->frag) + f->plen > c->x->max_message) {
        conn_fail(c, "websocket: message larger than %zu bytes", c->x->max_message);
        return;
    }
    evbuffer_add(c->frag, p, f->plen);
    if (!f->fin) return;
    struct evbuffer *msg = c->frag;
    c->frag = NULL;
    size_t len = evbuffer_get_length(msg);
    if (c->frag_op == WS_TEXT)
        eio_message(c, (const char *)evbuffer_pullup(msg, -1), len);
    evbuffer_free(msg);
}

static void ws_frame_received(sio_conn *c, const ws_frame *f,
                              const unsigned char *p) {
    struct iovec iov = { (void *)p, f->plen };
    switch (f->op) {
    case WS_CLOSE:
        ws_close_received(c, p, f->plen);
        break;
    case WS_PING:
        ws_send(c, WS_PONG, &iov, 1);
        break;
    case WS_PONG:
        break;
    case 0:
    case WS_TEXT:
    case WS_BINARY:
        if (!f->fin || c->frag)
            ws_fragment(c, f, p);
        else if (f->op == WS_TEXT)
            eio_message(c, (const char *)p, f->plen);
        break;
    default:
        conn_fail(c, "websocket: unknown opcode %d", f->op);
    }
}

/* Consumes one whole frame from d[0..n). Returns the bytes used, or 0 when
 * the frame is incomplete (c->need set) or the connection failed. */
static size_t ws_consume(sio_conn *c, const unsigned char *d, size_t n) {
    ws_frame f;
    int rc = ws_parse_header(d, n, &f);
    if (rc < 0) {
        conn_fail(c, "websocket: bad frame header");
        return 0;
    }
    if (rc == 0) {
        c->need = n + 1;
        return 0;
    }
    if (f.plen > c->x->max_message) {
        conn_fail(c, "websocket: frame of %llu bytes is too large",
                  (unsigned long long)f.plen);
        return 0;
    }
    if (n - f.hlen < f.plen) {
        c->need = f.hlen + (size_t)f.plen;
        return 0;
    }
    c->need = 0;
    ws_frame_received(c, &f, d + f.hlen);
    return f.hlen + (size_t)f.plen;
}

/* ---------------------------------------------------------------- HTTP */

static int http_accept_ok(sio_conn *c, const char *h, size_t n) {
    static const char name[] = "\r\nsec-websocket-accept:";
    char want[32];
    if (ws_accept_for(c->key, want) < 0) return 0;
    for (size_t i = 0; i + sizeof(name) - 1 < n; i++) {
        if (strncasecmp(h + i, name, sizeof(name) - 1) != 0) continue;
        const char *v = h + i + sizeof(name) - 1;
        while (*v == ' ' || *v == '\t') v++;
        size_t wl = strlen(want);
        return (size_t)(h + n - v) >= wl && memcmp(v, want, wl) == 0;
    }
    return 0;
}

/* Consumes the upgrade response. Same return convention as ws_consume(). */
static size_t http_consume(sio_conn *c, const unsigned char *d, size_t n) {
    const char *h = (const char *)d;
    const char *end = memmem(h, n, "\r\n\r\n", 4);
    if (!end) {
        if (n >= HTTP_MAX) conn_fail(c, "upgrade: response header too large");
        c->need = n + 1;
        return 0;
    }
    size_t hlen = (size_t)(end - h) + 4;
    if (hlen < 12 || memcmp(h, "HTTP/1.1 101", 12) != 0) {
        size_t l = strcspn(h, "\r");
        conn_fail(c, "upgrade refused: %.*s", (int)(l > 100 ? 100 : l), h);
        return 0;
    }
    if (!http_accept_ok(c, h, hlen - 2)) {
        conn_fail(c, "upgrade: missing or wrong Sec-WebSocket-Accept");
        return 0;
    }
    c->need = 0;
    c->state = ST_OPENING;
    return hlen;
}

/* ---------------------------------------------------------------- input */

static size_t conn_consume(sio_conn *c, const unsigned char *d, size_t n) {
    size_t off = 0;
    while (c->state != ST_CLOSED && off < n) {
        size_t used = c->state == ST_UPGRADING ? http_consume(c, d + off, n - off)
                                               : ws_consume(c, d + off, n - off);
        if (used == 0) break;
        off += used;
    }
    return off;
}

static void conn_input(sio_conn *c, const unsigned char *data, size_t n) {
    const unsigned char *d = data;
    int buffered = evbuffer_get_length(c->in) > 0;
    if (buffered) {
        evbuffer_add(c->in, data, n);
        n = evbuffer_get_length(c->in);
        if (n < c->need) return;
        d = evbuffer_pullup(c->in, -1);
    }
    size_t used = conn_consume(c, d, n);
    if (c->state == ST_CLOSED) return;
    if (buffered)
        evbuffer_drain(c->in, used);
    else if (used < n)
        evbuffer_add(c->in, d + used, n - used);
}

/* Realtime minus monotonic clock, in microseconds, from a pair of readings
 * not split by a preemption (a few retries, then the best one seen). */
static int64_t clock_offset_us(void) {
    int64_t best = 0;
    uint64_t best_gap = UINT64_MAX;
    for (int i = 0; i < 3 && best_gap > 2; i++) {
        struct timespec r;
        uint64_t m1 = sio_now_us();
        clock_gettime(CLOCK_REALTIME, &r);
        uint64_t m2 = sio_now_us();
        if (m2 - m1 >= best_gap) continue;
        best_gap = m2 - m1;
        best = (int64_t)r.tv_sec * 1000000 + r.tv_nsec / 1000 -
               (int64_t)(m1 + m2) / 2;
    }
    return best;
}

/* Sets c->rx_us: the kernel's receive timestamp moved to the monotonic
 * clock when one came with the bytes, else the current time. */
static void conn_rx_time(sio_conn *c, struct msghdr *m) {
    uint64_t now = sio_now_us();
    c->rx_us = now;
    if (!c->x->kernel_rx_time) return;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR(m, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_TIMESTAMPNS)
            continue;
        struct timespec k;
        memcpy(&k, CMSG_DATA(cm), sizeof(k));
        int64_t rx = (int64_t)k.tv_sec * 1000000 + k.tv_nsec / 1000 -
                     clock_offset_us();
        if (rx > 0 && (uint64_t)rx < now) c->rx_us = (uint64_t)rx;
        c->x->stats.kernel_rx++;
    }
}

static ssize_t conn_recv(sio_conn *c) {
    union {
        char buf[CMSG_SPACE(sizeof(struct timespec)) + 64];
        struct cmsghdr align;
    } cbuf;
    struct iovec iov = { c->x->scratch, SCRATCH_SIZE };
    struct msghdr m;
    memset(&m, 0, sizeof(m));
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf.buf;
    m.msg_controllen = sizeof(cbuf.buf);
    ssize_t n = recvmsg(c->fd, &m, 0);
    if (n > 0) {
        conn_rx_time(c, &m);
    }
    return n;
}

static void conn_readable(evutil_socket_t fd, short what, void *arg) {
    sio_conn *c = arg;
    (void)fd;
    (void)what;
    if (c->state == ST_CLOSED) return;
    if (c->defer == DEFER_CLEAN) {
        conn_finish(c, NULL);
        return;
    }
    if (c->defer) {
        conn_fail(c, "write: %s", strerror(c->defer));
        return;
    }
    ssize_t n = conn_recv(c);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0) {
        conn_fail(c, "read: %s", strerror(errno));
    } else if (n == 0) {
        if (c->state == ST_CLOSING) conn_finish(c, NULL);
        else conn_fail(c, "connection closed by server");
    } else {
        conn_input(c, c->x->scratch, (size_t)n);
    }
}

/* ------------------------------------------------------------ polling */

static void poll_release(sio_conn *c) {
    if (c->get_con) evhttp_connection_free(c->get_con);
    if (c->post_con) evhttp_connection_free(c->post_con);
    c->get_con = c->post_con = NULL;
}

/* The 'rev' event of a polling connection: deferred outcomes, and the
 * release of the evhttp connections after a teardown in their callback. */
static void poll_deferred(evutil_socket_t fd, short what, void *arg) {
    sio_conn *c = arg;
    (void)fd, (void)what;
    if (c->state == ST_CLOSED)
        poll_release(c);
    else if (c->defer == DEFER_CLEAN)
        conn_finish(c, NULL);
    else if (c->defer)
        conn_fail(c, "http: %s", strerror(c->defer));
}

static struct evhttp_request *poll_request(sio_conn *c,
                                           void (*cb)(struct evhttp_request *, void *)) {
    struct evhttp_request *r = evhttp_request_new(cb, c);
    if (r) evhttp_add_header(evhttp_request_get_output_headers(r), "Host",
                             c->x->host_header);
    return r;
}

/* Starts a request; the uri gets the sid once it is known. evhttp frees the
 * request when it cannot be started. */
static int poll_start(sio_conn *c, struct evhttp_connection *con,
                      struct evhttp_request *r, enum evhttp_cmd_type type) {
    char uri[2048];
    int n = snprintf(uri, sizeof(uri), "%s%s%s", c->x->poll_uri,
                     c->sid[0] ? "&sid=" : "", c->sid);
    if (n < 0 || (size_t)n >= sizeof(uri)) {
        evhttp_request_free(r);
        return -1;
    }
    if (evhttp_make_request(con, r, type, uri) < 0) return -1;
    /* the socket exists once the request is started (connecting or not) */
    int fd = bufferevent_getfd(evhttp_connection_get_bufferevent(con)), one = 1;
    if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

static void poll_http_failed(sio_conn *c, const char *what,
                             struct evhttp_request *r) {
    int code = r ? evhttp_request_get_response_code(r) : 0;
    if (code == 0) {
        conn_fail(c, "%s: connection failed or closed by server", what);
        return;
    }
    struct evbuffer *b = evhttp_request_get_input_buffer(r);
    size_t n = evbuffer_get_length(b);
    if (n > 100) n = 100;
    conn_fail(c, "%s: HTTP %d %.*s", what, code, (int)n,
              n ? (const char *)evbuffer_pullup(b, (ev_ssize_t)n) : "");
}

static void poll_get_done(struct evhttp_request *r, void *arg);

static int poll_get(sio_conn *c) {
    struct evhttp_request *r = poll_request(c, poll_get_done);
    if (!r) return -1;
    return poll_start(c, c->get_con, r, EVHTTP_REQ_GET);
}

/* Splits a payload into its packets; binary ("b...") ones are ignored. */
static void poll_payload(sio_conn *c, const char *p, size_t n) {
    while (n > 0 && c->state != ST_CLOSED) {
        const char *e = memchr(p, '\x1e', n);
        size_t len = e ? (size_t)(e - p) : n;
        if (len && p[0] != 'b') eio_message(c, p, len);
        if (!e) break;
        p = e + 1;
        n -= len + 1;
    }
}

static void poll_get_done(struct evhttp_request *r, void *arg) {
    sio_conn *c = arg;
    if (c->state == ST_CLOSED || c->state == ST_CLOSING) return;
    c->in_cb++;
    if (!r || evhttp_request_get_response_code(r) != 200) {
        poll_http_failed(c, "GET", r);
    } else {
        struct evbuffer *b = evhttp_request_get_input_buffer(r);
        size_t n = evbuffer_get_length(b);
        c->rx_us = sio_now_us();
        poll_payload(c, n ? (const char *)evbuffer_pullup(b, -1) : "", n);
        if (c->state != ST_CLOSED && c->state != ST_CLOSING && poll_get(c) < 0)
            conn_fail(c, "GET: cannot start the request");
    }
    c->in_cb--;
}

static void poll_post_done(struct evhttp_request *r, void *arg);

/* Sends everything queued in one POST, unless one is in flight. */
static void poll_flush(sio_conn *c) {
    if (c->post_busy || !c->sid[0] || c->state == ST_CLOSED ||
        evbuffer_get_length(c->post_q) == 0)
        return;
    struct evhttp_request *r = poll_request(c, poll_post_done);
    if (!r) {
        conn_defer(c, ENOMEM);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type",
                      "text/plain;charset=UTF-8");
    evbuffer_add_buffer(evhttp_request_get_output_buffer(r), c->post_q);
    if (poll_start(c, c->post_con, r, EVHTTP_REQ_POST) < 0) {
        conn_defer(c, EIO);
        return;
    }
    c->post_busy = 1;
}

static void poll_post_done(struct evhttp_request *r, void *arg) {
    sio_conn *c = arg;
    c->post_busy = 0;
    if (c->state == ST_CLOSED) return;
    c->in_cb++;
    if (!r || evhttp_request_get_response_code(r) != 200)
        poll_http_failed(c, "POST", r);
    else if (c->state == ST_CLOSING && evbuffer_get_length(c->post_q) == 0)
        conn_finish(c, NULL);   /* the close packet went out */
    else
        poll_flush(c);
    c->in_cb--;
}

/* Appends one packet to the next POST (no state check: the close uses it). */
static int poll_queue(sio_conn *c, const struct iovec *iov, int iovcnt) {
    if (evbuffer_get_length(c->post_q) > 0 &&
        evbuffer_add(c->post_q, "\x1e", 1) < 0)
        goto nomem;
    for (int i = 0; i < iovcnt; i++)
        if (evbuffer_add(c->post_q, iov[i].iov_base, iov[i].iov_len) < 0)
            goto nomem;
    poll_flush(c);
    return c->defer ? -1 : 0;
nomem:
    conn_defer(c, ENOMEM);
    return -1;
}

/* Socket.IO DISCONNECT when joined, then the Engine.IO close packet; the
 * connection is done when the POST that carries them is answered. */
static void poll_close(sio_conn *c) {
    if (!c->sid[0]) {
        conn_defer(c, DEFER_CLEAN);
        return;
    }
    struct iovec iov = { c->x->disconnect_pkt, strlen(c->x->disconnect_pkt) };
    if (c->state == ST_READY) poll_queue(c, &iov, 1);
    iov.iov_base = "1";
    iov.iov_len = 1;
    poll_queue(c, &iov, 1);
    c->state = ST_CLOSING;
}

static struct evhttp_connection *poll_con_new(sio_conn *c) {
    struct evhttp_connection *con =
        evhttp_connection_base_new(c->x->base, NULL, c->x->numhost,
                                   (unsigned short)c->x->port);
    if (!con) return NULL;
    /* a GET is held for up to pingInterval: allow much more than that */
    evhttp_connection_set_timeout(con, 3600);
    evhttp_connection_set_max_body_size(con, (ev_ssize_t)c->x->max_message);
    return con;
}

static sio_conn *poll_connect(sio_ctx *x, void *udata) {
    sio_conn *c = calloc(1, sizeof(*c));
    if (!c) goto nomem;
    c->x = x;
    c->fd = -1;
    c->udata = udata;
    c->polling = 1;
    c->state = ST_OPENING;
    c->post_q = evbuffer_new();
    c->rev = event_new(x->base, -1, 0, poll_deferred, c);
    if (!c->post_q || !c->rev) goto nomem;
    c->get_con = poll_con_new(c);
    c->post_con = poll_con_new(c);
    if (!c->get_con || !c->post_con) goto nomem;
    if (poll_get(c) < 0) {
        sio_conn_free(c);
        errno = EIO;
        return NULL;
    }
    return c;
nomem:
    sio_conn_free(c);
    errno = ENOMEM;
    return NULL;
}

/* ------------------------------------------------------------- connect */

static void conn_upgrade(sio_conn *c) {
    unsigned char rnd[16];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        conn_fail(c, "RAND_bytes failed");
        return;
    }
    EVP_EncodeBlock((unsigned char *)c->key, rnd, sizeof(rnd));
    evbuffer_add_printf(c->out, "%s%s\r\n\r\n", c->x->request, c->key);
    c->state = ST_UPGRADING;
    event_add(c->rev, NULL);
    conn_flush(c);
}

static void conn_writable(evutil_socket_t fd, short what, void *arg) {
    sio_conn *c = arg;
    (void)what;
    if (c->defer || c->state == ST_CLOSED) return;
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) conn_fail(c, "connect: %s", strerror(err));
        else conn_upgrade(c);
        return;
    }
    conn_flush(c);
}

static sio_conn *conn_new(sio_ctx *x, int fd, void *udata) {
    sio_conn *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->x = x;
    c->fd = fd;
    c->udata = udata;
    c->state = ST_CONNECTING;
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    c->rev = event_new(x->base, fd, EV_READ | EV_PERSIST, conn_readable, c);
    c->wev = event_new(x->base, fd, EV_WRITE, conn_writable, c);
    if (!c->in || !c->out || !c->rev || !c->wev) {
        c->fd = -1;   /* the caller still owns the socket */
        sio_conn_free(c);
        return NULL;
    }
    return c;
}

static int socket_setup(sio_ctx *x) {
    int one = 1;
    int fd = socket(x->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (x->rcvbuf > 0)   /* before connect(), so that the window scale fits */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &x->rcvbuf, sizeof(x->rcvbuf));
    if (x->kernel_rx_time)
        setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
    return fd;
}

sio_conn *sio_connect(sio_ctx *x, void *udata) {
    if (x->polling) return poll_connect(x, udata);
    int fd = socket_setup(x);
    if (fd < 0) return NULL;
    sio_conn *c = conn_new(x, fd, udata);
    if (!c) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    if (connect(fd, (struct sockaddr *)&x->addr, x->addrlen) < 0 &&
        errno != EINPROGRESS) {
        int saved = errno;
        sio_conn_free(c);
        errno = saved;
        return NULL;
    }
    event_add(c->wev, NULL);
    return c;
}

/* --------------------------------------------------------------- close */

void sio_close(sio_conn *c) {
    if (c->state == ST_CLOSED || c->state == ST_CLOSING) return;
    if (c->polling) {
        poll_close(c);
        return;
    }
    if (c->state < ST_OPENING) {
        event_del(c->wev);
        conn_defer(c, DEFER_CLEAN);
        return;
    }
    static const unsigned char normal[2] = { 0x03, 0xe8 };   /* 1000 */
    struct iovec iov = { (void *)normal, 2 };
    if (c->state == ST_READY)
        eio_send_text(c, c->x->disconnect_pkt, strlen(c->x->disconnect_pkt));
    ws_send(c, WS_CLOSE, &iov, 1);
    c->state = ST_CLOSING;
}

void sio_abort(sio_conn *c) {
    conn_teardown(c);
}

void sio_pause(sio_conn *c) {
    if (!c->polling && c->rev) event_del(c->rev);
}

int sio_fd(const sio_conn *c) {
    return c->fd;
}

void sio_conn_free(sio_conn *c) {
    if (!c) return;
    conn_teardown(c);
    poll_release(c);
    if (c->post_q) evbuffer_free(c->post_q);
    if (c->rev) event_free(c->rev);
    if (c->wev) event_free(c->wev);
    if (c->in) evbuffer_free(c->in);
    if (c->out) evbuffer_free(c->out);
    if (c->frag) evbuffer_free(c->frag);
    free(c);
}

uint64_t sio_rx_time(const sio_conn *c) {
    return c->rx_us;
}

/* ------------------------------------------------------- event helpers */

static const char *skip_ws(const char *s, const char *e) {
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) s++;
    return s;
}

int sio_event_args(const sio_packet *p, const char *name,
                   const char **args, size_t *len) {
    const char *s = p->data, *e = p->data + p->len;
    size_t nl = strlen(name);
    s = skip_ws(s, e);
    if (s == e || *s++ != '[') return 0;
    s = skip_ws(s, e);
    if ((size_t)(e - s) < nl + 2 || *s != '"' || memcmp(s + 1, name, nl) != 0 ||
        s[nl + 1] != '"')
        return 0;
    s = skip_ws(s + nl + 2, e);
    while (e > s && e[-1] != ']') e--;
    if (e == s) return 0;
    e--;
    if (s < e && *s == ',') s++;
    *args = s;
    *len = (size_t)(e - s);
    return 1;
}
