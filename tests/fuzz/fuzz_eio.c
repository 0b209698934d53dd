/* fuzz_eio.c -- Engine.IO packets and polling payloads.
 *
 * Every input goes through eio_packet_parse (a WebSocket text frame) and
 * eio_payload_decode (a polling body). When a payload decodes, its packets
 * are written back with eio_payload_append and decoded again: the second
 * walk must deliver the same packets. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eio_codec.h"

#define MAX_PACKETS 4096

struct walk {
	struct eio_msg *msgs[MAX_PACKETS];
	size_t n;
	size_t checked;                  /* second walk: packets compared */
	int compare;
};

static int same(const struct eio_msg *m, const struct eio_packet *p)
{
	if (m->binary)
		return p->binary && p->len == m->len && memcmp(p->data, m->data, m->len) == 0;
	return !p->binary && (int)p->type == m->data[0] - '0' && p->len == m->len - 1 &&
	       memcmp(p->data, m->data + 1, p->len) == 0;
}

static int on_packet(const struct eio_packet *p, void *ud)
{
	struct walk *w = ud;

	if ((unsigned)p->type > EIO_NOOP || (p->binary && p->type != EIO_MESSAGE))
		abort();
	if (w->compare) {
		if (w->checked >= w->n || !same(w->msgs[w->checked], p))
			abort();
		w->checked++;
		return 0;
	}
	if (w->n == MAX_PACKETS)
		return 1;
	struct eio_msg *m = p->binary ? eio_msg_binary(p->data, p->len)
	                              : eio_msg_text(p->type, p->data, p->len);
	if (!m)
		abort();
	w->msgs[w->n++] = m;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	static struct walk w;
	struct eio_packet p;
	struct buf out;

	if (eio_packet_parse(s, size, &p) == 0 &&
	    (p.binary || p.data != s + 1 || p.len != size - 1))
		abort();

	memset(&w, 0, sizeof w);
	if (eio_payload_decode(s, size, on_packet, &w) == 0) {
		buf_init(&out, 0);
		for (size_t i = 0; i < w.n; i++)
			if (eio_payload_append(&out, w.msgs[i]) < 0)
				abort();
		w.compare = 1;
		if (eio_payload_decode(out.p, out.len, on_packet, &w) != 0 || w.checked != w.n)
			abort();
		buf_free(&out);
	}
	for (size_t i = 0; i < w.n; i++)
		eio_msg_unref(w.msgs[i]);
	return 0;
}
