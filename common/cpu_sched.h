/*
 * The CPU scheduling policy of a Parley process (config "cpu_scheduling").
 *
 * Why: a message or a login crosses several of our processes, and each hop
 * wakes the next one. Under the normal policy a woken process preempts the
 * one that woke it, so a burst of N envelopes can cost N context switches
 * each way. SCHED_BATCH (sched(7)) keeps a woken process from preempting:
 * each process runs until it has nothing left to do, and envelopes cross in
 * batches (outbox.h). Any user may choose it for its own threads; threads
 * made later (ZeroMQ's I/O thread) inherit it.
 */
#ifndef PARLEY_CPU_SCHED_H
#define PARLEY_CPU_SCHED_H

/* Applies policy ("batch" or "normal") to the calling thread; call it
 * before any other thread is started. Logs and carries on when refused. */
void cpu_sched_apply(const char *policy);

#endif
