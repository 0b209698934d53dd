/* fuzz_routes.c -- what the shipped profiles' bus routes make of arbitrary
 * messages (bus_routes.c): a message from Redis is hostile input, bounded
 * and parsed strictly, never read past its end.
 *
 * The input is a channel name, a newline, then the message. It is routed
 * through every subscription of the teloo, superbot and aeolus profiles;
 * the glob is also tried with the channel as the pattern. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus_routes.h"
#include "config.h"
#include "profile.h"

#ifndef PROFILE_DIR
#define PROFILE_DIR "etc/profiles"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = { "teloo", "superbot", "aeolus" };
static struct profile *profiles[3];
static struct routes *routes[3];
static struct config cfg;

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

static void init(void)
{
	char err[512];
	config_defaults(&cfg);
	for (int i = 0; i < 3; i++) {
		profiles[i] = profile_load(names[i], PROFILE_DIR, err, sizeof err);
		if (!profiles[i] || !(routes[i] = routes_new(profiles[i], &cfg, err, sizeof err))) {
			fprintf(stderr, "fuzz_routes: %s\n", err);
			abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct route_rooms rr = { user_room, role_rooms, NULL };
	static int ready;
	char channel[256], why[256];
	if (!ready) {
		init();
		ready = 1;
	}
	const uint8_t *nl = memchr(data, '\n', size < sizeof channel ? size : sizeof channel);
	if (!nl)
		return 0;
	size_t cl = (size_t)(nl - data);
	memcpy(channel, data, cl);
	channel[cl] = '\0';
	if (strlen(channel) != cl)
		return 0;                /* Redis hands over no NUL in a name we route */
	const char *msg = (const char *)nl + 1;
	size_t len = size - cl - 1;

	for (int i = 0; i < 3; i++)
		for (int pattern = 0; pattern < 2; pattern++) {
			const char *const *subs;
			size_t n = routes_subscriptions(routes[i], pattern, &subs);
			for (size_t k = 0; k < n; k++) {
				struct route_emit e;
				if (routes_route(routes[i], subs[k], pattern, channel, msg, len, 1700000000000ull,
				                 &rr, &e, why, sizeof why)) {
					if (!e.event || (!e.all && !e.nrooms) || e.nrooms > ROUTES_MAX_ROOMS ||
					    e.nexcept > ROUTES_MAX_ROOMS)
						abort();
					route_emit_clear(&e);
				}
			}
		}
	/* The channel as a pattern, the message (up to a NUL) as a name. */
	char name[1025];
	size_t nn = len < sizeof name - 1 ? len : sizeof name - 1;
	memcpy(name, msg, nn);
	name[nn] = '\0';
	struct route_cap caps[16];
	routes_glob(channel, name, caps, 16);
	return 0;
}
