/* sio.c -- see sio.h.
 *
 * Ownership: the server owns its namespaces; an Engine.IO session owns one
 * client (eio_set_data), which owns its sockets (a list, one per namespace
 * joined). A namespace's tables (sockets by id, rooms by name) and a room's
 * member table point at sockets without owning them; a socket leaves every
 * table before it is freed. A room is freed when its last member leaves. */
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "dict.h"
#include "log.h"
#include "sio.h"
#include "sio_int.h"
#include "stats.h"
#include "util.h"

/* --- rooms --- */

int sio_join(struct sio_socket *s, const char *name)
{
	struct sio_nsp *nsp = s->nsp;
	struct room *r = dict_get(&nsp->rooms, name);

	if (r && dict_get(&r->members, s->id))
		return 0;
	if (s->nrooms == s->caprooms) {
		size_t cap = s->caprooms ? s->caprooms * 2 : 4;
		struct room **v = realloc(s->rooms, cap * sizeof *v);
		if (!v)
			return -1;
		s->rooms = v;
		s->caprooms = cap;
	}
	if (!r) {
		r = calloc(1, sizeof *r);
		if (!r || !(r->name = strdup(name))) {
			free(r);
			return -1;
		}
		dict_init(&r->members);
		if (dict_set(&nsp->rooms, name, r) < 0) {
			free(r->name);
			free(r);
			return -1;
		}
	}
	if (dict_set(&r->members, s->id, s) < 0)
		return -1;
	s->rooms[s->nrooms++] = r;
	return 0;
}

static void room_remove(struct sio_nsp *nsp, struct room *r, struct sio_socket *s)
{
	dict_del(&r->members, s->id);
	if (dict_size(&r->members) == 0) {
		dict_del(&nsp->rooms, r->name);
		dict_free(&r->members);
		free(r->name);
		free(r);
	}
}

void sio_leave(struct sio_socket *s, const char *name)
{
	for (size_t i = 0; i < s->nrooms; i++) {
		if (strcmp(s->rooms[i]->name, name) == 0) {
			room_remove(s->nsp, s->rooms[i], s);
			s->rooms[i] = s->rooms[--s->nrooms];
			return;
		}
	}
}

int sio_in_room(const struct sio_socket *s, const char *name)
{
	for (size_t i = 0; i < s->nrooms; i++)
		if (strcmp(s->rooms[i]->name, name) == 0)
			return 1;
	return 0;
}

size_t sio_room_size(struct sio_nsp *nsp, const char *name)
{
	struct room *r = dict_get(&nsp->rooms, name);
	return r ? dict_size(&r->members) : 0;
}

/* --- encoding and sending --- */

struct sio_out *sio_encode(enum sio_type type, const char *nsp, int64_t id,
                           json_object *data, struct eio_msg *const *atts, int natts)
{
	struct buf b;
	struct sio_out *o = malloc(sizeof *o + (size_t)(natts + 1) * sizeof o->m[0]);
	if (!o)
		return NULL;
	if (natts > 0)
		type = type == SIO_ACK ? SIO_BINARY_ACK : SIO_BINARY_EVENT;
	buf_init(&b, 0);
	if (buf_putc(&b, '4') < 0 || sio_packet_encode(&b, type, nsp, id, natts, data) < 0 ||
	    !(o->m[0] = eio_msg_from_buf(&b))) {
		buf_free(&b);
		free(o);
		return NULL;
	}
	buf_free(&b);
	for (int i = 0; i < natts; i++)
		o->m[i + 1] = eio_msg_ref(atts[i]);
	o->n = natts + 1;
	return o;
}

struct sio_out *sio_encode_event(const char *nsp, const char *name, json_object *args)
{
	json_object *a = json_object_new_array();
	if (!a)
		return NULL;
	json_object_array_add(a, json_object_new_string(name));
	if (args)
		for (size_t i = 0; i < json_object_array_length(args); i++)
			json_object_array_add(a, json_object_get(json_object_array_get_idx(args, i)));
	struct sio_out *o = sio_encode(SIO_EVENT, nsp, -1, a, NULL, 0);
	json_object_put(a);
	return o;
}

void sio_out_free(struct sio_out *o)
{
	if (!o)
		return;
	for (int i = 0; i < o->n; i++)
		eio_msg_unref(o->m[i]);
	free(o);
}

static int send_out(struct sio_socket *s, const struct sio_out *o)
{
	for (int i = 0; i < o->n; i++)
		if (eio_send(s->client->eio, o->m[i]) < 0)
			return -1;
	return 0;
}

/* An event (not an ack) went to n sockets: counted by name. */
static void count_out(const struct sio_out *o, size_t n)
{
	const char *name;
	size_t len;
	if (n && o->n > 0 && !o->m[0]->binary && o->m[0]->len > 1 &&
	    sio_event_name(o->m[0]->data + 1, o->m[0]->len - 1, &name, &len) == 0)
		stats_events_out(name, len, n);
}

int sio_send(struct sio_socket *s, const struct sio_out *o)
{
	if (send_out(s, o) < 0)
		return -1;
	count_out(o, 1);
	return 0;
}

int sio_emit(struct sio_socket *s, const char *name, json_object *arg)
{
	json_object *a = json_object_new_array();
	if (!a)
		return -1;
	json_object_array_add(a, json_object_new_string(name));
	if (arg)
		json_object_array_add(a, json_object_get(arg));
	struct sio_out *o = sio_encode(SIO_EVENT, s->nsp->name, -1, a, NULL, 0);
	json_object_put(a);
	if (!o)
		return -1;
	int r = sio_send(s, o);
	sio_out_free(o);
	return r;
}

int sio_ack(struct sio_socket *s, int64_t id, json_object *args,
            struct eio_msg *const *atts, int natts)
{
	json_object *empty = args ? NULL : json_object_new_array();
	struct sio_out *o = sio_encode(SIO_ACK, s->nsp->name, id, args ? args : empty, atts, natts);
	json_object_put(empty);
	if (!o)
		return -1;
	int r = send_out(s, o);
	sio_out_free(o);
	return r;
}

static void deliver(struct sio_socket *s, unsigned long epoch, const struct sio_out *o,
                    const char *off, size_t *n)
{
	if (s->epoch == epoch)
		return;
	if (!s->connected) {
		if (s->rec && off && *off)
			rec_buffer(s, off, o);
		return;
	}
	s->epoch = epoch;
	send_out(s, o);
	(*n)++;
}

/* Delivers to this instance's sockets. */
static size_t broadcast_local(struct sio_nsp *nsp, const char *const *rooms, size_t nrooms,
                              const char *const *except_rooms, size_t nexcept,
                              const struct sio_socket *skip, const struct sio_out *o,
                              const char *off)
{
	/* Each broadcast gets a new stamp; a socket already stamped with it
	 * (excluded, or reached through another room) is passed over. */
	unsigned long epoch = ++nsp->srv->epoch;
	struct dict_iter it;
	struct dict_entry *e;
	size_t n = 0;

	for (size_t i = 0; i < nexcept; i++) {
		struct room *r = dict_get(&nsp->rooms, except_rooms[i]);
		if (!r)
			continue;
		dict_iter_init(&it, &r->members);
		while ((e = dict_next(&it)))
			((struct sio_socket *)e->val)->epoch = epoch;
	}
	if (skip)
		((struct sio_socket *)skip)->epoch = epoch;
	if (nrooms == 0) {
		dict_iter_init(&it, &nsp->sockets);
		while ((e = dict_next(&it)))
			deliver(e->val, epoch, o, off, &n);
		count_out(o, n);
		return n;
	}
	for (size_t i = 0; i < nrooms; i++) {
		struct room *r = dict_get(&nsp->rooms, rooms[i]);
		if (!r)
			continue;
		dict_iter_init(&it, &r->members);
		while ((e = dict_next(&it)))
			deliver(e->val, epoch, o, off, &n);
	}
	count_out(o, n);
	return n;
}

static size_t broadcast(struct sio_nsp *nsp, const char *const *rooms, size_t nrooms,
                        const char *const *except_rooms, size_t nexcept,
                        const struct sio_socket *skip, const struct sio_out *o, int cluster)
{
	char off[REC_OFF_LEN];
	struct sio_out *stamped = rec_stamp(nsp, o, rooms, nrooms, except_rooms, nexcept,
	                                    skip ? skip->id : NULL, off);
	if (stamped)
		o = stamped;
	/* The other instances get the same bytes in one publish and deliver
	 * to their own sockets (on_cluster_broadcast). */
	if (cluster && cluster_enabled()) {
		struct cluster_bcast b = {
			.path = nsp->srv->path, .nsp = nsp->name,
			.rooms = rooms, .nrooms = nrooms, .except = except_rooms, .nexcept = nexcept,
			.skip = skip ? skip->id : NULL, .offset = off, .m = o->m, .n = o->n,
		};
		cluster_broadcast(&b);
	}
	size_t n = broadcast_local(nsp, rooms, nrooms, except_rooms, nexcept, skip, o, off);
	sio_out_free(stamped);
	return n;
}

size_t sio_broadcast(struct sio_nsp *nsp, const char *const *rooms, size_t nrooms,
                     const char *const *except_rooms, size_t nexcept,
                     const struct sio_socket *skip, const struct sio_out *o)
{
	return broadcast(nsp, rooms, nrooms, except_rooms, nexcept, skip, o, 1);
}

size_t sio_broadcast_local(struct sio_nsp *nsp, const char *const *rooms, size_t nrooms,
                           const char *const *except_rooms, size_t nexcept,
                           const struct sio_out *o)
{
	return broadcast(nsp, rooms, nrooms, except_rooms, nexcept, NULL, o, 0);
}

static size_t disconnect_local(struct sio_nsp *nsp, const char *const *rooms, size_t nrooms,
                               const char *const *ids, size_t nids);

static void on_cluster_broadcast(const struct cluster_bcast *b, void *ud)
{
	struct sio_server *srv = ud;
	struct sio_nsp *nsp;
	for (nsp = srv->nsps; nsp && strcmp(nsp->name, b->nsp) != 0; nsp = nsp->next)
		;
	if (!nsp)
		return;
	if (b->disconnect) {
		disconnect_local(nsp, b->rooms, b->nrooms, b->ids, b->nids);
		return;
	}
	struct sio_out *o = malloc(sizeof *o + (size_t)b->n * sizeof o->m[0]);
	if (!o)
		return;
	o->n = b->n;
	for (int i = 0; i < b->n; i++)
		o->m[i] = eio_msg_ref(b->m[i]);
	if (b->offset && *b->offset)
		rec_log_add(nsp, b->offset, o, b->rooms, b->nrooms, b->except, b->nexcept, b->skip);
	broadcast_local(nsp, b->rooms, b->nrooms, b->except, b->nexcept,
	                b->skip ? sio_find(nsp, b->skip) : NULL, o, b->offset);
	sio_out_free(o);
}

/* --- sockets --- */

static struct sio_socket *find_socket(struct sio_client *c, const char *nsp)
{
	for (struct sio_socket *s = c->sockets; s; s = s->next)
		if (strcmp(s->nsp->name, nsp) == 0)
			return s;
	return NULL;
}

/* Takes the socket out of every table and frees it. */
static void socket_remove(struct sio_socket *s, const char *reason, int notify)
{
	struct sio_client *c = s->client;
	struct sio_socket **pp;

	for (pp = &c->sockets; *pp && *pp != s; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = s->next;
	rec_socket_gone(s, notify ? reason : "server namespace disconnect");
	if (notify && s->nsp->ops->on_disconnect)
		s->nsp->ops->on_disconnect(s, reason, s->nsp->ud);
	while (s->nrooms)
		room_remove(s->nsp, s->rooms[--s->nrooms], s);
	if (s->connected)
		dict_del(&s->nsp->sockets, s->id);
	free(s->rooms);
	free(s);
}

void sio_send_packet(struct sio_client *c, enum sio_type type, const char *nsp,
                     json_object *data)
{
	struct sio_out *o = sio_encode(type, nsp, -1, data, NULL, 0);
	if (!o)
		return;
	for (int i = 0; i < o->n; i++)
		eio_send(c->eio, o->m[i]);
	sio_out_free(o);
}

void sio_accept(struct sio_socket *s)
{
	if (s->connected)
		return;
	rec_settle(s);
	if (dict_set(&s->nsp->sockets, s->id, s) < 0) {
		sio_refuse(s, "Internal error", NULL);
		return;
	}
	s->connected = 1;
	if (s->client->connect_timer)
		evtimer_del(s->client->connect_timer);
	json_object *d = json_object_new_object();
	json_object_object_add(d, "sid", json_object_new_string(s->id));
	if (s->pid[0])
		json_object_object_add(d, "pid", json_object_new_string(s->pid));
	sio_send_packet(s->client, SIO_CONNECT, s->nsp->name, d);
	json_object_put(d);
	rec_replay(s);
}

void sio_refuse(struct sio_socket *s, const char *message, json_object *data)
{
	json_object *d = json_object_new_object();
	json_object_object_add(d, "message", json_object_new_string(message));
	if (data)
		json_object_object_add(d, "data", json_object_get(data));
	sio_send_packet(s->client, SIO_CONNECT_ERROR, s->nsp->name, d);
	json_object_put(d);
	s->connected = 0;
	socket_remove(s, "server namespace disconnect", 0);
}

void sio_disconnect(struct sio_socket *s)
{
	sio_send_packet(s->client, SIO_DISCONNECT, s->nsp->name, NULL);
	socket_remove(s, "server namespace disconnect", 1);
}

struct idlist {
	char (*v)[ID_LEN + 1];
	size_t n, cap;
};

static void idlist_add(struct idlist *l, const char *id)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->v = xmust(realloc(l->v, l->cap * sizeof *l->v));
	}
	snprintf(l->v[l->n++], ID_LEN + 1, "%s", id);
}

/* The ids are collected first: each disconnect changes the rooms walked. */
static size_t disconnect_local(struct sio_nsp *nsp, const char *const *rooms, size_t nrooms,
                               const char *const *ids, size_t nids)
{
	struct idlist l = { NULL, 0, 0 };
	struct dict_iter it;
	struct dict_entry *e;
	size_t done = 0;

	for (size_t i = 0; i < nrooms; i++) {
		struct room *r = dict_get(&nsp->rooms, rooms[i]);
		if (!r)
			continue;
		dict_iter_init(&it, &r->members);
		while ((e = dict_next(&it)))
			idlist_add(&l, ((struct sio_socket *)e->val)->id);
	}
	for (size_t i = 0; i < nids; i++)
		idlist_add(&l, ids[i]);
	for (size_t i = 0; i < l.n; i++) {
		struct sio_socket *s = sio_find(nsp, l.v[i]);
		if (s) {
			sio_disconnect(s);
			done++;
		}
	}
	free(l.v);
	return done;
}

size_t sio_disconnect_where(struct sio_nsp *nsp, const char *const *rooms, size_t nrooms,
                            const char *const *ids, size_t nids)
{
	if (cluster_enabled()) {
		struct cluster_bcast b = {
			.path = nsp->srv->path, .nsp = nsp->name, .rooms = rooms, .nrooms = nrooms,
			.offset = "", .disconnect = 1, .ids = ids, .nids = nids,
		};
		cluster_broadcast(&b);
	}
	return disconnect_local(nsp, rooms, nrooms, ids, nids);
}

/* --- packets from the client --- */

static void pending_clear(struct sio_client *c)
{
	for (int i = 0; i < c->natts; i++)
		eio_msg_unref(c->atts[i]);
	c->natts = 0;
	if (c->pending_active)
		sio_packet_clear(&c->pending);
	c->pending_active = 0;
}

/* Hands a complete EVENT (or ACK) to the namespace. */
static void dispatch(struct sio_client *c, struct sio_packet *p)
{
	struct sio_socket *s = find_socket(c, p->nsp);
	if (!s || !s->connected)
		return;
	if (p->type == SIO_ACK || p->type == SIO_BINARY_ACK)
		return;                  /* the server asks for no acks yet */
	struct sio_event ev = {
		.name = json_object_get_string(json_object_array_get_idx(p->data, 0)),
		.data = p->data,
		.atts = c->atts,
		.natts = c->natts,
		.ack_id = p->id,
	};
	stats_event_in(ev.name);
	if (s->nsp->ops->on_event)
		s->nsp->ops->on_event(s, &ev, s->nsp->ud);
}

struct sio_nsp *sio_find_nsp(struct sio_server *srv, const char *name)
{
	for (struct sio_nsp *n = srv->nsps; n; n = n->next)
		if (strcmp(n->name, name) == 0)
			return n;
	return NULL;
}

static int on_connect_packet(struct sio_client *c, struct sio_packet *p)
{
	struct sio_nsp *nsp = sio_find_nsp(c->srv, p->nsp);
	if (!nsp) {
		json_object *d = json_object_new_object();
		json_object_object_add(d, "message", json_object_new_string("Invalid namespace"));
		sio_send_packet(c, SIO_CONNECT_ERROR, p->nsp, d);
		json_object_put(d);
		return 0;
	}
	if (find_socket(c, p->nsp))
		return 0;                /* already connected or being decided */
	struct sio_socket *s = calloc(1, sizeof *s);
	if (!s || random_id(s->id) < 0) {
		free(s);
		return -1;
	}
	s->nsp = nsp;
	s->client = c;
	s->next = c->sockets;
	c->sockets = s;
	if (!rec_begin(s, p->data))
		nsp->ops->on_connect(s, p->data, nsp->ud);
	return 0;
}

static int on_text(struct sio_client *c, const char *data, size_t len)
{
	struct sio_packet p;
	const char *err;

	if (c->pending_active) {
		log_debug("sio: %s: text while waiting for attachments", eio_sid(c->eio));
		return -1;
	}
	if (sio_packet_decode(data, len, &p, &err) < 0) {
		log_debug("sio: %s: %s", eio_sid(c->eio), err);
		return -1;
	}
	int r = 0;
	switch (p.type) {
	case SIO_CONNECT:
		r = on_connect_packet(c, &p);
		break;
	case SIO_DISCONNECT: {
		struct sio_socket *s = find_socket(c, p.nsp);
		if (s)
			socket_remove(s, "client namespace disconnect", 1);
		break;
	}
	case SIO_EVENT:
	case SIO_ACK:
	case SIO_BINARY_EVENT:
	case SIO_BINARY_ACK: {
		struct sio_socket *s = find_socket(c, p.nsp);
		if (!s || !s->connected) {
			r = -1;
			break;
		}
		if (p.attachments > 0) {
			if (p.attachments > c->srv->cfg->max_attachments) {
				r = -1;
				break;
			}
			if (!c->atts) {
				c->atts = calloc((size_t)c->srv->cfg->max_attachments, sizeof *c->atts);
				if (!c->atts) {
					r = -1;
					break;
				}
			}
			c->pending = p;      /* the packet now belongs to the client */
			c->pending_active = 1;
			return 0;
		}
		dispatch(c, &p);
		break;
	}
	case SIO_CONNECT_ERROR:
		r = -1;
		break;
	}
	sio_packet_clear(&p);
	return r;
}

static int on_binary(struct sio_client *c, const char *data, size_t len)
{
	if (!c->pending_active)
		return -1;
	struct eio_msg *m = eio_msg_binary(data, len);
	if (!m)
		return -1;
	c->atts[c->natts++] = m;
	if (c->natts == c->pending.attachments) {
		dispatch(c, &c->pending);
		pending_clear(c);
	}
	return 0;
}

/* --- Engine.IO callbacks --- */

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct sio_client *c = arg;
	for (struct sio_socket *s = c->sockets; s; s = s->next)
		if (s->connected)
			return;
	eio_close(c->eio, "connect timeout");
}

static void on_open(struct eio_session *e, void *ud)
{
	struct sio_server *srv = ud;
	struct sio_client *c = calloc(1, sizeof *c);
	if (!c) {
		eio_close(e, "transport error");
		return;
	}
	c->srv = srv;
	c->eio = e;
	eio_set_data(e, c);
	c->connect_timer = evtimer_new(srv->base, on_connect_timeout, c);
	if (c->connect_timer) {
		unsigned ms = srv->cfg->connect_timeout_ms;
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
		evtimer_add(c->connect_timer, &tv);
	}
}

static int on_message(struct eio_session *e, const char *data, size_t len, int binary, void *ud)
{
	struct sio_client *c = eio_data(e);
	if (!c)
		return -1;
	return binary ? on_binary(c, data, len) : on_text(c, data, len);
}

static void on_close(struct eio_session *e, const char *reason, void *ud)
{
	struct sio_client *c = eio_data(e);
	if (!c)
		return;
	while (c->sockets)
		socket_remove(c->sockets, reason, 1);
	pending_clear(c);
	free(c->atts);
	if (c->connect_timer)
		event_free(c->connect_timer);
	free(c);
	eio_set_data(e, NULL);
}

static const struct eio_endpoint_ops endpoint_ops = { on_open, on_message, on_close };

static struct sio_server *servers;

struct sio_server *sio_servers(void) { return servers; }

struct sio_server *sio_server_new(struct event_base *base, const struct config *cfg,
                                  const char *path)
{
	struct sio_server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return NULL;
	srv->base = base;
	srv->cfg = cfg;
	srv->path = path;
	rec_init();
	if (eio_endpoint_add(path, &endpoint_ops, srv) < 0 ||
	    cluster_on_broadcast(path, on_cluster_broadcast, srv) < 0) {
		free(srv);
		return NULL;
	}
	srv->next = servers;
	servers = srv;
	return srv;
}

struct sio_nsp *sio_nsp_add(struct sio_server *srv, const char *name,
                            const struct sio_nsp_ops *ops, void *ud)
{
	struct sio_nsp *n = calloc(1, sizeof *n);
	if (!n)
		return NULL;
	n->srv = srv;
	n->name = name;
	n->ops = ops;
	n->ud = ud;
	dict_init(&n->sockets);
	dict_init(&n->rooms);
	n->next = srv->nsps;
	srv->nsps = n;
	return n;
}

const char *sio_id(const struct sio_socket *s) { return s->id; }
const char *sio_nsp_name(const struct sio_socket *s) { return s->nsp->name; }
const char *sio_nsp_name_of(const struct sio_nsp *nsp) { return nsp->name; }
struct sio_nsp *sio_socket_nsp(const struct sio_socket *s) { return s->nsp; }
struct eio_session *sio_session(const struct sio_socket *s) { return s->client->eio; }
void sio_set_data(struct sio_socket *s, void *data) { s->data = data; }
void *sio_data(const struct sio_socket *s) { return s->data; }
size_t sio_nsp_sockets(const struct sio_nsp *nsp) { return dict_size(&nsp->sockets); }
struct sio_socket *sio_find(struct sio_nsp *nsp, const char *id)
{
	return dict_get(&nsp->sockets, id);
}

void sio_foreach_nsp(sio_nsp_visit_cb cb, void *ud)
{
	for (struct sio_server *srv = servers; srv; srv = srv->next)
		for (struct sio_nsp *n = srv->nsps; n; n = n->next)
			cb(srv->path, n->name, dict_size(&n->sockets), dict_size(&n->rooms), ud);
}
