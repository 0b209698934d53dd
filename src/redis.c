/* redis.c -- see redis.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "log.h"
#include "redis.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct redis {
	struct event_base *base;
	char *what;                  /* "auth", "store": for the log */
	char *host;                  /* NULL for a unix socket */
	int port;
	char *path;
	char *user, *password;
	int db;
	redisAsyncContext *ac;
	int connected;
	unsigned backoff_ms;
	struct event *retry;
	int warned;                  /* logged the outage once */
	redis_state_cb on_state;     /* may be NULL */
	void *on_state_ud;
	redis_reply_cb on_message;   /* the subscription's, or NULL */
	void *on_message_ud;
};

static void connect_now(struct redis *r);

static char *dup_range(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static int parse_url(struct redis *r, const char *url)
{
	const char *p;
	r->port = 6379;
	if (strncmp(url, "unix://", 7) == 0) {
		const char *q = strchr(url + 7, '?');
		r->path = q ? dup_range(url + 7, (size_t)(q - url - 7)) : strdup(url + 7);
		if (q && strncmp(q, "?db=", 4) == 0)
			r->db = atoi(q + 4);
		return r->path && *r->path ? 0 : -1;
	}
	if (strncmp(url, "redis://", 8) == 0)
		p = url + 8;
	else if (strstr(url, "://"))
		return -1;               /* rediss:// and others: TLS is not built in */
	else
		p = url;
	const char *at = strrchr(p, '@');
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (colon) {
			if (colon > p)
				r->user = dup_range(p, (size_t)(colon - p));
			r->password = dup_range(colon + 1, (size_t)(at - colon - 1));
		} else {
			r->password = dup_range(p, (size_t)(at - p));
		}
		p = at + 1;
	}
	const char *slash = strchr(p, '/');
	const char *hend = slash ? slash : p + strlen(p);
	const char *colon = memchr(p, ':', (size_t)(hend - p));
	if (colon) {
		r->host = dup_range(p, (size_t)(colon - p));
		r->port = atoi(colon + 1);
	} else {
		r->host = dup_range(p, (size_t)(hend - p));
	}
	if (slash && slash[1])
		r->db = atoi(slash + 1);
	if (!r->host || !*r->host || r->port <= 0 || r->port > 65535 || r->db < 0)
		return -1;
	return 0;
}

static void schedule_retry(struct redis *r)
{
	struct timeval tv = { r->backoff_ms / 1000, (r->backoff_ms % 1000) * 1000 };
	evtimer_add(r->retry, &tv);
	r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	connect_now(arg);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct redis *r = ac->data;
	if (status != REDIS_OK) {
		if (!r->warned)
			log_warn("redis (%s): cannot connect: %s; retrying", r->what, ac->errstr);
		r->warned = 1;
		r->ac = NULL;            /* hiredis frees the context after this */
		schedule_retry(r);
		return;
	}
	r->connected = 1;
	r->backoff_ms = BACKOFF_MIN_MS;
	log_info("redis (%s): connected", r->what);
	r->warned = 0;
	if (r->on_state)
		r->on_state(1, r->on_state_ud);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct redis *r = ac->data;
	if (!r)                      /* redis_free() let go of the context */
		return;
	r->connected = 0;
	r->ac = NULL;
	if (!r->retry)               /* being freed */
		return;
	log_warn("redis (%s): connection lost%s%s; reconnecting", r->what,
	         status != REDIS_OK ? ": " : "", status != REDIS_OK ? ac->errstr : "");
	r->warned = 1;
	schedule_retry(r);
	if (r->on_state)
		r->on_state(0, r->on_state_ud);
}

static void connect_now(struct redis *r)
{
	redisAsyncContext *ac = r->path ? redisAsyncConnectUnix(r->path)
	                                : redisAsyncConnect(r->host, r->port);
	if (!ac || ac->err) {
		if (!r->warned)
			log_warn("redis (%s): %s", r->what, ac ? ac->errstr : "out of memory");
		r->warned = 1;
		if (ac)
			redisAsyncFree(ac);
		schedule_retry(r);
		return;
	}
	ac->data = r;
	r->ac = ac;
	redisLibeventAttach(ac, r->base);
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	/* Queued before the connection completes: they go first. */
	if (r->password) {
		if (r->user)
			redisAsyncCommand(ac, NULL, NULL, "AUTH %s %s", r->user, r->password);
		else
			redisAsyncCommand(ac, NULL, NULL, "AUTH %s", r->password);
	}
	if (r->db)
		redisAsyncCommand(ac, NULL, NULL, "SELECT %d", r->db);
}

struct redis *redis_new(struct event_base *base, const char *url, const char *what,
                        char *err, size_t errlen)
{
	struct redis *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->base = base;
	r->what = strdup(what);
	r->backoff_ms = BACKOFF_MIN_MS;
	if (parse_url(r, url) < 0) {
		snprintf(err, errlen, "not a Redis URL: '%s' (redis://[:password@]host[:port][/db] "
		         "or unix:///path)", url);
		redis_free(r);
		return NULL;
	}
	r->retry = evtimer_new(base, on_retry, r);
	if (!r->retry) {
		redis_free(r);
		return NULL;
	}
	connect_now(r);
	return r;
}

int redis_url_check(const char *url, char *err, size_t errlen)
{
	struct redis r = { 0 };
	int rc = parse_url(&r, url);
	if (rc < 0)
		snprintf(err, errlen, "not a Redis URL: '%s' (redis://[:password@]host[:port][/db] "
		         "or unix:///path)", url);
	free(r.host);
	free(r.path);
	free(r.user);
	free(r.password);
	return rc;
}

void redis_free(struct redis *r)
{
	if (!r)
		return;
	if (r->retry) {
		event_free(r->retry);
		r->retry = NULL;
	}
	if (r->ac) {
		/* Pending callbacks get NULL: now, or, from inside a callback,
		 * when it returns; the disconnect callback must not find r. */
		r->ac->data = NULL;
		redisAsyncFree(r->ac);
	}
	free(r->what);
	free(r->host);
	free(r->path);
	free(r->user);
	free(r->password);
	free(r);
}

int redis_connected(const struct redis *r)
{
	return r && r->connected;
}

void redis_on_state(struct redis *r, redis_state_cb cb, void *ud)
{
	r->on_state = cb;
	r->on_state_ud = ud;
}

struct call {
	redis_reply_cb cb;
	void *ud;
};

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct call *c = privdata;
	redisReply *rep = reply;

	(void)ac;
	if (c->cb)
		c->cb(rep, c->ud);
	free(c);
}

/* A pending command's callback: NULL when not connected or out of memory. */
static struct call *call_new(struct redis *r, redis_reply_cb cb, void *ud)
{
	struct call *c = r->connected ? malloc(sizeof *c) : NULL;
	if (c) {
		c->cb = cb;
		c->ud = ud;
	}
	return c;
}

int redis_command(struct redis *r, redis_reply_cb cb, void *ud, const char *fmt, ...)
{
	va_list ap;
	struct call *c = call_new(r, cb, ud);
	if (!c)
		return -1;
	va_start(ap, fmt);
	int rc = redisvAsyncCommand(r->ac, on_reply, c, fmt, ap);
	va_end(ap);
	if (rc != REDIS_OK) {
		free(c);
		return -1;
	}
	return 0;
}

int redis_command_argv(struct redis *r, redis_reply_cb cb, void *ud, int argc,
                       const char **argv, const size_t *argvlen)
{
	struct call *c = call_new(r, cb, ud);
	if (!c)
		return -1;
	if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, argvlen) != REDIS_OK) {
		free(c);
		return -1;
	}
	return 0;
}

/* The subscription's callback stays with the connection (hiredis calls it
 * for every message), so it is not a struct call freed after one reply. */
static void on_message(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct redis *r = ac->data;
	(void)privdata;
	if (r && r->on_message && reply)
		r->on_message(reply, r->on_message_ud);
}

static int subscribe(struct redis *r, const char *cmd, redis_reply_cb cb, void *ud, int argc,
                     const char **argv)
{
	if (!r->connected || argc < 1 || argc > REDIS_MAX_SUBSCRIBE)
		return -1;
	const char **v = malloc((size_t)(argc + 1) * sizeof *v);
	if (!v)
		return -1;
	r->on_message = cb;
	r->on_message_ud = ud;
	v[0] = cmd;
	for (int i = 0; i < argc; i++)
		v[i + 1] = argv[i];
	int rc = redisAsyncCommandArgv(r->ac, on_message, NULL, argc + 1, v, NULL) == REDIS_OK ? 0 : -1;
	free(v);
	return rc;
}

int redis_subscribe(struct redis *r, redis_reply_cb cb, void *ud, int argc,
                    const char **argv)
{
	return subscribe(r, "SUBSCRIBE", cb, ud, argc, argv);
}

int redis_psubscribe(struct redis *r, redis_reply_cb cb, void *ud, int argc,
                     const char **argv)
{
	return subscribe(r, "PSUBSCRIBE", cb, ud, argc, argv);
}
