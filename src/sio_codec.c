/* sio_codec.c -- see sio_codec.h. */
#include <ctype.h>
#include <string.h>

#include "sio_codec.h"

static const char *const reserved_events[] = {
	"connect", "connect_error", "disconnect", "disconnecting",
	"newListener", "removeListener", NULL,
};

int sio_reserved_event(const char *name)
{
	for (int i = 0; reserved_events[i]; i++)
		if (strcmp(name, reserved_events[i]) == 0)
			return 1;
	return 0;
}

/* --- a strict RFC 8259 check ---
 * json-c's strict mode still takes NaN, Infinity, single quotes, "1." and
 * "-01", and does not check UTF-8; what we accept we send on to other
 * clients verbatim, so only real JSON may pass. */

struct jcur {
	const unsigned char *p, *end;
	int depth;
};

static void skip_ws(struct jcur *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static int utf8_char(struct jcur *c)
{
	unsigned char b = *c->p;
	int n;
	unsigned cp;
	if (b < 0x80)
		return c->p++, 1;
	if ((b & 0xe0) == 0xc0)
		n = 1, cp = b & 0x1f;
	else if ((b & 0xf0) == 0xe0)
		n = 2, cp = b & 0x0f;
	else if ((b & 0xf8) == 0xf0)
		n = 3, cp = b & 0x07;
	else
		return 0;
	if (c->end - c->p <= n)
		return 0;
	for (int i = 1; i <= n; i++) {
		if ((c->p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (c->p[i] & 0x3f);
	}
	if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	c->p += n + 1;
	return 1;
}

static int j_string(struct jcur *c)
{
	c->p++;                      /* the opening quote */
	while (c->p < c->end) {
		unsigned char b = *c->p;
		if (b == '"')
			return c->p++, 1;
		if (b < 0x20)
			return 0;
		if (b == '\\') {
			if (++c->p >= c->end)
				return 0;
			if (*c->p == 'u') {
				if (c->end - c->p < 5)
					return 0;
				for (int i = 1; i <= 4; i++)
					if (!isxdigit(c->p[i]))
						return 0;
				c->p += 5;
			} else if (strchr("\"\\/bfnrt", *c->p) && *c->p) {
				c->p++;
			} else {
				return 0;
			}
			continue;
		}
		if (!utf8_char(c))
			return 0;
	}
	return 0;
}

static int digits(struct jcur *c)
{
	const unsigned char *start = c->p;
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
		c->p++;
	return c->p > start;
}

static int j_number(struct jcur *c)
{
	if (*c->p == '-')
		c->p++;
	if (c->p >= c->end)
		return 0;
	if (*c->p == '0')
		c->p++;
	else if (!digits(c))
		return 0;
	if (c->p < c->end && *c->p == '.') {
		c->p++;
		if (!digits(c))
			return 0;
	}
	if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
		c->p++;
		if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
			c->p++;
		if (!digits(c))
			return 0;
	}
	return 1;
}

static int j_value(struct jcur *c);

static int j_container(struct jcur *c, char close)
{
	if (++c->depth > SIO_JSON_DEPTH)
		return 0;
	c->p++;
	skip_ws(c);
	if (c->p < c->end && *c->p == close) {
		c->p++;
		c->depth--;
		return 1;
	}
	for (;;) {
		if (close == '}') {
			if (c->p >= c->end || *c->p != '"' || !j_string(c))
				return 0;
			skip_ws(c);
			if (c->p >= c->end || *c->p++ != ':')
				return 0;
		}
		if (!j_value(c))
			return 0;
		skip_ws(c);
		if (c->p >= c->end)
			return 0;
		if (*c->p == ',') {
			c->p++;
			skip_ws(c);
			continue;
		}
		if (*c->p++ != close)
			return 0;
		c->depth--;
		return 1;
	}
}

static int literal(struct jcur *c, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
		return 0;
	c->p += n;
	return 1;
}

static int j_value(struct jcur *c)
{
	skip_ws(c);
	if (c->p >= c->end)
		return 0;
	switch (*c->p) {
	case '{': return j_container(c, '}');
	case '[': return j_container(c, ']');
	case '"': return j_string(c);
	case 't': return literal(c, "true");
	case 'f': return literal(c, "false");
	case 'n': return literal(c, "null");
	default:
		return (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')) && j_number(c);
	}
}

int sio_json_valid(const char *s, size_t n)
{
	struct jcur c = { (const unsigned char *)s, (const unsigned char *)s + n, 0 };
	if (!j_value(&c))
		return 0;
	skip_ws(&c);
	return c.p == c.end;
}

json_object *sio_json_parse(const char *s, size_t n)
{
	if (n == 0 || n > INT32_MAX || !sio_json_valid(s, n))
		return NULL;
	struct json_tokener *tok = json_tokener_new_ex(SIO_JSON_DEPTH);
	if (!tok)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	json_object *obj = json_tokener_parse_ex(tok, s, (int)n);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != n) {
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	return obj;
}

const char *sio_json(json_object *obj, size_t *len)
{
	return json_object_to_json_string_length(obj,
		JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len);
}

static int is_placeholder(json_object *o, int *num)
{
	json_object *ph, *n;
	if (!json_object_object_get_ex(o, "_placeholder", &ph) ||
	    !json_object_is_type(ph, json_type_boolean) || !json_object_get_boolean(ph))
		return 0;
	if (!json_object_object_get_ex(o, "num", &n) || !json_object_is_type(n, json_type_int))
		*num = -1;
	else {
		int64_t v = json_object_get_int64(n);
		*num = v < 0 || v > SIO_ATTACHMENTS_MAX ? -1 : (int)v;
	}
	return 1;
}

int sio_placeholders_check(json_object *data, int max)
{
	int count = 0, num, r;

	switch (json_object_get_type(data)) {
	case json_type_object: {
		if (is_placeholder(data, &num))
			return num >= 0 && num < max ? 1 : -1;
		json_object_object_foreach(data, key, val) {
			(void)key;
			if ((r = sio_placeholders_check(val, max)) < 0)
				return -1;
			count += r;
		}
		return count;
	}
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(data); i++) {
			if ((r = sio_placeholders_check(json_object_array_get_idx(data, i), max)) < 0)
				return -1;
			count += r;
		}
		return count;
	default:
		return 0;
	}
}

static int valid_shape(const struct sio_packet *p)
{
	json_object *d = p->data;
	enum json_type t = d ? json_object_get_type(d) : json_type_null;

	switch (p->type) {
	case SIO_CONNECT:
		return !d || t == json_type_object;
	case SIO_DISCONNECT:
		return !d;
	case SIO_CONNECT_ERROR:
		return d && (t == json_type_object || t == json_type_string);
	case SIO_EVENT:
	case SIO_BINARY_EVENT: {
		if (!d || t != json_type_array || json_object_array_length(d) == 0)
			return 0;
		json_object *name = json_object_array_get_idx(d, 0);
		if (!json_object_is_type(name, json_type_string))
			return 0;
		return !sio_reserved_event(json_object_get_string(name));
	}
	case SIO_ACK:
	case SIO_BINARY_ACK:
		return d && t == json_type_array;
	}
	return 0;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int sio_packet_decode(const char *s, size_t n, struct sio_packet *p, const char **err)
{
	size_t i = 0;

	memset(p, 0, sizeof *p);
	p->id = -1;
	strcpy(p->nsp, "/");
	*err = "empty packet";
	if (n == 0)
		return -1;
	if (s[0] < '0' || s[0] > '6') {
		*err = "unknown packet type";
		return -1;
	}
	p->type = (enum sio_type)(s[i++] - '0');

	if (p->type == SIO_BINARY_EVENT || p->type == SIO_BINARY_ACK) {
		size_t start = i;
		long count = 0;
		while (i < n && is_digit(s[i]) && i - start < 5)
			count = count * 10 + (s[i++] - '0');
		if (i == start || i >= n || s[i] != '-' || count > SIO_ATTACHMENTS_MAX) {
			*err = "invalid attachment count";
			return -1;
		}
		p->attachments = (int)count;
		i++;
	}

	if (i < n && s[i] == '/') {
		size_t start = i;
		while (i < n && s[i] != ',')
			i++;
		if (i - start > SIO_NSP_MAX) {
			*err = "namespace too long";
			return -1;
		}
		for (size_t k = start; k < i; k++)
			if ((unsigned char)s[k] < 0x20) {
				*err = "control character in namespace";
				return -1;
			}
		memcpy(p->nsp, s + start, i - start);
		p->nsp[i - start] = '\0';
		if (i < n)
			i++;             /* the comma */
	}

	if (i < n && is_digit(s[i])) {
		int64_t id = 0;
		size_t start = i;
		while (i < n && is_digit(s[i])) {
			if (i - start >= 15) {   /* keep ids exact as JSON numbers */
				*err = "ack id too large";
				return -1;
			}
			id = id * 10 + (s[i++] - '0');
		}
		p->id = id;
	}

	if (i < n) {
		p->data = sio_json_parse(s + i, n - i);
		if (!p->data) {
			*err = "invalid payload";
			return -1;
		}
	}
	if (!valid_shape(p)) {
		*err = "invalid payload";
		goto fail;
	}
	if ((p->type == SIO_ACK || p->type == SIO_BINARY_ACK) && p->id < 0) {
		*err = "ack without id";
		goto fail;
	}
	if (p->type == SIO_BINARY_EVENT || p->type == SIO_BINARY_ACK) {
		if (sio_placeholders_check(p->data, p->attachments) < 0) {
			*err = "invalid attachment placeholder";
			goto fail;
		}
	}
	return 0;
fail:
	sio_packet_clear(p);
	return -1;
}

void sio_packet_clear(struct sio_packet *p)
{
	json_object_put(p->data);
	p->data = NULL;
}

int sio_packet_encode(struct buf *out, enum sio_type type, const char *nsp,
                      int64_t id, int attachments, json_object *data)
{
	if (buf_putc(out, (char)('0' + type)) < 0)
		return -1;
	if ((type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK) &&
	    buf_printf(out, "%d-", attachments) < 0)
		return -1;
	if (nsp && strcmp(nsp, "/") != 0 && buf_printf(out, "%s,", nsp) < 0)
		return -1;
	if (id >= 0 && buf_printf(out, "%lld", (long long)id) < 0)
		return -1;
	if (data) {
		size_t len;
		const char *js = sio_json(data, &len);
		if (!js || buf_append(out, js, len) < 0)
			return -1;
	}
	return 0;
}

int sio_event_name(const char *s, size_t n, const char **name, size_t *len)
{
	size_t i = 1;

	if (n == 0 || (s[0] != '0' + SIO_EVENT && s[0] != '0' + SIO_BINARY_EVENT))
		return -1;
	if (s[0] == '0' + SIO_BINARY_EVENT) {
		while (i < n && isdigit((unsigned char)s[i]))
			i++;
		if (i == n || s[i++] != '-')
			return -1;
	}
	if (i < n && s[i] == '/') {
		while (i < n && s[i] != ',')
			i++;
		if (i++ == n)
			return -1;
	}
	while (i < n && isdigit((unsigned char)s[i]))
		i++;
	if (n - i < 2 || s[i] != '[' || s[i + 1] != '"')
		return -1;
	size_t start = i += 2;
	while (i < n && s[i] != '"')
		i += s[i] == '\\' ? 2 : 1;
	if (i >= n)
		return -1;
	*name = s + start;
	*len = i - start;
	return 0;
}
