/* service.c -- see service.h. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "service.h"

#define BACKLOG 1024

const char *service_unix_path(const char *spec)
{
	return strncmp(spec, "unix:", 5) == 0 ? spec + 5 : NULL;
}

/* The ids of user and group (the user's own group when group is empty). */
static int ids_of(const char *user, const char *group, uid_t *uid, gid_t *gid, char *err,
                  size_t errlen)
{
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		snprintf(err, errlen, "server.user: no such user '%s'", user);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (group && *group) {
		struct group *gr = getgrnam(group);
		if (!gr) {
			snprintf(err, errlen, "server.group: no such group '%s'", group);
			return -1;
		}
		*gid = gr->gr_gid;
	}
	return 0;
}

static int listen_unix(const char *path, int nonblock, const char *user, const char *group,
                       char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	if (!*path || strlen(path) >= sizeof sa.sun_path) {
		snprintf(err, errlen, "unix:%s: the path must have 1 to %zu bytes", path,
		         sizeof sa.sun_path - 1);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path));
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "unix:%s: exists and is not a socket", path);
			return -1;
		}
		unlink(path);            /* left by a process that did not exit cleanly */
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0) {
		snprintf(err, errlen, "unix:%s: %s", path, strerror(errno));
		return -1;
	}
	mode_t old = umask(0117);    /* srw-rw---- */
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
	umask(old);
	if (rc < 0 || listen(fd, BACKLOG) < 0) {
		snprintf(err, errlen, "cannot listen on unix:%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if ((user && *user) || (group && *group)) {
		uid_t uid = (uid_t)-1;
		gid_t gid = (gid_t)-1;
		int bad = 0;
		if (user && *user) {
			bad = ids_of(user, group, &uid, &gid, err, errlen) < 0;
		} else {
			struct group *gr = getgrnam(group);
			if (gr) {
				gid = gr->gr_gid;
			} else {
				snprintf(err, errlen, "server.group: no such group '%s'", group);
				bad = 1;
			}
		}
		if (!bad && chown(path, uid, gid) < 0) {
			snprintf(err, errlen, "unix:%s: cannot give it to %s: %s", path,
			         user && *user ? user : group, strerror(errno));
			bad = 1;
		}
		if (bad) {
			close(fd);
			unlink(path);
			return -1;
		}
	}
	return fd;
}

int service_listen(const char *spec, int nonblock, const char *user, const char *group,
                   char *err, size_t errlen)
{
	const char *path = service_unix_path(spec);
	if (path)
		return listen_unix(path, nonblock, user, group, err, errlen);

	char host[256];
	const char *port;
	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (!end || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof host) {
			snprintf(err, errlen, "'%s': expected [IPV6]:PORT", spec);
			return -1;
		}
		memcpy(host, spec + 1, (size_t)(end - spec - 1));
		host[end - spec - 1] = '\0';
		port = end + 2;
	} else {
		const char *colon = strrchr(spec, ':');
		if (!colon || (size_t)(colon - spec) >= sizeof host) {
			snprintf(err, errlen, "'%s': expected HOST:PORT or unix:/PATH", spec);
			return -1;
		}
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = '\0';
		port = colon + 1;
	}
	char *end;
	long pn = strtol(port, &end, 10);
	if (!*port || *end || pn < 1 || pn > 65535) {
		snprintf(err, errlen, "'%s': the port must be 1 to 65535", spec);
		return -1;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	                          .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res;
	int rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "'%s': %s", spec, gai_strerror(rc));
		return -1;
	}
	int fd = -1, one = 1;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, BACKLOG) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

int service_detach(int keep_stderr)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		if (!keep_stderr)
			dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	return chdir("/");
}

int service_write_pid(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		log_err("pid file %s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(f, "%d\n", (int)getpid());
	return fclose(f);
}

int service_drop_privileges(const char *user, const char *group)
{
	char err[256];
	uid_t uid;
	gid_t gid;
	if (!user || !*user)
		return 0;
	if (ids_of(user, group, &uid, &gid, err, sizeof err) < 0) {
		log_err("%s", err);
		return -1;
	}
	if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
		log_err("cannot switch to user '%s': %s", user, strerror(errno));
		return -1;
	}
	return 0;
}

void service_set_nofile(unsigned long max)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	rlim_t want = rl.rlim_max;
	if (max && (want == RLIM_INFINITY || want > max))
		want = max;
	if (want != rl.rlim_cur) {
		rl.rlim_cur = want;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}
