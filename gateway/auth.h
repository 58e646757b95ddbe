/* SASL negotiation on a connection (RFC 6120 §6); see auth.c. */
#ifndef PARLEY_GATEWAY_AUTH_H
#define PARLEY_GATEWAY_AUTH_H

struct conn;
struct stanza;
struct envelope;

/* <auth/>, <response/>, <abort/> in the SASL namespace; takes ownership of s. */
void auth_on_element(struct conn *c, struct stanza *s);
/* OP_JOB_RESULT for a cred_get this connection asked for. */
void auth_on_creds(struct conn *c, const struct envelope *res);
void auth_fini(struct conn *c);

#endif
