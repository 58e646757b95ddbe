/*
 * One stanza from text: feeds a synthetic jabber:client stream header and
 * then the stanza through the same restricted parser the gateway uses, so
 * the router never meets XML the gateway would have refused.
 */
#include "stanza_parse.h"
#include "stanza.h"
#include "xml.h"

#include <string.h>

struct one {
    struct stanza *s;
    int count;
};

static void on_open(void *ud, struct stanza *header)
{
    (void)ud;
    stanza_free(header);
}

static void on_stanza(void *ud, struct stanza *s)
{
    struct one *o = ud;
    if (o->count++ == 0)
        o->s = s;
    else
        stanza_free(s);
}

static void on_close(void *ud)
{
    (void)ud;
}

int stanza_parse(const char *xml, size_t len, struct stanza **out)
{
    static const char header[] =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    const struct xml_limits lim = { .max_stanza_bytes = len + 1, .max_depth = 64 };
    const struct xml_callbacks cb = { on_open, on_stanza, on_close };
    struct one o = { NULL, 0 };
    struct xml_parser *p = xml_new(&lim, &cb, &o);
    size_t used;
    int rc;

    *out = NULL;
    rc = xml_feed(p, header, sizeof(header) - 1, &used);
    if (rc == XML_OK)
        rc = xml_feed(p, xml, len, &used);
    xml_free(p);
    if (rc == XML_OK && o.count != 1)
        rc = XML_ERR_MALFORMED;
    if (rc != XML_OK) {
        stanza_free(o.s);
        return rc < 0 ? rc : XML_ERR_MALFORMED;
    }
    *out = o.s;
    return 0;
}
