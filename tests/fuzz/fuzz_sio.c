/* fuzz_sio.c -- Socket.IO packets.
 *
 * A packet that decodes is encoded again and the result decoded: the type,
 * namespace, ack id and attachment count must survive, and encoding the
 * second packet must give the same bytes as the first (the encoder's
 * output is a fixed point). A refused packet must leave nothing to free.
 * sio_event_name reads any bytes in bounds, and finds in an encoded event
 * its name as the encoder wrote it (and nothing in other packets). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sio_codec.h"

static void encode(struct buf *out, const struct sio_packet *p)
{
	buf_init(out, 0);
	if (sio_packet_encode(out, p->type, p->nsp, p->id, p->attachments, p->data) < 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sio_packet p, q;
	const char *err = NULL;
	struct buf a, b;

	const char *name;
	size_t nlen;

	(void)sio_event_name((const char *)data, size, &name, &nlen);
	if (sio_packet_decode((const char *)data, size, &p, &err) < 0) {
		if (!err || !*err || p.data)
			abort();
		return 0;
	}
	encode(&a, &p);
	if (sio_packet_decode(a.p, a.len, &q, &err) < 0) {
		fprintf(stderr, "re-encoded packet refused (%s): %s\n", err, a.p);
		abort();
	}
	if (q.type != p.type || strcmp(q.nsp, p.nsp) != 0 || q.id != p.id ||
	    q.attachments != p.attachments || !q.data != !p.data) {
		fprintf(stderr, "round trip changed the packet: %s\n", a.p);
		abort();
	}
	int found = sio_event_name(a.p, a.len, &name, &nlen) == 0;
	if (p.type == SIO_EVENT || p.type == SIO_BINARY_EVENT) {
		size_t jlen;
		const char *j = sio_json(json_object_array_get_idx(p.data, 0), &jlen);
		if (!found || nlen + 2 != jlen || memcmp(name, j + 1, nlen) != 0) {
			fprintf(stderr, "event name not found as written: %s\n", a.p);
			abort();
		}
	} else if (found) {
		fprintf(stderr, "an event name in a packet of type %d: %s\n", p.type, a.p);
		abort();
	}
	encode(&b, &q);
	if (a.len != b.len || memcmp(a.p, b.p, a.len) != 0) {
		fprintf(stderr, "encoding not stable:\n%s\n%s\n", a.p, b.p);
		abort();
	}
	buf_free(&a);
	buf_free(&b);
	sio_packet_clear(&p);
	sio_packet_clear(&q);
	return 0;
}
