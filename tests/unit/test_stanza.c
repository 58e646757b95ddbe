/*
 * Unit tests for common/stanza.c: escaping and round trips through the
 * parser (xml.c), xmlns placement, xml:lang, copy, detach, attributes, text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "stanza.h"
#include "xml.h"

#define HDR "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"

static void keep_stanza(void *ud, struct stanza *s)
{
    struct stanza **out = ud;
    assert_null(*out);
    *out = s;
}

static void drop_header(void *ud, struct stanza *h)
{
    (void)ud;
    stanza_free(h);
}

/* Parses one stanza on a jabber:client stream; fails the test on error. */
static struct stanza *parse(const char *xml)
{
    static const struct xml_callbacks cb = { drop_header, keep_stanza, NULL };
    struct stanza *s = NULL;
    struct xml_parser *p = xml_new(NULL, &cb, &s);
    assert_int_equal(xml_feed(p, HDR, strlen(HDR), NULL), XML_OK);
    assert_int_equal(xml_feed(p, xml, strlen(xml), NULL), XML_OK);
    xml_free(p);
    assert_non_null(s);
    return s;
}

/* Serializes s as a top-level stanza of a client stream; caller frees. */
static char *serialize(const struct stanza *s, const char *parent_ns)
{
    struct buf b;
    buf_init(&b);
    stanza_serialize(s, parent_ns, &b);
    return buf_steal(&b, NULL);
}

static void assert_same_tree(const struct stanza *a, const struct stanza *b)
{
    assert_int_equal(a->kind, b->kind);
    if (a->kind == STANZA_TEXT) {
        assert_int_equal(a->text_len, b->text_len);
        assert_memory_equal(a->text, b->text, a->text_len);
        return;
    }
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->ns, b->ns);
    assert_int_equal(a->nattrs, b->nattrs);
    for (size_t i = 0; i < a->nattrs; i++) {
        assert_string_equal(a->attrs[i].name, b->attrs[i].name);
        assert_string_equal(a->attrs[i].value, b->attrs[i].value);
    }
    const struct stanza *ca = a->first, *cb = b->first;
    for (; ca && cb; ca = ca->next, cb = cb->next)
        assert_same_tree(ca, cb);
    assert_null(ca);
    assert_null(cb);
}

/* Parses xml, serializes, parses again: same tree, and stable serialization. */
static void assert_round_trip(const char *xml)
{
    struct stanza *a = parse(xml);
    char *out1 = serialize(a, "jabber:client");
    struct stanza *b = parse(out1);
    assert_same_tree(a, b);
    char *out2 = serialize(b, "jabber:client");
    assert_string_equal(out1, out2);
    free(out1);
    free(out2);
    stanza_free(a);
    stanza_free(b);
}

/* escape: text escapes & < > (and CR) only; attributes also " ' and whitespace. */
static void test_escape(void **state)
{
    (void)state;
    const char in[] = "a&b<c>d\"e'f\tg\nh\ri\xc3\xa4";
    struct buf b;
    buf_init(&b);
    stanza_escape(&b, in, sizeof in - 1, 0);
    assert_string_equal(b.data, "a&amp;b&lt;c&gt;d\"e'f\tg\nh&#13;i\xc3\xa4");
    buf_reset(&b);
    stanza_escape(&b, in, sizeof in - 1, 1);
    assert_string_equal(b.data, "a&amp;b&lt;c&gt;d&quot;e&apos;f&#9;g&#10;h&#13;i\xc3\xa4");
    buf_fini(&b);
}

/* round trip: entities, quotes, unicode and CDATA in text and attributes survive. */
static void test_round_trip_escaping(void **state)
{
    (void)state;
    assert_round_trip("<message to='a&amp;b@x' id=\"q&quot;&apos;&lt;&gt;\">"
                      "<body>1 &lt; 2 &amp;&amp; 3 &gt; 2 \"quoted\" 'single' "
                      "\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80 &#x263A;<![CDATA[<&>]]></body></message>");
}

/* round trip: whitespace characters in attributes and CR in text survive. */
static void test_round_trip_whitespace(void **state)
{
    (void)state;
    assert_round_trip("<message id='a&#9;b&#10;c&#13;d'><body>x&#13;y\nz</body></message>");
    struct stanza *s = parse("<message id='a&#9;b&#10;c'/>");
    assert_string_equal(stanza_attr(s, "id"), "a\tb\nc");
    stanza_free(s);
}

/* round trip: a built tree with every special character parses back to itself. */
static void test_round_trip_built(void **state)
{
    (void)state;
    const char *nasty = "& < > \" ' \t\n\r \xc3\xa4 ]]>";
    struct stanza *m = stanza_new("message", "jabber:client");
    stanza_set_attr(m, "id", nasty);
    struct stanza *body = stanza_add_element(m, "body", NULL);
    stanza_add_text(body, nasty, strlen(nasty));
    char *xml = serialize(m, "jabber:client");
    struct stanza *back = parse(xml);
    assert_same_tree(m, back);
    free(xml);
    stanza_free(m);
    stanza_free(back);
}

/* xmlns: omitted when equal to the parent's namespace, written otherwise. */
static void test_xmlns_placement(void **state)
{
    (void)state;
    struct stanza *iq = stanza_new("iq", "jabber:client");
    struct stanza *q = stanza_add_element(iq, "query", "jabber:iq:roster");
    stanza_add_element(q, "item", NULL);          /* inherits jabber:iq:roster */
    stanza_add_element(iq, "error", "jabber:client");
    char *s = serialize(iq, "jabber:client");
    assert_string_equal(s, "<iq><query xmlns='jabber:iq:roster'><item/></query><error/></iq>");
    free(s);
    s = serialize(iq, NULL);
    assert_string_equal(s, "<iq xmlns='jabber:client'><query xmlns='jabber:iq:roster'><item/></query>"
                           "<error/></iq>");
    free(s);
    s = serialize(iq, "jabber:server");
    assert_string_equal(s, "<iq xmlns='jabber:client'><query xmlns='jabber:iq:roster'><item/></query>"
                           "<error/></iq>");
    free(s);
    stanza_free(iq);
}

/* xmlns: a node without a namespace of its own never writes one. */
static void test_xmlns_null_ns(void **state)
{
    (void)state;
    struct stanza *x = stanza_new("x", NULL);
    stanza_add_child(x, stanza_new("y", NULL));
    char *s = serialize(x, NULL);
    assert_string_equal(s, "<x><y/></x>");
    free(s);
    stanza_free(x);
}

/* xmlns: prefixed elements on the wire serialize as default-namespace elements. */
static void test_xmlns_prefixed_input(void **state)
{
    (void)state;
    struct stanza *s = parse("<message><e:x xmlns:e='urn:e'><e:y/><z xmlns='urn:z'/></e:x></message>");
    char *out = serialize(s, "jabber:client");
    assert_string_equal(out, "<message><x xmlns='urn:e'><y/><z xmlns='urn:z'/></x></message>");
    free(out);
    stanza_free(s);
}

/* xml:lang: parsed under its plain name and written back as xml:lang. */
static void test_xml_lang(void **state)
{
    (void)state;
    struct stanza *s = parse("<message xml:lang='de'><body xml:lang='en'>hi</body></message>");
    assert_string_equal(stanza_attr(s, "xml:lang"), "de");
    char *out = serialize(s, "jabber:client");
    assert_string_equal(out, "<message xml:lang='de'><body xml:lang='en'>hi</body></message>");
    free(out);
    stanza_free(s);
    assert_round_trip("<message xml:lang='de'><body xml:lang='en'>hi</body></message>");
}

/* attributes: other namespaced attributes are "uri|local" and round-trip. */
static void test_namespaced_attr(void **state)
{
    (void)state;
    struct stanza *s = parse("<message xmlns:p='urn:p' p:a='1' b='2'/>");
    assert_string_equal(stanza_attr(s, "urn:p|a"), "1");
    stanza_free(s);
    assert_round_trip("<message xmlns:p='urn:p' xmlns:q='urn:q' p:a='1' q:a='2' b='3'/>");
}

/* copy: deep and independent of the original. */
static void test_copy(void **state)
{
    (void)state;
    struct stanza *a = parse("<message to='x'><body>hi<b>there</b>!</body><x xmlns='urn:x'/></message>");
    struct stanza *b = stanza_copy(a);
    assert_null(b->parent);
    assert_same_tree(a, b);
    stanza_set_attr(b, "to", "y");
    stanza_add_text(stanza_child(b, "body", NULL), "more", 4);
    assert_string_equal(stanza_attr(a, "to"), "x");
    char *t = stanza_text(stanza_child(a, "body", NULL));
    assert_string_equal(t, "hi!");
    free(t);
    stanza_free(a);
    stanza_free(b);
}

/* detach: first, middle and last children unlink and keep the list consistent. */
static void test_detach(void **state)
{
    (void)state;
    struct stanza *p = stanza_new("p", "urn:t");
    struct stanza *a = stanza_add_element(p, "a", NULL);
    struct stanza *b = stanza_add_element(p, "b", NULL);
    struct stanza *c = stanza_add_element(p, "c", NULL);
    struct stanza *d = stanza_add_element(p, "d", NULL);

    stanza_detach(b);
    assert_null(b->parent);
    assert_null(b->next);
    assert_ptr_equal(a->next, c);
    stanza_detach(a);
    assert_ptr_equal(p->first, c);
    stanza_detach(d);
    assert_ptr_equal(p->last, c);
    assert_null(c->next);
    stanza_add_child(p, b);                      /* a detached node can be re-added */
    assert_ptr_equal(c->next, b);
    assert_ptr_equal(p->last, b);
    stanza_detach(c);
    stanza_detach(b);
    assert_null(p->first);
    assert_null(p->last);
    stanza_detach(p);                            /* no parent: no-op */
    stanza_free(a);
    stanza_free(b);
    stanza_free(c);
    stanza_free(d);
    stanza_free(p);
}

/* attributes: set adds, set again replaces, NULL removes, order of the rest kept. */
static void test_attr_replace_remove(void **state)
{
    (void)state;
    struct stanza *s = stanza_new("x", NULL);
    stanza_set_attr(s, "a", "1");
    stanza_set_attr(s, "b", "2");
    stanza_set_attr(s, "c", "3");
    stanza_set_attr(s, "b", "two");
    assert_string_equal(stanza_attr(s, "b"), "two");
    assert_int_equal(s->nattrs, 3);
    stanza_set_attr(s, "b", NULL);
    assert_null(stanza_attr(s, "b"));
    assert_int_equal(s->nattrs, 2);
    stanza_set_attr(s, "nope", NULL);
    assert_int_equal(s->nattrs, 2);
    stanza_set_attr(s, "a", stanza_attr(s, "a")); /* aliasing its own value */
    assert_string_equal(stanza_attr(s, "a"), "1");
    for (int i = 0; i < 20; i++) {                 /* growth past the first capacity */
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        stanza_set_attr(s, name, name);
    }
    assert_string_equal(stanza_attr(s, "n19"), "n19");
    char *out = serialize(s, NULL);
    assert_int_equal(strncmp(out, "<x a='1' c='3' n0='n0'", 22), 0);
    free(out);
    stanza_free(s);
}

/* text: adjacent text merges into one node; stanza_text joins direct text only. */
static void test_text(void **state)
{
    (void)state;
    struct stanza *s = stanza_new("body", NULL);
    char *t = stanza_text(s);
    assert_string_equal(t, "");
    free(t);
    stanza_add_text(s, "ab", 2);
    stanza_add_text(s, "cd", 2);
    stanza_add_text(s, "", 0);
    assert_ptr_equal(s->first, s->last);
    assert_int_equal(s->first->text_len, 4);
    stanza_add_text(stanza_add_element(s, "i", NULL), "skip", 4);
    stanza_add_text(s, "ef", 2);
    t = stanza_text(s);
    assert_string_equal(t, "abcdef");
    free(t);
    stanza_free(s);
}

/* lookup: stanza_child matches by name and/or ns; first_element skips text. */
static void test_child_lookup(void **state)
{
    (void)state;
    struct stanza *s = parse("<message>text<body>b</body><x xmlns='urn:a'/><x xmlns='urn:b'/></message>");
    assert_string_equal(stanza_first_element(s)->name, "body");
    assert_string_equal(stanza_child(s, "x", NULL)->ns, "urn:a");
    assert_string_equal(stanza_child(s, "x", "urn:b")->ns, "urn:b");
    assert_string_equal(stanza_child(s, NULL, "urn:b")->name, "x");
    assert_null(stanza_child(s, "x", "urn:c"));
    assert_null(stanza_child(s, "body", "urn:a"));
    stanza_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_round_trip_escaping),
        cmocka_unit_test(test_round_trip_whitespace),
        cmocka_unit_test(test_round_trip_built),
        cmocka_unit_test(test_xmlns_placement),
        cmocka_unit_test(test_xmlns_null_ns),
        cmocka_unit_test(test_xmlns_prefixed_input),
        cmocka_unit_test(test_xml_lang),
        cmocka_unit_test(test_namespaced_attr),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_detach),
        cmocka_unit_test(test_attr_replace_remove),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_child_lookup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
