/* api_scgi.c -- see api_scgi.h.
 *
 * A connection goes through: reading (the parser fed with what each read
 * returns; a timer of server.http_timeout from the accept) -> asked (the
 * request handed to api_handle(): at SCGI_DONE, or at SCGI_TOO_LARGE with
 * the body still to drop) -> answered (the response in out; a timer of
 * server.http_timeout to write it) -> closed once the answer is written
 * and the request read to its end.
 *
 * Lifetimes, as in api_http.c: the struct conn belongs to its socket, and
 * to the API while the API has not answered. conn_close() closes the
 * socket and frees the conn unless the API still holds it (api_pending);
 * on_done() then frees it. Nothing is freed inside api_handle(): on_done()
 * called from inside it (in_call) only stores the answer, which ask()
 * writes once api_handle() has returned. */
#define _GNU_SOURCE 1   /* accept4 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>

#include "api_scgi.h"
#include "buf.h"
#include "log.h"
#include "scgi.h"
#include "util.h"

#define MAX_LISTENERS 8
#define READ_CHUNK 16384
#define READS_PER_EVENT 4        /* then the other connections get their turn */
#define ACCEPTS_PER_EVENT 64
#define DRAIN_MAX (64u << 20)    /* body bytes dropped after a 413 */
#define EXTRA_MAX 65536          /* bytes after the request (none are expected) */
#define RETRY_ACCEPT_MS 100      /* after EMFILE */

struct conn {
	int fd;                      /* -1 once closed */
	struct event *ev_read, *ev_write, *timer;
	struct scgi_parser p;
	int complete;                /* the parser said DONE or ERROR */
	int asked;                   /* handed to the API */
	int api_pending;             /* the API has not answered */
	int in_call;                 /* inside api_handle() */
	int answered;                /* out holds the whole answer */
	int too_large;               /* the parser said TOO_LARGE: the body is dropped */
	struct buf out;
	size_t sent;
	uint64_t dropped;            /* body bytes dropped after a 413, or bytes after the request */
	struct conn *prev, *next;    /* open connections */
};

static struct {
	struct event_base *base;
	struct api *api;
	const struct config *cfg;
	struct { int fd; struct event *ev; } l[MAX_LISTENERS];
	int nl;
	int paused;
	int quiesced;
	struct event *retry;         /* re-arms the listeners after EMFILE */
	struct conn *conns;
	unsigned nconns;
} S;

/* --- listening --- */

static void listeners_pause(void)
{
	if (S.paused)
		return;
	S.paused = 1;
	for (int i = 0; i < S.nl; i++)
		event_del(S.l[i].ev);
}

static void listeners_resume(void)
{
	if (!S.paused || S.quiesced || S.nconns >= S.cfg->max_connections)
		return;
	S.paused = 0;
	for (int i = 0; i < S.nl; i++)
		event_add(S.l[i].ev, NULL);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	listeners_resume();
}

/* --- connections --- */

static void unlist(struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		S.conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

/* Closes the socket; frees c unless the API still holds it. */
static void conn_close(struct conn *c)
{
	if (c->fd >= 0) {
		event_free(c->ev_read);
		event_free(c->ev_write);
		event_free(c->timer);
		close(c->fd);
		c->fd = -1;
		unlist(c);
		S.nconns--;
		listeners_resume();
	}
	scgi_free(&c->p);
	buf_free(&c->out);
	if (!c->api_pending)
		free(c);
}

static void arm_timer(struct conn *c)
{
	unsigned ms = S.cfg->http_timeout_ms;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(c->timer, &tv);
}

/* Writes what the socket takes of the answer. Returns 1 when c was closed
 * (the answer is out and the request read to its end, or the socket
 * failed), else 0. */
static int conn_flush(struct conn *c)
{
	while (c->sent < c->out.len) {
		ssize_t n = write(c->fd, c->out.p + c->sent, c->out.len - c->sent);
		if (n > 0) {
			c->sent += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			event_add(c->ev_write, NULL);
			return 0;
		} else {
			log_debug("scgi: write: %s", n < 0 ? strerror(errno) : "nothing written");
			conn_close(c);
			return 1;
		}
	}
	event_del(c->ev_write);
	if (c->complete) {
		conn_close(c);
		return 1;
	}
	return 0;                    /* a 413 whose body is still coming: on_read closes */
}

/* Stores an answer and arms the write timer (the caller writes it). */
static void set_answer(struct conn *c, int status, const char *body, size_t len,
                       unsigned retry_after, const char *allow)
{
	char retry[24];
	const char *h[12];
	int n = 0;
	h[n++] = "Content-Type";
	h[n++] = "application/json";
	h[n++] = "Cache-Control";
	h[n++] = "no-store";
	if (retry_after) {
		snprintf(retry, sizeof retry, "%u", retry_after);
		h[n++] = "Retry-After";
		h[n++] = retry;
	}
	if (allow) {
		h[n++] = "Allow";
		h[n++] = allow;
	}
	h[n] = NULL;
	buf_reset(&c->out);
	if (scgi_response(&c->out, status, NULL, h, body, len) < 0) {
		static const char oops[] = "{\"error\":\"internal\",\"message\":\"cannot write the answer\"}";
		buf_reset(&c->out);
		scgi_response(&c->out, 500, NULL, h, oops, sizeof oops - 1);
	}
	c->sent = 0;
	c->answered = 1;
	arm_timer(c);
}

/* Answers an error of the front itself: {"error": code, "message": msg}. */
static void set_error(struct conn *c, int status, const char *code, const char *msg)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "error", json_object_new_string(code));
	json_object_object_add(o, "message", json_object_new_string(msg));
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	set_answer(c, status, s, strlen(s), 0, NULL);
	json_object_put(o);
}

static void on_done(const struct api_response *res, void *ud)
{
	struct conn *c = ud;
	c->api_pending = 0;
	if (c->fd < 0) {
		free(c);                 /* the web server went away, or the server stopped */
		return;
	}
	if (c->answered)
		return;
	set_answer(c, res->status, res->body, res->len, res->retry_after, res->allow);
	if (!c->in_call)
		conn_flush(c);
}

/* Hands the request to the API. Returns 1 when c was closed. */
static int ask(struct conn *c)
{
	struct scgi_request r;
	const char *why = NULL;
	c->asked = 1;
	if (scgi_request(&c->p, &r, &why) < 0) {
		char msg[160];
		snprintf(msg, sizeof msg, "SCGI: %s", why ? why : "malformed request");
		log_info("scgi: refused: %s", msg);
		set_error(c, 400, "bad_request", msg);
		return conn_flush(c);
	}
	struct api_request ar = {
		.method = r.method,
		.path = r.path,
		.query = r.query,
		.authorization = r.authorization,
		.remote_user = r.remote_user,
		.body = r.body,
		.body_len = r.body_len,
		.body_too_large = r.body_too_large,
	};
	if (c->complete)
		evtimer_del(c->timer);   /* read in time; the API has no timer of ours */
	c->api_pending = 1;
	c->in_call = 1;
	api_handle(S.api, &ar, on_done, c);
	c->in_call = 0;
	return c->answered ? conn_flush(c) : 0;
}

/* Feeds bytes read. Returns 1 when c was closed. */
static int feed(struct conn *c, const char *data, size_t n)
{
	while (n) {
		if (c->complete) {
			/* After the request (one per connection): dropped. */
			c->dropped += n;
			if (c->dropped > EXTRA_MAX + (c->too_large ? DRAIN_MAX : 0)) {
				conn_close(c);
				return 1;
			}
			return 0;
		}
		size_t used = 0;
		int skipping = c->too_large;
		enum scgi_status st = scgi_feed(&c->p, data, n, &used);
		data += used;
		n -= used;
		if (skipping) {
			c->dropped += used;
			if (c->dropped > DRAIN_MAX) {
				log_info("scgi: more than %u body bytes to drop: closing", DRAIN_MAX);
				conn_close(c);
				return 1;
			}
		}
		switch (st) {
		case SCGI_NEED_MORE:
			if (used == 0)
				return 0;
			break;
		case SCGI_TOO_LARGE:
			/* The headers are in: the API answers (413, or what comes
			 * before it); the body is read on and dropped. */
			c->too_large = 1;
			if (ask(c))
				return 1;
			break;
		case SCGI_DONE:
			c->complete = 1;
			if (!c->asked)
				return ask(c);
			if (c->answered && c->sent == c->out.len) {
				conn_close(c);
				return 1;
			}
			break;
		case SCGI_ERROR: {
			char msg[160];
			c->complete = 1;
			snprintf(msg, sizeof msg, "SCGI: %s", scgi_error(&c->p));
			log_info("scgi: refused: %s", msg);
			if (c->answered)     /* cannot happen: the parser errs before TOO_LARGE */
				return 0;
			set_error(c, 400, "bad_request", msg);
			return conn_flush(c);
		}
		}
	}
	return 0;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	char buf[READ_CHUNK];
	for (int i = 0; i < READS_PER_EVENT; i++) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n == 0) {
			/* The web server closed: before the answer, it gave up. */
			if (!c->answered || c->sent < c->out.len)
				log_debug("scgi: the web server closed the connection before the answer");
			conn_close(c);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				log_debug("scgi: read: %s", strerror(errno));
				conn_close(c);
			}
			return;
		}
		if (feed(c, buf, (size_t)n) || (size_t)n < sizeof buf)
			return;
	}
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	conn_flush(arg);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	if (c->answered)
		log_info("scgi: the answer was not taken within server.http_timeout: closing");
	else
		log_info("scgi: no whole request within server.http_timeout: closing");
	conn_close(c);
}

static void conn_new(int fd)
{
	struct conn *c = xcalloc(1, sizeof *c);
	struct scgi_limits lim = { .max_body = api_max_body(S.api) };
	c->fd = fd;
	scgi_init(&c->p, &lim);
	buf_init(&c->out, 0);
	c->ev_read = event_new(S.base, fd, EV_READ | EV_PERSIST, on_read, c);
	c->ev_write = event_new(S.base, fd, EV_WRITE | EV_PERSIST, on_write, c);
	c->timer = evtimer_new(S.base, on_timeout, c);
	if (!c->ev_read || !c->ev_write || !c->timer) {
		log_warn("scgi: out of memory: a connection refused");
		if (c->ev_read)
			event_free(c->ev_read);
		if (c->ev_write)
			event_free(c->ev_write);
		if (c->timer)
			event_free(c->timer);
		scgi_free(&c->p);
		close(fd);
		free(c);
		return;
	}
	c->next = S.conns;
	if (S.conns)
		S.conns->prev = c;
	S.conns = c;
	S.nconns++;
	event_add(c->ev_read, NULL);
	arm_timer(c);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
		if (S.nconns >= S.cfg->max_connections) {
			listeners_pause();   /* re-armed when one closes */
			return;
		}
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				static uint64_t last;
				if (mono_ms() - last > 10000) {
					log_warn("scgi: accept: %s: waiting", strerror(errno));
					last = mono_ms();
				}
				listeners_pause();
				struct timeval tv = { 0, RETRY_ACCEPT_MS * 1000 };
				evtimer_add(S.retry, &tv);
			}
			return;
		}
		conn_new(fd);
	}
}

/* --- the contract --- */

int api_scgi_listen(struct event_base *base, struct api *a, const struct config *cfg, int fd)
{
	if (S.nl == MAX_LISTENERS || S.quiesced)
		return -1;
	S.base = base;
	S.api = a;
	S.cfg = cfg;
	if (!S.retry && !(S.retry = evtimer_new(base, on_retry, NULL)))
		return -1;
	struct event *ev = event_new(base, fd, EV_READ | EV_PERSIST, on_accept, NULL);
	if (!ev)
		return -1;
	S.l[S.nl].fd = fd;
	S.l[S.nl].ev = ev;
	S.nl++;
	if (!S.paused)
		event_add(ev, NULL);
	return 0;
}

void api_scgi_quiesce(void)
{
	S.quiesced = 1;
	for (int i = 0; i < S.nl; i++) {
		event_free(S.l[i].ev);
		close(S.l[i].fd);
	}
	S.nl = 0;
	if (S.retry) {
		event_free(S.retry);
		S.retry = NULL;
	}
}

unsigned api_scgi_pending(void)
{
	return S.nconns;
}

void api_scgi_stop(void)
{
	api_scgi_quiesce();
	while (S.conns) {
		struct conn *c = S.conns;
		if (c->api_pending && !c->answered) {
			set_error(c, 503, "unavailable", "the server is stopping");
			c->complete = 1;     /* close once written */
			if (conn_flush(c))
				continue;
		}
		conn_close(c);
	}
}
