/* Gateway registry and heartbeats; see gateways.c. */
#ifndef PARLEY_ROUTER_GATEWAYS_H
#define PARLEY_ROUTER_GATEWAYS_H

#include <stdint.h>
#include <time.h>

#include "router.h"

struct envelope;

struct gateway_peer {
    char *name;
    int64_t pid;
    double last_seen;          /* ev_now() */
    time_t since;
};

int gateways_on_message(struct router *r, const char *name, const struct envelope *env);
struct gateway_peer *gateways_find(struct router *r, const char *name);
/* Heartbeats every gateway and drops those silent past the timeout. */
void gateways_tick(struct router *r);
void gateways_free_all(struct router *r);
/* OP_JOB from a gateway (consumed when accepted). */
void gateways_on_job(struct router *r, const char *name, struct envelope **env);

#endif
