/* Resource binding (RFC 6120 §7); see bind.c. */
#ifndef PARLEY_GATEWAY_BIND_H
#define PARLEY_GATEWAY_BIND_H

struct conn;
struct stanza;
struct envelope;

/* A stanza on an authenticated, unbound stream; takes ownership of s. */
void bind_on_stanza(struct conn *c, struct stanza *s);
/* OP_BIND_RESULT from the router. */
void bind_on_result(struct conn *c, const struct envelope *res);
/* The legacy session iq (RFC 3921 §3, still sent by some clients): answered here. */
int bind_is_session_iq(const struct stanza *s);
void bind_answer_session(struct conn *c, const struct stanza *s);

#endif
