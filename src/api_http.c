/* api_http.c -- see api_http.h.
 *
 * Lifetimes. libmicrohttpd calls the handler once to set the request up
 * (http.c), then with each chunk of the body, then with none: that last
 * call hands the request to api_handle() with a struct front as its ud.
 * The front belongs to the HTTP request once the API has answered, and to
 * the API while it has not: when MHD is done with a request whose answer
 * is still to come (the client went away, or the server stopped),
 * front_free() only detaches it (req = NULL), and on_done() frees it. */
#include <stdlib.h>
#include <string.h>

#include "api_http.h"
#include "buf.h"
#include "http.h"
#include "log.h"
#include "util.h"

#define MAX_QUERY 8192

struct front {
	struct http_req *req;        /* NULL once MHD is done with the request */
	int pending;                 /* the API has not answered yet */
	int ready;                   /* an answer is here (the API's, or 503 at a stop) */
	int in_call;                 /* inside api_handle() */
	int suspended;
	int status;
	char *body;
	size_t len;
	unsigned retry_after;
	const char *allow;           /* static strings of api.c */
	struct front *prev, *next;   /* on the list of suspended requests */
};

static struct front *suspended;
static unsigned nsuspended;

static void unlist(struct front *f)
{
	if (!f->suspended)
		return;
	if (f->prev)
		f->prev->next = f->next;
	else
		suspended = f->next;
	if (f->next)
		f->next->prev = f->prev;
	f->prev = f->next = NULL;
	f->suspended = 0;
	nsuspended--;
}

static void resume(struct front *f)
{
	unlist(f);
	MHD_resume_connection(f->req->conn);
	http_wakeup();
}

static void front_free(struct http_req *req)
{
	struct front *f = req->ctx;
	unlist(f);
	free(f->body);
	f->body = NULL;
	if (f->pending)
		f->req = NULL;           /* on_done frees it */
	else
		free(f);
}

static void on_done(const struct api_response *res, void *ud)
{
	struct front *f = ud;
	f->pending = 0;
	if (!f->req) {
		free(f);                 /* the client is gone: nothing to answer */
		return;
	}
	if (f->ready)
		return;                  /* answered 503 at a stop */
	f->ready = 1;
	f->status = res->status;
	f->body = xmust(malloc(res->len + 1));
	memcpy(f->body, res->body, res->len);
	f->len = res->len;
	f->retry_after = res->retry_after;
	f->allow = res->allow;
	if (!f->in_call)
		resume(f);
}

static enum MHD_Result reply(struct MHD_Connection *c, struct front *f)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(f->len, f->body,
	                                                         MHD_RESPMEM_MUST_COPY);
	char retry[24];
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (f->retry_after) {
		snprintf(retry, sizeof retry, "%u", f->retry_after);
		MHD_add_response_header(r, "Retry-After", retry);
	}
	if (f->allow)
		MHD_add_response_header(r, "Allow", f->allow);
	http_add_cors(r, c);
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)f->status, r);
	MHD_destroy_response(r);
	return ret;
}

static int hexdigit(unsigned v)
{
	return "0123456789ABCDEF"[v & 15];
}

static void encode(struct buf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			buf_putc(b, (char)ch);
		} else {
			char x[3] = { '%', (char)hexdigit(ch >> 4), (char)hexdigit(ch) };
			buf_append(b, x, 3);
		}
	}
}

/* MHD decodes the query string; the API takes it raw: encode it again. */
static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
	struct buf *b = cls;
	(void)kind;
	if (b->len)
		buf_putc(b, '&');
	encode(b, key);
	if (value) {
		buf_putc(b, '=');
		encode(b, value);
	}
	return MHD_YES;
}

static enum MHD_Result on_api(struct http_req *req, const char *url, const char *method,
                              const char *upload, size_t *upload_size, void *ud)
{
	struct api *a = ud;
	struct MHD_Connection *c = req->conn;

	if (*upload_size) {
		req->body.max = api_max_body(a);
		if (!req->body_overflow && buf_append(&req->body, upload, *upload_size) < 0)
			req->body_overflow = 1;
		*upload_size = 0;
		return MHD_YES;
	}
	if (req->started) {
		struct front *f = req->ctx;
		return f && f->ready ? reply(c, f) : MHD_YES;
	}
	req->started = 1;
	if (strcmp(method, MHD_HTTP_METHOD_OPTIONS) == 0)
		return http_reply_preflight(c);

	struct buf query;
	buf_init(&query, MAX_QUERY);
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_arg, &query);
	if (query.len >= MAX_QUERY - 4) {
		buf_free(&query);
		return http_reply_json(c, MHD_HTTP_BAD_REQUEST,
		                       "{\"error\":\"bad_request\",\"message\":\"query string too long\","
		                       "\"field\":\"query\"}");
	}
	struct front *f = xcalloc(1, sizeof *f);
	f->req = req;
	f->pending = 1;
	req->ctx = f;
	req->ctx_free = front_free;
	struct api_request ar = {
		.method = method,
		.path = url,
		.query = query.p ? query.p : "",
		.authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
		                                             MHD_HTTP_HEADER_AUTHORIZATION),
		.remote_user = NULL,     /* no front web server in front of this one */
		.body = req->body.p,
		.body_len = req->body.len,
		.body_too_large = req->body_overflow,
	};
	f->in_call = 1;
	api_handle(a, &ar, on_done, f);
	f->in_call = 0;
	buf_free(&query);
	if (f->ready)
		return reply(c, f);
	f->suspended = 1;
	nsuspended++;
	f->next = suspended;
	if (suspended)
		suspended->prev = f;
	suspended = f;
	MHD_suspend_connection(c);
	return MHD_YES;
}

int api_http_start(struct api *a)
{
	return http_route("/chat/", on_api, a) < 0 || http_route("/api/", on_api, a) < 0 ? -1 : 0;
}

unsigned api_http_pending(void)
{
	return nsuspended;
}

void api_http_stop(void)
{
	static const char busy[] =
		"{\"error\":\"unavailable\",\"message\":\"the server is stopping\"}";
	while (suspended) {
		struct front *f = suspended;
		/* The API's answer may still come: on_done drops it. */
		f->ready = 1;
		f->status = 503;
		f->body = xmust(malloc(sizeof busy));
		memcpy(f->body, busy, sizeof busy);
		f->len = sizeof busy - 1;
		resume(f);
	}
}
