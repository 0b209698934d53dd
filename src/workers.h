/* workers.h -- the parent of server.workers processes.
 *
 * aeolusd with workers > 1 binds its listening socket, then becomes a
 * supervisor: it forks the workers, which inherit the socket and each run
 * their own event loop on it (the kernel hands each new connection to one
 * of them), restarts a worker that dies, and turns its own signals into
 * the workers'. The parent holds no connection, no loop and no store: all
 * of that is made in each worker, after the fork. */
#ifndef AEOLUS_WORKERS_H
#define AEOLUS_WORKERS_H

/* Keeps n workers running, each a child process that calls run(arg) and
 * exits with its result, until SIGTERM or SIGINT; then stops them, waiting
 * at most shutdown_timeout_ms + 1 s before killing the ones left. Call it
 * with no other children, and SIGTERM, SIGINT, SIGHUP and SIGCHLD at their
 * default dispositions. Returns 0 once every worker is gone (with those
 * signals left blocked), or 1 if it could not start (logged). */
int workers_supervise(int n, unsigned shutdown_timeout_ms, int (*run)(void *arg), void *arg);

/* Inside a worker: 1, else 0. */
int workers_in_child(void);

#endif
