/*
 * Stanza tree, serializer and escaping. xml.c builds trees from the wire;
 * everyone else reads them, builds replies with the same calls, and writes
 * them out with stanza_serialize. Depth is bounded by the parser's limits
 * (and by our own code for built trees), so the recursion here is shallow.
 */
#include "stanza.h"
#include "util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct stanza *stanza_new(const char *name, const char *ns)
{
    struct stanza *s = xcalloc(1, sizeof *s);
    s->kind = STANZA_ELEMENT;
    s->name = xstrdup(name);
    s->ns = xstrdup(ns);
    return s;
}

static struct stanza *text_new(const char *text, size_t len)
{
    struct stanza *t = xcalloc(1, sizeof *t);
    t->kind = STANZA_TEXT;
    t->text = xmalloc(len + 1);
    memcpy(t->text, text, len);
    t->text[len] = '\0';
    t->text_len = len;
    return t;
}

void stanza_free(struct stanza *s)
{
    if (!s)
        return;
    struct stanza *c = s->first;
    while (c) {
        struct stanza *next = c->next;
        stanza_free(c);
        c = next;
    }
    for (size_t i = 0; i < s->nattrs; i++) {
        free(s->attrs[i].name);
        free(s->attrs[i].value);
    }
    free(s->attrs);
    free(s->name);
    free(s->ns);
    free(s->text);
    free(s);
}

const char *stanza_attr(const struct stanza *s, const char *name)
{
    for (size_t i = 0; i < s->nattrs; i++)
        if (strcmp(s->attrs[i].name, name) == 0)
            return s->attrs[i].value;
    return NULL;
}

void stanza_set_attr(struct stanza *s, const char *name, const char *value)
{
    for (size_t i = 0; i < s->nattrs; i++) {
        if (strcmp(s->attrs[i].name, name) != 0)
            continue;
        if (value) {
            /* Copy first: value may point into the string we replace. */
            char *v = xstrdup(value);
            free(s->attrs[i].value);
            s->attrs[i].value = v;
        } else {
            free(s->attrs[i].name);
            free(s->attrs[i].value);
            memmove(&s->attrs[i], &s->attrs[i + 1], (s->nattrs - i - 1) * sizeof s->attrs[0]);
            s->nattrs--;
        }
        return;
    }
    if (!value)
        return;
    if (s->nattrs == s->attrs_cap) {
        s->attrs_cap = s->attrs_cap ? s->attrs_cap * 2 : 4;
        s->attrs = xrealloc(s->attrs, s->attrs_cap * sizeof s->attrs[0]);
    }
    s->attrs[s->nattrs].name = xstrdup(name);
    s->attrs[s->nattrs].value = xstrdup(value);
    s->nattrs++;
}

struct stanza *stanza_add_child(struct stanza *parent, struct stanza *child)
{
    assert(child->parent == NULL && child->next == NULL);
    child->parent = parent;
    if (parent->last)
        parent->last->next = child;
    else
        parent->first = child;
    parent->last = child;
    return child;
}

struct stanza *stanza_add_element(struct stanza *parent, const char *name, const char *ns)
{
    return stanza_add_child(parent, stanza_new(name, ns ? ns : parent->ns));
}

void stanza_add_text(struct stanza *parent, const char *text, size_t len)
{
    if (len == 0)
        return;
    struct stanza *last = parent->last;
    if (last && last->kind == STANZA_TEXT) {
        last->text = xrealloc(last->text, last->text_len + len + 1);
        memcpy(last->text + last->text_len, text, len);
        last->text_len += len;
        last->text[last->text_len] = '\0';
        return;
    }
    stanza_add_child(parent, text_new(text, len));
}

struct stanza *stanza_child(const struct stanza *s, const char *name, const char *ns)
{
    for (struct stanza *c = s->first; c; c = c->next) {
        if (c->kind != STANZA_ELEMENT)
            continue;
        if (name && !str_eq(c->name, name))
            continue;
        if (ns && !str_eq(c->ns, ns))
            continue;
        return c;
    }
    return NULL;
}

struct stanza *stanza_first_element(const struct stanza *s)
{
    return stanza_child(s, NULL, NULL);
}

char *stanza_text(const struct stanza *s)
{
    size_t len = 0;
    for (const struct stanza *c = s->first; c; c = c->next)
        if (c->kind == STANZA_TEXT)
            len += c->text_len;
    char *out = xmalloc(len + 1), *p = out;
    for (const struct stanza *c = s->first; c; c = c->next) {
        if (c->kind == STANZA_TEXT) {
            memcpy(p, c->text, c->text_len);
            p += c->text_len;
        }
    }
    *p = '\0';
    return out;
}

void stanza_detach(struct stanza *child)
{
    struct stanza *parent = child->parent;
    if (!parent)
        return;
    struct stanza *prev = NULL;
    for (struct stanza *c = parent->first; c != child; c = c->next) {
        assert(c != NULL);
        prev = c;
    }
    if (prev)
        prev->next = child->next;
    else
        parent->first = child->next;
    if (parent->last == child)
        parent->last = prev;
    child->parent = NULL;
    child->next = NULL;
}

struct stanza *stanza_copy(const struct stanza *s)
{
    if (s->kind == STANZA_TEXT)
        return text_new(s->text, s->text_len);
    struct stanza *d = stanza_new(s->name, s->ns);
    if (s->nattrs) {
        d->attrs = xmalloc(s->nattrs * sizeof d->attrs[0]);
        d->attrs_cap = s->nattrs;
        for (size_t i = 0; i < s->nattrs; i++) {
            d->attrs[i].name = xstrdup(s->attrs[i].name);
            d->attrs[i].value = xstrdup(s->attrs[i].value);
        }
        d->nattrs = s->nattrs;
    }
    for (const struct stanza *c = s->first; c; c = c->next)
        stanza_add_child(d, stanza_copy(c));
    return d;
}

/* Bit 1: escaped in text; bit 2: escaped in attribute values. */
static const unsigned char esc_class[256] = {
    ['&'] = 3, ['<'] = 3, ['>'] = 3, ['\r'] = 3,
    ['"'] = 2, ['\''] = 2, ['\t'] = 2, ['\n'] = 2,
};

void stanza_escape(struct buf *out, const char *s, size_t len, int is_attr)
{
    unsigned char mask = is_attr ? 2 : 1;
    size_t run = 0;   /* start of the pending run of bytes copied verbatim */

    buf_reserve(out, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(esc_class[c] & mask))
            continue;
        buf_append(out, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '&': buf_append(out, "&amp;", 5); break;
        case '<': buf_append(out, "&lt;", 4); break;
        case '>': buf_append(out, "&gt;", 4); break;
        case '"': buf_append(out, "&quot;", 6); break;
        case '\'': buf_append(out, "&apos;", 6); break;
        case '\t': buf_append(out, "&#9;", 4); break;
        case '\n': buf_append(out, "&#10;", 5); break;
        default: buf_append(out, "&#13;", 5); break;
        }
    }
    buf_append(out, s + run, len - run);
}

static void put_attr(struct buf *out, const char *prefix, const char *name, const char *value)
{
    buf_append(out, " ", 1);
    if (prefix) {
        buf_append_str(out, prefix);
        buf_append(out, ":", 1);
    }
    buf_append_str(out, name);
    buf_append(out, "='", 2);
    stanza_escape(out, value, strlen(value), 1);
    buf_append(out, "'", 1);
}

void stanza_serialize(const struct stanza *s, const char *parent_ns, struct buf *out)
{
    if (s->kind == STANZA_TEXT) {
        stanza_escape(out, s->text, s->text_len, 0);
        return;
    }
    int wrote_xmlns = s->ns && (!parent_ns || strcmp(s->ns, parent_ns) != 0);

    buf_append(out, "<", 1);
    buf_append_str(out, s->name);
    if (wrote_xmlns)
        put_attr(out, NULL, "xmlns", s->ns);
    unsigned nprefix = 0;
    for (size_t i = 0; i < s->nattrs; i++) {
        const struct stanza_attr *a = &s->attrs[i];
        const char *bar = strrchr(a->name, '|');
        if (bar) {
            /* "uri|local": declare a prefix for it on this element; local
             * names cannot contain '|', so the last one is the separator. */
            char prefix[16], *uri = xstrndup(a->name, (size_t)(bar - a->name));
            snprintf(prefix, sizeof prefix, "a%u", nprefix++);
            put_attr(out, "xmlns", prefix, uri);
            put_attr(out, prefix, bar + 1, a->value);
            free(uri);
        } else if (!(wrote_xmlns && strcmp(a->name, "xmlns") == 0)) {
            put_attr(out, NULL, a->name, a->value);
        }
    }
    if (!s->first) {
        buf_append(out, "/>", 2);
        return;
    }
    buf_append(out, ">", 1);
    const char *ns = s->ns ? s->ns : parent_ns;
    for (const struct stanza *c = s->first; c; c = c->next)
        stanza_serialize(c, ns, out);
    buf_append(out, "</", 2);
    buf_append_str(out, s->name);
    buf_append(out, ">", 1);
}
