/*
 * A string-keyed hash map (chained, power-of-two buckets, FNV-1a). Used for
 * the router's session and peer tables, where lookups by JID or peer name
 * happen for every routed message. Keys are copied and owned by the map;
 * values are borrowed pointers whose lifetime the caller manages.
 */
#ifndef PARLEY_STRMAP_H
#define PARLEY_STRMAP_H

#include <stddef.h>

struct strmap_entry {
    struct strmap_entry *next;
    unsigned hash;
    void *value;
    char key[];               /* NUL-terminated copy */
};

struct strmap {
    struct strmap_entry **buckets;
    size_t nbuckets;          /* power of two */
    size_t count;
};

void strmap_init(struct strmap *m);
/* Frees the entries (not the values). */
void strmap_fini(struct strmap *m);
void *strmap_get(const struct strmap *m, const char *key);
/* Inserts or replaces; returns the previous value or NULL. */
void *strmap_put(struct strmap *m, const char *key, void *value);
/* Removes; returns the removed value or NULL. */
void *strmap_del(struct strmap *m, const char *key);

/* Iteration: for (e = strmap_first(m, &i); e; e = strmap_next(m, e, &i)).
 * Do not insert while iterating; deleting the current entry is not allowed
 * either (collect keys first). */
struct strmap_entry *strmap_first(const struct strmap *m, size_t *iter);
struct strmap_entry *strmap_next(const struct strmap *m, struct strmap_entry *e, size_t *iter);

#endif
