/*
 * Schema migrations, read from storage.migrations_dir at start-up.
 *
 * Layout (README of the migrations directory):
 *   NNN_what.sql           portable SQL, run on every backend
 *   NNN_what.sqlite.sql    SQLite only
 *   NNN_what.pg.sql        PostgreSQL only
 * NNN is the version: three or more digits, from 001 up, applied in numeric
 * order. "what" is [A-Za-z0-9_-]+ and holds no dot, so a second dot always
 * names a backend. When the SQL differs between backends a version has one
 * file per backend and no portable file (a backend-specific file would
 * replace the portable one of its version). Two files for one backend and
 * one version stop start-up, as does a misnamed *.sql file: a typo must not
 * silently skip part of the schema. A file may hold several statements; it
 * is applied in one transaction together with its schema_migrations row, so
 * it is all-or-nothing; it must therefore hold no BEGIN/COMMIT of its own
 * (and, on PostgreSQL, nothing that cannot run in a transaction, such as
 * CREATE INDEX CONCURRENTLY). Files are never edited once released: a
 * change is a new number.
 *
 * The backend records applied versions in schema_migrations(version, name)
 * and serializes concurrent workers (PostgreSQL: pg_advisory_lock; SQLite:
 * BEGIN IMMEDIATE), see backend.h.
 */
#include "migrate.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIGRATE_MAX_DIGITS 9     /* keeps the version inside an unsigned */
#define MIGRATE_MAX_BYTES (16u * 1024 * 1024)

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int is_word(char c, int allow_punct)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
           (allow_punct && (c == '_' || c == '-'));
}

int migrate_parse_name(const char *file, const char *suffix, unsigned *version)
{
    size_t len = strlen(file);
    const char *p = file, *end, *backend;
    unsigned v = 0;
    int digits = 0;

    if (len < 4 || strcmp(file + len - 4, ".sql") != 0 || file[0] == '.')
        return MIGRATE_SKIP;
    end = file + len - 4;
    for (; p < end && is_digit(*p); p++) {
        if (++digits > MIGRATE_MAX_DIGITS)
            return MIGRATE_ERR_NAME;
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (digits < 3 || v == 0 || p == end || *p++ != '_')
        return MIGRATE_ERR_NAME;
    if (p == end || !is_word(*p, 1))
        return MIGRATE_ERR_NAME;
    while (p < end && is_word(*p, 1))
        p++;
    backend = NULL;
    if (p < end) {
        if (*p++ != '.' || p == end)
            return MIGRATE_ERR_NAME;
        backend = p;
        while (p < end && is_word(*p, 0))
            p++;
        if (p != end)
            return MIGRATE_ERR_NAME;
    }
    *version = v;
    if (!backend)
        return MIGRATE_PORTABLE;
    if (strlen(suffix) == (size_t)(end - backend) && memcmp(backend, suffix, (size_t)(end - backend)) == 0)
        return MIGRATE_SPECIFIC;
    return MIGRATE_SKIP;
}

struct entry {
    unsigned version;
    int kind;
    char *file;
};

static int entry_cmp(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->version != y->version)
        return x->version < y->version ? -1 : 1;
    return y->kind - x->kind;   /* specific first within a version */
}

static char *read_sql(const char *dir, const char *file)
{
    char *path = xasprintf("%s/%s", dir, file);
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t len = 0, cap = 0, n;

    if (!f) {
        log_error("migration %s: %s", path, strerror(errno));
        goto out;
    }
    do {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            data = xrealloc(data, cap);
        }
        n = fread(data + len, 1, cap - len - 1, f);
        len += n;
    } while (n > 0 && len < MIGRATE_MAX_BYTES);
    if (ferror(f) || len >= MIGRATE_MAX_BYTES) {
        log_error("migration %s: %s", path, ferror(f) ? "read error" : "file too large");
        free(data);
        data = NULL;
    } else {
        data[len] = '\0';
    }
    fclose(f);
out:
    free(path);
    return data;
}

int migrate_load(const char *dir, const char *suffix, struct migration **out, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    struct entry *ents = NULL;
    size_t nents = 0, nout = 0;
    struct migration *m = NULL;
    int rc = -1;

    *out = NULL;
    *n = 0;
    if (!d) {
        log_error("migrations directory %s: %s", dir, strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        unsigned version = 0;
        int kind = migrate_parse_name(de->d_name, suffix, &version);
        if (kind == MIGRATE_ERR_NAME) {
            log_error("migrations directory %s: %s is not named NNN_what.sql or NNN_what.<backend>.sql",
                      dir, de->d_name);
            goto out;
        }
        if (kind == MIGRATE_SKIP)
            continue;
        ents = xrealloc(ents, (nents + 1) * sizeof(*ents));
        ents[nents].version = version;
        ents[nents].kind = kind;
        ents[nents].file = xstrdup(de->d_name);
        nents++;
    }
    qsort(ents, nents, sizeof(*ents), entry_cmp);

    m = xcalloc(nents ? nents : 1, sizeof(*m));
    for (size_t i = 0; i < nents; i++) {
        if (i > 0 && ents[i].version == ents[i - 1].version) {
            if (ents[i].kind == ents[i - 1].kind) {
                log_error("migrations directory %s: %s and %s have the same version", dir,
                          ents[i - 1].file, ents[i].file);
                goto out;
            }
            continue;   /* the portable file a specific one replaces */
        }
        m[nout].version = ents[i].version;
        m[nout].file = xstrdup(ents[i].file);
        m[nout].sql = read_sql(dir, ents[i].file);
        nout++;
        if (!m[nout - 1].sql)
            goto out;
    }
    *out = m;
    *n = nout;
    m = NULL;
    rc = 0;
out:
    migrate_free(m, nout);
    for (size_t i = 0; i < nents; i++)
        free(ents[i].file);
    free(ents);
    closedir(d);
    return rc;
}

void migrate_free(struct migration *m, size_t n)
{
    if (!m)
        return;
    for (size_t i = 0; i < n; i++) {
        free(m[i].file);
        free(m[i].sql);
    }
    free(m);
}

int migrate_run(struct backend *b, const char *dir)
{
    struct migration *m;
    size_t n;
    int rc;

    if (migrate_load(dir, b->ops->migration_suffix, &m, &n) < 0)
        return -1;
    if (n == 0) {
        log_error("migrations directory %s holds no migration for the %s backend", dir, b->ops->name);
        migrate_free(m, n);
        return -1;
    }
    rc = b->ops->migrate(b, m, n);
    migrate_free(m, n);
    return rc < 0 ? -1 : 0;
}
