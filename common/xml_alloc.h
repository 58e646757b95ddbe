/*
 * expat's own heap (the XML_Memory_Handling_Suite given to every parser
 * xml.c creates): size-class slabs apart from malloc's heap, so a parser
 * freed by xml_hibernate (R7) leaves whole empty slabs that go back to the
 * system, not small holes between long-lived objects. Process-wide (expat's
 * suite has no user-data pointer) and single-threaded: see xml_alloc.c.
 */
#ifndef PARLEY_XML_ALLOC_H
#define PARLEY_XML_ALLOC_H

#include <stddef.h>

/* malloc/realloc/free contracts, 16-byte alignment. Out of memory aborts
 * (STYLE.md "Errors"), so neither allocator returns NULL. */
void *xml_alloc_malloc(size_t n);
void *xml_alloc_realloc(void *p, size_t n);  /* in place while n fits p's class */
void xml_alloc_free(void *p);                /* NULL is a no-op */

/* Unmaps the empty slabs kept as spares (one per size class at most). */
void xml_alloc_trim(void);

struct xml_alloc_stats {
    size_t bytes_in_use;  /* live allocations, rounded up to their class or pages */
    size_t slabs_held;    /* slabs mapped, spares included */
    size_t slabs_empty;   /* of those, the empty spares */
    size_t bigs_held;     /* allocations above the largest class, one mapping each */
};

void xml_alloc_stats(struct xml_alloc_stats *out);

#endif
