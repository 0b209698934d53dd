/* fuzz_api.c -- the backend HTTP API's handling of its input (api.c): the
 * route and method, the server secret, the query string of the GET
 * endpoints, the JSON body of the POST ones and every field check.
 *
 * The input is a request written as text:
 *
 *   METHOD PATH[?QUERY]
 *   Authorization: Bearer s3cret     (any value; optional)
 *   Remote-User: bob                 (REMOTE_USER from a front; optional)
 *
 *   BODY                             (bytes, NULs included)
 *
 * A body over api.max_body (16k here) is cut there and flagged, as the
 * fronts do. It goes to api_handle() over a fake application: the app.h functions
 * api.c calls are defined here (so app.o is not linked), with a real
 * Socket.IO namespace that has no sockets, so that an emit or a disconnect
 * reaches nobody. The fake app_run answers at once, or after api_handle()
 * has returned when the payload says "_defer": true; its outcome is the
 * payload's "_code" (a refusal's code, with "_message" and "_retry"
 * milliseconds; app.h's codes map onto statuses, others are 500) or a reply
 * made of the payload. Nothing is kept from one input to the next.
 *
 * Every request must be answered exactly once, with a status of SPEC 7
 * (or 500 for a code app.h does not have), a JSON object as the body, an
 * error's code and message (and the field at fault for a 400 of the API's
 * own checks), Retry-After with 429 only, Allow with 405 only; app_run is
 * asked only for the event of the request's path, for the sender of a
 * message only; and a realtime token must verify with the secret, live
 * expires_in seconds and name its user (REMOTE_USER's without the
 * secret). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "api.h"
#include "app.h"
#include "config.h"
#include "jwt.h"
#include "log.h"
#include "profile.h"
#include "sio.h"
#include "util.h"

#define SECRET "s3cret"
#define JWT_SECRET "jwt-secret"
#define MAX_BODY 16384           /* api.max_body */
#define MAX_LINE 8192

static struct config cfg;
static struct api *api;
static struct sio_nsp *nsp;
static struct profile profile;   /* no claims named: the standard ones */
static struct jwt_key *key;

/* --- the fake application --- */

struct app {
	int unused;
};
static struct app fake;

static struct {
	int calls;                   /* app_run calls for this input */
	char event[64];
	char code[32];
	app_run_cb cb;               /* a deferred answer */
	void *ud;
	json_object *reply;
} run;

struct sio_nsp *app_nsp(const struct app *a)
{
	(void)a;
	return nsp;
}

const struct profile *app_profile(const struct app *a)
{
	(void)a;
	return &profile;
}

/* "-" has no personal room, as with a profile without one. */
char *app_user_room(struct app *a, const char *user_id)
{
	(void)a;
	if (strcmp(user_id, "-") == 0)
		return NULL;
	size_t n = strlen(user_id) + 6;
	char *room = xmust(malloc(n));
	snprintf(room, n, "user:%s", user_id);
	return room;
}

/* "admin" has one room, "many" as many as it may, others none. */
size_t app_role_rooms(const struct app *a, const char *role, char **out, size_t max)
{
	(void)a;
	size_t n = 0;
	if (strcasecmp(role, "admin") == 0 && max)
		out[n++] = xstrdup("admin");
	else if (strcasecmp(role, "many") == 0)
		for (; n < max; n++) {
			char room[32];
			snprintf(room, sizeof room, "many-%zu", n);
			out[n] = xstrdup(room);
		}
	return n;
}

int app_reserved_event(struct app *a, const char *name)
{
	static const char *const reserved[] = { "connect", "connect_error", "disconnect",
	                                        "disconnecting", "error", "message:received",
	                                        "message:read", NULL };
	(void)a;
	for (int i = 0; reserved[i]; i++)
		if (strcmp(name, reserved[i]) == 0)
			return 1;
	return 0;
}

/* The events api.c runs, by path. */
static const char *event_of(const char *path)
{
	static const char *const map[][2] = {
		{ "/chat/message", "message:send" }, { "/chat/read-receipt", "message:read" },
		{ "/api/channels", "channel:init" }, { "/api/presence", "presence:list" },
		{ "/api/history", "history:get" },
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strcmp(map[i][0], path) == 0)
			return map[i][1];
	return NULL;
}

static void run_answer(app_run_cb cb, void *ud, json_object *payload)
{
	json_object *v;
	struct app_outcome o = { NULL, NULL, 0, NULL };
	if (json_object_object_get_ex(payload, "_code", &v) && json_object_is_type(v, json_type_string) &&
	    json_object_get_string_len(v) > 0) {
		snprintf(run.code, sizeof run.code, "%s", json_object_get_string(v));
		o.code = run.code;
		o.message = json_object_object_get_ex(payload, "_message", &v)
		            ? json_object_get_string(v) : NULL;
		if (json_object_object_get_ex(payload, "_retry", &v))
			o.retry_ms = (uint64_t)json_object_get_int64(v);
	} else {
		o.reply = payload;
	}
	cb(&o, ud);
}

void app_run(struct app *a, json_object *user, const char *event, json_object *payload,
             json_object *apibody, app_run_cb cb, void *ud)
{
	json_object *v;
	(void)apibody;
	if (a != &fake || run.calls++ || !json_object_is_type(payload, json_type_object))
		abort();
	snprintf(run.event, sizeof run.event, "%s", event);
	/* A message runs for its sender, and only a message has one. */
	if ((strcmp(event, "message:send") == 0) != (user != NULL))
		abort();
	if (user && (!json_object_object_get_ex(user, "id", &v) ||
	             !json_object_is_type(v, json_type_string) || !json_object_get_string_len(v)))
		abort();
	if (json_object_object_get_ex(payload, "_defer", &v) && json_object_get_boolean(v)) {
		run.cb = cb;
		run.ud = ud;
		run.reply = json_object_get(payload);
		return;
	}
	run_answer(cb, ud, payload);
}

/* --- the request --- */

struct request {
	char method[64];
	char path[MAX_LINE];
	char query[MAX_LINE];
	char authorization[MAX_LINE];
	char remote_user[MAX_LINE];
	int has_authorization, has_remote_user;
	const char *body;
	size_t body_len;
};

/* Copies data[0..n) up to the first NUL into out (size MAX_LINE). */
static void copy_line(char *out, const uint8_t *data, size_t n)
{
	if (n >= MAX_LINE)
		n = MAX_LINE - 1;
	memcpy(out, data, n);
	out[n] = '\0';
}

static size_t line_end(const uint8_t *data, size_t size, size_t at)
{
	const uint8_t *nl = memchr(data + at, '\n', size - at);
	return nl ? (size_t)(nl - data) : size;
}

static void parse_request(const uint8_t *data, size_t size, struct request *r)
{
	char line[MAX_LINE];
	size_t at = 0, end = line_end(data, size, 0);
	memset(r, 0, sizeof *r);
	copy_line(line, data, end);
	char *sp = strchr(line, ' ');
	if (sp) {
		*sp = '\0';
		snprintf(r->method, sizeof r->method, "%s", line);
		char *q = strchr(sp + 1, '?');
		if (q)
			*q = '\0';
		snprintf(r->path, sizeof r->path, "%s", sp + 1);
		if (q)
			snprintf(r->query, sizeof r->query, "%s", q + 1);
	} else {
		snprintf(r->method, sizeof r->method, "%s", line);
	}
	at = end < size ? end + 1 : size;
	while (at < size) {              /* headers, up to an empty line */
		end = line_end(data, size, at);
		if (end == at) {
			at++;
			break;
		}
		copy_line(line, data + at, end - at);
		if (strncasecmp(line, "Authorization: ", 15) == 0) {
			snprintf(r->authorization, sizeof r->authorization, "%s", line + 15);
			r->has_authorization = 1;
		} else if (strncasecmp(line, "Remote-User: ", 13) == 0) {
			snprintf(r->remote_user, sizeof r->remote_user, "%s", line + 13);
			r->has_remote_user = 1;
		}
		at = end < size ? end + 1 : size;
	}
	r->body = at < size ? (const char *)data + at : NULL;
	r->body_len = size - at;
}

/* --- the answer --- */

static struct {
	int count;
	const struct request *req;
} answered;

static const char *str_member(json_object *o, const char *name)
{
	json_object *v;
	if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* Does Authorization carry the secret, as api.c reads it ("Bearer" in
 * any case, spaces around the secret)? */
static int trusted(const struct request *req)
{
	const char *t = req->authorization;
	if (!req->has_authorization || strncasecmp(t, "Bearer ", 7) != 0)
		return 0;
	for (t += 7; *t == ' '; t++)
		;
	size_t n = strlen(t);
	while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
		n--;
	return n == strlen(SECRET) && memcmp(t, SECRET, n) == 0;
}

/* The token names its user and lives expires_in seconds. */
static void check_token(const struct request *req, json_object *body)
{
	const char *token = str_member(body, "token");
	json_object *ttl, *claims, *v;
	enum jwt_err err;
	struct jwt_verify_opts opts = { JWT_HS256, 0, cfg.auth_jwt_audience, cfg.auth_jwt_issuer, 1, 0 };
	if (!token || !json_object_object_get_ex(body, "expires_in", &ttl) ||
	    !json_object_is_type(ttl, json_type_int) || json_object_get_int64(ttl) < 1)
		abort();
	if (!(claims = jwt_verify(token, strlen(token), key, &opts, &err))) {
		fprintf(stderr, "a realtime token does not verify: %s\n", jwt_err_reason(err));
		abort();
	}
	const char *sub = str_member(claims, "sub");
	if (!sub || !json_object_object_get_ex(claims, "exp", &v) ||
	    json_object_get_int64(v) - json_object_get_int64(json_object_object_get(claims, "iat")) !=
	        json_object_get_int64(ttl))
		abort();
	/* Without the secret, the token is REMOTE_USER's and no one else's. */
	if (!trusted(req) && strcmp(sub, req->remote_user) != 0)
		abort();
	json_object_put(claims);
}

static void done(const struct api_response *res, void *ud)
{
	const struct request *req = ud;
	static const int statuses[] = { 200, 400, 401, 403, 404, 405, 413, 429, 500, 503 };
	int known = 0;
	if (req != answered.req || answered.count++)
		abort();
	for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
		known |= res->status == statuses[i];
	if (!known || !res->body || strlen(res->body) != res->len)
		abort();
	json_object *body = json_tokener_parse(res->body);
	if (!json_object_is_type(body, json_type_object)) {
		fprintf(stderr, "not a JSON object: %s\n", res->body);
		abort();
	}
	if ((res->status == 429) != (res->retry_after > 0) || (res->status == 405) != !!res->allow)
		abort();
	if (res->status != 200) {
		const char *code = str_member(body, "error"), *msg = str_member(body, "message");
		json_object *ra;
		if (!code || !*code || !msg || !*msg)
			abort();
		if (res->status == 429 && (!json_object_object_get_ex(body, "retryAfter", &ra) ||
		                           json_object_get_int64(ra) != (int64_t)res->retry_after))
			abort();
		/* A 400 of the API's own checks names the field. */
		if (res->status == 400 && !run.calls && !str_member(body, "field"))
			abort();
	} else if (!run.calls && strcmp(req->path, "/api/realtime/token") == 0) {
		check_token(req, body);
	} else if (!run.calls) {
		json_object *ok;
		if (!json_object_object_get_ex(body, "success", &ok) || !json_object_get_boolean(ok))
			abort();
	}
	/* app_run only runs what passed every check, the event of the path. */
	if (run.calls) {
		const char *want = event_of(req->path);
		if (!want || strcmp(want, run.event) != 0)
			abort();
	}
	json_object_put(body);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];
	(void)argc;
	(void)argv;
	log_set_level(LL_ERROR);
	static const char *const set[][2] = {
		{ "api.enable", "yes" }, { "api.secret", SECRET }, { "api.max_body", "16k" },
		{ "auth.jwt_secret", JWT_SECRET }, { "auth.jwt_audience", "aud" },
		{ "auth.jwt_issuer", "iss" },
	};
	config_defaults(&cfg);
	for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
		if (config_set(&cfg, set[i][0], set[i][1], "fuzz_api", err, sizeof err) < 0) {
			fprintf(stderr, "fuzz_api: %s\n", err);
			abort();
		}
	struct event_base *base = event_base_new();
	struct sio_server *srv = base ? sio_server_new(base, &cfg, cfg.path) : NULL;
	static const struct sio_nsp_ops ops = { 0 };
	nsp = srv ? sio_nsp_add(srv, "/", &ops, NULL) : NULL;
	api = nsp ? api_new(base, &cfg, &fake, err, sizeof err) : NULL;
	key = jwt_key_hmac(JWT_SECRET, strlen(JWT_SECRET));
	if (!api || !key) {
		fprintf(stderr, "fuzz_api: cannot set up: %s\n", api ? "key" : err);
		abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct request r;
	parse_request(data, size, &r);
	/* The front reads at most max_body bytes and says so. */
	int too_large = r.body_len > MAX_BODY;
	struct api_request req = {
		.method = r.method,
		.path = r.path,
		.query = r.query,
		.authorization = r.has_authorization ? r.authorization : NULL,
		.remote_user = r.has_remote_user ? r.remote_user : NULL,
		.body = r.body,
		.body_len = too_large ? MAX_BODY : r.body_len,
		.body_too_large = too_large,
	};
	memset(&run, 0, sizeof run);
	answered.count = 0;
	answered.req = &r;
	api_handle(api, &req, done, &r);
	if (run.cb) {                    /* answered later, as Redis would */
		if (answered.count)
			abort();
		run_answer(run.cb, run.ud, run.reply);
		json_object_put(run.reply);
	}
	if (answered.count != 1)
		abort();
	return 0;
}
