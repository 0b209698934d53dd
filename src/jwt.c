/* jwt.c -- see jwt.h.
 *
 * A token is three base64url segments, header.payload.signature. Verifying
 * one goes in a fixed order, and the first failure decides the error:
 *
 *   1. Shape: at most JWT_MAX_TOKEN bytes, exactly two dots, each segment
 *      strict base64url (no padding, canonical trailing bits), header and
 *      payload each one JSON object and nothing else. Failing any of this is
 *      JWT_ERR_MALFORMED whatever the key, so the answer depends only on the
 *      token. A "crit" header is malformed too: we implement no extension.
 *   2. Algorithm: the header's alg must be one we know, allowed by the
 *      caller, and of the key's kind. The key, not the token, decides how
 *      the signature is checked, which rules out algorithm confusion (a
 *      public key used as an HMAC secret) and "none".
 *   3. Signature over the header.payload text exactly as received.
 *   4. Claims: the types of exp, nbf and iat, their values, then iss and
 *      aud. Only now does the payload's content matter.
 *
 * Public keys are EVP_PKEYs; the algorithms they admit follow from their
 * type and curve, fixed once when the key is loaded. ECDSA signatures travel
 * as raw R||S (RFC 7518 3.4) and are rewritten as DER for OpenSSL. Nothing
 * here logs: tokens are bearer secrets. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "buf.h"
#include "jwt.h"
#include "util.h"

#define JWT_MAX_TOKEN (16 * 1024)
#define JWT_JSON_DEPTH 16            /* as json-c counts: 15 levels pass */
#define JWT_MAX_KEY_FILE (64 * 1024)
#define JWT_MIN_RSA_BITS 2048

/* What a key is, and so which algorithms it verifies. */
enum kind { K_HMAC, K_RSA, K_P256, K_P384, K_ED25519 };

/* How a signature is checked. */
enum scheme { S_HMAC, S_PKCS1, S_PSS, S_ECDSA, S_EDDSA };

static const struct alg {
	unsigned id;
	const char *name;
	enum kind kind;
	enum scheme scheme;
	const EVP_MD *(*md)(void);   /* NULL for EdDSA */
	size_t ec_len;               /* ECDSA: bytes of R and of S */
} algs[] = {
	{ JWT_HS256, "HS256", K_HMAC, S_HMAC, EVP_sha256, 0 },
	{ JWT_HS384, "HS384", K_HMAC, S_HMAC, EVP_sha384, 0 },
	{ JWT_HS512, "HS512", K_HMAC, S_HMAC, EVP_sha512, 0 },
	{ JWT_RS256, "RS256", K_RSA, S_PKCS1, EVP_sha256, 0 },
	{ JWT_RS384, "RS384", K_RSA, S_PKCS1, EVP_sha384, 0 },
	{ JWT_RS512, "RS512", K_RSA, S_PKCS1, EVP_sha512, 0 },
	{ JWT_PS256, "PS256", K_RSA, S_PSS, EVP_sha256, 0 },
	{ JWT_PS384, "PS384", K_RSA, S_PSS, EVP_sha384, 0 },
	{ JWT_PS512, "PS512", K_RSA, S_PSS, EVP_sha512, 0 },
	{ JWT_ES256, "ES256", K_P256, S_ECDSA, EVP_sha256, 32 },
	{ JWT_ES384, "ES384", K_P384, S_ECDSA, EVP_sha384, 48 },
	{ JWT_EDDSA, "EdDSA", K_ED25519, S_EDDSA, NULL, 0 },
};

#define NALGS (sizeof algs / sizeof algs[0])

struct jwt_key {
	enum kind kind;
	EVP_PKEY *pkey;              /* owned; NULL for HMAC */
	size_t len;                  /* HMAC: bytes of secret */
	unsigned char secret[];      /* HMAC: cleansed on free */
};

static const struct alg *alg_by_id(unsigned id)
{
	for (size_t i = 0; i < NALGS; i++)
		if (algs[i].id == id)
			return &algs[i];
	return NULL;
}

static const struct alg *alg_by_name(const char *name)
{
	for (size_t i = 0; i < NALGS; i++)
		if (strcmp(algs[i].name, name) == 0)
			return &algs[i];
	return NULL;
}

unsigned jwt_alg_parse(const char *name)
{
	const struct alg *a = name ? alg_by_name(name) : NULL;
	return a ? a->id : 0;
}

const char *jwt_alg_name(unsigned alg)
{
	const struct alg *a = alg_by_id(alg);
	return a ? a->name : NULL;
}

const char *jwt_err_reason(enum jwt_err e)
{
	switch (e) {
	case JWT_OK: return "ok";
	case JWT_ERR_MALFORMED: return "malformed";
	case JWT_ERR_ALG: return "algorithm";
	case JWT_ERR_SIGNATURE: return "signature";
	case JWT_ERR_EXPIRED: return "expired";
	case JWT_ERR_NOT_YET_VALID: return "not_yet_valid";
	case JWT_ERR_ISSUED_IN_FUTURE: return "issued_in_future";
	case JWT_ERR_AUDIENCE: return "audience";
	case JWT_ERR_ISSUER: return "issuer";
	case JWT_ERR_CLAIMS: return "claims";
	}
	return "unknown";
}

/* ---- base64url (RFC 4648 section 5, no padding) ---- */

static const char b64url_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Decodes n characters into out, which must hold 3 * n / 4 bytes. Returns
 * the decoded length, or -1 for a character outside the alphabet (padding
 * included), a length no encoding has (n % 4 == 1), or unused trailing bits
 * that are not zero, so each byte string has exactly one encoding. */
static long b64url_decode(unsigned char *out, const char *in, size_t n)
{
	unsigned acc = 0, bits = 0;
	size_t o = 0;

	if (n % 4 == 1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int v = b64url_value((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return acc == 0 ? (long)o : -1;
}

/* Appends data to b in base64url without padding. Returns 0 or -1. */
static int b64url_append(struct buf *b, const void *data, size_t n)
{
	const unsigned char *p = data;
	size_t i;

	if (buf_reserve(b, n / 3 * 4 + 4) < 0)
		return -1;
	char *out = b->p + b->len;
	for (i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
		*out++ = b64url_alphabet[v >> 18];
		*out++ = b64url_alphabet[v >> 12 & 63];
		*out++ = b64url_alphabet[v >> 6 & 63];
		*out++ = b64url_alphabet[v & 63];
	}
	if (i < n) {
		unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0);
		*out++ = b64url_alphabet[v >> 18];
		*out++ = b64url_alphabet[v >> 12 & 63];
		if (i + 1 < n)
			*out++ = b64url_alphabet[v >> 6 & 63];
	}
	b->len = (size_t)(out - b->p);
	b->p[b->len] = '\0';
	return 0;
}

/* ---- keys ---- */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

struct jwt_key *jwt_key_hmac(const void *secret, size_t len)
{
	if (!secret || len == 0 || len > INT_MAX)
		return NULL;
	struct jwt_key *k = malloc(sizeof *k + len);
	if (!k)
		return NULL;
	k->kind = K_HMAC;
	k->pkey = NULL;
	k->len = len;
	memcpy(k->secret, secret, len);
	return k;
}

/* The kind of a public key, or -1 (with err) for one we have no JWS
 * algorithm for. */
static int pkey_kind(EVP_PKEY *pkey, char *err, size_t errlen)
{
	if (EVP_PKEY_is_a(pkey, "RSA")) {
		int bits = EVP_PKEY_get_bits(pkey);
		if (bits < JWT_MIN_RSA_BITS) {
			seterr(err, errlen, "RSA key of %d bits: at least %d needed",
			       bits, JWT_MIN_RSA_BITS);
			return -1;
		}
		return K_RSA;
	}
	if (EVP_PKEY_is_a(pkey, "ED25519"))
		return K_ED25519;
	if (EVP_PKEY_is_a(pkey, "EC")) {
		char group[64];
		if (!EVP_PKEY_get_group_name(pkey, group, sizeof group, NULL)) {
			seterr(err, errlen, "EC key without a named curve");
			return -1;
		}
		int nid = OBJ_sn2nid(group);
		if (nid == NID_X9_62_prime256v1)
			return K_P256;
		if (nid == NID_secp384r1)
			return K_P384;
		seterr(err, errlen, "EC curve %s: only P-256 and P-384 are supported", group);
		return -1;
	}
	const char *type = EVP_PKEY_get0_type_name(pkey);
	seterr(err, errlen, "unsupported key type %s", type ? type : "(unknown)");
	return -1;
}

/* The public key in one PEM block's DER, or NULL with err. */
static EVP_PKEY *der_public_key(const char *name, const unsigned char *der, long n,
                                char *err, size_t errlen)
{
	const unsigned char *p = der;
	EVP_PKEY *pkey = NULL;

	if (strcmp(name, PEM_STRING_PUBLIC) == 0) {
		pkey = d2i_PUBKEY(NULL, &p, n);
	} else if (strcmp(name, PEM_STRING_RSA_PUBLIC) == 0) {
		pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, n);
	} else if (strcmp(name, PEM_STRING_X509) == 0) {
		X509 *x = d2i_X509(NULL, &p, n);
		pkey = x ? X509_get_pubkey(x) : NULL;
		X509_free(x);
	} else {
		seterr(err, errlen, "PEM block \"%s\" is not a public key "
		       "(PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)", name);
		return NULL;
	}
	if (!pkey)
		seterr(err, errlen, "invalid %s", name);
	return pkey;
}

/* The public key in the first PEM block of pem, or NULL with err. */
static EVP_PKEY *pem_public_key(const char *pem, size_t len, char *err, size_t errlen)
{
	char *name = NULL, *header = NULL;
	unsigned char *der = NULL;
	long n = 0;
	EVP_PKEY *pkey = NULL;

	if (len > INT_MAX) {
		seterr(err, errlen, "PEM too large");
		return NULL;
	}
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (bio && PEM_read_bio(bio, &name, &header, &der, &n))
		pkey = der_public_key(name, der, n, err, errlen);
	else
		seterr(err, errlen, "no PEM block found");
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(der);
	BIO_free(bio);
	ERR_clear_error();
	return pkey;
}

struct jwt_key *jwt_key_pem(const char *pem, size_t len, char *err, size_t errlen)
{
	EVP_PKEY *pkey = pem_public_key(pem, len, err, errlen);
	if (!pkey)
		return NULL;
	int kind = pkey_kind(pkey, err, errlen);
	struct jwt_key *k = kind < 0 ? NULL : malloc(sizeof *k);
	if (!k) {
		if (kind >= 0)
			seterr(err, errlen, "out of memory");
		EVP_PKEY_free(pkey);
		return NULL;
	}
	k->kind = (enum kind)kind;
	k->pkey = pkey;
	k->len = 0;
	return k;
}

/* Reads a whole file of at most max bytes into b. Returns 0 or -1 with err. */
static int read_file(const char *path, struct buf *b, char *err, size_t errlen)
{
	char chunk[4096];
	size_t n;
	int rc = 0;

	FILE *f = fopen(path, "r");
	if (!f) {
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (buf_append(b, chunk, n) < 0) {
			seterr(err, errlen, "%s: larger than %d bytes", path, JWT_MAX_KEY_FILE);
			rc = -1;
		}
	}
	if (rc == 0 && ferror(f)) {
		seterr(err, errlen, "%s: read error", path);
		rc = -1;
	}
	fclose(f);
	return rc;
}

struct jwt_key *jwt_key_pem_file(const char *path, char *err, size_t errlen)
{
	struct buf b;
	struct jwt_key *k = NULL;
	char why[256];

	buf_init(&b, JWT_MAX_KEY_FILE);
	if (read_file(path, &b, err, errlen) == 0) {
		k = jwt_key_pem(b.p ? b.p : "", b.len, why, sizeof why);
		if (!k)
			seterr(err, errlen, "%s: %s", path, why);
	}
	buf_free(&b);
	return k;
}

void jwt_key_free(struct jwt_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pkey);
	OPENSSL_cleanse(k->secret, k->len);
	free(k);
}

/* ---- signatures ---- */

static int hmac_verify(const struct alg *a, const struct jwt_key *k,
                       const void *msg, size_t len, const unsigned char *sig, size_t siglen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;

	if (!HMAC(a->md(), k->secret, (int)k->len, msg, len, mac, &maclen))
		return 0;
	int ok = ct_equal(mac, maclen, sig, siglen);
	OPENSSL_cleanse(mac, sizeof mac);
	return ok;
}

/* The DER form of a raw R||S signature of 2 * n bytes (the caller frees it
 * with OPENSSL_free), or NULL. */
static unsigned char *ecdsa_der(const unsigned char *sig, size_t siglen, size_t n, int *derlen)
{
	unsigned char *der = NULL;

	if (siglen != 2 * n)
		return NULL;
	BIGNUM *r = BN_bin2bn(sig, (int)n, NULL);
	BIGNUM *s = BN_bin2bn(sig + n, (int)n, NULL);
	ECDSA_SIG *es = ECDSA_SIG_new();
	if (r && s && es && ECDSA_SIG_set0(es, r, s)) {
		r = s = NULL;                /* es owns them now */
		*derlen = i2d_ECDSA_SIG(es, &der);
		if (*derlen <= 0) {
			OPENSSL_free(der);
			der = NULL;
		}
	}
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return der;
}

static int pss_params(EVP_PKEY_CTX *pctx, const EVP_MD *md)
{
	return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
	       EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) > 0 &&
	       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0;
}

static int pkey_verify(const struct alg *a, EVP_PKEY *pkey,
                       const void *msg, size_t len, const unsigned char *sig, size_t siglen)
{
	const EVP_MD *md = a->md ? a->md() : NULL;
	EVP_PKEY_CTX *pctx = NULL;

	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx && EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pkey) == 1 &&
	         (a->scheme != S_PSS || pss_params(pctx, md)) &&
	         EVP_DigestVerify(ctx, sig, siglen, msg, len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

static int sig_verify(const struct alg *a, const struct jwt_key *k,
                      const void *msg, size_t len, const unsigned char *sig, size_t siglen)
{
	int ok;

	if (a->scheme == S_HMAC) {
		ok = hmac_verify(a, k, msg, len, sig, siglen);
	} else if (a->scheme == S_ECDSA) {
		int derlen = 0;
		unsigned char *der = ecdsa_der(sig, siglen, a->ec_len, &derlen);
		ok = der && pkey_verify(a, k->pkey, msg, len, der, (size_t)derlen);
		OPENSSL_free(der);
	} else {
		ok = pkey_verify(a, k->pkey, msg, len, sig, siglen);
	}
	ERR_clear_error();               /* leave no failure for the next user */
	return ok;
}

/* ---- token structure ---- */

struct token {
	const char *signed_text;     /* header.payload, what the signature covers */
	size_t signed_len;
	unsigned char *raw;          /* owns the three decoded segments */
	json_object *header, *payload;
	const unsigned char *sig;    /* into raw */
	size_t siglen;
};

static void token_free(struct token *t)
{
	free(t->raw);
	json_object_put(t->header);
	json_object_put(t->payload);
}

/* One JSON object filling all n bytes, or NULL. */
static json_object *parse_object(const unsigned char *p, size_t n)
{
	json_object *o = NULL;

	struct json_tokener *tok = json_tokener_new_ex(JWT_JSON_DEPTH);
	if (!tok)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, (const char *)p, (int)n);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != n || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* Splits and decodes s into t (which the caller frees with token_free
 * whatever this returns). Returns 0, or -1 if the token is malformed. */
static int token_parse(struct token *t, const char *s, size_t len)
{
	memset(t, 0, sizeof *t);
	if (len == 0 || len > JWT_MAX_TOKEN)
		return -1;
	const char *d1 = memchr(s, '.', len);
	const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - s)) : NULL;
	if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - s)))
		return -1;
	t->signed_text = s;
	t->signed_len = (size_t)(d2 - s);

	/* The decoded segments together are shorter than the token. */
	if (!(t->raw = malloc(len)))
		return -1;
	unsigned char *h = t->raw, *p, *g;
	long hlen, plen, glen;
	if ((hlen = b64url_decode(h, s, (size_t)(d1 - s))) < 0)
		return -1;
	p = h + hlen;
	if ((plen = b64url_decode(p, d1 + 1, (size_t)(d2 - d1 - 1))) < 0)
		return -1;
	g = p + plen;
	if ((glen = b64url_decode(g, d2 + 1, len - (size_t)(d2 + 1 - s))) < 0)
		return -1;
	t->sig = g;
	t->siglen = (size_t)glen;
	t->header = parse_object(h, (size_t)hlen);
	t->payload = t->header ? parse_object(p, (size_t)plen) : NULL;
	if (!t->payload || json_object_object_get_ex(t->header, "crit", NULL))
		return -1;
	return 0;
}

/* The header's algorithm if the caller allows it and it fits the key. */
static const struct alg *token_alg(const struct token *t, const struct jwt_key *k,
                                   unsigned allowed)
{
	json_object *o;

	if (!json_object_object_get_ex(t->header, "alg", &o) ||
	    !json_object_is_type(o, json_type_string))
		return NULL;
	const char *name = json_object_get_string(o);
	if (strlen(name) != (size_t)json_object_get_string_len(o))
		return NULL;                 /* "HS256\u0000..." */
	const struct alg *a = alg_by_name(name);
	if (!a || !(a->id & allowed) || a->kind != k->kind)
		return NULL;
	return a;
}

/* ---- claims ---- */

/* Reads the time claim name into *v. Returns 1, 0 when absent, or -1 when
 * it is not a finite JSON number. */
static int time_claim(json_object *claims, const char *name, double *v)
{
	json_object *o;

	if (!json_object_object_get_ex(claims, name, &o))
		return 0;
	if (!json_object_is_type(o, json_type_int) && !json_object_is_type(o, json_type_double))
		return -1;
	*v = json_object_get_double(o);
	return isfinite(*v) ? 1 : -1;
}

static enum jwt_err check_times(json_object *claims, const struct jwt_verify_opts *opts)
{
	double exp = 0, nbf = 0, iat = 0;
	int has_exp = time_claim(claims, "exp", &exp);
	int has_nbf = time_claim(claims, "nbf", &nbf);
	int has_iat = time_claim(claims, "iat", &iat);

	if (has_exp < 0 || has_nbf < 0 || has_iat < 0 || (opts->require_exp && !has_exp))
		return JWT_ERR_CLAIMS;
	/* The precise clock: time() may lag the second that an issuer on the
	 * same host has already written into iat. */
	double now = opts->now ? (double)opts->now : (double)wall_ms() / 1000.0;
	double leeway = (double)opts->leeway;
	if (has_exp && exp + leeway <= now)
		return JWT_ERR_EXPIRED;
	if (has_nbf && nbf - leeway > now)
		return JWT_ERR_NOT_YET_VALID;
	if (has_iat && iat - leeway > now)
		return JWT_ERR_ISSUED_IN_FUTURE;
	return JWT_OK;
}

/* Whether the JSON string o is exactly s (a string with a NUL inside is not
 * equal to its prefix). */
static int string_is(json_object *o, const char *s)
{
	size_t n = strlen(s);
	return (size_t)json_object_get_string_len(o) == n &&
	       memcmp(json_object_get_string(o), s, n) == 0;
}

static enum jwt_err check_issuer(json_object *claims, const char *want)
{
	json_object *iss;

	if (!json_object_object_get_ex(claims, "iss", &iss))
		return want ? JWT_ERR_ISSUER : JWT_OK;
	if (!json_object_is_type(iss, json_type_string))
		return JWT_ERR_CLAIMS;
	return !want || string_is(iss, want) ? JWT_OK : JWT_ERR_ISSUER;
}

static enum jwt_err check_audience(json_object *claims, const char *want)
{
	json_object *aud;
	int found = 0;

	if (!json_object_object_get_ex(claims, "aud", &aud))
		return want ? JWT_ERR_AUDIENCE : JWT_OK;
	if (json_object_is_type(aud, json_type_string)) {
		found = want && string_is(aud, want);
	} else if (json_object_is_type(aud, json_type_array)) {
		size_t n = json_object_array_length(aud);
		for (size_t i = 0; i < n; i++) {
			json_object *e = json_object_array_get_idx(aud, i);
			if (!json_object_is_type(e, json_type_string))
				return JWT_ERR_CLAIMS;
			found |= want && string_is(e, want);
		}
	} else {
		return JWT_ERR_CLAIMS;
	}
	return !want || found ? JWT_OK : JWT_ERR_AUDIENCE;
}

static enum jwt_err check_claims(json_object *claims, const struct jwt_verify_opts *opts)
{
	enum jwt_err e;

	if ((e = check_times(claims, opts)) != JWT_OK)
		return e;
	if ((e = check_issuer(claims, opts->issuer)) != JWT_OK)
		return e;
	return check_audience(claims, opts->audience);
}

/* ---- the API ---- */

static enum jwt_err verify(struct token *t, const char *token, size_t len,
                           const struct jwt_key *key, const struct jwt_verify_opts *opts)
{
	if (token_parse(t, token, len) < 0)
		return JWT_ERR_MALFORMED;
	const struct alg *a = token_alg(t, key, opts->algs);
	if (!a)
		return JWT_ERR_ALG;
	if (!sig_verify(a, key, t->signed_text, t->signed_len, t->sig, t->siglen))
		return JWT_ERR_SIGNATURE;
	return check_claims(t->payload, opts);
}

json_object *jwt_verify(const char *token, size_t len, const struct jwt_key *key,
                        const struct jwt_verify_opts *opts, enum jwt_err *err)
{
	struct token t;
	json_object *claims = NULL;

	enum jwt_err e = verify(&t, token, len, key, opts);
	if (e == JWT_OK) {
		claims = t.payload;
		t.payload = NULL;
	}
	token_free(&t);
	if (err)
		*err = e;
	return claims;
}

char *jwt_sign_hmac(unsigned alg, const void *secret, size_t len, json_object *claims)
{
	const struct alg *a = alg_by_id(alg);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;
	char header[64];
	struct buf b;

	if (!a || a->scheme != S_HMAC || !secret || len == 0 || len > INT_MAX ||
	    !json_object_is_type(claims, json_type_object))
		return NULL;
	const char *payload = json_object_to_json_string_ext(claims,
		JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!payload)
		return NULL;
	snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", a->name);

	buf_init(&b, 0);
	int ok = b64url_append(&b, header, strlen(header)) == 0 &&
	         buf_putc(&b, '.') == 0 &&
	         b64url_append(&b, payload, strlen(payload)) == 0 &&
	         HMAC(a->md(), secret, (int)len, (unsigned char *)b.p, b.len, mac, &maclen) &&
	         buf_putc(&b, '.') == 0 &&
	         b64url_append(&b, mac, maclen) == 0;
	OPENSSL_cleanse(mac, sizeof mac);
	if (!ok) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b, NULL);
}
