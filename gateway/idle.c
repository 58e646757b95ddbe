/*
 * Idle detection for bound connections. A client that has sent nothing for
 * half of idle.timeout is pinged (XEP-0199 §4.3, server to client); one
 * still silent at the full idle.timeout is gone (a dead NAT mapping, a
 * phone out of coverage) and is closed as a drop, so its session ends or,
 * with XEP-0198 resumption, waits to be resumed (sm.c).
 *
 * Cheap per connection: the read path only stores ev_now() in
 * c->last_activity, and the one per-connection timer (c->timer, the
 * handshake deadline before binding) is re-armed lazily when it fires, from
 * that timestamp. A busy connection costs one store per read, and its timer
 * fires about once per half timeout.
 *
 * Rules, cited where applied:
 *   I1  any bytes count as activity: stanzas, nonzas, and whitespace
 *       keepalives (RFC 6120 §4.6.1)
 *   I2  one ping per silent period: after it, the next check is the full
 *       timeout, counted from the last activity
 *   I3  the client's answer (iq result or error with our ping's id) is
 *       activity like any other, and the gateway consumes it
 *   I4  the timeout closes with <connection-timeout/> (RFC 6120 §4.9.3.4)
 *       and counts as a drop, not a close by either side
 *   I5  a bound connection silent for IDLE_SLEEP_AFTER seconds lets its XML
 *       parser sleep (xml_hibernate, R7 in common/xml.c): most of an idle
 *       session's memory is expat's, and the next bytes rebuild it. expat
 *       lives in its own slabs (common/xml_alloc.c), so after a sweep the
 *       emptied slabs, spares included, go back to the system
 */
#include "idle.h"
#include "conn.h"
#include "log.h"
#include "stanza.h"
#include "stream.h"
#include "util.h"
#include "xml.h"
#include "xml_alloc.h"

#include <malloc.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* libev may run a timer a hair before the computed instant, as seen by
 * ev_now(); without slack the check would re-arm for a few microseconds. */
#define IDLE_SLACK 0.05

static void ping_id(const struct conn *c, char *out, size_t outsz)
{
    snprintf(out, outsz, "parley-ping-%" PRIu32, c->ping_seq);
}

static void arm(struct conn *c, double at)
{
    double delay = at - ev_now(c->gw->loop);
    if (delay < IDLE_SLACK)
        delay = IDLE_SLACK;
    ev_timer_stop(c->gw->loop, &c->timer);
    ev_timer_set(&c->timer, delay, 0.0);
    ev_timer_start(c->gw->loop, &c->timer);
}

void idle_start(struct conn *c)
{
    c->last_activity = ev_now(c->gw->loop);
    c->ping_at = 0;
    arm(c, c->last_activity + c->gw->conf->idle.timeout / 2.0);
}

void idle_on_traffic(struct conn *c)
{
    c->is_parser_asleep = 0; /* the feed that follows wakes it (I5) */
    c->last_activity = ev_now(c->gw->loop);                                 /* I1 */
}

static void send_ping(struct conn *c)
{
    const char *domain = c->gw->conf->domain;
    char id[40];
    struct buf b;

    c->ping_seq++;
    ping_id(c, id, sizeof(id));
    buf_init(&b);
    buf_append_str(&b, "<iq type='get' from='");
    stanza_escape(&b, domain, strlen(domain), 1);
    buf_append_str(&b, "' to='");
    stanza_escape(&b, c->full, strlen(c->full), 1);
    buf_printf(&b, "' id='%s'><ping xmlns='" NS_PING "'/></iq>", id);
    conn_write_stanza(c, b.data, b.len);
    buf_fini(&b);
}

void idle_on_timer(struct conn *c)
{
    double now = ev_now(c->gw->loop);
    double timeout = c->gw->conf->idle.timeout;
    double quiet = now - c->last_activity;

    if (c->ping_at && c->last_activity > c->ping_at)
        c->ping_at = 0;                                                     /* I3 */
    if (quiet >= timeout - IDLE_SLACK) {
        log_info("conn=%llu jid=%s silent for %.0f s; closing: connection-timeout", (unsigned long long)c->id,
                 c->full ? c->full : "-", quiet);
        c->is_lost = 1;                                                     /* I4 */
        conn_close(c, "connection-timeout", NULL, "dropped");
        return;
    }
    if (!c->ping_at && quiet >= timeout / 2 - IDLE_SLACK) {
        send_ping(c);
        c->ping_at = now;
        log_debug("conn=%llu jid=%s silent for %.0f s; pinged", (unsigned long long)c->id, c->full, quiet);
    }
    arm(c, c->last_activity + (c->ping_at ? timeout : timeout / 2));      /* I2 */
}

int idle_is_pong(const struct conn *c, const struct stanza *s)
{
    const char *type = stanza_attr(s, "type");
    const char *to = stanza_attr(s, "to");
    char id[40];

    if (!str_eq(s->name, "iq") || !(str_eq(type, "result") || str_eq(type, "error")) || c->ping_seq == 0)
        return 0;
    if (to && strcmp(to, c->gw->conf->domain) != 0)
        return 0;
    ping_id(c, id, sizeof(id));
    return str_eq(stanza_attr(s, "id"), id);
}

/* I5 */
#define IDLE_SLEEP_AFTER 1.0

struct sweep {
    double now;
    size_t slept;
};

static void sleep_parser(struct conn *c, void *arg)
{
    struct sweep *sw = arg;
    if (c->state == CONN_BOUND && !c->is_waiting && c->xml && !c->is_parser_asleep &&
        sw->now - c->last_activity >= IDLE_SLEEP_AFTER && xml_hibernate(c->xml)) {
        c->is_parser_asleep = 1; /* cleared by the next read */
        sw->slept++;
    }
}

static void on_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct sweep sw = { ev_now(loop), 0 };
    conn_foreach(w->data, sleep_parser, &sw);
    /* Hand the freed pages back to the system, not just to malloc: a
     * gateway that held a burst of logins shrinks when they go idle. The
     * parsers' empty slabs are already unmapped but for one spare per size
     * class, which a burst has made fully resident. */
    if (sw.slept >= 64) {
        xml_alloc_trim();
        (void)malloc_trim(0); /* returns whether anything was released */
    }
}

void idle_sweep_start(struct gateway *gw)
{
    ev_timer_init(&gw->sweep, on_sweep, IDLE_SLEEP_AFTER, IDLE_SLEEP_AFTER);
    gw->sweep.data = gw;
    ev_timer_start(gw->loop, &gw->sweep);
}
