/*
 * expat's heap: every parser xml.c creates allocates here (through
 * XML_ParserCreate_MM), never from malloc's heap.
 *
 * Why: an idle connection's parser is freed (xml_hibernate, R7 in xml.c),
 * but it was allocated in the same moments as the connection's long-lived
 * objects (struct conn, buffers, JIDs), so with malloc the freed parser is
 * a scatter of small holes between live objects and its pages stay
 * resident; malloc_trim cannot return them. Here parser memory lives in
 * slabs of its own, so once the parsers go to sleep whole slabs are empty
 * and go back to the system. Written by hand because no library in Debian
 * gives one subsystem a heap of its own that returns its pages: glibc's
 * arenas are per thread, not per caller; jemalloc and tcmalloc replace
 * malloc for the whole process; talloc and APR pools free only as a whole.
 *
 * Rules, cited where applied:
 *   A1  Every mapping is SLAB_SIZE-aligned and starts with a struct slab,
 *       and every pointer handed out lies within SLAB_SIZE of its mapping's
 *       start, so masking a pointer finds its header. Allocations above the
 *       largest class get a mapping of their own with the same header
 *       (kind SLAB_BIG), so free and realloc never guess which kind it is.
 *   A2  A slab serves one size class. Objects are carved in address order
 *       from a bump pointer before freed ones are reused, so a slab makes
 *       resident only the pages it has used.
 *   A3  A class lists its slabs that have room; allocation takes the head.
 *       A full slab that gets a free object goes to the head, so holes are
 *       filled before an empty slab is touched.
 *   A4  A slab that becomes empty is unmapped, except one per class kept as
 *       a spare at the tail of the list: the router builds and frees a
 *       parser for every stanza it parses, and without the spare each one
 *       would cost an mmap and a munmap per class it touches.
 *       xml_alloc_trim() unmaps the spares too.
 *   A5  realloc stays in place while the new size fits the object and
 *       wastes less than half of it; otherwise it moves.
 *   A6  No locks: expat runs only on the main thread of each process
 *       (gateway, router, storage; ZeroMQ's I/O thread never parses XML),
 *       and parley-bench's fleet is forked processes, each single-threaded.
 *       A process that parses XML on two threads needs a lock here first.
 *
 * Ownership: the allocator owns its mappings; expat owns what it allocates
 * and gives it back through xml_alloc_free, as XML_ParserFree does.
 */
#include "xml_alloc.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define XA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define XA_ASAN 1
#endif
#endif
#ifdef XA_ASAN
/* Free and not-yet-used bytes stay poisoned, so the unit tests under ASan
 * still catch a use after free or an overrun inside a slab. */
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define SLAB_SIZE ((size_t)64 * 1024)
#define SLAB_MASK (~(uintptr_t)(SLAB_SIZE - 1))
#define HDR_SIZE 64 /* struct slab rounded up: objects stay 16-byte aligned */
#define NCLASSES 32

enum slab_kind { SLAB_SMALL = 0x51ab5e11, SLAB_BIG = 0xb16b10c5 };

/* Four classes per power of two above 128: at most 25% lost to rounding. */
static const uint32_t class_size[NCLASSES] = {
    16, 32, 48, 64, 80, 96, 112, 128,
    160, 192, 224, 256, 320, 384, 448, 512,
    640, 768, 896, 1024, 1280, 1536, 1792, 2048,
    2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192,
};
#define MAX_CLASS 8192

struct slab {
    uint32_t kind;             /* enum slab_kind (A1) */
    uint32_t cls;              /* small: index into class_size */
    uint32_t nused, cap;       /* small: objects handed out, objects that fit */
    char *bump;                /* small: first never-used object (A2) */
    void *free;                /* small: freed objects, linked through their first word */
    struct slab *prev, *next;  /* small: in the class list while it has room (A3) */
    size_t map_len;            /* big: length of the mapping */
};
_Static_assert(sizeof(struct slab) <= HDR_SIZE, "slab header must fit before the first object");

struct size_class {
    struct slab *head, *tail;  /* slabs with room (A3) */
    struct slab *spare;        /* the empty slab kept (A4); also at the list's tail */
};

static struct size_class classes[NCLASSES];
static struct xml_alloc_stats stats;

static void oom(size_t n)
{
    fprintf(stderr, "fatal: out of memory mapping %zu bytes for expat\n", n);
    abort();
}

static unsigned class_of(size_t n)
{
    if (n <= 128)
        return n ? (unsigned)((n + 15) / 16 - 1) : 0;
    /* 2^p < n <= 2^(p+1); four steps of 2^(p-2) in between. */
    unsigned p = 63 - (unsigned)__builtin_clzll((unsigned long long)(n - 1));
    return 8 + (p - 7) * 4 + (unsigned)((n - 1 - ((size_t)1 << p)) >> (p - 2));
}

static struct slab *slab_of(const void *p)
{
    struct slab *s = (struct slab *)((uintptr_t)p & SLAB_MASK);            /* A1 */
    assert(s->kind == SLAB_SMALL || s->kind == SLAB_BIG);
    return s;
}

/* len bytes, SLAB_SIZE-aligned (A1). The kernel places mappings top-down, so
 * after one aligned mapping the next usually is too and costs one call. */
static void *map_aligned(size_t len)
{
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        oom(len);
    if (((uintptr_t)p & ~SLAB_MASK) == 0)
        return p;
    (void)munmap(p, len); /* cannot fail on a mapping we just made */
    size_t over = len + SLAB_SIZE;
    p = mmap(NULL, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        oom(over);
    char *start = (char *)(((uintptr_t)p + SLAB_SIZE - 1) & SLAB_MASK);
    size_t head = (size_t)(start - p), tail = over - head - len;
    if (head)
        (void)munmap(p, head);
    if (tail)
        (void)munmap(start + len, tail);
    return start;
}

static void unmap(struct slab *s, size_t len)
{
    UNPOISON(s, len); /* the addresses may be mapped again for someone else */
    (void)munmap(s, len);
}

static void list_remove(struct size_class *k, struct slab *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        k->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        k->tail = s->prev;
    s->prev = s->next = NULL;
}

static void list_push_head(struct size_class *k, struct slab *s)
{
    s->prev = NULL;
    s->next = k->head;
    if (k->head)
        k->head->prev = s;
    else
        k->tail = s;
    k->head = s;
}

static void list_push_tail(struct size_class *k, struct slab *s)
{
    s->next = NULL;
    s->prev = k->tail;
    if (k->tail)
        k->tail->next = s;
    else
        k->head = s;
    k->tail = s;
}

/* An empty slab carves from its first page again (A2). */
static void slab_reset(struct slab *s)
{
    s->nused = 0;
    s->free = NULL;
    s->bump = (char *)s + HDR_SIZE;
    POISON(s->bump, SLAB_SIZE - HDR_SIZE);
}

static struct slab *slab_new(unsigned c)
{
    struct slab *s = map_aligned(SLAB_SIZE);
    s->kind = SLAB_SMALL;
    s->cls = c;
    s->cap = (uint32_t)((SLAB_SIZE - HDR_SIZE) / class_size[c]);
    slab_reset(s);
    stats.slabs_held++;
    return s;
}

static void *small_alloc(size_t n)
{
    unsigned c = class_of(n);
    struct size_class *k = &classes[c];
    struct slab *s = k->head;
    char *obj;

    if (!s) {
        s = slab_new(c);
        list_push_head(k, s);
    } else if (s == k->spare) {
        k->spare = NULL; /* only when it is the class's last slab with room (A3, A4) */
        stats.slabs_empty--;
    }
    if (s->free) {
        obj = s->free;
        UNPOISON(obj, sizeof(void *));
        s->free = *(void **)obj;
        POISON(obj, class_size[c]);
    } else {
        obj = s->bump;
        s->bump += class_size[c];
    }
    if (++s->nused == s->cap)
        list_remove(k, s);
    stats.bytes_in_use += class_size[c];
    UNPOISON(obj, n);
    return obj;
}

static void small_free(struct slab *s, void *obj)
{
    struct size_class *k = &classes[s->cls];

    UNPOISON(obj, sizeof(void *));
    *(void **)obj = s->free;
    s->free = obj;
    POISON(obj, class_size[s->cls]);
    stats.bytes_in_use -= class_size[s->cls];
    if (s->nused-- == s->cap)
        list_push_head(k, s);                                              /* A3 */
    if (s->nused > 0)
        return;
    list_remove(k, s);                                                     /* A4 */
    if (k->spare) {
        unmap(s, SLAB_SIZE);
        stats.slabs_held--;
        return;
    }
    slab_reset(s);
    k->spare = s;
    list_push_tail(k, s);
    stats.slabs_empty++;
}

static void *big_alloc(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (n > SIZE_MAX / 2)
        oom(n);
    size_t len = (HDR_SIZE + n + page - 1) / page * page;
    struct slab *s = map_aligned(len);
    s->kind = SLAB_BIG;
    s->map_len = len;
    stats.bigs_held++;
    stats.bytes_in_use += len;
    return (char *)s + HDR_SIZE;
}

static void big_free(struct slab *s)
{
    stats.bigs_held--;
    stats.bytes_in_use -= s->map_len;
    unmap(s, s->map_len);
}

void *xml_alloc_malloc(size_t n)
{
    return n <= MAX_CLASS ? small_alloc(n) : big_alloc(n);
}

void xml_alloc_free(void *p)
{
    if (!p)
        return;
    struct slab *s = slab_of(p);
    if (s->kind == SLAB_BIG)
        big_free(s);
    else
        small_free(s, p);
}

void *xml_alloc_realloc(void *p, size_t n)
{
    if (!p)
        return xml_alloc_malloc(n);
    struct slab *s = slab_of(p);
    size_t have = s->kind == SLAB_BIG ? s->map_len - HDR_SIZE : class_size[s->cls];
    int is_small_enough = s->kind == SLAB_BIG ? n > MAX_CLASS : n > have / 2 || s->cls == 0;

    if (n <= have && is_small_enough) {                                    /* A5 */
        if (s->kind == SLAB_SMALL) {
            POISON(p, have);
            UNPOISON(p, n ? n : 1);
        }
        return p;
    }
    void *q = xml_alloc_malloc(n);
    UNPOISON(p, have); /* we copy the whole old object, not only what was asked */
    memcpy(q, p, n < have ? n : have);
    xml_alloc_free(p);
    return q;
}

void xml_alloc_trim(void)
{
    for (unsigned c = 0; c < NCLASSES; c++) {
        struct size_class *k = &classes[c];
        if (!k->spare)
            continue;
        list_remove(k, k->spare);
        unmap(k->spare, SLAB_SIZE);
        k->spare = NULL;
        stats.slabs_held--;
        stats.slabs_empty--;
    }
}

void xml_alloc_stats(struct xml_alloc_stats *out)
{
    *out = stats;
}
