/* app.c -- see app.h.
 *
 * Ownership and lifetimes. A request (struct req) owns its context object
 * and copies of every name it needs; it refers to the acting socket only by
 * id and looks it up again after each asynchronous step, since the socket
 * may be gone by then (its emits to rooms still go out; its own replies do
 * not). A socket's application state (struct app_sock) is owned by the
 * socket (sio_set_data) and freed in on_disconnect.
 *
 * Lifecycle of a connection: on_connect -> auth -> accept -> automatic
 * rooms -> store user_add -> the "online" hook if this is the user's first
 * socket -> the "connect" hook. On disconnect: each joined room is left
 * (running the emits of the join's on_disconnect event), store user_remove
 * -> the "offline" hook if it was the last socket -> the "disconnect" hook.
 *
 * Faults (store.h): when the store reaps the sids of a dead instance, the
 * last sid of a user in a room runs the emits of the join's on_disconnect
 * event (named in the info given to room_add, with the join's payload), and
 * the last in the namespace the "offline" hook, as a disconnect here would
 * (not the "disconnect" hook: a reaping reports users, not sockets).
 * When the store asks for a resync, every accepted socket (the list socks)
 * adds its presence and rooms again; a user found missing gets the "online"
 * hook (the others may have seen it reaped). */
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app.h"
#include "auth.h"
#include "log.h"
#include "sio.h"
#include "stats.h"
#include "tmpl.h"
#include "util.h"

enum policy { P_OPEN, P_TOKEN, P_REDIS, P_DENY };

struct rule {
	char *pattern;
	enum policy policy;
};

struct app {
	struct event_base *base;
	const struct config *cfg;
	struct profile *p;
	struct store *st;
	struct redis *redis;
	struct auth *auth;
	struct sio_nsp *nsp;
	struct rule *rules;
	size_t nrules;
	json_object *personal;       /* template of the personal room, or NULL */
	json_object *role_rooms;     /* {"room": ["role", ...]} */
	char **admin_roles;
	size_t nadmin_roles;
	char **allow;                /* events.broadcast_allow globs */
	size_t nallow;
	struct app_sock *socks;      /* the accepted sockets */
};

struct joined {
	char *room;
	const struct event_spec *join;    /* the event that joined it, or NULL */
	const struct event_spec *leave;   /* emits to run on disconnect, or NULL */
	json_object *req;                 /* the join's payload */
};

struct app_sock {
	struct app *app;
	struct sio_socket *sock;
	struct app_sock *next, **pprev;   /* in app->socks, once accepted */
	struct auth_req *pending;    /* auth under way */
	int accepted;
	json_object *user;           /* {"id", "name", "role"} */
	json_object *token_rooms;    /* array, or NULL */
	struct joined *joined;
	size_t njoined, capjoined;
	double tokens;               /* rate limit bucket */
	uint64_t refilled_ms;
};

struct req {
	struct app *app;
	char sid[ID_LEN + 1];        /* the acting socket; "" when none */
	const struct event_spec *spec;
	int64_t ack_id;
	int acked;
	json_object *ctx;
	char *room;
	char *user_id;
	char *name;
	int phase;                   /* lifecycle requests: the next step */
	struct api_run *run;         /* run by the HTTP API (app_run), or NULL */
	struct eio_msg **atts;       /* the event's binary attachments (references) */
	int natts;
	char *list;                  /* join: the key of its room's history list, or NULL */
};

static void run_reply(struct req *r, json_object *data);
static void run_end(struct req *r, const char *code, const char *message, uint64_t retry_ms);

/* --- small helpers --- */

static char **split(const char *list, const char *seps, size_t *n)
{
	char **v = NULL;
	*n = 0;
	char *dup = strdup(list ? list : ""), *save = NULL;
	for (char *t = strtok_r(dup, seps, &save); t; t = strtok_r(NULL, seps, &save)) {
		char **nv = realloc(v, (*n + 1) * sizeof *v);
		if (!nv)
			break;
		v = nv;
		v[(*n)++] = strdup(t);
	}
	free(dup);
	return v;
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static const char *ctx_str(json_object *ctx, const char *path)
{
	json_object *v = tmpl_lookup(ctx, path, strlen(path));
	return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static void ctx_set(json_object *ctx, const char *key, json_object *v)
{
	json_object_object_add(ctx, key, v);
}

/* Evaluates args.NAME of the request's spec: a new reference or NULL. */
static json_object *arg(struct req *r, const char *name, int *bad)
{
	json_object *t, *v = NULL;
	const char *what;
	if (!r->spec || !r->spec->args || !json_object_object_get_ex(r->spec->args, name, &t))
		return NULL;
	enum tmpl_err e = tmpl_eval(t, r->ctx, &v, &what);
	if (e == TMPL_TYPE && bad)
		*bad = 1;
	return e == TMPL_OK ? v : NULL;
}

static char *arg_string(struct req *r, const char *name, int *bad)
{
	json_object *v = arg(r, name, bad);
	char *s = NULL;
	if (v && (json_object_is_type(v, json_type_string) || json_object_is_type(v, json_type_int)) &&
	    json_object_get_string_len(v) > 0)
		s = strdup(json_object_get_string(v));
	json_object_put(v);
	return s;
}

static char *personal_room(struct app *a, const char *user_id)
{
	if (!a->personal)
		return NULL;
	json_object *ctx = json_object_new_object(), *u = json_object_new_object();
	json_object_object_add(u, "id", json_object_new_string(user_id));
	json_object_object_add(ctx, "user", u);
	char *room = tmpl_string(a->personal, ctx);
	json_object_put(ctx);
	return room;
}

/* A list of users from the store ([{userId, name, lastActive?}, ...]) as
 * the event shows it: each entry made by the template args.member, with
 * the entry as "member" in the context, or {userId, name} without one. An
 * entry whose template fails or is undefined is left out. New reference. */
static json_object *shape_users(struct req *r, json_object *list)
{
	json_object *out = json_object_new_array(), *t = NULL;
	const char *what;
	if (r->spec && r->spec->args)
		json_object_object_get_ex(r->spec->args, "member", &t);
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *e = json_object_array_get_idx(list, i), *v = NULL, *id, *name;
		if (!t) {
			v = json_object_new_object();
			if (json_object_object_get_ex(e, "userId", &id))
				json_object_object_add(v, "userId", json_object_get(id));
			if (json_object_object_get_ex(e, "name", &name))
				json_object_object_add(v, "name", json_object_get(name));
		} else {
			json_object_object_add(r->ctx, "member", json_object_get(e));
			if (tmpl_eval(t, r->ctx, &v, &what) != TMPL_OK)
				v = NULL;
			json_object_object_del(r->ctx, "member");
		}
		if (v)
			json_object_array_add(out, v);
	}
	return out;
}

/* --- requests --- */

static struct req *req_new(struct app *a, const char *sid, const struct event_spec *spec,
                           json_object *user, int64_t ack_id)
{
	struct req *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->app = a;
	snprintf(r->sid, sizeof r->sid, "%s", sid ? sid : "");
	r->spec = spec;
	r->ack_id = ack_id;
	r->ctx = json_object_new_object();
	json_object *now = json_object_new_object();
	json_object_object_add(now, "ms", json_object_new_int64((int64_t)wall_ms()));
	ctx_set(r->ctx, "now", now);
	if (user) {
		ctx_set(r->ctx, "user", json_object_get(user));
		r->user_id = strdup(ctx_str(r->ctx, "user.id"));
		const char *name = ctx_str(r->ctx, "user.name");
		r->name = strdup(name ? name : r->user_id);
	}
	json_object *sock = json_object_new_object();
	json_object_object_add(sock, "id", json_object_new_string(r->sid));
	ctx_set(r->ctx, "socket", sock);
	return r;
}

static void req_free(struct req *r)
{
	for (int i = 0; i < r->natts; i++)
		eio_msg_unref(r->atts[i]);
	free(r->atts);
	json_object_put(r->ctx);
	free(r->room);
	free(r->user_id);
	free(r->name);
	free(r->list);
	free(r);
}

static struct sio_socket *actor(struct req *r)
{
	return r->sid[0] ? sio_find(r->app->nsp, r->sid) : NULL;
}

static void send_ack(struct sio_socket *s, struct req *r, json_object *payload)
{
	json_object *args = json_object_new_array();
	if (payload)
		json_object_array_add(args, json_object_get(payload));
	sio_ack(s, r->ack_id, args, NULL, 0);
	json_object_put(args);
	r->acked = 1;
}

/* Rooms an emit goes to: a string or an array of strings from a template. */
static size_t eval_rooms(struct req *r, json_object *t, char **out, size_t max, int users)
{
	json_object *v;
	const char *what;
	size_t n = 0;
	if (tmpl_eval(t, r->ctx, &v, &what) != TMPL_OK || !v)
		return 0;
	size_t len = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 1;
	for (size_t i = 0; i < len && n < max; i++) {
		json_object *e = json_object_is_type(v, json_type_array) ? json_object_array_get_idx(v, i) : v;
		if (!json_object_is_type(e, json_type_string) && !json_object_is_type(e, json_type_int))
			continue;
		const char *name = json_object_get_string(e);
		out[n] = users ? personal_room(r->app, name) : strdup(name);
		if (out[n])
			n++;
	}
	json_object_put(v);
	return n;
}

/* An emit's packet. The client's binary attachments go with it when its
 * data still holds their placeholders (a relayed file, say). */
static struct sio_out *encode_emit(struct req *r, const char *name, json_object *args)
{
	const char *nsp = sio_nsp_name_of(r->app->nsp);
	if (!r->natts || !args ||
	    !strstr(json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN), "\"_placeholder\""))
		return sio_encode_event(nsp, name, args);
	json_object *a = json_object_new_array();
	json_object_array_add(a, json_object_new_string(name));
	for (size_t i = 0; i < json_object_array_length(args); i++)
		json_object_array_add(a, json_object_get(json_object_array_get_idx(args, i)));
	struct sio_out *o = sio_encode(SIO_EVENT, nsp, -1, a, r->atts, r->natts);
	json_object_put(a);
	return o;
}

#define MAX_TARGETS 64

static void emit_item(struct req *r, struct sio_socket *self, const struct emit_spec *e)
{
	struct app *a = r->app;
	json_object *data = NULL;
	const char *what;

	if (e->when) {
		int truth = tmpl_truthy(tmpl_lookup(r->ctx, e->when, strlen(e->when)));
		if (truth == e->when_not)
			return;
	}
	if (e->data && tmpl_eval(e->data, r->ctx, &data, &what) == TMPL_TYPE) {
		log_warn("profile %s: event %s: cannot build %s", a->p->name,
		         r->spec ? r->spec->name : "?", what);
		return;
	}
	if (e->reply && r->run) {
		run_reply(r, data);      /* the API's answer */
		json_object_put(data);
		return;
	}
	if (e->reply && self && r->ack_id >= 0 && !r->acked) {
		json_object *ok = NULL;
		if (a->p->ack_ok)
			tmpl_eval(a->p->ack_ok, r->ctx, &ok, &what);
		if (json_object_is_type(ok, json_type_object) && json_object_is_type(data, json_type_object)) {
			json_object_object_foreach(data, k, v)
				json_object_object_add(ok, k, json_object_get(v));
		} else if (!ok) {
			ok = json_object_get(data);
		}
		send_ack(self, r, ok);
		json_object_put(ok);
		json_object_put(data);
		return;
	}
	if (e->ack_only) {
		json_object_put(data);
		return;
	}
	char *name = tmpl_string(e->event, r->ctx);
	if (!name) {
		json_object_put(data);
		return;
	}
	json_object *args = json_object_new_array();
	if (e->data)
		json_object_array_add(args, data);   /* the array takes the reference */
	struct sio_out *o = encode_emit(r, name, args);
	json_object_put(args);
	free(name);
	if (!o)
		return;

	int exclude = e->exclude == EXCLUDE_SELF ||
	              (e->exclude == EXCLUDE_SENDER && !a->cfg->messages_echo_sender);
	char *rooms[MAX_TARGETS], *except[1];
	size_t nrooms = 0, nexcept = 0;
	/* Without an acting socket (disconnect, expiry), "self" is the user;
	 * a message the API posts for a user reaches all of that user's
	 * sockets (none of them sent it). */
	if (exclude && !self && !r->run && r->user_id && (except[0] = personal_room(a, r->user_id)))
		nexcept = 1;
	switch (e->to) {
	case TO_SELF:
		if (self)
			sio_send(self, o);
		break;
	case TO_ROOM:
		if (e->room)
			nrooms = eval_rooms(r, e->room, rooms, MAX_TARGETS, 0);
		else if (r->room)
			rooms[nrooms++] = strdup(r->room);
		if (nrooms)
			sio_broadcast(a->nsp, (const char *const *)rooms, nrooms,
			              (const char *const *)except, nexcept, exclude ? self : NULL, o);
		break;
	case TO_USER:
		nrooms = eval_rooms(r, e->user, rooms, MAX_TARGETS, 1);
		if (nrooms)
			sio_broadcast(a->nsp, (const char *const *)rooms, nrooms,
			              (const char *const *)except, nexcept, exclude ? self : NULL, o);
		break;
	case TO_ALL:
		sio_broadcast(a->nsp, NULL, 0, (const char *const *)except, nexcept,
		              exclude ? self : NULL, o);
		break;
	}
	for (size_t i = 0; i < nrooms; i++)
		free(rooms[i]);
	if (nexcept)
		free(except[0]);
	sio_out_free(o);
}

/* An emit: once, or with "each" once per element of the array at its path
 * (none when there is no array), the element in the context as item. */
static void emit_one(struct req *r, struct sio_socket *self, const struct emit_spec *e)
{
	if (!e->each)
		return emit_item(r, self, e);
	/* Held: "item" may replace what the path led to. */
	json_object *list = json_object_get(tmpl_lookup(r->ctx, e->each, strlen(e->each)));
	size_t n = json_object_is_type(list, json_type_array) ? json_object_array_length(list) : 0;
	for (size_t i = 0; i < n; i++) {
		ctx_set(r->ctx, "item", json_object_get(json_object_array_get_idx(list, i)));
		emit_item(r, self, e);
	}
	json_object_object_del(r->ctx, "item");
	json_object_put(list);
}

static void run_emits(struct req *r, const struct emit_spec *emits, size_t n)
{
	struct sio_socket *self = actor(r);
	for (size_t i = 0; i < n; i++)
		emit_one(r, self, &emits[i]);
}

/* The action succeeded: emits, then the ack if none was sent. */
static void done(struct req *r)
{
	if (r->spec)
		run_emits(r, r->spec->emits, r->spec->nemits);
	struct sio_socket *self = actor(r);
	if (self && r->ack_id >= 0 && !r->acked) {
		json_object *ok = NULL;
		const char *what;
		if (r->app->p->ack_ok)
			tmpl_eval(r->app->p->ack_ok, r->ctx, &ok, &what);
		send_ack(self, r, ok);
		json_object_put(ok);
	}
	if (r->run)
		run_end(r, NULL, NULL, 0);
	req_free(r);
}

static const char *default_message(const char *code)
{
	static const struct { const char *code, *msg; } msgs[] = {
		{ "bad_request", "bad request" },
		{ "forbidden", "not allowed" },
		{ "not_member", "not a member of this channel" },
		{ "slow_mode", "slow mode: wait before sending again" },
		{ "rate_limited", "too many events: slow down" },
		{ "too_large", "content too large" },
		{ "not_found", "not found" },
		{ "unavailable", "the store is unavailable, try again" },
	};
	for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++)
		if (strcmp(msgs[i].code, code) == 0)
			return msgs[i].msg;
	return code;
}

/* The action was refused: the profile's error ack or error event. */
static void fail(struct req *r, const char *code, const char *message, uint64_t retry_ms)
{
	struct app *a = r->app;
	json_object *err = json_object_new_object(), *m;
	json_object_object_add(err, "code", json_object_new_string(code));
	if (r->spec && r->spec->errors && json_object_object_get_ex(r->spec->errors, code, &m))
		message = json_object_get_string(m);
	json_object_object_add(err, "message",
	                       json_object_new_string(message ? message : default_message(code)));
	if (retry_ms)
		json_object_object_add(err, "retryAfter",
		                       json_object_new_int64((int64_t)((retry_ms + 999) / 1000)));
	ctx_set(r->ctx, "error", err);
	struct sio_socket *self = actor(r);
	if (self && r->ack_id >= 0 && a->p->ack_error) {
		json_object *v = NULL;
		const char *what;
		tmpl_eval(a->p->ack_error, r->ctx, &v, &what);
		send_ack(self, r, v);
		json_object_put(v);
	} else if (self) {
		if (a->p->error.event)
			emit_one(r, self, &a->p->error);
		/* No error ack in this vocabulary: the client that asked for an
		 * ack still gets one (empty), as a handler returning nothing. */
		if (r->ack_id >= 0 && !r->acked)
			send_ack(self, r, NULL);
	}
	if (r->run)                  /* the API logs it with the request */
		run_end(r, code, json_object_get_string(tmpl_lookup(r->ctx, "error.message", 13)),
		        retry_ms);
	else
		log_debug("app: %s: %s refused: %s", r->sid, r->spec ? r->spec->name : "?", code);
	req_free(r);
}

static void fail_store(struct req *r)
{
	fail(r, "unavailable", NULL, 0);
}

/* --- join policies --- */

static enum policy policy_for(struct app *a, const char *room, const char **pattern)
{
	for (size_t i = 0; i < a->nrules; i++)
		if (fnmatch(a->rules[i].pattern, room, 0) == 0) {
			*pattern = a->rules[i].pattern;
			return a->rules[i].policy;
		}
	*pattern = "*";
	return P_OPEN;
}

/* Does the token allow room? Listed exactly, or the rule's pattern with its
 * '*' replaced by one of the token's memberships. */
static int token_allows(struct app_sock *as, const char *pattern, const char *room)
{
	json_object *tr = as->token_rooms;
	const char *star = strchr(pattern, '*');
	for (size_t i = 0; tr && i < json_object_array_length(tr); i++) {
		const char *m = json_object_get_string(json_object_array_get_idx(tr, i));
		if (strcmp(m, room) == 0)
			return 1;
		if (star) {
			size_t pre = (size_t)(star - pattern), ml = strlen(m), rl = strlen(room);
			size_t post = strlen(star + 1);
			if (rl == pre + ml + post && strncmp(room, pattern, pre) == 0 &&
			    strncmp(room + pre, m, ml) == 0 && strcmp(room + pre + ml, star + 1) == 0)
				return 1;
		}
	}
	return 0;
}

/* --- actions --- */

/* Where r's room keeps its history. With the profile's "history", the
 * rooms' histories are lists another program shares (store.h,
 * list_append), named by a template over the context: *list is then the
 * key for r's room (malloc'd), else NULL (the store's own histories).
 * Such a list has no message ids: when ids names the ids the request
 * gives ("since"; NULL for none), or when the key cannot be built, r is
 * refused and -1 returned. */
static int history_source(struct req *r, const char *ids, char **list)
{
	char msg[80];
	*list = NULL;
	if (!r->app->p->history_key)
		return 0;
	if (ids) {
		snprintf(msg, sizeof msg, "this history has no message ids: %s", ids);
		fail(r, "bad_request", msg, 0);
		return -1;
	}
	*list = tmpl_string(r->app->p->history_key, r->ctx);
	if (!*list || !**list) {
		free(*list);
		*list = NULL;
		fail(r, "bad_request", "the history's key cannot be built", 0);
		return -1;
	}
	return 0;
}

/* How many messages a history keeps, at most. */
static unsigned history_cap(const struct app *a)
{
	return a->p->history_key && a->p->history_size ? a->p->history_size
	                                              : (unsigned)a->cfg->history_size;
}

/* The acting socket must have joined the room, unless args.members_only
 * is false. */
static int in_room_or_fail(struct req *r, struct sio_socket *s)
{
	json_object *only = arg(r, "members_only", NULL);
	int need = !only || tmpl_truthy(only);
	json_object_put(only);
	if (need && r->room && s && !sio_in_room(s, r->room)) {
		fail(r, "not_member", NULL, 0);
		return 0;
	}
	return 1;
}

static void join_history_done(int err, json_object *v, void *ud)
{
	struct req *r = ud;
	ctx_set(r->ctx, "history", err || !v ? json_object_new_array() : json_object_get(v));
	done(r);
}

static void join_members_done(int err, json_object *v, void *ud)
{
	struct req *r = ud;
	int bad = 0;
	if (err)
		return fail_store(r);
	ctx_set(r->ctx, "members", shape_users(r, v));
	json_object *count = arg(r, "history", &bad);
	char *since = arg_string(r, "since", &bad);
	int64_t n = count ? json_object_get_int64(count) : 0;
	json_object_put(count);
	if (n <= 0 && !since) {
		free(since);
		ctx_set(r->ctx, "history", json_object_new_array());
		done(r);
		return;
	}
	unsigned cap = history_cap(r->app);
	struct history_query q = { since, NULL, n > 0 && (uint64_t)n < cap ? (unsigned)n : cap };
	if (r->list)                 /* act_join made it, and refused what it cannot serve */
		store_list_tail(r->app->st, r->list, q.limit, join_history_done, r);
	else
		store_history_get(r->app->st, r->room, &q, join_history_done, r);
	free(since);
}

static void join_added(int err, int first, void *ud)
{
	struct req *r = ud;
	if (err)
		return fail_store(r);
	ctx_set(r->ctx, "first", json_object_new_boolean(first));
	store_room_members(r->app->st, "/", r->room, join_members_done, r);
}

/* What the store keeps with a joined room, for a reaping: the name of the
 * event whose emits announce the leave, and the join's payload. NULL when
 * the join has no on_disconnect event. */
static json_object *join_info(struct app_sock *as, const char *room)
{
	for (size_t i = 0; i < as->njoined; i++) {
		struct joined *j = &as->joined[i];
		if (strcmp(j->room, room) != 0 || !j->leave)
			continue;
		json_object *info = json_object_new_object();
		json_object_object_add(info, "event", json_object_new_string(j->leave->name));
		json_object_object_add(info, "req", json_object_get(j->req));
		return info;
	}
	return NULL;
}

static void join_now(struct req *r)
{
	struct sio_socket *s = actor(r);
	if (!s) {
		req_free(r);
		return;
	}
	struct app_sock *as = sio_data(s);
	if (!sio_in_room(s, r->room)) {
		if (as->njoined >= (size_t)r->app->cfg->rooms_max_per_socket) {
			fail(r, "forbidden", "too many rooms joined", 0);
			return;
		}
		if (as->njoined == as->capjoined) {
			size_t cap = as->capjoined ? as->capjoined * 2 : 4;
			struct joined *j = realloc(as->joined, cap * sizeof *j);
			if (!j)
				return fail_store(r);
			as->joined = j;
			as->capjoined = cap;
		}
		if (sio_join(s, r->room) < 0)
			return fail_store(r);
		struct joined *j = &as->joined[as->njoined++];
		j->room = strdup(r->room);
		j->join = r->spec;
		j->leave = r->spec->on_disconnect ? profile_event(r->app->p, r->spec->on_disconnect) : NULL;
		j->req = json_object_get(tmpl_lookup(r->ctx, "req", 3));
	}
	json_object *info = join_info(as, r->room);
	store_room_add(r->app->st, "/", r->room, r->user_id, r->name, r->sid, info, join_added, r);
	json_object_put(info);
}

static void acl_checked(redisReply *reply, void *ud)
{
	struct req *r = ud;
	if (!reply || reply->type != REDIS_REPLY_INTEGER)
		return fail_store(r);
	if (reply->integer != 1)
		return fail(r, "forbidden", "not on this room's access list", 0);
	join_now(r);
}

static void act_join(struct req *r, struct sio_socket *s)
{
	struct app *a = r->app;
	const char *pattern;
	/* A history of another program's is located, and what it cannot
	 * serve refused, before the socket joins. */
	if (a->p->history_key) {
		int bad = 0;
		char *since = arg_string(r, "since", &bad);
		json_object *count = arg(r, "history", &bad);
		int64_t n = count ? json_object_get_int64(count) : 0;
		json_object_put(count);
		int rc = since || n > 0 ? history_source(r, since ? "since" : NULL, &r->list) : 0;
		free(since);
		if (rc < 0)
			return;
	}
	switch (policy_for(a, r->room, &pattern)) {
	case P_OPEN:
		break;
	case P_DENY:
		return fail(r, "forbidden", "this room cannot be joined", 0);
	case P_TOKEN:
		if (!token_allows(sio_data(s), pattern, r->room))
			return fail(r, "forbidden", "the token does not grant this room", 0);
		break;
	case P_REDIS:
		if (!a->redis || redis_command(a->redis, acl_checked, r, "SISMEMBER %s:acl:%s %s",
		                               a->cfg->redis_prefix, r->room, r->user_id) < 0)
			return fail_store(r);
		return;
	}
	join_now(r);
}

static void leave_members(int err, json_object *v, void *ud)
{
	struct req *r = ud;
	ctx_set(r->ctx, "members", err || !v ? json_object_new_array() : shape_users(r, v));
	done(r);
}

static void leave_done(int err, int last, void *ud)
{
	struct req *r = ud;
	ctx_set(r->ctx, "last", json_object_new_boolean(!err && last));
	store_room_members(r->app->st, "/", r->room, leave_members, r);
}

static void forget_joined(struct app_sock *as, const char *room)
{
	for (size_t i = 0; i < as->njoined; i++) {
		if (strcmp(as->joined[i].room, room) == 0) {
			free(as->joined[i].room);
			json_object_put(as->joined[i].req);
			as->joined[i] = as->joined[--as->njoined];
			return;
		}
	}
}

static void act_leave(struct req *r, struct sio_socket *s)
{
	if (!sio_in_room(s, r->room)) {
		ctx_set(r->ctx, "last", json_object_new_boolean(0));
		done(r);
		return;
	}
	sio_leave(s, r->room);
	forget_joined(sio_data(s), r->room);
	store_room_remove(r->app->st, "/", r->room, r->user_id, r->sid, leave_done, r);
}

static void send_stored(int err, json_object *msg, void *ud)
{
	struct req *r = ud;
	if (err)
		return fail_store(r);
	ctx_set(r->ctx, "message", json_object_get(msg));
	done(r);
}

static void send_listed(int err, void *ud)
{
	struct req *r = ud;
	if (err)
		return fail_store(r);
	done(r);
}

/* The message is built and stored (or not) once the checks passed. */
static void send_now(struct req *r, json_object *settings)
{
	int bad = 0;
	json_object *msg = arg(r, "message", &bad);
	if (bad)
		return fail(r, "bad_request", "a field has the wrong type", 0);
	if (!msg)
		msg = json_object_new_object();
	json_object *st = arg(r, "store", &bad);
	int store = st ? tmpl_truthy(st) : r->room != NULL;
	json_object_put(st);
	if (!store || !r->room) {
		ctx_set(r->ctx, "message", msg);
		done(r);
		return;
	}
	json_object *hs;
	int cap = (int)history_cap(r->app);
	if (settings && json_object_object_get_ex(settings, "historySize", &hs) &&
	    json_object_is_type(hs, json_type_int))
		cap = json_object_get_int(hs);
	char *list;
	if (history_source(r, NULL, &list) < 0) {
		json_object_put(msg);
		return;
	}
	if (list) {              /* kept as built: no id */
		ctx_set(r->ctx, "message", msg);
		store_list_append(r->app->st, list, msg, (unsigned)cap, send_listed, r);
		free(list);
		return;
	}
	store_history_add(r->app->st, r->room, msg, (unsigned)cap, send_stored, r);
	json_object_put(msg);
}

static json_object *channel_settings(json_object *channel)
{
	json_object *s;
	return channel && json_object_object_get_ex(channel, "settings", &s) ? s : NULL;
}

static void send_cooldown(int err, int ok, uint64_t retry_ms, void *ud)
{
	struct req *r = ud;
	if (err)
		return fail_store(r);
	if (!ok)
		return fail(r, "slow_mode", NULL, retry_ms);
	json_object *settings = tmpl_lookup(r->ctx, "channel.settings", 16);
	send_now(r, settings);
}

static void send_channel(int err, json_object *channel, void *ud)
{
	struct req *r = ud;
	json_object *slow;
	if (err)
		return fail_store(r);
	json_object *settings = channel_settings(channel);
	int64_t secs = 0;
	int bad = 0;
	if (channel)
		ctx_set(r->ctx, "channel", json_object_get(channel));
	/* args.slowMode, evaluated with the channel known, wins over the
	 * channel's setting. */
	json_object *given = arg(r, "slowMode", &bad);
	if (bad || (given && !json_object_is_type(given, json_type_int))) {
		json_object_put(given);
		return fail(r, "bad_request", "slowMode must be an integer", 0);
	}
	if (given)
		secs = json_object_get_int64(given);
	else if (settings && json_object_object_get_ex(settings, "slowMode", &slow))
		secs = json_object_get_int64(slow);
	json_object_put(given);
	if (secs > 86400)
		secs = 86400;
	if (secs > 0) {
		store_cooldown_take(r->app->st, r->room, r->user_id, (uint64_t)secs * 1000,
		                    send_cooldown, r);
		return;
	}
	send_now(r, settings);
}

/* A direct message to a user who has no socket anywhere: not_found. */
static void send_recipient(int err, int online, void *ud)
{
	struct req *r = ud;
	if (err)
		return fail_store(r);
	if (!online)
		return fail(r, "not_found", "the recipient is not online", 0);
	send_now(r, NULL);
}

static void act_send(struct req *r, struct sio_socket *s)
{
	int bad = 0;
	if (!in_room_or_fail(r, s))
		return;
	json_object *content = arg(r, "content", &bad);
	if (content) {
		if (!json_object_is_type(content, json_type_string) ||
		    json_object_get_string_len(content) == 0) {
			json_object_put(content);
			return fail(r, "bad_request", "content must be a non-empty string", 0);
		}
		size_t len = (size_t)json_object_get_string_len(content);
		json_object_put(content);
		if (len > r->app->cfg->messages_max_content)
			return fail(r, "too_large", NULL, 0);
	}
	char *recipient = arg_string(r, "recipient", &bad);
	if (recipient) {
		store_user_online(r->app->st, "/", recipient, send_recipient, r);
		free(recipient);
		return;
	}
	if (!r->room) {
		send_now(r, NULL);
		return;
	}
	store_channel_get(r->app->st, r->room, send_channel, r);
}

static void typing_done(int err, int flag, void *ud)
{
	struct req *r = ud;
	if (err)
		return fail_store(r);
	int typing = tmpl_truthy(tmpl_lookup(r->ctx, "typing", 6));
	ctx_set(r->ctx, "new", json_object_new_boolean(typing && flag));
	ctx_set(r->ctx, "changed", json_object_new_boolean(typing || flag));
	done(r);
}

static void act_typing(struct req *r, struct sio_socket *s)
{
	int bad = 0;
	if (!in_room_or_fail(r, s))
		return;
	json_object *t = arg(r, "typing", &bad);
	int typing = t ? tmpl_truthy(t) : 1;
	json_object_put(t);
	uint64_t ttl = r->app->cfg->typing_ttl_ms;
	uint64_t now = (uint64_t)json_object_get_int64(tmpl_lookup(r->ctx, "now.ms", 6));
	ctx_set(r->ctx, "typing", json_object_new_boolean(typing));
	ctx_set(r->ctx, "expiresAtMs", json_object_new_int64((int64_t)(now + ttl)));
	if (!r->room) {
		ctx_set(r->ctx, "changed", json_object_new_boolean(1));
		done(r);
		return;
	}
	if (typing) {
		json_object *info = json_object_new_object();
		json_object_object_add(info, "event", json_object_new_string(r->spec->name));
		json_object_object_add(info, "name", json_object_new_string(r->name));
		json_object_object_add(info, "req", json_object_get(tmpl_lookup(r->ctx, "req", 3)));
		store_typing_set(r->app->st, "/", r->room, r->user_id, info, ttl, typing_done, r);
		json_object_put(info);
	} else {
		store_typing_clear(r->app->st, "/", r->room, r->user_id, typing_done, r);
	}
}

static void presence_done(int err, json_object *users, void *ud)
{
	struct req *r = ud;
	if (err)
		return fail_store(r);
	json_object *ids = json_object_new_array();
	for (size_t i = 0; i < json_object_array_length(users); i++) {
		json_object *id;
		if (json_object_object_get_ex(json_object_array_get_idx(users, i), "userId", &id))
			json_object_array_add(ids, json_object_get(id));
	}
	ctx_set(r->ctx, "users", shape_users(r, users));
	ctx_set(r->ctx, "userIds", ids);
	done(r);
}

static void act_presence(struct req *r, struct sio_socket *s)
{
	if (!in_room_or_fail(r, s))
		return;
	if (r->room)
		store_room_members(r->app->st, "/", r->room, presence_done, r);
	else
		store_users_online(r->app->st, "/", presence_done, r);
}

static void history_done(int err, json_object *msgs, void *ud)
{
	struct req *r = ud;
	if (err)
		return fail_store(r);
	ctx_set(r->ctx, "messages", json_object_get(msgs));
	done(r);
}

static void act_history(struct req *r, struct sio_socket *s)
{
	int bad = 0;
	if (!in_room_or_fail(r, s))
		return;
	char *after = arg_string(r, "after", &bad), *before = arg_string(r, "before", &bad);
	json_object *lim = arg(r, "limit", &bad);
	if (bad) {
		free(after);
		free(before);
		json_object_put(lim);
		return fail(r, "bad_request", "limit must be an integer", 0);
	}
	int64_t limit = lim ? json_object_get_int64(lim) : 50;
	json_object_put(lim);
	unsigned cap = history_cap(r->app);
	struct history_query q = { after, before, limit <= 0 || (uint64_t)limit > cap ? cap
	                                                                            : (unsigned)limit };
	char *list;
	if (history_source(r, after || before ? "after, before" : NULL, &list) == 0) {
		if (list)
			store_list_tail(r->app->st, list, q.limit, history_done, r);
		else
			store_history_get(r->app->st, r->room, &q, history_done, r);
		free(list);
	}
	free(after);
	free(before);
}

static void init_saved(int err, void *ud)
{
	struct req *r = ud;
	if (err)
		return fail_store(r);
	done(r);
}

static void init_loaded(int err, json_object *old, void *ud)
{
	struct req *r = ud;
	int bad = 0;
	if (err)
		return fail_store(r);
	json_object *ch = old ? json_object_get(old) : json_object_new_object();
	json_object *settings = channel_settings(ch);
	if (!settings) {
		settings = json_object_new_object();
		json_object_object_add(ch, "settings", settings);
	}
	json_object *name = arg(r, "name", &bad), *given = arg(r, "settings", &bad);
	if (name)
		json_object_object_add(ch, "name", name);
	if (given && json_object_is_type(given, json_type_object)) {
		json_object_object_foreach(given, k, v)
			json_object_object_add(settings, k, json_object_get(v));
	}
	json_object_put(given);
	json_object_object_add(ch, "channelId", json_object_new_string(r->room));
	ctx_set(r->ctx, "channel", json_object_get(ch));
	ctx_set(r->ctx, "settings", json_object_get(settings));
	store_channel_set(r->app->st, r->room, ch, init_saved, r);
	json_object_put(ch);
}

static int has_admin_role(struct app *a, struct req *r)
{
	const char *role = ctx_str(r->ctx, "user.role");
	for (size_t i = 0; role && i < a->nadmin_roles; i++)
		if (strcasecmp(role, a->admin_roles[i]) == 0)
			return 1;
	return 0;
}

static void act_init(struct req *r, struct sio_socket *s)
{
	int bad = 0;
	if (!r->run && !has_admin_role(r->app, r))   /* the API holds the server secret */
		return fail(r, "forbidden", "creating channels needs an admin role", 0);
	json_object *settings = arg(r, "settings", &bad);
	if (settings && !json_object_is_type(settings, json_type_object)) {
		json_object_put(settings);
		return fail(r, "bad_request", "settings must be an object", 0);
	}
	static const struct { const char *key; enum json_type t; int64_t max; } known[] = {
		{ "slowMode", json_type_int, 86400 },
		{ "historySize", json_type_int, 100000 },
		{ "private", json_type_boolean, 1 },
	};
	for (size_t i = 0; settings && i < sizeof known / sizeof known[0]; i++) {
		json_object *v;
		if (!json_object_object_get_ex(settings, known[i].key, &v))
			continue;
		if (!json_object_is_type(v, known[i].t) ||
		    (known[i].t == json_type_int &&
		     (json_object_get_int64(v) < 0 || json_object_get_int64(v) > known[i].max))) {
			char msg[96];
			snprintf(msg, sizeof msg, "settings.%s is out of range", known[i].key);
			json_object_put(settings);
			return fail(r, "bad_request", msg, 0);
		}
	}
	json_object_put(settings);
	store_channel_get(r->app->st, r->room, init_loaded, r);
}

static int emits_name(const struct emit_spec *e, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (e[i].event && strcmp(json_object_get_string(e[i].event), name) == 0)
			return 1;
	return 0;
}

static int spec_names(const struct event_spec *ev, const char *name)
{
	return ev && (strcmp(ev->name, name) == 0 || emits_name(ev->emits, ev->nemits, name) ||
	              emits_name(ev->expired, ev->nexpired, name));
}

/* Is name Socket.IO's, or one the vocabulary itself sends or receives? */
static int vocabulary_event(struct app *a, const char *name)
{
	static const char *const reserved[] = { "connect", "connect_error", "disconnect",
	                                        "disconnecting", "newListener", "removeListener",
	                                        "error", NULL };
	const struct profile *p = a->p;
	for (int i = 0; reserved[i]; i++)
		if (strcmp(name, reserved[i]) == 0)
			return 1;
	if (p->error.event && strcmp(json_object_get_string(p->error.event), name) == 0)
		return 1;
	if (spec_names(p->on_connect, name) || spec_names(p->on_disconnect, name) ||
	    spec_names(p->on_online, name) || spec_names(p->on_offline, name))
		return 1;
	for (size_t i = 0; i < p->nevents; i++)
		if (spec_names(&p->events[i], name))
			return 1;
	for (size_t i = 0; i < p->napi_events; i++)
		if (spec_names(&p->api_events[i], name))
			return 1;
	return 0;
}

static void act_relay(struct req *r, struct sio_socket *s)
{
	struct app *a = r->app;
	int bad = 0, allowed = 0;
	char *event = arg_string(r, "event", &bad);
	if (!event)
		return fail(r, "bad_request", "missing field: event", 0);
	/* events.broadcast_allow narrows what may be relayed; the vocabulary's
	 * own names are never relayed (clients could forge them). */
	allowed = !vocabulary_event(a, event);
	if (allowed && a->nallow) {
		allowed = 0;
		for (size_t i = 0; i < a->nallow && !allowed; i++)
			allowed = fnmatch(a->allow[i], event, 0) == 0;
	}
	if (!allowed) {
		free(event);
		return fail(r, "forbidden", "this event name cannot be broadcast", 0);
	}
	if (!in_room_or_fail(r, s)) {
		free(event);
		return;
	}
	json_object *relay = json_object_new_object();
	json_object_object_add(relay, "event", json_object_new_string(event));
	json_object *data = arg(r, "data", &bad);
	json_object_object_add(relay, "data", data);
	ctx_set(r->ctx, "relay", relay);
	free(event);
	done(r);
}

/* Runs the spec's action for r (the acting socket is s). */
static void act(struct req *r, struct sio_socket *s)
{
	int bad = 0;
	r->room = arg_string(r, "room", &bad);
	if (bad)
		return fail(r, "bad_request", "a field has the wrong type", 0);
	if (r->room)
		ctx_set(r->ctx, "room", json_object_new_string(r->room));
	enum action a = r->spec->action;
	if (!r->room && (a == A_JOIN || a == A_LEAVE || a == A_HISTORY || a == A_INIT || a == A_RELAY))
		return fail(r, "bad_request", "missing field: room", 0);
	switch (a) {
	case A_NONE: done(r); break;
	case A_JOIN: act_join(r, s); break;
	case A_LEAVE: act_leave(r, s); break;
	case A_SEND: act_send(r, s); break;
	case A_TYPING: act_typing(r, s); break;
	case A_PRESENCE: act_presence(r, s); break;
	case A_HISTORY: act_history(r, s); break;
	case A_INIT: act_init(r, s); break;
	case A_RELAY: act_relay(r, s); break;
	}
}

/* --- client events --- */

static int rate_ok(struct app *a, struct app_sock *as)
{
	if (a->cfg->limits_event_rate <= 0)
		return 1;
	uint64_t now = mono_ms();
	double burst = a->cfg->limits_event_burst;
	as->tokens += (double)(now - as->refilled_ms) * a->cfg->limits_event_rate / 1000.0;
	if (as->tokens > burst)
		as->tokens = burst;
	as->refilled_ms = now;
	if (as->tokens < 1)
		return 0;
	as->tokens -= 1;
	return 1;
}

/* A "require" entry holds: one of its fields ("a" or "a|b") is in the
 * payload, not null and not the empty string. */
static int required_present(json_object *payload, const char *fields)
{
	if (!json_object_is_type(payload, json_type_object))
		return 0;
	json_object_object_foreach(payload, key, v) {
		size_t klen = strlen(key);
		if (!v || (json_object_is_type(v, json_type_string) && json_object_get_string_len(v) == 0))
			continue;
		for (const char *f = fields; *f;) {
			size_t n = strcspn(f, "|");
			if (n == klen && memcmp(f, key, n) == 0)
				return 1;
			f += n + (f[n] == '|');
		}
	}
	return 0;
}

/* 1, with "missing field: a or b" in msg, when a "require" entry of spec
 * does not hold for payload; 0 when all do. */
static int missing_field(const struct event_spec *spec, json_object *payload, char *msg,
                         size_t len)
{
	for (size_t i = 0; i < spec->nrequire; i++) {
		if (required_present(payload, spec->require[i]))
			continue;
		size_t n = strlen("missing field: ");
		if (len <= n + 5) {          /* no room for the name */
			if (len)
				msg[0] = '\0';
			return 1;
		}
		memcpy(msg, "missing field: ", n);
		for (const char *c = spec->require[i]; *c && n + 5 < len; c++) {
			if (*c == '|') {
				memcpy(msg + n, " or ", 4);
				n += 4;
			} else {
				msg[n++] = *c;
			}
		}
		msg[n] = '\0';
		return 1;
	}
	return 0;
}

static void on_event(struct sio_socket *s, const struct sio_event *ev, void *ud)
{
	struct app *a = ud;
	struct app_sock *as = sio_data(s);
	const struct event_spec *spec = profile_event(a->p, ev->name);

	if (!as || !as->accepted)
		return;
	if (!spec) {
		log_debug("app: %s: unknown event '%s' ignored", sio_id(s), ev->name);
		if (ev->ack_id >= 0)
			sio_ack(s, ev->ack_id, NULL, NULL, 0);
		return;
	}
	struct req *r = req_new(a, sio_id(s), spec, as->user, ev->ack_id);
	if (!r)
		return;
	if (ev->natts > 0) {
		r->atts = xmust(malloc((size_t)ev->natts * sizeof *r->atts));
		for (int i = 0; i < ev->natts; i++)
			r->atts[i] = eio_msg_ref(ev->atts[i]);
		r->natts = ev->natts;
	}
	json_object *payload = json_object_array_get_idx(ev->data, 1);
	ctx_set(r->ctx, "req", payload ? json_object_get(payload) : json_object_new_object());
	if (!rate_ok(a, as))
		return fail(r, "rate_limited", NULL, 0);
	char msg[200];
	if (missing_field(spec, payload, msg, sizeof msg))
		return fail(r, "bad_request", msg, 0);
	for (size_t i = 0; i < spec->nself; i++) {
		json_object *v = NULL;
		json_object_object_get_ex(payload, spec->self[i], &v);
		if (!v || strcmp(json_object_get_string(v), r->user_id) != 0)
			return fail(r, "forbidden", "not allowed for another user", 0);
	}
	act(r, s);
}

/* --- hooks: connect, online, offline, disconnect, typing expiry --- */

static void run_hook(struct app *a, const struct event_spec *hook, const char *sid,
                     json_object *user)
{
	if (!hook)
		return;
	struct req *r = req_new(a, sid, hook, user, -1);
	if (!r)
		return;
	ctx_set(r->ctx, "req", json_object_new_object());
	act(r, sid && sid[0] ? sio_find(a->nsp, sid) : NULL);
}

/* The roles of the profile's stats.roles are counted across the cluster:
 * each socket of a user with one of them is also present in that role's
 * store group (stats.h), which the store keeps, reaps and counts as it does
 * the namespace's presence. Nothing waits for these: the group's name is
 * written into buf, or NULL when the role is not counted. */
static const char *role_group(const struct app *a, const char *role, char *buf, size_t len)
{
	for (size_t i = 0; role && i < a->p->nstats_roles; i++)
		if (strcmp(a->p->stats_roles[i], role) == 0)
			return stats_role_group(role, buf, len) == 0 ? buf : NULL;
	return NULL;
}

static void role_group_done(int err, int flag, void *ud)
{
	(void)err;
	(void)flag;
	(void)ud;
}

static void online_done(int err, int first, void *ud)
{
	struct req *r = ud;
	if (!err && first)
		run_hook(r->app, r->app->p->on_online, r->sid, tmpl_lookup(r->ctx, "user", 4));
	run_hook(r->app, r->app->p->on_connect, r->sid, tmpl_lookup(r->ctx, "user", 4));
	req_free(r);
}

static void auto_join(struct app *a, struct sio_socket *s, struct app_sock *as)
{
	const char *uid = json_object_get_string(tmpl_lookup(as->user, "id", 2));
	const char *role = ctx_str(as->user, "role");
	char *room = personal_room(a, uid);
	if (room)
		sio_join(s, room);
	free(room);
	if (a->role_rooms) {
		/* Every room that lists the role (case-insensitive) or "*" (every
		 * user); then, if no room named the role, those listing "else". */
		int named = 0;
		for (int pass = 0; pass < 2 && !(pass == 1 && named); pass++) {
			json_object_object_foreach(a->role_rooms, rname, roles) {
				for (size_t i = 0; i < json_object_array_length(roles); i++) {
					const char *want =
						json_object_get_string(json_object_array_get_idx(roles, i));
					int exact = role && strcasecmp(want, role) == 0 &&
					            strcmp(want, "*") != 0 && strcmp(want, "else") != 0;
					int hit = pass == 0 ? exact || strcmp(want, "*") == 0
					                    : strcmp(want, "else") == 0;
					if (!hit)
						continue;
					sio_join(s, rname);
					named |= exact;
					if (exact || pass == 1 || !json_object_object_get_ex(as->user, "roleRoom", NULL))
						json_object_object_add(as->user, "roleRoom",
						                       json_object_new_string(rname));
					break;
				}
			}
		}
	}
	if ((a->cfg->rooms_join_from_token || a->p->rooms_from_token) && as->token_rooms)
		for (size_t i = 0; i < json_object_array_length(as->token_rooms); i++)
			sio_join(s, json_object_get_string(json_object_array_get_idx(as->token_rooms, i)));
}

static void on_auth(const struct auth_result *res, void *ud)
{
	struct sio_socket *s = ud;
	struct app_sock *as = sio_data(s);
	struct app *a = as->app;

	as->pending = NULL;
	if (res->error) {
		json_object *data = json_object_new_object();
		json_object_object_add(data, "reason", json_object_new_string(res->reason));
		log_info("app: connection %s refused: %s (%s)", sio_id(s), res->error, res->reason);
		free(as);
		sio_set_data(s, NULL);
		sio_refuse(s, res->error, data);
		json_object_put(data);
		return;
	}
	as->user = json_object_new_object();
	json_object_object_add(as->user, "id", json_object_new_string(res->user.id));
	json_object_object_add(as->user, "name",
	                       json_object_new_string(res->user.name ? res->user.name : res->user.id));
	if (res->user.role)
		json_object_object_add(as->user, "role", json_object_new_string(res->user.role));
	as->token_rooms = json_object_get(res->user.rooms);
	as->accepted = 1;
	as->sock = s;
	if ((as->next = a->socks))
		a->socks->pprev = &as->next;
	as->pprev = &a->socks;
	a->socks = as;
	stats_user_on(res->user.id, res->user.role);
	as->tokens = a->cfg->limits_event_burst;
	as->refilled_ms = mono_ms();
	sio_accept(s);
	auto_join(a, s, as);
	char group[STATS_GROUP_MAX];
	if (role_group(a, res->user.role, group, sizeof group))
		store_user_add(a->st, group, res->user.id, NULL, sio_id(s), role_group_done, NULL);
	struct req *r = req_new(a, sio_id(s), NULL, as->user, -1);
	if (r)
		store_user_add(a->st, "/", r->user_id, r->name, r->sid, online_done, r);
}

static const char *token_from(struct app *a, struct sio_socket *s, json_object *auth,
                              char *buf, size_t len)
{
	static const char *const defaults[] = { "auth.token", "query.token", "header" };
	const struct eio_handshake *hs = eio_handshake(sio_session(s));
	size_t n = a->p->ntoken_sources ? a->p->ntoken_sources : 3;
	for (size_t i = 0; i < n; i++) {
		const char *src = a->p->ntoken_sources ? a->p->token_sources[i] : defaults[i];
		json_object *v;
		if (strncmp(src, "auth.", 5) == 0) {
			if (json_object_is_type(auth, json_type_object) &&
			    json_object_object_get_ex(auth, src + 5, &v) &&
			    json_object_is_type(v, json_type_string) && json_object_get_string_len(v)) {
				snprintf(buf, len, "%s", json_object_get_string(v));
				return buf;
			}
		} else if (strncmp(src, "query.", 6) == 0 && hs->query) {
			if (json_object_object_get_ex(hs->query, src + 6, &v) &&
			    json_object_get_string_len(v) > 0) {
				snprintf(buf, len, "%s", json_object_get_string(v));
				return buf;
			}
		} else if (strcmp(src, "header") == 0 && hs->authorization &&
		           strncasecmp(hs->authorization, "Bearer ", 7) == 0) {
			snprintf(buf, len, "%s", hs->authorization + 7);
			return buf;
		}
	}
	return NULL;
}

static void on_connect(struct sio_socket *s, json_object *auth, void *ud)
{
	struct app *a = ud;
	struct app_sock *as = calloc(1, sizeof *as);
	char token[8192];
	if (!as) {
		sio_refuse(s, "server_error", NULL);
		return;
	}
	as->app = a;
	sio_set_data(s, as);
	const char *t = token_from(a, s, auth, token, sizeof token);
	struct auth_req *pending = auth_check(a->auth, t, sio_id(s), on_auth, s);
	if (pending)                 /* the callback has not run: s is alive */
		as->pending = pending;
}

static void left_members(int err, json_object *v, void *ud)
{
	struct req *r = ud;
	ctx_set(r->ctx, "members", err || !v ? json_object_new_array() : shape_users(r, v));
	if (r->spec)
		run_emits(r, r->spec->emits, r->spec->nemits);
	req_free(r);
}

static void left_on_disconnect(int err, int last, void *ud)
{
	struct req *r = ud;
	ctx_set(r->ctx, "last", json_object_new_boolean(!err && last));
	store_room_members(r->app->st, "/", r->room, left_members, r);
}

static void offline_done(int err, int last, void *ud)
{
	struct req *r = ud;
	if (!err && last)
		run_hook(r->app, r->app->p->on_offline, "", tmpl_lookup(r->ctx, "user", 4));
	run_hook(r->app, r->app->p->on_disconnect, "", tmpl_lookup(r->ctx, "user", 4));
	req_free(r);
}

/* A request for the emits of leave (may be NULL) when user left room
 * without asking (disconnected, or reaped); req is the join's payload. */
static struct req *left_req(struct app *a, const struct event_spec *leave, json_object *user,
                            const char *room, json_object *req)
{
	struct req *r = req_new(a, "", leave, user, -1);
	if (!r)
		return NULL;
	ctx_set(r->ctx, "req", req ? json_object_get(req) : json_object_new_object());
	ctx_set(r->ctx, "room", json_object_new_string(room));
	r->room = strdup(room);
	return r;
}

static void on_disconnect(struct sio_socket *s, const char *reason, void *ud)
{
	struct app *a = ud;
	struct app_sock *as = sio_data(s);
	if (!as)
		return;
	if (as->pending)
		auth_cancel(as->pending);
	if (as->accepted) {
		if ((*as->pprev = as->next))
			as->next->pprev = as->pprev;
		stats_user_off(ctx_str(as->user, "id"), ctx_str(as->user, "role"));
		for (size_t i = 0; i < as->njoined; i++) {
			struct joined *j = &as->joined[i];
			struct req *r = left_req(a, j->leave, as->user, j->room, j->req);
			if (r)
				store_room_remove(a->st, "/", j->room, r->user_id, sio_id(s),
				                  left_on_disconnect, r);
		}
		char group[STATS_GROUP_MAX];
		if (role_group(a, ctx_str(as->user, "role"), group, sizeof group))
			store_user_remove(a->st, group, ctx_str(as->user, "id"), sio_id(s), role_group_done,
			                  NULL);
		struct req *r = req_new(a, "", NULL, as->user, -1);
		if (r)
			store_user_remove(a->st, "/", r->user_id, sio_id(s), offline_done, r);
	}
	for (size_t i = 0; i < as->njoined; i++) {
		free(as->joined[i].room);
		json_object_put(as->joined[i].req);
	}
	free(as->joined);
	json_object_put(as->user);
	json_object_put(as->token_rooms);
	free(as);
	sio_set_data(s, NULL);
	log_debug("app: %s disconnected: %s", sio_id(s), reason);
}

static void on_typing_expired(const char *nsp, const char *room, const char *user,
                              json_object *info, void *ud)
{
	struct app *a = ud;
	json_object *ev, *name;
	if (!json_object_object_get_ex(info, "event", &ev))
		return;
	const struct event_spec *spec = profile_event(a->p, json_object_get_string(ev));
	if (!spec || !spec->nexpired)
		return;
	json_object *u = json_object_new_object();
	json_object_object_add(u, "id", json_object_new_string(user));
	json_object_object_add(u, "name", json_object_object_get_ex(info, "name", &name)
	                       ? json_object_get(name) : json_object_new_string(user));
	struct req *r = req_new(a, "", spec, u, -1);
	json_object_put(u);
	if (!r)
		return;
	r->room = strdup(room);
	ctx_set(r->ctx, "room", json_object_new_string(room));
	json_object *req;
	ctx_set(r->ctx, "typing", json_object_new_boolean(0));
	ctx_set(r->ctx, "req", json_object_object_get_ex(info, "req", &req) ? json_object_get(req)
	                                                                    : json_object_new_object());
	run_emits(r, spec->expired, spec->nexpired);
	req_free(r);
}

/* --- faults: reaped sids, resynchronisation --- */

static void on_reaped(const char *nsp, const char *room, const char *user, const char *name,
                      json_object *info, void *ud)
{
	struct app *a = ud;
	json_object *u, *ev, *req = NULL;
	if (strcmp(nsp, "/") != 0)   /* a role's group (role_group): only counted */
		return;
	u = json_object_new_object();
	json_object_object_add(u, "id", json_object_new_string(user));
	json_object_object_add(u, "name", json_object_new_string(*name ? name : user));
	if (!room) {
		run_hook(a, a->p->on_offline, "", u);
	} else if (json_object_object_get_ex(info, "event", &ev)) {
		const struct event_spec *leave = profile_event(a->p, json_object_get_string(ev));
		json_object_object_get_ex(info, "req", &req);
		struct req *r = leave ? left_req(a, leave, u, room, req) : NULL;
		if (r)
			left_on_disconnect(0, 1, r);
	}
	json_object_put(u);
}

static void resync_online(int err, int first, void *ud)
{
	struct req *r = ud;
	if (!err && first)
		run_hook(r->app, r->app->p->on_online, r->sid, tmpl_lookup(r->ctx, "user", 4));
	req_free(r);
}

static void resync_room(int err, int first, void *ud)
{
	(void)err;
	(void)first;
	(void)ud;
}

static void on_resync(void *ud)
{
	struct app *a = ud;
	size_t n = 0;
	for (struct app_sock *as = a->socks; as; as = as->next, n++) {
		const char *sid = sio_id(as->sock);
		struct req *r = req_new(a, sid, NULL, as->user, -1);
		if (!r)
			continue;
		for (size_t i = 0; i < as->njoined; i++) {
			json_object *info = join_info(as, as->joined[i].room);
			store_room_add(a->st, "/", as->joined[i].room, r->user_id, r->name, sid, info,
			               resync_room, NULL);
			json_object_put(info);
		}
		char group[STATS_GROUP_MAX];
		if (role_group(a, ctx_str(as->user, "role"), group, sizeof group))
			store_user_add(a->st, group, r->user_id, NULL, sid, role_group_done, NULL);
		store_user_add(a->st, "/", r->user_id, r->name, sid, resync_online, r);
	}
	if (n)
		log_info("app: %zu sockets registered again in the store", n);
}

/* --- start-up --- */

static int parse_rules(struct app *a, char *err, size_t errlen)
{
	size_t n;
	char **items = split(a->cfg->rooms_policy, ",", &n);
	a->rules = calloc(n ? n : 1, sizeof *a->rules);
	for (size_t i = 0; i < n; i++) {
		char *eq = strrchr(items[i], '=');
		char *pat = items[i];
		while (*pat == ' ')
			pat++;
		if (!eq) {
			snprintf(err, errlen, "rooms.policy: expected PATTERN=POLICY, got '%s'", items[i]);
			free_strv(items, n);
			return -1;
		}
		*eq = '\0';
		char *pol = eq + 1;
		while (*pol == ' ')
			pol++;
		size_t pl = strlen(pat);
		while (pl && pat[pl - 1] == ' ')
			pat[--pl] = '\0';
		enum policy p;
		if (strcmp(pol, "open") == 0) p = P_OPEN;
		else if (strcmp(pol, "token") == 0) p = P_TOKEN;
		else if (strcmp(pol, "redis") == 0) p = P_REDIS;
		else if (strcmp(pol, "deny") == 0) p = P_DENY;
		else {
			snprintf(err, errlen, "rooms.policy: '%s' is not open, token, redis or deny", pol);
			free_strv(items, n);
			return -1;
		}
		a->rules[a->nrules].pattern = strdup(pat);
		a->rules[a->nrules++].policy = p;
	}
	free_strv(items, n);
	return 0;
}

/* rooms.roles = "admin=admin analyst support; advisor=advisor" */
static json_object *parse_roles(const char *spec, char *err, size_t errlen)
{
	size_t n;
	char **items = split(spec, ";", &n);
	json_object *o = json_object_new_object();
	for (size_t i = 0; i < n; i++) {
		char *eq = strchr(items[i], '=');
		if (!eq) {
			snprintf(err, errlen, "rooms.roles: expected ROOM=ROLE ROLE..., got '%s'", items[i]);
			json_object_put(o);
			o = NULL;
			break;
		}
		*eq = '\0';
		size_t nr;
		char **roles = split(eq + 1, " ,", &nr);
		char *room = items[i];
		while (*room == ' ')
			room++;
		size_t rl = strlen(room);
		while (rl && room[rl - 1] == ' ')
			room[--rl] = '\0';
		json_object *arr = json_object_new_array();
		for (size_t k = 0; k < nr; k++)
			json_object_array_add(arr, json_object_new_string(roles[k]));
		json_object_object_add(o, room, arr);
		free_strv(roles, nr);
	}
	free_strv(items, n);
	return o;
}

/* Connection state recovery: the rooms the client joined (with the events
 * that joined them and what to run when it leaves) go with the saved
 * socket, and come back with it -- to the same user only. */
static json_object *on_save(struct sio_socket *s, void *ud)
{
	struct app_sock *as = sio_data(s);
	(void)ud;
	if (!as || !as->accepted)
		return NULL;
	json_object *st = json_object_new_object(), *v = json_object_new_array();
	json_object_object_add(st, "user", json_object_get(tmpl_lookup(as->user, "id", 2)));
	for (size_t i = 0; i < as->njoined; i++) {
		json_object *j = json_object_new_object();
		json_object_object_add(j, "room", json_object_new_string(as->joined[i].room));
		if (as->joined[i].join)
			json_object_object_add(j, "join", json_object_new_string(as->joined[i].join->name));
		if (as->joined[i].leave)
			json_object_object_add(j, "leave", json_object_new_string(as->joined[i].leave->name));
		json_object_object_add(j, "req", json_object_get(as->joined[i].req));
		json_object_array_add(v, j);
	}
	json_object_object_add(st, "joined", v);
	return st;
}

/* Back in a room: the others learn of it as of a join, its reply aside. */
static void rejoined(int err, int first, void *ud)
{
	struct req *r = ud;
	if (!err && r->spec) {
		struct sio_socket *self = actor(r);
		ctx_set(r->ctx, "first", json_object_new_boolean(first));
		for (size_t i = 0; i < r->spec->nemits; i++) {
			const struct emit_spec *e = &r->spec->emits[i];
			if (!e->reply && !e->ack_only && e->to != TO_SELF)
				emit_one(r, self, e);
		}
	}
	req_free(r);
}

static int on_restore(struct sio_socket *s, json_object *state, void *ud)
{
	struct app *a = ud;
	struct app_sock *as = sio_data(s);
	json_object *user, *list;
	if (!as || !as->accepted || !json_object_object_get_ex(state, "user", &user) ||
	    !json_object_equal(user, tmpl_lookup(as->user, "id", 2)))
		return -1;               /* another user's session: not for this one */
	if (!json_object_object_get_ex(state, "joined", &list) || !json_object_is_type(list, json_type_array))
		return 0;
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *e = json_object_array_get_idx(list, i), *room, *join, *leave, *req;
		if (!json_object_object_get_ex(e, "room", &room) || !json_object_is_type(room, json_type_string))
			continue;
		if (as->njoined == as->capjoined) {
			size_t cap = as->capjoined ? 2 * as->capjoined : 4;
			as->joined = xmust(realloc(as->joined, cap * sizeof *as->joined));
			as->capjoined = cap;
		}
		struct joined *j = &as->joined[as->njoined++];
		j->room = xstrdup(json_object_get_string(room));
		j->join = json_object_object_get_ex(e, "join", &join)
		          ? profile_event(a->p, json_object_get_string(join)) : NULL;
		j->leave = json_object_object_get_ex(e, "leave", &leave)
		           ? profile_event(a->p, json_object_get_string(leave)) : NULL;
		j->req = json_object_object_get_ex(e, "req", &req) ? json_object_get(req) : NULL;
		struct req *r = req_new(a, sio_id(s), j->join, as->user, -1);
		if (!r)
			continue;
		r->room = xstrdup(j->room);
		if (j->req)
			ctx_set(r->ctx, "req", json_object_get(j->req));
		ctx_set(r->ctx, "room", json_object_new_string(j->room));
		json_object *info = join_info(as, j->room);
		store_room_add(a->st, "/", j->room, r->user_id, r->name, r->sid, info, rejoined, r);
		json_object_put(info);
	}
	return 0;
}

static const struct sio_nsp_ops nsp_ops = { on_connect, on_event, on_disconnect, on_save, on_restore };

int app_check(const struct config *cfg, struct profile *p, char *err, size_t errlen)
{
	struct app a = { .cfg = cfg, .p = p };
	int rc = parse_rules(&a, err, errlen);
	for (size_t i = 0; i < a.nrules; i++)
		free(a.rules[i].pattern);
	free(a.rules);
	if (rc < 0)
		return -1;
	if (cfg->rooms_roles && *cfg->rooms_roles) {
		json_object *roles = parse_roles(cfg->rooms_roles, err, errlen);
		if (!roles)
			return -1;
		json_object_put(roles);
	}
	char why[400];
	if (cfg->redis_url && *cfg->redis_url && redis_url_check(cfg->redis_url, why, sizeof why) < 0) {
		snprintf(err, errlen, "redis.url: %s", why);
		return -1;
	}
	struct auth *au = auth_new(cfg, p, NULL, why, sizeof why);
	if (!au) {
		snprintf(err, errlen, "auth: %s", why);
		return -1;
	}
	auth_free(au);
	return 0;
}

struct app *app_start(struct event_base *base, const struct config *cfg, struct profile *p,
                      struct store *st, struct redis *redis, char *err, size_t errlen)
{
	struct app *a = calloc(1, sizeof *a);
	if (!a)
		return NULL;
	a->base = base;
	a->cfg = cfg;
	a->p = p;
	a->st = st;
	a->redis = redis;
	if (parse_rules(a, err, errlen) < 0)
		return NULL;
	if (cfg->rooms_personal && *cfg->rooms_personal)
		a->personal = json_object_new_string(cfg->rooms_personal);
	else if (p->personal_room)
		a->personal = json_object_get(p->personal_room);
	if (cfg->rooms_roles && *cfg->rooms_roles) {
		if (!(a->role_rooms = parse_roles(cfg->rooms_roles, err, errlen)))
			return NULL;
	} else if (p->role_rooms) {
		a->role_rooms = json_object_get(p->role_rooms);
	}
	a->admin_roles = split(cfg->channels_admin_roles, ", ", &a->nadmin_roles);
	a->allow = split(cfg->events_broadcast_allow, ", ", &a->nallow);
	a->auth = auth_new(cfg, p, redis, err, errlen);
	if (!a->auth)
		return NULL;
	st->on_typing_expired = on_typing_expired;
	st->on_typing_expired_ud = a;
	st->on_reaped = on_reaped;
	st->on_reaped_ud = a;
	st->on_resync = on_resync;
	st->on_resync_ud = a;
	struct sio_server *srv = sio_server_new(base, cfg, cfg->path);
	if (!srv || !(a->nsp = sio_nsp_add(srv, "/", &nsp_ops, a))) {
		snprintf(err, errlen, "cannot serve %s", cfg->path);
		return NULL;
	}
	log_info("profile %s: %zu events, auth: %s, store: %s", p->name, p->nevents,
	         auth_describe(a->auth), st->ops->name);
	return a;
}

/* --- the HTTP API's entry points (api.c) ---------------------------------
 *
 * app_run() runs an event spec as a client's event would run, with no
 * socket: the request carries a struct api_run, which the reply emit fills
 * (run_reply) and whose callback done() or fail() calls (run_end). */

struct api_run {
	app_run_cb cb;
	void *ud;
	json_object *reply;          /* the reply emit's data */
	int replied;
};

static void run_reply(struct req *r, json_object *data)
{
	if (r->run->replied)
		return;
	r->run->replied = 1;
	r->run->reply = json_object_get(data);
}

static void run_end(struct req *r, const char *code, const char *message, uint64_t retry_ms)
{
	struct api_run *run = r->run;
	struct app_outcome o = { code, message, retry_ms, run->reply };
	r->run = NULL;
	run->cb(&o, run->ud);
	json_object_put(run->reply);
	free(run);
}

static void run_refuse(app_run_cb cb, void *ud, const char *code, const char *message)
{
	struct app_outcome o = { code, message, 0, NULL };
	cb(&o, ud);
}

void app_run(struct app *a, json_object *user, const char *event, json_object *payload,
             json_object *api, app_run_cb cb, void *ud)
{
	const struct event_spec *spec = profile_event(a->p, event);
	char msg[300];
	if (!spec)
		spec = profile_api_event(a->p, event);
	if (!spec) {
		snprintf(msg, sizeof msg, "the profile %s has no event %s", a->p->name, event);
		return run_refuse(cb, ud, "not_found", msg);
	}
	if (spec->action == A_JOIN || spec->action == A_LEAVE || spec->action == A_TYPING) {
		snprintf(msg, sizeof msg, "event %s (action %s) needs a socket", event,
		         action_name(spec->action));
		return run_refuse(cb, ud, "not_found", msg);
	}
	const char *uid = json_object_get_string(tmpl_lookup(user, "id", 2));
	if (user && (!uid || !*uid))
		return run_refuse(cb, ud, "bad_request", "the user has no id");
	if (!user && spec->action == A_SEND)
		return run_refuse(cb, ud, "bad_request", "a message needs a sender");
	struct req *r = req_new(a, "", spec, user, -1);
	if (!r)
		return run_refuse(cb, ud, "unavailable", NULL);
	r->run = xcalloc(1, sizeof *r->run);
	r->run->cb = cb;
	r->run->ud = ud;
	ctx_set(r->ctx, "req", payload ? json_object_get(payload) : json_object_new_object());
	if (api)
		ctx_set(r->ctx, "api", json_object_get(api));
	/* As on_event, without the rate limit: the API has its own secret. */
	if (missing_field(spec, payload, msg, sizeof msg))
		return fail(r, "bad_request", msg, 0);
	for (size_t i = 0; i < spec->nself; i++) {
		json_object *v = NULL;
		json_object_object_get_ex(payload, spec->self[i], &v);
		if (!v || !r->user_id || strcmp(json_object_get_string(v), r->user_id) != 0)
			return fail(r, "forbidden", "not allowed for another user", 0);
	}
	act(r, NULL);
}

struct sio_nsp *app_nsp(const struct app *a)
{
	return a->nsp;
}

const struct profile *app_profile(const struct app *a)
{
	return a->p;
}

char *app_user_room(struct app *a, const char *user_id)
{
	return personal_room(a, user_id);
}

size_t app_role_rooms(const struct app *a, const char *role, char **out, size_t max)
{
	size_t n = 0;
	if (!a->role_rooms)
		return 0;
	json_object_object_foreach(a->role_rooms, rname, roles) {
		for (size_t i = 0; i < json_object_array_length(roles) && n < max; i++) {
			const char *r = json_object_get_string(json_object_array_get_idx(roles, i));
			if (strcasecmp(r, role) == 0 && strcmp(r, "*") != 0 && strcmp(r, "else") != 0) {
				out[n++] = xstrdup(rname);
				break;
			}
		}
	}
	return n;
}

size_t app_rooms_of_role(const struct app *a, const char *role, char **out, size_t max)
{
	size_t n = 0;
	if (!a->role_rooms || !role)
		return 0;
	/* As auto_join: the rooms naming the role; when none does, "else". */
	for (int pass = 0; pass < 2 && n == 0; pass++) {
		json_object_object_foreach(a->role_rooms, rname, roles) {
			for (size_t i = 0; i < json_object_array_length(roles) && n < max; i++) {
				const char *want = json_object_get_string(json_object_array_get_idx(roles, i));
				int special = strcmp(want, "*") == 0 || strcmp(want, "else") == 0;
				if (pass == 0 ? !special && strcasecmp(want, role) == 0
				              : strcmp(want, "else") == 0) {
					out[n++] = xstrdup(rname);
					break;
				}
			}
		}
	}
	return n;
}

int app_reserved_event(struct app *a, const char *name)
{
	return vocabulary_event(a, name);
}
