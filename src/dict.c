/* dict.c -- see dict.h. */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "dict.h"

static uint64_t hash(uint64_t seed, const char *s, size_t n)
{
	/* FNV-1a over a random seed, finished with a 64-bit mixer. */
	uint64_t h = 0xcbf29ce484222325ULL ^ seed;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

void dict_init(struct dict *d)
{
	memset(d, 0, sizeof *d);
	if (RAND_bytes((unsigned char *)&d->seed, sizeof d->seed) != 1)
		d->seed = (uint64_t)(uintptr_t)d;
}

void dict_free(struct dict *d)
{
	for (size_t i = 0; i < d->nb; i++) {
		struct dict_entry *e = d->b[i];
		while (e) {
			struct dict_entry *next = e->next;
			free(e);
			e = next;
		}
	}
	free(d->b);
	d->b = NULL;
	d->nb = d->n = 0;
}

static struct dict_entry **find(const struct dict *d, const char *key, size_t klen, uint64_t h)
{
	if (!d->nb)
		return NULL;
	struct dict_entry **pe = &d->b[h & (d->nb - 1)];
	for (; *pe; pe = &(*pe)->next)
		if ((*pe)->hash == h && (*pe)->klen == klen && memcmp((*pe)->key, key, klen) == 0)
			return pe;
	return NULL;
}

void *dict_get(const struct dict *d, const char *key)
{
	size_t klen = strlen(key);
	struct dict_entry **pe = find(d, key, klen, hash(d->seed, key, klen));
	return pe ? (*pe)->val : NULL;
}

static int grow(struct dict *d)
{
	size_t nb = d->nb ? d->nb * 2 : 8;
	struct dict_entry **b = calloc(nb, sizeof *b);
	if (!b)
		return -1;
	for (size_t i = 0; i < d->nb; i++) {
		struct dict_entry *e = d->b[i];
		while (e) {
			struct dict_entry *next = e->next;
			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
			e = next;
		}
	}
	free(d->b);
	d->b = b;
	d->nb = nb;
	return 0;
}

int dict_set(struct dict *d, const char *key, void *val)
{
	size_t klen = strlen(key);
	uint64_t h = hash(d->seed, key, klen);
	struct dict_entry **pe = find(d, key, klen, h);
	if (pe) {
		(*pe)->val = val;
		return 0;
	}
	if (d->n >= d->nb && grow(d) < 0)
		return -1;
	struct dict_entry *e = malloc(sizeof *e + klen + 1);
	if (!e)
		return -1;
	e->val = val;
	e->hash = h;
	e->klen = klen;
	memcpy(e->key, key, klen + 1);
	e->next = d->b[h & (d->nb - 1)];
	d->b[h & (d->nb - 1)] = e;
	d->n++;
	return 0;
}

void *dict_del(struct dict *d, const char *key)
{
	size_t klen = strlen(key);
	struct dict_entry **pe = find(d, key, klen, hash(d->seed, key, klen));
	if (!pe)
		return NULL;
	struct dict_entry *e = *pe;
	void *val = e->val;
	*pe = e->next;
	free(e);
	d->n--;
	return val;
}

void dict_iter_init(struct dict_iter *it, struct dict *d)
{
	it->d = d;
	it->bucket = 0;
	it->next = d->nb ? d->b[0] : NULL;
}

struct dict_entry *dict_next(struct dict_iter *it)
{
	while (!it->next) {
		if (++it->bucket >= it->d->nb)
			return NULL;
		it->next = it->d->b[it->bucket];
	}
	struct dict_entry *e = it->next;
	it->next = e->next;
	return e;
}
