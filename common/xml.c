/*
 * XMPP stream parser: expat underneath, stanza trees on top.
 *
 * expat resolves namespaces (names arrive as "uri\1local"), we keep the tree
 * of the one stanza being read and hand it over when its end tag arrives.
 * The rules we add to XML, numbered here and cited where applied:
 *
 *   R1  Restricted XML (RFC 6120 §11.1): a DOCTYPE, entity declaration,
 *       processing instruction or comment fails the stream. The DOCTYPE
 *       handler fires at the doctype name, before any internal subset is
 *       read, so no entity can ever be declared, let alone expanded
 *       (billion laughs). The XML declaration is not a PI and is allowed.
 *   R2  Size: a stanza is the bytes from the '<' of its start tag to the '>'
 *       of its end tag. Bytes that are not yet part of a complete unit are
 *       counted after every feed (a huge start tag or attribute is held
 *       inside expat, invisible to handlers), and handlers check again as
 *       tags and text arrive, so neither expat's buffer nor our text buffer
 *       grows past about one limit plus one read. The same limit applies
 *       to the XML declaration and stream header together.
 *   R3  Depth: a stanza is depth 1; deeper than max_depth fails.
 *   R4  Everything after a failure, or after the stream close other than
 *       whitespace, gets XML_ERR_CLOSED.
 *   R5  Text directly inside the stream root (whitespace keepalives) is
 *       dropped without being stored.
 *   R6  Prompt delivery without quadratic reparsing. expat >= 2.6 defers
 *       reparsing a partial token until the data behind it has doubled, so a
 *       huge start tag trickled in byte by byte costs linear time, not
 *       quadratic (CVE-2023-52425). But a stanza whose final '>' arrives in a
 *       small read would then wait for more data. Every unit we deliver ends
 *       with '>', so when a read holds a '>' and expat still holds unparsed
 *       bytes, we force one reparse. Up to FORCE_FREE_BYTES held that is
 *       always cheap. Beyond, if a forced reparse completes nothing (the '>'
 *       was inside an attribute value), forcing pauses until the held bytes
 *       have doubled, which keeps the total work linear however the '>'
 *       bytes are placed, at the price of a possible delay for a stanza with
 *       a start tag over 1 KB and a '>' in an attribute value.
 *   R7  An idle connection's parser may sleep (xml_hibernate): expat is freed
 *       between stanzas, when every non-blank byte fed has been parsed, and
 *       rebuilt on the next feed by parsing the stream's own start tag again
 *       (kept verbatim, so every namespace prefix the client declared still
 *       resolves, and its end tag still matches). Whitespace held back at
 *       that point is only a keepalive and is dropped. expat allocates from
 *       xml_alloc.c's slabs, not malloc's heap, so the freed parser leaves
 *       empty slabs that go back to the system, not holes between objects.
 */
#include "xml.h"
#include "util.h"
#include "xml_alloc.h"

#include <expat.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* expat's namespace separator: U+0001 cannot occur in XML 1.0 names or
 * namespace URIs, not even as a character reference. */
#define NS_SEP '\1'

/* R6: reparsing this many held bytes on every read that carries a '>' costs
 * about a microsecond, so below it we always force. */
#define FORCE_FREE_BYTES 1024

/*
 * Added in expat 2.6.0 and backported by distributions without bumping the
 * version macros, so we look for it at run time (R6). Without it expat
 * reparses on every read: prompt, but quadratic in the size of a trickled
 * token, which R2 then bounds.
 */
extern XML_Bool XMLCALL XML_SetReparseDeferralEnabled(XML_Parser parser, XML_Bool enabled)
    __attribute__((weak));

/* expat allocates from its own slabs, apart from long-lived objects, so a
 * hibernated parser's memory goes back to the system (R7, xml_alloc.c). */
static const XML_Memory_Handling_Suite expat_memory = {
    xml_alloc_malloc, xml_alloc_realloc, xml_alloc_free,
};

/* A new namespace-resolving expat; never NULL. */
static XML_Parser expat_new(void)
{
    /* XMPP is UTF-8 only (RFC 6120 §11.6): a declared encoding is ignored. */
    static const XML_Char sep[] = { NS_SEP, '\0' };
    XML_Parser xp = XML_ParserCreate_MM("UTF-8", &expat_memory, sep);
    if (!xp)
        abort(); /* xml_alloc aborts first; expat fails only on allocation */
    return xp;
}

enum xml_state { XS_PROLOG, XS_OPEN, XS_CLOSED, XS_FAILED };

struct xml_parser {
    XML_Parser xp;            /* NULL once failed: the memory goes back early */
    struct xml_callbacks cb;
    void *ud;
    size_t max_bytes;
    unsigned max_depth;

    enum xml_state state;
    unsigned depth;           /* open elements below the root */
    int err;                  /* XML_ERR_* found inside a handler */
    int in_feed;
    int want_restart;         /* xml_restart() was called */
    int halted;               /* XML_StopParser called: ignore further handler calls */
    long long stop_at;        /* stream offset just past the element where we halted */
    long long fed;            /* bytes given to expat for this stream */
    long long unit_start;     /* stream offset where the unit being read began (R2) */
    unsigned long events;     /* handler calls so far: progress (R6) */
    long long last_event_end; /* stream offset just past the last token seen (R6) */
    long long force_floor;    /* force a reparse only with this many bytes held (R6) */

    long long last_nonblank;  /* stream offset just past the last non-blank byte fed (R7) */
    char *replay;             /* R7: the stream's start tag as sent, to wake up with */
    size_t replay_len;
    int is_asleep;            /* R7: expat freed between stanzas */
    int is_waking;            /* R7: replaying the start tag: no callbacks */

    struct stanza *header;    /* being assembled: namespace decls arrive first */
    struct stanza *top, *cur; /* stanza being read, and its open element */
    struct buf text;          /* text for cur, stored when cur gets a child or ends */
};

static long long event_end(struct xml_parser *p)
{
    return (long long)XML_GetCurrentByteIndex(p->xp) + XML_GetCurrentByteCount(p->xp);
}

/* Records that expat completed a token ending at end (R6). */
static void progress(struct xml_parser *p, long long end)
{
    p->events++;
    p->last_event_end = end;
}

static void halt(struct xml_parser *p)
{
    p->halted = 1;
    (void)XML_StopParser(p->xp, XML_FALSE); /* only fails when not parsing; we are */
}

static void fail(struct xml_parser *p, int err)
{
    p->err = err;
    p->stop_at = XML_GetCurrentByteIndex(p->xp);
    halt(p);
}

/* After a callback: honour xml_restart() right after the current element. */
static void check_restart(struct xml_parser *p)
{
    if (p->want_restart && !p->halted) {
        p->stop_at = event_end(p);
        halt(p);
    }
}

/* R7: keeps the raw bytes of the stream's start tag, which expat still
 * holds while it reports it, so the parser can be rebuilt later in the
 * same namespace context (prefixes and all) by parsing them again. */
static void keep_start_tag(struct xml_parser *p)
{
    int offset = 0, size = 0;
    const char *ctx = XML_GetInputContext(p->xp, &offset, &size);
    int count = XML_GetCurrentByteCount(p->xp);

    free(p->replay);
    p->replay = NULL;
    if (!ctx || count <= 0 || offset < 0 || offset + count > size)
        return; /* no context kept by this expat: the parser just stays awake */
    p->replay = xstrndup(ctx + offset, (size_t)count);
    p->replay_len = (size_t)count;
}

/* "uri\1local" -> ns "uri", name "local"; no namespace -> ns "". */
static struct stanza *element_new(const char *qname)
{
    struct stanza *s = stanza_new(NULL, NULL);
    const char *sep = strchr(qname, NS_SEP);
    if (sep) {
        s->ns = xstrndup(qname, (size_t)(sep - qname));
        s->name = xstrdup(sep + 1);
    } else {
        s->ns = xstrdup("");
        s->name = xstrdup(qname);
    }
    return s;
}

/* Appends expat's attributes; expat has already refused duplicates, also
 * those equal only after namespace resolution, so no lookup is needed. */
static void add_attrs(struct stanza *s, const XML_Char **atts)
{
    size_t n = 0;
    while (atts[2 * n])
        n++;
    if (!n)
        return;
    s->attrs = xrealloc(s->attrs, (s->nattrs + n) * sizeof s->attrs[0]);
    s->attrs_cap = s->nattrs + n;
    for (size_t i = 0; i < n; i++) {
        const char *name = atts[2 * i];
        const char *sep = strchr(name, NS_SEP);
        struct stanza_attr *a = &s->attrs[s->nattrs++];
        if (!sep) {
            a->name = xstrdup(name);
        } else if ((size_t)(sep - name) == strlen(STANZA_NS_XML)
                   && memcmp(name, STANZA_NS_XML, (size_t)(sep - name)) == 0) {
            a->name = xasprintf("xml:%s", sep + 1);
        } else {
            a->name = xstrdup(name);
            a->name[sep - name] = '|';
        }
        a->value = xstrdup(atts[2 * i + 1]);
    }
}

static void flush_text(struct xml_parser *p)
{
    if (p->text.len == 0)
        return;
    stanza_add_text(p->cur, p->text.data, p->text.len);
    buf_reset(&p->text);
}

static void on_ns_decl(void *ud, const XML_Char *prefix, const XML_Char *uri)
{
    struct xml_parser *p = ud;
    if (p->halted)
        return;
    if (!p->header)
        p->header = stanza_new(NULL, NULL);
    char *name = prefix ? xasprintf("xmlns:%s", prefix) : xstrdup("xmlns");
    stanza_set_attr(p->header, name, uri ? uri : "");
    free(name);
}

static void on_start(void *ud, const XML_Char *qname, const XML_Char **atts)
{
    struct xml_parser *p = ud;
    if (p->halted)
        return;
    progress(p, event_end(p));

    if (p->state == XS_PROLOG && p->is_waking) {
        /* R7: the replayed start tag; the stream was already announced. */
        stanza_free(p->header);
        p->header = NULL;
        p->state = XS_OPEN;
        XML_SetNamespaceDeclHandler(p->xp, NULL, NULL);
        p->unit_start = event_end(p);
        return;
    }
    if (p->state == XS_PROLOG) {
        struct stanza *h = element_new(qname);
        keep_start_tag(p);
        if (p->header) {
            /* Keep the namespace declarations gathered by on_ns_decl. */
            h->attrs = p->header->attrs;
            h->nattrs = p->header->nattrs;
            h->attrs_cap = p->header->attrs_cap;
            p->header->attrs = NULL;
            p->header->nattrs = 0;
            stanza_free(p->header);
            p->header = NULL;
        }
        add_attrs(h, atts);
        p->state = XS_OPEN;
        /* Declarations inside stanzas need no reporting: names are resolved. */
        XML_SetNamespaceDeclHandler(p->xp, NULL, NULL);
        p->unit_start = event_end(p);
        if (p->cb.stream_open)
            p->cb.stream_open(p->ud, h);
        else
            stanza_free(h);
        check_restart(p);
        return;
    }

    if (++p->depth > p->max_depth) {               /* R3 */
        fail(p, XML_ERR_TOO_DEEP);
        return;
    }
    if (p->depth == 1)
        p->unit_start = XML_GetCurrentByteIndex(p->xp);
    if (event_end(p) - p->unit_start > (long long)p->max_bytes) { /* R2 */
        fail(p, XML_ERR_TOO_BIG);
        return;
    }
    struct stanza *e = element_new(qname);
    add_attrs(e, atts);
    if (p->depth == 1) {
        p->top = e;
    } else {
        flush_text(p);
        stanza_add_child(p->cur, e);
    }
    p->cur = e;
}

static void on_end(void *ud, const XML_Char *qname)
{
    struct xml_parser *p = ud;
    (void)qname; /* expat has matched it against the start tag */
    if (p->halted)
        return;
    progress(p, event_end(p));

    if (p->depth == 0) {
        p->state = XS_CLOSED;
        p->stop_at = event_end(p);
        halt(p);
        if (p->cb.stream_close)
            p->cb.stream_close(p->ud);
        return;
    }
    flush_text(p);
    if (--p->depth > 0) {
        p->cur = p->cur->parent;
        return;
    }
    long long end = event_end(p);
    if (end - p->unit_start > (long long)p->max_bytes) { /* R2 */
        fail(p, XML_ERR_TOO_BIG);
        return;
    }
    struct stanza *s = p->top;
    p->top = p->cur = NULL;
    p->unit_start = end;
    buf_shrink(&p->text, 4096); /* one huge text must not pin its buffer */
    if (p->cb.stanza)
        p->cb.stanza(p->ud, s);
    else
        stanza_free(s);
    check_restart(p);
}

static void on_text(void *ud, const XML_Char *s, int len)
{
    struct xml_parser *p = ud;
    if (p->halted)
        return;
    long long end = event_end(p);
    progress(p, end);
    if (p->depth == 0) {                            /* R5 */
        p->unit_start = end;
        return;
    }
    if (end - p->unit_start > (long long)p->max_bytes) { /* R2 */
        fail(p, XML_ERR_TOO_BIG);
        return;
    }
    buf_append(&p->text, s, (size_t)len);
}

/* Tokens that produce no other event still count as progress (R6). */
static void on_xml_decl(void *ud, const XML_Char *version, const XML_Char *encoding, int standalone)
{
    struct xml_parser *p = ud;
    (void)version, (void)encoding, (void)standalone;
    progress(p, event_end(p));
}

static void on_cdata_edge(void *ud)
{
    struct xml_parser *p = ud;
    progress(p, event_end(p));
}

/* R1 */
static void on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                       const XML_Char *pubid, int has_internal_subset)
{
    (void)name, (void)sysid, (void)pubid, (void)has_internal_subset;
    fail(ud, XML_ERR_RESTRICTED);
}

static void on_entity_decl(void *ud, const XML_Char *name, int is_param, const XML_Char *value,
                           int value_len, const XML_Char *base, const XML_Char *sysid,
                           const XML_Char *pubid, const XML_Char *notation)
{
    (void)name, (void)is_param, (void)value, (void)value_len, (void)base;
    (void)sysid, (void)pubid, (void)notation;
    fail(ud, XML_ERR_RESTRICTED);
}

static void on_pi(void *ud, const XML_Char *target, const XML_Char *data)
{
    (void)target, (void)data;
    fail(ud, XML_ERR_RESTRICTED);
}

static void on_comment(void *ud, const XML_Char *data)
{
    (void)data;
    fail(ud, XML_ERR_RESTRICTED);
}

/* Handlers and options; needed again after XML_ParserReset clears them. */
static void setup_expat(struct xml_parser *p)
{
    XML_SetUserData(p->xp, p);
    XML_SetElementHandler(p->xp, on_start, on_end);
    XML_SetCharacterDataHandler(p->xp, on_text);
    XML_SetNamespaceDeclHandler(p->xp, on_ns_decl, NULL);
    XML_SetStartDoctypeDeclHandler(p->xp, on_doctype);
    XML_SetEntityDeclHandler(p->xp, on_entity_decl);
    XML_SetProcessingInstructionHandler(p->xp, on_pi);
    XML_SetCommentHandler(p->xp, on_comment);
    XML_SetXmlDeclHandler(p->xp, on_xml_decl);
    XML_SetCdataSectionHandler(p->xp, on_cdata_edge, on_cdata_edge);
    /* The hash salt is left to expat, which seeds it from getrandom();
     * reparse deferral stays at expat's default, on (R6). */
}

/* Drops the stream state so the next byte starts a new stream. */
static void stream_reset(struct xml_parser *p)
{
    stanza_free(p->header);
    stanza_free(p->top);
    p->header = p->top = p->cur = NULL;
    buf_fini(&p->text);
    p->state = XS_PROLOG;
    p->depth = 0;
    p->err = 0;
    p->want_restart = p->halted = 0;
    p->stop_at = p->fed = p->unit_start = 0;
    p->events = 0;
    p->last_event_end = p->force_floor = 0;
}

static void set_failed(struct xml_parser *p)
{
    stream_reset(p);
    XML_ParserFree(p->xp);
    p->xp = NULL;
    p->state = XS_FAILED;
}

struct xml_parser *xml_new(const struct xml_limits *lim, const struct xml_callbacks *cb, void *ud)
{
    struct xml_parser *p = xcalloc(1, sizeof *p);
    p->max_bytes = lim && lim->max_stanza_bytes ? lim->max_stanza_bytes : XML_DEFAULT_MAX_STANZA_BYTES;
    p->max_depth = lim && lim->max_depth ? lim->max_depth : XML_DEFAULT_MAX_DEPTH;
    if (cb)
        p->cb = *cb;
    p->ud = ud;
    buf_init(&p->text);
    p->xp = expat_new();
    setup_expat(p);
    return p;
}

void xml_free(struct xml_parser *p)
{
    if (!p)
        return;
    stream_reset(p);
    free(p->replay);
    if (p->xp)
        XML_ParserFree(p->xp);
    free(p);
}

void xml_restart(struct xml_parser *p)
{
    if (p->state == XS_FAILED)
        return;
    if (p->in_feed) {
        p->want_restart = 1;
        return;
    }
    if (p->is_asleep) {
        p->xp = expat_new();
        p->is_asleep = 0;
    } else {
        XML_ParserReset(p->xp, "UTF-8");
    }
    setup_expat(p);
    stream_reset(p);
    free(p->replay);
    p->replay = NULL;
}

int xml_hibernate(struct xml_parser *p)
{
    /* R7: only between stanzas with nothing but blanks held back. */
    if (p->is_asleep)
        return 1;
    if (p->in_feed || p->state != XS_OPEN || p->depth != 0 || !p->replay || p->last_event_end < p->last_nonblank)
        return 0;
    XML_ParserFree(p->xp);
    p->xp = NULL;
    buf_fini(&p->text);
    p->is_asleep = 1;
    return 1;
}

/* R7: a new expat, brought back inside the stream by its start tag. */
static void wake(struct xml_parser *p)
{
    p->xp = expat_new();
    setup_expat(p);
    p->is_asleep = 0;
    p->state = XS_PROLOG;
    p->fed = p->unit_start = p->last_event_end = p->last_nonblank = p->force_floor = 0;
    p->events = 0;
    p->is_waking = 1;
    (void)XML_Parse(p->xp, p->replay, (int)p->replay_len, XML_FALSE);
    if (XML_SetReparseDeferralEnabled) {
        /* The tag must be taken now, not held back (R6). */
        (void)XML_SetReparseDeferralEnabled(p->xp, XML_FALSE);
        (void)XML_Parse(p->xp, NULL, 0, XML_FALSE);
        (void)XML_SetReparseDeferralEnabled(p->xp, XML_TRUE);
    }
    p->is_waking = 0;
    p->fed = (long long)p->replay_len;
    p->last_nonblank = p->fed;
    if (p->state != XS_OPEN) {
        /* Cannot happen with bytes expat accepted once; be safe anyway. */
        set_failed(p);
    }
}

/* R6: a '>' arrived; make expat look at the bytes it is holding back.
 * Returns XML_Parse's status. */
static int force_reparse(struct xml_parser *p, unsigned long events_before)
{
    long long held = p->fed - p->last_event_end;
    if (p->events != events_before)
        p->force_floor = 0;
    if (held <= 0 || (held > FORCE_FREE_BYTES && held < p->force_floor))
        return XML_STATUS_OK;
    (void)XML_SetReparseDeferralEnabled(p->xp, XML_FALSE); /* only fails on bad arguments */
    int status = XML_Parse(p->xp, NULL, 0, XML_FALSE);
    (void)XML_SetReparseDeferralEnabled(p->xp, XML_TRUE);
    p->force_floor = p->events == events_before ? 2 * held : 0;
    return status;
}

static int is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

static size_t clamp_offset(long long off, size_t len)
{
    return off < 0 ? 0 : (unsigned long long)off > len ? len : (size_t)off;
}

int xml_feed(struct xml_parser *p, const char *buf, size_t len, size_t *consumed)
{
    size_t dummy;
    if (!consumed)
        consumed = &dummy;
    *consumed = 0;
    if (p->state == XS_FAILED)                      /* R4 */
        return XML_ERR_CLOSED;
    if (p->state == XS_CLOSED) {
        if (!is_blank(buf, len)) {
            set_failed(p);
            return XML_ERR_CLOSED;
        }
        *consumed = len;
        return XML_OK;
    }

    if (p->is_asleep)
        wake(p);
    if (p->state == XS_FAILED)
        return XML_ERR_CLOSED;

    long long base = p->fed;
    unsigned long events_before = p->events;
    for (size_t i = len; i > 0; i--) {
        char ch = buf[i - 1];
        if (ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n') {
            p->last_nonblank = base + (long long)i;
            break;
        }
    }
    size_t off = 0;
    int status = XML_STATUS_OK;
    p->in_feed = 1;
    while (off < len && status == XML_STATUS_OK) {
        /* XML_Parse takes an int length. */
        int chunk = len - off > INT_MAX / 2 ? INT_MAX / 2 : (int)(len - off);
        status = XML_Parse(p->xp, buf + off, chunk, XML_FALSE);
        off += (size_t)chunk;
        p->fed += chunk;
    }
    if (status == XML_STATUS_OK && !p->halted && XML_SetReparseDeferralEnabled
        && memchr(buf, '>', len))
        status = force_reparse(p, events_before);
    p->in_feed = 0;

    if (p->err) {
        int err = p->err;
        *consumed = clamp_offset(p->stop_at - base, len);
        set_failed(p);
        return err;
    }
    if (p->want_restart) {
        *consumed = clamp_offset(p->stop_at - base, len);
        xml_restart(p);
        return XML_RESTARTED;
    }
    if (p->state == XS_CLOSED) {
        size_t end = clamp_offset(p->stop_at - base, len);
        if (!is_blank(buf + end, len - end)) {      /* R4 */
            *consumed = end;
            set_failed(p);
            return XML_ERR_CLOSED;
        }
        *consumed = len;
        return XML_OK;
    }
    if (status != XML_STATUS_OK) {
        *consumed = clamp_offset((long long)XML_GetCurrentByteIndex(p->xp) - base, len);
        set_failed(p);
        return XML_ERR_MALFORMED;
    }
    if (p->fed - p->unit_start > (long long)p->max_bytes) { /* R2 */
        *consumed = len;
        set_failed(p);
        return XML_ERR_TOO_BIG;
    }
    *consumed = len;
    return XML_OK;
}

const char *xml_error_string(int code)
{
    switch (code) {
    case XML_OK: return "ok";
    case XML_RESTARTED: return "stream restarted";
    case XML_ERR_MALFORMED: return "XML not well-formed";
    case XML_ERR_RESTRICTED: return "restricted XML (DTD, entity, PI or comment)";
    case XML_ERR_TOO_BIG: return "stanza too big";
    case XML_ERR_TOO_DEEP: return "elements nested too deeply";
    case XML_ERR_CLOSED: return "data after stream close or error";
    default: return "unknown XML error";
    }
}
