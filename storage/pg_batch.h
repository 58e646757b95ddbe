/*
 * Private to pg_batch.c (one transaction per batch, pipelined) and
 * pg_group.c (the writes of a batch grouped into multi-row statements). A
 * batch is run as a list of units: a unit is one group of writes answered
 * by a single statement, or one write alone under its own savepoint, so
 * that a failing write is rolled back alone. A failing group aborts the
 * transaction, and the batch runs again ungrouped.
 */
#ifndef PARLEY_STORAGE_PG_BATCH_H
#define PARLEY_STORAGE_PG_BATCH_H

#include "pg.h"
#include "buf.h"

/* The prepared statements of pg_batch.c and pg_group.c. */
enum pg_stmt {
    ST_BEGIN, ST_NO_SEQSCAN, ST_COMMIT, ST_LOCK, ST_DUPS, ST_SAVEPOINT, ST_RELEASE, ST_ROSTER_PUT, ST_ROSTER_GROUPS, ST_ROSTER_DEL, ST_PENDING_PUT,
    ST_PENDING_DEL, ST_LAST_SET, ST_OFFLINE_PUT, ST_OFFLINE_DEL, ST_ARCHIVE_PUT, ST_ARCHIVE_MANY, ST_OFFLINE_MANY,
    ST_OFFLINE_DEL_MANY,
    ST_COUNT
};

struct pg_stmt_def {
    const char *name;
    const char *sql;
};
extern const struct pg_stmt_def pg_stmts[ST_COUNT];

/* The groups, in the order they run (before the writes left alone). */
enum pg_group_kind { PG_GROUP_ARCHIVE, PG_GROUP_OFFLINE_PUT, PG_GROUP_OFFLINE_DEL, PG_NGROUPS };

/* A set of (a, b) string pairs (b may be NULL) with a count each; the
 * strings are borrowed. Open addressing, never more than half full. */
struct pg_pairs {
    struct pg_pair {
        const char *a, *b;
        int64_t n;
    } *v;
    size_t cap;
};

void pg_pairs_init(struct pg_pairs *s, size_t max);
void pg_pairs_fini(struct pg_pairs *s);
/* The entry of (a, b); with add, a new one (n 0) when absent, else NULL. */
struct pg_pair *pg_pairs_find(struct pg_pairs *s, const char *a, const char *b, int add);

/* One group: its writes (indexes into the batch) and its statement's
 * parameters, built by pg_group_plan. */
struct pg_group {
    size_t *ks, nks;           /* the writes it answers */
    int nargs;
    struct buf arr[7];         /* array literals, one per parameter */
    const char *args[7];
    int is_planned;            /* it has a statement to send */
};

/* One unit of the batch: write k alone (group < 0), or group. */
struct pg_unit {
    int group;
    size_t k;
};

/* One command sent and not yet read. */
enum pg_role { R_BEGIN, R_LOCK, R_DUPS, R_SAVEPOINT, R_STMT, R_RELEASE, R_COMMIT, R_ROLLBACK_TO, R_SYNC };

struct pg_cmd {
    enum pg_role role;
    size_t unit;           /* index into units, for R_SAVEPOINT .. R_RELEASE */
    int is_key;            /* R_STMT: its result gives the unit's outcome */
    ExecStatusType want;   /* R_STMT: the status of success */
};

struct pg_pipeline {
    struct pg_backend *pg;
    struct backend_write *w;
    size_t n;
    struct pg_cmd *cmds;
    size_t ncmds, cap;
    int lost;                    /* a transaction-level failure happened */
    int is_grouped;              /* this run groups writes (else: one by one) */
    struct pg_unit *units;
    size_t nunits, capunits;
    struct pg_group groups[PG_NGROUPS];
    /* From the first round (pg_group_first): the locked accounts with
     * their offline_count, and the offline ids already stored. The strings
     * are borrowed from the two results, kept until the batch ends. */
    PGresult *locked_res, *dups_res;
    struct pg_pairs locked, dups;
};

/* A PostgreSQL array literal of strings, every element quoted. */
void pg_array_literal(struct buf *out, const char *const *v, size_t n);

/* Sends prepared statement st with n text parameters as command role of
 * unit; a send failure marks the pipeline lost. */
void pg_pipe_send(struct pg_pipeline *p, enum pg_stmt st, int n, const char *const *args, enum pg_role role,
                  size_t unit, int is_key, ExecStatusType want);
/* Appends a unit. */
void pg_pipe_unit(struct pg_pipeline *p, int group, size_t k);

/* pg_group.c. Sends the first round's statements (after BEGIN): the row
 * locks of every account whose users row the batch updates, and, when
 * p->is_grouped, the check of the offline ids already stored. */
void pg_group_first(struct pg_pipeline *p);
/* Keeps the first round's result r of role (R_LOCK or R_DUPS); 0, or -1
 * when it is not what it should be (the caller logs and gives up). */
int pg_group_first_result(struct pg_pipeline *p, enum pg_role role, PGresult *r);
/* After the first round: decides which writes are grouped (none unless
 * p->is_grouped; for the offline_puts, their outcome too), and appends
 * every unit of the batch. */
void pg_group_plan(struct pg_pipeline *p);
/* Sends group g's statement as unit u. */
void pg_group_send(struct pg_pipeline *p, int g, size_t u);
/* Group g's statement succeeded with result r (borrowed): sets the rc of
 * its writes. */
void pg_group_outcome(struct pg_pipeline *p, int g, PGresult *r);
/* Frees what the groups and the first round hold. */
void pg_group_fini(struct pg_pipeline *p);

#endif
