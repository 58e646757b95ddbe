/*
 * What both backends share that is not SQL: the roster rows they read,
 * collected into the struct roster of backend.h for jobs.c to serialize.
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

void backend_roster_fini(struct roster *r)
{
    for (size_t i = 0; i < r->nitems; i++) {
        struct roster_item *it = &r->items[i];
        for (size_t g = 0; g < it->ngroups; g++)
            free(it->groups[g]);
        free(it->groups);
        free(it->jid);
        free(it->name);
        free(it->subscription);
        free(it->ask);
    }
    free(r->items);
    r->items = NULL;
    r->nitems = 0;
}
