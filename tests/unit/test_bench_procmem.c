/*
 * Unit tests for tools/bench/procmem.c: VmRSS out of /proc/PID/status text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../tools/bench/procmem.h"

/* VmRSS is found among the other lines and read in KiB. */
static void test_parse_vmrss(void **state)
{
    (void)state;
    long kb = -1;
    const char *text = "Name:\tparley-gateway\nVmPeak:\t  200000 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 9000 kB\n";
    assert_int_equal(procmem_parse_status(text, &kb), 0);
    assert_int_equal(kb, 12345);
}

/* VmRSS on the first line counts too. */
static void test_parse_first_line(void **state)
{
    (void)state;
    long kb = -1;
    assert_int_equal(procmem_parse_status("VmRSS:\t7 kB\n", &kb), 0);
    assert_int_equal(kb, 7);
}

/* Without a VmRSS line (a kernel thread, a zombie) there is no figure. */
static void test_parse_missing(void **state)
{
    (void)state;
    long kb = -1;
    assert_int_equal(procmem_parse_status("Name:\tkworker\nVmHWM:\t5 kB\n", &kb), -1);
    assert_int_equal(procmem_parse_status("VmRSS:\t kB\n", &kb), -1);
    assert_int_equal(kb, -1);
}

/* Our own process has a resident size; a PID that cannot exist has none. */
static void test_read_self_and_missing(void **state)
{
    (void)state;
    long kb = 0;
    assert_int_equal(procmem_rss_kb((int)getpid(), &kb), 0);
    assert_true(kb > 0);
    assert_int_equal(procmem_rss_kb(999999999, &kb), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_vmrss),
        cmocka_unit_test(test_parse_first_line),
        cmocka_unit_test(test_parse_missing),
        cmocka_unit_test(test_read_self_and_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
