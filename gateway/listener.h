/* Client listening sockets; see listener.c. */
#ifndef PARLEY_GATEWAY_LISTENER_H
#define PARLEY_GATEWAY_LISTENER_H

#include "gateway.h"

/* Opens a listener on addr:port (SO_REUSEPORT, so gateways on one host
 * share the port). is_direct_tls: TLS from the first byte (port 5223).
 * 0, or -1 after logging. */
int listener_open(struct gateway *gw, const char *addr, int port, int is_direct_tls);
void listener_close_all(struct gateway *gw);

#endif
