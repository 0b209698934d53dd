/* scgi.c -- see scgi.h. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "scgi.h"

enum {
	S_LEN,          /* the netstring's length, up to ':' */
	S_BLOCK,        /* the header block */
	S_COMMA,        /* the ',' after it */
	S_BODY,         /* keeping the body */
	S_SKIP,         /* dropping a body over max_body */
	S_DONE,
	S_ERROR,
};

#define CONTENT_LENGTH_MAX ((uint64_t)INT64_MAX)

void scgi_init(struct scgi_parser *p, const struct scgi_limits *lim)
{
	memset(p, 0, sizeof *p);
	if (lim)
		p->lim = *lim;
	if (!p->lim.max_header)
		p->lim.max_header = 65536;
	if (!p->lim.max_headers)
		p->lim.max_headers = 256;
	if (!p->lim.max_body)
		p->lim.max_body = 1024 * 1024;
	p->state = S_LEN;
	buf_init(&p->head, 0);
	buf_init(&p->body, 0);
}

void scgi_free(struct scgi_parser *p)
{
	buf_free(&p->head);
	buf_free(&p->body);
	free(p->h);
	free(p->by_name);
	free(p->path);
	p->h = NULL;
	p->by_name = NULL;
	p->path = NULL;
	p->n = 0;
}

static int fail(struct scgi_parser *p, const char *why)
{
	p->state = S_ERROR;
	p->error = why;
	return -1;
}

/* A reason naming a header: the name is the peer's, so only its printable
 * ASCII goes into a log line. */
static int fail_name(struct scgi_parser *p, const char *what, const char *name)
{
	size_t n = 0, max = 40;
	char clean[44];

	for (; name[n] && n < max; n++)
		clean[n] = name[n] >= 0x20 && name[n] < 0x7f ? name[n] : '?';
	clean[n] = '\0';
	snprintf(p->errbuf, sizeof p->errbuf, "%s %s%s", what, clean, name[n] ? "..." : "");
	return fail(p, p->errbuf);
}

/* By name, then in wire order (the pairs are one array). */
static int by_name(const void *a, const void *b)
{
	const struct scgi_header *const *x = a, *const *y = b;
	int c = strcmp((*x)->name, (*y)->name);
	return c ? c : (*x < *y ? -1 : *x > *y);
}

/* A name the web server sets itself, or the credential: one value only.
 * Other HTTP_* names are the client's headers, which nginx before 1.23
 * passes once per line when a client repeats one. */
static int must_be_unique(const char *name)
{
	return strncmp(name, "HTTP_", 5) != 0 || strcmp(name, "HTTP_AUTHORIZATION") == 0;
}

const char *scgi_header(const struct scgi_parser *p, const char *name)
{
	size_t n = p->by_name && p->state != S_ERROR ? p->n : 0, lo = 0, hi = n;

	/* The first pair whose name is not below name: the first in wire
	 * order when a name repeats. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(p->by_name[mid]->name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && strcmp(p->by_name[lo]->name, name) == 0 ? p->by_name[lo]->value : NULL;
}

/* CONTENT_LENGTH: 1*DIGIT, at most 2^63 - 1. */
static int parse_length(struct scgi_parser *p, const char *v)
{
	uint64_t n = 0;

	if (!*v)
		return fail(p, "CONTENT_LENGTH is empty");
	for (; *v; v++) {
		if (*v < '0' || *v > '9')
			return fail(p, "CONTENT_LENGTH is not a decimal number");
		unsigned d = (unsigned)(*v - '0');
		if (n > (CONTENT_LENGTH_MAX - d) / 10)
			return fail(p, "CONTENT_LENGTH is out of range");
		n = n * 10 + d;
	}
	p->content_length = n;
	return 0;
}

/* The path and query of struct scgi_request. A missing path is not an
 * error here: the protocol does not need one, scgi_request says so. */
static int find_path(struct scgi_parser *p)
{
	const char *uri = scgi_header(p, "REQUEST_URI");
	size_t n;

	if (uri && *uri) {
		const char *q = strchr(uri, '?');
		n = q ? (size_t)(q - uri) : strlen(uri);
		p->query = q ? q + 1 : "";
		if (n == 0)
			return 0;
		if (!(p->path = malloc(n + 1)))
			return fail(p, "out of memory");
		memcpy(p->path, uri, n);
		p->path[n] = '\0';
		return 0;
	}
	const char *script = scgi_header(p, "SCRIPT_NAME");
	const char *info = scgi_header(p, "PATH_INFO");
	const char *query = scgi_header(p, "QUERY_STRING");
	size_t ns = script ? strlen(script) : 0, ni = info ? strlen(info) : 0;
	p->query = query ? query : "";
	if (ns + ni == 0)
		return 0;
	if (!(p->path = malloc(ns + ni + 1)))
		return fail(p, "out of memory");
	if (ns)
		memcpy(p->path, script, ns);
	if (ni)
		memcpy(p->path + ns, info, ni);
	p->path[ns + ni] = '\0';
	return 0;
}

/* The block is whole (hlen bytes in p->head): split it into pairs and
 * check what the protocol asks of them. */
static int parse_block(struct scgi_parser *p)
{
	char *b = p->head.p, *end = b + p->hlen;
	size_t strings = 0;

	if (end[-1] != '\0')
		return fail(p, "the header block does not end with NUL");
	for (char *s = b; s < end; s++)
		strings += *s == '\0';
	if (strings % 2)
		return fail(p, "a header name has no value");
	if (strings / 2 > p->lim.max_headers)
		return fail(p, "too many headers");
	p->n = strings / 2;
	p->h = calloc(p->n, sizeof *p->h);
	p->by_name = calloc(p->n, sizeof *p->by_name);
	if (!p->h || !p->by_name)
		return fail(p, "out of memory");

	/* Every string ends at a NUL before end: the last byte is one. */
	char *s = b;
	for (size_t i = 0; i < p->n; i++) {
		p->h[i].name = s;
		s += strlen(s) + 1;
		p->h[i].value = s;
		s += strlen(s) + 1;
		if (!*p->h[i].name)
			return fail(p, "a header name is empty");
		p->by_name[i] = &p->h[i];
	}
	if (strcmp(p->h[0].name, "CONTENT_LENGTH") != 0)
		return fail(p, "the first header is not CONTENT_LENGTH");
	if (parse_length(p, p->h[0].value) < 0)
		return -1;

	qsort(p->by_name, p->n, sizeof *p->by_name, by_name);
	for (size_t i = 1; i < p->n; i++)
		if (strcmp(p->by_name[i - 1]->name, p->by_name[i]->name) == 0 &&
		    must_be_unique(p->by_name[i]->name))
			return fail_name(p, "duplicate header", p->by_name[i]->name);

	const char *scgi = scgi_header(p, "SCGI");
	if (!scgi)
		return fail(p, "no SCGI header");
	if (strcmp(scgi, "1") != 0)
		return fail(p, "SCGI is not \"1\"");
	return find_path(p);
}

/* The header block is parsed: what comes next. */
static enum scgi_status after_headers(struct scgi_parser *p)
{
	p->left = p->content_length;
	if (p->content_length > p->lim.max_body) {
		p->too_large = 1;
		p->state = S_SKIP;
		return SCGI_TOO_LARGE;
	}
	if (p->left == 0) {
		p->state = S_DONE;
		return SCGI_DONE;
	}
	/* Bounded by max_body; grows with what arrives, not what is announced. */
	buf_init(&p->body, (size_t)p->content_length);
	p->state = S_BODY;
	return SCGI_NEED_MORE;
}

enum scgi_status scgi_feed(struct scgi_parser *p, const void *data, size_t len, size_t *used)
{
	const unsigned char *s = data;
	enum scgi_status r = SCGI_NEED_MORE;
	size_t i = 0;

	if (p->state == S_DONE || p->state == S_ERROR) {
		if (used)
			*used = 0;
		return p->state == S_DONE ? SCGI_DONE : SCGI_ERROR;
	}
	while (i < len && r == SCGI_NEED_MORE) {
		switch (p->state) {
		case S_LEN: {
			unsigned char c = s[i++];
			if (c == ':') {
				if (p->hlen == 0) {
					fail(p, "the netstring length is empty");
					break;
				}
				buf_init(&p->head, p->hlen);
				p->state = S_BLOCK;
				break;
			}
			if (c < '0' || c > '9') {
				fail(p, "the netstring length is not a decimal number");
				break;
			}
			size_t d = c - '0', max = p->lim.max_header;
			if (p->hlen == 0 && d == 0)
				fail(p, "the netstring length is 0 or has a leading zero");
			else if (d > max || p->hlen > (max - d) / 10)
				fail(p, "the header block is too large");
			else
				p->hlen = p->hlen * 10 + d;
			break;
		}
		case S_BLOCK: {
			size_t take = p->hlen - p->head.len;
			if (take > len - i)
				take = len - i;
			if (buf_append(&p->head, s + i, take) < 0) {
				fail(p, "out of memory");
				break;
			}
			i += take;
			if (p->head.len == p->hlen)
				p->state = S_COMMA;
			break;
		}
		case S_COMMA:
			if (s[i++] != ',')
				fail(p, "the header block does not end with ','");
			else if (parse_block(p) == 0)
				r = after_headers(p);
			break;
		case S_BODY:
		case S_SKIP: {
			size_t take = len - i;
			if (take > p->left)
				take = (size_t)p->left;
			if (p->state == S_BODY && buf_append(&p->body, s + i, take) < 0) {
				fail(p, "out of memory");
				break;
			}
			i += take;
			p->left -= take;
			if (p->left == 0) {
				p->state = S_DONE;
				r = SCGI_DONE;
			}
			break;
		}
		}
		if (p->state == S_ERROR)
			r = SCGI_ERROR;
	}
	if (used)
		*used = i;
	return r;
}

const char *scgi_error(const struct scgi_parser *p)
{
	return p->error;
}

size_t scgi_header_count(const struct scgi_parser *p)
{
	return p->by_name && p->state != S_ERROR ? p->n : 0;
}

const struct scgi_header *scgi_header_at(const struct scgi_parser *p, size_t i)
{
	return i < scgi_header_count(p) ? &p->h[i] : NULL;
}

const char *scgi_body(const struct scgi_parser *p, size_t *len)
{
	if (p->state != S_DONE || p->body.len == 0) {
		*len = 0;
		return NULL;
	}
	*len = p->body.len;
	return p->body.p;
}

static const char *nonempty(const char *s)
{
	return s && *s ? s : NULL;
}

int scgi_request(const struct scgi_parser *p, struct scgi_request *r, const char **why)
{
	const char *dummy;

	if (!why)
		why = &dummy;
	memset(r, 0, sizeof *r);
	if (p->state == S_ERROR) {
		*why = p->error;
		return -1;
	}
	if (p->state != S_DONE && p->state != S_SKIP) {
		*why = "the headers are not complete";
		return -1;
	}
	r->method = nonempty(scgi_header(p, "REQUEST_METHOD"));
	if (!r->method) {
		*why = "no REQUEST_METHOD";
		return -1;
	}
	if (!p->path) {
		*why = "no REQUEST_URI, SCRIPT_NAME or PATH_INFO";
		return -1;
	}
	r->path = p->path;
	r->query = p->query;
	r->authorization = nonempty(scgi_header(p, "HTTP_AUTHORIZATION"));
	r->remote_user = nonempty(scgi_header(p, "REMOTE_USER"));
	r->content_type = nonempty(scgi_header(p, "CONTENT_TYPE"));
	r->body = scgi_body(p, &r->body_len);
	r->body_too_large = p->too_large;
	return 0;
}

/* ------------------------------------------------------------------------
 * Responses */

static const char *reason_of(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	}
	switch (status / 100) {
	case 1: return "Informational";
	case 2: return "Success";
	case 3: return "Redirection";
	case 4: return "Client Error";
	default: return "Server Error";
	}
}

/* tchar of RFC 9110 5.6.2. */
static int is_token(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      strchr("!#$%&'*+-.^_`|~", c)))
			return 0;
	}
	return 1;
}

/* A field value or a reason phrase: no control character but tab. */
static int is_text(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
	}
	return 1;
}

static int is_named(const char *name, const char *what)
{
	return strcasecmp(name, what) == 0;
}

int scgi_response(struct buf *out, int status, const char *reason,
                  const char *const *headers, const void *body, size_t len)
{
	size_t mark = out->len;

	if (status < 100 || status > 599)
		return -1;
	if (!reason)
		reason = reason_of(status);
	if (!is_text(reason))
		return -1;
	for (const char *const *h = headers; h && h[0]; h += 2)
		if (!h[1] || !is_token(h[0]) || !is_text(h[1]) ||
		    is_named(h[0], "Status") || is_named(h[0], "Content-Length"))
			return -1;
	int r = buf_printf(out, "Status: %d %s\r\n", status, reason);
	for (const char *const *h = headers; r == 0 && h && h[0]; h += 2)
		r = buf_printf(out, "%s: %s\r\n", h[0], h[1]);
	if (r == 0)
		r = buf_printf(out, "Content-Length: %zu\r\n\r\n", len);
	if (r == 0)
		r = buf_append(out, body, len);
	if (r < 0) {
		out->len = mark;
		if (out->p)
			out->p[mark] = '\0';
	}
	return r;
}

/* ------------------------------------------------------------------------
 * Requests, as a web server writes them */

int scgi_encode(struct buf *out, const char *const *pairs, const void *body, size_t len)
{
	size_t mark = out->len, block = 0;

	for (const char *const *s = pairs; s && *s; s++)
		block += strlen(*s) + 1;
	int r = buf_printf(out, "%zu:", block);
	for (const char *const *s = pairs; r == 0 && s && *s; s++)
		r = buf_append(out, *s, strlen(*s) + 1);
	if (r == 0)
		r = buf_putc(out, ',');
	if (r == 0)
		r = buf_append(out, body, len);
	if (r < 0) {
		out->len = mark;
		if (out->p)
			out->p[mark] = '\0';
	}
	return r;
}
