/* fuzz_jwt.c -- libFuzzer harness for jwt_verify.
 *
 * Each input is verified three ways:
 *
 *   1. as a token, against an HMAC key and against RSA, EC P-256 and Ed25519
 *      public keys (embedded below, loaded once);
 *   2. when it has the shape header.payload.anything, with the signature
 *      replaced by a valid HS256 one, so the fuzzer gets past the signature
 *      into the claims checks;
 *   3. when it holds a newline, as raw header JSON, newline, payload JSON,
 *      encoded and signed here, so the fuzzer can mutate the JSON directly.
 *
 * Whatever happens, claims come back exactly when the error is JWT_OK. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "jwt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char secret[] = "fuzz secret, thirty-two bytes...";

static const char rsa_pem[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEArPNjkEgPpn+gp/eJSsrO\n"
	"o0GF6hVC9gI8pI5oKh+r/oPlQXx6VmwmQoby8m2IqJZXedCaLNwlrVW7T59ga7lz\n"
	"Q0tAmHbiguc3yA04UQ7fi1jBD7UoK+BVMmHxgkJFwui9KxAy3qLa3kIBQCBOQoNR\n"
	"agk6RxM4LCX6TmApM4fFr3eOp7rV43KMEK0boHEP+j0L4aInLPhlx87+zlTy1ID4\n"
	"opPLlLmeZur5pK85cnbznY7pF+AOWJP/GT29Ljfw6x1lFajlNF5bddJNMvOqWzc3\n"
	"gSxBNHI8IxoFBKseTHWlkAtPLGF6sfVzkVG8NMYA4/EpiLjaHg5yzDF3Nj7wqtop\n"
	"1wIDAQAB\n"
	"-----END PUBLIC KEY-----\n";

static const char p256_pem[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEUSUB1Hk61c3uzmdlJpehO6XWsuBw\n"
	"SafrpreihxGZ7YzJ03/wvOD7nkY5slfpNyMqoC2MOG39vmn3Nr+jDOAhLQ==\n"
	"-----END PUBLIC KEY-----\n";

static const char ed25519_pem[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MCowBQYDK2VwAyEABD0KZgpYxE9DB319IySlbbDBYeUW5UsHcKRiQUHray4=\n"
	"-----END PUBLIC KEY-----\n";

static struct jwt_key *keys[4];      /* HMAC first */

static const struct jwt_verify_opts lax = {
	.algs = JWT_ALGS_ALL, .now = 1700000000,
};
static const struct jwt_verify_opts strict = {
	.algs = JWT_ALGS_ALL, .leeway = 30, .audience = "aeolus", .issuer = "fuzz",
	.require_exp = 1, .now = 1700000000,
};

static struct jwt_key *pem_key(const char *pem)
{
	char err[256];
	struct jwt_key *k = jwt_key_pem(pem, strlen(pem), err, sizeof err);
	if (!k)
		abort();
	return k;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	keys[0] = jwt_key_hmac(secret, strlen(secret));
	keys[1] = pem_key(rsa_pem);
	keys[2] = pem_key(p256_pem);
	keys[3] = pem_key(ed25519_pem);
	if (!keys[0])
		abort();
	return 0;
}

static void verify(const char *tok, size_t len, const struct jwt_key *k,
                   const struct jwt_verify_opts *o)
{
	enum jwt_err e = (enum jwt_err)-1;
	json_object *claims = jwt_verify(tok, len, k, o, &e);

	if ((claims != NULL) != (e == JWT_OK) || !jwt_err_reason(e))
		abort();
	if (claims && !json_object_is_type(claims, json_type_object))
		abort();
	json_object_put(claims);
}

/* Appends base64url(data) at out, which has room; returns the new end. */
static char *b64url(char *out, const void *data, size_t n)
{
	int len = EVP_EncodeBlock((unsigned char *)out, data, (int)n);
	while (len > 0 && out[len - 1] == '=')
		len--;
	for (int i = 0; i < len; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	return out + len;
}

/* Verifies text.HS256(text) against the HMAC key. */
static void verify_signed(const char *text, size_t n)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;
	char *tok = malloc(n + 2 + 4 * EVP_MAX_MD_SIZE / 3 + 4);

	if (!tok || !HMAC(EVP_sha256(), secret, (int)strlen(secret),
	                  (const unsigned char *)text, n, mac, &maclen))
		abort();
	memcpy(tok, text, n);
	tok[n] = '.';
	char *end = b64url(tok + n + 1, mac, maclen);
	verify(tok, (size_t)(end - tok), keys[0], &lax);
	verify(tok, (size_t)(end - tok), keys[0], &strict);
	free(tok);
}

/* header.payload.anything: the same with a good signature. */
static void resigned(const char *s, size_t size)
{
	const char *d1 = memchr(s, '.', size);
	const char *d2 = d1 ? memchr(d1 + 1, '.', size - (size_t)(d1 + 1 - s)) : NULL;

	if (d2)
		verify_signed(s, (size_t)(d2 - s));
}

/* header JSON, newline, payload JSON: encoded and signed. */
static void from_json(const char *s, size_t size)
{
	const char *nl = memchr(s, '\n', size);
	if (!nl)
		return;
	size_t hlen = (size_t)(nl - s), plen = size - hlen - 1;
	char *text = malloc(4 * (size / 3 + 2) + 2);
	if (!text)
		abort();
	char *end = b64url(text, s, hlen);
	*end++ = '.';
	end = b64url(end, nl + 1, plen);
	verify_signed(text, (size_t)(end - text));
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;

	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		verify(s, size, keys[i], &lax);
	verify(s, size, keys[0], &strict);
	resigned(s, size);
	from_json(s, size);
	return 0;
}
