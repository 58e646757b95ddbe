/*
 * A small XML element tree: what xml.c builds from a stream, what the
 * gateway and router inspect and build, and how it is written back out.
 *
 * A tree is owned by its root: freeing the root frees every node, string
 * and attribute below it. Elements carry their resolved namespace URI
 * rather than prefixes, so a prefixed element read from a client is written
 * back as a default-namespace element, which is equivalent XML.
 */
#ifndef PARLEY_STANZA_H
#define PARLEY_STANZA_H

#include <stddef.h>

#include "buf.h"

#define STANZA_NS_XML "http://www.w3.org/XML/1998/namespace"

enum stanza_kind { STANZA_ELEMENT, STANZA_TEXT };

/* name is the local name, or "xml:lang" (generally "xml:local") for the xml
 * namespace; other namespaced attributes are named "uri|local". */
struct stanza_attr { char *name; char *value; };

struct stanza {
    enum stanza_kind kind;
    char *name;          /* element local name ("message"); NULL for text */
    char *ns;            /* element namespace URI; never NULL for elements parsed from a stream */
    char *text;          /* text node content (unescaped); NULL for elements */
    size_t text_len;
    struct stanza_attr *attrs; size_t nattrs, attrs_cap;
    struct stanza *parent, *first, *last, *next;   /* children list */
};

/* Returns a new element with copies of name and ns (ns may be NULL: no
 * namespace of its own, it inherits where it is placed). Caller owns. */
struct stanza *stanza_new(const char *name, const char *ns);
/* Frees s and all children; NULL ok. If s has a parent, the caller must
 * have detached it first. */
void stanza_free(struct stanza *s);

/* Returns the attribute's value (borrowed from s) or NULL. */
const char *stanza_attr(const struct stanza *s, const char *name);
/* Copies name and value; replaces an existing value; value NULL removes. */
void stanza_set_attr(struct stanza *s, const char *name, const char *value);

/* Appends child (which must have no parent) and takes ownership of it;
 * returns child. */
struct stanza *stanza_add_child(struct stanza *parent, struct stanza *child);
/* Appends and returns a new child element; ns NULL = the parent's ns. */
struct stanza *stanza_add_element(struct stanza *parent, const char *name, const char *ns);
/* Appends len bytes of text, merging with a trailing text node. */
void stanza_add_text(struct stanza *parent, const char *text, size_t len);

/* First child element matching name and ns (either NULL = any); borrowed. */
struct stanza *stanza_child(const struct stanza *s, const char *name, const char *ns);
/* First child element, skipping text; borrowed. */
struct stanza *stanza_first_element(const struct stanza *s);
/* Returns the concatenated text of s's direct text children ("" if none);
 * caller frees. */
char *stanza_text(const struct stanza *s);

/* Unlinks child from its parent (no-op without one); the caller then owns it. */
void stanza_detach(struct stanza *child);
/* Returns a deep copy without a parent; caller owns. */
struct stanza *stanza_copy(const struct stanza *s);

/*
 * Appends the XML for s to out. xmlns is written when s->ns differs from
 * parent_ns (pass "jabber:client" for a top-level stanza on a client stream
 * to omit it; NULL to always write it). Children with their parent's ns get
 * no xmlns. Namespaced attributes ("uri|local") get a prefix declared on
 * their element. Attribute values use single quotes.
 */
void stanza_serialize(const struct stanza *s, const char *parent_ns, struct buf *out);

/*
 * Appends s[0..len) to out with & < > escaped, and in attributes (is_attr)
 * also " ' and the whitespace characters tab, LF, CR that a parser would
 * otherwise normalize to spaces. CR is escaped in text too, so it survives
 * the parser's line-end normalization.
 */
void stanza_escape(struct buf *out, const char *s, size_t len, int is_attr);

#endif
