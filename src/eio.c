/* eio.c -- see eio.h.
 *
 * A session is reached by its sid through one table. Its transport is
 * polling or WebSocket; during an upgrade a second, "probe" WebSocket is
 * attached until the client sends the upgrade packet.
 *
 * Polling: packets for the client wait in the session's queue. A GET that
 * finds the queue empty is suspended (MHD_suspend_connection) and the
 * session keeps a pointer to it; the next flush writes the whole queue as
 * one payload into the request, resumes it and forgets it. A POST body is
 * collected up to maxPayload and then decoded packet by packet.
 *
 * Closing: eio_close() takes the sid out of the table, answers a waiting
 * GET, starts the WebSocket close and puts the session on the reap list;
 * the reap pass (after the current callbacks) calls on_close and frees it.
 *
 * Heartbeat: one timer per session, alternating between "send a ping" (after
 * pingInterval) and "the pong is late" (pingTimeout after the ping).
 *
 * In a cluster (Redis), a polling session's requests may land on any
 * instance: see "the cluster" below. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/sha.h>

#include "cluster.h"
#include "dict.h"
#include "eio.h"
#include "http.h"
#include "log.h"
#include "util.h"
#include "ws.h"

/* T_REMOTE: polling in a cluster; the client's packets wait in Redis. */
enum transport { T_POLLING, T_WEBSOCKET, T_REMOTE };

struct endpoint {
	const char *path;
	const struct eio_endpoint_ops *ops;
	void *ud;
};

struct eio_session {
	char sid[ID_LEN + 1];
	struct endpoint *ep;
	enum transport transport;
	unsigned closing : 1;
	unsigned by_client : 1;      /* the client asked to close */
	unsigned awaiting_pong : 1;
	unsigned upgrading : 1;      /* probe answered, waiting for "5" */
	unsigned flush_queued : 1;
	unsigned held : 1;           /* remote: output held in q (handshake, switch to ws) */
	struct eio_msgq q;           /* polling: waiting for the next GET */
	struct http_req *poll;       /* polling: the suspended GET */
	struct ws_conn *ws;          /* WebSocket transport */
	struct ws_conn *probe;       /* WebSocket being upgraded to */
	struct event *heartbeat;
	struct event *upgrade_timer;
	const char *reason;
	struct eio_session *next;    /* on the flush or reap list */
	struct eio_handshake hs;
	void *data;
};

/* A script call's ud that outlives what it was for: the object it points
 * to sets the pointer to NULL when it goes first. */
struct rcall {
	void *p;
	char sid[ID_LEN + 1];
};

/* What a request to an endpoint is, kept between MHD's calls. */
struct eio_req {
	enum { R_POLL, R_POST, R_UPGRADE } kind;
	char sid[ID_LEN + 1];
	struct endpoint *ep;
	struct eio_session *s;       /* R_POLL while suspended */
	struct buf out;              /* R_POLL: the payload once ready */
	int ready;
	int error;                   /* ready: answer this error (errors[]) instead, or -1 */
	struct rcall *call;          /* cluster: a script under way for this request */
	struct event *wait;          /* cluster: a GET waiting for a wake-up */
	struct http_req *req;        /* cluster: suspended, on the list E.suspended */
	unsigned in_waiting : 1;     /* cluster: the GET of E.waiting for its sid */
	unsigned woken : 1;          /* a wake-up came while the pop was under way */
	unsigned noop : 1;           /* so did a noop */
	struct eio_req *prev, *next;
	char hs_addr[64];
};

#define MAX_ENDPOINTS 4

static struct {
	struct event_base *base;
	const struct config *cfg;
	struct endpoint eps[MAX_ENDPOINTS];
	int neps;
	struct dict sessions;
	struct dict per_addr;        /* peer address -> open sessions (as a number) */
	struct event *pass;          /* flushes polls, reaps closed sessions */
	struct eio_session *flush_list, *reap_list;
	struct eio_stats st;
	struct ws_limits wslim;
	/* the cluster */
	struct dict waiting;         /* sid -> struct http_req: the GET served here, from
	                                its pop until its answer */
	struct eio_req *suspended;   /* requests waiting on Redis */
	int stopping;                /* eio_close_all() was called */
	struct dict relays;          /* sid -> struct relay */
	struct batch { char sid[ID_LEN + 1]; struct eio_msg *m; } *batch;
	size_t nbatch, capbatch;
} E;

static const struct ws_ops session_ws_ops, probe_ws_ops;
static void heartbeat_arm(struct eio_session *s, unsigned ms);
static void close_session(struct eio_session *s, const char *reason, int by_client);
static int remote_send(struct eio_session *s, struct eio_msg *m);
static void remote_flush(void);
static void remote_close(struct eio_session *s);
struct http_req;
static enum MHD_Result remote_request(struct http_req *req, struct eio_req *er, int is_get);
static enum MHD_Result remote_handshake(struct http_req *req, struct eio_req *er,
                                        struct eio_session *s);
static void relay_start(const char *sid, int fd, struct MHD_UpgradeResponseHandle *urh,
                        const char *extra, size_t extra_len);
static void wait_end(struct eio_req *er);
static void unlist(struct eio_req *er);
static void remote_answer(struct http_req *req, int error);
static void remote_init(void);

/* --- the loop pass --- */

static void pass_schedule(void)
{
	event_active(E.pass, EV_WRITE, 0);
}

/* The suspended GET's body is in its out buffer: answer it, forget it. */
static void poll_resume(struct eio_session *s)
{
	struct http_req *req = s->poll;
	struct eio_req *er = req->ctx;

	er->ready = 1;
	er->s = NULL;
	s->poll = NULL;
	MHD_resume_connection(req->conn);
	http_wakeup();
}

/* Answers the suspended GET with body (a payload). */
static void poll_answer(struct eio_session *s, const char *body, size_t len)
{
	struct eio_req *er = s->poll->ctx;

	buf_reset(&er->out);
	buf_append(&er->out, body, len);
	poll_resume(s);
}

/* Moves the queue into out as one payload; while an upgrade is under way
 * an empty queue becomes a noop, which ends the poll. */
static void drain(struct eio_session *s, struct buf *out)
{
	struct eio_msg *m;
	buf_reset(out);
	if (!s->q.len)
		buf_putc(out, '6');
	while ((m = eio_msgq_pop(&s->q))) {
		eio_payload_append(out, m);
		eio_msg_unref(m);
	}
}

/* Writes the queue into the waiting GET, if both exist. */
static void poll_flush(struct eio_session *s)
{
	if (!s->poll || (!s->q.len && !s->upgrading))
		return;
	struct eio_req *er = s->poll->ctx;
	drain(s, &er->out);
	poll_resume(s);
}

static void session_free(struct eio_session *s)
{
	eio_msgq_free(&s->q);
	if (s->heartbeat)
		event_free(s->heartbeat);
	if (s->upgrade_timer)
		event_free(s->upgrade_timer);
	json_object_put(s->hs.query);
	free(s->hs.authorization);
	free(s->hs.origin);
	free(s);
}

static void on_pass(evutil_socket_t fd, short what, void *arg)
{
	remote_flush();
	while (E.flush_list) {
		struct eio_session *s = E.flush_list;
		E.flush_list = s->next;
		s->flush_queued = 0;
		if (!s->closing)
			poll_flush(s);
	}
	while (E.reap_list) {
		struct eio_session *s = E.reap_list;
		E.reap_list = s->next;
		s->ep->ops->on_close(s, s->reason, s->ep->ud);
		session_free(s);
	}
}

/* --- sending --- */

int eio_send(struct eio_session *s, struct eio_msg *m)
{
	if (s->closing)
		return -1;
	E.st.msgs_out++;
	if (s->transport == T_WEBSOCKET) {
		if (ws_send(s->ws, m) < 0) {
			log_debug("eio: %s: websocket send refused", s->sid);
			close_session(s, "transport error", 0);
			return -1;
		}
		return 0;
	}
	if (s->transport == T_REMOTE && !s->held)
		return remote_send(s, m);
	if (s->q.bytes + m->len > E.cfg->ws_max_queue) {
		log_info("eio: %s: polling queue over %zu bytes, slow consumer cut off",
		         s->sid, E.cfg->ws_max_queue);
		close_session(s, "transport error", 0);
		return -1;
	}
	if (eio_msgq_push(&s->q, m) < 0) {
		close_session(s, "transport error", 0);
		return -1;
	}
	if (s->poll && !s->flush_queued && s->transport == T_POLLING) {
		s->flush_queued = 1;
		s->next = E.flush_list;
		E.flush_list = s;
		pass_schedule();
	}
	return 0;
}

static void send_ctl(struct eio_session *s, enum eio_type type, const char *data, size_t len)
{
	struct eio_msg *m = eio_msg_text(type, data, len);
	if (!m) {
		close_session(s, "transport error", 0);
		return;
	}
	eio_send(s, m);
	eio_msg_unref(m);
}

/* --- closing --- */

static void close_session(struct eio_session *s, const char *reason, int by_client)
{
	if (s->closing)
		return;
	s->closing = 1;
	s->by_client = (unsigned)by_client;
	s->reason = reason;
	dict_del(&E.sessions, s->sid);
	uintptr_t n = (uintptr_t)dict_get(&E.per_addr, s->hs.addr);
	if (n <= 1)
		dict_del(&E.per_addr, s->hs.addr);
	else
		dict_set(&E.per_addr, s->hs.addr, (void *)(n - 1));
	E.st.sessions--;
	if (s->transport == T_WEBSOCKET)
		E.st.websocket--;
	else
		E.st.polling--;
	evtimer_del(s->heartbeat);
	if (s->transport == T_REMOTE)
		remote_close(s);
	if (s->upgrade_timer)
		evtimer_del(s->upgrade_timer);
	/* A waiting GET learns of the close: "1" when the server closes,
	 * "6" (noop) when the client asked, as the reference server does. */
	if (s->poll)
		poll_answer(s, by_client ? "6" : "1", 1);
	if (s->ws) {
		ws_set_handler(s->ws, NULL, NULL);
		ws_close(s->ws, 1000, NULL);
		s->ws = NULL;
	}
	if (s->probe) {
		ws_set_handler(s->probe, NULL, NULL);
		ws_close(s->probe, 1000, NULL);
		s->probe = NULL;
	}
	log_debug("eio: %s closed: %s", s->sid, reason);
	s->next = E.reap_list;
	E.reap_list = s;
	pass_schedule();
}

void eio_close(struct eio_session *s, const char *reason)
{
	close_session(s, reason, 0);
}

void eio_close_all(const char *reason)
{
	struct dict_iter it;
	struct dict_entry *e;
	E.stopping = 1;
	dict_iter_init(&it, &E.sessions);
	while ((e = dict_next(&it)))
		close_session(e->val, reason, 0);
	/* GETs held here for sessions of other instances end with a noop:
	 * the client's next one goes elsewhere. */
	for (struct eio_req *er = E.suspended, *next; er; er = next) {
		next = er->next;
		if (er->wait) {
			buf_reset(&er->out);
			buf_putc(&er->out, '6');
			remote_answer(er->req, -1);
		}
	}
}

void eio_stop(void)
{
	E.stopping = 1;
	while (E.suspended) {
		struct eio_req *er = E.suspended;
		if (er->call) {
			er->call->p = NULL;
			er->call = NULL;
		}
		buf_reset(&er->out);
		buf_putc(&er->out, '6');
		remote_answer(er->req, er->kind == R_POLL ? -1 : 1);
	}
}

/* --- heartbeat --- */

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	struct eio_session *s = arg;
	if (s->awaiting_pong) {
		close_session(s, "ping timeout", 0);
		return;
	}
	s->awaiting_pong = 1;
	send_ctl(s, EIO_PING, NULL, 0);
	if (!s->closing)
		heartbeat_arm(s, E.cfg->ping_timeout_ms);
}

static void heartbeat_arm(struct eio_session *s, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(s->heartbeat, &tv);
}

/* --- packets from the client --- */

/* Returns 0 to go on, 1 when the session ended, -1 on a protocol error. */
static int on_packet(struct eio_session *s, const struct eio_packet *p)
{
	if (s->closing)
		return 1;
	switch (p->type) {
	case EIO_PONG:
		if (s->awaiting_pong) {
			s->awaiting_pong = 0;
			heartbeat_arm(s, E.cfg->ping_interval_ms);
		}
		return 0;
	case EIO_PING:
		send_ctl(s, EIO_PONG, p->data, p->len);
		return 0;
	case EIO_MESSAGE:
		E.st.msgs_in++;
		if (s->ep->ops->on_message(s, p->data, p->len, p->binary, s->ep->ud) < 0) {
			close_session(s, "parse error", 0);
			return -1;
		}
		return s->closing ? 1 : 0;
	case EIO_CLOSE:
		close_session(s, "transport close", 1);
		return 1;
	case EIO_NOOP:
		return 0;
	default:
		close_session(s, "parse error", 0);
		return -1;
	}
}

static int payload_cb(const struct eio_packet *p, void *ud)
{
	return on_packet(ud, p);
}

static void ws_session_message(struct ws_conn *c, int binary, const char *data, size_t len,
                               void *ud)
{
	struct eio_session *s = ud;
	struct eio_packet p;

	if (binary) {
		p.type = EIO_MESSAGE;
		p.binary = 1;
		p.data = data;
		p.len = len;
	} else if (eio_packet_parse(data, len, &p) < 0) {
		close_session(s, "parse error", 0);
		return;
	}
	on_packet(s, &p);
}

static void ws_session_close(struct ws_conn *c, void *ud)
{
	struct eio_session *s = ud;
	s->ws = NULL;                /* gone: nothing to close */
	close_session(s, "transport close", 1);
}

static const struct ws_ops session_ws_ops = { ws_session_message, ws_session_close };

/* --- upgrade: the probe WebSocket --- */

static void end_probe(struct eio_session *s)
{
	if (s->upgrade_timer)
		evtimer_del(s->upgrade_timer);
	s->upgrading = 0;
	if (s->probe) {
		ws_set_handler(s->probe, NULL, NULL);
		ws_close(s->probe, 1000, NULL);
		s->probe = NULL;
	}
}

static void probe_message(struct ws_conn *c, int binary, const char *data, size_t len, void *ud)
{
	struct eio_session *s = ud;
	struct eio_packet p;

	if (binary || eio_packet_parse(data, len, &p) < 0) {
		end_probe(s);
		return;
	}
	if (p.type == EIO_PING && p.len == 5 && memcmp(p.data, "probe", 5) == 0) {
		struct eio_msg *pong = eio_msg_text(EIO_PONG, "probe", 5);
		if (pong)
			ws_send(c, pong);
		eio_msg_unref(pong);
		s->upgrading = 1;
		poll_flush(s);           /* a waiting GET ends with a noop */
		return;
	}
	if (p.type == EIO_UPGRADE && s->upgrading) {
		/* Switch: the probe becomes the transport, the queue drains into it. */
		struct eio_msg *m;
		if (s->upgrade_timer)
			evtimer_del(s->upgrade_timer);
		s->upgrading = 0;
		if (s->poll)
			poll_answer(s, "6", 1);
		s->ws = s->probe;
		s->probe = NULL;
		ws_set_handler(s->ws, &session_ws_ops, s);
		s->transport = T_WEBSOCKET;
		E.st.polling--;
		E.st.websocket++;
		while ((m = eio_msgq_pop(&s->q))) {
			ws_send(s->ws, m);
			eio_msg_unref(m);
		}
		log_debug("eio: %s upgraded to websocket", s->sid);
		return;
	}
	end_probe(s);
}

static void probe_close(struct ws_conn *c, void *ud)
{
	struct eio_session *s = ud;
	s->probe = NULL;
	end_probe(s);
}

static const struct ws_ops probe_ws_ops = { probe_message, probe_close };

static void on_upgrade_timeout(evutil_socket_t fd, short what, void *arg)
{
	end_probe(arg);
}

/* --- sessions --- */

static void copy_handshake(struct eio_handshake *hs, struct MHD_Connection *c)
{
	const char *v;
	http_peer_addr(c, hs->addr, sizeof hs->addr);
	if ((v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization")))
		hs->authorization = strdup(v);
	if ((v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin")))
		hs->origin = strdup(v);
}

static enum MHD_Result query_add(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
	json_object *q = cls;
	if (json_object_object_length(q) < 64 && strlen(key) < 256)
		json_object_object_add(q, key, json_object_new_string(value ? value : ""));
	return MHD_YES;
}

static struct eio_session *session_new(struct endpoint *ep, enum transport t,
                                       struct MHD_Connection *c)
{
	struct eio_session *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	if (random_id(s->sid) < 0 || dict_get(&E.sessions, s->sid)) {
		free(s);
		return NULL;
	}
	s->ep = ep;
	s->transport = t;
	s->heartbeat = evtimer_new(E.base, on_heartbeat, s);
	if (!s->heartbeat || dict_set(&E.sessions, s->sid, s) < 0) {
		if (s->heartbeat)
			event_free(s->heartbeat);
		free(s);
		return NULL;
	}
	if (c) {
		s->hs.query = json_object_new_object();
		MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, query_add, s->hs.query);
		copy_handshake(&s->hs, c);
	}
	uintptr_t n = (uintptr_t)dict_get(&E.per_addr, s->hs.addr);
	dict_set(&E.per_addr, s->hs.addr, (void *)(n + 1));
	E.st.sessions++;
	E.st.opened++;
	if (t == T_WEBSOCKET)
		E.st.websocket++;
	else
		E.st.polling++;
	return s;
}

/* Sends the open packet and starts the heartbeat. */
static void session_open(struct eio_session *s)
{
	char open[256];
	int n = snprintf(open, sizeof open,
	                 "{\"sid\":\"%s\",\"upgrades\":[%s],\"pingInterval\":%u,"
	                 "\"pingTimeout\":%u,\"maxPayload\":%zu}",
	                 s->sid, s->transport != T_WEBSOCKET ? "\"websocket\"" : "",
	                 E.cfg->ping_interval_ms, E.cfg->ping_timeout_ms, E.cfg->max_payload);
	send_ctl(s, EIO_OPEN, open, (size_t)n);
	heartbeat_arm(s, E.cfg->ping_interval_ms);
	log_debug("eio: %s opened (%s) from %s", s->sid, eio_transport(s), s->hs.addr);
	s->ep->ops->on_open(s, s->ep->ud);
}

/* --- HTTP --- */

static const char *const errors[] = {
	"Transport unknown", "Session ID unknown", "Bad handshake method", "Bad request",
	"Forbidden", "Unsupported protocol version",
};

static int header_has_token(struct MHD_Connection *c, const char *name, const char *token);

/* The JSON error of the reference server. A refused WebSocket upgrade also
 * closes the connection, as clients expect of a failed handshake. */
static enum MHD_Result reply_error(struct MHD_Connection *c, int code)
{
	char body[96];
	int n = snprintf(body, sizeof body, "{\"code\":%d,\"message\":\"%s\"}", code, errors[code]);
	struct MHD_Response *r = MHD_create_response_from_buffer((size_t)n, body,
	                                                         MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "application/json");
	if (header_has_token(c, "Upgrade", "websocket"))
		MHD_add_response_header(r, "Connection", "close");
	http_add_cors(r, c);
	enum MHD_Result ret = MHD_queue_response(c, code == 4 ? MHD_HTTP_FORBIDDEN
	                                                     : MHD_HTTP_BAD_REQUEST, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_payload(struct MHD_Connection *c, const char *body, size_t len)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/plain; charset=UTF-8");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	http_add_cors(r, c);
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static void eio_req_free(struct http_req *req)
{
	struct eio_req *er = req->ctx;
	if (er->s && er->s->poll == req)
		er->s->poll = NULL;
	if (er->call)
		er->call->p = NULL;
	wait_end(er);
	unlist(er);
	buf_free(&er->out);
	free(er);
}

static int header_has_token(struct MHD_Connection *c, const char *name, const char *token)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
	size_t tl = strlen(token);
	if (!v)
		return 0;
	while (*v) {
		while (*v == ' ' || *v == ',' || *v == '\t')
			v++;
		const char *e = v;
		while (*e && *e != ',')
			e++;
		const char *t = e;
		while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
			t--;
		if ((size_t)(t - v) == tl && strncasecmp(v, token, tl) == 0)
			return 1;
		v = e;
	}
	return 0;
}

static void on_upgraded(void *cls, struct MHD_Connection *c, void *con_cls,
                        const char *extra, size_t extra_len, MHD_socket fd,
                        struct MHD_UpgradeResponseHandle *urh)
{
	struct http_req *req = cls;
	struct eio_req *er = req->ctx;
	struct eio_session *s = NULL;

	if (er->sid[0]) {
		s = dict_get(&E.sessions, er->sid);
		if (cluster_enabled() && (!s || s->transport == T_REMOTE)) {
			relay_start(er->sid, fd, urh, extra, extra_len);
			return;
		}
		if (!s || s->closing || s->transport != T_POLLING || s->probe) {
			struct ws_conn *w = ws_conn_new(fd, urh, NULL, 0, &E.wslim, NULL, NULL);
			if (w)
				ws_close(w, 1000, NULL);
			return;
		}
		s->probe = ws_conn_new(fd, urh, extra, extra_len, &E.wslim, &probe_ws_ops, s);
		if (!s->probe)
			return;
		if (!s->upgrade_timer)
			s->upgrade_timer = evtimer_new(E.base, on_upgrade_timeout, s);
		if (s->upgrade_timer) {
			unsigned ms = E.cfg->upgrade_timeout_ms;
			struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
			evtimer_add(s->upgrade_timer, &tv);
		}
		return;
	}
	s = session_new(er->ep, T_WEBSOCKET, c);
	if (!s) {
		struct ws_conn *w = ws_conn_new(fd, urh, NULL, 0, &E.wslim, NULL, NULL);
		if (w)
			ws_close(w, 1011, NULL);
		return;
	}
	s->ws = ws_conn_new(fd, urh, extra, extra_len, &E.wslim, &session_ws_ops, s);
	if (!s->ws) {
		close_session(s, "transport error", 0);
		return;
	}
	session_open(s);
}

static enum MHD_Result start_upgrade(struct http_req *req, struct eio_req *er)
{
	struct MHD_Connection *c = req->conn;
	const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Key");
	const char *ver = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Version");
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char sha[SHA_DIGEST_LENGTH];
	char accept[64], cat[128];

	if (!key || strlen(key) != 24)
		return reply_error(c, 3);
	if (!ver || strcmp(ver, "13") != 0) {
		struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		if (!r)
			return MHD_NO;
		MHD_add_response_header(r, "Sec-WebSocket-Version", "13");
		MHD_add_response_header(r, "Connection", "close");
		enum MHD_Result ret = MHD_queue_response(c, 426, r);
		MHD_destroy_response(r);
		return ret;
	}
	snprintf(cat, sizeof cat, "%s%s", key, guid);
	SHA1((const unsigned char *)cat, strlen(cat), sha);
	base64_encode(accept, sha, sizeof sha);

	struct MHD_Response *r = MHD_create_response_for_upgrade(on_upgraded, req);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_UPGRADE, "websocket");
	MHD_add_response_header(r, "Sec-WebSocket-Accept", accept);
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, r);
	MHD_destroy_response(r);
	(void)er;
	return ret;
}

/* Is there room for one more session from this peer? Answers the request
 * (503 or 429) and returns 0 when not. */
static int admit(struct MHD_Connection *c, enum MHD_Result *ret)
{
	char addr[64];
	if (E.st.sessions >= E.cfg->max_connections) {
		log_warn("eio: server.max_connections (%u) reached: refusing a session",
		         E.cfg->max_connections);
		*ret = http_reply_json(c, MHD_HTTP_SERVICE_UNAVAILABLE,
		                       "{\"code\":3,\"message\":\"Too many connections\"}");
		return 0;
	}
	if (E.cfg->max_connections_per_ip) {
		http_peer_addr(c, addr, sizeof addr);
		if ((uintptr_t)dict_get(&E.per_addr, addr) >= E.cfg->max_connections_per_ip) {
			log_info("eio: %s: server.max_connections_per_ip (%u) reached", addr,
			         E.cfg->max_connections_per_ip);
			*ret = http_reply_json(c, MHD_HTTP_TOO_MANY_REQUESTS,
			                       "{\"code\":3,\"message\":\"Too many connections from this address\"}");
			return 0;
		}
	}
	return 1;
}

/* First call for a request: decide what it is. */
static enum MHD_Result begin(struct http_req *req, struct endpoint *ep, const char *method)
{
	struct MHD_Connection *c = req->conn;
	const char *transport = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "transport");
	const char *eio = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "EIO");
	const char *sid = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "sid");
	int is_get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
	int upgrade = is_get && header_has_token(c, "Upgrade", "websocket");
	enum transport t;

	if (strcmp(method, MHD_HTTP_METHOD_OPTIONS) == 0)
		return http_reply_preflight(c);
	if (transport && strcmp(transport, "polling") == 0)
		t = T_POLLING;
	else if (transport && strcmp(transport, "websocket") == 0)
		t = T_WEBSOCKET;
	else
		return reply_error(c, 0);
	if (!eio || strcmp(eio, "4") != 0)
		return reply_error(c, 5);
	if (t == T_WEBSOCKET && !upgrade)
		return reply_error(c, 3);

	struct eio_req *er = calloc(1, sizeof *er);
	if (!er)
		return MHD_NO;
	buf_init(&er->out, 0);
	er->ep = ep;
	er->error = -1;
	req->ctx = er;
	req->ctx_free = eio_req_free;

	if (!sid) {
		enum MHD_Result refused;
		if (!is_get)
			return reply_error(c, 2);
		if (!admit(c, &refused))
			return refused;
		if (t == T_WEBSOCKET) {
			er->kind = R_UPGRADE;
			return start_upgrade(req, er);
		}
		/* In a cluster, the session lives in Redis so that any instance
		 * serves its requests; with Redis down, here only. */
		int remote = cluster_up();
		struct eio_session *s = session_new(ep, remote ? T_REMOTE : T_POLLING, c);
		if (!s)
			return http_reply_json(c, MHD_HTTP_SERVICE_UNAVAILABLE,
			                       "{\"code\":3,\"message\":\"Bad request\"}");
		s->held = (unsigned)remote;
		session_open(s);
		if (remote)
			return remote_handshake(req, er, s);
		/* The open packet is the whole answer to the handshake. */
		struct eio_msg *open = eio_msgq_pop(&s->q);
		enum MHD_Result r = reply_payload(c, open->data, open->len);
		eio_msg_unref(open);
		return r;
	}

	struct eio_session *s = dict_get(&E.sessions, sid);
	if (strlen(sid) != ID_LEN)
		return reply_error(c, 1);
	if (cluster_enabled() && (!s || s->transport == T_REMOTE)) {
		memcpy(er->sid, sid, sizeof er->sid);
		if (upgrade) {
			er->kind = R_UPGRADE;
			return start_upgrade(req, er);
		}
		if (is_get)
			return remote_request(req, er, 1);
		if (strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
			er->kind = R_POST;
			return MHD_YES;      /* finish_post */
		}
		return reply_error(c, 3);
	}
	if (!s)
		return reply_error(c, 1);
	memcpy(er->sid, s->sid, sizeof er->sid);
	if (upgrade) {
		/* Already upgraded or upgrading: the reference server completes
		 * the WebSocket handshake and closes at once (on_upgraded). */
		er->kind = R_UPGRADE;
		return start_upgrade(req, er);
	}
	if (s->transport != T_POLLING)
		return reply_error(c, 3);
	if (is_get) {
		er->kind = R_POLL;
		if (s->poll) {
			/* Two GETs at once: the protocol forbids it; end the session. */
			log_debug("eio: %s: overlapping GET", s->sid);
			close_session(s, "transport error", 0);
			return reply_error(c, 3);
		}
		if (s->q.len || s->upgrading) {
			drain(s, &er->out);
			return reply_payload(c, er->out.p, er->out.len);
		}
		s->poll = req;
		er->s = s;
		MHD_suspend_connection(c);
		return MHD_YES;
	}
	if (strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
		er->kind = R_POST;
		return MHD_YES;
	}
	return reply_error(c, 3);
}

static enum MHD_Result finish_post(struct http_req *req, struct eio_req *er)
{
	struct MHD_Connection *c = req->conn;
	struct eio_session *s = dict_get(&E.sessions, er->sid);

	if (cluster_enabled() && (!s || s->transport == T_REMOTE))
		return remote_request(req, er, 0);
	if (!s || s->closing || s->transport != T_POLLING)
		return reply_error(c, 1);
	if (req->body_overflow) {
		close_session(s, "transport error", 0);
		return http_reply_json(c, MHD_HTTP_CONTENT_TOO_LARGE,
		                       "{\"code\":3,\"message\":\"Payload too large\"}");
	}
	int r = eio_payload_decode(req->body.p ? req->body.p : "", req->body.len, payload_cb, s);
	if (r < 0) {
		close_session(s, "parse error", 0);
		return reply_error(c, 3);
	}
	return http_reply(c, MHD_HTTP_OK, "text/html", "ok", 2);
}

static enum MHD_Result handle(struct http_req *req, const char *url, const char *method,
                              const char *upload, size_t *upload_size, void *ud)
{
	struct endpoint *ep = ud;

	/* A body is read whole (up to maxPayload; the rest is dropped and
	 * makes a 413) before anything is decided: libmicrohttpd closes a
	 * connection whose response was queued with body bytes unread. */
	if (*upload_size) {
		req->body.max = E.cfg->max_payload;
		if (!req->body_overflow && buf_append(&req->body, upload, *upload_size) < 0)
			req->body_overflow = 1;
		*upload_size = 0;
		return MHD_YES;
	}
	if (!req->started) {
		req->started = 1;
		enum MHD_Result r = begin(req, ep, method);
		struct eio_req *er = req->ctx;
		if (r != MHD_YES || !er || er->kind != R_POST)
			return r;
		return finish_post(req, er);
	}
	struct eio_req *er = req->ctx;
	if (!er || !er->ready)
		return MHD_YES;
	if (er->error >= 0)
		return reply_error(req->conn, er->error);
	if (er->kind == R_POST)
		return http_reply(req->conn, MHD_HTTP_OK, "text/html", "ok", 2);
	return reply_payload(req->conn, er->out.p, er->out.len);
}

/* --- the cluster ---------------------------------------------------------
 *
 * With Redis, a polling session's requests may land on any instance. The
 * instance that answered the handshake owns the session (the heartbeat,
 * the Socket.IO sockets, their rooms); every instance, the owner included,
 * serves the session's requests the same way, through Redis:
 *
 *   - the owner pushes the packets for the client into the list
 *     P:eio:SID:q: one script call per pass of the loop for all the
 *     sessions it sent to (a broadcast is one call, not one per session);
 *   - a GET pops that list; when it is empty the instance holding the GET
 *     writes its id in P:eio:SID:w, and the push script publishes a
 *     wake-up ('w') to it;
 *   - a POST is published to the owner ('i'), which decodes it. The
 *     client sends one POST at a time and waits for its "ok", which comes
 *     after the publish: the owner sees them in order;
 *   - a WebSocket upgrade is answered where it lands. On the owner, the
 *     session becomes an ordinary local WebSocket session; elsewhere, that
 *     instance relays (struct relay): frames go to the owner ('f', 'g'),
 *     packets come from the list as they do for a GET.
 * The list orders the output, Redis's single thread the input. A session
 * whose owner is gone is unknown to every instance once P:eio:SID expires
 * (pingInterval + pingTimeout after the owner's last ping). */

#define Q_BATCH 200          /* packets one pop takes at most */

static const char lua_open[] =
	"local b = ARGV[1]..':eio:'..ARGV[2]\n"
	"redis.call('HSET', b, 'owner', ARGV[3])\n"
	"redis.call('PEXPIRE', b, ARGV[4])\n"
	"return 1\n";

/* ARGV: prefix, ttl, max packets, n, sid1..sidn, packets... Returns the
 * sids whose list went over the limit. */
static const char lua_push[] =
	"local p, ttl, max, n = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])\n"
	"local over, wake = {}, {}\n"
	"for i = 1, n do\n"
	"  local sid = ARGV[4 + i]\n"
	"  local b = p..':eio:'..sid\n"
	"  local len = 0\n"
	"  for j = 5 + n, #ARGV do len = redis.call('RPUSH', b..':q', ARGV[j]) end\n"
	"  redis.call('PEXPIRE', b..':q', ttl)\n"
	"  redis.call('PEXPIRE', b, ttl)\n"
	"  if len > max then over[#over + 1] = sid end\n"
	"  local w = redis.call('GET', b..':w')\n"
	"  if w then\n"
	"    wake[w] = (wake[w] or '')..sid\n"
	"    if redis.call('HEXISTS', b, 'ws') == 1 then redis.call('PEXPIRE', b..':w', ttl) end\n"
	"  end\n"
	"end\n"
	"for w, sids in pairs(wake) do redis.call('PUBLISH', p..':inst:'..w, 'w'..sids) end\n"
	"return over\n";

/* ARGV: prefix, sid, instance, wait ms, max bytes, keep (1: a relay).
 * -1: no such session; -2: upgraded (a GET is refused); 0: waiting;
 * 1: answer a noop now (an upgrade is under way); or {left, packets...}. */
static const char lua_poll[] =
	"local b = ARGV[1]..':eio:'..ARGV[2]\n"
	"local q = b..':q'\n"
	"local keep = ARGV[6] == '1'\n"
	"if not keep and redis.call('HEXISTS', b, 'ws') == 1 then return -2 end\n"
	"local items = redis.call('LRANGE', q, 0, " "199" ")\n"
	"if #items > 0 then\n"
	"  local take, bytes, max = 0, 0, tonumber(ARGV[5])\n"
	"  for i, v in ipairs(items) do\n"
	"    if take > 0 and bytes + #v + 1 > max then break end\n"
	"    take, bytes = i, bytes + #v + 1\n"
	"  end\n"
	"  redis.call('LTRIM', q, take, -1)\n"
	"  if not keep then redis.call('DEL', b..':w') end\n"
	"  local out = { redis.call('LLEN', q) }\n"
	"  for i = 1, take do out[i + 1] = items[i] end\n"
	"  return out\n"
	"end\n"
	"if redis.call('EXISTS', b) == 0 then return -1 end\n"
	"if keep then return { 0 } end\n"
	"if redis.call('EXISTS', b..':p') == 1 then return 1 end\n"
	"redis.call('SET', b..':w', ARGV[3], 'PX', ARGV[4])\n"
	"return 0\n";

/* ARGV: prefix, sid, message. Publishes the message to the owner: the
 * number of receivers (0: the owner is gone), or -1: no such session. */
static const char lua_post[] =
	"local o = redis.call('HGET', ARGV[1]..':eio:'..ARGV[2], 'owner')\n"
	"if not o then return -1 end\n"
	"return redis.call('PUBLISH', ARGV[1]..':inst:'..o, ARGV[3])\n";

/* ARGV: prefix, sid, upgrade timeout. The probe succeeded: a waiting GET
 * ends with a noop, and later ones until the upgrade or the timeout. */
static const char lua_probe[] =
	"local b = ARGV[1]..':eio:'..ARGV[2]\n"
	"if redis.call('EXISTS', b) == 0 or redis.call('HEXISTS', b, 'ws') == 1 then return -1 end\n"
	"redis.call('SET', b..':p', '1', 'PX', ARGV[3])\n"
	"local w = redis.call('GET', b..':w')\n"
	"if w then\n"
	"  redis.call('DEL', b..':w')\n"
	"  redis.call('PUBLISH', ARGV[1]..':inst:'..w, 'n'..ARGV[2])\n"
	"end\n"
	"return 1\n";

/* ARGV: prefix, sid, instance. The upgrade: the session's output now
 * goes to the WebSocket on this instance. Returns {0, packets...} (what
 * the list held) or -1. */
static const char lua_upgrade[] =
	"local b = ARGV[1]..':eio:'..ARGV[2]\n"
	"local o = redis.call('HGET', b, 'owner')\n"
	"if not o or redis.call('HEXISTS', b, 'ws') == 1 then return -1 end\n"
	"redis.call('HSET', b, 'ws', ARGV[3])\n"
	"redis.call('DEL', b..':p')\n"
	"local w = redis.call('GET', b..':w')\n"
	"if w and w ~= ARGV[3] then redis.call('PUBLISH', ARGV[1]..':inst:'..w, 'n'..ARGV[2]) end\n"
	"if o == ARGV[3] then\n"
	"  redis.call('DEL', b..':w')\n"
	"  redis.call('PUBLISH', ARGV[1]..':inst:'..o, 'u'..ARGV[2])\n"
	"else redis.call('SET', b..':w', ARGV[3], 'PX', redis.call('PTTL', b)) end\n"
	"local out = redis.call('LRANGE', b..':q', 0, -1)\n"
	"redis.call('DEL', b..':q')\n"
	"table.insert(out, 1, 0)\n"
	"return out\n";

/* ARGV: prefix, sid, linger, by client (1 or 0). The owner closed the
 * session: what is left in the list (a close packet) stays a little for
 * the last GET. When the client asked, nothing was pushed: a waiting GET
 * ends with a noop, as on a local session. */
static const char lua_close[] =
	"local b = ARGV[1]..':eio:'..ARGV[2]\n"
	"redis.call('DEL', b, b..':p')\n"
	"redis.call('PEXPIRE', b..':q', ARGV[3])\n"
	"local w = redis.call('GET', b..':w')\n"
	"if w and ARGV[4] == '1' then\n"
	"  redis.call('DEL', b..':w')\n"
	"  redis.call('PUBLISH', ARGV[1]..':inst:'..w, 'n'..ARGV[2])\n"
	"end\n"
	"return 1\n";

static struct { int open, push, poll, post, probe, upgrade, close; } S;

static unsigned session_ttl(void)
{
	return E.cfg->ping_interval_ms + E.cfg->ping_timeout_ms + 2000;
}

static unsigned max_packets(void)
{
	/* The list is bounded by count; websocket.max_queue is in bytes. */
	size_t n = E.cfg->ws_max_queue / 256;
	return n < 256 ? 256 : (unsigned)n;
}


static struct rcall *rcall_new(void *p, const char *sid)
{
	struct rcall *c = xcalloc(1, sizeof *c);
	c->p = p;
	snprintf(c->sid, sizeof c->sid, "%s", sid);
	return c;
}

/* --- the owner's side --- */

static int remote_send(struct eio_session *s, struct eio_msg *m)
{
	if (E.nbatch == E.capbatch) {
		E.capbatch = E.capbatch ? 2 * E.capbatch : 256;
		E.batch = xmust(realloc(E.batch, E.capbatch * sizeof *E.batch));
	}
	memcpy(E.batch[E.nbatch].sid, s->sid, sizeof s->sid);
	E.batch[E.nbatch++].m = eio_msg_ref(m);
	if (E.nbatch == 1)
		pass_schedule();
	return 0;
}

static void on_pushed(redisReply *rep, void *ud)
{
	(void)ud;
	if (!rep || rep->type != REDIS_REPLY_ARRAY) {
		if (rep && rep->type == REDIS_REPLY_ERROR)
			log_warn("eio: pushing to Redis: %s", rep->str);
		return;
	}
	for (size_t i = 0; i < rep->elements; i++) {
		struct eio_session *s = rep->element[i]->type == REDIS_REPLY_STRING
		                        ? dict_get(&E.sessions, rep->element[i]->str) : NULL;
		if (s) {
			log_info("eio: %s: polling queue over %u packets, slow consumer cut off",
			         s->sid, max_packets());
			close_session(s, "transport error", 0);
		}
	}
}

/* One script call for each run of sessions that were sent the same
 * messages (a broadcast: all of them). */
static void remote_flush(void)
{
	size_t i = 0;
	char ttl[16], max[16], nbuf[16];
	snprintf(ttl, sizeof ttl, "%u", session_ttl());
	snprintf(max, sizeof max, "%u", max_packets());
	while (i < E.nbatch) {
		/* the messages of the first session: the run of its entries */
		size_t j = i + 1;
		while (j < E.nbatch && strcmp(E.batch[j].sid, E.batch[i].sid) == 0)
			j++;
		size_t nm = j - i, nsids = 1, k = j;
		/* the sessions after it that got exactly the same messages */
		while (k + nm <= E.nbatch) {
			size_t x = 0;
			while (x < nm && E.batch[k + x].m == E.batch[i + x].m &&
			       strcmp(E.batch[k + x].sid, E.batch[k].sid) == 0)
				x++;
			if (x < nm || (k + nm < E.nbatch && strcmp(E.batch[k + nm].sid, E.batch[k].sid) == 0))
				break;
			nsids++;
			k += nm;
		}
		size_t argc = 4 + nsids + nm;
		const char **argv = xmust(malloc(argc * sizeof *argv));
		size_t *lens = xmust(malloc(argc * sizeof *lens));
		char **recs = xmust(malloc(nm * sizeof *recs));
		snprintf(nbuf, sizeof nbuf, "%zu", nsids);
		argv[0] = cluster_prefix();
		argv[1] = ttl;
		argv[2] = max;
		argv[3] = nbuf;
		for (size_t a = 0; a < 4; a++)
			lens[a] = strlen(argv[a]);
		for (size_t a = 0; a < nsids; a++) {
			argv[4 + a] = E.batch[i + a * nm].sid;
			lens[4 + a] = ID_LEN;
		}
		for (size_t a = 0; a < nm; a++) {
			recs[a] = xmust(eio_msg_record(E.batch[i + a].m, &lens[4 + nsids + a]));
			argv[4 + nsids + a] = recs[a];
		}
		if (cluster_eval(S.push, on_pushed, NULL, (int)argc, argv, lens) < 0)
			log_warn("eio: Redis is down: %zu packet(s) for polling clients dropped", nm * nsids);
		for (size_t a = 0; a < nm; a++)
			free(recs[a]);
		free(recs);
		free(argv);
		free(lens);
		i = k;
	}
	for (size_t a = 0; a < E.nbatch; a++)
		eio_msg_unref(E.batch[a].m);
	E.nbatch = 0;
}

static void remote_close(struct eio_session *s)
{
	char linger[16];
	if (!cluster_up())
		return;                  /* Redis is gone: so is what it held */
	/* The client learns of a close it did not ask for from a close packet. */
	if (!s->by_client) {
		struct eio_msg *m = eio_msg_text(EIO_CLOSE, NULL, 0);
		if (m) {
			remote_send(s, m);
			eio_msg_unref(m);
		}
	}
	remote_flush();
	snprintf(linger, sizeof linger, "%u", E.cfg->ping_timeout_ms + 1000);
	const char *argv[] = { cluster_prefix(), s->sid, linger, s->by_client ? "1" : "0" };
	cluster_eval(S.close, NULL, NULL, 4, argv, NULL);
}

/* Packets from the client, forwarded by whichever instance got them. */
static int walk_payload(struct eio_session *s, const char *body, size_t len)
{
	return eio_payload_decode(body, len, payload_cb, s);
}

/* The sid at the head of a message from another instance, copied into
 * sid (NUL-terminated). */
static void sid_of(const char *body, char sid[ID_LEN + 1])
{
	memcpy(sid, body, ID_LEN);
	sid[ID_LEN] = '\0';
}

static struct eio_session *owned(const char *body, size_t len)
{
	char sid[ID_LEN + 1];
	if (len < ID_LEN)
		return NULL;
	sid_of(body, sid);
	struct eio_session *s = dict_get(&E.sessions, sid);
	return s && !s->closing && s->transport == T_REMOTE ? s : NULL;
}

static void on_in_payload(const char *body, size_t len, void *ud)
{
	(void)ud;
	struct eio_session *s = owned(body, len);
	if (s && walk_payload(s, body + ID_LEN, len - ID_LEN) < 0)
		close_session(s, "parse error", 0);
}

static void on_in_frame(const char *body, size_t len, void *ud)
{
	struct eio_session *s = owned(body, len);
	struct eio_packet p;
	(void)ud;
	if (!s)
		return;
	if (eio_packet_parse(body + ID_LEN, len - ID_LEN, &p) < 0) {
		close_session(s, "parse error", 0);
		return;
	}
	on_packet(s, &p);
}

static void on_in_binary(const char *body, size_t len, void *ud)
{
	struct eio_session *s = owned(body, len);
	(void)ud;
	if (s) {
		struct eio_packet p = { EIO_MESSAGE, 1, body + ID_LEN, len - ID_LEN };
		on_packet(s, &p);
	}
}

static void on_in_closed(const char *body, size_t len, void *ud)
{
	struct eio_session *s = owned(body, len);
	(void)ud;
	if (s)
		close_session(s, "transport close", 1);
}

/* --- requests for any session: GET and POST --- */

static void wait_end(struct eio_req *er)
{
	if (er->wait) {
		event_free(er->wait);
		er->wait = NULL;
	}
	if (er->in_waiting) {
		if (er->req && dict_get(&E.waiting, er->sid) == er->req)
			dict_del(&E.waiting, er->sid);
		er->in_waiting = 0;
	}
}

static void suspend(struct http_req *req)
{
	struct eio_req *er = req->ctx;
	er->req = req;
	er->prev = NULL;
	er->next = E.suspended;
	if (E.suspended)
		E.suspended->prev = er;
	E.suspended = er;
	E.st.suspended++;
	MHD_suspend_connection(req->conn);
}

static void unlist(struct eio_req *er)
{
	if (!er->req)
		return;
	if (er->prev)
		er->prev->next = er->next;
	else
		E.suspended = er->next;
	if (er->next)
		er->next->prev = er->prev;
	er->req = NULL;
	E.st.suspended--;
}

/* Answers a suspended cluster request: with out's payload, or error. */
static void remote_answer(struct http_req *req, int error)
{
	struct eio_req *er = req->ctx;
	wait_end(er);
	unlist(er);
	er->ready = 1;
	er->error = error;
	MHD_resume_connection(req->conn);
	http_wakeup();
}

static void remote_poll(struct http_req *req);

static void on_wait_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct http_req *req = arg;
	struct eio_req *er = req->ctx;
	(void)fd;
	(void)what;
	buf_reset(&er->out);
	buf_putc(&er->out, '6');
	remote_answer(req, -1);
}

static void on_polled(redisReply *rep, void *ud)
{
	struct rcall *c = ud;
	struct http_req *req = c->p;
	free(c);
	if (!req)
		return;                  /* the client went away (what was popped is lost, as on a broken write) */
	struct eio_req *er = req->ctx;
	er->call = NULL;
	if (!rep || rep->type == REDIS_REPLY_ERROR) {
		remote_answer(req, 1);
		return;
	}
	if (rep->type == REDIS_REPLY_INTEGER) {
		if (rep->integer == 0 && er->woken && !er->noop && !E.stopping) {
			remote_poll(req);    /* woken while popping: pop again */
			return;
		}
		if (rep->integer == 0 && !er->noop && !E.stopping) {
			/* Wait for a wake-up, at most until the owner's next ping
			 * (which wakes us) would have been late. */
			unsigned ms = E.cfg->ping_interval_ms + E.cfg->ping_timeout_ms;
			struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
			er->wait = evtimer_new(E.base, on_wait_timeout, req);
			if (!er->wait) {
				remote_answer(req, 3);
				return;
			}
			evtimer_add(er->wait, &tv);
			return;
		}
		if (rep->integer == 1 || rep->integer == 0) {
			buf_reset(&er->out);
			buf_putc(&er->out, '6');
			remote_answer(req, -1);
			return;
		}
		remote_answer(req, rep->integer == -2 ? 3 : 1);
		return;
	}
	buf_reset(&er->out);
	for (size_t i = 1; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
		if (er->out.len)
			buf_putc(&er->out, EIO_RS);
		buf_append(&er->out, rep->element[i]->str, rep->element[i]->len);
	}
	if (!er->out.len)
		buf_putc(&er->out, '6');
	remote_answer(req, -1);
}

static void remote_poll(struct http_req *req)
{
	struct eio_req *er = req->ctx;
	char wait[16], max[24];
	snprintf(wait, sizeof wait, "%u", E.cfg->ping_interval_ms + E.cfg->ping_timeout_ms + 1000);
	snprintf(max, sizeof max, "%zu", E.cfg->max_payload);
	const char *argv[] = { cluster_prefix(), er->sid, cluster_instance(), wait, max, "0" };
	/* Registered before the pop is sent: its wake-up may come first. */
	struct http_req *old = dict_get(&E.waiting, er->sid);
	if (old && old != req) {     /* two GETs: the older ends */
		struct eio_req *o = old->ctx;
		o->in_waiting = 0;
		dict_del(&E.waiting, er->sid);
		if (o->call)
			o->noop = 1;
		else
			on_wait_timeout(-1, 0, old);
	}
	if (!er->in_waiting) {
		if (dict_set(&E.waiting, er->sid, req) < 0) {
			remote_answer(req, 3);
			return;
		}
		er->in_waiting = 1;
	}
	er->woken = 0;
	er->call = rcall_new(req, er->sid);
	if (cluster_eval(S.poll, on_polled, er->call, 6, argv, NULL) < 0) {
		free(er->call);
		er->call = NULL;
		remote_answer(req, 1);
	}
}

/* A wake-up: the sessions (ID_LEN characters each) have packets. */
static void on_wake(const char *body, size_t len, void *ud);

static void on_noop(const char *body, size_t len, void *ud)
{
	char sid[ID_LEN + 1];
	(void)ud;
	if (len != ID_LEN)
		return;
	sid_of(body, sid);
	struct http_req *req = dict_get(&E.waiting, sid);
	if (!req)
		return;
	struct eio_req *er = req->ctx;
	if (er->call)
		er->noop = 1;            /* answered when the pop comes back */
	else
		on_wait_timeout(-1, 0, req);
}

static void on_posted(redisReply *rep, void *ud)
{
	struct rcall *c = ud;
	struct http_req *req = c->p;
	free(c);
	if (!req)
		return;
	struct eio_req *er = req->ctx;
	er->call = NULL;
	if (!rep || rep->type != REDIS_REPLY_INTEGER || rep->integer <= 0) {
		remote_answer(req, 1);
		return;
	}
	buf_reset(&er->out);
	buf_puts(&er->out, "ok");
	remote_answer(req, -1);
}

static int count_packet(const struct eio_packet *p, void *ud)
{
	(void)p;
	(*(size_t *)ud)++;
	return 0;
}

/* Publishes kind + sid + data to the owner of sid; cb gets the reply. */
static int remote_post(const char *sid, char kind, const char *data, size_t len,
                       redis_reply_cb cb, void *ud)
{
	struct buf m;
	buf_init(&m, 0);
	buf_putc(&m, kind);
	buf_append(&m, sid, ID_LEN);
	buf_append(&m, data, len);
	const char *argv[] = { cluster_prefix(), sid, m.p ? m.p : "" };
	size_t lens[] = { strlen(argv[0]), ID_LEN, m.len };
	int rc = cluster_eval(S.post, cb, ud, 3, argv, lens);
	buf_free(&m);
	return rc;
}

/* A GET or POST of a session served through Redis. */
static enum MHD_Result remote_request(struct http_req *req, struct eio_req *er, int is_get)
{
	struct MHD_Connection *c = req->conn;
	if (is_get) {
		er->kind = R_POLL;
		suspend(req);
		remote_poll(req);
		return MHD_YES;
	}
	er->kind = R_POST;
	if (req->body_overflow)
		return http_reply_json(c, MHD_HTTP_CONTENT_TOO_LARGE,
		                       "{\"code\":3,\"message\":\"Payload too large\"}");
	size_t n = 0;
	const char *body = req->body.p ? req->body.p : "";
	if (eio_payload_decode(body, req->body.len, count_packet, &n) < 0 || n == 0)
		return reply_error(c, 3);
	suspend(req);
	er->call = rcall_new(req, er->sid);
	if (remote_post(er->sid, 'i', body, req->body.len, on_posted, er->call) < 0) {
		free(er->call);
		er->call = NULL;
		remote_answer(req, 1);
	}
	return MHD_YES;
}

/* The handshake of a session that lives in Redis: answered once Redis
 * knows the session, so that the next request may go anywhere. */
static void on_opened(redisReply *rep, void *ud)
{
	struct rcall *c = ud;
	struct http_req *req = c->p;
	struct eio_session *s = dict_get(&E.sessions, c->sid);
	free(c);
	if (s) {
		s->held = 0;
		/* anything sent meanwhile follows the open packet */
		struct eio_msg *m;
		while ((m = eio_msgq_pop(&s->q))) {
			remote_send(s, m);
			eio_msg_unref(m);
		}
		if (!rep || rep->type == REDIS_REPLY_ERROR)
			close_session(s, "transport error", 0);
	}
	if (!req)
		return;
	struct eio_req *er = req->ctx;
	er->call = NULL;
	if (!rep || rep->type == REDIS_REPLY_ERROR) {
		remote_answer(req, 3);
		return;
	}
	remote_answer(req, -1);
}

static enum MHD_Result remote_handshake(struct http_req *req, struct eio_req *er,
                                        struct eio_session *s)
{
	char ttl[16];
	struct eio_msg *open = eio_msgq_pop(&s->q);
	buf_reset(&er->out);
	buf_append(&er->out, open->data, open->len);
	eio_msg_unref(open);
	memcpy(er->sid, s->sid, sizeof er->sid);
	er->kind = R_POLL;
	snprintf(ttl, sizeof ttl, "%u", session_ttl());
	const char *argv[] = { cluster_prefix(), s->sid, cluster_instance(), ttl };
	er->call = rcall_new(req, s->sid);
	if (cluster_eval(S.open, on_opened, er->call, 4, argv, NULL) < 0) {
		free(er->call);
		er->call = NULL;
		close_session(s, "transport error", 0);
		return http_reply_json(req->conn, MHD_HTTP_SERVICE_UNAVAILABLE,
		                       "{\"code\":3,\"message\":\"Service unavailable\"}");
	}
	suspend(req);
	return MHD_YES;
}

/* --- the WebSocket of a session another instance owns --- */

struct relay {
	char sid[ID_LEN + 1];
	struct ws_conn *ws;          /* NULL once closed */
	struct event *timer;         /* the upgrade timeout */
	unsigned refs;               /* the WebSocket, and each script under way */
	unsigned upgraded : 1;
	unsigned upgrading : 1;      /* "5" received, the script under way */
	unsigned mine : 1;           /* the session is owned here: adopt it */
	unsigned probed : 1;
	unsigned polling : 1;        /* a pop is under way */
	unsigned again : 1;          /* woken during the pop: pop again */
	struct held_frame { int binary; char *data; size_t len; } *held;
	size_t nheld;                /* frames that came while adopting */
	/* Adopting waits for both the script's reply and its marker ('u'),
	 * which comes after anything published to us before the upgrade. */
	unsigned replied : 1;
	unsigned marked : 1;
	struct eio_msgq backlog;     /* the reply's packets */
};

#define MAX_HELD 256

static const struct ws_ops relay_ws_ops;

static void relay_unref(struct relay *r)
{
	if (--r->refs)
		return;
	for (size_t i = 0; i < r->nheld; i++)
		free(r->held[i].data);
	free(r->held);
	eio_msgq_free(&r->backlog);
	if (r->timer)
		event_free(r->timer);
	free(r);
}

static void relay_end(struct relay *r, uint16_t code)
{
	if (!r->ws)
		return;
	ws_set_handler(r->ws, NULL, NULL);
	ws_close(r->ws, code, NULL);
	r->ws = NULL;
	if (dict_get(&E.relays, r->sid) == r)
		dict_del(&E.relays, r->sid);
	if (r->timer)
		evtimer_del(r->timer);
	relay_unref(r);
}

/* Writes the records of a pop (from element first on) to the WebSocket;
 * a close packet ends the relay. */
static void relay_write(struct relay *r, redisReply *rep, size_t first)
{
	for (size_t i = first; r->ws && i < rep->elements; i++) {
		struct eio_msg *m = eio_msg_unrecord(rep->element[i]->str, rep->element[i]->len);
		if (!m)
			continue;
		int close = !m->binary && m->len == 1 && m->data[0] == '0' + EIO_CLOSE;
		ws_send(r->ws, m);
		eio_msg_unref(m);
		if (close)
			relay_end(r, 1000);
	}
}

static void relay_pop(struct relay *r);

static void on_relay_popped(redisReply *rep, void *ud)
{
	struct relay *r = ud;
	r->polling = 0;
	if (r->ws && rep && rep->type == REDIS_REPLY_INTEGER && rep->integer < 0)
		relay_end(r, 1000);      /* the session is gone */
	else if (r->ws && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements) {
		relay_write(r, rep, 1);
		if (rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[0]->integer > 0)
			r->again = 1;
	}
	if (r->ws && r->again)
		relay_pop(r);
	relay_unref(r);
}

static void relay_pop(struct relay *r)
{
	char max[24];
	if (r->polling) {
		r->again = 1;
		return;
	}
	r->again = 0;
	snprintf(max, sizeof max, "%zu", E.cfg->ws_max_queue);
	const char *argv[] = { cluster_prefix(), r->sid, cluster_instance(), "0", max, "1" };
	r->refs++;
	r->polling = 1;
	if (cluster_eval(S.poll, on_relay_popped, r, 6, argv, NULL) < 0) {
		r->polling = 0;
		r->refs--;
		relay_end(r, 1011);
	}
}

static void on_wake(const char *body, size_t len, void *ud)
{
	char sid[ID_LEN + 1];
	(void)ud;
	for (size_t i = 0; i + ID_LEN <= len; i += ID_LEN) {
		sid_of(body + i, sid);
		struct http_req *req = dict_get(&E.waiting, sid);
		if (req) {
			struct eio_req *er = req->ctx;
			if (er->call) {
				er->woken = 1;
			} else {
				if (er->wait)
					event_free(er->wait);
				er->wait = NULL;
				remote_poll(req);
			}
			continue;
		}
		struct relay *r = dict_get(&E.relays, sid);
		if (r && r->upgraded)
			relay_pop(r);
	}
}

static void on_relay_sent(redisReply *rep, void *ud)
{
	struct relay *r = ud;
	if (r->ws && (!rep || rep->type != REDIS_REPLY_INTEGER || rep->integer <= 0))
		relay_end(r, 1000);      /* the owner is gone */
	relay_unref(r);
}

static void relay_forward(struct relay *r, char kind, const char *data, size_t len)
{
	r->refs++;
	if (remote_post(r->sid, kind, data, len, on_relay_sent, r) < 0) {
		r->refs--;
		relay_end(r, 1011);
	}
}

/* The session is ours after all: the WebSocket becomes its transport. */
static void adopt(struct relay *r, struct eio_session *s)
{
	struct eio_msg *m;
	struct ws_conn *ws = r->ws;
	ws_set_handler(ws, &session_ws_ops, s);
	r->ws = NULL;
	dict_del(&E.relays, r->sid);
	if (r->timer)
		evtimer_del(r->timer);
	r->refs--;                   /* the WebSocket's; the caller holds one more */
	s->ws = ws;
	s->transport = T_WEBSOCKET;
	s->held = 0;
	E.st.polling--;
	E.st.websocket++;
	while ((m = eio_msgq_pop(&r->backlog))) {
		ws_send(ws, m);
		eio_msg_unref(m);
	}
	while ((m = eio_msgq_pop(&s->q))) {
		ws_send(ws, m);
		eio_msg_unref(m);
	}
	log_debug("eio: %s upgraded to websocket", s->sid);
	/* what the client sent after "5", in order, before anything newer */
	for (size_t i = 0; i < r->nheld; i++) {
		if (!s->closing)
			ws_session_message(ws, r->held[i].binary, r->held[i].data, r->held[i].len, s);
	}
}

/* Both the reply and the marker are in: the session takes the WebSocket
 * (or, if it ended meanwhile, the relay does). */
static void adopt_now(struct relay *r)
{
	struct eio_session *s = dict_get(&E.sessions, r->sid);
	if (s && s->transport == T_REMOTE && !s->closing) {
		adopt(r, s);
		return;
	}
	relay_end(r, 1000);
}

static void on_adopt_marker(const char *body, size_t len, void *ud)
{
	char sid[ID_LEN + 1];
	(void)ud;
	if (len != ID_LEN)
		return;
	sid_of(body, sid);
	struct relay *r = dict_get(&E.relays, sid);
	if (!r || !r->mine || !r->ws)
		return;
	r->marked = 1;
	if (r->replied) {
		r->refs++;
		adopt_now(r);
		relay_unref(r);
	}
}

static void on_upgraded_remote(redisReply *rep, void *ud)
{
	struct relay *r = ud;
	struct eio_session *s = dict_get(&E.sessions, r->sid);
	if (s && s->transport == T_REMOTE && s->held && (!rep || rep->type != REDIS_REPLY_ARRAY)) {
		/* Not upgraded: back to polling, with what was held. */
		struct eio_msg *m;
		s->held = 0;
		while ((m = eio_msgq_pop(&s->q))) {
			remote_send(s, m);
			eio_msg_unref(m);
		}
	}
	if (!r->ws) {
		relay_unref(r);
		return;
	}
	if (!rep || rep->type != REDIS_REPLY_ARRAY) {
		relay_end(r, 1000);
		relay_unref(r);
		return;
	}
	if (r->mine) {
		for (size_t i = 1; i < rep->elements; i++) {
			struct eio_msg *m = eio_msg_unrecord(rep->element[i]->str, rep->element[i]->len);
			if (m) {
				eio_msgq_push(&r->backlog, m);
				eio_msg_unref(m);
			}
		}
		r->replied = 1;
		if (r->marked)
			adopt_now(r);
	} else {
		r->upgraded = 1;
		if (r->timer)
			evtimer_del(r->timer);
		relay_write(r, rep, 1);
		if (r->ws)
			relay_pop(r);        /* what the owner pushed since */
	}
	relay_unref(r);
}

static void on_probed(redisReply *rep, void *ud)
{
	struct relay *r = ud;
	if (r->ws) {
		if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1) {
			struct eio_msg *pong = eio_msg_text(EIO_PONG, "probe", 5);
			if (pong)
				ws_send(r->ws, pong);
			eio_msg_unref(pong);
			r->probed = 1;
		} else {
			relay_end(r, 1000);
		}
	}
	relay_unref(r);
}

static void relay_message(struct ws_conn *c, int binary, const char *data, size_t len, void *ud)
{
	struct relay *r = ud;
	struct eio_packet p;
	(void)c;
	if (r->upgraded || (r->upgrading && !r->mine)) {
		relay_forward(r, binary ? 'g' : 'f', data, len);
		return;
	}
	if (r->upgrading) {
		/* Adopting: kept until the session is ours, then replayed. */
		if (r->nheld == MAX_HELD) {
			relay_end(r, 1008);
			return;
		}
		r->held = xmust(realloc(r->held, (r->nheld + 1) * sizeof *r->held));
		char *copy = xmust(malloc(len + 1));
		memcpy(copy, data, len);
		copy[len] = '\0';
		r->held[r->nheld++] = (struct held_frame){ binary, copy, len };
		return;
	}
	if (binary || eio_packet_parse(data, len, &p) < 0) {
		relay_end(r, 1000);
		return;
	}
	if (p.type == EIO_PING && p.len == 5 && memcmp(p.data, "probe", 5) == 0 && !r->probed) {
		char tmo[16];
		snprintf(tmo, sizeof tmo, "%u", E.cfg->upgrade_timeout_ms);
		const char *argv[] = { cluster_prefix(), r->sid, tmo };
		r->refs++;
		if (cluster_eval(S.probe, on_probed, r, 3, argv, NULL) < 0) {
			r->refs--;
			relay_end(r, 1011);
		}
		return;
	}
	if (p.type == EIO_UPGRADE && r->probed) {
		/* On the owner, output is held from now until the upgrade's
		 * reply; what was already batched goes first. */
		struct eio_session *s = dict_get(&E.sessions, r->sid);
		if (s && s->transport == T_REMOTE && !s->closing) {
			remote_flush();
			s->held = 1;
			r->mine = 1;
		}
		r->upgrading = 1;
		const char *argv[] = { cluster_prefix(), r->sid, cluster_instance() };
		r->refs++;
		if (cluster_eval(S.upgrade, on_upgraded_remote, r, 3, argv, NULL) < 0) {
			r->refs--;
			if (s)
				s->held = 0;
			relay_end(r, 1011);
		}
		return;
	}
	relay_end(r, 1000);
}

static void relay_close(struct ws_conn *c, void *ud)
{
	struct relay *r = ud;
	(void)c;
	if (r->upgraded)
		relay_forward(r, 'c', "", 0);
	r->ws = NULL;
	if (dict_get(&E.relays, r->sid) == r)
		dict_del(&E.relays, r->sid);
	relay_unref(r);
}

static const struct ws_ops relay_ws_ops = { relay_message, relay_close };

static void on_relay_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	(void)fd;
	(void)what;
	if (!r->upgraded)
		relay_end(r, 1000);
}

/* A WebSocket for an existing session, in a cluster: probe, upgrade, then
 * relay (or adopt, on the owner). */
static void relay_start(const char *sid, int fd, struct MHD_UpgradeResponseHandle *urh,
                        const char *extra, size_t extra_len)
{
	struct relay *r = xcalloc(1, sizeof *r);
	snprintf(r->sid, sizeof r->sid, "%s", sid);
	r->refs = 1;
	if (dict_get(&E.relays, sid) || dict_set(&E.relays, r->sid, r) < 0) {
		struct ws_conn *w = ws_conn_new(fd, urh, NULL, 0, &E.wslim, NULL, NULL);
		if (w)
			ws_close(w, 1000, NULL);
		free(r);
		return;
	}
	r->ws = ws_conn_new(fd, urh, extra, extra_len, &E.wslim, &relay_ws_ops, r);
	if (!r->ws) {
		dict_del(&E.relays, r->sid);
		free(r);
		return;
	}
	r->timer = evtimer_new(E.base, on_relay_timeout, r);
	if (r->timer) {
		unsigned ms = E.cfg->upgrade_timeout_ms;
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
		evtimer_add(r->timer, &tv);
	}
}

/* Redis is gone: the sessions that live there cannot go on. Their
 * clients reconnect, and get sessions of this instance until it is back. */
static void on_cluster_state(int up, void *ud)
{
	struct dict_iter it;
	struct dict_entry *e;
	(void)ud;
	if (up)
		return;
	dict_iter_init(&it, &E.sessions);
	while ((e = dict_next(&it))) {
		struct eio_session *s = e->val;
		if (s->transport == T_REMOTE)
			close_session(s, "transport error", 0);
	}
	for (struct eio_req *er = E.suspended, *next; er; er = next) {
		next = er->next;
		if (er->wait)
			remote_answer(er->req, 1);
	}
	struct relay *r;
	while ((dict_iter_init(&it, &E.relays), e = dict_next(&it))) {
		r = e->val;
		relay_end(r, 1011);
	}
}

static void remote_init(void)
{
	cluster_on_state(on_cluster_state, NULL);
	S.open = cluster_script(lua_open);
	S.push = cluster_script(lua_push);
	S.poll = cluster_script(lua_poll);
	S.post = cluster_script(lua_post);
	S.probe = cluster_script(lua_probe);
	S.upgrade = cluster_script(lua_upgrade);
	S.close = cluster_script(lua_close);
	cluster_on_direct('i', on_in_payload, NULL);
	cluster_on_direct('f', on_in_frame, NULL);
	cluster_on_direct('g', on_in_binary, NULL);
	cluster_on_direct('c', on_in_closed, NULL);
	cluster_on_direct('w', on_wake, NULL);
	cluster_on_direct('n', on_noop, NULL);
	cluster_on_direct('u', on_adopt_marker, NULL);
}

/* --- set-up and accessors --- */

void eio_init(struct event_base *base, const struct config *cfg)
{
	E.base = base;
	E.cfg = cfg;
	dict_init(&E.sessions);
	dict_init(&E.per_addr);
	dict_init(&E.waiting);
	dict_init(&E.relays);
	remote_init();
	E.pass = event_new(base, -1, 0, on_pass, NULL);
	E.wslim.max_message = cfg->max_payload;
	E.wslim.max_queue = cfg->ws_max_queue;
	E.wslim.nodelay = cfg->ws_nodelay;
}

int eio_endpoint_add(const char *path, const struct eio_endpoint_ops *ops, void *ud)
{
	if (E.neps == MAX_ENDPOINTS)
		return -1;
	struct endpoint *ep = &E.eps[E.neps++];
	ep->path = path;
	ep->ops = ops;
	ep->ud = ud;
	return http_route(path, handle, ep);
}

const char *eio_sid(const struct eio_session *s) { return s->sid; }
const char *eio_transport(const struct eio_session *s)
{
	return s->transport == T_WEBSOCKET ? "websocket" : "polling";
}
const struct eio_handshake *eio_handshake(const struct eio_session *s) { return &s->hs; }
void eio_set_data(struct eio_session *s, void *data) { s->data = data; }
void *eio_data(const struct eio_session *s) { return s->data; }
void eio_get_stats(struct eio_stats *st) { *st = E.st; }
