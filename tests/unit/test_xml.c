/*
 * Unit tests for common/xml.c: a realistic client stream fed whole, split at
 * every byte and byte by byte; restricted XML; depth and size limits;
 * malformed input; xml_restart; data after close.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "buf.h"
#include "stanza.h"
#include "xml.h"

#define HDR "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' " \
            "to='example.com' version='1.0' xml:lang='en'>"

static const char client_stream[] =
    "<?xml version='1.0'?>\n"
    HDR "\n"
    "<message to='juliet@example.com' type='chat' id='m1'>"
    "<body>Hi &amp; &lt;bye&gt; &#x263A; \xc3\xa4 \"q\" 'a'</body>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    " \n \r\n\t "
    "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'>"
    "<item jid='a@b' name='A &amp; B'><group>G1</group><group>G2</group></item></query></iq>"
    " "
    "<presence><x:c xmlns:x='http://jabber.org/protocol/caps' x:hash='sha-1' node='n' ver='v=='/>"
    "<status><![CDATA[<cdata> & more]]></status></presence>"
    "<message xml:lang='de' to='a@b'><body>line1\nline2</body></message>"
    "\n"
    "</stream:stream>";

/* What the recorder logs for client_stream: each unit serialized. */
static const char client_log[] =
    "OPEN <stream xmlns='http://etherx.jabber.org/streams' xmlns:stream='http://etherx.jabber.org/streams'"
    " to='example.com' version='1.0' xml:lang='en'/>\n"
    "<message to='juliet@example.com' type='chat' id='m1'>"
    "<body>Hi &amp; &lt;bye&gt; \xe2\x98\xba \xc3\xa4 \"q\" 'a'</body>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>\n"
    "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'>"
    "<item jid='a@b' name='A &amp; B'><group>G1</group><group>G2</group></item></query></iq>\n"
    "<presence><c xmlns='http://jabber.org/protocol/caps' xmlns:a0='http://jabber.org/protocol/caps'"
    " a0:hash='sha-1' node='n' ver='v=='/>"
    "<status>&lt;cdata&gt; &amp; more</status></presence>\n"
    "<message xml:lang='de' to='a@b'><body>line1\nline2</body></message>\n"
    "CLOSE\n";

/* Records every callback as text; restarts on <starttls/> when asked. */
struct rec {
    struct buf log;
    struct xml_parser *p;
    struct stanza *header;   /* the last header, kept for inspection */
    struct stanza *last;     /* the last stanza, kept for inspection */
    int restart_on_starttls;
    int opens, stanzas, closes;
};

static void on_open(void *ud, struct stanza *h)
{
    struct rec *r = ud;
    buf_append_str(&r->log, "OPEN ");
    stanza_serialize(h, NULL, &r->log);
    buf_append_str(&r->log, "\n");
    stanza_free(r->header);
    r->header = h;
    r->opens++;
}

static void on_stanza(void *ud, struct stanza *s)
{
    struct rec *r = ud;
    stanza_serialize(s, "jabber:client", &r->log);
    buf_append_str(&r->log, "\n");
    r->stanzas++;
    if (r->restart_on_starttls && strcmp(s->name, "starttls") == 0)
        xml_restart(r->p);
    stanza_free(r->last);
    r->last = s;
}

static void on_close(void *ud)
{
    struct rec *r = ud;
    buf_append_str(&r->log, "CLOSE\n");
    r->closes++;
}

static const struct xml_callbacks callbacks = { on_open, on_stanza, on_close };

static void rec_init(struct rec *r, size_t max_bytes, unsigned max_depth)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->log);
    struct xml_limits lim = { max_bytes, max_depth };
    r->p = xml_new(&lim, &callbacks, r);
}

static void rec_fini(struct rec *r)
{
    xml_free(r->p);
    stanza_free(r->header);
    stanza_free(r->last);
    buf_fini(&r->log);
}

/* Feeds data[0..len), continuing after XML_RESTARTED; returns the first
 * other result. */
static int feed(struct rec *r, const char *data, size_t len)
{
    for (;;) {
        size_t used = 12345;
        int rc = xml_feed(r->p, data, len, &used);
        if (rc != XML_RESTARTED) {
            if (rc == XML_OK)
                assert_int_equal(used, len);
            return rc;
        }
        assert_true(used <= len);
        data += used;
        len -= used;
    }
}

/* Feeds s whole into a fresh parser with default limits; returns the rc. */
static int feed_one(const char *s)
{
    struct rec r;
    rec_init(&r, 0, 0);
    int rc = feed(&r, s, strlen(s));
    rec_fini(&r);
    return rc;
}

/* stream: fed in one piece, every unit arrives, serialized as expected. */
static void test_stream_whole(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    assert_int_equal(feed(&r, client_stream, sizeof client_stream - 1), XML_OK);
    assert_string_equal(r.log.data, client_log);
    assert_int_equal(r.opens, 1);
    assert_int_equal(r.stanzas, 4);
    assert_int_equal(r.closes, 1);
    rec_fini(&r);
}

/* stream: split into two feeds at every byte offset, the result is identical. */
static void test_stream_split_everywhere(void **state)
{
    (void)state;
    size_t len = sizeof client_stream - 1;
    for (size_t i = 0; i <= len; i++) {
        struct rec r;
        rec_init(&r, 0, 0);
        assert_int_equal(feed(&r, client_stream, i), XML_OK);
        assert_int_equal(feed(&r, client_stream + i, len - i), XML_OK);
        assert_string_equal(r.log.data, client_log);
        rec_fini(&r);
    }
}

/* stream: fed one byte at a time, the result is identical. */
static void test_stream_byte_at_a_time(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    for (size_t i = 0; i < sizeof client_stream - 1; i++)
        assert_int_equal(feed(&r, client_stream + i, 1), XML_OK);
    assert_string_equal(r.log.data, client_log);
    rec_fini(&r);
}

/* stream: a stanza is delivered as soon as its last bytes arrive, at any split. */
static void test_stanza_prompt(void **state)
{
    (void)state;
    const char *s = HDR "<message to='juliet@example.com' id='a-rather-long-id-attribute-value-0123456789'/>";
    size_t len = strlen(s);
    for (size_t i = strlen(HDR) + 1; i < len; i++) {
        struct rec r;
        rec_init(&r, 0, 0);
        assert_int_equal(feed(&r, s, i), XML_OK);
        assert_int_equal(r.stanzas, 0);
        assert_int_equal(feed(&r, s + i, len - i), XML_OK);
        assert_int_equal(r.stanzas, 1);
        rec_fini(&r);
    }
}

/* Feeds s one byte at a time; asserts the stanza arrives with its last byte. */
static void assert_prompt_by_bytes(const char *s, size_t len)
{
    struct rec r;
    rec_init(&r, 0, 0);
    assert_int_equal(feed(&r, HDR, strlen(HDR)), XML_OK);
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(r.stanzas, 0);
        assert_int_equal(feed(&r, s + i, 1), XML_OK);
    }
    assert_int_equal(r.stanzas, 1);
    rec_fini(&r);
}

/* stream: trickled byte by byte, a stanza with '>' in attribute values and a
 * 4 KB start tag still arrives with its last byte. */
static void test_stanza_prompt_trickled(void **state)
{
    (void)state;
    const char *s = "<message id='a>b' to='x>y'><body>1 > 0</body></message>";
    assert_prompt_by_bytes(s, strlen(s));
    s = "<message id='a>'/>";
    assert_prompt_by_bytes(s, strlen(s));

    struct buf b;
    buf_init(&b);
    buf_append_str(&b, "<message id='");
    for (int i = 0; i < 4096; i++)
        buf_append(&b, "x", 1);
    buf_append_str(&b, "'/>");
    assert_prompt_by_bytes(b.data, b.len);
    buf_fini(&b);
}

/* cost: a 128 KB start tag full of '>' trickled byte by byte takes linear,
 * not quadratic, time (quadratic is several seconds even unsanitized). */
static void test_trickle_cost(void **state)
{
    (void)state;
    size_t len = 128 * 1024;
    char *s = malloc(len);
    assert_non_null(s);
    memcpy(s, "<message id='", 13);
    memset(s + 13, '>', len - 13);
    struct rec r;
    rec_init(&r, 0, 0);
    assert_int_equal(feed(&r, HDR, strlen(HDR)), XML_OK);
    clock_t t0 = clock();
    for (size_t i = 0; i < len; i++)
        assert_int_equal(feed(&r, s + i, 1), XML_OK);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    assert_true(secs < 2.0);
    rec_fini(&r);
    free(s);
}

/* header: name, namespace, attributes and namespace declarations as documented. */
static void test_header_attrs(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    assert_int_equal(feed(&r, HDR, strlen(HDR)), XML_OK);
    assert_non_null(r.header);
    assert_string_equal(r.header->name, "stream");
    assert_string_equal(r.header->ns, XML_NS_STREAMS);
    assert_string_equal(stanza_attr(r.header, "xmlns"), "jabber:client");
    assert_string_equal(stanza_attr(r.header, "xmlns:stream"), XML_NS_STREAMS);
    assert_string_equal(stanza_attr(r.header, "to"), "example.com");
    assert_string_equal(stanza_attr(r.header, "version"), "1.0");
    assert_string_equal(stanza_attr(r.header, "xml:lang"), "en");
    rec_fini(&r);
}

/* header: without a default namespace declaration, "xmlns" is NULL. */
static void test_header_no_default_ns(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    const char *s = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>";
    assert_int_equal(feed(&r, s, strlen(s)), XML_OK);
    assert_null(stanza_attr(r.header, "xmlns"));
    rec_fini(&r);
}

/* stanza: namespaces are resolved; children inherit, prefixes are resolved. */
static void test_stanza_namespaces(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    const char *s = HDR "<message><body>x</body><p:e xmlns:p='urn:p' p:a='1' b='2'/></message>";
    assert_int_equal(feed(&r, s, strlen(s)), XML_OK);
    struct stanza *m = r.last;
    assert_string_equal(m->ns, "jabber:client");
    assert_string_equal(stanza_child(m, "body", NULL)->ns, "jabber:client");
    struct stanza *e = stanza_child(m, "e", "urn:p");
    assert_non_null(e);
    assert_string_equal(stanza_attr(e, "urn:p|a"), "1");
    assert_string_equal(stanza_attr(e, "b"), "2");
    assert_null(stanza_attr(e, "xmlns:p"));
    rec_fini(&r);
}

/* stanza: an element without any namespace gets ns "" and serializes with xmlns=''. */
static void test_stanza_no_namespace(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    const char *s = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a/>";
    assert_int_equal(feed(&r, s, strlen(s)), XML_OK);
    assert_string_equal(r.last->ns, "");
    assert_string_equal(strchr(r.log.data, '\n') + 1, "<a xmlns=''/>\n");
    rec_fini(&r);
}

/* restricted: a DOCTYPE is refused. */
static void test_doctype(void **state)
{
    (void)state;
    assert_int_equal(feed_one("<?xml version='1.0'?><!DOCTYPE stream>" HDR), XML_ERR_RESTRICTED);
}

/* restricted: billion laughs is refused at the DOCTYPE, before any expansion. */
static void test_billion_laughs(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    const char *s =
        "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
        "<!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
        "<!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>"
        "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]>"
        HDR "<message><body>&lol3;</body></message>";
    assert_int_equal(feed(&r, s, strlen(s)), XML_ERR_RESTRICTED);
    assert_int_equal(r.opens, 0);
    assert_int_equal(r.stanzas, 0);
    rec_fini(&r);
}

/* restricted: processing instructions, in a stanza or between stanzas, are refused. */
static void test_processing_instruction(void **state)
{
    (void)state;
    assert_int_equal(feed_one(HDR "<message><?pi data?></message>"), XML_ERR_RESTRICTED);
    assert_int_equal(feed_one(HDR "<?pi data?>"), XML_ERR_RESTRICTED);
    assert_int_equal(feed_one("<?pi data?>" HDR), XML_ERR_RESTRICTED);
}

/* restricted: comments are refused, before the header too. */
static void test_comment(void **state)
{
    (void)state;
    assert_int_equal(feed_one(HDR "<message><!-- c --></message>"), XML_ERR_RESTRICTED);
    assert_int_equal(feed_one("<!-- c -->" HDR), XML_ERR_RESTRICTED);
}

/* malformed: mismatched tags, undefined entities, unbound prefixes, bad UTF-8. */
static void test_malformed(void **state)
{
    (void)state;
    assert_int_equal(feed_one(HDR "<message></body>"), XML_ERR_MALFORMED);
    assert_int_equal(feed_one(HDR "<message>&nbsp;</message>"), XML_ERR_MALFORMED);
    assert_int_equal(feed_one(HDR "<x:message/>"), XML_ERR_MALFORMED);
    assert_int_equal(feed_one(HDR "<message>\xff</message>"), XML_ERR_MALFORMED);
    assert_int_equal(feed_one(HDR "<message a='1' a='2'/>"), XML_ERR_MALFORMED);
    assert_int_equal(feed_one("<?xml version='1.0'?>" HDR "<?xml version='1.0'?>"), XML_ERR_MALFORMED);
}

/* errors: after an error, every feed returns XML_ERR_CLOSED and no callbacks run. */
static void test_closed_after_error(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    assert_int_equal(feed(&r, HDR "<a></b>", strlen(HDR) + 7), XML_ERR_MALFORMED);
    assert_int_equal(feed(&r, "<message/>", 10), XML_ERR_CLOSED);
    assert_int_equal(feed(&r, " ", 1), XML_ERR_CLOSED);
    assert_int_equal(r.stanzas, 0);
    rec_fini(&r);
}

/* Builds HDR + depth nested <a> elements as one stanza. */
static char *nested(unsigned depth)
{
    struct buf b;
    buf_init(&b);
    buf_append_str(&b, HDR);
    for (unsigned i = 0; i < depth; i++)
        buf_append_str(&b, "<a>");
    for (unsigned i = 0; i < depth; i++)
        buf_append_str(&b, "</a>");
    return buf_steal(&b, NULL);
}

/* depth: a stanza nested exactly max_depth deep passes, one deeper fails. */
static void test_depth_limit(void **state)
{
    (void)state;
    char *ok = nested(XML_DEFAULT_MAX_DEPTH), *deep = nested(XML_DEFAULT_MAX_DEPTH + 1);
    assert_int_equal(feed_one(ok), XML_OK);
    assert_int_equal(feed_one(deep), XML_ERR_TOO_DEEP);
    free(ok);
    free(deep);

    struct rec r;
    rec_init(&r, 0, 2);
    const char *s = HDR "<a><b/></a><a><b><c/></b></a>";
    assert_int_equal(feed(&r, s, strlen(s)), XML_ERR_TOO_DEEP);
    assert_int_equal(r.stanzas, 1);
    rec_fini(&r);
}

/* Returns "<message><body>xxx…</body></message>" of exactly size bytes. */
static char *stanza_of_size(size_t size)
{
    const char *open = "<message><body>", *close = "</body></message>";
    size_t fixed = strlen(open) + strlen(close);
    assert_true(size >= fixed);
    char *s = malloc(size + 1);
    assert_non_null(s);
    strcpy(s, open);
    memset(s + strlen(open), 'x', size - fixed);
    strcpy(s + size - strlen(close), close);
    return s;
}

/* size: a stanza of exactly the limit passes, one byte more fails, fed whole or split. */
static void test_size_limit_exact(void **state)
{
    (void)state;
    const size_t limit = 1000;
    for (int over = 0; over <= 1; over++) {
        char *s = stanza_of_size(limit + (size_t)over);
        size_t len = strlen(s);
        for (size_t split = 0; split <= len; split += 7) {
            struct rec r;
            rec_init(&r, limit, 0);
            assert_int_equal(feed(&r, HDR, strlen(HDR)), XML_OK);
            int rc = feed(&r, s, split);
            if (rc == XML_OK)
                rc = feed(&r, s + split, len - split);
            assert_int_equal(rc, over ? XML_ERR_TOO_BIG : XML_OK);
            assert_int_equal(r.stanzas, over ? 0 : 1);
            rec_fini(&r);
        }
        free(s);
    }
}

/* Feeds HDR, then s in 4 KB chunks; returns the rc and the bytes fed in *fed. */
static int feed_chunked(struct rec *r, const char *s, size_t len, size_t *fed)
{
    int rc = feed(r, HDR, strlen(HDR));
    for (*fed = 0; rc == XML_OK && *fed < len;) {
        size_t n = len - *fed < 4096 ? len - *fed : 4096;
        rc = feed(r, s + *fed, n);
        *fed += n;
    }
    return rc;
}

/* size: a 300 KB stanza against 256 KB fails before it has all been fed. */
static void test_size_limit_prompt(void **state)
{
    (void)state;
    char *s = stanza_of_size(300 * 1024);
    size_t fed;
    struct rec r;
    rec_init(&r, 256 * 1024, 0);
    assert_int_equal(feed_chunked(&r, s, strlen(s), &fed), XML_ERR_TOO_BIG);
    assert_true(fed <= 256 * 1024 + 4096);
    rec_fini(&r);
    free(s);
}

/* size: a start tag that never ends (one huge attribute) fails promptly too. */
static void test_size_limit_open_tag(void **state)
{
    (void)state;
    size_t len = 300 * 1024;
    char *s = malloc(len);
    assert_non_null(s);
    memcpy(s, "<message to='", 13);
    memset(s + 13, 'x', len - 13);
    size_t fed;
    struct rec r;
    rec_init(&r, 256 * 1024, 0);
    assert_int_equal(feed_chunked(&r, s, len, &fed), XML_ERR_TOO_BIG);
    assert_true(fed <= 256 * 1024 + 4096);
    rec_fini(&r);
    free(s);
}

/* size: whitespace keepalives between stanzas never count towards a stanza. */
static void test_keepalives_unbounded(void **state)
{
    (void)state;
    size_t len = 600 * 1024;
    char *s = malloc(len);
    assert_non_null(s);
    memset(s, ' ', len);
    size_t fed;
    struct rec r;
    rec_init(&r, 1024, 0);
    assert_int_equal(feed_chunked(&r, s, len, &fed), XML_OK);
    assert_int_equal(feed(&r, s, len), XML_OK); /* one big read as well */
    assert_int_equal(feed(&r, "<message/>", 10), XML_OK);
    assert_int_equal(r.stanzas, 1);
    rec_fini(&r);
    free(s);
}

/* size: many small stanzas add up to far more than the limit without failing. */
static void test_size_per_stanza(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 100, 0);
    assert_int_equal(feed(&r, HDR, strlen(HDR)), XML_OK);
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < 100; i++)
        buf_append_str(&b, "<message><body>hello</body></message>");
    assert_int_equal(feed(&r, b.data, b.len), XML_OK);
    assert_int_equal(r.stanzas, 100);
    buf_fini(&b);
    rec_fini(&r);
}

#define STARTTLS "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
#define RESTART_BUF "<?xml version='1.0'?>" HDR STARTTLS "<?xml version='1.0'?>" HDR "<message/>"

/* restart: consumed ends right after the element, the rest starts a new stream. */
static void test_restart(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    r.restart_on_starttls = 1;
    const char *s = RESTART_BUF;
    size_t len = strlen(s), used = 0;
    size_t end = strstr(s, STARTTLS) - s + strlen(STARTTLS);

    assert_int_equal(xml_feed(r.p, s, len, &used), XML_RESTARTED);
    assert_int_equal(used, end);
    assert_int_equal(r.opens, 1);
    assert_int_equal(r.stanzas, 1);
    assert_int_equal(xml_feed(r.p, s + used, len - used, &used), XML_OK);
    assert_int_equal(used, len - end);
    assert_int_equal(r.opens, 2);
    assert_int_equal(r.stanzas, 2);
    assert_string_equal(r.last->name, "message");
    rec_fini(&r);
}

/* restart: the same stream split at every byte gives the same units. */
static void test_restart_split_everywhere(void **state)
{
    (void)state;
    const char *s = RESTART_BUF;
    size_t len = strlen(s);
    struct rec whole;
    rec_init(&whole, 0, 0);
    whole.restart_on_starttls = 1;
    assert_int_equal(feed(&whole, s, len), XML_OK);

    for (size_t i = 0; i <= len; i++) {
        struct rec r;
        rec_init(&r, 0, 0);
        r.restart_on_starttls = 1;
        assert_int_equal(feed(&r, s, i), XML_OK);
        assert_int_equal(feed(&r, s + i, len - i), XML_OK);
        assert_string_equal(r.log.data, whole.log.data);
        assert_int_equal(r.opens, 2);
        rec_fini(&r);
    }
    rec_fini(&whole);
}

/* restart: after a restart, the next element is a new stream's root, not a stanza. */
static void test_restart_needs_new_header(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    r.restart_on_starttls = 1;
    const char *s = HDR STARTTLS "<message>";
    size_t len = strlen(s), used;
    assert_int_equal(xml_feed(r.p, s, len, &used), XML_RESTARTED);
    assert_int_equal(xml_feed(r.p, s + used, len - used, &used), XML_OK);
    assert_int_equal(r.opens, 2);
    assert_int_equal(r.stanzas, 1);
    assert_string_equal(r.header->name, "message");
    rec_fini(&r);
}

/* restart: a second XML declaration is allowed only at the start of the new stream. */
static void test_restart_xml_decl(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    r.restart_on_starttls = 1;
    const char *s = HDR STARTTLS HDR "<?xml version='1.0'?>";
    assert_int_equal(feed(&r, s, strlen(s)), XML_ERR_MALFORMED);
    rec_fini(&r);
}

/* restart: xml_restart outside a callback resets the parser at once. */
static void test_restart_outside_callback(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    assert_int_equal(feed(&r, HDR "<message>", strlen(HDR) + 9), XML_OK);
    xml_restart(r.p);
    assert_int_equal(feed(&r, "<?xml version='1.0'?>" HDR "<iq/>", strlen(HDR) + 26), XML_OK);
    assert_int_equal(r.opens, 2);
    assert_int_equal(r.stanzas, 1);
    assert_string_equal(r.last->name, "iq");
    rec_fini(&r);
}

/* close: whitespace after </stream:stream> is ignored, anything else is XML_ERR_CLOSED. */
static void test_data_after_close(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    const char *s = HDR "</stream:stream> \n";
    assert_int_equal(feed(&r, s, strlen(s)), XML_OK);
    assert_int_equal(r.closes, 1);
    assert_int_equal(feed(&r, "  ", 2), XML_OK);
    assert_int_equal(feed(&r, "<message/>", 10), XML_ERR_CLOSED);
    assert_int_equal(feed(&r, " ", 1), XML_ERR_CLOSED);
    assert_int_equal(r.stanzas, 0);
    rec_fini(&r);
}

/* close: data after the close in the same buffer is refused, consumed ends at the close. */
static void test_data_after_close_same_buffer(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    const char *s = HDR "</stream:stream><message/>";
    size_t used;
    assert_int_equal(xml_feed(r.p, s, strlen(s), &used), XML_ERR_CLOSED);
    assert_int_equal(used, strlen(HDR "</stream:stream>"));
    assert_int_equal(r.closes, 1);
    assert_int_equal(r.stanzas, 0);
    rec_fini(&r);
}

/* error strings: every code has a description. */
static void test_error_strings(void **state)
{
    (void)state;
    for (int c = XML_ERR_CLOSED; c <= XML_RESTARTED; c++)
        assert_string_not_equal(xml_error_string(c), "unknown XML error");
}


/* R7: a sleeping parser wakes inside the same stream: prefixes declared on
 * the stream header still resolve, no second open is reported, and the
 * stream can still be closed. */
static void test_hibernate_and_wake(void **state)
{
    (void)state;
    struct rec r;
    const char *hdr = "<s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams' "
                      "xmlns:q='urn:test:q' to='example.com' version='1.0'>";
    rec_init(&r, 0, 0);
    assert_int_equal(feed(&r, hdr, strlen(hdr)), XML_OK);
    assert_int_equal(feed(&r, "<presence/> \n", 13), XML_OK);
    assert_int_equal(xml_hibernate(r.p), 1);
    assert_int_equal(xml_hibernate(r.p), 1); /* idempotent */
    const char *m = "<message to='a@b'><q:x q:k='v'/><body>hi</body></message>";
    assert_int_equal(feed(&r, m, strlen(m)), XML_OK);
    assert_int_equal(r.opens, 1);
    assert_int_equal(r.stanzas, 2);
    assert_non_null(strstr(r.log.data, "<x xmlns='urn:test:q'"));
    assert_int_equal(xml_hibernate(r.p), 1);
    assert_int_equal(feed(&r, "</s:stream>", 11), XML_OK);
    assert_int_equal(r.closes, 1);
    rec_fini(&r);
}

/* R7: a parser in the middle of a stanza, or holding part of a tag, stays
 * awake, and the stanza completes normally. */
static void test_hibernate_refused_mid_stanza(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    assert_int_equal(feed(&r, HDR, strlen(HDR)), XML_OK);
    assert_int_equal(feed(&r, "<message><body>par", 18), XML_OK);
    assert_int_equal(xml_hibernate(r.p), 0);
    assert_int_equal(feed(&r, "t</body></message><pres", 23), XML_OK);
    assert_int_equal(xml_hibernate(r.p), 0);
    assert_int_equal(feed(&r, "ence/>", 6), XML_OK);
    assert_int_equal(r.stanzas, 2);
    assert_int_equal(xml_hibernate(r.p), 1);
    rec_fini(&r);
}

/* R7: before the stream is open there is nothing to sleep on; after a
 * restart (new stream) the old start tag is not replayed. */
static void test_hibernate_prolog_and_restart(void **state)
{
    (void)state;
    struct rec r;
    rec_init(&r, 0, 0);
    assert_int_equal(xml_hibernate(r.p), 0);
    assert_int_equal(feed(&r, HDR "<presence/>", strlen(HDR) + 11), XML_OK);
    assert_int_equal(xml_hibernate(r.p), 1);
    xml_restart(r.p);
    assert_int_equal(feed(&r, HDR "<iq type='get' id='1'/>", strlen(HDR) + 23), XML_OK);
    assert_int_equal(r.opens, 2);
    assert_int_equal(r.stanzas, 2);
    rec_fini(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_whole),
        cmocka_unit_test(test_stream_split_everywhere),
        cmocka_unit_test(test_stream_byte_at_a_time),
        cmocka_unit_test(test_stanza_prompt),
        cmocka_unit_test(test_stanza_prompt_trickled),
        cmocka_unit_test(test_trickle_cost),
        cmocka_unit_test(test_header_attrs),
        cmocka_unit_test(test_header_no_default_ns),
        cmocka_unit_test(test_stanza_namespaces),
        cmocka_unit_test(test_stanza_no_namespace),
        cmocka_unit_test(test_doctype),
        cmocka_unit_test(test_billion_laughs),
        cmocka_unit_test(test_processing_instruction),
        cmocka_unit_test(test_comment),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_closed_after_error),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_size_limit_exact),
        cmocka_unit_test(test_size_limit_prompt),
        cmocka_unit_test(test_size_limit_open_tag),
        cmocka_unit_test(test_keepalives_unbounded),
        cmocka_unit_test(test_size_per_stanza),
        cmocka_unit_test(test_restart),
        cmocka_unit_test(test_restart_split_everywhere),
        cmocka_unit_test(test_restart_needs_new_header),
        cmocka_unit_test(test_restart_xml_decl),
        cmocka_unit_test(test_restart_outside_callback),
        cmocka_unit_test(test_data_after_close),
        cmocka_unit_test(test_data_after_close_same_buffer),
        cmocka_unit_test(test_error_strings),
        cmocka_unit_test(test_hibernate_and_wake),
        cmocka_unit_test(test_hibernate_refused_mid_stanza),
        cmocka_unit_test(test_hibernate_prolog_and_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
