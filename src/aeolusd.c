/* aeolusd.c -- the realtime daemon: command line, start-up, the loop,
 * signals and shutdown.
 *
 * Start-up order: configuration (defaults, profile, file, environment,
 * flags), logging, the listening socket, daemonizing and privilege drop,
 * then the event base and the modules on it (run_worker). With
 * server.workers > 1 the process that bound the socket forks that many
 * workers and supervises them (workers.c); each runs run_worker() on the
 * inherited socket, so nothing that holds a connection or a loop is made
 * before the fork. In every process everything runs on one libevent
 * loop, with a single priority: the passes that flush output and free what
 * was closed (ws.c, eio.c) are events made active with event_active(), which
 * run after the callbacks already queued in the same loop iteration. (With
 * lower priorities they would starve while any I/O stays ready.) */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "api.h"
#include "api_http.h"
#include "bus_routes.h"
#include "cluster.h"
#include "config.h"
#include "app.h"
#include "conformance.h"
#include "eio.h"
#include "http.h"
#include "log.h"
#include "profile.h"
#include "redis.h"
#include "service.h"
#include "store.h"
#include "sio.h"
#include "stats.h"
#include "util.h"
#include "workers.h"
#include "ws.h"

static struct config cfg;
static struct profile *profile;      /* NULL for the built-in conformance profile */
static struct event_base *base;
static struct redis *redis;
static struct store *store;
static struct api *api;              /* api.enable = yes */
static struct bus_routes *bus;       /* the profile's bus routes */
static char demo_dir[4096];
static struct event *shutdown_timer;
static unsigned long long shutdown_deadline;
static int shutting_down;
static int retiring;                 /* 1: store_retire() asked, 2: done */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: aeolusd [options]\n"
		"  -c, --config FILE       read FILE (INI, see aeolus.conf(5))\n"
		"  -d, --daemonize         detach from the terminal\n"
		"  -p, --port PORT         listen on PORT (default 3000)\n"
		"  -b, --bind ADDR         listen on ADDR (default 0.0.0.0)\n"
		"  -P, --profile NAME      vocabulary profile (aeolus, conformance)\n"
		"  -l, --log-level LEVEL   error, warn, info or debug\n"
		"  -w, --workers N         run N worker processes on one socket (needs redis.url)\n"
		"      --pid-file FILE     write the process id to FILE\n"
		"  -s, --set KEY=VALUE     set any configuration key, e.g. engineio.ping_interval=10s\n"
		"  -t, --check-config      validate, print the effective configuration, exit\n"
		"  -v, --version           print the version and exit\n"
		"  -h, --help              print this help and exit\n");
}

/* --- operator endpoints (/stats and /metrics: stats.c) --- */

/* A document of the daemon's, with the profile's fields (stats.h). */
static enum MHD_Result reply_document(struct http_req *req, unsigned status, const char *path,
                                      json_object *doc)
{
	stats_profile_fields(path, doc);
	enum MHD_Result r = http_reply_json(req->conn, status,
	                                    json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN |
	                                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(doc);
	return r;
}

static enum MHD_Result on_root(struct http_req *req, const char *url, const char *method,
                               const char *upload, size_t *upload_size, void *ud)
{
	json_object *doc;
	if (*upload_size) {          /* read a body before answering, or MHD drops the answer */
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/") == 0) {
		doc = json_object_new_object();
		json_object_object_add(doc, "name", json_object_new_string("aeolus"));
		json_object_object_add(doc, "version", json_object_new_string(PACKAGE_VERSION));
		json_object_object_add(doc, "profile", json_object_new_string(cfg.profile));
		return reply_document(req, MHD_HTTP_OK, url, doc);
	}
	if (strcmp(url, "/health") == 0) {
		/* 503 while the Redis the state lives in is out of reach. The pid
		 * tells which worker answered. */
		struct eio_stats st;
		int down = redis && !redis_connected(redis);
		eio_get_stats(&st);
		doc = json_object_new_object();
		json_object_object_add(doc, "status", json_object_new_string(down ? "degraded" : "ok"));
		json_object_object_add(doc, "store", json_object_new_string(store ? store->ops->name
		                                                                  : "none"));
		if (redis)
			json_object_object_add(doc, "redis", json_object_new_string(down ? "down" : "up"));
		json_object_object_add(doc, "sessions", json_object_new_int64(st.sessions));
		json_object_object_add(doc, "pid", json_object_new_int((int)getpid()));
		return reply_document(req, down ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK, url, doc);
	}
	return http_reply_json(req->conn, MHD_HTTP_NOT_FOUND,
	                       "{\"error\":\"not_found\",\"message\":\"no such resource\"}");
}

/* --- the application: a profile on a store --- */

static int app_setup(void)
{
	char err[512];
	if (cluster_init(base, &cfg, err, sizeof err) < 0) {
		log_err("%s", err);
		return -1;
	}
	if (cfg.redis_url && *cfg.redis_url &&
	    !(redis = redis_new(base, cfg.redis_url, "redis", err, sizeof err))) {
		log_err("redis.url: %s", err);
		return -1;
	}
	/* With Redis configured, the shared state lives there (one connection
	 * of its own); without, in this process. */
	if (redis)
		store = store_redis_new(base, cfg.redis_url, cfg.redis_prefix, cluster_instance(),
		                        cfg.presence_reap_after_ms, err, sizeof err);
	else
		store = store_memory_new(base);
	if (store)
		store = stats_watch_store(store, redis);
	struct app *app = store ? app_start(base, &cfg, profile, store, redis, err, sizeof err) : NULL;
	if (!app || !(bus = bus_routes_start(base, &cfg, app, err, sizeof err))) {
		log_err("%s", err);
		return -1;
	}
	/* The backend's HTTP API on the same port: /chat/ and /api/. */
	if (cfg.api_enable) {
		if (!(api = api_new(base, &cfg, app, err, sizeof err)) || api_http_start(api) < 0) {
			log_err("%s", api ? "api: cannot add its routes" : err);
			return -1;
		}
		log_info("api: serving /chat/ and /api/ (max body %zu bytes)", cfg.api_max_body);
	}
	snprintf(demo_dir, sizeof demo_dir, "%s/demo", cfg.data_dir);
	return http_static("/demo/", demo_dir);
}

/* --- start-up --- */

static int listen_on(const char *addr, int port)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	                          .ai_flags = AI_PASSIVE | AI_NUMERICHOST };
	struct addrinfo *res;
	char portstr[16];
	int fd = -1, one = 1;

	snprintf(portstr, sizeof portstr, "%d", port);
	int rc = getaddrinfo(addr, portstr, &hints, &res);
	if (rc != 0) {
		log_err("server.bind: cannot use address '%s': %s", addr, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
		log_err("cannot listen on %s port %d: %s", addr, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* --- signals and shutdown --- */

static void on_retired(int err, void *ud)
{
	(void)ud;
	if (err)
		log_warn("store: this instance could not retire; its sockets will be reaped");
	retiring = 2;
}

static void on_shutdown_tick(evutil_socket_t fd, short what, void *arg)
{
	struct eio_stats st;
	eio_get_stats(&st);
	/* Once every socket is gone (and so removed from the store), the store
	 * takes this instance out of the cluster: nothing is left to reap. The
	 * API's requests waiting on the store finish first. */
	int idle = ws_count() == 0 && st.sessions == 0 && st.suspended == 0 &&
	           api_http_pending() == 0;
	if (idle && store && !retiring) {
		retiring = 1;
		store_retire(store, on_retired, NULL);
	}
	if ((idle && (!store || retiring == 2)) ||
	    mono_ms() >= shutdown_deadline) {
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
	log_info("%s: shutting down (at most %ums)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
	         cfg.shutdown_timeout_ms);
	http_quiesce();
	eio_close_all("server shutting down");
	shutdown_deadline = mono_ms() + cfg.shutdown_timeout_ms;
	shutdown_timer = evtimer_new(base, on_shutdown_tick, NULL);
	struct timeval tv = { 0, 20000 };
	evtimer_add(shutdown_timer, &tv);
}

/* --- serving: one event loop --- */

/* Serves on the listening socket fd until a shutdown signal: the event base,
 * the modules on it, Redis and the store are all made here, in the process
 * that runs the loop. Returns 0 after a shutdown, 1 if start-up failed
 * (logged; nothing is freed then, as the process ends). */
static int run_worker(int fd)
{
	/* A worker leaves SIGINT ignored (see workers.c): it stops on the
	 * parent's SIGTERM. */
	static const int signums[] = { SIGTERM, SIGHUP, SIGINT };
	size_t nsigs = workers_in_child() ? 2 : 3;
	struct event *sigs[3];

	struct event_config *ec = event_config_new();
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (!base) {
		log_err("cannot create the event loop");
		return 1;
	}
	ws_init(base);
	eio_init(base, &cfg);
	if (http_route("/", on_root, NULL) < 0 || stats_start(base, &cfg, profile) < 0)
		return 1;
	if (cfg.api_enable && !profile)
		log_warn("api.enable: the conformance profile serves no API");
	int rc = profile ? app_setup() : conformance_start(base, &cfg);
	if (rc < 0 || http_start(base, &cfg, fd) < 0) {
		log_err("start-up failed");
		return 1;
	}
	for (size_t i = 0; i < nsigs; i++) {
		sigs[i] = evsignal_new(base, signums[i], on_signal, NULL);
		event_add(sigs[i], NULL);
	}

	log_info("aeolusd %s listening on %s:%d, profile %s, path %s", PACKAGE_VERSION,
	         cfg.bind, cfg.port, cfg.profile, cfg.path);
	event_base_dispatch(base);

	eio_stop();
	api_http_stop();
	stats_stop();
	http_stop();
	for (size_t i = 0; i < nsigs; i++)
		event_free(sigs[i]);
	if (shutdown_timer)
		event_free(shutdown_timer);
	if (store)
		store_free(store);
	api_free(api);
	bus_routes_free(bus);
	redis_free(redis);
	event_base_free(base);
	return 0;
}

/* A forked worker (server.workers > 1); arg is the listening socket. */
static int worker_main(void *arg)
{
	int rc = run_worker(*(const int *)arg);
	if (rc == 0)
		log_info("worker stopped");
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "daemonize", no_argument, NULL, 'd' },
		{ "port", required_argument, NULL, 'p' },
		{ "bind", required_argument, NULL, 'b' },
		{ "profile", required_argument, NULL, 'P' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "workers", required_argument, NULL, 'w' },
		{ "pid-file", required_argument, NULL, 1 },
		{ "set", required_argument, NULL, 's' },
		{ "check-config", no_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct config_source *flags = NULL;
	size_t nflags = 0;
	const char *file = NULL;
	int check = 0, daemon = 0, opt;
	char err[512];

	config_defaults(&cfg);
	while ((opt = getopt_long(argc, argv, "c:dp:b:P:l:w:s:tvh", opts, NULL)) != -1) {
		const char *key = NULL;
		switch (opt) {
		case 'c': file = optarg; break;
		case 'd': daemon = 1; break;
		case 't': check = 1; break;
		case 'v': printf("aeolusd %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		case 'p': key = "server.port"; break;
		case 'b': key = "server.bind"; break;
		case 'P': key = "server.profile"; break;
		case 'l': key = "log.level"; break;
		case 'w': key = "server.workers"; break;
		case 1: key = "server.pid_file"; break;
		case 's':
			if (config_flag_set(&flags, &nflags, optarg) < 0) {
				fprintf(stderr, "aeolusd: --set: expected KEY=VALUE, got '%s'\n", optarg);
				return 2;
			}
			break;
		default: usage(stderr); return 2;
		}
		if (key)
			config_flag(&flags, &nflags, key, optarg);
	}
	if (optind < argc) {
		fprintf(stderr, "aeolusd: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	int path_set;
	if (config_load(&cfg, file, flags, nflags, &path_set, err, sizeof err) < 0) {
		fprintf(stderr, "aeolusd: %s\n", err);
		return 1;
	}
	if (strcmp(cfg.profile, "conformance") != 0 &&
	    !(profile = profile_load(cfg.profile, cfg.profile_dir, err, sizeof err))) {
		fprintf(stderr, "aeolusd: %s\n", err);
		return 1;
	}
	/* The profile's configuration defaults; the sources' values win. */
	if (profile && profile_apply_config(profile, &cfg, err, sizeof err) < 0) {
		fprintf(stderr, "aeolusd: %s\n", err);
		return 1;
	}
	/* Each worker would keep its own memory store: a client's requests,
	 * which may reach any worker, would each see different state. (Once
	 * the profile's defaults are in: they may set either key.) */
	if (cfg.workers > 1 && (!cfg.redis_url || !*cfg.redis_url)) {
		fprintf(stderr, "aeolusd: server.workers = %d needs the Redis store (redis.url): "
		        "each worker would have its own memory store\n", cfg.workers);
		return 1;
	}
	/* The profile's path is the default; server.path, when set, wins. */
	if (profile && profile->path && !path_set &&
	    config_set(&cfg, "server.path", profile->path, profile->file, err, sizeof err) < 0) {
		fprintf(stderr, "aeolusd: %s\n", err);
		return 1;
	}
	if (profile && app_check(&cfg, profile, err, sizeof err) < 0) {
		fprintf(stderr, "aeolusd: %s\n", err);
		return 1;
	}
	struct routes *routes = profile ? routes_new(profile, &cfg, err, sizeof err) : NULL;
	if (profile && !routes) {
		fprintf(stderr, "aeolusd: %s\n", err);
		return 1;
	}
	routes_free(routes);
	if (check) {
		config_dump(&cfg, stdout);
		if (profile && profile->nroutes)
			printf("\n# profile %s from %s: %zu client events, %zu bus route%s\n", profile->name,
			       profile->file, profile->nevents, profile->nroutes,
			       profile->nroutes == 1 ? "" : "s");
		else if (profile)
			printf("\n# profile %s from %s: %zu client events\n", profile->name, profile->file,
			       profile->nevents);
		return 0;
	}

	log_set_level(cfg.log_level);
	if (strcmp(cfg.log_target, "syslog") == 0)
		log_use_syslog("aeolusd");
	signal(SIGPIPE, SIG_IGN);
	service_set_nofile(0);

	int fd = listen_on(cfg.bind, cfg.port);
	if (fd < 0)
		return 1;
	if (daemon && service_detach(strcmp(cfg.log_target, "syslog") != 0) < 0) {
		log_err("cannot daemonize: %s", strerror(errno));
		return 1;
	}
	if (cfg.pid_file && *cfg.pid_file && service_write_pid(cfg.pid_file) < 0)
		return 1;
	if (service_drop_privileges(cfg.user, cfg.group) < 0)
		return 1;

	/* One process serves, or the workers do, each as that one would. */
	int rc = cfg.workers > 1 ? workers_supervise(cfg.workers, cfg.shutdown_timeout_ms,
	                                             worker_main, &fd)
	                         : run_worker(fd);
	if (rc != 0)
		return rc;
	profile_free(profile);
	if (cfg.pid_file && *cfg.pid_file)
		unlink(cfg.pid_file);
	log_info("stopped");
	config_free(&cfg);
	return 0;
}
