/* api.h -- the backend HTTP API (SPEC 7), written once: a request in, a
 * response out, whichever front carried it (libmicrohttpd inside aeolusd
 * with api.enable = yes, FastCGI or SCGI in aeolus-api).
 *
 * Every handler runs on the loop of the process, with the application
 * layer (app.h) and its store: a message posted here is stored, rate
 * limited and delivered exactly as one a client sent, to the sockets of
 * every instance (the bus). Nothing is half applied: a request is checked
 * whole before its first effect.
 *
 * Responses are JSON; errors are {"error": code, "message": text} with the
 * statuses of SPEC 7: 400 (malformed JSON or fields, naming the field), 401
 * (no or wrong server secret), 403, 404, 405, 413, 429 (with Retry-After),
 * 503 (Redis unreachable). */
#ifndef AEOLUS_API_H
#define AEOLUS_API_H

#include <stddef.h>
#include <event2/event.h>

#include "app.h"
#include "config.h"

struct api;

/* A request as a front hands it over; everything is borrowed for the call
 * (api_handle copies what it keeps). */
struct api_request {
	const char *method;          /* "GET", "POST", ... */
	const char *path;            /* "/chat/message": no query string */
	const char *query;           /* the raw query string without '?', or "" */
	const char *authorization;   /* the Authorization header, or NULL */
	const char *remote_user;     /* REMOTE_USER set by the front web server, or NULL */
	const char *body;            /* may hold NULs; NULL when empty */
	size_t body_len;
	int body_too_large;          /* the front stopped reading at api_max_body() */
};

struct api_response {
	int status;
	const char *body;            /* JSON; valid during the callback only */
	size_t len;
	unsigned retry_after;        /* seconds, for Retry-After; 0: none */
	const char *allow;           /* 405: the methods for an Allow header; else NULL */
};

/* Called exactly once per api_handle(), possibly before it returns. */
typedef void (*api_done_cb)(const struct api_response *res, void *ud);

/* The API over app (which holds the store and the profile). Returns NULL
 * with a message in err when the configuration cannot serve it. */
struct api *api_new(struct event_base *base, const struct config *cfg, struct app *app,
                    char *err, size_t errlen);
void api_free(struct api *a);

/* Does path belong to the API? Fronts route on it. */
int api_owns(const char *path);
/* The largest body a front should read (larger: body_too_large). */
size_t api_max_body(const struct api *a);

/* Handles req. ud must stay valid until cb: a front whose request can
 * vanish meanwhile (the client went away) passes a handle it can detach. */
void api_handle(struct api *a, const struct api_request *req, api_done_cb cb, void *ud);

#endif
