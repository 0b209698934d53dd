/* profile.c -- see profile.h.
 *
 * Parsing is strict: an unknown member, a wrong type or a bad template
 * expression stops the load with the file, the line and the reason. json-c
 * does not keep line numbers, so a semantic error is located by finding the
 * offending member's key in the text: its first occurrence within the event
 * (or the member history, stats) being parsed, else in the whole text; exact
 * for the files we ship and close for any other. */
#define _GNU_SOURCE 1   /* memmem */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
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
	size_t from;                 /* where the member being parsed starts (0: unknown) */
};

static int line_of(const struct parser *ps, const char *key)
{
	char pat[300];
	int pl = snprintf(pat, sizeof pat, "\"%s\"", key);
	const char *hit = NULL;
	/* The text need not be NUL-terminated: search within its length,
	 * first in the member being parsed, then from the start. */
	if (pl > 0 && (size_t)pl < sizeof pat) {
		if (ps->from && ps->from < ps->len)
			hit = memmem(ps->text + ps->from, ps->len - ps->from, pat, (size_t)pl);
		if (!hit)
			hit = memmem(ps->text, ps->len, pat, (size_t)pl);
	}
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

/* --- where in the text: the elements of the "bus" array ---
 *
 * Route members repeat from one route to the next, so an error in a route
 * is located within that route's text: the span of the i-th element of the
 * top-level array member "bus", found by a small scan of the JSON text
 * (strings and nesting only; the text has already parsed). */

struct span {
	size_t start, end;           /* [start, end) in ps->text; end 0: unknown */
};

static size_t skip_ws(const struct parser *ps, size_t i)
{
	while (i < ps->len && (ps->text[i] == ' ' || ps->text[i] == '\t' || ps->text[i] == '\n' ||
	                       ps->text[i] == '\r'))
		i++;
	return i;
}

/* Where the member key of an object is written: the object is the first
 * one that opens at or after from, key one of its own members (not of an
 * object inside it). Returns the offset of key's opening quote, or 0 when
 * it is not found (an offset no member can have). */
static size_t member_of(const struct parser *ps, size_t from, const char *key)
{
	size_t klen = strlen(key), i = from;
	int depth = 0;
	while (i < ps->len && ps->text[i] != '{')
		i++;
	for (; i < ps->len; i++) {
		char c = ps->text[i];
		if (c == '"') {
			size_t start = i;
			for (i++; i < ps->len && ps->text[i] != '"'; i++)
				if (ps->text[i] == '\\')
					i++;
			if (depth == 1 && i < ps->len && i - start - 1 == klen &&
			    memcmp(ps->text + start + 1, key, klen) == 0) {
				size_t j = skip_ws(ps, i + 1);
				if (j < ps->len && ps->text[j] == ':')
					return start;
			}
		} else if (c == '{' || c == '[') {
			depth++;
		} else if ((c == '}' || c == ']') && --depth == 0) {
			break;
		}
	}
	return 0;
}

/* The member path (a top-level member, then one of its own, NULL: none)
 * is being parsed: errors are located within it first. */
static void scope(struct parser *ps, const char *top, const char *name)
{
	size_t at = member_of(ps, 0, top);
	if (at && name)
		at = member_of(ps, at, name);
	ps->from = at;
}

static void element_span(const struct parser *ps, const char *key, size_t idx, struct span *sp)
{
	char pat[64];
	int pl = snprintf(pat, sizeof pat, "\"%s\"", key);
	const char *from = ps->text, *end = ps->text + ps->len, *hit;
	size_t i;
	sp->start = sp->end = 0;
	for (;;) {                   /* the key, followed by ':' and '[' */
		hit = memmem(from, (size_t)(end - from), pat, (size_t)pl);
		if (!hit)
			return;
		i = skip_ws(ps, (size_t)(hit - ps->text) + (size_t)pl);
		if (i < ps->len && ps->text[i] == ':') {
			i = skip_ws(ps, i + 1);
			if (i < ps->len && ps->text[i] == '[')
				break;
		}
		from = hit + pl;
	}
	i++;
	for (size_t n = 0;; n++) {
		i = skip_ws(ps, i);
		size_t start = i;
		int depth = 0;
		for (; i < ps->len; i++) {
			char c = ps->text[i];
			if (c == '"') {
				for (i++; i < ps->len && ps->text[i] != '"'; i++)
					if (ps->text[i] == '\\')
						i++;
			} else if (c == '{' || c == '[') {
				depth++;
			} else if ((c == '}' || c == ']') && depth > 0) {
				depth--;
			} else if ((c == ',' || c == ']') && depth == 0) {
				break;
			}
		}
		if (i >= ps->len)
			return;
		if (n == idx) {
			sp->start = start;
			sp->end = i;
			return;
		}
		if (ps->text[i] == ']')
			return;
		i++;
	}
}

/* As fail(), the line being that of key's first occurrence in sp (or of
 * sp's start). */
static int fail_in(struct parser *ps, const struct span *sp, const char *key, const char *fmt,
                   const char *a, const char *b)
{
	char msg[400], pat[300];
	int line = 1;
	if (!sp->end)
		return fail(ps, key, fmt, a, b);
	snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
	int pl = key ? snprintf(pat, sizeof pat, "\"%s\"", key) : 0;
	const char *at = pl > 0 && (size_t)pl < sizeof pat
	                 ? memmem(ps->text + sp->start, sp->end - sp->start, pat, (size_t)pl) : NULL;
	if (!at)
		at = ps->text + sp->start;
	for (const char *c = ps->text; c < at; c++)
		line += *c == '\n';
	snprintf(ps->err, ps->errlen, "%s:%d: %s", ps->file, line, msg);
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

static int valid_path(const char *s);

static int parse_emit(struct parser *ps, json_object *o, struct emit_spec *e, const char *where)
{
	static const char *const keys[] = { "event", "to", "room", "user", "exclude", "when",
	                                    "reply", "each", "data", "comment", NULL };
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
	if (json_object_object_get_ex(o, "each", &v)) {
		if (!json_object_is_type(v, json_type_string) || !valid_path(json_object_get_string(v)))
			return fail(ps, "each", "%s: \"each\" must be a context path", where, NULL);
		if (e->reply)
			return fail(ps, "each", "%s: \"each\" cannot go with \"reply\"", where, NULL);
		e->each = strdup(json_object_get_string(v));
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

/* A "require" entry: a field name, or alternatives "a|b" (one of them is
 * enough); no alternative may be empty. */
static int valid_require(const char *r)
{
	if (!*r)
		return 0;
	for (const char *c = r; *c; c++)
		if (*c == '|' && (c == r || c[1] == '|' || c[1] == '\0'))
			return 0;
	return 1;
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
	for (size_t i = 0; i < ev->nrequire; i++)
		if (!valid_require(ev->require[i]))
			return fail(ps, "require", "%s: \"require\": \"%s\" must be field names "
			            "separated by |", where, ev->require[i]);
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
	for (size_t i = 0; i < ev->nemits; i++) {
		free(ev->emits[i].when);
		free(ev->emits[i].each);
	}
	for (size_t i = 0; i < ev->nexpired; i++) {
		free(ev->expired[i].when);
		free(ev->expired[i].each);
	}
	free(ev->emits);
	free(ev->expired);
}

static int parse_auth(struct parser *ps, json_object *o)
{
	static const char *const keys[] = { "token", "user_id", "name", "role", "rooms",
	                                    "default_role", "jwt_key", "anonymous", "comment",
	                                    NULL };
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
	if (get_type(ps, o, "default_role", json_type_string, &v, "auth") < 0)
		return -1;
	if (v && json_object_get_string_len(v) > 0)
		p->default_role = strdup(json_object_get_string(v));
	if (get_type(ps, o, "jwt_key", json_type_string, &v, "auth") < 0)
		return -1;
	if (v && strcmp(json_object_get_string(v), "algorithm") == 0)
		p->jwt_key = JWT_KEY_ALGORITHM;
	else if (v && strcmp(json_object_get_string(v), "public") != 0)
		return fail(ps, "jwt_key", "auth: \"jwt_key\" must be \"public\" or \"algorithm\"",
		            NULL, NULL);
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

/* "history": {"key": template, "size": n}. */
static int parse_history(struct parser *ps, json_object *o)
{
	static const char *const keys[] = { "key", "size", "comment", NULL };
	struct profile *p = ps->p;
	json_object *v;
	if (!o)
		return 0;
	if (check_keys(ps, o, "history", keys) < 0)
		return -1;
	if (!json_object_object_get_ex(o, "key", &p->history_key) ||
	    !json_object_is_type(p->history_key, json_type_string) ||
	    json_object_get_string_len(p->history_key) == 0)
		return fail(ps, p->history_key ? "key" : "history",
		            "history: \"key\" (a template of a list's key) is required", NULL, NULL);
	if (templ(ps, p->history_key, "key", "history") < 0 ||
	    get_type(ps, o, "size", json_type_int, &v, "history") < 0)
		return -1;
	if (v) {
		int64_t n = json_object_get_int64(v);
		if (n < 1 || n > 100000)
			return fail(ps, "size", "history: \"size\" must be from 1 to 100000", NULL, NULL);
		p->history_size = (unsigned)n;
	}
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
	scope(ps, "on", name);
	int rc = parse_event(ps, full, o, *out);
	ps->from = 0;
	return rc;
}

/* --- bus routes --- */

#define MAX_ROUTES 1000
#define MAX_TESTS 64                 /* tests in one condition */
#define MAX_DEPTH 4                  /* "first" within "first" */
#define MAX_PATH 256

static int valid_path(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > MAX_PATH || s[0] == '.' || s[n - 1] == '.' || strstr(s, ".."))
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '_' || *s == '-' || *s == '$' || *s == '.'))
			return 0;
	return 1;
}

static int check_keys_in(struct parser *ps, const struct span *sp, json_object *o,
                         const char *where, const char *const *allowed)
{
	json_object_object_foreach(o, key, val) {
		(void)val;
		int ok = 0;
		for (int i = 0; allowed[i]; i++)
			ok |= strcmp(key, allowed[i]) == 0;
		if (!ok)
			return fail_in(ps, sp, key, "%s: unknown member \"%s\"", where, key);
	}
	return 0;
}

static int templ_in(struct parser *ps, const struct span *sp, json_object *t, const char *key,
                    const char *where)
{
	char msg[256];
	if (t && tmpl_check(t, msg, sizeof msg) < 0)
		return fail_in(ps, sp, key, "%s: %s", where, msg);
	return 0;
}

/* A test of path; with compare, the value must be (or, negated, must not
 * be) one of values: an array, or one value (JSON null: missing or null). */
static int add_test(struct parser *ps, const struct span *sp, struct bus_cond *c, const char *path,
                    int compare, json_object *values, const char *where)
{
	if (c->n == MAX_TESTS)
		return fail_in(ps, sp, "when", "%s: \"when\" has too many tests", where, NULL);
	int neg = path[0] == '!';
	if (!valid_path(path + neg))
		return fail_in(ps, sp, "when", "%s: \"when\": \"%s\" is not a context path", where, path);
	struct bus_test *t = &c->v[c->n++];
	t->negate = neg;
	t->path = strdup(path + neg);
	if (compare && json_object_is_type(values, json_type_array)) {
		t->values = json_object_get(values);
	} else if (compare) {
		t->values = json_object_new_array();
		json_object_array_add(t->values, json_object_get(values));
	}
	return t->path ? 0 : -1;
}

/* One element of "when": "path", "!path", or {"path": value or [values]}. */
static int parse_test(struct parser *ps, const struct span *sp, json_object *v, struct bus_cond *c,
                      const char *where)
{
	if (json_object_is_type(v, json_type_string))
		return add_test(ps, sp, c, json_object_get_string(v), 0, NULL, where);
	if (!json_object_is_type(v, json_type_object))
		return fail_in(ps, sp, "when", "%s: \"when\" must be a path, an object of values, "
		               "or an array of those", where, NULL);
	json_object_object_foreach(v, path, values)
		if (add_test(ps, sp, c, path, 1, values, where) < 0)
			return -1;
	return 0;
}

static int parse_cond(struct parser *ps, const struct span *sp, json_object *o, struct bus_cond *c,
                      const char *where)
{
	json_object *w;
	memset(c, 0, sizeof *c);
	if (!json_object_object_get_ex(o, "when", &w))
		return 0;
	c->v = calloc(MAX_TESTS, sizeof *c->v);
	if (!c->v)
		return -1;
	if (!json_object_is_type(w, json_type_array))
		return parse_test(ps, sp, w, c, where);
	for (size_t i = 0; i < json_object_array_length(w); i++)
		if (parse_test(ps, sp, json_object_array_get_idx(w, i), c, where) < 0)
			return -1;
	return 0;
}

static void free_cond(struct bus_cond *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].path);
		json_object_put(c->v[i].values);
	}
	free(c->v);
}

static void free_targets(struct bus_target *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(t[i].each);
		free_cond(&t[i].when);
		free_targets(t[i].first, t[i].nfirst);
	}
	free(t);
}

static int parse_targets(struct parser *ps, const struct span *sp, json_object *a, const char *key,
                         struct bus_target **out, size_t *n, const char *where, int depth,
                         int except);

static int parse_target(struct parser *ps, const struct span *sp, json_object *o,
                        struct bus_target *t, const char *where, int depth, int except)
{
	static const char *const keys[] = { "room", "user", "role", "all", "first", "each", "when",
	                                    "comment", NULL };
	static const char *const kinds[] = { [BUS_ROOM] = "room", [BUS_USER] = "user",
	                                     [BUS_ROLE] = "role", [BUS_ALL] = "all",
	                                     [BUS_FIRST] = "first" };
	json_object *v;
	int found = 0;

	if (!json_object_is_type(o, json_type_object))
		return fail_in(ps, sp, NULL, "%s: a target must be an object", where, NULL);
	if (check_keys_in(ps, sp, o, where, keys) < 0 || parse_cond(ps, sp, o, &t->when, where) < 0)
		return -1;
	for (int k = BUS_ROOM; k <= BUS_FIRST; k++)
		if (json_object_object_get_ex(o, kinds[k], &v)) {
			t->kind = (enum bus_kind)k;
			found++;
		}
	if (found != 1)
		return fail_in(ps, sp, NULL, "%s: a target needs one of room, user, role, all or first",
		               where, NULL);
	json_object_object_get_ex(o, kinds[t->kind], &v);
	switch (t->kind) {
	case BUS_ROOM:
	case BUS_USER:
	case BUS_ROLE:
		t->name = v;
		if (templ_in(ps, sp, v, kinds[t->kind], where) < 0)
			return -1;
		break;
	case BUS_ALL:
		if (!json_object_is_type(v, json_type_boolean) || !json_object_get_boolean(v))
			return fail_in(ps, sp, "all", "%s: \"all\" must be true", where, NULL);
		if (except)
			return fail_in(ps, sp, "except", "%s: \"except\" cannot leave out everyone", where,
			               NULL);
		break;
	case BUS_FIRST:
		if (depth >= MAX_DEPTH)
			return fail_in(ps, sp, "first", "%s: \"first\" nested too deep", where, NULL);
		if (parse_targets(ps, sp, v, "first", &t->first, &t->nfirst, where, depth + 1, except) < 0)
			return -1;
		break;
	}
	if (json_object_object_get_ex(o, "each", &v)) {
		if (t->kind == BUS_ALL || t->kind == BUS_FIRST)
			return fail_in(ps, sp, "each", "%s: \"each\" goes with room, user or role", where, NULL);
		if (!json_object_is_type(v, json_type_string) || !valid_path(json_object_get_string(v)))
			return fail_in(ps, sp, "each", "%s: \"each\" must be a context path", where, NULL);
		t->each = strdup(json_object_get_string(v));
	}
	return 0;
}

static int parse_targets(struct parser *ps, const struct span *sp, json_object *a, const char *key,
                         struct bus_target **out, size_t *n, const char *where, int depth,
                         int except)
{
	*out = NULL;
	*n = 0;
	if (!json_object_is_type(a, json_type_array) || json_object_array_length(a) == 0)
		return fail_in(ps, sp, key, "%s: \"%s\" must be a non-empty array of targets", where, key);
	size_t len = json_object_array_length(a);
	*out = calloc(len, sizeof **out);
	if (!*out)
		return -1;
	for (size_t i = 0; i < len; i++) {
		(*n)++;                  /* counted first: a half-parsed target is freed too */
		if (parse_target(ps, sp, json_object_array_get_idx(a, i), &(*out)[i], where, depth,
		                 except) < 0)
			return -1;
	}
	return 0;
}

static int parse_route(struct parser *ps, json_object *o, size_t idx, struct bus_route *r)
{
	static const char *const keys[] = { "channel", "when", "event", "data", "defaults", "to",
	                                    "except", "comment", NULL };
	char where[64];
	struct span sp;
	json_object *v;

	snprintf(where, sizeof where, "bus route %zu", idx + 1);
	element_span(ps, "bus", idx, &sp);
	if (!json_object_is_type(o, json_type_object))
		return fail_in(ps, &sp, NULL, "%s must be an object", where, NULL);
	if (check_keys_in(ps, &sp, o, where, keys) < 0)
		return -1;
	if (!json_object_object_get_ex(o, "channel", &r->channel) ||
	    !json_object_is_type(r->channel, json_type_string) ||
	    json_object_get_string_len(r->channel) == 0)
		return fail_in(ps, &sp, "channel", "%s: \"channel\" (a channel name or pattern) is required",
		               where, NULL);
	if (!json_object_object_get_ex(o, "event", &r->event) ||
	    !json_object_is_type(r->event, json_type_string))
		return fail_in(ps, &sp, "event", "%s: \"event\" (a string) is required", where, NULL);
	json_object_object_get_ex(o, "data", &r->data);
	if (json_object_object_get_ex(o, "defaults", &r->defaults) &&
	    !json_object_is_type(r->defaults, json_type_object))
		return fail_in(ps, &sp, "defaults", "%s: \"defaults\" must be an object", where, NULL);
	if (templ_in(ps, &sp, r->channel, "channel", where) < 0 ||
	    templ_in(ps, &sp, r->event, "event", where) < 0 ||
	    templ_in(ps, &sp, r->data, "data", where) < 0 ||
	    templ_in(ps, &sp, r->defaults, "defaults", where) < 0 ||
	    parse_cond(ps, &sp, o, &r->when, where) < 0)
		return -1;
	if (!json_object_object_get_ex(o, "to", &v))
		return fail_in(ps, &sp, NULL, "%s: \"to\" (an array of targets) is required", where, NULL);
	if (parse_targets(ps, &sp, v, "to", &r->to, &r->nto, where, 0, 0) < 0)
		return -1;
	if (json_object_object_get_ex(o, "except", &v) &&
	    parse_targets(ps, &sp, v, "except", &r->except, &r->nexcept, where, 0, 1) < 0)
		return -1;
	return 0;
}

static int parse_routes(struct parser *ps, json_object *a)
{
	struct profile *p = ps->p;
	if (!a)
		return 0;
	size_t len = json_object_array_length(a);
	if (len > MAX_ROUTES)
		return fail(ps, "bus", "bus: more than 1000 routes", NULL, NULL);
	p->routes = calloc(len ? len : 1, sizeof *p->routes);
	if (!p->routes)
		return -1;
	for (size_t i = 0; i < len; i++) {
		p->nroutes++;            /* counted first: a half-parsed route is freed too */
		if (parse_route(ps, json_object_array_get_idx(a, i), i, &p->routes[i]) < 0)
			return -1;
	}
	return 0;
}

static void free_routes(struct profile *p)
{
	for (size_t i = 0; i < p->nroutes; i++) {
		struct bus_route *r = &p->routes[i];
		free_cond(&r->when);
		free_targets(r->to, r->nto);
		free_targets(r->except, r->nexcept);
	}
	free(p->routes);
}

/* "http": {"/": {...}, "/health": {...}, "/stats": {...}}, object templates. */
static int parse_http(struct parser *ps, json_object *o)
{
	static const char *const paths[] = { "/", "/health", "/stats", "comment", NULL };
	if (!o)
		return 0;
	if (check_keys(ps, o, "http", paths) < 0)
		return -1;
	json_object_object_foreach(o, path, t) {
		if (strcmp(path, "comment") == 0)
			continue;
		if (!json_object_is_type(t, json_type_object))
			return fail(ps, path, "http: \"%s\" must be an object (of templates)", path, NULL);
		if (templ(ps, t, path, "http") < 0)
			return -1;
	}
	ps->p->http = o;
	return 0;
}

/* "stats": {"roles": [...]}: the roles counted across the cluster. */
static int parse_stats(struct parser *ps, json_object *o)
{
	static const char *const keys[] = { "roles", "comment", NULL };
	struct profile *p = ps->p;
	if (!o)
		return 0;
	if (check_keys(ps, o, "stats", keys) < 0 ||
	    string_list(ps, o, "roles", "stats", &p->stats_roles, &p->nstats_roles) < 0)
		return -1;
	if (p->nstats_roles > PROFILE_STATS_ROLES)
		return fail(ps, "roles", "stats: \"roles\" names more than 16 roles", NULL, NULL);
	for (size_t i = 0; i < p->nstats_roles; i++) {
		size_t n = strlen(p->stats_roles[i]);
		if (n == 0 || n > 128)
			return fail(ps, "roles", "stats: a role in \"roles\" must have 1 to 128 bytes",
			            NULL, NULL);
		for (size_t k = 0; k < i; k++)
			if (strcmp(p->stats_roles[k], p->stats_roles[i]) == 0)
				return fail(ps, "roles", "stats: \"roles\" names \"%s\" twice",
				            p->stats_roles[i], NULL);
	}
	return 0;
}

/* A configuration value as the file would write it. */
static const char *config_text(json_object *v)
{
	if (json_object_is_type(v, json_type_boolean))
		return json_object_get_boolean(v) ? "yes" : "no";
	return json_object_get_string(v);
}

/* "config": {"section.key": string, integer or boolean}: each a key of
 * aeolus.conf(5) whose value it takes (checked on a scratch configuration),
 * but not the keys that choose the profile. */
static int parse_config(struct parser *ps, json_object *o)
{
	char why[400];
	if (!o)
		return 0;
	json_object_object_foreach(o, key, v) {
		if (!config_key_known(key) && strcmp(key, "comment") != 0)
			return fail(ps, key, "config: \"%s\" is not a configuration key (see aeolus.conf(5))",
			            key, NULL);
		if (strcmp(key, "comment") == 0)
			continue;
		if (strcmp(key, "server.profile") == 0 || strcmp(key, "server.profile_dir") == 0)
			return fail(ps, key, "config: \"%s\" cannot be set by a profile", key, NULL);
		if (!json_object_is_type(v, json_type_string) && !json_object_is_type(v, json_type_int) &&
		    !json_object_is_type(v, json_type_boolean))
			return fail(ps, key, "config: \"%s\" must be a string, an integer or a boolean",
			            key, NULL);
		struct config scratch;
		config_defaults(&scratch);
		int rc = config_set(&scratch, key, config_text(v), "config", why, sizeof why);
		/* log.target's choices are checked with the whole configuration;
		 * on its own, its value can be checked here. */
		if (rc == 0 && strcmp(key, "log.target") == 0)
			rc = config_check(&scratch, "config", why, sizeof why);
		config_free(&scratch);
		if (rc < 0)
			return fail(ps, key, "%s", why, NULL);
	}
	return 0;
}

int profile_apply_config(const struct profile *p, struct config *c, char *err, size_t errlen)
{
	char origin[600];
	if (!p->config)
		return 0;
	snprintf(origin, sizeof origin, "%s: config", p->file ? p->file : p->name);
	json_object_object_foreach(p->config, key, v) {
		if (strcmp(key, "comment") != 0 &&
		    config_default(c, key, config_text(v), origin, err, errlen) < 0)
			return -1;
	}
	/* The sources passed these checks: what fails now, the profile set. */
	return config_check(c, origin, err, errlen);
}

static int parse_root(struct parser *ps, json_object *root)
{
	static const char *const keys[] = { "name", "description", "path", "config", "auth", "rooms",
	                                    "ack", "error", "on", "events", "api", "history", "bus",
	                                    "http", "stats", "comment", NULL };
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
	if (get_type(ps, root, "config", json_type_object, &p->config, "profile") < 0 ||
	    parse_config(ps, p->config) < 0)
		return -1;
	if (get_type(ps, root, "auth", json_type_object, &o, "profile") < 0 || parse_auth(ps, o) < 0)
		return -1;
	if (get_type(ps, root, "rooms", json_type_object, &o, "profile") < 0 || parse_rooms(ps, o) < 0)
		return -1;
	if (get_type(ps, root, "history", json_type_object, &o, "profile") < 0)
		return -1;
	scope(ps, "history", NULL);
	if (parse_history(ps, o) < 0)
		return -1;
	ps->from = 0;
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
			scope(ps, "events", name);
			if (parse_event(ps, name, ev, &p->events[p->nevents++]) < 0)
				return -1;
		}
		ps->from = 0;
	}
	if (get_type(ps, root, "api", json_type_object, &o, "profile") < 0)
		return -1;
	if (o) {
		size_t n = (size_t)json_object_object_length(o);
		p->api_events = calloc(n ? n : 1, sizeof *p->api_events);
		if (!p->api_events)
			return -1;
		json_object_object_foreach(o, name, ev) {
			scope(ps, "api", name);
			if (parse_event(ps, name, ev, &p->api_events[p->napi_events++]) < 0)
				return -1;
			if (profile_event(p, name))
				return fail(ps, name, "api: \"%s\" is a client event too", name, NULL);
		}
		ps->from = 0;
	}
	for (size_t i = 0; i < p->nevents; i++) {
		const char *d = p->events[i].on_disconnect;
		scope(ps, "events", p->events[i].name);
		if (d && !profile_event(p, d))
			return fail(ps, "on_disconnect", "event \"%s\": on_disconnect names no event "
			            "(\"%s\")", p->events[i].name, d);
	}
	ps->from = 0;
	if (get_type(ps, root, "bus", json_type_array, &o, "profile") < 0 || parse_routes(ps, o) < 0)
		return -1;
	if (get_type(ps, root, "http", json_type_object, &o, "profile") < 0 || parse_http(ps, o) < 0)
		return -1;
	if (get_type(ps, root, "stats", json_type_object, &o, "profile") < 0)
		return -1;
	scope(ps, "stats", NULL);
	if (parse_stats(ps, o) < 0)
		return -1;
	ps->from = 0;
	return 0;
}

struct profile *profile_parse(const char *text, size_t len, const char *file,
                              char *err, size_t errlen)
{
	struct parser ps = { text, len, file, err, errlen, NULL, 0 };
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
	free(p->default_role);
	free_list(p->stats_roles, p->nstats_roles);
	free(p->error.when);
	free(p->error.each);
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
	free_routes(p);
	json_object_put(p->root);
	free(p);
}

json_object *profile_document(const struct profile *p, const char *path)
{
	json_object *t;
	return p && p->http && strcmp(path, "comment") != 0 &&
	       json_object_object_get_ex(p->http, path, &t) ? t : NULL;
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
