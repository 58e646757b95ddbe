/*
 * Session table (see sessions.h) and the bind decision of RFC 6120 §7.
 *
 * Rules applied here:
 *   S1  a bind without a resource gets a fresh server-generated one, so a
 *       plain multi-device login never conflicts (RFC 6120 §7.6.2.1);
 *   S2  a bind asking for a resource already bound (on any gateway):
 *       kick_old: the old session gets the <conflict/> stream error and
 *       only when its gateway reports it closed (or after
 *       REPLACE_TIMEOUT) does the new bind succeed (RFC 6120 §7.7.2.2
 *       option 1, recommended); reject_new: the new bind gets a
 *       <conflict/> stanza error and may bind another resource (option 2).
 *       A replaced session ends quietly: the user never went offline.
 *   S3  the router handles one message at a time, so two gateways racing
 *       for one resource are serialized here: exactly one session remains.
 *   S4  a device-class login binds the resource named after its class, so
 *       each class holds at most one session (the gateway forces it)
 *   S5  sessions.max_per_user: a bind over the limit replaces the oldest
 *       session (kick_old) or is refused with resource-constraint
 *       (reject_new; RFC 6120 §7.6.2.1)
 */
#include "sessions.h"
#include "envelope.h"
#include "gateways.h"
#include "log.h"
#include "presence.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* How long a kick_old bind waits for the old session's gateway. */
#define REPLACE_TIMEOUT 3.0

void session_ref_set(struct session_ref *ref, const struct session *s)
{
    ref->gateway = xstrdup(s->gateway);
    ref->full = xstrdup(s->full);
    ref->conn = s->conn;
}

struct session *session_ref_get(struct router *r, const struct session_ref *ref)
{
    return sessions_of_conn(r, ref->gateway, ref->full, ref->conn);
}

void session_ref_fini(struct session_ref *ref)
{
    free(ref->gateway);
    free(ref->full);
    ref->gateway = ref->full = NULL;
}

void sessions_init(struct router *r)
{
    strmap_init(&r->sessions);
    strmap_init(&r->users);
}

static void session_free(struct session *s)
{
    if (!s)
        return;
    free(s->full);
    free(s->gateway);
    free(s->presence);
    free(s->device_class);
    for (size_t i = 0; i < s->ndirected; i++)
        free(s->directed[i]);
    free(s->directed);
    if (s->offline_sent) {
        strmap_fini(s->offline_sent);
        free(s->offline_sent);
    }
    free(s);
}

void sessions_fini(struct router *r)
{
    struct strmap_entry *e;
    size_t it;
    for (e = strmap_first(&r->sessions, &it); e; e = strmap_next(&r->sessions, e, &it))
        session_free(e->value);
    for (e = strmap_first(&r->users, &it); e; e = strmap_next(&r->users, e, &it)) {
        struct user *u = e->value;
        free(u->user_id);
        free(u);
    }
    strmap_fini(&r->sessions);
    strmap_fini(&r->users);
}

struct session *sessions_find(struct router *r, const char *full)
{
    return strmap_get(&r->sessions, full);
}

struct user *sessions_user(struct router *r, const char *user_id)
{
    return strmap_get(&r->users, user_id);
}

struct session *sessions_of_conn(struct router *r, const char *gateway, const char *full, uint64_t conn)
{
    struct session *s = full ? sessions_find(r, full) : NULL;
    if (!s || s->conn != conn || strcmp(s->gateway, gateway) != 0)
        return NULL;
    return s;
}

static struct session *add(struct router *r, const char *user_id, const char *full, const char *gateway,
                           uint64_t conn, time_t since)
{
    struct session *s = xcalloc(1, sizeof(*s));
    struct user *u = sessions_user(r, user_id);

    if (!u) {
        u = xcalloc(1, sizeof(*u));
        u->user_id = xstrdup(user_id);
        strmap_put(&r->users, user_id, u);
    }
    s->full = xstrdup(full);
    s->resource = strchr(s->full, '/') + 1;
    s->user = u;
    s->gateway = xstrdup(gateway);
    s->conn = conn;
    s->since = since;
    s->seq = ++r->session_seq;
    s->next = u->sessions;
    u->sessions = s;
    u->count++;
    strmap_put(&r->sessions, full, s);
    return s;
}

/* S1: a resource no one can guess or collide with: 64 random bits. */
static char *generate_full(struct router *r, const char *user_id)
{
    for (;;) {
        unsigned char rnd[8];
        char *full;
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
            /* getrandom on Linux >= 3.17 does not fail for 8 bytes once
             * the pool is ready; fall back to a counter if it somehow does. */
            uint64_t n = ++r->resource_seq;
            memcpy(rnd, &n, sizeof(rnd));
        }
        full = xasprintf("%s/parley-%02x%02x%02x%02x%02x%02x%02x%02x", user_id, rnd[0], rnd[1], rnd[2],
                         rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
        if (!sessions_find(r, full))
            return full;
        free(full);
    }
}

static void bind_reply_to(struct router *r, const char *gateway, uint64_t conn, const char *id,
                          const char *error)
{
    struct envelope *e = envelope_new(OP_BIND_RESULT);
    envelope_set_int(e, ENV_CONN, (int64_t)conn);
    envelope_set(e, ENV_ID, id);
    envelope_set(e, ENV_ERROR, error);
    router_send_gateway(r, gateway, &e);
}

static void bind_reply(struct router *r, const char *gateway, const struct envelope *req, const char *unused,
                       const char *error)
{
    (void)unused;
    bind_reply_to(r, gateway, (uint64_t)envelope_get_int(req, ENV_CONN, 0), envelope_get(req, ENV_ID), error);
}

/* The bare part of full must be user_id: the gateway authenticated it. */
static int full_matches_user(const char *full, const char *user_id)
{
    size_t n = strlen(user_id);
    return strncmp(full, user_id, n) == 0 && (full[n] == '\0' || full[n] == '/');
}

static void bind_wait_free(struct bind_wait *w)
{
    if (!w)
        return;
    free(w->gateway);
    free(w->id);
    free(w->full);
    free(w->user_id);
    free(w->device_class);
    free(w);
}

static void bind_now(struct router *r, const char *gateway, uint64_t conn, const char *id, const char *full,
                     const char *user_id, const char *device_class)
{
    struct session *s = add(r, user_id, full, gateway, conn, time(NULL));
    struct envelope *e = envelope_new(OP_BIND_RESULT);

    s->device_class = xstrdup(device_class);
    envelope_set_int(e, ENV_CONN, (int64_t)conn);
    envelope_set(e, ENV_ID, id);
    envelope_set(e, ENV_FULL, full);
    router_send_gateway(r, gateway, &e);
    log_info("gateway=%s conn=%llu jid=%s bound%s%s", gateway, (unsigned long long)conn, full,
             device_class ? " class=" : "", device_class ? device_class : "");
}

/* S2, S5 under kick_old: the old session is asked to close; the bind
 * completes in replaced_closed(). */
static void replace(struct router *r, struct session *old, const struct envelope *env, const char *full)
{
    struct bind_wait *w = xcalloc(1, sizeof(*w));

    w->gateway = xstrdup(envelope_get(env, ENV_NAME));
    w->conn = (uint64_t)envelope_get_int(env, ENV_CONN, 0);
    w->id = xstrdup(envelope_get(env, ENV_ID));
    w->full = xstrdup(full);
    w->user_id = xstrdup(envelope_get(env, ENV_USER));
    w->device_class = xstrdup(envelope_get(env, ENV_CLASS));
    w->deadline = ev_now(r->loop) + REPLACE_TIMEOUT;
    w->old = old;
    w->next = r->replacing;
    r->replacing = w;
    old->replacing = w;
    log_info("gateway=%s conn=%llu jid=%s replaced by a new login on gateway=%s", old->gateway,
             (unsigned long long)old->conn, old->full, w->gateway);
    sessions_kick(r, old, "conflict", "replaced by a new login");
}

/* The replaced session is gone (closed, timed out, or its gateway lost). */
static void replaced_closed(struct router *r, struct bind_wait *w)
{
    struct bind_wait **p;

    for (p = &r->replacing; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    if (!gateways_find(r, w->gateway)) {
        /* The new login's gateway went away meanwhile: nothing to bind. */
        log_info("gateway=%s gone; replacement bind for %s dropped", w->gateway, w->full);
    } else if (sessions_find(r, w->full)) {
        /* Only possible when the replaced session was another resource
         * (S5) and someone bound w->full meanwhile. */
        bind_reply_to(r, w->gateway, w->conn, w->id, "conflict");
    } else {
        bind_now(r, w->gateway, w->conn, w->id, w->full, w->user_id, w->device_class);
    }
    bind_wait_free(w);
}

static struct session *oldest(struct user *u)
{
    struct session *best = NULL;
    for (struct session *s = u->sessions; s; s = s->next)
        if (!s->replacing && (!best || s->seq < best->seq))
            best = s;
    return best;
}

void sessions_on_bind(struct router *r, const char *gateway, const struct envelope *env)
{
    const char *user_id = envelope_get(env, ENV_USER);
    const char *req = envelope_get(env, ENV_FULL);
    uint64_t conn = (uint64_t)envelope_get_int(env, ENV_CONN, 0);
    int kick_old = strcmp(r->conf->sessions.conflict, "kick_old") == 0;
    int max = r->conf->sessions.max_per_user;
    struct session *old;
    struct user *u;
    char *full = NULL;

    if (!user_id || !req || !full_matches_user(req, user_id)) {
        log_warn("gateway=%s conn=%llu bind with inconsistent user/full; refused", gateway,
                 (unsigned long long)conn);
        bind_reply(r, gateway, env, NULL, "not-allowed");
        return;
    }
    full = strchr(req, '/') ? xstrdup(req) : generate_full(r, user_id);   /* S1, S4 */
    old = sessions_find(r, full);
    u = sessions_user(r, user_id);
    if (old) {                                                             /* S2 */
        if (!kick_old || old->replacing) {
            log_info("gateway=%s conn=%llu jid=%s bind refused: resource in use", gateway,
                     (unsigned long long)conn, full);
            bind_reply(r, gateway, env, NULL, "conflict");
        } else {
            struct envelope *copy = envelope_copy(env);
            envelope_set(copy, ENV_NAME, gateway);
            replace(r, old, copy, full);
            envelope_free(copy);
        }
    } else if (max > 0 && u && u->count >= max) {                         /* S5 */
        struct session *victim = kick_old ? oldest(u) : NULL;
        if (!victim) {
            log_info("gateway=%s conn=%llu jid=%s bind refused: %d sessions (limit %d)", gateway,
                     (unsigned long long)conn, full, u->count, max);
            bind_reply(r, gateway, env, NULL, "resource-constraint");
        } else {
            struct envelope *copy = envelope_copy(env);
            envelope_set(copy, ENV_NAME, gateway);
            replace(r, victim, copy, full);
            envelope_free(copy);
        }
    } else {
        bind_now(r, gateway, conn, envelope_get(env, ENV_ID), full, user_id, envelope_get(env, ENV_CLASS));
    }
    free(full);
}

void sessions_tick(struct router *r)
{
    double now = ev_now(r->loop);
    struct bind_wait *w = r->replacing;

    while (w) {
        struct bind_wait *next = w->next;
        if (now > w->deadline) {
            struct session *old = w->old;
            log_warn("gateway=%s jid=%s did not confirm the conflict kick in %.0f s; ending it", old->gateway,
                     old->full, REPLACE_TIMEOUT);
            sessions_end(r, old, "replaced (timeout)");
        }
        w = next;
    }
}

void sessions_on_announce(struct router *r, const char *gateway, const struct envelope *env)
{
    const char *user_id = envelope_get(env, ENV_USER);
    const char *full = envelope_get(env, ENV_FULL);
    uint64_t conn = (uint64_t)envelope_get_int(env, ENV_CONN, 0);
    struct session *s;

    if (!user_id || !full || !strchr(full, '/') || !full_matches_user(full, user_id)) {
        log_warn("gateway=%s conn=%llu announce with inconsistent user/full; dropped", gateway,
                 (unsigned long long)conn);
        return;
    }
    s = sessions_find(r, full);
    if (s) {
        if (s->conn == conn && strcmp(s->gateway, gateway) == 0)
            return; /* a repeat of what we know */
        /* Another connection got this resource first (S3): the announced
         * one loses, with the conflict stream error. */
        struct envelope *k = envelope_new(OP_KICK);
        envelope_set_int(k, ENV_CONN, (int64_t)conn);
        envelope_set(k, ENV_FULL, full);
        envelope_set(k, ENV_ERROR, "conflict");
        router_send_gateway(r, gateway, &k);
        return;
    }
    s = add(r, user_id, full, gateway, conn, (time_t)envelope_get_int(env, ENV_SINCE, time(NULL)));
    s->device_class = xstrdup(envelope_get(env, ENV_CLASS));
    if (envelope_get_int(env, ENV_AVAIL, 0))
        sessions_set_presence(s, 1, (int)envelope_get_int(env, ENV_PRIO, 0), env->payload, env->payload_len);
    log_info("gateway=%s conn=%llu jid=%s re-announced", gateway, (unsigned long long)conn, full);
}

void sessions_set_presence(struct session *s, int available, int priority, const char *payload, size_t len)
{
    s->available = available;
    s->priority = priority;
    free(s->presence);
    s->presence = payload ? xstrndup(payload, len) : NULL;
}

void sessions_end(struct router *r, struct session *s, const char *why)
{
    struct user *u = s->user;
    struct session **p;

    struct bind_wait *w = s->replacing;

    log_info("gateway=%s conn=%llu jid=%s session ended: %s", s->gateway, (unsigned long long)s->conn,
             s->full, why);
    presence_on_session_end(r, s);
    for (p = &u->sessions; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    strmap_del(&r->sessions, s->full);
    if (--u->count == 0) {
        strmap_del(&r->users, u->user_id);
        free(u->user_id);
        free(u);
    }
    session_free(s);
    if (w)
        replaced_closed(r, w);
}

void sessions_on_closed(struct router *r, const char *gateway, const struct envelope *env)
{
    uint64_t conn = (uint64_t)envelope_get_int(env, ENV_CONN, 0);
    struct session *s = sessions_of_conn(r, gateway, envelope_get(env, ENV_FULL), conn);
    const char *reason = envelope_get(env, ENV_REASON);

    if (!s)
        return; /* already replaced or ended; nothing to do */
    sessions_end(r, s, reason ? reason : "closed");
}

void sessions_end_gateway(struct router *r, const char *gateway, const char *why)
{
    struct strmap_entry *e;
    size_t it;
    struct session **doomed = NULL;
    size_t n = 0, cap = 0;

    for (e = strmap_first(&r->sessions, &it); e; e = strmap_next(&r->sessions, e, &it)) {
        struct session *s = e->value;
        if (strcmp(s->gateway, gateway) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            doomed = xrealloc(doomed, cap * sizeof(*doomed));
        }
        doomed[n++] = s;
    }
    for (size_t i = 0; i < n; i++)
        sessions_end(r, doomed[i], why);
    free(doomed);
}

void sessions_kick(struct router *r, struct session *s, const char *condition, const char *text)
{
    struct envelope *k = envelope_new(OP_KICK);
    envelope_set_int(k, ENV_CONN, (int64_t)s->conn);
    envelope_set(k, ENV_FULL, s->full);
    envelope_set(k, ENV_ERROR, condition);
    if (text)
        envelope_set(k, ENV_TEXT, text);
    router_send_gateway(r, s->gateway, &k);
}
