/*
 * Unit tests for common/jid.c: RFC 7622 §3.1 splitting, part lengths,
 * stringprep normalization, domain rules, and that the ASCII fast path gives
 * exactly what libidn gives.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <stringprep.h>

#include "jid.h"

/* Parses in, expecting success and the given parts (NULL = absent). */
static void expect_parts(const char *in, const char *local, const char *domain, const char *resource)
{
    struct jid j;
    assert_int_equal(jid_parse(in, &j), JID_OK);
    if (local)
        assert_string_equal(j.local, local);
    else
        assert_null(j.local);
    assert_string_equal(j.domain, domain);
    if (resource)
        assert_string_equal(j.resource, resource);
    else
        assert_null(j.resource);
    jid_fini(&j);
}

/* Parses in, expecting rc and a zeroed struct. */
static void expect_error(const char *in, int rc)
{
    struct jid j = { (char *)"x", (char *)"y", (char *)"z" };
    assert_int_equal(jid_parse(in, &j), rc);
    assert_null(j.local);
    assert_null(j.domain);
    assert_null(j.resource);
}

/* Normalizes in, expecting the given full JID. */
static void expect_normal(const char *in, const char *want)
{
    char *out;
    assert_int_equal(jid_normalize(in, &out), JID_OK);
    assert_string_equal(out, want);
    free(out);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* parse: local, domain and resource of an ordinary full JID. */
static void test_parse_full(void **state)
{
    (void)state;
    expect_parts("juliet@example.com/balcony", "juliet", "example.com", "balcony");
}

/* parse: a bare domain and a domain with resource have no localpart. */
static void test_parse_domain_forms(void **state)
{
    (void)state;
    expect_parts("example.com", NULL, "example.com", NULL);
    expect_parts("example.com/res", NULL, "example.com", "res");
    expect_parts("juliet@example.com", "juliet", "example.com", NULL);
}

/* parse: the resource is everything after the first '/', '@' and '/' included. */
static void test_parse_resource_split(void **state)
{
    (void)state;
    expect_parts("a@b/c@d/e", "a", "b", "c@d/e");
    expect_parts("b/c@d", NULL, "b", "c@d");
}

/* normalize: local and domain are case-folded, the resource keeps its case. */
static void test_case_folding(void **state)
{
    (void)state;
    expect_normal("JuLiEt@Example.COM/BalCony", "juliet@example.com/BalCony");
}

/* normalize: non-ASCII local and domain are lowercased ("Ä" -> "ä"), NFKC applies. */
static void test_unicode(void **state)
{
    (void)state;
    expect_normal("\xc3\x84pfel@\xc3\x84\xc3\x96.example/\xef\xac\x81", /* ÄPFEL@ÄÖ.example/ﬁ */
                  "\xc3\xa4pfel@\xc3\xa4\xc3\xb6.example/fi");
    expect_normal("STRA\xc3\x9f" "E@example.com", "strasse@example.com"); /* ß folds to ss */
}

/* parse: empty local, domain or resource, and empty input, fail with JID_ERR_EMPTY. */
static void test_empty_parts(void **state)
{
    (void)state;
    expect_error("", JID_ERR_EMPTY);
    expect_error("@example.com", JID_ERR_EMPTY);
    expect_error("example.com/", JID_ERR_EMPTY);
    expect_error("juliet@", JID_ERR_EMPTY);
    expect_error("/res", JID_ERR_EMPTY);
    expect_error("juliet@/res", JID_ERR_EMPTY);
    expect_error(".", JID_ERR_EMPTY);
}

/* parse: a local part that prepares to nothing (soft hyphen) is empty. */
static void test_empty_after_prep(void **state)
{
    (void)state;
    expect_error("\xc2\xad@example.com", JID_ERR_EMPTY);
}

/* lengths: each part may be 1023 bytes, not 1024. */
static void test_part_lengths(void **state)
{
    (void)state;
    char *ok = repeat('a', 1023), *big = repeat('a', 1024), *in;
    const char *fmts[] = { "%s@example.com/r", "juliet@%s/r", "juliet@example.com/%s" };

    for (int i = 0; i < 3; i++) {
        struct jid j;
        assert_true(asprintf(&in, fmts[i], ok) > 0);
        assert_int_equal(jid_parse(in, &j), JID_OK);
        jid_fini(&j);
        free(in);
        assert_true(asprintf(&in, fmts[i], big) > 0);
        expect_error(in, JID_ERR_TOO_LONG);
        free(in);
    }
    free(ok);
    free(big);
}

/* lengths: a JID with every part at 1023 bytes (3071 in all) is valid and round-trips. */
static void test_whole_jid_length(void **state)
{
    (void)state;
    char *l = repeat('l', 1023), *d = repeat('d', 1023), *r = repeat('r', 1023), *in, *out;

    assert_true(asprintf(&in, "%s@%s/%s", l, d, r) > 0);
    assert_int_equal(jid_normalize(in, &out), JID_OK);
    assert_int_equal(strlen(out), 3071);
    assert_string_equal(out, in);
    free(out);
    free(in);
    free(l);
    free(d);
    free(r);
}

/* lengths: a multi-byte local part over 1023 bytes after preparation fails. */
static void test_unicode_length(void **state)
{
    (void)state;
    char in[2 * 512 + 32] = "";
    for (int i = 0; i < 512; i++)
        strcat(in, "\xc3\xa4"); /* 1024 bytes of ä */
    strcat(in, "@example.com");
    expect_error(in, JID_ERR_TOO_LONG);
}

/* lengths: the domain limit applies after the trailing dot is stripped. */
static void test_domain_trailing_dot_length(void **state)
{
    (void)state;
    char *d = repeat('d', 1024);
    d[1023] = '.';
    char *out;
    assert_int_equal(jid_nameprep(d, &out), JID_OK);
    assert_int_equal(strlen(out), 1023);
    free(out);
    free(d);
}

/* nodeprep: " & ' / : < > @ and space are prohibited in a local part. */
static void test_local_prohibited(void **state)
{
    (void)state;
    const char *bad = "\"&'/:<>@ ";
    for (const char *c = bad; *c; c++) {
        char in[8], *out = (char *)"sentinel";
        snprintf(in, sizeof in, "a%cb", *c);
        assert_int_equal(jid_nodeprep(in, &out), JID_ERR_PREP);
        assert_null(out);
    }
    expect_error("a b@example.com", JID_ERR_PREP);
    expect_error("a<b@example.com", JID_ERR_PREP);
}

/* nodeprep: non-ASCII that maps onto a prohibited character (fullwidth @) or non-ASCII space fails. */
static void test_local_prohibited_unicode(void **state)
{
    (void)state;
    expect_error("a\xef\xbc\xa0" "b@example.com", JID_ERR_PREP); /* U+FF20 */
    expect_error("a\xc2\xa0" "b@example.com", JID_ERR_PREP);     /* U+00A0 */
}

/* resourceprep: spaces are fine, control characters are not. */
static void test_resource_chars(void **state)
{
    (void)state;
    expect_parts("a@b/My Phone <1>", "a", "b", "My Phone <1>");
    expect_error("a@b/x\ty", JID_ERR_PREP);
    expect_error("a@b/x\x7fy", JID_ERR_PREP);
}

/* domain: one trailing dot is stripped, empty labels and non-LDH ASCII fail. */
static void test_domain_rules(void **state)
{
    (void)state;
    expect_normal("a@Example.COM./r", "a@example.com/r");
    expect_error("a@example.com..", JID_ERR_SYNTAX);
    expect_error("a@.example.com", JID_ERR_SYNTAX);
    expect_error("a@exa..mple", JID_ERR_SYNTAX);
    expect_error("a@exa mple.com", JID_ERR_PREP);
    expect_error("a@exa_mple.com", JID_ERR_PREP);
    expect_error("a@b@c", JID_ERR_PREP);
}

/* domain: the ideographic full stop (U+3002) separates labels. */
static void test_domain_ideographic_dot(void **state)
{
    (void)state;
    expect_normal("a@example\xe3\x80\x82" "com", "a@example.com");
}

/* domain: IPv4 and bracketed IPv6 literals are kept unchanged; bad literals fail. */
static void test_domain_ip_literals(void **state)
{
    (void)state;
    expect_parts("a@192.0.2.1/r", "a", "192.0.2.1", "r");
    expect_parts("a@[2001:DB8::1]/r", "a", "[2001:DB8::1]", "r");
    expect_error("a@[::1", JID_ERR_SYNTAX);
    expect_error("a@[zz::1]", JID_ERR_SYNTAX);
    expect_error("a@[]", JID_ERR_SYNTAX);
}

/* parse: invalid UTF-8 in any part is a syntax error. */
static void test_invalid_utf8(void **state)
{
    (void)state;
    expect_error("\xc3@example.com", JID_ERR_SYNTAX);
    expect_error("a@ex\xff.com", JID_ERR_SYNTAX);
    expect_error("a@b/\xed\xa0\x80", JID_ERR_SYNTAX); /* surrogate */
    expect_error("a@b/\xc0\xaf", JID_ERR_SYNTAX);     /* overlong '/' */
}

/* bare/full: built from the parts, with and without local and resource. */
static void test_bare_full(void **state)
{
    (void)state;
    struct jid j;
    char *s;

    assert_int_equal(jid_parse("Romeo@Example.net/Orchard", &j), JID_OK);
    assert_string_equal(s = jid_bare(&j), "romeo@example.net");
    free(s);
    assert_string_equal(s = jid_full(&j), "romeo@example.net/Orchard");
    free(s);
    jid_fini(&j);

    assert_int_equal(jid_parse("example.net", &j), JID_OK);
    assert_string_equal(s = jid_bare(&j), "example.net");
    free(s);
    assert_string_equal(s = jid_full(&j), "example.net");
    free(s);
    jid_fini(&j);
}

/* normalize: on error *out is NULL. */
static void test_normalize_error(void **state)
{
    (void)state;
    char *out = (char *)"sentinel";
    assert_int_equal(jid_normalize("@x", &out), JID_ERR_EMPTY);
    assert_null(out);
}

/* Runs libidn's profile directly; returns its rc and the result in *out. */
static int libidn_prep(const Stringprep_profile *prof, const char *in, char **out)
{
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", in);
    int rc = stringprep(tmp, sizeof tmp, 0, prof);
    *out = rc == STRINGPREP_OK ? strdup(tmp) : NULL;
    return rc;
}

static int is_ldh_domain(const char *s)
{
    if (!*s || *s == '.' || s[strlen(s) - 1] == '.' || strstr(s, ".."))
        return 0;
    for (; *s; s++)
        if (!(*s == '-' || *s == '.' || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
            return 0;
    return 1;
}

/* Checks one ASCII input against libidn for all three profiles, and that a
 * non-ASCII suffix (taking our libidn path) changes nothing but the suffix. */
static void check_agreement(const char *in)
{
    char *want, *got, *slow, with_suffix[256];
    snprintf(with_suffix, sizeof with_suffix, "%s\xc3\xa9", in); /* + é */

    int rc = libidn_prep(stringprep_xmpp_nodeprep, in, &want);
    int mine = jid_nodeprep(in, &got);
    int mine_slow = jid_nodeprep(with_suffix, &slow);
    if (rc == STRINGPREP_OK) {
        assert_int_equal(mine, JID_OK);
        assert_string_equal(got, want);
        assert_int_equal(mine_slow, JID_OK);
        assert_int_equal(strncmp(slow, want, strlen(want)), 0);
    } else {
        assert_int_equal(mine, JID_ERR_PREP);
        assert_int_equal(mine_slow, JID_ERR_PREP);
    }
    free(want), free(got), free(slow);

    rc = libidn_prep(stringprep_xmpp_resourceprep, in, &want);
    mine = jid_resourceprep(in, &got);
    mine_slow = jid_resourceprep(with_suffix, &slow);
    if (rc == STRINGPREP_OK) {
        assert_int_equal(mine, JID_OK);
        assert_string_equal(got, want);
        assert_int_equal(mine_slow, JID_OK);
        assert_int_equal(strncmp(slow, want, strlen(want)), 0);
    } else {
        assert_int_equal(mine, JID_ERR_PREP);
        assert_int_equal(mine_slow, JID_ERR_PREP);
    }
    free(want), free(got), free(slow);

    /* Nameprep prohibits no ASCII; our domain rules then accept only LDH labels. */
    rc = libidn_prep(stringprep_nameprep, in, &want);
    mine = jid_nameprep(in, &got);
    if (rc == STRINGPREP_OK && is_ldh_domain(want)) {
        assert_int_equal(mine, JID_OK);
        assert_string_equal(got, want);
    } else {
        assert_int_not_equal(mine, JID_OK);
    }
    free(want), free(got);
}

/* fast path: every ASCII character, alone and inside a part, matches libidn. */
static void test_fast_path_every_ascii_char(void **state)
{
    (void)state;
    for (int c = 1; c < 0x80; c++) {
        char in[8];
        snprintf(in, sizeof in, "%c", c);
        check_agreement(in);
        snprintf(in, sizeof in, "Ab%cZ9", c);
        check_agreement(in);
    }
}

/* fast path: typical mixed-case parts match libidn. */
static void test_fast_path_samples(void **state)
{
    (void)state;
    const char *samples[] = {
        "alice", "ALICE", "Alice.Smith", "x-y", "Phone 1", "gajim.ABCDEF12",
        "example.COM", "a.b.c", "1234", "conference.example.org", "-_-", "~tilde!",
        "MiXeD CaSe With Spaces", "a=b+c", "[bracket]", "{brace}", "back\\slash",
    };
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++)
        check_agreement(samples[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_full),
        cmocka_unit_test(test_parse_domain_forms),
        cmocka_unit_test(test_parse_resource_split),
        cmocka_unit_test(test_case_folding),
        cmocka_unit_test(test_unicode),
        cmocka_unit_test(test_empty_parts),
        cmocka_unit_test(test_empty_after_prep),
        cmocka_unit_test(test_part_lengths),
        cmocka_unit_test(test_whole_jid_length),
        cmocka_unit_test(test_unicode_length),
        cmocka_unit_test(test_domain_trailing_dot_length),
        cmocka_unit_test(test_local_prohibited),
        cmocka_unit_test(test_local_prohibited_unicode),
        cmocka_unit_test(test_resource_chars),
        cmocka_unit_test(test_domain_rules),
        cmocka_unit_test(test_domain_ideographic_dot),
        cmocka_unit_test(test_domain_ip_literals),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_bare_full),
        cmocka_unit_test(test_normalize_error),
        cmocka_unit_test(test_fast_path_every_ascii_char),
        cmocka_unit_test(test_fast_path_samples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
