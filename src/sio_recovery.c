/* sio_recovery.c -- connection state recovery: see sio_int.h.
 *
 * The log: each namespace keeps the event broadcasts this instance
 * delivered (its own and those from the bus) for the window, at most
 * LOG_MAX, with their offsets and targets. The offset is appended to the
 * packet once, before it is sent to anyone, so every recipient on every
 * instance gets the same bytes.
 *
 * Saving: a socket that goes away for a reason other than asking (or the
 * server disconnecting it) is saved under its pid -- {sid, nsp, inst,
 * rooms, app} -- in Redis (P:csr:PID, PX window) or, without Redis, in
 * this process.
 *
 * Recovering, when a CONNECT carries {pid, offset}: the saved session is
 * taken (at most once). Saved here, the log here answers at accept time.
 * Saved by another instance, the socket joins its rooms at once (packets
 * for it are kept from then on: rec_buffer), and asks that instance ('R')
 * for what it logged after the offset; the answer ('S') plus what was kept
 * meanwhile, without the packets in both, is the replay. The namespace's
 * on_connect (authentication) runs once the missed packets are known. If
 * anything is missing -- no saved session, an offset not in the log, no
 * answer within REC_FETCH_MS -- the connection goes on as a new one, with
 * a new id and pid, as Socket.IO does. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "log.h"
#include "sio_int.h"

#define LOG_MAX 10000
#define BUF_MAX 10000
#define REC_FETCH_MS 2000

struct rec_entry {
	char off[REC_OFF_LEN];
	uint64_t t;                  /* mono_ms() when logged */
	char **rooms;
	size_t nrooms;
	char **except;
	size_t nexcept;
	char *skip;                  /* a socket id, or NULL */
	struct sio_out *o;           /* the log's references */
};

/* A session saved in this process (no Redis). */
struct saved {
	char pid[ID_LEN + 1];
	json_object *j;
	uint64_t expires;
	int taken;
	struct saved *next;          /* expiry order */
};

struct recovery {
	struct sio_socket *s;        /* NULL once the socket is gone */
	unsigned refs;               /* the socket's, and each request under way */
	json_object *auth;           /* the CONNECT payload, for on_connect */
	char pid[ID_LEN + 1];
	char off[REC_OFF_LEN];
	json_object *saved;          /* the saved session, once found and usable */
	int local;                   /* saved here: the log here answers */
	json_object *fetched;        /* saved elsewhere: its answer's entries */
	struct { char off[REC_OFF_LEN]; struct sio_out *o; } *buf;
	size_t nbuf;
	char reqid[ID_LEN + 1];
	struct event *timer;
};

static struct {
	int inited;
	unsigned long long seq;
	struct dict saved;           /* pid -> struct saved (no Redis) */
	struct saved *head, *tail;
	struct dict fetching;        /* request id -> struct recovery */
	int getdel;                  /* script */
} R;

static const char lua_getdel[] =
	"local v = redis.call('GET', ARGV[1])\n"
	"if v then redis.call('DEL', ARGV[1]) end\n"
	"return v\n";

static unsigned window(const struct sio_nsp *nsp)
{
	return nsp->srv->cfg->recovery_window_ms;
}

/* --- the log --- */

static char **copy_strs(const char *const *v, size_t n)
{
	char **c = n ? xmust(malloc(n * sizeof *c)) : NULL;
	for (size_t i = 0; i < n; i++)
		c[i] = xstrdup(v[i]);
	return c;
}

static void free_strs(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void entry_free(struct rec_entry *e)
{
	free_strs(e->rooms, e->nrooms);
	free_strs(e->except, e->nexcept);
	free(e->skip);
	sio_out_free(e->o);
}

static struct rec_entry *log_at(struct rec_log *l, size_t i)
{
	return &l->v[(l->head + i) % l->cap];
}

static void log_drop_head(struct rec_log *l)
{
	entry_free(log_at(l, 0));
	l->head = (l->head + 1) % l->cap;
	l->len--;
}

void rec_log_add(struct sio_nsp *nsp, const char *off, const struct sio_out *o,
                 const char *const *rooms, size_t nrooms,
                 const char *const *except, size_t nexcept, const char *skip)
{
	struct rec_log *l = &nsp->log;
	uint64_t now = mono_ms();
	if (!window(nsp) || strlen(off) >= REC_OFF_LEN)
		return;
	while (l->len && (l->len == LOG_MAX || log_at(l, 0)->t + window(nsp) < now))
		log_drop_head(l);
	if (l->len == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct rec_entry *v = xmust(malloc(cap * sizeof *v));
		for (size_t i = 0; i < l->len; i++)
			v[i] = *log_at(l, i);
		free(l->v);
		l->v = v;
		l->cap = cap;
		l->head = 0;
	}
	struct rec_entry *e = log_at(l, l->len++);
	memset(e, 0, sizeof *e);
	snprintf(e->off, sizeof e->off, "%s", off);
	e->t = now;
	e->rooms = copy_strs(rooms, nrooms);
	e->nrooms = nrooms;
	e->except = copy_strs(except, nexcept);
	e->nexcept = nexcept;
	e->skip = skip ? xstrdup(skip) : NULL;
	e->o = xmust(malloc(sizeof *e->o + (size_t)o->n * sizeof o->m[0]));
	e->o->n = o->n;
	for (int i = 0; i < o->n; i++)
		e->o->m[i] = eio_msg_ref(o->m[i]);
}

struct sio_out *rec_stamp(struct sio_nsp *nsp, const struct sio_out *o,
                          const char *const *rooms, size_t nrooms,
                          const char *const *except, size_t nexcept,
                          const char *skip, char off[REC_OFF_LEN])
{
	off[0] = '\0';
	if (!window(nsp) || o->n < 1)
		return NULL;
	const struct eio_msg *m = o->m[0];
	/* "42[...]" or "45N-[...]", with or without a namespace: the data
	 * array ends the packet. */
	if (m->binary || m->len < 4 || m->data[0] != '4' || (m->data[1] != '2' && m->data[1] != '5') ||
	    m->data[m->len - 1] != ']')
		return NULL;
	snprintf(off, REC_OFF_LEN, "%.8s-%llx", cluster_instance(), ++R.seq);
	size_t olen = strlen(off);
	char *text = xmust(malloc(m->len + olen + 4));
	memcpy(text, m->data + 1, m->len - 2);
	size_t n = m->len - 2;
	text[n++] = ',';
	text[n++] = '"';
	memcpy(text + n, off, olen);
	n += olen;
	text[n++] = '"';
	text[n++] = ']';
	struct sio_out *s = xmust(malloc(sizeof *s + (size_t)o->n * sizeof s->m[0]));
	s->n = o->n;
	s->m[0] = xmust(eio_msg_text(EIO_MESSAGE, text, n));
	free(text);
	for (int i = 1; i < o->n; i++)
		s->m[i] = eio_msg_ref(o->m[i]);
	rec_log_add(nsp, off, s, rooms, nrooms, except, nexcept, skip);
	return s;
}

static long log_find(struct rec_log *l, const char *off)
{
	for (size_t i = l->len; i-- > 0;)
		if (strcmp(log_at(l, i)->off, off) == 0)
			return (long)i;
	return -1;
}

static int in_rooms(json_object *rooms, const char *name)
{
	for (size_t i = 0; i < json_object_array_length(rooms); i++)
		if (strcmp(json_object_get_string(json_object_array_get_idx(rooms, i)), name) == 0)
			return 1;
	return 0;
}

/* Would the socket sid, in rooms, have got this broadcast? */
static int entry_for(const struct rec_entry *e, json_object *rooms, const char *sid)
{
	if (e->skip && strcmp(e->skip, sid) == 0)
		return 0;
	for (size_t i = 0; i < e->nexcept; i++)
		if (in_rooms(rooms, e->except[i]))
			return 0;
	if (!e->nrooms)
		return 1;
	for (size_t i = 0; i < e->nrooms; i++)
		if (in_rooms(rooms, e->rooms[i]))
			return 1;
	return 0;
}

static void rec_unref(struct recovery *rec);

/* --- saving --- */

static void mem_sweep(void)
{
	uint64_t now = mono_ms();
	while (R.head && (R.head->taken || R.head->expires <= now)) {
		struct saved *x = R.head;
		R.head = x->next;
		if (!R.head)
			R.tail = NULL;
		if (!x->taken) {
			dict_del(&R.saved, x->pid);
			json_object_put(x->j);
		}
		free(x);
	}
}

static json_object *mem_take(const char *pid)
{
	mem_sweep();
	struct saved *x = dict_del(&R.saved, pid);
	if (!x)
		return NULL;
	x->taken = 1;
	return x->j;                 /* the reference passes to the caller */
}

void rec_socket_gone(struct sio_socket *s, const char *reason)
{
	struct recovery *rec = s->rec;
	if (rec) {
		rec->s = NULL;
		s->rec = NULL;
		rec_unref(rec);
	}
	if (!window(s->nsp) || !s->connected || !s->pid[0] ||
	    strcmp(reason, "client namespace disconnect") == 0 ||
	    strcmp(reason, "server namespace disconnect") == 0 ||
	    strcmp(reason, "server shutting down") == 0)
		return;
	json_object *j = json_object_new_object(), *rooms = json_object_new_array();
	json_object_object_add(j, "sid", json_object_new_string(s->id));
	json_object_object_add(j, "nsp", json_object_new_string(s->nsp->name));
	json_object_object_add(j, "path", json_object_new_string(s->nsp->srv->path));
	json_object_object_add(j, "inst", json_object_new_string(cluster_instance()));
	for (size_t i = 0; i < s->nrooms; i++)
		json_object_array_add(rooms, json_object_new_string(s->rooms[i]->name));
	json_object_object_add(j, "rooms", rooms);
	if (s->nsp->ops->on_save) {
		json_object *app = s->nsp->ops->on_save(s, s->nsp->ud);
		if (app)
			json_object_object_add(j, "app", app);
	}
	if (cluster_enabled()) {
		char key[256], px[16];
		snprintf(key, sizeof key, "%s:csr:%s", cluster_prefix(), s->pid);
		snprintf(px, sizeof px, "%u", window(s->nsp));
		const char *argv[] = { "SET", key, json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN),
		                       "PX", px };
		if (cluster_command(NULL, NULL, 5, argv, NULL) < 0)
			log_info("sio: %s: Redis is down: its state cannot be kept for recovery", s->id);
		json_object_put(j);
		return;
	}
	mem_sweep();
	struct saved *x = xcalloc(1, sizeof *x);
	snprintf(x->pid, sizeof x->pid, "%s", s->pid);
	x->j = j;
	x->expires = mono_ms() + window(s->nsp);
	if (dict_set(&R.saved, x->pid, x) < 0) {
		json_object_put(j);
		free(x);
		return;
	}
	if (R.tail)
		R.tail->next = x;
	else
		R.head = x;
	R.tail = x;
}

/* --- recovering --- */

static void rec_unref(struct recovery *rec)
{
	if (--rec->refs)
		return;
	json_object_put(rec->auth);
	json_object_put(rec->saved);
	json_object_put(rec->fetched);
	for (size_t i = 0; i < rec->nbuf; i++)
		sio_out_free(rec->buf[i].o);
	free(rec->buf);
	if (rec->timer)
		event_free(rec->timer);
	free(rec);
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static void connect_now(struct recovery *rec)
{
	struct sio_socket *s = rec->s;
	s->nsp->ops->on_connect(s, rec->auth, s->nsp->ud);
}

/* Recovery is off for this socket: a new id, out of the saved rooms. */
static void give_up(struct recovery *rec)
{
	struct sio_socket *s = rec->s;
	if (rec->saved) {
		log_debug("sio: session %s not recovered", s->id);
		while (s->nrooms)
			sio_leave(s, s->rooms[s->nrooms - 1]->name);
		random_id(s->id);
		json_object_put(rec->saved);
		rec->saved = NULL;
	}
	connect_now(rec);
}

static void join_saved(struct sio_socket *s, json_object *saved)
{
	json_object *rooms;
	if (!json_object_object_get_ex(saved, "rooms", &rooms) ||
	    !json_object_is_type(rooms, json_type_array))
		return;
	for (size_t i = 0; i < json_object_array_length(rooms); i++) {
		json_object *r = json_object_array_get_idx(rooms, i);
		if (json_object_is_type(r, json_type_string))
			sio_join(s, json_object_get_string(r));
	}
}

static void on_fetch_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct recovery *rec = arg;
	(void)fd;
	(void)what;
	dict_del(&R.fetching, rec->reqid);
	if (rec->s) {
		log_info("sio: no answer for the missed packets of %s: a new session", rec->s->id);
		give_up(rec);
	}
	rec_unref(rec);
}

/* The saved session (a new reference, or NULL) is known. */
static void found(struct recovery *rec, json_object *saved)
{
	struct sio_socket *s = rec->s;
	const char *sid = saved ? jstr(saved, "sid") : NULL, *nsp = saved ? jstr(saved, "nsp") : NULL;
	const char *inst = saved ? jstr(saved, "inst") : NULL, *path = saved ? jstr(saved, "path") : NULL;
	json_object *rooms;
	if (!sid || strlen(sid) != ID_LEN || !nsp || strcmp(nsp, s->nsp->name) != 0 || !inst ||
	    !path || strcmp(path, s->nsp->srv->path) != 0 || sio_find(s->nsp, sid) ||
	    !json_object_object_get_ex(saved, "rooms", &rooms) ||
	    !json_object_is_type(rooms, json_type_array)) {
		json_object_put(saved);
		connect_now(rec);
		return;
	}
	rec->local = !cluster_enabled() || strcmp(inst, cluster_instance()) == 0;
	if (rec->local) {
		if (log_find(&s->nsp->log, rec->off) < 0) {
			json_object_put(saved);
			connect_now(rec);
			return;
		}
		memcpy(s->id, sid, ID_LEN + 1);
		rec->saved = saved;
		connect_now(rec);
		return;
	}
	/* Kept from now on; the old instance tells what came before. */
	memcpy(s->id, sid, ID_LEN + 1);
	rec->saved = saved;
	join_saved(s, saved);
	json_object *q = json_object_new_object();
	random_id(rec->reqid);
	json_object_object_add(q, "id", json_object_new_string(rec->reqid));
	json_object_object_add(q, "from", json_object_new_string(cluster_instance()));
	json_object_object_add(q, "path", json_object_new_string(s->nsp->srv->path));
	json_object_object_add(q, "nsp", json_object_new_string(s->nsp->name));
	json_object_object_add(q, "off", json_object_new_string(rec->off));
	json_object_object_add(q, "sid", json_object_new_string(sid));
	json_object_object_add(q, "rooms", json_object_get(rooms));
	const char *body = json_object_to_json_string_ext(q, JSON_C_TO_STRING_PLAIN);
	rec->timer = evtimer_new(s->nsp->srv->base, on_fetch_timeout, rec);
	if (!rec->timer || dict_set(&R.fetching, rec->reqid, rec) < 0 ||
	    cluster_send(inst, 'R', body, strlen(body)) < 0) {
		if (dict_get(&R.fetching, rec->reqid))
			dict_del(&R.fetching, rec->reqid);
		json_object_put(q);
		give_up(rec);
		return;
	}
	json_object_put(q);
	struct timeval tv = { REC_FETCH_MS / 1000, (REC_FETCH_MS % 1000) * 1000 };
	evtimer_add(rec->timer, &tv);
	rec->refs++;
}

static void on_looked_up(redisReply *rep, void *ud)
{
	struct recovery *rec = ud;
	if (rec->s)
		found(rec, rep && rep->type == REDIS_REPLY_STRING
		           ? json_tokener_parse(rep->str) : NULL);
	rec_unref(rec);
}

int rec_begin(struct sio_socket *s, json_object *auth)
{
	const char *pid, *off;
	if (!window(s->nsp) || !json_object_is_type(auth, json_type_object) ||
	    !(pid = jstr(auth, "pid")) || strlen(pid) != ID_LEN ||
	    !(off = jstr(auth, "offset")) || !*off || strlen(off) >= REC_OFF_LEN)
		return 0;
	struct recovery *rec = xcalloc(1, sizeof *rec);
	rec->s = s;
	rec->refs = 1;
	rec->auth = json_object_get(auth);
	snprintf(rec->pid, sizeof rec->pid, "%s", pid);
	snprintf(rec->off, sizeof rec->off, "%s", off);
	s->rec = rec;
	if (!cluster_enabled()) {
		found(rec, mem_take(pid));
		return 1;
	}
	char key[256];
	snprintf(key, sizeof key, "%s:csr:%s", cluster_prefix(), pid);
	const char *argv[] = { key };
	rec->refs++;
	if (cluster_eval(R.getdel, on_looked_up, rec, 1, argv, NULL) < 0) {
		rec->refs--;
		connect_now(rec);        /* Redis is down: a new session */
	}
	return 1;
}

void rec_settle(struct sio_socket *s)
{
	struct recovery *rec = s->rec;
	json_object *app;
	if (!window(s->nsp))
		return;
	if (rec && rec->saved && s->nsp->ops->on_restore &&
	    json_object_object_get_ex(rec->saved, "app", &app) &&
	    s->nsp->ops->on_restore(s, app, s->nsp->ud) < 0) {
		log_info("sio: session %s refused by the application: a new session", s->id);
		while (s->nrooms)
			sio_leave(s, s->rooms[s->nrooms - 1]->name);
		random_id(s->id);
		json_object_put(rec->saved);
		rec->saved = NULL;
	}
	if (rec && rec->saved) {
		memcpy(s->pid, rec->pid, sizeof s->pid);
		s->recovered = 1;
		return;
	}
	random_id(s->pid);
}

void rec_buffer(struct sio_socket *s, const char *off, const struct sio_out *o)
{
	struct recovery *rec = s->rec;
	if (!rec->saved || rec->local || rec->nbuf == BUF_MAX)
		return;
	if (!(rec->nbuf & (rec->nbuf - 1)))
		rec->buf = xmust(realloc(rec->buf, (rec->nbuf ? 2 * rec->nbuf : 1) * sizeof *rec->buf));
	snprintf(rec->buf[rec->nbuf].off, REC_OFF_LEN, "%s", off);
	struct sio_out *c = xmust(malloc(sizeof *c + (size_t)o->n * sizeof c->m[0]));
	c->n = o->n;
	for (int i = 0; i < o->n; i++)
		c->m[i] = eio_msg_ref(o->m[i]);
	rec->buf[rec->nbuf++].o = c;
}

/* Sends the packets of a fetched entry {"o": offset, "p": [records]}. */
static void send_records(struct sio_socket *s, json_object *e)
{
	json_object *p;
	if (!json_object_object_get_ex(e, "p", &p) || !json_object_is_type(p, json_type_array))
		return;
	for (size_t i = 0; i < json_object_array_length(p); i++) {
		json_object *r = json_object_array_get_idx(p, i);
		struct eio_msg *m = eio_msg_unrecord(json_object_get_string(r),
		                                     (size_t)json_object_get_string_len(r));
		if (m) {
			eio_send(s->client->eio, m);
			eio_msg_unref(m);
		}
	}
}

void rec_replay(struct sio_socket *s)
{
	struct recovery *rec = s->rec;
	if (!rec)
		return;
	s->rec = NULL;
	rec->s = NULL;
	if (rec->saved) {
		json_object *rooms;
		json_object_object_get_ex(rec->saved, "rooms", &rooms);
		if (rec->local)
			join_saved(s, rec->saved);
		size_t sent = 0;
		if (rec->local) {
			struct rec_log *l = &s->nsp->log;
			long at = log_find(l, rec->off);
			for (size_t i = at < 0 ? l->len : (size_t)at + 1; i < l->len; i++) {
				struct rec_entry *e = log_at(l, i);
				if (entry_for(e, rooms, s->id) && sio_send(s, e->o) == 0)
					sent++;
			}
		} else {
			size_t n = json_object_array_length(rec->fetched);
			for (size_t i = 0; i < n; i++)
				send_records(s, json_object_array_get_idx(rec->fetched, i));
			sent = n;
			for (size_t b = 0; b < rec->nbuf; b++) {
				int dup = 0;
				for (size_t i = 0; i < n && !dup; i++) {
					const char *o = jstr(json_object_array_get_idx(rec->fetched, i), "o");
					dup = o && strcmp(o, rec->buf[b].off) == 0;
				}
				if (!dup && sio_send(s, rec->buf[b].o) == 0)
					sent++;
			}
		}
		log_debug("sio: %s recovered, %zu missed packet(s) replayed", s->id, sent);
	}
	rec_unref(rec);
}

/* --- between instances --- */

/* A message from another instance: a JSON object, or NULL. */
static json_object *parse(const char *body, size_t len)
{
	json_tokener *tok = json_tokener_new();
	json_object *v = NULL;
	if (tok && len <= INT32_MAX)
		v = json_tokener_parse_ex(tok, body, (int)len);
	if (tok)
		json_tokener_free(tok);
	return v;
}

/* 'R': another instance recovers a socket that left this one. */
static void on_fetch(const char *body, size_t len, void *ud)
{
	(void)ud;
	json_object *q = parse(body, len);
	const char *id = jstr(q, "id"), *from = jstr(q, "from"), *path = jstr(q, "path");
	const char *nsp = jstr(q, "nsp"), *off = jstr(q, "off"), *sid = jstr(q, "sid");
	json_object *rooms;
	if (!id || !from || strlen(from) != ID_LEN || !path || !nsp || !off || !sid ||
	    !json_object_object_get_ex(q, "rooms", &rooms) || !json_object_is_type(rooms, json_type_array)) {
		log_warn("sio: a malformed recovery request: dropped");
		json_object_put(q);
		return;
	}
	struct sio_server *srv;
	for (srv = sio_servers(); srv && strcmp(srv->path, path) != 0; srv = srv->next)
		;
	struct sio_nsp *n = srv ? sio_find_nsp(srv, nsp) : NULL;
	long at = n ? log_find(&n->log, off) : -1;
	json_object *a = json_object_new_object(), *entries = json_object_new_array();
	json_object_object_add(a, "id", json_object_new_string(id));
	json_object_object_add(a, "ok", json_object_new_boolean(at >= 0));
	for (size_t i = at < 0 ? 0 : (size_t)at + 1; at >= 0 && i < n->log.len; i++) {
		struct rec_entry *e = log_at(&n->log, i);
		if (!entry_for(e, rooms, sid))
			continue;
		json_object *je = json_object_new_object(), *p = json_object_new_array();
		json_object_object_add(je, "o", json_object_new_string(e->off));
		for (int k = 0; k < e->o->n; k++) {
			size_t rl;
			char *r = eio_msg_record(e->o->m[k], &rl);
			if (r)
				json_object_array_add(p, json_object_new_string_len(r, (int)rl));
			free(r);
		}
		json_object_object_add(je, "p", p);
		json_object_array_add(entries, je);
	}
	json_object_object_add(a, "entries", entries);
	const char *out = json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN);
	cluster_send(from, 'S', out, strlen(out));
	json_object_put(a);
	json_object_put(q);
}

/* 'S': the answer to our request. */
static void on_fetched(const char *body, size_t len, void *ud)
{
	(void)ud;
	json_object *a = parse(body, len);
	const char *id = jstr(a, "id");
	struct recovery *rec = id ? dict_del(&R.fetching, id) : NULL;
	json_object *ok, *entries;
	if (!rec) {
		json_object_put(a);
		return;
	}
	evtimer_del(rec->timer);
	if (rec->s) {
		if (json_object_object_get_ex(a, "ok", &ok) && json_object_get_boolean(ok) &&
		    json_object_object_get_ex(a, "entries", &entries) &&
		    json_object_is_type(entries, json_type_array)) {
			rec->fetched = json_object_get(entries);
			connect_now(rec);
		} else {
			give_up(rec);
		}
	}
	json_object_put(a);
	rec_unref(rec);
}

void rec_init(void)
{
	if (R.inited)
		return;
	R.inited = 1;
	dict_init(&R.saved);
	dict_init(&R.fetching);
	R.getdel = cluster_script(lua_getdel);
	cluster_on_direct('R', on_fetch, NULL);
	cluster_on_direct('S', on_fetched, NULL);
}

int sio_recovered(const struct sio_socket *s) { return s->recovered; }
