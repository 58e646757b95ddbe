/* The configuration loader: defaults, comments, errors that name the option. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/parley-config-test-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static int load(const char *text, struct config **c, char **err)
{
    char *path = write_tmp(text);
    int rc = config_load(path, c, err);
    unlink(path);
    free(path);
    return rc;
}

/* No file: every option has its documented default. */
static void test_defaults(void **state)
{
    (void)state;
    struct config *c;
    char *err;
    assert_int_equal(config_load(NULL, &c, &err), 0);
    assert_string_equal(c->domain, "localhost");
    assert_int_equal(c->gateway.max_stanza_bytes, 262144);
    assert_string_equal(c->sessions.conflict, "kick_old");
    assert_int_equal(c->sessions.max_per_user, 0);
    assert_int_equal((int)c->sessions.ndevice_classes, 0);
    assert_int_equal(c->offline.quota, 1000);
    config_free(c);
}

/* Comments are allowed; values and device classes are read. */
static void test_values_and_comments(void **state)
{
    (void)state;
    struct config *c;
    char *err = NULL;
    int rc = load("// a comment\n{ \"domain\": \"example.org\", /* inline */\n"
                  "  \"gateway\": { \"tls_port\": 0, \"allow_plain_loopback\": true },\n"
                  "  \"sessions\": { \"conflict\": \"reject_new\", \"device_classes\": {\"1\": \"ios\", \"2\": \"android\"} } }",
                  &c, &err);
    assert_int_equal(rc, 0);
    assert_string_equal(c->domain, "example.org");
    assert_int_equal(c->gateway.tls_port, 0);
    assert_true(c->gateway.allow_plain_loopback);
    assert_string_equal(c->sessions.conflict, "reject_new");
    assert_int_equal((int)c->sessions.ndevice_classes, 2);
    assert_string_equal(config_device_class(c, "2", 1)->name, "android");
    assert_null(config_device_class(c, "3", 1));
    config_free(c);
}

/* Unknown keys, wrong types, out-of-range values and bad enums name the option. */
static void test_errors_name_the_option(void **state)
{
    (void)state;
    const char *cases[][2] = {
        { "{\"gateway\": {\"tls_prot\": 5}}", "gateway.tls_prot: unknown option" },
        { "{\"gateway\": {\"tls_port\": 70000}}", "gateway.tls_port: 70000 is out of range" },
        { "{\"gateway\": {\"tls_port\": \"5223\"}}", "gateway.tls_port: expected an integer" },
        { "{\"sessions\": {\"conflict\": \"kick_both\"}}", "sessions.conflict: \"kick_both\" is not one of" },
        { "{\"sessions\": {\"device_classes\": {\"1\": \"a/b\"}}}", "sessions.device_classes.1" },
        { "{\"nonsense\": 1}", "nonsense: unknown option" },
        { "{ not json", "not valid JSON" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config *c = NULL;
        char *err = NULL;
        assert_int_equal(load(cases[i][0], &c, &err), -1);
        assert_null(c);
        assert_non_null(err);
        if (!strstr(err, cases[i][1]))
            fail_msg("case %zu: \"%s\" does not contain \"%s\"", i, err, cases[i][1]);
        free(err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values_and_comments),
        cmocka_unit_test(test_errors_name_the_option),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
