/* hist.h -- fixed-memory latency histogram.
 *
 * Values (microseconds) below 256 are counted exactly; above, each power of
 * two is split into 128 buckets, so a reported percentile is within 0.8% of
 * the true value whatever the range. min, max and the mean are exact.
 */
#ifndef AEOLUS_BENCH_HIST_H
#define AEOLUS_BENCH_HIST_H

#include <stdint.h>

typedef struct hist hist;

hist *hist_new(void);          /* NULL when out of memory */
void hist_free(hist *h);
void hist_add(hist *h, uint64_t v);
uint64_t hist_count(const hist *h);
uint64_t hist_min(const hist *h);
uint64_t hist_max(const hist *h);
double hist_mean(const hist *h);
/* Smallest recorded value v such that p percent of samples are <= v (to
 * bucket precision); 0 when empty. */
uint64_t hist_percentile(const hist *h, double p);

#endif
