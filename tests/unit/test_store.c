/* test_store.c -- the stores (store.h), driven through a real libevent
 * loop: every callback must come from the loop, never from the call that
 * started the operation.
 *
 * Every test runs twice: against the memory store, and against the Redis
 * store on a redis-server this program starts on a free loopback port (and
 * stops at the end). Without redis-server, the Redis half fails. The Redis
 * half adds its own tests: two instances on one server (two daemons), an
 * unreachable server, and one that comes back; instances that die (their
 * sids reaped by the others) or retire, and resynchronisation. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "store.h"
#include "util.h"

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static struct event_base *base;
static struct store *st;
static struct store *st2;        /* a second instance (Redis tests) */

/* --- the loop --- */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

/* Runs the loop until *n reaches want (n may be NULL), or ms have passed. */
static void run(const int *n, int want, unsigned ms)
{
	int late = 0;
	struct event *t = evtimer_new(base, on_deadline, &late);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(t, &tv);
	while (!late && !(n && *n >= want))
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
}

/* Runs the loop until *n is 1, then a little more: it must stay 1. */
static void await_once(const int *n)
{
	ck_assert_int_eq(*n, 0);     /* not called from inside the call */
	run(n, 1, 1000);
	ck_assert_int_eq(*n, 1);
	event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_int_eq(*n, 1);
}

/* --- what the callbacks saw --- */

static int seq;                  /* counts every callback */

struct res {
	int n;                       /* calls */
	int err;
	int flag;                    /* flag, or ok */
	uint64_t retry;
	int seq;                     /* the value of seq at the call */
	json_object *val;            /* a reference to the value */
};

static void res_clear(struct res *r)
{
	json_object_put(r->val);
	memset(r, 0, sizeof *r);
}

static void seen(struct res *r, int err)
{
	r->n++;
	r->err = err;
	r->seq = ++seq;
}

static void done_cb(int err, void *ud)
{
	seen(ud, err);
}

static void flag_cb(int err, int flag, void *ud)
{
	struct res *r = ud;
	seen(r, err);
	r->flag = flag;
}

static void json_cb(int err, json_object *val, void *ud)
{
	struct res *r = ud;
	seen(r, err);
	json_object_put(r->val);
	r->val = json_object_get(val);
}

static void count_cb(int err, uint64_t n, void *ud)
{
	struct res *r = ud;
	seen(r, err);
	r->retry = n;
}

static void cooldown_cb(int err, int ok, uint64_t retry_after_ms, void *ud)
{
	struct res *r = ud;
	seen(r, err);
	r->flag = ok;
	r->retry = retry_after_ms;
}

/* The typing entries reported expired, as "nsp|room|user=info;" each. */
static struct {
	int n;
	int seq;                     /* of the last one */
	uint64_t at;                 /* mono_ms() at the last one */
	char log[512];
} expired;

static void on_expired(const char *nsp, const char *room, const char *user, json_object *info,
                       void *ud)
{
	size_t len = strlen(expired.log);

	ck_assert_ptr_eq(ud, &expired);
	snprintf(expired.log + len, sizeof expired.log - len, "%s|%s|%s=%s;", nsp, room, user,
	         json_object_to_json_string_ext(info, JSON_FLAGS));
	expired.n++;
	expired.seq = ++seq;
	expired.at = mono_ms();
}

/* The sids reported reaped, as "nsp|room|user|name=info;" each (room "-"
 * for presence), and the resyncs asked for. */
static struct {
	int n;
	char log[1024];
} reaped;
static int resyncs;

static void on_reaped(const char *nsp, const char *room, const char *user, const char *name,
                      json_object *info, void *ud)
{
	size_t len = strlen(reaped.log);

	ck_assert_ptr_eq(ud, &reaped);
	snprintf(reaped.log + len, sizeof reaped.log - len, "%s|%s|%s|%s=%s;", nsp,
	         room ? room : "-", user, name, json_object_to_json_string_ext(info, JSON_FLAGS));
	reaped.n++;
}

static void on_resync(void *ud)
{
	ck_assert_ptr_eq(ud, &resyncs);
	resyncs++;
}

/* --- a redis-server of our own --- */

static int redis_port;
static char redis_url[64];

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* A blocking connection to the server, or NULL. */
static redisContext *server_connect(void)
{
	struct timeval tv = { 1, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);

	if (c && c->err) {
		redisFree(c);
		c = NULL;
	}
	return c;
}

/* Runs a command on a connection of its own; returns the reply (the caller
 * frees it with freeReplyObject), or NULL. */
static redisReply *server_command(const char *fmt, ...)
{
	redisContext *c = server_connect();
	redisReply *rep = NULL;
	va_list ap;

	if (!c)
		return NULL;
	va_start(ap, fmt);
	rep = redisvCommand(c, fmt, ap);
	va_end(ap);
	redisFree(c);
	return rep;
}

static int server_up(void)
{
	redisReply *rep = server_command("PING");
	int up = rep && rep->type == REDIS_REPLY_STATUS;

	if (rep)
		freeReplyObject(rep);
	return up;
}

/* Waits up to ms for the server to be up (want 1) or down (want 0). */
static int server_wait(int want, unsigned ms)
{
	for (unsigned i = 0; i < ms / 10; i++) {
		if (server_up() == want)
			return 0;
		usleep(10 * 1000);
	}
	return -1;
}

/* Starts redis-server on redis_port. Returns 0, or -1. */
static int server_start(void)
{
	char port[16];
	pid_t pid;

	snprintf(port, sizeof port, "%d", redis_port);
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0) {
			dup2(null, STDOUT_FILENO);
			dup2(null, STDERR_FILENO);
		}
		execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
		       "--save", "", "--appendonly", "no", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		if (server_up())
			return 0;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -1;       /* it could not start */
		usleep(10 * 1000);
	}
	return -1;
}

/* Stops the server (whichever process started it), and reaps it when it
 * is ours. */
static int server_stop(void)
{
	redisReply *rep = server_command("SHUTDOWN NOSAVE");

	if (rep)
		freeReplyObject(rep);
	int rc = server_wait(0, 2000);
	for (int i = 0; i < 100 && waitpid(-1, NULL, WNOHANG) >= 0; i++)
		usleep(10 * 1000);   /* until no child is left (ECHILD) */
	return rc;
}

/* --- fixture --- */

static void setup_loop(void)
{
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	memset(&expired, 0, sizeof expired);
	memset(&reaped, 0, sizeof reaped);
	resyncs = 0;
	seq = 0;
}

static void watch(struct store *s)
{
	s->on_typing_expired = on_expired;
	s->on_typing_expired_ud = &expired;
	s->on_reaped = on_reaped;
	s->on_reaped_ud = &reaped;
	s->on_resync = on_resync;
	s->on_resync_ud = &resyncs;
}

static void setup(void)
{
	setup_loop();
	st = store_memory_new(base);
	ck_assert_ptr_nonnull(st);
	watch(st);
}

/* Runs the loop until s answers without an error (it is connected). */
static void wait_ready(struct store *s)
{
	for (int i = 0; i < 300; i++) {
		struct res r = { 0 };
		store_user_online(s, "/", "nobody", flag_cb, &r);
		run(&r.n, 1, 1000);
		ck_assert_int_eq(r.n, 1);
		if (!r.err)
			return;
		run(NULL, 0, 10);
	}
	ck_abort_msg("the Redis store does not connect");
}

/* A Redis store on our server, connected, as instance "i<n>" (n counts the
 * stores of a test from 1), taking others for dead after reap_after_ms. */
static int instances;

static struct store *redis_instance(const char *prefix, unsigned reap_after_ms)
{
	char err[256], id[16];
	struct store *s;

	snprintf(id, sizeof id, "i%d", ++instances);
	s = store_redis_new(base, redis_url, prefix, id, reap_after_ms, err, sizeof err);

	ck_assert_msg(s != NULL, "store_redis_new: %s", err);
	ck_assert_str_eq(s->ops->name, "redis");
	watch(s);
	wait_ready(s);
	return s;
}

static struct store *redis_store(const char *prefix)
{
	return redis_instance(prefix, 0);
}

static void setup_redis(void)
{
	ck_assert_msg(redis_port > 0 && server_up(),
	              "no redis-server on 127.0.0.1:%d (is redis-server installed?)", redis_port);
	redisReply *rep = server_command("FLUSHALL");
	ck_assert_ptr_nonnull(rep);
	freeReplyObject(rep);
	setup_loop();
	instances = 0;
	st = redis_store("test");
	seq = 0;
}

static void teardown(void)
{
	if (st)
		store_free(st);
	if (st2)
		store_free(st2);
	st = st2 = NULL;
	event_base_free(base);
}

/* The helpers below work on st: this makes them work on the other one. */
static void swap(void)
{
	struct store *s = st;
	st = st2;
	st2 = s;
}

/* --- the operations, waited for --- */

static int flag_of(struct res *r)
{
	await_once(&r->n);
	ck_assert_int_eq(r->err, 0);
	return r->flag;
}

static int user_add(const char *nsp, const char *user, const char *name, const char *sid)
{
	struct res r = { 0 };
	store_user_add(st, nsp, user, name, sid, flag_cb, &r);
	return flag_of(&r);
}

static int user_online(const char *nsp, const char *user)
{
	struct res r = { 0 };
	store_user_online(st, nsp, user, flag_cb, &r);
	return flag_of(&r);
}

static int user_remove(const char *nsp, const char *user, const char *sid)
{
	struct res r = { 0 };
	store_user_remove(st, nsp, user, sid, flag_cb, &r);
	return flag_of(&r);
}

static uint64_t users_count(const char *nsp)
{
	struct res r = { 0 };
	store_users_count(st, nsp, count_cb, &r);
	await_once(&r.n);
	ck_assert_int_eq(r.err, 0);
	return r.retry;
}

static int room_add(const char *nsp, const char *room, const char *user, const char *name,
                    const char *sid)
{
	struct res r = { 0 };
	store_room_add(st, nsp, room, user, name, sid, NULL, flag_cb, &r);
	return flag_of(&r);
}

static int room_remove(const char *nsp, const char *room, const char *user, const char *sid)
{
	struct res r = { 0 };
	store_room_remove(st, nsp, room, user, sid, flag_cb, &r);
	return flag_of(&r);
}

/* The value of a json result, as text ("NULL" for none); the caller frees it. */
static char *text_of(struct res *r)
{
	await_once(&r->n);
	ck_assert_int_eq(r->err, 0);
	char *s = strdup(r->val ? json_object_to_json_string_ext(r->val, JSON_FLAGS) : "NULL");
	res_clear(r);
	return s;
}

#define ck_assert_text(call, want) do { \
	char *got_ = (call); \
	ck_assert_str_eq(got_, want); \
	free(got_); \
} while (0)

/* A list of users as text, each entry's lastActive (which must be a time
 * of the last minute) taken out. */
static char *users_text(struct res *r)
{
	await_once(&r->n);
	ck_assert_int_eq(r->err, 0);
	ck_assert(json_object_is_type(r->val, json_type_array));
	int64_t now = (int64_t)wall_ms();
	for (size_t i = 0; i < json_object_array_length(r->val); i++) {
		json_object *e = json_object_array_get_idx(r->val, i), *at;
		ck_assert(json_object_object_get_ex(e, "lastActive", &at));
		ck_assert(json_object_is_type(at, json_type_int));
		ck_assert_int_le(json_object_get_int64(at), now + 1000);
		ck_assert_int_ge(json_object_get_int64(at), now - 60000);
		json_object_object_del(e, "lastActive");
	}
	char *t = strdup(json_object_to_json_string_ext(r->val, JSON_FLAGS));
	res_clear(r);
	return t;
}

static char *users_online(const char *nsp)
{
	struct res r = { 0 };
	store_users_online(st, nsp, json_cb, &r);
	return users_text(&r);
}

static char *room_members(const char *nsp, const char *room)
{
	struct res r = { 0 };
	store_room_members(st, nsp, room, json_cb, &r);
	return users_text(&r);
}

/* The lastActive of each member of room, in order. */
static size_t members_at(const char *room, int64_t *at, size_t max)
{
	struct res r = { 0 };
	size_t n = 0;
	store_room_members(st, "/", room, json_cb, &r);
	await_once(&r.n);
	ck_assert_int_eq(r.err, 0);
	for (size_t i = 0; i < json_object_array_length(r.val) && n < max; i++) {
		json_object *v;
		ck_assert(json_object_object_get_ex(json_object_array_get_idx(r.val, i), "lastActive", &v));
		at[n++] = json_object_get_int64(v);
	}
	res_clear(&r);
	return n;
}

static void channel_set(const char *channel, json_object *value)
{
	struct res r = { 0 };
	store_channel_set(st, channel, value, done_cb, &r);
	await_once(&r.n);
	ck_assert_int_eq(r.err, 0);
}

static char *channel_get(const char *channel)
{
	struct res r = { 0 };
	store_channel_get(st, channel, json_cb, &r);
	return text_of(&r);
}

/* Adds {"text": "m<n>"}; returns the id given (checked against the stored
 * message, which must also keep the text). */
static unsigned long history_add(const char *channel, unsigned n, unsigned cap)
{
	struct res r = { 0 };
	json_object *msg = json_object_new_object();
	char text[32];

	snprintf(text, sizeof text, "m%u", n);
	json_object_object_add(msg, "text", json_object_new_string(text));
	store_history_add(st, channel, msg, cap, json_cb, &r);
	json_object_put(msg);
	await_once(&r.n);
	ck_assert_int_eq(r.err, 0);

	json_object *id, *t;
	ck_assert(json_object_object_get_ex(r.val, "id", &id));
	ck_assert(json_object_is_type(id, json_type_string));
	ck_assert(json_object_object_get_ex(r.val, "text", &t));
	ck_assert_str_eq(json_object_get_string(t), text);
	unsigned long v = strtoul(json_object_get_string(id), NULL, 10);
	res_clear(&r);
	return v;
}

/* The ids of the messages selected, as "1,2,3"; each message's text must
 * be "m<id>" (as history_add_n stores them). */
static char *history_get(const char *channel, const char *after, const char *before,
                         unsigned limit)
{
	struct history_query q = { after, before, limit };
	struct res r = { 0 };
	char out[512] = "";

	store_history_get(st, channel, &q, json_cb, &r);
	await_once(&r.n);
	ck_assert_int_eq(r.err, 0);
	ck_assert(json_object_is_type(r.val, json_type_array));
	for (size_t i = 0; i < json_object_array_length(r.val); i++) {
		json_object *m = json_object_array_get_idx(r.val, i), *id, *t;
		char text[32];
		ck_assert(json_object_object_get_ex(m, "id", &id));
		ck_assert(json_object_object_get_ex(m, "text", &t));
		snprintf(text, sizeof text, "m%s", json_object_get_string(id));
		ck_assert_str_eq(json_object_get_string(t), text);
		snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? "," : "",
		         json_object_get_string(id));
	}
	res_clear(&r);
	return strdup(out);
}

/* Messages 1..n, in a history that keeps them all. */
static void history_add_n(const char *channel, unsigned n)
{
	for (unsigned i = 1; i <= n; i++)
		ck_assert_uint_eq(history_add(channel, i, 1000), i);
}

static int cooldown_take(const char *key, const char *user, uint64_t ms, uint64_t *retry)
{
	struct res r = { 0 };
	store_cooldown_take(st, key, user, ms, cooldown_cb, &r);
	await_once(&r.n);
	ck_assert_int_eq(r.err, 0);
	if (retry)
		*retry = r.retry;
	if (r.flag)
		ck_assert_uint_eq(r.retry, 0);
	return r.flag;
}

/* info: JSON text, or NULL. */
static int typing_set(const char *nsp, const char *room, const char *user, const char *info,
                      uint64_t ttl_ms)
{
	struct res r = { 0 };
	json_object *o = info ? json_tokener_parse(info) : NULL;

	store_typing_set(st, nsp, room, user, o, ttl_ms, flag_cb, &r);
	json_object_put(o);
	return flag_of(&r);
}

static int typing_clear(const char *nsp, const char *room, const char *user)
{
	struct res r = { 0 };
	store_typing_clear(st, nsp, room, user, flag_cb, &r);
	return flag_of(&r);
}

static void retire(void)
{
	struct res r = { 0 };
	store_retire(st, done_cb, &r);
	await_once(&r.n);
	ck_assert_int_eq(r.err, 0);
}

/* ------------------------------------------------------------------------
 * Completions */

START_TEST(callbacks_deferred_in_order)
{
	struct res r[10] = { { 0 } };
	struct history_query q = { NULL, NULL, 10 };
	json_object *o = json_object_new_object();

	store_user_add(st, "/", "u", "U", "s1", flag_cb, &r[0]);
	store_user_remove(st, "/", "u", "s1", flag_cb, &r[1]);
	store_users_online(st, "/", json_cb, &r[2]);
	store_room_add(st, "/", "r", "u", "U", "s1", NULL, flag_cb, &r[3]);
	store_room_members(st, "/", "r", json_cb, &r[4]);
	store_channel_set(st, "c", o, done_cb, &r[5]);
	store_history_add(st, "c", o, 10, json_cb, &r[6]);
	store_history_get(st, "c", &q, json_cb, &r[7]);
	store_cooldown_take(st, "k", "u", 1000, cooldown_cb, &r[8]);
	store_typing_set(st, "/", "r", "u", o, 1000, flag_cb, &r[9]);
	json_object_put(o);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(r[i].n, 0);

	run(&r[9].n, 1, 1000);
	run(NULL, 0, 10);
	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(r[i].n, 1);
		ck_assert_int_eq(r[i].err, 0);
		ck_assert_int_eq(r[i].seq, i + 1);
		res_clear(&r[i]);
	}
}
END_TEST

/* A callback that starts another operation: that one is not called from
 * inside the callback either. */
static void chain_cb(int err, int flag, void *ud)
{
	struct res *r = ud;

	flag_cb(err, flag, ud);
	store_user_add(st, "/", "v", NULL, "s2", flag_cb, r + 1);
	ck_assert_int_eq(r[1].n, 0);
}

START_TEST(callback_starting_another)
{
	struct res r[2] = { { 0 } };

	store_user_add(st, "/", "u", NULL, "s1", chain_cb, r);
	run(&r[1].n, 1, 1000);
	ck_assert_int_eq(r[0].n, 1);
	ck_assert_int_eq(r[1].n, 1);
	ck_assert_int_eq(r[1].flag, 1);
}
END_TEST

START_TEST(free_drops_pending)
{
	struct res r[8] = { { 0 } };
	struct history_query q = { NULL, NULL, 10 };
	json_object *o = json_object_new_object();

	json_object_object_add(o, "a", json_object_new_string("b"));
	/* Some state to free as well. */
	ck_assert_int_eq(user_add("/", "u", "U", "s0"), 1);
	ck_assert_int_eq(room_add("/", "r", "u", "U", "s0"), 1);
	ck_assert_int_eq(typing_set("/", "r", "w", "{}", 5000), 1);

	store_user_add(st, "/", "u", "U", "s1", flag_cb, &r[0]);
	store_users_online(st, "/", json_cb, &r[1]);
	store_channel_set(st, "c", o, done_cb, &r[2]);
	store_channel_get(st, "c", json_cb, &r[3]);
	store_history_add(st, "c", o, 10, json_cb, &r[4]);
	store_history_get(st, "c", &q, json_cb, &r[5]);
	store_cooldown_take(st, "k", "u", 1000, cooldown_cb, &r[6]);
	store_typing_set(st, "/", "r", "u", o, 10, flag_cb, &r[7]);
	json_object_put(o);
	store_free(st);
	st = NULL;

	run(NULL, 0, 30);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(r[i].n, 0);
	ck_assert_int_eq(expired.n, 0);
}
END_TEST

static void free_cb(int err, int flag, void *ud)
{
	flag_cb(err, flag, ud);
	store_free(st);
	st = NULL;
}

START_TEST(free_from_callback)
{
	struct res r[3] = { { 0 } };

	store_user_add(st, "/", "u", NULL, "s1", flag_cb, &r[0]);
	store_user_add(st, "/", "u", NULL, "s2", free_cb, &r[1]);
	store_user_add(st, "/", "u", NULL, "s3", flag_cb, &r[2]);
	run(&r[1].n, 1, 1000);
	run(NULL, 0, 10);
	ck_assert_ptr_null(st);
	ck_assert_int_eq(r[0].n, 1);
	ck_assert_int_eq(r[1].n, 1);
	ck_assert_int_eq(r[2].n, 0);
}
END_TEST

static void expired_then_free(const char *nsp, const char *room, const char *user,
                              json_object *info, void *ud)
{
	on_expired(nsp, room, user, info, ud);
	store_free(st);
	st = NULL;
}

START_TEST(free_from_expiry)
{
	struct res r[2] = { { 0 } };

	/* Both expire in the same pass: the second is dropped. */
	st->on_typing_expired = expired_then_free;
	store_typing_set(st, "/", "r", "u", NULL, 10, flag_cb, &r[0]);
	store_typing_set(st, "/", "r", "v", NULL, 10, flag_cb, &r[1]);
	run(&expired.n, 1, 1000);
	ck_assert_ptr_null(st);
	run(NULL, 0, 30);
	ck_assert_int_eq(r[0].n, 1);
	ck_assert_int_eq(r[1].n, 1);
	ck_assert_int_eq(expired.n, 1);
}
END_TEST

/* Retiring completes once, later; reads still work after it. */
START_TEST(retire_completes)
{
	ck_assert_int_eq(user_add("/", "u", "U", "s1"), 1);
	ck_assert_int_eq(user_remove("/", "u", "s1"), 1);
	retire();
	ck_assert_int_eq(user_online("/", "u"), 0);
	ck_assert_int_eq(reaped.n, 0);
}
END_TEST

/* ------------------------------------------------------------------------
 * Presence and rooms */

START_TEST(user_first_and_last)
{
	ck_assert_int_eq(user_add("/", "u", "U", "s1"), 1);
	ck_assert_int_eq(user_add("/", "u", "U", "s2"), 0);
	ck_assert_int_eq(user_add("/", "u", "U", "s2"), 0);   /* again: no change */
	ck_assert_int_eq(user_remove("/", "u", "s1"), 0);
	ck_assert_int_eq(user_remove("/", "u", "s1"), 0);     /* not there */
	ck_assert_int_eq(user_remove("/", "u", "s2"), 1);
	ck_assert_int_eq(user_remove("/", "u", "s2"), 0);
	ck_assert_int_eq(user_remove("/", "nobody", "s9"), 0);
	ck_assert_text(users_online("/"), "[]");
	ck_assert_int_eq(user_add("/", "u", "U", "s3"), 1);
}
END_TEST

START_TEST(user_online_by_id)
{
	ck_assert_int_eq(user_online("/", "u"), 0);
	user_add("/", "u", "U", "s1");
	ck_assert_int_eq(user_online("/", "u"), 1);
	ck_assert_int_eq(user_online("/other", "u"), 0);
	ck_assert_int_eq(user_online("/", "v"), 0);
	user_remove("/", "u", "s1");
	ck_assert_int_eq(user_online("/", "u"), 0);
}
END_TEST

START_TEST(users_online_sorted_once)
{
	ck_assert_text(users_online("/"), "[]");
	ck_assert_int_eq(user_add("/", "carol", "Carol", "s1"), 1);
	ck_assert_int_eq(user_add("/", "alice", "Alice", "s2"), 1);
	ck_assert_int_eq(user_add("/", "bob", NULL, "s3"), 1);
	ck_assert_int_eq(user_add("/", "alice", "Alice", "s4"), 0);
	ck_assert_int_eq(user_add("/chat", "dave", "Dave", "s5"), 1);
	ck_assert_text(users_online("/"),
	               "[{\"userId\":\"alice\",\"name\":\"Alice\"},"
	               "{\"userId\":\"bob\",\"name\":\"bob\"},"
	               "{\"userId\":\"carol\",\"name\":\"Carol\"}]");
	ck_assert_text(users_online("/chat"), "[{\"userId\":\"dave\",\"name\":\"Dave\"}]");

	/* A name given later replaces the first; a NULL one does not. */
	ck_assert_int_eq(user_add("/", "bob", "Bob", "s6"), 0);
	ck_assert_int_eq(user_add("/", "bob", NULL, "s7"), 0);
	ck_assert_int_eq(user_remove("/", "alice", "s2"), 0);
	ck_assert_int_eq(user_remove("/", "carol", "s1"), 1);
	ck_assert_text(users_online("/"),
	               "[{\"userId\":\"alice\",\"name\":\"Alice\"},"
	               "{\"userId\":\"bob\",\"name\":\"Bob\"}]");
}
END_TEST

START_TEST(users_counted)
{
	ck_assert_uint_eq(users_count("/"), 0);
	user_add("/", "alice", "Alice", "s1");
	user_add("/", "alice", "Alice", "s2");
	user_add("/", "bob", NULL, "s3");
	user_add("/chat", "carol", NULL, "s4");
	room_add("/", "r", "dave", NULL, "s5");
	ck_assert_uint_eq(users_count("/"), 2);
	ck_assert_uint_eq(users_count("/chat"), 1);
	ck_assert_uint_eq(users_count("/none"), 0);
	user_remove("/", "alice", "s1");
	ck_assert_uint_eq(users_count("/"), 2);
	user_remove("/", "alice", "s2");
	ck_assert_uint_eq(users_count("/"), 1);
}
END_TEST

START_TEST(rooms_counted_and_isolated)
{
	ck_assert_int_eq(room_add("/", "r1", "u", "U", "s1"), 1);
	ck_assert_int_eq(room_add("/", "r1", "u", "U", "s2"), 0);
	ck_assert_int_eq(room_add("/", "r1", "a", NULL, "s3"), 1);
	ck_assert_int_eq(room_add("/", "r2", "u", "U", "s1"), 1);
	ck_assert_int_eq(room_add("/chat", "r1", "z", "Z", "s4"), 1);

	ck_assert_text(room_members("/", "r1"),
	               "[{\"userId\":\"a\",\"name\":\"a\"},{\"userId\":\"u\",\"name\":\"U\"}]");
	ck_assert_text(room_members("/", "r2"), "[{\"userId\":\"u\",\"name\":\"U\"}]");
	ck_assert_text(room_members("/chat", "r1"), "[{\"userId\":\"z\",\"name\":\"Z\"}]");
	ck_assert_text(room_members("/", "r3"), "[]");
	ck_assert_text(users_online("/"), "[]");   /* rooms are not presence */

	ck_assert_int_eq(room_remove("/", "r1", "u", "s1"), 0);
	ck_assert_int_eq(room_remove("/", "r2", "u", "s2"), 0);   /* s2 is in r1 only */
	ck_assert_int_eq(room_remove("/chat", "r1", "u", "s2"), 0);
	ck_assert_int_eq(room_remove("/", "r1", "u", "s2"), 1);
	ck_assert_text(room_members("/", "r1"), "[{\"userId\":\"a\",\"name\":\"a\"}]");
	ck_assert_text(room_members("/", "r2"), "[{\"userId\":\"u\",\"name\":\"U\"}]");
	ck_assert_int_eq(room_remove("/", "r1", "a", "s3"), 1);
	ck_assert_int_eq(room_remove("/", "r2", "u", "s1"), 1);
	ck_assert_int_eq(room_remove("/chat", "r1", "z", "s4"), 1);
	ck_assert_text(room_members("/", "r1"), "[]");
	ck_assert_int_eq(room_add("/", "r1", "u", "U", "s1"), 1);
}
END_TEST

/* Tuples that naive composite keys would merge. */
static const char *const tricky[][2] = {
	{ "a:b", "c" }, { "a", "b:c" },          /* ':' as separator */
	{ "/a", "b" }, { "/", "ab" },            /* no separator */
	{ "a\x01" "b", "c" }, { "a", "b\x01" "c" },    /* '\x01' as separator */
	{ "1:a", "" }, { "", "1:a" },            /* length prefixes */
};
#define NTRICKY (sizeof tricky / sizeof tricky[0])

/* lastActive: when a sid of the user was last added to the group. */
START_TEST(members_last_active)
{
	int64_t at[2], again[2];
	room_add("/", "la", "a", NULL, "s1");
	usleep(30000);
	room_add("/", "la", "b", NULL, "s2");
	ck_assert_uint_eq(members_at("la", at, 2), 2);
	ck_assert_int_ge(at[1], at[0] + 15);
	usleep(30000);
	room_add("/", "la", "a", NULL, "s3");     /* another socket of a's */
	ck_assert_uint_eq(members_at("la", again, 2), 2);
	ck_assert_int_ge(again[0], at[1] + 15);
	ck_assert_int_eq(again[1], at[1]);
	room_remove("/", "la", "a", "s1");
	ck_assert_uint_eq(members_at("la", again, 2), 2);
	ck_assert_int_ge(again[0], at[1] + 15);  /* a removal refreshes nothing */
	room_remove("/", "la", "a", "s3");
	room_remove("/", "la", "b", "s2");
	ck_assert_text(room_members("/", "la"), "[]");
	user_add("/", "u", "U", "s4");
	ck_assert_text(users_online("/"), "[{\"userId\":\"u\",\"name\":\"U\"}]");
	user_remove("/", "u", "s4");
}
END_TEST

START_TEST(tricky_names_do_not_collide)
{
	char sid[16], want[64];

	for (size_t i = 0; i < NTRICKY; i++) {
		snprintf(sid, sizeof sid, "s%zu", i);
		ck_assert_int_eq(room_add(tricky[i][0], tricky[i][1], sid, sid, sid), 1);
		ck_assert_int_eq(typing_set("/", tricky[i][0], tricky[i][1], NULL, 5000), 1);
		ck_assert_int_eq(cooldown_take(tricky[i][0], tricky[i][1], 5000, NULL), 1);
	}
	for (size_t i = 0; i < NTRICKY; i++) {
		snprintf(sid, sizeof sid, "s%zu", i);
		snprintf(want, sizeof want, "[{\"userId\":\"%s\",\"name\":\"%s\"}]", sid, sid);
		ck_assert_text(room_members(tricky[i][0], tricky[i][1]), want);
		ck_assert_int_eq(typing_clear("/", tricky[i][0], tricky[i][1]), 1);
	}

	ck_assert_int_eq(user_add("/", "a:b", NULL, "s1"), 1);
	ck_assert_int_eq(user_add("/", "a", NULL, "s2"), 1);
	ck_assert_int_eq(user_add("/", "a\x01" "b", NULL, "s3"), 1);
	ck_assert_text(users_online("/"),
	               "[{\"userId\":\"a\",\"name\":\"a\"},"
	               "{\"userId\":\"a\\u0001b\",\"name\":\"a\\u0001b\"},"
	               "{\"userId\":\"a:b\",\"name\":\"a:b\"}]");
}
END_TEST

/* ------------------------------------------------------------------------
 * Channels */

START_TEST(channel_round_trip_and_copy)
{
	json_object *v = json_tokener_parse("{\"slowMs\":5,\"tags\":[\"x\"]}");

	ck_assert_text(channel_get("c"), "NULL");
	channel_set("c", v);
	/* The caller's object is not the stored one. */
	json_object_object_add(v, "slowMs", json_object_new_int(9));
	json_object_array_add(json_object_object_get(v, "tags"), json_object_new_string("y"));
	ck_assert_text(channel_get("c"), "{\"slowMs\":5,\"tags\":[\"x\"]}");
	ck_assert_text(channel_get("d"), "NULL");

	channel_set("c", v);
	json_object_put(v);
	ck_assert_text(channel_get("c"), "{\"slowMs\":9,\"tags\":[\"x\",\"y\"]}");
	channel_set("c", NULL);
	ck_assert_text(channel_get("c"), "NULL");
}
END_TEST

/* ------------------------------------------------------------------------
 * Histories */

START_TEST(history_ids_never_reused)
{
	for (unsigned i = 1; i <= 5; i++)
		ck_assert_uint_eq(history_add("c", i, 3), i);
	ck_assert_text(history_get("c", NULL, NULL, 10), "3,4,5");
	ck_assert_uint_eq(history_add("c", 6, 0), 6);         /* keeps nothing */
	ck_assert_text(history_get("c", NULL, NULL, 10), "");
	ck_assert_uint_eq(history_add("c", 7, 3), 7);
	ck_assert_text(history_get("c", NULL, NULL, 10), "7");
	/* Another channel counts on its own. */
	ck_assert_uint_eq(history_add("d", 1, 3), 1);
	ck_assert_text(history_get("e", NULL, NULL, 10), "");
}
END_TEST

START_TEST(history_add_copies)
{
	struct res r = { 0 };
	json_object *msg = json_tokener_parse("{\"text\":\"hi\",\"id\":\"forged\"}");

	store_history_add(st, "c", msg, 10, json_cb, &r);
	json_object_object_add(msg, "text", json_object_new_string("changed"));
	await_once(&r.n);
	ck_assert_str_eq(json_object_to_json_string_ext(r.val, JSON_FLAGS),
	                 "{\"text\":\"hi\",\"id\":\"1\"}");
	ck_assert_str_eq(json_object_to_json_string_ext(msg, JSON_FLAGS),
	                 "{\"text\":\"changed\",\"id\":\"forged\"}");
	json_object_put(msg);
	res_clear(&r);
}
END_TEST

START_TEST(history_queries)
{
	history_add_n("c", 12);
	/* Neither: the newest, oldest first. */
	ck_assert_text(history_get("c", NULL, NULL, 3), "10,11,12");
	ck_assert_text(history_get("c", "", "", 3), "10,11,12");
	ck_assert_text(history_get("c", NULL, NULL, 100), "1,2,3,4,5,6,7,8,9,10,11,12");
	ck_assert_text(history_get("c", NULL, NULL, 0), "");
	/* After: the first newer ones (ids compare as numbers: 9 < 10). */
	ck_assert_text(history_get("c", "9", NULL, 2), "10,11");
	ck_assert_text(history_get("c", "2", NULL, 3), "3,4,5");
	ck_assert_text(history_get("c", "0", NULL, 2), "1,2");
	ck_assert_text(history_get("c", "10", NULL, 100), "11,12");
	ck_assert_text(history_get("c", "12", NULL, 5), "");
	ck_assert_text(history_get("c", "99999999999999999999999", NULL, 5), "");
	/* Before: the newest older ones. */
	ck_assert_text(history_get("c", NULL, "10", 3), "7,8,9");
	ck_assert_text(history_get("c", NULL, "3", 5), "1,2");
	ck_assert_text(history_get("c", NULL, "1", 5), "");
	ck_assert_text(history_get("c", NULL, "100", 2), "11,12");
	/* Both: between them, the first ones. */
	ck_assert_text(history_get("c", "3", "9", 2), "4,5");
	ck_assert_text(history_get("c", "3", "9", 100), "4,5,6,7,8");
	ck_assert_text(history_get("c", "9", "3", 100), "");
	/* Not ids. */
	ck_assert_text(history_get("c", "x", NULL, 5), "");
	ck_assert_text(history_get("c", NULL, "-1", 5), "");
	ck_assert_text(history_get("c", "1.5", NULL, 5), "");
}
END_TEST

START_TEST(history_queries_after_trim)
{
	for (unsigned i = 1; i <= 10; i++)
		ck_assert_uint_eq(history_add("c", i, 4), i);   /* keeps 7..10 */
	ck_assert_text(history_get("c", NULL, NULL, 100), "7,8,9,10");
	ck_assert_text(history_get("c", "2", NULL, 2), "7,8");
	ck_assert_text(history_get("c", "8", NULL, 100), "9,10");
	ck_assert_text(history_get("c", NULL, "8", 100), "7");
	ck_assert_text(history_get("c", NULL, "5", 100), "");
}
END_TEST

/* ------------------------------------------------------------------------
 * Lists shared with another program */

/* Appends the JSON text of an element (parsed here) to the list key. */
static void list_append(const char *key, const char *text, unsigned cap)
{
	struct res r = { 0 };
	json_object *msg = json_tokener_parse(text);

	ck_assert_ptr_nonnull(msg);
	store_list_append(st, key, msg, cap, done_cb, &r);
	json_object_put(msg);
	await_once(&r.n);
	ck_assert_int_eq(r.err, 0);
}

static char *list_tail(const char *key, unsigned limit)
{
	struct res r = { 0 };
	store_list_tail(st, key, limit, json_cb, &r);
	return text_of(&r);
}

START_TEST(list_tail_oldest_first_capped)
{
	ck_assert_text(list_tail("chat_history_r", 10), "[]");
	list_append("chat_history_r", "{\"message\":\"a\",\"n\":1}", 3);
	list_append("chat_history_r", "{\"message\":\"b\",\"n\":2}", 3);
	ck_assert_text(list_tail("chat_history_r", 10),
	               "[{\"message\":\"a\",\"n\":1},{\"message\":\"b\",\"n\":2}]");
	list_append("chat_history_r", "[3]", 3);
	list_append("chat_history_r", "\"four\"", 3);          /* any JSON value */
	ck_assert_text(list_tail("chat_history_r", 10), "[{\"message\":\"b\",\"n\":2},[3],\"four\"]");
	ck_assert_text(list_tail("chat_history_r", 2), "[[3],\"four\"]");
	ck_assert_text(list_tail("chat_history_r", 0), "[]");
	/* No id is added, and the stored value is a copy. */
	struct res r = { 0 };
	json_object *msg = json_tokener_parse("{\"id\":\"x\"}");
	store_list_append(st, "chat_history_r", msg, 3, done_cb, &r);
	json_object_object_add(msg, "id", json_object_new_string("changed"));
	json_object_put(msg);
	await_once(&r.n);
	ck_assert_text(list_tail("chat_history_r", 1), "[{\"id\":\"x\"}]");
	/* Other keys are other lists; a key is taken as it is. */
	ck_assert_text(list_tail("chat_history_R", 10), "[]");
	ck_assert_text(list_tail("chat_history_r ", 10), "[]");
	/* Cap 0 keeps nothing. */
	list_append("chat_history_r", "{}", 0);
	ck_assert_text(list_tail("chat_history_r", 10), "[]");
	list_append("chat_history_r", "{}", 5);
	ck_assert_text(list_tail("chat_history_r", 10), "[{}]");
}
END_TEST

START_TEST(list_apart_from_histories)
{
	ck_assert_uint_eq(history_add("c", 1, 10), 1);
	list_append("c", "{\"text\":\"in the list\"}", 10);
	ck_assert_text(history_get("c", NULL, NULL, 10), "1");
	ck_assert_text(list_tail("c", 10), "[{\"text\":\"in the list\"}]");
}
END_TEST

/* ------------------------------------------------------------------------
 * Cooldowns */

/* Starts two takes of (key, user) at once: the first must get it. Returns
 * the retry_after_ms of the second. */
static uint64_t cooldown_take_twice(const char *key, const char *user, uint64_t ms)
{
	struct res r[2] = { { 0 } };

	store_cooldown_take(st, key, user, ms, cooldown_cb, &r[0]);
	store_cooldown_take(st, key, user, ms, cooldown_cb, &r[1]);
	await_once(&r[1].n);
	ck_assert_int_eq(r[0].n, 1);
	ck_assert_int_eq(r[0].flag, 1);
	ck_assert_uint_eq(r[0].retry, 0);
	ck_assert_int_eq(r[1].flag, 0);
	return r[1].retry;
}

START_TEST(cooldown_take_and_expire)
{
	uint64_t retry = cooldown_take_twice("slow:c", "u", 100);

	ck_assert_uint_gt(retry, 0);
	ck_assert_uint_le(retry, 100);
	ck_assert_int_eq(cooldown_take("slow:c", "v", 100, NULL), 1);
	ck_assert_int_eq(cooldown_take("slow:d", "u", 100, NULL), 1);

	run(NULL, 0, 110);                           /* the timer frees them */
	ck_assert_int_eq(cooldown_take("slow:c", "u", 100, NULL), 1);
	/* Past its deadline but not yet freed by the timer: free as well. */
	usleep(110 * 1000);
	ck_assert_uint_gt(cooldown_take_twice("slow:c", "u", 100), 0);
}
END_TEST

/* ------------------------------------------------------------------------
 * Typing */

START_TEST(typing_expires_once)
{
	struct res r[2] = { { 0 } };
	json_object *one = json_tokener_parse("{\"n\":1}"), *two = json_tokener_parse("{\"n\":2}");

	store_typing_set(st, "/", "r", "u", one, 1000, flag_cb, &r[0]);
	store_typing_set(st, "/", "r", "u", two, 30, flag_cb, &r[1]);
	json_object_put(one);
	json_object_put(two);
	await_once(&r[1].n);
	ck_assert_int_eq(r[0].flag, 1);
	ck_assert_int_eq(r[1].flag, 0);
	run(&expired.n, 1, 1000);
	ck_assert_int_eq(expired.n, 1);
	ck_assert_str_eq(expired.log, "/|r|u={\"n\":2};");
	run(NULL, 0, 50);
	ck_assert_int_eq(expired.n, 1);
	ck_assert_int_eq(typing_set("/", "r", "u", NULL, 5000), 1);
}
END_TEST

START_TEST(typing_clear_no_expiry)
{
	struct res r[2] = { { 0 } };

	store_typing_set(st, "/", "r", "u", NULL, 100, flag_cb, &r[0]);
	store_typing_clear(st, "/", "r", "u", flag_cb, &r[1]);
	await_once(&r[1].n);
	ck_assert_int_eq(r[0].flag, 1);
	ck_assert_int_eq(r[1].flag, 1);
	ck_assert_int_eq(typing_clear("/", "r", "u"), 0);
	ck_assert_int_eq(typing_clear("/", "r", "v"), 0);
	run(NULL, 0, 150);
	ck_assert_int_eq(expired.n, 0);
}
END_TEST

START_TEST(typing_refresh_postpones)
{
	struct res r[2] = { { 0 } };
	uint64_t t0 = mono_ms();

	store_typing_set(st, "/", "r", "u", NULL, 100, flag_cb, &r[0]);
	store_typing_set(st, "/", "r", "u", NULL, 250, flag_cb, &r[1]);
	await_once(&r[1].n);
	ck_assert_int_eq(r[0].flag, 1);
	ck_assert_int_eq(r[1].flag, 0);
	run(&expired.n, 1, 1000);
	ck_assert_int_eq(expired.n, 1);
	ck_assert_uint_ge(expired.at - t0, 250);
	run(NULL, 0, 30);
	ck_assert_int_eq(expired.n, 1);
}
END_TEST

START_TEST(typing_refresh_shortens)
{
	ck_assert_int_eq(typing_set("/", "r", "u", NULL, 5000), 1);
	ck_assert_int_eq(typing_set("/", "r", "u", NULL, 30), 0);
	run(&expired.n, 1, 1000);
	ck_assert_int_eq(expired.n, 1);
}
END_TEST

START_TEST(typing_expiry_order)
{
	struct res r[4] = { { 0 } };

	/* Started together: the deadlines are 100 ms apart. */
	store_typing_set(st, "/", "r", "slow", NULL, 300, flag_cb, &r[0]);
	store_typing_set(st, "/", "r", "fast", NULL, 100, flag_cb, &r[1]);
	store_typing_set(st, "/", "r", "mid", NULL, 200, flag_cb, &r[2]);
	store_typing_set(st, "/chat", "r", "fast", NULL, 5000, flag_cb, &r[3]);
	run(&expired.n, 3, 1000);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(r[i].flag, 1);
	ck_assert_str_eq(expired.log, "/|r|fast=null;/|r|mid=null;/|r|slow=null;");
	ck_assert_int_eq(typing_clear("/chat", "r", "fast"), 1);
}
END_TEST

START_TEST(typing_info_copied)
{
	struct res r = { 0 };
	json_object *info = json_tokener_parse("{\"name\":\"U\"}");

	store_typing_set(st, "/", "r", "u", info, 20, flag_cb, &r);
	json_object_object_add(info, "name", json_object_new_string("changed"));
	json_object_put(info);
	await_once(&r.n);
	run(&expired.n, 1, 1000);
	ck_assert_str_eq(expired.log, "/|r|u={\"name\":\"U\"};");
}
END_TEST

/* An entry past its deadline that an operation finds before the timer
 * does: it is reported, before that operation completes. */
START_TEST(typing_expired_on_lookup)
{
	struct res r = { 0 };

	ck_assert_int_eq(typing_set("/", "r", "u", NULL, 20), 1);
	usleep(40 * 1000);
	store_typing_set(st, "/", "r", "u", NULL, 5000, flag_cb, &r);
	ck_assert_int_eq(flag_of(&r), 1);
	ck_assert_int_eq(expired.n, 1);
	ck_assert_int_lt(expired.seq, r.seq);

	usleep(10 * 1000);
	ck_assert_int_eq(typing_clear("/", "r", "u"), 1);
	run(NULL, 0, 30);
	ck_assert_int_eq(expired.n, 1);
}
END_TEST

/* ------------------------------------------------------------------------
 * Redis only: two instances, outages */

START_TEST(redis_instances_share_state)
{
	uint64_t retry;
	json_object *v = json_tokener_parse("{\"slowMs\":5}");

	st2 = redis_store("test");
	/* Presence: a user with a socket on each instance. */
	ck_assert_int_eq(user_add("/", "u", "U", "s1"), 1);
	swap();
	ck_assert_int_eq(user_online("/", "u"), 1);
	ck_assert_int_eq(user_add("/", "u", NULL, "s2"), 0);
	ck_assert_text(users_online("/"), "[{\"userId\":\"u\",\"name\":\"U\"}]");
	swap();
	ck_assert_int_eq(user_remove("/", "u", "s1"), 0);
	swap();
	ck_assert_int_eq(user_remove("/", "u", "s2"), 1);
	swap();
	ck_assert_int_eq(user_online("/", "u"), 0);

	/* Rooms. */
	ck_assert_int_eq(room_add("/", "r", "a", "A", "s1"), 1);
	swap();
	ck_assert_int_eq(room_add("/", "r", "b", "B", "s2"), 1);
	swap();
	ck_assert_text(room_members("/", "r"),
	               "[{\"userId\":\"a\",\"name\":\"A\"},{\"userId\":\"b\",\"name\":\"B\"}]");

	/* History: one counter. */
	ck_assert_uint_eq(history_add("c", 1, 10), 1);
	swap();
	ck_assert_uint_eq(history_add("c", 2, 10), 2);
	swap();
	ck_assert_uint_eq(history_add("c", 3, 10), 3);
	swap();
	ck_assert_text(history_get("c", "1", NULL, 10), "2,3");

	/* Cooldowns. */
	ck_assert_int_eq(cooldown_take("slow:c", "u", 5000, NULL), 1);
	swap();
	ck_assert_int_eq(cooldown_take("slow:c", "u", 5000, &retry), 0);
	ck_assert_uint_gt(retry, 0);
	ck_assert_uint_le(retry, 5000);

	/* Channels. */
	channel_set("c", v);
	json_object_put(v);
	swap();
	ck_assert_text(channel_get("c"), "{\"slowMs\":5}");

	/* Typing: set on one, cleared on the other. */
	ck_assert_int_eq(typing_set("/", "r", "u", NULL, 5000), 1);
	swap();
	ck_assert_int_eq(typing_set("/", "r", "u", NULL, 5000), 0);
	swap();
	ck_assert_int_eq(typing_clear("/", "r", "u"), 1);
	swap();
	ck_assert_int_eq(typing_clear("/", "r", "u"), 0);
}
END_TEST

/* Reports per user ("u<i>") and per instance. */
static int reported[20], reported_by[2];

static void on_expired_count(const char *nsp, const char *room, const char *user,
                             json_object *info, void *ud)
{
	int i = atoi(user + 1);

	(void)nsp;
	(void)room;
	(void)info;
	ck_assert_int_ge(i, 0);
	ck_assert_int_lt(i, 20);
	reported[i]++;
	reported_by[*(int *)ud]++;
	expired.n++;
}

static void on_reaped_count(const char *nsp, const char *room, const char *user,
                            const char *name, json_object *info, void *ud)
{
	(void)nsp;
	(void)room;
	(void)name;
	(void)info;
	on_expired_count(nsp, room, user, NULL, ud);
	reaped.n++;
}

START_TEST(redis_typing_expires_once_cluster_wide)
{
	static int which[2] = { 0, 1 };
	struct res r[20] = { { 0 } };
	char user[16];

	st2 = redis_store("test");
	st->on_typing_expired = st2->on_typing_expired = on_expired_count;
	st->on_typing_expired_ud = &which[0];
	st2->on_typing_expired_ud = &which[1];
	for (int i = 0; i < 20; i++) {
		snprintf(user, sizeof user, "u%d", i);
		store_typing_set(i % 2 ? st2 : st, "/", "r", user, NULL, 20 + 5 * (i % 4), flag_cb,
		                 &r[i]);
	}
	run(&expired.n, 20, 2000);
	run(NULL, 0, 150);
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(r[i].flag, 1);
		ck_assert_int_eq(reported[i], 1);
	}
	ck_assert_int_eq(reported_by[0] + reported_by[1], 20);
}
END_TEST

START_TEST(redis_prefixes_apart)
{
	st2 = redis_store("other");
	ck_assert_int_eq(user_add("/", "u", NULL, "s1"), 1);
	ck_assert_uint_eq(history_add("c", 1, 10), 1);
	swap();
	ck_assert_int_eq(user_online("/", "u"), 0);
	ck_assert_int_eq(user_add("/", "u", NULL, "s1"), 1);
	ck_assert_uint_eq(history_add("c", 1, 10), 1);
}
END_TEST

static int reply_cmp(const void *a, const void *b)
{
	return strcmp((*(redisReply *const *)a)->str, (*(redisReply *const *)b)->str);
}

/* The keys under the prefix, sorted, as "k1 k2 ...". */
static char *keys(void)
{
	redisReply *rep = server_command("KEYS test:*");
	char out[512] = "";

	ck_assert_ptr_nonnull(rep);
	ck_assert_int_eq(rep->type, REDIS_REPLY_ARRAY);
	if (rep->elements)
		qsort(rep->element, rep->elements, sizeof *rep->element, reply_cmp);
	for (size_t i = 0; i < rep->elements; i++)
		snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? " " : "",
		         rep->element[i]->str);
	freeReplyObject(rep);
	return strdup(out);
}

static long long pttl(const char *key)
{
	redisReply *rep = server_command("PTTL %s", key);
	long long v;

	ck_assert_ptr_nonnull(rep);
	v = rep->integer;
	freeReplyObject(rep);
	return v;
}

/* Every key has a TTL or an owner that removes it: presence, rooms, typing
 * and cooldowns leave nothing behind. */
START_TEST(redis_keys_owned)
{
	json_object *v = json_tokener_parse("{}");

	ck_assert_int_eq(user_add("/", "u", NULL, "s1"), 1);
	ck_assert_int_eq(room_add("/", "r", "u", NULL, "s1"), 1);
	ck_assert_int_eq(typing_set("/", "r", "u", "{\"a\":1}", 5000), 1);
	ck_assert_int_eq(typing_set("/", "r", "v", NULL, 20), 1);
	ck_assert_int_eq(cooldown_take("k", "u", 50, NULL), 1);
	ck_assert_uint_eq(history_add("c", 1, 10), 1);
	channel_set("c", v);
	json_object_put(v);
	ck_assert_text(keys(), "test:channel:1:c test:cooldown:1:k1:u test:history-id:1:c "
	               "test:history:1:c test:instance:i1 test:instances test:online-at:1:/ "
	               "test:online:1:/ test:room-at:1:/1:r test:room-sids:1:/1:r1:u "
	               "test:room:1:/1:r test:sids:1:/1:u test:typing test:typing-info");
	ck_assert_int_gt(pttl("test:cooldown:1:k1:u"), 0);

	ck_assert_int_eq(user_remove("/", "u", "s1"), 1);
	ck_assert_int_eq(room_remove("/", "r", "u", "s1"), 1);
	ck_assert_int_eq(typing_clear("/", "r", "u"), 1);
	run(&expired.n, 1, 1000);
	run(NULL, 0, 60);
	/* The instance's liveness record stays until it retires. */
	ck_assert_text(keys(), "test:channel:1:c test:history-id:1:c test:history:1:c "
	               "test:instances");
	retire();
	ck_assert_text(keys(), "test:channel:1:c test:history-id:1:c test:history:1:c");
	ck_assert_int_eq(reaped.n, 0);
}
END_TEST

/* A list is the key the application names, as another program writes
 * it: RPUSH'd JSON texts, read as they are (what is not standard JSON left
 * out), appended to in the same form, trimmed from the oldest. */
START_TEST(redis_list_is_the_key_itself)
{
	redisReply *rep = server_command("RPUSH %s %s %s %s %s %s %s %s %s %s", "chat_history_r", "12",
	                                  "tru", "\"a string\"",
	                                  "{\"message\": \"hi\", \"username\": \"py\", \"__createdtime__\": 1632140800000}",
	                                  "not JSON", "{\"a\": 1} trailing", "{\"a\": NaN}",
	                                  "  {\"u\": \"caf\\u00e9\", \"x\": 1e400, \"y\": 2.50}\n", "null");
	ck_assert_ptr_nonnull(rep);
	freeReplyObject(rep);
	ck_assert_text(list_tail("chat_history_r", 100),
	               "[12,\"a string\",{\"message\":\"hi\",\"username\":\"py\",\"__createdtime__\":1632140800000},"
	               "{\"u\":\"caf\u00e9\",\"x\":1e400,\"y\":2.50},null]");
	ck_assert_text(list_tail("chat_history_r", 2), "[{\"u\":\"caf\u00e9\",\"x\":1e400,\"y\":2.50},null]");
	list_append("chat_history_r", "{\"message\":\"new\",\"username\":\"u\",\"__createdtime__\":1}", 3);
	rep = server_command("LRANGE chat_history_r 0 -1");
	ck_assert_ptr_nonnull(rep);
	ck_assert_int_eq(rep->type, REDIS_REPLY_ARRAY);
	ck_assert_uint_eq(rep->elements, 3);
	ck_assert_str_eq(rep->element[1]->str, "null");
	ck_assert_str_eq(rep->element[0]->str, "  {\"u\": \"caf\\u00e9\", \"x\": 1e400, \"y\": 2.50}\n");
	ck_assert_str_eq(rep->element[2]->str,
	                 "{\"message\":\"new\",\"username\":\"u\",\"__createdtime__\":1}");
	freeReplyObject(rep);
	/* Nothing under the prefix. */
	ck_assert_text(keys(), "test:instances");
	/* A key of another type: unavailable, nothing changed. */
	rep = server_command("SET chat_history_s x");
	freeReplyObject(rep);
	struct res r = { 0 };
	json_object *msg = json_object_new_object();
	store_list_append(st, "chat_history_s", msg, 3, done_cb, &r);
	json_object_put(msg);
	await_once(&r.n);
	ck_assert_int_eq(r.err, STORE_EUNAVAIL);
	store_list_tail(st, "chat_history_s", 3, json_cb, &r);
	run(&r.n, 2, 1000);
	ck_assert_int_eq(r.err, STORE_EUNAVAIL);
	ck_assert_ptr_null(r.val);
}
END_TEST

/* How long the reaping tests take an instance for dead. */
#define REAP_MS 300

/* Runs the loop until n reports came (or 3 s), then REAP_MS more: no other
 * may follow. */
static void await_reaped(int n)
{
	run(&reaped.n, n, 3000);
	run(NULL, 0, REAP_MS);
	ck_assert_int_eq(reaped.n, n);
}

/* An instance dies (its store freed without retiring, as a process
 * killed): after reap_after, the other one removes its sids, reports each
 * user gone from a group once, and leaves the users it holds itself. */
START_TEST(redis_reap_dead_instance)
{
	json_object *info = json_tokener_parse("{\"event\":\"leave\",\"req\":{\"c\":1}}");
	struct res r = { 0 };

	store_free(st);
	st = redis_instance("test", REAP_MS);          /* i2: lives */
	st2 = redis_instance("test", REAP_MS);         /* i3: dies */
	st2->on_reaped = NULL;
	ck_assert_int_eq(user_add("/", "b", "B", "s4"), 1);
	ck_assert_int_eq(user_add("/", "c", "C", "s5"), 1);
	ck_assert_int_eq(room_add("/", "r", "b", "B", "s4"), 1);
	swap();
	ck_assert_int_eq(user_add("/", "a", "A", "s1"), 1);
	ck_assert_int_eq(user_add("/", "a", NULL, "s2"), 0);
	ck_assert_int_eq(user_add("/", "b", "B", "s3"), 0);
	ck_assert_int_eq(user_add("/chat", "a", "A", "s6"), 1);
	/* The info reported is the last sid's: here both have the same. */
	store_room_add(st, "/", "r", "a", "A", "s1", info, flag_cb, &r);
	ck_assert_int_eq(flag_of(&r), 1);
	memset(&r, 0, sizeof r);
	store_room_add(st, "/", "r", "a", "A", "s2", info, flag_cb, &r);
	ck_assert_int_eq(flag_of(&r), 0);
	ck_assert_int_eq(room_add("/", "r", "b", "B", "s3"), 0);
	ck_assert_int_eq(room_add("/", "r2", "b", "B", "s3"), 1);
	ck_assert_int_eq(user_add("/", "d", "D", "s7"), 1);
	ck_assert_int_eq(user_remove("/", "d", "s7"), 1);   /* gone before: not reported */
	json_object_put(info);
	store_free(st);                                   /* killed */
	st = st2;
	st2 = NULL;
	ck_assert_int_eq(reaped.n, 0);

	/* Reported in no particular order: one each, by the living instance. */
	await_reaped(4);
	ck_assert(strstr(reaped.log, "/|-|a|A=null;"));
	ck_assert(strstr(reaped.log, "/chat|-|a|A=null;"));
	ck_assert_msg(strstr(reaped.log, "/|r|a|A={\"event\":\"leave\",\"req\":{\"c\":1}};"),
	              "%s", reaped.log);
	ck_assert(strstr(reaped.log, "/|r2|b|B=null;"));
	ck_assert_text(users_online("/"),
	               "[{\"userId\":\"b\",\"name\":\"B\"},{\"userId\":\"c\",\"name\":\"C\"}]");
	ck_assert_text(users_online("/chat"), "[]");
	ck_assert_text(room_members("/", "r"), "[{\"userId\":\"b\",\"name\":\"B\"}]");
	ck_assert_text(room_members("/", "r2"), "[]");
	/* b goes with its last sid, as usual. */
	ck_assert_int_eq(user_remove("/", "b", "s4"), 1);
	ck_assert_int_eq(room_remove("/", "r", "b", "s4"), 1);
	ck_assert_text(keys(), "test:instance:i2 test:instances test:online-at:1:/ test:online:1:/ "
	               "test:sids:1:/1:c");
}
END_TEST

/* A socket that comes back with its id on another instance (connection
 * state recovery) keeps it: neither the first instance's removal of that
 * sid nor its reaping takes the user away. */
START_TEST(redis_same_sid_on_two_instances)
{
	store_free(st);
	st = redis_instance("test", REAP_MS);          /* i2: lives */
	st2 = redis_instance("test", REAP_MS);         /* i3: loses the socket, dies */
	st2->on_reaped = NULL;
	swap();
	ck_assert_int_eq(user_add("/", "u", "U", "s1"), 1);
	ck_assert_int_eq(room_add("/", "r", "u", "U", "s1"), 1);
	ck_assert_int_eq(user_add("/", "v", "V", "s2"), 1);
	swap();
	ck_assert_int_eq(user_add("/", "u", "U", "s1"), 0);       /* back on i2 */
	ck_assert_int_eq(room_add("/", "r", "u", "U", "s1"), 0);
	ck_assert_int_eq(user_add("/", "v", "V", "s2"), 0);
	swap();
	ck_assert_int_eq(user_remove("/", "v", "s2"), 0);         /* i3 lets v go */
	store_free(st);                                   /* i3 dies with u's entries */
	st = st2;
	st2 = NULL;
	run(NULL, 0, 4 * REAP_MS);
	ck_assert_int_eq(reaped.n, 0);
	ck_assert_text(users_online("/"),
	               "[{\"userId\":\"u\",\"name\":\"U\"},{\"userId\":\"v\",\"name\":\"V\"}]");
	ck_assert_text(room_members("/", "r"), "[{\"userId\":\"u\",\"name\":\"U\"}]");
	ck_assert_text(keys(), "test:instance:i2 test:instances test:online-at:1:/ "
	               "test:online:1:/ test:room-at:1:/1:r test:room-sids:1:/1:r1:u "
	               "test:room:1:/1:r test:sids:1:/1:u test:sids:1:/1:v");
	ck_assert_int_eq(user_remove("/", "u", "s1"), 1);
	ck_assert_int_eq(room_remove("/", "r", "u", "s1"), 1);
	ck_assert_int_eq(user_remove("/", "v", "s2"), 1);
}
END_TEST

/* Two instances reap a dead one with many sids (more than one script
 * takes at once): each user is reported once, by one of them. */
START_TEST(redis_reap_once_cluster_wide)
{
	static int which[2] = { 0, 1 };
	enum { USERS = 20, SIDS = 300 };
	struct store *dead;
	char user[16], sid[16];

	store_free(st);
	st = redis_instance("test", REAP_MS);
	st2 = redis_instance("test", REAP_MS);
	dead = redis_instance("test", REAP_MS);
	swap();                      /* st is the second */
	struct store *keep = st;
	st = dead;
	for (int i = 0; i < SIDS; i++) {
		snprintf(user, sizeof user, "u%d", i % USERS);
		snprintf(sid, sizeof sid, "s%d", i);
		user_add("/", user, NULL, sid);
		room_add("/", "r", user, NULL, sid);
	}
	st = keep;
	store_free(dead);
	memset(reported, 0, sizeof reported);
	memset(reported_by, 0, sizeof reported_by);
	st->on_reaped = st2->on_reaped = on_reaped_count;
	st->on_reaped_ud = &which[0];
	st2->on_reaped_ud = &which[1];
	run(&reaped.n, 2 * USERS, 3000);
	run(NULL, 0, REAP_MS);
	for (int i = 0; i < USERS; i++)
		ck_assert_int_eq(reported[i], 2);    /* presence, and the room */
	ck_assert_int_eq(reported_by[0] + reported_by[1], 2 * USERS);
	ck_assert_text(users_online("/"), "[]");
	ck_assert_text(room_members("/", "r"), "[]");
}
END_TEST

/* A clean exit: the sids the instance did not remove (a removal that
 * failed) are removed and reported by the instance itself, its record goes,
 * and the other instance has nothing left to reap. */
START_TEST(redis_retire_leaves_nothing)
{
	st2 = redis_instance("test", REAP_MS);
	swap();
	ck_assert_int_eq(user_add("/", "u", "U", "s1"), 1);
	ck_assert_int_eq(user_add("/", "v", "V", "s2"), 1);
	ck_assert_int_eq(user_remove("/", "v", "s2"), 1);
	retire();
	ck_assert_int_eq(reaped.n, 1);
	ck_assert_str_eq(reaped.log, "/|-|u|U=null;");
	store_free(st);
	st = NULL;
	swap();
	run(NULL, 0, 3 * REAP_MS);
	ck_assert_int_eq(reaped.n, 1);
	ck_assert_text(keys(), "test:instances");
	ck_assert_text(users_online("/"), "[]");
}
END_TEST

/* More left than one script takes: retiring completes once, after all. */
START_TEST(redis_retire_many)
{
	char user[16];

	for (int i = 0; i < 250; i++) {
		snprintf(user, sizeof user, "u%d", i);
		ck_assert_int_eq(user_add("/", user, NULL, user), 1);
		ck_assert_int_eq(room_add("/", "r", user, NULL, user), 1);
	}
	retire();
	ck_assert_int_eq(reaped.n, 500);
	ck_assert_text(keys(), "");
}
END_TEST

/* An instance whose record went (taken for dead while it was stopped, or
 * Redis emptied) finds out at its next refresh and asks for a resync. */
START_TEST(redis_resync_when_taken_for_dead)
{
	store_free(st);
	resyncs = 0;
	st = redis_instance("test", REAP_MS);
	ck_assert_int_eq(resyncs, 1);               /* the first connection */
	run(NULL, 0, REAP_MS);
	ck_assert_int_eq(resyncs, 1);
	redisReply *rep = server_command("ZREM test:instances i2");
	ck_assert_ptr_nonnull(rep);
	freeReplyObject(rep);
	run(&resyncs, 2, 2000);
	ck_assert_int_eq(resyncs, 2);
}
END_TEST

/* SCRIPT FLUSH (or a server that lost its scripts): EVAL takes over. */
START_TEST(redis_noscript)
{
	redisReply *rep = server_command("SCRIPT FLUSH");

	ck_assert_ptr_nonnull(rep);
	freeReplyObject(rep);
	ck_assert_int_eq(user_add("/", "u", NULL, "s1"), 1);
	ck_assert_uint_eq(history_add("c", 1, 10), 1);
	ck_assert_int_eq(user_add("/", "u", NULL, "s2"), 0);
	ck_assert_uint_eq(history_add("c", 2, 10), 2);
	ck_assert_text(history_get("c", NULL, NULL, 10), "1,2");
}
END_TEST

/* Starts one operation of each kind; each must fail, once, in order. */
static void all_unavailable(void)
{
	struct res r[11] = { { 0 } };
	struct history_query q = { NULL, NULL, 10 };
	json_object *o = json_object_new_object();

	store_user_add(st, "/", "u", "U", "s1", flag_cb, &r[0]);
	store_user_online(st, "/", "u", flag_cb, &r[1]);
	store_users_online(st, "/", json_cb, &r[2]);
	store_room_remove(st, "/", "r", "u", "s1", flag_cb, &r[3]);
	store_channel_get(st, "c", json_cb, &r[4]);
	store_channel_set(st, "c", o, done_cb, &r[5]);
	store_history_add(st, "c", o, 10, json_cb, &r[6]);
	store_history_get(st, "c", &q, json_cb, &r[7]);
	store_cooldown_take(st, "k", "u", 1000, cooldown_cb, &r[8]);
	store_typing_set(st, "/", "r", "u", o, 1000, flag_cb, &r[9]);
	store_users_count(st, "/", count_cb, &r[10]);
	json_object_put(o);
	for (int i = 0; i < 11; i++)
		ck_assert_int_eq(r[i].n, 0);
	run(&r[10].n, 1, 3000);
	run(NULL, 0, 10);
	for (int i = 0; i < 11; i++) {
		ck_assert_int_eq(r[i].n, 1);
		ck_assert_int_eq(r[i].err, STORE_EUNAVAIL);
		ck_assert_int_eq(r[i].flag, 0);
		ck_assert_ptr_null(r[i].val);
		ck_assert_uint_eq(r[i].retry, 0);
		ck_assert_int_eq(r[i].seq, seq - 10 + i);
	}
}

START_TEST(redis_not_reachable)
{
	char err[256], url[64];
	int port = free_port();

	ck_assert_ptr_null(store_redis_new(base, "rediss://x", "test", "i9", 0, err, sizeof err));
	ck_assert(strstr(err, "rediss://x") != NULL);

	store_free(st);
	snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
	st = store_redis_new(base, url, "test", "i9", 0, err, sizeof err);
	ck_assert_ptr_nonnull(st);
	all_unavailable();
	all_unavailable();
}
END_TEST

/* The server drops our connection with commands on it: they fail; the
 * store reconnects. */
START_TEST(redis_connection_lost)
{
	struct res r[3] = { { 0 } };

	ck_assert_int_eq(user_add("/", "u", NULL, "s1"), 1);
	store_user_add(st, "/", "u", NULL, "s2", flag_cb, &r[0]);
	store_user_online(st, "/", "u", flag_cb, &r[1]);
	store_typing_set(st, "/", "r", "u", NULL, 20, flag_cb, &r[2]);
	redisReply *rep = server_command("CLIENT KILL TYPE normal");
	ck_assert_ptr_nonnull(rep);
	freeReplyObject(rep);
	run(&r[2].n, 1, 1000);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(r[i].n, 1);
		ck_assert_int_eq(r[i].err, STORE_EUNAVAIL);
	}
	wait_ready(st);
	ck_assert_int_eq(user_add("/", "u", NULL, "s3"), 0);
	ck_assert_int_eq(typing_set("/", "r", "u", "{}", 20), 1);
	run(&expired.n, 1, 1000);
	ck_assert_str_eq(expired.log, "/|r|u={};");
}
END_TEST

/* Removals that fail while the connection is down are done again once it
 * is back, the last sids reported; the application is asked to add its
 * sids again. */
START_TEST(redis_removals_redone_after_outage)
{
	struct res r[3] = { { 0 } };

	ck_assert_int_eq(resyncs, 1);
	ck_assert_int_eq(user_add("/", "u", "U", "s1"), 1);
	ck_assert_int_eq(room_add("/", "r", "u", "U", "s1"), 1);
	ck_assert_int_eq(user_add("/", "v", "V", "s2"), 1);
	ck_assert_int_eq(user_add("/", "v", "V", "s3"), 0);
	redisReply *rep = server_command("CLIENT KILL TYPE normal");
	ck_assert_ptr_nonnull(rep);
	freeReplyObject(rep);
	store_user_remove(st, "/", "u", "s1", flag_cb, &r[0]);
	store_room_remove(st, "/", "r", "u", "s1", flag_cb, &r[1]);
	store_user_remove(st, "/", "v", "s2", flag_cb, &r[2]);
	run(&r[2].n, 1, 1000);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(r[i].err, STORE_EUNAVAIL);
	wait_ready(st);
	run(&reaped.n, 2, 1000);
	ck_assert_int_eq(reaped.n, 2);
	ck_assert(strstr(reaped.log, "/|-|u|U=null;"));
	ck_assert(strstr(reaped.log, "/|r|u|U=null;"));
	ck_assert_int_eq(resyncs, 2);
	ck_assert_text(users_online("/"), "[{\"userId\":\"v\",\"name\":\"V\"}]");
	ck_assert_int_eq(user_remove("/", "v", "s3"), 1);
}
END_TEST

/* The server stops: every operation fails, later, once; it comes back
 * (empty): the store reconnects, reloads its scripts, and polls again. */
START_TEST(redis_restart)
{
	ck_assert_int_eq(user_add("/", "u", NULL, "s1"), 1);
	ck_assert_uint_eq(history_add("c", 1, 10), 1);
	ck_assert_int_eq(server_stop(), 0);
	all_unavailable();
	all_unavailable();
	ck_assert_int_eq(server_start(), 0);

	wait_ready(st);
	ck_assert_int_eq(user_online("/", "u"), 0);
	ck_assert_int_eq(user_add("/", "u", NULL, "s1"), 1);
	ck_assert_uint_eq(history_add("c", 1, 10), 1);
	ck_assert_int_eq(typing_set("/", "r", "u", NULL, 20), 1);
	run(&expired.n, 1, 1000);
	ck_assert_str_eq(expired.log, "/|r|u=null;");
}
END_TEST

/* ------------------------------------------------------------------------
 * The timed store (store_timed_new) around either: the same tests, and
 * what its observer sees */

static uint64_t observed[STORE_NOPS], observed_err, observed_ns;

static void observe(enum store_op op, uint64_t ns, int err, void *ud)
{
	ck_assert_int_ge(op, 0);
	ck_assert_int_lt(op, STORE_NOPS);
	ck_assert_ptr_eq(ud, &observed);
	observed[op]++;
	observed_err += err != 0;
	observed_ns += ns;
}

static struct store *timed(struct store *inner)
{
	const char *name = inner->ops->name;
	struct store *t = store_timed_new(inner, observe, &observed);

	memset(observed, 0, sizeof observed);
	observed_err = observed_ns = 0;
	ck_assert_str_eq(t->ops->name, name);
	watch(t);
	return t;
}

static void setup_timed(void)
{
	setup();
	st = timed(st);
}

static void setup_timed_redis(void)
{
	setup_redis();
	st = timed(st);
}

START_TEST(timed_observes_each_once)
{
	struct res r = { 0 };

	ck_assert_int_eq(user_add("/", "u", "U", "s1"), 1);
	ck_assert_int_eq(user_add("/", "v", "V", "s2"), 1);
	ck_assert_uint_eq(users_count("/"), 2);
	ck_assert_text(history_get("c", NULL, NULL, 10), "");
	ck_assert_uint_eq(observed[STORE_OP_USER_ADD], 2);
	ck_assert_uint_eq(observed[STORE_OP_USERS_COUNT], 1);
	ck_assert_uint_eq(observed[STORE_OP_HISTORY_GET], 1);
	ck_assert_text(list_tail("l", 10), "[]");
	ck_assert_uint_eq(observed[STORE_OP_LIST_TAIL], 1);
	ck_assert_uint_eq(observed[STORE_OP_USER_REMOVE], 0);
	ck_assert_uint_eq(observed_err, 0);
	ck_assert_uint_gt(observed_ns, 0);
	/* Reported when it completes, before the caller's callback. */
	store_user_remove(st, "/", "u", "s1", flag_cb, &r);
	ck_assert_uint_eq(observed[STORE_OP_USER_REMOVE], 0);
	await_once(&r.n);
	ck_assert_uint_eq(observed[STORE_OP_USER_REMOVE], 1);
	for (int i = 0; i < STORE_NOPS; i++)
		ck_assert_ptr_nonnull(store_op_names[i]);
	ck_assert_str_eq(store_op_names[STORE_OP_TYPING_CLEAR], "typing_clear");
	ck_assert_str_eq(store_op_names[STORE_OP_LIST_APPEND], "list_append");
}
END_TEST

START_TEST(timed_observes_errors)
{
	char err[256], url[64];
	struct res r = { 0 };

	store_free(st);
	snprintf(url, sizeof url, "redis://127.0.0.1:%d", free_port());
	st = timed(store_redis_new(base, url, "test", "i9", 0, err, sizeof err));
	store_users_count(st, "/", count_cb, &r);
	run(&r.n, 1, 1000);
	ck_assert_int_eq(r.err, STORE_EUNAVAIL);
	ck_assert_uint_eq(observed[STORE_OP_USERS_COUNT], 1);
	ck_assert_uint_eq(observed_err, 1);
}
END_TEST

/* Resyncs come through it, and retire is timed as an operation. */
START_TEST(timed_passes_resync_and_retire)
{
	char err[256];
	struct res r = { 0 };

	ck_assert_msg(redis_port > 0 && server_up(), "no redis-server on 127.0.0.1:%d", redis_port);
	store_free(st);
	st = timed(store_redis_new(base, redis_url, "timed", "t1", 0, err, sizeof err));
	ck_assert_int_eq(resyncs, 0);
	run(&resyncs, 1, 3000);
	ck_assert_int_eq(resyncs, 1);   /* the first connection: add every sid */
	ck_assert_int_eq(user_add("/", "u", "U", "s1"), 1);
	ck_assert_int_eq(user_remove("/", "u", "s1"), 1);
	store_retire(st, done_cb, &r);
	await_once(&r.n);
	ck_assert_int_eq(r.err, 0);
	ck_assert_uint_eq(observed[STORE_OP_RETIRE], 1);
	ck_assert_str_eq(store_op_names[STORE_OP_RETIRE], "retire");
}
END_TEST

/* The tests of both stores, in four test cases, named by name[]. */
static void add_common(Suite *s, void (*fixture)(void), const char *const name[4])
{
	TCase *tc;
	int i = 0;

#define TC() do { \
	tc = tcase_create(name[i++]); \
	tcase_add_checked_fixture(tc, fixture, teardown); \
	tcase_set_timeout(tc, 20); \
	suite_add_tcase(s, tc); \
} while (0)

	TC();                        /* completions */
	tcase_add_test(tc, callbacks_deferred_in_order);
	tcase_add_test(tc, callback_starting_another);
	tcase_add_test(tc, free_drops_pending);
	tcase_add_test(tc, free_from_callback);
	tcase_add_test(tc, free_from_expiry);
	tcase_add_test(tc, retire_completes);

	TC();                        /* presence */
	tcase_add_test(tc, user_first_and_last);
	tcase_add_test(tc, user_online_by_id);
	tcase_add_test(tc, users_online_sorted_once);
	tcase_add_test(tc, users_counted);
	tcase_add_test(tc, rooms_counted_and_isolated);
	tcase_add_test(tc, members_last_active);
	tcase_add_test(tc, tricky_names_do_not_collide);

	TC();                        /* channels */
	tcase_add_test(tc, channel_round_trip_and_copy);
	tcase_add_test(tc, history_ids_never_reused);
	tcase_add_test(tc, history_add_copies);
	tcase_add_test(tc, history_queries);
	tcase_add_test(tc, history_queries_after_trim);
	tcase_add_test(tc, list_tail_oldest_first_capped);
	tcase_add_test(tc, list_apart_from_histories);

	TC();                        /* expiry */
	tcase_add_test(tc, cooldown_take_and_expire);
	tcase_add_test(tc, typing_expires_once);
	tcase_add_test(tc, typing_clear_no_expiry);
	tcase_add_test(tc, typing_refresh_postpones);
	tcase_add_test(tc, typing_refresh_shortens);
	tcase_add_test(tc, typing_expiry_order);
	tcase_add_test(tc, typing_info_copied);
	tcase_add_test(tc, typing_expired_on_lookup);
#undef TC
}

static Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc;

	static const char *const memory[4] = {
		"memory:completions", "memory:presence", "memory:channels", "memory:expiry"
	};
	static const char *const redis[4] = {
		"redis:completions", "redis:presence", "redis:channels", "redis:expiry"
	};

	static const char *const timed_memory[4] = {
		"timed-memory:completions", "timed-memory:presence", "timed-memory:channels",
		"timed-memory:expiry"
	};
	static const char *const timed_redis[4] = {
		"timed-redis:completions", "timed-redis:presence", "timed-redis:channels",
		"timed-redis:expiry"
	};

	add_common(s, setup, memory);
	add_common(s, setup_redis, redis);
	add_common(s, setup_timed, timed_memory);
	add_common(s, setup_timed_redis, timed_redis);

	tc = tcase_create("timed");
	tcase_add_checked_fixture(tc, setup_timed, teardown);
	tcase_add_test(tc, timed_observes_each_once);
	tcase_add_test(tc, timed_observes_errors);
	tcase_add_test(tc, timed_passes_resync_and_retire);
	suite_add_tcase(s, tc);

	tc = tcase_create("redis:cluster");
	tcase_add_checked_fixture(tc, setup_redis, teardown);
	tcase_add_test(tc, redis_instances_share_state);
	tcase_add_test(tc, redis_typing_expires_once_cluster_wide);
	tcase_add_test(tc, redis_prefixes_apart);
	tcase_add_test(tc, redis_keys_owned);
	tcase_add_test(tc, redis_list_is_the_key_itself);
	tcase_add_test(tc, redis_noscript);
	suite_add_tcase(s, tc);

	tc = tcase_create("redis:reaping");
	tcase_add_checked_fixture(tc, setup_redis, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, redis_reap_dead_instance);
	tcase_add_test(tc, redis_same_sid_on_two_instances);
	tcase_add_test(tc, redis_reap_once_cluster_wide);
	tcase_add_test(tc, redis_retire_leaves_nothing);
	tcase_add_test(tc, redis_retire_many);
	tcase_add_test(tc, redis_resync_when_taken_for_dead);
	suite_add_tcase(s, tc);

	/* Last: they stop and restart the server. */
	tc = tcase_create("redis:faults");
	tcase_add_checked_fixture(tc, setup_redis, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, redis_not_reachable);
	tcase_add_test(tc, redis_connection_lost);
	tcase_add_test(tc, redis_removals_redone_after_outage);
	tcase_add_test(tc, redis_restart);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(store_suite());
	int failed;

	signal(SIGPIPE, SIG_IGN);    /* a write to a connection Redis closed */
	/* A server restarted by a test (a forked child) becomes ours to reap. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	log_set_level(LL_WARN);
	redis_port = free_port();
	snprintf(redis_url, sizeof redis_url, "redis://127.0.0.1:%d", redis_port);
	if (redis_port <= 0 || server_start() < 0)
		fprintf(stderr, "test_store: cannot start redis-server: the Redis tests fail\n");
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (redis_port > 0)
		server_stop();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
