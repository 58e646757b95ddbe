/*
 * Schema migrations: numbered SQL files read from storage.migrations_dir and
 * handed to the backend, which applies the missing ones at start-up. The
 * file layout is described at the top of migrate.c.
 */
#ifndef PARLEY_STORAGE_MIGRATE_H
#define PARLEY_STORAGE_MIGRATE_H

#include <stddef.h>

#include "backend.h"

enum {
    MIGRATE_SKIP = 0,        /* not a migration for this backend (README, other backend's file) */
    MIGRATE_PORTABLE = 1,    /* NNN_what.sql: for every backend */
    MIGRATE_SPECIFIC = 2,    /* NNN_what.<suffix>.sql: this backend's variant */
    MIGRATE_ERR_NAME = -1,   /* ends in .sql but is not NNN_what[.backend].sql */
};

/*
 * Classifies a directory entry for the backend whose migration suffix is
 * suffix ("sqlite", "pg"). Pure. Sets *version for MIGRATE_PORTABLE and
 * MIGRATE_SPECIFIC, and also for MIGRATE_SKIP of another backend's file.
 */
int migrate_parse_name(const char *file, const char *suffix, unsigned *version);

/*
 * Reads dir and returns in *out (caller frees with migrate_free) the
 * migrations for that suffix sorted by version; a backend-specific file
 * replaces the portable one of the same version. 0, or -1 after logging
 * (unreadable directory or file, misnamed .sql file, two files for one
 * version).
 */
int migrate_load(const char *dir, const char *suffix, struct migration **out, size_t *n);
void migrate_free(struct migration *m, size_t n);

/* migrate_load + b->ops->migrate. 0, or -1 after logging. */
int migrate_run(struct backend *b, const char *dir);

#endif
