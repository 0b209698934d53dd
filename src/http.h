/* http.h -- libmicrohttpd driven by the process's libevent loop.
 *
 * MHD runs without threads of its own (MHD_USE_EPOLL, external loop): its
 * epoll descriptor is watched by one persistent libevent read event, and a
 * timer follows MHD_get_timeout(). After MHD_resume_connection() or
 * MHD_upgrade_action() MHD must be run again: call http_wakeup().
 *
 * Requests are dispatched to routes by longest path prefix. A route handler
 * has the signature of an MHD access handler, with the request's state in a
 * struct http_req that lives from the first call until MHD reports the
 * request complete; a handler may hang its own state on req->ctx with a
 * destructor in req->ctx_free, called then. */
#ifndef AEOLUS_HTTP_H
#define AEOLUS_HTTP_H

#include <stddef.h>
#include <microhttpd.h>
#include <event2/event.h>

#include "buf.h"
#include "config.h"

struct http_req {
	struct MHD_Connection *conn;
	struct buf body;             /* uploaded bytes, bounded by the route */
	int body_overflow;           /* bytes beyond body.max were dropped */
	int started;                 /* the handler has seen this request before */
	void *ctx;
	void (*ctx_free)(struct http_req *req);
};

typedef enum MHD_Result (*http_handler)(struct http_req *req, const char *url,
                                        const char *method, const char *upload,
                                        size_t *upload_size, void *ud);

/* Adds a route for every URL starting with prefix. */
int http_route(const char *prefix, http_handler h, void *ud);

/* Serves the files under dir (kept by the caller) for URLs starting with
 * prefix ("/demo/"); a URL ending in '/' gets index.html. GET and HEAD only;
 * no path may leave dir. */
int http_static(const char *prefix, const char *dir);

/* Starts serving on an already bound, listening socket. */
int http_start(struct event_base *base, const struct config *cfg, int listen_fd);
/* Stops accepting new connections; existing ones continue. */
void http_quiesce(void);
/* Closes everything and frees the daemon. */
void http_stop(void);
/* Makes MHD run again at the next loop pass. */
void http_wakeup(void);
/* Connections MHD holds now (including suspended and upgraded ones). */
unsigned http_connections(void);

/* Queues a complete response with the CORS headers. Returns MHD's result. */
enum MHD_Result http_reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                           const void *body, size_t len);
enum MHD_Result http_reply_json(struct MHD_Connection *c, unsigned status, const char *json);
/* Adds Access-Control-* headers for the request's Origin, per cors.*. */
void http_add_cors(struct MHD_Response *resp, struct MHD_Connection *c);
/* Answers an OPTIONS preflight. */
enum MHD_Result http_reply_preflight(struct MHD_Connection *c);

/* The peer's address as text ("127.0.0.1"), into out. */
void http_peer_addr(struct MHD_Connection *c, char *out, size_t len);

#endif
