/* api_http.h -- the HTTP API (api.h) served by aeolusd's own libmicrohttpd
 * (api.enable = yes): the routes /chat/ and /api/.
 *
 * A request's body is read whole (up to api.max_body; the rest is dropped
 * and makes a 413) before the API sees it; an answer that is not ready when
 * api_handle() returns suspends the connection until it is. A client that
 * goes away meanwhile is forgotten: the answer, when it comes, is dropped. */
#ifndef AEOLUS_API_HTTP_H
#define AEOLUS_API_HTTP_H

#include "api.h"

/* Adds the routes for a (which must outlive the HTTP server). Returns 0 or -1. */
int api_http_start(struct api *a);
/* Requests waiting for their answer (a shutdown waits for them). */
unsigned api_http_pending(void);
/* Answers every request still waiting (503): before http_stop(). */
void api_http_stop(void);

#endif
