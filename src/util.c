/* util.c -- see util.h. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "log.h"
#include "util.h"

int random_id(char out[ID_LEN + 1])
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char raw[ID_LEN];

	if (RAND_bytes(raw, sizeof raw) != 1)
		return -1;
	for (int i = 0; i < ID_LEN; i++)
		out[i] = alphabet[raw[i] & 63];
	out[ID_LEN] = '\0';
	return 0;
}

size_t base64_encoded_len(size_t n)
{
	return (n + 2) / 3 * 4 + 1;
}

size_t base64_encode(char *out, const void *in, size_t n)
{
	return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

long base64_decode(void *out, const char *in, size_t n)
{
	if (n % 4 != 0 || n > (size_t)1 << 30)
		return -1;
	if (n == 0)
		return 0;
	/* EVP_DecodeBlock accepts whitespace and ignores some errors: check
	 * the alphabet ourselves so that only canonical input passes. */
	size_t pad = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '=') {
			if (i < n - 2)
				return -1;
			pad++;
		} else if (pad || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		                    (c >= '0' && c <= '9') || c == '+' || c == '/')) {
			return -1;
		}
	}
	int r = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
	if (r < 0)
		return -1;
	return (long)r - (long)pad;
}

uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void *xmust(void *p)
{
	if (!p) {
		log_err("out of memory");
		abort();
	}
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	return xmust(calloc(n, size));
}

char *xstrdup(const char *s)
{
	return xmust(strdup(s));
}

char *xstrndup(const char *s, size_t n)
{
	return xmust(strndup(s, n));
}

int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	if (alen != blen)
		return 0;
	return CRYPTO_memcmp(a, b, alen) == 0;
}
