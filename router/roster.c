/*
 * Roster cache and roster management, RFC 6121 §2; see roster.h.
 *
 * Rules, cited where applied:
 *   Q1  roster get returns the whole roster, or an empty result when the
 *       client's 'ver' equals the current version (§2.6.3); the session
 *       becomes an interested resource (§2.1.6)
 *   Q2  roster set carries exactly one item (§2.3.3 bad-request); the
 *       subscription attribute is ignored except 'remove' (§2.1.2.5); a
 *       name over ROSTER_NAME_MAX or an empty group is not-acceptable, a
 *       duplicate group bad-request (§2.3.3); a new item over
 *       roster.max_items is not-allowed
 *   Q3  each change bumps the version and is pushed to every interested
 *       resource with that version (§2.1.6, §2.6.2)
 *   Q4  removing an item cancels the subscriptions both ways (§2.5.2,
 *       subscription.c) and pushes subscription='remove'; removing an
 *       unknown item is item-not-found
 *   Q5  writes to storage go one at a time per user, in order (envelope.h)
 */
#include "roster.h"
#include "buf.h"
#include "envelope.h"
#include "jid.h"
#include "jobs.h"
#include "log.h"
#include "reply.h"
#include "sessions.h"
#include "stanza.h"
#include "stanza_parse.h"
#include "subscription.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_ROSTER "jabber:iq:roster"
#define NS_INTERNAL "urn:parley:internal"
#define ROSTER_NAME_MAX 1023
#define ROSTER_GROUPS_MAX 100
#define ROSTER_IDLE_EVICT 60.0
#define ROSTER_WRITE_TRIES 3

struct roster_waiter {
    roster_cb cb;
    void *ctx;
    struct roster_waiter *next;
};

struct roster_write {
    struct envelope *job;
    int tries;
    struct roster_write *next;
};

static const char *const sub_names[] = { "none", "to", "from", "both" };

int roster_sub_has_from(enum roster_sub s)
{
    return s == SUB_FROM || s == SUB_BOTH;
}

int roster_sub_has_to(enum roster_sub s)
{
    return s == SUB_TO || s == SUB_BOTH;
}

void roster_init(struct router *r)
{
    strmap_init(&r->rosters);
}

static void item_free(struct roster_item *it)
{
    if (!it)
        return;
    free(it->jid);
    free(it->name);
    for (size_t i = 0; i < it->ngroups; i++)
        free(it->groups[i]);
    free(it->groups);
    free(it);
}

static void roster_free(struct roster *ro)
{
    struct strmap_entry *e;
    size_t it;
    for (e = strmap_first(&ro->items, &it); e; e = strmap_next(&ro->items, e, &it))
        item_free(e->value);
    strmap_fini(&ro->items);
    strmap_fini(&ro->pending_in);
    while (ro->writes) {
        struct roster_write *w = ro->writes;
        ro->writes = w->next;
        envelope_free(w->job);
        free(w);
    }
    while (ro->waiters) {
        struct roster_waiter *w = ro->waiters;
        ro->waiters = w->next;
        free(w);
    }
    free(ro->user_id);
    free(ro);
}

void roster_fini(struct router *r)
{
    struct strmap_entry *e;
    size_t it;
    for (e = strmap_first(&r->rosters, &it); e; e = strmap_next(&r->rosters, e, &it))
        roster_free(e->value);
    strmap_fini(&r->rosters);
}

struct roster *roster_cached(struct router *r, const char *user_id)
{
    struct roster *ro = strmap_get(&r->rosters, user_id);
    return ro && ro->is_loaded ? ro : NULL;
}

struct roster_item *roster_item(struct roster *ro, const char *jid)
{
    return strmap_get(&ro->items, jid);
}

struct roster_item *roster_item_get_or_add(struct roster *ro, const char *jid)
{
    struct roster_item *it = roster_item(ro, jid);
    if (!it) {
        it = xcalloc(1, sizeof(*it));
        it->jid = xstrdup(jid);
        strmap_put(&ro->items, jid, it);
    }
    return it;
}

/* ---- loading ----------------------------------------------------------- */

static enum roster_sub sub_from_name(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (str_eq(s, sub_names[i]))
            return (enum roster_sub)i;
    return SUB_NONE;
}

/* The empty roster exactly as storage writes it (envelope.h "roster_get"):
 * most logins have it, and it needs no XML parser. Returns 1 and sets
 * *ver when xml is that, else 0. */
static int is_empty_roster(const char *xml, size_t len, uint64_t *ver)
{
    static const char head[] = "<query xmlns='" NS_ROSTER "' ver='";
    static const char tail[] = "'/>";
    size_t hl = sizeof(head) - 1, tl = sizeof(tail) - 1, i;
    uint64_t v = 0;

    if (len <= hl + tl || len > hl + tl + 20 || memcmp(xml, head, hl) != 0 || memcmp(xml + len - tl, tail, tl) != 0)
        return 0;
    for (i = hl; i < len - tl; i++) {
        if (xml[i] < '0' || xml[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (uint64_t)(xml[i] - '0');
    }
    *ver = v;
    return 1;
}

static void load_payload(struct roster *ro, const char *xml, size_t len)
{
    struct stanza *q = NULL;
    if (xml && is_empty_roster(xml, len, &ro->ver))
        return;
    if (!xml || stanza_parse(xml, len, &q) < 0)
        return;
    ro->ver = strtoull(stanza_attr(q, "ver") ? stanza_attr(q, "ver") : "0", NULL, 10);
    for (struct stanza *k = q->first; k; k = k->next) {
        const char *jid = k->kind == STANZA_ELEMENT ? stanza_attr(k, "jid") : NULL;
        if (!jid)
            continue;
        if (str_eq(k->name, "pending") && str_eq(k->ns, NS_INTERNAL)) {
            strmap_put(&ro->pending_in, jid, (void *)1);
            continue;
        }
        if (!str_eq(k->name, "item"))
            continue;
        struct roster_item *it = roster_item_get_or_add(ro, jid);
        it->name = xstrdup(stanza_attr(k, "name"));
        it->sub = sub_from_name(stanza_attr(k, "subscription"));
        it->is_ask = str_eq(stanza_attr(k, "ask"), "subscribe");
        for (struct stanza *g = k->first; g; g = g->next) {
            if (g->kind != STANZA_ELEMENT || !str_eq(g->name, "group"))
                continue;
            it->groups = xrealloc(it->groups, (it->ngroups + 1) * sizeof(*it->groups));
            it->groups[it->ngroups++] = stanza_text(g);
        }
    }
    stanza_free(q);
}

static void on_loaded(struct router *r, const struct envelope *res, void *ctx)
{
    char *user_id = ctx;
    struct roster *ro = strmap_get(&r->rosters, user_id);
    const char *err = envelope_get(res, ENV_ERROR);
    struct roster_waiter *w;

    free(user_id);
    if (!ro)
        return;
    ro->is_loading = 0;
    if (err) {
        log_warn("user=%s roster load failed: %s", ro->user_id, err);
    } else {
        load_payload(ro, res->payload, res->payload_len);
        ro->is_loaded = 1;
    }
    ro->last_used = ev_now(r->loop);
    /* The waiters run in order; each may queue writes or pushes. */
    while ((w = ro->waiters)) {
        ro->waiters = w->next;
        w->cb(r, err ? NULL : ro, w->ctx);
        free(w);
    }
}

void roster_with(struct router *r, const char *user_id, roster_cb cb, void *ctx)
{
    struct roster *ro = strmap_get(&r->rosters, user_id);

    if (ro && ro->is_loaded) {
        ro->last_used = ev_now(r->loop);
        cb(r, ro, ctx);
        return;
    }
    if (!ro) {
        ro = xcalloc(1, sizeof(*ro));
        ro->user_id = xstrdup(user_id);
        strmap_init(&ro->items);
        strmap_init(&ro->pending_in);
        strmap_put(&r->rosters, user_id, ro);
    }
    struct roster_waiter *w = xcalloc(1, sizeof(*w)), **tail = &ro->waiters;
    w->cb = cb;
    w->ctx = ctx;
    while (*tail)
        tail = &(*tail)->next;
    *tail = w;
    if (!ro->is_loading) {
        struct envelope *job = envelope_new(OP_JOB);
        ro->is_loading = 1;
        envelope_set(job, ENV_WHAT, "roster_get");
        envelope_set(job, ENV_JOB, "roster-load");
        envelope_set(job, ENV_USER, user_id);
        jobs_submit(r, &job, on_loaded, xstrdup(user_id));
    }
}

/* ---- writing (Q5) -------------------------------------------------------- */

static void write_next(struct router *r, struct roster *ro);

static void on_written(struct router *r, const struct envelope *res, void *ctx)
{
    char *user_id = ctx;
    struct roster *ro = strmap_get(&r->rosters, user_id);
    const char *err = envelope_get(res, ENV_ERROR);

    free(user_id);
    if (!ro)
        return;
    ro->is_writing = 0;
    struct roster_write *w = ro->writes;
    if (!w)
        return;
    if (err && (strcmp(err, "unavailable") == 0 || strcmp(err, "internal") == 0) && ++w->tries < ROSTER_WRITE_TRIES) {
        log_warn("user=%s roster write %s failed (%s); retrying", ro->user_id, envelope_get(w->job, ENV_WHAT), err);
    } else {
        if (err && strcmp(err, "not-found") == 0)
            log_info("user=%s roster write %s for an account that does not exist; dropped", ro->user_id,
                     envelope_get(w->job, ENV_WHAT));
        else if (err)
            log_error("user=%s roster write %s failed: %s; the change is lost", ro->user_id,
                      envelope_get(w->job, ENV_WHAT), err);
        ro->writes = w->next;
        if (!ro->writes)
            ro->writes_tail = NULL;
        envelope_free(w->job);
        free(w);
    }
    write_next(r, ro);
}

static void write_next(struct router *r, struct roster *ro)
{
    if (ro->is_writing || !ro->writes)
        return;
    struct envelope *job = envelope_copy(ro->writes->job);
    ro->is_writing = 1;
    jobs_submit(r, &job, on_written, xstrdup(ro->user_id));
}

static void queue_write(struct router *r, struct roster *ro, struct envelope *job)
{
    struct roster_write *w = xcalloc(1, sizeof(*w));
    envelope_set(job, ENV_USER, ro->user_id);
    envelope_set(job, ENV_JOB, "roster-write");
    w->job = job;
    if (ro->writes_tail)
        ro->writes_tail->next = w;
    else
        ro->writes = w;
    ro->writes_tail = w;
    write_next(r, ro);
}

/* ---- pushes (Q3) --------------------------------------------------------- */

void roster_item_xml(const struct roster_item *item, int is_remove, struct buf *out)
{
    buf_append_str(out, "<item jid='");
    stanza_escape(out, item->jid, strlen(item->jid), 1);
    buf_append_str(out, "'");
    if (item->name) {
        buf_append_str(out, " name='");
        stanza_escape(out, item->name, strlen(item->name), 1);
        buf_append_str(out, "'");
    }
    buf_printf(out, " subscription='%s'", is_remove ? "remove" : sub_names[item->sub]);
    if (item->is_ask && !is_remove)
        buf_append_str(out, " ask='subscribe'");
    if (!item->ngroups || is_remove) {
        buf_append_str(out, "/>");
        return;
    }
    buf_append_str(out, ">");
    for (size_t i = 0; i < item->ngroups; i++) {
        buf_append_str(out, "<group>");
        stanza_escape(out, item->groups[i], strlen(item->groups[i]), 0);
        buf_append_str(out, "</group>");
    }
    buf_append_str(out, "</item>");
}

static void push(struct router *r, struct roster *ro, const struct roster_item *item, int is_remove)
{
    struct user *u = sessions_user(r, ro->user_id);
    struct buf b;

    if (!u)
        return;
    for (struct session *s = u->sessions; s; s = s->next) {
        if (!s->is_roster_requested)
            continue;
        buf_init(&b);
        buf_append_str(&b, "<iq type='set' id='push");
        buf_printf(&b, "%" PRIu64 "' to='", ro->ver);
        stanza_escape(&b, s->full, strlen(s->full), 1);
        buf_printf(&b, "'><query xmlns='" NS_ROSTER "' ver='%" PRIu64 "'>", ro->ver);
        roster_item_xml(item, is_remove, &b);
        buf_append_str(&b, "</query></iq>");
        reply_deliver(r, s, b.data, b.len);
        buf_fini(&b);
    }
}

void roster_item_changed(struct router *r, struct roster *ro, struct roster_item *item)
{
    struct envelope *job = envelope_new(OP_JOB);
    char ver[24];
    struct buf b;

    ro->ver++;
    snprintf(ver, sizeof(ver), "%" PRIu64, ro->ver);
    buf_init(&b);
    buf_append_str(&b, "<item xmlns='" NS_ROSTER "'");
    /* the same serialization as for clients, minus the leading "<item" */
    struct buf tmp;
    buf_init(&tmp);
    roster_item_xml(item, 0, &tmp);
    buf_append(&b, tmp.data + 5, tmp.len - 5);
    buf_fini(&tmp);
    envelope_set(job, ENV_WHAT, "roster_put");
    envelope_set(job, ENV_VER, ver);
    size_t len = b.len;
    envelope_take_payload(job, buf_steal(&b, NULL), len);
    queue_write(r, ro, job);
    push(r, ro, item, 0);                                                   /* Q3 */
}

void roster_item_remove(struct router *r, struct roster *ro, const char *jid)
{
    struct roster_item *item = strmap_del(&ro->items, jid);
    struct envelope *job;
    char ver[24];

    if (!item)
        return;
    ro->ver++;
    snprintf(ver, sizeof(ver), "%" PRIu64, ro->ver);
    job = envelope_new(OP_JOB);
    envelope_set(job, ENV_WHAT, "roster_del");
    envelope_set(job, ENV_JID, jid);
    envelope_set(job, ENV_VER, ver);
    queue_write(r, ro, job);
    push(r, ro, item, 1);                                                   /* Q4 */
    item_free(item);
}

void roster_pending_set(struct router *r, struct roster *ro, const char *jid, int is_pending)
{
    int was = strmap_get(&ro->pending_in, jid) != NULL;
    if (was == is_pending)
        return;
    if (is_pending)
        strmap_put(&ro->pending_in, jid, (void *)1);
    else
        strmap_del(&ro->pending_in, jid);
    struct envelope *job = envelope_new(OP_JOB);
    envelope_set(job, ENV_WHAT, is_pending ? "pending_put" : "pending_del");
    envelope_set(job, ENV_JID, jid);
    queue_write(r, ro, job);
}

/* ---- iq jabber:iq:roster ------------------------------------------------- */

struct iq_wait {
    struct envelope *req;
    struct session_ref who;
};

static struct session *iq_session(struct router *r, struct iq_wait *w)
{
    return session_ref_get(r, &w->who);
}

static void iq_wait_free(struct iq_wait *w)
{
    envelope_free(w->req);
    session_ref_fini(&w->who);
    free(w);
}

static void on_get(struct router *r, struct roster *ro, void *ctx)
{
    struct iq_wait *w = ctx;
    struct session *s = iq_session(r, w);
    struct stanza *iq = NULL;
    struct buf b;

    if (!s)
        goto out;
    if (!ro) {
        reply_error(r, s, w->req, "internal-server-error", "wait");
        goto out;
    }
    s->is_roster_requested = 1;                                             /* Q1 */
    /* Only a request that says "ver" somewhere can carry the attribute:
     * the others (most clients, every first login) need no parse. */
    if (w->req->payload && memmem(w->req->payload, w->req->payload_len, "ver", 3) &&
        stanza_parse(w->req->payload, w->req->payload_len, &iq) == 0) {
        struct stanza *q = stanza_child(iq, "query", NS_ROSTER);
        const char *ver = q ? stanza_attr(q, "ver") : NULL;
        if (ver && strtoull(ver, NULL, 10) == ro->ver && *ver) {
            reply_iq_result(r, s, w->req, NULL);                             /* Q1 */
            goto out;
        }
    }
    buf_init(&b);
    buf_printf(&b, "<query xmlns='" NS_ROSTER "' ver='%" PRIu64 "'>", ro->ver);
    struct strmap_entry *e;
    size_t it;
    for (e = strmap_first(&ro->items, &it); e; e = strmap_next(&ro->items, e, &it))
        roster_item_xml(e->value, 0, &b);
    buf_append_str(&b, "</query>");
    reply_iq_result(r, s, w->req, b.data);
    buf_fini(&b);
out:
    stanza_free(iq);
    iq_wait_free(w);
}

/* Q2: checks one <item/> of a roster set; returns an error condition or NULL. */
static const char *check_item(const struct stanza *item, char **jid_out)
{
    const char *jid = stanza_attr(item, "jid");
    const char *name = stanza_attr(item, "name");
    struct jid j;

    *jid_out = NULL;
    if (!jid || jid_parse(jid, &j) != JID_OK)
        return "bad-request";
    if (j.resource) {
        jid_fini(&j);
        return "bad-request";
    }
    *jid_out = jid_bare(&j);
    jid_fini(&j);
    if (name && strlen(name) > ROSTER_NAME_MAX)
        return "not-acceptable";
    size_t n = 0;
    for (const struct stanza *g = item->first; g; g = g->next) {
        if (g->kind != STANZA_ELEMENT || !str_eq(g->name, "group"))
            continue;
        char *text = stanza_text(g);
        int bad = !*text || strlen(text) > ROSTER_NAME_MAX;
        int dup = 0;
        for (const struct stanza *h = item->first; h != g && !bad; h = h->next) {
            if (h->kind != STANZA_ELEMENT || !str_eq(h->name, "group"))
                continue;
            char *other = stanza_text(h);
            dup |= strcmp(other, text) == 0;
            free(other);
        }
        free(text);
        if (bad)
            return "not-acceptable";
        if (dup)
            return "bad-request";
        if (++n > ROSTER_GROUPS_MAX)
            return "not-acceptable";
    }
    return NULL;
}

static void on_set(struct router *r, struct roster *ro, void *ctx)
{
    struct iq_wait *w = ctx;
    struct session *s = iq_session(r, w);
    struct stanza *iq = NULL, *q, *item = NULL;
    const char *err = NULL;
    char *jid = NULL;
    int nitems = 0;

    if (!s)
        goto out;
    if (!ro) {
        reply_error(r, s, w->req, "internal-server-error", "wait");
        goto out;
    }
    if (!w->req->payload || stanza_parse(w->req->payload, w->req->payload_len, &iq) < 0 ||
        !(q = stanza_child(iq, "query", NS_ROSTER))) {
        reply_error(r, s, w->req, "bad-request", "modify");
        goto out;
    }
    for (struct stanza *k = q->first; k; k = k->next)
        if (k->kind == STANZA_ELEMENT && str_eq(k->name, "item") && ++nitems == 1)
            item = k;
    if (nitems != 1) {
        reply_error(r, s, w->req, "bad-request", "modify");                 /* Q2 */
        goto out;
    }
    if ((err = check_item(item, &jid))) {
        reply_error(r, s, w->req, err, "modify");                            /* Q2 */
        goto out;
    }
    if (str_eq(stanza_attr(item, "subscription"), "remove")) {
        if (!roster_item(ro, jid)) {
            reply_error(r, s, w->req, "item-not-found", "cancel");          /* Q4 */
            goto out;
        }
        reply_iq_result(r, s, w->req, NULL);
        subscription_on_remove(r, ro, jid);                                  /* Q4 */
        goto out;
    }
    struct roster_item *it = roster_item(ro, jid);
    if (!it && ro->items.count >= (size_t)r->conf->roster.max_items) {
        reply_error(r, s, w->req, "not-allowed", "cancel");                  /* Q2 */
        goto out;
    }
    it = roster_item_get_or_add(ro, jid);
    free(it->name);
    it->name = xstrdup(stanza_attr(item, "name"));
    for (size_t i = 0; i < it->ngroups; i++)
        free(it->groups[i]);
    it->ngroups = 0;
    for (struct stanza *g = item->first; g; g = g->next) {
        if (g->kind != STANZA_ELEMENT || !str_eq(g->name, "group"))
            continue;
        it->groups = xrealloc(it->groups, (it->ngroups + 1) * sizeof(*it->groups));
        it->groups[it->ngroups++] = stanza_text(g);
    }
    reply_iq_result(r, s, w->req, NULL);
    roster_item_changed(r, ro, it);                                         /* Q3 */
out:
    free(jid);
    stanza_free(iq);
    iq_wait_free(w);
}

void roster_iq(struct router *r, struct session *from, const struct envelope *env)
{
    const char *type = envelope_get(env, ENV_TYPE);
    struct iq_wait *w = xcalloc(1, sizeof(*w));

    w->req = envelope_copy(env);
    session_ref_set(&w->who, from);
    if (str_eq(type, "get"))
        roster_with(r, from->user->user_id, on_get, w);
    else
        roster_with(r, from->user->user_id, on_set, w);
}

void roster_tick(struct router *r)
{
    double now = ev_now(r->loop);
    struct strmap_entry *e;
    size_t it;
    char *gone[64];
    size_t n = 0;

    for (e = strmap_first(&r->rosters, &it); e && n < 64; e = strmap_next(&r->rosters, e, &it)) {
        struct roster *ro = e->value;
        if (ro->is_loading || ro->writes || ro->waiters || sessions_user(r, ro->user_id))
            continue;
        if (now - ro->last_used > ROSTER_IDLE_EVICT)
            gone[n++] = ro->user_id;
    }
    for (size_t i = 0; i < n; i++)
        roster_free(strmap_del(&r->rosters, gone[i]));
}
