/* eio_codec.c -- see eio_codec.h. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eio_codec.h"
#include "util.h"

int eio_packet_parse(const char *s, size_t n, struct eio_packet *p)
{
	if (n < 1 || s[0] < '0' || s[0] > '6')
		return -1;
	p->type = (enum eio_type)(s[0] - '0');
	p->binary = 0;
	p->data = s + 1;
	p->len = n - 1;
	return 0;
}

static int decode_record(const char *s, size_t n, eio_packet_cb cb, void *ud)
{
	struct eio_packet p;

	if (n >= 1 && s[0] == 'b') {
		char *bin = malloc(3 * ((n - 1) / 4) + 3);
		if (!bin)
			return -1;
		long len = base64_decode(bin, s + 1, n - 1);
		int r = -1;
		if (len >= 0) {
			p.type = EIO_MESSAGE;
			p.binary = 1;
			p.data = bin;
			p.len = (size_t)len;
			r = cb(&p, ud);
		}
		free(bin);
		return r;
	}
	if (eio_packet_parse(s, n, &p) < 0)
		return -1;
	return cb(&p, ud);
}

int eio_payload_decode(const char *s, size_t n, eio_packet_cb cb, void *ud)
{
	if (n == 0)
		return -1;
	const char *end = s + n;
	while (s <= end) {
		const char *rs = memchr(s, EIO_RS, (size_t)(end - s));
		const char *stop = rs ? rs : end;
		int r = decode_record(s, (size_t)(stop - s), cb, ud);
		if (r != 0)
			return r;
		if (!rs)
			break;
		s = rs + 1;
	}
	return 0;
}

static struct eio_msg *msg_alloc(size_t len)
{
	struct eio_msg *m = malloc(sizeof *m + len + 1);
	if (!m)
		return NULL;
	m->refs = 1;
	m->binary = 0;
	m->ws_hlen = 0;
	m->len = len;
	m->data[len] = '\0';
	return m;
}

struct eio_msg *eio_msg_text(enum eio_type type, const char *data, size_t len)
{
	struct eio_msg *m = msg_alloc(len + 1);
	if (!m)
		return NULL;
	m->data[0] = (char)('0' + type);
	if (len)
		memcpy(m->data + 1, data, len);
	return m;
}

struct eio_msg *eio_msg_binary(const void *data, size_t len)
{
	struct eio_msg *m = msg_alloc(len);
	if (!m)
		return NULL;
	m->binary = 1;
	if (len)
		memcpy(m->data, data, len);
	return m;
}

struct eio_msg *eio_msg_from_buf(struct buf *b)
{
	struct eio_msg *m = msg_alloc(b->len);
	if (m && b->len)
		memcpy(m->data, b->p, b->len);
	buf_reset(b);
	return m;
}

void eio_msg_unref(struct eio_msg *m)
{
	if (m && --m->refs == 0)
		free(m);
}

_Static_assert(offsetof(struct eio_msg, data) ==
               offsetof(struct eio_msg, ws_head) + sizeof(((struct eio_msg *)0)->ws_head),
               "the WebSocket header room must sit right before the data");

const char *eio_msg_ws_frame(struct eio_msg *m, size_t *len)
{
	if (!m->ws_hlen) {
		unsigned char h[10];
		size_t n = 0, i;
		h[n++] = (unsigned char)(0x80 | (m->binary ? 0x2 : 0x1));   /* FIN, opcode */
		if (m->len < 126) {
			h[n++] = (unsigned char)m->len;
		} else if (m->len <= 0xffff) {
			h[n++] = 126;
			h[n++] = (unsigned char)(m->len >> 8);
			h[n++] = (unsigned char)m->len;
		} else {
			h[n++] = 127;
			for (i = 0; i < 8; i++)
				h[n++] = (unsigned char)((uint64_t)m->len >> (56 - 8 * i));
		}
		memcpy(m->ws_head + sizeof m->ws_head - n, h, n);
		m->ws_hlen = (unsigned char)n;
	}
	*len = m->ws_hlen + m->len;
	return m->data - m->ws_hlen;
}

int eio_msgq_push(struct eio_msgq *q, struct eio_msg *m)
{
	if (q->len == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 4;
		struct eio_msg **v = malloc(cap * sizeof *v);
		if (!v)
			return -1;
		for (size_t i = 0; i < q->len; i++)
			v[i] = eio_msgq_at(q, i);
		free(q->v);
		q->v = v;
		q->cap = cap;
		q->head = 0;
	}
	q->v[(q->head + q->len) % q->cap] = eio_msg_ref(m);
	q->len++;
	q->bytes += m->len;
	return 0;
}

struct eio_msg *eio_msgq_pop(struct eio_msgq *q)
{
	if (!q->len)
		return NULL;
	struct eio_msg *m = q->v[q->head];
	q->head = (q->head + 1) % q->cap;
	q->len--;
	q->bytes -= m->len;
	return m;
}

void eio_msgq_truncate(struct eio_msgq *q, size_t keep)
{
	while (q->len > keep) {
		struct eio_msg *m = eio_msgq_at(q, q->len - 1);
		q->bytes -= m->len;
		q->len--;
		eio_msg_unref(m);
	}
}

void eio_msgq_free(struct eio_msgq *q)
{
	eio_msgq_truncate(q, 0);
	free(q->v);
	memset(q, 0, sizeof *q);
}

int eio_payload_append(struct buf *out, const struct eio_msg *m)
{
	if (out->len && buf_putc(out, EIO_RS) < 0)
		return -1;
	if (!m->binary)
		return buf_append(out, m->data, m->len);
	size_t need = base64_encoded_len(m->len);
	if (buf_putc(out, 'b') < 0 || buf_reserve(out, need) < 0)
		return -1;
	out->len += base64_encode(out->p + out->len, m->data, m->len);
	out->p[out->len] = '\0';
	return 0;
}

char *eio_msg_record(const struct eio_msg *m, size_t *len)
{
	if (!m->binary) {
		char *r = malloc(m->len + 1);
		if (r) {
			memcpy(r, m->data, m->len + 1);      /* data is NUL-terminated */
			*len = m->len;
		}
		return r;
	}
	char *r = malloc(base64_encoded_len(m->len) + 1);
	if (!r)
		return NULL;
	r[0] = 'b';
	*len = 1 + base64_encode(r + 1, m->data, m->len);
	return r;
}

struct eio_msg *eio_msg_unrecord(const char *r, size_t len)
{
	if (len >= 1 && r[0] == 'b') {
		char *bin = malloc(3 * ((len - 1) / 4) + 3);
		long n = bin ? base64_decode(bin, r + 1, len - 1) : -1;
		struct eio_msg *m = n >= 0 ? eio_msg_binary(bin, (size_t)n) : NULL;
		free(bin);
		return m;
	}
	if (len < 1 || r[0] < '0' || r[0] > '6')
		return NULL;
	return eio_msg_text((enum eio_type)(r[0] - '0'), r + 1, len - 1);
}
