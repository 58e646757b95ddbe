/*
 * Command line of parley-bench: one table of options (name, type, bounds,
 * field), walked by opts_parse, which also checks what the options mean
 * together (a chat needs two accounts, --create needs --db, the target is
 * on loopback). No I/O: errors come back as text for main.c to print.
 */
#ifndef PARLEY_BENCH_OPTS_H
#define PARLEY_BENCH_OPTS_H

#include <stddef.h>
#include <stdint.h>

#define OPTS_MAX_PORTS 16
#define OPTS_MAX_PIDS 64
#define OPTS_MAX_PROCS 64

enum { OPTS_OK = 0, OPTS_HELP = 1, OPTS_ERR_USAGE = -1 };

enum bench_scenario { SCENARIO_CONNECT, SCENARIO_CHAT, SCENARIO_OFFLINE };
enum bench_tls { TLS_STARTTLS, TLS_PLAIN, TLS_DIRECT };
enum bench_sasl { SASL_SCRAM_SHA256, SASL_SCRAM_SHA1, SASL_PLAIN };

struct bench_opts {
    enum bench_scenario scenario;
    char host[64];                    /* numeric loopback address */
    int ports[OPTS_MAX_PORTS];        /* clients spread round-robin */
    int nports;
    char domain[256];
    char prefix[64];                  /* accounts are PREFIX<index>@DOMAIN */
    char password[128];
    char label[64];                   /* server name for the report */
    long users;                       /* connect/chat: clients; offline: senders */
    long first;                       /* first account index */
    long receivers;                   /* offline: receiving accounts (after the senders) */
    long messages;                    /* offline: messages to store */
    enum bench_tls tls;
    enum bench_sasl sasl;
    double ramp;                      /* logins started per second, all processes; 0 = no limit */
    long inflight;                    /* handshakes in progress per process */
    double duration;                  /* connect: hold; chat: send for this long (s) */
    double rate;                      /* chat: total msgs/s offered; offline: 0 = as fast as taken */
    long pad;                         /* filler characters added to each body */
    double timeout;                   /* per login and per server answer (s) */
    double drain;                     /* longest wait for outstanding messages (s) */
    double settle;                    /* wait before the "after" memory sample (s) */
    double max_time;                  /* hard limit on the whole run (s) */
    long procs;                       /* generator processes */
    long sources;                     /* source addresses 127.0.0.1 .. 127.0.0.N */
    int mem_pids[OPTS_MAX_PIDS];      /* server processes whose RSS is summed */
    int nmem_pids;
    char db[512];                     /* "sqlite:PATH" or "pg:CONNINFO" of a Parley store */
    int create;                       /* create the accounts in db first */
    int no_archive;                   /* chat: do not wait for archive rows in db */
    long iterations;                  /* PBKDF2 iterations of created credentials */
    char json[512];                   /* --json FILE, "" = none */
    char plot[512];                   /* --plot FILE.png, "" = none */
    int quiet;                        /* no progress line */
};

/* Fills *o from argv (argv[0] is the program name). Returns OPTS_OK,
 * OPTS_HELP (--help given: print opts_usage), or OPTS_ERR_USAGE with a
 * one-line reason in err (errsz bytes). */
int opts_parse(int argc, char **argv, struct bench_opts *o, char *err, size_t errsz);

/* The usage text (static). */
const char *opts_usage(void);

/* Total accounts the scenario uses: users (+ receivers for offline). */
long opts_accounts(const struct bench_opts *o);

const char *opts_scenario_name(enum bench_scenario s);
const char *opts_tls_name(enum bench_tls t);
const char *opts_sasl_name(enum bench_sasl s);

#endif
