/* fuzz_profile.c -- the profile parser, its templates, its bus routes, and
 * the configuration file reader on arbitrary input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus_routes.h"
#include "config.h"
#include "profile.h"
#include "tmpl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void eval_all(struct profile *p)
{
	json_object *ctx = json_tokener_parse(
		"{\"req\":{\"channelId\":\"c\",\"n\":5,\"a\":[1,2]},\"user\":{\"id\":\"u\",\"name\":\"U\"},"
		"\"now\":{\"ms\":1700000000000},\"room\":\"r\",\"members\":[]}");
	for (size_t i = 0; i < p->nevents; i++) {
		const struct event_spec *ev = &p->events[i];
		json_object *out;
		const char *what;
		if (ev->args && tmpl_eval(ev->args, ctx, &out, &what) == TMPL_OK)
			json_object_put(out);
		for (size_t k = 0; k < ev->nemits; k++) {
			if (ev->emits[k].data && tmpl_eval(ev->emits[k].data, ctx, &out, &what) == TMPL_OK)
				json_object_put(out);
			free(tmpl_string(ev->emits[k].event, ctx));
		}
	}
	static const char *const docs[] = { "/", "/health", "/stats" };
	for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
		json_object *t = profile_document(p, docs[i]), *out;
		const char *what;
		if (t && tmpl_eval(t, ctx, &out, &what) == TMPL_OK)
			json_object_put(out);
	}
	json_object_put(ctx);
}

static char *user_room(void *ud, const char *id)
{
	(void)ud;
	size_t n = strlen(id) + 6;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "user_%s", id);
	return s;
}

static size_t role_rooms(void *ud, const char *role, char **out, size_t max)
{
	(void)ud;
	if (!max)
		return 0;
	out[0] = strdup(role);
	return out[0] ? 1 : 0;
}

/* The routes, given a few messages on each of their subscriptions. */
static void route_all(struct profile *p)
{
	static const char *const msgs[] = {
		"{\"event\":\"e\",\"data\":{\"a\":[1,2]},\"room\":\"r\",\"user\":[\"u\",2],\"role\":\"admin\"}",
		"{\"solicitud_id\":7,\"asesores_participantes\":[\"a\",\"b\"],\"payload\":{\"channel_id\":\"3\"}}",
		"[1,\"x\",null]",
		"null",
	};
	static const struct route_rooms rr = { user_room, role_rooms, NULL };
	char err[512];
	struct config c;
	config_defaults(&c);
	struct routes *r = routes_new(p, &c, err, sizeof err);
	for (int pattern = 0; r && pattern < 2; pattern++) {
		const char *const *subs;
		size_t n = routes_subscriptions(r, pattern, &subs);
		for (size_t i = 0; i < n; i++)
			for (size_t k = 0; k < sizeof msgs / sizeof msgs[0]; k++) {
				struct route_emit e;
				const char *ch = pattern ? "a.b:c" : subs[i];
				if (routes_route(r, subs[i], pattern, ch, msgs[k], strlen(msgs[k]), 1700000000000ull,
				                 &rr, &e, err, sizeof err))
					route_emit_clear(&e);
			}
	}
	routes_free(r);
	config_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	struct profile *p = profile_parse((const char *)data, size, "fuzz.json", err, sizeof err);
	if (p) {
		eval_all(p);
		route_all(p);
		profile_free(p);
	}

	/* The same bytes as a configuration file. */
	char path[] = "/tmp/fuzz-conf-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) == (ssize_t)size) {
		struct config_source *src = NULL;
		size_t n = 0;
		struct config c;
		config_defaults(&c);
		if (config_read_file(path, &src, &n, err, sizeof err) == 0)
			config_build(&c, src, n, err, sizeof err);
		config_sources_free(src, n);
		config_free(&c);
	}
	close(fd);
	unlink(path);
	return 0;
}
