/* test_scgi.c -- the SCGI request parser, the response writer and the
 * request encoder (src/scgi.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "buf.h"
#include "scgi.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* What nginx sends with the scgi_params it ships, for
 * curl -H 'Authorization: Bearer s3cret' -H 'Content-Type: application/json'
 *      -d '{"channelId":"general","text":"hi"}' http://localhost/chat/message
 * (CONTENT_LENGTH is prepended by req()). */
static const char *const nginx_post[] = {
	"REQUEST_METHOD", "POST",
	"REQUEST_URI", "/chat/message",
	"QUERY_STRING", "",
	"CONTENT_TYPE", "application/json",
	"DOCUMENT_URI", "/chat/message",
	"DOCUMENT_ROOT", "/usr/share/nginx/html",
	"SCGI", "1",
	"SERVER_PROTOCOL", "HTTP/1.1",
	"REQUEST_SCHEME", "http",
	"REMOTE_ADDR", "127.0.0.1",
	"REMOTE_PORT", "51234",
	"SERVER_PORT", "80",
	"SERVER_NAME", "localhost",
	"HTTP_HOST", "localhost",
	"HTTP_USER_AGENT", "curl/7.88.1",
	"HTTP_ACCEPT", "*/*",
	"HTTP_AUTHORIZATION", "Bearer s3cret",
	"HTTP_CONTENT_TYPE", "application/json",
	"HTTP_CONTENT_LENGTH", "35",
	NULL,
};
static const char nginx_body[] = "{\"channelId\":\"general\",\"text\":\"hi\"}";

/* Encodes CONTENT_LENGTH = strlen(body) then pairs, then body. */
static void req(struct buf *out, const char *const *pairs, const char *body)
{
	const char *all[128];
	char cl[32];
	size_t n = 0;

	snprintf(cl, sizeof cl, "%zu", strlen(body));
	all[n++] = "CONTENT_LENGTH";
	all[n++] = cl;
	for (; pairs[0]; pairs++)
		all[n++] = pairs[0];
	all[n] = NULL;
	buf_init(out, 0);
	ck_assert_int_eq(scgi_encode(out, all, body, strlen(body)), 0);
}

/* Feeds s whole; returns the status, the bytes used in *used. */
static enum scgi_status feed_all(struct scgi_parser *p, const char *s, size_t n, size_t *used)
{
	return scgi_feed(p, s, n, used);
}

/* Feeds s one byte at a time until the parser says more than NEED_MORE. */
static enum scgi_status feed_bytes(struct scgi_parser *p, const char *s, size_t n, size_t *where)
{
	enum scgi_status r = SCGI_NEED_MORE;
	size_t i, used;

	for (i = 0; i < n && r == SCGI_NEED_MORE; i++) {
		r = scgi_feed(p, s + i, 1, &used);
		ck_assert_uint_eq(used, r == SCGI_ERROR ? used : 1);
	}
	*where = i;
	return r;
}

/* ------------------------------------------------------------------------
 * Valid requests */

START_TEST(scgi_protocol_example)
{
	/* The example of the protocol's text, byte for byte. */
	static const char wire[] = "70:"
		"CONTENT_LENGTH" "\0" "27" "\0"
		"SCGI" "\0" "1" "\0"
		"REQUEST_METHOD" "\0" "POST" "\0"
		"REQUEST_URI" "\0" "/deepthought" "\0"
		","
		"What is the answer to life?";
	struct scgi_parser p;
	struct scgi_request r;
	size_t used, len;

	scgi_init(&p, NULL);
	ck_assert_int_eq(feed_all(&p, S(wire), &used), SCGI_DONE);
	ck_assert_uint_eq(used, sizeof wire - 1);
	ck_assert_ptr_null(scgi_error(&p));
	ck_assert_uint_eq(scgi_header_count(&p), 4);
	ck_assert_str_eq(scgi_header_at(&p, 0)->name, "CONTENT_LENGTH");
	ck_assert_str_eq(scgi_header_at(&p, 0)->value, "27");
	ck_assert_str_eq(scgi_header_at(&p, 3)->name, "REQUEST_URI");
	ck_assert_ptr_null(scgi_header_at(&p, 4));
	ck_assert_str_eq(scgi_header(&p, "SCGI"), "1");
	ck_assert_ptr_null(scgi_header(&p, "PATH_INFO"));
	const char *body = scgi_body(&p, &len);
	ck_assert_uint_eq(len, 27);
	ck_assert_mem_eq(body, "What is the answer to life?", 27);
	ck_assert_int_eq(scgi_request(&p, &r, NULL), 0);
	ck_assert_str_eq(r.method, "POST");
	ck_assert_str_eq(r.path, "/deepthought");
	ck_assert_str_eq(r.query, "");
	ck_assert_ptr_null(r.authorization);
	ck_assert_ptr_null(r.remote_user);
	ck_assert_ptr_null(r.content_type);
	ck_assert_uint_eq(r.body_len, 27);
	ck_assert_int_eq(r.body_too_large, 0);
	scgi_free(&p);
}
END_TEST

START_TEST(scgi_nginx_post)
{
	struct scgi_parser p;
	struct scgi_request r;
	struct buf w;
	size_t used;

	req(&w, nginx_post, nginx_body);
	scgi_init(&p, NULL);
	ck_assert_int_eq(feed_all(&p, w.p, w.len, &used), SCGI_DONE);
	ck_assert_uint_eq(used, w.len);
	ck_assert_uint_eq(scgi_header_count(&p), 20);
	for (size_t i = 1; i < 20; i++) {
		ck_assert_str_eq(scgi_header_at(&p, i)->name, nginx_post[2 * (i - 1)]);
		ck_assert_str_eq(scgi_header_at(&p, i)->value, nginx_post[2 * (i - 1) + 1]);
		ck_assert_str_eq(scgi_header(&p, nginx_post[2 * (i - 1)]), nginx_post[2 * (i - 1) + 1]);
	}
	ck_assert_int_eq(scgi_request(&p, &r, NULL), 0);
	ck_assert_str_eq(r.method, "POST");
	ck_assert_str_eq(r.path, "/chat/message");
	ck_assert_str_eq(r.query, "");
	ck_assert_str_eq(r.authorization, "Bearer s3cret");
	ck_assert_ptr_null(r.remote_user);
	ck_assert_str_eq(r.content_type, "application/json");
	ck_assert_uint_eq(r.body_len, strlen(nginx_body));
	ck_assert_mem_eq(r.body, nginx_body, r.body_len);
	scgi_free(&p);
	buf_free(&w);
}
END_TEST

START_TEST(scgi_one_byte_at_a_time)
{
	struct scgi_parser p;
	struct buf w;
	size_t where, len;

	req(&w, nginx_post, nginx_body);
	scgi_init(&p, NULL);
	ck_assert_int_eq(feed_bytes(&p, w.p, w.len, &where), SCGI_DONE);
	ck_assert_uint_eq(where, w.len);
	ck_assert_mem_eq(scgi_body(&p, &len), nginx_body, strlen(nginx_body));
	ck_assert_str_eq(scgi_header(&p, "HTTP_AUTHORIZATION"), "Bearer s3cret");
	scgi_free(&p);
	buf_free(&w);
}
END_TEST

/* Split in two at every place: the same request each time. */
START_TEST(scgi_every_split)
{
	struct buf w;

	req(&w, nginx_post, nginx_body);
	for (size_t k = 0; k <= w.len; k++) {
		struct scgi_parser p;
		struct scgi_request r;
		size_t u1, u2;

		scgi_init(&p, NULL);
		enum scgi_status s1 = scgi_feed(&p, w.p, k, &u1);
		ck_assert_int_eq(s1, k == w.len ? SCGI_DONE : SCGI_NEED_MORE);
		ck_assert_uint_eq(u1, k);
		ck_assert_int_eq(scgi_feed(&p, w.p + k, w.len - k, &u2), SCGI_DONE);
		ck_assert_uint_eq(u2, k == w.len ? 0 : w.len - k);
		ck_assert_int_eq(scgi_request(&p, &r, NULL), 0);
		ck_assert_str_eq(r.path, "/chat/message");
		ck_assert_mem_eq(r.body, nginx_body, r.body_len);
		scgi_free(&p);
	}
	buf_free(&w);
}
END_TEST

START_TEST(scgi_empty_body)
{
	static const char *const get[] = {
		"SCGI", "1", "REQUEST_METHOD", "GET", "REQUEST_URI", "/api/presence", NULL,
	};
	struct scgi_parser p;
	struct scgi_request r;
	struct buf w;
	size_t used, len;

	req(&w, get, "");
	scgi_init(&p, NULL);
	/* Done at the ',' : no body to wait for. */
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len - 1, &used), SCGI_NEED_MORE);
	ck_assert_int_eq(scgi_feed(&p, w.p + w.len - 1, 1, &used), SCGI_DONE);
	ck_assert_uint_eq(used, 1);
	ck_assert_str_eq(scgi_header(&p, "CONTENT_LENGTH"), "0");
	ck_assert_ptr_null(scgi_body(&p, &len));
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(scgi_request(&p, &r, NULL), 0);
	ck_assert_ptr_null(r.body);
	ck_assert_uint_eq(r.body_len, 0);
	scgi_free(&p);
	buf_free(&w);
}
END_TEST

START_TEST(scgi_get_with_query)
{
	static const char *const get[] = {
		"REQUEST_METHOD", "GET",
		"REQUEST_URI", "/api/history?channelId=general&limit=20",
		"QUERY_STRING", "channelId=general&limit=20",
		"CONTENT_TYPE", "",
		"DOCUMENT_URI", "/api/history",
		"SCGI", "1",
		"HTTP_HOST", "localhost",
		NULL,
	};
	struct scgi_parser p;
	struct scgi_request r;
	struct buf w;
	size_t used;

	req(&w, get, "");
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, &used), SCGI_DONE);
	ck_assert_int_eq(scgi_request(&p, &r, NULL), 0);
	ck_assert_str_eq(r.method, "GET");
	ck_assert_str_eq(r.path, "/api/history");
	ck_assert_str_eq(r.query, "channelId=general&limit=20");
	ck_assert_ptr_null(r.content_type);         /* nginx sends "" */
	ck_assert_str_eq(scgi_header(&p, "CONTENT_TYPE"), "");
	scgi_free(&p);
	buf_free(&w);
}
END_TEST

/* Without REQUEST_URI: SCRIPT_NAME + PATH_INFO, and QUERY_STRING. */
START_TEST(scgi_path_info)
{
	static const char *const cgi[] = {
		"SCGI", "1", "REQUEST_METHOD", "GET", "SCRIPT_NAME", "/api",
		"PATH_INFO", "/presence", "QUERY_STRING", "channelId=x", NULL,
	};
	static const char *const info_only[] = {
		"SCGI", "1", "REQUEST_METHOD", "GET", "PATH_INFO", "/api/presence", NULL,
	};
	struct scgi_parser p;
	struct scgi_request r;
	struct buf w;

	req(&w, cgi, "");
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_DONE);
	ck_assert_int_eq(scgi_request(&p, &r, NULL), 0);
	ck_assert_str_eq(r.path, "/api/presence");
	ck_assert_str_eq(r.query, "channelId=x");
	scgi_free(&p);
	buf_free(&w);

	req(&w, info_only, "");
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_DONE);
	ck_assert_int_eq(scgi_request(&p, &r, NULL), 0);
	ck_assert_str_eq(r.path, "/api/presence");
	ck_assert_str_eq(r.query, "");
	scgi_free(&p);
	buf_free(&w);
}
END_TEST

/* REQUEST_URI wins over a rewritten QUERY_STRING: path and query come from
 * the same place. */
START_TEST(scgi_request_uri_first)
{
	static const char *const both[] = {
		"SCGI", "1", "REQUEST_METHOD", "GET", "REQUEST_URI", "/a/b",
		"QUERY_STRING", "x=1", "SCRIPT_NAME", "/c", NULL,
	};
	struct scgi_parser p;
	struct scgi_request r;
	struct buf w;

	req(&w, both, "");
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_DONE);
	ck_assert_int_eq(scgi_request(&p, &r, NULL), 0);
	ck_assert_str_eq(r.path, "/a/b");
	ck_assert_str_eq(r.query, "");
	scgi_free(&p);
	buf_free(&w);
}
END_TEST

START_TEST(scgi_empty_values_are_absent)
{
	static const char *const pairs[] = {
		"SCGI", "1", "REQUEST_METHOD", "POST", "REQUEST_URI", "/api/realtime/token",
		"REMOTE_USER", "", "HTTP_AUTHORIZATION", "", "CONTENT_TYPE", "", NULL,
	};
	struct scgi_parser p;
	struct scgi_request r;
	struct buf w;

	req(&w, pairs, "{}");
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_DONE);
	ck_assert_int_eq(scgi_request(&p, &r, NULL), 0);
	ck_assert_ptr_null(r.remote_user);
	ck_assert_ptr_null(r.authorization);
	ck_assert_ptr_null(r.content_type);
	ck_assert_str_eq(scgi_header(&p, "REMOTE_USER"), "");
	scgi_free(&p);
	buf_free(&w);

	static const char *const user[] = {
		"SCGI", "1", "REQUEST_METHOD", "POST", "REQUEST_URI", "/api/realtime/token",
		"REMOTE_USER", "alice", NULL,
	};
	req(&w, user, "{}");
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_DONE);
	ck_assert_int_eq(scgi_request(&p, &r, NULL), 0);
	ck_assert_str_eq(r.remote_user, "alice");
	scgi_free(&p);
	buf_free(&w);
}
END_TEST

/* Bytes after the body are left to the caller; later feeds take nothing. */
START_TEST(scgi_bytes_after_the_request)
{
	struct scgi_parser p;
	struct buf w;
	size_t used, len;

	req(&w, nginx_post, nginx_body);
	size_t n = w.len;
	ck_assert_int_eq(buf_append(&w, S("GET / HTTP/1.1\r\n")), 0);
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, &used), SCGI_DONE);
	ck_assert_uint_eq(used, n);
	ck_assert_int_eq(scgi_feed(&p, w.p + n, w.len - n, &used), SCGI_DONE);
	ck_assert_uint_eq(used, 0);
	ck_assert_uint_eq(scgi_body(&p, &len) ? len : 0, strlen(nginx_body));
	scgi_free(&p);
	buf_free(&w);
}
END_TEST

START_TEST(scgi_content_length_leading_zeros)
{
	static const char wire[] = "26:"
		"CONTENT_LENGTH" "\0" "007" "\0" "SCGI" "\0" "1" "\0" ","
		"abcdefg";
	struct scgi_parser p;
	size_t used, len;

	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, S(wire), &used), SCGI_DONE);
	ck_assert_uint_eq(used, sizeof wire - 1);
	ck_assert_mem_eq(scgi_body(&p, &len), "abcdefg", 7);
	ck_assert_uint_eq(len, 7);
	scgi_free(&p);
}
END_TEST

START_TEST(scgi_feed_nothing)
{
	struct scgi_parser p;
	size_t used = 99;

	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, NULL, 0, &used), SCGI_NEED_MORE);
	ck_assert_uint_eq(used, 0);
	ck_assert_uint_eq(scgi_header_count(&p), 0);
	ck_assert_ptr_null(scgi_header(&p, "SCGI"));
	ck_assert_ptr_null(scgi_error(&p));
	struct scgi_request r;
	const char *why = NULL;
	ck_assert_int_eq(scgi_request(&p, &r, &why), -1);
	ck_assert_ptr_nonnull(why);
	scgi_free(&p);
	scgi_free(&p);          /* twice is harmless */
}
END_TEST

START_TEST(scgi_defaults)
{
	struct scgi_parser p;
	struct scgi_limits lim = { .max_body = 5 };

	scgi_init(&p, NULL);
	ck_assert_uint_eq(p.lim.max_header, 65536);
	ck_assert_uint_eq(p.lim.max_headers, 256);
	ck_assert_uint_eq(p.lim.max_body, 1024 * 1024);
	scgi_free(&p);
	scgi_init(&p, &lim);
	ck_assert_uint_eq(p.lim.max_header, 65536);
	ck_assert_uint_eq(p.lim.max_body, 5);
	scgi_free(&p);
}
END_TEST

/* ------------------------------------------------------------------------
 * Limits */

START_TEST(scgi_too_large_skips_the_body)
{
	static const char *const pairs[] = {
		"SCGI", "1", "REQUEST_METHOD", "POST", "REQUEST_URI", "/api/emit", NULL,
	};
	struct scgi_limits lim = { .max_body = 10 };
	struct scgi_parser p;
	struct scgi_request r;
	struct buf w;
	size_t used, len, rest;

	req(&w, pairs, "eleven byte");
	scgi_init(&p, &lim);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, &used), SCGI_TOO_LARGE);
	ck_assert_uint_eq(used, w.len - 11);
	ck_assert_ptr_null(scgi_error(&p));
	ck_assert_int_eq(scgi_request(&p, &r, NULL), 0);
	ck_assert_int_eq(r.body_too_large, 1);
	ck_assert_ptr_null(r.body);
	ck_assert_str_eq(r.path, "/api/emit");
	ck_assert_str_eq(scgi_header(&p, "CONTENT_LENGTH"), "11");
	/* The rest is dropped, then the request is done. */
	ck_assert_int_eq(feed_bytes(&p, w.p + used, w.len - used, &rest), SCGI_DONE);
	ck_assert_uint_eq(rest, 11);
	ck_assert_ptr_null(scgi_body(&p, &len));
	ck_assert_int_eq(scgi_request(&p, &r, NULL), 0);
	ck_assert_int_eq(r.body_too_large, 1);
	scgi_free(&p);

	/* Reported once, whatever the split. */
	scgi_init(&p, &lim);
	ck_assert_int_eq(feed_bytes(&p, w.p, w.len, &rest), SCGI_TOO_LARGE);
	ck_assert_uint_eq(rest, w.len - 11);
	ck_assert_int_eq(scgi_feed(&p, w.p + rest, 5, &used), SCGI_NEED_MORE);
	ck_assert_int_eq(scgi_feed(&p, w.p + rest + 5, 6, &used), SCGI_DONE);
	scgi_free(&p);
	buf_free(&w);

	/* An announced body of 2^63 - 1 is not an error, only too large. */
	static const char huge[] = "42:"
		"CONTENT_LENGTH" "\0" "9223372036854775807" "\0" "SCGI" "\0" "1" "\0" ",";
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, S(huge), &used), SCGI_TOO_LARGE);
	ck_assert_int_eq(scgi_feed(&p, S("more"), &used), SCGI_NEED_MORE);
	ck_assert_uint_eq(used, 4);
	scgi_free(&p);
}
END_TEST

START_TEST(scgi_body_at_the_limit)
{
	static const char *const pairs[] = { "SCGI", "1", NULL };
	struct scgi_limits lim = { .max_body = 10 };
	struct scgi_parser p;
	struct buf w;
	size_t len;

	req(&w, pairs, "ten bytes!");
	scgi_init(&p, &lim);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_DONE);
	ck_assert_mem_eq(scgi_body(&p, &len), "ten bytes!", 10);
	scgi_free(&p);
	buf_free(&w);
}
END_TEST

START_TEST(scgi_header_block_limit)
{
	/* "CONTENT_LENGTH\0" "0\0" "SCGI\0" "1\0": 24 bytes. */
	static const char *const pairs[] = { "SCGI", "1", NULL };
	struct scgi_limits at = { .max_header = 24 }, below = { .max_header = 23 };
	struct scgi_parser p;
	struct buf w;
	size_t used;

	req(&w, pairs, "");
	ck_assert_mem_eq(w.p, "24:", 3);
	scgi_init(&p, &at);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_DONE);
	scgi_free(&p);
	/* Refused on the length, before the block arrives. */
	scgi_init(&p, &below);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, &used), SCGI_ERROR);
	ck_assert_uint_eq(used, 2);
	ck_assert_str_eq(scgi_error(&p), "the header block is too large");
	scgi_free(&p);
	buf_free(&w);

	/* A length with many digits stops at the first one too many. */
	struct scgi_limits tiny = { .max_header = 5 };
	scgi_init(&p, &tiny);
	ck_assert_int_eq(scgi_feed(&p, S("9"), &used), SCGI_ERROR);
	scgi_free(&p);
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, S("184467440737095516160:"), &used), SCGI_ERROR);
	ck_assert_uint_eq(used, 6);
	scgi_free(&p);
}
END_TEST

START_TEST(scgi_header_count_limit)
{
	static const char *const pairs[] = { "SCGI", "1", "A", "a", "B", "b", NULL };
	struct scgi_limits at = { .max_headers = 4 }, below = { .max_headers = 3 };
	struct scgi_parser p;
	struct buf w;

	req(&w, pairs, "");
	scgi_init(&p, &at);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_DONE);
	ck_assert_uint_eq(scgi_header_count(&p), 4);
	scgi_free(&p);
	scgi_init(&p, &below);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_ERROR);
	ck_assert_str_eq(scgi_error(&p), "too many headers");
	ck_assert_uint_eq(scgi_header_count(&p), 0);
	scgi_free(&p);
	buf_free(&w);
}
END_TEST

/* ------------------------------------------------------------------------
 * Refusals */

static const struct refusal {
	const char *wire;
	size_t len;
	const char *why;
} refusals[] = {
#define R(lit, why) { (lit), sizeof(lit) - 1, (why) }
	R(":", "the netstring length is empty"),
	R("x", "the netstring length is not a decimal number"),
	R("GET / HTTP/1.1\r\n", "the netstring length is not a decimal number"),
	R("-5:", "the netstring length is not a decimal number"),
	R(" 5:", "the netstring length is not a decimal number"),
	R("5 :", "the netstring length is not a decimal number"),
	R("05:", "the netstring length is 0 or has a leading zero"),
	R("0:,", "the netstring length is 0 or has a leading zero"),
	R("99999999999999999999999:", "the header block is too large"),
	/* The block followed by something else than ','. */
	R("24:" "CONTENT_LENGTH" "\0" "0" "\0" "SCGI" "\0" "1" "\0" ";",
	  "the header block does not end with ','"),
	R("24:" "CONTENT_LENGTH" "\0" "0" "\0" "SCGI" "\0" "1" "\0" "\0",
	  "the header block does not end with ','"),
	/* The announced length is one short: the last NUL becomes the ','. */
	R("23:" "CONTENT_LENGTH" "\0" "0" "\0" "SCGI" "\0" "1" "\0" ",",
	  "the header block does not end with ','"),
	R("23:" "CONTENT_LENGTH" "\0" "0" "\0" "SCGI" "\0" "1" ",",
	  "the header block does not end with NUL"),
	R("22:" "CONTENT_LENGTH" "\0" "0" "\0" "SCGI" "\0" ",",
	  "a header name has no value"),
	R("16:" "CONTENT_LENGTH" "\0" "0" ",", "the header block does not end with NUL"),
	R("15:" "CONTENT_LENGTH" "\0" ",", "a header name has no value"),
	R("1:" "\0" ",", "a header name has no value"),
	R("2:" "\0" "\0" ",", "a header name is empty"),
	R("27:" "CONTENT_LENGTH" "\0" "0" "\0" "SCGI" "\0" "1" "\0" "\0" "x" "\0" ",",
	  "a header name is empty"),
	R("24:" "SCGI" "\0" "1" "\0" "CONTENT_LENGTH" "\0" "0" "\0" ",",
	  "the first header is not CONTENT_LENGTH"),
	R("24:" "content_length" "\0" "0" "\0" "SCGI" "\0" "1" "\0" ",",
	  "the first header is not CONTENT_LENGTH"),
	R("23:" "CONTENT_LENGTH" "\0" "\0" "SCGI" "\0" "1" "\0" ",", "CONTENT_LENGTH is empty"),
	R("25:" "CONTENT_LENGTH" "\0" "+5" "\0" "SCGI" "\0" "1" "\0" ",",
	  "CONTENT_LENGTH is not a decimal number"),
	R("25:" "CONTENT_LENGTH" "\0" "-1" "\0" "SCGI" "\0" "1" "\0" ",",
	  "CONTENT_LENGTH is not a decimal number"),
	R("25:" "CONTENT_LENGTH" "\0" " 5" "\0" "SCGI" "\0" "1" "\0" ",",
	  "CONTENT_LENGTH is not a decimal number"),
	R("25:" "CONTENT_LENGTH" "\0" "5 " "\0" "SCGI" "\0" "1" "\0" ",",
	  "CONTENT_LENGTH is not a decimal number"),
	R("27:" "CONTENT_LENGTH" "\0" "0x10" "\0" "SCGI" "\0" "1" "\0" ",",
	  "CONTENT_LENGTH is not a decimal number"),
	R("42:" "CONTENT_LENGTH" "\0" "9223372036854775808" "\0" "SCGI" "\0" "1" "\0" ",",
	  "CONTENT_LENGTH is out of range"),
	R("46:" "CONTENT_LENGTH" "\0" "99999999999999999999999" "\0" "SCGI" "\0" "1" "\0" ",",
	  "CONTENT_LENGTH is out of range"),
	R("17:" "CONTENT_LENGTH" "\0" "0" "\0" ",", "no SCGI header"),
	R("24:" "CONTENT_LENGTH" "\0" "0" "\0" "scgi" "\0" "1" "\0" ",", "no SCGI header"),
	R("24:" "CONTENT_LENGTH" "\0" "0" "\0" "SCGI" "\0" "2" "\0" ",", "SCGI is not \"1\""),
	R("23:" "CONTENT_LENGTH" "\0" "0" "\0" "SCGI" "\0" "\0" ",", "SCGI is not \"1\""),
	R("25:" "CONTENT_LENGTH" "\0" "0" "\0" "SCGI" "\0" "1 " "\0" ",", "SCGI is not \"1\""),
	R("31:" "CONTENT_LENGTH" "\0" "0" "\0" "SCGI" "\0" "1" "\0" "SCGI" "\0" "1" "\0" ",",
	  "duplicate header SCGI"),
	R("41:" "CONTENT_LENGTH" "\0" "0" "\0" "SCGI" "\0" "1" "\0"
	  "CONTENT_LENGTH" "\0" "5" "\0" ",", "duplicate header CONTENT_LENGTH"),
	R("36:" "CONTENT_LENGTH" "\0" "0" "\0" "SCGI" "\0" "1" "\0" "X\001Y" "\0" "a" "\0"
	  "X\001Y" "\0" "b" "\0" ",", "duplicate header X?Y"),
#undef R
};

/* Each is refused with its reason, whole or a byte at a time, and stays
 * refused. */
START_TEST(scgi_refused)
{
	const struct refusal *t = &refusals[_i];
	struct scgi_parser p;
	struct scgi_request r;
	size_t used, where;
	const char *why;

	scgi_init(&p, NULL);
	ck_assert_msg(feed_all(&p, t->wire, t->len, &used) == SCGI_ERROR, "case %d", _i);
	ck_assert_str_eq(scgi_error(&p), t->why);
	ck_assert_int_eq(scgi_feed(&p, S("1"), &used), SCGI_ERROR);
	ck_assert_uint_eq(used, 0);
	ck_assert_int_eq(scgi_request(&p, &r, &why), -1);
	ck_assert_str_eq(why, t->why);
	ck_assert_uint_eq(scgi_header_count(&p), 0);
	ck_assert_ptr_null(scgi_header(&p, "CONTENT_LENGTH"));
	scgi_free(&p);

	scgi_init(&p, NULL);
	ck_assert_int_eq(feed_bytes(&p, t->wire, t->len, &where), SCGI_ERROR);
	ck_assert_str_eq(scgi_error(&p), t->why);
	scgi_free(&p);
}
END_TEST

/* What nginx 1.22 sends for a client that repeats a header: the pair
 * twice. A repeated client header is kept; the web server's own names and
 * the credential are refused. */
START_TEST(scgi_duplicates)
{
	static const char nginx_repeat[] = "106:"
		"CONTENT_LENGTH" "\0" "0" "\0" "REQUEST_METHOD" "\0" "GET" "\0" "SCGI" "\0" "1" "\0"
		"HTTP_X_TRACE" "\0" "a" "\0" "HTTP_X_TRACE" "\0" "b" "\0"
		"HTTP_AUTHORIZATION" "\0" "Bearer s3cret" "\0" ",";
	static const char *const dup_auth[] = {
		"SCGI", "1", "HTTP_AUTHORIZATION", "Bearer a", "REQUEST_METHOD", "POST",
		"HTTP_AUTHORIZATION", "Bearer b", NULL,
	};
	static const char *const dup_user[] = {
		"SCGI", "1", "REMOTE_USER", "alice", "REMOTE_USER", "", NULL,
	};
	static const char *const dup_uri[] = {
		"REQUEST_URI", "/api/emit", "SCGI", "1", "REQUEST_URI", "/chat/message", NULL,
	};
	static const char *const cased[] = {
		"SCGI", "1", "HTTP_X", "a", "http_x", "b", NULL,
	};
	struct scgi_parser p;
	struct buf w;

	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, S(nginx_repeat), NULL), SCGI_DONE);
	ck_assert_str_eq(scgi_header(&p, "HTTP_X_TRACE"), "a");
	ck_assert_uint_eq(scgi_header_count(&p), 6);
	ck_assert_str_eq(scgi_header_at(&p, 3)->value, "a");
	ck_assert_str_eq(scgi_header_at(&p, 4)->value, "b");
	ck_assert_str_eq(scgi_header(&p, "HTTP_AUTHORIZATION"), "Bearer s3cret");
	scgi_free(&p);

	req(&w, dup_auth, "");
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_ERROR);
	ck_assert_str_eq(scgi_error(&p), "duplicate header HTTP_AUTHORIZATION");
	scgi_free(&p);
	buf_free(&w);

	req(&w, dup_user, "");
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_ERROR);
	ck_assert_str_eq(scgi_error(&p), "duplicate header REMOTE_USER");
	scgi_free(&p);
	buf_free(&w);

	req(&w, dup_uri, "");
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_ERROR);
	ck_assert_str_eq(scgi_error(&p), "duplicate header REQUEST_URI");
	scgi_free(&p);
	buf_free(&w);

	/* CGI names are case-sensitive: these are two names. */
	req(&w, cased, "");
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_DONE);
	ck_assert_str_eq(scgi_header(&p, "HTTP_X"), "a");
	ck_assert_str_eq(scgi_header(&p, "http_x"), "b");
	ck_assert_ptr_null(scgi_header(&p, "HTTP_Y"));
	ck_assert_ptr_null(scgi_header(&p, "A"));
	ck_assert_ptr_null(scgi_header(&p, "zzz"));
	scgi_free(&p);
	buf_free(&w);

	/* A long name is cut in the reason. */
	char name[200];
	memset(name, 'N', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	const char *const longdup[] = { "SCGI", "1", name, "", name, "", NULL };
	req(&w, longdup, "");
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_ERROR);
	ck_assert_uint_lt(strlen(scgi_error(&p)), 80);
	ck_assert_str_eq(scgi_error(&p) + strlen(scgi_error(&p)) - 3, "...");
	scgi_free(&p);
	buf_free(&w);
}
END_TEST

START_TEST(scgi_request_refused)
{
	static const char *const no_method[] = {
		"SCGI", "1", "REQUEST_URI", "/api/emit", NULL,
	};
	static const char *const empty_method[] = {
		"SCGI", "1", "REQUEST_METHOD", "", "REQUEST_URI", "/api/emit", NULL,
	};
	static const char *const no_path[] = {
		"SCGI", "1", "REQUEST_METHOD", "GET", "QUERY_STRING", "a=b", NULL,
	};
	static const char *const query_only[] = {
		"SCGI", "1", "REQUEST_METHOD", "GET", "REQUEST_URI", "?a=b",
		"PATH_INFO", "/api/emit", NULL,
	};
	const char *const *cases[] = { no_method, empty_method, no_path, query_only };
	const char *whys[] = {
		"no REQUEST_METHOD", "no REQUEST_METHOD",
		"no REQUEST_URI, SCRIPT_NAME or PATH_INFO", "no REQUEST_URI, SCRIPT_NAME or PATH_INFO",
	};

	for (size_t i = 0; i < 4; i++) {
		struct scgi_parser p;
		struct scgi_request r;
		struct buf w;
		const char *why = NULL;

		req(&w, cases[i], "");
		scgi_init(&p, NULL);
		/* The protocol is fine; the CGI view is not. */
		ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_DONE);
		ck_assert_int_eq(scgi_request(&p, &r, &why), -1);
		ck_assert_str_eq(why, whys[i]);
		scgi_free(&p);
		buf_free(&w);
	}
}
END_TEST

/* The headers are complete but not the body: no request yet. */
START_TEST(scgi_request_waits_for_the_body)
{
	struct scgi_parser p;
	struct scgi_request r;
	struct buf w;
	const char *why;

	req(&w, nginx_post, nginx_body);
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len - 1, NULL), SCGI_NEED_MORE);
	ck_assert_uint_eq(scgi_header_count(&p), 20);
	ck_assert_int_eq(scgi_request(&p, &r, &why), -1);
	ck_assert_str_eq(why, "the headers are not complete");
	scgi_free(&p);
	buf_free(&w);
}
END_TEST

/* ------------------------------------------------------------------------
 * Responses and the encoder */

START_TEST(scgi_response_format)
{
	static const char *const json[] = { "Content-Type", "application/json", NULL };
	static const char *const slow[] = {
		"Content-Type", "application/json", "Retry-After", "3", NULL,
	};
	struct buf out;

	buf_init(&out, 0);
	ck_assert_int_eq(scgi_response(&out, 200, NULL, json, S("{\"ok\":true}")), 0);
	ck_assert_str_eq(out.p, "Status: 200 OK\r\n"
	                        "Content-Type: application/json\r\n"
	                        "Content-Length: 11\r\n"
	                        "\r\n"
	                        "{\"ok\":true}");
	buf_reset(&out);
	ck_assert_int_eq(scgi_response(&out, 429, NULL, slow, S("{}")), 0);
	ck_assert_str_eq(out.p, "Status: 429 Too Many Requests\r\n"
	                        "Content-Type: application/json\r\n"
	                        "Retry-After: 3\r\n"
	                        "Content-Length: 2\r\n"
	                        "\r\n{}");
	buf_reset(&out);
	ck_assert_int_eq(scgi_response(&out, 413, NULL, NULL, NULL, 0), 0);
	ck_assert_str_eq(out.p, "Status: 413 Content Too Large\r\nContent-Length: 0\r\n\r\n");
	buf_reset(&out);
	ck_assert_int_eq(scgi_response(&out, 418, "I'm a teapot", NULL, NULL, 0), 0);
	ck_assert_str_eq(out.p, "Status: 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n");
	buf_reset(&out);
	ck_assert_int_eq(scgi_response(&out, 599, NULL, NULL, NULL, 0), 0);
	ck_assert_str_eq(out.p, "Status: 599 Server Error\r\nContent-Length: 0\r\n\r\n");
	/* A body may hold NULs. */
	buf_reset(&out);
	ck_assert_int_eq(scgi_response(&out, 200, NULL, NULL, S("a\0b")), 0);
	ck_assert_uint_eq(out.len, strlen("Status: 200 OK\r\nContent-Length: 3\r\n\r\n") + 3);
	buf_free(&out);
}
END_TEST

START_TEST(scgi_response_refused)
{
	static const char *const injected[] = {
		"Content-Type", "application/json\r\nSet-Cookie: a=b", NULL,
	};
	static const char *const lf[] = { "X-A", "a\nb", NULL };
	static const char *const space[] = { "Bad Name", "x", NULL };
	static const char *const colon[] = { "X:Y", "x", NULL };
	static const char *const empty[] = { "", "x", NULL };
	static const char *const status[] = { "status", "500", NULL };
	static const char *const length[] = { "content-length", "9", NULL };
	static const char *const odd[] = { "X-A", NULL };
	const char *const *bad[] = { injected, lf, space, colon, empty, status, length, odd };
	struct buf out;

	buf_init(&out, 0);
	ck_assert_int_eq(buf_puts(&out, "kept"), 0);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ck_assert_msg(scgi_response(&out, 200, NULL, bad[i], S("x")) == -1, "case %zu", i);
		ck_assert_str_eq(out.p, "kept");
	}
	ck_assert_int_eq(scgi_response(&out, 99, NULL, NULL, NULL, 0), -1);
	ck_assert_int_eq(scgi_response(&out, 600, NULL, NULL, NULL, 0), -1);
	ck_assert_int_eq(scgi_response(&out, 200, "OK\r\nX: y", NULL, NULL, 0), -1);
	ck_assert_str_eq(out.p, "kept");
	/* Tab is allowed in a value. */
	static const char *const tab[] = { "X-A", "a\tb", NULL };
	ck_assert_int_eq(scgi_response(&out, 200, NULL, tab, NULL, 0), 0);
	buf_free(&out);

	/* A full buffer leaves it as it was. */
	struct buf small;
	buf_init(&small, 40);
	ck_assert_int_eq(buf_puts(&small, "kept"), 0);
	ck_assert_int_eq(scgi_response(&small, 200, NULL, NULL, S("0123456789012345678901234567890123456789")), -1);
	ck_assert_uint_eq(small.len, 4);
	ck_assert_str_eq(small.p, "kept");
	buf_free(&small);
}
END_TEST

START_TEST(scgi_encode_round_trip)
{
	static const char *const pairs[] = {
		"CONTENT_LENGTH", "3", "SCGI", "1", "EMPTY", "", "HTTP_X", "\xff\x01", NULL,
	};
	struct scgi_parser p;
	struct buf w;
	size_t len;

	buf_init(&w, 0);
	ck_assert_int_eq(scgi_encode(&w, pairs, "a\0b", 3), 0);
	ck_assert_mem_eq(w.p, "41:CONTENT_LENGTH\0" "3\0" "SCGI\0" "1\0" "EMPTY\0" "\0"
	                      "HTTP_X\0" "\xff\x01\0" ",a\0b", w.len);
	scgi_init(&p, NULL);
	ck_assert_int_eq(scgi_feed(&p, w.p, w.len, NULL), SCGI_DONE);
	ck_assert_uint_eq(scgi_header_count(&p), 4);
	for (size_t i = 0; i < 4; i++) {
		ck_assert_str_eq(scgi_header_at(&p, i)->name, pairs[2 * i]);
		ck_assert_str_eq(scgi_header_at(&p, i)->value, pairs[2 * i + 1]);
	}
	ck_assert_mem_eq(scgi_body(&p, &len), "a\0b", 3);
	scgi_free(&p);

	/* A full buffer is left as it was. */
	struct buf small;
	buf_init(&small, 10);
	ck_assert_int_eq(scgi_encode(&small, pairs, NULL, 0), -1);
	ck_assert_uint_eq(small.len, 0);
	buf_free(&small);
	buf_free(&w);
}
END_TEST

static Suite *scgi_suite(void)
{
	Suite *s = suite_create("scgi");
	TCase *tc;

	tc = tcase_create("requests");
	tcase_add_test(tc, scgi_protocol_example);
	tcase_add_test(tc, scgi_nginx_post);
	tcase_add_test(tc, scgi_one_byte_at_a_time);
	tcase_add_test(tc, scgi_every_split);
	tcase_add_test(tc, scgi_empty_body);
	tcase_add_test(tc, scgi_get_with_query);
	tcase_add_test(tc, scgi_path_info);
	tcase_add_test(tc, scgi_request_uri_first);
	tcase_add_test(tc, scgi_empty_values_are_absent);
	tcase_add_test(tc, scgi_bytes_after_the_request);
	tcase_add_test(tc, scgi_content_length_leading_zeros);
	tcase_add_test(tc, scgi_feed_nothing);
	tcase_add_test(tc, scgi_defaults);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_test(tc, scgi_too_large_skips_the_body);
	tcase_add_test(tc, scgi_body_at_the_limit);
	tcase_add_test(tc, scgi_header_block_limit);
	tcase_add_test(tc, scgi_header_count_limit);
	suite_add_tcase(s, tc);

	tc = tcase_create("refusals");
	tcase_add_loop_test(tc, scgi_refused, 0, (int)(sizeof refusals / sizeof refusals[0]));
	tcase_add_test(tc, scgi_duplicates);
	tcase_add_test(tc, scgi_request_refused);
	tcase_add_test(tc, scgi_request_waits_for_the_body);
	suite_add_tcase(s, tc);

	tc = tcase_create("responses");
	tcase_add_test(tc, scgi_response_format);
	tcase_add_test(tc, scgi_response_refused);
	tcase_add_test(tc, scgi_encode_round_trip);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(scgi_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
