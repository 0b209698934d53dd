/* cluster.c -- see cluster.h.
 *
 * A broadcast on P:bus is one binary message:
 *
 *   'B' origin[ID_LEN] str(path) str(nsp) str(skip) str(offset) u16 nrooms str...
 *   u16 nexcept str...
 *   u16 npackets (u8 binary, str(bytes))...
 *
 * and a disconnect ('D': the targeted sockets are disconnected) the same
 * with u16 nids str... (socket ids) after the except rooms, and no packets
 * (npackets 0).
 *
 * where str is a u32 big-endian length and the bytes. The origin drops its
 * own message (it delivered locally already). Every field is checked
 * against the message's end before use: a message that does not parse is
 * logged and dropped. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "buf.h"
#include "cluster.h"
#include "log.h"

#define MAX_SCRIPTS 16
#define MAX_TARGETS 256              /* rooms or except rooms in one broadcast */
#define MAX_PACKETS 1001             /* a packet and its attachments */

struct handler {
	const char *path;
	cluster_bcast_cb cb;
	void *ud;
};

static struct {
	struct event_base *base;
	const struct config *cfg;
	int enabled;
	int subscribed;
	char instance[ID_LEN + 1];
	struct redis *cmd, *sub;
	char *bus, *inbox;               /* channel names */
	struct handler bcast[4];
	int nbcast;
	struct { cluster_direct_cb cb; void *ud; } direct[128];
	struct { const char *lua; char sha[2 * SHA_DIGEST_LENGTH + 1]; } scripts[MAX_SCRIPTS];
	int nscripts;
	struct buf out;                  /* the broadcast being encoded */
	void (*on_state)(int up, void *ud);
	void *on_state_ud;
} C;

/* --- encoding --- */

static void put_u16(struct buf *b, unsigned v)
{
	char x[2] = { (char)(v >> 8), (char)v };
	buf_append(b, x, 2);
}

static void put_str(struct buf *b, const char *s, size_t n)
{
	char x[4] = { (char)(n >> 24), (char)(n >> 16), (char)(n >> 8), (char)n };
	buf_append(b, x, 4);
	buf_append(b, s, n);
}

struct reader {
	const unsigned char *p, *end;
	int bad;
};

static unsigned get_u16(struct reader *r)
{
	if (r->end - r->p < 2) {
		r->bad = 1;
		return 0;
	}
	unsigned v = (unsigned)r->p[0] << 8 | r->p[1];
	r->p += 2;
	return v;
}

/* A string of the message, copied into a NUL-terminated allocation that the
 * caller frees (the bytes may hold a NUL: packets are binary). */
static char *get_str(struct reader *r, size_t *len)
{
	if (r->end - r->p < 4) {
		r->bad = 1;
		return NULL;
	}
	size_t n = (size_t)r->p[0] << 24 | (size_t)r->p[1] << 16 | (size_t)r->p[2] << 8 | r->p[3];
	r->p += 4;
	if ((size_t)(r->end - r->p) < n) {
		r->bad = 1;
		return NULL;
	}
	char *s = xmust(malloc(n + 1));
	memcpy(s, r->p, n);
	s[n] = '\0';
	r->p += n;
	if (len)
		*len = n;
	return s;
}

void cluster_bcast_encode(struct buf *o, const char *origin, const struct cluster_bcast *b)
{
	buf_reset(o);
	buf_putc(o, b->disconnect ? 'D' : 'B');
	buf_append(o, origin, ID_LEN);
	put_str(o, b->path, strlen(b->path));
	put_str(o, b->nsp, strlen(b->nsp));
	put_str(o, b->skip ? b->skip : "", b->skip ? strlen(b->skip) : 0);
	put_str(o, b->offset ? b->offset : "", b->offset ? strlen(b->offset) : 0);
	put_u16(o, (unsigned)b->nrooms);
	for (size_t i = 0; i < b->nrooms; i++)
		put_str(o, b->rooms[i], strlen(b->rooms[i]));
	put_u16(o, (unsigned)b->nexcept);
	for (size_t i = 0; i < b->nexcept; i++)
		put_str(o, b->except[i], strlen(b->except[i]));
	if (b->disconnect) {
		put_u16(o, (unsigned)b->nids);
		for (size_t i = 0; i < b->nids; i++)
			put_str(o, b->ids[i], strlen(b->ids[i]));
	}
	put_u16(o, b->disconnect ? 0 : (unsigned)b->n);
	for (int i = 0; !b->disconnect && i < b->n; i++) {
		buf_putc(o, (char)b->m[i]->binary);
		put_str(o, b->m[i]->data, b->m[i]->len);
	}
}

void cluster_broadcast(const struct cluster_bcast *b)
{
	if (!C.enabled || !C.subscribed || !redis_connected(C.cmd))
		return;
	cluster_bcast_encode(&C.out, C.instance, b);
	const char *argv[] = { "PUBLISH", C.bus, C.out.p };
	size_t lens[] = { 7, strlen(C.bus), C.out.len };
	redis_command_argv(C.cmd, NULL, NULL, 3, argv, lens);
}

static void free_strs(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
}

int cluster_bcast_decode(const char *msg, size_t len, cluster_decoded_cb cb, void *ud)
{
	const unsigned char *p = (const unsigned char *)msg;
	struct reader r = { p, p + len, 0 };
	char *rooms[MAX_TARGETS], *except[MAX_TARGETS], *ids[MAX_TARGETS], origin[ID_LEN + 1];
	struct eio_msg *m[MAX_PACKETS];
	size_t nrooms = 0, nexcept = 0, nids = 0;
	int n = 0, rc = -1;

	if (len < 1 + ID_LEN || (p[0] != 'B' && p[0] != 'D'))
		return -1;
	int disconnect = p[0] == 'D';
	memcpy(origin, p + 1, ID_LEN);
	origin[ID_LEN] = '\0';
	r.p += 1 + ID_LEN;
	char *path = get_str(&r, NULL), *nsp = get_str(&r, NULL), *skip = get_str(&r, NULL);
	char *offset = get_str(&r, NULL);
	unsigned k = get_u16(&r);
	if (k > MAX_TARGETS)
		r.bad = 1;
	for (; !r.bad && nrooms < k; nrooms++)
		if (!(rooms[nrooms] = get_str(&r, NULL)))
			break;
	k = get_u16(&r);
	if (k > MAX_TARGETS)
		r.bad = 1;
	for (; !r.bad && nexcept < k; nexcept++)
		if (!(except[nexcept] = get_str(&r, NULL)))
			break;
	if (disconnect && !r.bad) {
		k = get_u16(&r);
		if (k > MAX_TARGETS)
			r.bad = 1;
		for (; !r.bad && nids < k; nids++)
			if (!(ids[nids] = get_str(&r, NULL)))
				break;
	}
	k = get_u16(&r);
	if (k > MAX_PACKETS || (k == 0) != disconnect)
		r.bad = 1;
	while (!r.bad && n < (int)k) {
		if (r.p >= r.end) {
			r.bad = 1;
			break;
		}
		int binary = *r.p++;
		size_t blen;
		char *bytes = get_str(&r, &blen);
		if (!bytes)
			break;
		if (binary > 1 || (!binary && (blen == 0 || bytes[0] < '0' || bytes[0] > '6')))
			r.bad = 1;
		else
			m[n] = binary ? eio_msg_binary(bytes, blen)
			              : eio_msg_text((enum eio_type)(bytes[0] - '0'), bytes + 1, blen - 1);
		free(bytes);
		if (r.bad || !m[n])
			break;
		n++;
	}
	if (!r.bad && n == (int)k && r.p == r.end) {
		struct cluster_bcast b = {
			.path = path, .nsp = nsp,
			.rooms = (const char *const *)rooms, .nrooms = nrooms,
			.except = (const char *const *)except, .nexcept = nexcept,
			.skip = *skip ? skip : NULL, .offset = offset, .m = m, .n = n,
			.disconnect = disconnect, .ids = (const char *const *)ids, .nids = nids,
		};
		cb(&b, origin, ud);
		rc = 0;
	}
	for (int i = 0; i < n; i++)
		eio_msg_unref(m[i]);
	free_strs(rooms, nrooms);
	free_strs(except, nexcept);
	free_strs(ids, nids);
	free(path);
	free(nsp);
	free(skip);
	free(offset);
	return rc;
}

static void deliver_bcast(const struct cluster_bcast *b, const char *origin, void *ud)
{
	(void)ud;
	if (strcmp(origin, C.instance) == 0)
		return;                      /* ours: delivered locally already */
	for (int i = 0; i < C.nbcast; i++)
		if (strcmp(C.bcast[i].path, b->path) == 0)
			C.bcast[i].cb(b, C.bcast[i].ud);
}

static void on_bus(const char *p, size_t len)
{
	if (cluster_bcast_decode(p, len, deliver_bcast, NULL) < 0)
		log_warn("cluster: a malformed message on the bus: dropped");
}

/* --- the subscription --- */

static void on_message(redisReply *rep, void *ud)
{
	(void)ud;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
	    rep->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(rep->element[0]->str, "subscribe") == 0) {
		if (rep->element[2]->type == REDIS_REPLY_INTEGER && rep->element[2]->integer == 2) {
			C.subscribed = 1;
			log_info("cluster: instance %s on the bus", C.instance);
		}
		return;
	}
	if (strcmp(rep->element[0]->str, "message") != 0 ||
	    rep->element[1]->type != REDIS_REPLY_STRING || rep->element[2]->type != REDIS_REPLY_STRING)
		return;
	const char *chan = rep->element[1]->str, *body = rep->element[2]->str;
	size_t len = rep->element[2]->len;
	if (strcmp(chan, C.bus) == 0) {
		on_bus(body, len);
	} else if (len >= 1) {
		unsigned char kind = (unsigned char)body[0];
		if (kind < 128 && C.direct[kind].cb)
			C.direct[kind].cb(body + 1, len - 1, C.direct[kind].ud);
	}
}

static void on_sub_state(int up, void *ud)
{
	(void)ud;
	C.subscribed = 0;
	if (!up)
		return;
	const char *chans[] = { C.bus, C.inbox };
	if (redis_subscribe(C.sub, on_message, NULL, 2, chans) < 0)
		log_warn("cluster: cannot subscribe");
}

static void on_cmd_state(int up, void *ud)
{
	(void)ud;
	if (up)
		for (int i = 0; i < C.nscripts; i++)
			redis_command(C.cmd, NULL, NULL, "SCRIPT LOAD %s", C.scripts[i].lua);
	if (C.on_state)
		C.on_state(up, C.on_state_ud);
}

void cluster_on_state(void (*cb)(int up, void *ud), void *ud)
{
	C.on_state = cb;
	C.on_state_ud = ud;
}

/* --- set-up --- */

int cluster_init(struct event_base *base, const struct config *cfg, char *err, size_t errlen)
{
	C.base = base;
	C.cfg = cfg;
	if (random_id(C.instance) < 0) {
		snprintf(err, errlen, "cannot draw an instance id");
		return -1;
	}
	C.enabled = cfg->redis_url && *cfg->redis_url;
	if (!C.enabled)
		return 0;
	buf_init(&C.out, 0);
	size_t n = strlen(cfg->redis_prefix) + ID_LEN + 16;
	C.bus = xmust(malloc(n));
	C.inbox = xmust(malloc(n));
	snprintf(C.bus, n, "%s:bus", cfg->redis_prefix);
	snprintf(C.inbox, n, "%s:inst:%s", cfg->redis_prefix, C.instance);
	if (!(C.cmd = redis_new(base, cfg->redis_url, "cluster", err, errlen)) ||
	    !(C.sub = redis_new(base, cfg->redis_url, "bus", err, errlen))) {
		cluster_free();
		return -1;
	}
	redis_on_state(C.cmd, on_cmd_state, NULL);
	redis_on_state(C.sub, on_sub_state, NULL);
	return 0;
}

void cluster_free(void)
{
	redis_free(C.cmd);
	redis_free(C.sub);
	C.cmd = C.sub = NULL;
	free(C.bus);
	free(C.inbox);
	C.bus = C.inbox = NULL;
	buf_free(&C.out);
	C.enabled = C.subscribed = 0;
}

int cluster_enabled(void) { return C.enabled; }
int cluster_up(void) { return C.enabled && C.subscribed && redis_connected(C.cmd); }
const char *cluster_instance(void) { return C.instance; }
const char *cluster_prefix(void) { return C.cfg ? C.cfg->redis_prefix : ""; }

int cluster_on_broadcast(const char *path, cluster_bcast_cb cb, void *ud)
{
	if (C.nbcast == (int)(sizeof C.bcast / sizeof C.bcast[0]))
		return -1;
	C.bcast[C.nbcast++] = (struct handler){ path, cb, ud };
	return 0;
}

void cluster_on_direct(char kind, cluster_direct_cb cb, void *ud)
{
	unsigned char k = (unsigned char)kind;
	if (k < 128) {
		C.direct[k].cb = cb;
		C.direct[k].ud = ud;
	}
}

int cluster_script(const char *lua)
{
	if (C.nscripts == MAX_SCRIPTS)
		return -1;
	unsigned char sha[SHA_DIGEST_LENGTH];
	SHA1((const unsigned char *)lua, strlen(lua), sha);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(C.scripts[C.nscripts].sha + 2 * i, 3, "%02x", sha[i]);
	C.scripts[C.nscripts].lua = lua;
	return C.nscripts++;
}

int cluster_eval(int script, redis_reply_cb cb, void *ud, int argc, const char **argv,
                 const size_t *lens)
{
	if (!C.enabled || script < 0 || script >= C.nscripts || argc < 0)
		return -1;
	const char **v = xmust(malloc((size_t)(argc + 3) * sizeof *v));
	size_t *l = xmust(malloc((size_t)(argc + 3) * sizeof *l));
	v[0] = "EVALSHA";
	l[0] = 7;
	v[1] = C.scripts[script].sha;
	l[1] = 2 * SHA_DIGEST_LENGTH;
	v[2] = "0";
	l[2] = 1;
	for (int i = 0; i < argc; i++) {
		v[i + 3] = argv[i];
		l[i + 3] = lens ? lens[i] : strlen(argv[i]);
	}
	int rc = redis_command_argv(C.cmd, cb, ud, argc + 3, v, l);
	free(v);
	free(l);
	return rc;
}

int cluster_command(redis_reply_cb cb, void *ud, int argc, const char **argv,
                    const size_t *lens)
{
	if (!C.enabled)
		return -1;
	return redis_command_argv(C.cmd, cb, ud, argc, argv, lens);
}

int cluster_send(const char *instance, char kind, const char *body, size_t len)
{
	if (!C.enabled)
		return -1;
	char chan[256];
	snprintf(chan, sizeof chan, "%s:inst:%s", C.cfg->redis_prefix, instance);
	struct buf b;
	buf_init(&b, 0);
	buf_putc(&b, kind);
	buf_append(&b, body, len);
	const char *argv[] = { "PUBLISH", chan, b.p };
	size_t lens[] = { 7, strlen(chan), b.len };
	int rc = redis_command_argv(C.cmd, NULL, NULL, 3, argv, lens);
	buf_free(&b);
	return rc;
}
