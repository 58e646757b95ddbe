/* Stanzas of a bound session; see forward.c. */
#ifndef PARLEY_GATEWAY_FORWARD_H
#define PARLEY_GATEWAY_FORWARD_H

struct conn;
struct stanza;

/* Takes ownership of s. */
void forward_stanza(struct conn *c, struct stanza *s);

#endif
