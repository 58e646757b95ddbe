/*
 * Chained hash map keyed by strings; see strmap.h. Grows at load factor 1.
 */
#include "strmap.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static unsigned hash_str(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

void strmap_init(struct strmap *m)
{
    m->nbuckets = 16;
    m->buckets = xcalloc(m->nbuckets, sizeof(*m->buckets));
    m->count = 0;
}

void strmap_fini(struct strmap *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct strmap_entry *e = m->buckets[i];
        while (e) {
            struct strmap_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = NULL;
    m->nbuckets = 0;
    m->count = 0;
}

static struct strmap_entry **find_slot(const struct strmap *m, const char *key, unsigned h)
{
    struct strmap_entry **p = &m->buckets[h & (m->nbuckets - 1)];
    for (; *p; p = &(*p)->next)
        if ((*p)->hash == h && strcmp((*p)->key, key) == 0)
            return p;
    return p;
}

void *strmap_get(const struct strmap *m, const char *key)
{
    struct strmap_entry **p = find_slot(m, key, hash_str(key));
    return *p ? (*p)->value : NULL;
}

static void grow(struct strmap *m)
{
    size_t n = m->nbuckets * 2;
    struct strmap_entry **b = xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct strmap_entry *e = m->buckets[i];
        while (e) {
            struct strmap_entry *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

void *strmap_put(struct strmap *m, const char *key, void *value)
{
    unsigned h = hash_str(key);
    struct strmap_entry **p = find_slot(m, key, h);
    if (*p) {
        void *old = (*p)->value;
        (*p)->value = value;
        return old;
    }
    size_t len = strlen(key);
    struct strmap_entry *e = xmalloc(sizeof(*e) + len + 1);
    memcpy(e->key, key, len + 1);
    e->hash = h;
    e->value = value;
    e->next = NULL;
    *p = e;
    if (++m->count > m->nbuckets)
        grow(m);
    return NULL;
}

void *strmap_del(struct strmap *m, const char *key)
{
    struct strmap_entry **p = find_slot(m, key, hash_str(key));
    struct strmap_entry *e = *p;
    if (!e)
        return NULL;
    void *v = e->value;
    *p = e->next;
    free(e);
    m->count--;
    return v;
}

struct strmap_entry *strmap_first(const struct strmap *m, size_t *iter)
{
    for (*iter = 0; *iter < m->nbuckets; (*iter)++)
        if (m->buckets[*iter])
            return m->buckets[*iter];
    return NULL;
}

struct strmap_entry *strmap_next(const struct strmap *m, struct strmap_entry *e, size_t *iter)
{
    if (e->next)
        return e->next;
    for ((*iter)++; *iter < m->nbuckets; (*iter)++)
        if (m->buckets[*iter])
            return m->buckets[*iter];
    return NULL;
}
