/* fuzz_scgi.c -- the SCGI request parser (scgi.c).
 *
 * The input is what a web server wrote on the socket. It is fed three
 * ways: whole, one byte at a time, and in chunks of 0 to 64 bytes whose
 * sizes come from a generator seeded with the first byte. The three
 * parsers must end the same way: status, reason, bytes consumed, where
 * SCGI_TOO_LARGE came (once at most), pairs, body and CGI view. The limits
 * are small so that every one of them is reached.
 *
 * A request whose headers parse is written again with scgi_encode from its
 * pairs (and its body, unless it was dropped): the bytes must be the very
 * ones the parser consumed, and must parse to the same request. Its pairs
 * then go into scgi_response as headers, which must refuse them or write
 * one line each. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scgi.h"

static const struct scgi_limits limits = {
	.max_header = 4096,
	.max_headers = 64,
	.max_body = 1024,
};

struct run {
	struct scgi_parser p;
	enum scgi_status status;        /* the last one that is not TOO_LARGE */
	size_t used;                    /* bytes consumed in all */
	size_t header_end;              /* where TOO_LARGE came, or 0 */
};

enum { WHOLE, BYTES, CHUNKS };

static void feed(struct run *r, const uint8_t *data, size_t size, int how)
{
	uint32_t x = 2654435761u * (size ? data[0] + 1u : 1u);
	int zeros = 0;

	scgi_init(&r->p, &limits);
	r->status = SCGI_NEED_MORE;
	r->used = r->header_end = 0;
	while (r->used < size) {
		size_t n = size - r->used, used = 0;
		if (how == BYTES) {
			n = 1;
		} else if (how == CHUNKS) {
			x ^= x << 13, x ^= x >> 17, x ^= x << 5;
			size_t want = x % 65;
			if (want == 0 && zeros++)       /* never twice in a row */
				want = 1;
			if (want)
				zeros = 0;
			if (want < n)
				n = want;
		}
		enum scgi_status s = scgi_feed(&r->p, data + r->used, n, &used);
		if (used > n || (s == SCGI_NEED_MORE && used != n))
			abort();
		r->used += used;
		if (s == SCGI_TOO_LARGE) {
			if (r->header_end)
				abort();
			r->header_end = r->used;
			continue;
		}
		if (s != SCGI_NEED_MORE) {
			r->status = s;
			break;
		}
	}
	/* Done or refused: nothing more is taken. */
	if (r->status != SCGI_NEED_MORE) {
		size_t used = 1;
		if (scgi_feed(&r->p, data + r->used, size - r->used, &used) != r->status || used)
			abort();
	}
}

static void same_str(const char *a, const char *b)
{
	if ((!a) != (!b) || (a && strcmp(a, b) != 0))
		abort();
}

static void same_request(const struct scgi_parser *a, const struct scgi_parser *b)
{
	struct scgi_request x, y;
	const char *wx = NULL, *wy = NULL;
	size_t la, lb;

	same_str(scgi_error(a), scgi_error(b));
	if (scgi_header_count(a) != scgi_header_count(b))
		abort();
	for (size_t i = 0; i < scgi_header_count(a); i++) {
		same_str(scgi_header_at(a, i)->name, scgi_header_at(b, i)->name);
		same_str(scgi_header_at(a, i)->value, scgi_header_at(b, i)->value);
	}
	const char *ba = scgi_body(a, &la), *bb = scgi_body(b, &lb);
	if ((!ba) != (!bb) || la != lb || (la && memcmp(ba, bb, la) != 0))
		abort();
	int ra = scgi_request(a, &x, &wx), rb = scgi_request(b, &y, &wy);
	if (ra != rb)
		abort();
	same_str(wx, wy);
	if (ra == 0) {
		same_str(x.method, y.method);
		same_str(x.path, y.path);
		same_str(x.query, y.query);
		same_str(x.authorization, y.authorization);
		same_str(x.remote_user, y.remote_user);
		same_str(x.content_type, y.content_type);
		if (x.body_len != y.body_len || x.body_too_large != y.body_too_large)
			abort();
	}
}

static void same_run(const struct run *a, const struct run *b)
{
	if (a->status != b->status || a->used != b->used || a->header_end != b->header_end)
		abort();
	same_request(&a->p, &b->p);
}

/* What holds for any request whose headers parsed. */
static void check_headers(const struct scgi_parser *p)
{
	size_t n = scgi_header_count(p);

	if (n < 2 || n > limits.max_headers || strcmp(scgi_header_at(p, 0)->name, "CONTENT_LENGTH"))
		abort();
	same_str(scgi_header(p, "SCGI"), "1");
	for (size_t i = 0; i < n; i++) {
		const struct scgi_header *h = scgi_header_at(p, i);
		size_t first = 0;
		while (strcmp(scgi_header_at(p, first)->name, h->name) != 0)
			first++;
		/* Only a client's header may repeat; a lookup gives the first. */
		if (!*h->name || scgi_header(p, h->name) != scgi_header_at(p, first)->value ||
		    (first != i && (strncmp(h->name, "HTTP_", 5) != 0 ||
		                    strcmp(h->name, "HTTP_AUTHORIZATION") == 0)))
			abort();
	}
}

/* Writes r's request again and parses that. */
static void round_trip(const struct run *r, const uint8_t *data)
{
	const struct scgi_parser *p = &r->p;
	size_t n = scgi_header_count(p), len;
	const char **pairs = calloc(2 * n + 1, sizeof *pairs);
	const char *body = scgi_body(p, &len);
	struct buf out;
	struct run again;

	if (!pairs)
		abort();
	for (size_t i = 0; i < n; i++) {
		pairs[2 * i] = scgi_header_at(p, i)->name;
		pairs[2 * i + 1] = scgi_header_at(p, i)->value;
	}
	buf_init(&out, 0);
	if (scgi_encode(&out, pairs, body, len) < 0)
		abort();
	size_t end = r->header_end ? r->header_end : r->used;
	if (out.len != end || memcmp(out.p, data, end) != 0)
		abort();
	feed(&again, (const uint8_t *)out.p, out.len, WHOLE);
	if (again.header_end != r->header_end || again.used != out.len)
		abort();
	if (!r->header_end && r->status == SCGI_DONE && again.status != SCGI_DONE)
		abort();
	same_request(p, &again.p);
	scgi_free(&again.p);
	buf_free(&out);
	free(pairs);
}

/* The pairs, hostile as they are, as the headers of a response: either
 * refused, or written one per line -- no value writes a line of its own. */
static void respond(const struct scgi_parser *p, int status)
{
	size_t n = scgi_header_count(p), len, lines = 0;
	const char **hv = calloc(2 * n + 1, sizeof *hv);
	const char *body = scgi_body(p, &len);
	struct buf out;

	if (!hv)
		abort();
	for (size_t i = 0; i < n; i++) {
		hv[2 * i] = scgi_header_at(p, i)->name;
		hv[2 * i + 1] = scgi_header_at(p, i)->value;
	}
	buf_init(&out, 0);
	if (scgi_response(&out, status, NULL, hv, body, len) < 0) {
		if (out.len)
			abort();
	} else {
		const char *end = strstr(out.p, "\r\n\r\n");
		if (!end || memcmp(out.p, "Status: ", 8) != 0 ||
		    out.len != (size_t)(end - out.p) + 4 + len || (len && memcmp(end + 4, body, len) != 0))
			abort();
		for (const char *c = out.p; c < end + 2; c++) {
			if ((*c == '\r' && c[1] != '\n') || (*c == '\n' && (c == out.p || c[-1] != '\r')))
				abort();
			lines += *c == '\n';
		}
		if (lines != n + 2)
			abort();
	}
	buf_free(&out);
	free(hv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run whole, bytes, chunks;

	feed(&whole, data, size, WHOLE);
	feed(&bytes, data, size, BYTES);
	feed(&chunks, data, size, CHUNKS);
	same_run(&whole, &bytes);
	same_run(&whole, &chunks);

	const struct scgi_parser *p = &whole.p;
	if (whole.status == SCGI_ERROR && !scgi_error(p))
		abort();
	if (whole.status != SCGI_ERROR && scgi_error(p))
		abort();
	if (whole.header_end || whole.status == SCGI_DONE) {
		check_headers(p);
		size_t len;
		const char *body = scgi_body(p, &len);
		if (whole.header_end && body)
			abort();
		if (len > limits.max_body)
			abort();
		/* The whole request: headers then exactly CONTENT_LENGTH bytes. */
		if (whole.status == SCGI_DONE && !whole.header_end &&
		    strtoull(scgi_header(p, "CONTENT_LENGTH"), NULL, 10) != len)
			abort();
		round_trip(&whole, data);
		respond(p, 100 + 2 * data[0]);
	}
	scgi_free(&whole.p);
	scgi_free(&bytes.p);
	scgi_free(&chunks.p);
	return 0;
}
