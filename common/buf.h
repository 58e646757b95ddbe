/*
 * A growable byte buffer: output queues, serializer targets, envelope frames.
 * The struct is embedded by its owner (buf_init/buf_fini); data is always
 * NUL-terminated past len so it can be handed to string functions.
 */
#ifndef PARLEY_BUF_H
#define PARLEY_BUF_H

#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

void buf_init(struct buf *b);
void buf_fini(struct buf *b);          /* frees the storage; b may be reused after buf_init */
void buf_reset(struct buf *b);         /* len = 0, keeps capacity */
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_append_str(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_consume(struct buf *b, size_t n); /* drop n bytes from the front */
/* Releases storage beyond len when it exceeds keep bytes (idle connections). */
void buf_shrink(struct buf *b, size_t keep);
/* Hands the storage to the caller (who frees it); b is empty afterwards. */
char *buf_steal(struct buf *b, size_t *len);

#endif
