/*
 * Message body stamps; see stamp.h.
 */
#include "stamp.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int stamp_encode(const struct stamp *s, size_t pad, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, STAMP_MAGIC " %" PRIu32 " %" PRIu32 " %" PRIu64 " %" PRIu64, s->run, s->sender,
                     s->seq, s->t_ns);
    if (n < 0 || (size_t)n >= outsz)
        return STAMP_ERR_SPACE;
    size_t len = (size_t)n;
    if (pad > 0) {
        if (len + 1 + pad >= outsz)
            return STAMP_ERR_SPACE;
        out[len++] = ' ';
        memset(out + len, 'x', pad);
        len += pad;
        out[len] = '\0';
    }
    return (int)len;
}

/* Reads one decimal field at *p (no sign, at least one digit, at most max),
 * then expects a space or the end. */
static int read_field(const char **p, const char *end, uint64_t max, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;

    if (s >= end || *s < '0' || *s > '9')
        return STAMP_ERR_FORMAT;
    while (s < end && *s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return STAMP_ERR_FORMAT;
        v = v * 10 + d;
        s++;
    }
    if (s < end && *s != ' ')
        return STAMP_ERR_FORMAT;
    *p = s < end ? s + 1 : s;
    *out = v;
    return 0;
}

int stamp_parse(const char *text, size_t len, struct stamp *out)
{
    const char *p = text, *end = text + len;
    uint64_t run, sender, seq, t;
    size_t mlen = strlen(STAMP_MAGIC);

    if (len < mlen + 1 || memcmp(p, STAMP_MAGIC " ", mlen + 1) != 0)
        return STAMP_ERR_FORMAT;
    p += mlen + 1;
    if (read_field(&p, end, UINT32_MAX, &run) < 0 || p == end ||
        read_field(&p, end, UINT32_MAX, &sender) < 0 || p == end ||
        read_field(&p, end, UINT64_MAX, &seq) < 0 || p == end ||
        read_field(&p, end, UINT64_MAX, &t) < 0)
        return STAMP_ERR_FORMAT;
    if (p > text && p[-1] == ' ' && p == end)
        return STAMP_ERR_FORMAT;   /* a trailing space without filler */
    for (; p < end; p++)
        if (*p != 'x')
            return STAMP_ERR_FORMAT;
    out->run = (uint32_t)run;
    out->sender = (uint32_t)sender;
    out->seq = seq;
    out->t_ns = t;
    return 0;
}
