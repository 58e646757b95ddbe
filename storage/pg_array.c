/*
 * PostgreSQL array literals of text (pg_batch.h): how the batch statements
 * take many values in one text parameter ("{\"a\",\"b\"}", the input
 * syntax of text[]). Every element is quoted, so NULL, braces, commas and
 * spaces are plain text; only '"' and '\\' need a backslash.
 */
#include "pg_batch.h"

#include <string.h>

void pg_array_literal(struct buf *out, const char *const *v, size_t n)
{
    buf_append(out, "{", 1);
    for (size_t i = 0; i < n; i++) {
        const char *c = v[i];
        buf_append_str(out, i ? ",\"" : "\"");
        /* Runs without a quote or backslash in one append: payloads are long. */
        while (*c) {
            size_t run = strcspn(c, "\"\\");
            buf_append(out, c, run);
            c += run;
            if (*c) {
                buf_append(out, "\\", 1);
                buf_append(out, c++, 1);
            }
        }
        buf_append(out, "\"", 1);
    }
    buf_append(out, "}", 1);
}
