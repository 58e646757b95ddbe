/*
 * What an online parley-bench client sends and receives: stamped chat
 * messages (stamp.h), the offline scenario's messages and its ping
 * barrier, answers to the server's own iq requests (XEP-0199 pings). The
 * receiving side measures latency and counts losses, duplicates and
 * messages of earlier runs.
 */
#ifndef PARLEY_BENCH_TRAFFIC_H
#define PARLEY_BENCH_TRAFFIC_H

#include <stdint.h>

#include "worker.h"

struct stanza;

/* Handles one stanza that arrived for a bound client; takes ownership of s. */
void traffic_stanza(struct client *c, struct stanza *s);

/* Sends one stamped chat message from c to run account `to` with sequence
 * number seq. Returns 0, or -1 when c's output is backed up (not sent). */
int traffic_send(struct client *c, uint32_t to, uint64_t seq);

/* Offline barrier: a ping to c's own bare JID, queued after its messages;
 * its answer means the server has handled everything c sent before. */
void traffic_send_barrier(struct client *c);

#endif
