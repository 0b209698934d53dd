/* stats.c -- see stats.h.
 *
 * State: one static structure, sized at start-up (the vocabulary) or
 * fixed; the user tables grow and shrink with the users connected. A
 * reply is built in a buffer (or json-c objects) freed after it is queued.
 *
 * /stats asks the store how many users are online in the cluster
 * (users_count: one HLEN on Redis), and in the group of each role the
 * profile's stats.roles names (one more each). The request is suspended meanwhile;
 * requests that come while a count is under way wait for the same one.
 * A count that takes longer than COUNT_WAIT_MS is not waited for: those
 * requests are answered with "cluster": null and the reason, and the late
 * answer only refreshes nothing. The store's callback has no pointer to a
 * request (the waiters are a list here), so a request can go at any time. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <json-c/json.h>

#include "buf.h"
#include "cluster.h"
#include "dict.h"
#include "eio.h"
#include "http.h"
#include "log.h"
#include "sio.h"
#include "stats.h"
#include "tmpl.h"
#include "util.h"
#include "ws.h"

#define VOCAB_MAX 128            /* event names counted by name */
#define NAME_MAX_LEN 128         /* longer names are "other" */
#define ROLES_MAX 16             /* role names counted by name */
#define ROLE_MAX_LEN 64
#define WINDOW 10                /* seconds of the per-second ring */
#define TOP_N 10                 /* event names in /stats */
#define NSP_MAX 32               /* namespaces reported */
#define COUNT_WAIT_MS 1000       /* the longest /stats waits on the store */
#define OTHER "other"
#define NO_ROLE "none"

/* Upper bounds of the latency buckets, in nanoseconds (+Inf is implied). */
static const uint64_t bucket_ns[] = {
	100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 25000000, 50000000,
	100000000, 250000000, 500000000, 1000000000, 2500000000u,
};
#define NBUCKETS (sizeof bucket_ns / sizeof bucket_ns[0])

struct evcount {
	const char *name;            /* the profile's (or OTHER) */
	uint64_t in, out;
};

struct role {
	char *name;                  /* owned; slot 0 is OTHER (not owned) */
	uint64_t users;
};

struct latency {
	uint64_t buckets[NBUCKETS + 1];
	uint64_t count, sum_ns, errors;
};

/* The cluster's counts: its users, and those of each counted role. */
struct counts {
	uint64_t users;
	uint64_t roles[PROFILE_STATS_ROLES];
};

/* A /stats request waiting for the cluster's count. */
struct waiter {
	struct waiter *prev, *next;
	struct http_req *req;
	int listed;
	int answered;
	const char *why;             /* NULL: the counts are in n */
	struct counts n;
};

static struct {
	/* events */
	struct evcount ev[VOCAB_MAX + 1];   /* ev[0]: OTHER */
	size_t nev;
	struct dict evidx;                  /* name -> index (as a pointer) */
	int evidx_ready;
	uint64_t in_total, out_total;
	uint64_t ring_sec;                  /* the second ring[ring_sec % WINDOW] counts */
	uint64_t ring_in[WINDOW], ring_out[WINDOW];
	/* users */
	struct dict users;                  /* user -> sockets (as a pointer) */
	struct dict user_roles;             /* "<length of role>:" role user -> sockets */
	struct role roles[ROLES_MAX + 1];   /* roles[0]: OTHER */
	size_t nroles;
	int users_ready;
	/* the rest */
	uint64_t api[600];
	struct latency store_lat[STORE_NOPS];
	/* set by stats_start and stats_watch_store */
	struct event_base *base;
	const struct config *cfg;
	const struct profile *p;            /* NULL: the conformance profile */
	struct store *store;
	struct redis *redis;
	uint64_t start_ms;
	double start_wall;
	/* the cluster's count */
	struct waiter *waiting;
	int counting;                       /* counts asked and not answered */
	int count_err;                      /* one of them failed */
	struct counts count;                /* what they answered */
	struct event *count_timer;
	int stopped;
} S = { .nev = 1, .ev = { { OTHER, 0, 0 } }, .nroles = 1, .roles = { { NULL, 0 } } };

/* --- small helpers --- */

static int utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	while (p < end) {
		unsigned c = *p;
		size_t k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 :
		           (c & 0xf8) == 0xf0 ? 3 : 4;
		if (k == 4 || (size_t)(end - p) <= k || (k == 1 && c < 0xc2))
			return 0;
		for (size_t i = 1; i <= k; i++)
			if ((p[i] & 0xc0) != 0x80)
				return 0;
		p += k + 1;
	}
	return 1;
}

/* A name fit for a label: short, printable, valid UTF-8. */
static int label_ok(const char *s, size_t n, size_t max)
{
	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return utf8_valid(s, n);
}

static void *count_ptr(uintptr_t n) { return (void *)n; }
static uintptr_t ptr_count(const void *p) { return (uintptr_t)p; }

/* --- events --- */

/* Moves the ring to the current second, clearing the seconds passed. */
static void ring_advance(uint64_t now_s)
{
	if (now_s <= S.ring_sec)
		return;
	if (now_s - S.ring_sec >= WINDOW) {
		memset(S.ring_in, 0, sizeof S.ring_in);
		memset(S.ring_out, 0, sizeof S.ring_out);
	} else {
		for (uint64_t s = S.ring_sec + 1; s <= now_s; s++)
			S.ring_in[s % WINDOW] = S.ring_out[s % WINDOW] = 0;
	}
	S.ring_sec = now_s;
}

static size_t ev_index(const char *name)
{
	return S.evidx_ready ? (size_t)ptr_count(dict_get(&S.evidx, name)) : 0;
}

void stats_event_in(const char *name)
{
	ring_advance(mono_ms() / 1000);
	S.ring_in[S.ring_sec % WINDOW]++;
	S.in_total++;
	S.ev[name ? ev_index(name) : 0].in++;
}

void stats_events_out(const char *name, size_t len, size_t n)
{
	char key[NAME_MAX_LEN + 1];
	size_t i = 0;

	if (n == 0)
		return;
	ring_advance(mono_ms() / 1000);
	S.ring_out[S.ring_sec % WINDOW] += n;
	S.out_total += n;
	/* An escaped name is not one of the vocabulary's (see vocab_add). */
	if (len <= NAME_MAX_LEN && !memchr(name, '\\', len)) {
		memcpy(key, name, len);
		key[len] = '\0';
		i = ev_index(key);
	}
	S.ev[i].out += n;
}

static void vocab_add(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (!label_ok(name, n, NAME_MAX_LEN) || strchr(name, '\\') || strchr(name, '"') ||
	    dict_get(&S.evidx, name) || strcmp(name, OTHER) == 0)
		return;
	if (S.nev == VOCAB_MAX + 1) {
		log_debug("stats: more than %d event names: '%s' is counted as other", VOCAB_MAX, name);
		return;
	}
	if (dict_set(&S.evidx, name, count_ptr(S.nev)) < 0)
		return;
	S.ev[S.nev++] = (struct evcount){ name, 0, 0 };
}

/* An emit's event name, when it is a literal (no template in it). */
static void vocab_add_emits(const struct emit_spec *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *name = json_object_get_string(e[i].event);
		if (json_object_is_type(e[i].event, json_type_string) && !strchr(name, '{'))
			vocab_add(name);
	}
}

static void vocab_add_spec(const struct event_spec *s, int client)
{
	if (!s)
		return;
	if (client)
		vocab_add(s->name);
	vocab_add_emits(s->emits, s->nemits);
	vocab_add_emits(s->expired, s->nexpired);
}

static void vocab_build(const struct profile *p)
{
	dict_init(&S.evidx);
	S.evidx_ready = 1;
	if (!p)
		return;
	for (size_t i = 0; i < p->nevents; i++)
		vocab_add_spec(&p->events[i], 1);
	for (size_t i = 0; i < p->napi_events; i++)
		vocab_add_spec(&p->api_events[i], 0);   /* not sent by clients; what they emit is */
	vocab_add_spec(p->on_connect, 0);
	vocab_add_spec(p->on_disconnect, 0);
	vocab_add_spec(p->on_online, 0);
	vocab_add_spec(p->on_offline, 0);
	vocab_add_emits(&p->error, p->error.event ? 1 : 0);
}

/* --- users --- */

static void users_init(void)
{
	if (S.users_ready)
		return;
	dict_init(&S.users);
	dict_init(&S.user_roles);
	S.users_ready = 1;
}

/* The slot of role: found, or taken while there are free ones. */
static size_t role_slot(const char *role)
{
	for (size_t i = 1; i < S.nroles; i++)
		if (strcmp(S.roles[i].name, role) == 0)
			return i;
	if (S.nroles == ROLES_MAX + 1 || !label_ok(role, strlen(role), ROLE_MAX_LEN) ||
	    strcmp(role, OTHER) == 0)
		return 0;
	char *name = strdup(role);
	if (!name)
		return 0;
	S.roles[S.nroles] = (struct role){ name, 0 };
	return S.nroles++;
}

/* Adds d to the count of key in t; returns the count before. */
static uintptr_t bump(struct dict *t, const char *key, int d)
{
	uintptr_t n = ptr_count(dict_get(t, key));
	if (d < 0 && n <= 1)
		dict_del(t, key);
	else if (d > 0 && dict_set(t, key, count_ptr(n + 1)) < 0)
		return 1;                /* out of memory: counted as not new */
	else if (d < 0)
		dict_set(t, key, count_ptr(n - 1));   /* replaces: no allocation */
	return n;
}

static void user_change(const char *user, const char *role, int d)
{
	char key[512];
	if (!user)
		return;
	users_init();
	if (!role || !*role)
		role = NO_ROLE;
	bump(&S.users, user, d);
	if (snprintf(key, sizeof key, "%zu:%s%s", strlen(role), role, user) >= (int)sizeof key)
		return;                  /* a role that long: not counted by role */
	uintptr_t before = bump(&S.user_roles, key, d);
	size_t slot = role_slot(role);
	if (d > 0 && before == 0)
		S.roles[slot].users++;
	else if (d < 0 && before == 1 && S.roles[slot].users)
		S.roles[slot].users--;
}

void stats_user_on(const char *user, const char *role) { user_change(user, role, 1); }
void stats_user_off(const char *user, const char *role) { user_change(user, role, -1); }

void stats_api_request(unsigned status)
{
	if (status >= 100 && status < 600)
		S.api[status]++;
}

int stats_role_group(const char *role, char *buf, size_t len)
{
	int n = snprintf(buf, len, "role:%s", role);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* --- the store --- */

static void on_store_op(enum store_op op, uint64_t ns, int err, void *ud)
{
	struct latency *l = &S.store_lat[op];
	size_t b = 0;
	(void)ud;
	while (b < NBUCKETS && ns > bucket_ns[b])
		b++;
	l->buckets[b]++;
	l->count++;
	l->sum_ns += ns;
	l->errors += err != 0;
}

struct store *stats_watch_store(struct store *st, struct redis *redis)
{
	S.store = store_timed_new(st, on_store_op, NULL);
	S.redis = redis;
	return S.store;
}

/* --- what is read when asked --- */

struct nsp_stat {
	const char *name;
	size_t sockets, rooms;
};

struct snapshot {
	struct eio_stats eio;
	unsigned ws, http;
	struct nsp_stat nsp[NSP_MAX];
	size_t nnsp;
	size_t sockets, rooms;
	double uptime;
	double cpu;
	long long rss, vsz, fds, max_fds;
	int redis;                   /* -1: no Redis; 0 down; 1 up */
};

static void add_nsp(const char *path, const char *name, size_t sockets, size_t rooms, void *ud)
{
	struct snapshot *sn = ud;
	size_t i = 0;
	(void)path;
	sn->sockets += sockets;
	sn->rooms += rooms;
	while (i < sn->nnsp && strcmp(sn->nsp[i].name, name) != 0)
		i++;
	if (i == sn->nnsp) {
		if (sn->nnsp == NSP_MAX)
			return;
		sn->nsp[sn->nnsp++] = (struct nsp_stat){ name, 0, 0 };
	}
	sn->nsp[i].sockets += sockets;
	sn->nsp[i].rooms += rooms;
}

static long long count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	long long n = 0;
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1;                /* not the directory's own */
}

static void read_statm(long long *vsz, long long *rss)
{
	char buf[128];
	long long size = -1, res = -1;
	long page = sysconf(_SC_PAGESIZE);
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	*vsz = *rss = -1;
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	if (sscanf(buf, "%lld %lld", &size, &res) == 2) {
		*vsz = size * page;
		*rss = res * page;
	}
}

static void snapshot(struct snapshot *sn)
{
	struct rusage ru;
	struct rlimit rl;

	memset(sn, 0, sizeof *sn);
	eio_get_stats(&sn->eio);
	sn->ws = ws_count();
	sn->http = http_connections();
	sio_foreach_nsp(add_nsp, sn);
	sn->uptime = (double)(mono_ms() - S.start_ms) / 1000.0;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		sn->cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		          (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	read_statm(&sn->vsz, &sn->rss);
	sn->fds = count_fds();
	sn->max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
	              ? (long long)rl.rlim_cur : -1;
	sn->redis = S.redis ? redis_connected(S.redis) : -1;
	ring_advance(mono_ms() / 1000);
}

/* --- the profile's fields --- */

void stats_profile_fields(const char *path, json_object *doc)
{
	json_object *t = profile_document(S.p, path), *v = NULL;
	const char *what = NULL;
	if (!t)
		return;
	if (tmpl_eval(t, doc, &v, &what) != TMPL_OK || !json_object_is_type(v, json_type_object)) {
		log_warn("profile %s: http %s: cannot build %s", S.p->name, path, what ? what : "it");
		json_object_put(v);
		return;
	}
	json_object_object_foreach(v, k, f)
		json_object_object_add(doc, k, json_object_get(f));
	json_object_put(v);
}

/* --- GET /stats --- */

static json_object *jstr_or_null(const char *s)
{
	return s && *s ? json_object_new_string(s) : NULL;
}

static json_object *jint(uint64_t v) { return json_object_new_int64((int64_t)v); }

/* A number written with 3 decimals (json-c would write 17 digits). */
static json_object *jnum(double v)
{
	char text[64];
	snprintf(text, sizeof text, "%.3f", v);
	return json_object_new_double_s(v, text);
}

static json_object *top_events(int out)
{
	size_t idx[VOCAB_MAX + 1], n = 0;
	json_object *a = json_object_new_array();
	for (size_t i = 0; i < S.nev; i++)
		if (out ? S.ev[i].out : S.ev[i].in)
			idx[n++] = i;
	/* A few dozen names at most: a selection of the largest will do. */
	for (size_t k = 0; k < n && k < TOP_N; k++) {
		size_t best = k;
		for (size_t j = k + 1; j < n; j++) {
			uint64_t a1 = out ? S.ev[idx[j]].out : S.ev[idx[j]].in;
			uint64_t b1 = out ? S.ev[idx[best]].out : S.ev[idx[best]].in;
			if (a1 > b1)
				best = j;
		}
		size_t t = idx[k];
		idx[k] = idx[best];
		idx[best] = t;
		json_object *e = json_object_new_object();
		json_object_object_add(e, "event", json_object_new_string(S.ev[idx[k]].name));
		json_object_object_add(e, "count", jint(out ? S.ev[idx[k]].out : S.ev[idx[k]].in));
		json_object_array_add(a, e);
	}
	return a;
}

static json_object *stats_json(const struct snapshot *sn, const struct waiter *w)
{
	json_object *o = json_object_new_object(), *x, *y;
	uint64_t sum_in = 0, sum_out = 0;

	json_object_object_add(o, "version", json_object_new_string(PACKAGE_VERSION));
	json_object_object_add(o, "profile", json_object_new_string(S.cfg->profile));
	json_object_object_add(o, "instance", jstr_or_null(cluster_instance()));
	json_object_object_add(o, "pid", json_object_new_int((int)getpid()));
	json_object_object_add(o, "uptime_s", jnum(sn->uptime));

	x = json_object_new_object();
	json_object_object_add(x, "http", jint(sn->http));
	json_object_object_add(x, "websocket", jint(sn->ws));
	json_object_object_add(o, "connections", x);

	x = json_object_new_object();
	json_object_object_add(x, "total", jint(sn->eio.sessions));
	json_object_object_add(x, "polling", jint(sn->eio.polling));
	json_object_object_add(x, "websocket", jint(sn->eio.websocket));
	json_object_object_add(x, "opened_total", jint(sn->eio.opened));
	json_object_object_add(x, "waiting", jint(sn->eio.suspended));
	json_object_object_add(o, "sessions", x);

	x = json_object_new_object();
	y = json_object_new_object();
	json_object_object_add(x, "total", jint(sn->sockets));
	for (size_t i = 0; i < sn->nnsp; i++)
		json_object_object_add(y, sn->nsp[i].name, jint(sn->nsp[i].sockets));
	json_object_object_add(x, "by_namespace", y);
	json_object_object_add(o, "sockets", x);

	x = json_object_new_object();
	y = json_object_new_object();
	json_object_object_add(x, "total", jint(sn->rooms));
	for (size_t i = 0; i < sn->nnsp; i++)
		json_object_object_add(y, sn->nsp[i].name, jint(sn->nsp[i].rooms));
	json_object_object_add(x, "by_namespace", y);
	json_object_object_add(o, "rooms", x);

	x = json_object_new_object();
	y = json_object_new_object();
	json_object_object_add(x, "online", jint(S.users_ready ? dict_size(&S.users) : 0));
	json_object_object_add(x, "cluster", w && !w->why ? jint(w->n.users) : NULL);
	json_object_object_add(x, "cluster_error",
	                       w ? jstr_or_null(w->why) : json_object_new_string("no store"));
	for (size_t i = 1; i < S.nroles; i++)
		if (S.roles[i].users)
			json_object_object_add(y, S.roles[i].name, jint(S.roles[i].users));
	if (S.roles[0].users)
		json_object_object_add(y, OTHER, jint(S.roles[0].users));
	json_object_object_add(x, "by_role", y);
	y = NULL;
	if (w && !w->why) {
		y = json_object_new_object();
		for (size_t i = 0; S.p && i < S.p->nstats_roles; i++)
			json_object_object_add(y, S.p->stats_roles[i], jint(w->n.roles[i]));
	}
	json_object_object_add(x, "cluster_by_role", y);
	json_object_object_add(o, "users", x);

	x = json_object_new_object();
	json_object_object_add(x, "in_total", jint(S.in_total));
	json_object_object_add(x, "out_total", jint(S.out_total));
	json_object *ain = json_object_new_array(), *aout = json_object_new_array();
	for (uint64_t k = WINDOW; k-- > 0;) {
		size_t slot = (size_t)((S.ring_sec - k) % WINDOW);
		json_object_array_add(ain, jint(S.ring_in[slot]));
		json_object_array_add(aout, jint(S.ring_out[slot]));
		sum_in += S.ring_in[slot];
		sum_out += S.ring_out[slot];
	}
	y = json_object_new_object();
	json_object_object_add(y, "in", jnum((double)sum_in / WINDOW));
	json_object_object_add(y, "out", jnum((double)sum_out / WINDOW));
	json_object_object_add(y, "window_s", json_object_new_int(WINDOW));
	json_object_object_add(x, "per_second", y);
	y = json_object_new_object();
	json_object_object_add(y, "in", ain);
	json_object_object_add(y, "out", aout);
	json_object_object_add(x, "last_seconds", y);
	json_object_object_add(x, "top_in", top_events(0));
	json_object_object_add(x, "top_out", top_events(1));
	json_object_object_add(o, "events", x);

	x = json_object_new_object();
	json_object_object_add(x, "name", S.store ? json_object_new_string(S.store->ops->name) : NULL);
	json_object_object_add(x, "redis", sn->redis < 0 ? NULL
	                       : json_object_new_string(sn->redis ? "up" : "down"));
	json_object_object_add(o, "store", x);

	x = json_object_new_object();
	json_object_object_add(x, "enabled", json_object_new_boolean(cluster_enabled()));
	json_object_object_add(x, "up", json_object_new_boolean(cluster_enabled() && cluster_up()));
	json_object_object_add(o, "cluster", x);

	x = json_object_new_object();
	json_object_object_add(x, "cpu_seconds", jnum(sn->cpu));
	json_object_object_add(x, "resident_bytes", sn->rss < 0 ? NULL : json_object_new_int64(sn->rss));
	json_object_object_add(x, "open_fds", sn->fds < 0 ? NULL : json_object_new_int64(sn->fds));
	json_object_object_add(o, "process", x);
	return o;
}

static enum MHD_Result reply_stats(struct http_req *req, const struct waiter *w)
{
	struct snapshot sn;
	snapshot(&sn);
	json_object *o = stats_json(&sn, w);
	stats_profile_fields("/stats", o);
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	                                                     JSON_C_TO_STRING_NOSLASHESCAPE);
	enum MHD_Result r = http_reply_json(req->conn, MHD_HTTP_OK, text);
	json_object_put(o);
	return r;
}

static void waiter_unlist(struct waiter *w)
{
	if (!w->listed)
		return;
	if (w->prev)
		w->prev->next = w->next;
	else
		S.waiting = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->listed = 0;
}

static void waiter_free(struct http_req *req)
{
	struct waiter *w = req->ctx;
	waiter_unlist(w);
	free(w);
	req->ctx = NULL;
}

/* Resumes every waiting request: with the counts n, or why there are none. */
static void answer_waiters(const char *why, const struct counts *n)
{
	if (S.waiting)
		http_wakeup();
	while (S.waiting) {
		struct waiter *w = S.waiting;
		waiter_unlist(w);
		w->answered = 1;
		w->why = why;
		if (n)
			w->n = *n;
		MHD_resume_connection(w->req->conn);
	}
	if (S.count_timer)
		evtimer_del(S.count_timer);
}

/* One count of the batch count_users() asked; ud: -1 for the users, else
 * the index of the role. The last to come answers the waiters. */
static void on_users_counted(int err, uint64_t n, void *ud)
{
	intptr_t i = (intptr_t)ud;
	if (i < 0)
		S.count.users = n;
	else
		S.count.roles[i] = n;
	S.count_err |= err != 0;
	if (--S.counting == 0 && !S.stopped)
		answer_waiters(S.count_err ? "store unavailable" : NULL, &S.count);
}

static void on_count_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	answer_waiters("store timeout", NULL);
}

static void count_users(void)
{
	if (!S.counting) {
		size_t n = S.p ? S.p->nstats_roles : 0;
		char group[STATS_GROUP_MAX];
		S.counting = 1 + (int)n;
		S.count_err = 0;
		memset(&S.count, 0, sizeof S.count);
		store_users_count(S.store, "/", on_users_counted, (void *)(intptr_t)-1);
		for (size_t i = 0; i < n; i++) {
			(void)stats_role_group(S.p->stats_roles[i], group, sizeof group);   /* they fit */
			store_users_count(S.store, group, on_users_counted, (void *)(intptr_t)i);
		}
	}
	if (S.count_timer && !evtimer_pending(S.count_timer, NULL)) {
		struct timeval tv = { COUNT_WAIT_MS / 1000, (COUNT_WAIT_MS % 1000) * 1000 };
		evtimer_add(S.count_timer, &tv);
	}
}

static enum MHD_Result not_found(struct http_req *req)
{
	return http_reply_json(req->conn, MHD_HTTP_NOT_FOUND,
	                       "{\"error\":\"not_found\",\"message\":\"no such resource\"}");
}

static int get_or_head(const char *method)
{
	return strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

static enum MHD_Result method_not_allowed(struct http_req *req)
{
	return http_reply_json(req->conn, MHD_HTTP_METHOD_NOT_ALLOWED,
	                       "{\"error\":\"method_not_allowed\",\"message\":\"GET or HEAD\"}");
}

static enum MHD_Result on_stats(struct http_req *req, const char *url, const char *method,
                                const char *upload, size_t *upload_size, void *ud)
{
	struct waiter *w = req->ctx;
	(void)upload;
	(void)ud;
	if (*upload_size) {
		*upload_size = 0;        /* a body: not wanted, not kept */
		return MHD_YES;
	}
	if (strcmp(url, "/stats") != 0)
		return not_found(req);
	if (!get_or_head(method))
		return method_not_allowed(req);
	if (w)
		return w->answered ? reply_stats(req, w) : MHD_YES;
	if (!S.store || S.stopped)
		return reply_stats(req, NULL);
	if (!(w = calloc(1, sizeof *w)))
		return MHD_NO;
	w->req = req;
	w->next = S.waiting;
	if (S.waiting)
		S.waiting->prev = w;
	S.waiting = w;
	w->listed = 1;
	req->ctx = w;
	req->ctx_free = waiter_free;
	MHD_suspend_connection(req->conn);
	count_users();
	return MHD_YES;
}

/* --- GET /metrics --- */

/* Appends s as a label value: \, " and newline escaped. */
static void label(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			buf_puts(b, "\\\\");
		else if (*s == '"')
			buf_puts(b, "\\\"");
		else if (*s == '\n')
			buf_puts(b, "\\n");
		else
			buf_putc(b, *s);
	}
}

static void family(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_u(struct buf *b, const char *name, uint64_t v)
{
	buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static void sample_d(struct buf *b, const char *name, double v)
{
	buf_printf(b, "%s %.6f\n", name, v);
}

/* name{key="value"} v */
static void sample_l(struct buf *b, const char *name, const char *key, const char *value,
                     uint64_t v)
{
	buf_printf(b, "%s{%s=\"", name, key);
	label(b, value);
	buf_printf(b, "\"} %llu\n", (unsigned long long)v);
}

static void gauge(struct buf *b, const char *name, const char *help, uint64_t v)
{
	family(b, name, "gauge", help);
	sample_u(b, name, v);
}

static void metrics_text(struct buf *b, const struct snapshot *sn)
{
	family(b, "aeolus_info", "gauge", "The daemon's version, profile, store and instance id.");
	buf_puts(b, "aeolus_info{version=\"");
	label(b, PACKAGE_VERSION);
	buf_puts(b, "\",profile=\"");
	label(b, S.cfg->profile);
	buf_puts(b, "\",store=\"");
	label(b, S.store ? S.store->ops->name : "none");
	buf_puts(b, "\",instance=\"");
	label(b, cluster_instance());
	buf_puts(b, "\"} 1\n");
	family(b, "aeolus_uptime_seconds", "gauge", "Seconds since this process started serving.");
	sample_d(b, "aeolus_uptime_seconds", sn->uptime);

	gauge(b, "aeolus_http_connections", "Open HTTP connections (suspended and upgraded ones too).",
	      sn->http);
	gauge(b, "aeolus_websocket_connections", "Open WebSocket connections.", sn->ws);
	family(b, "aeolus_connections", "gauge", "Engine.IO sessions by their current transport.");
	sample_l(b, "aeolus_connections", "transport", "polling", sn->eio.polling);
	sample_l(b, "aeolus_connections", "transport", "websocket", sn->eio.websocket);
	gauge(b, "aeolus_sessions", "Engine.IO sessions.", sn->eio.sessions);
	family(b, "aeolus_sessions_opened_total", "counter", "Engine.IO sessions opened.");
	sample_u(b, "aeolus_sessions_opened_total", sn->eio.opened);
	family(b, "aeolus_engineio_messages_in_total", "counter",
	       "Engine.IO message packets received from clients.");
	sample_u(b, "aeolus_engineio_messages_in_total", sn->eio.msgs_in);
	family(b, "aeolus_engineio_messages_out_total", "counter",
	       "Engine.IO message packets queued for clients.");
	sample_u(b, "aeolus_engineio_messages_out_total", sn->eio.msgs_out);

	family(b, "aeolus_sockets", "gauge", "Connected Socket.IO sockets by namespace.");
	for (size_t i = 0; i < sn->nnsp; i++)
		sample_l(b, "aeolus_sockets", "namespace", sn->nsp[i].name, sn->nsp[i].sockets);
	gauge(b, "aeolus_rooms", "Socket.IO rooms with a socket of this instance in them.", sn->rooms);
	gauge(b, "aeolus_users", "Users with a socket on this instance.",
	      S.users_ready ? dict_size(&S.users) : 0);
	family(b, "aeolus_users_by_role", "gauge", "Users with a socket on this instance, by role.");
	for (size_t i = 0; i < S.nroles; i++)
		if (i || S.roles[0].users)
			sample_l(b, "aeolus_users_by_role", "role", i ? S.roles[i].name : OTHER,
			         S.roles[i].users);

	family(b, "aeolus_events_in_total", "counter",
	       "Events received from clients, by name (the profile's, or other).");
	for (size_t i = 0; i < S.nev; i++)
		sample_l(b, "aeolus_events_in_total", "event", S.ev[i].name, S.ev[i].in);
	family(b, "aeolus_events_out_total", "counter",
	       "Events sent to clients, one per recipient socket, by name (the profile's, or other).");
	for (size_t i = 0; i < S.nev; i++)
		sample_l(b, "aeolus_events_out_total", "event", S.ev[i].name, S.ev[i].out);

	family(b, "aeolus_api_requests_total", "counter", "HTTP API requests answered, by status.");
	for (unsigned st = 100; st < 600; st++)
		if (S.api[st])
			buf_printf(b, "aeolus_api_requests_total{status=\"%u\"} %llu\n", st,
			           (unsigned long long)S.api[st]);

	family(b, "aeolus_store_latency_seconds", "histogram",
	       "Time from the start of a store operation to its completion, by operation.");
	for (int op = 0; op < STORE_NOPS; op++) {
		const struct latency *l = &S.store_lat[op];
		uint64_t cum = 0;
		if (!l->count)
			continue;
		for (size_t k = 0; k <= NBUCKETS; k++) {
			cum += l->buckets[k];
			buf_printf(b, "aeolus_store_latency_seconds_bucket{op=\"%s\",le=\"", store_op_names[op]);
			if (k < NBUCKETS)
				buf_printf(b, "%g", (double)bucket_ns[k] / 1e9);
			else
				buf_puts(b, "+Inf");
			buf_printf(b, "\"} %llu\n", (unsigned long long)cum);
		}
		buf_printf(b, "aeolus_store_latency_seconds_sum{op=\"%s\"} %.9f\n", store_op_names[op],
		           (double)l->sum_ns / 1e9);
		buf_printf(b, "aeolus_store_latency_seconds_count{op=\"%s\"} %llu\n", store_op_names[op],
		           (unsigned long long)l->count);
	}
	family(b, "aeolus_store_errors_total", "counter",
	       "Store operations that failed (the backend was unreachable), by operation.");
	for (int op = 0; op < STORE_NOPS; op++)
		if (S.store_lat[op].count)
			sample_l(b, "aeolus_store_errors_total", "op", store_op_names[op],
			         S.store_lat[op].errors);
	family(b, "aeolus_redis_up", "gauge",
	       "1 while the connection to Redis is up, 0 while it is down (no sample: no Redis).");
	if (sn->redis >= 0)
		sample_u(b, "aeolus_redis_up", (uint64_t)sn->redis);

	family(b, "aeolus_process_cpu_seconds_total", "counter", "User and system CPU time, in seconds.");
	sample_d(b, "aeolus_process_cpu_seconds_total", sn->cpu);
	if (sn->rss >= 0) {
		gauge(b, "aeolus_process_resident_memory_bytes", "Resident memory size, in bytes.",
		      (uint64_t)sn->rss);
		gauge(b, "aeolus_process_virtual_memory_bytes", "Virtual memory size, in bytes.",
		      (uint64_t)sn->vsz);
	}
	if (sn->fds >= 0)
		gauge(b, "aeolus_process_open_fds", "Open file descriptors.", (uint64_t)sn->fds);
	if (sn->max_fds >= 0)
		gauge(b, "aeolus_process_max_fds", "The limit of open file descriptors.",
		      (uint64_t)sn->max_fds);
	family(b, "aeolus_process_start_time_seconds", "gauge",
	       "When this process started serving, in seconds since the epoch.");
	sample_d(b, "aeolus_process_start_time_seconds", S.start_wall);
}

static enum MHD_Result on_metrics(struct http_req *req, const char *url, const char *method,
                                  const char *upload, size_t *upload_size, void *ud)
{
	struct snapshot sn;
	struct buf b;
	(void)upload;
	(void)ud;
	if (*upload_size) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/metrics") != 0)
		return not_found(req);
	if (!get_or_head(method))
		return method_not_allowed(req);
	snapshot(&sn);
	buf_init(&b, 0);
	metrics_text(&b, &sn);
	enum MHD_Result r = b.p ? http_reply(req->conn, MHD_HTTP_OK,
	                                     "text/plain; version=0.0.4; charset=utf-8", b.p, b.len)
	                        : MHD_NO;
	buf_free(&b);
	return r;
}

/* --- start and stop --- */

int stats_start(struct event_base *base, const struct config *cfg, const struct profile *p)
{
	S.base = base;
	S.cfg = cfg;
	S.p = p;
	S.start_ms = mono_ms();
	S.start_wall = (double)wall_ms() / 1000.0;
	S.ring_sec = S.start_ms / 1000;
	vocab_build(p);
	users_init();
	S.count_timer = evtimer_new(base, on_count_timeout, NULL);
	if (!S.count_timer || http_route("/stats", on_stats, NULL) < 0 ||
	    http_route("/metrics", on_metrics, NULL) < 0)
		return -1;
	return 0;
}

void stats_stop(void)
{
	answer_waiters("shutting down", NULL);
	S.stopped = 1;
	if (S.count_timer)
		event_free(S.count_timer);
	S.count_timer = NULL;
}
