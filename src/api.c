/* api.c -- see api.h.
 *
 * A request goes through, in order: the route (404 unknown path, 405 wrong
 * method) -> the server secret (401) -> the body (413, then 400 unless it
 * is one JSON object) or the query string -> the endpoint's checks of every
 * field (400 naming the field, 403, 404) -> Redis reachable when configured
 * (503) -> the one effect:
 *
 *   /chat/message        the profile's message:send, run by app_run for
 *                        the sender (slow mode, size, history, delivery)
 *   /chat/read-receipt   the profile's api event message:read
 *   /api/channels        channel:init
 *   /api/presence        presence:list
 *   /api/history         history:get
 *   /api/emit            one sio_broadcast (one publish on the bus)
 *   /api/disconnect      one sio_disconnect_where (likewise)
 *   /api/realtime/token  an HS* JWT signed with auth.jwt_secret
 *
 * so that nothing is half applied. The events' refusals come back as
 * profile error codes and map onto statuses (see status_of). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "api.h"
#include "cluster.h"
#include "jwt.h"
#include "log.h"
#include "profile.h"
#include "sio.h"
#include "stats.h"
#include "util.h"

#define MAX_ID 256               /* ids: channels, users, messages */
#define MAX_TEXT 1024            /* short strings: names, roles, timestamps */
#define MAX_EVENT 256            /* an emitted event's name */
#define MAX_TARGETS 64           /* rooms, users, roles or except rooms of one emit */
#define MAX_MEMBERSHIPS 256
#define MAX_PARAMS 32            /* query parameters */
#define MAX_PARAM 512            /* a decoded query value */
#define MAX_DEPTH 32             /* JSON nesting */
#define TTL_CAP 86400            /* seconds: a token asked for longer needs api.token_ttl */
#define MAX_TOKEN 8191           /* bytes: the longest token app.c takes from a client */

struct api {
	struct event_base *base;
	const struct config *cfg;
	struct app *app;
	unsigned token_alg;          /* 0: no tokens (no HMAC secret) */
	const char *claim_id, *claim_name, *claim_role, *claim_rooms;
};

/* The outcome of a handler, before it is written out. */
struct reply {
	api_done_cb cb;
	void *ud;
	const char *method, *path; /* for the log; valid until the answer */
};

/* --- answers --- */

static void answer(const struct reply *rp, int status, json_object *body, unsigned retry_after,
                   const char *allow)
{
	const char *s = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN |
	                                                          JSON_C_TO_STRING_NOSLASHESCAPE);
	struct api_response res = { status, s, strlen(s), retry_after, allow };
	stats_api_request((unsigned)status);
	rp->cb(&res, rp->ud);
	json_object_put(body);
}

/* {"error": code, "message": ..., "field"?: field}, logged once. */
static void answer_error(const struct reply *rp, int status, const char *code, const char *field,
                         unsigned retry_after, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static void answer_error(const struct reply *rp, int status, const char *code, const char *field,
                         unsigned retry_after, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "error", json_object_new_string(code));
	json_object_object_add(o, "message", json_object_new_string(msg));
	if (field)
		json_object_object_add(o, "field", json_object_new_string(field));
	if (retry_after)
		json_object_object_add(o, "retryAfter", json_object_new_int64(retry_after));
	if (status >= 500)
		log_warn("api: %s %s: %d %s: %s", rp->method, rp->path, status, code, msg);
	else if (status == 401 || status == 403)
		log_info("api: %s %s: %d %s: %s", rp->method, rp->path, status, code, msg);
	else
		log_debug("api: %s %s: %d %s: %s", rp->method, rp->path, status, code, msg);
	answer(rp, status, o, retry_after, NULL);
}

static void answer_405(const struct reply *rp, const char *allow)
{
	json_object *o = json_object_new_object();
	char msg[64];
	snprintf(msg, sizeof msg, "use %s", allow);
	json_object_object_add(o, "error", json_object_new_string("method_not_allowed"));
	json_object_object_add(o, "message", json_object_new_string(msg));
	log_debug("api: %s %s: 405", rp->method, rp->path);
	answer(rp, 405, o, 0, allow);
}

static void answer_ok(const struct reply *rp, json_object *extra)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "success", json_object_new_boolean(1));
	if (json_object_is_type(extra, json_type_object)) {
		json_object_object_foreach(extra, k, v)
			if (strcmp(k, "success") != 0)
				json_object_object_add(o, k, json_object_get(v));
	}
	answer(rp, 200, o, 0, NULL);
}

/* The statuses of the profile's error codes. */
static int status_of(const char *code)
{
	static const struct { const char *code; int status; } map[] = {
		{ "bad_request", 400 }, { "forbidden", 403 }, { "not_member", 403 },
		{ "not_found", 404 }, { "too_large", 413 }, { "slow_mode", 429 },
		{ "rate_limited", 429 }, { "unavailable", 503 },
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strcmp(map[i].code, code) == 0)
			return map[i].status;
	return 500;
}

/* --- checking fields: the first problem is kept, with its field --- */

struct check {
	const char *field;
	int status;                  /* 400 unless said otherwise */
	const char *code;
	char msg[300];
};

static int bad_status(struct check *c, int status, const char *code, const char *field,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int bad_status(struct check *c, int status, const char *code, const char *field,
                      const char *fmt, ...)
{
	if (c->field)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof c->msg, fmt, ap);
	va_end(ap);
	c->field = field;
	c->status = status;
	c->code = code;
	return -1;
}

#define bad(c, field, ...) bad_status((c), 400, "bad_request", (field), __VA_ARGS__)

static int has_nul(json_object *s)
{
	return strlen(json_object_get_string(s)) != (size_t)json_object_get_string_len(s);
}

/* Is s well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates)? */
static int valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		unsigned c = *p, n = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1
		                   : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : 4;
		if (n == 4)
			return 0;
		unsigned lo = 0x80, hi = 0xbf;        /* the second byte's range */
		if (c == 0xe0) lo = 0xa0;
		else if (c == 0xed) hi = 0x9f;
		else if (c == 0xf0) lo = 0x90;
		else if (c == 0xf4) hi = 0x8f;
		p++;
		for (unsigned i = 0; i < n; i++, p++) {
			if (*p < (i ? 0x80 : lo) || *p > (i ? 0xbf : hi))
				return 0;
		}
	}
	return 1;
}

/* An id: a non-empty string (no NUL, at most MAX_ID bytes) or an integer.
 * NULL when absent (an error when required) or bad. Borrowed. */
static json_object *get_id(json_object *o, const char *name, int required, struct check *c)
{
	json_object *v;
	if (!json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null)) {
		if (required)
			bad(c, name, "%s: missing", name);
		return NULL;
	}
	if (json_object_is_type(v, json_type_int))
		return v;
	if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0 ||
	    json_object_get_string_len(v) > MAX_ID || has_nul(v)) {
		bad(c, name, "%s: must be a non-empty string (at most %d bytes) or an integer", name,
		    MAX_ID);
		return NULL;
	}
	return v;
}

/* A string of at most max bytes (empty allowed unless required). */
static json_object *get_str(json_object *o, const char *name, int required, size_t max,
                            struct check *c)
{
	json_object *v;
	if (!json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null)) {
		if (required)
			bad(c, name, "%s: missing", name);
		return NULL;
	}
	if (!json_object_is_type(v, json_type_string) || has_nul(v) ||
	    (max && (size_t)json_object_get_string_len(v) > max) ||
	    (required && json_object_get_string_len(v) == 0)) {
		if (max)
			bad(c, name, "%s: must be a %sstring of at most %zu bytes", name,
			    required ? "non-empty " : "", max);
		else
			bad(c, name, "%s: must be a %sstring", name, required ? "non-empty " : "");
		return NULL;
	}
	return v;
}

static void check_type(json_object *o, const char *name, enum json_type t, const char *what,
                       struct check *c)
{
	json_object *v;
	if (json_object_object_get_ex(o, name, &v) && !json_object_is_type(v, json_type_null) &&
	    !json_object_is_type(v, t))
		bad(c, name, "%s: must be %s", name, what);
}

/* One id or an array of ids (at most max), as texts appended to out. */
static size_t get_names(json_object *o, const char *name, char **out, size_t n, size_t max,
                        struct check *c)
{
	json_object *v;
	if (!json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null))
		return n;
	size_t len = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 1;
	if (len == 0 || len > max) {
		bad(c, name, "%s: give 1 to %zu names", name, max);
		return n;
	}
	for (size_t i = 0; i < len && n < max; i++) {
		json_object *e = json_object_is_type(v, json_type_array) ? json_object_array_get_idx(v, i) : v;
		if (!json_object_is_type(e, json_type_int) &&
		    (!json_object_is_type(e, json_type_string) || json_object_get_string_len(e) == 0 ||
		     json_object_get_string_len(e) > MAX_ID || has_nul(e))) {
			bad(c, name, "%s: must be a non-empty string or an integer, or an array of them",
			    name);
			return n;
		}
		out[n++] = xstrdup(json_object_get_string(e));
	}
	return n;
}

static void free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
}

/* --- the request's body and query string --- */

static json_object *parse_body(const struct api_request *req, struct check *c)
{
	if (!req->body || req->body_len == 0) {
		bad(c, "body", "body: a JSON object is needed");
		return NULL;
	}
	struct json_tokener *tok = json_tokener_new_ex(MAX_DEPTH);
	if (!tok) {
		bad_status(c, 503, "unavailable", NULL, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	json_object *v = NULL;
	if (req->body_len <= (size_t)0x7fffffff)
		v = json_tokener_parse_ex(tok, req->body, (int)req->body_len);
	enum json_tokener_error e = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	while (v && end < req->body_len && req->body[end] && strchr(" \t\r\n", req->body[end]))
		end++;
	if (!v || e != json_tokener_success || end != req->body_len) {
		bad(c, "body", "body: malformed JSON: %s",
		    e == json_tokener_continue ? "the body ends inside a value"
		    : e != json_tokener_success ? json_tokener_error_desc(e)
		                                : "text after the value");
		json_object_put(v);
		return NULL;
	}
	if (!json_object_is_type(v, json_type_object)) {
		json_object_put(v);
		bad(c, "body", "body: must be a JSON object");
		return NULL;
	}
	return v;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Decodes s[0..n) (%XX, '+' as a space) into out; -1 when malformed, too
 * long, or holding a NUL. */
static int url_decode(const char *s, size_t n, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '%') {
			if (i + 2 >= n)
				return -1;
			int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			ch = (char)(hi << 4 | lo);
			i += 2;
		} else if (ch == '+') {
			ch = ' ';
		}
		if (ch == '\0' || o + 1 >= outlen)
			return -1;
		out[o++] = ch;
	}
	out[o] = '\0';
	return 0;
}

/* The query string as {"name": "value"} (the first of a repeated name). */
static json_object *parse_query(const char *q, struct check *c)
{
	json_object *o = json_object_new_object();
	size_t count = 0;
	char key[MAX_PARAM + 1], val[MAX_PARAM + 1];
	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);
		const char *eq = memchr(q, '=', len);
		size_t kl = eq ? (size_t)(eq - q) : len;
		if (len && (++count > MAX_PARAMS || url_decode(q, kl, key, sizeof key) < 0 ||
		            url_decode(eq ? eq + 1 : "", eq ? len - kl - 1 : 0, val, sizeof val) < 0)) {
			bad(c, "query", "malformed query string (at most %d parameters of %d bytes)",
			    MAX_PARAMS, MAX_PARAM);
			json_object_put(o);
			return NULL;
		}
		if (len && *key && !json_object_object_get_ex(o, key, NULL))
			json_object_object_add(o, key, json_object_new_string(val));
		q += len + (amp ? 1 : 0);
	}
	return o;
}

/* --- the server secret --- */

/* 1 when Authorization is "Bearer <the secret>". */
static int secret_ok(const struct api *a, const char *authz)
{
	const char *secret = a->cfg->api_secret;
	if (!authz || !secret || !*secret || strncasecmp(authz, "Bearer ", 7) != 0)
		return 0;
	const char *t = authz + 7;
	while (*t == ' ')
		t++;
	size_t n = strlen(t);
	while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
		n--;
	return ct_equal(t, n, secret, strlen(secret));
}

/* --- running a profile's event --- */

enum shape { SHAPE_SUCCESS, SHAPE_DATA };

struct run {
	struct reply rp;
	enum shape shape;
	char method[8];
	char path[32];
};

static void ran(const struct app_outcome *o, void *ud)
{
	struct run *r = ud;
	if (o->code) {
		unsigned retry = (unsigned)((o->retry_ms + 999) / 1000);
		answer_error(&r->rp, status_of(o->code), o->code, NULL,
		             status_of(o->code) == 429 ? (retry ? retry : 1) : 0, "%s",
		             o->message ? o->message : o->code);
	} else if (r->shape == SHAPE_SUCCESS) {
		answer_ok(&r->rp, o->reply);
	} else {
		json_object *out = json_object_new_object();
		if (json_object_is_type(o->reply, json_type_object)) {
			json_object_object_foreach(o->reply, k, v)
				json_object_object_add(out, k, json_object_get(v));
		}
		answer(&r->rp, 200, out, 0, NULL);
	}
	free(r);
}

static void run_event(struct api *a, const struct reply *rp, json_object *user, const char *event,
                      json_object *payload, json_object *api, enum shape shape)
{
	struct run *r = xcalloc(1, sizeof *r);
	r->rp = *rp;
	r->shape = shape;
	/* The request's strings are the front's: keep copies for the log. */
	snprintf(r->method, sizeof r->method, "%s", rp->method);
	snprintf(r->path, sizeof r->path, "%s", rp->path);
	r->rp.method = r->method;
	r->rp.path = r->path;
	app_run(a->app, user, event, payload, api, ran, r);
}

/* Redis is configured but out of reach: the state cannot be read or
 * changed and other instances cannot be told. */
static int redis_down(const struct api *a)
{
	return cluster_enabled() && !cluster_up() && a->cfg->redis_url && *a->cfg->redis_url;
}

static int answer_check(const struct reply *rp, const struct check *c)
{
	if (!c->field && !c->code)
		return 0;
	answer_error(rp, c->status ? c->status : 400, c->code ? c->code : "bad_request", c->field, 0,
	             "%s", c->msg);
	return 1;
}

/* --- the endpoints --- */

/* POST /chat/message: seed 000's message object, posted as its sender.
 * A profile whose message:send is its own (in its "api" member) takes
 * what it requires besides channelId and senderId: content is optional. */
static void ep_message(struct api *a, const struct reply *rp, const struct api_request *req,
                       json_object *body)
{
	struct check c = { 0 };
	int own = profile_api_event(app_profile(a->app), "message:send") != NULL;
	(void)req;
	get_id(body, "channelId", 1, &c);
	json_object *sender = get_id(body, "senderId", 1, &c);
	get_str(body, "content", !own, 0, &c);
	get_id(body, "messageId", 0, &c);
	get_str(body, "timestamp", 0, MAX_TEXT, &c);
	json_object *name = get_str(body, "senderName", 0, MAX_TEXT, &c);
	get_str(body, "clientMessageId", 0, MAX_ID, &c);
	if (answer_check(rp, &c))
		return;
	if (redis_down(a))
		return answer_error(rp, 503, "unavailable", NULL, 0, "Redis is unreachable");
	json_object *user = json_object_new_object();
	const char *id = json_object_get_string(sender);
	json_object_object_add(user, "id", json_object_new_string(id));
	json_object_object_add(user, "name", json_object_new_string(
		name && json_object_get_string_len(name) ? json_object_get_string(name) : id));
	run_event(a, rp, user, "message:send", body, body, SHAPE_SUCCESS);
	json_object_put(user);
}

/* POST /chat/read-receipt: seed 000's receipt, message:read to the channel. */
static void ep_read(struct api *a, const struct reply *rp, const struct api_request *req,
                    json_object *body)
{
	struct check c = { 0 };
	(void)req;
	get_id(body, "channelId", 1, &c);
	get_id(body, "messageId", 1, &c);
	get_id(body, "readerId", 0, &c);
	get_str(body, "readAt", 0, MAX_TEXT, &c);
	check_type(body, "complete", json_type_boolean, "true or false", &c);
	check_type(body, "readers", json_type_array, "an array", &c);
	if (answer_check(rp, &c))
		return;
	if (redis_down(a))
		return answer_error(rp, 503, "unavailable", NULL, 0, "Redis is unreachable");
	run_event(a, rp, NULL, "message:read", body, body, SHAPE_SUCCESS);
}

/* POST /api/channels: {channelId, name?, settings?} as channel:init. */
static void ep_channels(struct api *a, const struct reply *rp, const struct api_request *req,
                        json_object *body)
{
	struct check c = { 0 };
	(void)req;
	get_id(body, "channelId", 1, &c);
	get_str(body, "name", 0, MAX_TEXT, &c);
	check_type(body, "settings", json_type_object, "an object", &c);
	if (answer_check(rp, &c))
		return;
	if (redis_down(a))
		return answer_error(rp, 503, "unavailable", NULL, 0, "Redis is unreachable");
	run_event(a, rp, NULL, "channel:init", body, body, SHAPE_SUCCESS);
}

/* GET /api/presence?channelId= : {users} of the channel, or of everyone. */
static void ep_presence(struct api *a, const struct reply *rp, const struct api_request *req,
                        json_object *query)
{
	struct check c = { 0 };
	(void)req;
	json_object *ch = get_id(query, "channelId", 0, &c);
	if (answer_check(rp, &c))
		return;
	if (redis_down(a))
		return answer_error(rp, 503, "unavailable", NULL, 0, "Redis is unreachable");
	json_object *payload = json_object_new_object();
	if (ch)
		json_object_object_add(payload, "channelId", json_object_get(ch));
	run_event(a, rp, NULL, "presence:list", payload, NULL, SHAPE_DATA);
	json_object_put(payload);
}

static int get_message_id(json_object *q, const char *name, struct check *c)
{
	json_object *v = get_str(q, name, 0, 20, c);
	uint64_t id;
	if (v && parse_u64(json_object_get_string(v), &id) < 0)
		return bad(c, name, "%s: must be a message id (decimal digits)", name);
	return 0;
}

/* GET /api/history?channelId=&limit=&before=&after= : {messages}. */
static void ep_history(struct api *a, const struct reply *rp, const struct api_request *req,
                       json_object *query)
{
	struct check c = { 0 };
	uint64_t limit = 0;
	(void)req;
	json_object *ch = get_id(query, "channelId", 1, &c);
	json_object *lim = get_str(query, "limit", 0, 10, &c);
	if (lim && (parse_u64(json_object_get_string(lim), &limit) < 0 || limit == 0 ||
	            limit > 1000000))
		bad(&c, "limit", "limit: must be an integer from 1 to 1000000");
	get_message_id(query, "before", &c);
	get_message_id(query, "after", &c);
	if (answer_check(rp, &c))
		return;
	if (redis_down(a))
		return answer_error(rp, 503, "unavailable", NULL, 0, "Redis is unreachable");
	json_object *payload = json_object_new_object(), *v;
	json_object_object_add(payload, "channelId", json_object_get(ch));
	if (lim)
		json_object_object_add(payload, "limit", json_object_new_int64((int64_t)limit));
	if (json_object_object_get_ex(query, "before", &v))
		json_object_object_add(payload, "before", json_object_get(v));
	if (json_object_object_get_ex(query, "after", &v))
		json_object_object_add(payload, "after", json_object_get(v));
	run_event(a, rp, NULL, "history:get", payload, NULL, SHAPE_DATA);
	json_object_put(payload);
}

/* POST /api/emit: {event, data?, room?, user?, role?, namespace?, except?}. */
static void ep_emit(struct api *a, const struct reply *rp, const struct api_request *req,
                    json_object *body)
{
	struct check c = { 0 };
	char *rooms[3 * MAX_TARGETS], *users[MAX_TARGETS], *roles[MAX_TARGETS], *except[MAX_TARGETS];
	size_t nrooms = 0, nusers = 0, nroles = 0, nexcept = 0;
	struct sio_nsp *nsp = app_nsp(a->app);
	json_object *data = NULL, *ns;
	(void)req;

	json_object *event = get_str(body, "event", 1, MAX_EVENT, &c);
	nrooms = get_names(body, "room", rooms, 0, MAX_TARGETS, &c);
	nusers = get_names(body, "user", users, 0, MAX_TARGETS, &c);
	nroles = get_names(body, "role", roles, 0, MAX_TARGETS, &c);
	nexcept = get_names(body, "except", except, 0, MAX_TARGETS, &c);
	ns = get_str(body, "namespace", 0, MAX_TEXT, &c);
	if (event && app_reserved_event(a->app, json_object_get_string(event)))
		bad_status(&c, 403, "forbidden", "event", "event: '%s' is reserved (Socket.IO's or the "
		           "vocabulary's own)", json_object_get_string(event));
	if (ns && strcmp(json_object_get_string(ns), sio_nsp_name_of(nsp)) != 0)
		bad_status(&c, 404, "not_found", "namespace", "namespace: '%s' is not served (only '%s')",
		           json_object_get_string(ns), sio_nsp_name_of(nsp));
	for (size_t i = 0; i < nusers && !c.field; i++) {
		char *room = app_user_room(a->app, users[i]);
		if (!room)
			bad_status(&c, 404, "not_found", "user", "user: the profile has no personal rooms");
		else
			rooms[nrooms++] = room;
	}
	for (size_t i = 0; i < nroles && !c.field; i++) {
		size_t room_left = sizeof rooms / sizeof rooms[0] - nrooms;
		size_t k = app_role_rooms(a->app, roles[i], rooms + nrooms,
		                          room_left < MAX_TARGETS ? room_left : MAX_TARGETS);
		if (!k)
			bad_status(&c, 404, "not_found", "role", "role: no room for the role '%s'", roles[i]);
		nrooms += k;
		if (nrooms > 2 * MAX_TARGETS)
			bad(&c, "role", "role: too many rooms");
	}
	if (!c.field && redis_down(a))
		bad_status(&c, 503, "unavailable", NULL, "Redis is unreachable");
	if (!answer_check(rp, &c)) {
		json_object *args = json_object_new_array();
		if (json_object_object_get_ex(body, "data", &data))
			json_object_array_add(args, json_object_get(data));
		struct sio_out *o = sio_encode_event(sio_nsp_name_of(nsp), json_object_get_string(event),
		                                     args);
		json_object_put(args);
		if (!o) {
			answer_error(rp, 503, "unavailable", NULL, 0, "out of memory");
		} else {
			size_t n = sio_broadcast(nsp, (const char *const *)rooms, nrooms,
			                         (const char *const *)except, nexcept, NULL, o);
			sio_out_free(o);
			log_debug("api: emit %s to %zu rooms: %zu sockets here", json_object_get_string(event),
			          nrooms, n);
			answer_ok(rp, NULL);
		}
	}
	free_names(rooms, nrooms);
	free_names(users, nusers);
	free_names(roles, nroles);
	free_names(except, nexcept);
}

static int valid_sid(const char *s)
{
	if (strlen(s) != ID_LEN)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_'))
			return 0;
	return 1;
}

/* POST /api/disconnect: {userId} and/or {sid}: closed on every instance. */
static void ep_disconnect(struct api *a, const struct reply *rp, const struct api_request *req,
                          json_object *body)
{
	struct check c = { 0 };
	(void)req;
	json_object *user = get_id(body, "userId", 0, &c);
	json_object *sid = get_str(body, "sid", 0, ID_LEN, &c);
	if (!c.field && !user && !sid)
		bad(&c, "userId", "userId or sid: give one");
	if (sid && !c.field && !valid_sid(json_object_get_string(sid)))
		bad(&c, "sid", "sid: not a socket id (%d characters)", ID_LEN);
	char *room = NULL;
	if (user && !c.field && !(room = app_user_room(a->app, json_object_get_string(user))))
		bad_status(&c, 404, "not_found", "userId", "userId: the profile has no personal rooms");
	if (!c.field && redis_down(a))
		bad_status(&c, 503, "unavailable", NULL, "Redis is unreachable");
	if (!answer_check(rp, &c)) {
		const char *ids[1] = { sid ? json_object_get_string(sid) : NULL };
		size_t n = sio_disconnect_where(app_nsp(a->app), (const char *const *)&room, room ? 1 : 0,
		                                ids, sid ? 1 : 0);
		log_info("api: disconnect%s%s%s%s: %zu sockets here", user ? " user " : "",
		         user ? json_object_get_string(user) : "", sid ? " socket " : "",
		         sid ? json_object_get_string(sid) : "", n);
		answer_ok(rp, NULL);
	}
	free(room);
}

/* POST /api/realtime/token: {userId, name?, role?, memberships?, ttl?}
 * with the server secret, or as the user the front web server
 * authenticated (REMOTE_USER: for that user only, without role or
 * memberships, and no longer than api.token_ttl). */
static void ep_token(struct api *a, const struct reply *rp, const struct api_request *req,
                     json_object *body)
{
	struct check c = { 0 };
	int trusted = secret_ok(a, req->authorization);
	unsigned def = a->cfg->api_token_ttl_ms / 1000, cap = def > TTL_CAP ? def : TTL_CAP;
	const char *remote = !trusted && req->remote_user && *req->remote_user ? req->remote_user
	                                                                        : NULL;
	/* The front's user becomes the token's: a name a client could send. */
	if (remote && (strlen(remote) > MAX_ID || !valid_utf8(remote)))
		bad(&c, "REMOTE_USER", "REMOTE_USER: must be UTF-8 of at most %d bytes", MAX_ID);
	json_object *id = get_id(body, "userId", !remote, &c);
	json_object *name = get_str(body, "name", 0, MAX_TEXT, &c);
	json_object *role = get_str(body, "role", 0, MAX_TEXT, &c);
	json_object *ttl = NULL, *mem = NULL;
	int64_t secs = def;
	if (json_object_object_get_ex(body, "ttl", &ttl) && !json_object_is_type(ttl, json_type_null)) {
		secs = json_object_is_type(ttl, json_type_int) ? json_object_get_int64(ttl) : 0;
		if (secs < 1 || secs > cap)
			bad(&c, "ttl", "ttl: must be an integer of seconds from 1 to %u", cap);
	}
	if (json_object_object_get_ex(body, "memberships", &mem) &&
	    !json_object_is_type(mem, json_type_null)) {
		size_t n = json_object_is_type(mem, json_type_array) ? json_object_array_length(mem) : 0;
		int ok = json_object_is_type(mem, json_type_array) && n <= MAX_MEMBERSHIPS;
		for (size_t i = 0; ok && i < n; i++) {
			json_object *e = json_object_array_get_idx(mem, i);
			ok = json_object_is_type(e, json_type_int) ||
			     (json_object_is_type(e, json_type_string) && json_object_get_string_len(e) > 0 &&
			      json_object_get_string_len(e) <= MAX_ID && !has_nul(e));
		}
		if (!ok)
			bad(&c, "memberships", "memberships: must be an array of at most %d names",
			    MAX_MEMBERSHIPS);
	} else {
		mem = NULL;
	}
	if (remote && !c.field) {
		if (id && strcmp(json_object_get_string(id), remote) != 0)
			bad_status(&c, 403, "forbidden", "userId", "userId: not the authenticated user");
		else if (role || mem)
			bad_status(&c, 403, "forbidden", role ? "role" : "memberships",
			           "%s: needs the server secret", role ? "role" : "memberships");
		else if (secs > def)
			bad_status(&c, 403, "forbidden", "ttl",
			           "ttl: more than %u seconds needs the server secret", def);
	}
	if (!c.field && !a->token_alg)
		bad_status(&c, 404, "not_found", NULL, "realtime tokens need auth.jwt_secret "
		           "(REALTIME_JWT_SECRET) and an HS algorithm");
	if (answer_check(rp, &c))
		return;

	const struct config *cfg = a->cfg;
	int64_t now = (int64_t)(wall_ms() / 1000);
	json_object *claims = json_object_new_object();
	json_object_object_add(claims, a->claim_id,
	                       json_object_new_string(id ? json_object_get_string(id) : remote));
	if (name && json_object_get_string_len(name))
		json_object_object_add(claims, a->claim_name, json_object_get(name));
	if (role && json_object_get_string_len(role))
		json_object_object_add(claims, a->claim_role, json_object_get(role));
	if (mem)
		json_object_object_add(claims, a->claim_rooms, json_object_get(mem));
	if (cfg->auth_jwt_audience && *cfg->auth_jwt_audience)
		json_object_object_add(claims, "aud", json_object_new_string(cfg->auth_jwt_audience));
	if (cfg->auth_jwt_issuer && *cfg->auth_jwt_issuer)
		json_object_object_add(claims, "iss", json_object_new_string(cfg->auth_jwt_issuer));
	json_object_object_add(claims, "iat", json_object_new_int64(now));
	json_object_object_add(claims, "exp", json_object_new_int64(now + secs));
	char *token = jwt_sign_hmac(a->token_alg, cfg->auth_jwt_secret, strlen(cfg->auth_jwt_secret),
	                            claims);
	json_object_put(claims);
	if (!token)
		return answer_error(rp, 503, "unavailable", NULL, 0, "cannot sign the token");
	if (strlen(token) > MAX_TOKEN) {         /* named: the largest of the three */
		size_t len = strlen(token);
		size_t lm = mem ? strlen(json_object_to_json_string(mem)) : 0;
		size_t ln = name ? (size_t)json_object_get_string_len(name) : 0;
		size_t lr = role ? (size_t)json_object_get_string_len(role) : 0;
		free(token);
		return answer_error(rp, 400, "bad_request",
		                    lm >= ln && lm >= lr ? "memberships" : ln >= lr ? "name" : "role", 0,
		                    "the token would be %zu bytes, more than a client may present (%d): "
		                    "fewer or shorter memberships, name or role", len, MAX_TOKEN);
	}
	json_object *out = json_object_new_object();
	json_object_object_add(out, "token", json_object_new_string(token));
	json_object_object_add(out, "expires_in", json_object_new_int64(secs));
	free(token);
	log_debug("api: realtime token for %s (%lld s)%s", id ? json_object_get_string(id) : remote,
	          (long long)secs, remote ? " as REMOTE_USER" : "");
	answer(rp, 200, out, 0, NULL);
}

typedef void (*endpoint_fn)(struct api *a, const struct reply *rp, const struct api_request *req,
                            json_object *input);

static const struct endpoint {
	const char *path;
	const char *method;          /* GET endpoints answer HEAD too */
	endpoint_fn fn;
	int own_auth;                /* checks the secret itself (REMOTE_USER) */
} endpoints[] = {
	{ "/chat/message", "POST", ep_message, 0 },
	{ "/chat/read-receipt", "POST", ep_read, 0 },
	{ "/api/realtime/token", "POST", ep_token, 1 },
	{ "/api/emit", "POST", ep_emit, 0 },
	{ "/api/channels", "POST", ep_channels, 0 },
	{ "/api/presence", "GET", ep_presence, 0 },
	{ "/api/history", "GET", ep_history, 0 },
	{ "/api/disconnect", "POST", ep_disconnect, 0 },
};

/* --- the contract --- */

int api_owns(const char *path)
{
	return strncmp(path, "/chat/", 6) == 0 || strncmp(path, "/api/", 5) == 0 ||
	       strcmp(path, "/chat") == 0 || strcmp(path, "/api") == 0;
}

size_t api_max_body(const struct api *a)
{
	return a->cfg->api_max_body;
}

void api_handle(struct api *a, const struct api_request *req, api_done_cb cb, void *ud)
{
	struct reply rp = { cb, ud, req->method, req->path };
	const struct endpoint *ep = NULL;
	struct check c = { 0 };

	for (size_t i = 0; i < sizeof endpoints / sizeof endpoints[0]; i++)
		if (strcmp(endpoints[i].path, req->path) == 0)
			ep = &endpoints[i];
	if (!ep)
		return answer_error(&rp, 404, "not_found", NULL, 0, "no such API endpoint");
	int get = strcmp(ep->method, "GET") == 0;
	if (strcmp(req->method, ep->method) != 0 && !(get && strcmp(req->method, "HEAD") == 0)) {
		return answer_405(&rp, get ? "GET, HEAD" : "POST");
	}
	if (!ep->own_auth && !secret_ok(a, req->authorization))
		return answer_error(&rp, 401, "unauthorized", NULL, 0, "%s",
		                    req->authorization ? "wrong server secret"
		                                       : "Authorization: Bearer <server secret> needed");
	if (ep->own_auth && !secret_ok(a, req->authorization) &&
	    (req->authorization || !req->remote_user || !*req->remote_user))
		return answer_error(&rp, 401, "unauthorized", NULL, 0, "%s",
		                    req->authorization ? "wrong server secret"
		                                       : "the server secret or an authenticated user "
		                                         "(REMOTE_USER) needed");
	if (req->body_too_large)
		return answer_error(&rp, 413, "too_large", "body", 0,
		                    "the body is larger than api.max_body (%zu bytes)", a->cfg->api_max_body);
	/* A token is asked for with no body at all (seed 004's client): {}. */
	json_object *input = get ? parse_query(req->query, &c)
	                   : ep->fn == ep_token && (!req->body || req->body_len == 0)
	                   ? json_object_new_object()
	                   : parse_body(req, &c);
	if (!input) {
		answer_check(&rp, &c);
		return;
	}
	ep->fn(a, &rp, req, input);
	json_object_put(input);
}

/* The claim names the profile reads: the standard one when it is among
 * them, else its first (the daemon's defaults without any). */
static const char *claim_name(char *const *names, size_t n, const char *standard)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], standard) == 0)
			return standard;
	return n ? names[0] : standard;
}

struct api *api_new(struct event_base *base, const struct config *cfg, struct app *app,
                    char *err, size_t errlen)
{
	struct api *a = calloc(1, sizeof *a);
	if (!a) {
		snprintf(err, errlen, "api: out of memory");
		return NULL;
	}
	a->base = base;
	a->cfg = cfg;
	a->app = app;
	const struct profile *p = app_profile(app);
	a->claim_id = claim_name(p->claim_user_id, p->nclaim_user_id, "sub");
	a->claim_name = claim_name(p->claim_name, p->nclaim_name, "name");
	a->claim_role = claim_name(p->claim_role, p->nclaim_role, "role");
	a->claim_rooms = claim_name(p->claim_rooms, p->nclaim_rooms, "memberships");
	/* Tokens the daemon accepts: signed with its HMAC secret, with the
	 * first HS algorithm it allows (HS256 when none is named). */
	if (cfg->auth_jwt_secret && *cfg->auth_jwt_secret &&
	    !(cfg->auth_jwt_public_key && *cfg->auth_jwt_public_key)) {
		const char *list = cfg->auth_jwt_algorithms ? cfg->auth_jwt_algorithms : "";
		char *dup = xstrdup(list), *save = NULL;
		a->token_alg = *list ? 0 : JWT_HS256;
		for (char *t = strtok_r(dup, ", ", &save); t && !a->token_alg; t = strtok_r(NULL, ", ", &save))
			if (jwt_alg_parse(t) & JWT_ALGS_HMAC)
				a->token_alg = jwt_alg_parse(t);
		free(dup);
	}
	if (!cfg->api_secret || !*cfg->api_secret)
		log_warn("api: no api.secret (SERVER_SECRET): only tokens for REMOTE_USER are served");
	if (!a->token_alg)
		log_info("api: no HMAC auth.jwt_secret: /api/realtime/token answers 404");
	return a;
}

void api_free(struct api *a)
{
	free(a);
}
