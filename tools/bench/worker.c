/*
 * A generator process; see worker.h. One 1 ms tick does the periodic work:
 * start the logins the ramp allows, expire clients past their deadline,
 * and send the messages that are due. Offered load is open-loop: a message
 * is due at its scheduled time whether or not earlier ones were answered,
 * so a slow server shows as latency and backlog, not as a slower generator.
 */
#include "worker.h"
#include "client.h"
#include "traffic.h"
#include "util.h"

#include <errno.h>
#include <openssl/err.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TICK_S 0.001
#define REPORT_S 0.2
#define SWEEP_EVERY 50           /* ticks between deadline sweeps */
#define OFFLINE_BURST 4000       /* most offline messages one tick writes */

double worker_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t worker_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t worker_rand(struct worker *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static void send_snapshot(struct worker *w, int is_final)
{
    static struct wire_snapshot snap;   /* 36 KB: kept off the stack; one worker per process */
    snap.type = WIRE_SNAPSHOT;
    snap.wid = (uint32_t)w->wid;
    snap.is_final = (uint32_t)is_final;
    snap.acked = w->acked;
    snap.c = w->c;
    snap.latency = *w->latency;
    snap.login = *w->login;
    /* Blocking send: the coordinator always reads, and a lost snapshot
     * would lose the final figures. */
    while (send(w->coord_fd, &snap, sizeof(snap), MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

void worker_report_now(struct worker *w)
{
    send_snapshot(w, 0);
}

static void send_bitmap(struct worker *w)
{
    uint32_t accounts = (uint32_t)opts_accounts(w->o);
    uint32_t len = (accounts + 7) / 8;
    size_t total = sizeof(struct wire_bitmap) + len;
    uint8_t *msg = xcalloc(1, total);
    struct wire_bitmap *h = (struct wire_bitmap *)(void *)msg;
    h->type = WIRE_BITMAP;
    h->wid = (uint32_t)w->wid;
    h->bitmap_len = len;
    uint8_t *bits = msg + sizeof(*h);
    for (uint32_t s = 0; s < w->nclients; s++) {
        const struct client *c = &w->clients[s];
        if (c->state == CLIENT_ONLINE)
            bits[c->account >> 3] |= (uint8_t)(1u << (c->account & 7));
    }
    while (send(w->coord_fd, msg, total, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
    free(msg);
}

static void phase_login_done(struct worker *w)
{
    if (w->o->scenario == SCENARIO_CHAT)
        send_bitmap(w);
    send_snapshot(w, 0);
}

void worker_on_online(struct worker *w, struct client *c)
{
    double now = worker_now();
    c->state = CLIENT_ONLINE;
    c->deadline = 0;
    w->inflight--;
    w->c.online++;
    w->c.login_ok++;
    w->c.login_pending--;
    histo_add(w->login, (uint64_t)((now - c->t_start) * 1e9));
    if (w->c.t_first_login == 0)
        w->c.t_first_login = now;
    w->c.t_last_login = now;
    if (w->c.login_pending == 0)
        phase_login_done(w);
}

void worker_on_closed(struct worker *w, struct client *c, enum fail_reason why)
{
    if (c->awaiting_pong) {
        c->awaiting_pong = 0;
        w->c.send_pending--;
    }
    if (c->state == CLIENT_ONLINE) {
        w->c.online--;
        w->c.fails[FAIL_DROPPED]++;
        return;
    }
    w->inflight--;
    w->c.login_failed++;
    w->c.fails[why]++;
    w->c.login_pending--;
    if (w->c.login_pending == 0)
        phase_login_done(w);
}

static void start_logins(struct worker *w, double now)
{
    uint64_t allowed = UINT64_MAX;
    if (w->ramp_local > 0) {
        double due = w->ramp_local * (now - w->login_t0) + 1;
        allowed = due > (double)w->qpos ? (uint64_t)(due - (double)w->qpos) : 0;
    }
    while (w->qpos < w->qlen && w->inflight < (uint32_t)w->o->inflight && allowed > 0) {
        struct client *c = &w->clients[w->queue[w->qpos++]];
        allowed--;
        w->inflight++;
        w->c.login_started++;
        client_open(c);
    }
}

static void sweep_deadlines(struct worker *w, double now)
{
    for (uint32_t s = 0; s < w->nclients; s++) {
        struct client *c = &w->clients[s];
        if (c->deadline > 0 && now > c->deadline && c->state != CLIENT_ONLINE && c->state != CLIENT_DONE &&
            c->state != CLIENT_IDLE) {
            client_fail(c, FAIL_TIMEOUT);
            client_close(c);
        }
    }
}

static void send_chat(struct worker *w, double now)
{
    uint32_t accounts = (uint32_t)opts_accounts(w->o);
    double due = w->o->rate / w->nworkers * (now - w->send_t0);
    uint64_t done = w->c.sent + w->c.send_skipped;

    if (w->nlocal_online == 0)
        return;
    while ((double)done < due) {
        done++;
        struct client *c = &w->clients[w->local_online[worker_rand(w) % w->nlocal_online]];
        uint32_t to = 0;
        int found = 0;
        for (int tries = 0; tries < 16 && !found; tries++) {
            to = (uint32_t)(worker_rand(w) % accounts);
            found = to != c->account && (w->online[to >> 3] & (1u << (to & 7)));
        }
        if (c->state != CLIENT_ONLINE || !found || traffic_send(c, to, w->seq++) < 0) {
            w->c.send_skipped++;
            continue;
        }
        w->c.sent++;
        if (w->c.t_first_send == 0)
            w->c.t_first_send = now;
        w->c.t_last_send = now;
    }
}

/* Message i goes from sender i % S to receiver S + i % R. */
static void send_offline(struct worker *w, double now)
{
    uint64_t s_count = (uint64_t)w->o->users, r_count = (uint64_t)w->o->receivers;
    uint64_t budget = OFFLINE_BURST;

    if (w->o->rate > 0) {
        double due = w->o->rate / w->nworkers * (now - w->send_t0);
        double done = (double)(w->c.sent + w->c.send_skipped);
        budget = due > done ? (uint64_t)(due - done) : 0;
    }
    while (w->to_send > 0 && budget > 0) {
        uint64_t i = w->next_msg;
        uint32_t sender = (uint32_t)(i % s_count);
        if (sender % (uint32_t)w->nworkers != (uint32_t)w->wid) {
            w->next_msg++;
            continue;
        }
        struct client *c = &w->clients[sender / (uint32_t)w->nworkers];
        if (c->state == CLIENT_ONLINE && c->out.len > CLIENT_MAX_OUT / 2)
            break;   /* backpressure: this sender's socket is full; next tick */
        w->next_msg++;
        w->to_send--;
        w->c.send_pending--;
        budget--;
        if (c->state != CLIENT_ONLINE || traffic_send(c, (uint32_t)(s_count + i % r_count), i) < 0) {
            w->c.send_skipped++;
            continue;
        }
        w->c.sent++;
        if (w->c.t_first_send == 0)
            w->c.t_first_send = now;
        w->c.t_last_send = now;
    }
    if (w->to_send == 0 && w->sending) {
        w->sending = 0;
        for (uint32_t s = 0; s < w->nclients; s++) {
            struct client *c = &w->clients[s];
            if (c->state == CLIENT_ONLINE && c->account < s_count) {
                w->c.send_pending++;
                traffic_send_barrier(c);
            }
        }
        if (w->c.send_pending == 0)
            send_snapshot(w, 0);
    }
}

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;
    double now = worker_now();
    (void)loop;
    (void)revents;

    start_logins(w, now);
    if (++w->ticks % SWEEP_EVERY == 0)
        sweep_deadlines(w, now);
    if (w->sending && w->o->scenario == SCENARIO_CHAT)
        send_chat(w, now);
    else if (w->sending && w->o->scenario == SCENARIO_OFFLINE)
        send_offline(w, now);
}

static void report_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    send_snapshot(t->data, 0);
}

static void queue_logins(struct worker *w, int receivers)
{
    uint32_t limit_lo = 0, limit_hi = (uint32_t)opts_accounts(w->o);
    if (w->o->scenario == SCENARIO_OFFLINE) {
        if (receivers)
            limit_lo = (uint32_t)w->o->users;
        else
            limit_hi = (uint32_t)w->o->users;
    }
    w->qlen = w->qpos = 0;
    for (uint32_t s = 0; s < w->nclients; s++) {
        uint32_t a = w->clients[s].account;
        if (a >= limit_lo && a < limit_hi && w->clients[s].state == CLIENT_IDLE)
            w->queue[w->qlen++] = s;
    }
    w->login_t0 = worker_now();
    w->c.login_pending += w->qlen;
    if (w->qlen == 0)
        phase_login_done(w);
}

static void start_sending(struct worker *w, const uint8_t *bitmap, uint32_t len)
{
    w->send_t0 = worker_now();
    w->sending = 1;
    if (w->o->scenario == SCENARIO_CHAT) {
        free(w->online);
        w->online = xcalloc(1, len + 1);
        memcpy(w->online, bitmap, len);
        w->nlocal_online = 0;
        for (uint32_t s = 0; s < w->nclients; s++)
            if (w->clients[s].state == CLIENT_ONLINE)
                w->local_online[w->nlocal_online++] = s;
        return;
    }
    /* Offline: count this worker's share of the messages up front, so the
     * coordinator sees from the first snapshot how much is left. */
    uint64_t m = (uint64_t)w->o->messages, s_count = (uint64_t)w->o->users;
    w->to_send = 0;
    for (uint64_t i = 0; i < m; i++)
        if ((i % s_count) % (uint64_t)w->nworkers == (uint64_t)w->wid)
            w->to_send++;
    w->next_msg = 0;
    w->c.send_pending += w->to_send;
    if (w->to_send == 0)
        send_offline(w, w->send_t0);   /* no messages: go straight to the barrier */
}

static void quit(struct worker *w)
{
    for (uint32_t s = 0; s < w->nclients; s++)
        if (w->clients[s].state != CLIENT_IDLE && w->clients[s].state != CLIENT_DONE)
            client_close(&w->clients[s]);
    send_snapshot(w, 1);
    w->quitting = 1;
    ev_break(w->loop, EVBREAK_ALL);
}

static void coord_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct worker *w = io->data;
    /* Up to 8M accounts' bitmap; kept off the stack, one worker per process. */
    static uint8_t msg[sizeof(struct wire_cmd) + (1u << 20)];
    (void)loop;
    (void)revents;

    ssize_t n = recv(w->coord_fd, msg, sizeof(msg), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < (ssize_t)sizeof(struct wire_cmd)) {
        /* The coordinator is gone: nobody would read our figures. */
        w->quitting = 1;
        ev_break(w->loop, EVBREAK_ALL);
        return;
    }
    struct wire_cmd cmd;
    memcpy(&cmd, msg, sizeof(cmd));
    w->run = cmd.run;
    w->acked = cmd.seq;   /* the snapshots below already include this command's work */
    switch (cmd.op) {
    case CMD_LOGIN:
        queue_logins(w, cmd.arg == 1);
        break;
    case CMD_SEND:
        if ((size_t)n < sizeof(cmd) + cmd.bitmap_len)
            break;
        start_sending(w, msg + sizeof(cmd), cmd.bitmap_len);
        break;
    case CMD_STOP:
        w->sending = 0;
        break;
    case CMD_QUIT:
        quit(w);
        return;
    }
    send_snapshot(w, 0);   /* acknowledges the command with the counters it set */
}

static SSL_CTX *make_ssl_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    /* A benchmark against a loopback server with a self-signed certificate:
     * the chain is not verified (opts.c refuses non-loopback targets).
     * No session cache: every login is a new device, a full handshake. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return ctx;
}

int worker_main(const struct bench_opts *o, int wid, int nworkers, int fd)
{
    struct worker *w = xcalloc(1, sizeof(*w));   /* lives until the process exits */
    uint32_t accounts = (uint32_t)opts_accounts(o);

    signal(SIGPIPE, SIG_IGN);
    w->o = o;
    w->wid = wid;
    w->nworkers = nworkers;
    w->coord_fd = fd;
    w->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)getpid() << 17) ^ worker_now_ns();
    w->loop = ev_loop_new(EVFLAG_AUTO);
    w->ssl_ctx = make_ssl_ctx();
    if (!w->loop || !w->ssl_ctx) {
        fprintf(stderr, "parley-bench[%d]: cannot set up the event loop or TLS\n", wid);
        return 1;
    }
    w->nclients = accounts > (uint32_t)wid ? (accounts - (uint32_t)wid + (uint32_t)nworkers - 1) / (uint32_t)nworkers : 0;
    w->clients = xcalloc(w->nclients ? w->nclients : 1, sizeof(*w->clients));
    w->queue = xcalloc(w->nclients ? w->nclients : 1, sizeof(*w->queue));
    w->local_online = xcalloc(w->nclients ? w->nclients : 1, sizeof(*w->local_online));
    for (uint32_t s = 0; s < w->nclients; s++) {
        w->clients[s].w = w;
        w->clients[s].account = s * (uint32_t)nworkers + (uint32_t)wid;
        w->clients[s].fd = -1;
        buf_init(&w->clients[s].out);
    }
    if (o->scenario == SCENARIO_OFFLINE)
        w->seen = xcalloc(1, (size_t)o->messages / 8 + 1);
    buf_init(&w->scratch);
    w->latency = xmalloc(sizeof(*w->latency));
    w->login = xmalloc(sizeof(*w->login));
    histo_init(w->latency);
    histo_init(w->login);
    w->ramp_local = o->ramp / nworkers;

    ev_io_init(&w->coord_io, coord_cb, fd, EV_READ);
    w->coord_io.data = w;
    ev_io_start(w->loop, &w->coord_io);
    ev_timer_init(&w->tick, tick_cb, TICK_S, TICK_S);
    w->tick.data = w;
    ev_timer_start(w->loop, &w->tick);
    ev_timer_init(&w->report, report_cb, REPORT_S, REPORT_S);
    w->report.data = w;
    ev_timer_start(w->loop, &w->report);
    send_snapshot(w, 0);   /* "ready" */
    ev_run(w->loop, 0);
    return 0;
}
