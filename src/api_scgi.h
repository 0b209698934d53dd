/* api_scgi.h -- the HTTP API (api.h) over SCGI, served on the process's
 * loop (aeolus-api --scgi).
 *
 * A web server (nginx's scgi_pass, Apache's mod_proxy_scgi) connects,
 * writes one request and reads the answer until the connection closes.
 * Every connection is non-blocking and they are all served at once; each
 * is bounded: its header block and body by the parser (scgi.h, the body by
 * api_max_body()), the time to send the whole request and the time to
 * take the whole answer by server.http_timeout each, and their number by
 * server.max_connections (beyond it the listening sockets wait). A body
 * over the limit is answered 413 at once and then read and dropped (at
 * most 64 MiB) so that the web server gets the answer rather than a reset
 * connection. While the API works on a request the connection is watched:
 * a web server that gives up is noticed and the answer, when it comes, is
 * dropped. */
#ifndef AEOLUS_API_SCGI_H
#define AEOLUS_API_SCGI_H

#include <event2/event.h>

#include "api.h"
#include "config.h"

/* Serves a on the listening socket fd (non-blocking; the front closes it
 * at api_scgi_quiesce). base, a and cfg must outlive the front. At most 8
 * sockets. Returns 0 or -1. */
int api_scgi_listen(struct event_base *base, struct api *a, const struct config *cfg, int fd);
/* Stops accepting (closes the listening sockets); connections go on. */
void api_scgi_quiesce(void);
/* Open connections. */
unsigned api_scgi_pending(void);
/* Answers 503 to every request still waiting for the API, as far as the
 * socket takes it at once, and closes every connection (a shutdown's
 * end). */
void api_scgi_stop(void);

#endif
