/*
 * The one interface between a storage worker and its database: a vtable with
 * two implementations, pg.c (PostgreSQL, libpq) and sqlite.c (SQLite, the
 * embedded default). jobs.c turns envelopes into calls on it, migrate.c feeds
 * it the schema files; neither knows which database is behind it.
 *
 * Every operation is blocking and leaves no transaction open behind it, so a
 * worker holds no state between jobs (DESIGN.md "Processes"). Reads and the
 * account operations are self-contained; the per-user writes go through
 * write(), which runs a whole batch of them in one transaction (batch.c).
 * Failures are logged inside the backend, where the SQLSTATE / SQLite error
 * is known, with the job id from b->job (or the write's own job); callers
 * only map the code to the wire error.
 */
#ifndef PARLEY_STORAGE_BACKEND_H
#define PARLEY_STORAGE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

struct buf;
struct config;

enum {
    BACKEND_OK = 0,
    BACKEND_ERR_NOT_FOUND = -1,    /* no such user */
    BACKEND_ERR_CONFLICT = -2,     /* the user already exists */
    BACKEND_ERR_INTERNAL = -3,     /* a statement failed; logged with SQLSTATE / sqlite error */
    BACKEND_ERR_UNAVAILABLE = -4,  /* no usable connection (or SQLite stayed busy); logged */
    BACKEND_ERR_QUOTA = -5,        /* offline_put: the user already holds limit messages */
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
    int64_t ver;                /* users.roster_ver; 0 when never written */
    char **pending;             /* pending inbound subscription requests, sorted */
    size_t npending;
};

/* Appends a new item with copies of the strings (name, ask may be NULL) and
 * returns it; the roster owns it. The pointer is valid until the next add. */
struct roster_item *backend_roster_add(struct roster *r, const char *jid, const char *name,
                                       const char *subscription, const char *ask);
/* Appends a copy of grp to item's groups. */
void backend_roster_add_group(struct roster_item *item, const char *grp);
/* Appends a copy of jid to r's pending requests. */
void backend_roster_add_pending(struct roster *r, const char *jid);
/* Frees the items and pending requests and empties r (r itself is the caller's). */
void backend_roster_fini(struct roster *r);
/* Frees one item's strings and groups (not it itself); NULL ok. */
void backend_roster_item_fini(struct roster_item *it);

/* ---- writes, batched ------------------------------------------------------ */

enum backend_write_kind {
    BW_ROSTER_PUT,      /* item replaces (user, item->jid) with its groups; users.roster_ver = ver */
    BW_ROSTER_DEL,      /* (user, jid) and its groups go; users.roster_ver = ver */
    BW_PENDING_PUT,     /* (user, jid) recorded as a pending inbound request */
    BW_PENDING_DEL,     /* and forgotten */
    BW_LAST_SET,        /* last_activity(user) = (since, text) */
    BW_OFFLINE_PUT,     /* (user, id, stamp, xml) stored unless id is there or limit reached */
    BW_OFFLINE_DEL,     /* the user's messages with the ids[] go */
    BW_ARCHIVE_PUT,     /* (user, id, jid, stamp, text = dir, xml) appended unless id is there */
};

/*
 * One write of a batch, as jobs.c parsed it from an OP_JOB. Strings are
 * borrowed (from the job envelope, which outlives the write) except item
 * and ids, which the write owns (backend_write_fini). Which fields a kind
 * uses is listed beside enum backend_write_kind.
 *
 * Result, in rc: BACKEND_OK; BACKEND_ERR_NOT_FOUND when a kind that stores
 * something for user (all but PENDING_DEL and OFFLINE_DEL, which are
 * idempotent deletes) finds no such account, in which case nothing is
 * stored; BACKEND_ERR_QUOTA;
 * BACKEND_ERR_INTERNAL when a statement failed (logged; that write alone is
 * rolled back); BACKEND_ERR_UNAVAILABLE when the transaction as a whole
 * failed.
 */
struct backend_write {
    enum backend_write_kind kind;
    char job[80];                 /* job id made printable (log_safe), for log lines */
    const char *user;
    const char *jid;
    const char *id;
    const char *text;             /* last_set: status or NULL; archive_put: "in" | "out" */
    const char *xml;
    int64_t ver, since, stamp, limit;
    struct roster_item *item;     /* owned */
    char **ids;                   /* owned, nids strings */
    size_t nids;
    int rc;
};

/* Frees what w owns (item, ids) and clears those fields. */
void backend_write_fini(struct backend_write *w);

/* ---- reads with a result shape of their own ------------------------------ */

struct offline_msg {
    char *id;
    int64_t stamp;
    char *xml;
};

struct offline_list {
    struct offline_msg *msgs;   /* oldest first: by (stamp, id) */
    size_t n;
};

/* Appends a message with copies of the strings. */
void backend_offline_add(struct offline_list *l, const char *id, int64_t stamp, const char *xml);
void backend_offline_fini(struct offline_list *l);

/*
 * An archive query (XEP-0313 filters, XEP-0059 paging), as jobs.c parsed
 * it. NULL / has_* 0 means "no such filter". after and before are archive
 * ids; before "" means "the last page". max is the page size, already
 * bounded by jobs.c.
 */
struct archive_filter {
    const char *with;           /* peer bare JID */
    int has_start, has_end;
    int64_t start, end;         /* unix microseconds, inclusive */
    const char *after, *before;
    long max;
};

struct archive_entry {
    char *id;
    int64_t stamp;
    char *peer;
    char *dir;
    char *xml;
};

struct archive_page {
    struct archive_entry *items;   /* in time order, (stamp, id) */
    size_t n;
    int is_complete;               /* the page reaches the end in the paging direction */
    int64_t count;                 /* entries matching with/start/end, regardless of paging */
};

/* Appends an entry with copies of the strings. */
void backend_archive_add(struct archive_page *p, const char *id, int64_t stamp, const char *peer,
                         const char *dir, const char *xml);
/* Reverses the items (backends read a backward page newest first). */
void backend_archive_reverse(struct archive_page *p);
void backend_archive_fini(struct archive_page *p);

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
    /* Deletes the user and every row of theirs (roster, pending requests,
     * last activity, offline messages, archive); BACKEND_ERR_NOT_FOUND when
     * the account is absent (its other rows are deleted all the same). */
    int (*user_del)(struct backend *b, const char *user);
    /* Appends every user id, each followed by '\n', in byte order. */
    int (*user_list)(struct backend *b, struct buf *out);
    /* On success *sha1 and *sha256 are heap strings the caller frees. */
    int (*cred_get)(struct backend *b, const char *user, char **sha1, char **sha256);
    /* Fills the empty roster r (items, ver, pending; the caller finis it
     * whatever the result); an unknown user simply has no items, ver 0. */
    int (*roster_get)(struct backend *b, const char *user, struct roster *r);

    /*
     * Runs the n writes in order inside one transaction, each under its own
     * savepoint, so a write that fails is rolled back alone and the others
     * still commit, and sets every w[i].rc (see struct backend_write). When
     * the transaction itself fails (connection lost, commit refused, SQLite
     * stayed locked) the whole batch is retried once, after reconnecting;
     * if that fails too, nothing was stored and every rc is
     * BACKEND_ERR_UNAVAILABLE. Returns 0 when the transaction committed,
     * else BACKEND_ERR_UNAVAILABLE. n may be 1.
     */
    int (*write)(struct backend *b, struct backend_write *w, size_t n);

    /* *since, *text (heap or NULL; the caller frees) of the user's last
     * activity; BACKEND_ERR_NOT_FOUND when never recorded. */
    int (*last_get)(struct backend *b, const char *user, int64_t *since, char **text);
    /* Fills the empty list l with every stored message, oldest first. */
    int (*offline_get)(struct backend *b, const char *user, struct offline_list *l);
    /* Fills the empty page p; BACKEND_ERR_NOT_FOUND when f->after or a
     * non-empty f->before is not an id in the user's archive. */
    int (*archive_query)(struct backend *b, const char *user, const struct archive_filter *f,
                         struct archive_page *p);
    /* Deletes every archive entry (all users) with stamp < before; *deleted
     * says how many. */
    int (*archive_purge)(struct backend *b, int64_t before, int64_t *deleted);
};

/* The common head of every implementation's state. */
struct backend {
    const struct backend_ops *ops;
    const char *job;      /* id of the job being run, for log lines; borrowed, "-" between jobs */
};

extern const struct backend_ops backend_sqlite;
extern const struct backend_ops backend_pg;

#endif
