/*
 * Client sockets, TLS and buffers; see client.h.
 *
 * The I/O callback is the one place a connection is torn down: everything
 * below it (the parser's callbacks, login.c, traffic.c) only sets
 * want_close, and io_cb closes after the read or write that triggered it.
 */
#include "client.h"
#include "login.h"
#include "xml.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK 16384

static void io_cb(struct ev_loop *loop, ev_io *io, int revents);
static void read_all(struct client *c);

static void watch(struct client *c, int events)
{
    if (c->events == events)
        return;
    ev_io_stop(c->w->loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    if (events)
        ev_io_start(c->w->loop, &c->io);
    c->events = events;
}

static int make_socket(struct client *c)
{
    const struct bench_opts *o = c->w->o;
    int port = o->ports[c->account % (uint32_t)o->nports];
    int v6 = strchr(o->host, ':') != NULL;
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0)
        return -1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* latency matters; failure only slows */
    if (v6) {
        struct sockaddr_in6 dst = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
        inet_pton(AF_INET6, o->host, &dst.sin6_addr);
        if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)
            goto fail;
        return fd;
    }
    if (o->sources > 1) {
        /* Source 127.0.0.(1 + a % K): each source address has its own
         * ephemeral port range toward the server's address and port.
         * IP_BIND_ADDRESS_NO_PORT defers the port choice to connect(), so
         * the kernel picks per 4-tuple instead of reserving a port per bind. */
        struct sockaddr_in src = { .sin_family = AF_INET };
        src.sin_addr.s_addr = htonl(0x7f000001u + c->account % (uint32_t)o->sources);
        (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)); /* old kernels: bind picks */
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
            goto fail;
    }
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, o->host, &dst.sin_addr);
    if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)
        goto fail;
    return fd;
fail:
    close(fd);
    return -1;
}

void client_open(struct client *c)
{
    c->t_start = worker_now();
    c->deadline = c->t_start + c->w->o->timeout;
    c->state = CLIENT_CONNECTING;
    c->fd = make_socket(c);
    if (c->fd < 0) {
        c->want_close = 1;
        worker_on_closed(c->w, c, FAIL_CONNECT);
        c->state = CLIENT_DONE;
        return;
    }
    ev_io_init(&c->io, io_cb, c->fd, 0);
    c->io.data = c;
    c->events = 0;
    watch(c, EV_WRITE);
}

void client_fail(struct client *c, enum fail_reason why)
{
    if (c->state == CLIENT_DONE || c->want_close)
        return;
    c->want_close = 1;
    worker_on_closed(c->w, c, why);
}

void client_close(struct client *c)
{
    if (c->fd >= 0) {
        watch(c, 0);
        if (c->ssl) {
            SSL_free(c->ssl);
            c->ssl = NULL;
        }
        close(c->fd);
        c->fd = -1;
    }
    xml_free(c->xml);
    c->xml = NULL;
    buf_fini(&c->out);
    buf_init(&c->out);
    if (c->scram) {
        scram_client_fini(c->scram);
        free(c->scram);
        c->scram = NULL;
    }
    c->state = CLIENT_DONE;
}

/* Writes queued output; enables EV_WRITE while some remains. */
static void flush(struct client *c)
{
    while (c->out.len > 0 && !c->want_close) {
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_write(c->ssl, c->out.data, (int)(c->out.len > INT32_MAX ? INT32_MAX : c->out.len));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                    break;
                client_fail(c, c->state == CLIENT_ONLINE ? FAIL_DROPPED : FAIL_TLS);
                return;
            }
            n = r;
        } else {
            n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    break;
                client_fail(c, c->state == CLIENT_ONLINE ? FAIL_DROPPED : FAIL_STREAM);
                return;
            }
        }
        buf_consume(&c->out, (size_t)n);
    }
    if (c->out.len == 0 && c->out.cap > 4096)
        buf_shrink(&c->out, 0);   /* idle clients keep no buffer */
    watch(c, EV_READ | (c->out.len ? EV_WRITE : 0));
}

void client_send(struct client *c, const char *data, size_t len)
{
    if (c->want_close || c->state == CLIENT_DONE)
        return;
    buf_append(&c->out, data, len);
    if (c->state != CLIENT_TLS && c->state != CLIENT_CONNECTING)
        flush(c);
}

void client_send_str(struct client *c, const char *s)
{
    client_send(c, s, strlen(s));
}

static void handshake(struct client *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->state = CLIENT_LOGIN;
        c->is_tls = 1;
        watch(c, EV_READ);
        login_tls_done(c);
        if (!c->want_close)
            flush(c);
        /* Records read along with the handshake's last flight sit in
         * OpenSSL's buffer, where the level-triggered watcher cannot see them. */
        if (!c->want_close)
            read_all(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        watch(c, EV_READ);
    else if (e == SSL_ERROR_WANT_WRITE)
        watch(c, EV_WRITE);
    else
        client_fail(c, FAIL_TLS);
}

void client_start_tls(struct client *c)
{
    c->ssl = SSL_new(c->w->ssl_ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        client_fail(c, FAIL_TLS);
        return;
    }
    SSL_set_tlsext_host_name(c->ssl, c->w->o->domain);
    SSL_set_connect_state(c->ssl);
    c->state = CLIENT_TLS;
    handshake(c);
}

/* Feeds n bytes to the parser, restarting it as login.c asks. */
static void feed(struct client *c, const char *data, size_t n)
{
    size_t off = 0;
    while (off < n && !c->want_close) {
        size_t used = 0;
        int rc = xml_feed(c->xml, data + off, n - off, &used);
        off += used;
        if (rc == XML_RESTARTED) {
            if (c->restart_tls)
                return;   /* bytes after <proceed/> are plaintext injected before TLS: drop */
            continue;
        }
        if (rc < 0) {
            client_fail(c, c->state == CLIENT_ONLINE ? FAIL_DROPPED : FAIL_PROTOCOL);
            return;
        }
        break;
    }
}

/* Reads until the socket (or TLS) has nothing more. */
static void read_all(struct client *c)
{
    char data[READ_CHUNK];
    for (;;) {
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_read(c->ssl, data, sizeof(data));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ)
                    return;
                if (e == SSL_ERROR_WANT_WRITE) {
                    watch(c, EV_READ | EV_WRITE);
                    return;
                }
                client_fail(c, c->state == CLIENT_ONLINE ? FAIL_DROPPED : FAIL_STREAM);
                return;
            }
            n = r;
        } else {
            n = recv(c->fd, data, sizeof(data), 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            if (n <= 0) {
                client_fail(c, c->state == CLIENT_ONLINE ? FAIL_DROPPED : FAIL_STREAM);
                return;
            }
        }
        feed(c, data, (size_t)n);
        if (c->want_close)
            return;
        if (c->restart_tls) {
            c->restart_tls = 0;
            client_start_tls(c);
            return;
        }
    }
}

static void connected(struct client *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
        client_fail(c, FAIL_CONNECT);
        return;
    }
    c->state = CLIENT_LOGIN;
    watch(c, EV_READ);
    login_connected(c);
    if (!c->want_close && c->state != CLIENT_TLS)
        flush(c);
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct client *c = io->data;
    (void)loop;

    if (c->state == CLIENT_CONNECTING) {
        connected(c);
    } else if (c->state == CLIENT_TLS) {
        handshake(c);
    } else {
        if (revents & EV_READ)
            read_all(c);
        if (!c->want_close && c->state != CLIENT_TLS && (revents & EV_WRITE || c->out.len))
            flush(c);
    }
    if (c->want_close)
        client_close(c);
}
