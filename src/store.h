/* store.h -- the shared state of the application layer, behind one table of
 * asynchronous operations.
 *
 * Two implementations: the memory store (store_memory.c: one process, the
 * zero-setup default) and the Redis store (store_redis.c: every instance of
 * a cluster sees the same state). Callers cannot tell them apart.
 *
 * Rules for every operation (as libuv's requests):
 *   - the callback is called exactly once, and never from inside the call
 *     that started the operation (the memory store completes in a later
 *     pass of the loop);
 *   - err is 0 or STORE_EUNAVAIL (the backend is unreachable: nothing was
 *     changed, unless the connection was lost with the command sent: see
 *     store_redis_new());
 *   - values passed to the callback (json_object *, strings) are borrowed,
 *     read-only (the store may share them with its own state) and valid
 *     only during the callback (json_object_get() to keep one);
 *   - arguments are copied by the call: the caller may free them at once;
 *   - the caller's ud must stay valid until the callback: to act on a
 *     socket that may disconnect meanwhile, pass its id and look it up.
 *
 * Names: "nsp" is a Socket.IO namespace ("/"), "room" a room of it, "user"
 * the user id, "sid" a socket id. Presence counts sockets (sids) per user, so
 * a user with two tabs is online once, and gone only when both are.
 *
 * Faults (the Redis store; the memory store has one process, and none of
 * them): the sids an instance added are its own. When an instance dies
 * without removing them, another one removes them (reaping) and reports,
 * through on_reaped, each user whose last sid in nsp (or in a room) went
 * with them: once in the cluster. When the store's backend comes back after
 * an outage (perhaps empty), on_resync asks the application to add again
 * every sid it holds; removals that failed meanwhile are done again by the
 * store, their last sids reported through on_reaped. */
#ifndef AEOLUS_STORE_H
#define AEOLUS_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include <json-c/json.h>

#define STORE_EUNAVAIL 1

struct store;

typedef void (*store_done_cb)(int err, void *ud);
/* flag: see each operation (first/last/new/existed). */
typedef void (*store_flag_cb)(int err, int flag, void *ud);
typedef void (*store_json_cb)(int err, json_object *val, void *ud);
typedef void (*store_count_cb)(int err, uint64_t n, void *ud);
/* ok: 1 when taken; otherwise retry_after_ms says how long until it can be. */
typedef void (*store_cooldown_cb)(int err, int ok, uint64_t retry_after_ms, void *ud);
/* A typing entry expired: called once per expiry, cluster-wide. */
typedef void (*store_typing_expired_cb)(const char *nsp, const char *room, const char *user,
                                        json_object *info, void *ud);
/* The last sid of user in nsp (room NULL), or in a room of nsp, was removed
 * by the store itself (see Faults above): called once per such change,
 * cluster-wide. name is the user's stored name; info is the room_add's (NULL
 * for presence, or when none was given). */
typedef void (*store_reaped_cb)(const char *nsp, const char *room, const char *user,
                                const char *name, json_object *info, void *ud);
/* The application is to add again every sid it holds (user_add, room_add:
 * adding a sid already there changes nothing). */
typedef void (*store_resync_cb)(void *ud);

/* Which part of a history to read. after/before are message ids ("" or
 * NULL: not set), compared as numbers. With after: the first `limit`
 * messages newer than it; otherwise the newest `limit`. Before, when set,
 * excludes it and everything newer (with or without after). Always returned
 * oldest first; fewer when the history holds fewer (limit 0: none). An
 * after or before that is not a decimal number selects nothing. */
struct history_query {
	const char *after;
	const char *before;
	unsigned limit;
};

struct store_ops {
	const char *name;            /* "memory", "redis" */

	/* Presence in a namespace. user_add: flag = 1 when sid is the user's
	 * first socket (adding a sid already there adds nothing); name NULL
	 * means the user id, and a later non-NULL name replaces the stored one
	 * (even with a sid already there).
	 * user_remove: flag = 1 when it was the last (0 for a sid not there). */
	void (*user_add)(struct store *st, const char *nsp, const char *user, const char *name,
	                 const char *sid, store_flag_cb cb, void *ud);
	void (*user_remove)(struct store *st, const char *nsp, const char *user, const char *sid,
	                    store_flag_cb cb, void *ud);
	/* flag = 1 when the user has a socket in nsp. */
	void (*user_online)(struct store *st, const char *nsp, const char *user,
	                    store_flag_cb cb, void *ud);
	/* n = the users online in nsp (one step, whatever their number). */
	void (*users_count)(struct store *st, const char *nsp, store_count_cb cb, void *ud);
	/* [{"userId":..., "name":..., "lastActive":...}, ...] online in nsp, each
	 * user once, sorted by userId; lastActive is when a sid of the user was
	 * last added (ms since the epoch; absent for entries an older version
	 * wrote). */
	void (*users_online)(struct store *st, const char *nsp, store_json_cb cb, void *ud);

	/* Membership of a room, per user, counted by sid (as presence). info
	 * (copied, may be NULL) comes back in on_reaped if this sid is reaped
	 * and was the user's last in the room; a later room_add of the same sid
	 * replaces it. */
	void (*room_add)(struct store *st, const char *nsp, const char *room, const char *user,
	                 const char *name, const char *sid, json_object *info, store_flag_cb cb,
	                 void *ud);
	void (*room_remove)(struct store *st, const char *nsp, const char *room, const char *user,
	                    const char *sid, store_flag_cb cb, void *ud);
	/* [{"userId":..., "name":..., "lastActive":...}, ...] in the room, each user
	 * once, sorted by userId; lastActive as for users_online. */
	void (*room_members)(struct store *st, const char *nsp, const char *room,
	                     store_json_cb cb, void *ud);

	/* Channel settings: an object, or NULL in the callback when unknown.
	 * channel_set with value NULL forgets them. */
	void (*channel_get)(struct store *st, const char *channel, store_json_cb cb, void *ud);
	void (*channel_set)(struct store *st, const char *channel, json_object *value,
	                    store_done_cb cb, void *ud);

	/* Appends msg (an object, copied) to the channel's history, keeping the
	 * newest `cap` (0: none). The store gives it "id" (replacing any): a
	 * decimal string, increasing within the channel and never reused, even
	 * after trimming or when cap is 0, and returns the stored message. */
	void (*history_add)(struct store *st, const char *channel, json_object *msg, unsigned cap,
	                    store_json_cb cb, void *ud);
	/* An array of messages, oldest first (see struct history_query). */
	void (*history_get)(struct store *st, const char *channel, const struct history_query *q,
	                    store_json_cb cb, void *ud);

	/* Lists shared with another program (a service whose data the
	 * application keeps serving): the list named key itself, not a name
	 * under the store's prefix (Redis: the list at key, exactly; the
	 * memory store: a table of its own), each element a JSON text as the
	 * other program writes it, with no id. list_append appends msg's JSON
	 * text (msg copied) and keeps the newest `cap` (0: none; the list is
	 * removed). list_tail: an array of the newest `limit` elements (0:
	 * none), oldest first, each parsed; an element that is not JSON is
	 * left out, with a warning in the log. A key holding something other
	 * than a list: STORE_EUNAVAIL (Redis; logged). */
	void (*list_append)(struct store *st, const char *key, json_object *msg, unsigned cap,
	                    store_done_cb cb, void *ud);
	void (*list_tail)(struct store *st, const char *key, unsigned limit, store_json_cb cb,
	                  void *ud);

	/* Slow mode: takes the (key, user) slot for ms milliseconds if it is
	 * free; atomic. Refused: ok = 0 and retry_after_ms in (0, ms]. */
	void (*cooldown_take)(struct store *st, const char *key, const char *user, uint64_t ms,
	                      store_cooldown_cb cb, void *ud);

	/* Typing: sets (or refreshes) an entry that expires after ttl_ms;
	 * flag = 1 when it did not exist. info (copied, may be NULL) comes back
	 * in the expiry callback. typing_clear: flag = 1 when it existed (and so
	 * no expiry will be reported for it). An entry past its ttl no longer
	 * exists for typing_set and typing_clear, whether or not its expiry has
	 * been reported yet (it will be, once). */
	void (*typing_set)(struct store *st, const char *nsp, const char *room, const char *user,
	                   json_object *info, uint64_t ttl_ms, store_flag_cb cb, void *ud);
	void (*typing_clear)(struct store *st, const char *nsp, const char *room, const char *user,
	                     store_flag_cb cb, void *ud);

	/* A clean exit, once the application has removed its sids: removes
	 * those still there (a removal that failed: reported through
	 * on_reaped) and this instance's liveness record, and stops refreshing
	 * it. The application must add no sid after it; the other operations
	 * still work. */
	void (*retire)(struct store *st, store_done_cb cb, void *ud);

	/* Frees the store. Pending callbacks are dropped, never called. May be
	 * called from inside any callback, on_typing_expired included. */
	void (*free)(struct store *st);
};

struct store {
	const struct store_ops *ops;
	store_typing_expired_cb on_typing_expired;
	void *on_typing_expired_ud;
	store_reaped_cb on_reaped;       /* NULL: this instance does not reap */
	void *on_reaped_ud;
	store_resync_cb on_resync;
	void *on_resync_ud;
};

/* The memory store. Completions come in the order the operations were
 * started; err is always 0. Running out of memory aborts the process. */
struct store *store_memory_new(struct event_base *base);

/* The Redis store (Redis >= 6, one server: not Cluster), its keys under
 * "prefix:", for the instance named instance (cluster_instance(): unique
 * among the instances sharing the server). Completions come in the order
 * the operations were started.
 * Connects at once and reconnects after any loss (redis.h); meanwhile,
 * and until the first connection is up, every operation completes with
 * STORE_EUNAVAIL. A STORE_EUNAVAIL for a connection lost after the command
 * was sent cannot say whether Redis applied it. Typing expiries are
 * reported by the instances whose on_typing_expired is set (polled every
 * 100 ms at most), each by one of them. The instance refreshes its
 * liveness record every reap_after_ms / 3 (0: 30 s); an instance not seen
 * for reap_after_ms is dead, and its sids are reaped by the instances whose
 * on_reaped is set, checking as often. on_resync is called once the first
 * connection is up, after every reconnection, and when the instance finds
 * it was taken for dead. NULL with a message in err when the URL is bad.
 * Running out of memory aborts the process. */
struct store *store_redis_new(struct event_base *base, const char *url, const char *prefix,
                              const char *instance, unsigned reap_after_ms,
                              char *err, size_t errlen);

/* A store that passes every operation on to inner (which it owns from
 * now on: store_free frees both) and tells observe, as each completes, how
 * long it took (from the call to the callback, in nanoseconds) and its
 * err, before calling back. Same name, same guarantees as inner. Typing
 * expiries, reaped sids and resyncs go through it: inner always reports
 * them (an inner Redis store polls for expiries and reaps), to the
 * wrapper's callbacks when they are set. */
enum store_op {
	STORE_OP_USER_ADD, STORE_OP_USER_REMOVE, STORE_OP_USER_ONLINE, STORE_OP_USERS_COUNT,
	STORE_OP_USERS_ONLINE, STORE_OP_ROOM_ADD, STORE_OP_ROOM_REMOVE, STORE_OP_ROOM_MEMBERS,
	STORE_OP_CHANNEL_GET, STORE_OP_CHANNEL_SET, STORE_OP_HISTORY_ADD, STORE_OP_HISTORY_GET,
	STORE_OP_LIST_APPEND, STORE_OP_LIST_TAIL, STORE_OP_COOLDOWN_TAKE, STORE_OP_TYPING_SET,
	STORE_OP_TYPING_CLEAR, STORE_OP_RETIRE,
	STORE_NOPS
};
/* "user_add", ...: the names of the operations above. */
extern const char *const store_op_names[STORE_NOPS];
typedef void (*store_observe_cb)(enum store_op op, uint64_t ns, int err, void *ud);
struct store *store_timed_new(struct store *inner, store_observe_cb observe, void *ud);

/* Shorthands: st->ops->x(st, ...). */
#define store_user_add(st, ...)      (st)->ops->user_add((st), __VA_ARGS__)
#define store_user_remove(st, ...)   (st)->ops->user_remove((st), __VA_ARGS__)
#define store_user_online(st, ...)   (st)->ops->user_online((st), __VA_ARGS__)
#define store_users_online(st, ...)  (st)->ops->users_online((st), __VA_ARGS__)
#define store_users_count(st, ...)   (st)->ops->users_count((st), __VA_ARGS__)
#define store_room_add(st, ...)      (st)->ops->room_add((st), __VA_ARGS__)
#define store_room_remove(st, ...)   (st)->ops->room_remove((st), __VA_ARGS__)
#define store_room_members(st, ...)  (st)->ops->room_members((st), __VA_ARGS__)
#define store_channel_get(st, ...)   (st)->ops->channel_get((st), __VA_ARGS__)
#define store_channel_set(st, ...)   (st)->ops->channel_set((st), __VA_ARGS__)
#define store_history_add(st, ...)   (st)->ops->history_add((st), __VA_ARGS__)
#define store_history_get(st, ...)   (st)->ops->history_get((st), __VA_ARGS__)
#define store_list_append(st, ...)   (st)->ops->list_append((st), __VA_ARGS__)
#define store_list_tail(st, ...)     (st)->ops->list_tail((st), __VA_ARGS__)
#define store_cooldown_take(st, ...) (st)->ops->cooldown_take((st), __VA_ARGS__)
#define store_typing_set(st, ...)    (st)->ops->typing_set((st), __VA_ARGS__)
#define store_typing_clear(st, ...)  (st)->ops->typing_clear((st), __VA_ARGS__)
#define store_retire(st, ...)        (st)->ops->retire((st), __VA_ARGS__)
#define store_free(st)               (st)->ops->free(st)

#endif
