/*
 * Standard base64 with padding (RFC 4648 §4), strict both ways. SASL carries
 * every message base64-encoded (RFC 6120 §6.4.2) and SCRAM carries salts,
 * proofs and signatures in it (RFC 5802 §5.1), so a decoder that quietly
 * skipped junk would accept two spellings of one proof. We accept exactly one.
 */
#ifndef PARLEY_BASE64_H
#define PARLEY_BASE64_H

#include <stddef.h>

#define BASE64_ERR_INVALID (-1)

/* Returns the encoding of len bytes (in may be NULL when len is 0) as a
 * NUL-terminated string the caller frees. Never fails (allocation aborts). */
char *base64_encode(const unsigned char *in, size_t len);

/* Decodes len characters of in (in may be NULL when len is 0). Returns 0 and
 * sets *out (caller frees; NUL-terminated past *out_len for convenience), or
 * BASE64_ERR_INVALID with *out NULL and *out_len 0 when in is not canonical
 * base64: a character outside the alphabet (whitespace included), a length
 * that is not a multiple of 4, '=' anywhere but the last one or two places,
 * or non-zero padding bits (RFC 4648 §3.5). "" decodes to 0 bytes. */
int base64_decode(const char *in, size_t len, unsigned char **out, size_t *out_len);

#endif
