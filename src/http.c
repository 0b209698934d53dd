/* http.c -- see http.h. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "http.h"
#include "log.h"

#define MAX_ROUTES 16

static struct {
	struct MHD_Daemon *d;
	struct event *io;            /* MHD's epoll fd readable */
	struct event *timer;         /* MHD's next timeout */
	const struct config *cfg;
	struct {
		const char *prefix;
		size_t len;
		http_handler h;
		void *ud;
	} routes[MAX_ROUTES];
	int nroutes;
} H;

int http_route(const char *prefix, http_handler h, void *ud)
{
	if (H.nroutes == MAX_ROUTES)
		return -1;
	H.routes[H.nroutes].prefix = prefix;
	H.routes[H.nroutes].len = strlen(prefix);
	H.routes[H.nroutes].h = h;
	H.routes[H.nroutes].ud = ud;
	H.nroutes++;
	return 0;
}

static void arm_timer(void)
{
	MHD_UNSIGNED_LONG_LONG ms;
	if (MHD_get_timeout(H.d, &ms) == MHD_YES) {
		struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
		evtimer_add(H.timer, &tv);
	} else {
		evtimer_del(H.timer);
	}
}

static void on_mhd(evutil_socket_t fd, short what, void *arg)
{
	MHD_run(H.d);
	arm_timer();
}

void http_wakeup(void)
{
	if (H.io)
		event_active(H.io, EV_READ, 0);
}

unsigned http_connections(void)
{
	if (!H.d)
		return 0;
	const union MHD_DaemonInfo *i = MHD_get_daemon_info(H.d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
	return i ? i->num_connections : 0;
}

void http_peer_addr(struct MHD_Connection *c, char *out, size_t len)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	snprintf(out, len, "?");
	if (!ci || !ci->client_addr)
		return;
	const struct sockaddr *sa = ci->client_addr;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)len);
}

/* Is origin one of the configured, comma-separated origins? */
static int origin_allowed(const char *origin)
{
	const char *list = H.cfg->cors_origins;
	size_t olen = strlen(origin);
	while (*list) {
		while (*list == ' ' || *list == ',')
			list++;
		const char *end = list;
		while (*end && *end != ',')
			end++;
		const char *e = end;
		while (e > list && e[-1] == ' ')
			e--;
		if ((e - list == 1 && *list == '*') ||
		    ((size_t)(e - list) == olen && strncasecmp(list, origin, olen) == 0))
			return 1;
		list = end;
	}
	return 0;
}

void http_add_cors(struct MHD_Response *resp, struct MHD_Connection *c)
{
	const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
	int any = strcmp(H.cfg->cors_origins, "*") == 0;

	if (any && !H.cfg->cors_credentials) {
		MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
		return;
	}
	MHD_add_response_header(resp, "Vary", "Origin");
	if (!origin || !origin_allowed(origin))
		return;
	MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
	if (H.cfg->cors_credentials)
		MHD_add_response_header(resp, "Access-Control-Allow-Credentials", "true");
}

enum MHD_Result http_reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                           const void *body, size_t len)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	if (ctype)
		MHD_add_response_header(r, "Content-Type", ctype);
	http_add_cors(r, c);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result http_reply_json(struct MHD_Connection *c, unsigned status, const char *json)
{
	return http_reply(c, status, "application/json", json, strlen(json));
}

enum MHD_Result http_reply_preflight(struct MHD_Connection *c)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	http_add_cors(r, c);
	MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET,HEAD,PUT,PATCH,POST,DELETE");
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	                                            "Access-Control-Request-Headers");
	if (h)
		MHD_add_response_header(r, "Access-Control-Allow-Headers", h);
	MHD_add_response_header(r, "Access-Control-Max-Age", "86400");
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_NO_CONTENT, r);
	MHD_destroy_response(r);
	return ret;
}

static const char *content_type(const char *path)
{
	static const struct { const char *ext, *type; } types[] = {
		{ ".html", "text/html; charset=utf-8" }, { ".js", "text/javascript; charset=utf-8" },
		{ ".css", "text/css; charset=utf-8" }, { ".json", "application/json" },
		{ ".svg", "image/svg+xml" }, { ".png", "image/png" }, { ".ico", "image/x-icon" },
		{ ".map", "application/json" }, { ".txt", "text/plain; charset=utf-8" },
	};
	const char *dot = strrchr(path, '.');
	for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return NULL;                 /* not a file the static handler serves */
}

static enum MHD_Result on_static(struct http_req *req, const char *url, const char *method,
                                 const char *upload, size_t *upload_size, void *ud)
{
	const char *dir = ud;
	struct MHD_Connection *c = req->conn;
	char path[4096];
	size_t plen;

	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return http_reply_json(c, MHD_HTTP_METHOD_NOT_ALLOWED,
		                       "{\"error\":\"method_not_allowed\",\"message\":\"GET or HEAD\"}");
	const char *rest = strchr(url + 1, '/');
	rest = rest ? rest + 1 : "";
	/* Nothing outside dir, no hidden files, no package trees. */
	if (strstr(rest, "..") || rest[0] == '/' || rest[0] == '.' || strstr(rest, "/.") ||
	    strstr(rest, "node_modules"))
		return http_reply_json(c, MHD_HTTP_NOT_FOUND,
		                       "{\"error\":\"not_found\",\"message\":\"no such file\"}");
	plen = (size_t)snprintf(path, sizeof path, "%s/%s%s", dir, rest,
	                        !*rest || rest[strlen(rest) - 1] == '/' ? "index.html" : "");
	int fd = plen < sizeof path && content_type(path) ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		return http_reply_json(c, MHD_HTTP_NOT_FOUND,
		                       "{\"error\":\"not_found\",\"message\":\"no such file\"}");
	}
	struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
	if (!r) {
		close(fd);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", content_type(path));
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_redirect(struct http_req *req, const char *url, const char *method,
                                   const char *upload, size_t *upload_size, void *ud)
{
	if (strcmp(url, ud) != 0)
		return http_reply_json(req->conn, MHD_HTTP_NOT_FOUND,
		                       "{\"error\":\"not_found\",\"message\":\"no such resource\"}");
	char to[256];
	snprintf(to, sizeof to, "%s/", (const char *)ud);
	struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Location", to);
	enum MHD_Result ret = MHD_queue_response(req->conn, MHD_HTTP_MOVED_PERMANENTLY, r);
	MHD_destroy_response(r);
	return ret;
}

int http_static(const char *prefix, const char *dir)
{
	/* "/demo" -> "/demo/" */
	static char bare[MAX_ROUTES][128];
	static int nbare;
	size_t n = strlen(prefix);
	if (n > 1 && n < sizeof bare[0] && prefix[n - 1] == '/' && nbare < MAX_ROUTES) {
		memcpy(bare[nbare], prefix, n - 1);
		bare[nbare][n - 1] = '\0';
		if (http_route(bare[nbare], on_redirect, bare[nbare]) < 0)
			return -1;
		nbare++;
	}
	return http_route(prefix, on_static, (void *)dir);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls)
{
	struct http_req *req = *con_cls;

	if (!req) {
		/* libmicrohttpd closes the connection after a response queued in
		 * this first call (it cannot know the body was not wanted): only
		 * set up here, and let handlers start with the next call. */
		req = calloc(1, sizeof *req);
		if (!req)
			return MHD_NO;
		req->conn = c;
		buf_init(&req->body, 0);
		*con_cls = req;
		return MHD_YES;
	}
	int best = -1;
	for (int i = 0; i < H.nroutes; i++)
		if (strncmp(url, H.routes[i].prefix, H.routes[i].len) == 0 &&
		    (best < 0 || H.routes[i].len > H.routes[best].len))
			best = i;
	if (best < 0) {
		if (*upload_size) {
			*upload_size = 0;
			return MHD_YES;
		}
		return http_reply_json(c, MHD_HTTP_NOT_FOUND,
		                       "{\"error\":\"not_found\",\"message\":\"no such resource\"}");
	}
	return H.routes[best].h(req, url, method, upload, upload_size, H.routes[best].ud);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct http_req *req = *con_cls;
	if (!req)
		return;
	if (req->ctx_free)
		req->ctx_free(req);
	buf_free(&req->body);
	free(req);
	*con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	vsnprintf(line, sizeof line, fmt, ap);
	size_t n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	log_debug("http: %s", line);
}

int http_start(struct event_base *base, const struct config *cfg, int listen_fd)
{
	H.cfg = cfg;
	H.d = MHD_start_daemon(
		MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE | MHD_USE_TURBO |
		MHD_USE_ERROR_LOG,
		0, NULL, NULL, on_request, NULL,
		MHD_OPTION_LISTEN_SOCKET, listen_fd,
		/* Sessions are limited by eio.c, which answers 503/429; MHD's own
		 * limits sit above so that clients see those answers, and still
		 * bound idle TCP connections (a polling client holds two). */
		MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections * 2 + 64,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_connections_per_ip * 4,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, cfg->connection_memory,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)((cfg->http_timeout_ms + 999) / 1000),
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
		MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
		MHD_OPTION_END);
	if (!H.d) {
		log_err("http: cannot start libmicrohttpd");
		return -1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(H.d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info) {
		log_err("http: libmicrohttpd has no epoll descriptor");
		return -1;
	}
	H.io = event_new(base, info->epoll_fd, EV_READ | EV_PERSIST, on_mhd, NULL);
	H.timer = evtimer_new(base, on_mhd, NULL);
	if (!H.io || !H.timer || event_add(H.io, NULL) < 0)
		return -1;
	arm_timer();
	return 0;
}

void http_quiesce(void)
{
	if (H.d) {
		int fd = MHD_quiesce_daemon(H.d);
		if (fd != MHD_INVALID_SOCKET)
			close(fd);
	}
}

void http_stop(void)
{
	if (H.io)
		event_free(H.io);
	if (H.timer)
		event_free(H.timer);
	H.io = H.timer = NULL;
	if (H.d)
		MHD_stop_daemon(H.d);
	H.d = NULL;
}
