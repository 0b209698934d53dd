/* auth.h -- who is connecting: tokens checked against Redis or as JWTs.
 *
 * Methods (several may be on; the first that recognises the token decides):
 *   jwt     the token has the JWT shape (three dot-separated parts) and a key
 *           is configured: verified with jwt.c;
 *   redis   GET {auth.token_prefix}:{token} on the Redis connection gives a
 *           JSON object with at least userId;
 *   anonymous  no token at all, when auth.anonymous (or the profile) allows it:
 *           the user id is the socket id.
 * Refusals carry the Socket.IO CONNECT_ERROR message (authentication_required
 * or invalid_token) and a reason for data.reason. Tokens are never logged.
 *
 * The JWT key is one kind at a time, so no token can be checked with a key
 * of another kind (no algorithm confusion). By default it is the public key
 * (auth.jwt_public_key) when one is configured, else the secret, and
 * auth.jwt_algorithms must name algorithms of its kind. A profile whose
 * auth.jwt_key is "algorithm" (seed 002's gateway) lets auth.jwt_algorithms
 * choose when a secret is configured: HMAC names take the secret, others
 * the public key; a public key that is named (or configured) but not there
 * -- no path, or no file at it -- leaves the secret with HS256, with a
 * warning, as that gateway and its Core API do. The claims of a token
 * without a role give the profile's auth.default_role. */
#ifndef AEOLUS_AUTH_H
#define AEOLUS_AUTH_H

#include <event2/event.h>
#include <json-c/json.h>

#include "config.h"
#include "profile.h"
#include "redis.h"

struct auth_user {
	char *id;
	char *name;                  /* may be NULL */
	char *role;                  /* may be NULL */
	json_object *rooms;          /* array of strings from the token, or NULL */
};

struct auth_result {
	const char *error;           /* NULL when accepted */
	const char *reason;
	struct auth_user user;       /* accepted: owned by the result, valid during the callback */
};

typedef void (*auth_cb)(const struct auth_result *res, void *ud);

struct auth;
struct auth_req;

/* redis may be NULL (no Redis configured). Returns NULL with err on a bad key. */
struct auth *auth_new(const struct config *cfg, const struct profile *p, struct redis *redis,
                      char *err, size_t errlen);
void auth_free(struct auth *a);

/* Checks token (NULL: none was given) for socket sid. The callback is called
 * exactly once, possibly before auth_check returns; the returned handle (NULL
 * when the callback already ran) cancels a pending check: after
 * auth_cancel() the callback is never called. */
struct auth_req *auth_check(struct auth *a, const char *token, const char *sid,
                            auth_cb cb, void *ud);
void auth_cancel(struct auth_req *r);

/* What is on, for the start-up log and --check-config ("jwt(HS256), redis"). */
const char *auth_describe(const struct auth *a);

#endif
