/*
 * A small set of string pairs with a count each (pg_batch.h), for the
 * decisions pg_group.c takes in C: which accounts exist and their queue
 * length, which (user, id) pairs are stored. Open addressing over borrowed
 * strings, sized once for what the batch can hold; no deletion.
 */
#include "pg_batch.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

void pg_pairs_init(struct pg_pairs *s, size_t max)
{
    s->cap = 16;
    while (s->cap < 2 * max)
        s->cap *= 2;
    s->v = xcalloc(s->cap, sizeof(*s->v));
}

void pg_pairs_fini(struct pg_pairs *s)
{
    free(s->v);
    s->v = NULL;
    s->cap = 0;
}

static size_t pairs_hash(const char *a, const char *b)
{
    size_t h = 1469598103934665603u;
    for (; *a; a++)
        h = (h ^ (unsigned char)*a) * 1099511628211u;
    h = (h ^ 0xff) * 1099511628211u;
    for (; b && *b; b++)
        h = (h ^ (unsigned char)*b) * 1099511628211u;
    return h;
}

struct pg_pair *pg_pairs_find(struct pg_pairs *s, const char *a, const char *b, int add)
{
    size_t i = pairs_hash(a, b) & (s->cap - 1);

    for (; s->v[i].a; i = (i + 1) & (s->cap - 1))
        if (strcmp(s->v[i].a, a) == 0 && (b ? s->v[i].b && strcmp(s->v[i].b, b) == 0 : !s->v[i].b))
            return &s->v[i];
    if (!add)
        return NULL;
    s->v[i] = (struct pg_pair){ a, b, 0 };
    return &s->v[i];
}
