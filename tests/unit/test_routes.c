/* test_routes.c -- bus routes (src/bus_routes.c): the glob and its
 * captures, and what a message becomes, with the shipped profiles' routes
 * and small ones written here; no Redis, no sockets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <check.h>

#include "bus_routes.h"
#include "config.h"
#include "profile.h"

#ifndef PROFILE_DIR
#define PROFILE_DIR "etc/profiles"
#endif

/* --- the glob --- */

static const struct { const char *pattern, *channel; int match; const char *caps; } globs[] = {
	{ "solicitud.*", "solicitud.created", 1, "created" },
	{ "solicitud.*", "solicitud.", 1, "" },
	{ "solicitud.*", "oferta.created", 0, NULL },
	{ "*.*", "a.b.c", 1, "a|b.c" },
	{ "*", "", 1, "" },
	{ "a?c", "abc", 1, "" },
	{ "a?c", "ac", 0, NULL },
	{ "a[bx]c", "axc", 1, "" },
	{ "a[^bx]c", "axc", 0, NULL },
	{ "a[a-c]c", "abc", 1, "" },
	{ "a[c-a]c", "abc", 1, "" },
	{ "a\\*c", "a*c", 1, "" },
	{ "a\\*c", "abc", 0, NULL },
	{ "realtime:events", "realtime:events", 1, "" },
	{ "x*y*z", "x1y2y3z", 1, "1|2y3" },
	{ "[*]*", "*ab", 1, "ab" },
};

START_TEST(glob_matches)
{
	struct route_cap caps[4];
	const char *ch = globs[_i].channel;
	int m = routes_glob(globs[_i].pattern, ch, caps, 4);
	ck_assert_msg(m == globs[_i].match, "%s on %s: %d", globs[_i].pattern, ch, m);
	if (!m)
		return;
	char got[64] = "";
	size_t k = 0;
	for (const char *p = globs[_i].pattern; *p; p++) {
		if (*p == '\\') {
			p++;
			continue;
		}
		if (*p == '[') {
			while (*p && *p != ']')
				p++;
			continue;
		}
		if (*p != '*')
			continue;
		snprintf(got + strlen(got), sizeof got - strlen(got), "%s%.*s", k ? "|" : "",
		         (int)caps[k].len, ch + caps[k].off);
		k++;
	}
	ck_assert_str_eq(got, globs[_i].caps);
}
END_TEST

START_TEST(glob_gives_up)
{
	char ch[1025];
	struct route_cap caps[16];
	memset(ch, 'a', sizeof ch - 1);
	ch[sizeof ch - 1] = '\0';
	/* exponential backtracking: stopped by the budget, not by the clock */
	ck_assert_int_eq(routes_glob("*a*a*a*a*a*a*a*a*b", ch, caps, 16), 0);
}
END_TEST

/* --- routing --- */

static struct config cfg;
static struct profile *prof;
static struct routes *routes;

static char *user_room(void *ud, const char *id)
{
	(void)ud;
	char *s = malloc(strlen(id) + 6);
	sprintf(s, "user_%s", id);
	return s;
}

/* admin: ADMIN ANALYST; advisor: ADVISOR; client: else */
static size_t role_rooms(void *ud, const char *role, char **out, size_t max)
{
	(void)ud;
	const char *r = strcasecmp(role, "admin") == 0 || strcasecmp(role, "analyst") == 0 ? "admin"
	                : strcasecmp(role, "advisor") == 0 ? "advisor" : "client";
	if (!max)
		return 0;
	out[0] = strdup(r);
	return 1;
}

static const struct route_rooms rr = { user_room, role_rooms, NULL };

static void load(const char *name)
{
	char err[512];
	config_defaults(&cfg);
	prof = profile_load(name, PROFILE_DIR, err, sizeof err);
	ck_assert_msg(prof != NULL, "%s", err);
	routes = routes_new(prof, &cfg, err, sizeof err);
	ck_assert_msg(routes != NULL, "%s", err);
}

static void parse(const char *text)
{
	char err[512];
	config_defaults(&cfg);
	prof = profile_parse(text, strlen(text), "test.json", err, sizeof err);
	ck_assert_msg(prof != NULL, "%s", err);
	routes = routes_new(prof, &cfg, err, sizeof err);
	ck_assert_msg(routes != NULL, "%s", err);
}

static void unload(void)
{
	routes_free(routes);
	profile_free(prof);
	config_free(&cfg);
}

/* Routes msg; the rooms sorted and joined with ' ' ("*" for all), or NULL. */
static struct route_emit em;
static char rooms[2048];

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *route(const char *sub, int pattern, const char *channel, const char *msg)
{
	char why[256];
	route_emit_clear(&em);
	if (!routes_route(routes, sub, pattern, channel, msg, strlen(msg), 1700000000000ull, &rr, &em,
	                  why, sizeof why))
		return NULL;
	qsort(em.rooms, em.nrooms, sizeof em.rooms[0], cmp);
	rooms[0] = '\0';
	if (em.all)
		strcat(rooms, "*");
	for (size_t i = 0; i < em.nrooms; i++)
		snprintf(rooms + strlen(rooms), sizeof rooms - strlen(rooms), "%s%s", i || em.all ? " " : "",
		         em.rooms[i]);
	return rooms;
}

static const char *data(void)
{
	return json_object_to_json_string_ext(em.args, JSON_C_TO_STRING_PLAIN);
}

START_TEST(teloo_routes)
{
	load("teloo");
	const char *const *v;
	ck_assert_uint_eq(routes_subscriptions(routes, 1, &v), 5);
	ck_assert_str_eq(v[0], "solicitud.*");
	ck_assert_uint_eq(routes_subscriptions(routes, 0, &v), 1);
	ck_assert_str_eq(v[0], "realtime:events");

	ck_assert_str_eq(route("solicitud.*", 1, "solicitud.created", "{\"solicitud_id\":7}"),
	                 "admin advisor solicitud_7");
	ck_assert_str_eq(em.event, "solicitud_created");
	ck_assert_str_eq(data(), "[{\"solicitud_id\":7}]");
	ck_assert_str_eq(route("solicitud.*", 1, "solicitud.updated", "{\"solicitud_id\":7}"),
	                 "admin solicitud_7");
	ck_assert_str_eq(route("solicitud.*", 1, "solicitud.oleada", "{}"), "admin advisor");
	ck_assert_str_eq(route("oferta.*", 1, "oferta.x", "{\"solicitud_id\":1,\"asesor_id\":42}"),
	                 "admin solicitud_1 user_42");
	ck_assert_str_eq(route("evaluacion.*", 1, "evaluacion.done",
	                       "{\"asesores_participantes\":[\"a\",2,{},\"\"]}"),
	                 "admin user_2 user_a");
	ck_assert_str_eq(route("cliente.*", 1, "cliente.new", "{\"cliente_id\":\"c\"}"), "admin user_c");
	ck_assert_str_eq(route("notificacion.*", 1, "notificacion.n", "{\"user_id\":\"u\",\"role\":\"ADMIN\"}"),
	                 "user_u");
	ck_assert_str_eq(route("notificacion.*", 1, "notificacion.n", "{\"role\":\"Analyst\"}"), "admin");
	ck_assert_str_eq(route("notificacion.*", 1, "notificacion.n", "{\"user_id\":0}"), "admin advisor");
	ck_assert_str_eq(em.event, "notificacion_n");
	/* the envelope */
	ck_assert_str_eq(route("realtime:events", 0, "realtime:events",
	                       "{\"event\":\"e\",\"data\":1,\"room\":[\"a\",\"b\"],\"user\":\"u\",\"role\":\"advisor\","
	                       "\"except\":\"x\"}"), "a advisor b user_u");
	ck_assert_str_eq(data(), "[1]");
	ck_assert_uint_eq(em.nexcept, 1);
	ck_assert_str_eq(em.except[0], "x");
	ck_assert_str_eq(route("realtime:events", 0, "realtime:events", "{\"event\":\"e\"}"), "*");
	ck_assert_str_eq(data(), "[]");   /* no data: no argument */
	ck_assert_ptr_null(route("realtime:events", 0, "realtime:events", "{\"event\":\"e\",\"namespace\":\"/x\"}"));
	ck_assert_ptr_null(route("realtime:events", 0, "realtime:events", "{\"event\":\"disconnect\"}"));
	ck_assert_ptr_null(route("realtime:events", 0, "realtime:events", "{\"data\":1}"));
	ck_assert_ptr_null(route("realtime:events", 0, "realtime:events", "{\"event\":\"e\""));
	ck_assert_ptr_null(route("realtime:events", 0, "realtime:events", "{\"event\":\"e\",\"room\":\"\"}"));   /* not everyone */
	/* through a subscription no route has */
	ck_assert_ptr_null(route("realtime:events", 1, "realtime:events", "{\"event\":\"e\"}"));
	unload();
}
END_TEST

START_TEST(superbot_routes)
{
	load("superbot");
	const char *ch = "realtime:events";
	ck_assert_str_eq(route(ch, 0, ch, "{\"event\":\"dm.read\",\"payload\":{\"conversation_id\":5}}"), "dm_5");
	ck_assert_str_eq(data(), "[{\"conversation_id\":5,\"username\":null,\"message_id\":null,"
	                         "\"read_at\":\"2023-11-14T22:13:20.000000Z\"}]");
	ck_assert_str_eq(route(ch, 0, ch, "{\"event\":\"user.notification\",\"payload\":{\"username\":\"bo\","
	                                  "\"data\":null}}"), "user_bo");
	ck_assert_str_eq(data(), "[{\"type\":\"generic\",\"data\":{},\"timestamp\":\"2023-11-14T22:13:20.000000Z\"}]");
	ck_assert_str_eq(route(ch, 0, ch, "{\"event\":\"channel.presence\",\"payload\":{\"channel_id\":\"12\"}}"),
	                 "channel_12");
	ck_assert_str_eq(data(), "[{\"channel_id\":12,\"participants\":[]}]");
	ck_assert_str_eq(route(ch, 0, ch, "{\"event\":\"channel.message\",\"payload\":{\"channel_id\":\"7\","
	                                  "\"message\":{\"id\":1},\"sender\":\"al\",\"x\":1}}"), "channel_7");
	ck_assert_str_eq(em.event, "channel.message");
	ck_assert_str_eq(data(), "[{\"channel_id\":7,\"message\":{\"id\":1},\"sender\":\"al\"}]");
	ck_assert_ptr_null(route(ch, 0, ch, "{\"event\":\"channel.message\",\"payload\":{\"message\":{}}}"));
	ck_assert_ptr_null(route(ch, 0, ch, "{\"event\":\"channel.presence\",\"payload\":{\"channel_id\":\"x\"}}"));
	ck_assert_str_eq(route(ch, 0, ch, "{\"event\":\"listing.new\"}"), "*");
	ck_assert_str_eq(em.event, "new_listing");
	ck_assert_ptr_null(route(ch, 0, ch, "{\"event\":\"nope\",\"payload\":{}}"));
	ck_assert_str_eq(route(ch, 0, ch, "{\"event\":\"nope\",\"user\":\"z\"}"), "user_z");
	unload();
}
END_TEST

START_TEST(route_forms)
{
	parse("{\"name\":\"t\",\"bus\":["
	      "{\"channel\":\"{redis.prefix}:*:*\",\"when\":[{\"!match.0\":[\"x\",\"y\"]},{\"msg.k\":[null,2]}],"
	      " \"event\":\"{match.0}-{match.1}\",\"data\":\"{msg}\",\"defaults\":{\"d\":{\"e\":[]},\"k\":\"{channel}\"},"
	      " \"to\":[{\"each\":\"msg.ids\",\"room\":\"r{item.id}\"},"
	      "        {\"first\":[{\"room\":\"never\",\"when\":\"msg.nope\"},{\"room\":\"f1\"},{\"room\":\"f2\"}]}]},"
	      "{\"channel\":\"{redis.prefix}:*:*\",\"event\":\"second\",\"to\":[{\"all\":true}]}"
	      "]}");
	const char *sub = "aeolus:*:*";
	ck_assert_str_eq(route(sub, 1, "aeolus:a:b", "{\"ids\":[{\"id\":1},{\"id\":\"2\"},{}],\"d\":{\"e\":1}}"),
	                 "f1 r1 r2");
	ck_assert_str_eq(em.event, "a-b");
	ck_assert_uint_eq(em.route, 0);
	ck_assert_str_eq(data(), "[{\"ids\":[{\"id\":1},{\"id\":\"2\"},{}],\"d\":{\"e\":1},\"k\":\"aeolus:a:b\"}]");
	ck_assert_str_eq(route(sub, 1, "aeolus:a:b", "{\"k\":2,\"d\":null}"), "f1");
	ck_assert_str_eq(data(), "[{\"k\":2,\"d\":{\"e\":[]}}]");
	/* k is 3: not null and not 2; match.0 is x: the second route */
	ck_assert_str_eq(route(sub, 1, "aeolus:a:b", "{\"k\":3}"), "*");
	ck_assert_uint_eq(em.route, 1);
	ck_assert_str_eq(route(sub, 1, "aeolus:x:b", "{}"), "*");
	ck_assert_str_eq(em.event, "second");
	/* a message that is not an object: no defaults, no members */
	ck_assert_str_eq(route(sub, 1, "aeolus:a:b", "[1]"), "f1");
	ck_assert_str_eq(data(), "[[1]]");
	ck_assert_str_eq(route(sub, 1, "aeolus:a:b", "null"), "f1");
	ck_assert_str_eq(data(), "[null]");
	unload();
}
END_TEST

START_TEST(route_limits)
{
	parse("{\"name\":\"t\",\"bus\":[{\"channel\":\"c\",\"event\":\"e\",\"data\":\"{int:msg.n}\","
	      "\"to\":[{\"room\":\"{msg.rooms}\"}]}]}");
	ck_assert_ptr_null(route("c", 0, "c", "{\"n\":\"abc\",\"rooms\":\"r\"}"));   /* conversion fails */
	size_t n = ROUTES_MAX_MESSAGE + 10;
	char *big = malloc(n + 1);
	memset(big, ' ', n);
	memcpy(big, "{\"rooms\":\"r\"}", 13);
	big[n] = '\0';
	char why[128];
	ck_assert_int_eq(routes_route(routes, "c", 0, "c", big, n, 0, &rr, &em, why, sizeof why), 0);
	ck_assert_str_eq(why, "too large");
	/* at most ROUTES_MAX_ROOMS rooms */
	char *many = malloc(20 * 1000);
	strcpy(many, "{\"rooms\":[");
	for (int i = 0; i < 1000; i++)
		sprintf(many + strlen(many), "%s\"r%d\"", i ? "," : "", i);
	strcat(many, "]}");
	ck_assert_ptr_nonnull(route("c", 0, "c", many));
	ck_assert_uint_eq(em.nrooms, ROUTES_MAX_ROOMS);
	route_emit_clear(&em);
	free(big);
	free(many);
	unload();
}
END_TEST

START_TEST(route_channel_config)
{
	const char *text = "{\"name\":\"t\",\"bus\":[{\"channel\":\"{events.redis_channel}\",\"event\":\"e\","
	                   "\"to\":[{\"all\":true}]}]}";
	char err[512];
	config_defaults(&cfg);
	prof = profile_parse(text, strlen(text), "test.json", err, sizeof err);
	ck_assert_ptr_nonnull(prof);
	ck_assert_int_eq(config_set(&cfg, "events.redis_channel", "mine", "test", err, sizeof err), 0);
	routes = routes_new(prof, &cfg, err, sizeof err);
	const char *const *v;
	ck_assert_uint_eq(routes_subscriptions(routes, 0, &v), 1);
	ck_assert_str_eq(v[0], "mine");
	routes_free(routes);
	ck_assert_int_eq(config_set(&cfg, "events.redis_channel", "", "test", err, sizeof err), 0);
	ck_assert_ptr_null(routes_new(prof, &cfg, err, sizeof err));
	ck_assert_msg(strstr(err, "bus route 1") != NULL, "%s", err);
	profile_free(prof);
	config_free(&cfg);
}
END_TEST

/* --- malformed routes: the file, the line (within the route) and why --- */

static const struct { const char *route, *err; } bad[] = {
	{ "{\"channel\": \"c\",\n \"event\": \"e\",\n \"to\": [{\"room\": \"r\"}], \"x\": 1}",
	  "test.json:6: bus route 2: unknown member \"x\"" },
	{ "{\"channel\": \"c\",\n \"event\": \"e\"}", "test.json:4: bus route 2: \"to\" (an array of targets) is required" },
	{ "{\"event\": \"e\", \"to\": [{\"all\": true}]}",
	  "test.json:4: bus route 2: \"channel\" (a channel name or pattern) is required" },
	{ "{\"channel\": \"c\", \"to\": [{\"all\": true}]}", "test.json:4: bus route 2: \"event\" (a string) is required" },
	{ "{\"channel\": \"c\",\n \"event\": \"e\",\n \"to\": [{\"room\": \"r\", \"user\": \"u\"}]}",
	  "test.json:4: bus route 2: a target needs one of room, user, role, all or first" },
	{ "{\"channel\": \"c\", \"event\": \"e\", \"to\": []}",
	  "test.json:4: bus route 2: \"to\" must be a non-empty array of targets" },
	{ "{\"channel\": \"c\", \"event\": \"e\",\n \"to\": [{\"all\": 1}]}", "test.json:5: bus route 2: \"all\" must be true" },
	{ "{\"channel\": \"c\", \"event\": \"e\", \"to\": [{\"all\": true}],\n \"except\": [{\"all\": true}]}",
	  "test.json:5: bus route 2: \"except\" cannot leave out everyone" },
	{ "{\"channel\": \"c\", \"event\": \"e\",\n \"to\": [{\"room\": \"r\", \"when\": \"a b\"}]}",
	  "test.json:5: bus route 2: \"when\": \"a b\" is not a context path" },
	{ "{\"channel\": \"c\", \"event\": \"e\", \"to\": [{\"room\": \"r\"}],\n \"when\": [[\"x\"]]}",
	  "test.json:5: bus route 2: \"when\" must be a path, an object of values, or an array of those" },
	{ "{\"channel\": \"c\", \"event\": \"e\",\n \"to\": [{\"all\": true, \"each\": \"x\"}]}",
	  "test.json:5: bus route 2: \"each\" goes with room, user or role" },
	{ "{\"channel\": \"c\", \"event\": \"e\", \"to\": [{\"all\": true}],\n \"data\": \"{x|\"}",
	  "test.json:5: bus route 2: unclosed '{' in \"{x|\"" },
	{ "{\"channel\": \"c\", \"event\": \"e\", \"to\": [{\"all\": true}],\n \"defaults\": 3}",
	  "test.json:5: bus route 2: \"defaults\" must be an object" },
	{ "{\"channel\": \"c\", \"event\": \"e\", \"to\": [{\"first\": [{\"first\": [{\"first\": [{\"first\": "
	  "[{\"first\": [{\"all\": true}]}]}]}]}]}]}", "test.json:4: bus route 2: \"first\" nested too deep" },
	{ "[1]", "test.json:4: bus route 2 must be an object" },
};

START_TEST(route_errors)
{
	char text[2048], err[512];
	snprintf(text, sizeof text, "{\"name\": \"t\",\n \"bus\": [\n  {\"channel\": \"ok\", \"event\": \"e\", "
	         "\"to\": [{\"room\": \"r\", \"when\": \"x\"}]},\n  %s\n ]\n}\n", bad[_i].route);
	struct profile *p = profile_parse(text, strlen(text), "test.json", err, sizeof err);
	ck_assert_ptr_null(p);
	ck_assert_str_eq(err, bad[_i].err);
}
END_TEST

/* The members for the operator endpoints and the auth choices. */
START_TEST(profile_members)
{
	char err[512];
	const char *text =
		"{\"name\": \"t\", \"auth\": {\"default_role\": \"CLIENT\", \"jwt_key\": \"algorithm\"},\n"
		" \"http\": {\"/\": {\"service\": \"x\"}, \"/stats\": {\"n\": \"{users.cluster}\"},\n"
		"          \"comment\": \"c\"},\n"
		" \"stats\": {\"roles\": [\"ADMIN\", \"CLIENT\"]}}\n";
	struct profile *p = profile_parse(text, strlen(text), "test.json", err, sizeof err);
	ck_assert_msg(p != NULL, "%s", err);
	ck_assert_str_eq(p->default_role, "CLIENT");
	ck_assert_int_eq(p->jwt_key, JWT_KEY_ALGORITHM);
	ck_assert_str_eq(json_object_to_json_string_ext(profile_document(p, "/stats"), JSON_C_TO_STRING_PLAIN),
	                 "{\"n\":\"{users.cluster}\"}");
	ck_assert_ptr_nonnull(profile_document(p, "/"));
	ck_assert_ptr_null(profile_document(p, "/health"));
	ck_assert_ptr_null(profile_document(p, "comment"));
	ck_assert_uint_eq(p->nstats_roles, 2);
	ck_assert_str_eq(p->stats_roles[1], "CLIENT");
	profile_free(p);
	/* the defaults */
	p = profile_parse("{\"name\": \"t\"}", 13, "test.json", err, sizeof err);
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_null(p->default_role);
	ck_assert_int_eq(p->jwt_key, JWT_KEY_PUBLIC);
	ck_assert_ptr_null(profile_document(p, "/"));
	ck_assert_uint_eq(p->nstats_roles, 0);
	profile_free(p);
}
END_TEST

/* --- the members for lists shared with another program: history, each --- */

START_TEST(peerprep_history)
{
	load("peerprep");
	ck_assert_ptr_nonnull(prof->history_key);
	ck_assert_str_eq(json_object_get_string(prof->history_key), "chat_history_{room}");
	ck_assert_uint_eq(prof->history_size, 100);
	const struct event_spec *join = profile_event(prof, "join");
	ck_assert_ptr_nonnull(join);
	ck_assert_uint_eq(join->nemits, 2);
	ck_assert_str_eq(join->emits[0].each, "history");
	ck_assert_ptr_null(join->emits[1].each);
	unload();
	load("aeolus");
	ck_assert_ptr_null(prof->history_key);
	ck_assert_uint_eq(prof->history_size, 0);
	unload();
}
END_TEST

static const struct { const char *member, *err; } bad_members[] = {
	{ "\"http\": {\"/metrics\": {}}", "test.json:2: http: unknown member \"/metrics\"" },
	{ "\"http\": {\"/\": \"x\"}", "test.json:2: http: \"/\" must be an object (of templates)" },
	{ "\"http\": {\"/stats\": {\"a\": \"{x|}\"}}", "test.json:2: http: bad expression {x|}" },
	{ "\"http\": []", "test.json:2: profile: \"http\" must be an object" },
	{ "\"stats\": {\"roles\": [\"A\", \"B\", \"A\"]}", "test.json:2: stats: \"roles\" names \"A\" twice" },
	{ "\"stats\": {\"roles\": [\"\"]}", "test.json:2: stats: a role in \"roles\" must have 1 to 128 bytes" },
	{ "\"stats\": {\"roles\": [1]}", "test.json:2: stats: \"roles\" must hold strings" },
	{ "\"stats\": {\"count\": 1}", "test.json:2: stats: unknown member \"count\"" },
	{ "\"auth\": {\"jwt_key\": \"both\"}", "test.json:2: auth: \"jwt_key\" must be \"public\" or \"algorithm\"" },
	{ "\"auth\": {\"default_role\": 1}", "test.json:2: auth: \"default_role\" must be a string" },
};

START_TEST(profile_member_errors)
{
	char text[512], err[512];
	snprintf(text, sizeof text, "{\"name\": \"t\",\n %s\n}\n", bad_members[_i].member);
	struct profile *p = profile_parse(text, strlen(text), "test.json", err, sizeof err);
	ck_assert_ptr_null(p);
	ck_assert_str_eq(err, bad_members[_i].err);
}
END_TEST

static const struct { const char *member, *err; } bad_lists[] = {
	{ "\"history\": 3", "test.json:2: profile: \"history\" must be an object" },
	{ "\"history\": {\"size\": 5}",
	  "test.json:2: history: \"key\" (a template of a list's key) is required" },
	{ "\"history\": {\"key\": \"\"}",
	  "test.json:2: history: \"key\" (a template of a list's key) is required" },
	{ "\"history\": {\"key\": \"h_{room\"}", "test.json:2: history: unclosed '{' in \"h_{room\"" },
	{ "\"history\": {\"key\": \"h\",\n \"size\": 0}",
	  "test.json:3: history: \"size\" must be from 1 to 100000" },
	{ "\"history\": {\"key\": \"h\", \"size\": \"5\"}",
	  "test.json:2: history: \"size\" must be a number" },
	{ "\"history\": {\"key\": \"h\",\n \"raw\": true}",
	  "test.json:3: history: unknown member \"raw\"" },
	{ "\"events\": {\"j\": {\"emit\": [{\"event\": \"e\",\n \"each\": \"a b\"}]}}",
	  "test.json:3: event \"j\": \"each\" must be a context path" },
	{ "\"events\": {\"j\": {\"emit\": [{\"event\": \"e\",\n \"each\": 1}]}}",
	  "test.json:3: event \"j\": \"each\" must be a context path" },
	{ "\"events\": {\"j\": {\"emit\": [{\"reply\": true,\n \"each\": \"history\"}]}}",
	  "test.json:3: event \"j\": \"each\" cannot go with \"reply\"" },
	/* An error is located in its own event or member, not at the first
	 * member of that name in the file. */
	{ "\"events\": {\"a\": {\"require\": [\"x\"], \"emit\": [{\"event\": \"e\", \"each\": \"h\"}]},\n"
	  " \"b\": {\"require\": [\"x||y\"]}}",
	  "test.json:3: event \"b\": \"require\": \"x||y\" must be field names separated by |" },
	{ "\"events\": {\"a\": {\"emit\": [{\"event\": \"e\", \"each\": \"h\"}]},\n"
	  " \"b\": {\"emit\": [{\"event\": \"e\", \"each\": \"a b\"}]}}",
	  "test.json:3: event \"b\": \"each\" must be a context path" },
	{ "\"events\": {\"j\": {\"args\": {\"history\": 5, \"size\": 0}}},\n"
	  " \"history\": {\"key\": \"h\", \"size\": 0}",
	  "test.json:3: history: \"size\" must be from 1 to 100000" },
	{ "\"rooms\": {\"roles\": {\"A\": \"a\"}},\n \"stats\": {\"roles\": [\"A\", \"A\"]}",
	  "test.json:3: stats: \"roles\" names \"A\" twice" },
};

START_TEST(list_member_errors)
{
	char text[1024], err[512];
	snprintf(text, sizeof text, "{\"name\": \"t\",\n %s\n}\n", bad_lists[_i].member);
	struct profile *p = profile_parse(text, strlen(text), "test.json", err, sizeof err);
	ck_assert_ptr_null(p);
	ck_assert_str_eq(err, bad_lists[_i].err);
}
END_TEST

/* --- "require" of a client event: fields, or alternatives "a|b" --- */

static const struct { const char *require, *err; } requires[] = {
	{ "[\"a\", \"b|c\", \"d|e|f\"]", NULL },
	{ "\"a|b\"", NULL },
	{ "[\"a\",\n \"b||c\"]", "test.json:4: event \"e\": \"require\": \"b||c\" must be field names separated by |" },
	{ "[\"|a\"]", "test.json:4: event \"e\": \"require\": \"|a\" must be field names separated by |" },
	{ "[\"a|\"]", "test.json:4: event \"e\": \"require\": \"a|\" must be field names separated by |" },
	{ "[\"\"]", "test.json:4: event \"e\": \"require\": \"\" must be field names separated by |" },
	{ "[\"a\", 1]", "test.json:4: event \"e\": \"require\" must hold strings" },
};

START_TEST(event_require)
{
	char text[512], err[512] = "";
	snprintf(text, sizeof text, "{\"name\": \"t\",\n \"events\": {\n  \"e\": {\"action\": \"none\",\n"
	         "   \"require\": %s}\n }\n}\n", requires[_i].require);
	struct profile *p = profile_parse(text, strlen(text), "test.json", err, sizeof err);
	if (!requires[_i].err) {
		ck_assert_msg(p != NULL, "%s: %s", requires[_i].require, err);
		profile_free(p);
		return;
	}
	ck_assert_ptr_null(p);
	ck_assert_str_eq(err, requires[_i].err);
}
END_TEST

/* A profile's "config": defaults under what the sources set. */
START_TEST(profile_config_defaults)
{
	char err[512];
	struct config_source *src = NULL;
	size_t n = 0;
	config_defaults(&cfg);
	config_source_add(&src, &n, "environment REALTIME_JWT_ISSUER", "auth.jwt_issuer", "mine");
	ck_assert_int_eq(config_build(&cfg, src, n, err, sizeof err), 0);
	config_sources_free(src, n);
	ck_assert(config_given(&cfg, "auth.jwt_issuer"));
	ck_assert(!config_given(&cfg, "auth.jwt_audience"));
	prof = profile_load("superbot", PROFILE_DIR, err, sizeof err);
	ck_assert_msg(prof != NULL, "%s", err);
	ck_assert_int_eq(profile_apply_config(prof, &cfg, err, sizeof err), 0);
	ck_assert_str_eq(cfg.auth_jwt_audience, "superbot-realtime");
	ck_assert_str_eq(cfg.auth_jwt_issuer, "mine");
	ck_assert_uint_eq(cfg.auth_jwt_leeway_ms, 10000);
	ck_assert_uint_eq(cfg.typing_ttl_ms, 6000);
	profile_free(prof);
	config_free(&cfg);

	const char *text = "{\"name\": \"t\", \"config\": {\"typing.ttl\": 7, \"api.enable\": true,"
	                   " \"auth.jwt_issuer\": \"i\"}}";
	config_defaults(&cfg);
	ck_assert_int_eq(config_set(&cfg, "api.secret", "s", "test", err, sizeof err), 0);
	prof = profile_parse(text, strlen(text), "t.json", err, sizeof err);
	ck_assert_msg(prof != NULL, "%s", err);
	ck_assert_int_eq(profile_apply_config(prof, &cfg, err, sizeof err), 0);
	ck_assert_uint_eq(cfg.typing_ttl_ms, 7000);
	ck_assert_int_eq(cfg.api_enable, 1);
	ck_assert_str_eq(cfg.auth_jwt_issuer, "i");
	profile_free(prof);
	config_free(&cfg);
}
END_TEST

/* The checks across keys hold for a profile's defaults as for the file's:
 * api.enable without a secret stops the start. */
START_TEST(profile_config_checked_across)
{
	char err[512];
	const char *text = "{\"name\": \"t\", \"config\": {\"api.enable\": true}}";
	config_defaults(&cfg);
	prof = profile_parse(text, strlen(text), "t.json", err, sizeof err);
	ck_assert_msg(prof != NULL, "%s", err);
	ck_assert_int_eq(profile_apply_config(prof, &cfg, err, sizeof err), -1);
	ck_assert_str_eq(err, "t.json: config: api.enable = yes needs api.secret (or SERVER_SECRET): "
	                      "the backend's calls carry it");
	profile_free(prof);
	config_free(&cfg);
}
END_TEST

static const struct { const char *config, *err; } bad_config[] = {
	{ "{\"typing.tll\": \"6s\"}",
	  "t.json:3: config: \"typing.tll\" is not a configuration key (see aeolus.conf(5))" },
	{ "{\"typing.ttl\": \"soon\"}",
	  "t.json:3: config: typing.ttl: expected a duration from 10ms to 3600s (e.g. 300ms, 20s, 5m), "
	  "got 'soon'" },
	{ "{\"server.profile\": \"x\"}", "t.json:3: config: \"server.profile\" cannot be set by a profile" },
	{ "{\"auth.jwt_leeway\": [10]}",
	  "t.json:3: config: \"auth.jwt_leeway\" must be a string, an integer or a boolean" },
	{ "[]", "t.json:2: profile: \"config\" must be an object" },
	{ "{\"log.target\": \"file\"}",
	  "t.json:3: config: log.target: expected stderr or syslog, got 'file'" },
};

START_TEST(profile_config_errors)
{
	char text[512], err[512];
	snprintf(text, sizeof text, "{\"name\": \"t\",\n \"config\":\n %s}\n", bad_config[_i].config);
	struct profile *p = profile_parse(text, strlen(text), "t.json", err, sizeof err);
	ck_assert_ptr_null(p);
	ck_assert_str_eq(err, bad_config[_i].err);
}
END_TEST

static Suite *routes_suite(void)
{
	Suite *s = suite_create("routes");
	TCase *tc = tcase_create("glob");
	tcase_add_loop_test(tc, glob_matches, 0, (int)(sizeof globs / sizeof globs[0]));
	tcase_add_test(tc, glob_gives_up);
	suite_add_tcase(s, tc);

	tc = tcase_create("routing");
	tcase_add_test(tc, teloo_routes);
	tcase_add_test(tc, superbot_routes);
	tcase_add_test(tc, route_forms);
	tcase_add_test(tc, route_limits);
	tcase_add_test(tc, route_channel_config);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_loop_test(tc, route_errors, 0, (int)(sizeof bad / sizeof bad[0]));
	tcase_add_loop_test(tc, event_require, 0, (int)(sizeof requires / sizeof requires[0]));
	tcase_add_loop_test(tc, profile_config_errors, 0,
	                    (int)(sizeof bad_config / sizeof bad_config[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("members");
	tcase_add_test(tc, profile_members);
	tcase_add_loop_test(tc, profile_member_errors, 0, (int)(sizeof bad_members / sizeof bad_members[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("lists");
	tcase_add_test(tc, peerprep_history);
	tcase_add_loop_test(tc, list_member_errors, 0, (int)(sizeof bad_lists / sizeof bad_lists[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("config");
	tcase_add_test(tc, profile_config_defaults);
	tcase_add_test(tc, profile_config_checked_across);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(routes_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
