/*
 * Latency histogram of parley-bench: log-linear buckets (HDR-style) over
 * nanoseconds, fixed size so a worker process can send it whole to the
 * coordinator and histograms of several workers merge by addition. No I/O.
 *
 * Values below 128 ns have a bucket each; above, every power-of-two range
 * is split into 64 equal buckets, so a reported percentile is within 1/64
 * (1.6 %) above the true value. Values beyond HISTO_MAX_NS land in the
 * last bucket; min, max and mean are exact.
 */
#ifndef PARLEY_BENCH_HISTO_H
#define PARLEY_BENCH_HISTO_H

#include <stddef.h>
#include <stdint.h>

#define HISTO_SUB 64                    /* buckets per power of two */
#define HISTO_MAX_SHIFT 33              /* top range [2^39, 2^40) ns, about 18 minutes */
#define HISTO_BUCKETS (2 * HISTO_SUB + HISTO_MAX_SHIFT * HISTO_SUB)
#define HISTO_MAX_NS ((UINT64_C(1) << 40) - 1)

struct histo {
    uint64_t n;         /* values added */
    uint64_t min, max;  /* exact; min is UINT64_MAX while empty */
    double sum;         /* for the mean */
    uint64_t counts[HISTO_BUCKETS];
};

void histo_init(struct histo *h);
void histo_add(struct histo *h, uint64_t ns);
/* Adds every count of from to into (both initialized). */
void histo_merge(struct histo *into, const struct histo *from);

/* Nearest-rank percentile, p in [0, 100]: the upper bound of the bucket
 * holding the ceil(p/100 * n)-th smallest value, clamped to [min, max];
 * p <= 0 gives min. 0 when empty. */
uint64_t histo_percentile(const struct histo *h, double p);
double histo_mean(const struct histo *h);   /* 0 when empty */

/* Bucket geometry, for plots: index of ns, and a bucket's bounds (inclusive). */
size_t histo_bucket_of(uint64_t ns);
uint64_t histo_bucket_low(size_t i);
uint64_t histo_bucket_high(size_t i);

#endif
