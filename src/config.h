/* config.h -- the effective configuration of a process.
 *
 * Sources, later ones winning: built-in defaults, the profile's defaults,
 * the file (INI: "[section]" then "key = value"; '#' or ';' comments), the
 * environment (the seeds' variable names), then command-line flags
 * (--port, ..., or --set section.key=value for any key). Every key is
 * described once in the table in config.c: its type, limits and whether it
 * is secret (masked by config_dump). An unknown key or bad value is an
 * error naming its origin ("aeolus.conf:12: ...").
 *
 * Durations are written "300ms", "20s", "5m"; a bare number is seconds.
 * Sizes are bytes, with an optional k or m suffix (powers of 1024). */
#ifndef AEOLUS_CONFIG_H
#define AEOLUS_CONFIG_H

#include <stddef.h>
#include <stdio.h>

struct config {
	/* [server] */
	char *bind;
	int port;
	char *profile;
	char *path;                  /* Socket.IO path, with both slashes */
	int workers;
	char *pid_file;
	char *user;
	char *group;
	unsigned shutdown_timeout_ms;
	unsigned max_connections;
	unsigned max_connections_per_ip;
	size_t connection_memory;    /* libmicrohttpd memory pool per connection */
	unsigned http_timeout_ms;    /* idle HTTP connection timeout */
	char *data_dir;              /* static files: <data_dir>/demo/ */
	char *profile_dir;           /* where profile NAME is NAME.json */
	/* [redis] */
	char *redis_url;             /* empty: no Redis */
	char *redis_prefix;
	/* [auth] */
	char *auth_token_prefix;
	char *auth_jwt_secret;
	char *auth_jwt_public_key;
	char *auth_jwt_algorithms;
	char *auth_jwt_audience;
	char *auth_jwt_issuer;
	unsigned auth_jwt_leeway_ms;
	int auth_anonymous;
	/* [rooms] */
	char *rooms_policy;          /* "pattern=policy, ..." */
	char *rooms_personal;        /* overrides the profile's, when set */
	char *rooms_roles;           /* "room=role role; room=role" overrides the profile's */
	int rooms_join_from_token;
	int rooms_max_per_socket;
	/* [channels] */
	char *channels_admin_roles;
	/* [messages] */
	int messages_echo_sender;
	size_t messages_max_content;
	/* [typing] */
	unsigned typing_ttl_ms;
	unsigned presence_reap_after_ms;   /* a dead instance's users go offline after this */
	unsigned recovery_window_ms;       /* connection state recovery; 0: off */
	/* [history] */
	int history_size;
	/* [limits] */
	int limits_event_rate;       /* events per second per connection (0: off) */
	int limits_event_burst;
	/* [events] */
	char *events_broadcast_allow;
	char *events_redis_channel;  /* where the backend publishes events (bus routes) */
	/* [api] */
	int api_enable;              /* aeolusd serves the HTTP API itself */
	char *api_secret;            /* the backend's Bearer secret (SERVER_SECRET) */
	size_t api_max_body;
	unsigned api_token_ttl_ms;   /* realtime tokens' default lifetime */
	/* [log] */
	int log_level;
	char *log_target;            /* "stderr" or "syslog" */
	/* [engineio] */
	unsigned ping_interval_ms;
	unsigned ping_timeout_ms;
	unsigned upgrade_timeout_ms;
	size_t max_payload;
	/* [socketio] */
	unsigned connect_timeout_ms;
	int max_attachments;
	/* [websocket] */
	size_t ws_max_queue;         /* unsent bytes before a slow consumer is cut off */
	int ws_nodelay;              /* TCP_NODELAY on WebSockets */
	/* [cors] */
	char *cors_origins;          /* comma-separated, or "*" */
	int cors_credentials;
	/* not keys: set by flags */
	int daemonize;
	char *file;
	/* not keys: the keys a source (file, environment, flag) set, by their
	 * index in config.c's table (config_given) */
	unsigned char given[128];
};

/* Reads the configuration. argv is the daemon's arguments after the flags
 * that are not configuration (-c, -d, --check-config...) have been taken
 * out: main() passes the assignments it collected. On error writes a
 * message with the origin to err and returns -1. */
struct config_source {
	const char *origin;          /* "file:line", "env PORT", "--port" */
	const char *key;
	const char *value;
};

void config_defaults(struct config *c);
void config_free(struct config *c);

/* Applies one assignment. Returns 0, or -1 with a message in err. */
int config_set(struct config *c, const char *key, const char *value,
               const char *origin, char *err, size_t errlen);

/* Reads an INI file and appends its assignments to *list (grown with
 * realloc; the strings are owned by the list: free with config_sources_free). */
int config_read_file(const char *path, struct config_source **list, size_t *n,
                     char *err, size_t errlen);
/* Appends the assignments made by the environment. */
int config_read_env(struct config_source **list, size_t *n);
int config_source_add(struct config_source **list, size_t *n, const char *origin,
                      const char *key, const char *value);
void config_sources_free(struct config_source *list, size_t n);

/* Applies the configuration defaults a profile implies (only the built-in
 * "conformance" has any; other profiles are files, loaded by profile.c). */
int config_apply_profile(struct config *c, const char *name, char *err, size_t errlen);

/* Is name a configuration key? */
int config_key_known(const char *name);
/* Has a source (the file, the environment, a flag) set key? */
int config_given(const struct config *c, const char *key);
/* A default of the profile's: sets key as config_set does, unless a source
 * set it (then returns 0 and changes nothing). */
int config_default(struct config *c, const char *key, const char *value, const char *origin,
                   char *err, size_t errlen);

/* The checks across keys that config_build makes (log.target's choices,
 * api.enable's secret), again: for a configuration that changed since,
 * such as by a profile's defaults; origin names where the change came from. */
int config_check(const struct config *c, const char *origin, char *err, size_t errlen);

/* Builds the effective configuration from the sources, in order. */
int config_build(struct config *c, struct config_source *list, size_t n,
                 char *err, size_t errlen);

/* Command-line flags, collected before the configuration is loaded:
 * config_flag for an option that names key, config_flag_set for
 * --set KEY=VALUE (-1 when arg has no '='). */
int config_flag(struct config_source **flags, size_t *n, const char *key, const char *value);
int config_flag_set(struct config_source **flags, size_t *n, const char *arg);

/* Builds c from file (NULL: none), then the environment, then flags, which
 * it frees. *path_set tells whether a source set server.path (a profile's
 * own path gives way to it). Returns 0, or -1 with a message in err. */
int config_load(struct config *c, const char *file, struct config_source *flags, size_t nflags,
                int *path_set, char *err, size_t errlen);

/* Writes every key with its effective value, secrets masked, as a valid file. */
void config_dump(const struct config *c, FILE *out);

/* Parsers, exposed for the unit tests. Return 0 or -1. */
int config_parse_duration_ms(const char *s, unsigned *ms);
int config_parse_size(const char *s, size_t *bytes);
int config_parse_bool(const char *s, int *b);

#endif
