/*
 * Unit tests for the pure helpers of storage/jobs*.c and backend.c: field
 * checks, the roster item and archive query parsers, the offline_del id
 * list, and the XML of roster_get, offline_get and archive_query.
 *
 * The storage sources are included rather than linked so that `make unit`
 * builds this file with the common library alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../storage/backend.c"
#include "../../storage/jobs.c"
#include "../../storage/jobs_archive.c"
#include "../../storage/jobs_last.c"
#include "../../storage/jobs_offline.c"
#include "../../storage/jobs_roster.c"

/* A string of n copies of c (caller frees). */
static char *repeat(char c, size_t n)
{
    char *s = xmalloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static int item_rc(const char *xml)
{
    struct roster_item *it = NULL;
    int rc = jobs_roster_item_parse(xml, strlen(xml), &it);
    if (rc == JOBS_OK) {
        backend_roster_item_fini(it);
        free(it);
    } else {
        assert_null(it);
    }
    return rc;
}

/* An item with n groups named g0000.. (caller frees). */
static char *item_with_groups(size_t n, const char *extra_group)
{
    struct buf b;
    buf_init(&b);
    buf_append_str(&b, "<item xmlns='jabber:iq:roster' jid='bob@example.org'>");
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, "<group>g%04zu</group>", i);
    if (extra_group)
        buf_printf(&b, "<group>%s</group>", extra_group);
    buf_append_str(&b, "</item>");
    return buf_steal(&b, NULL);
}

/* ---- field checks ----------------------------------------------------------- */

/* jobs_number_parse takes 1..18 plain decimal digits only. */
static void test_number_parse(void **state)
{
    int64_t v = -1;
    (void)state;
    assert_int_equal(jobs_number_parse("0", &v), JOBS_OK);
    assert_int_equal(v, 0);
    assert_int_equal(jobs_number_parse("999999999999999999", &v), JOBS_OK);
    assert_int_equal(v, 999999999999999999);
    assert_int_equal(jobs_number_parse("1000000000000000000", &v), JOBS_ERR_NUMBER);   /* 19 digits */
    const char *bad[] = { NULL, "", "-1", "+1", " 1", "1 ", "1e3", "0x10", "12a" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(jobs_number_parse(bad[i], &v), JOBS_ERR_NUMBER);
}

/* Ids are 1..JOBS_ID_MAX bytes without control characters. */
static void test_id_is_valid(void **state)
{
    char *max = repeat('i', JOBS_ID_MAX), *over = repeat('i', JOBS_ID_MAX + 1);
    (void)state;
    assert_true(jobs_id_is_valid("a"));
    assert_true(jobs_id_is_valid("1700000000-\xc3\xa9"));
    assert_true(jobs_id_is_valid(max));
    assert_false(jobs_id_is_valid(over));
    assert_false(jobs_id_is_valid(NULL));
    assert_false(jobs_id_is_valid(""));
    assert_false(jobs_id_is_valid("a\nb"));
    assert_false(jobs_id_is_valid("a\tb"));
    free(max);
    free(over);
}

/* jobs_jid_is_bare: normalized, no resource, localpart optional. */
static void test_jid_is_bare(void **state)
{
    (void)state;
    assert_true(jobs_jid_is_bare("bob@example.org"));
    assert_true(jobs_jid_is_bare("conference.example.org"));
    assert_false(jobs_jid_is_bare("bob@example.org/home"));
    assert_false(jobs_jid_is_bare("Bob@example.org"));
    assert_false(jobs_jid_is_bare("bob@EXAMPLE.org"));
    assert_false(jobs_jid_is_bare(""));
    assert_false(jobs_jid_is_bare(NULL));
}

/* ---- roster items ------------------------------------------------------------- */

/* A full item parses with its attributes and its groups sorted. */
static void test_roster_item_parse_full(void **state)
{
    const char *xml = "<item xmlns='jabber:iq:roster' jid='bob@example.org' name='Bob &amp; Co' "
                      "subscription='from' ask='subscribe'><group>Work</group><group>Friends</group></item>";
    struct roster_item *it;
    (void)state;
    assert_int_equal(jobs_roster_item_parse(xml, strlen(xml), &it), JOBS_OK);
    assert_string_equal(it->jid, "bob@example.org");
    assert_string_equal(it->name, "Bob & Co");
    assert_string_equal(it->subscription, "from");
    assert_string_equal(it->ask, "subscribe");
    assert_int_equal(it->ngroups, 2);
    assert_string_equal(it->groups[0], "Friends");
    assert_string_equal(it->groups[1], "Work");
    backend_roster_item_fini(it);
    free(it);
}

/* Without subscription the item is "none"; without name and ask they stay NULL. */
static void test_roster_item_parse_defaults(void **state)
{
    const char *xml = "<item xmlns='jabber:iq:roster' jid='example.net'/>";
    struct roster_item *it;
    (void)state;
    assert_int_equal(jobs_roster_item_parse(xml, strlen(xml), &it), JOBS_OK);
    assert_string_equal(it->subscription, "none");
    assert_null(it->name);
    assert_null(it->ask);
    assert_int_equal(it->ngroups, 0);
    backend_roster_item_fini(it);
    free(it);
}

/* Each rule of the item check has its own code. */
static void test_roster_item_parse_errors(void **state)
{
    char *long_name = repeat('n', JOBS_ROSTER_TEXT_MAX + 1), *long_group = repeat('g', JOBS_ROSTER_TEXT_MAX + 1);
    char *xml;
    (void)state;
    assert_int_equal(item_rc("<item xmlns='jabber:iq:roster' jid='bob@example.org'"), JOBS_ERR_XML);
    assert_int_equal(item_rc("<item xmlns='jabber:iq:roster' jid='a@x'/><item/>"), JOBS_ERR_XML);
    assert_int_equal(item_rc("<item jid='bob@example.org'/>"), JOBS_ERR_ELEMENT);
    assert_int_equal(item_rc("<query xmlns='jabber:iq:roster' jid='bob@example.org'/>"), JOBS_ERR_ELEMENT);
    assert_int_equal(item_rc("<item xmlns='jabber:iq:roster'/>"), JOBS_ERR_JID);
    assert_int_equal(item_rc("<item xmlns='jabber:iq:roster' jid='bob@example.org/x'/>"), JOBS_ERR_JID);
    assert_int_equal(item_rc("<item xmlns='jabber:iq:roster' jid='BOB@example.org'/>"), JOBS_ERR_JID);
    assert_int_equal(item_rc("<item xmlns='jabber:iq:roster' jid='bob@example.org' subscription='remove'/>"),
                     JOBS_ERR_SUBSCRIPTION);
    assert_int_equal(item_rc("<item xmlns='jabber:iq:roster' jid='bob@example.org' subscription=''/>"),
                     JOBS_ERR_SUBSCRIPTION);
    assert_int_equal(item_rc("<item xmlns='jabber:iq:roster' jid='bob@example.org' ask='unsubscribe'/>"),
                     JOBS_ERR_ASK);
    xml = xasprintf("<item xmlns='jabber:iq:roster' jid='bob@example.org' name='%s'/>", long_name);
    assert_int_equal(item_rc(xml), JOBS_ERR_NAME);
    free(xml);
    assert_int_equal(item_rc("<item xmlns='jabber:iq:roster' jid='bob@example.org'><group/></item>"),
                     JOBS_ERR_GROUP);
    xml = item_with_groups(0, long_group);
    assert_int_equal(item_rc(xml), JOBS_ERR_GROUP);
    free(xml);
    xml = item_with_groups(3, "g0001");
    assert_int_equal(item_rc(xml), JOBS_ERR_GROUP);      /* the same group twice */
    free(xml);
    xml = item_with_groups(JOBS_ROSTER_GROUPS_MAX + 1, NULL);
    assert_int_equal(item_rc(xml), JOBS_ERR_GROUPS);
    free(xml);
    free(long_name);
    free(long_group);
}

/* The limits themselves are allowed: 1023-byte name and group, 1000 groups. */
static void test_roster_item_parse_limits(void **state)
{
    char *name = repeat('n', JOBS_ROSTER_TEXT_MAX), *group = repeat('g', JOBS_ROSTER_TEXT_MAX);
    char *xml = xasprintf("<item xmlns='jabber:iq:roster' jid='bob@example.org' name='%s'><group>%s</group></item>",
                          name, group);
    char *many = item_with_groups(JOBS_ROSTER_GROUPS_MAX, NULL);
    (void)state;
    assert_int_equal(item_rc(xml), JOBS_OK);
    assert_int_equal(item_rc(many), JOBS_OK);
    free(name);
    free(group);
    free(xml);
    free(many);
}

/* Children other than <group/> in the roster namespace are ignored. */
static void test_roster_item_parse_ignores_other_children(void **state)
{
    const char *xml = "<item xmlns='jabber:iq:roster' jid='bob@example.org'><x xmlns='urn:other'>y</x>"
                      "<group xmlns='urn:other'>no</group><group>yes</group></item>";
    struct roster_item *it;
    (void)state;
    assert_int_equal(jobs_roster_item_parse(xml, strlen(xml), &it), JOBS_OK);
    assert_int_equal(it->ngroups, 1);
    assert_string_equal(it->groups[0], "yes");
    backend_roster_item_fini(it);
    free(it);
}

/* ---- roster XML ------------------------------------------------------------- */

/* An empty roster is the empty query element with its version. */
static void test_roster_xml_empty(void **state)
{
    struct roster r = { 0 };
    struct buf out;
    (void)state;
    buf_init(&out);
    jobs_roster_xml(&r, &out);
    assert_string_equal(out.data, "<query xmlns='jabber:iq:roster' ver='0'/>");
    buf_fini(&out);
}

/* Attributes and group names are escaped; name and ask only when set;
 * pending requests follow the items. */
static void test_roster_xml_escapes_and_pending(void **state)
{
    struct roster r = { 0 };
    struct roster_item *it;
    struct buf out;
    (void)state;
    buf_init(&out);
    r.ver = 9000000000;
    backend_roster_add(&r, "a'b@example.org", NULL, "none", "subscribe");
    it = backend_roster_add(&r, "c@example.org", "C <\"&\">", "to", NULL);
    backend_roster_add_group(it, "R&D <lab>");
    backend_roster_add_group(it, "x'y");
    backend_roster_add_pending(&r, "d'e@example.org");
    jobs_roster_xml(&r, &out);
    assert_string_equal(out.data,
                        "<query xmlns='jabber:iq:roster' ver='9000000000'>"
                        "<item jid='a&apos;b@example.org' subscription='none' ask='subscribe'/>"
                        "<item jid='c@example.org' name='C &lt;&quot;&amp;&quot;&gt;' subscription='to'>"
                        "<group>R&amp;D &lt;lab&gt;</group><group>x'y</group></item>"
                        "<pending xmlns='urn:parley:internal' jid='d&apos;e@example.org'/>"
                        "</query>");
    buf_fini(&out);
    backend_roster_fini(&r);
    assert_int_equal(r.nitems, 0);
    assert_int_equal(r.npending, 0);
}

/* Pending requests alone still make a non-empty query. */
static void test_roster_xml_pending_only(void **state)
{
    struct roster r = { 0 };
    struct buf out;
    (void)state;
    buf_init(&out);
    backend_roster_add_pending(&r, "x@example.org");
    jobs_roster_xml(&r, &out);
    assert_string_equal(out.data, "<query xmlns='jabber:iq:roster' ver='0'>"
                                  "<pending xmlns='urn:parley:internal' jid='x@example.org'/></query>");
    buf_fini(&out);
    backend_roster_fini(&r);
}

/* ---- offline -------------------------------------------------------------------- */

/* Ids one per line; empty lines (and a trailing newline) are skipped. */
static void test_ids_parse(void **state)
{
    const char *p = "a\n\nbb\nccc\n";
    char **ids;
    size_t n;
    (void)state;
    assert_int_equal(jobs_ids_parse(p, strlen(p), &ids, &n), JOBS_OK);
    assert_int_equal(n, 3);
    assert_string_equal(ids[0], "a");
    assert_string_equal(ids[1], "bb");
    assert_string_equal(ids[2], "ccc");
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    assert_int_equal(jobs_ids_parse("", 0, &ids, &n), JOBS_OK);
    assert_int_equal(n, 0);
    assert_null(ids);
}

/* A line with a NUL or a control character, or an over-long id, is refused whole. */
static void test_ids_parse_errors(void **state)
{
    char *longid = repeat('x', JOBS_ID_MAX + 1);
    char **ids = (char **)1;
    size_t n = 7;
    (void)state;
    assert_int_equal(jobs_ids_parse("ok\na\0b\n", 7, &ids, &n), JOBS_ERR_ID);
    assert_null(ids);
    assert_int_equal(n, 0);
    assert_int_equal(jobs_ids_parse("ok\na\rb", 7, &ids, &n), JOBS_ERR_ID);
    assert_int_equal(jobs_ids_parse(longid, strlen(longid), &ids, &n), JOBS_ERR_ID);
    free(longid);
}

/* offline_get's payload: <messages/> when empty; ids escaped, stamps as decimals. */
static void test_offline_xml(void **state)
{
    struct offline_list l = { 0 };
    struct buf out;
    (void)state;
    buf_init(&out);
    jobs_offline_xml(&l, &out);
    assert_string_equal(out.data, "<messages/>");
    buf_reset(&out);
    backend_offline_add(&l, "a<'b", 1700000000000001, "<message><body>1</body></message>");
    backend_offline_add(&l, "c", 2, "<message/>");
    jobs_offline_xml(&l, &out);
    assert_string_equal(out.data, "<messages>"
                                  "<msg id='a&lt;&apos;b' stamp='1700000000000001'><message><body>1</body></message></msg>"
                                  "<msg id='c' stamp='2'><message/></msg></messages>");
    buf_fini(&out);
    backend_offline_fini(&l);
    assert_int_equal(l.n, 0);
}

/* ---- archive ------------------------------------------------------------------- */

static int filter_rc(const char *xml, struct archive_filter *f)
{
    struct stanza *tree;
    int rc = jobs_archive_filter_parse(xml, strlen(xml), &tree, f);
    if (rc == JOBS_OK)
        assert_non_null(tree);
    else
        assert_null(tree);
    stanza_free(tree);
    return rc;
}

/* Every attribute of <q/> lands in the filter. */
static void test_archive_filter_parse_all(void **state)
{
    const char *xml = "<q with='bob@example.org' start='10' end='20' after='a1' before='b2' max='5'/>";
    struct archive_filter f;
    struct stanza *tree;
    (void)state;
    assert_int_equal(jobs_archive_filter_parse(xml, strlen(xml), &tree, &f), JOBS_OK);
    assert_string_equal(f.with, "bob@example.org");
    assert_true(f.has_start && f.has_end);
    assert_int_equal(f.start, 10);
    assert_int_equal(f.end, 20);
    assert_string_equal(f.after, "a1");
    assert_string_equal(f.before, "b2");
    assert_int_equal(f.max, 5);
    stanza_free(tree);
}

/* An empty <q/> has no filters and the largest page; before='' is kept
 * (the last page) while other empty attributes count as absent. */
static void test_archive_filter_parse_defaults(void **state)
{
    struct archive_filter f;
    struct stanza *tree;
    const char *q = "<q with='' after='' before='' max=''/>";
    (void)state;
    assert_int_equal(filter_rc("<q/>", &f), JOBS_OK);
    assert_null(f.with);
    assert_false(f.has_start || f.has_end);
    assert_null(f.after);
    assert_null(f.before);
    assert_int_equal(f.max, JOBS_ARCHIVE_PAGE_MAX);
    assert_int_equal(jobs_archive_filter_parse(q, strlen(q), &tree, &f), JOBS_OK);
    assert_null(f.with);
    assert_null(f.after);
    assert_non_null(f.before);
    assert_string_equal(f.before, "");
    stanza_free(tree);
}

/* max above JOBS_ARCHIVE_PAGE_MAX is cut down to it; max 0 stays 0. */
static void test_archive_filter_parse_max(void **state)
{
    struct archive_filter f;
    (void)state;
    assert_int_equal(filter_rc("<q max='100000'/>", &f), JOBS_OK);
    assert_int_equal(f.max, JOBS_ARCHIVE_PAGE_MAX);
    assert_int_equal(filter_rc("<q max='0'/>", &f), JOBS_OK);
    assert_int_equal(f.max, 0);
}

/* Bad filters are refused with their code. */
static void test_archive_filter_parse_errors(void **state)
{
    struct archive_filter f;
    (void)state;
    assert_int_equal(filter_rc("<q", &f), JOBS_ERR_XML);
    assert_int_equal(filter_rc("<query/>", &f), JOBS_ERR_ELEMENT);
    assert_int_equal(filter_rc("<q with='bob@example.org/r'/>", &f), JOBS_ERR_JID);
    assert_int_equal(filter_rc("<q with='Bob@example.org'/>", &f), JOBS_ERR_JID);
    assert_int_equal(filter_rc("<q start='-1'/>", &f), JOBS_ERR_NUMBER);
    assert_int_equal(filter_rc("<q end='soon'/>", &f), JOBS_ERR_NUMBER);
    assert_int_equal(filter_rc("<q max='-5'/>", &f), JOBS_ERR_NUMBER);
    assert_int_equal(filter_rc("<q after='a&#9;b'/>", &f), JOBS_ERR_ID);
    assert_int_equal(filter_rc("<q before='a&#10;b'/>", &f), JOBS_ERR_ID);
}

/* Stored messages that are not one well-formed element leave the page; the
 * others keep their order. */
static void test_archive_drop_malformed(void **state)
{
    struct archive_page p = { 0 };
    (void)state;
    backend_archive_add(&p, "a1", 1, "bob@example.org", "in", "<message><body>1</body></message>");
    backend_archive_add(&p, "a2", 2, "bob@example.org", "in", "<message><body>2</message>");
    backend_archive_add(&p, "a3", 3, "bob@example.org", "in", "<message/>");
    backend_archive_add(&p, "a4", 4, "bob@example.org", "in", "<message/><message/>");
    backend_archive_add(&p, "a5", 5, "bob@example.org", "in", "text");
    assert_int_equal(jobs_archive_drop_malformed(&p), 3);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.items[0].id, "a1");
    assert_string_equal(p.items[1].id, "a3");
    assert_int_equal(jobs_archive_drop_malformed(&p), 0);
    backend_archive_fini(&p);
}

/* archive_query's payload: attributes escaped, complete and count always present. */
static void test_archive_xml(void **state)
{
    struct archive_page p = { 0 };
    struct buf out;
    (void)state;
    buf_init(&out);
    p.is_complete = 1;
    jobs_archive_xml(&p, &out);
    assert_string_equal(out.data, "<results complete='1' count='0'/>");
    buf_reset(&out);
    p.is_complete = 0;
    p.count = 12;
    backend_archive_add(&p, "i'1", 100, "bob@example.org", "out", "<message/>");
    jobs_archive_xml(&p, &out);
    assert_string_equal(out.data, "<results complete='0' count='12'>"
                                  "<r id='i&apos;1' stamp='100' jid='bob@example.org' dir='out'><message/></r>"
                                  "</results>");
    buf_fini(&out);
    backend_archive_fini(&p);
}

/* backend_archive_reverse turns a newest-first page into time order. */
static void test_archive_reverse(void **state)
{
    struct archive_page p = { 0 };
    const char *ids[] = { "c", "b", "a" };
    (void)state;
    for (int i = 0; i < 3; i++)
        backend_archive_add(&p, ids[i], 3 - i, "x@example.org", "in", "<m/>");
    backend_archive_reverse(&p);
    assert_string_equal(p.items[0].id, "a");
    assert_string_equal(p.items[1].id, "b");
    assert_string_equal(p.items[2].id, "c");
    backend_archive_add(&p, "d", 4, "x@example.org", "in", "<m/>");
    backend_archive_reverse(&p);
    assert_string_equal(p.items[0].id, "d");
    assert_string_equal(p.items[3].id, "a");
    backend_archive_fini(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_number_parse),
        cmocka_unit_test(test_id_is_valid),
        cmocka_unit_test(test_jid_is_bare),
        cmocka_unit_test(test_roster_item_parse_full),
        cmocka_unit_test(test_roster_item_parse_defaults),
        cmocka_unit_test(test_roster_item_parse_errors),
        cmocka_unit_test(test_roster_item_parse_limits),
        cmocka_unit_test(test_roster_item_parse_ignores_other_children),
        cmocka_unit_test(test_roster_xml_empty),
        cmocka_unit_test(test_roster_xml_escapes_and_pending),
        cmocka_unit_test(test_roster_xml_pending_only),
        cmocka_unit_test(test_ids_parse),
        cmocka_unit_test(test_ids_parse_errors),
        cmocka_unit_test(test_offline_xml),
        cmocka_unit_test(test_archive_filter_parse_all),
        cmocka_unit_test(test_archive_filter_parse_defaults),
        cmocka_unit_test(test_archive_filter_parse_max),
        cmocka_unit_test(test_archive_filter_parse_errors),
        cmocka_unit_test(test_archive_xml),
        cmocka_unit_test(test_archive_drop_malformed),
        cmocka_unit_test(test_archive_reverse),
    };
    log_init("test", LOGL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
