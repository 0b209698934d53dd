/* util.h -- small helpers shared by every module: ids, base64, clocks. */
#ifndef AEOLUS_UTIL_H
#define AEOLUS_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ID_LEN 20   /* characters of a session or socket id */

/* Fills out[0..ID_LEN] with a NUL-terminated id of ID_LEN base64url characters
 * drawn from the OpenSSL CSPRNG (120 bits). Returns 0, or -1 if the CSPRNG
 * failed (the caller refuses the request rather than use a weak id). */
int random_id(char out[ID_LEN + 1]);

/* Standard base64 with padding. The caller owns the buffer passed in:
 * base64_encoded_len() tells how large it must be (including the NUL). */
size_t base64_encoded_len(size_t n);
size_t base64_encode(char *out, const void *in, size_t n);
/* Decodes standard base64 (padding required when the length is not a
 * multiple of 4). out must hold 3 * (n / 4) + 3 bytes. Returns the decoded
 * length, or -1 on any invalid character or length. */
long base64_decode(void *out, const char *in, size_t n);

/* Milliseconds on a monotonic clock, and since the epoch. */
uint64_t mono_ms(void);
uint64_t wall_ms(void);

/* Allocation that cannot fail, for the places that have no way to report
 * it (a store operation must call back): out of memory logs and ends the
 * process, as Redis does. */
void *xmust(void *p);
void *xcalloc(size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Parses decimal digits only (no sign, no spaces) into *out. Returns 0, or
 * -1 for anything else or an overflow. The stores' message ids use it. */
int parse_u64(const char *s, uint64_t *out);

/* Compares without leaking where the first difference is. */
int ct_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
