/*
 * XEP-0198 stream management on a client connection: acknowledgements both
 * ways, and resumption of a session whose connection was lost. The counting
 * and the queue of unacknowledged stanzas are sm_queue.c; this file is the
 * protocol around them and the session's life without a socket.
 *
 * How a resumed session keeps its identity: the router addresses a session
 * by (gateway, connection id). While detached, the old struct conn stays in
 * the connection table under its id (CONN_DETACHED, no socket), so the
 * router's deliveries keep landing in its queue and the router is told
 * nothing. A resume arrives on a new, authenticated connection; rather than
 * transplanting a socket, TLS session and half-fed XML parser into the old
 * struct (from inside that parser's own callback), the new connection takes
 * over the session's state and its id (conn_take_id), and the old struct
 * leaves without reporting anything. The router never sees a change.
 *
 * Rules (XEP-0198), cited where applied:
 *   M1  <enable/> only once, on a bound stream (§3); else <failed> with
 *       <unexpected-request/>
 *   M2  resume='true' (or '1') with sm.resume_timeout > 0 makes the session
 *       resumable: an id, and a max of our timeout or the client's lower
 *       one (§5)
 *   M3  every stanza handled from the client counts; <r/> is answered with
 *       <a h/> at once (§4)
 *   M4  every stanza sent counts and is kept until acknowledged; we ask
 *       with <r/> after SM_REQUEST_EVERY unasked stanzas, or SM_REQUEST_DELAY
 *       after the first one
 *   M5  an <a h/> outside what was sent is a stream error
 *       (undefined-condition, §4 "handled-count-too-high")
 *   M6  more than sm.max_queue unacknowledged stanzas end the session,
 *       connected (resource-constraint) or detached
 *   M7  a lost connection (EOF, socket error, idle timeout; not
 *       </stream:stream>, not a stream error we sent) of a resumable session
 *       is detached for max seconds; the router is not told, so contacts
 *       see no change
 *   M8  <resume/> comes on an authenticated, unbound stream and must name a
 *       live resumable session of the same user on this gateway; otherwise
 *       <failed><item-not-found/></failed> and the client may bind (§5)
 *   M9  on resume: <resumed previd h/> with our count, the queue trimmed by
 *       the client's h, the rest resent in order, same full JID (§5); a
 *       session whose old connection is still open is taken from it
 *   M10 a session ending for good (clean close, kick, shutdown, resume
 *       timeout, SM without resume dropped) hands every unacknowledged
 *       chat/normal message with a body to the router for offline
 *       delivery to its user (OP_UNDELIVERED); one that came from offline
 *       storage is still stored and is just not acknowledged
 */
#include "sm.h"
#include "conn.h"
#include "idle.h"
#include "log.h"
#include "stanza.h"
#include "stanza_parse.h"
#include "stream.h"
#include "upstream.h"
#include "util.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define SM_REQUEST_EVERY 5
#define SM_REQUEST_DELAY 1.0
#define NS_CARBONS "urn:xmpp:carbons:2"

static void failed(struct conn *c, const char *condition)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "<failed xmlns='" NS_SM "'><%s xmlns='" NS_STANZA_ERRORS "'/></failed>", condition);
    conn_write(c, b.data, b.len);
    buf_fini(&b);
}

static void request_ack(struct conn *c)
{
    struct sm *sm = c->sm;
    conn_write_str(c, "<r xmlns='" NS_SM "'/>");
    sm->unrequested = 0;
    ev_timer_stop(c->gw->loop, &sm->ack_timer);
}

static void on_ack_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct sm *sm = w->data;
    struct conn *c = sm->conn;

    if (c->state == CONN_BOUND && sm->unrequested > 0)
        request_ack(c);                                                     /* M4 */
}

static void sm_free(struct conn *c, struct sm *sm)
{
    if (!sm)
        return;
    ev_timer_stop(c->gw->loop, &sm->ack_timer);
    sm_queue_fini(&sm->out);
    free(sm->resume_id);
    free(sm);
}

/* Opaque to the client; starts with the connection id so a resume finds
 * the session without a second table, and carries 128 random bits so no
 * one resumes a session by guessing. */
static char *new_resume_id(uint64_t conn_id)
{
    unsigned char r[16];
    char hex[2 * sizeof(r) + 1];
    static const char digits[] = "0123456789abcdef";

    if (RAND_bytes(r, sizeof(r)) != 1)
        return NULL;
    for (size_t i = 0; i < sizeof(r); i++) {
        hex[2 * i] = digits[r[i] >> 4];
        hex[2 * i + 1] = digits[r[i] & 15];
    }
    hex[2 * sizeof(r)] = '\0';
    return xasprintf("%" PRIu64 "-%s", conn_id, hex);
}

static void on_enable(struct conn *c, const struct stanza *s)
{
    const struct config_sm *conf = &c->gw->conf->sm;
    const char *resume = stanza_attr(s, "resume");
    const char *client_max = stanza_attr(s, "max");
    struct sm *sm;
    struct buf b;

    if (c->state != CONN_BOUND || c->sm) {                                  /* M1 */
        failed(c, "unexpected-request");
        return;
    }
    sm = xcalloc(1, sizeof(*sm));
    sm_queue_init(&sm->out);
    sm->conn = c;
    ev_timer_init(&sm->ack_timer, on_ack_timer, SM_REQUEST_DELAY, 0.0);
    sm->ack_timer.data = sm;
    c->sm = sm;

    buf_init(&b);
    buf_append_str(&b, "<enabled xmlns='" NS_SM "'");
    if ((str_eq(resume, "true") || str_eq(resume, "1")) && conf->resume_timeout > 0) {  /* M2 */
        long m = client_max ? strtol(client_max, NULL, 10) : 0;
        sm->max = m > 0 && m < conf->resume_timeout ? (int)m : conf->resume_timeout;
        sm->resume_id = new_resume_id(c->id);
        if (!sm->resume_id)
            log_warn("conn=%llu jid=%s no random bytes for a resume id; resumption off", (unsigned long long)c->id,
                     c->full);
    }
    if (sm->resume_id)
        buf_printf(&b, " id='%s' resume='true' max='%d'", sm->resume_id, sm->max);
    buf_append_str(&b, "/>");
    conn_write(c, b.data, b.len);
    buf_fini(&b);
    log_info("conn=%llu jid=%s stream management on%s", (unsigned long long)c->id, c->full,
             sm->resume_id ? " with resumption" : "");
}

static void on_request(struct conn *c)
{
    char a[64];
    snprintf(a, sizeof(a), "<a xmlns='" NS_SM "' h='%" PRIu32 "'/>", c->sm->h_in);   /* M3 */
    conn_write_str(c, a);
}

/* O4 in router/offline.c: a stored message the client acknowledged. */
static void report_acked(void *ud, const char *ack)
{
    upstream_acked(ud, ack);
}

static void on_ack(struct conn *c, const struct stanza *s)
{
    uint32_t h;

    if (sm_queue_parse_h(stanza_attr(s, "h"), &h) < 0) {
        log_info("conn=%llu jid=%s sent an ack without a valid h; closing: undefined-condition",
                 (unsigned long long)c->id, c->full);
        conn_close(c, "undefined-condition", "invalid h in <a/>", "error");
        return;
    }
    if (sm_queue_ack_each(&c->sm->out, h, report_acked, c) < 0) {          /* M5 */
        log_info("conn=%llu jid=%s acknowledged h=%" PRIu32 " of %" PRIu32 " sent; closing: undefined-condition",
                 (unsigned long long)c->id, c->full, h, c->sm->out.sent);
        conn_close(c, "undefined-condition", "handled-count-too-high", "error");
    }
}

/* M8: the session previd names, if c may resume it. A session that is
 * still attached, or closing because it was lost, may be taken over: the
 * server may not have noticed the old connection die yet. */
static struct conn *find_resumable(struct conn *c, const char *previd)
{
    char *end;
    unsigned long long id = strtoull(previd, &end, 10);
    struct conn *old;

    if (end == previd || *end != '-')
        return NULL;
    old = conn_find(c->gw, (uint64_t)id);
    if (!old || old == c || !old->sm || !old->sm->resume_id || !old->full)
        return NULL;
    /* The id is a bearer secret for the session: compared in constant time. */
    if (strlen(old->sm->resume_id) != strlen(previd) ||
        CRYPTO_memcmp(old->sm->resume_id, previd, strlen(previd)) != 0 || !str_eq(old->user_id, c->user_id))
        return NULL;
    if (old->state == CONN_DETACHED || old->state == CONN_BOUND || (old->state == CONN_CLOSING && old->is_lost))
        return old;
    return NULL;
}

/* Moves the session from old to c, identity included; old leaves quietly:
 * without a full JID or SM state it reports and keeps nothing. */
static void take_over(struct conn *c, struct conn *old)
{
    struct sm *sm = old->sm;

    free(c->full);
    c->full = old->full;
    old->full = NULL;
    c->device_class = old->device_class;
    free(c->presence);
    c->presence = old->presence;
    old->presence = NULL;
    c->priority = old->priority;
    c->is_available = old->is_available;
    c->bound_at = old->bound_at;
    ev_timer_stop(c->gw->loop, &sm->ack_timer);
    sm->unrequested = 0;
    sm->conn = c;
    c->sm = sm;
    old->sm = NULL;
    conn_take_id(c, old);
    if (old->state == CONN_DETACHED)
        conn_close(old, NULL, NULL, "closed");
    else
        conn_close(old, "conflict", "session resumed on another connection", "closed");
}

static void on_resume(struct conn *c, const struct stanza *s)
{
    const char *previd = stanza_attr(s, "previd");
    uint64_t new_id = c->id;
    struct conn *old;
    uint32_t h;
    size_t resent = 0;
    struct buf b;

    if (c->state != CONN_AUTHED || c->sm || c->pending_bind) {
        failed(c, "unexpected-request");
        return;
    }
    if (!previd || sm_queue_parse_h(stanza_attr(s, "h"), &h) < 0) {
        failed(c, "bad-request");
        return;
    }
    old = find_resumable(c, previd);
    if (!old) {                                                             /* M8 */
        log_info("conn=%llu user=%s resume of an unknown or expired session refused", (unsigned long long)c->id,
                 c->user_id);
        failed(c, "item-not-found");
        return;
    }
    if (sm_queue_ack_each(&old->sm->out, h, report_acked, old) < 0) {      /* M5 */
        log_info("conn=%llu user=%s resume with h=%" PRIu32 " of %" PRIu32 " sent refused", (unsigned long long)c->id,
                 c->user_id, h, old->sm->out.sent);
        failed(c, "unexpected-request");
        return;
    }
    take_over(c, old);                                                      /* M9 */
    c->state = CONN_BOUND;
    idle_start(c);
    buf_init(&b);
    buf_append_str(&b, "<resumed xmlns='" NS_SM "' previd='");
    stanza_escape(&b, c->sm->resume_id, strlen(c->sm->resume_id), 1);
    buf_printf(&b, "' h='%" PRIu32 "'/>", c->sm->h_in);
    conn_write(c, b.data, b.len);
    buf_fini(&b);
    for (const struct sm_item *it = c->sm->out.head; it && c->state == CONN_BOUND; it = it->next) {
        conn_write(c, it->data, it->len);
        resent++;
    }
    if (resent && c->state == CONN_BOUND)
        request_ack(c);
    log_info("conn=%llu jid=%s resumed on the connection accepted as conn=%llu; %zu stanzas resent",
             (unsigned long long)c->id, c->full, (unsigned long long)new_id, resent);
}

void sm_on_element(struct conn *c, struct stanza *s)
{
    if (str_eq(s->name, "enable")) {
        on_enable(c, s);
    } else if (str_eq(s->name, "resume")) {
        on_resume(c, s);
    } else if ((str_eq(s->name, "r") || str_eq(s->name, "a")) && !c->sm) {
        /* Harmless (the client's counters are off too): ignored. */
        log_info("conn=%llu sent <%s/> without stream management; ignored", (unsigned long long)c->id, s->name);
    } else if (str_eq(s->name, "r")) {
        on_request(c);
    } else if (str_eq(s->name, "a")) {
        on_ack(c, s);
    } else {
        char safe[64];
        log_info("conn=%llu sent unsupported element %s; closing: unsupported-stanza-type",
                 (unsigned long long)c->id, log_safe(s->name, strlen(s->name), safe, sizeof(safe)));
        conn_close(c, "unsupported-stanza-type", NULL, "error");
    }
    stanza_free(s);
}

void sm_on_stanza_in(struct conn *c)
{
    if (c->sm)
        c->sm->h_in++;                                                      /* M3 */
}

void sm_on_stanza_out(struct conn *c, const char *data, size_t len, const char *ack)
{
    struct sm *sm = c->sm;

    sm_queue_push_ack(&sm->out, xstrndup(data, len), len, xstrdup(ack));    /* M4 */
    if (c->state == CONN_BOUND) {
        conn_write(c, data, len);
        if (++sm->unrequested >= SM_REQUEST_EVERY)
            request_ack(c);
        else if (!ev_is_active(&sm->ack_timer)) {
            /* Set each time: a stopped libev timer keeps what was left of
             * its last run, about 0 after it fired. */
            ev_timer_set(&sm->ack_timer, SM_REQUEST_DELAY, 0.0);
            ev_timer_start(c->gw->loop, &sm->ack_timer);
        }
    }
    if (c->sm == sm && sm->out.len > (size_t)c->gw->conf->sm.max_queue) { /* M6 */
        log_info("conn=%llu jid=%s %zu stanzas unacknowledged (limit %d); ending the session",
                 (unsigned long long)c->id, c->full ? c->full : "-", sm->out.len, c->gw->conf->sm.max_queue);
        c->is_lost = 0; /* not resumable any more, even if it was lost */
        conn_close(c, "resource-constraint", "too many unacknowledged stanzas", "error");
    }
}

int sm_may_detach(const struct conn *c)
{
    return c->sm && c->sm->resume_id && c->full && c->is_lost && !c->is_close_reported &&
           !c->gw->is_stopping;                                             /* M7 */
}

void sm_on_detach(struct conn *c)
{
    struct sm *sm = c->sm;

    ev_timer_stop(c->gw->loop, &sm->ack_timer);
    sm->unrequested = 0;
    ev_timer_stop(c->gw->loop, &c->timer);
    ev_timer_set(&c->timer, sm->max, 0.0);
    ev_timer_start(c->gw->loop, &c->timer);
    log_info("conn=%llu jid=%s session kept %d s for resumption (%zu stanzas unacknowledged)",
             (unsigned long long)c->id, c->full, sm->max, sm->out.len);
}

void sm_on_resume_timeout(struct conn *c)
{
    log_info("conn=%llu jid=%s not resumed within %d s; ending the session", (unsigned long long)c->id, c->full,
             c->sm ? c->sm->max : 0);
    conn_close(c, NULL, NULL, "dropped");
}

static int is_carbon(const struct stanza *s)
{
    return stanza_child(s, "sent", NS_CARBONS) || stanza_child(s, "received", NS_CARBONS);
}

/* M10: one queued stanza of a session that ended for good. Chat and
 * normal messages go to offline storage for this user (the offline issue's
 * hook, closed here): delivered at the next login, never lost. A stanza
 * that came from offline storage (it has an ack id) is still stored there
 * and is simply not acknowledged. Errors, groupchat and headline messages,
 * carbons (the original reached its recipient elsewhere), iqs and presence
 * are not kept (RFC 6121 §8.5.2). Returns 1 if it was handed over. */
static int keep(struct conn *c, const char *data, size_t len, const char *ack)
{
    struct stanza *s = NULL;
    const char *type;
    int kept = 0;

    if (ack || stanza_parse(data, len, &s) < 0)
        return 0;
    type = stanza_attr(s, "type");
    if (str_eq(s->name, "message") && stanza_attr(s, "from") && !is_carbon(s) &&
        stanza_child(s, "body", NS_CLIENT) &&
        (!type || strcmp(type, "chat") == 0 || strcmp(type, "normal") == 0)) {
        upstream_undelivered(c, data, len);
        kept = 1;
    }
    stanza_free(s);
    return kept;
}

void sm_end(struct conn *c)
{
    struct sm *sm = c->sm;
    size_t len, kept = 0, left;
    char *data;

    if (!sm)
        return;
    /* Detached first: nothing written from here may queue again. */
    c->sm = NULL;
    left = sm->out.len;
    while (sm->out.head) {
        char *ack = xstrdup(sm_queue_head_ack(&sm->out));
        data = sm_queue_pop(&sm->out, &len);
        if (c->full)
            kept += (size_t)keep(c, data, len, ack);
        free(ack);
        free(data);
    }
    if (left)
        log_info("conn=%llu jid=%s session ended with %zu stanzas unacknowledged; %zu messages kept for offline delivery",
                 (unsigned long long)c->id, c->full ? c->full : "-", left, kept);
    sm_free(c, sm);
}
