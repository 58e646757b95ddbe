/*
 * What both backends share that is not SQL: the rows they read, collected
 * into the structs of backend.h for jobs.c to serialize, and the cleanup of
 * a parsed write.
 */
#include "backend.h"
#include "util.h"

#include <stdlib.h>

struct roster_item *backend_roster_add(struct roster *r, const char *jid, const char *name,
                                       const char *subscription, const char *ask)
{
    struct roster_item *it;

    r->items = xrealloc(r->items, (r->nitems + 1) * sizeof(*r->items));
    it = &r->items[r->nitems++];
    it->jid = xstrdup(jid);
    it->name = xstrdup(name);
    it->subscription = xstrdup(subscription ? subscription : "none");
    it->ask = xstrdup(ask);
    it->groups = NULL;
    it->ngroups = 0;
    return it;
}

void backend_roster_add_group(struct roster_item *item, const char *grp)
{
    item->groups = xrealloc(item->groups, (item->ngroups + 1) * sizeof(*item->groups));
    item->groups[item->ngroups++] = xstrdup(grp);
}

void backend_roster_add_pending(struct roster *r, const char *jid)
{
    r->pending = xrealloc(r->pending, (r->npending + 1) * sizeof(*r->pending));
    r->pending[r->npending++] = xstrdup(jid);
}

void backend_roster_item_fini(struct roster_item *it)
{
    if (!it)
        return;
    for (size_t g = 0; g < it->ngroups; g++)
        free(it->groups[g]);
    free(it->groups);
    free(it->jid);
    free(it->name);
    free(it->subscription);
    free(it->ask);
    it->groups = NULL;
    it->ngroups = 0;
    it->jid = it->name = it->subscription = it->ask = NULL;
}

void backend_roster_fini(struct roster *r)
{
    for (size_t i = 0; i < r->nitems; i++)
        backend_roster_item_fini(&r->items[i]);
    free(r->items);
    for (size_t i = 0; i < r->npending; i++)
        free(r->pending[i]);
    free(r->pending);
    r->items = NULL;
    r->nitems = 0;
    r->pending = NULL;
    r->npending = 0;
    r->ver = 0;
}

void backend_write_fini(struct backend_write *w)
{
    backend_roster_item_fini(w->item);
    free(w->item);
    for (size_t i = 0; i < w->nids; i++)
        free(w->ids[i]);
    free(w->ids);
    w->item = NULL;
    w->ids = NULL;
    w->nids = 0;
}

void backend_offline_add(struct offline_list *l, const char *id, int64_t stamp, const char *xml)
{
    struct offline_msg *m;

    l->msgs = xrealloc(l->msgs, (l->n + 1) * sizeof(*l->msgs));
    m = &l->msgs[l->n++];
    m->id = xstrdup(id);
    m->stamp = stamp;
    m->xml = xstrdup(xml);
}

void backend_offline_fini(struct offline_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->msgs[i].id);
        free(l->msgs[i].xml);
    }
    free(l->msgs);
    l->msgs = NULL;
    l->n = 0;
}

void backend_archive_add(struct archive_page *p, const char *id, int64_t stamp, const char *peer,
                         const char *dir, const char *xml)
{
    struct archive_entry *e;

    p->items = xrealloc(p->items, (p->n + 1) * sizeof(*p->items));
    e = &p->items[p->n++];
    e->id = xstrdup(id);
    e->stamp = stamp;
    e->peer = xstrdup(peer);
    e->dir = xstrdup(dir);
    e->xml = xstrdup(xml);
}

void backend_archive_reverse(struct archive_page *p)
{
    for (size_t i = 0, j = p->n; i + 1 < j; i++, j--) {
        struct archive_entry t = p->items[i];
        p->items[i] = p->items[j - 1];
        p->items[j - 1] = t;
    }
}

void backend_archive_fini(struct archive_page *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->items[i].id);
        free(p->items[i].peer);
        free(p->items[i].dir);
        free(p->items[i].xml);
    }
    free(p->items);
    p->items = NULL;
    p->n = 0;
}
