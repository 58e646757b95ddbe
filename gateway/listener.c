/*
 * Listening sockets. Several gateway processes on one host bind the same
 * ports with SO_REUSEPORT and the kernel spreads new connections over them,
 * which keeps each process under its open-file limit (DESIGN.md).
 */
#include "listener.h"
#include "conn.h"
#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct listener {
    int fd;
    int is_direct_tls;
    ev_io io;
    struct gateway *gw;
    double last_full_log;
    struct listener *next;
};

static int is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
            return 1;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
            return a->sin6_addr.s6_addr[12] == 127;
    }
    return 0;
}

static void tune_client_socket(int fd)
{
    int one = 1;
    /* Stanzas are small and latency matters more than packet count. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* A dead peer behind a NAT is found by the kernel even when idle. */
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct listener *l = w->data;
    struct gateway *gw = l->gw;

    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                return;
            if (ev_now(loop) - l->last_full_log > 10) {
                log_warn("accept: %s", strerror(errno));
                l->last_full_log = ev_now(loop);
            }
            return;
        }
        if (gw->is_stopping || gw->nconns >= (size_t)gw->conf->gateway.max_connections) {
            if (ev_now(loop) - l->last_full_log > 10) {
                log_warn("connection refused: %zu connections (limit %d)", gw->nconns,
                         gw->conf->gateway.max_connections);
                l->last_full_log = ev_now(loop);
            }
            close(fd);
            continue;
        }
        tune_client_socket(fd);
        conn_new(gw, fd, l->is_direct_tls, is_loopback(&ss));
    }
}

int listener_open(struct gateway *gw, const char *addr, int port, int is_direct_tls)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1, fd;

    memset(&ss, 0, sizeof(ss));
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, addr, &a->sin6_addr) != 1)
            goto bad_addr;
        len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, addr, &a->sin_addr) != 1)
            goto bad_addr;
        len = sizeof(*a);
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 4096) < 0) {
        log_error("cannot listen on %s port %d: %s", addr, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct listener *l = xcalloc(1, sizeof(*l));
    l->fd = fd;
    l->is_direct_tls = is_direct_tls;
    l->gw = gw;
    ev_io_init(&l->io, on_accept, fd, EV_READ);
    l->io.data = l;
    ev_io_start(gw->loop, &l->io);
    l->next = gw->listeners;
    gw->listeners = l;
    log_info("listening on %s port %d (%s)", addr, port, is_direct_tls ? "direct TLS" : "STARTTLS");
    return 0;
bad_addr:
    log_error("gateway.bind_address %s is not an IP address", addr);
    return -1;
}

void listener_close_all(struct gateway *gw)
{
    while (gw->listeners) {
        struct listener *l = gw->listeners;
        gw->listeners = l->next;
        ev_io_stop(gw->loop, &l->io);
        close(l->fd);
        free(l);
    }
}
