/*
 * Client connections: socket and TLS I/O, output buffering, the two-step
 * close and the reaper (see conn.h). What the bytes mean is stream.c's job:
 * this file feeds them to the connection's XML parser and writes what the
 * other files queue.
 */
#include "conn.h"
#include "log.h"
#include "sm.h"
#include "stanza.h"
#include "stream.h"
#include "tls.h"
#include "upstream.h"
#include "util.h"
#include "xml.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK 16384
#define READS_PER_WAKEUP 4
/* Output a slow client may leave unread before it is disconnected. */
#define OUT_MAX (4u * 1024 * 1024)
#define CLOSE_DRAIN_SECONDS 2.0

static void on_read(struct ev_loop *loop, ev_io *w, int revents);
static void on_write(struct ev_loop *loop, ev_io *w, int revents);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void flush(struct conn *c);

void conn_init_table(struct gateway *gw)
{
    gw->conn_nbuckets = 1024;
    gw->conn_buckets = xcalloc(gw->conn_nbuckets, sizeof(*gw->conn_buckets));
}

static size_t bucket(const struct gateway *gw, uint64_t id)
{
    return (size_t)(id * 0x9E3779B97F4A7C15ull >> 20) & (gw->conn_nbuckets - 1);
}

static void table_grow(struct gateway *gw)
{
    size_t n = gw->conn_nbuckets * 2;
    struct conn **b = xcalloc(n, sizeof(*b));
    size_t old_n = gw->conn_nbuckets;
    struct conn **old = gw->conn_buckets;

    gw->conn_buckets = b;
    gw->conn_nbuckets = n;
    for (size_t i = 0; i < old_n; i++) {
        struct conn *c = old[i];
        while (c) {
            struct conn *next = c->hnext;
            size_t k = bucket(gw, c->id);
            c->hnext = b[k];
            b[k] = c;
            c = next;
        }
    }
    free(old);
}

static void table_link(struct conn *c)
{
    struct gateway *gw = c->gw;
    size_t k = bucket(gw, c->id);
    c->hnext = gw->conn_buckets[k];
    gw->conn_buckets[k] = c;
}

static void table_unlink(struct conn *c)
{
    struct gateway *gw = c->gw;
    for (struct conn **p = &gw->conn_buckets[bucket(gw, c->id)]; *p; p = &(*p)->hnext) {
        if (*p == c) {
            *p = c->hnext;
            break;
        }
    }
    c->hnext = NULL;
}

struct conn *conn_find(struct gateway *gw, uint64_t id)
{
    for (struct conn *c = gw->conn_buckets[bucket(gw, id)]; c; c = c->hnext)
        if (c->id == id)
            return c;
    return NULL;
}

void conn_foreach(struct gateway *gw, void (*fn)(struct conn *c, void *arg), void *arg)
{
    for (size_t i = 0; i < gw->conn_nbuckets; i++)
        for (struct conn *c = gw->conn_buckets[i]; c; c = c->hnext)
            fn(c, arg);
}

struct conn *conn_new(struct gateway *gw, int fd, int is_direct_tls, int is_loopback)
{
    struct conn *c = xcalloc(1, sizeof(*c));
    double deadline = gw->conf->gateway.handshake_timeout_ms / 1000.0;

    c->id = ++gw->next_conn_id;
    c->fd = fd;
    c->gw = gw;
    c->state = CONN_CONNECTED;
    c->is_direct_tls = is_direct_tls;
    c->is_loopback = is_loopback;
    buf_init(&c->out);
    stream_init(c);

    if (gw->nconns + 1 > gw->conn_nbuckets)
        table_grow(gw);
    table_link(c);
    gw->nconns++;

    ev_io_init(&c->rio, on_read, fd, EV_READ);
    ev_io_init(&c->wio, on_write, fd, EV_WRITE);
    ev_timer_init(&c->timer, on_timer, deadline, 0.0);
    c->rio.data = c->wio.data = c->timer.data = c;
    ev_io_start(gw->loop, &c->rio);
    ev_timer_start(gw->loop, &c->timer);
    if (is_direct_tls)
        conn_start_tls(c);
    log_debug("conn=%llu accepted%s", (unsigned long long)c->id, is_direct_tls ? " (direct TLS)" : "");
    return c;
}

void conn_start_tls(struct conn *c)
{
    if (c->out.len) {
        /* <proceed/> must reach the client in plaintext first. */
        c->want_restart_tls = 1;
        return;
    }
    c->want_restart_tls = 0;
    c->ssl = tls_new_session(c->gw->tls, c->fd);
    if (!c->ssl) {
        log_warn("conn=%llu cannot create a TLS session", (unsigned long long)c->id);
        conn_close(c, NULL, NULL, "dropped");
        return;
    }
}

void conn_take_id(struct conn *c, struct conn *old)
{
    table_unlink(c);
    table_unlink(old);
    c->id = old->id;
    old->id = ++c->gw->next_conn_id;
    table_link(c);
    table_link(old);
}

void conn_write(struct conn *c, const char *data, size_t len)
{
    if (c->is_reaped || c->state == CONN_CLOSING || c->state == CONN_DETACHED)
        return;
    if (c->out.len + len > OUT_MAX) {
        log_info("conn=%llu jid=%s client does not read (%zu bytes queued); closing", (unsigned long long)c->id,
                 c->full ? c->full : "-", c->out.len);
        buf_reset(&c->out);
        conn_close(c, "policy-violation", "output queue overflow", "dropped");
        return;
    }
    buf_append(&c->out, data, len);
    c->out_total += len;
    if (!c->is_dirty) {
        c->is_dirty = 1;
        c->dirty_next = c->gw->dirty;
        c->gw->dirty = c;
    }
}

void conn_flush_all(struct gateway *gw)
{
    while (gw->dirty) {
        struct conn *c = gw->dirty;
        gw->dirty = c->dirty_next;
        c->is_dirty = 0;
        c->dirty_next = NULL;
        if (!c->is_reaped)
            flush(c);
    }
}

void conn_write_str(struct conn *c, const char *s)
{
    conn_write(c, s, strlen(s));
}

void conn_write_stanza(struct conn *c, const char *data, size_t len)
{
    conn_write_stanza_ack(c, data, len, NULL);
}

void conn_write_stanza_ack(struct conn *c, const char *data, size_t len, const char *ack)
{
    if (c->sm) {
        sm_on_stanza_out(c, data, len, ack);
        return;
    }
    if (ack && c->state != CONN_CLOSING && !c->is_reaped) {
        /* Noted before writing: the write may complete at once. */
        struct out_ack *a = xcalloc(1, sizeof(*a));
        a->end = c->out_total + len;
        a->ack = xstrdup(ack);
        if (c->acks_tail)
            c->acks_tail->next = a;
        else
            c->acks = a;
        c->acks_tail = a;
    }
    conn_write(c, data, len);
}

/* Reports the acks whose bytes have all been written. */
static void report_written(struct conn *c)
{
    while (c->acks && c->acks->end <= c->out_done) {
        struct out_ack *a = c->acks;
        c->acks = a->next;
        if (!c->acks)
            c->acks_tail = NULL;
        upstream_acked(c, a->ack);
        free(a->ack);
        free(a);
    }
}

static void schedule_reap(struct conn *c)
{
    if (c->is_reaped)
        return;
    c->is_reaped = 1;
    ev_io_stop(c->gw->loop, &c->rio);
    ev_io_stop(c->gw->loop, &c->wio);
    ev_timer_stop(c->gw->loop, &c->timer);
    c->reap_next = c->gw->reap_list;
    c->gw->reap_list = c;
}

/* The socket is gone or unusable: stop everything, no more output. */
static void drop(struct conn *c, const char *why)
{
    if (c->state != CONN_CLOSING) {
        log_info("conn=%llu jid=%s connection lost: %s", (unsigned long long)c->id, c->full ? c->full : "-", why);
        c->state = CONN_CLOSING;
        c->is_lost = 1;
        if (!c->close_reason)
            c->close_reason = xstrdup("dropped");
    }
    buf_reset(&c->out);
    schedule_reap(c);
}

static void flush(struct conn *c)
{
    while (c->out.len) {
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_write(c->ssl, c->out.data, (int)(c->out.len > 1 << 30 ? 1 << 30 : c->out.len));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    ev_io_start(c->gw->loop, &c->wio);
                    return;
                }
                drop(c, "TLS write failed");
                return;
            }
            n = r;
        } else {
            n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    ev_io_start(c->gw->loop, &c->wio);
                    return;
                }
                drop(c, strerror(errno));
                return;
            }
        }
        buf_consume(&c->out, (size_t)n);
        c->out_done += (uint64_t)n;
        if (c->acks)
            report_written(c);
    }
    ev_io_stop(c->gw->loop, &c->wio);
    /* Idle connections keep no output memory. */
    buf_shrink(&c->out, 0);
    if (c->want_restart_tls)
        conn_start_tls(c);
    if (c->state == CONN_CLOSING)
        schedule_reap(c);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = w->data;
    flush(c);
    /* A TLS read that wanted to write can go on now. */
    if (c->ssl && !c->is_reaped && c->state != CONN_CLOSING && !c->is_waiting)
        ev_feed_event(c->gw->loop, &c->rio, EV_READ);
}

/* Feeds one chunk to the parser; handles a stream restart. */
static void feed(struct conn *c, const char *data, size_t len)
{
    while (len && c->state != CONN_CLOSING) {
        size_t used = 0;
        int rc = xml_feed(c->xml, data, len, &used);
        if (rc == XML_OK)
            return;
        if (rc < 0) {
            stream_on_xml_error(c, rc);
            return;
        }
        /* XML_RESTARTED: after <starttls/> nothing may follow in
         * plaintext (RFC 6120 §5.4.3.3, and the STARTTLS injection
         * attacks); after SASL success the rest is the new stream. */
        if (c->is_tls_restart) {
            c->is_tls_restart = 0;
            if (used < len) {
                log_info("conn=%llu sent plaintext after <starttls/>; closing", (unsigned long long)c->id);
                conn_close(c, "policy-violation", "data after starttls", "error");
            }
            return;
        }
        data += used;
        len -= used;
    }
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = w->data;
    char buf[READ_CHUNK];

    for (int i = 0; i < READS_PER_WAKEUP; i++) {
        ssize_t n;
        if (c->state == CONN_CLOSING || c->is_waiting || c->is_reaped)
            return;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_read(c->ssl, buf, sizeof(buf));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ)
                    return;
                if (e == SSL_ERROR_WANT_WRITE) {
                    ev_io_start(c->gw->loop, &c->wio);
                    return;
                }
                if (e == SSL_ERROR_ZERO_RETURN) {
                    drop(c, "TLS closed by peer");
                } else {
                    char why[160];
                    unsigned long code = ERR_peek_error();
                    if (code)
                        ERR_error_string_n(code, why, sizeof(why));
                    else
                        snprintf(why, sizeof(why), "%s", e == SSL_ERROR_SYSCALL ? "socket closed" : "TLS error");
                    drop(c, why);
                }
                return;
            }
            n = r;
            if (c->state == CONN_CONNECTED && SSL_is_init_finished(c->ssl))
                stream_on_tls_ready(c);
        } else {
            n = recv(c->fd, buf, sizeof(buf), 0);
            if (n == 0) {
                drop(c, "closed by peer");
                return;
            }
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    return;
                drop(c, strerror(errno));
                return;
            }
        }
        stream_on_traffic(c);
        feed(c, buf, (size_t)n);
        /* A short read emptied the socket: the next recv() would only say
         * EAGAIN (one wasted syscall per read), and the level-triggered
         * watcher calls again when more arrives. TLS may still hold
         * records it read ahead (tls.c H2), which the socket will not
         * signal again. */
        if ((size_t)n < sizeof(buf) && !(c->ssl && SSL_has_pending(c->ssl)))
            return;
    }
    /* More may be waiting: come back after the other watchers had a turn. */
    if (!c->is_reaped && c->state != CONN_CLOSING && !c->is_waiting)
        ev_feed_event(c->gw->loop, &c->rio, EV_READ);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = w->data;
    if (c->state == CONN_CLOSING) {
        drop(c, "peer did not read the closing stream error in time");
        return;
    }
    stream_on_timer(c);
}

void conn_close(struct conn *c, const char *condition, const char *text, const char *reason)
{
    if (c->state == CONN_CLOSING)
        return;
    if (c->state == CONN_DETACHED) {
        /* No socket to tell: the kept session just ends now, and conn_free
         * reports it with this reason. */
        free(c->close_reason);
        c->close_reason = xstrdup(reason ? reason : "dropped");
        c->state = CONN_CLOSING;
        c->is_lost = 0;
        schedule_reap(c);
        return;
    }
    if (!c->close_reason)
        c->close_reason = xstrdup(reason ? reason : (condition ? "error" : "closed"));
    stream_write_close(c, condition, text);
    c->state = CONN_CLOSING;
    ev_io_stop(c->gw->loop, &c->rio);
    /* Give the peer a moment to read the error, no more. */
    ev_timer_stop(c->gw->loop, &c->timer);
    ev_timer_set(&c->timer, CLOSE_DRAIN_SECONDS, 0.0);
    ev_timer_start(c->gw->loop, &c->timer);
    if (c->out.len == 0)
        schedule_reap(c);
}

void conn_wait(struct conn *c)
{
    c->is_waiting = 1;
    ev_io_stop(c->gw->loop, &c->rio);
}

void conn_resume(struct conn *c)
{
    c->is_waiting = 0;
    while (c->held && !c->is_waiting && c->state != CONN_CLOSING) {
        struct held *h = c->held;
        c->held = h->next;
        if (!c->held)
            c->held_tail = NULL;
        c->nheld--;
        struct stanza *s = h->s;
        free(h);
        stream_on_stanza(c, s);
    }
    if (c->is_waiting || c->state == CONN_CLOSING || c->is_reaped)
        return;
    ev_io_start(c->gw->loop, &c->rio);
    /* TLS may hold bytes, decrypted or read ahead (tls.c H2), that the
     * socket will not signal again. */
    if (c->ssl && SSL_has_pending(c->ssl))
        ev_feed_event(c->gw->loop, &c->rio, EV_READ);
}

static void free_held(struct conn *c)
{
    while (c->held) {
        struct held *h = c->held;
        c->held = h->next;
        stanza_free(h->s);
        free(h);
    }
    c->held_tail = NULL;
    c->nheld = 0;
}

static void conn_free(struct conn *c)
{
    table_unlink(c);
    c->gw->nconns--;
    if (c->ssl) {
        /* A best-effort close_notify; the socket may already be gone. */
        (void)SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    /* The session ends for good: what the client never acknowledged goes
     * back to its senders, before the router hears the session is gone
     * (the router accepts stanzas only from live sessions). */
    sm_end(c);
    /* Reported only now that the socket is closed: a kick_old bind waits
     * for this, so the new login succeeds after the old one is gone. */
    upstream_closed(c);
    xml_free(c->xml);
    stream_fini(c);
    free_held(c);
    buf_fini(&c->out);
    free(c->pending_job);
    free(c->pending_bind);
    free(c->pending_full);
    free(c->user_id);
    free(c->full);
    free(c->close_reason);
    free(c->presence);
    while (c->acks) {
        struct out_ack *a = c->acks;
        c->acks = a->next;
        free(a->ack);
        free(a);
    }
    free(c);
}

/* The socket is gone but the session stays for resumption (XEP-0198
 * §5): everything tied to the old stream is freed here, at the reaper's
 * safe point, and the struct stays in the table under its id so the
 * router's deliveries keep arriving (into the SM queue). */
static void detach(struct conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl); /* no close_notify: the peer is gone */
        c->ssl = NULL;
    }
    close(c->fd);
    c->fd = -1;
    xml_free(c->xml);
    c->xml = NULL;
    stream_fini(c);
    free_held(c);
    buf_fini(&c->out);
    buf_init(&c->out);
    c->is_reaped = 0;
    c->reap_next = NULL;
    c->is_waiting = 0;
    c->want_restart_tls = 0;
    c->ping_at = 0;
    c->state = CONN_DETACHED;
    sm_on_detach(c);
}

void conn_reap(struct gateway *gw)
{
    while (gw->reap_list) {
        struct conn *c = gw->reap_list;
        gw->reap_list = c->reap_next;
        if (sm_may_detach(c)) {
            detach(c);
            continue;
        }
        log_debug("conn=%llu freed", (unsigned long long)c->id);
        conn_free(c);
    }
}
