/* bus_routes.c -- see bus_routes.h.
 *
 * A message is routed over one context object:
 *
 *   channel   the channel it came on
 *   match     what each '*' of the route's pattern matched, in order
 *   msg       the message, parsed (any JSON value)
 *   now       {ms}: the time it arrived
 *   item      in a target with "each": the current element
 *
 * The routes of the subscription it came through are tried in file order;
 * the first whose condition holds takes it: its defaults are merged under
 * the message, then its event, data and targets are evaluated. A message
 * that does not parse, that no route takes, or whose emit has no name or
 * no room is dropped (routes_route says why; the runtime logs it at debug
 * level, as a backend may publish what a profile does not route). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "bus_routes.h"
#include "log.h"
#include "redis.h"
#include "sio.h"
#include "sio_codec.h"
#include "tmpl.h"
#include "util.h"

#define MAX_CAPS 16                  /* '*' of a pattern whose match is kept */
#define GLOB_BUDGET 100000           /* steps of one match */

struct routes {
	const struct profile *p;
	char **channel;                  /* per route: evaluated */
	int *pattern;                    /* per route: channel is a glob pattern */
	const char **subs[2];            /* distinct plain channels, patterns (borrowed) */
	size_t nsubs[2];
};

/* --- glob --- */

struct globber {
	const char *s0;
	struct route_cap *caps;
	size_t ncaps;
	long budget;
};

/* One class "[...]" at p (after the '['), against c: *p moves past it. */
static int glob_class(const char **pp, unsigned char c)
{
	const char *p = *pp;
	int neg = *p == '^', hit = 0;
	if (neg)
		p++;
	for (; *p && *p != ']'; p++) {
		if (*p == '\\' && p[1]) {
			p++;
			hit |= (unsigned char)*p == c;
		} else if (p[1] == '-' && p[2] && p[2] != ']') {
			unsigned char a = (unsigned char)p[0], b = (unsigned char)p[2];
			if (a > b) {
				unsigned char t = a;
				a = b;
				b = t;
			}
			hit |= c >= a && c <= b;
			p += 2;
		} else {
			hit |= (unsigned char)*p == c;
		}
	}
	if (*p == ']')
		p++;
	*pp = p;
	return hit != neg;
}

static int glob_at(struct globber *g, const char *p, const char *s, size_t k)
{
	for (;;) {
		if (--g->budget < 0)
			return 0;
		if (!*p)
			return !*s;
		if (*p == '*') {
			/* Shortest first, as Redis tries them. */
			for (const char *t = s;; t++) {
				if (k < g->ncaps)
					g->caps[k] = (struct route_cap){ (size_t)(s - g->s0), (size_t)(t - s) };
				if (glob_at(g, p + 1, t, k + 1))
					return 1;
				if (!*t || g->budget < 0)
					return 0;
			}
		}
		if (!*s)
			return 0;
		if (*p == '?') {
			p++;
		} else if (*p == '[') {
			p++;
			if (!glob_class(&p, (unsigned char)*s))
				return 0;
		} else {
			if (*p == '\\' && p[1])
				p++;
			if (*p++ != *s)
				return 0;
		}
		s++;
	}
}

int routes_glob(const char *pattern, const char *channel, struct route_cap *caps, size_t ncaps)
{
	struct globber g = { channel, caps, ncaps, GLOB_BUDGET };
	return glob_at(&g, pattern, channel, 0);
}

/* How many '*' of the pattern capture (outside classes, not escaped). */
static size_t stars(const char *p)
{
	size_t n = 0;
	for (; *p; p++) {
		if (*p == '\\' && p[1])
			p++;
		else if (*p == '[')
			while (p[1] && p[1] != ']')
				p++;
		else
			n += *p == '*';
	}
	return n;
}

/* --- the routes --- */

static int is_pattern(const char *s)
{
	return strpbrk(s, "*?[\\") != NULL;
}

static void add_sub(struct routes *r, const char *name, int pattern)
{
	for (size_t i = 0; i < r->nsubs[pattern]; i++)
		if (strcmp(r->subs[pattern][i], name) == 0)
			return;
	r->subs[pattern][r->nsubs[pattern]++] = name;
}

struct routes *routes_new(const struct profile *p, const struct config *cfg, char *err,
                          size_t errlen)
{
	struct routes *r = xcalloc(1, sizeof *r);
	size_t n = p->nroutes;
	r->p = p;
	r->channel = xcalloc(n ? n : 1, sizeof *r->channel);
	r->pattern = xcalloc(n ? n : 1, sizeof *r->pattern);
	r->subs[0] = xcalloc(n ? n : 1, sizeof *r->subs[0]);
	r->subs[1] = xcalloc(n ? n : 1, sizeof *r->subs[1]);
	json_object *ctx = json_object_new_object(), *ev = json_object_new_object();
	json_object *rd = json_object_new_object();
	json_object_object_add(ev, "redis_channel", json_object_new_string(
		cfg->events_redis_channel ? cfg->events_redis_channel : ""));
	json_object_object_add(rd, "prefix", json_object_new_string(
		cfg->redis_prefix ? cfg->redis_prefix : ""));
	json_object_object_add(ctx, "events", ev);
	json_object_object_add(ctx, "redis", rd);
	for (size_t i = 0; i < n; i++) {
		char *c = tmpl_string(p->routes[i].channel, ctx);
		if (!c || !*c || strlen(c) > ROUTES_MAX_CHANNEL) {
			snprintf(err, errlen, "profile %s: bus route %zu: the channel %s is %s", p->name, i + 1,
			         json_object_get_string(p->routes[i].channel),
			         !c || !*c ? "empty" : "too long");
			free(c);
			json_object_put(ctx);
			routes_free(r);
			return NULL;
		}
		r->channel[i] = c;
		r->pattern[i] = is_pattern(c);
		add_sub(r, c, r->pattern[i]);
	}
	json_object_put(ctx);
	return r;
}

void routes_free(struct routes *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->p->nroutes; i++)
		free(r->channel[i]);
	free(r->channel);
	free(r->pattern);
	free(r->subs[0]);
	free(r->subs[1]);
	free(r);
}

size_t routes_subscriptions(const struct routes *r, int patterns, const char *const **out)
{
	*out = r->subs[patterns != 0];
	return r->nsubs[patterns != 0];
}

/* --- conditions --- */

static int same_value(json_object *v, json_object *w)
{
	enum json_type tv = json_object_get_type(v), tw = json_object_get_type(w);
	if ((tv == json_type_int || tv == json_type_double) &&
	    (tw == json_type_int || tw == json_type_double)) {
		if (tv == json_type_int && tw == json_type_int)
			return json_object_get_int64(v) == json_object_get_int64(w);
		return json_object_get_double(v) == json_object_get_double(w);
	}
	return json_object_equal(v, w);
}

static int test_holds(const struct bus_test *t, json_object *ctx)
{
	json_object *v = tmpl_lookup(ctx, t->path, strlen(t->path));
	int r = 0;
	if (!t->values) {
		r = tmpl_truthy(v);
	} else {
		for (size_t i = 0; i < json_object_array_length(t->values) && !r; i++) {
			json_object *w = json_object_array_get_idx(t->values, i);
			r = w ? v && same_value(v, w) : !v;
		}
	}
	return r != t->negate;
}

static int cond_holds(const struct bus_cond *c, json_object *ctx)
{
	for (size_t i = 0; i < c->n; i++)
		if (!test_holds(&c->v[i], ctx))
			return 0;
	return 1;
}

/* --- targets --- */

struct acc {
	char **v;
	size_t *n;
	int *all;
};

static void acc_add(struct acc *a, char *room)
{
	if (!room)
		return;
	if (!*room || strlen(room) > ROUTES_MAX_NAME || *a->n == ROUTES_MAX_ROOMS) {
		free(room);
		return;
	}
	a->v[(*a->n)++] = room;
}

/* One name of a target: a room, a user's personal room, a role's rooms. */
static void add_name(const struct bus_target *t, const char *name, const struct route_rooms *rr,
                     struct acc *a)
{
	if (!*name || strlen(name) > ROUTES_MAX_NAME)
		return;
	switch (t->kind) {
	case BUS_ROOM:
		acc_add(a, xstrdup(name));
		break;
	case BUS_USER:
		if (rr && rr->user_room)
			acc_add(a, rr->user_room(rr->ud, name));
		break;
	case BUS_ROLE:
		if (rr && rr->role_rooms && *a->n < ROUTES_MAX_ROOMS)
			*a->n += rr->role_rooms(rr->ud, name, a->v + *a->n, ROUTES_MAX_ROOMS - *a->n);
		break;
	default:
		break;
	}
}

/* The target's template: a name, or an array of names (strings or numbers). */
static void add_names(const struct bus_target *t, json_object *ctx, const struct route_rooms *rr,
                      struct acc *a)
{
	json_object *v;
	const char *what;
	if (tmpl_eval(t->name, ctx, &v, &what) != TMPL_OK || !v)
		return;
	int arr = json_object_is_type(v, json_type_array);
	size_t len = arr ? json_object_array_length(v) : 1;
	for (size_t i = 0; i < len; i++) {
		json_object *e = arr ? json_object_array_get_idx(v, i) : v;
		if (json_object_is_type(e, json_type_string) || json_object_is_type(e, json_type_int))
			add_name(t, json_object_get_string(e), rr, a);
	}
	json_object_put(v);
}

static void add_target(const struct bus_target *t, json_object *ctx, const struct route_rooms *rr,
                       struct acc *a)
{
	if (!cond_holds(&t->when, ctx))
		return;
	if (t->kind == BUS_ALL) {
		*a->all = 1;
		return;
	}
	if (t->kind == BUS_FIRST) {
		for (size_t i = 0; i < t->nfirst; i++)
			if (cond_holds(&t->first[i].when, ctx)) {
				add_target(&t->first[i], ctx, rr, a);
				return;
			}
		return;
	}
	if (!t->each) {
		add_names(t, ctx, rr, a);
		return;
	}
	/* Held: "item" may replace what the path led to. */
	json_object *list = json_object_get(tmpl_lookup(ctx, t->each, strlen(t->each)));
	for (size_t i = 0; json_object_is_type(list, json_type_array) &&
	                   i < json_object_array_length(list) && *a->n < ROUTES_MAX_ROOMS; i++) {
		json_object_object_add(ctx, "item", json_object_get(json_object_array_get_idx(list, i)));
		add_names(t, ctx, rr, a);
	}
	json_object_object_del(ctx, "item");
	json_object_put(list);
}

/* --- routing --- */

/* Merges d under m: what m lacks or holds as null takes d's value (a
 * copy), objects merge member by member. */
static void merge_under(json_object *m, json_object *d)
{
	json_object_object_foreach(d, k, dv) {
		json_object *mv = NULL;
		if (!json_object_object_get_ex(m, k, &mv) || !mv) {
			json_object *copy = NULL;
			if (dv && json_object_deep_copy(dv, &copy, NULL) < 0)
				continue;
			json_object_object_add(m, k, copy);
		} else if (json_object_is_type(mv, json_type_object) &&
		           json_object_is_type(dv, json_type_object)) {
			merge_under(mv, dv);
		}
	}
}

static json_object *context(const char *sub, int pattern, const char *channel, json_object *msg,
                            uint64_t now_ms)
{
	json_object *ctx = json_object_new_object(), *match = json_object_new_array();
	json_object *now = json_object_new_object();
	struct route_cap caps[MAX_CAPS];
	if (pattern && routes_glob(sub, channel, caps, MAX_CAPS)) {
		size_t n = stars(sub);
		for (size_t i = 0; i < n && i < MAX_CAPS; i++)
			json_object_array_add(match, json_object_new_string_len(channel + caps[i].off,
			                                                        (int)caps[i].len));
	}
	json_object_object_add(now, "ms", json_object_new_int64((int64_t)now_ms));
	json_object_object_add(ctx, "channel", json_object_new_string(channel));
	json_object_object_add(ctx, "match", match);
	json_object_object_add(ctx, "msg", msg);
	json_object_object_add(ctx, "now", now);
	return ctx;
}

/* The emit of route i over ctx. */
static int build(const struct bus_route *rt, json_object *ctx, const struct route_rooms *rr,
                 struct route_emit *out, char *why, size_t whylen)
{
	const char *what;
	json_object *msg = tmpl_lookup(ctx, "msg", 3), *v;
	if (rt->defaults && json_object_is_type(msg, json_type_object) &&
	    tmpl_eval(rt->defaults, ctx, &v, &what) == TMPL_OK) {
		if (json_object_is_type(v, json_type_object))
			merge_under(msg, v);
		json_object_put(v);
	}
	out->event = tmpl_string(rt->event, ctx);
	if (!out->event || !*out->event || strlen(out->event) > ROUTES_MAX_NAME ||
	    sio_reserved_event(out->event)) {
		snprintf(why, whylen, "route %zu: %s event name", out->route + 1,
		         out->event && *out->event ? "a reserved or too long" : "no");
		return 0;
	}
	out->args = json_object_new_array();
	if (rt->data) {
		enum tmpl_err e = tmpl_eval(rt->data, ctx, &v, &what);
		if (e == TMPL_TYPE || e == TMPL_SYNTAX) {
			snprintf(why, whylen, "route %zu: cannot build the data (%s)", out->route + 1, what);
			return 0;
		}
		if (e == TMPL_OK)
			json_object_array_add(out->args, v);
	}
	struct acc to = { out->rooms, &out->nrooms, &out->all };
	for (size_t i = 0; i < rt->nto; i++)
		add_target(&rt->to[i], ctx, rr, &to);
	if (out->all) {
		for (size_t i = 0; i < out->nrooms; i++)
			free(out->rooms[i]);
		out->nrooms = 0;
	} else if (!out->nrooms) {
		snprintf(why, whylen, "route %zu: %s: no room to send it to", out->route + 1, out->event);
		return 0;
	}
	int none = 0;
	struct acc ex = { out->except, &out->nexcept, &none };
	for (size_t i = 0; i < rt->nexcept; i++)
		add_target(&rt->except[i], ctx, rr, &ex);
	return 1;
}

int routes_route(const struct routes *r, const char *sub, int pattern, const char *channel,
                 const char *msg, size_t len, uint64_t now_ms, const struct route_rooms *rr,
                 struct route_emit *out, char *why, size_t whylen)
{
	memset(out, 0, sizeof *out);
	snprintf(why, whylen, "no route takes it");
	if (len > ROUTES_MAX_MESSAGE || strlen(channel) > ROUTES_MAX_CHANNEL) {
		snprintf(why, whylen, "too large");
		return 0;
	}
	if (!sio_json_valid(msg, len)) {
		snprintf(why, whylen, "not JSON");
		return 0;
	}
	json_object *m = sio_json_parse(msg, len);   /* NULL: the JSON null */
	json_object *ctx = context(sub, pattern, channel, m, now_ms);
	int rc = 0;
	for (size_t i = 0; i < r->p->nroutes; i++) {
		const struct bus_route *rt = &r->p->routes[i];
		if (r->pattern[i] != (pattern != 0) || strcmp(r->channel[i], sub) != 0 ||
		    !cond_holds(&rt->when, ctx))
			continue;
		out->route = i;
		rc = build(rt, ctx, rr, out, why, whylen);
		break;
	}
	json_object_put(ctx);
	if (!rc)
		route_emit_clear(out);
	return rc;
}

void route_emit_clear(struct route_emit *e)
{
	free(e->event);
	json_object_put(e->args);
	for (size_t i = 0; i < e->nrooms; i++)
		free(e->rooms[i]);
	for (size_t i = 0; i < e->nexcept; i++)
		free(e->except[i]);
	size_t route = e->route;
	memset(e, 0, sizeof *e);
	e->route = route;
}

/* --- the runtime: a subscription of our own --- */

struct bus_routes {
	struct routes *r;
	struct app *app;
	struct sio_nsp *nsp;
	struct redis *sub;
	size_t nsubs;                    /* channels and patterns */
	int listening;                   /* confirmed on this connection */
	struct route_rooms rooms;
};

static char *user_room(void *ud, const char *id)
{
	return app_user_room(ud, id);
}

static size_t role_rooms(void *ud, const char *role, char **out, size_t max)
{
	return app_rooms_of_role(ud, role, out, max);
}

static void deliver(struct bus_routes *b, const char *sub, int pattern, const char *channel,
                    const char *msg, size_t len)
{
	struct route_emit e;
	char why[300];
	if (!routes_route(b->r, sub, pattern, channel, msg, len, wall_ms(), &b->rooms, &e, why,
	                  sizeof why)) {
		log_debug("bus routes: a message on %.200s dropped: %s", channel, why);
		return;
	}
	struct sio_out *o = sio_encode_event(sio_nsp_name_of(b->nsp), e.event, e.args);
	if (o) {
		size_t n = sio_broadcast_local(b->nsp, (const char *const *)e.rooms, e.nrooms,
		                               (const char *const *)e.except, e.nexcept, o);
		log_debug("bus routes: %.200s: route %zu: %s to %s%zu rooms: %zu sockets here", channel,
		          e.route + 1, e.event, e.all ? "every socket, " : "", e.nrooms, n);
		sio_out_free(o);
	}
	route_emit_clear(&e);
}

static int reply_str(const redisReply *r)
{
	return r->type == REDIS_REPLY_STRING && strlen(r->str) == (size_t)r->len;
}

static void on_message(redisReply *rep, void *ud)
{
	struct bus_routes *b = ud;
	if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
	    rep->element[0]->type != REDIS_REPLY_STRING)
		return;
	const char *kind = rep->element[0]->str;
	if (strcmp(kind, "subscribe") == 0 || strcmp(kind, "psubscribe") == 0) {
		if (rep->element[2]->type == REDIS_REPLY_INTEGER &&
		    (size_t)rep->element[2]->integer == b->nsubs && !b->listening) {
			const char *const *v;
			b->listening = 1;
			size_t nc = routes_subscriptions(b->r, 0, &v), np = routes_subscriptions(b->r, 1, &v);
			log_info("bus routes: listening on %zu channel%s and %zu pattern%s", nc,
			         nc == 1 ? "" : "s", np, np == 1 ? "" : "s");
		}
		return;
	}
	int pattern = strcmp(kind, "pmessage") == 0;
	if (!pattern && strcmp(kind, "message") != 0)
		return;
	if (rep->elements != (size_t)(3 + pattern))
		return;
	const redisReply *sub = rep->element[1], *chan = rep->element[1 + pattern];
	const redisReply *body = rep->element[2 + pattern];
	if (!reply_str(sub) || !reply_str(chan) || body->type != REDIS_REPLY_STRING)
		return;
	deliver(b, sub->str, pattern, chan->str, body->str, body->len);
}

static void on_state(int up, void *ud)
{
	struct bus_routes *b = ud;
	const char *const *v;
	b->listening = 0;
	if (!up)
		return;
	for (int pattern = 0; pattern < 2; pattern++) {
		size_t n = routes_subscriptions(b->r, pattern, &v);
		if (n && (pattern ? redis_psubscribe : redis_subscribe)(b->sub, on_message, b, (int)n,
		                                                      (const char **)v) < 0)
			log_warn("bus routes: cannot subscribe");
	}
}

struct bus_routes *bus_routes_start(struct event_base *base, const struct config *cfg,
                                    struct app *app, char *err, size_t errlen)
{
	const struct profile *p = app_profile(app);
	struct bus_routes *b = xcalloc(1, sizeof *b);
	const char *const *v;
	b->app = app;
	b->nsp = app_nsp(app);
	b->rooms = (struct route_rooms){ user_room, role_rooms, app };
	if (!p->nroutes)
		return b;
	if (!(b->r = routes_new(p, cfg, err, errlen))) {
		free(b);
		return NULL;
	}
	b->nsubs = routes_subscriptions(b->r, 0, &v) + routes_subscriptions(b->r, 1, &v);
	if (!cfg->redis_url || !*cfg->redis_url) {
		log_info("profile %s: %zu bus routes, not listening: no redis.url", p->name, p->nroutes);
		return b;
	}
	if (b->nsubs > REDIS_MAX_SUBSCRIBE) {
		snprintf(err, errlen, "profile %s: more than %d bus channels", p->name, REDIS_MAX_SUBSCRIBE);
		bus_routes_free(b);
		return NULL;
	}
	if (!(b->sub = redis_new(base, cfg->redis_url, "bus routes", err, errlen))) {
		bus_routes_free(b);
		return NULL;
	}
	redis_on_state(b->sub, on_state, b);
	return b;
}

void bus_routes_free(struct bus_routes *b)
{
	if (!b)
		return;
	redis_free(b->sub);
	routes_free(b->r);
	free(b);
}
