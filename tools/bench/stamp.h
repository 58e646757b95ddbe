/*
 * The body of every message parley-bench sends: who sent it, in which run,
 * its sequence number and its send time, so the receiver (possibly another
 * generator process) measures delivery latency and counts losses and
 * duplicates without any side channel. Plain ASCII, so no server changes
 * it in transit:
 *
 *   "pb1 <run> <sender> <seq> <t_ns>[ <padding>]"
 *
 * run is random per generator run (messages left over from an earlier run
 * are recognised and set aside), sender the account index, t_ns
 * CLOCK_MONOTONIC nanoseconds (one clock for every process on the host).
 * No I/O.
 */
#ifndef PARLEY_BENCH_STAMP_H
#define PARLEY_BENCH_STAMP_H

#include <stddef.h>
#include <stdint.h>

#define STAMP_MAGIC "pb1"
#define STAMP_MAX_TEXT 80          /* longest stamp without padding, with NUL */

enum {
    STAMP_ERR_FORMAT = -1,   /* not a parley-bench body */
    STAMP_ERR_SPACE = -2,    /* output buffer too small */
};

struct stamp {
    uint32_t run;
    uint32_t sender;
    uint64_t seq;
    uint64_t t_ns;
};

/* Writes the body for s followed by pad filler characters ('x', after one
 * space) and a NUL into out. Returns the length without the NUL, or
 * STAMP_ERR_SPACE when outsz is too small (out then holds nothing useful). */
int stamp_encode(const struct stamp *s, size_t pad, char *out, size_t outsz);

/* Parses len bytes of text (need not be NUL-terminated). Returns 0 and
 * fills *out, or STAMP_ERR_FORMAT: wrong magic, a field that is not a
 * decimal number without sign or that overflows, missing fields, or
 * anything but filler after them. */
int stamp_parse(const char *text, size_t len, struct stamp *out);

#endif
