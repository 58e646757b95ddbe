/*
 * One generator process of parley-bench: a libev loop holding thousands of
 * XMPP clients (client.c: sockets and TLS; login.c: stream negotiation;
 * traffic.c: what an online client sends and receives). The coordinator
 * (coord.c, through fleet.c) forks the workers and drives them through the
 * scenario's phases over a socketpair: it sends commands (struct wire_cmd), a worker
 * answers with snapshots of its counters and histograms (struct
 * wire_snapshot) every 200 ms and whenever a phase's work is done.
 *
 * Account a of the run (0-based; its JID is PREFIX<first+a>@DOMAIN) lives in
 * worker a % K, in local slot a / K.
 */
#ifndef PARLEY_BENCH_WORKER_H
#define PARLEY_BENCH_WORKER_H

#include <ev.h>
#include <openssl/ssl.h>
#include <stdint.h>

#include "buf.h"
#include "histo.h"
#include "opts.h"
#include "scram_client.h"

/* Why a login failed or an online client went away. */
enum fail_reason {
    FAIL_CONNECT,    /* TCP connect refused or reset */
    FAIL_TLS,        /* TLS handshake */
    FAIL_STREAM,     /* stream error, or closed by the server during login */
    FAIL_AUTH,       /* SASL failure or a bad server signature */
    FAIL_BIND,       /* bind or session refused */
    FAIL_TIMEOUT,    /* no answer within --timeout */
    FAIL_PROTOCOL,   /* something we did not expect (feature missing, bad XML) */
    FAIL_DROPPED,    /* an online client lost its connection */
    FAIL_MAX
};

/* Counters of one worker; the coordinator sums them over workers. Times are
 * CLOCK_MONOTONIC seconds (one clock for all processes), 0 = never. */
struct counters {
    uint64_t login_started, login_ok, login_failed;
    uint64_t online;                  /* clients online now */
    uint64_t fails[FAIL_MAX];
    uint64_t sent;                    /* messages written to a socket */
    uint64_t send_skipped;            /* not sent: sender's output backed up or offline */
    uint64_t received;                /* our messages of this run received */
    uint64_t delayed;                 /* ... of which carried a <delay/> stamp (offline) */
    uint64_t duplicates;              /* offline: a message received twice */
    uint64_t bounced;                 /* message errors returned to a sender */
    uint64_t stale;                   /* parley-bench messages of an earlier run */
    uint64_t pongs;                   /* offline: ping barriers answered */
    uint64_t login_pending;           /* clients of the last CMD_LOGIN not yet online or failed */
    uint64_t send_pending;            /* offline: messages not yet sent plus barriers unanswered */
    double t_first_login, t_last_login;
    double t_first_send, t_last_send;
    double t_first_rx, t_last_rx;
};

/* Worker -> coordinator after a chat login phase: type WIRE_BITMAP, then
 * bitmap_len bytes with bit a set for each online account a of this worker. */
struct wire_bitmap {
    uint32_t type;
    uint32_t wid;
    uint32_t bitmap_len;
};

/* Coordinator -> worker. */
enum wire_op {
    CMD_LOGIN = 1,        /* log in the phase's clients (arg: 0 = all/senders, 1 = receivers) */
    CMD_SEND,             /* start sending; followed by the online bitmap for chat */
    CMD_STOP,             /* chat: stop sending, keep receiving */
    CMD_QUIT,             /* close everything and exit */
};

struct wire_cmd {
    uint32_t op;
    uint32_t seq;         /* numbers the commands; snapshots echo the last one handled */
    uint32_t arg;
    uint32_t run;         /* run id for the stamps */
    uint32_t bitmap_len;  /* bytes of bitmap following this header */
};

enum wire_type { WIRE_SNAPSHOT = 1, WIRE_BITMAP };

/* Worker -> coordinator: type WIRE_SNAPSHOT. */
struct wire_snapshot {
    uint32_t type;
    uint32_t wid;
    uint32_t is_final;
    uint32_t acked;         /* seq of the last command handled before this snapshot */
    struct counters c;
    struct histo latency;   /* message delivery, ns */
    struct histo login;     /* connect to online, ns */
};

enum client_state {
    CLIENT_IDLE,          /* not started (or not ours to start yet) */
    CLIENT_CONNECTING,    /* TCP connect in progress */
    CLIENT_TLS,           /* TLS handshake in progress */
    CLIENT_LOGIN,         /* stream negotiation: see login.c's steps */
    CLIENT_ONLINE,        /* bound, presence sent and confirmed */
    CLIENT_DONE,          /* closed; counted once */
};

struct worker;

struct client {
    struct worker *w;
    uint32_t account;             /* run account index */
    enum client_state state;
    int step;                     /* login.c step while CLIENT_LOGIN */
    int fd;
    int events;                   /* what io watches now */
    int want_close;               /* close requested from inside a callback */
    int restart_tls;              /* <proceed/> seen: TLS starts after this read */
    int is_tls;
    int awaiting_pong;            /* offline: barrier ping outstanding */
    int needs_session;            /* server wants the legacy session iq after bind */
    ev_io io;
    SSL *ssl;
    struct xml_parser *xml;
    struct buf out;
    struct scram_client *scram;
    double t_start;               /* monotonic s: connect started */
    double deadline;              /* monotonic s: login must finish; 0 = none */
};

struct worker {
    const struct bench_opts *o;
    int wid, nworkers;
    uint32_t run;
    struct ev_loop *loop;
    SSL_CTX *ssl_ctx;
    struct scram_keycache keycache;
    uint64_t rng;

    struct client *clients;       /* local slots */
    uint32_t nclients;
    uint32_t nsenders;            /* offline: accounts below this index send */

    /* login scheduling */
    uint32_t *queue;              /* local slots waiting to start */
    uint32_t qlen, qpos;
    uint32_t inflight;            /* started, not yet online or failed */
    double login_t0;              /* monotonic s of CMD_LOGIN */
    double ramp_local;            /* logins/s for this worker; 0 = unlimited */

    /* sending */
    int sending;
    double send_t0;
    uint64_t to_send;             /* offline: messages this worker still has */
    uint64_t next_msg;            /* offline: next global message index to consider */
    uint64_t seq;
    uint8_t *online;              /* chat: bitmap of online accounts (all workers) */
    uint32_t *local_online;       /* chat: local slots online when sending began */
    uint32_t nlocal_online;
    uint8_t *seen;                /* offline: bitmap of message indexes received */

    struct counters c;
    struct histo *latency, *login;
    struct buf scratch;           /* traffic.c builds outgoing messages here */
    unsigned ticks;

    int coord_fd;
    uint32_t acked;               /* last command handled */
    ev_io coord_io;
    ev_timer tick;                /* 1 ms: login starts, sends, deadlines */
    ev_timer report;              /* 200 ms snapshot */
    int quitting;
};

/* Runs worker wid of nworkers on fd (the coordinator's socketpair end);
 * returns the process exit status. Never returns to the coordinator's code. */
int worker_main(const struct bench_opts *o, int wid, int nworkers, int fd);

/* The worker's xorshift generator (recipients, senders, SCRAM nonces:
 * none of it needs to be unpredictable). */
uint64_t worker_rand(struct worker *w);

/* CLOCK_MONOTONIC now, in seconds and in nanoseconds. */
double worker_now(void);
uint64_t worker_now_ns(void);

/* Called by login.c and client.c as a client's fate is decided. */
void worker_on_online(struct worker *w, struct client *c);
void worker_on_closed(struct worker *w, struct client *c, enum fail_reason why);
/* Sends a snapshot now (a phase's work just finished). */
void worker_report_now(struct worker *w);

#endif
