/* fuzz_ws.c -- the WebSocket frame reader, set up as src/ws.c sets it up.
 *
 * A wslay server context with the callbacks of ws.c reads what a client
 * sent. The input is the client's bytes, preceded by four bytes that give
 * the sizes of the reads the socket returns, in turn (0: the read would
 * block once; not all four may be 0). Text and binary messages are
 * echoed, as a server answers; everything written is discarded. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <wslay/wslay.h>

#define MAX_MESSAGE 65536            /* a small limit, so that it is reached */
#define MAX_QUEUE (4 * MAX_MESSAGE)

struct peer {
	const uint8_t *p;
	size_t n, off;
	uint8_t reads[4];
	unsigned turn;
	int closing;
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
	return (ssize_t)want;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                       int flags, void *arg)
{
	return (ssize_t)len;
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
	.on_msg_recv_callback = on_msg,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct peer c;
	wslay_event_context_ptr ctx;

	if (size < sizeof c.reads)
		return 0;
	memset(&c, 0, sizeof c);
	memcpy(c.reads, data, sizeof c.reads);
	if (!(c.reads[0] | c.reads[1] | c.reads[2] | c.reads[3]))
		return 0;                       /* a socket that never gives anything */
	c.p = data + sizeof c.reads;
	c.n = size - sizeof c.reads;
	if (wslay_event_context_server_init(&ctx, &callbacks, &c) != 0)
		return 0;
	wslay_event_config_set_max_recv_msg_length(ctx, MAX_MESSAGE);

	/* The event loop of ws.c, until the peer has nothing more to say. */
	for (;;) {
		if (wslay_event_want_read(ctx) && wslay_event_recv(ctx) < 0)
			break;
		if (wslay_event_want_write(ctx) && wslay_event_send(ctx) < 0)
			break;
		if (!wslay_event_want_read(ctx) && !wslay_event_want_write(ctx))
			break;
	}
	wslay_event_context_free(ctx);
	return 0;
}
