/*
 * Unit tests for common/xml_alloc.c, expat's slab heap: every size class,
 * realloc in place and across classes, big allocations, alignment, every
 * page given back once everything is freed, a randomized churn checked
 * against content patterns, and a real parser's life through xml.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stanza.h"
#include "xml.h"
#include "xml_alloc.h"

#define MAX_CLASS 8192
#define SLAB_SIZE (64 * 1024)

static size_t in_use(void)
{
    struct xml_alloc_stats st;
    xml_alloc_stats(&st);
    return st.bytes_in_use;
}

static void fill(void *p, size_t n, unsigned seed)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(seed * 31 + i * 7);
}

static int check(const void *p, size_t n, unsigned seed)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(seed * 31 + i * 7))
            return 0;
    return 1;
}

/* Every test ends with nothing allocated and no slab held. */
static void assert_all_returned(void)
{
    struct xml_alloc_stats st;
    xml_alloc_stats(&st);
    assert_int_equal(st.bytes_in_use, 0);
    assert_int_equal(st.bigs_held, 0);
    assert_int_equal(st.slabs_held, st.slabs_empty);
    xml_alloc_trim();
    xml_alloc_stats(&st);
    assert_int_equal(st.slabs_held, 0);
    assert_int_equal(st.slabs_empty, 0);
}

/* Every size up to the largest class: aligned, rounded up by at most a
 * class step, writable to the last byte, and given back. */
static void test_every_size(void **state)
{
    (void)state;
    for (size_t n = 0; n <= MAX_CLASS; n++) {
        void *p = xml_alloc_malloc(n);
        size_t got = in_use();
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        size_t asked = n ? n : 1;
        assert_true(got >= asked);
        assert_true(got - asked < (asked <= 128 ? 16 : asked / 4));
        fill(p, n, (unsigned)n);
        assert_true(check(p, n, (unsigned)n));
        xml_alloc_free(p);
        assert_int_equal(in_use(), 0);
    }
    xml_alloc_free(NULL);
    assert_all_returned();
}

/* realloc inside the object's class keeps the pointer and the bytes. */
static void test_realloc_in_place(void **state)
{
    (void)state;
    char *p = xml_alloc_malloc(100);  /* class 112 */
    fill(p, 100, 1);
    assert_ptr_equal(xml_alloc_realloc(p, 112), p);
    assert_ptr_equal(xml_alloc_realloc(p, 57), p);
    assert_true(check(p, 57, 1));
    char *q = xml_alloc_realloc(p, 113);
    assert_ptr_not_equal(q, p);
    assert_true(check(q, 57, 1));
    /* Shrinking to under half moves it to a smaller class. */
    char *r = xml_alloc_realloc(q, 20);
    assert_ptr_not_equal(r, q);
    assert_true(check(r, 20, 1));
    assert_int_equal(in_use(), 32);
    xml_alloc_free(r);
    assert_all_returned();
}

/* Growing one byte at a time through every class into a big mapping, and
 * back down, keeps the content. */
static void test_realloc_across_classes(void **state)
{
    (void)state;
    char *p = NULL;
    size_t n = 0;
    for (size_t m = 1; m <= 3 * MAX_CLASS; m += 1 + m / 16) {
        p = xml_alloc_realloc(p, m);
        assert_int_equal((uintptr_t)p % 16, 0);
        assert_true(check(p, n, 7));
        fill(p, m, 7);
        n = m;
    }
    for (size_t m = n; m > 0; m /= 3) {
        p = xml_alloc_realloc(p, m);
        assert_true(check(p, m, 7));
    }
    xml_alloc_free(p);
    assert_all_returned();
}

/* Above the largest class: one mapping each, in place while it fits. */
static void test_big(void **state)
{
    (void)state;
    struct xml_alloc_stats st;
    char *p = xml_alloc_malloc(100000);
    char *q = xml_alloc_malloc(MAX_CLASS + 1);
    assert_int_equal((uintptr_t)p % 16, 0);
    assert_int_equal((uintptr_t)q % 16, 0);
    fill(p, 100000, 3);
    fill(q, MAX_CLASS + 1, 4);
    xml_alloc_stats(&st);
    assert_int_equal(st.bigs_held, 2);
    assert_int_equal(st.slabs_held, 0);

    p = xml_alloc_realloc(p, 300000);
    assert_true(check(p, 100000, 3));
    fill(p, 300000, 5);
    assert_ptr_equal(xml_alloc_realloc(p, 200000), p);
    assert_true(check(p, 200000, 5));
    p = xml_alloc_realloc(p, 1000);  /* back into a slab */
    assert_true(check(p, 1000, 5));
    xml_alloc_stats(&st);
    assert_int_equal(st.bigs_held, 1);
    assert_int_equal(st.slabs_held, 1);
    assert_true(check(q, MAX_CLASS + 1, 4));
    xml_alloc_free(q);
    xml_alloc_free(p);
    assert_all_returned();
}

/* Several slabs' worth of every class, freed in a scrambled order: all of
 * it goes back but one empty spare per class, and trim takes those. */
static void test_all_returned(void **state)
{
    (void)state;
    enum { N = 100000 };
    void **ptrs = calloc(N, sizeof *ptrs);
    size_t count = 0;
    struct xml_alloc_stats st;

    for (size_t size = 16; size <= MAX_CLASS; size += size / 4)
        for (size_t i = 0; i < 3 * SLAB_SIZE / size && count < N; i++)
            ptrs[count++] = xml_alloc_malloc(size);
    xml_alloc_stats(&st);
    assert_true(st.slabs_held > 64);
    srand(42);
    for (size_t i = count; i > 1; i--) {
        size_t j = (size_t)rand() % i;
        void *t = ptrs[i - 1];
        ptrs[i - 1] = ptrs[j];
        ptrs[j] = t;
    }
    for (size_t i = 0; i < count; i++)
        xml_alloc_free(ptrs[i]);
    xml_alloc_stats(&st);
    assert_int_equal(st.bytes_in_use, 0);
    assert_true(st.slabs_held <= 32); /* at most one spare per class */
    assert_int_equal(st.slabs_held, st.slabs_empty);
    free(ptrs);
    assert_all_returned();
}

/* The spare is reused before a new slab is mapped. */
static void test_spare_reused(void **state)
{
    (void)state;
    struct xml_alloc_stats st;
    void *p = xml_alloc_malloc(64);
    xml_alloc_free(p);
    xml_alloc_stats(&st);
    assert_int_equal(st.slabs_held, 1);
    assert_int_equal(st.slabs_empty, 1);
    void *q = xml_alloc_malloc(64);
    xml_alloc_stats(&st);
    assert_int_equal(st.slabs_held, 1);
    assert_int_equal(st.slabs_empty, 0);
    xml_alloc_free(q);
    assert_all_returned();
}

/* Random malloc/realloc/free over many slots; every live object keeps its
 * pattern, whatever moved around it. */
static void test_churn(void **state)
{
    (void)state;
    enum { SLOTS = 2000, OPS = 200000 };
    struct slot { unsigned char *p; size_t n; unsigned seed; } *s = calloc(SLOTS, sizeof *s);
    unsigned long long x = 0x9e3779b97f4a7c15ULL;

    for (unsigned op = 0; op < OPS; op++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        struct slot *t = &s[x % SLOTS];
        /* Mostly small, as expat's are; one in 64 up to 40 KB. */
        size_t n = (x >> 20) % 64 == 0 ? (size_t)((x >> 32) % 40000) : (size_t)((x >> 32) % 1200);
        if (t->p)
            assert_true(check(t->p, t->n, t->seed));
        switch ((x >> 12) % 3) {
        case 0:
            xml_alloc_free(t->p);
            t->p = xml_alloc_malloc(n);
            break;
        case 1:
            t->p = xml_alloc_realloc(t->p, n);
            assert_true(check(t->p, n < t->n ? n : t->n, t->seed));
            break;
        default:
            xml_alloc_free(t->p);
            t->p = NULL;
            t->n = 0;
            continue;
        }
        assert_int_equal((uintptr_t)t->p % 16, 0);
        t->n = n;
        t->seed = op;
        fill(t->p, n, op);
    }
    for (unsigned i = 0; i < SLOTS; i++) {
        if (s[i].p)
            assert_true(check(s[i].p, s[i].n, s[i].seed));
        xml_alloc_free(s[i].p);
    }
    free(s);
    assert_all_returned();
}

static void on_stanza(void *ud, struct stanza *s)
{
    (*(int *)ud)++;
    stanza_free(s);
}

static void on_open(void *ud, struct stanza *h)
{
    (void)ud;
    stanza_free(h);
}

/* A parser built by xml.c lives in these slabs, hibernation gives its
 * memory back, and waking takes it again. */
static void test_parser_lifecycle(void **state)
{
    (void)state;
    const struct xml_callbacks cb = { .stream_open = on_open, .stanza = on_stanza };
    static const char hdr[] = "<stream:stream xmlns='jabber:client' "
                              "xmlns:stream='http://etherx.jabber.org/streams' to='example.com'>";
    static const char msg[] = "<message to='a@b'><body>hi</body></message>";
    int count = 0;
    struct xml_parser *p = xml_new(NULL, &cb, &count);

    assert_true(in_use() > 0);
    assert_int_equal(xml_feed(p, hdr, sizeof hdr - 1, NULL), XML_OK);
    assert_int_equal(xml_feed(p, msg, sizeof msg - 1, NULL), XML_OK);
    assert_int_equal(xml_hibernate(p), 1);
    assert_int_equal(in_use(), 0);
    assert_int_equal(xml_feed(p, msg, sizeof msg - 1, NULL), XML_OK);
    assert_int_equal(count, 2);
    assert_true(in_use() > 0);
    xml_free(p);
    assert_all_returned();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_size),
        cmocka_unit_test(test_realloc_in_place),
        cmocka_unit_test(test_realloc_across_classes),
        cmocka_unit_test(test_big),
        cmocka_unit_test(test_all_returned),
        cmocka_unit_test(test_spare_reused),
        cmocka_unit_test(test_churn),
        cmocka_unit_test(test_parser_lifecycle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
