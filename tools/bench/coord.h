/*
 * The coordinator of a parley-bench run: drives the worker processes
 * (fleet.c forks and talks to them) through the scenario's phases (log in,
 * send, stop, drain, quit), samples server memory, times the offline store
 * and the archive, and gathers the result. Every wait has a deadline, so a
 * dead or stuck server ends the run with what was measured.
 */
#ifndef PARLEY_BENCH_COORD_H
#define PARLEY_BENCH_COORD_H

#include "opts.h"
#include "report.h"

struct db;

/* Runs the scenario of o; db (may be NULL) is used to time the offline
 * store. Fills *r. Returns 0, or -1 when the run could not start (the
 * reason is printed). */
int coord_run(const struct bench_opts *o, struct db *db, struct result *r);

#endif
