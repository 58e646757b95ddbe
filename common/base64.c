/*
 * Base64 of RFC 4648 §4. Hand-written rather than EVP_DecodeBlock because
 * OpenSSL's decoder skips whitespace and ignores padding mistakes, and the
 * SASL code needs the strict behaviour base64.h promises.
 */
#include "base64.h"

#include <stdint.h>
#include <stdlib.h>

#include "util.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The 6-bit value of c, or -1 for anything outside the alphabet ('=' too). */
static int sextet(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

char *base64_encode(const unsigned char *in, size_t len)
{
    /* The output size would overflow: no such input fits in memory next to
     * its encoding, so treat it like any other allocation failure. */
    if (len > (SIZE_MAX - 1) / 4 * 3)
        abort();
    char *out = xmalloc((len + 2) / 3 * 4 + 1);
    char *p = out;
    size_t i = 0;

    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *p++ = alphabet[v >> 18 & 63];
        *p++ = alphabet[v >> 12 & 63];
        *p++ = alphabet[v >> 6 & 63];
        *p++ = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *p++ = alphabet[v >> 18 & 63];
        *p++ = alphabet[v >> 12 & 63];
        *p++ = '=';
        *p++ = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *p++ = alphabet[v >> 18 & 63];
        *p++ = alphabet[v >> 12 & 63];
        *p++ = alphabet[v >> 6 & 63];
        *p++ = '=';
    }
    *p = '\0';
    return out;
}

int base64_decode(const char *in, size_t len, unsigned char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (len % 4 != 0)
        return BASE64_ERR_INVALID;

    /* Padding may only close the last quantum: "xx==" or "xxx=". */
    size_t pad = 0;
    if (len >= 4 && in[len - 1] == '=')
        pad = in[len - 2] == '=' ? 2 : 1;

    unsigned char *buf = xmalloc(len / 4 * 3 + 1);
    size_t n = 0;

    for (size_t i = 0; i < len; i += 4) {
        size_t data = i + 4 == len ? 4 - pad : 4; /* characters carrying bits */
        uint32_t v = 0;

        for (size_t j = 0; j < 4; j++) {
            int s = j < data ? sextet((unsigned char)in[i + j]) : 0;
            if (s < 0)
                goto bad;
            v = v << 6 | (uint32_t)s;
        }
        buf[n++] = (unsigned char)(v >> 16);
        if (data > 2)
            buf[n++] = (unsigned char)(v >> 8);
        if (data > 3)
            buf[n++] = (unsigned char)v;
        /* RFC 4648 §3.5: the bits under the padding must be zero, else two
         * strings would decode to the same bytes. */
        if ((data == 2 && (v & 0xffff)) || (data == 3 && (v & 0xff)))
            goto bad;
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
bad:
    free(buf);
    return BASE64_ERR_INVALID;
}
