/* config.c -- see config.h.
 *
 * One table describes every key; setting, validating and printing all walk
 * it, so a new key is one line here plus its field in struct config. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "log.h"

#ifndef AEOLUS_DATADIR
#define AEOLUS_DATADIR "/usr/local/share/aeolus"
#endif

enum ktype { K_STR, K_INT, K_BOOL, K_DURATION, K_SIZE, K_LOGLEVEL, K_PATH_PREFIX };

struct key {
	const char *name;            /* section.key */
	enum ktype type;
	size_t off;
	long long min, max;          /* K_INT, K_DURATION (ms), K_SIZE */
	int secret;
};

#define F(field) offsetof(struct config, field)

static const struct key keys[] = {
	{ "server.bind", K_STR, F(bind), 0, 0, 0 },
	{ "server.port", K_INT, F(port), 0, 65535, 0 },
	{ "server.profile", K_STR, F(profile), 0, 0, 0 },
	{ "server.path", K_PATH_PREFIX, F(path), 0, 0, 0 },
	{ "server.workers", K_INT, F(workers), 1, 256, 0 },
	{ "server.pid_file", K_STR, F(pid_file), 0, 0, 0 },
	{ "server.user", K_STR, F(user), 0, 0, 0 },
	{ "server.group", K_STR, F(group), 0, 0, 0 },
	{ "server.shutdown_timeout", K_DURATION, F(shutdown_timeout_ms), 0, 3600000, 0 },
	{ "server.max_connections", K_INT, F(max_connections), 1, 1000000, 0 },
	{ "server.max_connections_per_ip", K_INT, F(max_connections_per_ip), 0, 1000000, 0 },
	{ "server.connection_memory", K_SIZE, F(connection_memory), 2048, 1 << 20, 0 },
	{ "server.http_timeout", K_DURATION, F(http_timeout_ms), 1000, 3600000, 0 },
	{ "server.data_dir", K_STR, F(data_dir), 0, 0, 0 },
	{ "server.profile_dir", K_STR, F(profile_dir), 0, 0, 0 },
	{ "log.level", K_LOGLEVEL, F(log_level), 0, 0, 0 },
	{ "log.target", K_STR, F(log_target), 0, 0, 0 },
	{ "engineio.ping_interval", K_DURATION, F(ping_interval_ms), 10, 3600000, 0 },
	{ "engineio.ping_timeout", K_DURATION, F(ping_timeout_ms), 10, 3600000, 0 },
	{ "engineio.upgrade_timeout", K_DURATION, F(upgrade_timeout_ms), 10, 3600000, 0 },
	{ "engineio.max_payload", K_SIZE, F(max_payload), 64, 100 << 20, 0 },
	{ "socketio.connect_timeout", K_DURATION, F(connect_timeout_ms), 10, 3600000, 0 },
	{ "socketio.max_attachments", K_INT, F(max_attachments), 0, 1000, 0 },
	{ "websocket.max_queue", K_SIZE, F(ws_max_queue), 1024, 1 << 30, 0 },
	{ "websocket.nodelay", K_BOOL, F(ws_nodelay), 0, 0, 0 },
	{ "cors.origins", K_STR, F(cors_origins), 0, 0, 0 },
	{ "cors.credentials", K_BOOL, F(cors_credentials), 0, 0, 0 },
	{ "redis.url", K_STR, F(redis_url), 0, 0, 1 },
	{ "redis.prefix", K_STR, F(redis_prefix), 0, 0, 0 },
	{ "auth.token_prefix", K_STR, F(auth_token_prefix), 0, 0, 0 },
	{ "auth.jwt_secret", K_STR, F(auth_jwt_secret), 0, 0, 1 },
	{ "auth.jwt_public_key", K_STR, F(auth_jwt_public_key), 0, 0, 0 },
	{ "auth.jwt_algorithms", K_STR, F(auth_jwt_algorithms), 0, 0, 0 },
	{ "auth.jwt_audience", K_STR, F(auth_jwt_audience), 0, 0, 0 },
	{ "auth.jwt_issuer", K_STR, F(auth_jwt_issuer), 0, 0, 0 },
	{ "auth.jwt_leeway", K_DURATION, F(auth_jwt_leeway_ms), 0, 3600000, 0 },
	{ "auth.anonymous", K_BOOL, F(auth_anonymous), 0, 0, 0 },
	{ "rooms.policy", K_STR, F(rooms_policy), 0, 0, 0 },
	{ "rooms.personal", K_STR, F(rooms_personal), 0, 0, 0 },
	{ "rooms.roles", K_STR, F(rooms_roles), 0, 0, 0 },
	{ "rooms.join_from_token", K_BOOL, F(rooms_join_from_token), 0, 0, 0 },
	{ "rooms.max_per_socket", K_INT, F(rooms_max_per_socket), 1, 100000, 0 },
	{ "channels.admin_roles", K_STR, F(channels_admin_roles), 0, 0, 0 },
	{ "messages.echo_sender", K_BOOL, F(messages_echo_sender), 0, 0, 0 },
	{ "messages.max_content", K_SIZE, F(messages_max_content), 1, 1 << 24, 0 },
	{ "typing.ttl", K_DURATION, F(typing_ttl_ms), 10, 3600000, 0 },
	{ "presence.reap_after", K_DURATION, F(presence_reap_after_ms), 1000, 3600000, 0 },
	{ "socketio.recovery_window", K_DURATION, F(recovery_window_ms), 0, 86400000, 0 },
	{ "history.size", K_INT, F(history_size), 0, 100000, 0 },
	{ "limits.event_rate", K_INT, F(limits_event_rate), 0, 1000000, 0 },
	{ "limits.event_burst", K_INT, F(limits_event_burst), 1, 1000000, 0 },
	{ "events.broadcast_allow", K_STR, F(events_broadcast_allow), 0, 0, 0 },
	{ "events.redis_channel", K_STR, F(events_redis_channel), 0, 0, 0 },
	{ "api.enable", K_BOOL, F(api_enable), 0, 0, 0 },
	{ "api.secret", K_STR, F(api_secret), 0, 0, 1 },
	{ "api.max_body", K_SIZE, F(api_max_body), 1024, 16 << 20, 0 },
	{ "api.token_ttl", K_DURATION, F(api_token_ttl_ms), 1000, 30 * 86400000u, 0 },
};

/* The seeds' environment variables, each the alias of one key. */
static const struct { const char *env, *key; } env_keys[] = {
	{ "PORT", "server.port" },
	{ "CORS_ORIGIN", "cors.origins" },
	{ "CORS_ORIGINS", "cors.origins" },           /* seed 002's gateway's name */
	{ "LOG_LEVEL", "log.level" },
	{ "WS_MAX_CONNECTIONS", "server.max_connections" },
	{ "REDIS_URL", "redis.url" },
	{ "SOCKETIO_REDIS_URL", "redis.url" },
	{ "REALTIME_REDIS_URL", "redis.url" },
	{ "AUTH_TOKEN_PREFIX", "auth.token_prefix" },
	{ "SECRET_KEY", "auth.jwt_secret" },          /* the weakest: listed first */
	{ "JWT_SECRET_KEY", "auth.jwt_secret" },
	{ "JWT_ALGORITHM", "auth.jwt_algorithms" },
	{ "JWT_PUBLIC_KEY_PATH", "auth.jwt_public_key" },
	/* Seed 004's realtime tokens: REALTIME_JWT_SECRET, else SECRET_KEY. */
	{ "REALTIME_JWT_SECRET", "auth.jwt_secret" },
	{ "REALTIME_JWT_AUDIENCE", "auth.jwt_audience" },
	{ "REALTIME_JWT_ISSUER", "auth.jwt_issuer" },
	{ "REALTIME_JWT_TTL_SECONDS", "api.token_ttl" },
	{ "SERVER_SECRET", "api.secret" },
	{ "REDIS_EVENTS_CHANNEL", "events.redis_channel" },
};

_Static_assert(sizeof keys / sizeof keys[0] <= sizeof ((struct config *)0)->given,
               "struct config's given[] is too small for the keys");

static const struct key *find_key(const char *name)
{
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

int config_key_known(const char *name)
{
	return find_key(name) != NULL;
}

int config_given(const struct config *c, const char *key)
{
	const struct key *k = find_key(key);
	return k && c->given[k - keys];
}

int config_default(struct config *c, const char *key, const char *value, const char *origin,
                   char *err, size_t errlen)
{
	if (config_given(c, key))
		return 0;
	return config_set(c, key, value, origin, err, errlen);
}

int config_parse_duration_ms(const char *s, unsigned *ms)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)*s))
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	unsigned long long mul;
	if (errno)
		return -1;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "m") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else
		return -1;
	if (v > UINT_MAX / mul)
		return -1;
	*ms = (unsigned)(v * mul);
	return 0;
}

int config_parse_size(const char *s, size_t *bytes)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)*s))
		return -1;
	unsigned long long v = strtoull(s, &end, 10), mul = 1;
	if (errno)
		return -1;
	if (*end == 'k' || *end == 'K')
		mul = 1024, end++;
	else if (*end == 'm' || *end == 'M')
		mul = 1024 * 1024, end++;
	if (*end || v > SIZE_MAX / mul)
		return -1;
	*bytes = (size_t)(v * mul);
	return 0;
}

int config_parse_bool(const char *s, int *b)
{
	static const char *yes[] = { "yes", "on", "true", "1" }, *no[] = { "no", "off", "false", "0" };
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return *b = 1, 0;
		if (strcasecmp(s, no[i]) == 0)
			return *b = 0, 0;
	}
	return -1;
}

static int set_str(char **field, const char *value)
{
	char *dup = strdup(value);
	if (!dup)
		return -1;
	free(*field);
	*field = dup;
	return 0;
}

int config_set(struct config *c, const char *name, const char *value,
               const char *origin, char *err, size_t errlen)
{
	const struct key *k = find_key(name);
	char *field;
	long long v;
	char *end;

	if (!k) {
		snprintf(err, errlen, "%s: unknown key '%s'", origin, name);
		return -1;
	}
	field = (char *)c + k->off;
	switch (k->type) {
	case K_STR:
		if (set_str((char **)field, value) < 0)
			goto oom;
		return 0;
	case K_PATH_PREFIX: {
		/* "/socket.io", "socket.io/" and "/socket.io/" all mean "/socket.io/". */
		char tmp[256];
		const char *p = value;
		while (*p == '/')
			p++;
		size_t n = strlen(p);
		while (n && p[n - 1] == '/')
			n--;
		if (n == 0 || n > sizeof tmp - 3 || strpbrk(p, "?# \t")) {
			snprintf(err, errlen, "%s: %s: not a valid path: '%s'", origin, name, value);
			return -1;
		}
		snprintf(tmp, sizeof tmp, "/%.*s/", (int)n, p);
		if (set_str((char **)field, tmp) < 0)
			goto oom;
		return 0;
	}
	case K_INT:
		errno = 0;
		v = strtoll(value, &end, 10);
		if (errno || end == value || *end || v < k->min || v > k->max) {
			snprintf(err, errlen, "%s: %s: expected an integer from %lld to %lld, got '%s'",
			         origin, name, k->min, k->max, value);
			return -1;
		}
		if (k->off == F(max_connections) || k->off == F(max_connections_per_ip))
			*(unsigned *)field = (unsigned)v;
		else
			*(int *)field = (int)v;
		return 0;
	case K_BOOL:
		if (config_parse_bool(value, (int *)field) < 0) {
			snprintf(err, errlen, "%s: %s: expected yes or no, got '%s'", origin, name, value);
			return -1;
		}
		return 0;
	case K_DURATION: {
		unsigned ms;
		if (config_parse_duration_ms(value, &ms) < 0 || ms < k->min || ms > k->max) {
			snprintf(err, errlen, "%s: %s: expected a duration from %lldms to %llds "
			         "(e.g. 300ms, 20s, 5m), got '%s'", origin, name, k->min, k->max / 1000, value);
			return -1;
		}
		*(unsigned *)field = ms;
		return 0;
	}
	case K_SIZE: {
		size_t b;
		if (config_parse_size(value, &b) < 0 || (long long)b < k->min || (long long)b > k->max) {
			snprintf(err, errlen, "%s: %s: expected a size from %lld to %lld bytes "
			         "(k and m suffixes allowed), got '%s'", origin, name, k->min, k->max, value);
			return -1;
		}
		*(size_t *)field = b;
		return 0;
	}
	case K_LOGLEVEL: {
		int l = log_level_parse(value);
		if (l < 0) {
			snprintf(err, errlen, "%s: %s: expected error, warn, info or debug, got '%s'",
			         origin, name, value);
			return -1;
		}
		*(int *)field = l;
		return 0;
	}
	}
	return 0;
oom:
	snprintf(err, errlen, "%s: out of memory", origin);
	return -1;
}

void config_defaults(struct config *c)
{
	char err[256];
	static const char *const defaults[][2] = {
		{ "server.bind", "0.0.0.0" },
		{ "server.port", "3000" },
		{ "server.profile", "aeolus" },
		{ "server.path", "/socket.io/" },
		{ "server.workers", "1" },
		{ "server.shutdown_timeout", "10s" },
		{ "server.max_connections", "10000" },
		{ "server.max_connections_per_ip", "0" },
		{ "server.connection_memory", "8k" },
		{ "server.http_timeout", "60s" },
		{ "server.data_dir", AEOLUS_DATADIR },
		{ "server.profile_dir", AEOLUS_DATADIR "/profiles" },
		{ "redis.url", "" },
		{ "redis.prefix", "aeolus" },
		{ "auth.token_prefix", "" },
		{ "auth.jwt_secret", "" },
		{ "auth.jwt_public_key", "" },
		{ "auth.jwt_algorithms", "" },
		{ "auth.jwt_audience", "" },
		{ "auth.jwt_issuer", "" },
		{ "auth.jwt_leeway", "0" },
		{ "auth.anonymous", "no" },
		{ "rooms.policy", "*=open" },
		{ "rooms.personal", "" },
		{ "rooms.roles", "" },
		{ "rooms.join_from_token", "no" },
		{ "rooms.max_per_socket", "100" },
		{ "channels.admin_roles", "admin" },
		{ "messages.echo_sender", "no" },
		{ "messages.max_content", "10k" },
		{ "typing.ttl", "6s" },
		{ "presence.reap_after", "30s" },
		{ "socketio.recovery_window", "0" },
		{ "history.size", "100" },
		{ "limits.event_rate", "50" },
		{ "limits.event_burst", "100" },
		{ "events.broadcast_allow", "" },
		{ "events.redis_channel", "realtime:events" },
		{ "api.enable", "no" },
		{ "api.secret", "" },
		{ "api.max_body", "64k" },
		{ "api.token_ttl", "300s" },
		{ "log.level", "info" },
		{ "log.target", "stderr" },
		{ "engineio.ping_interval", "25s" },
		{ "engineio.ping_timeout", "20s" },
		{ "engineio.upgrade_timeout", "10s" },
		{ "engineio.max_payload", "1000000" },
		{ "socketio.connect_timeout", "45s" },
		{ "socketio.max_attachments", "10" },
		{ "websocket.max_queue", "1m" },
		{ "websocket.nodelay", "yes" },
		{ "cors.origins", "*" },
		{ "cors.credentials", "no" },
	};
	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
		if (config_set(c, defaults[i][0], defaults[i][1], "default", err, sizeof err) < 0)
			log_err("%s", err);
}

void config_free(struct config *c)
{
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (keys[i].type == K_STR || keys[i].type == K_PATH_PREFIX)
			free(*(char **)((char *)c + keys[i].off));
	free(c->file);
	memset(c, 0, sizeof *c);
}

int config_apply_profile(struct config *c, const char *name, char *err, size_t errlen)
{
	static const char *const conformance[][2] = {
		{ "server.port", "3000" },
		{ "engineio.ping_interval", "300ms" },
		{ "engineio.ping_timeout", "200ms" },
		{ "engineio.max_payload", "1000000" },
		{ "socketio.connect_timeout", "1000ms" },
		{ "cors.origins", "*" },
		/* The suites' ws clients drop a second frame read together with
		 * the first: let Nagle separate them (see ws.c). */
		{ "websocket.nodelay", "no" },
	};
	if (strcmp(name, "conformance") == 0) {
		for (size_t i = 0; i < sizeof conformance / sizeof conformance[0]; i++)
			if (config_set(c, conformance[i][0], conformance[i][1], "profile", err, errlen) < 0)
				return -1;
		return 0;
	}
	if (!*name) {
		snprintf(err, errlen, "server.profile: empty");
		return -1;
	}
	return 0;                    /* a profile file, checked when it is loaded */
}

int config_source_add(struct config_source **list, size_t *n, const char *origin,
                      const char *key, const char *value)
{
	struct config_source *l = realloc(*list, (*n + 1) * sizeof *l);
	if (!l)
		return -1;
	*list = l;
	l[*n].origin = strdup(origin);
	l[*n].key = strdup(key);
	l[*n].value = strdup(value);
	(*n)++;
	return l[*n - 1].origin && l[*n - 1].key && l[*n - 1].value ? 0 : -1;
}

void config_sources_free(struct config_source *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)list[i].origin);
		free((char *)list[i].key);
		free((char *)list[i].value);
	}
	free(list);
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int config_read_file(const char *path, struct config_source **list, size_t *n,
                     char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[4096], section[64] = "", origin[512], key[192];
	int lineno = 0, rc = 0;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof line, f)) {
		lineno++;
		snprintf(origin, sizeof origin, "%s:%d", path, lineno);
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(err, errlen, "%s: line too long", origin);
			rc = -1;
			break;
		}
		char *s = trim(line);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *close = strchr(s, ']');
			if (!close || close[1] != '\0' || close - s - 1 <= 0 ||
			    (size_t)(close - s - 1) >= sizeof section) {
				snprintf(err, errlen, "%s: malformed section header", origin);
				rc = -1;
				break;
			}
			*close = '\0';
			snprintf(section, sizeof section, "%s", trim(s + 1));
			continue;
		}
		char *eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, errlen, "%s: expected 'key = value'", origin);
			rc = -1;
			break;
		}
		*eq = '\0';
		char *k = trim(s), *v = trim(eq + 1);
		if (!*section) {
			snprintf(err, errlen, "%s: key '%s' outside a [section]", origin, k);
			rc = -1;
			break;
		}
		/* A value may be quoted to keep leading or trailing spaces. */
		size_t vl = strlen(v);
		if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
			v[vl - 1] = '\0';
			v++;
		}
		snprintf(key, sizeof key, "%s.%s", section, k);
		if (!find_key(key)) {
			snprintf(err, errlen, "%s: unknown key '%s' in section [%s]", origin, k, section);
			rc = -1;
			break;
		}
		if (config_source_add(list, n, origin, key, v) < 0) {
			snprintf(err, errlen, "%s: out of memory", origin);
			rc = -1;
			break;
		}
	}
	fclose(f);
	return rc;
}

int config_read_env(struct config_source **list, size_t *n)
{
	char origin[64];
	/* Seed 002 names the Redis server by host and port, with a password
	 * and a database number when they are set. */
	const char *host = getenv("REDIS_HOST");
	if (host && *host) {
		char url[1024];
		const char *port = getenv("REDIS_PORT"), *pw = getenv("REDIS_PASSWORD");
		const char *db = getenv("REDIS_DB");
		snprintf(url, sizeof url, "redis://%s%s%s%s:%s%s%s", pw && *pw ? ":" : "", pw && *pw ? pw : "",
		         pw && *pw ? "@" : "", host, port && *port ? port : "6379", db && *db ? "/" : "",
		         db && *db ? db : "");
		if (config_source_add(list, n, "environment REDIS_HOST", "redis.url", url) < 0)
			return -1;
	}
	for (size_t i = 0; i < sizeof env_keys / sizeof env_keys[0]; i++) {
		const char *v = getenv(env_keys[i].env);
		if (!v || !*v)
			continue;
		snprintf(origin, sizeof origin, "environment %s", env_keys[i].env);
		if (config_source_add(list, n, origin, env_keys[i].key, v) < 0)
			return -1;
	}
	return 0;
}

/* What no single key's value shows: log.target's choices, api.enable's
 * secret. The origins name where log.target and api.enable were set. */
static int check_across(const struct config *c, const char *log_origin, const char *api_origin,
                        char *err, size_t errlen)
{
	if (strcmp(c->log_target, "stderr") != 0 && strcmp(c->log_target, "syslog") != 0) {
		snprintf(err, errlen, "%s: log.target: expected stderr or syslog, got '%s'", log_origin,
		         c->log_target);
		return -1;
	}
	if (c->api_enable && (!c->api_secret || !*c->api_secret)) {
		snprintf(err, errlen, "%s: api.enable = yes needs api.secret (or SERVER_SECRET): "
		         "the backend's calls carry it", api_origin);
		return -1;
	}
	return 0;
}

int config_build(struct config *c, struct config_source *list, size_t n,
                 char *err, size_t errlen)
{
	const char *profile = c->profile;
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].key, "server.profile") == 0)
			profile = list[i].value;
	if (config_apply_profile(c, profile, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (config_set(c, list[i].key, list[i].value, list[i].origin, err, errlen) < 0)
			return -1;
		c->given[find_key(list[i].key) - keys] = 1;
	}
	const char *log_origin = "default", *api_origin = "default";
	for (size_t i = 0; i < n; i++) {
		if (strcmp(list[i].key, "log.target") == 0)
			log_origin = list[i].origin;
		if (strcmp(list[i].key, "api.enable") == 0)
			api_origin = list[i].origin;
	}
	return check_across(c, log_origin, api_origin, err, errlen);
}

int config_check(const struct config *c, const char *origin, char *err, size_t errlen)
{
	return check_across(c, origin, origin, err, errlen);
}

void config_dump(const struct config *c, FILE *out)
{
	char section[64] = "";
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		const struct key *k = &keys[i];
		const char *dot = strchr(k->name, '.');
		const char *field = (const char *)c + k->off;
		if (strncmp(section, k->name, (size_t)(dot - k->name)) != 0 ||
		    section[dot - k->name] != '\0') {
			snprintf(section, sizeof section, "%.*s", (int)(dot - k->name), k->name);
			fprintf(out, "%s[%s]\n", i ? "\n" : "", section);
		}
		fprintf(out, "%s = ", dot + 1);
		switch (k->type) {
		case K_STR:
		case K_PATH_PREFIX: {
			const char *s = *(char *const *)field;
			/* Quoted, so that leading or trailing spaces survive a re-read. */
			if (k->secret && s && *s)
				fputs("\"********\"", out);
			else
				fprintf(out, "\"%s\"", s ? s : "");
			break;
		}
		case K_INT:
			if (k->off == F(max_connections) || k->off == F(max_connections_per_ip))
				fprintf(out, "%u", *(const unsigned *)field);
			else
				fprintf(out, "%d", *(const int *)field);
			break;
		case K_BOOL:
			fputs(*(const int *)field ? "yes" : "no", out);
			break;
		case K_DURATION: {
			unsigned ms = *(const unsigned *)field;
			if (ms % 1000)
				fprintf(out, "%ums", ms);
			else
				fprintf(out, "%us", ms / 1000);
			break;
		}
		case K_SIZE:
			fprintf(out, "%zu", *(const size_t *)field);
			break;
		case K_LOGLEVEL:
			fputs(log_level_name(*(const int *)field), out);
			break;
		}
		fputc('\n', out);
	}
}

int config_flag(struct config_source **flags, size_t *n, const char *key, const char *value)
{
	char origin[96];
	snprintf(origin, sizeof origin, "command line (%s)", key);
	return config_source_add(flags, n, origin, key, value);
}

int config_flag_set(struct config_source **flags, size_t *n, const char *arg)
{
	const char *eq = strchr(arg, '=');
	char origin[300];
	if (!eq)
		return -1;
	char *key = strndup(arg, (size_t)(eq - arg));
	if (!key)
		return -1;
	snprintf(origin, sizeof origin, "--set %s", key);
	int rc = config_source_add(flags, n, origin, key, eq + 1);
	free(key);
	return rc;
}

int config_load(struct config *c, const char *file, struct config_source *flags, size_t nflags,
                int *path_set, char *err, size_t errlen)
{
	struct config_source *src = NULL;
	size_t nsrc = 0;
	if (file && config_read_file(file, &src, &nsrc, err, errlen) < 0) {
		config_sources_free(flags, nflags);
		return -1;
	}
	config_read_env(&src, &nsrc);
	for (size_t i = 0; i < nflags; i++)
		config_source_add(&src, &nsrc, flags[i].origin, flags[i].key, flags[i].value);
	config_sources_free(flags, nflags);
	int rc = config_build(c, src, nsrc, err, errlen);
	*path_set = 0;
	for (size_t i = 0; i < nsrc; i++)
		*path_set |= strcmp(src[i].key, "server.path") == 0;
	config_sources_free(src, nsrc);
	if (rc == 0 && file)
		c->file = strdup(file);
	return rc;
}
