/*
 * parley-bench: a load generator that behaves like thousands of standard
 * XMPP clients (so it measures Parley, Prosody and ejabberd alike), with a
 * report of rates, latency percentiles, failures and server memory.
 * main.c wires the parts: options (opts.c), optional account creation in a
 * Parley store (db.c), the run (coord.c with its workers), the reports
 * (report.c). BENCHMARKS.md has the measured figures and how they were made.
 *
 * Exit status: 0 the run completed with no failed login and no lost
 * message; 1 it ran but something failed or went missing; 2 it could not
 * run; 64 usage error.
 */
#include "coord.h"
#include "db.h"
#include "opts.h"
#include "report.h"
#include "scram.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static int create_accounts(const struct bench_opts *o, struct db *db)
{
    struct scram_cred c1, c256;
    char err[512];

    /* One credential pair for every account (db.h says why). */
    if (scram_cred_generate(SCRAM_SHA1, o->password, (unsigned)o->iterations, &c1) < 0 ||
        scram_cred_generate(SCRAM_SHA256, o->password, (unsigned)o->iterations, &c256) < 0) {
        fprintf(stderr, "parley-bench: cannot derive SCRAM credentials for the password\n");
        return -1;
    }
    char *e1 = scram_cred_encode(&c1), *e256 = scram_cred_encode(&c256);
    double t0 = worker_now();
    int rc = db_create_accounts(db, o->prefix, o->first, opts_accounts(o), o->domain, e1, e256, err, sizeof(err));
    free(e1);
    free(e256);
    if (rc < 0) {
        fprintf(stderr, "parley-bench: creating accounts: %s\n", err);
        return -1;
    }
    if (!o->quiet)
        fprintf(stderr, "parley-bench: %ld accounts %s%ld..%s%ld@%s ready in %.2f s\n", opts_accounts(o), o->prefix,
                o->first, o->prefix, o->first + opts_accounts(o) - 1, o->domain, worker_now() - t0);
    return 0;
}

/* Each process may hold up to its hard open-file limit (20,000 here). */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl); /* if refused, we keep the soft limit and connects fail visibly */
    }
}

int main(int argc, char **argv)
{
    static struct bench_opts o;
    static struct result r;
    char err[512];
    struct db *db = NULL;

    int rc = opts_parse(argc, argv, &o, err, sizeof(err));
    if (rc == OPTS_HELP) {
        fputs(opts_usage(), stdout);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "parley-bench: %s\n%s", err, opts_usage());
        return 64;
    }
    raise_nofile();
    struct rlimit rl;
    long per_proc = (opts_accounts(&o) + o.procs - 1) / o.procs;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)per_proc + 32 > rl.rlim_cur)
        fprintf(stderr, "parley-bench: warning: %ld connections per process exceed the open-file limit %llu; "
                        "use more --procs\n", per_proc, (unsigned long long)rl.rlim_cur);
    if (*o.db) {
        db = db_open(o.db, err, sizeof(err));
        if (!db) {
            fprintf(stderr, "parley-bench: %s\n", err);
            return 2;
        }
        if (o.create && create_accounts(&o, db) < 0) {
            db_close(db);
            return 2;
        }
    }
    if (coord_run(&o, db, &r) < 0) {
        db_close(db);
        return 2;
    }
    db_close(db);

    report_print(stdout, &r);
    fflush(stdout);
    if (*o.json && report_json(o.json, &r) < 0)
        fprintf(stderr, "parley-bench: %s: %s\n", o.json, strerror(errno));
    if (*o.plot && report_plot(o.plot, &r, err, sizeof(err)) < 0)
        fprintf(stderr, "parley-bench: plot: %s\n", err);

    struct figures f;
    report_figures(&r, &f);
    int complete = r.total.login_failed == 0 && r.total.fails[FAIL_DROPPED] == 0 && f.lost == 0 &&
                   r.total.bounced == 0 && r.workers_lost == 0 &&
                   (o.scenario != SCENARIO_OFFLINE || f.offline_complete);
    return complete ? 0 : 1;
}
