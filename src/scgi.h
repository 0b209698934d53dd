/* scgi.h -- SCGI requests in, CGI-style responses out (the API's SCGI front).
 *
 * Pure code: bytes in, values out; no sockets, no globals.
 *
 * Wire format (the SCGI protocol, Neil Schemenauer, 2008): the web server
 * opens a connection, sends one request and reads the response until the
 * responder closes. The request is a netstring of NUL-terminated name/value
 * pairs, then exactly CONTENT_LENGTH bytes of body:
 *
 *     70:CONTENT_LENGTH\0 27\0 SCGI\0 1\0 REQUEST_METHOD\0 POST\0 ...\0 ,<27 bytes>
 *
 * (without the spaces). The parser is incremental: feed it whatever each
 * read returned; the outcome never depends on how the bytes were split. It
 * is bounded: it keeps the header block (at most max_header bytes, which
 * is checked on the announced length, before anything is stored) and the
 * body (at most max_body bytes), and memory grows with the bytes received,
 * not with the lengths announced.
 *
 * Refused, as SCGI_ERROR with a reason (the front answers 400 and closes):
 *  - a netstring length that is empty, not decimal, starts with '0' (a
 *    leading zero; "0:" too, as an empty block cannot hold CONTENT_LENGTH),
 *    or is over max_header;
 *  - a block not followed by ',';
 *  - a block whose last byte is not NUL (its last string is unterminated),
 *    or that holds an odd number of strings (a name without a value);
 *  - an empty name (an empty value is fine: nginx sends QUERY_STRING "");
 *  - more than max_headers pairs;
 *  - a name that appears twice, unless it is a client's header (HTTP_*)
 *    other than HTTP_AUTHORIZATION. The protocol forbids duplicates, and
 *    a second CONTENT_LENGTH, SCGI, REQUEST_URI, REMOTE_USER or
 *    HTTP_AUTHORIZATION would be ambiguous. But nginx before 1.23 (Debian
 *    12 ships 1.22) passes a request header that a client repeats once per
 *    line (two "X-Trace:" lines give HTTP_X_TRACE twice), where Apache and
 *    later nginx merge them: refusing those would answer 400 to a harmless
 *    request. A repeated HTTP_* name is kept as it came: scgi_header gives
 *    its first value, scgi_header_at every pair. Names are compared byte
 *    for byte (CGI names are case-sensitive);
 *  - a first pair that is not CONTENT_LENGTH, or whose value is not one or
 *    more ASCII digits (no sign, no spaces; leading zeros are allowed, as
 *    in the protocol's grammar), or is over 2^63 - 1;
 *  - no SCGI pair, or one whose value is not exactly "1".
 *
 * A CONTENT_LENGTH over max_body is SCGI_TOO_LARGE, reported once, when the
 * header block is complete: the headers can be read, the body is not kept.
 * The front answers 413. If it goes on feeding, the parser reads and drops
 * the announced body and then says SCGI_DONE (with body_too_large set).
 * The front should: nginx writes the whole request before it reads the
 * response, and a responder that closes with body bytes unread makes the
 * kernel reset the connection, so nginx answers 502 instead of the 413.
 * How long to drain is the front's choice.
 *
 * Bytes after the body are not part of the request (one request per
 * connection): scgi_feed does not consume them and *used says where the
 * request ended. */
#ifndef AEOLUS_SCGI_H
#define AEOLUS_SCGI_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum scgi_status {
	SCGI_NEED_MORE,         /* the request is not complete: feed more */
	SCGI_DONE,              /* a whole request; more feeding changes nothing */
	SCGI_ERROR,             /* malformed (scgi_error says why); sticky */
	SCGI_TOO_LARGE,         /* headers parsed, CONTENT_LENGTH > max_body (once) */
};

/* 0 in a field: its default. */
struct scgi_limits {
	size_t max_header;      /* bytes in the netstring (default 65536) */
	size_t max_headers;     /* name/value pairs (default 256) */
	size_t max_body;        /* bytes of body kept (default 1 MiB) */
};

/* A pair; both point into the parser's copy of the header block and are
 * NUL-terminated (neither can hold a NUL). */
struct scgi_header {
	const char *name;
	const char *value;
};

/* The parser's own: read it through the functions below (lim holds the
 * limits in effect). */
struct scgi_parser {
	struct scgi_limits lim;
	int state;
	const char *error;
	char errbuf[80];
	size_t hlen;                    /* the netstring's announced length */
	struct buf head;                /* the header block */
	struct scgi_header *h;          /* n pairs in wire order */
	const struct scgi_header **by_name;     /* the same, sorted by name */
	size_t n;
	uint64_t content_length;
	uint64_t left;                  /* body bytes still to come */
	struct buf body;
	char *path;                     /* see struct scgi_request */
	const char *query;
	int too_large;
};

/* Prepares p; lim may be NULL (all defaults). */
void scgi_init(struct scgi_parser *p, const struct scgi_limits *lim);
/* Frees what p holds; every pointer taken from it dies. */
void scgi_free(struct scgi_parser *p);

/* Consumes bytes of the request; *used (if used is not NULL) says how many:
 * len, except when the request ends inside this chunk (SCGI_DONE), the
 * headers do (SCGI_TOO_LARGE: feed the rest, data + *used, to skip the
 * body), or a byte is refused (SCGI_ERROR: up to and with that byte).
 * After SCGI_DONE or SCGI_ERROR nothing more is consumed. data may be NULL
 * when len is 0. */
enum scgi_status scgi_feed(struct scgi_parser *p, const void *data, size_t len, size_t *used);

/* Why the request was refused, or NULL. Printable ASCII only. */
const char *scgi_error(const struct scgi_parser *p);

/* Once the headers are parsed (SCGI_TOO_LARGE, SCGI_DONE): the number of
 * pairs, the i-th in wire order (CONTENT_LENGTH first), and the value of a
 * name (NULL when absent; the first one of a repeated HTTP_* name). Before
 * that, and after SCGI_ERROR: 0 and NULL. */
size_t scgi_header_count(const struct scgi_parser *p);
const struct scgi_header *scgi_header_at(const struct scgi_parser *p, size_t i);
const char *scgi_header(const struct scgi_parser *p, const char *name);

/* After SCGI_DONE: the body (NULL when empty or dropped) and its length. */
const char *scgi_body(const struct scgi_parser *p, size_t *len);

/* The CGI view of a request, as the API wants it. Pointers live as long as
 * the parser. */
struct scgi_request {
	const char *method;         /* REQUEST_METHOD */
	const char *path;           /* REQUEST_URI up to '?'; without REQUEST_URI,
	                               SCRIPT_NAME + PATH_INFO. As sent: not
	                               percent-decoded, not normalised */
	const char *query;          /* REQUEST_URI after '?' ("" when there is no
	                               '?'); without REQUEST_URI, QUERY_STRING or "" */
	const char *authorization;  /* HTTP_AUTHORIZATION; NULL when absent or empty */
	const char *remote_user;    /* REMOTE_USER; NULL when absent or empty (nginx
	                               sends "" for $remote_user without a login) */
	const char *content_type;   /* CONTENT_TYPE; NULL when absent or empty */
	const char *body;           /* NULL when empty or dropped */
	size_t body_len;
	int body_too_large;         /* CONTENT_LENGTH was over max_body */
};

/* Fills r after SCGI_DONE or SCGI_TOO_LARGE. Returns 0; -1 with *why set
 * (why may be NULL) before that, after SCGI_ERROR, or when REQUEST_METHOD
 * is missing or empty or no path can be found: the front answers 400. */
int scgi_request(const struct scgi_parser *p, struct scgi_request *r, const char **why);

/* Appends a CGI-style response, as SCGI responders write it and as nginx's
 * scgi module and Apache's mod_proxy_scgi read it:
 *
 *     Status: 200 OK\r\n
 *     Content-Type: application/json\r\n      (headers, in order)
 *     Content-Length: 17\r\n
 *     \r\n
 *     {"error": "nope"}
 *
 * headers is NULL or a NULL-terminated list name, value, name, value, ...
 * reason NULL: the standard phrase of status. Returns 0; -1 (out left as it
 * was) when status is not within 100..599, a name is not an HTTP token, a
 * value or the reason holds a control character other than tab (CR and LF
 * would let a value write headers of its own), a header is Status or
 * Content-Length (written here), or out is full. */
int scgi_response(struct buf *out, int status, const char *reason,
                  const char *const *headers, const void *body, size_t len);

/* Appends a request as a web server sends it: the netstring of pairs
 * (NULL-terminated name, value, ... list, written in that order) then the
 * body. Nothing is checked or added -- CONTENT_LENGTH must be among the
 * pairs -- so tests can build bad requests with it. Returns 0, or -1
 * (out left as it was) when out is full. */
int scgi_encode(struct buf *out, const char *const *pairs, const void *body, size_t len);

#endif
