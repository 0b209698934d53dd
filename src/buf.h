/* buf.h -- a growable byte buffer with a hard size limit.
 *
 * The buffer owns its memory (b->p, freed by buf_free). Appends fail with -1
 * instead of growing past b->max, so a buffer fed from the network is bounded
 * by construction. b->p is always NUL-terminated when non-NULL, which lets
 * text consumers use it as a C string; the NUL is not counted in len. */
#ifndef AEOLUS_BUF_H
#define AEOLUS_BUF_H

#include <stddef.h>

struct buf {
	char *p;
	size_t len;
	size_t cap;
	size_t max;     /* 0: no limit (only for data we produce ourselves) */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_putc(struct buf *b, char c);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the memory to the caller (who frees it with free()); b is reset. */
char *buf_steal(struct buf *b, size_t *len);

#endif
