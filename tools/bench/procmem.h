/*
 * Resident memory of server processes, for "memory per idle session":
 * VmRSS from /proc/PID/status, summed over the PIDs given with --mem-pids.
 */
#ifndef PARLEY_BENCH_PROCMEM_H
#define PARLEY_BENCH_PROCMEM_H

/* Reads VmRSS of pid in KiB. Returns 0, or -1 when the process is gone or
 * the file has no VmRSS line. */
int procmem_rss_kb(int pid, long *kb);

/* Parses the text of a /proc/PID/status file for VmRSS (KiB). 0 or -1. */
int procmem_parse_status(const char *text, long *kb);

#endif
