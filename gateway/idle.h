/* Idle detection of bound connections with XEP-0199 pings; see idle.c. */
#ifndef PARLEY_GATEWAY_IDLE_H
#define PARLEY_GATEWAY_IDLE_H

struct conn;
struct stanza;

/* The connection is bound (or resumed): from now on c->timer is the idle
 * check. Counts as activity. */
void idle_start(struct conn *c);
/* Bytes arrived from the client (whitespace keepalives included). Only
 * records the time: the timer is not touched on the read path. */
void idle_on_traffic(struct conn *c);
/* c->timer fired on a bound connection: pings, closes (connection-timeout,
 * as a drop) or re-arms. */
void idle_on_timer(struct conn *c);
/* Whether s is the client's answer (result or error) to our ping; the
 * caller consumes it instead of routing it. s is not consumed. */
int idle_is_pong(const struct conn *c, const struct stanza *s);

/* Starts the once-a-second sweep that lets the XML parser of connections
 * silent for IDLE_SLEEP_AFTER seconds sleep (xml_hibernate): most of an
 * idle session's memory is expat's. */
struct gateway;
void idle_sweep_start(struct gateway *gw);

#endif
