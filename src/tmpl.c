/* tmpl.c -- see tmpl.h. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "buf.h"
#include "tmpl.h"
#include "util.h"

#define MAX_EXPR 256

static char what_buf[MAX_EXPR + 1];

/* A path segment that indexes an array: digits only. */
static int array_index(const char *key, size_t n, size_t *i)
{
	*i = 0;
	if (n == 0 || n > 9)
		return -1;
	for (size_t k = 0; k < n; k++) {
		if (!isdigit((unsigned char)key[k]))
			return -1;
		*i = *i * 10 + (size_t)(key[k] - '0');
	}
	return 0;
}

json_object *tmpl_lookup(json_object *ctx, const char *path, size_t len)
{
	json_object *cur = ctx;
	const char *end = path + len;

	while (path < end && cur) {
		const char *dot = memchr(path, '.', (size_t)(end - path));
		const char *seg_end = dot ? dot : end;
		char key[MAX_EXPR + 1];
		size_t n = (size_t)(seg_end - path);
		if (n == 0 || n > MAX_EXPR)
			return NULL;
		memcpy(key, path, n);
		key[n] = '\0';
		if (json_object_is_type(cur, json_type_array)) {
			/* A number indexes an array: match.0 */
			size_t i;
			if (array_index(key, n, &i) < 0 || i >= json_object_array_length(cur))
				return NULL;
			cur = json_object_array_get_idx(cur, i);
		} else if (!json_object_is_type(cur, json_type_object) ||
		           !json_object_object_get_ex(cur, key, &cur)) {
			return NULL;
		}
		path = dot ? dot + 1 : end;
	}
	return cur;
}

int tmpl_truthy(json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null: return 0;
	case json_type_boolean: return json_object_get_boolean(v);
	case json_type_int: return json_object_get_int64(v) != 0;
	case json_type_double: return json_object_get_double(v) != 0;
	case json_type_string: return json_object_get_string_len(v) > 0;
	default: return 1;
	}
}

/* ISO-8601 in UTC: ISO_MS "2026-01-06T12:00:00.000Z", ISO_NAIVE
 * "2026-01-06T12:00:00.000000" (Python's utcnow().isoformat()), ISO_SPACE
 * "2026-01-06 12:00:00.000000" (Python's str(datetime)), ISO_US
 * "2026-01-06T12:00:00.000000Z" (isoformat() with a Z appended). */
enum iso { ISO_MS, ISO_NAIVE, ISO_SPACE, ISO_US };

static void iso_time(char *out, size_t len, uint64_t ms, enum iso form)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	char base[32], fmt[] = "%Y-%m-%dT%H:%M:%S";
	gmtime_r(&s, &tm);
	fmt[8] = form == ISO_SPACE ? ' ' : 'T';
	strftime(base, sizeof base, fmt, &tm);
	if (form != ISO_MS)
		snprintf(out, len, "%s.%06u%s", base, (unsigned)(ms % 1000) * 1000,
		         form == ISO_US ? "Z" : "");
	else
		snprintf(out, len, "%s.%03uZ", base, (unsigned)(ms % 1000));
}

static json_object *uuid_v4(void)
{
	unsigned char b[16];
	char s[37];
	if (RAND_bytes(b, sizeof b) != 1)
		return NULL;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(s, sizeof s,
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
	         b[12], b[13], b[14], b[15]);
	return json_object_new_string(s);
}

/* One operand: *defined tells whether it gave a value (a new reference). */
static enum tmpl_err operand(const char *s, size_t n, json_object *ctx, json_object **out,
                             int *defined)
{
	char num[64];
	*out = NULL;
	*defined = 1;
	while (n && isspace((unsigned char)*s))
		s++, n--;
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	if (n == 0)
		return TMPL_SYNTAX;
	if (s[0] == '\'') {
		if (n < 2 || s[n - 1] != '\'')
			return TMPL_SYNTAX;
		*out = json_object_new_string_len(s + 1, (int)(n - 2));
		return TMPL_OK;
	}
	if (isdigit((unsigned char)s[0]) || (s[0] == '-' && n > 1)) {
		if (n >= sizeof num)
			return TMPL_SYNTAX;
		memcpy(num, s, n);
		num[n] = '\0';
		char *end;
		errno = 0;
		long long v = strtoll(num, &end, 10);
		if (*end == '\0' && !errno) {
			*out = json_object_new_int64(v);
			return TMPL_OK;
		}
		double d = strtod(num, &end);
		if (*end != '\0')
			return TMPL_SYNTAX;
		*out = json_object_new_double(d);
		return TMPL_OK;
	}
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(s, lit, n) == 0)
	if (IS("true") || IS("false")) {
		*out = json_object_new_boolean(s[0] == 't');
		return TMPL_OK;
	}
	if (IS("null"))
		return TMPL_OK;
	if (IS("uuid")) {
		*out = uuid_v4();
		return TMPL_OK;
	}
	if (n > 4 && memcmp(s, "now.", 4) == 0) {
		/* A context may pin the clock (ctx.now.ms) so that every field
		 * of one event shows the same instant. */
		json_object *pinned = tmpl_lookup(ctx, "now.ms", 6);
		uint64_t ms = pinned ? (uint64_t)json_object_get_int64(pinned) : wall_ms();
		char iso[48];
		if (IS("now.ms")) {
			*out = json_object_new_int64((int64_t)ms);
			return TMPL_OK;
		}
		if (IS("now.s")) {
			*out = json_object_new_int64((int64_t)(ms / 1000));
			return TMPL_OK;
		}
		if (IS("now.iso") || IS("now.iso_naive") || IS("now.iso_space") || IS("now.iso_us")) {
			iso_time(iso, sizeof iso, ms,
			         IS("now.iso") ? ISO_MS : IS("now.iso_naive") ? ISO_NAIVE
			         : IS("now.iso_space") ? ISO_SPACE : ISO_US);
			*out = json_object_new_string(iso);
			return TMPL_OK;
		}
	}
#undef IS
	for (size_t i = 0; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-' ||
		      s[i] == '$'))
			return TMPL_SYNTAX;
	json_object *v = tmpl_lookup(ctx, s, n);
	if (!v) {
		/* A present member with value null is defined; a missing one is not. */
		const char *dot = NULL;
		for (size_t i = n; i > 0; i--)
			if (s[i - 1] == '.') {
				dot = s + i - 1;
				break;
			}
		json_object *parent = dot ? tmpl_lookup(ctx, s, (size_t)(dot - s)) : ctx;
		char key[MAX_EXPR + 1];
		const char *k = dot ? dot + 1 : s;
		size_t kl = (size_t)(s + n - k);
		if (kl > MAX_EXPR)
			return TMPL_SYNTAX;
		memcpy(key, k, kl);
		key[kl] = '\0';
		size_t i;
		*defined = parent && ((json_object_is_type(parent, json_type_object) &&
		                       json_object_object_get_ex(parent, key, NULL)) ||
		                      (json_object_is_type(parent, json_type_array) &&
		                       array_index(key, kl, &i) == 0 &&
		                       i < json_object_array_length(parent)));
		return TMPL_OK;
	}
	*out = json_object_get(v);
	return TMPL_OK;
}

static enum tmpl_err convert(const char *conv, size_t cl, json_object **v)
{
	json_object *in = *v, *out = NULL;
	enum json_type t = json_object_get_type(in);
#define IS(lit) (cl == sizeof(lit) - 1 && memcmp(conv, lit, cl) == 0)
	if (IS("int")) {
		if (t == json_type_int)
			return TMPL_OK;
		if (t == json_type_double) {
			double d = json_object_get_double(in);
			if (d != (double)(int64_t)d)
				return TMPL_TYPE;
			out = json_object_new_int64((int64_t)d);
		} else if (t == json_type_string) {
			const char *s = json_object_get_string(in);
			char *end;
			errno = 0;
			long long x = strtoll(s, &end, 10);
			if (!*s || *end || errno || isspace((unsigned char)*s))
				return TMPL_TYPE;
			out = json_object_new_int64(x);
		} else {
			return TMPL_TYPE;
		}
	} else if (IS("str")) {
		if (t == json_type_string)
			return TMPL_OK;
		if (t == json_type_object || t == json_type_array || t == json_type_null)
			return TMPL_TYPE;
		out = json_object_new_string(json_object_get_string(in));
	} else if (IS("bool")) {
		out = json_object_new_boolean(tmpl_truthy(in));
	} else if (IS("lower") || IS("upper")) {
		if (t != json_type_string)
			return TMPL_TYPE;
		char *s = strdup(json_object_get_string(in));
		if (!s)
			return TMPL_TYPE;
		for (char *p = s; *p; p++)
			*p = (char)(IS("lower") ? tolower((unsigned char)*p) : toupper((unsigned char)*p));
		out = json_object_new_string(s);
		free(s);
	} else if (IS("ms_iso") || IS("ms_iso_us")) {
		char iso[48];
		if ((t != json_type_int && t != json_type_double) || json_object_get_int64(in) < 0)
			return TMPL_TYPE;
		iso_time(iso, sizeof iso, (uint64_t)json_object_get_int64(in),
		         IS("ms_iso") ? ISO_MS : ISO_US);
		out = json_object_new_string(iso);
	} else if (IS("len")) {
		if (t == json_type_string)
			out = json_object_new_int(json_object_get_string_len(in));
		else if (t == json_type_array)
			out = json_object_new_int64((int64_t)json_object_array_length(in));
		else
			return TMPL_TYPE;
	} else {
		return TMPL_SYNTAX;
	}
#undef IS
	json_object_put(in);
	*v = out;
	return TMPL_OK;
}

/* Evaluates "conv:a|b|c" (without the braces). */
static enum tmpl_err expr(const char *s, size_t n, json_object *ctx, json_object **out)
{
	const char *conv = NULL;
	size_t cl = 0;
	const char *colon = memchr(s, ':', n);
	const char *quote = memchr(s, '\'', n);

	*out = NULL;
	if (n > MAX_EXPR)
		return TMPL_SYNTAX;
	if (colon && (!quote || colon < quote)) {
		static const char *const convs[] = { "int", "str", "bool", "lower", "upper",
		                                     "ms_iso", "ms_iso_us", "len", NULL };
		conv = s;
		cl = (size_t)(colon - s);
		n -= cl + 1;
		s = colon + 1;
		int known = 0;
		for (int i = 0; convs[i]; i++)
			known |= strlen(convs[i]) == cl && memcmp(convs[i], conv, cl) == 0;
		if (!known)
			return TMPL_SYNTAX;
	}
	const char *end = s + n;
	while (s <= end) {
		/* The next '|' outside quotes. */
		const char *bar = s;
		int inq = 0;
		while (bar < end && (inq || *bar != '|')) {
			if (*bar == '\'')
				inq = !inq;
			bar++;
		}
		json_object *v;
		int defined;
		enum tmpl_err e = operand(s, (size_t)(bar - s), ctx, &v, &defined);
		if (e != TMPL_OK)
			return e;
		if (defined && v) {
			if (conv && (e = convert(conv, cl, &v)) != TMPL_OK) {
				json_object_put(v);
				return e;
			}
			*out = v;
			return TMPL_OK;
		}
		if (defined && bar == end) {
			*out = NULL;     /* the last alternative is an explicit null */
			return TMPL_OK;
		}
		s = bar + 1;
	}
	return TMPL_UNDEFINED;
}

static void set_what(const char *s, size_t n)
{
	if (n > MAX_EXPR)
		n = MAX_EXPR;
	memcpy(what_buf, s, n);
	what_buf[n] = '\0';
}

static enum tmpl_err eval_string(const char *s, size_t n, json_object *ctx, json_object **out,
                                 const char **what)
{
	/* One expression making up the whole string keeps its type. */
	if (n >= 2 && s[0] == '{' && s[1] != '{' && s[n - 1] == '}' && !memchr(s + 1, '{', n - 2) &&
	    !memchr(s + 1, '}', n - 2)) {
		enum tmpl_err e = expr(s + 1, n - 2, ctx, out);
		if (e != TMPL_OK)
			set_what(s, n);
		*what = what_buf;
		return e;
	}
	struct buf b;
	buf_init(&b, 1 << 20);
	for (size_t i = 0; i < n;) {
		if (s[i] == '{' && i + 1 < n && s[i + 1] == '{') {
			buf_putc(&b, '{');
			i += 2;
			continue;
		}
		if (s[i] == '}' && i + 1 < n && s[i + 1] == '}') {
			buf_putc(&b, '}');
			i += 2;
			continue;
		}
		if (s[i] != '{') {
			buf_putc(&b, s[i++]);
			continue;
		}
		const char *close = memchr(s + i, '}', n - i);
		if (!close) {
			buf_free(&b);
			set_what(s, n);
			*what = what_buf;
			return TMPL_SYNTAX;
		}
		json_object *v;
		enum tmpl_err e = expr(s + i + 1, (size_t)(close - s - i - 1), ctx, &v);
		if (e == TMPL_OK && v && (json_object_is_type(v, json_type_object) ||
		                          json_object_is_type(v, json_type_array))) {
			json_object_put(v);
			e = TMPL_TYPE;
		}
		if (e != TMPL_OK) {
			set_what(s + i, (size_t)(close - s - i + 1));
			*what = what_buf;
			buf_free(&b);
			return e;
		}
		if (v)
			buf_puts(&b, json_object_get_string(v));
		json_object_put(v);
		i = (size_t)(close - s) + 1;
	}
	*out = json_object_new_string_len(b.p ? b.p : "", (int)b.len);
	buf_free(&b);
	return TMPL_OK;
}

static int is_single_expr(json_object *t)
{
	if (!json_object_is_type(t, json_type_string))
		return 0;
	const char *s = json_object_get_string(t);
	size_t n = (size_t)json_object_get_string_len(t);
	return n >= 2 && s[0] == '{' && s[1] != '{' && s[n - 1] == '}' &&
	       !memchr(s + 1, '{', n - 2) && !memchr(s + 1, '}', n - 2);
}

enum tmpl_err tmpl_eval(json_object *tmpl, json_object *ctx, json_object **out,
                        const char **what)
{
	enum tmpl_err e;
	*out = NULL;
	*what = "";
	switch (json_object_get_type(tmpl)) {
	case json_type_string:
		return eval_string(json_object_get_string(tmpl),
		                   (size_t)json_object_get_string_len(tmpl), ctx, out, what);
	case json_type_object: {
		json_object *o = json_object_new_object();
		json_object_object_foreach(tmpl, key, val) {
			json_object *v;
			e = tmpl_eval(val, ctx, &v, what);
			if (e == TMPL_UNDEFINED && is_single_expr(val))
				continue;
			if (e != TMPL_OK) {
				json_object_put(o);
				return e;
			}
			json_object_object_add(o, key, v);
		}
		*out = o;
		return TMPL_OK;
	}
	case json_type_array: {
		json_object *a = json_object_new_array();
		for (size_t i = 0; i < json_object_array_length(tmpl); i++) {
			json_object *v;
			e = tmpl_eval(json_object_array_get_idx(tmpl, i), ctx, &v, what);
			if (e != TMPL_OK) {
				json_object_put(a);
				return e;
			}
			json_object_array_add(a, v);
		}
		*out = a;
		return TMPL_OK;
	}
	default:
		*out = json_object_get(tmpl);
		return TMPL_OK;
	}
}

char *tmpl_string(json_object *tmpl, json_object *ctx)
{
	json_object *v;
	const char *what;
	if (tmpl_eval(tmpl, ctx, &v, &what) != TMPL_OK || !v)
		return NULL;
	char *s = NULL;
	enum json_type t = json_object_get_type(v);
	if (t == json_type_string || t == json_type_int || t == json_type_double ||
	    t == json_type_boolean)
		s = strdup(json_object_get_string(v));
	json_object_put(v);
	return s;
}

static int check_string(const char *s, size_t n, char *err, size_t errlen)
{
	static json_object *empty;
	json_object *v;
	if (!empty)
		empty = json_object_new_object();
	/* Evaluate over an empty context: only syntax errors matter. */
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '{' && i + 1 < n && s[i + 1] == '{') {
			i++;
			continue;
		}
		if (s[i] != '{')
			continue;
		const char *close = memchr(s + i, '}', n - i);
		if (!close) {
			snprintf(err, errlen, "unclosed '{' in \"%.*s\"", (int)n, s);
			return -1;
		}
		enum tmpl_err e = expr(s + i + 1, (size_t)(close - s - i - 1), empty, &v);
		json_object_put(v);
		if (e == TMPL_SYNTAX) {
			snprintf(err, errlen, "bad expression %.*s", (int)(close - s - i + 1), s + i);
			return -1;
		}
		i = (size_t)(close - s);
	}
	return 0;
}

int tmpl_check(json_object *tmpl, char *err, size_t errlen)
{
	switch (json_object_get_type(tmpl)) {
	case json_type_string:
		return check_string(json_object_get_string(tmpl),
		                    (size_t)json_object_get_string_len(tmpl), err, errlen);
	case json_type_object: {
		json_object_object_foreach(tmpl, key, val) {
			(void)key;
			if (tmpl_check(val, err, errlen) < 0)
				return -1;
		}
		return 0;
	}
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(tmpl); i++)
			if (tmpl_check(json_object_array_get_idx(tmpl, i), err, errlen) < 0)
				return -1;
		return 0;
	default:
		return 0;
	}
}
