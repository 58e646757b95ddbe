/*
 * XEP-0082 timestamps. Hand-written because strptime has no fractional
 * seconds or numeric offsets, and timegm-based arithmetic is all we need.
 */
#include "timestamp.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int timestamp_parse(const char *s, int64_t *usec)
{
    int Y, M, D, h = 0, m = 0, sec = 0;
    int64_t frac = 0;
    long offset = 0;
    struct tm tm;
    const char *p;

    if (!s || strlen(s) < 10 || digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) || s[7] != '-' ||
        digits(s + 8, 2, &D))
        return TIMESTAMP_ERR_SYNTAX;
    p = s + 10;
    if (*p == 'T') {
        if (strlen(p) < 9 || digits(p + 1, 2, &h) || p[3] != ':' || digits(p + 4, 2, &m) || p[6] != ':' ||
            digits(p + 7, 2, &sec))
            return TIMESTAMP_ERR_SYNTAX;
        p += 9;
        if (*p == '.') {
            int64_t scale = 100000;
            p++;
            if (!isdigit((unsigned char)*p))
                return TIMESTAMP_ERR_SYNTAX;
            for (; isdigit((unsigned char)*p); p++) {
                frac += (*p - '0') * scale;
                scale /= 10;
            }
        }
        if (*p == 'Z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int oh, om;
            if (strlen(p) < 6 || digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 ||
                om > 59)
                return TIMESTAMP_ERR_SYNTAX;
            offset = (oh * 3600L + om * 60L) * (*p == '+' ? 1 : -1);
            p += 6;
        } else {
            return TIMESTAMP_ERR_SYNTAX; /* XEP-0082 requires a zone */
        }
    }
    if (*p)
        return TIMESTAMP_ERR_SYNTAX;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 || Y < 1970)
        return TIMESTAMP_ERR_RANGE;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    /* timegm normalizes Feb 30 to Mar 2: refuse dates that moved. */
    struct tm back;
    gmtime_r(&t, &back);
    if (back.tm_mday != D || back.tm_mon != M - 1)
        return TIMESTAMP_ERR_RANGE;
    *usec = ((int64_t)t - offset) * 1000000 + frac;
    return TIMESTAMP_OK;
}

void timestamp_format(int64_t usec, char *out)
{
    time_t t = (time_t)(usec / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, TIMESTAMP_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, TIMESTAMP_MAX - n, ".%06dZ", (int)(usec % 1000000));
}

int64_t timestamp_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}
