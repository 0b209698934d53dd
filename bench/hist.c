/* hist.c -- log-linear latency histogram, see hist.h.
 *
 * Bucket index of v: v itself below 2^(SUB_BITS+1); otherwise, with e the
 * position of v's highest set bit, the octave (e - SUB_BITS - 1) selects a
 * block of 2^SUB_BITS buckets and the SUB_BITS bits below the top bit select
 * the bucket in it. 64-bit values need 7424 buckets (58 KB).
 */
#include "hist.h"

#include <stdlib.h>

#define SUB_BITS 7
#define SUB_COUNT (1u << SUB_BITS)
#define EXACT (2u * SUB_COUNT)
#define NBUCKETS (EXACT + (64 - SUB_BITS - 1) * SUB_COUNT)

struct hist {
    uint64_t count, sum, min, max;
    uint64_t buckets[NBUCKETS];
};

static unsigned top_bit(uint64_t v) {
    return 63u - (unsigned)__builtin_clzll(v);
}

static unsigned bucket_of(uint64_t v) {
    if (v < EXACT) return (unsigned)v;
    unsigned e = top_bit(v);
    unsigned sub = (unsigned)(v >> (e - SUB_BITS)) & (SUB_COUNT - 1);
    return EXACT + (e - SUB_BITS - 1) * SUB_COUNT + sub;
}

/* Middle of the bucket's range. */
static uint64_t bucket_value(unsigned b) {
    if (b < EXACT) return b;
    unsigned e = (b - EXACT) / SUB_COUNT + SUB_BITS + 1;
    uint64_t sub = (b - EXACT) % SUB_COUNT;
    uint64_t width = 1ULL << (e - SUB_BITS);
    return (1ULL << e) + sub * width + width / 2;
}

hist *hist_new(void) {
    hist *h = calloc(1, sizeof(*h));
    if (h) h->min = UINT64_MAX;
    return h;
}

void hist_free(hist *h) {
    free(h);
}

void hist_add(hist *h, uint64_t v) {
    h->buckets[bucket_of(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min) h->min = v;
    if (v > h->max) h->max = v;
}

uint64_t hist_count(const hist *h) {
    return h->count;
}

uint64_t hist_min(const hist *h) {
    return h->count ? h->min : 0;
}

uint64_t hist_max(const hist *h) {
    return h->max;
}

double hist_mean(const hist *h) {
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}

uint64_t hist_percentile(const hist *h, double p) {
    if (h->count == 0) return 0;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)h->count + 0.999999);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        seen += h->buckets[b];
        if (seen < rank) continue;
        uint64_t v = bucket_value(b);
        if (v < h->min) v = h->min;
        return v > h->max ? h->max : v;
    }
    return h->max;
}
