/*
 * The XMPP stream state machine (RFC 6120 §4-§7) for one connection:
 * header checks, features, and which element is acceptable in which state.
 * The parser calls in here; the elements themselves are handled by auth.c
 * (SASL), bind.c (resource binding) and forward.c (bound stanzas).
 */
#ifndef PARLEY_GATEWAY_STREAM_H
#define PARLEY_GATEWAY_STREAM_H

struct conn;
struct stanza;

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define NS_CLIENT "jabber:client"
#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_STREAM_ERRORS "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_STANZA_ERRORS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_PING "urn:xmpp:ping"

void stream_init(struct conn *c);      /* makes the parser */
void stream_fini(struct conn *c);      /* frees SASL state */

/* Takes ownership of s. Also used to replay held stanzas. */
void stream_on_stanza(struct conn *c, struct stanza *s);
void stream_on_xml_error(struct conn *c, int rc);
void stream_on_tls_ready(struct conn *c);
void stream_on_traffic(struct conn *c);
void stream_on_timer(struct conn *c);
/* Restarts the stream after SASL success (RFC 6120 §6.4.6). */
void stream_restart(struct conn *c);

/* Writes the stream error (when condition is set) and </stream:stream>,
 * sending our stream header first if it was not sent yet (§4.9.1.1). */
void stream_write_close(struct conn *c, const char *condition, const char *text);

/* Answers stanza s (not consumed) with a stanza error of the given type. */
void stream_stanza_error(struct conn *c, const struct stanza *s, const char *condition, const char *type);

/* Whether SASL may run now: over TLS, or on loopback when configured. */
int stream_may_auth(const struct conn *c);
int stream_has_tls(const struct conn *c);

#endif
