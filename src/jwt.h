/* jwt.h -- JSON Web Tokens (RFC 7519, JWS compact form): verification with
 * OpenSSL, and HMAC signing.
 *
 * Pure code apart from reading key files: a token in, claims or an error out.
 * (Contract below; the implementation is in jwt.c.) */
#ifndef AEOLUS_JWT_H
#define AEOLUS_JWT_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

enum jwt_alg {
	JWT_HS256 = 1 << 0, JWT_HS384 = 1 << 1, JWT_HS512 = 1 << 2,
	JWT_RS256 = 1 << 3, JWT_RS384 = 1 << 4, JWT_RS512 = 1 << 5,
	JWT_PS256 = 1 << 6, JWT_PS384 = 1 << 7, JWT_PS512 = 1 << 8,
	JWT_ES256 = 1 << 9, JWT_ES384 = 1 << 10,
	JWT_EDDSA = 1 << 11,
};
#define JWT_ALGS_HMAC (JWT_HS256 | JWT_HS384 | JWT_HS512)
#define JWT_ALGS_ALL  0xfff

/* "HS256" -> JWT_HS256; 0 for an unknown name (and for "none"). Names are
 * case-sensitive, as in RFC 7518. */
unsigned jwt_alg_parse(const char *name);
/* JWT_HS256 -> "HS256"; NULL unless alg is exactly one known algorithm. */
const char *jwt_alg_name(unsigned alg);

struct jwt_key;

/* Keys are immutable once made: one key may verify in many threads at once.
 * The caller owns each key and frees it with jwt_key_free (NULL is fine). */

/* An HMAC secret (bytes copied, wiped on free). Usable only with HS*
 * algorithms. NULL for an empty secret or out of memory. */
struct jwt_key *jwt_key_hmac(const void *secret, size_t len);
/* A public key in PEM (SubjectPublicKeyInfo "PUBLIC KEY", "RSA PUBLIC KEY", or a
 * certificate): RSA (RS*, PS*), EC P-256 (ES256), EC P-384 (ES384), Ed25519
 * (EdDSA). NULL with a message in err on failure. The first PEM block is the
 * one used; text before it is skipped. Refused: private keys, RSA keys under
 * 2048 bits (RFC 7518 3.3), other curves and key types. A certificate is only
 * a container for its key: its dates and issuer are not checked. err may be
 * NULL; errlen 256 is plenty. */
struct jwt_key *jwt_key_pem(const char *pem, size_t len, char *err, size_t errlen);
/* The same from a file (at most 64 KiB); err names the file. */
struct jwt_key *jwt_key_pem_file(const char *path, char *err, size_t errlen);
void jwt_key_free(struct jwt_key *k);

enum jwt_err {
	JWT_OK = 0,
	JWT_ERR_MALFORMED,           /* not three base64url parts of JSON; "crit" */
	JWT_ERR_ALG,                 /* alg missing, "none", not allowed, or not the key's kind */
	JWT_ERR_SIGNATURE,
	JWT_ERR_EXPIRED,             /* exp + leeway <= now */
	JWT_ERR_NOT_YET_VALID,       /* nbf - leeway > now */
	JWT_ERR_ISSUED_IN_FUTURE,    /* iat - leeway > now */
	JWT_ERR_AUDIENCE,            /* aud wanted: missing, or not it */
	JWT_ERR_ISSUER,              /* iss wanted: missing, or not it */
	JWT_ERR_CLAIMS,              /* exp/nbf/iat not finite numbers, iss not a string, aud
	                              * not a string or array of strings, or exp missing
	                              * under require_exp */
};

/* A short reason for CONNECT_ERROR data.reason: "malformed", "algorithm",
 * "signature", "expired", "not_yet_valid", "issued_in_future", "audience",
 * "issuer", "claims". */
const char *jwt_err_reason(enum jwt_err e);

struct jwt_verify_opts {
	unsigned algs;               /* accepted algorithms (bitmask) */
	long leeway;                 /* seconds */
	const char *audience;        /* when set, aud must equal it or contain it */
	const char *issuer;          /* when set, iss must equal it */
	int require_exp;             /* a token without exp is refused */
	int64_t now;                 /* seconds since the epoch; 0: the clock */
};

/* Verifies token (len bytes, not NUL-terminated necessarily) with key.
 * Returns the claims object (a new reference, the caller puts it) or NULL
 * with *err set (err may be NULL; on success it is set to JWT_OK). The
 * header's alg must be in opts->algs and of the key's kind: an HMAC key
 * never verifies RS/ES/PS/EdDSA, a public key never HS* (no algorithm
 * confusion); "none" is always refused. Inputs are bounded (tokens over
 * 16 KiB, and JSON nested 16 levels deep, are malformed).
 *
 * Checks run in this order and the first failure is the error: shape
 * (strict base64url without padding, each part one JSON object), alg,
 * signature, the time claims (their types, then exp, nbf, iat), iss, aud.
 * So the error for a malformed token
 * does not depend on the key, and nothing about the claims is told before
 * the signature holds. Header fields other than alg and crit (typ, kid,
 * jku, x5u, ...) are ignored: the key is the caller's, never the token's.
 * Running out of memory refuses the token with the error of the step that
 * failed. */
json_object *jwt_verify(const char *token, size_t len, const struct jwt_key *key,
                        const struct jwt_verify_opts *opts, enum jwt_err *err);

/* Signs claims (a JSON object) with an HMAC algorithm (HS256/384/512):
 * header {"alg":"HS256","typ":"JWT"}, payload the claims serialised
 * compactly. Returns a malloc'd NUL-terminated token, or NULL for another
 * algorithm, an empty secret, claims not an object, or out of memory. */
char *jwt_sign_hmac(unsigned alg, const void *secret, size_t len, json_object *claims);

#endif
