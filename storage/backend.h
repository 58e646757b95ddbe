/*
 * The one interface between a storage worker and its database: a vtable with
 * two implementations, pg.c (PostgreSQL, libpq) and sqlite.c (SQLite, the
 * embedded default). jobs.c turns envelopes into calls on it, migrate.c feeds
 * it the schema files; neither knows which database is behind it.
 *
 * Every operation is blocking and self-contained (its own transaction), so a
 * worker holds no state between jobs (DESIGN.md "Processes"). Failures are
 * logged inside the backend, where the SQLSTATE / SQLite error is known, with
 * the job id from b->job; callers only map the code to the wire error.
 */
#ifndef PARLEY_STORAGE_BACKEND_H
#define PARLEY_STORAGE_BACKEND_H

#include <stddef.h>

struct buf;
struct config;

enum {
    BACKEND_OK = 0,
    BACKEND_ERR_NOT_FOUND = -1,    /* no such user */
    BACKEND_ERR_CONFLICT = -2,     /* the user already exists */
    BACKEND_ERR_INTERNAL = -3,     /* a statement failed; logged with SQLSTATE / sqlite error */
    BACKEND_ERR_UNAVAILABLE = -4,  /* no usable connection (or SQLite stayed busy); logged */
};

/* One schema migration, as migrate.c read it from disk. */
struct migration {
    unsigned version;    /* NNN of the file name */
    char *file;          /* the file name, for logs and schema_migrations.name */
    char *sql;           /* the whole file; may hold several statements */
};

struct roster_item {
    char *jid;
    char *name;          /* NULL when not set */
    char *subscription;  /* "none" | "to" | "from" | "both" */
    char *ask;           /* NULL or "subscribe" */
    char **groups;       /* sorted */
    size_t ngroups;
};

struct roster {
    struct roster_item *items;  /* sorted by jid */
    size_t nitems;
};

/* Appends a new item with copies of the strings (name, ask may be NULL) and
 * returns it; the roster owns it. The pointer is valid until the next add. */
struct roster_item *backend_roster_add(struct roster *r, const char *jid, const char *name,
                                       const char *subscription, const char *ask);
/* Appends a copy of grp to item's groups. */
void backend_roster_add_group(struct roster_item *item, const char *grp);
/* Frees the items and empties r (r itself is the caller's). */
void backend_roster_fini(struct roster *r);

struct backend;

struct backend_ops {
    const char *name;              /* config storage.backend value */
    const char *migration_suffix;  /* NNN_what.<suffix>.sql files are for this backend */

    /* Opens the database named by conf (the caller keeps conf alive while
     * the backend is open). Returns a new backend the caller closes, or NULL
     * after logging why. */
    struct backend *(*open)(const struct config *conf);
    void (*close)(struct backend *b);   /* NULL ok */

    /* Applies, in order, each of the n migrations (sorted by version) not
     * yet in schema_migrations, each in its own transaction, holding a lock
     * so workers starting together apply each exactly once. 0 or
     * BACKEND_ERR_*. */
    int (*migrate)(struct backend *b, const struct migration *m, size_t n);

    /* BACKEND_ERR_CONFLICT when user exists. */
    int (*user_add)(struct backend *b, const char *user, const char *cred_sha1, const char *cred_sha256);
    /* Deletes the user and its roster rows; BACKEND_ERR_NOT_FOUND when absent. */
    int (*user_del)(struct backend *b, const char *user);
    /* Appends every user id, each followed by '\n', in byte order. */
    int (*user_list)(struct backend *b, struct buf *out);
    /* On success *sha1 and *sha256 are heap strings the caller frees. */
    int (*cred_get)(struct backend *b, const char *user, char **sha1, char **sha256);
    /* Fills the empty roster r (the caller finis it whatever the result);
     * an unknown user simply has no items. */
    int (*roster_get)(struct backend *b, const char *user, struct roster *r);
};

/* The common head of every implementation's state. */
struct backend {
    const struct backend_ops *ops;
    const char *job;      /* id of the job being run, for log lines; borrowed, "-" between jobs */
};

extern const struct backend_ops backend_sqlite;
extern const struct backend_ops backend_pg;

#endif
