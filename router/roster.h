/*
 * Roster cache (RFC 6121 §2): a user's roster is loaded from storage on
 * first need, kept while the user has sessions (or has work pending), and
 * written through to storage one write at a time per user, so storage sees
 * every change in order. Pushes go to the resources that asked for the
 * roster ("interested resources", §2.1.6).
 */
#ifndef PARLEY_ROUTER_ROSTER_H
#define PARLEY_ROUTER_ROSTER_H

#include <stdint.h>

#include "router.h"

struct envelope;
struct session;

enum roster_sub { SUB_NONE, SUB_TO, SUB_FROM, SUB_BOTH };

struct roster_item {
    char *jid;                 /* contact's bare JID */
    char *name;                /* or NULL */
    enum roster_sub sub;
    int is_ask;                /* pending out: we asked for their presence */
    char **groups;
    size_t ngroups;
};

struct roster_waiter;
struct roster_write;

struct roster {
    char *user_id;
    struct strmap items;       /* contact bare JID -> struct roster_item */
    struct strmap pending_in;  /* contact bare JID -> (void *)1: asked to see our presence */
    uint64_t ver;
    int is_loaded;
    int is_loading;
    double last_used;
    struct roster_waiter *waiters;
    struct roster_write *writes, *writes_tail;
    int is_writing;
};

typedef void (*roster_cb)(struct router *r, struct roster *ro, void *ctx);

void roster_init(struct router *r);
void roster_fini(struct router *r);

/* Calls cb once the user's roster is loaded (at once when cached). On a
 * storage failure cb gets ro == NULL. ctx is the caller's. */
void roster_with(struct router *r, const char *user_id, roster_cb cb, void *ctx);
/* The cached roster or NULL (no load). */
struct roster *roster_cached(struct router *r, const char *user_id);

struct roster_item *roster_item(struct roster *ro, const char *jid);
/* Creates the item if absent (subscription none). */
struct roster_item *roster_item_get_or_add(struct roster *ro, const char *jid);

/* Stores item's new state: bumps the version, writes it to storage in
 * order and pushes it to the interested resources. */
void roster_item_changed(struct router *r, struct roster *ro, struct roster_item *item);
/* Removes the item (push with subscription='remove'). */
void roster_item_remove(struct router *r, struct roster *ro, const char *jid);
void roster_pending_set(struct router *r, struct roster *ro, const char *jid, int is_pending);

/* iq get/set jabber:iq:roster from a session (§2.1.3, §2.3, §2.5). */
void roster_iq(struct router *r, struct session *from, const struct envelope *env);

/* Item XML as sent to clients (appends to out). */
struct buf;
void roster_item_xml(const struct roster_item *item, int is_remove, struct buf *out);
int roster_sub_has_from(enum roster_sub s);
int roster_sub_has_to(enum roster_sub s);

/* Drops cached rosters of users with no sessions and no work pending. */
void roster_tick(struct router *r);

#endif
