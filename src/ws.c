/* ws.c -- see ws.h.
 *
 * I/O model: one persistent, level-triggered read event per connection; a
 * write event only while wslay has bytes it could not write.
 *
 * Output: ws_send() takes a reference to a shared message and puts it on
 * the connection's queue. A message carries its own WebSocket frame header
 * (eio_msg_ws_frame), built once, so a broadcast is one buffer on the wire
 * for all its recipients: nothing is copied per connection. The connection
 * goes on a "dirty" list, and one loop-wide event, made active with
 * event_active() (no system call), flushes every dirty connection after the
 * current callbacks with one writev() of all its queued frames: a burst to
 * one connection costs one system call, a broadcast to N connections N
 * system calls and no epoll changes. wslay parses what the client sends
 * and writes the control frames (pong, close); its frames and ours
 * interleave only at frame boundaries. The same pass frees connections
 * that are finished.
 *
 * TCP_NODELAY is on unless websocket.nodelay is off: small frames then leave
 * at once instead of waiting behind a delayed ACK (up to 40 ms). With it
 * off, Nagle's algorithm holds each frame until the previous one is
 * acknowledged, which separates frames in time; clients that read one frame
 * per wake-up and drop the rest (the official protocol test suites) need
 * that, and the conformance profile turns it off.
 *
 * Memory: libmicrohttpd keeps an upgraded connection's memory pool (the
 * size of server.connection_memory) and its connection record for as long
 * as the upgrade lasts. A connection here therefore works on a duplicate of
 * the socket and hands MHD's back at once (MHD_UPGRADE_ACTION_CLOSE): MHD
 * frees its side and closes its descriptor, without shutdown() on the
 * upgrade path, so the socket lives on through the duplicate, which this
 * file owns and closes.
 *
 * wslay's context holds two fixed 4 KB buffers. A connection keeps one only
 * while wslay holds state: it is made when bytes arrive (or when a close
 * must be sent), and "parked" (freed) after a pass in which every byte
 * read belonged to a complete frame, no fragmented message is under way,
 * no close was sent or received and wslay has nothing to write. Frame
 * boundaries come from wslay's frame callbacks: a client frame's header is
 * 2 bytes, the extended length (2 or 8) and the 4-byte mask, so the bytes
 * of the frames completed add up to the bytes read exactly when nothing is
 * half read (a header longer than the shortest encoding only keeps the
 * context). An idle WebSocket then costs this file's record and libevent's
 * two events. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <wslay/wslay.h>

#include "eio_codec.h"
#include "http.h"
#include "log.h"
#include "ws.h"

#define RECV_BUDGET  (256 * 1024)   /* bytes read per readiness callback */
#define CLOSE_GRACE_MS 2000         /* wait for the peer's close frame */

struct ws_conn {
	int fd;
	wslay_event_context_ptr ctx; /* NULL: parked, nothing half read (see above) */
	struct ws_frames frames;     /* since ctx was made */
	size_t max_message;
	struct event *rev, *wev, *grace;
	const struct ws_ops *ops;
	void *ud;
	char *extra;                 /* bytes read by MHD past the request */
	size_t extra_len, extra_off;
	size_t budget;               /* bytes left to read in this callback */
	size_t max_queue;
	int max_iov;                 /* frames per writev: 1 without TCP_NODELAY */
	struct eio_msgq q;           /* frames to write */
	size_t qoff;                 /* bytes of the first frame already written */
	struct ws_conn *dirty_next;
	unsigned dirty : 1;          /* on the dirty list */
	unsigned close_pending : 1;  /* ws_close() waits for the queue to drain */
	uint16_t close_code;
	char close_reason[124];
	unsigned closing : 1;        /* close frame queued */
	unsigned dead : 1;           /* to be freed by the next pass */
	unsigned eof : 1;
};

static struct event_base *base;
static struct event *pass_ev;
static struct ws_conn *dirty;
static unsigned nconns;

static int unpark(struct ws_conn *c);
static void park(struct ws_conn *c);

/* wslay's answers for a parked connection: nothing to write, no close. */
static int want_write(const struct ws_conn *c)
{
	return c->ctx && wslay_event_want_write(c->ctx);
}

static int want_read(const struct ws_conn *c)
{
	return !c->ctx || wslay_event_want_read(c->ctx);
}

static int close_sent(const struct ws_conn *c)
{
	return c->ctx && wslay_event_get_close_sent(c->ctx);
}

/* Drops the queued frames, except one half written (when keep_partial). */
static void drop_queue(struct ws_conn *c, int keep_partial)
{
	eio_msgq_truncate(&c->q, keep_partial && c->qoff ? 1 : 0);
}

static int write_queue(struct ws_conn *c)
{
	enum { MAX_IOV = 64 };
	struct iovec iov[MAX_IOV];

	if (close_sent(c))
		drop_queue(c, 0);        /* nothing may follow a close frame */

	while (c->q.len) {
		int n = 0;
		for (size_t i = 0; i < c->q.len && n < c->max_iov; i++, n++) {
			size_t len;
			const char *f = eio_msg_ws_frame(eio_msgq_at(&c->q, i), &len);
			iov[n].iov_base = (void *)f;
			iov[n].iov_len = len;
		}
		iov[0].iov_base = (char *)iov[0].iov_base + c->qoff;
		iov[0].iov_len -= c->qoff;
		ssize_t w;
		do
			w = writev(c->fd, iov, n);
		while (w < 0 && errno == EINTR);
		if (w < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		size_t left = (size_t)w;
		for (int i = 0; i < n; i++) {
			if (left < iov[i].iov_len) {
				c->qoff += left;
				return 0;        /* the socket is full */
			}
			left -= iov[i].iov_len;
			c->qoff = 0;
			eio_msg_unref(eio_msgq_pop(&c->q));
		}
	}
	return 0;
}

static void mark(struct ws_conn *c)
{
	if (!c->dirty) {
		c->dirty = 1;
		c->dirty_next = dirty;
		dirty = c;
	}
	event_active(pass_ev, EV_WRITE, 0);
}

static void kill_conn(struct ws_conn *c)
{
	c->dead = 1;
	mark(c);
}

static void destroy(struct ws_conn *c)
{
	/* Tell the owner first: c is still valid (and dead, so ws_send and
	 * ws_close do nothing) during on_close. */
	if (c->ops && c->ops->on_close)
		c->ops->on_close(c, c->ud);
	event_free(c->rev);
	event_free(c->wev);
	if (c->grace)
		event_free(c->grace);
	if (c->ctx)
		wslay_event_context_free(c->ctx);
	free(c->extra);
	eio_msgq_free(&c->q);
	close(c->fd);
	nconns--;
	free(c);
}

/* Writes what can be written. A frame started is finished before any
 * other; wslay's control frames (pong, close reply) go when no frame of
 * ours is half written; ours go when wslay has nothing half written; our
 * own close goes last, after everything queued before it. */
static void flush(struct ws_conn *c)
{
	if (c->dead)
		return;
	if (c->qoff && write_queue(c) < 0)
		goto fail;
	if (!c->qoff && want_write(c) && wslay_event_send(c->ctx) < 0)
		goto fail;
	if (!c->qoff && !want_write(c) && write_queue(c) < 0)
		goto fail;
	if (c->close_pending && !c->q.len && !want_write(c)) {
		c->close_pending = 0;
		if (unpark(c) < 0 ||
		    wslay_event_queue_close(c->ctx, c->close_code, (const uint8_t *)c->close_reason,
		                            strlen(c->close_reason)) != 0 ||
		    wslay_event_send(c->ctx) < 0)
			goto fail;
	}
	if (c->q.len || c->close_pending || want_write(c)) {
		event_add(c->wev, NULL);
	} else {
		event_del(c->wev);
		if (!want_read(c))
			kill_conn(c);
	}
	return;
fail:
	kill_conn(c);
}

static void on_pass(evutil_socket_t fd, short what, void *arg)
{
	/* Flushing can mark more connections; take the list each round. */
	while (dirty) {
		struct ws_conn *list = dirty;
		dirty = NULL;
		while (list) {
			struct ws_conn *c = list;
			list = c->dirty_next;
			c->dirty = 0;
			if (!c->dead)
				flush(c);
			if (c->dead && !c->dirty)
				destroy(c);
			else if (!c->dead)
				park(c);
		}
	}
}

void ws_init(struct event_base *b)
{
	base = b;
	pass_ev = event_new(base, -1, 0, on_pass, NULL);
}

unsigned ws_count(void)
{
	return nconns;
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *arg)
{
	struct ws_conn *c = arg;

	if (c->extra_off < c->extra_len) {
		size_t n = c->extra_len - c->extra_off;
		if (n > len)
			n = len;
		memcpy(buf, c->extra + c->extra_off, n);
		c->extra_off += n;
		c->frames.in += n;
		return (ssize_t)n;
	}
	if (c->budget == 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (len > c->budget)
		len = c->budget;
	ssize_t r;
	do
		r = recv(c->fd, buf, len, 0);
	while (r < 0 && errno == EINTR);
	if (r > 0) {
		c->budget -= (size_t)r;
		c->frames.in += (uint64_t)r;
		return r;
	}
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	c->eof = 1;
	wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                       int flags, void *arg)
{
	struct ws_conn *c = arg;
	ssize_t r;
	/* wslay writes a frame's header with WSLAY_MSG_MORE: header and
	 * payload then leave in one segment. */
	int f = MSG_NOSIGNAL | (flags & WSLAY_MSG_MORE ? MSG_MORE : 0);

	do
		r = send(c->fd, data, len, f);
	while (r < 0 && errno == EINTR);
	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
	else
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                   void *arg)
{
	struct ws_conn *c = arg;

	if (c->dead || c->closing || !c->ops)
		return;
	if (a->opcode == WSLAY_TEXT_FRAME || a->opcode == WSLAY_BINARY_FRAME)
		c->ops->on_message(c, a->opcode == WSLAY_BINARY_FRAME,
		                   (const char *)a->msg, a->msg_length, c->ud);
}

void ws_frames_start(struct ws_frames *f, int fin, int opcode, uint64_t n)
{
	/* 2 bytes, the extended length, the mask every client frame has */
	f->cur = 2 + (n < 126 ? 0 : n < 65536 ? 2 : 8) + 4 + n;
	if (opcode == WSLAY_TEXT_FRAME || opcode == WSLAY_BINARY_FRAME ||
	    opcode == WSLAY_CONTINUATION_FRAME)
		f->frag = !fin;
}

void ws_frames_end(struct ws_frames *f)
{
	f->done += f->cur;
	f->cur = 0;
}

int ws_frames_between(const struct ws_frames *f)
{
	return f->in == f->done && !f->frag;
}

/* Frame boundaries, for parking (see the top of this file). */
static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *a, void *arg)
{
	struct ws_conn *c = arg;
	(void)ctx;
	ws_frames_start(&c->frames, a->fin, a->opcode, a->payload_length);
}

static void on_frame_end(wslay_event_context_ptr ctx, void *arg)
{
	struct ws_conn *c = arg;
	(void)ctx;
	ws_frames_end(&c->frames);
}

static const struct wslay_event_callbacks callbacks = {
	.recv_callback = recv_cb,
	.send_callback = send_cb,
	.on_frame_recv_start_callback = on_frame_start,
	.on_frame_recv_end_callback = on_frame_end,
	.on_msg_recv_callback = on_msg,
};

/* Gives the connection a wslay context if it has none. */
static int unpark(struct ws_conn *c)
{
	if (c->ctx)
		return 0;
	if (wslay_event_context_server_init(&c->ctx, &callbacks, c) != 0) {
		c->ctx = NULL;
		log_warn("ws: fd %d: out of memory", c->fd);
		return -1;
	}
	wslay_event_config_set_max_recv_msg_length(c->ctx, c->max_message);
	memset(&c->frames, 0, sizeof c->frames);
	return 0;
}

/* Frees the wslay context when it holds nothing (see the top of this file). */
static void park(struct ws_conn *c)
{
	if (!c->ctx || c->closing || !ws_frames_between(&c->frames) ||
	    c->extra_off < c->extra_len || wslay_event_want_write(c->ctx) ||
	    !wslay_event_want_read(c->ctx) || wslay_event_get_close_sent(c->ctx) ||
	    wslay_event_get_close_received(c->ctx))
		return;
	wslay_event_context_free(c->ctx);
	c->ctx = NULL;
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
	kill_conn(arg);
}

/* A protocol failure wslay could not answer itself (a fragmented ping, for
 * one): send a bare close frame 1002 and drop the connection. */
static void fail(struct ws_conn *c)
{
	static const uint8_t close_1002[] = { 0x88, 0x02, 0x03, 0xea };
	if (!c->eof && !close_sent(c))
		(void)!send(c->fd, close_1002, sizeof close_1002, MSG_NOSIGNAL | MSG_DONTWAIT);
	kill_conn(c);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	struct ws_conn *c = arg;

	if (c->dead)
		return;
	c->budget = RECV_BUDGET;
	if (unpark(c) < 0) {
		kill_conn(c);
		return;
	}
	if (wslay_event_recv(c->ctx) < 0) {
		fail(c);
		return;
	}
	if (!wslay_event_want_read(c->ctx))
		event_del(c->rev);
	mark(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	flush(arg);
}

struct ws_conn *ws_conn_new(int fd, struct MHD_UpgradeResponseHandle *urh,
                            const char *extra, size_t extra_len,
                            const struct ws_limits *lim, const struct ws_ops *ops, void *ud)
{
	/* Our own descriptor of the socket; MHD's goes back below. */
	int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	struct ws_conn *c = own < 0 ? NULL : calloc(1, sizeof *c);
	if (!c) {
		log_warn("ws: fd %d: %s", fd, own < 0 ? strerror(errno) : "out of memory");
		goto fail;
	}
	c->fd = own;
	fd = own;
	c->ops = ops;
	c->ud = ud;
	c->max_queue = lim->max_queue;
	if (extra_len) {
		c->extra = malloc(extra_len);
		if (!c->extra)
			goto fail;
		memcpy(c->extra, extra, extra_len);
		c->extra_len = extra_len;
	}
	c->max_message = lim->max_message;
	/* With Nagle on, frames written one by one leave one by one, each
	 * after the previous is acknowledged (see the top of this file). */
	c->max_iov = lim->nodelay ? 64 : 1;
	if (lim->nodelay) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	c->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_read, c);
	c->wev = event_new(base, fd, EV_WRITE, on_write, c);
	if (!c->rev || !c->wev || event_add(c->rev, NULL) < 0)
		goto fail;
	nconns++;
	if (extra_len)          /* frames already here: read them now */
		event_active(c->rev, EV_READ, 0);
	MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
	http_wakeup();
	return c;
fail:
	if (c) {
		if (c->rev)
			event_free(c->rev);
		if (c->wev)
			event_free(c->wev);
		if (c->ctx)
			wslay_event_context_free(c->ctx);
		free(c->extra);
		free(c);
	}
	if (own >= 0)
		close(own);
	MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
	http_wakeup();
	return NULL;
}

void ws_set_handler(struct ws_conn *c, const struct ws_ops *ops, void *ud)
{
	c->ops = ops;
	c->ud = ud;
}

int ws_send(struct ws_conn *c, struct eio_msg *m)
{
	if (c->dead || c->closing)
		return -1;
	size_t wslay_queued = c->ctx ? wslay_event_get_queued_msg_length(c->ctx) : 0;
	if (c->q.bytes + wslay_queued + m->len > c->max_queue) {
		log_info("ws: fd %d: output queue over %zu bytes, slow consumer cut off",
		         c->fd, c->max_queue);
		drop_queue(c, 1);
		ws_close(c, 1008, "slow consumer");
		return -1;
	}
	if (eio_msgq_push(&c->q, m) < 0) {
		kill_conn(c);
		return -1;
	}
	mark(c);
	return 0;
}

void ws_close(struct ws_conn *c, uint16_t code, const char *reason)
{
	if (c->dead || c->closing)
		return;
	c->closing = 1;
	c->close_pending = 1;        /* queued by flush() once our frames are out */
	c->close_code = code;
	snprintf(c->close_reason, sizeof c->close_reason, "%s", reason ? reason : "");
	c->grace = evtimer_new(base, on_grace, c);
	struct timeval tv = { CLOSE_GRACE_MS / 1000, (CLOSE_GRACE_MS % 1000) * 1000 };
	if (c->grace)
		evtimer_add(c->grace, &tv);
	mark(c);
}
