/*
 * Unit tests for storage/migrate.c: which file names are migrations for
 * which backend (migrate_parse_name, pure), and how a directory becomes the
 * ordered list a backend applies (migrate_load on a temp dir).
 *
 * migrate.c is included rather than linked so that `make unit` builds this
 * file with the common library alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../storage/migrate.c"

static void expect_name(const char *file, const char *suffix, int kind, unsigned version)
{
    unsigned v = 12345;
    int rc = migrate_parse_name(file, suffix, &v);
    if (rc != kind)
        fail_msg("%s for %s: got %d, want %d", file, suffix, rc, kind);
    if (kind != MIGRATE_ERR_NAME && version != 12345 && v != version)
        fail_msg("%s: version %u, want %u", file, v, version);
}

/* NNN_what.sql is a portable migration with version NNN. */
static void test_portable_name(void **state)
{
    (void)state;
    expect_name("001_users.sql", "sqlite", MIGRATE_PORTABLE, 1);
    expect_name("042_roster-groups.sql", "pg", MIGRATE_PORTABLE, 42);
    expect_name("1000_More_Stuff.sql", "pg", MIGRATE_PORTABLE, 1000);
}

/* NNN_what.<suffix>.sql is this backend's; another backend's is skipped. */
static void test_backend_specific_name(void **state)
{
    (void)state;
    expect_name("001_users.sqlite.sql", "sqlite", MIGRATE_SPECIFIC, 1);
    expect_name("001_users.pg.sql", "pg", MIGRATE_SPECIFIC, 1);
    expect_name("001_users.pg.sql", "sqlite", MIGRATE_SKIP, 1);
    expect_name("001_users.sqlite.sql", "pg", MIGRATE_SKIP, 1);
    expect_name("001_users.pgx.sql", "pg", MIGRATE_SKIP, 1);
}

/* Files that are not *.sql (or are hidden) are not migrations. */
static void test_other_files_skipped(void **state)
{
    (void)state;
    expect_name("README", "pg", MIGRATE_SKIP, 12345);
    expect_name("001_users.sql~", "pg", MIGRATE_SKIP, 12345);
    expect_name("001_users.sql.orig", "pg", MIGRATE_SKIP, 12345);
    expect_name(".001_users.sql", "pg", MIGRATE_SKIP, 12345);
    expect_name(".sql", "pg", MIGRATE_SKIP, 12345);
}

/* A *.sql file that breaks the pattern is an error, not silently skipped. */
static void test_misnamed_sql_is_error(void **state)
{
    static const char *const bad[] = {
        "1_users.sql", "01_users.sql", "001users.sql", "001_.sql", "000_zero.sql", "001-users.sql",
        "001_a.b.c.sql", "001_users..sql", "001_users.p-g.sql", "0000000001_ten_digits.sql",
        "users.sql", "001_us ers.sql",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_name(bad[i], "pg", MIGRATE_ERR_NAME, 0);
}

/* ---- migrate_load on a real directory ---------------------------------- */

static char *make_dir(const char *const *files)
{
    char *dir = xstrdup("/tmp/test_migrate_XXXXXX");
    assert_non_null(mkdtemp(dir));
    for (size_t i = 0; files[i]; i++) {
        char *path = xasprintf("%s/%s", dir, files[i]);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fprintf(f, "-- %s\n", files[i]);
        fclose(f);
        free(path);
    }
    return dir;
}

static void remove_dir(char *dir, const char *const *files)
{
    for (size_t i = 0; files[i]; i++) {
        char *path = xasprintf("%s/%s", dir, files[i]);
        unlink(path);
        free(path);
    }
    rmdir(dir);
    free(dir);
}

/* Migrations come back sorted by number, the backend's file replacing the
 * portable one of its version, other backends' files left out. */
static void test_load_orders_and_picks_variants(void **state)
{
    static const char *const files[] = { "010_late.sql", "002_b.sql", "002_b.pg.sql", "001_a.sqlite.sql",
                                         "001_a.pg.sql", "README", NULL };
    char *dir = make_dir(files);
    struct migration *m;
    size_t n;

    (void)state;
    assert_int_equal(migrate_load(dir, "pg", &m, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(m[0].file, "001_a.pg.sql");
    assert_string_equal(m[1].file, "002_b.pg.sql");
    assert_string_equal(m[2].file, "010_late.sql");
    assert_int_equal(m[2].version, 10);
    assert_string_equal(m[0].sql, "-- 001_a.pg.sql\n");
    migrate_free(m, n);

    assert_int_equal(migrate_load(dir, "sqlite", &m, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(m[0].file, "001_a.sqlite.sql");
    assert_string_equal(m[1].file, "002_b.sql");
    migrate_free(m, n);
    remove_dir(dir, files);
}

/* Two files for one version and one backend stop the load. */
static void test_load_duplicate_version_fails(void **state)
{
    static const char *const files[] = { "001_a.sql", "001_b.sql", NULL };
    char *dir = make_dir(files);
    struct migration *m = (struct migration *)1;
    size_t n = 99;

    (void)state;
    assert_int_equal(migrate_load(dir, "pg", &m, &n), -1);
    assert_null(m);
    assert_int_equal(n, 0);
    remove_dir(dir, files);
}

/* A misnamed .sql file in the directory stops the load. */
static void test_load_misnamed_fails(void **state)
{
    static const char *const files[] = { "001_a.sql", "2_b.sql", NULL };
    char *dir = make_dir(files);
    struct migration *m;
    size_t n;

    (void)state;
    assert_int_equal(migrate_load(dir, "sqlite", &m, &n), -1);
    remove_dir(dir, files);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_portable_name),
        cmocka_unit_test(test_backend_specific_name),
        cmocka_unit_test(test_other_files_skipped),
        cmocka_unit_test(test_misnamed_sql_is_error),
        cmocka_unit_test(test_load_orders_and_picks_variants),
        cmocka_unit_test(test_load_duplicate_version_fails),
        cmocka_unit_test(test_load_misnamed_fails),
    };
    log_init("test", LOGL_ERROR);   /* the failure cases log one error line each */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
