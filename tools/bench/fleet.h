/*
 * The generator processes as the coordinator sees them: forking them,
 * commanding them (struct wire_cmd, worker.h), reading their snapshots,
 * summing their counters, the progress line, and reaping them at the end.
 * What the commands are for, phase by phase, is coord.c's business.
 */
#ifndef PARLEY_BENCH_FLEET_H
#define PARLEY_BENCH_FLEET_H

#include <stdint.h>
#include <sys/types.h>

#include "opts.h"
#include "report.h"
#include "worker.h"

struct fleet {
    const struct bench_opts *o;
    struct result *r;               /* run id and start time in; workers_lost, totals out */
    int n;
    int fds[OPTS_MAX_PROCS];
    pid_t pids[OPTS_MAX_PROCS];
    int alive[OPTS_MAX_PROCS];
    int is_final[OPTS_MAX_PROCS];
    struct wire_snapshot *snap;     /* latest per worker */
    uint8_t *bitmap;                /* chat: online accounts, OR of the workers' bitmaps */
    int bitmaps;                    /* bitmaps received; the caller resets it */
    struct counters sum;            /* over the latest snapshots */
    double deadline;                /* --max-time, monotonic s */
    double next_progress;
    const char *phase;              /* for the progress line */
    uint32_t cmd_seq;               /* of the last broadcast */
    uint64_t last_rx;
};

/* Forks o->procs workers for the run r (r->run and r->t_start set) and
 * installs SIGINT/SIGTERM handlers that end the run early. 0, or -1 with
 * any worker already started killed (the reason is printed). */
int fleet_spawn(struct fleet *fl, const struct bench_opts *o, struct result *r);

/* Reads snapshots for up to 20 ms, refreshes fl->sum and the progress line. */
void fleet_pump(struct fleet *fl);
/* Pumps for s seconds (less if out of time). */
void fleet_wait(struct fleet *fl, double s);

/* Sends a command (with bitmap_len bytes of bitmap, chat's CMD_SEND) to
 * every live worker; numbers it for fleet_all_acked. */
void fleet_broadcast(struct fleet *fl, uint32_t op, uint32_t arg, const uint8_t *bitmap, uint32_t len);
/* True once every live worker has handled the last command: fl->sum is current. */
int fleet_all_acked(const struct fleet *fl);
/* True when interrupted, past --max-time, or no worker is left. */
int fleet_out_of_time(const struct fleet *fl);

/* CMD_QUIT, waits up to 10 s for the final snapshots (then SIGKILLs a
 * stuck worker, by PID), reaps every worker and puts the totals and the
 * merged histograms into fl->r. Frees what fleet_spawn allocated. */
void fleet_finish(struct fleet *fl);

#endif
