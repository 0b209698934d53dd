/* service.h -- what aeolusd and aeolus-api do to run as a service:
 * listening sockets, detaching, the pid file, the user switch and the
 * descriptor limit. Each logs its errors. */
#ifndef AEOLUS_SERVICE_H
#define AEOLUS_SERVICE_H

#include <stddef.h>

/* A listening socket on spec: "HOST:PORT" (a name or a numeric address;
 * an IPv6 one in brackets, "[::1]:9000") or "unix:/PATH". A unix socket's
 * path is replaced if a socket is there already (a stale one), refused if
 * anything else is; the socket is made mode 0660 and given to user (and
 * group, else the user's group) when they are not empty, or to group
 * alone: the web server's group may connect, others may not. nonblock: O_NONBLOCK on the socket. Returns the descriptor
 * (close-on-exec), or -1 with a message in err. */
int service_listen(const char *spec, int nonblock, const char *user, const char *group,
                   char *err, size_t errlen);
/* The path of a "unix:/PATH" spec, or NULL. */
const char *service_unix_path(const char *spec);

/* Forks into the background and starts a new session (twice, so the
 * daemon can never get a terminal), changes to /, points standard input
 * and output (and standard error unless keep_stderr) at /dev/null.
 * Returns 0 in the daemon (the parents exit), -1 on failure. */
int service_detach(int keep_stderr);
/* Writes the process id to path. Returns 0 or -1 (logged). */
int service_write_pid(const char *path);
/* Switches to user (and group, else the user's own) when user is not
 * empty. Returns 0 or -1 (logged). */
int service_drop_privileges(const char *user, const char *group);
/* Raises the soft limit on open descriptors to the hard one, or to at
 * most max when max is not 0 (it is lowered to max when above). */
void service_set_nofile(unsigned long max);

#endif
