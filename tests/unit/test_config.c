/* test_config.c -- the configuration: value parsers, assignments, the INI
 * reader, profiles and sources in order, and config_dump. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "config.h"

/* ------------------------------------------------------------------------
 * Value parsers */

static unsigned duration(const char *s)
{
	unsigned ms = 12345;
	ck_assert_msg(config_parse_duration_ms(s, &ms) == 0, "'%s' refused", s);
	return ms;
}

static void bad_duration(const char *s)
{
	unsigned ms = 12345;
	ck_assert_msg(config_parse_duration_ms(s, &ms) == -1, "'%s' accepted", s);
	ck_assert_uint_eq(ms, 12345);
}

START_TEST(parse_duration)
{
	ck_assert_uint_eq(duration("300ms"), 300);
	ck_assert_uint_eq(duration("20s"), 20000);
	ck_assert_uint_eq(duration("5"), 5000);
	ck_assert_uint_eq(duration("5m"), 300000);
	ck_assert_uint_eq(duration("2h"), 7200000);
	ck_assert_uint_eq(duration("0"), 0);
	ck_assert_uint_eq(duration("0ms"), 0);
	ck_assert_uint_eq(duration("4294967295ms"), 4294967295u);

	bad_duration("");
	bad_duration("ms");
	bad_duration("abc");
	bad_duration("5x");
	bad_duration("5 s");
	bad_duration(" 5s");
	bad_duration("5s ");
	bad_duration("-5s");
	bad_duration("+5s");
	bad_duration("1.5s");
	bad_duration("5sec");
	bad_duration("5S");
	/* Overflow, in the number or after the unit is applied. */
	bad_duration("4294967296ms");
	bad_duration("4294968s");
	bad_duration("71583m");
	bad_duration("99999999999999999999999999");
}
END_TEST

static size_t size(const char *s)
{
	size_t b = 12345;
	ck_assert_msg(config_parse_size(s, &b) == 0, "'%s' refused", s);
	return b;
}

static void bad_size(const char *s)
{
	size_t b = 12345;
	ck_assert_msg(config_parse_size(s, &b) == -1, "'%s' accepted", s);
	ck_assert_uint_eq(b, 12345);
}

START_TEST(parse_size)
{
	ck_assert_uint_eq(size("100"), 100);
	ck_assert_uint_eq(size("0"), 0);
	ck_assert_uint_eq(size("1k"), 1024);
	ck_assert_uint_eq(size("1K"), 1024);
	ck_assert_uint_eq(size("8k"), 8192);
	ck_assert_uint_eq(size("1m"), 1048576);
	ck_assert_uint_eq(size("3M"), 3 * 1048576);

	bad_size("");
	bad_size("k");
	bad_size("abc");
	bad_size("1g");
	bad_size("1kb");
	bad_size("1 k");
	bad_size(" 1k");
	bad_size("-1");
	bad_size("1.5k");
	bad_size("99999999999999999999999999");
	bad_size("18446744073709551615k");
}
END_TEST

START_TEST(parse_bool)
{
	static const char *const yes[] = { "yes", "on", "true", "1", "YES", "True" };
	static const char *const no[] = { "no", "off", "false", "0", "No", "OFF" };
	static const char *const neither[] = { "", "y", "n", "2", "maybe", "yes ", "enabled" };
	int b;

	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		b = -1;
		ck_assert_int_eq(config_parse_bool(yes[i], &b), 0);
		ck_assert_int_eq(b, 1);
	}
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
		b = -1;
		ck_assert_int_eq(config_parse_bool(no[i], &b), 0);
		ck_assert_int_eq(b, 0);
	}
	for (size_t i = 0; i < sizeof neither / sizeof neither[0]; i++) {
		b = -1;
		ck_assert_msg(config_parse_bool(neither[i], &b) == -1, "'%s' accepted", neither[i]);
		ck_assert_int_eq(b, -1);
	}
}
END_TEST

/* ------------------------------------------------------------------------
 * config_set */

START_TEST(set_values)
{
	struct config c;
	char err[256];

	config_defaults(&c);
	ck_assert_int_eq(c.port, 3000);
	ck_assert_uint_eq(c.ping_interval_ms, 25000);
	ck_assert_str_eq(c.path, "/socket.io/");

	ck_assert_int_eq(config_set(&c, "server.port", "8080", "test", err, sizeof err), 0);
	ck_assert_int_eq(c.port, 8080);
	ck_assert_int_eq(config_set(&c, "engineio.ping_interval", "1500ms", "test", err, sizeof err), 0);
	ck_assert_uint_eq(c.ping_interval_ms, 1500);
	ck_assert_int_eq(config_set(&c, "websocket.max_queue", "2m", "test", err, sizeof err), 0);
	ck_assert_uint_eq(c.ws_max_queue, 2 << 20);
	ck_assert_int_eq(config_set(&c, "cors.credentials", "yes", "test", err, sizeof err), 0);
	ck_assert_int_eq(c.cors_credentials, 1);
	ck_assert_int_eq(config_set(&c, "cors.origins", "https://a.example,https://b.example",
	                            "test", err, sizeof err), 0);
	ck_assert_str_eq(c.cors_origins, "https://a.example,https://b.example");
	ck_assert_int_eq(config_set(&c, "server.max_connections", "1000000", "test", err, sizeof err), 0);
	ck_assert_uint_eq(c.max_connections, 1000000);

	/* Every spelling of the path means the same prefix. */
	static const char *const paths[] = { "rt", "/rt", "rt/", "/rt/", "//rt//" };
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		ck_assert_int_eq(config_set(&c, "server.path", paths[i], "test", err, sizeof err), 0);
		ck_assert_str_eq(c.path, "/rt/");
	}
	ck_assert_int_eq(config_set(&c, "server.path", "a/b", "test", err, sizeof err), 0);
	ck_assert_str_eq(c.path, "/a/b/");
	config_free(&c);
}
END_TEST

/* An assignment that must fail; the message must name where it came
 * from and the key, and the configuration must be unchanged. */
static void set_fails(const char *key, const char *value)
{
	struct config c, before;
	char err[256] = "";

	config_defaults(&c);
	config_defaults(&before);
	ck_assert_msg(config_set(&c, key, value, "aeolus.conf:12", err, sizeof err) == -1,
	              "%s = '%s' accepted", key, value);
	ck_assert_msg(strncmp(err, "aeolus.conf:12: ", 16) == 0, "no origin in '%s'", err);
	ck_assert_msg(strstr(err, key) != NULL, "no key in '%s'", err);
	ck_assert_int_eq(c.port, before.port);
	ck_assert_uint_eq(c.ping_interval_ms, before.ping_interval_ms);
	ck_assert_str_eq(c.path, before.path);
	config_free(&c);
	config_free(&before);
}

START_TEST(set_errors)
{
	set_fails("server.nope", "1");
	set_fails("nope", "1");
	set_fails("port", "3000");                   /* no section */
	set_fails("server.port", "abc");
	set_fails("server.port", "");
	set_fails("server.port", "80x");
	set_fails("server.port", "65536");
	set_fails("server.port", "-1");
	set_fails("server.workers", "0");
	set_fails("engineio.ping_interval", "soon");
	set_fails("engineio.ping_interval", "5ms");  /* under the minimum */
	set_fails("engineio.ping_interval", "2h");   /* over the maximum */
	set_fails("engineio.max_payload", "1g");
	set_fails("engineio.max_payload", "10");
	set_fails("cors.credentials", "maybe");
	set_fails("log.level", "loud");
	set_fails("server.path", "/");
	set_fails("server.path", "");
	set_fails("server.path", "/a?b");
	set_fails("server.path", "/a b");
}
END_TEST

START_TEST(set_error_text)
{
	struct config c;
	char err[256];

	config_defaults(&c);
	ck_assert_int_eq(config_set(&c, "server.port", "abc", "--port", err, sizeof err), -1);
	ck_assert_str_eq(err, "--port: server.port: expected an integer from 0 to 65535, got 'abc'");
	ck_assert_int_eq(config_set(&c, "server.prot", "1", "environment PORT", err, sizeof err), -1);
	ck_assert_str_eq(err, "environment PORT: unknown key 'server.prot'");
	config_free(&c);
}
END_TEST

/* ------------------------------------------------------------------------
 * config_read_file */

static char tmp_path[512];

/* Writes text to a new temporary file; its name is in tmp_path. */
static const char *write_tmp(const char *text)
{
	const char *dir = getenv("TMPDIR");

	snprintf(tmp_path, sizeof tmp_path, "%s/aeolus-test-XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkstemp(tmp_path);
	ck_assert_int_ge(fd, 0);
	FILE *f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
	return tmp_path;
}

/* Reads text as a file. Returns what config_read_file returns. */
static int read_text(const char *text, struct config_source **list, size_t *n,
                     char *err, size_t errlen)
{
	const char *path = write_tmp(text);
	*list = NULL;
	*n = 0;
	err[0] = '\0';
	int rc = config_read_file(path, list, n, err, errlen);
	unlink(path);
	return rc;
}

static void check_source(const struct config_source *s, int line, const char *key,
                         const char *value)
{
	char origin[600];

	snprintf(origin, sizeof origin, "%s:%d", tmp_path, line);
	ck_assert_str_eq(s->origin, origin);
	ck_assert_str_eq(s->key, key);
	ck_assert_str_eq(s->value, value);
}

START_TEST(read_file)
{
	struct config_source *list;
	size_t n;
	char err[512];

	int rc = read_text(
		"# aeolus.conf\n"                              /* 1 */
		"; another comment\n"                          /* 2 */
		"\n"                                           /* 3 */
		"[server]\n"                                   /* 4 */
		"port = 8080\n"                                /* 5 */
		"  bind=127.0.0.1  \n"                         /* 6 */
		"\t# indented comment\n"                       /* 7 */
		"[ engineio ]\n"                               /* 8 */
		"ping_interval = 300ms\n"                      /* 9 */
		"[cors]\n"                                     /* 10 */
		"origins = \" https://a.example \"\n"          /* 11 */
		"credentials =\n"                              /* 12 */
		"[server]\n"                                   /* 13 */
		"pid_file = \"\"\n"                            /* 14 */
		"user = \"x\n",                                /* 15: no closing quote, no newline */
		&list, &n, err, sizeof err);
	ck_assert_msg(rc == 0, "refused: %s", err);
	ck_assert_uint_eq(n, 7);
	check_source(&list[0], 5, "server.port", "8080");
	check_source(&list[1], 6, "server.bind", "127.0.0.1");
	check_source(&list[2], 9, "engineio.ping_interval", "300ms");
	check_source(&list[3], 11, "cors.origins", " https://a.example ");
	check_source(&list[4], 12, "cors.credentials", "");
	check_source(&list[5], 14, "server.pid_file", "");
	check_source(&list[6], 15, "server.user", "\"x");
	config_sources_free(list, n);
}
END_TEST

START_TEST(read_file_appends)
{
	struct config_source *list = NULL;
	size_t n = 0;
	char err[512];

	ck_assert_int_eq(config_source_add(&list, &n, "--port", "server.port", "1"), 0);
	const char *path = write_tmp("[server]\nport = 2\n");
	ck_assert_int_eq(config_read_file(path, &list, &n, err, sizeof err), 0);
	unlink(path);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(list[0].origin, "--port");
	check_source(&list[1], 2, "server.port", "2");
	config_sources_free(list, n);
}
END_TEST

/* A file that must be refused with an error starting "file:line: " and
 * containing what. */
static void file_fails(const char *text, int line, const char *what)
{
	struct config_source *list;
	size_t n;
	char err[1024], want[600];

	ck_assert_msg(read_text(text, &list, &n, err, sizeof err) == -1, "accepted: %s", text);
	snprintf(want, sizeof want, "%s:%d: ", tmp_path, line);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "'%s' does not start with '%s'", err, want);
	ck_assert_msg(strstr(err, what) != NULL, "'%s' does not say '%s'", err, what);
	config_sources_free(list, n);
}

START_TEST(read_file_errors)
{
	file_fails("[server]\nport = 1\nprot = 2\n", 3, "prot");
	file_fails("[nope]\nport = 1\n", 2, "port");
	file_fails("port = 1\n", 1, "outside");
	file_fails("# comment\n\nport = 1\n[server]\n", 3, "port");
	file_fails("[server\nport = 1\n", 1, "section");
	file_fails("[]\n", 1, "section");
	file_fails("[server] port = 1\n", 1, "section");
	file_fails("server]\n", 1, "key = value");
	file_fails("[server]\nport\n", 2, "key = value");
}
END_TEST

START_TEST(read_file_missing)
{
	struct config_source *list = NULL;
	size_t n = 0;
	char err[512];

	ck_assert_int_eq(config_read_file("/nonexistent/aeolus.conf", &list, &n, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/aeolus.conf"));
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(read_file_long_line)
{
	struct config_source *list;
	size_t n;
	char err[512];
	static const char head[] = "[cors]\norigins = ";
	size_t len = 10000;
	char *text = malloc(sizeof head + len + 1);

	ck_assert_ptr_nonnull(text);
	memcpy(text, head, sizeof head - 1);
	memset(text + sizeof head - 1, 'a', len);
	strcpy(text + sizeof head - 1 + len, "\n");
	ck_assert_int_eq(read_text(text, &list, &n, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, ":2: "));
	config_sources_free(list, n);
	free(text);
}
END_TEST

/* ------------------------------------------------------------------------
 * config_build: profiles and the order of sources */

/* Builds a configuration from defaults and (key, value) pairs given as
 * sources in order. Returns config_build's result. */
static int build(struct config *c, char *err, size_t errlen, const char *const *kv)
{
	struct config_source *list = NULL;
	size_t n = 0;

	config_defaults(c);
	for (; kv[0]; kv += 2)
		ck_assert_int_eq(config_source_add(&list, &n, "test", kv[0], kv[1]), 0);
	int rc = config_build(c, list, n, err, errlen);
	config_sources_free(list, n);
	return rc;
}

START_TEST(build_default_profile)
{
	static const char *const none[] = { NULL };
	struct config c;
	char err[256];

	ck_assert_int_eq(build(&c, err, sizeof err, none), 0);
	ck_assert_str_eq(c.profile, "aeolus");
	ck_assert_uint_eq(c.ping_interval_ms, 25000);
	ck_assert_uint_eq(c.ping_timeout_ms, 20000);
	ck_assert_uint_eq(c.connect_timeout_ms, 45000);
	config_free(&c);
}
END_TEST

START_TEST(build_conformance_profile)
{
	static const char *const kv[] = { "server.profile", "conformance", NULL };
	struct config c;
	char err[256];

	ck_assert_int_eq(build(&c, err, sizeof err, kv), 0);
	ck_assert_str_eq(c.profile, "conformance");
	ck_assert_uint_eq(c.ping_interval_ms, 300);
	ck_assert_uint_eq(c.ping_timeout_ms, 200);
	ck_assert_uint_eq(c.connect_timeout_ms, 1000);
	ck_assert_uint_eq(c.max_payload, 1000000);
	ck_assert_int_eq(c.port, 3000);
	ck_assert_str_eq(c.cors_origins, "*");
	config_free(&c);
}
END_TEST

START_TEST(build_sources_override_profile)
{
	/* The profile gives defaults: every source wins over them, even one
	 * that comes before the source choosing the profile. */
	static const char *const kv[] = {
		"engineio.ping_timeout", "5s",
		"server.profile", "conformance",
		"engineio.ping_interval", "1s",
		"engineio.ping_interval", "2s",
		NULL,
	};
	struct config c;
	char err[256];

	ck_assert_int_eq(build(&c, err, sizeof err, kv), 0);
	ck_assert_uint_eq(c.ping_interval_ms, 2000);
	ck_assert_uint_eq(c.ping_timeout_ms, 5000);
	ck_assert_uint_eq(c.connect_timeout_ms, 1000);
	config_free(&c);
}
END_TEST

START_TEST(build_errors)
{
	static const char *const profile[] = { "server.profile", "", NULL };
	static const char *const value[] = { "server.port", "1", "server.port", "x", NULL };
	static const char *const target[] = { "log.target", "file", NULL };
	struct config c;
	char err[256];

	ck_assert_int_eq(build(&c, err, sizeof err, profile), -1);
	ck_assert_ptr_nonnull(strstr(err, "server.profile"));
	config_free(&c);
	ck_assert_int_eq(build(&c, err, sizeof err, value), -1);
	ck_assert_ptr_nonnull(strstr(err, "test: server.port"));
	config_free(&c);
	ck_assert_int_eq(build(&c, err, sizeof err, target), -1);
	ck_assert_ptr_nonnull(strstr(err, "log.target"));
	config_free(&c);
}
END_TEST

START_TEST(build_api)
{
	static const char *const none[] = { NULL };
	static const char *const on[] = { "api.enable", "yes", "api.secret", "k", "api.max_body", "1m",
	                                  "api.token_ttl", "90", NULL };
	static const char *const no_secret[] = { "api.enable", "yes", NULL };
	static const char *const small[] = { "api.max_body", "100", NULL };
	struct config c;
	char err[256];

	ck_assert_int_eq(build(&c, err, sizeof err, none), 0);
	ck_assert_int_eq(c.api_enable, 0);
	ck_assert_str_eq(c.api_secret, "");
	ck_assert_uint_eq(c.api_max_body, 64 * 1024);
	ck_assert_uint_eq(c.api_token_ttl_ms, 300000);
	config_free(&c);
	ck_assert_msg(build(&c, err, sizeof err, on) == 0, "%s", err);
	ck_assert_int_eq(c.api_enable, 1);
	ck_assert_uint_eq(c.api_max_body, 1024 * 1024);
	ck_assert_uint_eq(c.api_token_ttl_ms, 90000);
	config_free(&c);
	ck_assert_int_eq(build(&c, err, sizeof err, no_secret), -1);
	ck_assert_ptr_nonnull(strstr(err, "test: api.enable = yes needs api.secret"));
	config_free(&c);
	ck_assert_int_eq(build(&c, err, sizeof err, small), -1);
	ck_assert_ptr_nonnull(strstr(err, "api.max_body"));
	config_free(&c);
}
END_TEST

START_TEST(build_from_file_names_line)
{
	struct config_source *list;
	size_t n;
	struct config c;
	char err[512];

	ck_assert_int_eq(read_text("[server]\nport = 1\n\nworkers = many\n", &list, &n,
	                           err, sizeof err), 0);
	config_defaults(&c);
	ck_assert_int_eq(config_build(&c, list, n, err, sizeof err), -1);
	char want[600];
	snprintf(want, sizeof want, "%s:4: server.workers", tmp_path);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "'%s' does not start with '%s'", err, want);
	config_sources_free(list, n);
	config_free(&c);
}
END_TEST

START_TEST(read_env)
{
	struct config_source *list = NULL;
	size_t n = 0, found = 0;

	setenv("PORT", "4000", 1);
	setenv("LOG_LEVEL", "", 1);             /* empty: not an assignment */
	ck_assert_int_eq(config_read_env(&list, &n), 0);
	for (size_t i = 0; i < n; i++) {
		ck_assert_str_ne(list[i].origin, "environment LOG_LEVEL");
		if (strcmp(list[i].origin, "environment PORT") == 0) {
			ck_assert_str_eq(list[i].key, "server.port");
			ck_assert_str_eq(list[i].value, "4000");
			found++;
		}
	}
	ck_assert_uint_eq(found, 1);
	config_sources_free(list, n);
}
END_TEST

/* Seed 000's SERVER_SECRET and seed 004's realtime token variables, and
 * which of the JWT secrets wins: REALTIME_JWT_SECRET, then JWT_SECRET_KEY,
 * then SECRET_KEY (Flask's, the fallback). */
START_TEST(read_env_api)
{
	struct config_source *list = NULL;
	size_t n = 0;
	struct config c;
	char err[256];

	setenv("SERVER_SECRET", "srv", 1);
	setenv("SECRET_KEY", "flask", 1);
	setenv("REALTIME_JWT_TTL_SECONDS", "120", 1);
	setenv("REALTIME_JWT_AUDIENCE", "superbot-realtime", 1);
	setenv("REALTIME_JWT_ISSUER", "superbot", 1);
	ck_assert_int_eq(config_read_env(&list, &n), 0);
	config_defaults(&c);
	ck_assert_msg(config_build(&c, list, n, err, sizeof err) == 0, "%s", err);
	ck_assert_str_eq(c.api_secret, "srv");
	ck_assert_str_eq(c.auth_jwt_secret, "flask");
	ck_assert_uint_eq(c.api_token_ttl_ms, 120000);
	ck_assert_str_eq(c.auth_jwt_audience, "superbot-realtime");
	ck_assert_str_eq(c.auth_jwt_issuer, "superbot");
	config_free(&c);
	config_sources_free(list, n);

	list = NULL;
	n = 0;
	setenv("JWT_SECRET_KEY", "jwt", 1);
	setenv("REALTIME_JWT_SECRET", "realtime", 1);
	ck_assert_int_eq(config_read_env(&list, &n), 0);
	config_defaults(&c);
	ck_assert_msg(config_build(&c, list, n, err, sizeof err) == 0, "%s", err);
	ck_assert_str_eq(c.auth_jwt_secret, "realtime");
	config_free(&c);
	config_sources_free(list, n);
	const char *vars[] = { "SERVER_SECRET", "SECRET_KEY", "REALTIME_JWT_TTL_SECONDS",
	                       "REALTIME_JWT_AUDIENCE", "REALTIME_JWT_ISSUER", "JWT_SECRET_KEY",
	                       "REALTIME_JWT_SECRET" };
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		unsetenv(vars[i]);
}
END_TEST

/* Seed 002's variables: the Redis server by host, port, password and
 * database (REDIS_URL wins), and its gateway's CORS_ORIGINS. */
START_TEST(read_env_teloo)
{
	struct config_source *list = NULL;
	size_t n = 0;
	struct config c;
	char err[256];

	setenv("REDIS_HOST", "redis.local", 1);
	setenv("CORS_ORIGINS", "http://a.test,http://b.test", 1);
	ck_assert_int_eq(config_read_env(&list, &n), 0);
	config_defaults(&c);
	ck_assert_msg(config_build(&c, list, n, err, sizeof err) == 0, "%s", err);
	ck_assert_str_eq(c.redis_url, "redis://redis.local:6379");
	ck_assert_str_eq(c.cors_origins, "http://a.test,http://b.test");
	config_free(&c);
	config_sources_free(list, n);

	list = NULL;
	n = 0;
	setenv("REDIS_PORT", "6380", 1);
	setenv("REDIS_PASSWORD", "pw", 1);
	setenv("REDIS_DB", "2", 1);
	ck_assert_int_eq(config_read_env(&list, &n), 0);
	config_defaults(&c);
	ck_assert_msg(config_build(&c, list, n, err, sizeof err) == 0, "%s", err);
	ck_assert_str_eq(c.redis_url, "redis://:pw@redis.local:6380/2");
	config_free(&c);
	config_sources_free(list, n);

	list = NULL;
	n = 0;
	setenv("REDIS_URL", "redis://other:6379/0", 1);
	ck_assert_int_eq(config_read_env(&list, &n), 0);
	config_defaults(&c);
	ck_assert_msg(config_build(&c, list, n, err, sizeof err) == 0, "%s", err);
	ck_assert_str_eq(c.redis_url, "redis://other:6379/0");
	config_free(&c);
	config_sources_free(list, n);
	const char *vars[] = { "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB", "REDIS_URL",
	                       "CORS_ORIGINS" };
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		unsetenv(vars[i]);
}
END_TEST

/* ------------------------------------------------------------------------
 * config_dump */

static char *dump(const struct config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	ck_assert_ptr_nonnull(f);
	config_dump(c, f);
	ck_assert_int_eq(fclose(f), 0);
	return text;
}

/* Dumps c, reads the dump back as a file onto the defaults, and checks
 * that the result is c again: same values, and so the same dump. */
static void check_dump_round_trip(const struct config *c)
{
	struct config_source *list;
	size_t n;
	struct config back;
	char err[1024];
	char *text = dump(c);

	ck_assert_msg(read_text(text, &list, &n, err, sizeof err) == 0, "dump not readable: %s", err);
	config_defaults(&back);
	ck_assert_msg(config_build(&back, list, n, err, sizeof err) == 0, "dump refused: %s", err);
	ck_assert_int_eq(back.port, c->port);
	ck_assert_str_eq(back.path, c->path);
	ck_assert_str_eq(back.profile, c->profile);
	ck_assert_uint_eq(back.ping_interval_ms, c->ping_interval_ms);
	ck_assert_uint_eq(back.shutdown_timeout_ms, c->shutdown_timeout_ms);
	ck_assert_uint_eq(back.ws_max_queue, c->ws_max_queue);
	ck_assert_int_eq(back.log_level, c->log_level);
	ck_assert_int_eq(back.cors_credentials, c->cors_credentials);
	ck_assert_str_eq(back.cors_origins, c->cors_origins);
	char *again = dump(&back);
	ck_assert_str_eq(again, text);
	free(again);
	free(text);
	config_sources_free(list, n);
	config_free(&back);
}

START_TEST(dump_defaults)
{
	static const char *const none[] = { NULL };
	struct config c;
	char err[256];

	ck_assert_int_eq(build(&c, err, sizeof err, none), 0);
	check_dump_round_trip(&c);
	config_free(&c);
}
END_TEST

START_TEST(dump_changed)
{
	static const char *const kv[] = {
		"server.profile", "conformance",
		"server.bind", "127.0.0.1",
		"server.port", "8080",
		"server.path", "rt",
		"server.workers", "4",
		"server.pid_file", "/run/aeolus.pid",
		"server.user", "aeolus",
		"server.max_connections_per_ip", "50",
		"server.connection_memory", "16k",
		"server.shutdown_timeout", "1500ms",
		"log.level", "debug",
		"log.target", "syslog",
		"engineio.upgrade_timeout", "2m",
		"engineio.max_payload", "1m",
		"socketio.max_attachments", "0",
		"websocket.max_queue", "3m",
		"cors.origins", "https://a.example,https://b.example",
		"cors.credentials", "on",
		NULL,
	};
	struct config c;
	char err[256];

	ck_assert_msg(build(&c, err, sizeof err, kv) == 0, "%s", err);
	ck_assert_uint_eq(c.ping_interval_ms, 300);
	check_dump_round_trip(&c);
	config_free(&c);
}
END_TEST

START_TEST(dump_format)
{
	static const char *const none[] = { NULL };
	struct config c;
	char err[256];

	ck_assert_int_eq(build(&c, err, sizeof err, none), 0);
	char *text = dump(&c);
	ck_assert_msg(strncmp(text, "[server]\n", 9) == 0, "dump starts with '%.20s'", text);
	ck_assert_ptr_nonnull(strstr(text, "\nport = 3000\n"));
	ck_assert_ptr_nonnull(strstr(text, "\n[engineio]\nping_interval = 25s\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nconnection_memory = 8192\n"));
	ck_assert_ptr_nonnull(strstr(text, "\ncredentials = no\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nlevel = info\n"));
	free(text);
	config_free(&c);
}
END_TEST

START_TEST(dump_masks_secrets)
{
	static const char *const kv[] = {
		"auth.jwt_secret", "s3cret-signing-key",
		"redis.url", "redis://:hunter2@cache:6379",
		NULL,
	};
	struct config c;
	char err[256];

	ck_assert_msg(build(&c, err, sizeof err, kv) == 0, "%s", err);
	char *text = dump(&c);
	ck_assert_ptr_null(strstr(text, "s3cret"));
	ck_assert_ptr_null(strstr(text, "hunter2"));
	ck_assert_ptr_nonnull(strstr(text, "\njwt_secret = \"********\"\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nurl = \"********\"\n"));
	free(text);
	config_free(&c);
	static const char *const api[] = { "api.secret", "backend-s3cret", NULL };
	ck_assert_msg(build(&c, err, sizeof err, api) == 0, "%s", err);
	text = dump(&c);
	ck_assert_ptr_null(strstr(text, "backend-s3cret"));
	ck_assert_ptr_nonnull(strstr(text, "\n[api]\nenable = no\nsecret = \"********\"\n"));
	free(text);
	config_free(&c);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc;

	tc = tcase_create("parse");
	tcase_add_test(tc, parse_duration);
	tcase_add_test(tc, parse_size);
	tcase_add_test(tc, parse_bool);
	suite_add_tcase(s, tc);

	tc = tcase_create("set");
	tcase_add_test(tc, set_values);
	tcase_add_test(tc, set_errors);
	tcase_add_test(tc, set_error_text);
	suite_add_tcase(s, tc);

	tc = tcase_create("file");
	tcase_add_test(tc, read_file);
	tcase_add_test(tc, read_file_appends);
	tcase_add_test(tc, read_file_errors);
	tcase_add_test(tc, read_file_missing);
	tcase_add_test(tc, read_file_long_line);
	tcase_add_test(tc, read_env);
	tcase_add_test(tc, read_env_api);
	tcase_add_test(tc, read_env_teloo);
	suite_add_tcase(s, tc);

	tc = tcase_create("build");
	tcase_add_test(tc, build_default_profile);
	tcase_add_test(tc, build_conformance_profile);
	tcase_add_test(tc, build_sources_override_profile);
	tcase_add_test(tc, build_errors);
	tcase_add_test(tc, build_api);
	tcase_add_test(tc, build_from_file_names_line);
	suite_add_tcase(s, tc);

	tc = tcase_create("dump");
	tcase_add_test(tc, dump_defaults);
	tcase_add_test(tc, dump_changed);
	tcase_add_test(tc, dump_format);
	tcase_add_test(tc, dump_masks_secrets);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
