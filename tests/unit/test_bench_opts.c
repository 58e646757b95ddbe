/*
 * Unit tests for tools/bench/opts.c: the command line of parley-bench.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../tools/bench/opts.h"

#define PARSE(o, err, ...)                                                                 \
    ({                                                                                     \
        char *argv_[] = { "parley-bench", __VA_ARGS__, NULL };                             \
        opts_parse((int)(sizeof(argv_) / sizeof(argv_[0])) - 1, argv_, (o), err, sizeof(err)); \
    })

/* A scenario alone gives the documented defaults. */
static void test_defaults(void **state)
{
    (void)state;
    struct bench_opts o;
    char err[200];
    assert_int_equal(PARSE(&o, err, "connect"), OPTS_OK);
    assert_int_equal(o.scenario, SCENARIO_CONNECT);
    assert_string_equal(o.host, "127.0.0.1");
    assert_int_equal(o.nports, 1);
    assert_int_equal(o.ports[0], 5222);
    assert_string_equal(o.domain, "localhost");
    assert_int_equal(o.users, 100);
    assert_int_equal(o.tls, TLS_STARTTLS);
    assert_int_equal(o.sasl, SASL_SCRAM_SHA256);
    assert_int_equal(o.procs, 1);
    assert_true(o.duration == 10);
    assert_int_equal(o.create, 0);
}

/* Values are taken both as "--opt value" and "--opt=value". */
static void test_both_value_forms(void **state)
{
    (void)state;
    struct bench_opts o;
    char err[200];
    assert_int_equal(PARSE(&o, err, "chat", "--users", "500", "--rate=2500.5", "--tls=plain", "--sasl",
                           "scram-sha-1", "--procs=4", "--json", "out.json"),
                     OPTS_OK);
    assert_int_equal(o.scenario, SCENARIO_CHAT);
    assert_int_equal(o.users, 500);
    assert_true(o.rate == 2500.5);
    assert_int_equal(o.tls, TLS_PLAIN);
    assert_int_equal(o.sasl, SASL_SCRAM_SHA1);
    assert_int_equal(o.procs, 4);
    assert_string_equal(o.json, "out.json");
}

/* Port and PID lists are split on commas. */
static void test_lists(void **state)
{
    (void)state;
    struct bench_opts o;
    char err[200];
    assert_int_equal(PARSE(&o, err, "connect", "--port", "5222,6222,7222", "--mem-pids=10,20"), OPTS_OK);
    assert_int_equal(o.nports, 3);
    assert_int_equal(o.ports[2], 7222);
    assert_int_equal(o.nmem_pids, 2);
    assert_int_equal(o.mem_pids[1], 20);
    assert_int_not_equal(PARSE(&o, err, "connect", "--port", "5222,,x"), OPTS_OK);
    assert_int_not_equal(PARSE(&o, err, "connect", "--port", "70000"), OPTS_OK);
}

/* Only loopback targets are accepted. */
static void test_loopback_only(void **state)
{
    (void)state;
    struct bench_opts o;
    char err[200];
    assert_int_equal(PARSE(&o, err, "connect", "--host", "127.0.0.5"), OPTS_OK);
    assert_int_equal(PARSE(&o, err, "connect", "--host", "::1"), OPTS_OK);
    assert_int_equal(PARSE(&o, err, "connect", "--host", "10.0.0.1"), OPTS_ERR_USAGE);
    assert_non_null(strstr(err, "loopback"));
    assert_int_equal(PARSE(&o, err, "connect", "--host", "example.org"), OPTS_ERR_USAGE);
}

/* Out-of-range numbers, non-numbers and unknown enum values name the option. */
static void test_bad_values(void **state)
{
    (void)state;
    struct bench_opts o;
    char err[200];
    assert_int_equal(PARSE(&o, err, "connect", "--users", "0"), OPTS_ERR_USAGE);
    assert_non_null(strstr(err, "--users"));
    assert_int_equal(PARSE(&o, err, "connect", "--users", "12abc"), OPTS_ERR_USAGE);
    assert_int_equal(PARSE(&o, err, "connect", "--users", "1.5"), OPTS_ERR_USAGE);
    assert_int_equal(PARSE(&o, err, "connect", "--duration", "nan"), OPTS_ERR_USAGE);
    assert_int_equal(PARSE(&o, err, "connect", "--tls", "ssl"), OPTS_ERR_USAGE);
    assert_non_null(strstr(err, "starttls|plain|direct"));
    assert_int_equal(PARSE(&o, err, "connect", "--procs", "65"), OPTS_ERR_USAGE);
}

/* Unknown options, missing values, a flag with a value and a missing scenario are usage errors. */
static void test_usage_errors(void **state)
{
    (void)state;
    struct bench_opts o;
    char err[200];
    assert_int_equal(PARSE(&o, err, "connect", "--nope"), OPTS_ERR_USAGE);
    assert_non_null(strstr(err, "--nope"));
    assert_int_equal(PARSE(&o, err, "connect", "--users"), OPTS_ERR_USAGE);
    assert_int_equal(PARSE(&o, err, "connect", "--quiet=1"), OPTS_ERR_USAGE);
    assert_int_equal(PARSE(&o, err, "--users", "5"), OPTS_ERR_USAGE);
    assert_int_equal(PARSE(&o, err, "dance"), OPTS_ERR_USAGE);
    assert_int_equal(PARSE(&o, err, "chat", "offline"), OPTS_ERR_USAGE);
    assert_int_equal(PARSE(&o, err, "connect", "--help"), OPTS_HELP);
}

/* Options that only make sense together are checked together. */
static void test_meaning(void **state)
{
    (void)state;
    struct bench_opts o;
    char err[200];
    assert_int_equal(PARSE(&o, err, "chat", "--users", "1"), OPTS_ERR_USAGE);
    assert_int_equal(PARSE(&o, err, "connect", "--create"), OPTS_ERR_USAGE);
    assert_non_null(strstr(err, "--db"));
    assert_int_equal(PARSE(&o, err, "connect", "--db", "mysql:x"), OPTS_ERR_USAGE);
    assert_int_equal(PARSE(&o, err, "connect", "--create", "--db", "sqlite:/tmp/x.db"), OPTS_OK);
    assert_int_equal(o.create, 1);
    assert_int_equal(PARSE(&o, err, "connect", "--tls", "plain", "--sasl", "plain"), OPTS_ERR_USAGE);
    assert_int_equal(PARSE(&o, err, "connect", "--prefix", "Bad'Name"), OPTS_ERR_USAGE);
    assert_int_equal(PARSE(&o, err, "connect", "--label", "a\"b"), OPTS_ERR_USAGE);
    assert_int_equal(PARSE(&o, err, "connect", "--plot", "it's.png"), OPTS_ERR_USAGE);
    /* More processes than clients would leave some idle: capped. */
    assert_int_equal(PARSE(&o, err, "connect", "--users", "3", "--procs", "8"), OPTS_OK);
    assert_int_equal(o.procs, 3);
}

/* The offline scenario counts receivers as accounts too. */
static void test_offline_accounts(void **state)
{
    (void)state;
    struct bench_opts o;
    char err[200];
    assert_int_equal(PARSE(&o, err, "offline", "--users", "50", "--receivers", "20", "--messages", "1000"),
                     OPTS_OK);
    assert_int_equal(opts_accounts(&o), 70);
    assert_true(o.rate == 0);   /* offline sends as fast as the server takes */
    assert_int_equal(PARSE(&o, err, "chat", "--users", "50", "--receivers", "20"), OPTS_OK);
    assert_int_equal(opts_accounts(&o), 50);
    assert_true(o.rate == 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_both_value_forms),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_loopback_only),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_meaning),
        cmocka_unit_test(test_offline_accounts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
