/* api_fcgi.h -- the HTTP API (api.h) over FastCGI, with libfcgi
 * (aeolus-api --fcgi, or the listening socket a web server or spawn-fcgi
 * passed as descriptor 0).
 *
 * libfcgi reads and writes with blocking calls, so it cannot run on the
 * loop. Each listening socket gets a small pool of threads; each thread
 * in turn accepts a connection (one thread at a time: under the socket's
 * mutex), lets FCGX_Accept_r() read the request from it (outside the
 * mutex), reads its body, hands it to the loop thread (a queue and a byte
 * on a pipe) and waits on a condition variable for the answer, which it
 * writes. The API (api.h) runs on the loop only. A slow web-server
 * connection holds one thread and no more: the others go on accepting
 * and serving.
 *
 * Bounds: every read and write on a connection by server.http_timeout;
 * the body kept by api_max_body() (beyond it: 413, the rest read and
 * dropped, at most 64 MiB); the wait for the API's answer by
 * server.http_timeout (then 503). A connection serves one request
 * (FCGI_KEEP_CONN is not honoured: an idle kept connection would hold a
 * thread). libfcgi reads a request's parameters without a size limit of
 * its own: the socket is for the web server only (a unix socket, or a
 * loopback address). Its lingering close waits with select(): every
 * descriptor of the process must stay below FD_SETSIZE (the caller caps
 * RLIMIT_NOFILE; a connection accepted above it is closed). */
#ifndef AEOLUS_API_FCGI_H
#define AEOLUS_API_FCGI_H

#include <event2/event.h>

#include "api.h"
#include "config.h"

/* Initialises libfcgi (FCGX_Init, which installs signal handlers of its
 * own: set the process's after this). Returns 0 or -1. */
int api_fcgi_init(void);
/* Is descriptor 0 a listening socket, as a web server or spawn-fcgi
 * passes it (FCGI_LISTENSOCK_FILENO)? After api_fcgi_init(). */
int api_fcgi_inherited(void);

/* Adds the listening socket fd (blocking) with threads threads (1 to 256);
 * owned: with it, api_fcgi_quiesce() may shut it down to wake the threads
 * at once (not for a socket shared with other processes). Before
 * api_fcgi_start(); at most 8. Returns 0 or -1. */
int api_fcgi_listen(int fd, unsigned threads, int owned);
/* Starts the threads, serving a on base's loop (base, a, cfg outlive the
 * front). Returns 0, or -1 (logged). */
int api_fcgi_start(struct event_base *base, struct api *a, const struct config *cfg);
/* The threads stop accepting and end after their request. */
void api_fcgi_quiesce(void);
/* Threads still running (a shutdown waits for them). */
unsigned api_fcgi_pending(void);
/* Answers 503 to every request waiting for the API and to any that comes
 * later: before leaving the loop. */
void api_fcgi_stop(void);
/* Waits at most wait_ms for the threads to end; frees what it can. */
void api_fcgi_free(unsigned wait_ms);

#endif
