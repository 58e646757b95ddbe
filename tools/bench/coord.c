/*
 * Scenario phases; see coord.h. Phases, and what ends each:
 *   P1  login: CMD_LOGIN; ends when no worker has a login pending
 *   P2  settle and memory sample (--mem-pids): --settle seconds
 *   P3  connect: hold --duration s;  chat: CMD_SEND with the online bitmap,
 *       --duration s, CMD_STOP;  offline: CMD_SEND, ends when every worker
 *       has sent everything and its barrier pings are answered
 *   P4  chat: drain until received + bounced = sent, or --drain s; then,
 *       with --db, until the archive holds 2 rows per received message;
 *       offline: the store counted (--db: rows reach the expected number,
 *       else the barrier of P3 is the measure), then CMD_LOGIN of the
 *       receivers, until every message arrived or --drain s pass with none
 *   P5  CMD_QUIT, final snapshots (each worker sends one, then exits)
 * Everything is also bounded by --max-time.
 */
#include "coord.h"
#include "db.h"
#include "fleet.h"
#include "procmem.h"
#include "util.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct coord {
    struct fleet fl;
    const struct bench_opts *o;
    struct result *r;
    struct db *db;
};

/* P1: every worker reported its logins finished (a snapshot after the command). */
static void login_phase(struct coord *co, uint32_t which)
{
    co->fl.bitmaps = 0;
    fleet_broadcast(&co->fl, CMD_LOGIN, which, NULL, 0);
    int need_bitmaps = co->o->scenario == SCENARIO_CHAT;
    int live = 0;
    while (!fleet_out_of_time(&co->fl)) {
        fleet_pump(&co->fl);
        live = 0;
        for (int i = 0; i < co->fl.n; i++)
            live += co->fl.alive[i];
        if (fleet_all_acked(&co->fl) && co->fl.sum.login_pending == 0 && (!need_bitmaps || co->fl.bitmaps >= live))
            break;
    }
}

static void sample_mem(const struct coord *co, long *total, long *per_pid)
{
    *total = 0;
    for (int i = 0; i < co->o->nmem_pids; i++) {
        long kb = 0;
        if (procmem_rss_kb(co->o->mem_pids[i], &kb) < 0)
            fprintf(stderr, "parley-bench: cannot read the RSS of pid %d\n", co->o->mem_pids[i]);
        per_pid[i] = kb;
        *total += kb;
    }
}

static void run_connect(struct coord *co)
{
    struct result *r = co->r;
    co->fl.phase = "hold";
    r->online_min_hold = co->fl.sum.online;
    double end = worker_now() + co->o->duration;
    while (worker_now() < end && !fleet_out_of_time(&co->fl)) {
        fleet_pump(&co->fl);
        if (co->fl.sum.online < r->online_min_hold)
            r->online_min_hold = co->fl.sum.online;
    }
}

/* Chat with --db: waits until the archive holds two rows per received
 * message (the sender's and the receiver's copy, XEP-0313), or until
 * --drain seconds pass without a new row. */
static void wait_archive(struct coord *co, long long base)
{
    struct result *r = co->r;
    char err[512];
    long long want = 2 * (long long)co->fl.sum.received, last = -1;
    double quiet_until = worker_now() + co->o->drain;

    co->fl.phase = "archive";
    for (;;) {
        long long n = db_count_archive(co->db, err, sizeof(err));
        double now = worker_now();
        if (n < 0) {
            fprintf(stderr, "parley-bench: %s\n", err);
            return;
        }
        r->archived_rows = n - base;
        r->t_archived = now;
        r->has_archive = 1;
        if (r->archived_rows >= want || now > quiet_until || fleet_out_of_time(&co->fl))
            return;
        if (r->archived_rows != last) {
            last = r->archived_rows;
            quiet_until = now + co->o->drain;
        }
        fleet_pump(&co->fl);
    }
}

static void run_chat(struct coord *co)
{
    struct result *r = co->r;
    uint32_t len = (uint32_t)(opts_accounts(co->o) + 7) / 8;
    char err[512];
    long long archive_base = -1;

    if (co->db && !co->o->no_archive && (archive_base = db_count_archive(co->db, err, sizeof(err))) < 0)
        fprintf(stderr, "parley-bench: %s; the archive is not checked\n", err);
    co->fl.phase = "send";
    r->t_send0 = worker_now();
    fleet_broadcast(&co->fl, CMD_SEND, 0, co->fl.bitmap, len);
    fleet_wait(&co->fl, co->o->duration);
    fleet_broadcast(&co->fl, CMD_STOP, 0, NULL, 0);
    r->t_send_end = worker_now();
    co->fl.phase = "drain";
    double end = worker_now() + co->o->drain;
    while (!fleet_all_acked(&co->fl) && !fleet_out_of_time(&co->fl) && worker_now() < end)
        fleet_pump(&co->fl);   /* the sent counts are final once STOP is handled */
    while (worker_now() < end && !fleet_out_of_time(&co->fl) && co->fl.sum.received + co->fl.sum.bounced < co->fl.sum.sent)
        fleet_pump(&co->fl);
    if (archive_base >= 0)
        wait_archive(co, archive_base);
}

/* Waits until nothing new arrived for quiet seconds, or cond holds. */
static int db_stored_enough(struct coord *co, long long base, long long want, char *err, size_t errsz)
{
    long long n = db_count_offline(co->db, err, errsz);
    if (n < 0)
        return -1;
    co->r->stored_rows = n - base;
    return n - base >= want;
}

static void run_offline(struct coord *co)
{
    struct result *r = co->r;
    char err[512];
    long long base = 0;

    if (co->db && (base = db_count_offline(co->db, err, sizeof(err))) < 0) {
        fprintf(stderr, "parley-bench: %s; timing the store with the ping barrier instead\n", err);
        co->db = NULL;
    }
    co->fl.phase = "store";
    r->t_send0 = worker_now();
    fleet_broadcast(&co->fl, CMD_SEND, 0, NULL, 0);
    /* Ends when everything is sent and every barrier answered, or when
     * nothing moved for --timeout s (a server that stopped reading or
     * answering must not hold the run until --max-time). */
    uint64_t moved = 0;
    double stuck_at = worker_now() + co->o->timeout;
    while (!fleet_out_of_time(&co->fl) && (!fleet_all_acked(&co->fl) || co->fl.sum.send_pending > 0)) {
        fleet_pump(&co->fl);
        if (co->fl.sum.sent + co->fl.sum.pongs != moved) {
            moved = co->fl.sum.sent + co->fl.sum.pongs;
            stuck_at = worker_now() + co->o->timeout;
        } else if (worker_now() > stuck_at) {
            fprintf(stderr, "parley-bench: store phase: no progress for %.0f s; %llu sends or barriers "
                            "outstanding\n", co->o->timeout, (unsigned long long)co->fl.sum.send_pending);
            break;
        }
    }
    r->t_send_end = worker_now();
    r->t_stored = r->t_send_end;
    r->store_check = STORE_CHECK_BARRIER;
    if (co->db) {
        /* The rows are the truth: a server may answer the barrier before
         * its store has committed (Parley's router hands the write to a
         * storage worker). Stop when they are all there, or after --timeout
         * without a new row. */
        r->store_check = STORE_CHECK_DB;
        long long want = (long long)co->fl.sum.sent, last = -1;
        double quiet_until = worker_now() + co->o->timeout;
        for (;;) {
            double t0 = worker_now();
            int rc = db_stored_enough(co, base, want, err, sizeof(err));
            double now = worker_now();
            /* The count scans the whole table on the server's core: at
             * most one every 10 times its own duration (>= 20 ms), so the
             * check costs the server under 10 % of that core, and the time
             * it measures is late by at most that. */
            double next = now + (now - t0) * 10 > now + 0.02 ? now + (now - t0) * 10 : now + 0.02;
            if (rc != 0) {
                if (rc < 0)
                    fprintf(stderr, "parley-bench: %s\n", err);
                break;
            }
            if (r->stored_rows != last) {
                last = r->stored_rows;
                quiet_until = now + co->o->timeout;
            }
            if (now > quiet_until || fleet_out_of_time(&co->fl))
                break;
            do
                fleet_pump(&co->fl);
            while (worker_now() < next && !fleet_out_of_time(&co->fl));
        }
        r->t_stored = worker_now();
    }
    co->fl.phase = "drain";
    r->t_drain0 = worker_now();
    login_phase(co, 1);
    uint64_t last = co->fl.sum.received;
    double quiet_until = worker_now() + co->o->drain;
    while (!fleet_out_of_time(&co->fl) && co->fl.sum.received + co->fl.sum.bounced < co->fl.sum.sent && worker_now() < quiet_until) {
        fleet_pump(&co->fl);
        if (co->fl.sum.received != last) {
            last = co->fl.sum.received;
            quiet_until = worker_now() + co->o->drain;
        }
    }
}

int coord_run(const struct bench_opts *o, struct db *db, struct result *r)
{
    struct coord co = { .o = o, .r = r, .db = db };

    memset(r, 0, sizeof(*r));
    r->o = o;
    if (RAND_bytes((unsigned char *)&r->run, sizeof(r->run)) != 1)
        r->run = (uint32_t)getpid() ^ (uint32_t)worker_now_ns();
    r->t_start = worker_now();
    if (fleet_spawn(&co.fl, o, r) < 0)
        return -1;
    if (o->nmem_pids) {
        fleet_wait(&co.fl, 0.2);
        sample_mem(&co, &r->mem_before_kb, r->pid_before_kb);
    }
    co.fl.phase = "login";
    r->t_login0 = worker_now();
    login_phase(&co, 0);
    r->t_login_end = worker_now();
    r->after_login = co.fl.sum;
    if (o->nmem_pids) {
        co.fl.phase = "settle";
        fleet_wait(&co.fl, o->settle);
        sample_mem(&co, &r->mem_after_kb, r->pid_after_kb);
        r->mem_sessions = co.fl.sum.online;
        r->has_mem = 1;
    }
    if (co.fl.sum.online == 0 && o->scenario != SCENARIO_CONNECT)
        fprintf(stderr, "parley-bench: no client logged in; nothing to send\n");
    else if (!fleet_out_of_time(&co.fl)) {
        if (o->scenario == SCENARIO_CONNECT)
            run_connect(&co);
        else if (o->scenario == SCENARIO_CHAT)
            run_chat(&co);
        else
            run_offline(&co);
    }
    co.fl.phase = "quit";
    fleet_finish(&co.fl);
    return 0;
}
