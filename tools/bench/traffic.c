/*
 * Online traffic; see traffic.h.
 *
 * Counting rules, cited where applied:
 *   C1  a message counts as received only with a stamp of this run; one of
 *       an earlier run (left in an offline store) is stale
 *   C2  chat: latency = receive time - send time, both CLOCK_MONOTONIC
 *   C3  offline: the stamp's seq is the message index; a second copy of an
 *       index is a duplicate, not a second receipt
 *   C4  a message error that carries our stamp is a bounce (the server
 *       refused to deliver or store it)
 */
#include "traffic.h"
#include "client.h"
#include "login.h"
#include "stamp.h"
#include "stanza.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_DELAY "urn:xmpp:delay"
#define NS_PING "urn:xmpp:ping"

/* The first bounce of a worker is worth a line: it says why (quota, queue
 * full, no such user) when the count alone would not. */
static void note_first_bounce(const struct worker *w, const struct stanza *s)
{
    const struct stanza *err = stanza_child(s, "error", NULL);
    const struct stanza *cond = err ? stanza_first_element(err) : NULL;
    fprintf(stderr, "parley-bench[%d]: first message error: %s (type %s)\n", w->wid,
            cond && cond->name ? cond->name : "?", err && stanza_attr(err, "type") ? stanza_attr(err, "type") : "?");
}

static void on_message(struct client *c, const struct stanza *s)
{
    struct worker *w = c->w;
    struct stanza *body = stanza_child(s, "body", NULL);
    struct stamp st;

    if (!body)
        return;   /* chat states, receipts: not ours */
    char *text = stanza_text(body);
    int rc = stamp_parse(text, strlen(text), &st);
    free(text);
    if (rc < 0)
        return;
    if (st.run != w->run) {
        w->c.stale++;                                                   /* C1 */
        return;
    }
    if (str_eq(stanza_attr(s, "type"), "error")) {
        if (w->c.bounced++ == 0)                                        /* C4 */
            note_first_bounce(w, s);
        return;
    }
    double now = worker_now();
    if (w->o->scenario == SCENARIO_OFFLINE) {
        if (st.seq < (uint64_t)w->o->messages) {
            uint8_t bit = (uint8_t)(1u << (st.seq & 7));
            if (w->seen[st.seq >> 3] & bit) {
                w->c.duplicates++;                                      /* C3 */
                return;
            }
            w->seen[st.seq >> 3] |= bit;
        }
        if (stanza_child(s, "delay", NS_DELAY))
            w->c.delayed++;
    } else {
        uint64_t now_ns = worker_now_ns();
        histo_add(w->latency, now_ns > st.t_ns ? now_ns - st.t_ns : 0); /* C2 */
    }
    w->c.received++;
    if (w->c.t_first_rx == 0)
        w->c.t_first_rx = now;
    w->c.t_last_rx = now;
}

/* The server's own requests: answer pings, refuse the rest politely
 * (RFC 6120 §8.2.3: every get/set gets a reply). */
static void on_iq(struct client *c, const struct stanza *s)
{
    const char *type = stanza_attr(s, "type");
    const char *id = stanza_attr(s, "id");
    const char *from = stanza_attr(s, "from");

    if (str_eq(id, "pong") && (str_eq(type, "result") || str_eq(type, "error"))) {
        if (c->awaiting_pong) {
            c->awaiting_pong = 0;
            c->w->c.pongs++;
            c->w->c.send_pending--;
            if (c->w->c.send_pending == 0)
                worker_report_now(c->w);
        }
        return;
    }
    if (!str_eq(type, "get") && !str_eq(type, "set"))
        return;
    struct buf b;
    buf_init(&b);
    buf_append_str(&b, "<iq type='");
    buf_append_str(&b, stanza_child(s, "ping", NS_PING) ? "result'" : "error'");
    if (id) {
        buf_append_str(&b, " id='");
        stanza_escape(&b, id, strlen(id), 1);
        buf_append_str(&b, "'");
    }
    if (from) {
        buf_append_str(&b, " to='");
        stanza_escape(&b, from, strlen(from), 1);
        buf_append_str(&b, "'");
    }
    if (stanza_child(s, "ping", NS_PING))
        buf_append_str(&b, "/>");
    else
        buf_append_str(&b, "><error type='cancel'><service-unavailable "
                           "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
    client_send(c, b.data, b.len);
    buf_fini(&b);
}

void traffic_stanza(struct client *c, struct stanza *s)
{
    if (str_eq(s->name, "message"))
        on_message(c, s);
    else if (str_eq(s->name, "iq"))
        on_iq(c, s);
    stanza_free(s);   /* presence: nothing to do */
}

int traffic_send(struct client *c, uint32_t to, uint64_t seq)
{
    struct worker *w = c->w;
    struct buf *b = &w->scratch;
    char jid[LOGIN_JID_MAX];
    struct stamp st = { w->run, c->account, seq, worker_now_ns() };

    if (c->out.len > CLIENT_MAX_OUT)
        return -1;
    login_jid(w, to, jid, sizeof(jid));
    buf_reset(b);
    buf_printf(b, "<message to='%s' type='chat'><body>", jid);
    size_t room = STAMP_MAX_TEXT + (size_t)w->o->pad + 2;
    buf_reserve(b, room);
    int n = stamp_encode(&st, (size_t)w->o->pad, b->data + b->len, room);
    if (n < 0)
        return -1;
    b->len += (size_t)n;
    buf_append_str(b, "</body></message>");
    client_send(c, b->data, b->len);
    return 0;
}

void traffic_send_barrier(struct client *c)
{
    char jid[LOGIN_JID_MAX], iq[LOGIN_JID_MAX + 128];
    login_jid(c->w, c->account, jid, sizeof(jid));
    snprintf(iq, sizeof(iq), "<iq type='get' id='pong' to='%s'><ping xmlns='" NS_PING "'/></iq>", jid);
    c->awaiting_pong = 1;
    client_send_str(c, iq);
}
