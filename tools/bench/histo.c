/*
 * Log-linear latency histogram; see histo.h. Bucket index of v >= 128:
 * shift = msb(v) - 6 keeps the top seven bits, m = v >> shift in [64, 128),
 * index = 128 + (shift - 1) * 64 + (m - 64). Below 128 the index is v.
 */
#include "histo.h"

#include <string.h>

void histo_init(struct histo *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

size_t histo_bucket_of(uint64_t ns)
{
    if (ns > HISTO_MAX_NS)
        ns = HISTO_MAX_NS;
    if (ns < 2 * HISTO_SUB)
        return (size_t)ns;
    unsigned msb = 63u - (unsigned)__builtin_clzll(ns);
    unsigned shift = msb - 6;
    uint64_t m = ns >> shift;
    return 2 * HISTO_SUB + (size_t)(shift - 1) * HISTO_SUB + (size_t)(m - HISTO_SUB);
}

uint64_t histo_bucket_low(size_t i)
{
    if (i < 2 * HISTO_SUB)
        return i;
    size_t k = i - 2 * HISTO_SUB;
    unsigned shift = (unsigned)(k / HISTO_SUB) + 1;
    uint64_t m = HISTO_SUB + k % HISTO_SUB;
    return m << shift;
}

uint64_t histo_bucket_high(size_t i)
{
    if (i < 2 * HISTO_SUB)
        return i;
    size_t k = i - 2 * HISTO_SUB;
    unsigned shift = (unsigned)(k / HISTO_SUB) + 1;
    uint64_t m = HISTO_SUB + k % HISTO_SUB;
    return ((m + 1) << shift) - 1;
}

void histo_add(struct histo *h, uint64_t ns)
{
    h->counts[histo_bucket_of(ns)]++;
    h->n++;
    h->sum += (double)ns;
    if (ns < h->min)
        h->min = ns;
    if (ns > h->max)
        h->max = ns;
}

void histo_merge(struct histo *into, const struct histo *from)
{
    for (size_t i = 0; i < HISTO_BUCKETS; i++)
        into->counts[i] += from->counts[i];
    into->n += from->n;
    into->sum += from->sum;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t histo_percentile(const struct histo *h, double p)
{
    if (h->n == 0)
        return 0;
    if (p <= 0)
        return h->min;
    if (p > 100)
        p = 100;
    /* Nearest rank: the smallest value with at least p% of values at or
     * below it; rank 1 for p = 0. p * n first, so 99% of 100 is exactly 99;
     * the epsilon absorbs what rounding remains. */
    double x = p * (double)h->n / 100.0;
    uint64_t rank = (uint64_t)x;
    if ((double)rank < x - 1e-9)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > h->n)
        rank = h->n;
    uint64_t seen = 0;
    for (size_t i = 0; i < HISTO_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = histo_bucket_high(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

double histo_mean(const struct histo *h)
{
    return h->n ? h->sum / (double)h->n : 0.0;
}
