/* test_jwt.c -- JWT verification and signing: every algorithm, each way a
 * token is refused, key loading, and a cross-check against tokens made by
 * PyJWT (jwt_vectors.py, run at test time).
 *
 * Tokens are signed here with OpenSSL directly, not with jwt.c, so a bug
 * shared by signer and verifier needs to hide from PyJWT as well. */
#define _GNU_SOURCE                  /* asprintf, nftw */
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "jwt.h"

#define NOW 1700000000

static const char secret[] = "a test secret, thirty-two bytes!";

/* Made once in main(); the tests (forked by Check) inherit them. */
static EVP_PKEY *rsa_priv, *p256_priv, *p384_priv, *ed_priv;
static struct jwt_key *hmac_key, *rsa_key, *p256_key, *p384_key, *ed_key;

static const char *const all_algs[] = {
	"HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
};
#define NALGS (sizeof all_algs / sizeof all_algs[0])

/* ------------------------------------------------------------------------
 * Helpers: keys, signing with OpenSSL, verifying */

/* For helpers that also run outside a test, in main(). */
static void need(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "test_jwt: %s failed\n", what);
		abort();
	}
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

static char *fmt(const char *f, ...)
{
	va_list ap;
	char *s;

	va_start(ap, f);
	need(vasprintf(&s, f, ap) >= 0, "vasprintf");
	va_end(ap);
	return s;
}

static char *b64url(const void *data, size_t n)
{
	char *s = malloc(n / 3 * 4 + 5);
	ck_assert_ptr_nonnull(s);
	int len = EVP_EncodeBlock((unsigned char *)s, data, (int)n);
	while (len > 0 && s[len - 1] == '=')
		len--;
	s[len] = '\0';
	for (char *c = s; *c; c++)
		*c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
	return s;
}

static char *pem_of(EVP_PKEY *pkey)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data;

	need(bio && PEM_write_bio_PUBKEY(bio, pkey) == 1, "PEM_write_bio_PUBKEY");
	long n = BIO_get_mem_data(bio, &data);
	char *pem = fmt("%.*s", (int)n, data);
	BIO_free(bio);
	return pem;
}

static struct jwt_key *key_of(EVP_PKEY *pkey)
{
	char err[256] = "", *pem = pem_of(pkey);
	struct jwt_key *k = jwt_key_pem(pem, strlen(pem), err, sizeof err);

	if (!k)
		fprintf(stderr, "jwt_key_pem: %s\n", err);
	need(k != NULL, "jwt_key_pem");
	free(pem);
	return k;
}

static EVP_PKEY *priv_for(const char *alg)
{
	if (alg[0] == 'R' || alg[0] == 'P')
		return rsa_priv;
	if (strcmp(alg, "ES256") == 0)
		return p256_priv;
	if (strcmp(alg, "ES384") == 0)
		return p384_priv;
	return ed_priv;
}

static const struct jwt_key *key_for(const char *alg)
{
	if (alg[0] == 'H')
		return hmac_key;
	EVP_PKEY *p = priv_for(alg);
	return p == rsa_priv ? rsa_key : p == p256_priv ? p256_key :
	       p == p384_priv ? p384_key : ed_key;
}

static const EVP_MD *md_for(const char *alg)
{
	if (strstr(alg, "256"))
		return EVP_sha256();
	if (strstr(alg, "384"))
		return EVP_sha384();
	if (strstr(alg, "512"))
		return EVP_sha512();
	return NULL;
}

static size_t pkey_sign(const char *alg, const char *msg, unsigned char **sig)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx;
	size_t n = 0;

	ck_assert_int_eq(EVP_DigestSignInit(ctx, &pctx, md_for(alg), NULL, priv_for(alg)), 1);
	if (alg[0] == 'P') {
		ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 0);
		ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 0);
	}
	ck_assert_int_eq(EVP_DigestSign(ctx, NULL, &n, (const unsigned char *)msg, strlen(msg)), 1);
	*sig = malloc(n);
	ck_assert_int_eq(EVP_DigestSign(ctx, *sig, &n, (const unsigned char *)msg, strlen(msg)), 1);
	EVP_MD_CTX_free(ctx);
	return n;
}

/* Rewrites a DER ECDSA signature as JWS wants it: R||S, half bytes each. */
static size_t ecdsa_raw(unsigned char **sig, size_t n, size_t half)
{
	const unsigned char *p = *sig;
	const BIGNUM *r, *s;
	ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);

	ck_assert_ptr_nonnull(es);
	ECDSA_SIG_get0(es, &r, &s);
	free(*sig);
	*sig = malloc(2 * half);
	ck_assert_int_eq(BN_bn2binpad(r, *sig, (int)half), (int)half);
	ck_assert_int_eq(BN_bn2binpad(s, *sig + half, (int)half), (int)half);
	ECDSA_SIG_free(es);
	return 2 * half;
}

/* The signature alg gives msg; HS* use the HMAC key hkey. Unknown
 * algorithms ("none") sign with nothing. */
static size_t sign(const char *alg, const void *hkey, size_t hlen, const char *msg,
                   unsigned char **sig)
{
	unsigned n = 0;

	*sig = malloc(EVP_MAX_MD_SIZE);
	if (alg[0] == 'H' && md_for(alg)) {
		ck_assert_ptr_nonnull(HMAC(md_for(alg), hkey, (int)hlen,
		                           (const unsigned char *)msg, strlen(msg), *sig, &n));
		return n;
	}
	if (!jwt_alg_parse(alg))
		return 0;
	free(*sig);
	size_t len = pkey_sign(alg, msg, sig);
	if (strcmp(alg, "ES256") == 0)
		len = ecdsa_raw(sig, len, 32);
	else if (strcmp(alg, "ES384") == 0)
		len = ecdsa_raw(sig, len, 48);
	return len;
}

/* header.payload.signature, the JSON texts given. A NULL header is
 * {"alg":alg,"typ":"JWT"}. */
static char *token_with(const char *alg, const void *hkey, size_t hlen,
                        const char *header, const char *payload)
{
	char *hdr = header ? fmt("%s", header) : fmt("{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
	char *h = b64url(hdr, strlen(hdr)), *p = b64url(payload, strlen(payload));
	char *msg = fmt("%s.%s", h, p);
	unsigned char *sig;
	size_t n = sign(alg, hkey, hlen, msg, &sig);
	char *g = b64url(sig, n);
	char *tok = fmt("%s.%s", msg, g);

	free(hdr);
	free(h);
	free(p);
	free(msg);
	free(sig);
	free(g);
	return tok;
}

static char *token(const char *alg, const char *header, const char *payload)
{
	return token_with(alg, secret, strlen(secret), header, payload);
}

static struct jwt_verify_opts opts(void)
{
	return (struct jwt_verify_opts){ .algs = JWT_ALGS_ALL, .now = NOW };
}

/* Verifies tok and checks that claims come back exactly on success. */
static enum jwt_err verify_len(const char *tok, size_t len, const struct jwt_key *key,
                               const struct jwt_verify_opts *o)
{
	enum jwt_err e = -1;
	json_object *claims = jwt_verify(tok, len, key, o, &e);

	ck_assert_msg((e == JWT_OK) == (claims != NULL), "error %d with claims %p",
	              e, (void *)claims);
	if (claims)
		ck_assert(json_object_is_type(claims, json_type_object));
	json_object_put(claims);
	return e;
}

static enum jwt_err verify(const char *tok, const struct jwt_key *key,
                           const struct jwt_verify_opts *o)
{
	return verify_len(tok, strlen(tok), key, o);
}

/* Signs the payload with HS256 and verifies it under o. */
static enum jwt_err claims(const struct jwt_verify_opts *o, const char *f, ...)
	__attribute__((format(printf, 2, 3)));

static enum jwt_err claims(const struct jwt_verify_opts *o, const char *f, ...)
{
	va_list ap;
	char *payload;

	va_start(ap, f);
	ck_assert_int_ge(vasprintf(&payload, f, ap), 0);
	va_end(ap);
	char *tok = token("HS256", NULL, payload);
	enum jwt_err e = verify(tok, hmac_key, o);
	free(tok);
	free(payload);
	return e;
}

/* Verifies a token made of the three texts as given (already encoded). */
static enum jwt_err raw(const char *h, const char *p, const char *g)
{
	char *tok = fmt("%s.%s.%s", h, p, g);
	struct jwt_verify_opts o = opts();
	enum jwt_err e = verify(tok, hmac_key, &o);
	free(tok);
	return e;
}

/* ------------------------------------------------------------------------
 * Names */

START_TEST(alg_names)
{
	for (size_t i = 0; i < NALGS; i++) {
		unsigned a = jwt_alg_parse(all_algs[i]);
		ck_assert_uint_eq(a, 1u << i);
		ck_assert_str_eq(jwt_alg_name(a), all_algs[i]);
	}
	ck_assert_uint_eq(jwt_alg_parse("none"), 0);
	ck_assert_uint_eq(jwt_alg_parse("hs256"), 0);
	ck_assert_uint_eq(jwt_alg_parse("HS256 "), 0);
	ck_assert_uint_eq(jwt_alg_parse(""), 0);
	ck_assert_uint_eq(jwt_alg_parse(NULL), 0);
	ck_assert_ptr_null(jwt_alg_name(0));
	ck_assert_ptr_null(jwt_alg_name(JWT_HS256 | JWT_HS384));
	ck_assert_ptr_null(jwt_alg_name(1u << 12));
}
END_TEST

START_TEST(err_reasons)
{
	ck_assert_str_eq(jwt_err_reason(JWT_ERR_MALFORMED), "malformed");
	ck_assert_str_eq(jwt_err_reason(JWT_ERR_ALG), "algorithm");
	ck_assert_str_eq(jwt_err_reason(JWT_ERR_SIGNATURE), "signature");
	ck_assert_str_eq(jwt_err_reason(JWT_ERR_EXPIRED), "expired");
	ck_assert_str_eq(jwt_err_reason(JWT_ERR_NOT_YET_VALID), "not_yet_valid");
	ck_assert_str_eq(jwt_err_reason(JWT_ERR_ISSUED_IN_FUTURE), "issued_in_future");
	ck_assert_str_eq(jwt_err_reason(JWT_ERR_AUDIENCE), "audience");
	ck_assert_str_eq(jwt_err_reason(JWT_ERR_ISSUER), "issuer");
	ck_assert_str_eq(jwt_err_reason(JWT_ERR_CLAIMS), "claims");
}
END_TEST

/* ------------------------------------------------------------------------
 * Signatures */

START_TEST(every_alg_accepted)
{
	const char *alg = all_algs[_i];
	char *tok = token(alg, NULL, "{\"sub\":\"alice\",\"n\":1}");
	struct jwt_verify_opts o = opts();
	enum jwt_err e = -1;

	json_object *c = jwt_verify(tok, strlen(tok), key_for(alg), &o, &e);
	ck_assert_msg(c != NULL, "%s refused: %s", alg, jwt_err_reason(e));
	ck_assert_int_eq(e, JWT_OK);
	json_object *sub;
	ck_assert(json_object_object_get_ex(c, "sub", &sub));
	ck_assert_str_eq(json_object_get_string(sub), "alice");
	json_object_put(c);

	/* Only when the caller allows it. */
	o.algs = JWT_ALGS_ALL & ~jwt_alg_parse(alg);
	ck_assert_int_eq(verify(tok, key_for(alg), &o), JWT_ERR_ALG);
	free(tok);
}
END_TEST

START_TEST(tampered_payload)
{
	const char *alg = all_algs[_i];
	char *tok = token(alg, NULL, "{\"sub\":\"alice\"}");
	char *other = token(alg, NULL, "{\"sub\":\"admin\"}");
	struct jwt_verify_opts o = opts();

	/* other's header and payload with tok's signature */
	char *forged = fmt("%.*s%s", (int)(strrchr(other, '.') - other), other, strrchr(tok, '.'));
	ck_assert_int_eq(verify(forged, key_for(alg), &o), JWT_ERR_SIGNATURE);
	free(tok);
	free(other);
	free(forged);
}
END_TEST

START_TEST(tampered_signature)
{
	const char *alg = all_algs[_i];
	char *tok = token(alg, NULL, "{\"sub\":\"alice\"}");
	struct jwt_verify_opts o = opts();
	char *g = strrchr(tok, '.') + 1;

	/* The first character of a segment carries six whole bits. */
	g[0] = g[0] == 'A' ? 'B' : 'A';
	ck_assert_int_eq(verify(tok, key_for(alg), &o), JWT_ERR_SIGNATURE);
	/* No signature, and half of one. */
	g[0] = '\0';
	ck_assert_int_eq(verify(tok, key_for(alg), &o), JWT_ERR_SIGNATURE);
	free(tok);

	tok = token(alg, NULL, "{\"sub\":\"alice\"}");
	g = strrchr(tok, '.') + 1;
	g[strlen(g) / 8 * 4] = '\0';
	ck_assert_int_eq(verify(tok, key_for(alg), &o), JWT_ERR_SIGNATURE);
	free(tok);
}
END_TEST

START_TEST(wrong_key)
{
	static const char other[] = "another secret, thirty-two bytes";
	struct jwt_verify_opts o = opts();

	char *tok = token_with("HS256", other, strlen(other), NULL, "{}");
	ck_assert_int_eq(verify(tok, hmac_key, &o), JWT_ERR_SIGNATURE);
	free(tok);

	EVP_PKEY *p = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	struct jwt_key *k = key_of(p);
	tok = token("ES256", NULL, "{}");
	ck_assert_int_eq(verify(tok, k, &o), JWT_ERR_SIGNATURE);
	free(tok);
	jwt_key_free(k);
	EVP_PKEY_free(p);
}
END_TEST

/* ECDSA signatures are exactly R||S: not DER, not another length. */
START_TEST(ecdsa_signature_form)
{
	struct jwt_verify_opts o = opts();
	char *tok = token("ES256", NULL, "{}");
	char *dot = strrchr(tok, '.');
	unsigned char *der;
	unsigned char zero[96] = { 0 };

	*dot = '\0';
	size_t n = pkey_sign("ES256", tok, &der);
	char *g = b64url(der, n);
	char *t2 = fmt("%s.%s", tok, g);
	ck_assert_int_eq(verify(t2, p256_key, &o), JWT_ERR_SIGNATURE);
	free(g);
	free(t2);

	g = b64url(zero, 64);
	t2 = fmt("%s.%s", tok, g);
	ck_assert_int_eq(verify(t2, p256_key, &o), JWT_ERR_SIGNATURE);
	free(g);
	free(t2);

	g = b64url(zero, 96);
	t2 = fmt("%s.%s", tok, g);
	ck_assert_int_eq(verify(t2, p256_key, &o), JWT_ERR_SIGNATURE);
	free(g);
	free(t2);
	free(der);
	free(tok);
}
END_TEST

/* ------------------------------------------------------------------------
 * Algorithms */

START_TEST(alg_none_refused)
{
	static const char *const headers[] = {
		"{\"alg\":\"none\"}", "{\"alg\":\"None\"}", "{\"alg\":\"NONE\"}",
		"{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"alg\":\"\"}",
	};
	struct jwt_verify_opts o = opts();

	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		char *tok = token("none", headers[i], "{\"sub\":\"admin\"}");
		ck_assert_str_eq(strrchr(tok, '.'), ".");
		ck_assert_int_eq(verify(tok, hmac_key, &o), JWT_ERR_ALG);
		ck_assert_int_eq(verify(tok, rsa_key, &o), JWT_ERR_ALG);
		free(tok);
	}
}
END_TEST

/* The classic confusion: an HS256 token whose secret is the server's RSA
 * public key, sent to a server that holds that key. */
START_TEST(alg_confusion_refused)
{
	char *pem = pem_of(rsa_priv);
	char *tok = token_with("HS256", pem, strlen(pem), NULL, "{\"sub\":\"admin\"}");
	struct jwt_verify_opts o = opts();

	ck_assert_int_eq(verify(tok, rsa_key, &o), JWT_ERR_ALG);
	o.algs = JWT_HS256 | JWT_RS256;
	ck_assert_int_eq(verify(tok, rsa_key, &o), JWT_ERR_ALG);
	free(tok);

	/* And the other way round. */
	tok = token("RS256", NULL, "{}");
	ck_assert_int_eq(verify(tok, hmac_key, &o), JWT_ERR_ALG);
	free(tok);
	free(pem);
}
END_TEST

/* Each key verifies only its own algorithms. */
START_TEST(alg_must_match_key)
{
	const struct jwt_key *keys[] = { hmac_key, rsa_key, p256_key, p384_key, ed_key };
	struct jwt_verify_opts o = opts();

	for (size_t i = 0; i < NALGS; i++) {
		char *tok = token(all_algs[i], NULL, "{}");
		for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
			enum jwt_err want = keys[k] == key_for(all_algs[i]) ? JWT_OK : JWT_ERR_ALG;
			ck_assert_msg(verify(tok, keys[k], &o) == want, "%s with key %zu", all_algs[i], k);
		}
		free(tok);
	}
}
END_TEST

START_TEST(alg_header_invalid)
{
	static const char *const headers[] = {
		"{}", "{\"typ\":\"JWT\"}", "{\"alg\":null}", "{\"alg\":256}",
		"{\"alg\":[\"HS256\"]}", "{\"alg\":\"HS256\\u0000\"}", "{\"alg\":\"hs256\"}",
		"{\"alg\":\"HS257\"}", "{\"alg\":\"RSA-OAEP\"}",
	};
	struct jwt_verify_opts o = opts();

	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		char *tok = token("HS256", headers[i], "{}");
		ck_assert_msg(verify(tok, hmac_key, &o) == JWT_ERR_ALG, "%s", headers[i]);
		free(tok);
	}
	/* Extensions we do not understand. */
	char *tok = token("HS256", "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", "{}");
	ck_assert_int_eq(verify(tok, hmac_key, &o), JWT_ERR_MALFORMED);
	free(tok);
	/* Headers we ignore. */
	tok = token("HS256", "{\"alg\":\"HS256\",\"kid\":\"1\",\"jku\":\"http://x/\",\"typ\":\"x\"}",
	            "{}");
	ck_assert_int_eq(verify(tok, hmac_key, &o), JWT_OK);
	free(tok);
}
END_TEST

/* ------------------------------------------------------------------------
 * Claims */

START_TEST(expired)
{
	struct jwt_verify_opts o = opts();

	ck_assert_int_eq(claims(&o, "{\"exp\":%d}", NOW + 1), JWT_OK);
	ck_assert_int_eq(claims(&o, "{\"exp\":%d}", NOW), JWT_ERR_EXPIRED);
	ck_assert_int_eq(claims(&o, "{\"exp\":%d}", NOW - 1), JWT_ERR_EXPIRED);
	ck_assert_int_eq(claims(&o, "{\"exp\":%d.5}", NOW), JWT_OK);
	ck_assert_int_eq(claims(&o, "{\"exp\":%d.5}", NOW - 1), JWT_ERR_EXPIRED);
	ck_assert_int_eq(claims(&o, "{\"exp\":0}"), JWT_ERR_EXPIRED);
	ck_assert_int_eq(claims(&o, "{\"exp\":-1}"), JWT_ERR_EXPIRED);
	ck_assert_int_eq(claims(&o, "{\"exp\":99999999999999999999999}"), JWT_OK);
	o.leeway = 30;
	ck_assert_int_eq(claims(&o, "{\"exp\":%d}", NOW - 29), JWT_OK);
	ck_assert_int_eq(claims(&o, "{\"exp\":%d}", NOW - 30), JWT_ERR_EXPIRED);

	/* The clock, when now is 0. */
	o = opts();
	o.now = 0;
	ck_assert_int_eq(claims(&o, "{\"exp\":%d}", NOW), JWT_ERR_EXPIRED);
	ck_assert_int_eq(claims(&o, "{\"exp\":%lld}", (long long)time(NULL) + 60), JWT_OK);
}
END_TEST

START_TEST(not_yet_valid)
{
	struct jwt_verify_opts o = opts();

	ck_assert_int_eq(claims(&o, "{\"nbf\":%d}", NOW), JWT_OK);
	ck_assert_int_eq(claims(&o, "{\"nbf\":%d}", NOW - 100), JWT_OK);
	ck_assert_int_eq(claims(&o, "{\"nbf\":%d}", NOW + 1), JWT_ERR_NOT_YET_VALID);
	ck_assert_int_eq(claims(&o, "{\"nbf\":%d.5}", NOW), JWT_ERR_NOT_YET_VALID);
	o.leeway = 30;
	ck_assert_int_eq(claims(&o, "{\"nbf\":%d}", NOW + 30), JWT_OK);
	ck_assert_int_eq(claims(&o, "{\"nbf\":%d}", NOW + 31), JWT_ERR_NOT_YET_VALID);
}
END_TEST

START_TEST(issued_in_future)
{
	struct jwt_verify_opts o = opts();

	ck_assert_int_eq(claims(&o, "{\"iat\":%d}", NOW), JWT_OK);
	ck_assert_int_eq(claims(&o, "{\"iat\":%d}", NOW + 1), JWT_ERR_ISSUED_IN_FUTURE);
	o.leeway = 30;
	ck_assert_int_eq(claims(&o, "{\"iat\":%d}", NOW + 30), JWT_OK);
	ck_assert_int_eq(claims(&o, "{\"iat\":%d}", NOW + 31), JWT_ERR_ISSUED_IN_FUTURE);
}
END_TEST

START_TEST(time_claims_must_be_numbers)
{
	static const char *const bad[] = {
		"\"1700000100\"", "null", "true", "[1700000100]", "{}", "1e999", "-1e999",
	};
	static const char *const names[] = { "exp", "nbf", "iat" };
	struct jwt_verify_opts o = opts();

	for (size_t n = 0; n < 3; n++)
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
			ck_assert_msg(claims(&o, "{\"%s\":%s}", names[n], bad[i]) == JWT_ERR_CLAIMS,
			              "%s: %s", names[n], bad[i]);

	/* exp required */
	o.require_exp = 1;
	ck_assert_int_eq(claims(&o, "{\"sub\":\"alice\"}"), JWT_ERR_CLAIMS);
	ck_assert_int_eq(claims(&o, "{\"exp\":%d}", NOW + 1), JWT_OK);
	ck_assert_int_eq(claims(&o, "{\"exp\":%d.0}", NOW + 1), JWT_OK);
}
END_TEST

START_TEST(audience)
{
	struct jwt_verify_opts o = opts();

	/* Not asked for: any audience, or none, passes. */
	ck_assert_int_eq(claims(&o, "{\"aud\":\"x\"}"), JWT_OK);
	ck_assert_int_eq(claims(&o, "{}"), JWT_OK);

	o.audience = "aeolus";
	ck_assert_int_eq(claims(&o, "{\"aud\":\"aeolus\"}"), JWT_OK);
	ck_assert_int_eq(claims(&o, "{\"aud\":[\"x\",\"aeolus\"]}"), JWT_OK);
	ck_assert_int_eq(claims(&o, "{\"aud\":[\"aeolus\"]}"), JWT_OK);
	ck_assert_int_eq(claims(&o, "{\"aud\":\"other\"}"), JWT_ERR_AUDIENCE);
	ck_assert_int_eq(claims(&o, "{\"aud\":[\"x\",\"y\"]}"), JWT_ERR_AUDIENCE);
	ck_assert_int_eq(claims(&o, "{\"aud\":[]}"), JWT_ERR_AUDIENCE);
	ck_assert_int_eq(claims(&o, "{}"), JWT_ERR_AUDIENCE);
	ck_assert_int_eq(claims(&o, "{\"aud\":\"aeolu\"}"), JWT_ERR_AUDIENCE);
	ck_assert_int_eq(claims(&o, "{\"aud\":\"aeolus2\"}"), JWT_ERR_AUDIENCE);
	ck_assert_int_eq(claims(&o, "{\"aud\":\"Aeolus\"}"), JWT_ERR_AUDIENCE);
	ck_assert_int_eq(claims(&o, "{\"aud\":\"aeolus\\u0000x\"}"), JWT_ERR_AUDIENCE);

	/* A string or an array of strings, nothing else. */
	ck_assert_int_eq(claims(&o, "{\"aud\":1}"), JWT_ERR_CLAIMS);
	ck_assert_int_eq(claims(&o, "{\"aud\":null}"), JWT_ERR_CLAIMS);
	ck_assert_int_eq(claims(&o, "{\"aud\":{\"aeolus\":1}}"), JWT_ERR_CLAIMS);
	ck_assert_int_eq(claims(&o, "{\"aud\":[\"aeolus\",1]}"), JWT_ERR_CLAIMS);
	ck_assert_int_eq(claims(&o, "{\"aud\":[[\"aeolus\"]]}"), JWT_ERR_CLAIMS);
}
END_TEST

START_TEST(issuer)
{
	struct jwt_verify_opts o = opts();

	ck_assert_int_eq(claims(&o, "{\"iss\":\"anyone\"}"), JWT_OK);
	ck_assert_int_eq(claims(&o, "{\"iss\":7}"), JWT_ERR_CLAIMS);
	o.issuer = "https://auth.example";
	ck_assert_int_eq(claims(&o, "{\"iss\":\"https://auth.example\"}"), JWT_OK);
	ck_assert_int_eq(claims(&o, "{\"iss\":\"https:\\/\\/auth.example\"}"), JWT_OK);
	ck_assert_int_eq(claims(&o, "{\"iss\":\"https://evil.example\"}"), JWT_ERR_ISSUER);
	ck_assert_int_eq(claims(&o, "{\"iss\":\"https://auth.example/\"}"), JWT_ERR_ISSUER);
	ck_assert_int_eq(claims(&o, "{}"), JWT_ERR_ISSUER);
	ck_assert_int_eq(claims(&o, "{\"iss\":[\"https://auth.example\"]}"), JWT_ERR_CLAIMS);
}
END_TEST

/* The checks run in a fixed order: the first failure is the one reported. */
START_TEST(claims_order)
{
	struct jwt_verify_opts o = opts();

	o.audience = "aeolus";
	o.issuer = "me";
	ck_assert_int_eq(claims(&o, "{\"exp\":1,\"nbf\":%d,\"iss\":\"x\",\"aud\":\"x\"}", NOW + 9),
	                 JWT_ERR_EXPIRED);
	ck_assert_int_eq(claims(&o, "{\"nbf\":%d,\"iss\":\"x\",\"aud\":\"x\"}", NOW + 9),
	                 JWT_ERR_NOT_YET_VALID);
	ck_assert_int_eq(claims(&o, "{\"iss\":\"x\",\"aud\":\"x\"}"), JWT_ERR_ISSUER);
	ck_assert_int_eq(claims(&o, "{\"iss\":\"me\",\"aud\":\"x\"}"), JWT_ERR_AUDIENCE);
	ck_assert_int_eq(claims(&o, "{\"exp\":\"soon\",\"aud\":\"x\"}"), JWT_ERR_CLAIMS);
	/* A bad signature hides everything in the payload. */
	char *tok = token_with("HS256", "k", 1, NULL, "{\"exp\":1}");
	ck_assert_int_eq(verify(tok, hmac_key, &o), JWT_ERR_SIGNATURE);
	free(tok);
}
END_TEST

/* ------------------------------------------------------------------------
 * Malformed tokens */

START_TEST(malformed_structure)
{
	static const char *const bad[] = {
		"", ".", "..", "...", "abc", "eyJhbGciOiJIUzI1NiJ9",
		"eyJhbGciOiJIUzI1NiJ9.e30", "eyJhbGciOiJIUzI1NiJ9.e30.sig.extra",
		"eyJhbGciOiJIUzI1NiJ9..sig", ".e30.sig",
	};
	struct jwt_verify_opts o = opts();

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(verify(bad[i], hmac_key, &o) == JWT_ERR_MALFORMED, "'%s'", bad[i]);
	/* A NUL inside is just a bad character; len, not strlen, counts. */
	char *tok = token("HS256", NULL, "{}");
	ck_assert_int_eq(verify_len(tok, strlen(tok) + 1, hmac_key, &o), JWT_ERR_MALFORMED);
	/* 43 characters of HS256 signature less 3 is still canonical base64url. */
	ck_assert_int_eq(verify_len(tok, strlen(tok) - 3, hmac_key, &o), JWT_ERR_SIGNATURE);
	ck_assert_int_eq(verify_len(tok, 0, hmac_key, &o), JWT_ERR_MALFORMED);
	free(tok);
}
END_TEST

START_TEST(malformed_base64url)
{
	/* header {"alg":"HS256"} = eyJhbGciOiJIUzI1NiJ9, payload {} = e30 */
	ck_assert_int_eq(raw("eyJhbGciOiJIUzI1NiJ9", "e30", "AAAA"), JWT_ERR_SIGNATURE);
	ck_assert_int_eq(raw("eyJhbGciOiJIUzI1NiJ9", "e30=", "AAAA"), JWT_ERR_MALFORMED);
	ck_assert_int_eq(raw("eyJhbGciOiJIUzI1NiJ9", "e30", "AA=="), JWT_ERR_MALFORMED);
	ck_assert_int_eq(raw("eyJhbGciOiJIUzI1NiJ9", "e30", "AA+/"), JWT_ERR_MALFORMED);
	ck_assert_int_eq(raw("eyJhbGciOiJIUzI1NiJ9", "e3 0", "AAAA"), JWT_ERR_MALFORMED);
	ck_assert_int_eq(raw("eyJhbGciOiJIUzI1NiJ9", "e30", "AA\nA"), JWT_ERR_MALFORMED);
	ck_assert_int_eq(raw("eyJhbGciOiJIUzI1NiJ9", "e30", "AAAAA"), JWT_ERR_MALFORMED);
	ck_assert_int_eq(raw("eyJhbGciOiJIUzI1NiJ9", "e30", "A"), JWT_ERR_MALFORMED);
	ck_assert_int_eq(raw("eyJhbGciOiJIUzI1NiJ9", "e30", "AB"), JWT_ERR_MALFORMED);
	ck_assert_int_eq(raw("eyJhbGciOiJIUzI1NiJ9", "e30", "AAB"), JWT_ERR_MALFORMED);
	ck_assert_int_eq(raw("eyJhbGciOiJIUzI1NiJ9", "e31", "AAAA"), JWT_ERR_MALFORMED);
	ck_assert_int_eq(raw("eyJhbGciOiJIUzI1NiJ9", "e30", "AAAA\xc3\xa9"), JWT_ERR_MALFORMED);
}
END_TEST

START_TEST(malformed_json)
{
	static const char *const bad[] = {
		"", "not json", "[]", "[{}]", "\"x\"", "1", "null", "true",
		"{\"a\":1", "{\"a\":1}x", "{\"a\":1}{}", "{\"a\":1,}", "{\"a\":01}",
		"{\"a\":\"\xff\"}", "{\"a\":1}\n\x01",
		"{\"a\":[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]}",      /* 16 levels */
	};
	struct jwt_verify_opts o = opts();

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *tok = token("HS256", bad[i], "{}");
		ck_assert_msg(verify(tok, hmac_key, &o) == JWT_ERR_MALFORMED, "header '%s'", bad[i]);
		free(tok);
		tok = token("HS256", NULL, bad[i]);
		ck_assert_msg(verify(tok, hmac_key, &o) == JWT_ERR_MALFORMED, "payload '%s'", bad[i]);
		free(tok);
	}
	/* Whitespace around the object is JSON. */
	char *tok = token("HS256", " {\"alg\":\"HS256\"}\n", "\t{}\r\n");
	ck_assert_int_eq(verify(tok, hmac_key, &o), JWT_OK);
	free(tok);
	/* 15 levels of nesting pass. */
	tok = token("HS256", NULL, "{\"a\":[[[[[[[[[[[[[[1]]]]]]]]]]]]]]}");
	ck_assert_int_eq(verify(tok, hmac_key, &o), JWT_OK);
	free(tok);
}
END_TEST

START_TEST(huge)
{
	struct jwt_verify_opts o = opts();
	char *pad = malloc(20000);

	memset(pad, 'x', 20000);
	pad[11000] = '\0';
	char *payload = fmt("{\"pad\":\"%s\"}", pad);
	char *tok = token("HS256", NULL, payload);
	ck_assert_uint_lt(strlen(tok), 16 * 1024);
	ck_assert_int_eq(verify(tok, hmac_key, &o), JWT_OK);
	free(payload);
	free(tok);

	pad[11000] = 'x';
	pad[13000] = '\0';
	payload = fmt("{\"pad\":\"%s\"}", pad);
	tok = token("HS256", NULL, payload);
	ck_assert_uint_gt(strlen(tok), 16 * 1024);
	ck_assert_int_eq(verify(tok, hmac_key, &o), JWT_ERR_MALFORMED);
	free(payload);
	free(tok);
	free(pad);
}
END_TEST

/* ------------------------------------------------------------------------
 * Signing */

START_TEST(sign_hmac_round_trip)
{
	static const unsigned algs[] = { JWT_HS256, JWT_HS384, JWT_HS512 };
	unsigned alg = algs[_i];
	struct jwt_verify_opts o = opts();
	json_object *c = json_tokener_parse(
		"{\"sub\":\"alice\",\"exp\":1700000100,\"aud\":[\"aeolus\"],\"url\":\"a/b\",\"n\":\"\\u00e9\"}");

	char *tok = jwt_sign_hmac(alg, secret, strlen(secret), c);
	ck_assert_ptr_nonnull(tok);
	o.audience = "aeolus";
	o.algs = alg;
	enum jwt_err e = -1;
	json_object *back = jwt_verify(tok, strlen(tok), hmac_key, &o, &e);
	ck_assert_int_eq(e, JWT_OK);
	ck_assert(json_object_equal(c, back));
	json_object_put(back);

	/* The header, exactly; the payload, compact. */
	char *hdr = fmt("{\"alg\":\"%s\",\"typ\":\"JWT\"}", jwt_alg_name(alg));
	char *h = b64url(hdr, strlen(hdr));
	const char *pay = json_object_to_json_string_ext(c,
		JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	char *p = b64url(pay, strlen(pay));
	char *want = fmt("%s.%s.", h, p);
	ck_assert_int_eq(strncmp(tok, want, strlen(want)), 0);

	/* And OpenSSL agrees on the signature. */
	char *mine = token(jwt_alg_name(alg), hdr, pay);
	ck_assert_str_eq(tok, mine);
	free(mine);
	free(hdr);
	free(h);
	free(p);
	free(want);
	free(tok);
	json_object_put(c);
}
END_TEST

START_TEST(sign_hmac_refuses)
{
	json_object *c = json_object_new_object();
	json_object *arr = json_object_new_array();

	ck_assert_ptr_null(jwt_sign_hmac(JWT_RS256, secret, strlen(secret), c));
	ck_assert_ptr_null(jwt_sign_hmac(0, secret, strlen(secret), c));
	ck_assert_ptr_null(jwt_sign_hmac(JWT_HS256 | JWT_HS384, secret, strlen(secret), c));
	ck_assert_ptr_null(jwt_sign_hmac(JWT_HS256, secret, 0, c));
	ck_assert_ptr_null(jwt_sign_hmac(JWT_HS256, secret, strlen(secret), arr));
	ck_assert_ptr_null(jwt_sign_hmac(JWT_HS256, secret, strlen(secret), NULL));
	char *tok = jwt_sign_hmac(JWT_HS256, secret, strlen(secret), c);
	ck_assert_ptr_nonnull(tok);
	free(tok);
	json_object_put(c);
	json_object_put(arr);
}
END_TEST

/* ------------------------------------------------------------------------
 * Keys */

/* A mkstemp/mkdtemp template in $TMPDIR (malloc'd). */
static char *tmp_template(void)
{
	const char *tmp = getenv("TMPDIR");
	return fmt("%s/test_jwt.XXXXXX", tmp && *tmp ? tmp : "/tmp");
}

static void refused_pem(const char *pem, size_t len, const char *why)
{
	char err[256] = "";

	ck_assert_ptr_null(jwt_key_pem(pem, len, err, sizeof err));
	ck_assert_msg(strstr(err, why) != NULL, "error '%s' lacks '%s'", err, why);
}

static void refused_pkey(EVP_PKEY *p, const char *why)
{
	ck_assert_ptr_nonnull(p);
	char *pem = pem_of(p);
	refused_pem(pem, strlen(pem), why);
	free(pem);
	EVP_PKEY_free(p);
}

START_TEST(key_pem_forms)
{
	struct jwt_verify_opts o = opts();
	char err[256] = "";
	unsigned char *der = NULL;
	BIO *bio = BIO_new(BIO_s_mem());
	char *data;

	/* PKCS#1 "RSA PUBLIC KEY" */
	int n = i2d_PublicKey(rsa_priv, &der);
	ck_assert_int_gt(n, 0);
	ck_assert_int_gt(PEM_write_bio(bio, PEM_STRING_RSA_PUBLIC, "", der, n), 0);
	long len = BIO_get_mem_data(bio, &data);
	ck_assert_ptr_nonnull(memmem(data, (size_t)len, "BEGIN RSA PUBLIC KEY", 20));
	struct jwt_key *k = jwt_key_pem(data, (size_t)len, err, sizeof err);
	ck_assert_msg(k != NULL, "%s", err);
	char *tok = token("PS384", NULL, "{}");
	ck_assert_int_eq(verify(tok, k, &o), JWT_OK);
	free(tok);
	jwt_key_free(k);
	OPENSSL_free(der);
	BIO_free(bio);

	/* A self-signed certificate, after some text */
	X509 *x = X509_new();
	ck_assert_int_eq(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"aeolus", -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509_set_pubkey(x, p256_priv);
	ck_assert_int_gt(X509_sign(x, p256_priv, EVP_sha256()), 0);
	bio = BIO_new(BIO_s_mem());
	BIO_puts(bio, "subject=CN = aeolus\n");
	ck_assert_int_eq(PEM_write_bio_X509(bio, x), 1);
	len = BIO_get_mem_data(bio, &data);
	k = jwt_key_pem(data, (size_t)len, err, sizeof err);
	ck_assert_msg(k != NULL, "%s", err);
	tok = token("ES256", NULL, "{}");
	ck_assert_int_eq(verify(tok, k, &o), JWT_OK);
	free(tok);
	jwt_key_free(k);
	BIO_free(bio);
	X509_free(x);
}
END_TEST

START_TEST(key_pem_refused)
{
	static const char bad_body[] =
		"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";

	refused_pem("", 0, "no PEM");
	refused_pem("hello", 5, "no PEM");
	refused_pem(bad_body, strlen(bad_body), "invalid PUBLIC KEY");
	ck_assert_ptr_null(jwt_key_pem("x", 1, NULL, 0));

	/* A private key is not what we want, even though it holds the public one. */
	BIO *bio = BIO_new(BIO_s_mem());
	char *data;
	ck_assert_int_eq(PEM_write_bio_PrivateKey(bio, p256_priv, NULL, NULL, 0, NULL, NULL), 1);
	long len = BIO_get_mem_data(bio, &data);
	refused_pem(data, (size_t)len, "not a public key");
	BIO_free(bio);

	/* Keys we have no algorithm for. */
	refused_pkey(EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024), "1024 bits");
	refused_pkey(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1"), "secp256k1");
	refused_pkey(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521"), "secp521r1");
	refused_pkey(EVP_PKEY_Q_keygen(NULL, NULL, "ED448"), "ED448");
	refused_pkey(EVP_PKEY_Q_keygen(NULL, NULL, "X25519"), "X25519");

	ck_assert_ptr_null(jwt_key_hmac(secret, 0));
	ck_assert_ptr_null(jwt_key_hmac(NULL, 5));
	jwt_key_free(NULL);
}
END_TEST

START_TEST(key_pem_file)
{
	char *path = tmp_template(), err[512] = "";
	int fd = mkstemp(path);
	char *pem = pem_of(ed_priv);

	ck_assert_int_ge(fd, 0);
	FILE *f = fdopen(fd, "w");
	fputs(pem, f);
	fclose(f);
	struct jwt_key *k = jwt_key_pem_file(path, err, sizeof err);
	ck_assert_msg(k != NULL, "%s", err);
	struct jwt_verify_opts o = opts();
	char *tok = token("EdDSA", NULL, "{}");
	ck_assert_int_eq(verify(tok, k, &o), JWT_OK);
	free(tok);
	jwt_key_free(k);
	unlink(path);
	free(pem);

	ck_assert_ptr_null(jwt_key_pem_file(path, err, sizeof err));
	ck_assert_ptr_nonnull(strstr(err, path));
	ck_assert_ptr_null(jwt_key_pem_file("/", err, sizeof err));
	free(path);
}
END_TEST

/* ------------------------------------------------------------------------
 * PyJWT */

/* The first of $PYTHON, python3 and /usr/bin/python3 that has PyJWT and
 * cryptography, or NULL. */
static const char *find_python(void)
{
	const char *candidates[] = { getenv("PYTHON"), "python3", "/usr/bin/python3" };

	for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
		if (!candidates[i] || !*candidates[i])
			continue;
		char *cmd = fmt("'%s' -c 'import jwt, cryptography' 2>/dev/null", candidates[i]);
		int rc = system(cmd);
		free(cmd);
		if (rc == 0)
			return candidates[i];
	}
	return NULL;
}

static struct jwt_key *vector_key(const char *dir, const char *file)
{
	char *path = fmt("%s/%s", dir, file), err[512] = "";
	struct jwt_key *k;

	if (strcmp(file, "hmac.key") == 0) {
		unsigned char buf[256];
		FILE *f = fopen(path, "rb");
		ck_assert_ptr_nonnull(f);
		size_t n = fread(buf, 1, sizeof buf, f);
		fclose(f);
		k = jwt_key_hmac(buf, n);
	} else {
		k = jwt_key_pem_file(path, err, sizeof err);
	}
	ck_assert_msg(k != NULL, "%s: %s", file, err);
	free(path);
	return k;
}

static enum jwt_err expected(const char *c)
{
	if (strcmp(c, "valid") == 0)
		return JWT_OK;
	if (strcmp(c, "tampered") == 0)
		return JWT_ERR_SIGNATURE;
	if (strcmp(c, "expired") == 0)
		return JWT_ERR_EXPIRED;
	if (strcmp(c, "wrong_aud") == 0)
		return JWT_ERR_AUDIENCE;
	ck_abort_msg("unknown case %s", c);
	return -1;
}

/* Verifies one line of vectors.txt: ALG CASE KEYFILE TOKEN. */
static unsigned check_vector(const char *dir, char *line)
{
	char *save, *alg = strtok_r(line, " \n", &save), *c = strtok_r(NULL, " \n", &save);
	char *file = strtok_r(NULL, " \n", &save), *tok = strtok_r(NULL, " \n", &save);
	struct jwt_verify_opts o = {
		.algs = JWT_ALGS_ALL, .audience = "aeolus", .issuer = "pyjwt", .require_exp = 1,
	};

	ck_assert_msg(alg && c && file && tok, "short line in vectors.txt");
	unsigned id = jwt_alg_parse(alg);
	ck_assert_msg(id != 0, "unknown algorithm %s", alg);
	struct jwt_key *k = vector_key(dir, file);
	enum jwt_err e = verify(tok, k, &o);
	printf("PyJWT %-5s %-9s -> %s\n", alg, c, jwt_err_reason(e));
	ck_assert_msg(e == expected(c), "PyJWT %s %s: %s", alg, c, jwt_err_reason(e));
	jwt_key_free(k);
	return id;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

START_TEST(pyjwt_vectors)
{
	const char *python = find_python();
	ck_assert_msg(python != NULL, "no python3 with PyJWT and cryptography "
	              "(Debian: python3-jwt python3-cryptography; or set PYTHON)");

	const char *srcdir = getenv("srcdir");
	char *dir = tmp_template();
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char *cmd = fmt("'%s' '%s/tests/unit/jwt_vectors.py' '%s'", python,
	                srcdir && *srcdir ? srcdir : ".", dir);
	ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
	free(cmd);

	char *path = fmt("%s/vectors.txt", dir), *line = NULL;
	size_t cap = 0, lines = 0;
	unsigned seen = 0;
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (getline(&line, &cap, f) > 0) {
		seen |= check_vector(dir, line);
		lines++;
	}
	fclose(f);
	free(line);
	free(path);
	nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(dir);
	ck_assert_uint_eq(seen, JWT_ALGS_ALL);
	ck_assert_uint_eq(lines, 4 * NALGS);
}
END_TEST

/* ------------------------------------------------------------------------ */

static void keys_make(void)
{
	rsa_priv = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	p256_priv = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	p384_priv = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	ed_priv = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!rsa_priv || !p256_priv || !p384_priv || !ed_priv) {
		fprintf(stderr, "test_jwt: key generation failed\n");
		exit(EXIT_FAILURE);
	}
	hmac_key = jwt_key_hmac(secret, strlen(secret));
	rsa_key = key_of(rsa_priv);
	p256_key = key_of(p256_priv);
	p384_key = key_of(p384_priv);
	ed_key = key_of(ed_priv);
}

static void keys_free(void)
{
	jwt_key_free(hmac_key);
	jwt_key_free(rsa_key);
	jwt_key_free(p256_key);
	jwt_key_free(p384_key);
	jwt_key_free(ed_key);
	EVP_PKEY_free(rsa_priv);
	EVP_PKEY_free(p256_priv);
	EVP_PKEY_free(p384_priv);
	EVP_PKEY_free(ed_priv);
}

static Suite *jwt_suite(void)
{
	Suite *s = suite_create("jwt");
	TCase *tc;

	tc = tcase_create("algorithms");
	tcase_add_test(tc, alg_names);
	tcase_add_test(tc, err_reasons);
	tcase_add_loop_test(tc, every_alg_accepted, 0, NALGS);
	tcase_add_loop_test(tc, tampered_payload, 0, NALGS);
	tcase_add_loop_test(tc, tampered_signature, 0, NALGS);
	tcase_add_test(tc, wrong_key);
	tcase_add_test(tc, ecdsa_signature_form);
	tcase_add_test(tc, alg_none_refused);
	tcase_add_test(tc, alg_confusion_refused);
	tcase_add_test(tc, alg_must_match_key);
	tcase_add_test(tc, alg_header_invalid);
	suite_add_tcase(s, tc);

	tc = tcase_create("claims");
	tcase_add_test(tc, expired);
	tcase_add_test(tc, not_yet_valid);
	tcase_add_test(tc, issued_in_future);
	tcase_add_test(tc, time_claims_must_be_numbers);
	tcase_add_test(tc, audience);
	tcase_add_test(tc, issuer);
	tcase_add_test(tc, claims_order);
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_add_test(tc, malformed_structure);
	tcase_add_test(tc, malformed_base64url);
	tcase_add_test(tc, malformed_json);
	tcase_add_test(tc, huge);
	suite_add_tcase(s, tc);

	tc = tcase_create("sign");
	tcase_add_loop_test(tc, sign_hmac_round_trip, 0, 3);
	tcase_add_test(tc, sign_hmac_refuses);
	suite_add_tcase(s, tc);

	tc = tcase_create("keys");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, key_pem_forms);
	tcase_add_test(tc, key_pem_refused);
	tcase_add_test(tc, key_pem_file);
	suite_add_tcase(s, tc);

	tc = tcase_create("pyjwt");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, pyjwt_vectors);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	keys_make();
	SRunner *sr = srunner_create(jwt_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	keys_free();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
