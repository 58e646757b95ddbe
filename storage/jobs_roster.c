/*
 * Roster jobs (RFC 6121 §2, §3.1.3): roster_get, roster_put, roster_del,
 * pending_put and pending_del, and the XML both ways. The router owns the
 * roster logic and its version counter; here we only check that what it
 * asks us to store is a roster item a client could be shown (§2.1), since
 * a row we accept comes back in every roster_get.
 */
#include "jobs.h"
#include "jobs_kinds.h"
#include "buf.h"
#include "envelope.h"
#include "stanza.h"
#include "stanza_parse.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define NS_ROSTER "jabber:iq:roster"
#define NS_INTERNAL "urn:parley:internal"

void jobs_roster_xml(const struct roster *r, struct buf *out)
{
    buf_printf(out, "<query xmlns='" NS_ROSTER "' ver='%lld'", (long long)r->ver);
    if (r->nitems == 0 && r->npending == 0) {
        buf_append_str(out, "/>");
        return;
    }
    buf_append(out, ">", 1);
    for (size_t i = 0; i < r->nitems; i++) {
        const struct roster_item *it = &r->items[i];
        buf_append_str(out, "<item");
        jobs_attr(out, "jid", it->jid);
        if (it->name)
            jobs_attr(out, "name", it->name);
        jobs_attr(out, "subscription", it->subscription);
        if (it->ask)
            jobs_attr(out, "ask", it->ask);
        if (it->ngroups == 0) {
            buf_append_str(out, "/>");
            continue;
        }
        buf_append(out, ">", 1);
        for (size_t g = 0; g < it->ngroups; g++) {
            buf_append_str(out, "<group>");
            stanza_escape(out, it->groups[g], strlen(it->groups[g]), 0);
            buf_append_str(out, "</group>");
        }
        buf_append_str(out, "</item>");
    }
    /* After the items, in a namespace no client parses: the router strips
     * these before it shows a roster (envelope.h "roster_get"). */
    for (size_t i = 0; i < r->npending; i++) {
        buf_append_str(out, "<pending xmlns='" NS_INTERNAL "'");
        jobs_attr(out, "jid", r->pending[i]);
        buf_append_str(out, "/>");
    }
    buf_append_str(out, "</query>");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_subscription(const char *s)
{
    return str_eq(s, "none") || str_eq(s, "to") || str_eq(s, "from") || str_eq(s, "both");
}

/* The groups of item el into it, sorted; JOBS_OK or JOBS_ERR_GROUP(S). */
static int parse_groups(const struct stanza *el, struct roster_item *it)
{
    for (const struct stanza *g = el->first; g; g = g->next) {
        char *name;
        size_t len;
        if (g->kind != STANZA_ELEMENT || !str_eq(g->name, "group") || !str_eq(g->ns, NS_ROSTER))
            continue;   /* RFC 6121 §2.1.2: only <group/> carries data; extensions are not ours to keep */
        if (it->ngroups == JOBS_ROSTER_GROUPS_MAX)
            return JOBS_ERR_GROUPS;
        name = stanza_text(g);
        len = strlen(name);
        if (len == 0 || len > JOBS_ROSTER_TEXT_MAX) {
            free(name);
            return JOBS_ERR_GROUP;
        }
        it->groups = xrealloc(it->groups, (it->ngroups + 1) * sizeof(*it->groups));
        it->groups[it->ngroups++] = name;
    }
    if (it->ngroups > 1)
        qsort(it->groups, it->ngroups, sizeof(*it->groups), cmp_str);
    /* RFC 6121 §2.3.3: the same group twice is a bad request (and would
     * break the (user, jid, group) key). */
    for (size_t g = 1; g < it->ngroups; g++)
        if (strcmp(it->groups[g - 1], it->groups[g]) == 0)
            return JOBS_ERR_GROUP;
    return JOBS_OK;
}

int jobs_roster_item_parse(const char *xml, size_t len, struct roster_item **out)
{
    struct stanza *el = NULL;
    struct roster_item *it = NULL;
    const char *jid, *sub, *ask, *name;
    int rc;

    *out = NULL;
    if (!xml || stanza_parse(xml, len, &el) < 0)
        return JOBS_ERR_XML;
    jid = stanza_attr(el, "jid");
    sub = stanza_attr(el, "subscription");
    ask = stanza_attr(el, "ask");
    name = stanza_attr(el, "name");
    if (!str_eq(el->name, "item") || !str_eq(el->ns, NS_ROSTER))
        rc = JOBS_ERR_ELEMENT;
    else if (!jobs_jid_is_bare(jid))
        rc = JOBS_ERR_JID;
    else if (sub && !is_subscription(sub))
        rc = JOBS_ERR_SUBSCRIPTION;
    else if (ask && !str_eq(ask, "subscribe"))
        rc = JOBS_ERR_ASK;
    else if (name && strlen(name) > JOBS_ROSTER_TEXT_MAX)
        rc = JOBS_ERR_NAME;
    else
        rc = JOBS_OK;
    if (rc == JOBS_OK) {
        it = xcalloc(1, sizeof(*it));
        it->jid = xstrdup(jid);
        it->name = xstrdup(name);
        it->subscription = xstrdup(sub ? sub : "none");
        it->ask = xstrdup(ask);
        rc = parse_groups(el, it);
    }
    stanza_free(el);
    if (rc != JOBS_OK) {
        backend_roster_item_fini(it);
        free(it);
        return rc;
    }
    *out = it;
    return JOBS_OK;
}

/* ---- the kinds ------------------------------------------------------------ */

int jobs_roster_get(struct backend *b, const struct envelope *job, struct envelope *res)
{
    struct roster r = { 0 };
    int rc = b->ops->roster_get(b, envelope_get(job, ENV_USER), &r);

    if (rc == BACKEND_OK) {
        struct buf out;
        size_t len;
        char *data;
        buf_init(&out);
        jobs_roster_xml(&r, &out);
        data = buf_steal(&out, &len);
        envelope_take_payload(res, data, len);
    }
    backend_roster_fini(&r);
    return rc;
}

int jobs_roster_put(const struct envelope *job, struct backend_write *w)
{
    int rc = jobs_number_parse(envelope_get(job, ENV_VER), &w->ver);

    w->kind = BW_ROSTER_PUT;
    if (rc == JOBS_OK)
        rc = jobs_roster_item_parse(job->payload, job->payload_len, &w->item);
    return rc;
}

int jobs_roster_del(const struct envelope *job, struct backend_write *w)
{
    w->kind = BW_ROSTER_DEL;
    w->jid = envelope_get(job, ENV_JID);
    if (!jobs_jid_is_bare(w->jid))
        return JOBS_ERR_JID;
    return jobs_number_parse(envelope_get(job, ENV_VER), &w->ver);
}

static int pending(const struct envelope *job, struct backend_write *w, enum backend_write_kind kind)
{
    w->kind = kind;
    w->jid = envelope_get(job, ENV_JID);
    return jobs_jid_is_bare(w->jid) ? JOBS_OK : JOBS_ERR_JID;
}

int jobs_roster_pending_put(const struct envelope *job, struct backend_write *w)
{
    return pending(job, w, BW_PENDING_PUT);
}

int jobs_roster_pending_del(const struct envelope *job, struct backend_write *w)
{
    return pending(job, w, BW_PENDING_DEL);
}
