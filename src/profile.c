/* profile.c -- see profile.h.
 *
 * Parsing is strict: an unknown member, a wrong type or a bad template
 * expression stops the load with the file, the line and the reason. json-c
 * does not keep line numbers, so a semantic error is located by finding the
 * offending member's key in the text (the first occurrence after its
 * parent's), which is exact for the files we ship and close for any other. */
#define _GNU_SOURCE 1   /* memmem */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"
#include "tmpl.h"

#define MAX_PROFILE (1 << 20)

static const char *const action_names[] = {
	[A_NONE] = "none", [A_JOIN] = "join", [A_LEAVE] = "leave", [A_SEND] = "send",
	[A_TYPING] = "typing", [A_PRESENCE] = "presence", [A_HISTORY] = "history",
	[A_INIT] = "init", [A_RELAY] = "relay",
};

const char *action_name(enum action a)
{
	return action_names[a];
}

struct parser {
	const char *text;
	size_t len;
	const char *file;
	char *err;
	size_t errlen;
	struct profile *p;
};

static int line_of(const struct parser *ps, const char *key)
{
	char pat[300];
	int pl = snprintf(pat, sizeof pat, "\"%s\"", key);
	/* The text need not be NUL-terminated: search within its length. */
	const char *hit = pl > 0 && (size_t)pl < sizeof pat ? memmem(ps->text, ps->len, pat, (size_t)pl)
	                                                   : NULL;
	int line = 1;
	if (!hit)
		return 0;
	for (const char *c = ps->text; c < hit; c++)
		line += *c == '\n';
	return line;
}

static int fail(struct parser *ps, const char *key, const char *fmt, const char *a, const char *b)
{
	char msg[400];
	snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
	int line = key ? line_of(ps, key) : 0;
	if (line)
		snprintf(ps->err, ps->errlen, "%s:%d: %s", ps->file, line, msg);
	else
		snprintf(ps->err, ps->errlen, "%s: %s", ps->file, msg);
	return -1;
}

static int check_keys(struct parser *ps, json_object *o, const char *where,
                      const char *const *allowed)
{
	json_object_object_foreach(o, key, val) {
		(void)val;
		int ok = 0;
		for (int i = 0; allowed[i]; i++)
			if (strcmp(key, allowed[i]) == 0)
				ok = 1;
		if (!ok)
			return fail(ps, key, "%s: unknown member \"%s\"", where, key);
	}
	return 0;
}

static int get_type(struct parser *ps, json_object *o, const char *key, enum json_type t,
                    json_object **out, const char *where)
{
	static const char *const names[] = {
		[json_type_null] = "null", [json_type_boolean] = "a boolean",
		[json_type_double] = "a number", [json_type_int] = "a number",
		[json_type_object] = "an object", [json_type_array] = "an array",
		[json_type_string] = "a string",
	};
	char what[200];
	*out = NULL;
	if (!json_object_object_get_ex(o, key, out))
		return 0;
	if (json_object_is_type(*out, t))
		return 0;
	snprintf(what, sizeof what, "%s: \"%s\"", where, key);
	return fail(ps, key, "%s must be %s", what, names[t]);
}

static int string_list(struct parser *ps, json_object *o, const char *key, const char *where,
                       char ***out, size_t *n)
{
	json_object *a;
	*out = NULL;
	*n = 0;
	if (!json_object_object_get_ex(o, key, &a))
		return 0;
	if (json_object_is_type(a, json_type_string)) {
		*out = calloc(1, sizeof **out);
		if (!*out)
			return -1;
		(*out)[0] = strdup(json_object_get_string(a));
		*n = 1;
		return 0;
	}
	if (!json_object_is_type(a, json_type_array))
		return fail(ps, key, "%s: \"%s\" must be a string or an array of strings", where, key);
	size_t len = json_object_array_length(a);
	*out = calloc(len ? len : 1, sizeof **out);
	if (!*out)
		return -1;
	for (size_t i = 0; i < len; i++) {
		json_object *s = json_object_array_get_idx(a, i);
		if (!json_object_is_type(s, json_type_string))
			return fail(ps, key, "%s: \"%s\" must hold strings", where, key);
		(*out)[i] = strdup(json_object_get_string(s));
		(*n)++;
	}
	return 0;
}

static void free_list(char **l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(l[i]);
	free(l);
}

static int templ(struct parser *ps, json_object *t, const char *key, const char *where)
{
	char msg[256];
	if (t && tmpl_check(t, msg, sizeof msg) < 0)
		return fail(ps, key, "%s: %s", where, msg);
	return 0;
}

static int parse_emit(struct parser *ps, json_object *o, struct emit_spec *e, const char *where)
{
	static const char *const keys[] = { "event", "to", "room", "user", "exclude", "when",
	                                    "reply", "data", "comment", NULL };
	json_object *v;

	memset(e, 0, sizeof *e);
	if (!json_object_is_type(o, json_type_object))
		return fail(ps, where, "%s: an emit must be an object", where, NULL);
	if (check_keys(ps, o, where, keys) < 0)
		return -1;
	if (json_object_object_get_ex(o, "event", &e->event) &&
	    !json_object_is_type(e->event, json_type_string))
		return fail(ps, "event", "%s: \"event\" must be a string", where, NULL);
	if (json_object_object_get_ex(o, "reply", &v))
		e->reply = json_object_get_boolean(v);
	if (!e->event && !e->reply)
		return fail(ps, where, "%s: an emit needs \"event\" (or \"reply\": true)", where, NULL);
	e->ack_only = e->reply && !e->event;
	e->to = TO_SELF;
	if (json_object_object_get_ex(o, "to", &v)) {
		const char *to = json_object_get_string(v);
		if (strcmp(to, "self") == 0)
			e->to = TO_SELF;
		else if (strcmp(to, "room") == 0)
			e->to = TO_ROOM;
		else if (strcmp(to, "user") == 0)
			e->to = TO_USER;
		else if (strcmp(to, "all") == 0)
			e->to = TO_ALL;
		else
			return fail(ps, "to", "%s: \"to\" must be self, room, user or all, not \"%s\"",
			            where, to);
	}
	json_object_object_get_ex(o, "room", &e->room);
	json_object_object_get_ex(o, "user", &e->user);
	if (e->to == TO_USER && !e->user)
		return fail(ps, "to", "%s: \"to\": \"user\" needs \"user\"", where, NULL);
	if (json_object_object_get_ex(o, "exclude", &v)) {
		const char *x = json_object_get_string(v);
		if (strcmp(x, "self") == 0)
			e->exclude = EXCLUDE_SELF;
		else if (strcmp(x, "sender") == 0)
			e->exclude = EXCLUDE_SENDER;
		else if (strcmp(x, "none") == 0)
			e->exclude = EXCLUDE_NONE;
		else
			return fail(ps, "exclude", "%s: \"exclude\" must be self, sender or none",
			            where, NULL);
	}
	if (json_object_object_get_ex(o, "when", &v)) {
		const char *w = json_object_get_string(v);
		e->when_not = w[0] == '!';
		e->when = strdup(w + e->when_not);
	}
	json_object_object_get_ex(o, "data", &e->data);
	if (templ(ps, e->event, "event", where) < 0 || templ(ps, e->room, "room", where) < 0 ||
	    templ(ps, e->user, "user", where) < 0 || templ(ps, e->data, "data", where) < 0)
		return -1;
	return 0;
}

static int parse_emits(struct parser *ps, json_object *o, const char *key,
                       struct emit_spec **out, size_t *n, const char *where)
{
	json_object *a;
	*out = NULL;
	*n = 0;
	if (!json_object_object_get_ex(o, key, &a))
		return 0;
	if (!json_object_is_type(a, json_type_array))
		return fail(ps, key, "%s: \"%s\" must be an array of emits", where, key);
	size_t len = json_object_array_length(a);
	*out = calloc(len ? len : 1, sizeof **out);
	if (!*out)
		return -1;
	for (size_t i = 0; i < len; i++) {
		(*n)++;                  /* counted first: a half-parsed emit is freed too */
		if (parse_emit(ps, json_object_array_get_idx(a, i), &(*out)[i], where) < 0)
			return -1;
	}
	return 0;
}

static int parse_event(struct parser *ps, const char *name, json_object *o, struct event_spec *ev)
{
	static const char *const keys[] = { "action", "args", "require", "self", "errors",
	                                    "on_disconnect", "emit", "expired", "comment", NULL };
	char where[200];
	json_object *v;

	snprintf(where, sizeof where, "event \"%s\"", name);
	ev->name = strdup(name);
	if (!json_object_is_type(o, json_type_object))
		return fail(ps, name, "%s must be an object", where, NULL);
	if (check_keys(ps, o, where, keys) < 0)
		return -1;
	ev->action = A_NONE;
	if (json_object_object_get_ex(o, "action", &v)) {
		const char *a = json_object_get_string(v);
		size_t i;
		for (i = 0; i < sizeof action_names / sizeof action_names[0]; i++)
			if (strcmp(a, action_names[i]) == 0)
				break;
		if (i == sizeof action_names / sizeof action_names[0])
			return fail(ps, "action", "%s: unknown action \"%s\" (see aeolus-profile(5))",
			            where, a);
		ev->action = (enum action)i;
	}
	if (get_type(ps, o, "args", json_type_object, &ev->args, where) < 0 ||
	    templ(ps, ev->args, "args", where) < 0 ||
	    get_type(ps, o, "errors", json_type_object, &ev->errors, where) < 0 ||
	    string_list(ps, o, "require", where, &ev->require, &ev->nrequire) < 0 ||
	    string_list(ps, o, "self", where, &ev->self, &ev->nself) < 0 ||
	    parse_emits(ps, o, "emit", &ev->emits, &ev->nemits, where) < 0 ||
	    parse_emits(ps, o, "expired", &ev->expired, &ev->nexpired, where) < 0)
		return -1;
	if (json_object_object_get_ex(o, "on_disconnect", &v))
		ev->on_disconnect = strdup(json_object_get_string(v));
	return 0;
}

static void free_event(struct event_spec *ev)
{
	free(ev->name);
	free_list(ev->require, ev->nrequire);
	free_list(ev->self, ev->nself);
	free(ev->on_disconnect);
	for (size_t i = 0; i < ev->nemits; i++)
		free(ev->emits[i].when);
	for (size_t i = 0; i < ev->nexpired; i++)
		free(ev->expired[i].when);
	free(ev->emits);
	free(ev->expired);
}

static int parse_auth(struct parser *ps, json_object *o)
{
	static const char *const keys[] = { "token", "user_id", "name", "role", "rooms",
	                                    "anonymous", "comment", NULL };
	struct profile *p = ps->p;
	json_object *v;
	if (!o)
		return 0;
	if (check_keys(ps, o, "auth", keys) < 0 ||
	    string_list(ps, o, "token", "auth", &p->token_sources, &p->ntoken_sources) < 0 ||
	    string_list(ps, o, "user_id", "auth", &p->claim_user_id, &p->nclaim_user_id) < 0 ||
	    string_list(ps, o, "name", "auth", &p->claim_name, &p->nclaim_name) < 0 ||
	    string_list(ps, o, "role", "auth", &p->claim_role, &p->nclaim_role) < 0 ||
	    string_list(ps, o, "rooms", "auth", &p->claim_rooms, &p->nclaim_rooms) < 0)
		return -1;
	for (size_t i = 0; i < p->ntoken_sources; i++) {
		const char *s = p->token_sources[i];
		if (strncmp(s, "auth.", 5) != 0 && strncmp(s, "query.", 6) != 0 &&
		    strcmp(s, "header") != 0)
			return fail(ps, "token", "auth: token source \"%s\" must be auth.FIELD, "
			            "query.PARAM or header", s, NULL);
	}
	if (json_object_object_get_ex(o, "anonymous", &v))
		p->anonymous = json_object_get_boolean(v);
	return 0;
}

static int parse_rooms(struct parser *ps, json_object *o)
{
	static const char *const keys[] = { "personal", "roles", "from_token", "comment", NULL };
	struct profile *p = ps->p;
	json_object *v;
	if (!o)
		return 0;
	if (check_keys(ps, o, "rooms", keys) < 0)
		return -1;
	json_object_object_get_ex(o, "personal", &p->personal_room);
	if (templ(ps, p->personal_room, "personal", "rooms") < 0 ||
	    get_type(ps, o, "roles", json_type_object, &p->role_rooms, "rooms") < 0)
		return -1;
	if (json_object_object_get_ex(o, "from_token", &v))
		p->rooms_from_token = json_object_get_boolean(v);
	return 0;
}

static int parse_hook(struct parser *ps, json_object *on, const char *name,
                      struct event_spec **out)
{
	json_object *o;
	char full[64];
	*out = NULL;
	if (!on || !json_object_object_get_ex(on, name, &o))
		return 0;
	*out = calloc(1, sizeof **out);
	if (!*out)
		return -1;
	snprintf(full, sizeof full, "$%s", name);
	return parse_event(ps, full, o, *out);
}

static int parse_root(struct parser *ps, json_object *root)
{
	static const char *const keys[] = { "name", "description", "path", "auth", "rooms", "ack",
	                                    "error", "on", "events", "api", "bus", "comment", NULL };
	struct profile *p = ps->p;
	json_object *v, *o;

	if (!json_object_is_type(root, json_type_object))
		return fail(ps, NULL, "a profile is a JSON object", NULL, NULL);
	if (check_keys(ps, root, "profile", keys) < 0)
		return -1;
	if (!json_object_object_get_ex(root, "name", &v) || !json_object_is_type(v, json_type_string))
		return fail(ps, "name", "\"name\" (a string) is required", NULL, NULL);
	p->name = strdup(json_object_get_string(v));
	if (json_object_object_get_ex(root, "path", &v))
		p->path = strdup(json_object_get_string(v));
	if (get_type(ps, root, "auth", json_type_object, &o, "profile") < 0 || parse_auth(ps, o) < 0)
		return -1;
	if (get_type(ps, root, "rooms", json_type_object, &o, "profile") < 0 || parse_rooms(ps, o) < 0)
		return -1;
	if (get_type(ps, root, "ack", json_type_object, &o, "profile") < 0)
		return -1;
	if (o) {
		static const char *const ack_keys[] = { "ok", "error", NULL };
		if (check_keys(ps, o, "ack", ack_keys) < 0)
			return -1;
		json_object_object_get_ex(o, "ok", &p->ack_ok);
		json_object_object_get_ex(o, "error", &p->ack_error);
		if (templ(ps, p->ack_ok, "ok", "ack") < 0 || templ(ps, p->ack_error, "error", "ack") < 0)
			return -1;
	}
	if (json_object_object_get_ex(root, "error", &o)) {
		if (parse_emit(ps, o, &p->error, "error") < 0)
			return -1;
	} else {
		p->error.event = NULL;   /* no error event: refusals are silent without an ack */
	}
	if (get_type(ps, root, "on", json_type_object, &o, "profile") < 0)
		return -1;
	if (o) {
		static const char *const hooks[] = { "connect", "disconnect", "online", "offline",
		                                     NULL };
		if (check_keys(ps, o, "on", hooks) < 0 || parse_hook(ps, o, "connect", &p->on_connect) < 0 ||
		    parse_hook(ps, o, "disconnect", &p->on_disconnect) < 0 ||
		    parse_hook(ps, o, "online", &p->on_online) < 0 ||
		    parse_hook(ps, o, "offline", &p->on_offline) < 0)
			return -1;
	}
	if (get_type(ps, root, "events", json_type_object, &o, "profile") < 0)
		return -1;
	if (o) {
		size_t n = (size_t)json_object_object_length(o);
		p->events = calloc(n ? n : 1, sizeof *p->events);
		if (!p->events)
			return -1;
		json_object_object_foreach(o, name, ev) {
			if (parse_event(ps, name, ev, &p->events[p->nevents++]) < 0)
				return -1;
		}
	}
	if (get_type(ps, root, "api", json_type_object, &o, "profile") < 0)
		return -1;
	if (o) {
		size_t n = (size_t)json_object_object_length(o);
		p->api_events = calloc(n ? n : 1, sizeof *p->api_events);
		if (!p->api_events)
			return -1;
		json_object_object_foreach(o, name, ev) {
			if (parse_event(ps, name, ev, &p->api_events[p->napi_events++]) < 0)
				return -1;
			if (profile_event(p, name))
				return fail(ps, name, "api: \"%s\" is a client event too", name, NULL);
		}
	}
	for (size_t i = 0; i < p->nevents; i++) {
		const char *d = p->events[i].on_disconnect;
		if (d && !profile_event(p, d))
			return fail(ps, "on_disconnect", "event \"%s\": on_disconnect names no event "
			            "(\"%s\")", p->events[i].name, d);
	}
	if (get_type(ps, root, "bus", json_type_array, &p->bus, "profile") < 0)
		return -1;
	return 0;
}

struct profile *profile_parse(const char *text, size_t len, const char *file,
                              char *err, size_t errlen)
{
	struct parser ps = { text, len, file, err, errlen, NULL };
	struct json_tokener *tok;
	json_object *root;

	if (len > MAX_PROFILE) {
		snprintf(err, errlen, "%s: larger than %d bytes", file, MAX_PROFILE);
		return NULL;
	}
	tok = json_tokener_new_ex(64);
	if (!tok)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, text, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	while (root && end < len && (text[end] == ' ' || text[end] == '\n' || text[end] == '\t' ||
	                             text[end] == '\r'))
		end++;
	if (!root || jerr != json_tokener_success || end != len) {
		int line = 1;
		for (size_t i = 0; i < end && i < len; i++)
			line += text[i] == '\n';
		snprintf(err, errlen, "%s:%d: %s", file, line,
		         !root && jerr != json_tokener_success ? json_tokener_error_desc(jerr)
		                                               : "unexpected text after the JSON object");
		json_object_put(root);
		return NULL;
	}
	ps.p = calloc(1, sizeof *ps.p);
	if (!ps.p) {
		json_object_put(root);
		return NULL;
	}
	ps.p->root = root;
	ps.p->file = strdup(file);
	if (parse_root(&ps, root) < 0) {
		profile_free(ps.p);
		return NULL;
	}
	return ps.p;
}

struct profile *profile_load(const char *name, const char *dir, char *err, size_t errlen)
{
	char path[1024];
	size_t nl = strlen(name);
	if (strchr(name, '/') || (nl > 5 && strcmp(name + nl - 5, ".json") == 0))
		snprintf(path, sizeof path, "%s", name);
	else
		snprintf(path, sizeof path, "%s/%s.json", dir, name);
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "profile %s: %s: %s", name, path, strerror(errno));
		return NULL;
	}
	char *text = malloc(MAX_PROFILE + 1);
	size_t len = text ? fread(text, 1, MAX_PROFILE + 1, f) : 0;
	fclose(f);
	if (!text) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	text[len > MAX_PROFILE ? MAX_PROFILE : len] = '\0';
	struct profile *p = profile_parse(text, len, path, err, errlen);
	free(text);
	return p;
}

static void free_hook(struct event_spec *ev)
{
	if (ev) {
		free_event(ev);
		free(ev);
	}
}

void profile_free(struct profile *p)
{
	if (!p)
		return;
	free(p->name);
	free(p->file);
	free(p->path);
	free_list(p->token_sources, p->ntoken_sources);
	free_list(p->claim_user_id, p->nclaim_user_id);
	free_list(p->claim_name, p->nclaim_name);
	free_list(p->claim_role, p->nclaim_role);
	free_list(p->claim_rooms, p->nclaim_rooms);
	free(p->error.when);
	for (size_t i = 0; i < p->nevents; i++)
		free_event(&p->events[i]);
	free(p->events);
	for (size_t i = 0; i < p->napi_events; i++)
		free_event(&p->api_events[i]);
	free(p->api_events);
	free_hook(p->on_connect);
	free_hook(p->on_disconnect);
	free_hook(p->on_online);
	free_hook(p->on_offline);
	json_object_put(p->root);
	free(p);
}

const struct event_spec *profile_event(const struct profile *p, const char *name)
{
	for (size_t i = 0; i < p->nevents; i++)
		if (strcmp(p->events[i].name, name) == 0)
			return &p->events[i];
	return NULL;
}

const struct event_spec *profile_api_event(const struct profile *p, const char *name)
{
	for (size_t i = 0; i < p->napi_events; i++)
		if (strcmp(p->api_events[i].name, name) == 0)
			return &p->api_events[i];
	return NULL;
}
