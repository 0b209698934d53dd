/* fuzz_bus.c -- the broadcast message between instances (cluster.c).
 *
 * Redis is a peer like any other: a message on the bus that does not parse
 * is dropped, never read past its end. One that parses is encoded again and
 * decoded: every field must survive, and the second encoding must give the
 * same bytes (the encoder's output is a fixed point). Disconnects ('D')
 * likewise. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

static struct buf first;

static void same(const char *a, const char *b)
{
	if ((!a) != (!b) || (a && strcmp(a, b) != 0))
		abort();
}

static void check_again(const struct cluster_bcast *b, const char *origin, void *ud)
{
	const struct cluster_bcast *a = ud;
	same(a->path, b->path);
	same(a->nsp, b->nsp);
	same(a->skip, b->skip);
	same(a->offset, b->offset);
	if (a->nrooms != b->nrooms || a->nexcept != b->nexcept || a->n != b->n ||
	    a->disconnect != b->disconnect || a->nids != b->nids)
		abort();
	for (size_t i = 0; i < a->nids; i++)
		same(a->ids[i], b->ids[i]);
	for (size_t i = 0; i < a->nrooms; i++)
		same(a->rooms[i], b->rooms[i]);
	for (size_t i = 0; i < a->nexcept; i++)
		same(a->except[i], b->except[i]);
	for (int i = 0; i < a->n; i++)
		if (a->m[i]->binary != b->m[i]->binary || a->m[i]->len != b->m[i]->len ||
		    memcmp(a->m[i]->data, b->m[i]->data, a->m[i]->len) != 0)
			abort();
	struct buf again;
	buf_init(&again, 0);
	cluster_bcast_encode(&again, origin, b);
	if (again.len != first.len || memcmp(again.p, first.p, first.len) != 0)
		abort();
	buf_free(&again);
}

static void check(const struct cluster_bcast *b, const char *origin, void *ud)
{
	(void)ud;
	buf_init(&first, 0);
	cluster_bcast_encode(&first, origin, b);
	if (cluster_bcast_decode(first.p, first.len, check_again, (void *)b) < 0) {
		fprintf(stderr, "a re-encoded broadcast does not decode\n");
		abort();
	}
	buf_free(&first);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cluster_bcast_decode((const char *)data, size, check, NULL);
	return 0;
}
