/*
 * Incremental XMPP stream parser (RFC 6120 §4, §11) on expat. It takes bytes
 * and calls back with the stream header, each complete top-level stanza as a
 * stanza tree, and the stream close; it never does I/O (conn.c reads, the
 * gateway's stream.c decides what each unit means).
 *
 * Restricted XML (§11.1) is refused, and per-stanza size and depth are
 * bounded while the bytes arrive, so a client cannot make us buffer more
 * than about one stanza limit plus one read.
 */
#ifndef PARLEY_XML_H
#define PARLEY_XML_H

#include <stddef.h>

#include "stanza.h"

#define XML_NS_STREAMS "http://etherx.jabber.org/streams"

/* Zero fields (or a NULL struct) take the defaults below. */
#define XML_DEFAULT_MAX_STANZA_BYTES 262144
#define XML_DEFAULT_MAX_DEPTH 32

/* depth counts elements below the stream root: a stanza is depth 1. */
struct xml_limits { size_t max_stanza_bytes; unsigned max_depth; };

/*
 * Callbacks run from inside xml_feed. They may call xml_restart but must not
 * free the parser or feed it. A NULL callback just drops its unit.
 */
struct xml_callbacks {
    /* The root element (<stream:stream>): name "stream", ns XML_NS_STREAMS,
     * attributes to/from/version/id/"xml:lang"; stanza_attr(header, "xmlns")
     * is the default namespace declared on it (e.g. "jabber:client") or NULL,
     * and "xmlns:prefix" declarations appear verbatim. The callee owns it. */
    void (*stream_open)(void *ud, struct stanza *header);
    /* One complete depth-1 element with its subtree; the callee owns it. */
    void (*stanza)(void *ud, struct stanza *s);
    /* </stream:stream> received. */
    void (*stream_close)(void *ud);
};

enum {
    XML_OK = 0,
    XML_RESTARTED = 1,        /* a callback called xml_restart() */
    XML_ERR_MALFORMED = -1,   /* not well-formed -> stream error not-well-formed */
    XML_ERR_RESTRICTED = -2,  /* DTD, entity declaration, PI, comment (RFC 6120 §11.1) -> restricted-xml */
    XML_ERR_TOO_BIG = -3,     /* one stanza larger than max_stanza_bytes -> policy-violation */
    XML_ERR_TOO_DEEP = -4,    /* nesting deeper than max_depth -> policy-violation */
    XML_ERR_CLOSED = -5,      /* data after the stream was closed, or after a previous error */
};

/* Returns a parser expecting a new stream; lim NULL = defaults. cb is
 * copied; ud is passed to every callback. Caller owns (xml_free). */
struct xml_parser *xml_new(const struct xml_limits *lim, const struct xml_callbacks *cb, void *ud);
void xml_free(struct xml_parser *p);   /* NULL ok */

/*
 * Feeds len bytes and calls back for each complete unit. Returns XML_OK, a
 * negative XML_ERR_*, or XML_RESTARTED. *consumed is the number of bytes of
 * buf that were parsed: len unless XML_RESTARTED or an error (or a stream
 * close followed by non-whitespace). After an error every later call returns
 * XML_ERR_CLOSED. Whitespace between stanzas (keepalives), and after the
 * stream close, is ignored; other text between stanzas is ignored too.
 */
int xml_feed(struct xml_parser *p, const char *buf, size_t len, size_t *consumed);

/*
 * Called from a callback (after <starttls/>, and after SASL success,
 * RFC 6120 §5.4.3.3, §6.4.6): parsing stops right after the current element,
 * xml_feed returns XML_RESTARTED with *consumed = bytes up to and including
 * its end, and the next xml_feed starts a brand-new stream (optional XML
 * declaration, then a stream header) on a fresh expat parser. Whether to feed
 * the remaining bytes is the caller's decision (after STARTTLS they are
 * plaintext that must be dropped).
 */
void xml_restart(struct xml_parser *p);

/* Short static description of an XML_* code, for logs. */
const char *xml_error_string(int code);

/*
 * Frees expat's state (about 12 KB) while the stream sits between stanzas,
 * which is where an idle connection spends its life. The next xml_feed
 * rebuilds it by parsing the stream's start tag again, silently, so
 * callers see no difference. Returns 1 when asleep, 0 when the parser is
 * in the middle of something (then it stays as it is). Not from a callback.
 */
int xml_hibernate(struct xml_parser *p);

#endif
