/* store_timed.c -- a store that times the operations of another one.
 *
 * Every operation is passed on to the inner store with a record of ours
 * as its ud: the record holds the caller's callback and ud, and the start
 * time; our callback takes the record out, reports the time and the error
 * to the observer, then calls the caller's callback. The inner store keeps
 * all its guarantees (order, never from inside the call), since ours add
 * nothing but the record.
 *
 * Records are in a list so that store_free() can free those whose
 * callbacks the inner store drops. A record is taken out of the list before
 * the caller's callback runs, which may free the store.
 *
 * Typing expiries, reaped sids and resyncs: the inner store reports them
 * to us, always (so an inner Redis store polls for expiries and reaps);
 * we pass each on to the outer store's callback as it is at that moment
 * (the application sets them after store_timed_new). */
#include <stdlib.h>
#include <time.h>

#include "store.h"
#include "util.h"

/* Whoever adds an operation to store_ops or a field to struct store must
 * pass it through here too (then update these counts). */
_Static_assert(sizeof(struct store_ops) == 20 * sizeof(void *),
               "store_timed.c: time the new store operation");
_Static_assert(sizeof(struct store) == 7 * sizeof(void *),
               "store_timed.c: pass the new field of struct store on to the inner store");

const char *const store_op_names[STORE_NOPS] = {
	[STORE_OP_USER_ADD] = "user_add",
	[STORE_OP_USER_REMOVE] = "user_remove",
	[STORE_OP_USER_ONLINE] = "user_online",
	[STORE_OP_USERS_COUNT] = "users_count",
	[STORE_OP_USERS_ONLINE] = "users_online",
	[STORE_OP_ROOM_ADD] = "room_add",
	[STORE_OP_ROOM_REMOVE] = "room_remove",
	[STORE_OP_ROOM_MEMBERS] = "room_members",
	[STORE_OP_CHANNEL_GET] = "channel_get",
	[STORE_OP_CHANNEL_SET] = "channel_set",
	[STORE_OP_HISTORY_ADD] = "history_add",
	[STORE_OP_HISTORY_GET] = "history_get",
	[STORE_OP_LIST_APPEND] = "list_append",
	[STORE_OP_LIST_TAIL] = "list_tail",
	[STORE_OP_COOLDOWN_TAKE] = "cooldown_take",
	[STORE_OP_TYPING_SET] = "typing_set",
	[STORE_OP_TYPING_CLEAR] = "typing_clear",
	[STORE_OP_RETIRE] = "retire",
};

struct tstore {
	struct store st;             /* first: a struct store * is a struct tstore * */
	struct store_ops ops;        /* ours, with the inner store's name */
	struct store *inner;         /* owned */
	store_observe_cb observe;
	void *observe_ud;
	struct rec *recs;            /* the operations under way */
};

struct rec {
	struct rec *prev, *next;
	struct tstore *t;
	enum store_op op;
	uint64_t start_ns;
	union {
		store_done_cb done;
		store_flag_cb flag;
		store_json_cb json;
		store_cooldown_cb cooldown;
		store_count_cb count;
	} cb;
	void *ud;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct rec *rec_new(struct tstore *t, enum store_op op, void *ud)
{
	struct rec *r = xcalloc(1, sizeof *r);
	r->t = t;
	r->op = op;
	r->ud = ud;
	r->next = t->recs;
	if (t->recs)
		t->recs->prev = r;
	t->recs = r;
	r->start_ns = now_ns();
	return r;
}

static void rec_unlink(struct rec *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		r->t->recs = r->next;
	if (r->next)
		r->next->prev = r->prev;
}

/* Takes r out, reports it, and frees it: the caller has copied its cb. */
static void *rec_end(struct rec *r, int err)
{
	struct tstore *t = r->t;
	void *ud = r->ud;
	rec_unlink(r);
	if (t->observe)
		t->observe(r->op, now_ns() - r->start_ns, err, t->observe_ud);
	free(r);
	return ud;
}

/* --- callbacks --- */

static void done_cb(int err, void *arg)
{
	struct rec *r = arg;
	store_done_cb cb = r->cb.done;
	cb(err, rec_end(r, err));
}

static void flag_cb(int err, int flag, void *arg)
{
	struct rec *r = arg;
	store_flag_cb cb = r->cb.flag;
	cb(err, flag, rec_end(r, err));
}

static void json_cb(int err, json_object *val, void *arg)
{
	struct rec *r = arg;
	store_json_cb cb = r->cb.json;
	cb(err, val, rec_end(r, err));
}

static void cooldown_cb(int err, int ok, uint64_t retry_after_ms, void *arg)
{
	struct rec *r = arg;
	store_cooldown_cb cb = r->cb.cooldown;
	cb(err, ok, retry_after_ms, rec_end(r, err));
}

static void count_cb(int err, uint64_t n, void *arg)
{
	struct rec *r = arg;
	store_count_cb cb = r->cb.count;
	cb(err, n, rec_end(r, err));
}

static void on_expired(const char *nsp, const char *room, const char *user, json_object *info,
                       void *ud)
{
	struct tstore *t = ud;
	if (t->st.on_typing_expired)
		t->st.on_typing_expired(nsp, room, user, info, t->st.on_typing_expired_ud);
}

static void on_reaped(const char *nsp, const char *room, const char *user, const char *name,
                      json_object *info, void *ud)
{
	struct tstore *t = ud;
	if (t->st.on_reaped)
		t->st.on_reaped(nsp, room, user, name, info, t->st.on_reaped_ud);
}

static void on_resync(void *ud)
{
	struct tstore *t = ud;
	if (t->st.on_resync)
		t->st.on_resync(t->st.on_resync_ud);
}

/* --- the operations --- */

#define T(st) ((struct tstore *)(st))

static struct rec *rec_flag(struct tstore *t, enum store_op op, store_flag_cb cb, void *ud)
{
	struct rec *r = rec_new(t, op, ud);
	r->cb.flag = cb;
	return r;
}

static struct rec *rec_json(struct tstore *t, enum store_op op, store_json_cb cb, void *ud)
{
	struct rec *r = rec_new(t, op, ud);
	r->cb.json = cb;
	return r;
}

static void t_user_add(struct store *st, const char *nsp, const char *user, const char *name,
                       const char *sid, store_flag_cb cb, void *ud)
{
	struct rec *r = rec_flag(T(st), STORE_OP_USER_ADD, cb, ud);
	store_user_add(T(st)->inner, nsp, user, name, sid, flag_cb, r);
}

static void t_user_remove(struct store *st, const char *nsp, const char *user, const char *sid,
                          store_flag_cb cb, void *ud)
{
	struct rec *r = rec_flag(T(st), STORE_OP_USER_REMOVE, cb, ud);
	store_user_remove(T(st)->inner, nsp, user, sid, flag_cb, r);
}

static void t_user_online(struct store *st, const char *nsp, const char *user,
                          store_flag_cb cb, void *ud)
{
	struct rec *r = rec_flag(T(st), STORE_OP_USER_ONLINE, cb, ud);
	store_user_online(T(st)->inner, nsp, user, flag_cb, r);
}

static void t_users_count(struct store *st, const char *nsp, store_count_cb cb, void *ud)
{
	struct rec *r = rec_new(T(st), STORE_OP_USERS_COUNT, ud);
	r->cb.count = cb;
	store_users_count(T(st)->inner, nsp, count_cb, r);
}

static void t_users_online(struct store *st, const char *nsp, store_json_cb cb, void *ud)
{
	struct rec *r = rec_json(T(st), STORE_OP_USERS_ONLINE, cb, ud);
	store_users_online(T(st)->inner, nsp, json_cb, r);
}

static void t_room_add(struct store *st, const char *nsp, const char *room, const char *user,
                       const char *name, const char *sid, json_object *info, store_flag_cb cb,
                       void *ud)
{
	struct rec *r = rec_flag(T(st), STORE_OP_ROOM_ADD, cb, ud);
	store_room_add(T(st)->inner, nsp, room, user, name, sid, info, flag_cb, r);
}

static void t_room_remove(struct store *st, const char *nsp, const char *room, const char *user,
                          const char *sid, store_flag_cb cb, void *ud)
{
	struct rec *r = rec_flag(T(st), STORE_OP_ROOM_REMOVE, cb, ud);
	store_room_remove(T(st)->inner, nsp, room, user, sid, flag_cb, r);
}

static void t_room_members(struct store *st, const char *nsp, const char *room,
                           store_json_cb cb, void *ud)
{
	struct rec *r = rec_json(T(st), STORE_OP_ROOM_MEMBERS, cb, ud);
	store_room_members(T(st)->inner, nsp, room, json_cb, r);
}

static void t_channel_get(struct store *st, const char *channel, store_json_cb cb, void *ud)
{
	struct rec *r = rec_json(T(st), STORE_OP_CHANNEL_GET, cb, ud);
	store_channel_get(T(st)->inner, channel, json_cb, r);
}

static void t_channel_set(struct store *st, const char *channel, json_object *value,
                          store_done_cb cb, void *ud)
{
	struct rec *r = rec_new(T(st), STORE_OP_CHANNEL_SET, ud);
	r->cb.done = cb;
	store_channel_set(T(st)->inner, channel, value, done_cb, r);
}

static void t_history_add(struct store *st, const char *channel, json_object *msg, unsigned cap,
                          store_json_cb cb, void *ud)
{
	struct rec *r = rec_json(T(st), STORE_OP_HISTORY_ADD, cb, ud);
	store_history_add(T(st)->inner, channel, msg, cap, json_cb, r);
}

static void t_history_get(struct store *st, const char *channel, const struct history_query *q,
                          store_json_cb cb, void *ud)
{
	struct rec *r = rec_json(T(st), STORE_OP_HISTORY_GET, cb, ud);
	store_history_get(T(st)->inner, channel, q, json_cb, r);
}

static void t_list_append(struct store *st, const char *key, json_object *msg, unsigned cap,
                          store_done_cb cb, void *ud)
{
	struct rec *r = rec_new(T(st), STORE_OP_LIST_APPEND, ud);
	r->cb.done = cb;
	store_list_append(T(st)->inner, key, msg, cap, done_cb, r);
}

static void t_list_tail(struct store *st, const char *key, unsigned limit, store_json_cb cb,
                        void *ud)
{
	struct rec *r = rec_json(T(st), STORE_OP_LIST_TAIL, cb, ud);
	store_list_tail(T(st)->inner, key, limit, json_cb, r);
}

static void t_cooldown_take(struct store *st, const char *key, const char *user, uint64_t ms,
                            store_cooldown_cb cb, void *ud)
{
	struct rec *r = rec_new(T(st), STORE_OP_COOLDOWN_TAKE, ud);
	r->cb.cooldown = cb;
	store_cooldown_take(T(st)->inner, key, user, ms, cooldown_cb, r);
}

static void t_typing_set(struct store *st, const char *nsp, const char *room, const char *user,
                         json_object *info, uint64_t ttl_ms, store_flag_cb cb, void *ud)
{
	struct rec *r = rec_flag(T(st), STORE_OP_TYPING_SET, cb, ud);
	store_typing_set(T(st)->inner, nsp, room, user, info, ttl_ms, flag_cb, r);
}

static void t_typing_clear(struct store *st, const char *nsp, const char *room, const char *user,
                           store_flag_cb cb, void *ud)
{
	struct rec *r = rec_flag(T(st), STORE_OP_TYPING_CLEAR, cb, ud);
	store_typing_clear(T(st)->inner, nsp, room, user, flag_cb, r);
}

static void t_retire(struct store *st, store_done_cb cb, void *ud)
{
	struct rec *r = rec_new(T(st), STORE_OP_RETIRE, ud);
	r->cb.done = cb;
	store_retire(T(st)->inner, done_cb, r);
}

/* The inner store drops the callbacks still owed: their records go too. */
static void t_free(struct store *st)
{
	struct tstore *t = T(st);
	store_free(t->inner);
	while (t->recs) {
		struct rec *r = t->recs;
		t->recs = r->next;
		free(r);
	}
	free(t);
}

struct store *store_timed_new(struct store *inner, store_observe_cb observe, void *ud)
{
	struct tstore *t = xcalloc(1, sizeof *t);

	t->ops = (struct store_ops){
		.name = inner->ops->name,
		.user_add = t_user_add,
		.user_remove = t_user_remove,
		.user_online = t_user_online,
		.users_count = t_users_count,
		.users_online = t_users_online,
		.room_add = t_room_add,
		.room_remove = t_room_remove,
		.room_members = t_room_members,
		.channel_get = t_channel_get,
		.channel_set = t_channel_set,
		.history_add = t_history_add,
		.history_get = t_history_get,
		.list_append = t_list_append,
		.list_tail = t_list_tail,
		.cooldown_take = t_cooldown_take,
		.typing_set = t_typing_set,
		.typing_clear = t_typing_clear,
		.retire = t_retire,
		.free = t_free,
	};
	t->st.ops = &t->ops;
	t->st.on_typing_expired = inner->on_typing_expired;
	t->st.on_typing_expired_ud = inner->on_typing_expired_ud;
	t->st.on_reaped = inner->on_reaped;
	t->st.on_reaped_ud = inner->on_reaped_ud;
	t->st.on_resync = inner->on_resync;
	t->st.on_resync_ud = inner->on_resync_ud;
	t->inner = inner;
	t->observe = observe;
	t->observe_ud = ud;
	inner->on_typing_expired = on_expired;
	inner->on_typing_expired_ud = t;
	inner->on_reaped = on_reaped;
	inner->on_reaped_ud = t;
	inner->on_resync = on_resync;
	inner->on_resync_ud = t;
	return &t->st;
}
