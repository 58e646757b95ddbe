/*
 * The generator processes seen from the coordinator; see fleet.h.
 */
#include "fleet.h"
#include "util.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define POLL_MS 20

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* sum_counters adds the uint64 fields as an array: they must come first. */
_Static_assert(offsetof(struct counters, t_first_login) % sizeof(uint64_t) == 0 &&
                   offsetof(struct counters, t_first_login) ==
                       offsetof(struct counters, send_pending) + sizeof(uint64_t),
               "struct counters: the uint64 counters must precede the times");

static void sum_counters(struct fleet *fl)
{
    struct counters *s = &fl->sum;
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < fl->n; i++) {
        const struct counters *c = &fl->snap[i].c;
        uint64_t *dst = (uint64_t *)(void *)s;
        const uint64_t *src = (const uint64_t *)(const void *)c;
        /* The uint64 fields come first (see worker.h); the times follow. */
        size_t nfields = offsetof(struct counters, t_first_login) / sizeof(uint64_t);
        for (size_t k = 0; k < nfields; k++)
            dst[k] += src[k];
#define MIN_T(f) if (c->f > 0 && (s->f == 0 || c->f < s->f)) s->f = c->f
#define MAX_T(f) if (c->f > s->f) s->f = c->f
        MIN_T(t_first_login);
        MAX_T(t_last_login);
        MIN_T(t_first_send);
        MAX_T(t_last_send);
        MIN_T(t_first_rx);
        MAX_T(t_last_rx);
    }
}

static void progress(struct fleet *fl, double now)
{
    const struct counters *s = &fl->sum;
    if (fl->o->quiet || now < fl->next_progress)
        return;
    fl->next_progress = now + 1.0;
    uint64_t rx_rate = s->received - fl->last_rx;
    fl->last_rx = s->received;
    struct histo *h = xmalloc(sizeof(*h));
    histo_init(h);
    for (int i = 0; i < fl->n; i++)
        histo_merge(h, &fl->snap[i].latency);
    fprintf(stderr,
            "[%6.1fs] %-8s online %llu  login ok %llu fail %llu pending %llu | sent %llu recv %llu (%llu/s) "
            "p99 %.2f ms\n",
            now - fl->r->t_start, fl->phase, (unsigned long long)s->online, (unsigned long long)s->login_ok,
            (unsigned long long)s->login_failed, (unsigned long long)s->login_pending, (unsigned long long)s->sent,
            (unsigned long long)s->received, (unsigned long long)rx_rate, (double)histo_percentile(h, 99) / 1e6);
    free(h);
}

static void read_worker(struct fleet *fl, int i)
{
    static uint8_t msg[sizeof(struct wire_snapshot) + (1u << 20)];
    ssize_t n = recv(fl->fds[i], msg, sizeof(msg), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        fl->alive[i] = 0;
        if (!fl->is_final[i])
            fl->r->workers_lost++;
        return;
    }
    uint32_t type;
    memcpy(&type, msg, sizeof(type));
    if (type == WIRE_SNAPSHOT && (size_t)n == sizeof(struct wire_snapshot)) {
        memcpy(&fl->snap[i], msg, sizeof(struct wire_snapshot));
        if (fl->snap[i].is_final)
            fl->is_final[i] = 1;
    } else if (type == WIRE_BITMAP && (size_t)n >= sizeof(struct wire_bitmap)) {
        struct wire_bitmap h;
        memcpy(&h, msg, sizeof(h));
        uint32_t len = (uint32_t)((size_t)opts_accounts(fl->o) + 7) / 8;
        if (h.bitmap_len == len && (size_t)n == sizeof(h) + len) {
            for (uint32_t k = 0; k < len; k++)
                fl->bitmap[k] |= msg[sizeof(h) + k];
            fl->bitmaps++;
        }
    }
}

/* Reads snapshots for up to POLL_MS and refreshes the sums and the progress line. */
void fleet_pump(struct fleet *fl)
{
    struct pollfd p[OPTS_MAX_PROCS];
    int idx[OPTS_MAX_PROCS], np = 0;
    for (int i = 0; i < fl->n; i++)
        if (fl->alive[i]) {
            p[np].fd = fl->fds[i];
            p[np].events = POLLIN;
            idx[np++] = i;
        }
    if (np == 0) {
        usleep(POLL_MS * 1000);
        return;
    }
    if (poll(p, (nfds_t)np, POLL_MS) > 0)
        for (int k = 0; k < np; k++)
            if (p[k].revents)
                for (int rounds = 0; rounds < 64 && fl->alive[idx[k]]; rounds++) {
                    int before = fl->alive[idx[k]];
                    struct pollfd one = { fl->fds[idx[k]], POLLIN, 0 };
                    if (poll(&one, 1, 0) <= 0)
                        break;
                    read_worker(fl, idx[k]);
                    if (!before)
                        break;
                }
    sum_counters(fl);
    progress(fl, worker_now());
}

static int any_alive(const struct fleet *fl)
{
    for (int i = 0; i < fl->n; i++)
        if (fl->alive[i])
            return 1;
    return 0;
}

/* Every live worker has handled the last command: the sums are current. */
int fleet_all_acked(const struct fleet *fl)
{
    for (int i = 0; i < fl->n; i++)
        if (fl->alive[i] && fl->snap[i].acked != fl->cmd_seq)
            return 0;
    return 1;
}

int fleet_out_of_time(const struct fleet *fl)
{
    return interrupted || worker_now() >= fl->deadline || !any_alive(fl);
}

void fleet_broadcast(struct fleet *fl, uint32_t op, uint32_t arg, const uint8_t *bitmap, uint32_t len)
{
    size_t total = sizeof(struct wire_cmd) + len;
    uint8_t *msg = xmalloc(total);
    struct wire_cmd cmd = { op, ++fl->cmd_seq, arg, fl->r->run, len };
    memcpy(msg, &cmd, sizeof(cmd));
    if (len)
        memcpy(msg + sizeof(cmd), bitmap, len);
    for (int i = 0; i < fl->n; i++)
        if (fl->alive[i] && send(fl->fds[i], msg, total, MSG_NOSIGNAL) < 0)
            fl->alive[i] = 0;
    free(msg);
}

/* Waits up to s seconds (bounded by --max-time), reading snapshots. */
void fleet_wait(struct fleet *fl, double s)
{
    double end = worker_now() + s;
    while (worker_now() < end && !fleet_out_of_time(fl))
        fleet_pump(fl);
}

void fleet_finish(struct fleet *fl)
{
    struct result *r = fl->r;
    r->online_end = fl->sum.online;   /* before the workers close their clients */
    fleet_broadcast(fl, CMD_QUIT, 0, NULL, 0);
    double end = worker_now() + 10;
    for (;;) {
        int waiting = 0;
        for (int i = 0; i < fl->n; i++)
            waiting += fl->alive[i] && !fl->is_final[i];
        if (!waiting || worker_now() > end)
            break;
        fleet_pump(fl);
    }
    for (int i = 0; i < fl->n; i++) {
        int st;
        if (fl->alive[i] && !fl->is_final[i])
            kill(fl->pids[i], SIGKILL);   /* stuck past the grace period: our own child, by PID */
        close(fl->fds[i]);
        waitpid(fl->pids[i], &st, 0);
    }
    sum_counters(fl);
    r->total = fl->sum;
    histo_init(&r->latency);
    histo_init(&r->login);
    for (int i = 0; i < fl->n; i++) {
        histo_merge(&r->latency, &fl->snap[i].latency);
        histo_merge(&r->login, &fl->snap[i].login);
    }
    r->wall_s = worker_now() - r->t_start;
    free(fl->snap);
    free(fl->bitmap);
    fl->snap = NULL;
    fl->bitmap = NULL;
}

static int spawn(struct fleet *fl);

int fleet_spawn(struct fleet *fl, const struct bench_opts *o, struct result *r)
{
    memset(fl, 0, sizeof(*fl));
    fl->o = o;
    fl->r = r;
    fl->n = (int)o->procs;
    fl->phase = "start";
    fl->deadline = r->t_start + o->max_time;
    fl->snap = xcalloc((size_t)fl->n, sizeof(*fl->snap));
    fl->bitmap = xcalloc(1, (size_t)opts_accounts(o) / 8 + 1);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (spawn(fl) < 0) {
        for (int i = 0; i < fl->n; i++)
            if (fl->alive[i])
                kill(fl->pids[i], SIGKILL);   /* our own children, by PID */
        for (int i = 0; i < fl->n; i++)
            if (fl->pids[i] > 0)
                waitpid(fl->pids[i], NULL, 0);
        free(fl->snap);
        free(fl->bitmap);
        return -1;
    }
    return 0;
}

static int spawn(struct fleet *fl)
{
    for (int i = 0; i < fl->n; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
            perror("parley-bench: socketpair");
            return -1;
        }
        int big = 4 << 20;
        (void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big)); /* bitmaps; the default may do */
        (void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            perror("parley-bench: fork");
            close(sv[0]);
            close(sv[1]);
            return -1;
        }
        if (pid == 0) {
            /* Die with the coordinator, whatever kills it. */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            for (int k = 0; k < i; k++)
                close(fl->fds[k]);
            close(sv[0]);
            signal(SIGINT, SIG_IGN);   /* Ctrl-C stops the run through the coordinator */
            _exit(worker_main(fl->o, i, fl->n, sv[1]));
        }
        close(sv[1]);
        fl->fds[i] = sv[0];
        fl->pids[i] = pid;
        fl->alive[i] = 1;
    }
    return 0;
}

