/*
 * parleyctl: the operator's command line. Sends one OP_ADMIN to the router's
 * admin socket, waits for the OP_ADMIN_RESULT with the same id and prints
 * its payload (tab-separated rows, the first one column names) as an
 * aligned table. The router does the work; see envelope.h "Admin".
 *
 * For `user add` the SCRAM keys are derived here, so the password never
 * leaves this process: it is read from the argument or from stdin (without
 * echo on a terminal), turned into cred_sha1/cred_sha256 and wiped.
 *
 * Exit status: 0 done, 1 the router (or we) reported an error, 2 no answer
 * within the timeout, 64 usage error.
 */
#include "buf.h"
#include "config.h"
#include "envelope.h"
#include "evzmq.h"
#include "scram.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define EXIT_ERROR 1
#define EXIT_NO_ROUTER 2
#define EXIT_USAGE 64
#define DEFAULT_CONFIG "/etc/parley/parley.conf"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: parleyctl [-c CONFIG] [-t TIMEOUT_S] COMMAND ...\n"
            "commands:\n"
            "  user add JID [PASSWORD]    create an account (no PASSWORD: read one line from stdin)\n"
            "  user del JID               delete an account and its roster\n"
            "  user list                  list the accounts\n"
            "  sessions [USER]            list the logged-in sessions, optionally of one user\n"
            "  status                     list the router, gateways and storage workers\n"
            "  kick LOGINID|USER [REASON] end one session (full JID) or all of a user's\n"
            "  archive purge --before DATE  delete archived messages older than DATE\n"
            "                             (XEP-0082, e.g. 2026-01-31 or 2026-01-31T12:00:00Z)\n"
            "options:\n"
            "  -c CONFIG     configuration file (default: $PARLEY_CONFIG, else %s if it\n"
            "                exists, else built-in defaults); gives router.admin_endpoint\n"
            "  -t TIMEOUT_S  seconds to wait for the router's answer (default 5)\n",
            DEFAULT_CONFIG);
}

static int usage_error(const char *why)
{
    if (why)
        fprintf(stderr, "parleyctl: %s\n", why);
    usage(stderr);
    return EXIT_USAGE;
}

/* ---- password input --------------------------------------------------- */

/* The terminal state to restore if we are interrupted with echo off: the
 * one piece of state a signal handler needs (STYLE.md allows signal
 * globals). */
static struct termios saved_tty;
static volatile sig_atomic_t echo_off;

static void on_interrupt(int sig)
{
    if (echo_off)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* One line from stdin without its line end; prompt and no echo on a tty.
 * NULL at EOF. The caller wipes and frees. */
static char *read_line(const char *prompt, int tty)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    if (tty) {
        struct termios t;
        fputs(prompt, stderr);
        if (tcgetattr(STDIN_FILENO, &saved_tty) == 0) {
            t = saved_tty;
            t.c_lflag &= ~(tcflag_t)ECHO;
            echo_off = 1;
            signal(SIGINT, on_interrupt);
            signal(SIGTERM, on_interrupt);
            (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &t); /* worst case the password echoes */
        }
    }
    n = getline(&line, &cap, stdin);
    if (tty && echo_off) {
        (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
        echo_off = 0;
        fputc('\n', stderr);
    }
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line;
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static char *read_password(void)
{
    int tty = isatty(STDIN_FILENO);
    char *pw = read_line("Password: ", tty), *again;

    if (!pw || !tty)
        return pw;
    again = read_line("Password (again): ", tty);
    if (!again || strcmp(pw, again) != 0) {
        fprintf(stderr, "parleyctl: the passwords do not match\n");
        wipe_free(pw);
        pw = NULL;
    }
    wipe_free(again);
    return pw;
}

/* Sets cred_sha1 and cred_sha256 of e from password. 0, or -1 after saying why. */
static int set_creds(struct envelope *e, const char *password, unsigned iterations)
{
    static const struct { enum scram_hash h; enum envelope_str f; } kinds[] = {
        { SCRAM_SHA1, ENV_CRED_SHA1 }, { SCRAM_SHA256, ENV_CRED_SHA256 },
    };
    for (size_t i = 0; i < 2; i++) {
        struct scram_cred c;
        int rc = scram_cred_generate(kinds[i].h, password, iterations, &c);
        char *enc;
        if (rc < 0) {
            explicit_bzero(&c, sizeof(c));
            fprintf(stderr, "parleyctl: %s\n",
                    rc == SCRAM_ERR_PASSWORD ? "the password is empty"
                    : rc == SCRAM_ERR_PREP   ? "the password holds characters SASLprep (RFC 4013) prohibits"
                                             : "cannot derive the SCRAM keys");
            return -1;
        }
        enc = scram_cred_encode(&c);
        explicit_bzero(&c, sizeof(c));
        envelope_set(e, kinds[i].f, enc);
        wipe_free(enc);
    }
    return 0;
}

/* ---- the request ------------------------------------------------------ */

/* Builds the OP_ADMIN for argv (COMMAND ...). Returns the envelope, or NULL
 * with *status set (EXIT_USAGE or EXIT_ERROR, already reported). */
static struct envelope *build_request(int argc, char **argv, const struct config *conf, int *status)
{
    struct envelope *e = envelope_new(OP_ADMIN);
    const char *cmd = argc > 0 ? argv[0] : "";
    const char *sub = argc > 1 ? argv[1] : "";

    *status = EXIT_USAGE;
    if (strcmp(cmd, "user") == 0 && strcmp(sub, "add") == 0 && (argc == 3 || argc == 4)) {
        char *pw = argc == 4 ? xstrdup(argv[3]) : read_password();
        int rc;
        if (!pw) {
            if (argc == 3 && feof(stdin))
                fprintf(stderr, "parleyctl: no password on stdin\n");
            *status = EXIT_ERROR;
            goto fail;
        }
        envelope_set(e, ENV_CMD, "user_add");
        envelope_set(e, ENV_USER, argv[2]);
        rc = set_creds(e, pw, (unsigned)conf->scram_iterations);
        wipe_free(pw);
        if (rc < 0) {
            *status = EXIT_ERROR;
            goto fail;
        }
    } else if (strcmp(cmd, "user") == 0 && strcmp(sub, "del") == 0 && argc == 3) {
        envelope_set(e, ENV_CMD, "user_del");
        envelope_set(e, ENV_USER, argv[2]);
    } else if (strcmp(cmd, "user") == 0 && strcmp(sub, "list") == 0 && argc == 2) {
        envelope_set(e, ENV_CMD, "user_list");
    } else if (strcmp(cmd, "sessions") == 0 && argc <= 2) {
        envelope_set(e, ENV_CMD, "sessions");
        if (argc == 2)
            envelope_set(e, ENV_USER, argv[1]);
    } else if (strcmp(cmd, "status") == 0 && argc == 1) {
        envelope_set(e, ENV_CMD, "status");
    } else if (strcmp(cmd, "kick") == 0 && argc >= 2) {
        envelope_set(e, ENV_CMD, "kick");
        /* A LoginID is a full JID; without a resource it names a user. */
        envelope_set(e, strchr(argv[1], '/') ? ENV_FULL : ENV_USER, argv[1]);
        if (argc > 2) {
            int first = strcmp(argv[2], "--") == 0 ? 3 : 2;   /* "--" ends options, as usual */
            struct buf reason;
            buf_init(&reason);
            for (int i = first; i < argc; i++)
                buf_printf(&reason, "%s%s", i > first ? " " : "", argv[i]);
            envelope_set(e, ENV_TEXT, reason.data);
            buf_fini(&reason);
        }
    } else if (strcmp(cmd, "archive") == 0 && strcmp(sub, "purge") == 0 && argc == 4 &&
               strcmp(argv[2], "--before") == 0) {
        envelope_set(e, ENV_CMD, "archive_purge");
        envelope_set(e, ENV_TEXT, argv[3]);
    } else {
        usage_error(argc == 0 ? "no command given" : "unknown command or wrong arguments");
        goto fail;
    }
    return e;
fail:
    envelope_free(e);
    return NULL;
}

/* ---- the answer ------------------------------------------------------- */

/* Display width of s[0..n): UTF-8 code points, not bytes. */
static size_t width(const char *s, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        w += ((unsigned char)s[i] & 0xc0) != 0x80;
    return w;
}

/* Prints rows of tab-separated cells with every column padded to its
 * widest cell. Control characters from the wire are shown as '?': the
 * payload carries client-chosen text (resources, kick reasons). */
static void print_table(char *text)
{
    size_t widths[64] = { 0 };
    const size_t maxcols = sizeof(widths) / sizeof(widths[0]);
    char *line, *save = NULL;

    for (char *p = text; *p; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t' && *p != '\n') || *p == 0x7f)
            *p = '?';
    for (int pass = 0; pass < 2; pass++) {
        char *copy = xstrdup(text);
        for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            size_t col = 0;
            char *cell = line;
            for (;;) {
                char *tab = strchr(cell, '\t');
                size_t len = tab ? (size_t)(tab - cell) : strlen(cell);
                size_t w = width(cell, len);
                if (pass == 0 && col < maxcols && w > widths[col])
                    widths[col] = w;
                if (pass == 1) {
                    fwrite(cell, 1, len, stdout);
                    if (tab)
                        for (size_t pad = col < maxcols ? widths[col] - w + 2 : 2; pad > 0; pad--)
                            putchar(' ');
                }
                if (!tab)
                    break;
                cell = tab + 1;
                col++;
            }
            if (pass == 1)
                putchar('\n');
        }
        free(copy);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for the OP_ADMIN_RESULT with id; prints it. Returns the exit status. */
static int await_result(void *sock, const char *id, double timeout, const char *endpoint)
{
    double deadline = now_s() + timeout;

    for (;;) {
        zmq_pollitem_t item = { .socket = sock, .events = ZMQ_POLLIN };
        double left = deadline - now_s();
        struct envelope *e;
        int rc;

        if (left <= 0)
            break;
        rc = zmq_poll(&item, 1, (long)ceil(left * 1000));
        if (rc < 0 && errno != EINTR) {
            fprintf(stderr, "parleyctl: zmq_poll: %s\n", zmq_strerror(errno));
            return EXIT_ERROR;
        }
        if (rc <= 0)
            continue;
        struct envelope_reader rd;
        envelope_reader_init(&rd, sock, 0);
        rc = envelope_recv(&rd, &e);
        if (rc == ENVELOPE_AGAIN)
            continue;
        if (rc < 0) {
            fprintf(stderr, "parleyctl: ignoring a malformed answer: %s\n", envelope_error_string(rc));
            continue;
        }
        if (e->op != OP_ADMIN_RESULT || !str_eq(envelope_get(e, ENV_ID), id)) {
            envelope_free(e);   /* an answer to someone else's request: not ours */
            continue;
        }
        if (envelope_get(e, ENV_ERROR)) {
            fprintf(stderr, "parleyctl: %s\n", envelope_get(e, ENV_ERROR));
            rc = EXIT_ERROR;
        } else {
            if (e->payload)
                print_table(e->payload);
            rc = 0;
        }
        envelope_free(e);
        return rc;
    }
    fprintf(stderr, "parleyctl: no answer from the router at %s within %gs (is parley-router running?)\n",
            endpoint, timeout);
    return EXIT_NO_ROUTER;
}

int main(int argc, char **argv)
{
    const char *config_path = getenv("PARLEY_CONFIG");
    double timeout = 5;
    struct config *conf = NULL;
    struct envelope *req = NULL;
    void *ctx = NULL, *sock = NULL;
    char *err = NULL, *id = NULL, *end;
    int opt, status = EXIT_ERROR;

    if (!config_path || !*config_path)
        config_path = access(DEFAULT_CONFIG, F_OK) == 0 ? DEFAULT_CONFIG : NULL;
    /* '+': options end at COMMAND, so a kick reason may start with '-'. */
    while ((opt = getopt(argc, argv, "+c:t:h")) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 't':
            errno = 0;
            timeout = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(timeout > 0 && timeout <= 86400))
                return usage_error("-t wants a number of seconds, more than 0");
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return usage_error(NULL);
        }
    }
    if (config_load(config_path, &conf, &err) < 0) {
        fprintf(stderr, "parleyctl: configuration: %s\n", err);
        free(err);
        return EXIT_ERROR;
    }
    req = build_request(argc - optind, argv + optind, conf, &status);
    if (!req)
        goto out;

    id = xasprintf("ctl-%d-%lld", (int)getpid(), (long long)time(NULL));
    envelope_set(req, ENV_ID, id);
    ctx = zmq_ctx_new();
    /* A printable identity: the router answers by name, and ZeroMQ's
     * generated identities are binary. */
    char identity[64];
    snprintf(identity, sizeof(identity), "parleyctl-%d-%ld", (int)getpid(), (long)time(NULL));
    sock = ctx ? evzmq_dealer_connect(ctx, conf->router.admin_endpoint, identity) : NULL;
    if (!sock) {
        fprintf(stderr, "parleyctl: router endpoint %s: %s\n", conf->router.admin_endpoint, zmq_strerror(errno));
        status = EXIT_ERROR;
        goto out;
    }
    if (envelope_send(sock, NULL, &req) < 0) {
        fprintf(stderr, "parleyctl: cannot send to %s: %s\n", conf->router.admin_endpoint, zmq_strerror(errno));
        status = EXIT_ERROR;
        goto out;
    }
    status = await_result(sock, id, timeout, conf->router.admin_endpoint);
out:
    envelope_free(req);
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    free(id);
    config_free(conf);
    return status;
}
