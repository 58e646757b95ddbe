/*
 * The outcome of a parley-bench run, as coord.c gathered it, and its three
 * renderings: a human summary, JSON (--json) and a latency histogram PNG
 * through gnuplot (--plot).
 */
#ifndef PARLEY_BENCH_REPORT_H
#define PARLEY_BENCH_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "histo.h"
#include "opts.h"
#include "worker.h"

enum store_check { STORE_CHECK_NONE, STORE_CHECK_DB, STORE_CHECK_BARRIER };

struct result {
    const struct bench_opts *o;
    uint32_t run;
    struct counters total;          /* summed over workers at the end */
    struct counters after_login;    /* summed when the first login phase ended */
    struct histo latency, login;
    double t_start;                 /* monotonic s */
    double t_login0, t_login_end;
    double t_send0, t_send_end;     /* chat: the sending window; offline: store phase */
    double t_stored;                /* offline: everything stored */
    enum store_check store_check;
    long long stored_rows;          /* offline with --db: rows counted at t_stored */
    double t_drain0;                /* offline: receivers' login started */
    int has_archive;                /* chat with --db: archive rows counted */
    long long archived_rows;        /* chat: rows added to the archive during the run */
    double t_archived;              /* chat: when the archive count stopped short or caught up */
    uint64_t online_min_hold;       /* connect: fewest online during the hold */
    uint64_t online_end;            /* online just before the end */
    int has_mem;
    long mem_before_kb, mem_after_kb;
    long pid_before_kb[OPTS_MAX_PIDS], pid_after_kb[OPTS_MAX_PIDS];
    uint64_t mem_sessions;          /* online when mem_after was sampled */
    int workers_lost;
    double wall_s;
};

/* Derived figures, computed once for all three outputs. */
struct figures {
    double login_rate;              /* logins/s of the first login phase */
    double send_rate, recv_rate;    /* chat */
    uint64_t lost;                  /* chat, offline: sent - received - bounced, at least 0 */
    double store_rate, drain_rate;  /* offline */
    int offline_complete;           /* offline: every message arrived once, with <delay/> */
    double mem_per_session;         /* bytes; 0 when not measured */
    int archive_caught_up;          /* chat with --db: 2 rows per received message */
    double archive_lag;             /* chat: s from the end of sending to caught up (or given up) */
};

void report_figures(const struct result *r, struct figures *f);
void report_print(FILE *out, const struct result *r);
/* Writes the JSON report to path. 0 or -1 (errno set). */
int report_json(const char *path, const struct result *r);
/* Renders the latency histogram to path (PNG) with gnuplot. 0, or -1 with
 * the reason in err (gnuplot missing, no latencies). */
int report_plot(const char *path, const struct result *r, char *err, size_t errsz);

#endif
