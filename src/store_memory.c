/* store_memory.c -- the memory store: the state of store.h in this process.
 *
 * Tables (struct dict), each owning its values:
 *   online     nsp -> group (a table: user -> struct presence)
 *   rooms      key(nsp, room) -> group
 *   channels   channel -> json_object
 *   histories  channel -> struct history
 *   lists      key -> struct history (list_append: no ids, next unused)
 *   cooldowns  key(key, user) -> struct timed
 *   typing     key(nsp, room, user) -> struct timed
 * A composite key is every part as "<length>:<bytes>", so no choice of room
 * or user names can make two different tuples one key. Groups and presences
 * are freed when they become empty. A history is kept, empty or not, once
 * created: it holds the channel's id counter, which must never go back.
 *
 * Completions: an operation does its work at once and queues a record
 * (callback, ud, result) at the tail of one FIFO; a loop-wide event, made
 * active with event_active() (it runs after the callbacks already queued in
 * the loop iteration), calls them in the order the operations were started. A record
 * owns its json result (put after the callback). store_free() from inside a
 * callback is allowed: the pass stops, drops the rest and frees the store.
 *
 * Expiry: cooldowns and typing entries (struct timed) are also in a binary
 * min-heap by deadline, under one libevent timer armed for the earliest.
 * Setting, refreshing or clearing an entry is O(log n). An entry whose
 * deadline has passed is expired when the timer fires or when an operation
 * looks it up, whichever comes first: a cooldown is simply freed; a typing
 * entry is moved into a completion record that reports it through
 * on_typing_expired, in order with the other completions.
 *
 * Faults: none to survive. One process holds every sid, so nothing is
 * reaped (room_add's info is not kept), nothing resynchronised, and retire
 * only completes.
 *
 * Memory: running out of memory aborts the process (as Redis does): the
 * store has no way to report it, since a callback that cannot be queued
 * cannot be called, and a half-done change cannot be reported either. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "dict.h"
#include "log.h"
#include "store.h"
#include "util.h"

#define MAX_TIMER_MS (3600 * 1000)  /* the longest wait of the timer; it re-arms */

/* A user in a group: present while it has a sid. */
struct presence {
	char *name;                  /* owned */
	uint64_t at;                 /* wall ms of the last add (lastActive) */
	struct dict sids;            /* sid -> &present */
};

/* A channel's history: the newest messages in a ring, oldest at head. The
 * stored messages have consecutive ids, next - len .. next - 1. */
struct history {
	json_object **v;             /* each message owned (a reference) */
	size_t head, len, size;      /* size: slots in v */
	uint64_t next;               /* the id of the next message, from 1 */
};

/* A cooldown or a typing entry: owned by its table and the heap together,
 * or, once a typing entry has expired, by the record that reports it. */
struct timed {
	uint64_t at;                 /* deadline, mono ms */
	size_t hidx;                 /* index in the heap */
	struct dict *table;          /* the table it is in, under key */
	char *key;                   /* owned */
	char *nsp, *room, *user;     /* typing only; owned */
	json_object *info;           /* typing only; owned, may be NULL */
};

enum done_kind { D_DONE, D_FLAG, D_JSON, D_COOLDOWN, D_COUNT, D_EXPIRED };

/* A completion waiting for the pass. */
struct done {
	struct done *next;
	enum done_kind kind;
	union {
		store_done_cb done;
		store_flag_cb flag;
		store_json_cb json;
		store_cooldown_cb cooldown;
		store_count_cb count;
	} cb;
	void *ud;
	int flag;                    /* D_FLAG: flag; D_COOLDOWN: ok */
	uint64_t retry_after_ms;     /* D_COOLDOWN; D_COUNT: the count */
	json_object *val;            /* D_JSON: owned, may be NULL */
	struct timed *t;             /* D_EXPIRED: owned */
};

struct mstore {
	struct store st;             /* first: a struct store * is a struct mstore * */
	struct event *pass;          /* runs the completions */
	struct event *timer;         /* the heap's earliest deadline */
	struct done *head, **tail;   /* the completions, in order */
	int running;                 /* the pass is calling back */
	int freed;                   /* store_free() came during the pass */
	struct dict online, rooms, channels, histories, lists, cooldowns, typing;
	struct timed **heap;
	size_t nheap, capheap;
	int armed;                   /* the timer is pending, for armed_at */
	uint64_t armed_at;
	struct buf key;              /* scratch for composite keys */
};

static char present;             /* the value of every sid in a sid set */

/* --- helpers (allocation that cannot fail is util.h's xmust and friends) --- */

static void xset(struct dict *d, const char *key, void *val)
{
	if (dict_set(d, key, val) < 0)
		xmust(NULL);
}

/* Frees every value with fr, then the table. */
static void dict_clear(struct dict *d, void (*fr)(void *))
{
	struct dict_iter it;
	struct dict_entry *e;

	dict_iter_init(&it, d);
	while ((e = dict_next(&it)))
		fr(e->val);
	dict_free(d);
}

/* --- json --- */

/* A deep copy of o (NULL for NULL), owned by the caller. */
static json_object *jcopy(json_object *o)
{
	json_object *c = NULL;
	if (o && json_object_deep_copy(o, &c, NULL) < 0)
		xmust(NULL);
	return c;
}

static void jput(void *o)
{
	json_object_put(o);
}

/* Gives val (its reference) to the object o under key, or to the array a. */
static void jadd(json_object *o, const char *key, json_object *val)
{
	if (!val || json_object_object_add(o, key, val) < 0)
		xmust(NULL);
}

static void jpush(json_object *a, json_object *val)
{
	if (!val || json_object_array_add(a, val) < 0)
		xmust(NULL);
}

/* --- keys --- */

/* The composite key of a, b and c (c may be NULL), in m->key: valid until
 * the next call. */
static const char *mkkey(struct mstore *m, const char *a, const char *b, const char *c)
{
	buf_reset(&m->key);
	if (buf_printf(&m->key, "%zu:%s%zu:%s", strlen(a), a, strlen(b), b) < 0 ||
	    (c && buf_printf(&m->key, "%zu:%s", strlen(c), c) < 0))
		xmust(NULL);
	return m->key.p;
}

/* --- completions --- */

static struct done *queue(struct mstore *m, enum done_kind kind, void *ud)
{
	struct done *d = xcalloc(1, sizeof *d);

	d->kind = kind;
	d->ud = ud;
	*m->tail = d;
	m->tail = &d->next;
	event_active(m->pass, EV_WRITE, 0);
	return d;
}

static void queue_done(struct mstore *m, store_done_cb cb, void *ud)
{
	queue(m, D_DONE, ud)->cb.done = cb;
}

static void queue_flag(struct mstore *m, store_flag_cb cb, void *ud, int flag)
{
	struct done *d = queue(m, D_FLAG, ud);
	d->cb.flag = cb;
	d->flag = flag;
}

/* val: owned by the record from now on. */
static void queue_json(struct mstore *m, store_json_cb cb, void *ud, json_object *val)
{
	struct done *d = queue(m, D_JSON, ud);
	d->cb.json = cb;
	d->val = val;
}

static void queue_cooldown(struct mstore *m, store_cooldown_cb cb, void *ud, int ok,
                           uint64_t retry_after_ms)
{
	struct done *d = queue(m, D_COOLDOWN, ud);
	d->cb.cooldown = cb;
	d->flag = ok;
	d->retry_after_ms = retry_after_ms;
}

static void queue_count(struct mstore *m, store_count_cb cb, void *ud, uint64_t n)
{
	struct done *d = queue(m, D_COUNT, ud);
	d->cb.count = cb;
	d->retry_after_ms = n;
}

static void timed_free(struct timed *t);

/* t: an expired typing entry, owned by the record from now on. */
static void queue_expired(struct mstore *m, struct timed *t)
{
	queue(m, D_EXPIRED, NULL)->t = t;
}

static void done_free(struct done *d)
{
	json_object_put(d->val);
	if (d->t)
		timed_free(d->t);
	free(d);
}

/* Frees a list of records without calling them. */
static void done_drop(struct done *d)
{
	while (d) {
		struct done *next = d->next;
		done_free(d);
		d = next;
	}
}

static void done_call(struct mstore *m, struct done *d)
{
	switch (d->kind) {
	case D_DONE:
		d->cb.done(0, d->ud);
		break;
	case D_FLAG:
		d->cb.flag(0, d->flag, d->ud);
		break;
	case D_JSON:
		d->cb.json(0, d->val, d->ud);
		break;
	case D_COOLDOWN:
		d->cb.cooldown(0, d->flag, d->retry_after_ms, d->ud);
		break;
	case D_COUNT:
		d->cb.count(0, d->retry_after_ms, d->ud);
		break;
	case D_EXPIRED:
		if (m->st.on_typing_expired)
			m->st.on_typing_expired(d->t->nsp, d->t->room, d->t->user, d->t->info,
			                        m->st.on_typing_expired_ud);
		break;
	}
}

static void destroy(struct mstore *m);

/* Calls back what is queued now; what the callbacks queue waits for the
 * next pass (which they have made active). */
static void on_pass(evutil_socket_t fd, short what, void *arg)
{
	struct mstore *m = arg;
	struct done *list = m->head;

	(void)fd;
	(void)what;
	m->head = NULL;
	m->tail = &m->head;
	m->running = 1;
	while (list && !m->freed) {
		struct done *d = list;
		list = d->next;
		done_call(m, d);
		done_free(d);
	}
	m->running = 0;
	done_drop(list);
	if (m->freed)
		destroy(m);
}

/* --- the expiry heap --- */

static int heap_less(struct mstore *m, size_t i, size_t j)
{
	return m->heap[i]->at < m->heap[j]->at;
}

static void heap_swap(struct mstore *m, size_t i, size_t j)
{
	struct timed *t = m->heap[i];

	m->heap[i] = m->heap[j];
	m->heap[j] = t;
	m->heap[i]->hidx = i;
	m->heap[j]->hidx = j;
}

static void heap_up(struct mstore *m, size_t i)
{
	while (i > 0 && heap_less(m, i, (i - 1) / 2)) {
		heap_swap(m, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(struct mstore *m, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, min = i;
		if (l < m->nheap && heap_less(m, l, min))
			min = l;
		if (r < m->nheap && heap_less(m, r, min))
			min = r;
		if (min == i)
			return;
		heap_swap(m, i, min);
		i = min;
	}
}

static void heap_push(struct mstore *m, struct timed *t)
{
	if (m->nheap == m->capheap) {
		size_t cap = m->capheap ? m->capheap * 2 : 16;
		m->heap = xmust(realloc(m->heap, cap * sizeof *m->heap));
		m->capheap = cap;
	}
	t->hidx = m->nheap;
	m->heap[m->nheap++] = t;
	heap_up(m, t->hidx);
}

/* Restores the order after t->at changed. */
static void heap_fix(struct mstore *m, struct timed *t)
{
	heap_up(m, t->hidx);
	heap_down(m, t->hidx);
}

static void heap_remove(struct mstore *m, struct timed *t)
{
	size_t i = t->hidx;

	m->nheap--;
	if (i == m->nheap)
		return;
	m->heap[i] = m->heap[m->nheap];
	m->heap[i]->hidx = i;
	heap_fix(m, m->heap[i]);
}

/* Points the timer at the earliest deadline (after any heap change). */
static void timer_arm(struct mstore *m)
{
	if (!m->nheap) {
		if (m->armed)
			event_del(m->timer);
		m->armed = 0;
		return;
	}
	uint64_t at = m->heap[0]->at, now = mono_ms();
	if (m->armed && m->armed_at == at)
		return;
	uint64_t ms = at > now ? at - now : 0;
	if (ms > MAX_TIMER_MS)
		ms = MAX_TIMER_MS;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	event_add(m->timer, &tv);
	m->armed = 1;
	m->armed_at = at;
}

/* --- timed entries --- */

static uint64_t deadline(uint64_t now, uint64_t ms)
{
	return ms > UINT64_MAX - now ? UINT64_MAX : now + ms;
}

static void timed_free(struct timed *t)
{
	free(t->key);
	free(t->nsp);
	free(t->room);
	free(t->user);
	json_object_put(t->info);
	free(t);
}

/* A new entry under key in table, deadline at, in the heap. */
static struct timed *timed_new(struct mstore *m, struct dict *table, const char *key,
                               uint64_t at)
{
	struct timed *t = xcalloc(1, sizeof *t);

	t->table = table;
	t->key = xstrdup(key);
	t->at = at;
	xset(table, key, t);
	heap_push(m, t);
	return t;
}

/* Takes t out of its table and the heap: the caller owns it. */
static void timed_unlink(struct mstore *m, struct timed *t)
{
	heap_remove(m, t);
	dict_del(t->table, t->key);
}

static void expire(struct mstore *m, struct timed *t)
{
	timed_unlink(m, t);
	if (t->table == &m->typing)
		queue_expired(m, t);
	else
		timed_free(t);
}

/* The live entry under key, expiring it first if its deadline has passed. */
static struct timed *timed_get(struct mstore *m, struct dict *table, const char *key,
                               uint64_t now)
{
	struct timed *t = dict_get(table, key);

	if (t && t->at <= now) {
		expire(m, t);
		t = NULL;
	}
	return t;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct mstore *m = arg;
	uint64_t now = mono_ms();

	(void)fd;
	(void)what;
	m->armed = 0;
	while (m->nheap && m->heap[0]->at <= now)
		expire(m, m->heap[0]);
	timer_arm(m);
}

/* --- groups: who is online in a namespace, or in a room --- */

static void presence_free(void *v)
{
	struct presence *p = v;

	dict_free(&p->sids);
	free(p->name);
	free(p);
}

static void group_free(void *g)
{
	dict_clear(g, presence_free);
	free(g);
}

/* Adds sid to user in the group gkey. Returns 1 when it is the user's first. */
static int group_add(struct dict *groups, const char *gkey, const char *user, const char *name,
                     const char *sid)
{
	struct dict *g = dict_get(groups, gkey);
	if (!g) {
		g = xcalloc(1, sizeof *g);
		dict_init(g);
		xset(groups, gkey, g);
	}
	struct presence *p = dict_get(g, user);
	int first = !p;
	if (!p) {
		p = xcalloc(1, sizeof *p);
		p->name = xstrdup(name ? name : user);
		dict_init(&p->sids);
		xset(g, user, p);
	} else if (name && strcmp(name, p->name) != 0) {
		free(p->name);
		p->name = xstrdup(name);
	}
	xset(&p->sids, sid, &present);
	p->at = wall_ms();
	return first;
}

/* Removes sid from user in the group gkey. Returns 1 when it was the last. */
static int group_remove(struct dict *groups, const char *gkey, const char *user, const char *sid)
{
	struct dict *g = dict_get(groups, gkey);
	struct presence *p = g ? dict_get(g, user) : NULL;

	if (!p || !dict_del(&p->sids, sid) || dict_size(&p->sids))
		return 0;
	presence_free(dict_del(g, user));
	if (!dict_size(g))
		group_free(dict_del(groups, gkey));
	return 1;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct dict_entry *x = *(const struct dict_entry *const *)a;
	const struct dict_entry *y = *(const struct dict_entry *const *)b;
	return strcmp(x->key, y->key);
}

/* [{"userId":..., "name":..., "lastActive":...}, ...] of the group gkey,
 * sorted by userId. */
static json_object *group_list(struct dict *groups, const char *gkey)
{
	json_object *a = xmust(json_object_new_array());
	struct dict *g = dict_get(groups, gkey);
	if (!g)
		return a;

	struct dict_entry **v = xcalloc(dict_size(g), sizeof *v), *e;
	struct dict_iter it;
	size_t n = 0;
	dict_iter_init(&it, g);
	while ((e = dict_next(&it)))
		v[n++] = e;
	qsort(v, n, sizeof *v, entry_cmp);
	for (size_t i = 0; i < n; i++) {
		struct presence *p = v[i]->val;
		json_object *o = xmust(json_object_new_object());
		jadd(o, "userId", json_object_new_string(v[i]->key));
		jadd(o, "name", json_object_new_string(p->name));
		jadd(o, "lastActive", json_object_new_int64((int64_t)p->at));
		jpush(a, o);
	}
	free(v);
	return a;
}

/* --- presence and rooms --- */

static void m_user_add(struct store *st, const char *nsp, const char *user, const char *name,
                       const char *sid, store_flag_cb cb, void *ud)
{
	struct mstore *m = (struct mstore *)st;
	queue_flag(m, cb, ud, group_add(&m->online, nsp, user, name, sid));
}

static void m_user_remove(struct store *st, const char *nsp, const char *user, const char *sid,
                          store_flag_cb cb, void *ud)
{
	struct mstore *m = (struct mstore *)st;
	queue_flag(m, cb, ud, group_remove(&m->online, nsp, user, sid));
}

static void m_user_online(struct store *st, const char *nsp, const char *user,
                          store_flag_cb cb, void *ud)
{
	struct mstore *m = (struct mstore *)st;
	struct dict *g = dict_get(&m->online, nsp);
	queue_flag(m, cb, ud, g && dict_get(g, user) != NULL);
}

static void m_users_count(struct store *st, const char *nsp, store_count_cb cb, void *ud)
{
	struct mstore *m = (struct mstore *)st;
	struct dict *g = dict_get(&m->online, nsp);
	queue_count(m, cb, ud, g ? dict_size(g) : 0);
}

static void m_users_online(struct store *st, const char *nsp, store_json_cb cb, void *ud)
{
	struct mstore *m = (struct mstore *)st;
	queue_json(m, cb, ud, group_list(&m->online, nsp));
}

/* info is not kept: one process has no other instance to reap it. */
static void m_room_add(struct store *st, const char *nsp, const char *room, const char *user,
                       const char *name, const char *sid, json_object *info, store_flag_cb cb,
                       void *ud)
{
	struct mstore *m = (struct mstore *)st;
	(void)info;
	const char *k = mkkey(m, nsp, room, NULL);
	queue_flag(m, cb, ud, group_add(&m->rooms, k, user, name, sid));
}

static void m_room_remove(struct store *st, const char *nsp, const char *room, const char *user,
                          const char *sid, store_flag_cb cb, void *ud)
{
	struct mstore *m = (struct mstore *)st;
	const char *k = mkkey(m, nsp, room, NULL);
	queue_flag(m, cb, ud, group_remove(&m->rooms, k, user, sid));
}

static void m_room_members(struct store *st, const char *nsp, const char *room,
                           store_json_cb cb, void *ud)
{
	struct mstore *m = (struct mstore *)st;
	const char *k = mkkey(m, nsp, room, NULL);
	queue_json(m, cb, ud, group_list(&m->rooms, k));
}

/* --- channels --- */

static void m_channel_get(struct store *st, const char *channel, store_json_cb cb, void *ud)
{
	struct mstore *m = (struct mstore *)st;
	/* Shared, not copied: a stored value is never modified, only replaced. */
	queue_json(m, cb, ud, json_object_get(dict_get(&m->channels, channel)));
}

static void m_channel_set(struct store *st, const char *channel, json_object *value,
                          store_done_cb cb, void *ud)
{
	struct mstore *m = (struct mstore *)st;
	json_object *old = value ? dict_get(&m->channels, channel)
	                         : dict_del(&m->channels, channel);

	if (value)
		xset(&m->channels, channel, jcopy(value));
	json_object_put(old);
	queue_done(m, cb, ud);
}

/* --- histories --- */

/* The i-th stored message, 0 being the oldest. */
static json_object *history_at(const struct history *h, size_t i)
{
	return h->v[(h->head + i) % h->size];
}

static void history_free(void *v)
{
	struct history *h = v;

	for (size_t i = 0; i < h->len; i++)
		json_object_put(history_at(h, i));
	free(h->v);
	free(h);
}

static struct history *history_of(struct mstore *m, const char *channel)
{
	struct history *h = dict_get(&m->histories, channel);
	if (!h) {
		h = xcalloc(1, sizeof *h);
		h->next = 1;
		xset(&m->histories, channel, h);
	}
	return h;
}

static void history_push(struct history *h, json_object *msg)
{
	if (h->len == h->size) {
		size_t size = h->size ? h->size * 2 : 8;
		json_object **v = xcalloc(size, sizeof *v);
		for (size_t i = 0; i < h->len; i++)
			v[i] = history_at(h, i);
		free(h->v);
		h->v = v;
		h->size = size;
		h->head = 0;
	}
	h->v[(h->head + h->len) % h->size] = msg;
	h->len++;
}

/* Drops the oldest messages until at most cap are left. */
static void history_trim(struct history *h, size_t cap)
{
	while (h->len > cap) {
		json_object_put(h->v[h->head]);
		h->head = (h->head + 1) % h->size;
		h->len--;
	}
}

static void m_history_add(struct store *st, const char *channel, json_object *msg, unsigned cap,
                          store_json_cb cb, void *ud)
{
	struct mstore *m = (struct mstore *)st;
	struct history *h = history_of(m, channel);
	json_object *copy = jcopy(msg);
	char id[24];

	snprintf(id, sizeof id, "%" PRIu64, h->next++);
	jadd(copy, "id", json_object_new_string(id));
	history_push(h, json_object_get(copy));
	history_trim(h, cap);
	queue_json(m, cb, ud, copy);
}

static int is_set(const char *id)
{
	return id && *id;
}

/* How many stored messages have an id up to id (included). */
static size_t count_upto(const struct history *h, uint64_t id)
{
	uint64_t first = h->next - h->len;   /* the oldest's id; at least 1 */

	if (id < first)
		return 0;
	return id - first < h->len ? (size_t)(id - first) + 1 : h->len;
}

/* The messages of h that q selects, as the index range [*lo, *hi). */
static void history_select(const struct history *h, const struct history_query *q,
                           size_t *lo, size_t *hi)
{
	uint64_t id;

	*lo = 0;
	*hi = h->len;
	if (is_set(q->after)) {
		if (parse_u64(q->after, &id) < 0)
			goto none;
		*lo = count_upto(h, id);
	}
	if (is_set(q->before)) {
		if (parse_u64(q->before, &id) < 0)
			goto none;
		*hi = id ? count_upto(h, id - 1) : 0;
	}
	if (*hi < *lo)
		goto none;
	if (*hi - *lo > q->limit) {
		if (is_set(q->after))
			*hi = *lo + q->limit;
		else
			*lo = *hi - q->limit;
	}
	return;
none:
	*lo = *hi = 0;
}

static void m_history_get(struct store *st, const char *channel, const struct history_query *q,
                          store_json_cb cb, void *ud)
{
	struct mstore *m = (struct mstore *)st;
	struct history *h = dict_get(&m->histories, channel);
	json_object *a = xmust(json_object_new_array());
	size_t lo = 0, hi = 0;

	if (h)
		history_select(h, q, &lo, &hi);
	/* Shared, not copied: a stored message is never modified. */
	for (size_t i = lo; i < hi; i++)
		jpush(a, json_object_get(history_at(h, i)));
	queue_json(m, cb, ud, a);
}

/* --- lists shared with another program --- */

/* Kept as values, not text: what the memory store holds only this process
 * wrote, so every element is JSON. */
static void m_list_append(struct store *st, const char *key, json_object *msg, unsigned cap,
                          store_done_cb cb, void *ud)
{
	struct mstore *m = (struct mstore *)st;
	struct history *h = dict_get(&m->lists, key);

	if (!h) {
		h = xcalloc(1, sizeof *h);
		xset(&m->lists, key, h);
	}
	history_push(h, jcopy(msg));
	history_trim(h, cap);
	if (h->len == 0) {               /* as Redis: an empty list is no list */
		dict_del(&m->lists, key);
		history_free(h);
	}
	queue_done(m, cb, ud);
}

static void m_list_tail(struct store *st, const char *key, unsigned limit, store_json_cb cb,
                        void *ud)
{
	struct mstore *m = (struct mstore *)st;
	struct history *h = dict_get(&m->lists, key);
	json_object *a = xmust(json_object_new_array());

	/* Shared, not copied: a stored element is never modified. */
	for (size_t i = h && h->len > limit ? h->len - limit : 0; h && i < h->len; i++)
		jpush(a, json_object_get(history_at(h, i)));
	queue_json(m, cb, ud, a);
}

/* --- cooldowns and typing --- */

static void m_cooldown_take(struct store *st, const char *key, const char *user, uint64_t ms,
                            store_cooldown_cb cb, void *ud)
{
	struct mstore *m = (struct mstore *)st;
	uint64_t now = mono_ms();
	const char *k = mkkey(m, key, user, NULL);
	struct timed *t = timed_get(m, &m->cooldowns, k, now);

	if (t) {
		queue_cooldown(m, cb, ud, 0, t->at - now);
		return;
	}
	timed_new(m, &m->cooldowns, k, deadline(now, ms));
	timer_arm(m);
	queue_cooldown(m, cb, ud, 1, 0);
}

static void m_typing_set(struct store *st, const char *nsp, const char *room, const char *user,
                         json_object *info, uint64_t ttl_ms, store_flag_cb cb, void *ud)
{
	struct mstore *m = (struct mstore *)st;
	uint64_t now = mono_ms(), at = deadline(now, ttl_ms);
	const char *k = mkkey(m, nsp, room, user);
	struct timed *t = timed_get(m, &m->typing, k, now);
	int fresh = !t;

	if (fresh) {
		t = timed_new(m, &m->typing, k, at);
		t->nsp = xstrdup(nsp);
		t->room = xstrdup(room);
		t->user = xstrdup(user);
	} else {
		t->at = at;
		heap_fix(m, t);
		json_object_put(t->info);
	}
	t->info = jcopy(info);
	timer_arm(m);
	queue_flag(m, cb, ud, fresh);
}

static void m_typing_clear(struct store *st, const char *nsp, const char *room, const char *user,
                           store_flag_cb cb, void *ud)
{
	struct mstore *m = (struct mstore *)st;
	const char *k = mkkey(m, nsp, room, user);
	struct timed *t = timed_get(m, &m->typing, k, mono_ms());

	if (t) {
		timed_unlink(m, t);
		timed_free(t);
	}
	timer_arm(m);
	queue_flag(m, cb, ud, t != NULL);
}

/* --- the store --- */

/* Nothing to undo: the sids die with the process, and no other instance
 * takes it for dead (on_reaped and on_resync are never called). */
static void m_retire(struct store *st, store_done_cb cb, void *ud)
{
	queue_done((struct mstore *)st, cb, ud);
}

static void destroy(struct mstore *m)
{
	done_drop(m->head);
	event_free(m->pass);
	event_free(m->timer);
	dict_clear(&m->online, group_free);
	dict_clear(&m->rooms, group_free);
	dict_clear(&m->channels, jput);
	dict_clear(&m->histories, history_free);
	dict_clear(&m->lists, history_free);
	/* Every cooldown and typing entry is in the heap exactly once. */
	for (size_t i = 0; i < m->nheap; i++)
		timed_free(m->heap[i]);
	free(m->heap);
	dict_free(&m->cooldowns);
	dict_free(&m->typing);
	buf_free(&m->key);
	free(m);
}

static void m_free(struct store *st)
{
	struct mstore *m = (struct mstore *)st;

	if (m->running)
		m->freed = 1;            /* the pass finishes the job */
	else
		destroy(m);
}

static const struct store_ops memory_ops = {
	.name = "memory",
	.user_add = m_user_add,
	.user_remove = m_user_remove,
	.user_online = m_user_online,
	.users_count = m_users_count,
	.users_online = m_users_online,
	.room_add = m_room_add,
	.room_remove = m_room_remove,
	.room_members = m_room_members,
	.channel_get = m_channel_get,
	.channel_set = m_channel_set,
	.history_add = m_history_add,
	.history_get = m_history_get,
	.list_append = m_list_append,
	.list_tail = m_list_tail,
	.cooldown_take = m_cooldown_take,
	.typing_set = m_typing_set,
	.typing_clear = m_typing_clear,
	.retire = m_retire,
	.free = m_free,
};

struct store *store_memory_new(struct event_base *base)
{
	struct mstore *m = xcalloc(1, sizeof *m);

	m->st.ops = &memory_ops;
	m->pass = xmust(event_new(base, -1, 0, on_pass, m));
	m->timer = xmust(evtimer_new(base, on_timer, m));
	m->tail = &m->head;
	dict_init(&m->online);
	dict_init(&m->rooms);
	dict_init(&m->channels);
	dict_init(&m->histories);
	dict_init(&m->lists);
	dict_init(&m->cooldowns);
	dict_init(&m->typing);
	buf_init(&m->key, 0);
	return &m->st;
}
