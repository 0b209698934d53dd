/* aeolus-api.c -- the backend's HTTP API (SPEC 7) as an SCGI and FastCGI
 * responder behind a web server: command line, start-up, the loop,
 * signals and shutdown.
 *
 * Stateless: the state is in Redis and the sockets are on the aeolusd
 * instances. The process runs the application layer (app.h) with the
 * configuration's profile on the Redis store, and a Socket.IO server that
 * has no Engine.IO listener and so no sockets: its broadcasts and
 * disconnects go out on the cluster bus (cluster.h, under its own
 * instance id), and the instances deliver them. Without redis.url it would
 * reach no one, so it does not start.
 *
 * One libevent loop runs the API; SCGI connections are served on it
 * (api_scgi.c), FastCGI requests are read and answered by threads that
 * hand them to it (api_fcgi.c). Start-up order: configuration, listening
 * sockets, detaching, pid file, privilege drop, libfcgi (whose signal
 * handlers ours then replace), the loop and the modules on it. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <event2/event.h>

#include "api.h"
#include "api_fcgi.h"
#include "api_scgi.h"
#include "app.h"
#include "cluster.h"
#include "config.h"
#include "log.h"
#include "profile.h"
#include "redis.h"
#include "service.h"
#include "store.h"
#include "util.h"

#define MAX_ADDRS 8
#define DEFAULT_THREADS 8
#define THREAD_JOIN_MS 2000          /* after the loop: threads stuck on a connection are left */

static struct config cfg;
static struct profile *profile;
static struct event_base *base;
static struct redis *redis;
static struct store *store;
static struct api *api;
static struct event *shutdown_timer;
static unsigned long long shutdown_deadline;
static int shutting_down;
static int retiring;                 /* 1: store_retire() asked, 2: done */
static int serving_fcgi;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: aeolus-api [options]\n"
		"      --scgi ADDR         serve SCGI on ADDR: HOST:PORT or unix:/PATH\n"
		"      --fcgi ADDR         serve FastCGI on ADDR; with neither --scgi nor --fcgi,\n"
		"                          FastCGI on the listening socket given as descriptor 0\n"
		"      --fcgi-threads N    threads per FastCGI socket (default %d)\n"
		"  -c, --config FILE       read FILE (INI, see aeolus.conf(5))\n"
		"  -d, --daemonize         detach from the terminal\n"
		"  -P, --profile NAME      vocabulary profile (aeolus, ...)\n"
		"  -l, --log-level LEVEL   error, warn, info or debug\n"
		"      --pid-file FILE     write the process id to FILE\n"
		"  -s, --set KEY=VALUE     set any configuration key, e.g. api.max_body=1m\n"
		"  -t, --check-config      validate, print the effective configuration, exit\n"
		"  -v, --version           print the version and exit\n"
		"  -h, --help              print this help and exit\n",
		DEFAULT_THREADS);
}

/* --- the application on the Redis store --- */

static int app_setup(void)
{
	char err[512];
	if (cluster_init(base, &cfg, err, sizeof err) < 0) {
		log_err("%s", err);
		return -1;
	}
	if (!(redis = redis_new(base, cfg.redis_url, "redis", err, sizeof err))) {
		log_err("redis.url: %s", err);
		return -1;
	}
	store = store_redis_new(base, cfg.redis_url, cfg.redis_prefix, cluster_instance(),
	                        cfg.presence_reap_after_ms, err, sizeof err);
	struct app *app = store ? app_start(base, &cfg, profile, store, redis, err, sizeof err) : NULL;
	if (!app || !(api = api_new(base, &cfg, app, err, sizeof err))) {
		log_err("%s", err);
		return -1;
	}
	return 0;
}

/* --- signals and shutdown --- */

static unsigned pending(void)
{
	return api_scgi_pending() + api_fcgi_pending();
}

static void on_retired(int err, void *ud)
{
	(void)ud;
	if (err)
		log_warn("store: this instance could not retire; it will be reaped");
	retiring = 2;
}

static void on_shutdown_tick(evutil_socket_t fd, short what, void *arg)
{
	/* Once every request is answered (and every FastCGI thread gone),
	 * the store takes the instance out of the cluster. */
	int idle = pending() == 0;
	if (idle && !retiring) {
		retiring = 1;
		store_retire(store, on_retired, NULL);
	}
	if ((idle && retiring == 2) || mono_ms() >= shutdown_deadline) {
		if (!idle)
			log_warn("shutdown: %u connections or threads still busy after "
			         "server.shutdown_timeout", pending());
		event_base_loopbreak(base);
		return;
	}
	struct timeval tv = { 0, 20000 };
	evtimer_add(shutdown_timer, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	if (sig == SIGHUP) {
		log_info("SIGHUP: nothing to reload yet");
		return;
	}
	if (shutting_down) {
		log_warn("second signal: exiting now");
		event_base_loopbreak(base);
		return;
	}
	shutting_down = 1;
	log_info("%s: shutting down (at most %ums)",
	         sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "SIGUSR1",
	         cfg.shutdown_timeout_ms);
	api_scgi_quiesce();
	api_fcgi_quiesce();
	shutdown_deadline = mono_ms() + cfg.shutdown_timeout_ms;
	shutdown_timer = evtimer_new(base, on_shutdown_tick, NULL);
	struct timeval tv = { 0, 0 };
	evtimer_add(shutdown_timer, &tv);
}

/* --- start-up --- */

struct addrs {
	const char *spec[MAX_ADDRS];
	int fd[MAX_ADDRS];
	int n;
};

static int add_addr(struct addrs *a, const char *spec, const char *opt)
{
	if (a->n == MAX_ADDRS) {
		fprintf(stderr, "aeolus-api: %s: at most %d addresses\n", opt, MAX_ADDRS);
		return -1;
	}
	a->spec[a->n] = spec;
	a->fd[a->n++] = -1;
	return 0;
}

static int open_addrs(struct addrs *a, int nonblock)
{
	char err[512];
	for (int i = 0; i < a->n; i++) {
		a->fd[i] = service_listen(a->spec[i], nonblock, cfg.user, cfg.group, err, sizeof err);
		if (a->fd[i] < 0) {
			log_err("%s", err);
			return -1;
		}
	}
	return 0;
}

static void unlink_addrs(const struct addrs *a)
{
	for (int i = 0; i < a->n; i++) {
		const char *path = service_unix_path(a->spec[i]);
		if (path && unlink(path) < 0 && errno != ENOENT)
			log_debug("%s: %s", path, strerror(errno));
	}
}

/* Runs the loop until a shutdown signal. Returns 0, or 1 if start-up
 * failed (logged; nothing is freed then, as the process ends). */
static int run(const struct addrs *scgi, const struct addrs *fcgi, int inherited,
               unsigned threads)
{
	static const int signums[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
	struct event *sigs[4];

	base = event_base_new();
	if (!base) {
		log_err("cannot create the event loop");
		return 1;
	}
	if (app_setup() < 0)
		return 1;
	for (int i = 0; i < scgi->n; i++)
		if (api_scgi_listen(base, api, &cfg, scgi->fd[i]) < 0) {
			log_err("scgi: cannot serve %s", scgi->spec[i]);
			return 1;
		}
	if (serving_fcgi) {
		for (int i = 0; i < fcgi->n; i++)
			api_fcgi_listen(fcgi->fd[i], threads, 1);
		if (inherited >= 0)
			api_fcgi_listen(inherited, threads, 0);
		if (api_fcgi_start(base, api, &cfg) < 0)
			return 1;
	}
	/* After FCGX_Init: libevent's handlers replace libfcgi's (SIGUSR1
	 * ends the process gracefully, as with libfcgi's own). */
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < 4; i++) {
		sigs[i] = evsignal_new(base, signums[i], on_signal, NULL);
		event_add(sigs[i], NULL);
	}

	char where[1024] = "";
	size_t off = 0;
	for (int i = 0; i < scgi->n && off < sizeof where; i++)
		off += (size_t)snprintf(where + off, sizeof where - off, "%sSCGI on %s", off ? ", " : "",
		                        scgi->spec[i]);
	for (int i = 0; i < fcgi->n && off < sizeof where; i++)
		off += (size_t)snprintf(where + off, sizeof where - off, "%sFastCGI on %s", off ? ", " : "",
		                        fcgi->spec[i]);
	if (inherited >= 0 && off < sizeof where)
		off += (size_t)snprintf(where + off, sizeof where - off, "%sFastCGI on descriptor 0",
		                        off ? ", " : "");
	log_info("aeolus-api %s: %s, profile %s, max body %zu bytes", PACKAGE_VERSION, where,
	         cfg.profile, cfg.api_max_body);
	if (serving_fcgi)
		log_info("fcgi: %u threads per socket", threads);
	event_base_dispatch(base);

	api_scgi_stop();
	api_fcgi_stop();
	api_fcgi_free(THREAD_JOIN_MS);
	for (size_t i = 0; i < 4; i++)
		event_free(sigs[i]);
	if (shutdown_timer)
		event_free(shutdown_timer);
	store_free(store);
	api_free(api);
	redis_free(redis);
	cluster_free();
	event_base_free(base);
	return 0;
}

int main(int argc, char **argv)
{
	enum { O_PID = 1, O_SCGI, O_FCGI, O_THREADS };
	static const struct option opts[] = {
		{ "scgi", required_argument, NULL, O_SCGI },
		{ "fcgi", required_argument, NULL, O_FCGI },
		{ "fcgi-threads", required_argument, NULL, O_THREADS },
		{ "config", required_argument, NULL, 'c' },
		{ "daemonize", no_argument, NULL, 'd' },
		{ "profile", required_argument, NULL, 'P' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "pid-file", required_argument, NULL, O_PID },
		{ "set", required_argument, NULL, 's' },
		{ "check-config", no_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct config_source *flags = NULL;
	size_t nflags = 0;
	struct addrs scgi = { .n = 0 }, fcgi = { .n = 0 };
	const char *file = NULL, *pid_file = NULL;
	unsigned threads = DEFAULT_THREADS;
	int check = 0, daemon = 0, opt;
	char err[512];

	config_defaults(&cfg);
	while ((opt = getopt_long(argc, argv, "c:dP:l:s:tvh", opts, NULL)) != -1) {
		const char *key = NULL;
		switch (opt) {
		case O_SCGI:
			if (add_addr(&scgi, optarg, "--scgi") < 0)
				return 2;
			break;
		case O_FCGI:
			if (add_addr(&fcgi, optarg, "--fcgi") < 0)
				return 2;
			break;
		case O_THREADS: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (!*optarg || *end || n < 1 || n > 256) {
				fprintf(stderr, "aeolus-api: --fcgi-threads: 1 to 256, not '%s'\n", optarg);
				return 2;
			}
			threads = (unsigned)n;
			break;
		}
		case O_PID: pid_file = optarg; break;
		case 'c': file = optarg; break;
		case 'd': daemon = 1; break;
		case 't': check = 1; break;
		case 'v': printf("aeolus-api %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		case 'P': key = "server.profile"; break;
		case 'l': key = "log.level"; break;
		case 's':
			if (config_flag_set(&flags, &nflags, optarg) < 0) {
				fprintf(stderr, "aeolus-api: --set: expected KEY=VALUE, got '%s'\n", optarg);
				return 2;
			}
			break;
		default: usage(stderr); return 2;
		}
		if (key)
			config_flag(&flags, &nflags, key, optarg);
	}
	if (optind < argc) {
		fprintf(stderr, "aeolus-api: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	int path_set;
	if (config_load(&cfg, file, flags, nflags, &path_set, err, sizeof err) < 0) {
		fprintf(stderr, "aeolus-api: %s\n", err);
		return 1;
	}

	/* What the API needs: Redis (its only way to the sockets), the
	 * server secret, and a vocabulary. */
	if (!cfg.redis_url || !*cfg.redis_url) {
		fprintf(stderr, "aeolus-api: redis.url (or REDIS_URL) is needed: the API reaches the "
		        "aeolusd instances through Redis\n");
		return 1;
	}
	if (!cfg.api_secret || !*cfg.api_secret) {
		fprintf(stderr, "aeolus-api: api.secret (or SERVER_SECRET) is needed: the backend's "
		        "Bearer secret\n");
		return 1;
	}
	if (strcmp(cfg.profile, "conformance") == 0) {
		fprintf(stderr, "aeolus-api: the conformance profile has no API: name a vocabulary "
		        "(server.profile)\n");
		return 1;
	}
	if (!(profile = profile_load(cfg.profile, cfg.profile_dir, err, sizeof err))) {
		fprintf(stderr, "aeolus-api: %s\n", err);
		return 1;
	}
	/* The profile's configuration defaults (as aeolusd takes them). */
	if (profile_apply_config(profile, &cfg, err, sizeof err) < 0) {
		fprintf(stderr, "aeolus-api: %s\n", err);
		return 1;
	}
	/* The Socket.IO path names the server on the bus: the instances'. */
	if (profile->path && !path_set &&
	    config_set(&cfg, "server.path", profile->path, profile->file, err, sizeof err) < 0) {
		fprintf(stderr, "aeolus-api: %s\n", err);
		return 1;
	}
	if (app_check(&cfg, profile, err, sizeof err) < 0) {
		fprintf(stderr, "aeolus-api: %s\n", err);
		return 1;
	}
	if (check) {
		config_dump(&cfg, stdout);
		printf("\n# profile %s from %s: %zu client events\n", profile->name, profile->file,
		       profile->nevents);
		return 0;
	}

	log_set_level(cfg.log_level);
	if (strcmp(cfg.log_target, "syslog") == 0)
		log_use_syslog("aeolus-api");
	signal(SIGPIPE, SIG_IGN);

	/* With no address, a web server or spawn-fcgi passed the listening
	 * socket as descriptor 0 (FCGI_LISTENSOCK_FILENO). */
	int inherited = -1;
	serving_fcgi = fcgi.n > 0;
	if (serving_fcgi || (scgi.n == 0 && fcgi.n == 0)) {
		if (api_fcgi_init() < 0) {
			log_err("fcgi: libfcgi did not initialise");
			return 1;
		}
		signal(SIGPIPE, SIG_IGN);
	}
	if (scgi.n == 0 && fcgi.n == 0) {
		if (!api_fcgi_inherited()) {
			fprintf(stderr, "aeolus-api: nothing to serve: give --scgi ADDR or --fcgi ADDR, "
			        "or start it from a web server or spawn-fcgi\n");
			return 2;
		}
		serving_fcgi = 1;
		/* Detaching points descriptor 0 at /dev/null. */
		inherited = daemon ? fcntl(0, F_DUPFD_CLOEXEC, 3) : 0;
		if (inherited < 0) {
			log_err("cannot keep the listening socket: %s", strerror(errno));
			return 1;
		}
	}
	/* libfcgi waits with select(): no descriptor may reach FD_SETSIZE. */
	service_set_nofile(serving_fcgi ? FD_SETSIZE : 0);
	if (open_addrs(&scgi, 1) < 0 || open_addrs(&fcgi, 0) < 0)
		return 1;
	if (daemon && service_detach(strcmp(cfg.log_target, "syslog") != 0) < 0) {
		log_err("cannot daemonize: %s", strerror(errno));
		return 1;
	}
	if (pid_file && service_write_pid(pid_file) < 0)
		return 1;
	if (service_drop_privileges(cfg.user, cfg.group) < 0)
		return 1;

	int rc = run(&scgi, &fcgi, inherited, threads);
	if (rc != 0)
		return rc;
	unlink_addrs(&scgi);
	unlink_addrs(&fcgi);
	profile_free(profile);
	if (pid_file)
		unlink(pid_file);
	log_info("stopped");
	config_free(&cfg);
	return 0;
}
