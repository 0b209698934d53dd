/* conformance.c -- see conformance.h. */
#include <string.h>

#include "conformance.h"
#include "eio.h"
#include "log.h"
#include "sio.h"

/* --- /engine.io/: echo --- */

static void echo_open(struct eio_session *s, void *ud) { }
static void echo_close(struct eio_session *s, const char *reason, void *ud) { }

static int echo_message(struct eio_session *s, const char *data, size_t len, int binary, void *ud)
{
	struct eio_msg *m = binary ? eio_msg_binary(data, len) : eio_msg_text(EIO_MESSAGE, data, len);
	if (!m)
		return -1;
	eio_send(s, m);
	eio_msg_unref(m);
	return 0;
}

static const struct eio_endpoint_ops echo_ops = { echo_open, echo_message, echo_close };

/* --- Socket.IO --- */

static void on_connect(struct sio_socket *s, json_object *auth, void *ud)
{
	sio_accept(s);
	json_object *empty = auth ? NULL : json_object_new_object();
	sio_emit(s, "auth", auth ? auth : empty);
	json_object_put(empty);
}

static void on_event(struct sio_socket *s, const struct sio_event *ev, void *ud)
{
	if (strcmp(ev->name, "message") == 0) {
		/* The same array with the name replaced: arguments and
		 * placeholders unchanged, attachments shared. */
		json_object_array_put_idx(ev->data, 0, json_object_new_string("message-back"));
		struct sio_out *o = sio_encode(SIO_EVENT, sio_nsp_name(s), -1, ev->data,
		                               ev->atts, ev->natts);
		if (o)
			sio_send(s, o);
		sio_out_free(o);
	} else if (strcmp(ev->name, "message-with-ack") == 0 && ev->ack_id >= 0) {
		json_object *args = json_object_new_array();
		for (size_t i = 1; i < json_object_array_length(ev->data); i++)
			json_object_array_add(args, json_object_get(json_object_array_get_idx(ev->data, i)));
		sio_ack(s, ev->ack_id, args, ev->atts, ev->natts);
		json_object_put(args);
	}
}

static void on_disconnect(struct sio_socket *s, const char *reason, void *ud) { }

static const struct sio_nsp_ops main_ops = { on_connect, on_event, on_disconnect, NULL, NULL };
static const struct sio_nsp_ops custom_ops = { on_connect, NULL, on_disconnect, NULL, NULL };

int conformance_start(struct event_base *base, const struct config *cfg)
{
	if (eio_endpoint_add("/engine.io/", &echo_ops, NULL) < 0)
		return -1;
	struct sio_server *srv = sio_server_new(base, cfg, cfg->path);
	if (!srv || !sio_nsp_add(srv, "/", &main_ops, NULL) ||
	    !sio_nsp_add(srv, "/custom", &custom_ops, NULL))
		return -1;
	log_info("conformance: /engine.io/ echoes, %s serves / and /custom", cfg->path);
	return 0;
}
