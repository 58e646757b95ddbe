/*
 * The session table: LoginID (full JID) -> UserID (bare JID), the gateway
 * and connection that hold it, and its presence. One struct user per
 * account with at least one session links that account's sessions, so a
 * bare-JID message finds every resource without a scan.
 */
#ifndef PARLEY_ROUTER_SESSIONS_H
#define PARLEY_ROUTER_SESSIONS_H

#include <stdint.h>
#include <time.h>

#include "router.h"

struct envelope;

struct session {
    char *full;                /* LoginID; the key in router.sessions */
    char *resource;            /* points into full */
    struct user *user;
    char *gateway;             /* gateway peer name */
    uint64_t conn;             /* gateway-local connection id */
    time_t since;
    uint64_t seq;              /* bind order: the oldest has the smallest */
    int available;             /* sent available presence (RFC 6121 §4.2) */
    int priority;              /* of the last available presence */
    char *presence;            /* last broadcast presence stanza (XML) or NULL */
    char *device_class;        /* "ios" for a "1#alice" login, else NULL */
    int is_carbons;            /* XEP-0280 enabled */
    int is_roster_requested;   /* an interested resource (RFC 6121 §2.1.6) */
    struct strmap *offline_sent; /* offline.c: stored message ids sent, not yet acked */
    char **directed;           /* bare/full JIDs we sent directed presence to (§4.6) */
    size_t ndirected;
    uint64_t mark;             /* route.c: last message fan-out that reached it */
    struct bind_wait *replacing; /* a bind waiting for this session to close (kick_old) */
    struct session *next;      /* in user->sessions */
};

/* A bind under kick_old that waits for the session it replaces to close. */
struct bind_wait {
    char *gateway;
    uint64_t conn;
    char *id;
    char *full;
    char *user_id;
    char *device_class;
    double deadline;           /* ev_now() after which the old session is ended anyway */
    struct session *old;
    struct bind_wait *next;    /* in router.replacing */
};

struct user {
    char *user_id;             /* UserID; the key in router.users */
    struct session *sessions;
    int count;
};

/*
 * A way back to a session across an asynchronous job: by the time storage
 * answers, the session may have ended or been replaced, so the answer looks
 * it up again instead of keeping a pointer.
 */
struct session_ref {
    char *gateway;
    char *full;
    uint64_t conn;
};

void session_ref_set(struct session_ref *ref, const struct session *s);
/* The session, if it still is the one referred to; else NULL. */
struct session *session_ref_get(struct router *r, const struct session_ref *ref);
void session_ref_fini(struct session_ref *ref);

void sessions_init(struct router *r);
void sessions_fini(struct router *r);

struct session *sessions_find(struct router *r, const char *full);
struct user *sessions_user(struct router *r, const char *user_id);
/* The session a gateway's connection holds, checked against the gateway, or NULL. */
struct session *sessions_of_conn(struct router *r, const char *gateway, const char *full, uint64_t conn);

/* OP_BIND from a gateway: decides the resource, answers OP_BIND_RESULT. */
void sessions_on_bind(struct router *r, const char *gateway, const struct envelope *env);
/* OP_ANNOUNCE after a router restart: re-creates the session. */
void sessions_on_announce(struct router *r, const char *gateway, const struct envelope *env);
/* OP_CLOSED: the connection of a session ended. */
void sessions_on_closed(struct router *r, const char *gateway, const struct envelope *env);

/* Records a presence update from the session (payload may be NULL). */
void sessions_set_presence(struct session *s, int available, int priority, const char *payload, size_t len);

/* Ends a session (removes and frees it); why is for the log. */
void sessions_end(struct router *r, struct session *s, const char *why);
/* Ends every session a gateway held (gateway lost or restarted). */
void sessions_end_gateway(struct router *r, const char *gateway, const char *why);
/* Ends replacements whose old session did not report closing in time. */
void sessions_tick(struct router *r);

/* Asks the holding gateway to close the session with a stream error. */
void sessions_kick(struct router *r, struct session *s, const char *condition, const char *text);

#endif
