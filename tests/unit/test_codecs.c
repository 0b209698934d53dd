/* test_codecs.c -- Engine.IO and Socket.IO codecs, and the small modules
 * they stand on: base64 and ids (util), dict, buf. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "buf.h"
#include "dict.h"
#include "eio_codec.h"
#include "sio_codec.h"
#include "util.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* ------------------------------------------------------------------------
 * Engine.IO */

/* What eio_payload_decode delivered, copied out of the callback. */
struct seen {
	int n;
	int stop_at;            /* return 7 from the callback for packet n */
	struct {
		enum eio_type type;
		int binary;
		char data[128];
		size_t len;
	} p[8];
};

static int collect(const struct eio_packet *p, void *ud)
{
	struct seen *s = ud;

	ck_assert_int_lt(s->n, 8);
	ck_assert_uint_lt(p->len, sizeof s->p[0].data);
	s->p[s->n].type = p->type;
	s->p[s->n].binary = p->binary;
	s->p[s->n].len = p->len;
	memcpy(s->p[s->n].data, p->data, p->len);
	s->n++;
	return s->n == s->stop_at ? 7 : 0;
}

static int decode(const char *s, size_t n, struct seen *out)
{
	memset(out, 0, sizeof *out);
	return eio_payload_decode(s, n, collect, out);
}

START_TEST(eio_packet_parse_types)
{
	struct eio_packet p;

	ck_assert_int_eq(eio_packet_parse(S("4hello"), &p), 0);
	ck_assert_int_eq(p.type, EIO_MESSAGE);
	ck_assert_int_eq(p.binary, 0);
	ck_assert_uint_eq(p.len, 5);
	ck_assert_mem_eq(p.data, "hello", 5);

	ck_assert_int_eq(eio_packet_parse(S("2"), &p), 0);
	ck_assert_int_eq(p.type, EIO_PING);
	ck_assert_uint_eq(p.len, 0);

	ck_assert_int_eq(eio_packet_parse(S("3probe"), &p), 0);
	ck_assert_int_eq(p.type, EIO_PONG);
	ck_assert_mem_eq(p.data, "probe", 5);

	ck_assert_int_eq(eio_packet_parse(S("0"), &p), 0);
	ck_assert_int_eq(p.type, EIO_OPEN);
	ck_assert_int_eq(eio_packet_parse(S("6"), &p), 0);
	ck_assert_int_eq(p.type, EIO_NOOP);
}
END_TEST

START_TEST(eio_packet_parse_bad_type)
{
	struct eio_packet p;

	ck_assert_int_eq(eio_packet_parse(S(""), &p), -1);
	ck_assert_int_eq(eio_packet_parse(S("7"), &p), -1);
	ck_assert_int_eq(eio_packet_parse(S("/hello"), &p), -1);
	ck_assert_int_eq(eio_packet_parse(S("x4"), &p), -1);
	ck_assert_int_eq(eio_packet_parse(S("b4"), &p), -1);
}
END_TEST

START_TEST(eio_payload_one)
{
	struct seen s;

	ck_assert_int_eq(decode(S("4hello"), &s), 0);
	ck_assert_int_eq(s.n, 1);
	ck_assert_int_eq(s.p[0].type, EIO_MESSAGE);
	ck_assert_uint_eq(s.p[0].len, 5);
	ck_assert_mem_eq(s.p[0].data, "hello", 5);
}
END_TEST

START_TEST(eio_payload_joined)
{
	struct seen s;

	ck_assert_int_eq(decode(S("4a\x1e" "2\x1e" "4ccc\x1e" "1"), &s), 0);
	ck_assert_int_eq(s.n, 4);
	ck_assert_int_eq(s.p[0].type, EIO_MESSAGE);
	ck_assert_mem_eq(s.p[0].data, "a", 1);
	ck_assert_int_eq(s.p[1].type, EIO_PING);
	ck_assert_uint_eq(s.p[1].len, 0);
	ck_assert_int_eq(s.p[2].type, EIO_MESSAGE);
	ck_assert_uint_eq(s.p[2].len, 3);
	ck_assert_mem_eq(s.p[2].data, "ccc", 3);
	ck_assert_int_eq(s.p[3].type, EIO_CLOSE);
}
END_TEST

START_TEST(eio_payload_binary)
{
	struct seen s;

	ck_assert_int_eq(decode(S("4x\x1e" "bAQID/w==\x1e" "4y"), &s), 0);
	ck_assert_int_eq(s.n, 3);
	ck_assert_int_eq(s.p[0].binary, 0);
	ck_assert_int_eq(s.p[1].type, EIO_MESSAGE);
	ck_assert_int_eq(s.p[1].binary, 1);
	ck_assert_uint_eq(s.p[1].len, 4);
	ck_assert_mem_eq(s.p[1].data, "\x01\x02\x03\xff", 4);
	ck_assert_int_eq(s.p[2].binary, 0);
	ck_assert_mem_eq(s.p[2].data, "y", 1);

	/* "b" alone is an empty binary message. */
	ck_assert_int_eq(decode(S("b"), &s), 0);
	ck_assert_int_eq(s.n, 1);
	ck_assert_int_eq(s.p[0].binary, 1);
	ck_assert_uint_eq(s.p[0].len, 0);
}
END_TEST

START_TEST(eio_payload_empty)
{
	struct seen s;

	ck_assert_int_eq(decode("", 0, &s), -1);
	ck_assert_int_eq(s.n, 0);
}
END_TEST

START_TEST(eio_payload_empty_record)
{
	struct seen s;

	/* An empty record stops the walk: what came before it was delivered,
	 * nothing after it is. */
	ck_assert_int_eq(decode(S("4a\x1e\x1e" "4b"), &s), -1);
	ck_assert_int_eq(s.n, 1);
	ck_assert_mem_eq(s.p[0].data, "a", 1);

	ck_assert_int_eq(decode(S("4a\x1e"), &s), -1);
	ck_assert_int_eq(s.n, 1);
	ck_assert_int_eq(decode(S("\x1e" "4a"), &s), -1);
	ck_assert_int_eq(s.n, 0);
}
END_TEST

START_TEST(eio_payload_bad_type)
{
	struct seen s;

	ck_assert_int_eq(decode(S("9"), &s), -1);
	ck_assert_int_eq(s.n, 0);
	ck_assert_int_eq(decode(S("4a\x1e" "x\x1e" "4b"), &s), -1);
	ck_assert_int_eq(s.n, 1);
}
END_TEST

START_TEST(eio_payload_bad_base64)
{
	struct seen s;

	ck_assert_int_eq(decode(S("bAQID"), &s), 0);
	ck_assert_int_eq(decode(S("bAQI"), &s), -1);         /* length not a multiple of 4 */
	ck_assert_int_eq(s.n, 0);
	ck_assert_int_eq(decode(S("b!!!!"), &s), -1);
	ck_assert_int_eq(decode(S("bAQ=I"), &s), -1);
	ck_assert_int_eq(decode(S("bA==="), &s), -1);
	ck_assert_int_eq(decode(S("bAQ I"), &s), -1);
	ck_assert_int_eq(decode(S("4a\x1e" "b-_-_\x1e" "4b"), &s), -1);
	ck_assert_int_eq(s.n, 1);
}
END_TEST

START_TEST(eio_payload_callback_stops)
{
	struct seen s;

	memset(&s, 0, sizeof s);
	s.stop_at = 2;
	ck_assert_int_eq(eio_payload_decode(S("4a\x1e" "4b\x1e" "4c"), collect, &s), 7);
	ck_assert_int_eq(s.n, 2);
}
END_TEST

START_TEST(eio_msg_refs)
{
	struct eio_msg *m = eio_msg_text(EIO_MESSAGE, S("hello"));

	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(m->refs, 1);
	ck_assert_uint_eq(m->binary, 0);
	ck_assert_uint_eq(m->len, 6);
	ck_assert_str_eq(m->data, "4hello");
	ck_assert_ptr_eq(eio_msg_ref(m), m);
	ck_assert_uint_eq(m->refs, 2);
	eio_msg_unref(m);
	ck_assert_uint_eq(m->refs, 1);
	ck_assert_str_eq(m->data, "4hello");
	eio_msg_unref(m);
	eio_msg_unref(NULL);

	m = eio_msg_text(EIO_PING, NULL, 0);
	ck_assert_str_eq(m->data, "2");
	ck_assert_uint_eq(m->len, 1);
	eio_msg_unref(m);

	m = eio_msg_binary(S("\x00\x01\xff"));
	ck_assert_uint_eq(m->binary, 1);
	ck_assert_uint_eq(m->len, 3);
	ck_assert_mem_eq(m->data, "\x00\x01\xff", 3);
	eio_msg_unref(m);
}
END_TEST

START_TEST(eio_msg_from_buf_copies)
{
	struct buf b;
	struct eio_msg *m;

	buf_init(&b, 0);
	buf_puts(&b, "42[\"a\"]");
	m = eio_msg_from_buf(&b);
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(b.len, 0);
	buf_puts(&b, "overwritten");
	ck_assert_uint_eq(m->len, 7);
	ck_assert_str_eq(m->data, "42[\"a\"]");
	ck_assert_uint_eq(m->refs, 1);
	eio_msg_unref(m);
	buf_free(&b);
}
END_TEST

START_TEST(eio_payload_append_round_trip)
{
	struct eio_msg *msgs[] = {
		eio_msg_text(EIO_MESSAGE, S("hello")),
		eio_msg_binary(S("\x00\x01\x02\xff")),
		eio_msg_text(EIO_PING, NULL, 0),
		eio_msg_binary(S("")),
		eio_msg_text(EIO_MESSAGE, S("2[\"x\"]")),
	};
	const size_t n = sizeof msgs / sizeof msgs[0];
	struct buf out;
	struct seen s;

	buf_init(&out, 0);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(eio_payload_append(&out, msgs[i]), 0);
	ck_assert_str_eq(out.p, "4hello\x1e" "bAAEC/w==\x1e" "2\x1e" "b\x1e" "42[\"x\"]");

	ck_assert_int_eq(decode(out.p, out.len, &s), 0);
	ck_assert_int_eq(s.n, (int)n);
	for (size_t i = 0; i < n; i++) {
		const struct eio_msg *m = msgs[i];
		ck_assert_int_eq(s.p[i].binary, (int)m->binary);
		if (m->binary) {
			ck_assert_uint_eq(s.p[i].len, m->len);
			ck_assert_mem_eq(s.p[i].data, m->data, m->len);
		} else {
			ck_assert_int_eq(s.p[i].type, m->data[0] - '0');
			ck_assert_uint_eq(s.p[i].len, m->len - 1);
			ck_assert_mem_eq(s.p[i].data, m->data + 1, m->len - 1);
		}
		eio_msg_unref(msgs[i]);
	}
	buf_free(&out);
}
END_TEST

START_TEST(eio_payload_append_limit)
{
	struct eio_msg *m = eio_msg_text(EIO_MESSAGE, S("12345"));
	struct buf out;

	buf_init(&out, 10);
	ck_assert_int_eq(eio_payload_append(&out, m), 0);      /* "412345" */
	ck_assert_int_eq(eio_payload_append(&out, m), -1);     /* 13 bytes */
	buf_free(&out);
	eio_msg_unref(m);
}
END_TEST

/* ------------------------------------------------------------------------
 * Socket.IO decoding */

/* Decodes a packet that must be valid; the caller clears it. */
static void ok(const char *s, struct sio_packet *p)
{
	const char *err = NULL;
	int r = sio_packet_decode(s, strlen(s), p, &err);
	ck_assert_msg(r == 0, "'%s' refused: %s", s, err ? err : "(no error)");
}

/* A packet that must be refused, with an error and nothing to free. */
static void bad(const char *s, size_t n)
{
	struct sio_packet p;
	const char *err = NULL;

	ck_assert_msg(sio_packet_decode(s, n, &p, &err) == -1, "'%.*s' accepted", (int)n, s);
	ck_assert_msg(err && *err, "'%.*s': no error message", (int)n, s);
	ck_assert_ptr_null(p.data);
}

#define BAD(lit) bad(S(lit))

/* The packet's data serialised, to compare with a literal. */
static const char *json_of(const struct sio_packet *p)
{
	size_t len;
	return p->data ? sio_json(p->data, &len) : "(none)";
}

START_TEST(sio_decode_connect)
{
	struct sio_packet p;

	ok("0", &p);
	ck_assert_int_eq(p.type, SIO_CONNECT);
	ck_assert_str_eq(p.nsp, "/");
	ck_assert_int_eq(p.id, -1);
	ck_assert_ptr_null(p.data);
	sio_packet_clear(&p);

	ok("0{\"token\":\"123\"}", &p);
	ck_assert_str_eq(p.nsp, "/");
	ck_assert_str_eq(json_of(&p), "{\"token\":\"123\"}");
	sio_packet_clear(&p);

	ok("0/custom,", &p);
	ck_assert_str_eq(p.nsp, "/custom");
	ck_assert_ptr_null(p.data);
	sio_packet_clear(&p);

	ok("0/custom,{\"token\":\"abc\"}", &p);
	ck_assert_str_eq(p.nsp, "/custom");
	ck_assert_str_eq(json_of(&p), "{\"token\":\"abc\"}");
	sio_packet_clear(&p);

	/* A namespace with nothing after it needs no comma. */
	ok("0/random", &p);
	ck_assert_int_eq(p.type, SIO_CONNECT);
	ck_assert_str_eq(p.nsp, "/random");
	ck_assert_ptr_null(p.data);
	sio_packet_clear(&p);

	BAD("0[]");
	BAD("0\"x\"");
	BAD("0/custom,[1]");
}
END_TEST

START_TEST(sio_decode_disconnect)
{
	struct sio_packet p;

	ok("1", &p);
	ck_assert_int_eq(p.type, SIO_DISCONNECT);
	ck_assert_str_eq(p.nsp, "/");
	sio_packet_clear(&p);

	ok("1/chat,", &p);
	ck_assert_int_eq(p.type, SIO_DISCONNECT);
	ck_assert_str_eq(p.nsp, "/chat");
	sio_packet_clear(&p);

	BAD("1{}");
	BAD("1/chat,[]");
}
END_TEST

START_TEST(sio_decode_event)
{
	struct sio_packet p;

	ok("2[\"message\",1,\"2\",{\"3\":[true]}]", &p);
	ck_assert_int_eq(p.type, SIO_EVENT);
	ck_assert_str_eq(p.nsp, "/");
	ck_assert_int_eq(p.id, -1);
	ck_assert_str_eq(json_of(&p), "[\"message\",1,\"2\",{\"3\":[true]}]");
	sio_packet_clear(&p);

	ok("2456[\"message-with-ack\",1]", &p);
	ck_assert_int_eq(p.id, 456);
	ck_assert_str_eq(json_of(&p), "[\"message-with-ack\",1]");
	sio_packet_clear(&p);

	ok("2/chat,[\"x\"]", &p);
	ck_assert_str_eq(p.nsp, "/chat");
	ck_assert_int_eq(p.id, -1);
	sio_packet_clear(&p);

	ok("2/chat,0[\"x\"]", &p);
	ck_assert_str_eq(p.nsp, "/chat");
	ck_assert_int_eq(p.id, 0);
	sio_packet_clear(&p);
}
END_TEST

START_TEST(sio_decode_event_bad_shape)
{
	BAD("2");
	BAD("2{}");
	BAD("2[]");
	BAD("2[1,\"a\"]");
	BAD("2\"message\"");
	BAD("2abc[\"message-with-ack\",1,\"2\",{\"3\":[false]}]");
	BAD("2/chat");
	BAD("2/chat,");
	BAD("2[\"a\"");
	BAD("2[\"a\"]x");
	BAD("2[\"a\"][\"b\"]");
}
END_TEST

START_TEST(sio_decode_reserved_events)
{
	static const char *const names[] = {
		"connect", "connect_error", "disconnect", "disconnecting",
		"newListener", "removeListener",
	};
	char s[64];
	struct sio_packet p;

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		snprintf(s, sizeof s, "2[\"%s\",1]", names[i]);
		bad(s, strlen(s));
		snprintf(s, sizeof s, "51-[\"%s\",{\"_placeholder\":true,\"num\":0}]", names[i]);
		bad(s, strlen(s));
	}
	/* Only the exact names are reserved. */
	ok("2[\"Connect\"]", &p);
	sio_packet_clear(&p);
	ok("2[\"connected\"]", &p);
	sio_packet_clear(&p);
}
END_TEST

START_TEST(sio_decode_ack)
{
	struct sio_packet p;

	ok("3456[1,\"2\",{\"3\":[false]}]", &p);
	ck_assert_int_eq(p.type, SIO_ACK);
	ck_assert_int_eq(p.id, 456);
	ck_assert_str_eq(json_of(&p), "[1,\"2\",{\"3\":[false]}]");
	sio_packet_clear(&p);

	ok("3/chat,7[]", &p);
	ck_assert_str_eq(p.nsp, "/chat");
	ck_assert_int_eq(p.id, 7);
	sio_packet_clear(&p);

	BAD("3[]");              /* no id */
	BAD("3456");             /* no data */
	BAD("3456{}");
	BAD("3456\"x\"");
}
END_TEST

START_TEST(sio_decode_connect_error)
{
	struct sio_packet p;

	ok("4{\"message\":\"Invalid namespace\"}", &p);
	ck_assert_int_eq(p.type, SIO_CONNECT_ERROR);
	ck_assert_str_eq(json_of(&p), "{\"message\":\"Invalid namespace\"}");
	sio_packet_clear(&p);

	ok("4/random,\"refused\"", &p);
	ck_assert_str_eq(p.nsp, "/random");
	ck_assert_str_eq(json_of(&p), "\"refused\"");
	sio_packet_clear(&p);

	BAD("4");
	BAD("4[]");
	BAD("4abc");
}
END_TEST

START_TEST(sio_decode_binary)
{
	struct sio_packet p;

	ok("52-[\"message\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]", &p);
	ck_assert_int_eq(p.type, SIO_BINARY_EVENT);
	ck_assert_int_eq(p.attachments, 2);
	ck_assert_str_eq(p.nsp, "/");
	ck_assert_int_eq(p.id, -1);
	sio_packet_clear(&p);

	ok("61-/chat,12[{\"a\":{\"_placeholder\":true,\"num\":0}}]", &p);
	ck_assert_int_eq(p.type, SIO_BINARY_ACK);
	ck_assert_int_eq(p.attachments, 1);
	ck_assert_str_eq(p.nsp, "/chat");
	ck_assert_int_eq(p.id, 12);
	sio_packet_clear(&p);

	ok("50-[\"no attachments\"]", &p);
	ck_assert_int_eq(p.attachments, 0);
	sio_packet_clear(&p);

	ok("51000-[\"x\"]", &p);
	ck_assert_int_eq(p.attachments, SIO_ATTACHMENTS_MAX);
	sio_packet_clear(&p);

	/* A placeholder whose flag is false is ordinary data. */
	ok("50-[\"x\",{\"_placeholder\":false,\"num\":9}]", &p);
	sio_packet_clear(&p);
}
END_TEST

START_TEST(sio_decode_binary_bad)
{
	BAD("5[\"x\"]");                 /* no count */
	BAD("5-[\"x\"]");
	BAD("52[\"x\"]");                /* no dash */
	BAD("52");
	BAD("5a-[\"x\"]");
	BAD("51001-[\"x\"]");            /* over SIO_ATTACHMENTS_MAX */
	BAD("5123456-[\"x\"]");
	BAD("61-[{\"_placeholder\":true,\"num\":0}]");   /* ack without id */
	BAD("51-");
	BAD("51-{}");
}
END_TEST

START_TEST(sio_decode_placeholders_out_of_range)
{
	BAD("51-[\"x\",{\"_placeholder\":true,\"num\":1}]");
	BAD("51-[\"x\",{\"_placeholder\":true,\"num\":-1}]");
	BAD("51-[\"x\",{\"_placeholder\":true}]");
	BAD("51-[\"x\",{\"_placeholder\":true,\"num\":\"0\"}]");
	BAD("51-[\"x\",{\"_placeholder\":true,\"num\":0.5}]");
	BAD("50-[\"x\",{\"_placeholder\":true,\"num\":0}]");
	BAD("52-[\"x\",{\"a\":[1,{\"b\":{\"_placeholder\":true,\"num\":2}}]}]");
	BAD("611-5[{\"_placeholder\":true,\"num\":99999999999}]");
}
END_TEST

START_TEST(sio_decode_invalid_type)
{
	BAD("");
	BAD("7");
	BAD("9[\"x\"]");
	BAD("abc");
	BAD("/chat,[\"x\"]");
	BAD("[\"x\"]");
}
END_TEST

START_TEST(sio_decode_namespace_length)
{
	char s[SIO_NSP_MAX + 16];
	struct sio_packet p;

	/* The namespace, slash included, may be SIO_NSP_MAX bytes long. */
	s[0] = '0';
	s[1] = '/';
	memset(s + 2, 'n', SIO_NSP_MAX - 1);
	strcpy(s + 1 + SIO_NSP_MAX, ",");
	ok(s, &p);
	ck_assert_uint_eq(strlen(p.nsp), SIO_NSP_MAX);
	ck_assert_int_eq(p.nsp[SIO_NSP_MAX - 1], 'n');
	sio_packet_clear(&p);

	memset(s + 2, 'n', SIO_NSP_MAX);
	strcpy(s + 2 + SIO_NSP_MAX, ",");
	bad(s, strlen(s));
	s[2 + SIO_NSP_MAX] = '\0';           /* and without the comma */
	bad(s, strlen(s));
}
END_TEST

START_TEST(sio_decode_ack_id_length)
{
	struct sio_packet p;

	ok("2999999999999999[\"x\"]", &p);   /* 15 digits */
	ck_assert_int_eq(p.id, 999999999999999LL);
	sio_packet_clear(&p);

	BAD("21000000000000000[\"x\"]");     /* 16 digits */
	BAD("399999999999999999999999999[]");
}
END_TEST

/* ------------------------------------------------------------------------
 * Socket.IO encoding: the exact bytes the reference implementation sends. */

/* Encodes after a leading '4', as a message is built for Engine.IO. */
static void check_encode(const char *want, enum sio_type type, const char *nsp,
                         int64_t id, int attachments, const char *json)
{
	json_object *data = NULL;
	struct buf out;

	if (json) {
		data = sio_json_parse(json, strlen(json));
		ck_assert_msg(data != NULL, "bad test JSON %s", json);
	}
	buf_init(&out, 0);
	buf_putc(&out, '4');
	ck_assert_int_eq(sio_packet_encode(&out, type, nsp, id, attachments, data), 0);
	ck_assert_str_eq(out.p, want);
	ck_assert_uint_eq(out.len, strlen(want));
	buf_free(&out);
	json_object_put(data);
}

START_TEST(sio_encode_reference)
{
	check_encode("40", SIO_CONNECT, "/", -1, 0, NULL);
	check_encode("40{\"sid\":\"x\"}", SIO_CONNECT, "/", -1, 0, "{\"sid\":\"x\"}");
	check_encode("40/custom,{\"sid\":\"x\"}", SIO_CONNECT, "/custom", -1, 0, "{\"sid\":\"x\"}");
	check_encode("41/chat,", SIO_DISCONNECT, "/chat", -1, 0, NULL);
	check_encode("42[\"message-back\",1,\"2\",{\"3\":[true]}]", SIO_EVENT, "/", -1, 0,
	             "[\"message-back\",1,\"2\",{\"3\":[true]}]");
	check_encode("42[\"x\"]", SIO_EVENT, NULL, -1, 0, "[\"x\"]");
	check_encode("42/chat,5[\"x\"]", SIO_EVENT, "/chat", 5, 0, "[\"x\"]");
	check_encode("43456[1,\"2\",{\"3\":[false]}]", SIO_ACK, "/", 456, 0, "[1,\"2\",{\"3\":[false]}]");
	check_encode("430[]", SIO_ACK, "/", 0, 0, "[]");
	check_encode("44/random,{\"message\":\"Invalid namespace\"}", SIO_CONNECT_ERROR, "/random",
	             -1, 0, "{\"message\":\"Invalid namespace\"}");
	check_encode("452-[\"message-back\",{\"_placeholder\":true,\"num\":0}]", SIO_BINARY_EVENT,
	             "/", -1, 2, "[\"message-back\",{\"_placeholder\":true,\"num\":0}]");
	check_encode("452-[\"message-back\",{\"_placeholder\":true,\"num\":0},"
	             "{\"_placeholder\":true,\"num\":1}]", SIO_BINARY_EVENT, "/", -1, 2,
	             "[\"message-back\",{\"_placeholder\":true,\"num\":0},"
	             "{\"_placeholder\":true,\"num\":1}]");
	check_encode("461-/chat,9[{\"_placeholder\":true,\"num\":0}]", SIO_BINARY_ACK, "/chat", 9, 1,
	             "[{\"_placeholder\":true,\"num\":0}]");
}
END_TEST

START_TEST(sio_encode_json_text)
{
	/* No spaces, slashes as they are, UTF-8 as it is, controls escaped. */
	check_encode("42[\"a/b\",\"http://x/y\"]", SIO_EVENT, "/", -1, 0,
	             "[ \"a\\/b\" , \"http://x/y\" ]");
	check_encode("42[\"caf\xc3\xa9\",{\"k\":\"\\n\\\"\\\\\"}]", SIO_EVENT, "/", -1, 0,
	             "[\"caf\\u00e9\", {\"k\": \"\\n\\\"\\\\\"}]");
	check_encode("42[\"x\",1.5,-2,true,null,{}]", SIO_EVENT, "/", -1, 0,
	             "[\"x\",1.5,-2,true,null,{}]");
}
END_TEST

START_TEST(sio_encode_decode_round_trip)
{
	static const char *const packets[] = {
		"0", "0/custom,{\"token\":\"abc\"}", "1/chat,", "2[\"a\",{\"b\":[1,2,3]}]",
		"2/chat,77[\"a\"]", "3/chat,0[]", "4\"no\"",
		"53-/x,1[\"a\",{\"_placeholder\":true,\"num\":2}]",
	};
	for (size_t i = 0; i < sizeof packets / sizeof packets[0]; i++) {
		struct sio_packet p;
		struct buf out;

		ok(packets[i], &p);
		buf_init(&out, 0);
		ck_assert_int_eq(sio_packet_encode(&out, p.type, p.nsp, p.id, p.attachments, p.data), 0);
		ck_assert_str_eq(out.p, packets[i]);
		buf_free(&out);
		sio_packet_clear(&p);
	}
}
END_TEST

START_TEST(sio_encode_limit)
{
	json_object *data = sio_json_parse(S("[\"a long event name\"]"));
	struct buf out;

	buf_init(&out, 8);
	ck_assert_int_eq(sio_packet_encode(&out, SIO_EVENT, "/", -1, 0, data), -1);
	buf_free(&out);
	json_object_put(data);
}
END_TEST

START_TEST(sio_json_strict)
{
	json_object *o;

	o = sio_json_parse(S("{\"a\":[1,2.5,\"x\",true,false,null]}"));
	ck_assert_ptr_nonnull(o);
	json_object_put(o);

	ck_assert_ptr_null(sio_json_parse(S("")));
	ck_assert_ptr_null(sio_json_parse(S("[1]x")));
	ck_assert_ptr_null(sio_json_parse(S("[1][2]")));
	ck_assert_ptr_null(sio_json_parse(S("{}}")));
	ck_assert_ptr_null(sio_json_parse(S("[1")));
	ck_assert_ptr_null(sio_json_parse(S("[1,]")));
	ck_assert_ptr_null(sio_json_parse(S("{\"a\":1,}")));
	ck_assert_ptr_null(sio_json_parse(S("['a']")));
	ck_assert_ptr_null(sio_json_parse(S("{\"a\":'b'}")));
	ck_assert_ptr_null(sio_json_parse(S("[01]")));
	ck_assert_ptr_null(sio_json_parse(S("[.5]")));
	ck_assert_ptr_null(sio_json_parse(S("[nan]")));
	ck_assert_ptr_null(sio_json_parse(S("[undefined]")));
	ck_assert_ptr_null(sio_json_parse(S("[1]\0")));
}
END_TEST

START_TEST(sio_json_rfc8259)
{
	static const char *const not_json[] = {
		"[NaN]", "[Infinity]", "[-Infinity]", "{'a':1}", "[1.]", "[1.e5]", "[-01]",
		"[\"\xc3\"]", "[\"\x01\"]", "[\"\xed\xa0\x80\"]",
	};
	for (size_t i = 0; i < sizeof not_json / sizeof not_json[0]; i++)
		ck_assert_msg(sio_json_parse(not_json[i], strlen(not_json[i])) == NULL,
		              "%s accepted", not_json[i]);
	static const char *const json[] = {
		"[-0.5e+3]", "{\"a\":[true,false,null]}", "[\"\\u00e9 \xc3\xa9 \xf0\x9f\x98\x80\"]",
	};
	for (size_t i = 0; i < sizeof json / sizeof json[0]; i++) {
		json_object *o = sio_json_parse(json[i], strlen(json[i]));
		ck_assert_msg(o != NULL, "%s refused", json[i]);
		json_object_put(o);
	}
}
END_TEST

START_TEST(sio_json_depth)
{
	char s[2 * (SIO_JSON_DEPTH + 1)];
	json_object *o;

	memset(s, '[', SIO_JSON_DEPTH);
	memset(s + SIO_JSON_DEPTH, ']', SIO_JSON_DEPTH);
	o = sio_json_parse(s, 2 * SIO_JSON_DEPTH);
	ck_assert_ptr_nonnull(o);
	json_object_put(o);

	memset(s, '[', SIO_JSON_DEPTH + 1);
	memset(s + SIO_JSON_DEPTH + 1, ']', SIO_JSON_DEPTH + 1);
	ck_assert_ptr_null(sio_json_parse(s, sizeof s));
}
END_TEST

START_TEST(sio_placeholders_count)
{
	json_object *d = sio_json_parse(S("[\"x\",{\"_placeholder\":true,\"num\":1},"
	                                   "{\"a\":[{\"_placeholder\":true,\"num\":0}]}]"));

	ck_assert_int_eq(sio_placeholders_check(d, 2), 2);
	ck_assert_int_eq(sio_placeholders_check(d, 1), -1);
	json_object_put(d);
	d = sio_json_parse(S("[\"x\",{\"y\":1}]"));
	ck_assert_int_eq(sio_placeholders_check(d, 0), 0);
	json_object_put(d);
}
END_TEST

/* The name sio_event_name finds in s, "-" for none. */
static const char *event_name(const char *s)
{
	static char out[64];
	const char *name;
	size_t len;

	if (sio_event_name(s, strlen(s), &name, &len) < 0)
		return "-";
	ck_assert_uint_lt(len, sizeof out);
	memcpy(out, name, len);
	out[len] = '\0';
	return out;
}

START_TEST(sio_event_names)
{
	struct buf b;
	json_object *d = sio_json_parse(S("[\"chat:msg\",{\"x\":1}]"));

	ck_assert_str_eq(event_name("2[\"a\"]"), "a");
	ck_assert_str_eq(event_name("2[\"message:send\",{\"a\":\"b\"}]"), "message:send");
	ck_assert_str_eq(event_name("2/chat,[\"x\"]"), "x");
	ck_assert_str_eq(event_name("212[\"x\",1]"), "x");
	ck_assert_str_eq(event_name("2/chat,12[\"x\"]"), "x");
	ck_assert_str_eq(event_name("51-[\"bin\",{\"_placeholder\":true,\"num\":0}]"), "bin");
	ck_assert_str_eq(event_name("52-/a,7[\"bin\"]"), "bin");
	ck_assert_str_eq(event_name("2[\"q\\\"uote\"]"), "q\\\"uote");   /* as written */
	ck_assert_str_eq(event_name("2[\"\"]"), "");
	/* Not events, or cut short. */
	ck_assert_str_eq(event_name("3[\"a\"]"), "-");
	ck_assert_str_eq(event_name("0{}"), "-");
	ck_assert_str_eq(event_name("2"), "-");
	ck_assert_str_eq(event_name("2["), "-");
	ck_assert_str_eq(event_name("2[\"abc"), "-");
	ck_assert_str_eq(event_name("2[\"abc\\"), "-");
	ck_assert_str_eq(event_name("2[\"abc\\\""), "-");
	ck_assert_str_eq(event_name("2/chat"), "-");
	ck_assert_str_eq(event_name("51[\"x\"]"), "-");
	ck_assert_str_eq(event_name("2[1]"), "-");
	ck_assert_str_eq(event_name(""), "-");
	/* What the encoder writes. */
	buf_init(&b, 0);
	ck_assert_int_eq(sio_packet_encode(&b, SIO_EVENT, "/x", 42, 0, d), 0);
	ck_assert_str_eq(event_name(b.p), "chat:msg");
	buf_free(&b);
	json_object_put(d);
}
END_TEST

/* ------------------------------------------------------------------------
 * util: base64 and ids */

static void check_b64(const char *raw, size_t n, const char *want)
{
	char enc[64], dec[64];

	ck_assert_uint_eq(base64_encoded_len(n), strlen(want) + 1);
	ck_assert_uint_eq(base64_encode(enc, raw, n), strlen(want));
	ck_assert_str_eq(enc, want);
	ck_assert_int_eq(base64_decode(dec, want, strlen(want)), (long)n);
	ck_assert_mem_eq(dec, raw, n);
}

START_TEST(base64_vectors)
{
	/* RFC 4648, section 10. */
	check_b64(S(""), "");
	check_b64(S("f"), "Zg==");
	check_b64(S("fo"), "Zm8=");
	check_b64(S("foo"), "Zm9v");
	check_b64(S("foob"), "Zm9vYg==");
	check_b64(S("fooba"), "Zm9vYmE=");
	check_b64(S("foobar"), "Zm9vYmFy");
	check_b64(S("\xfb\xff\xbf"), "+/+/");
}
END_TEST

START_TEST(base64_round_trip)
{
	unsigned char raw[300], back[303];
	char enc[401];

	for (size_t i = 0; i < sizeof raw; i++)
		raw[i] = (unsigned char)(i * 7 + 3);
	for (size_t n = 0; n <= sizeof raw; n++) {
		size_t len = base64_encode(enc, raw, n);
		ck_assert_uint_eq(len + 1, base64_encoded_len(n));
		ck_assert_uint_eq(len % 4, 0);
		ck_assert_int_eq(base64_decode(back, enc, len), (long)n);
		ck_assert_mem_eq(back, raw, n);
	}
}
END_TEST

START_TEST(base64_invalid)
{
	static const char *const bad_inputs[] = {
		"Z", "Zg", "Zg=", "Zm9vY",      /* lengths */
		"Zg=a", "Z===", "====", "=Zg=", "Zm=v", "Zm9v=g==",
		"Zm9 ", "Zm9\n", "Zm9-", "Zm9_", "Zm9.", "Zm9\x80",
	};
	char out[16];

	for (size_t i = 0; i < sizeof bad_inputs / sizeof bad_inputs[0]; i++)
		ck_assert_msg(base64_decode(out, bad_inputs[i], strlen(bad_inputs[i])) == -1,
		              "'%s' accepted", bad_inputs[i]);
	ck_assert_int_eq(base64_decode(out, "Zm\0v", 4), -1);
}
END_TEST

START_TEST(random_id_shape)
{
	char a[ID_LEN + 1], b[ID_LEN + 1];

	memset(a, '!', sizeof a);
	ck_assert_int_eq(random_id(a), 0);
	ck_assert_int_eq(random_id(b), 0);
	ck_assert_uint_eq(strlen(a), ID_LEN);
	ck_assert_uint_eq(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
	                  ID_LEN);
	ck_assert_str_ne(a, b);
}
END_TEST

/* ------------------------------------------------------------------------
 * dict */

START_TEST(dict_basic)
{
	struct dict d;
	int one = 1, two = 2;

	dict_init(&d);
	ck_assert_ptr_null(dict_get(&d, "a"));
	ck_assert_ptr_null(dict_del(&d, "a"));
	ck_assert_int_eq(dict_set(&d, "a", &one), 0);
	ck_assert_int_eq(dict_set(&d, "", &two), 0);
	ck_assert_uint_eq(dict_size(&d), 2);
	ck_assert_ptr_eq(dict_get(&d, "a"), &one);
	ck_assert_ptr_eq(dict_get(&d, ""), &two);
	ck_assert_ptr_null(dict_get(&d, "ab"));

	ck_assert_int_eq(dict_set(&d, "a", &two), 0);      /* replace */
	ck_assert_uint_eq(dict_size(&d), 2);
	ck_assert_ptr_eq(dict_get(&d, "a"), &two);

	ck_assert_ptr_eq(dict_del(&d, "a"), &two);
	ck_assert_uint_eq(dict_size(&d), 1);
	ck_assert_ptr_null(dict_get(&d, "a"));
	ck_assert_ptr_null(dict_del(&d, "a"));
	ck_assert_ptr_eq(dict_get(&d, ""), &two);
	dict_free(&d);
	ck_assert_uint_eq(dict_size(&d), 0);
}
END_TEST

START_TEST(dict_key_copied)
{
	struct dict d;
	char key[8] = "room";
	int v;

	dict_init(&d);
	dict_set(&d, key, &v);
	strcpy(key, "other");
	ck_assert_ptr_eq(dict_get(&d, "room"), &v);
	ck_assert_ptr_null(dict_get(&d, "other"));
	dict_free(&d);
}
END_TEST

#define MANY 5000

START_TEST(dict_many)
{
	static int vals[MANY];
	struct dict d;
	char key[32];

	dict_init(&d);
	for (int i = 0; i < MANY; i++) {
		snprintf(key, sizeof key, "key:%d", i);
		ck_assert_int_eq(dict_set(&d, key, &vals[i]), 0);
	}
	ck_assert_uint_eq(dict_size(&d), MANY);
	for (int i = 0; i < MANY; i++) {
		snprintf(key, sizeof key, "key:%d", i);
		ck_assert_ptr_eq(dict_get(&d, key), &vals[i]);
	}
	for (int i = 0; i < MANY; i += 2) {
		snprintf(key, sizeof key, "key:%d", i);
		ck_assert_ptr_eq(dict_del(&d, key), &vals[i]);
	}
	ck_assert_uint_eq(dict_size(&d), MANY / 2);
	for (int i = 0; i < MANY; i++) {
		snprintf(key, sizeof key, "key:%d", i);
		ck_assert_ptr_eq(dict_get(&d, key), i % 2 ? &vals[i] : NULL);
	}
	dict_free(&d);
}
END_TEST

/* Fills d with MANY keys whose values point into vals. */
static void fill(struct dict *d, int *vals)
{
	char key[32];

	dict_init(d);
	for (int i = 0; i < MANY; i++) {
		snprintf(key, sizeof key, "%d", i);
		vals[i] = i;
		dict_set(d, key, &vals[i]);
	}
}

START_TEST(dict_iterate_once)
{
	static int vals[MANY], seen[MANY];
	struct dict d;
	struct dict_iter it;
	struct dict_entry *e;
	size_t n = 0;

	fill(&d, vals);
	dict_iter_init(&it, &d);
	while ((e = dict_next(&it))) {
		int i = *(int *)e->val;
		ck_assert_int_eq(atoi(e->key), i);
		ck_assert_uint_eq(e->klen, strlen(e->key));
		seen[i]++;
		n++;
	}
	ck_assert_uint_eq(n, MANY);
	for (int i = 0; i < MANY; i++)
		ck_assert_int_eq(seen[i], 1);
	ck_assert_ptr_null(dict_next(&it));
	dict_free(&d);

	dict_init(&d);
	dict_iter_init(&it, &d);
	ck_assert_ptr_null(dict_next(&it));
	dict_free(&d);
}
END_TEST

START_TEST(dict_delete_while_iterating)
{
	static int vals[MANY], seen[MANY];
	struct dict d;
	struct dict_iter it;
	struct dict_entry *e;
	char key[32];

	/* Delete every other entry as it is returned. */
	fill(&d, vals);
	dict_iter_init(&it, &d);
	while ((e = dict_next(&it))) {
		int i = *(int *)e->val;
		seen[i]++;
		if (i % 2 == 0) {
			snprintf(key, sizeof key, "%s", e->key);
			ck_assert_ptr_eq(dict_del(&d, key), &vals[i]);
		}
	}
	for (int i = 0; i < MANY; i++)
		ck_assert_int_eq(seen[i], 1);
	ck_assert_uint_eq(dict_size(&d), MANY / 2);

	/* Then all that are left: the table ends empty. */
	dict_iter_init(&it, &d);
	while ((e = dict_next(&it))) {
		int i = *(int *)e->val;
		ck_assert_int_eq(i % 2, 1);
		seen[i]++;
		snprintf(key, sizeof key, "%s", e->key);
		dict_del(&d, key);
	}
	ck_assert_uint_eq(dict_size(&d), 0);
	for (int i = 1; i < MANY; i += 2)
		ck_assert_int_eq(seen[i], 2);
	dict_free(&d);
}
END_TEST

/* ------------------------------------------------------------------------
 * buf */

START_TEST(buf_limit)
{
	struct buf b;

	buf_init(&b, 8);
	ck_assert_int_eq(buf_append(&b, "1234", 4), 0);
	ck_assert_int_eq(buf_puts(&b, "5678"), 0);
	ck_assert_str_eq(b.p, "12345678");
	ck_assert_int_eq(buf_putc(&b, '9'), -1);
	ck_assert_int_eq(buf_append(&b, "9", 1), -1);
	ck_assert_int_eq(buf_printf(&b, "%d", 9), -1);
	ck_assert_int_eq(buf_reserve(&b, 1), -1);
	ck_assert_uint_eq(b.len, 8);
	ck_assert_str_eq(b.p, "12345678");

	buf_reset(&b);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_str_eq(b.p, "");
	ck_assert_int_eq(buf_append(&b, "123456789", 9), -1);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(buf_puts(&b, "abc"), 0);
	ck_assert_str_eq(b.p, "abc");
	buf_free(&b);
}
END_TEST

START_TEST(buf_huge_append_refused)
{
	struct buf b;

	buf_init(&b, 0);
	buf_puts(&b, "x");
	ck_assert_int_eq(buf_reserve(&b, (size_t)-1), -1);
	ck_assert_int_eq(buf_reserve(&b, (size_t)-1 / 2), -1);
	ck_assert_str_eq(b.p, "x");
	buf_free(&b);
}
END_TEST

START_TEST(buf_printf_long)
{
	char big[1000];
	struct buf b;

	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	buf_init(&b, 0);
	ck_assert_int_eq(buf_puts(&b, "<"), 0);
	ck_assert_int_eq(buf_printf(&b, "%s:%d", big, 42), 0);
	ck_assert_int_eq(buf_printf(&b, ">%s", "end"), 0);
	ck_assert_uint_eq(b.len, 1 + 999 + 3 + 4);
	ck_assert_uint_eq(strlen(b.p), b.len);
	ck_assert_int_eq(b.p[0], '<');
	ck_assert_int_eq(strspn(b.p + 1, "x"), 999);
	ck_assert_str_eq(b.p + 1000, ":42>end");
	buf_free(&b);

	/* A long printf that does not fit leaves the buffer as it was. */
	buf_init(&b, 500);
	buf_puts(&b, "keep");
	ck_assert_int_eq(buf_printf(&b, "%s", big), -1);
	ck_assert_str_eq(b.p, "keep");
	ck_assert_uint_eq(b.len, 4);
	buf_free(&b);
}
END_TEST

START_TEST(buf_steal_hands_over)
{
	struct buf b;
	size_t len;
	char *p;

	buf_init(&b, 0);
	buf_puts(&b, "hello");
	p = buf_steal(&b, &len);
	ck_assert_uint_eq(len, 5);
	ck_assert_str_eq(p, "hello");
	ck_assert_ptr_null(b.p);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(buf_puts(&b, "again"), 0);
	ck_assert_str_eq(b.p, "again");
	free(p);
	buf_free(&b);
}
END_TEST

static Suite *codecs_suite(void)
{
	Suite *s = suite_create("codecs");
	TCase *tc;

	tc = tcase_create("eio");
	tcase_add_test(tc, eio_packet_parse_types);
	tcase_add_test(tc, eio_packet_parse_bad_type);
	tcase_add_test(tc, eio_payload_one);
	tcase_add_test(tc, eio_payload_joined);
	tcase_add_test(tc, eio_payload_binary);
	tcase_add_test(tc, eio_payload_empty);
	tcase_add_test(tc, eio_payload_empty_record);
	tcase_add_test(tc, eio_payload_bad_type);
	tcase_add_test(tc, eio_payload_bad_base64);
	tcase_add_test(tc, eio_payload_callback_stops);
	tcase_add_test(tc, eio_msg_refs);
	tcase_add_test(tc, eio_msg_from_buf_copies);
	tcase_add_test(tc, eio_payload_append_round_trip);
	tcase_add_test(tc, eio_payload_append_limit);
	suite_add_tcase(s, tc);

	tc = tcase_create("sio");
	tcase_add_test(tc, sio_decode_connect);
	tcase_add_test(tc, sio_decode_disconnect);
	tcase_add_test(tc, sio_decode_event);
	tcase_add_test(tc, sio_decode_event_bad_shape);
	tcase_add_test(tc, sio_decode_reserved_events);
	tcase_add_test(tc, sio_decode_ack);
	tcase_add_test(tc, sio_decode_connect_error);
	tcase_add_test(tc, sio_decode_binary);
	tcase_add_test(tc, sio_decode_binary_bad);
	tcase_add_test(tc, sio_decode_placeholders_out_of_range);
	tcase_add_test(tc, sio_decode_invalid_type);
	tcase_add_test(tc, sio_decode_namespace_length);
	tcase_add_test(tc, sio_decode_ack_id_length);
	tcase_add_test(tc, sio_encode_reference);
	tcase_add_test(tc, sio_encode_json_text);
	tcase_add_test(tc, sio_encode_decode_round_trip);
	tcase_add_test(tc, sio_encode_limit);
	tcase_add_test(tc, sio_json_strict);
	tcase_add_test(tc, sio_json_depth);
	tcase_add_test(tc, sio_json_rfc8259);
	tcase_add_test(tc, sio_placeholders_count);
	tcase_add_test(tc, sio_event_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("util");
	tcase_add_test(tc, base64_vectors);
	tcase_add_test(tc, base64_round_trip);
	tcase_add_test(tc, base64_invalid);
	tcase_add_test(tc, random_id_shape);
	suite_add_tcase(s, tc);

	tc = tcase_create("dict");
	tcase_add_test(tc, dict_basic);
	tcase_add_test(tc, dict_key_copied);
	tcase_add_test(tc, dict_many);
	tcase_add_test(tc, dict_iterate_once);
	tcase_add_test(tc, dict_delete_while_iterating);
	suite_add_tcase(s, tc);

	tc = tcase_create("buf");
	tcase_add_test(tc, buf_limit);
	tcase_add_test(tc, buf_huge_append_refused);
	tcase_add_test(tc, buf_printf_long);
	tcase_add_test(tc, buf_steal_hands_over);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(codecs_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
