/* auth.c -- see auth.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "auth.h"
#include "jwt.h"
#include "log.h"

struct auth {
	const struct config *cfg;
	const struct profile *p;
	struct redis *redis;         /* borrowed; NULL when not configured */
	int redis_on;                /* Redis-token method */
	struct jwt_key *jwt_key;     /* NULL: JWT method off */
	struct jwt_verify_opts jwt_opts;
	int fallback;                /* seed 002's: a public-key algorithm, checked with the secret */
	int anonymous;
	char desc[128];
};

struct auth_req {
	struct auth *a;
	auth_cb cb;
	void *ud;
	int cancelled;
	char sid[32];
};

static unsigned parse_algs(const char *list)
{
	unsigned algs = 0;
	char *dup = strdup(list), *save = NULL;
	for (char *t = strtok_r(dup, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		unsigned a = jwt_alg_parse(t);
		if (!a) {
			algs = 0;
			break;
		}
		algs |= a;
	}
	free(dup);
	return algs;
}

/* Sets a's key (NULL: JWT off) and the algorithms of its kind; see the key
 * choice in auth.h. Returns 0, or -1 with a message in err. */
static int choose_key(struct auth *a, const struct config *cfg, const struct profile *p,
                      unsigned want, char *err, size_t errlen)
{
	const char *pub = cfg->auth_jwt_public_key, *secret = cfg->auth_jwt_secret;
	int has_pub = pub && *pub, has_secret = secret && *secret;
	struct stat st;

	if (p && p->jwt_key == JWT_KEY_ALGORITHM && has_secret) {
		/* Seed 002: HMAC names take the secret, whatever else is set; a
		 * public key that is named (or configured) but not there leaves
		 * the secret, with HS256. */
		int missing = has_pub && stat(pub, &st) < 0 && errno == ENOENT;
		if (want && !(want & ~JWT_ALGS_HMAC)) {
			has_pub = 0;
		} else if (missing || (!has_pub && want)) {
			log_warn("auth: %s%s%s: tokens are checked with the secret (HS256), as seed 002 does",
			         missing ? pub : "no public key is configured",
			         missing ? ": no such file" : " for ", missing ? "" : cfg->auth_jwt_algorithms);
			has_pub = 0;
			a->fallback = 1;
		}
	}
	if (has_pub) {
		if (!(a->jwt_key = jwt_key_pem_file(pub, err, errlen)))
			return -1;
		a->jwt_opts.algs = JWT_ALGS_ALL & ~JWT_ALGS_HMAC;
	} else if (has_secret) {
		a->jwt_key = jwt_key_hmac(secret, strlen(secret));
		a->jwt_opts.algs = JWT_ALGS_HMAC;
	}
	return 0;
}

struct auth *auth_new(const struct config *cfg, const struct profile *p, struct redis *redis,
                      char *err, size_t errlen)
{
	struct auth *a = calloc(1, sizeof *a);
	const char *algs = cfg->auth_jwt_algorithms;
	unsigned want = algs && *algs ? parse_algs(algs) : 0;
	if (!a)
		return NULL;
	a->cfg = cfg;
	a->p = p;
	a->redis = redis;
	a->redis_on = redis && cfg->auth_token_prefix && *cfg->auth_token_prefix;
	a->anonymous = cfg->auth_anonymous || (p && p->anonymous);

	if (algs && *algs && !want) {
		snprintf(err, errlen, "auth.jwt_algorithms: '%s' names an unknown algorithm (HS256, "
		         "HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)",
		         algs);
		free(a);
		return NULL;
	}
	if (choose_key(a, cfg, p, want, err, errlen) < 0) {
		free(a);
		return NULL;
	}
	/* JWT_ALGORITHM's default is HS256: a secret alone accepts only that. */
	unsigned deflt = a->jwt_opts.algs == JWT_ALGS_HMAC ? JWT_HS256 : a->jwt_opts.algs;
	if (a->fallback) {
		a->jwt_opts.algs = JWT_HS256;
	} else if (a->jwt_key && algs && *algs) {
		if (!(want & a->jwt_opts.algs)) {
			snprintf(err, errlen, "auth.jwt_algorithms: '%s' does not fit the configured key "
			         "(%s)", algs,
			         a->jwt_opts.algs == JWT_ALGS_HMAC ? "a secret: HS256, HS384, HS512"
			                                           : "a public key: RS*, PS*, ES*, EdDSA");
			auth_free(a);
			return NULL;
		}
		a->jwt_opts.algs &= want;
	} else {
		a->jwt_opts.algs = deflt;
	}
	a->jwt_opts.leeway = (long)(cfg->auth_jwt_leeway_ms / 1000);
	a->jwt_opts.audience = cfg->auth_jwt_audience && *cfg->auth_jwt_audience
	                       ? cfg->auth_jwt_audience : NULL;
	a->jwt_opts.issuer = cfg->auth_jwt_issuer && *cfg->auth_jwt_issuer
	                     ? cfg->auth_jwt_issuer : NULL;
	snprintf(a->desc, sizeof a->desc, "%s%s%s%s%s%s",
	         a->jwt_key ? "jwt" : "", a->fallback ? " (HS256 with the secret)" : "",
	         a->jwt_key && a->redis_on ? ", " : "",
	         a->redis_on ? "redis-token" : "",
	         (a->jwt_key || a->redis_on) && a->anonymous ? ", " : "",
	         a->anonymous ? "anonymous" : "");
	if (!a->desc[0])
		snprintf(a->desc, sizeof a->desc, "none (every connection is refused)");
	return a;
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	jwt_key_free(a->jwt_key);
	free(a);
}

const char *auth_describe(const struct auth *a)
{
	return a->desc;
}

static void user_free(struct auth_user *u)
{
	free(u->id);
	free(u->name);
	free(u->role);
	json_object_put(u->rooms);
	memset(u, 0, sizeof *u);
}

/* The first claim of names that is a string (or a number, for ids). */
static char *claim(json_object *claims, char *const *names, size_t n, int numbers)
{
	for (size_t i = 0; i < n; i++) {
		json_object *v;
		if (!json_object_object_get_ex(claims, names[i], &v))
			continue;
		if (json_object_is_type(v, json_type_string) && json_object_get_string_len(v) > 0)
			return strdup(json_object_get_string(v));
		if (numbers && json_object_is_type(v, json_type_int))
			return strdup(json_object_get_string(v));
	}
	return NULL;
}

static json_object *claim_rooms(json_object *claims, char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		json_object *v;
		if (!json_object_object_get_ex(claims, names[i], &v) ||
		    !json_object_is_type(v, json_type_array))
			continue;
		json_object *rooms = json_object_new_array();
		for (size_t k = 0; k < json_object_array_length(v); k++) {
			json_object *r = json_object_array_get_idx(v, k);
			if (json_object_is_type(r, json_type_string) || json_object_is_type(r, json_type_int))
				json_object_array_add(rooms, json_object_new_string(json_object_get_string(r)));
		}
		return rooms;
	}
	return NULL;
}

static char *const default_user_id[] = { "sub", "userId", "user_id" };
static char *const default_name[] = { "name", "username" };
static char *const default_role[] = { "role" };
static char *const default_rooms[] = { "rooms", "memberships" };

/* Fills u from claims per the profile's claim names. Returns 0, or -1 when no user id. */
static int user_from_claims(const struct auth *a, json_object *claims, struct auth_user *u)
{
	const struct profile *p = a->p;
#define NAMES(field, def) \
	(p && p->n##field ? p->field : def), (p && p->n##field ? p->n##field : sizeof def / sizeof def[0])
	u->id = claim(claims, NAMES(claim_user_id, default_user_id), 1);
	u->name = claim(claims, NAMES(claim_name, default_name), 0);
	u->role = claim(claims, NAMES(claim_role, default_role), 0);
	if (!u->role && p && p->default_role)
		u->role = strdup(p->default_role);
	u->rooms = claim_rooms(claims, NAMES(claim_rooms, default_rooms));
#undef NAMES
	return u->id ? 0 : -1;
}

static int looks_like_jwt(const char *t)
{
	const char *d1 = strchr(t, '.');
	const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	return d1 && d2 && !strchr(d2 + 1, '.');
}

static void finish(struct auth_req *r, const char *error, const char *reason, struct auth_user *u)
{
	struct auth_result res = { error, reason, { 0 } };
	if (u)
		res.user = *u;
	if (!r->cancelled)
		r->cb(&res, r->ud);
	if (u)
		user_free(u);
}

static void on_redis_token(redisReply *reply, void *ud)
{
	struct auth_req *r = ud;
	struct auth_user u = { 0 };

	if (!reply || reply->type == REDIS_REPLY_ERROR) {
		finish(r, "invalid_token", "auth_unavailable", NULL);
	} else if (reply->type != REDIS_REPLY_STRING) {
		finish(r, "invalid_token", "unknown_token", NULL);
	} else {
		json_object *v = json_tokener_parse(reply->str);
		if (!v || !json_object_is_type(v, json_type_object) ||
		    user_from_claims(r->a, v, &u) < 0) {
			log_warn("auth: the Redis token record for socket %s is not a JSON object "
			         "with userId", r->sid);
			user_free(&u);
			finish(r, "invalid_token", "bad_token_record", NULL);
		} else {
			finish(r, NULL, NULL, &u);
		}
		json_object_put(v);
	}
	free(r);
}

struct auth_req *auth_check(struct auth *a, const char *token, const char *sid,
                            auth_cb cb, void *ud)
{
	struct auth_req sync = { a, cb, ud, 0, "" };
	struct auth_user u = { 0 };

	snprintf(sync.sid, sizeof sync.sid, "%s", sid);
	if (!a->jwt_key && !a->redis_on && !a->anonymous) {
		finish(&sync, "authentication_required", "no_auth_method", NULL);
		return NULL;
	}
	if (!token || !*token) {
		if (!a->anonymous) {
			finish(&sync, "authentication_required", "missing_token", NULL);
			return NULL;
		}
		u.id = strdup(sid);
		finish(&sync, NULL, NULL, &u);
		return NULL;
	}
	if (a->jwt_key && (looks_like_jwt(token) || !a->redis_on)) {
		enum jwt_err e;
		json_object *claims = jwt_verify(token, strlen(token), a->jwt_key, &a->jwt_opts, &e);
		if (!claims) {
			finish(&sync, "invalid_token", jwt_err_reason(e), NULL);
			return NULL;
		}
		if (user_from_claims(a, claims, &u) < 0) {
			user_free(&u);
			finish(&sync, "invalid_token", "no_user_id", NULL);
		} else {
			finish(&sync, NULL, NULL, &u);
		}
		json_object_put(claims);
		return NULL;
	}
	if (!a->redis_on) {
		finish(&sync, "invalid_token", "malformed", NULL);
		return NULL;
	}
	struct auth_req *r = malloc(sizeof *r);
	if (!r) {
		finish(&sync, "invalid_token", "auth_unavailable", NULL);
		return NULL;
	}
	*r = sync;
	if (redis_command(a->redis, on_redis_token, r, "GET %s:%s", a->cfg->auth_token_prefix,
	                  token) < 0) {
		free(r);
		finish(&sync, "invalid_token", "auth_unavailable", NULL);
		return NULL;
	}
	return r;
}

void auth_cancel(struct auth_req *r)
{
	if (r)
		r->cancelled = 1;        /* freed when Redis answers */
}
