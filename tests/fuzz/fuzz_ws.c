/* fuzz_ws.c -- the WebSocket frame reader, set up as src/ws.c sets it up.
 *
 * A wslay server context with the callbacks of ws.c reads what a client
 * sent. The input is the client's bytes, preceded by four bytes that give
 * the sizes of the reads the socket returns, in turn (0: the read would
 * block once; not all four may be 0). Text and binary messages are
 * echoed, as a server answers.
 *
 * The same bytes are read twice: once by one context kept throughout, once
 * parked as ws.c parks it (freed whenever ws_frames_between() says nothing
 * is half read and wslay has nothing to say, made again when bytes come).
 * Both must write the same bytes back, or the parking rule is wrong. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <wslay/wslay.h>

#include "../../src/ws.h"

#define MAX_MESSAGE 65536            /* a small limit, so that it is reached */
#define MAX_QUEUE (4 * MAX_MESSAGE)

struct peer {
	const uint8_t *p;
	size_t n, off;
	uint8_t reads[4];
	unsigned turn;
	int closing;
	struct ws_frames frames;
	uint64_t hash, sent;         /* of every byte written */
};

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *arg)
{
	struct peer *c = arg;
	size_t want = c->reads[c->turn++ % 4];

	if (c->off == c->n) {                  /* end of file */
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	if (want == 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (want > len)
		want = len;
	if (want > c->n - c->off)
		want = c->n - c->off;
	memcpy(buf, c->p + c->off, want);
	c->off += want;
	c->frames.in += want;
	return (ssize_t)want;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                       int flags, void *arg)
{
	struct peer *c = arg;
	for (size_t i = 0; i < len; i++)      /* FNV-1a */
		c->hash = (c->hash ^ data[i]) * 0x100000001b3ULL;
	c->sent += len;
	return (ssize_t)len;
}

static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *a, void *arg)
{
	struct peer *c = arg;
	ws_frames_start(&c->frames, a->fin, a->opcode, a->payload_length);
}

static void on_frame_end(wslay_event_context_ptr ctx, void *arg)
{
	struct peer *c = arg;
	ws_frames_end(&c->frames);
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                   void *arg)
{
	struct peer *c = arg;

	if (c->closing)
		return;
	if (a->opcode != WSLAY_TEXT_FRAME && a->opcode != WSLAY_BINARY_FRAME)
		return;
	if (a->msg_length > MAX_MESSAGE)
		abort();
	/* As ws_send() does: a full queue closes the connection. */
	if (wslay_event_get_queued_msg_length(ctx) + a->msg_length > MAX_QUEUE) {
		c->closing = 1;
		wslay_event_queue_close(ctx, 1008, (const uint8_t *)"slow consumer", 13);
		return;
	}
	struct wslay_event_msg m = { a->opcode, a->msg, a->msg_length };
	wslay_event_queue_msg(ctx, &m);
}

static const struct wslay_event_callbacks callbacks = {
	.recv_callback = recv_cb,
	.send_callback = send_cb,
	.on_frame_recv_start_callback = on_frame_start,
	.on_frame_recv_end_callback = on_frame_end,
	.on_msg_recv_callback = on_msg,
};

static wslay_event_context_ptr make(struct peer *c)
{
	wslay_event_context_ptr ctx;
	if (wslay_event_context_server_init(&ctx, &callbacks, c) != 0)
		abort();
	wslay_event_config_set_max_recv_msg_length(ctx, MAX_MESSAGE);
	memset(&c->frames, 0, sizeof c->frames);
	return ctx;
}

/* The event loop of ws.c, until the peer has nothing more to say; with
 * parking, the context is freed between reads whenever ws.c would. */
static void run(struct peer *c, int parking)
{
	wslay_event_context_ptr ctx = make(c);
	for (;;) {
		if (!ctx)
			ctx = make(c);
		if (wslay_event_want_read(ctx) && wslay_event_recv(ctx) < 0)
			break;
		if (wslay_event_want_write(ctx) && wslay_event_send(ctx) < 0)
			break;
		if (!wslay_event_want_read(ctx) && !wslay_event_want_write(ctx))
			break;
		if (parking && !c->closing && ws_frames_between(&c->frames) &&
		    wslay_event_want_read(ctx) && !wslay_event_want_write(ctx) &&
		    !wslay_event_get_close_sent(ctx) && !wslay_event_get_close_received(ctx)) {
			wslay_event_context_free(ctx);
			ctx = NULL;
			if (c->off == c->n)
				return;         /* the end of the input: the peer is gone */
		}
	}
	wslay_event_context_free(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct peer a, b;

	if (size < sizeof a.reads)
		return 0;
	memset(&a, 0, sizeof a);
	memcpy(a.reads, data, sizeof a.reads);
	if (!(a.reads[0] | a.reads[1] | a.reads[2] | a.reads[3]))
		return 0;                       /* a socket that never gives anything */
	a.p = data + sizeof a.reads;
	a.n = size - sizeof a.reads;
	a.hash = 0xcbf29ce484222325ULL;
	b = a;
	run(&a, 0);
	run(&b, 1);
	/* The slow-consumer cut depends on how reads group messages, which
	 * the buffers' sizes change: compare only runs that did not cut. */
	if (!a.closing && !b.closing && (a.hash != b.hash || a.sent != b.sent))
		abort();
	return 0;
}
