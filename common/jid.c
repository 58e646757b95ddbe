/*
 * JID parsing and normalization. Every routed stanza has its to/from JIDs
 * normalized, so this is on the hot path: parts that are pure ASCII (nearly
 * all of them) are prepared by hand with exactly the result libidn's
 * stringprep profiles give for ASCII, and only the rest goes through libidn.
 *
 * What the three profiles do to ASCII (RFC 3454 tables, RFC 3491, RFC 6122
 * appendices A and B):
 *   A1  nodeprep: case-folds A-Z; prohibits space, the controls 0x00-0x1F
 *       and 0x7F (C.1.1, C.2.1) and  " & ' / : < > @  (the nodeprep table).
 *   A2  nameprep: case-folds A-Z; prohibits no ASCII (the domain rules
 *       below do that).
 *   A3  resourceprep: leaves ASCII alone; prohibits the controls (C.2.1).
 * Domain rules applied after nameprep (RFC 6122 §2.2 via IDNA2003 ToASCII
 * with UseSTD3ASCIIRules, RFC 7622 §3.2):
 *   D1  a bracketed IPv6 literal is kept unchanged; IPv4 literals pass the
 *       ordinary rules unchanged;
 *   D2  U+3002 IDEOGRAPHIC FULL STOP separates labels like '.' (nameprep
 *       already maps U+FF0E and U+FF61 to '.' and U+3002);
 *   D3  one trailing dot is stripped;
 *   D4  no empty label, and ASCII characters must be letters, digits or '-'.
 */
#include "jid.h"
#include "util.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <stringprep.h>

/* Preparation can shrink a part (characters mapped to nothing, NFKC), so the
 * raw input may be longer than the limit; beyond this it cannot be a
 * reasonable JID part and libidn is not asked to chew on it. */
#define RAW_MAX (4 * JID_PART_MAX)

enum profile { P_NODE, P_NAME, P_RESOURCE };

static int is_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    return 1;
}

/* Strict UTF-8: no overlong forms, surrogates or code points past U+10FFFF. */
static int is_utf8(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xC2 && c <= 0xDF) n = 1;
        else if (c == 0xE0) { n = 2; lo = 0xA0; }
        else if (c == 0xED) { n = 2; hi = 0x9F; }
        else if (c >= 0xE1 && c <= 0xEF) n = 2;
        else if (c == 0xF0) { n = 3; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) n = 3;
        else if (c == 0xF4) { n = 3; hi = 0x8F; }
        else return 0;
        if (len - i <= n)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= n; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return 0;
        i += n + 1;
    }
    return 1;
}

static int ascii_prep(enum profile pr, const char *in, size_t len, char **out)
{
    char *r = xmalloc(len + 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (pr == P_RESOURCE) {                            /* A3 */
            if (c < 0x20 || c == 0x7F)
                goto prohibited;
        } else {                                           /* A1, A2 */
            if (pr == P_NODE && (c <= 0x20 || c == 0x7F || strchr("\"&'/:<>@", c)))
                goto prohibited;
            if (c >= 'A' && c <= 'Z')
                c = (unsigned char)(c - 'A' + 'a');
        }
        r[i] = (char)c;
    }
    r[len] = '\0';
    *out = r;
    return JID_OK;
prohibited:
    free(r);
    return JID_ERR_PREP;
}

static int idn_prep(enum profile pr, const char *in, size_t len, char **out)
{
    static const Stringprep_profile *const profiles[] = {
        [P_NODE] = stringprep_xmpp_nodeprep,
        [P_NAME] = stringprep_nameprep,
        [P_RESOURCE] = stringprep_xmpp_resourceprep,
    };
    char tmp[RAW_MAX + 1]; /* holds the input, and any output within the limit */

    if (!is_utf8((const unsigned char *)in, len))
        return JID_ERR_SYNTAX;
    memcpy(tmp, in, len);
    tmp[len] = '\0';
    /* Flags 0: unassigned code points are allowed, as for queries; clients
     * put newer characters (emoji) in resources. */
    int rc = stringprep(tmp, sizeof tmp, 0, profiles[pr]);
    if (rc == STRINGPREP_TOO_SMALL_BUFFER)
        return JID_ERR_TOO_LONG;
    if (rc != STRINGPREP_OK)
        return JID_ERR_PREP;
    *out = xstrdup(tmp);
    return JID_OK;
}

/* Applies a profile to in[0..len) without the final length check. */
static int prep_part(enum profile pr, const char *in, size_t len, char **out)
{
    *out = NULL;
    if (len == 0)
        return JID_ERR_EMPTY;
    if (len > RAW_MAX)
        return JID_ERR_TOO_LONG;
    return is_ascii(in, len) ? ascii_prep(pr, in, len, out) : idn_prep(pr, in, len, out);
}

static int check_len(char **s)
{
    size_t n = strlen(*s);
    int rc = n == 0 ? JID_ERR_EMPTY : n > JID_PART_MAX ? JID_ERR_TOO_LONG : JID_OK;
    if (rc != JID_OK) {
        free(*s);
        *s = NULL;
    }
    return rc;
}

static int node_part(const char *in, size_t len, char **out)
{
    int rc = prep_part(P_NODE, in, len, out);
    return rc == JID_OK ? check_len(out) : rc;
}

static int resource_part(const char *in, size_t len, char **out)
{
    int rc = prep_part(P_RESOURCE, in, len, out);
    return rc == JID_OK ? check_len(out) : rc;
}

static int ipv6_literal(const char *in, size_t len, char **out)
{
    char addr[INET6_ADDRSTRLEN];
    unsigned char bin[16];
    if (len < 4 || len - 2 >= sizeof addr || in[len - 1] != ']')
        return JID_ERR_SYNTAX;
    memcpy(addr, in + 1, len - 2);
    addr[len - 2] = '\0';
    if (inet_pton(AF_INET6, addr, bin) != 1)
        return JID_ERR_SYNTAX;
    *out = xstrndup(in, len);
    return JID_OK;
}

static int domain_part(const char *in, size_t len, char **out)
{
    *out = NULL;
    if (len > 0 && in[0] == '[')                          /* D1 */
        return ipv6_literal(in, len, out);
    char *d;
    int rc = prep_part(P_NAME, in, len, &d);
    if (rc != JID_OK)
        return rc;
    size_t n = 0;
    for (size_t i = 0; d[i]; i++) {                       /* D2 */
        if ((unsigned char)d[i] == 0xE3 && (unsigned char)d[i + 1] == 0x80
            && (unsigned char)d[i + 2] == 0x82) {
            d[n++] = '.';
            i += 2;
        } else {
            d[n++] = d[i];
        }
    }
    if (n > 0 && d[n - 1] == '.')                         /* D3 */
        n--;
    d[n] = '\0';
    if ((rc = check_len(&d)) != JID_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {                      /* D4 */
        unsigned char c = (unsigned char)d[i];
        if (c == '.') {
            if (i == 0 || d[i - 1] == '.' || i == n - 1)
                rc = JID_ERR_SYNTAX;
        } else if (c < 0x80 && !(c == '-' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            rc = JID_ERR_PREP;
            break;
        }
    }
    if (rc != JID_OK) {
        free(d);
        return rc;
    }
    *out = d;
    return JID_OK;
}

int jid_nodeprep(const char *in, char **out)
{
    return node_part(in, strlen(in), out);
}

int jid_nameprep(const char *in, char **out)
{
    return domain_part(in, strlen(in), out);
}

int jid_resourceprep(const char *in, char **out)
{
    return resource_part(in, strlen(in), out);
}

int jid_parse(const char *in, struct jid *out)
{
    size_t len = strlen(in);
    int rc;

    memset(out, 0, sizeof *out);
    if (len == 0)
        return JID_ERR_EMPTY;
    /* RFC 7622 §3.1: the resource is everything after the first '/', the
     * localpart everything before the first '@' ahead of that '/'. */
    const char *slash = memchr(in, '/', len);
    size_t bare_len = slash ? (size_t)(slash - in) : len;
    const char *at = memchr(in, '@', bare_len);
    const char *dom = at ? at + 1 : in;

    if (at && (rc = node_part(in, (size_t)(at - in), &out->local)) != JID_OK)
        goto fail;
    if ((rc = domain_part(dom, bare_len - (size_t)(dom - in), &out->domain)) != JID_OK)
        goto fail;
    if (slash && (rc = resource_part(slash + 1, len - bare_len - 1, &out->resource)) != JID_OK)
        goto fail;
    return JID_OK;
fail:
    jid_fini(out);
    return rc;
}

void jid_fini(struct jid *j)
{
    free(j->local);
    free(j->domain);
    free(j->resource);
    j->local = j->domain = j->resource = NULL;
}

static char *join(const struct jid *j, int with_resource)
{
    size_t ll = j->local ? strlen(j->local) + 1 : 0;
    size_t dl = strlen(j->domain);
    size_t rl = with_resource && j->resource ? strlen(j->resource) + 1 : 0;
    char *s = xmalloc(ll + dl + rl + 1), *p = s;
    if (ll) {
        memcpy(p, j->local, ll - 1);
        p[ll - 1] = '@';
        p += ll;
    }
    memcpy(p, j->domain, dl);
    p += dl;
    if (rl) {
        *p++ = '/';
        memcpy(p, j->resource, rl - 1);
        p += rl - 1;
    }
    *p = '\0';
    return s;
}

char *jid_bare(const struct jid *j)
{
    return join(j, 0);
}

char *jid_full(const struct jid *j)
{
    return join(j, 1);
}

int jid_normalize(const char *in, char **out)
{
    struct jid j;
    int rc = jid_parse(in, &j);
    *out = rc == JID_OK ? jid_full(&j) : NULL;
    jid_fini(&j);
    return rc;
}

const char *jid_error_string(int code)
{
    switch (code) {
    case JID_OK: return "ok";
    case JID_ERR_EMPTY: return "empty JID part";
    case JID_ERR_TOO_LONG: return "JID part longer than 1023 bytes";
    case JID_ERR_SYNTAX: return "malformed JID";
    case JID_ERR_PREP: return "character not allowed in JID part";
    default: return "unknown JID error";
    }
}
