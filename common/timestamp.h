/*
 * XEP-0082 date-time profiles: what <delay/> stamps and MAM filters carry.
 * Times are int64 microseconds since the Unix epoch, UTC.
 */
#ifndef PARLEY_TIMESTAMP_H
#define PARLEY_TIMESTAMP_H

#include <stdint.h>

#define TIMESTAMP_MAX 32

enum { TIMESTAMP_OK = 0, TIMESTAMP_ERR_SYNTAX = -1, TIMESTAMP_ERR_RANGE = -2 };

/* "CCYY-MM-DDThh:mm:ss[.sss…](Z|±hh:mm)" -> microseconds. A bare date
 * "CCYY-MM-DD" means its midnight UTC. */
int timestamp_parse(const char *s, int64_t *usec);
/* Writes "CCYY-MM-DDThh:mm:ss.uuuuuuZ" (out must hold TIMESTAMP_MAX). */
void timestamp_format(int64_t usec, char *out);
/* The current time in microseconds. */
int64_t timestamp_now(void);

#endif
