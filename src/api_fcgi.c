/* api_fcgi.c -- see api_fcgi.h.
 *
 * Threads and ownership. A request read by a thread becomes a struct job
 * holding copies of everything the API reads, with two references: the
 * thread's and the loop's. The thread queues it (F.queue), writes a byte
 * on the pipe when the loop has not been told yet (F.signalled), and waits
 * on its own condition variable until done. The loop thread takes the
 * whole queue when the pipe is readable and calls api_handle() for each
 * job; on_done() stores the answer, sets done and wakes the thread. Once
 * done is set, the answer is the thread's: nobody else writes it. A thread
 * that waited server.http_timeout sets done itself (answering 503) and
 * leaves; the loop's on_done() then only drops its reference. Whoever
 * drops the last reference frees the job. Everything shared is under F.mu
 * except F.stopping (atomic).
 *
 * Accepting: a thread accepts under the listener's mutex, sets the
 * connection's timeouts, and hands it to FCGX_Accept_r() as libfcgi holds
 * a kept connection (ipcFd set, keepConnection so that the call does not
 * close it first): libfcgi reads the request's records from it without
 * accepting anything itself (its listening socket is -1), so a client that
 * is slow to send its parameters holds its own thread only, for at most
 * server.http_timeout per read.
 *
 * Shutdown: api_fcgi_quiesce() sets F.stopping and shuts the sockets
 * this process owns down, which wakes the threads blocked in accept();
 * on an inherited socket (shared with the web server's other children) a
 * receive timeout on the listening socket wakes them within a second. A
 * thread ends after its current request. api_fcgi_stop() answers what is
 * still waiting, and sets F.closed: a request read after the loop is gone
 * is answered 503 by its thread. */
#define _GNU_SOURCE 1   /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <fastcgi.h>
#include <fcgiapp.h>

#include "api_fcgi.h"
#include "buf.h"
#include "log.h"
#include "scgi.h"
#include "util.h"

#define MAX_LISTENERS 8
#define CHUNK 16384
#define DRAIN_MAX (64u << 20)        /* body bytes dropped after a 413 */
#define ACCEPT_WAKE_MS 1000          /* blocked accepts wake this often */
#define THREAD_STACK (512u << 10)

struct job {
	int refs;                    /* the thread's and the loop's */
	int queued;                  /* on F.queue */
	int done;                    /* the answer is in (or no longer wanted by the loop) */
	pthread_cond_t *cond;        /* the waiting thread's */
	/* the request */
	char *method, *path, *query, *authorization, *remote_user, *body;
	size_t body_len;
	int too_large;
	/* the answer */
	int status;
	char *resp;
	size_t resp_len;
	unsigned retry_after;
	const char *allow;           /* api.c's static strings */
	struct job *next;            /* on F.queue */
	struct job *lprev, *lnext;   /* the loop thread's: in the API */
};

struct listener {
	int fd;
	int owned;
	unsigned nthreads, started;
	pthread_mutex_t mu;          /* one FCGX_Accept_r at a time */
	pthread_t *threads;
};

static struct {
	struct event_base *base;
	struct api *api;
	const struct config *cfg;
	struct listener l[MAX_LISTENERS];
	int nl;
	int pipe[2];
	struct event *ev_pipe;
	struct job *inflight;        /* the loop thread's */
	atomic_int stopping;
	pthread_mutex_t mu;          /* what follows */
	pthread_cond_t ended;        /* a thread ended */
	struct job *queue, *tail;
	int signalled;               /* a byte is on its way to the loop */
	int closed;                  /* the loop answers no more */
	unsigned live;               /* threads running */
} F = { .pipe = { -1, -1 }, .mu = PTHREAD_MUTEX_INITIALIZER };

static const char stopping_body[] =
	"{\"error\":\"unavailable\",\"message\":\"the server is stopping\"}";
static const char late_body[] =
	"{\"error\":\"unavailable\",\"message\":\"no answer within server.http_timeout\"}";

static void job_free(struct job *j)
{
	free(j->method);
	free(j->path);
	free(j->query);
	free(j->authorization);
	free(j->remote_user);
	free(j->body);
	free(j->resp);
	free(j);
}

/* Under F.mu, done not set: the answer, then done, then the thread woken. */
static void job_answer(struct job *j, int status, const char *body, size_t len,
                       unsigned retry_after, const char *allow)
{
	j->status = status;
	j->resp = xmust(malloc(len + 1));
	memcpy(j->resp, body, len);
	j->resp[len] = '\0';
	j->resp_len = len;
	j->retry_after = retry_after;
	j->allow = allow;
	j->done = 1;
	pthread_cond_signal(j->cond);
}

/* Drops a reference (takes F.mu). */
static void job_release(struct job *j)
{
	pthread_mutex_lock(&F.mu);
	int last = --j->refs == 0;
	pthread_mutex_unlock(&F.mu);
	if (last)
		job_free(j);
}

static void deadline_after(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static int cond_init_monotonic(pthread_cond_t *c)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int rc = pthread_cond_init(c, &ca);
	pthread_condattr_destroy(&ca);
	return rc;
}

/* --- the loop thread --- */

static void on_done(const struct api_response *res, void *ud)
{
	struct job *j = ud;
	if (j->lprev)
		j->lprev->lnext = j->lnext;
	else
		F.inflight = j->lnext;
	if (j->lnext)
		j->lnext->lprev = j->lprev;
	pthread_mutex_lock(&F.mu);
	if (!j->done)
		job_answer(j, res->status, res->body, res->len, res->retry_after, res->allow);
	int last = --j->refs == 0;
	pthread_mutex_unlock(&F.mu);
	if (last)
		job_free(j);
}

static void dispatch(struct job *j)
{
	pthread_mutex_lock(&F.mu);
	int gone = j->done;          /* the thread gave up already */
	pthread_mutex_unlock(&F.mu);
	if (gone) {
		job_release(j);
		return;
	}
	j->lprev = NULL;
	j->lnext = F.inflight;
	if (F.inflight)
		F.inflight->lprev = j;
	F.inflight = j;
	struct api_request ar = {
		.method = j->method,
		.path = j->path,
		.query = j->query,
		.authorization = j->authorization,
		.remote_user = j->remote_user,
		.body = j->body,
		.body_len = j->body_len,
		.body_too_large = j->too_large,
	};
	api_handle(F.api, &ar, on_done, j);
}

static void on_pipe(evutil_socket_t fd, short what, void *arg)
{
	char b[64];
	while (read(fd, b, sizeof b) > 0)
		;
	pthread_mutex_lock(&F.mu);
	struct job *list = F.queue;
	F.queue = F.tail = NULL;
	F.signalled = 0;
	for (struct job *j = list; j; j = j->next)
		j->queued = 0;
	pthread_mutex_unlock(&F.mu);
	while (list) {
		struct job *j = list;
		list = j->next;
		j->next = NULL;
		dispatch(j);
	}
}

/* --- the threads --- */

static const char *param(FCGX_Request *req, const char *name)
{
	const char *v = FCGX_GetParam(name, req->envp);
	return v && *v ? v : NULL;
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

/* Fills j from the request (path and query as scgi_request() finds them).
 * Returns NULL, or why the request is refused (400), or "" when the
 * connection failed (no answer can be given). */
static const char *read_request(FCGX_Request *req, struct job *j)
{
	const char *method = param(req, "REQUEST_METHOD");
	const char *uri = param(req, "REQUEST_URI");
	const char *cl = param(req, "CONTENT_LENGTH");
	size_t max = F.cfg->api_max_body;
	uint64_t announced = 0;

	if (uri) {
		const char *q = strchr(uri, '?');
		j->path = xstrndup(uri, q ? (size_t)(q - uri) : strlen(uri));
		j->query = xstrdup(q ? q + 1 : "");
	} else {
		const char *script = param(req, "SCRIPT_NAME"), *info = param(req, "PATH_INFO");
		const char *query = param(req, "QUERY_STRING");
		size_t ns = script ? strlen(script) : 0, ni = info ? strlen(info) : 0;
		j->path = xmust(malloc(ns + ni + 1));
		memcpy(j->path, script ? script : "", ns);
		memcpy(j->path + ns, info ? info : "", ni);
		j->path[ns + ni] = '\0';
		j->query = xstrdup(query ? query : "");
	}
	j->method = dup_or_null(method);
	j->authorization = dup_or_null(param(req, "HTTP_AUTHORIZATION"));
	j->remote_user = dup_or_null(param(req, "REMOTE_USER"));
	if (cl && parse_u64(cl, &announced) < 0)
		return "CONTENT_LENGTH is not a number";
	j->too_large = announced > max;

	/* The body: kept up to max, the rest read and dropped (a responder
	 * that closes with input unread makes the web server see a reset). */
	struct buf body;
	char chunk[CHUNK];
	uint64_t total = 0;
	buf_init(&body, max);
	for (;;) {
		int n = FCGX_GetStr(chunk, sizeof chunk, req->in);
		if (n <= 0)
			break;
		total += (uint64_t)n;
		if (!j->too_large && buf_append(&body, chunk, (size_t)n) < 0)
			j->too_large = 1;
		if (total > (uint64_t)max + DRAIN_MAX)
			break;
	}
	if (FCGX_GetError(req->in)) {
		buf_free(&body);
		return "";
	}
	if (j->too_large)
		buf_free(&body);
	else
		j->body = buf_steal(&body, &j->body_len);
	if (!j->method)
		return "no REQUEST_METHOD";
	if (!*j->path)
		return "no REQUEST_URI, SCRIPT_NAME or PATH_INFO";
	return NULL;
}

/* Hands j to the loop and waits for its answer. */
static void ask_loop(struct job *j)
{
	pthread_mutex_lock(&F.mu);
	if (F.closed) {
		job_answer(j, 503, stopping_body, sizeof stopping_body - 1, 0, NULL);
		pthread_mutex_unlock(&F.mu);
		return;
	}
	j->refs++;
	j->queued = 1;
	if (F.tail)
		F.tail->next = j;
	else
		F.queue = j;
	F.tail = j;
	int wake = !F.signalled;
	F.signalled = 1;
	pthread_mutex_unlock(&F.mu);
	if (wake) {
		char b = 1;
		while (write(F.pipe[1], &b, 1) < 0 && errno == EINTR)
			;
	}

	struct timespec deadline;
	deadline_after(&deadline, F.cfg->http_timeout_ms);
	pthread_mutex_lock(&F.mu);
	while (!j->done)
		if (pthread_cond_timedwait(j->cond, &F.mu, &deadline) == ETIMEDOUT)
			break;
	if (!j->done) {
		if (j->queued) {
			struct job **pp = &F.queue, *prev = NULL;
			while (*pp != j) {
				prev = *pp;
				pp = &(*pp)->next;
			}
			*pp = j->next;
			if (F.tail == j)
				F.tail = prev;
			j->queued = 0;
			j->refs--;
		}
		job_answer(j, 503, late_body, sizeof late_body - 1, 0, NULL);
		log_warn("fcgi: %s %s: no answer within server.http_timeout", j->method, j->path);
	}
	pthread_mutex_unlock(&F.mu);
}

static void write_answer(FCGX_Request *req, const struct job *j)
{
	struct buf out;
	char retry[24];
	const char *h[10];
	int n = 0;
	h[n++] = "Content-Type";
	h[n++] = "application/json";
	h[n++] = "Cache-Control";
	h[n++] = "no-store";
	if (j->retry_after) {
		snprintf(retry, sizeof retry, "%u", j->retry_after);
		h[n++] = "Retry-After";
		h[n++] = retry;
	}
	if (j->allow) {
		h[n++] = "Allow";
		h[n++] = j->allow;
	}
	h[n] = NULL;
	buf_init(&out, 0);
	if (scgi_response(&out, j->status, NULL, h, j->resp, j->resp_len) == 0 &&
	    out.len < 0x7fffffff)
		FCGX_PutStr(out.p, (int)out.len, req->out);
	buf_free(&out);
}

static void serve(FCGX_Request *req, pthread_cond_t *cond)
{
	struct job *j = xcalloc(1, sizeof *j);
	j->refs = 1;
	j->cond = cond;
	const char *why = read_request(req, j);
	if (why && !*why) {
		log_debug("fcgi: the request could not be read (%s)", strerror(FCGX_GetError(req->in) > 0 ?
		          FCGX_GetError(req->in) : EPROTO));
		job_free(j);
		return;
	}
	if (why) {
		char msg[160];
		snprintf(msg, sizeof msg, "{\"error\":\"bad_request\",\"message\":\"FastCGI: %s\"}", why);
		log_info("fcgi: refused: %s", why);
		pthread_mutex_lock(&F.mu);
		job_answer(j, 400, msg, strlen(msg), 0, NULL);
		pthread_mutex_unlock(&F.mu);
	} else {
		ask_loop(j);
	}
	write_answer(req, j);
	job_release(j);
}

/* Accepts a connection (one thread at a time), with the timeouts that
 * bound every read and write on it. Returns the descriptor, or -1 (after
 * a pause when the error was not a wake-up). */
static int accept_one(struct listener *l)
{
	static _Thread_local uint64_t last_err;
	pthread_mutex_lock(&l->mu);
	int fd = atomic_load(&F.stopping) ? -1 : accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	int e = errno;
	pthread_mutex_unlock(&l->mu);
	if (fd >= FD_SETSIZE) {
		/* libfcgi's lingering close waits with select(). */
		close(fd);
		fd = -1;
		e = EMFILE;
	}
	if (fd >= 0) {
		unsigned ms = F.cfg->http_timeout_ms;
		struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		return fd;
	}
	/* A wake-up (the listening socket's receive timeout), a shutdown, a
	 * client gone before it was accepted, or an error. */
	if (atomic_load(&F.stopping) || e == EAGAIN || e == EWOULDBLOCK || e == EINTR ||
	    e == ECONNABORTED)
		return -1;
	if (mono_ms() - last_err > 10000) {
		log_warn("fcgi: accept: %s", strerror(e));
		last_err = mono_ms();
	}
	struct timespec pause = { 0, 100000000L };
	nanosleep(&pause, NULL);
	return -1;
}

static void *worker(void *arg)
{
	struct listener *l = arg;
	FCGX_Request req;
	pthread_cond_t cond;

	cond_init_monotonic(&cond);
	/* No listening socket for libfcgi: the connection is accepted here,
	 * and FCGX_Accept_r() reads the request from it (as from a kept
	 * connection) outside the mutex, with the connection's timeouts. A
	 * connection that fails is closed by libfcgi, which then finds no
	 * socket to accept on and returns an error. */
	FCGX_InitRequest(&req, -1, 0);
	while (!atomic_load(&F.stopping)) {
		int fd = accept_one(l);
		if (fd < 0)
			continue;
		req.ipcFd = fd;
		req.keepConnection = 1;
		if (FCGX_Accept_r(&req) < 0) {
			if (req.ipcFd >= 0)
				FCGX_Free(&req, 1);
			log_debug("fcgi: a connection closed or timed out before its request");
			continue;
		}
		serve(&req, &cond);
		FCGX_Finish_r(&req);
		if (req.ipcFd >= 0)
			FCGX_Free(&req, 1);  /* one request per connection (FCGI_KEEP_CONN) */
	}
	pthread_cond_destroy(&cond);
	pthread_mutex_lock(&F.mu);
	F.live--;
	pthread_cond_broadcast(&F.ended);
	pthread_mutex_unlock(&F.mu);
	return NULL;
}

/* --- the contract --- */

int api_fcgi_init(void)
{
	return FCGX_Init() == 0 ? 0 : -1;
}

int api_fcgi_inherited(void)
{
	int listening = 0;
	socklen_t len = sizeof listening;
	return !FCGX_IsCGI() &&
	       getsockopt(FCGI_LISTENSOCK_FILENO, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 &&
	       listening;
}

int api_fcgi_listen(int fd, unsigned threads, int owned)
{
	if (F.nl == MAX_LISTENERS || threads < 1 || threads > 256)
		return -1;
	/* The threads accept with blocking calls (a socket inherited from a
	 * spawner may be non-blocking). On a socket that is not ours to shut
	 * down, a blocked accept comes back now and then (EAGAIN) to see
	 * whether the front is stopping. */
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && (fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	if (!owned) {
		struct timeval tv = { ACCEPT_WAKE_MS / 1000, (ACCEPT_WAKE_MS % 1000) * 1000 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	}
	struct listener *l = &F.l[F.nl++];
	l->fd = fd;
	l->owned = owned;
	l->nthreads = threads;
	pthread_mutex_init(&l->mu, NULL);
	l->threads = xcalloc(threads, sizeof *l->threads);
	return 0;
}

int api_fcgi_start(struct event_base *base, struct api *a, const struct config *cfg)
{
	F.base = base;
	F.api = a;
	F.cfg = cfg;
	cond_init_monotonic(&F.ended);
	if (pipe2(F.pipe, O_NONBLOCK | O_CLOEXEC) < 0 ||
	    !(F.ev_pipe = event_new(base, F.pipe[0], EV_READ | EV_PERSIST, on_pipe, NULL)) ||
	    event_add(F.ev_pipe, NULL) < 0) {
		log_err("fcgi: cannot make the threads' pipe: %s", strerror(errno));
		return -1;
	}
	/* The threads take no signal: the loop thread handles them. */
	sigset_t all, old;
	pthread_attr_t attr;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	int rc = 0;
	for (int i = 0; i < F.nl && rc == 0; i++) {
		struct listener *l = &F.l[i];
		for (; l->started < l->nthreads; l->started++) {
			if ((rc = pthread_create(&l->threads[l->started], &attr, worker, l)) != 0)
				break;
			pthread_mutex_lock(&F.mu);
			F.live++;
			pthread_mutex_unlock(&F.mu);
		}
	}
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_err("fcgi: cannot start a thread: %s", strerror(rc));
		return -1;
	}
	return 0;
}

void api_fcgi_quiesce(void)
{
	atomic_store(&F.stopping, 1);
	for (int i = 0; i < F.nl; i++)
		if (F.l[i].owned)
			shutdown(F.l[i].fd, SHUT_RDWR);
}

unsigned api_fcgi_pending(void)
{
	pthread_mutex_lock(&F.mu);
	unsigned n = F.live;
	pthread_mutex_unlock(&F.mu);
	return n;
}

void api_fcgi_stop(void)
{
	pthread_mutex_lock(&F.mu);
	F.closed = 1;
	while (F.queue) {
		struct job *j = F.queue;
		F.queue = j->next;
		j->next = NULL;
		j->queued = 0;
		if (!j->done)
			job_answer(j, 503, stopping_body, sizeof stopping_body - 1, 0, NULL);
		if (--j->refs == 0)
			job_free(j);
	}
	F.tail = NULL;
	/* The API may still answer these: on_done drops its reference. */
	for (struct job *j = F.inflight; j; j = j->lnext)
		if (!j->done)
			job_answer(j, 503, stopping_body, sizeof stopping_body - 1, 0, NULL);
	pthread_mutex_unlock(&F.mu);
}

void api_fcgi_free(unsigned wait_ms)
{
	struct timespec deadline;
	api_fcgi_quiesce();
	deadline_after(&deadline, wait_ms);
	pthread_mutex_lock(&F.mu);
	while (F.live > 0)
		if (pthread_cond_timedwait(&F.ended, &F.mu, &deadline) == ETIMEDOUT)
			break;
	unsigned live = F.live;
	pthread_mutex_unlock(&F.mu);
	if (live) {
		/* Blocked on a connection that sends nothing: the process ends
		 * without them. */
		log_warn("fcgi: %u threads still busy at exit", live);
		return;
	}
	for (int i = 0; i < F.nl; i++) {
		struct listener *l = &F.l[i];
		for (unsigned t = 0; t < l->started; t++)
			pthread_join(l->threads[t], NULL);
		free(l->threads);
		pthread_mutex_destroy(&l->mu);
		close(l->fd);
	}
	F.nl = 0;
	if (F.ev_pipe)
		event_free(F.ev_pipe);
	F.ev_pipe = NULL;
	for (int i = 0; i < 2; i++)
		if (F.pipe[i] >= 0)
			close(F.pipe[i]);
	F.pipe[0] = F.pipe[1] = -1;
}
