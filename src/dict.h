/* dict.h -- a hash table from strings to pointers.
 *
 * Keys are copied in and owned by the table; values are the caller's (the
 * table never frees them). Chained buckets, doubled when the load passes 1,
 * hashed with a per-table random seed so that keys chosen by clients (room
 * names) cannot be aimed at one bucket cheaply.
 *
 * Iteration: dict_next() may be called while the entry it returned last is
 * deleted (dict_del of that key), but not while others are added or deleted. */
#ifndef AEOLUS_DICT_H
#define AEOLUS_DICT_H

#include <stddef.h>
#include <stdint.h>

struct dict_entry {
	struct dict_entry *next;
	void *val;
	uint64_t hash;
	size_t klen;
	char key[];          /* NUL-terminated */
};

struct dict {
	struct dict_entry **b;
	size_t nb;           /* bucket count, a power of two (0 until first add) */
	size_t n;            /* entries */
	uint64_t seed;
};

struct dict_iter {
	struct dict *d;
	size_t bucket;
	struct dict_entry *next;
};

void dict_init(struct dict *d);
/* Frees the table and keys (not the values). */
void dict_free(struct dict *d);
void *dict_get(const struct dict *d, const char *key);
/* Adds or replaces. Returns 0, or -1 when out of memory. */
int dict_set(struct dict *d, const char *key, void *val);
/* Removes the key; returns its value or NULL. */
void *dict_del(struct dict *d, const char *key);
static inline size_t dict_size(const struct dict *d) { return d->n; }

void dict_iter_init(struct dict_iter *it, struct dict *d);
struct dict_entry *dict_next(struct dict_iter *it);

#endif
