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
 * pingInterval) and "the pong is late" (pingTimeout after the ping). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/sha.h>

#include "dict.h"
#include "eio.h"
#include "http.h"
#include "log.h"
#include "util.h"
#include "ws.h"

enum transport { T_POLLING, T_WEBSOCKET };

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

/* What a request to an endpoint is, kept between MHD's calls. */
struct eio_req {
	enum { R_POLL, R_POST, R_UPGRADE } kind;
	char sid[ID_LEN + 1];
	struct endpoint *ep;
	struct eio_session *s;       /* R_POLL while suspended */
	struct buf out;              /* R_POLL: the payload once ready */
	int ready;
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
} E;

static const struct ws_ops session_ws_ops, probe_ws_ops;
static void heartbeat_arm(struct eio_session *s, unsigned ms);
static void close_session(struct eio_session *s, const char *reason, int by_client);

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
	if (s->poll && !s->flush_queued) {
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
	if (s->transport == T_POLLING)
		E.st.polling--;
	else
		E.st.websocket--;
	evtimer_del(s->heartbeat);
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
	dict_iter_init(&it, &E.sessions);
	while ((e = dict_next(&it)))
		close_session(e->val, reason, 0);
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
	if (t == T_POLLING)
		E.st.polling++;
	else
		E.st.websocket++;
	return s;
}

/* Sends the open packet and starts the heartbeat. */
static void session_open(struct eio_session *s)
{
	char open[256];
	int n = snprintf(open, sizeof open,
	                 "{\"sid\":\"%s\",\"upgrades\":[%s],\"pingInterval\":%u,"
	                 "\"pingTimeout\":%u,\"maxPayload\":%zu}",
	                 s->sid, s->transport == T_POLLING ? "\"websocket\"" : "",
	                 E.cfg->ping_interval_ms, E.cfg->ping_timeout_ms, E.cfg->max_payload);
	send_ctl(s, EIO_OPEN, open, (size_t)n);
	heartbeat_arm(s, E.cfg->ping_interval_ms);
	log_debug("eio: %s opened (%s) from %s", s->sid,
	          s->transport == T_POLLING ? "polling" : "websocket", s->hs.addr);
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
		struct eio_session *s = session_new(ep, T_POLLING, c);
		if (!s)
			return http_reply_json(c, MHD_HTTP_SERVICE_UNAVAILABLE,
			                       "{\"code\":3,\"message\":\"Bad request\"}");
		session_open(s);
		/* The open packet is the whole answer to the handshake. */
		struct eio_msg *open = eio_msgq_pop(&s->q);
		enum MHD_Result r = reply_payload(c, open->data, open->len);
		eio_msg_unref(open);
		return r;
	}

	struct eio_session *s = dict_get(&E.sessions, sid);
	if (!s || strlen(sid) != ID_LEN)
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
	if (er && er->kind == R_POLL && er->ready)
		return reply_payload(req->conn, er->out.p, er->out.len);
	return MHD_YES;
}

/* --- set-up and accessors --- */

void eio_init(struct event_base *base, const struct config *cfg)
{
	E.base = base;
	E.cfg = cfg;
	dict_init(&E.sessions);
	dict_init(&E.per_addr);
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
	return s->transport == T_POLLING ? "polling" : "websocket";
}
const struct eio_handshake *eio_handshake(const struct eio_session *s) { return &s->hs; }
void eio_set_data(struct eio_session *s, void *data) { s->data = data; }
void *eio_data(const struct eio_session *s) { return s->data; }
void eio_get_stats(struct eio_stats *st) { *st = E.st; }
