/* store_redis.c -- the Redis store: the state of store.h in Redis, shared by
 * every instance that uses the same server and prefix.
 *
 * Keys. P is the prefix; every name that comes from a client (N a
 * namespace, R a room, U a user, C a channel, K a cooldown key, S a sid) is
 * written "<length>:<bytes>", as in the memory store, so no choice of names
 * can make two different tuples one key, or one typing entry. I is an
 * instance id (ours: no client chooses it).
 *
 *   P:online:N          hash    user -> name: the users with a socket in N
 *   P:online-at:N       hash    user -> when a sid of theirs was last added
 *                               (ms, Redis's clock): lastActive
 *   P:sids:NU           set     the sids of user U in N, as "I:sid" (I the
 *                               instance that added it)
 *   P:room:NR           hash    user -> name: the members of room R of N
 *   P:room-sids:NRU     set     the sids of user U in that room, as "I:sid"
 *   P:room-at:NR        hash    user -> lastActive, as P:online-at
 *   P:channel:C         string  the channel's settings (JSON text)
 *   P:history:C         list    its newest messages (JSON text), oldest first
 *   P:history-id:C      string  the last id it gave (INCR; never reset)
 *   P:cooldown:KU       string  "1", the cooldown being its TTL (PX)
 *   P:typing            zset    NRU -> deadline (microseconds, Redis's clock)
 *   P:typing-info       hash    NRU -> info (JSON text, "" for none)
 *   P:instances         zset    I -> when it was last seen (ms, Redis's clock)
 *   P:instance:I        hash    the sids instance I added: "p"NUS -> "" for
 *                               presence, "r"NRUS -> info (JSON text, "" for
 *                               none) for rooms
 *   P:reap-lock         string  I, the instance reaping (PX reap_after)
 *
 * Lists shared with another program (list_append, list_tail) are the keys
 * the application names, as they are: no prefix, no "<length>:" (they are
 * another program's keys: RPUSH and LTRIM in one script, LRANGE).
 *
 * Owners: a sid set and its user's fields in the hashes go together, removed
 * by the user_remove or room_remove that takes the last sid (Redis drops
 * empty sets and hashes); a cooldown goes with its TTL; a typing entry is
 * removed by typing_clear, by the typing_set that finds it past its
 * deadline, or by the poll that reports it. Channel settings and histories
 * are the channel's data, kept until the application forgets them: a
 * history is bounded by its cap, and its counter must outlive it, or ids
 * would be given twice.
 *
 * An instance's entry and its record in P:instances are its own: the
 * scripts that add and remove a sid add and remove its entry too, so
 * P:instance:I holds exactly the sids I has in the sets; the hash goes with
 * its last entry, and the record when the instance retires (a clean exit)
 * or is reaped. The lock goes with its TTL, or with the reaping. None of
 * these has a TTL: what a dead instance left waits for a living one (the
 * next to start, if all died) to reap it.
 *
 * Faults. Every reap_after/3 each instance refreshes its record (the
 * script SC_BEAT, Redis's clock). An instance not seen for reap_after is
 * dead: the same script, on an instance whose on_reaped is set, takes the
 * lock (SET PX, unless another instance holds it) and undoes up to REAP_MAX
 * entries of the oldest dead instance, removing it when none are left, and
 * comes again at once while some are. Undoing an entry removes its sid from
 * its set and, when that was the last, the user from the group, and returns
 * the entry: the instance whose script undid it reports it, so each change
 * is reported once in the cluster (a reply lost with the connection loses
 * its reports, as a typing poll's). The lock keeps one instance at a dead
 * one at a time; the scripts being atomic, two could not report one change
 * twice anyway. Users of a dead instance who still have a sid elsewhere are
 * not reported: their sets are not empty. A sid is a member of the sets
 * with the instance that added it, so that a socket that comes back with
 * its id on another instance (connection state recovery) is not taken away
 * when the first instance removes its sid, or is reaped.
 *
 * A refresh that finds the instance's record missing (the first start,
 * Redis restarted empty, or the instance taken for dead while it could not
 * refresh) asks the application to add its sids again (on_resync), as does
 * the first refresh after every reconnection (adds that failed meanwhile).
 * A removal that fails (the connection is down, or lost with it sent) is
 * kept (struct undo) and done again by SC_UNDO once connected: its socket
 * is gone whether Redis applied it or not, and a last sid found then is
 * reported through on_reaped. Retiring undoes what is left of the
 * instance's hash (reported too), then removes its record.
 *
 * Atomicity: every operation is one command, one round trip. What reads and
 * then writes is a Lua script (EVALSHA; the scripts are loaded with SCRIPT
 * LOAD first thing on every connection; before their digests are known, or
 * on NOSCRIPT, EVAL): presence and rooms (first and last sid), history_add
 * (INCR, RPUSH, LTRIM: the list always holds consecutive ids, the newest
 * last), history_get (the list and its counter read together; a query with
 * an id that is not a number is answered without Redis), cooldowns (PTTL,
 * SET PX), typing. Deadlines come from Redis's clock (TIME inside the scripts), so
 * the instances' clocks do not matter. Redis Cluster is not supported: a
 * script touches keys in several slots.
 *
 * Typing expiry: every instance whose on_typing_expired is set polls
 * (every POLL_MS, or sooner when it knows of an earlier deadline) with a
 * script that removes the entries past their deadline and returns them: whichever instance removes an entry
 * reports it, so each expiry is reported once in the cluster. An operation
 * that finds an entry past its deadline removes it and its instance reports
 * it, before completing. (A poll whose reply is lost with the connection
 * has removed entries that nobody reports.)
 *
 * Completions: every operation is a record (struct op) at the tail of one
 * FIFO. One connection answers in order; a reply fills its record, and the
 * records at the head that are complete are called back, in the order the
 * operations were started. An operation that cannot be sent (the connection
 * is down) completes at once with STORE_EUNAVAIL, called back from an event
 * made active (never from inside the call), in its place in the FIFO.
 * store_free() drops the records: those waiting for a reply stay alive,
 * orphaned, until hiredis gives them their NULL reply (in redis_free(), or
 * just after the callback it is called from), which frees them.
 *
 * Memory: running out of memory aborts the process, as in the memory store. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "redis.h"
#include "store.h"
#include "util.h"

#define POLL_MS 100              /* the longest wait between two typing polls */
#define POLL_MAX 100             /* the most expiries one poll takes */
#define MAX_MS 1000000000000ULL  /* longer cooldowns and ttls are cut to this (31 years) */
#define MAX_ARGS 12
#define REAP_MAX 200             /* the most entries one reaping script takes (~4 ms) */
#define REAP_AFTER_MS 30000      /* reap_after_ms when 0 is given */
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* --- the scripts --- */

enum {
	SC_GROUP_ADD, SC_GROUP_REMOVE, SC_GROUP_LIST, SC_HISTORY_ADD, SC_HISTORY_GET, SC_LIST_APPEND,
	SC_COOLDOWN,
	SC_TYPING_SET, SC_TYPING_CLEAR, SC_TYPING_DUE, SC_BEAT, SC_UNDO, SC_RETIRE, NSCRIPTS
};

/* Lua shared by the scripts that undo the entries of an instance (see
 * Faults above). */
#define UNDO_LIB \
	"-- Reads the part '<length>:<bytes>' at i of s: returns it whole, its\n" \
	"-- bytes, and where the next starts; nil when malformed.\n" \
	"local function part(s, i)\n" \
	"  local c = string.find(s, ':', i, true)\n" \
	"  local n = c and tonumber(string.sub(s, i, c - 1))\n" \
	"  if not n or c + n > #s then return nil end\n" \
	"  return string.sub(s, i, c + n), string.sub(s, c + 1, c + n), c + n + 1\n" \
	"end\n" \
	"-- Undoes the entry e (info: its value) of the hash h of instance I, P\n" \
	"-- the prefix: removes it and its sid; when the sid was the user's last,\n" \
	"-- removes the user from the group and appends e, name, info to out.\n" \
	"local function undo(P, I, h, e, info, out)\n" \
	"  redis.call('HDEL', h, e)\n" \
	"  local enc, dec, i = {}, {}, 2\n" \
	"  while i <= #e do\n" \
	"    local whole, bytes, nxt = part(e, i)\n" \
	"    if not whole then return end\n" \
	"    enc[#enc + 1] = whole\n" \
	"    dec[#dec + 1] = bytes\n" \
	"    i = nxt\n" \
	"  end\n" \
	"  local kind, group, sids, at = string.sub(e, 1, 1)\n" \
	"  if kind == 'p' and #enc == 3 then\n" \
	"    group = P .. ':online:' .. enc[1]\n" \
	"    sids = P .. ':sids:' .. enc[1] .. enc[2]\n" \
	"    at = P .. ':online-at:' .. enc[1]\n" \
	"  elseif kind == 'r' and #enc == 4 then\n" \
	"    group = P .. ':room:' .. enc[1] .. enc[2]\n" \
	"    sids = P .. ':room-sids:' .. enc[1] .. enc[2] .. enc[3]\n" \
	"    at = P .. ':room-at:' .. enc[1] .. enc[2]\n" \
	"  else\n" \
	"    return\n" \
	"  end\n" \
	"  local user, sid = dec[#dec - 1], dec[#dec]\n" \
	"  if redis.call('SREM', sids, I .. ':' .. sid) == 0 or\n" \
	"     redis.call('EXISTS', sids) == 1 then\n" \
	"    return\n" \
	"  end\n" \
	"  out[#out + 1] = e\n" \
	"  out[#out + 1] = redis.call('HGET', group, user) or ''\n" \
	"  out[#out + 1] = info\n" \
	"  redis.call('HDEL', group, user)\n" \
	"  redis.call('HDEL', at, user)\n" \
	"end\n" \
	"-- Undoes about max entries of h; returns true when some are left.\n" \
	"local function undo_some(P, I, h, max, out)\n" \
	"  local cur, n = '0', 0\n" \
	"  repeat\n" \
	"    local r = redis.call('HSCAN', h, cur, 'COUNT', max)\n" \
	"    cur = r[1]\n" \
	"    for i = 1, #r[2], 2 do\n" \
	"      undo(P, I, h, r[2][i], r[2][i + 1], out)\n" \
	"      n = n + 1\n" \
	"    end\n" \
	"  until cur == '0' or n >= max\n" \
	"  return redis.call('EXISTS', h) == 1\n" \
	"end\n"

static const struct script {
	int nkeys;
	const char *text;
} scripts[NSCRIPTS] = {
	[SC_GROUP_ADD] = { 4,
		"-- KEYS: a group (user -> name), the user's sids in it, this\n"
		"-- instance's entries, the group's times (user -> ms). ARGV: user,\n"
		"-- name, 'I:sid', '1' when the name was given, the sid's entry, its\n"
		"-- info. Returns 1 when it is the user's first.\n"
		"local t = redis.call('TIME')\n"
		"redis.call('HSET', KEYS[4], ARGV[1],\n"
		"           string.format('%.0f', t[1] * 1000 + math.floor(t[2] / 1000)))\n"
		"local first = redis.call('EXISTS', KEYS[2]) == 0\n"
		"redis.call('SADD', KEYS[2], ARGV[3])\n"
		"redis.call('HSET', KEYS[3], ARGV[5], ARGV[6])\n"
		"if first or ARGV[4] == '1' then\n"
		"  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
		"end\n"
		"if first then return 1 end\n"
		"return 0\n" },
	[SC_GROUP_REMOVE] = { 4,
		"-- KEYS: as group_add. ARGV: user, 'I:sid', the sid's entry. Returns 1\n"
		"-- when it was the last.\n"
		"redis.call('HDEL', KEYS[3], ARGV[3])\n"
		"if redis.call('SREM', KEYS[2], ARGV[2]) == 0 or\n"
		"   redis.call('EXISTS', KEYS[2]) == 1 then\n"
		"  return 0\n"
		"end\n"
		"redis.call('HDEL', KEYS[1], ARGV[1])\n"
		"redis.call('HDEL', KEYS[4], ARGV[1])\n"
		"return 1\n" },
	[SC_GROUP_LIST] = { 2,
		"-- KEYS: a group, its times. Returns {HGETALL of each}.\n"
		"return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}\n" },
	[SC_BEAT] = { 2, UNDO_LIB
		"-- KEYS: the instances, the reaping lock. ARGV: prefix, this instance,\n"
		"-- reap_after ms, the most entries to reap ('0': do not reap).\n"
		"-- Refreshes this instance; takes entries of one dead instance, if\n"
		"-- any and the lock is free or ours. Returns {1 when this instance was\n"
		"-- not registered, 1 when to come again at once, entry, name, info, ...}.\n"
		"local t = redis.call('TIME')\n"
		"local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
		"local out = {redis.call('ZADD', KEYS[1], now, ARGV[2]), 0}\n"
		"local max = tonumber(ARGV[4])\n"
		"if max == 0 then return out end\n"
		"local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf',\n"
		"                        '(' .. (now - tonumber(ARGV[3])), 'LIMIT', 0, 1)\n"
		"local holder = redis.call('GET', KEYS[2])\n"
		"if #dead == 0 then\n"
		"  if holder == ARGV[2] then redis.call('DEL', KEYS[2]) end\n"
		"  return out\n"
		"end\n"
		"if holder and holder ~= ARGV[2] then return out end\n"
		"redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])\n"
		"local h = ARGV[1] .. ':instance:' .. dead[1]\n"
		"if not undo_some(ARGV[1], dead[1], h, max, out) then\n"
		"  redis.call('ZREM', KEYS[1], dead[1])\n"
		"end\n"
		"out[2] = 1\n"
		"return out\n" },
	[SC_UNDO] = { 1, UNDO_LIB
		"-- KEYS: this instance's entries. ARGV: prefix, this instance, an entry\n"
		"-- (a removal that failed). Returns {0, 0, entry, name, info} when its\n"
		"-- sid was the last, else {0, 0}.\n"
		"local out = {0, 0}\n"
		"local info = redis.call('HGET', KEYS[1], ARGV[3]) or ''\n"
		"undo(ARGV[1], ARGV[2], KEYS[1], ARGV[3], info, out)\n"
		"return out\n" },
	[SC_RETIRE] = { 3, UNDO_LIB
		"-- KEYS: the instances, this instance's entries, the reaping lock.\n"
		"-- ARGV: prefix, this instance, the most entries to take. Undoes the\n"
		"-- entries left; with none left, removes the instance (and its\n"
		"-- lock). Returns {0, 1 when some are left, entry, name, info, ...}.\n"
		"local out = {0, 0}\n"
		"if undo_some(ARGV[1], ARGV[2], KEYS[2], tonumber(ARGV[3]), out) then\n"
		"  out[2] = 1\n"
		"else\n"
		"  redis.call('ZREM', KEYS[1], ARGV[2])\n"
		"  if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end\n"
		"end\n"
		"return out\n" },
	[SC_HISTORY_ADD] = { 2,
		"-- KEYS: a history, its counter. ARGV: the message's text before and\n"
		"-- after the value of its id, the cap. Returns the id.\n"
		"local id = redis.call('INCR', KEYS[2])\n"
		"if ARGV[3] == '0' then\n"
		"  redis.call('DEL', KEYS[1])\n"
		"else\n"
		"  redis.call('RPUSH', KEYS[1], ARGV[1] .. string.format('\"%d\"', id) .. ARGV[2])\n"
		"  redis.call('LTRIM', KEYS[1], '-' .. ARGV[3], -1)\n"
		"end\n"
		"return id\n" },
	[SC_HISTORY_GET] = { 2,
		"-- KEYS: as history_add. ARGV: after, before ('': not set), limit.\n"
		"-- The list holds the ids last - len + 1 .. last.\n"
		"local len = redis.call('LLEN', KEYS[1])\n"
		"local first = tonumber(redis.call('GET', KEYS[2]) or 0) - len + 1\n"
		"local function upto(id)\n"
		"  if id < first then return 0 end\n"
		"  return math.min(id - first + 1, len)\n"
		"end\n"
		"local lo, hi = 0, len\n"
		"if ARGV[1] ~= '' then lo = upto(tonumber(ARGV[1])) end\n"
		"if ARGV[2] ~= '' then hi = upto(tonumber(ARGV[2]) - 1) end\n"
		"local limit = tonumber(ARGV[3])\n"
		"if hi - lo > limit then\n"
		"  if ARGV[1] ~= '' then hi = lo + limit else lo = hi - limit end\n"
		"end\n"
		"if hi <= lo then return {} end\n"
		"return redis.call('LRANGE', KEYS[1], lo, hi - 1)\n" },
	[SC_LIST_APPEND] = { 1,
		"-- KEYS: a list. ARGV: a JSON text, the cap.\n"
		"if ARGV[2] == '0' then\n"
		"  redis.call('DEL', KEYS[1])\n"
		"else\n"
		"  redis.call('RPUSH', KEYS[1], ARGV[1])\n"
		"  redis.call('LTRIM', KEYS[1], '-' .. ARGV[2], -1)\n"
		"end\n"
		"return 0\n" },
	[SC_COOLDOWN] = { 1,
		"-- KEYS: a cooldown. ARGV: ms. Returns 0 when taken, or the ms left.\n"
		"local left = redis.call('PTTL', KEYS[1])\n"
		"if left > 0 then return left end\n"
		"if ARGV[1] ~= '0' then\n"
		"  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])\n"
		"end\n"
		"return 0\n" },
	[SC_TYPING_SET] = { 2,
		"-- KEYS: the deadlines, the infos. ARGV: entry, info, ttl ms.\n"
		"-- Returns {1 when new, the info of an entry found past its deadline\n"
		"-- (the caller reports it) or false}.\n"
		"local t = redis.call('TIME')\n"
		"local now = t[1] * 1000000 + t[2]\n"
		"local at = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
		"local gone = false\n"
		"if at and tonumber(at) <= now then\n"
		"  gone = redis.call('HGET', KEYS[2], ARGV[1]) or ''\n"
		"  at = false\n"
		"end\n"
		"redis.call('ZADD', KEYS[1], now + ARGV[3] * 1000, ARGV[1])\n"
		"redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
		"return {at and 0 or 1, gone}\n" },
	[SC_TYPING_CLEAR] = { 2,
		"-- KEYS, ARGV[1]: as typing_set. Returns {1 when it existed, the info\n"
		"-- of an entry found past its deadline or false}.\n"
		"local t = redis.call('TIME')\n"
		"local now = t[1] * 1000000 + t[2]\n"
		"local at = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
		"if not at then return {0, false} end\n"
		"local info = redis.call('HGET', KEYS[2], ARGV[1]) or ''\n"
		"redis.call('ZREM', KEYS[1], ARGV[1])\n"
		"redis.call('HDEL', KEYS[2], ARGV[1])\n"
		"if tonumber(at) <= now then return {0, info} end\n"
		"return {1, false}\n" },
	[SC_TYPING_DUE] = { 2,
		"-- KEYS: as typing_set. ARGV: the most entries to take. Removes the\n"
		"-- entries past their deadline; returns {microseconds to the next\n"
		"-- deadline (-1: none), entry, info, entry, info, ...}.\n"
		"local t = redis.call('TIME')\n"
		"local now = t[1] * 1000000 + t[2]\n"
		"local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now,\n"
		"                       'LIMIT', 0, ARGV[1])\n"
		"local out = {-1}\n"
		"for _, e in ipairs(due) do\n"
		"  out[#out + 1] = e\n"
		"  out[#out + 1] = redis.call('HGET', KEYS[2], e) or ''\n"
		"end\n"
		"if #due > 0 then\n"
		"  redis.call('ZREM', KEYS[1], unpack(due))\n"
		"  redis.call('HDEL', KEYS[2], unpack(due))\n"
		"end\n"
		"local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
		"if nxt[2] then out[1] = math.max(0, tonumber(nxt[2]) - now) end\n"
		"return out\n" },
};

/* --- records --- */

enum op_kind {
	K_LOAD,                      /* SCRIPT LOAD: keeps the digest */
	K_POLL,                      /* the typing poll: reports expiries */
	K_DONE,                      /* store_done_cb */
	K_FLAG,                      /* store_flag_cb, from an integer */
	K_GROUP,                     /* store_json_cb, from SC_GROUP_LIST */
	K_CHANNEL,                   /* store_json_cb, from a string or nil */
	K_MESSAGE,                   /* store_json_cb: history_add */
	K_MESSAGES,                  /* store_json_cb, from an array of strings */
	K_LIST,                      /* store_json_cb: list_tail, from an array of strings */
	K_COOLDOWN,                  /* store_cooldown_cb */
	K_TYPING,                    /* store_flag_cb, maybe after an expiry */
	K_BEAT,                      /* the liveness refresh: maybe reaps, resyncs */
	K_UNDO,                      /* a removal that failed, done again */
	K_RETIRE,                    /* store_done_cb, after the reports */
	K_COUNT,                     /* store_count_cb, from an integer */
};

/* A typing entry to report. */
struct expiry {
	char *nsp, *room, *user;     /* owned */
	json_object *info;           /* owned, may be NULL */
};

/* A last sid removed by the store itself, to report. */
struct reaped {
	char *nsp, *room, *user;     /* owned; room NULL for presence */
	char *name;                  /* owned */
	json_object *info;           /* owned, may be NULL */
};

struct rstore;

struct op {
	struct op *next;             /* in the FIFO */
	struct rstore *s;            /* NULL once the store is freed */
	enum op_kind kind;
	union {
		store_done_cb done;
		store_flag_cb flag;
		store_json_cb json;
		store_cooldown_cb cooldown;
		store_count_cb count;
	} cb;
	void *ud;
	int script;                  /* SC_*, or -1: argv is the whole command */
	int argc;
	char *argv[MAX_ARGS];        /* owned */
	size_t argvlen[MAX_ARGS];
	int sent;                    /* hiredis owes it a reply */
	int evaled;                  /* sent with EVAL after a NOSCRIPT */
	int done;                    /* the result is in */
	int err;
	int flag;                    /* flag, ok, or the script of a K_LOAD */
	uint64_t num;                /* retry_after_ms, a ttl, the poll's wait, a count */
	json_object *val;            /* owned, may be NULL */
	struct expiry *exp;          /* owned, nexp of them */
	size_t nexp;
	struct reaped *reap;         /* owned, nreap of them */
	size_t nreap;
	int more;                    /* K_BEAT, K_RETIRE: to be sent again */
};

/* A removal that failed (its entry), to do again once connected. */
struct undo {
	struct undo *next;
	char *entry;                 /* owned */
	size_t len;
};

struct rstore {
	struct store st;             /* first: a struct store * is a struct rstore * */
	struct redis *r;
	char *prefix;                /* owned */
	char sha[NSCRIPTS][41];      /* "" until SCRIPT LOAD answers */
	struct op *head, **tail;     /* the FIFO */
	struct event *pass;          /* completes what failed at once */
	struct event *poll;          /* the typing poll */
	int polling;                 /* a poll is waiting for its reply */
	int poll_armed;
	uint64_t poll_at;            /* mono ms, when poll_armed */
	int running;                 /* calling back */
	int freed;                   /* store_free() came meanwhile */
	struct buf key;              /* scratch */
	char *instance;              /* owned: this instance's id */
	char *own;                   /* owned: the key of its entries, P:instance:I */
	uint64_t reap_after_ms;
	struct event *beat;          /* the liveness refresh */
	int beating;                 /* a refresh is waiting for its reply */
	int resync_due;              /* on_resync at the next refresh that works */
	int retired;
	struct undo *undo;           /* removals to do again */
};

/* --- helpers (allocation that cannot fail is util.h's xmust and friends) --- */

/* A copy of n bytes, NUL-terminated. */
static char *xmemdup(const void *p, size_t n)
{
	char *d = xmust(malloc(n + 1));

	memcpy(d, p, n);
	d[n] = '\0';
	return d;
}

static void bput(struct buf *b, const void *p, size_t n)
{
	if (buf_append(b, p, n) < 0)
		xmust(NULL);
}

static void bputs(struct buf *b, const char *s)
{
	bput(b, s, strlen(s));
}

/* --- json --- */

static json_object *jcopy(json_object *o)
{
	json_object *c = NULL;
	if (o && json_object_deep_copy(o, &c, NULL) < 0)
		xmust(NULL);
	return c;
}

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

/* Parses n bytes of JSON text. Returns 0 (*out may be NULL: "null"), or -1. */
static int jparse(const char *p, size_t n, json_object **out)
{
	json_tokener *tok = xmust(json_tokener_new());

	*out = n <= INT32_MAX ? json_tokener_parse_ex(tok, p, (int)n) : NULL;
	int ok = n <= INT32_MAX && json_tokener_get_error(tok) == json_tokener_success;
	json_tokener_free(tok);
	if (!ok) {
		json_object_put(*out);
		*out = NULL;
		log_warn("redis store: not JSON: '%.*s'", n > 64 ? 64 : (int)n, p);
	}
	return ok ? 0 : -1;
}

/* --- keys and arguments --- */

/* Appends a name as "<length>:<bytes>". */
static void put_part(struct buf *b, const char *part)
{
	if (buf_printf(b, "%zu:", strlen(part)) < 0)
		xmust(NULL);
	bputs(b, part);
}

static void op_arg(struct op *op, const char *p, size_t n)
{
	if (op->argc == MAX_ARGS)
		abort();                 /* a bug: MAX_ARGS is too small */
	op->argv[op->argc] = xmemdup(p, n);
	op->argvlen[op->argc++] = n;
}

static void op_str(struct op *op, const char *s)
{
	op_arg(op, s, strlen(s));
}

static void op_u64(struct op *op, uint64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof num, "%" PRIu64, v);

	op_arg(op, num, (size_t)n);
}

/* Adds the key P:kind, or P:kind:<parts> with up to three parts (NULL: fewer). */
static void op_key(struct rstore *s, struct op *op, const char *kind, const char *a,
                   const char *b, const char *c)
{
	buf_reset(&s->key);
	if (buf_printf(&s->key, "%s:%s%s", s->prefix, kind, a ? ":" : "") < 0)
		xmust(NULL);
	if (a)
		put_part(&s->key, a);
	if (b)
		put_part(&s->key, b);
	if (c)
		put_part(&s->key, c);
	op_arg(op, s->key.p, s->key.len);
}

static void op_typing_keys(struct rstore *s, struct op *op)
{
	op_key(s, op, "typing", NULL, NULL, NULL);
	op_key(s, op, "typing-info", NULL, NULL, NULL);
}

/* The typing entry of (nsp, room, user): NRU. */
static void op_entry(struct rstore *s, struct op *op, const char *nsp, const char *room,
                     const char *user)
{
	buf_reset(&s->key);
	put_part(&s->key, nsp);
	put_part(&s->key, room);
	put_part(&s->key, user);
	op_arg(op, s->key.p, s->key.len);
}

/* Reads one "<length>:<bytes>" part at *p (n bytes left, then a NUL).
 * NULL when malformed. */
static char *take_part(const char **p, size_t *n)
{
	char *end;
	unsigned long long len;

	if (!*n || **p < '0' || **p > '9')
		return NULL;
	len = strtoull(*p, &end, 10);
	if ((size_t)(end - *p) >= *n || *end != ':' || len > *n - (size_t)(end - *p) - 1)
		return NULL;
	*n -= (size_t)(end - *p) + 1 + len;
	*p = end + 1 + len;
	return xstrndup(end + 1, len);
}

/* Fills e from an entry (NRU) and its info text. Returns 0, or -1. */
static int expiry_parse(struct expiry *e, const char *p, size_t n, const char *info,
                        size_t ilen)
{
	memset(e, 0, sizeof *e);
	if (!(e->nsp = take_part(&p, &n)) || !(e->room = take_part(&p, &n)) ||
	    !(e->user = take_part(&p, &n)) || n || (ilen && jparse(info, ilen, &e->info) < 0)) {
		free(e->nsp);
		free(e->room);
		free(e->user);
		return -1;
	}
	return 0;
}

static void reaped_free(struct reaped *r)
{
	free(r->nsp);
	free(r->room);
	free(r->user);
	free(r->name);
	json_object_put(r->info);
}

/* --- records --- */

static void op_free(struct op *op)
{
	for (int i = 0; i < op->argc; i++)
		free(op->argv[i]);
	json_object_put(op->val);
	for (size_t i = 0; i < op->nexp; i++) {
		free(op->exp[i].nsp);
		free(op->exp[i].room);
		free(op->exp[i].user);
		json_object_put(op->exp[i].info);
	}
	free(op->exp);
	for (size_t i = 0; i < op->nreap; i++)
		reaped_free(&op->reap[i]);
	free(op->reap);
	free(op);
}

/* A new record at the tail of the FIFO. */
static struct op *op_new(struct rstore *s, enum op_kind kind, int script, void *ud)
{
	struct op *op = xcalloc(1, sizeof *op);

	op->s = s;
	op->kind = kind;
	op->script = script;
	op->ud = ud;
	*s->tail = op;
	s->tail = &op->next;
	return op;
}

static void on_reply(redisReply *reply, void *ud);
static void op_finished(struct rstore *s, struct op *op);

/* Completes op at once, from the pass: no Redis answer needed, or none to
 * be had. */
static void op_local(struct rstore *s, struct op *op, int err)
{
	op->done = 1;
	op->err = err;
	op_finished(s, op);
	event_active(s->pass, EV_WRITE, 0);
}

/* Sends op: EVALSHA (or EVAL) for a script, else its argv. Returns 0, or -1. */
static int op_send(struct rstore *s, struct op *op)
{
	const char *v[MAX_ARGS + 3];
	size_t len[MAX_ARGS + 3];
	char nkeys[8];
	int n = 0;

	if (op->script >= 0) {
		const char *sha = s->sha[op->script];
		int eval = op->evaled || !*sha;
		v[n] = eval ? "EVAL" : "EVALSHA";
		v[n + 1] = eval ? scripts[op->script].text : sha;
		v[n + 2] = nkeys;
		snprintf(nkeys, sizeof nkeys, "%d", scripts[op->script].nkeys);
		for (int i = 0; i < 3; i++, n++)
			len[n] = strlen(v[n]);
	}
	for (int i = 0; i < op->argc; i++, n++) {
		v[n] = op->argv[i];
		len[n] = op->argvlen[i];
	}
	if (redis_command_argv(s->r, on_reply, op, n, v, len) < 0)
		return -1;
	op->sent = 1;
	return 0;
}

static void op_start(struct rstore *s, struct op *op)
{
	if (op_send(s, op) < 0)
		op_local(s, op, STORE_EUNAVAIL);
}

/* --- reading replies --- */

static int is_str(const redisReply *r)
{
	return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

static int pair_cmp(const void *a, const void *b)
{
	const redisReply *x = (*(redisReply **const *)a)[0];
	const redisReply *y = (*(redisReply **const *)b)[0];
	int c = memcmp(x->str, y->str, x->len < y->len ? x->len : y->len);

	return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* The pairs of an HGETALL reply, sorted by field (malloc'd; NULL when
 * the reply is not one). */
static redisReply ***sorted_pairs(const redisReply *rep, size_t *n)
{
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements % 2)
		return NULL;
	for (size_t i = 0; i < rep->elements; i++)
		if (!is_str(rep->element[i]))
			return NULL;
	*n = rep->elements / 2;
	redisReply ***v = xcalloc(*n ? *n : 1, sizeof *v);
	for (size_t i = 0; i < *n; i++)
		v[i] = &rep->element[2 * i];
	qsort(v, *n, sizeof *v, pair_cmp);
	return v;
}

/* SC_GROUP_LIST's {group, times}: [{"userId":..., "name":...,
 * "lastActive":...}, ...] sorted by userId (lastActive left out for a
 * user without a time). */
static int read_group(struct op *op, const redisReply *rep)
{
	size_t n, nt, k = 0;
	redisReply ***v, ***t;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
	    !(v = sorted_pairs(rep->element[0], &n)))
		return -1;
	if (!(t = sorted_pairs(rep->element[1], &nt))) {
		free(v);
		return -1;
	}
	op->val = xmust(json_object_new_array());
	for (size_t i = 0; i < n; i++) {
		json_object *o = xmust(json_object_new_object());
		jadd(o, "userId", json_object_new_string_len(v[i][0]->str, (int)v[i][0]->len));
		jadd(o, "name", json_object_new_string_len(v[i][1]->str, (int)v[i][1]->len));
		while (k < nt && pair_cmp(&t[k], &v[i]) < 0)
			k++;
		if (k < nt && pair_cmp(&t[k], &v[i]) == 0) {
			char *end;
			long long ms = strtoll(t[k][1]->str, &end, 10);
			if (end != t[k][1]->str && ms >= 0)
				jadd(o, "lastActive", json_object_new_int64(ms));
		}
		jpush(op->val, o);
	}
	free(v);
	free(t);
	return 0;
}

static int read_messages(struct op *op, const redisReply *rep)
{
	if (rep->type != REDIS_REPLY_ARRAY)
		return -1;
	op->val = xmust(json_object_new_array());
	for (size_t i = 0; i < rep->elements; i++) {
		json_object *m;
		const redisReply *e = rep->element[i];
		if (is_str(e) && jparse(e->str, e->len, &m) == 0 && m)
			jpush(op->val, m);
	}
	return 0;
}

/* Is v standard JSON all through? json-c reads NaN and Infinity, and
 * writes them back as it read them: no JSON parser of a client takes
 * them. (A number too large for a double keeps its text, which is
 * JSON.) */
static int json_standard(json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_double:
		if (!isfinite(json_object_get_double(v))) {
			const char *t = json_object_to_json_string_ext(v, JSON_FLAGS);
			return t[*t == '-'] >= '0' && t[*t == '-'] <= '9';
		}
		return 1;
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(v); i++)
			if (!json_standard(json_object_array_get_idx(v, i)))
				return 0;
		return 1;
	case json_type_object: {
		json_object_object_foreach(v, k, e) {
			(void)k;
			if (!json_standard(e))
				return 0;
		}
		return 1;
	}
	default:
		return 1;
	}
}

/* Parses an element of a list another program writes (p[n] is the NUL
 * hiredis puts after every string), strictly: the whole text one standard
 * JSON value, white space around it allowed. Returns 0 with the value in
 * *out (NULL for null), or -1. */
static int list_element(const char *p, size_t n, json_object **out)
{
	json_tokener *tok = xmust(json_tokener_new());
	size_t end = 0;
	int ok = 0;

	*out = NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	if (n < INT32_MAX) {
		/* With the NUL: a number or a literal ends there, not "to be
		 * continued"; a NUL inside the text ends it early (end < n). */
		*out = json_tokener_parse_ex(tok, p, (int)n + 1);
		end = json_tokener_get_parse_end(tok);
		ok = json_tokener_get_error(tok) == json_tokener_success;
	}
	json_tokener_free(tok);
	while (end < n && (p[end] == ' ' || p[end] == '\t' || p[end] == '\n' || p[end] == '\r'))
		end++;
	if (!ok || end != n || !json_standard(*out)) {
		json_object_put(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

/* LRANGE of a list (list_tail): its elements parsed, those that are not
 * JSON left out, each with a warning naming the key (op's second
 * argument). */
static int read_list(struct op *op, const redisReply *rep)
{
	if (rep->type != REDIS_REPLY_ARRAY)
		return -1;
	op->val = xmust(json_object_new_array());
	for (size_t i = 0; i < rep->elements; i++) {
		const redisReply *e = rep->element[i];
		json_object *m;
		if (is_str(e) && list_element(e->str, e->len, &m) == 0) {
			if (json_object_array_add(op->val, m) < 0)   /* m may be NULL: null */
				xmust(NULL);
			continue;
		}
		log_warn("redis store: list %.*s: element %zu of %zu is not JSON, left out: '%.*s'",
		         op->argvlen[1] > 200 ? 200 : (int)op->argvlen[1], op->argv[1], i + 1,
		         rep->elements, is_str(e) ? (e->len > 64 ? 64 : (int)e->len) : 0,
		         is_str(e) ? e->str : "");
	}
	return 0;
}

/* Adds the expiry of an entry (its text) with its info (a reply). */
static void add_expiry(struct op *op, const char *entry, size_t n, const redisReply *info)
{
	struct expiry e;

	if (!is_str(info) || expiry_parse(&e, entry, n, info->str, info->len) < 0) {
		log_warn("redis store: a bad typing entry: '%.*s'", n > 64 ? 64 : (int)n, entry);
		return;
	}
	op->exp = xmust(realloc(op->exp, (op->nexp + 1) * sizeof *op->exp));
	op->exp[op->nexp++] = e;
}

/* {flag, info of an entry past its deadline, or nil}: the entry is op's
 * third argument. */
static int read_typing(struct op *op, const redisReply *rep)
{
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER)
		return -1;
	op->flag = rep->element[0]->integer != 0;
	if (rep->element[1]->type != REDIS_REPLY_NIL)
		add_expiry(op, op->argv[2], op->argvlen[2], rep->element[1]);
	return 0;
}

/* {wait µs, entry, info, ...}: op->num is the wait in ms (UINT64_MAX: no
 * deadline). */
static int read_poll(struct op *op, const redisReply *rep)
{
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements % 2 != 1 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER)
		return -1;
	long long wait = rep->element[0]->integer;
	op->num = wait < 0 ? UINT64_MAX : ((uint64_t)wait + 999) / 1000;
	for (size_t i = 1; i < rep->elements; i += 2) {
		const redisReply *e = rep->element[i];
		if (is_str(e))
			add_expiry(op, e->str, e->len, rep->element[i + 1]);
	}
	if (rep->elements / 2 >= POLL_MAX)
		op->num = 0;             /* more are due */
	return 0;
}

/* Fills r from an entry ('p' N U sid, or 'r' N R U sid), the user's name
 * and the entry's info text. Returns 0, or -1. */
static int reaped_parse(struct reaped *r, const char *p, size_t n, const redisReply *name,
                        const redisReply *info)
{
	char kind = n ? *p : '\0', *sid = NULL;

	memset(r, 0, sizeof *r);
	p++;
	n = n ? n - 1 : 0;
	if ((kind != 'p' && kind != 'r') || !(r->nsp = take_part(&p, &n)) ||
	    (kind == 'r' && !(r->room = take_part(&p, &n))) || !(r->user = take_part(&p, &n)) ||
	    !(sid = take_part(&p, &n)) || n || !is_str(name) || !is_str(info) ||
	    (info->len && jparse(info->str, info->len, &r->info) < 0)) {
		free(sid);
		reaped_free(r);
		return -1;
	}
	free(sid);
	r->name = xmemdup(name->str, name->len);
	return 0;
}

/* Adds a report from an entry, the user's name and the entry's info (replies). */
static void add_reaped(struct op *op, const redisReply *entry, const redisReply *name,
                       const redisReply *info)
{
	struct reaped r;

	if (!is_str(entry) || reaped_parse(&r, entry->str, entry->len, name, info) < 0) {
		log_warn("redis store: a bad instance entry: '%.*s'",
		         is_str(entry) ? (entry->len > 64 ? 64 : (int)entry->len) : 0,
		         is_str(entry) ? entry->str : "");
		return;
	}
	op->reap = xmust(realloc(op->reap, (op->nreap + 1) * sizeof *op->reap));
	op->reap[op->nreap++] = r;
}

/* {registered, more, entry, name, info, ...}: op->flag is 1 when the
 * instance was not registered, op->more 1 when to send again. */
static int read_reaped(struct op *op, const redisReply *rep)
{
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 || (rep->elements - 2) % 3 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER ||
	    rep->element[1]->type != REDIS_REPLY_INTEGER)
		return -1;
	op->flag = rep->element[0]->integer != 0;
	op->more = rep->element[1]->integer != 0;
	for (size_t i = 2; i < rep->elements; i += 3)
		add_reaped(op, rep->element[i], rep->element[i + 1], rep->element[i + 2]);
	return 0;
}

static int read_integer(const redisReply *rep, long long *v)
{
	if (rep->type != REDIS_REPLY_INTEGER)
		return -1;
	*v = rep->integer;
	return 0;
}

/* Reads a reply into op. Returns 0, or -1 when it is not what op expects. */
static int op_read(struct rstore *s, struct op *op, const redisReply *rep)
{
	long long v;
	char id[24];

	switch (op->kind) {
	case K_LOAD:
		if (!is_str(rep) || rep->len != 40)
			return -1;
		memcpy(s->sha[op->flag], rep->str, 41);
		return 0;
	case K_POLL:
		return read_poll(op, rep);
	case K_DONE:
		return 0;
	case K_FLAG:
		if (read_integer(rep, &v) < 0)
			return -1;
		op->flag = v != 0;
		return 0;
	case K_GROUP:
		return read_group(op, rep);
	case K_CHANNEL:
		if (rep->type == REDIS_REPLY_NIL)
			return 0;
		return is_str(rep) ? jparse(rep->str, rep->len, &op->val) : -1;
	case K_MESSAGE:
		if (read_integer(rep, &v) < 0 || v <= 0)
			return -1;
		snprintf(id, sizeof id, "%lld", v);
		jadd(op->val, "id", json_object_new_string(id));
		return 0;
	case K_MESSAGES:
		return read_messages(op, rep);
	case K_LIST:
		return read_list(op, rep);
	case K_COOLDOWN:
		if (read_integer(rep, &v) < 0 || v < 0)
			return -1;
		op->flag = v == 0;
		op->num = (uint64_t)v;
		return 0;
	case K_TYPING:
		return read_typing(op, rep);
	case K_BEAT:
	case K_UNDO:
	case K_RETIRE:
		return read_reaped(op, rep);
	case K_COUNT:
		if (read_integer(rep, &v) < 0 || v < 0)
			return -1;
		op->num = (uint64_t)v;
		return 0;
	}
	return -1;
}

/* --- completions --- */

static void destroy(struct rstore *s);

static void poll_arm(struct rstore *s, uint64_t ms)
{
	uint64_t at;

	if (ms > POLL_MS)
		ms = POLL_MS;
	at = mono_ms() + ms;
	if (s->poll_armed && s->poll_at <= at)
		return;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(s->poll, &tv);
	s->poll_armed = 1;
	s->poll_at = at;
}

static void beat_arm(struct rstore *s, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	if (!s->retired)
		evtimer_add(s->beat, &tv);
}

/* Keeps the entry of a removal that failed (argv[i] of op), to do it again. */
static void undo_keep(struct rstore *s, struct op *op, int i)
{
	struct undo *u = xcalloc(1, sizeof *u);

	u->entry = xmemdup(op->argv[i], op->argvlen[i]);
	u->len = op->argvlen[i];
	u->next = s->undo;
	s->undo = u;
}

/* What a finished record tells the store itself, at once. */
static void op_finished(struct rstore *s, struct op *op)
{
	if (op->kind == K_POLL) {
		s->polling = 0;
		poll_arm(s, op->err ? POLL_MS : op->num);
	} else if (op->kind == K_TYPING && !op->err && op->script == SC_TYPING_SET) {
		poll_arm(s, op->num);    /* the new deadline */
	} else if (op->kind == K_BEAT) {
		s->beating = 0;
		beat_arm(s, !op->err && op->more ? 0 : s->reap_after_ms / 3);
	} else if (op->err && op->script == SC_GROUP_REMOVE) {
		undo_keep(s, op, 6);     /* its entry */
	} else if (op->err && op->kind == K_UNDO) {
		undo_keep(s, op, 3);
	}
}

static void report(struct rstore *s, struct op *op)
{
	for (size_t i = 0; i < op->nexp && !s->freed; i++) {
		struct expiry *e = &op->exp[i];
		if (s->st.on_typing_expired)
			s->st.on_typing_expired(e->nsp, e->room, e->user, e->info,
			                        s->st.on_typing_expired_ud);
	}
	for (size_t i = 0; i < op->nreap && !s->freed; i++) {
		struct reaped *r = &op->reap[i];
		if (s->st.on_reaped)
			s->st.on_reaped(r->nsp, r->room, r->user, r->name, r->info,
			                s->st.on_reaped_ud);
	}
}

static void op_call(struct rstore *s, struct op *op)
{
	int err = op->err;

	report(s, op);
	if (s->freed)
		return;
	switch (op->kind) {
	case K_LOAD:
	case K_POLL:
	case K_UNDO:
		break;
	case K_BEAT:
		/* Registered anew (first start, Redis emptied, or taken for dead),
		 * or back after an outage: the application adds its sids again. */
		if (!err && (op->flag || s->resync_due) && !s->retired) {
			s->resync_due = 0;
			if (s->st.on_resync)
				s->st.on_resync(s->st.on_resync_ud);
		}
		break;
	case K_DONE:
	case K_RETIRE:
		op->cb.done(err, op->ud);
		break;
	case K_FLAG:
	case K_TYPING:
		op->cb.flag(err, err ? 0 : op->flag, op->ud);
		break;
	case K_GROUP:
	case K_CHANNEL:
	case K_MESSAGE:
	case K_MESSAGES:
	case K_LIST:
		op->cb.json(err, err ? NULL : op->val, op->ud);
		break;
	case K_COOLDOWN:
		op->cb.cooldown(err, err ? 0 : op->flag, err || op->flag ? 0 : op->num, op->ud);
		break;
	case K_COUNT:
		op->cb.count(err, err ? 0 : op->num, op->ud);
		break;
	}
}

/* Calls back the complete records at the head of the FIFO. */
static void drain(struct rstore *s)
{
	if (s->running)
		return;
	s->running = 1;
	while (s->head && s->head->done && !s->freed) {
		struct op *op = s->head;
		if (!(s->head = op->next))
			s->tail = &s->head;
		op_call(s, op);
		op_free(op);
	}
	s->running = 0;
	if (s->freed)
		destroy(s);
}

static void on_pass(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drain(arg);
}

static int is_noscript(const redisReply *rep)
{
	return rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0;
}

static void on_reply(redisReply *reply, void *ud)
{
	struct op *op = ud;
	struct rstore *s = op->s;

	op->sent = 0;
	if (!s) {                    /* the store is gone */
		op_free(op);
		return;
	}
	if (is_noscript(reply) && op->script >= 0 && !op->evaled) {
		op->evaled = 1;
		if (op_send(s, op) == 0)
			return;
	}
	op->done = 1;
	if (!reply) {
		op->err = STORE_EUNAVAIL;
	} else if (reply->type == REDIS_REPLY_ERROR) {
		log_warn("redis store: %s", reply->str);
		op->err = STORE_EUNAVAIL;
	} else if (op_read(s, op, reply) < 0) {
		log_warn("redis store: an unexpected reply (type %d)", reply->type);
		op->err = STORE_EUNAVAIL;
	}
	if (!op->err && op->kind == K_RETIRE && op->more) {
		/* Entries are left: the same script again, in the same place. */
		op->more = 0;
		op->done = 0;
		if (op_send(s, op) == 0)
			return;
		op->done = 1;
		op->err = STORE_EUNAVAIL;
	}
	op_finished(s, op);
	drain(s);
}

/* --- connection and typing poll --- */

/* Refreshes this instance's liveness record and, with on_reaped set, reaps
 * (see Faults above). */
static void beat_now(struct rstore *s)
{
	if (s->beating || s->retired)
		return;
	struct op *op = op_new(s, K_BEAT, SC_BEAT, NULL);
	op_key(s, op, "instances", NULL, NULL, NULL);
	op_key(s, op, "reap-lock", NULL, NULL, NULL);
	op_str(op, s->prefix);
	op_str(op, s->instance);
	op_u64(op, s->reap_after_ms);
	op_u64(op, s->st.on_reaped ? REAP_MAX : 0);
	s->beating = 1;
	op_start(s, op);
}

static void on_beat(evutil_socket_t fd, short what, void *arg)
{
	struct rstore *s = arg;

	(void)fd;
	(void)what;
	if (redis_connected(s->r))
		beat_now(s);             /* otherwise on_state() does, once up */
}

/* Does the removals that failed again: the sids are gone, whether Redis
 * applied them or not. */
static void undo_again(struct rstore *s)
{
	struct undo *u = s->undo;

	s->undo = NULL;
	while (u) {
		struct undo *next = u->next;
		struct op *op = op_new(s, K_UNDO, SC_UNDO, NULL);
		op_arg(op, s->own, strlen(s->own));
		op_str(op, s->prefix);
		op_str(op, s->instance);
		op_arg(op, u->entry, u->len);
		op_start(s, op);
		free(u->entry);
		free(u);
		u = next;
	}
}

static void on_state(int up, void *ud)
{
	struct rstore *s = ud;

	if (!up)
		return;
	for (int i = 0; i < NSCRIPTS; i++) {
		struct op *op = op_new(s, K_LOAD, -1, NULL);
		op->flag = i;
		op_str(op, "SCRIPT");
		op_str(op, "LOAD");
		op_str(op, scripts[i].text);
		op_start(s, op);
	}
	if (s->retired)
		return;
	s->resync_due = 1;
	beat_now(s);
	undo_again(s);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	struct rstore *s = arg;

	(void)fd;
	(void)what;
	s->poll_armed = 0;
	if (s->polling)
		return;                  /* its reply re-arms */
	/* Without a callback, leave the entries to an instance that has one. */
	if (!s->st.on_typing_expired || !redis_connected(s->r)) {
		poll_arm(s, POLL_MS);
		return;
	}
	struct op *op = op_new(s, K_POLL, SC_TYPING_DUE, NULL);
	op_typing_keys(s, op);
	op_u64(op, POLL_MAX);
	s->polling = 1;
	op_start(s, op);
}

/* --- presence and rooms --- */

/* The instance's entry of a sid: 'p' N U sid, or 'r' N R U sid (room not
 * NULL). */
static void op_own_entry(struct rstore *s, struct op *op, const char *nsp, const char *room,
                         const char *user, const char *sid)
{
	buf_reset(&s->key);
	bputs(&s->key, room ? "r" : "p");
	put_part(&s->key, nsp);
	if (room)
		put_part(&s->key, room);
	put_part(&s->key, user);
	put_part(&s->key, sid);
	op_arg(op, s->key.p, s->key.len);
}

/* A sid as a member of the sets: "I:sid". */
static void op_member(struct rstore *s, struct op *op, const char *sid)
{
	buf_reset(&s->key);
	if (buf_printf(&s->key, "%s:%s", s->instance, sid) < 0)
		xmust(NULL);
	op_arg(op, s->key.p, s->key.len);
}

/* op has the group's keys; adds the instance's and the arguments, sends. */
static void group_add(struct rstore *s, struct op *op, const char *nsp, const char *room,
                      const char *user, const char *name, const char *sid, json_object *info)
{
	op_arg(op, s->own, strlen(s->own));
	op_key(s, op, room ? "room-at" : "online-at", nsp, room, NULL);
	op_str(op, user);
	op_str(op, name ? name : user);
	op_member(s, op, sid);
	op_str(op, name ? "1" : "0");
	op_own_entry(s, op, nsp, room, user, sid);
	op_str(op, info ? json_object_to_json_string_ext(info, JSON_FLAGS) : "");
	op_start(s, op);
}

static void group_remove(struct rstore *s, struct op *op, const char *nsp, const char *room,
                         const char *user, const char *sid)
{
	op_arg(op, s->own, strlen(s->own));
	op_key(s, op, room ? "room-at" : "online-at", nsp, room, NULL);
	op_str(op, user);
	op_member(s, op, sid);
	op_own_entry(s, op, nsp, room, user, sid);   /* argv[6]: see op_finished() */
	op_start(s, op);
}

static struct op *flag_op(struct rstore *s, int script, store_flag_cb cb, void *ud)
{
	struct op *op = op_new(s, K_FLAG, script, ud);
	op->cb.flag = cb;
	return op;
}

static struct op *json_op(struct rstore *s, enum op_kind kind, int script, store_json_cb cb,
                          void *ud)
{
	struct op *op = op_new(s, kind, script, ud);
	op->cb.json = cb;
	return op;
}

static void r_user_add(struct store *st, const char *nsp, const char *user, const char *name,
                       const char *sid, store_flag_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = flag_op(s, SC_GROUP_ADD, cb, ud);

	op_key(s, op, "online", nsp, NULL, NULL);
	op_key(s, op, "sids", nsp, user, NULL);
	group_add(s, op, nsp, NULL, user, name, sid, NULL);
}

static void r_user_remove(struct store *st, const char *nsp, const char *user, const char *sid,
                          store_flag_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = flag_op(s, SC_GROUP_REMOVE, cb, ud);

	op_key(s, op, "online", nsp, NULL, NULL);
	op_key(s, op, "sids", nsp, user, NULL);
	group_remove(s, op, nsp, NULL, user, sid);
}

static void r_user_online(struct store *st, const char *nsp, const char *user,
                          store_flag_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = flag_op(s, -1, cb, ud);

	op_str(op, "HEXISTS");
	op_key(s, op, "online", nsp, NULL, NULL);
	op_str(op, user);
	op_start(s, op);
}

static void r_users_count(struct store *st, const char *nsp, store_count_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = op_new(s, K_COUNT, -1, ud);

	op->cb.count = cb;
	op_str(op, "HLEN");
	op_key(s, op, "online", nsp, NULL, NULL);
	op_start(s, op);
}

static void r_users_online(struct store *st, const char *nsp, store_json_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = json_op(s, K_GROUP, SC_GROUP_LIST, cb, ud);

	op_key(s, op, "online", nsp, NULL, NULL);
	op_key(s, op, "online-at", nsp, NULL, NULL);
	op_start(s, op);
}

static void r_room_add(struct store *st, const char *nsp, const char *room, const char *user,
                       const char *name, const char *sid, json_object *info, store_flag_cb cb,
                       void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = flag_op(s, SC_GROUP_ADD, cb, ud);

	op_key(s, op, "room", nsp, room, NULL);
	op_key(s, op, "room-sids", nsp, room, user);
	group_add(s, op, nsp, room, user, name, sid, info);
}

static void r_room_remove(struct store *st, const char *nsp, const char *room, const char *user,
                          const char *sid, store_flag_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = flag_op(s, SC_GROUP_REMOVE, cb, ud);

	op_key(s, op, "room", nsp, room, NULL);
	op_key(s, op, "room-sids", nsp, room, user);
	group_remove(s, op, nsp, room, user, sid);
}

static void r_room_members(struct store *st, const char *nsp, const char *room,
                           store_json_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = json_op(s, K_GROUP, SC_GROUP_LIST, cb, ud);

	op_key(s, op, "room", nsp, room, NULL);
	op_key(s, op, "room-at", nsp, room, NULL);
	op_start(s, op);
}

/* --- channels --- */

static void r_channel_get(struct store *st, const char *channel, store_json_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = json_op(s, K_CHANNEL, -1, cb, ud);

	op_str(op, "GET");
	op_key(s, op, "channel", channel, NULL, NULL);
	op_start(s, op);
}

static void r_channel_set(struct store *st, const char *channel, json_object *value,
                          store_done_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = op_new(s, K_DONE, -1, ud);

	op->cb.done = cb;
	op_str(op, value ? "SET" : "DEL");
	op_key(s, op, "channel", channel, NULL, NULL);
	if (value)
		op_str(op, json_object_to_json_string_ext(value, JSON_FLAGS));
	op_start(s, op);
}

/* --- histories --- */

/* Adds to op the text of msg (an object with "id") cut where the value of
 * its id goes: before it, and after it. */
static void op_message(struct op *op, json_object *msg)
{
	struct buf head, tail, *b = &head;
	int first = 1;

	buf_init(&head, 0);
	buf_init(&tail, 0);
	bputs(b, "{");
	json_object_object_foreach(msg, k, v) {
		json_object *name = xmust(json_object_new_string(k));
		if (!first)
			bputs(b, ",");
		first = 0;
		bputs(b, json_object_to_json_string_ext(name, JSON_FLAGS));
		bputs(b, ":");
		json_object_put(name);
		if (strcmp(k, "id") == 0)
			b = &tail;       /* the script puts the id here */
		else
			bputs(b, json_object_to_json_string_ext(v, JSON_FLAGS));
	}
	bputs(b, "}");
	op_arg(op, head.p, head.len);
	op_arg(op, tail.p, tail.len);
	buf_free(&head);
	buf_free(&tail);
}

static void r_history_add(struct store *st, const char *channel, json_object *msg, unsigned cap,
                          store_json_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = json_op(s, K_MESSAGE, SC_HISTORY_ADD, cb, ud);

	/* The id goes where json-c puts it: in place of one the message has,
	 * else last; the reply gives its value. */
	op->val = jcopy(msg);
	jadd(op->val, "id", json_object_new_string(""));
	op_key(s, op, "history", channel, NULL, NULL);
	op_key(s, op, "history-id", channel, NULL, NULL);
	op_message(op, op->val);
	op_u64(op, cap);
	op_start(s, op);
}

/* Adds an id of a query to op: "" when not set, else its value. Returns 0,
 * or -1 when it is not a number (the query selects nothing). */
static int op_id(struct op *op, const char *id)
{
	uint64_t v;

	if (!id || !*id) {
		op_str(op, "");
		return 0;
	}
	if (parse_u64(id, &v) < 0)
		return -1;
	op_u64(op, v);
	return 0;
}

static void r_history_get(struct store *st, const char *channel, const struct history_query *q,
                          store_json_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = json_op(s, K_MESSAGES, SC_HISTORY_GET, cb, ud);

	op_key(s, op, "history", channel, NULL, NULL);
	op_key(s, op, "history-id", channel, NULL, NULL);
	if (op_id(op, q->after) < 0 || op_id(op, q->before) < 0) {
		op->val = xmust(json_object_new_array());
		op_local(s, op, 0);
		return;
	}
	op_u64(op, q->limit);
	op_start(s, op);
}

/* --- lists shared with another program --- */

static void r_list_append(struct store *st, const char *key, json_object *msg, unsigned cap,
                          store_done_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = op_new(s, K_DONE, SC_LIST_APPEND, ud);

	op->cb.done = cb;
	op_str(op, key);
	op_str(op, json_object_to_json_string_ext(msg, JSON_FLAGS));
	op_u64(op, cap);
	op_start(s, op);
}

static void r_list_tail(struct store *st, const char *key, unsigned limit, store_json_cb cb,
                        void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = json_op(s, K_LIST, -1, cb, ud);
	char from[24];

	op_str(op, "LRANGE");
	op_str(op, key);
	if (limit == 0) {
		op->val = xmust(json_object_new_array());
		op_local(s, op, 0);
		return;
	}
	snprintf(from, sizeof from, "-%u", limit);
	op_str(op, from);
	op_str(op, "-1");
	op_start(s, op);
}

/* --- cooldowns and typing --- */

static void r_cooldown_take(struct store *st, const char *key, const char *user, uint64_t ms,
                            store_cooldown_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = op_new(s, K_COOLDOWN, SC_COOLDOWN, ud);

	op->cb.cooldown = cb;
	op_key(s, op, "cooldown", key, user, NULL);
	op_u64(op, ms < MAX_MS ? ms : MAX_MS);
	op_start(s, op);
}

static void r_typing_set(struct store *st, const char *nsp, const char *room, const char *user,
                         json_object *info, uint64_t ttl_ms, store_flag_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = op_new(s, K_TYPING, SC_TYPING_SET, ud);

	op->cb.flag = cb;
	op->num = ttl_ms < MAX_MS ? ttl_ms : MAX_MS;
	op_typing_keys(s, op);
	op_entry(s, op, nsp, room, user);
	op_str(op, info ? json_object_to_json_string_ext(info, JSON_FLAGS) : "");
	op_u64(op, op->num);
	op_start(s, op);
}

static void r_typing_clear(struct store *st, const char *nsp, const char *room, const char *user,
                           store_flag_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = op_new(s, K_TYPING, SC_TYPING_CLEAR, ud);

	op->cb.flag = cb;
	op_typing_keys(s, op);
	op_entry(s, op, nsp, room, user);
	op_start(s, op);
}

/* --- the store --- */

static void r_retire(struct store *st, store_done_cb cb, void *ud)
{
	struct rstore *s = (struct rstore *)st;
	struct op *op = op_new(s, K_RETIRE, SC_RETIRE, ud);

	op->cb.done = cb;
	s->retired = 1;
	evtimer_del(s->beat);
	op_key(s, op, "instances", NULL, NULL, NULL);
	op_arg(op, s->own, strlen(s->own));
	op_key(s, op, "reap-lock", NULL, NULL, NULL);
	op_str(op, s->prefix);
	op_str(op, s->instance);
	op_u64(op, REAP_MAX);
	op_start(s, op);
}

static void destroy(struct rstore *s)
{
	struct op *op = s->head;

	while (op) {
		struct op *next = op->next;
		if (op->sent)
			op->s = NULL;        /* its reply frees it */
		else
			op_free(op);
		op = next;
	}
	redis_free(s->r);
	if (s->pass)
		event_free(s->pass);
	if (s->poll)
		event_free(s->poll);
	if (s->beat)
		event_free(s->beat);
	while (s->undo) {
		struct undo *u = s->undo;
		s->undo = u->next;
		free(u->entry);
		free(u);
	}
	free(s->instance);
	free(s->own);
	free(s->prefix);
	buf_free(&s->key);
	free(s);
}

static void r_free(struct store *st)
{
	struct rstore *s = (struct rstore *)st;

	if (s->running)
		s->freed = 1;            /* drain() finishes the job */
	else
		destroy(s);
}

static const struct store_ops redis_ops = {
	.name = "redis",
	.user_add = r_user_add,
	.user_remove = r_user_remove,
	.user_online = r_user_online,
	.users_count = r_users_count,
	.users_online = r_users_online,
	.room_add = r_room_add,
	.room_remove = r_room_remove,
	.room_members = r_room_members,
	.channel_get = r_channel_get,
	.channel_set = r_channel_set,
	.history_add = r_history_add,
	.history_get = r_history_get,
	.list_append = r_list_append,
	.list_tail = r_list_tail,
	.cooldown_take = r_cooldown_take,
	.typing_set = r_typing_set,
	.typing_clear = r_typing_clear,
	.retire = r_retire,
	.free = r_free,
};

struct store *store_redis_new(struct event_base *base, const char *url, const char *prefix,
                              const char *instance, unsigned reap_after_ms,
                              char *err, size_t errlen)
{
	struct rstore *s = xcalloc(1, sizeof *s);

	s->st.ops = &redis_ops;
	s->tail = &s->head;
	s->prefix = xmust(strdup(prefix));
	s->instance = xmust(strdup(instance));
	buf_init(&s->key, 0);
	if (buf_printf(&s->key, "%s:instance:%s", prefix, instance) < 0)
		xmust(NULL);
	s->own = xmust(strdup(s->key.p));
	s->reap_after_ms = reap_after_ms ? reap_after_ms : REAP_AFTER_MS;
	s->resync_due = 1;
	s->pass = xmust(event_new(base, -1, 0, on_pass, s));
	s->poll = xmust(evtimer_new(base, on_poll, s));
	s->beat = xmust(evtimer_new(base, on_beat, s));
	snprintf(err, errlen, "out of memory");
	if (!(s->r = redis_new(base, url, "store", err, errlen))) {
		destroy(s);
		return NULL;
	}
	redis_on_state(s->r, on_state, s);
	poll_arm(s, POLL_MS);
	return &s->st;
}
