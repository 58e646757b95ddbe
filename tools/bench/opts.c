/*
 * parley-bench options; see opts.h. One table lists every option; parsing
 * walks it (STYLE.md "Configuration"), then check_meaning() applies the
 * rules that tie options together.
 */
#include "opts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum opt_type { T_LONG, T_DOUBLE, T_STR, T_ENUM, T_FLAG, T_PORTS, T_PIDS };

struct opt {
    const char *name;       /* without the leading "--" */
    enum opt_type type;
    size_t off;             /* field in struct bench_opts */
    size_t size;            /* T_STR: buffer size */
    double min, max;        /* T_LONG, T_DOUBLE */
    const char *names;      /* T_ENUM: "a|b|c", values 0, 1, 2 */
};

#define O(f) offsetof(struct bench_opts, f)
#define S(f) sizeof(((struct bench_opts *)0)->f)

static const struct opt table[] = {
    { "host", T_STR, O(host), S(host), 0, 0, NULL },
    { "port", T_PORTS, O(ports), 0, 1, 65535, NULL },
    { "domain", T_STR, O(domain), S(domain), 0, 0, NULL },
    { "prefix", T_STR, O(prefix), S(prefix), 0, 0, NULL },
    { "password", T_STR, O(password), S(password), 0, 0, NULL },
    { "label", T_STR, O(label), S(label), 0, 0, NULL },
    { "users", T_LONG, O(users), 0, 1, 10000000, NULL },
    { "first", T_LONG, O(first), 0, 0, 1000000000, NULL },
    { "receivers", T_LONG, O(receivers), 0, 1, 10000000, NULL },
    { "messages", T_LONG, O(messages), 0, 1, 100000000, NULL },
    { "tls", T_ENUM, O(tls), 0, 0, 0, "starttls|plain|direct" },
    { "sasl", T_ENUM, O(sasl), 0, 0, 0, "scram-sha-256|scram-sha-1|plain" },
    { "ramp", T_DOUBLE, O(ramp), 0, 0, 10000000, NULL },
    { "inflight", T_LONG, O(inflight), 0, 1, 100000, NULL },
    { "duration", T_DOUBLE, O(duration), 0, 0, 3600, NULL },
    { "rate", T_DOUBLE, O(rate), 0, 0, 10000000, NULL },
    { "pad", T_LONG, O(pad), 0, 0, 60000, NULL },
    { "timeout", T_DOUBLE, O(timeout), 0, 0.1, 600, NULL },
    { "drain", T_DOUBLE, O(drain), 0, 0, 600, NULL },
    { "settle", T_DOUBLE, O(settle), 0, 0, 600, NULL },
    { "max-time", T_DOUBLE, O(max_time), 0, 1, 86400, NULL },
    { "procs", T_LONG, O(procs), 0, 1, OPTS_MAX_PROCS, NULL },
    { "sources", T_LONG, O(sources), 0, 1, 254, NULL },
    { "mem-pids", T_PIDS, O(mem_pids), 0, 1, 4194304, NULL },
    { "db", T_STR, O(db), S(db), 0, 0, NULL },
    { "create", T_FLAG, O(create), 0, 0, 0, NULL },
    { "no-archive", T_FLAG, O(no_archive), 0, 0, 0, NULL },
    { "iterations", T_LONG, O(iterations), 0, 4096, 1000000, NULL },
    { "json", T_STR, O(json), S(json), 0, 0, NULL },
    { "plot", T_STR, O(plot), S(plot), 0, 0, NULL },
    { "quiet", T_FLAG, O(quiet), 0, 0, 0, NULL },
};

static const char usage[] =
    "usage: parley-bench SCENARIO [OPTIONS]\n"
    "scenarios:\n"
    "  connect   log --users accounts in (at --ramp per second), hold them --duration s\n"
    "  chat      log --users accounts in, send chat messages between them at --rate msgs/s\n"
    "            for --duration s; latency p50/p90/p99/max, losses\n"
    "  offline   --users senders store --messages messages for --receivers offline\n"
    "            accounts, then the receivers log in and drain them\n"
    "target (loopback only):\n"
    "  --host ADDR         127.0.0.1 (any 127.x.y.z or ::1)\n"
    "  --port P[,P...]     5222; several ports are used round-robin\n"
    "  --domain D          localhost\n"
    "  --tls MODE          starttls | plain (no TLS: the server must allow it) | direct; starttls\n"
    "  --sasl MECH         scram-sha-256 | scram-sha-1 | plain; scram-sha-256\n"
    "accounts (PREFIX<index>@DOMAIN, all with one password):\n"
    "  --prefix P          bench        --first N   first index, 0\n"
    "  --password PW       bench-secret\n"
    "  --users N           100          clients (offline: senders)\n"
    "  --receivers N       10           offline: receivers (indexes after the senders)\n"
    "  --db SPEC           sqlite:PATH or pg:CONNINFO of a Parley store: with --create the\n"
    "                      accounts are written there first; offline counts stored rows\n"
    "  --create            create/refresh the accounts in --db (one shared credential)\n"
    "  --no-archive        chat: the server keeps no archive; do not wait for it in --db\n"
    "  --iterations N      4096         PBKDF2 iterations of the created credential\n"
    "load:\n"
    "  --ramp R            0            logins started per second in total (0: no limit)\n"
    "  --inflight N        100          handshakes in progress per process\n"
    "  --duration S        10           connect: hold time; chat: sending time\n"
    "  --rate R            chat: msgs/s offered in total (1000); offline: 0 = as fast as taken (0)\n"
    "  --messages M        1000         offline: messages to store\n"
    "  --pad N             0            filler characters added to each message body\n"
    "  --procs K           1            generator processes (each below its open-file limit)\n"
    "  --sources K         1            bind clients to 127.0.0.1 .. 127.0.0.K round-robin\n"
    "limits:\n"
    "  --timeout S         10           per login and per awaited answer\n"
    "  --drain S           10           longest wait for messages still in flight\n"
    "  --max-time S        600          hard limit on the whole run\n"
    "output:\n"
    "  --mem-pids P[,P...]              server PIDs whose RSS is summed before and after login\n"
    "  --settle S          2            wait before the memory sample after login\n"
    "  --label NAME        parley       server name in the report\n"
    "  --json FILE                      the report as JSON\n"
    "  --plot FILE.png                  latency histogram (needs gnuplot)\n"
    "  --quiet                          no progress line\n";

const char *opts_usage(void)
{
    return usage;
}

static void defaults(struct bench_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->scenario = SCENARIO_CONNECT;
    strcpy(o->host, "127.0.0.1");
    o->ports[0] = 5222;
    o->nports = 1;
    strcpy(o->domain, "localhost");
    strcpy(o->prefix, "bench");
    strcpy(o->password, "bench-secret");
    strcpy(o->label, "parley");
    o->users = 100;
    o->receivers = 10;
    o->messages = 1000;
    o->tls = TLS_STARTTLS;
    o->sasl = SASL_SCRAM_SHA256;
    o->inflight = 100;
    o->duration = 10;
    o->rate = -1;   /* not given: check_meaning picks the scenario's default */
    o->timeout = 10;
    o->drain = 10;
    o->settle = 2;
    o->max_time = 600;
    o->procs = 1;
    o->sources = 1;
    o->iterations = 4096;
}

static int fail(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errsz, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
    return OPTS_ERR_USAGE;
}

static int parse_number(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v != v)
        return -1;
    *out = v;
    return 0;
}

/* "a,b,c" of integers in [min, max] into out (at most cap). */
static int parse_int_list(const char *s, int *out, int cap, double min, double max, int *n)
{
    char tmp[512];
    if (strlen(s) >= sizeof(tmp) || !*s)
        return -1;
    strcpy(tmp, s);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        double v;
        if (*n >= cap || parse_number(tok, &v) < 0 || v != (double)(long)v || v < min || v > max)
            return -1;
        out[(*n)++] = (int)v;
    }
    return *n > 0 ? 0 : -1;
}

static int enum_index(const char *names, const char *v)
{
    size_t vlen = strlen(v);
    int i = 0;
    for (const char *p = names; *p; i++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == vlen && strncmp(p, v, len) == 0)
            return i;
        if (!bar)
            break;
        p = bar + 1;
    }
    return -1;
}

static int set_option(struct bench_opts *o, const struct opt *t, const char *v, char *err, size_t errsz)
{
    char *field = (char *)o + t->off;
    double d;

    switch (t->type) {
    case T_LONG:
        if (parse_number(v, &d) < 0 || d != (double)(long)d)
            return fail(err, errsz, "--%s: '%s' is not an integer", t->name, v);
        if (d < t->min || d > t->max)
            return fail(err, errsz, "--%s: %s is out of range %.0f..%.0f", t->name, v, t->min, t->max);
        *(long *)(void *)field = (long)d;
        return 0;
    case T_DOUBLE:
        if (parse_number(v, &d) < 0)
            return fail(err, errsz, "--%s: '%s' is not a number", t->name, v);
        if (d < t->min || d > t->max)
            return fail(err, errsz, "--%s: %s is out of range %g..%g", t->name, v, t->min, t->max);
        *(double *)(void *)field = d;
        return 0;
    case T_STR:
        if (strlen(v) >= t->size)
            return fail(err, errsz, "--%s: longer than %zu characters", t->name, t->size - 1);
        strcpy(field, v);
        return 0;
    case T_ENUM: {
        int i = enum_index(t->names, v);
        if (i < 0)
            return fail(err, errsz, "--%s: '%s' is not one of %s", t->name, v, t->names);
        *(int *)(void *)field = i;
        return 0;
    }
    case T_FLAG:
        return 0;   /* handled by the caller: a flag takes no value */
    case T_PORTS:
        if (parse_int_list(v, o->ports, OPTS_MAX_PORTS, t->min, t->max, &o->nports) < 0)
            return fail(err, errsz, "--%s: '%s' is not a list of up to %d ports", t->name, v, OPTS_MAX_PORTS);
        return 0;
    case T_PIDS:
        if (parse_int_list(v, o->mem_pids, OPTS_MAX_PIDS, t->min, t->max, &o->nmem_pids) < 0)
            return fail(err, errsz, "--%s: '%s' is not a list of up to %d PIDs", t->name, v, OPTS_MAX_PIDS);
        return 0;
    }
    return fail(err, errsz, "--%s: unknown option type", t->name);
}

static int is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

static int is_name_safe(const char *s)
{
    /* Account names and the domain go into XML and SQL as parameters, but
     * also into JIDs built by printf: keep them to what needs no escaping. */
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'))
            return 0;
    return 1;
}

static int is_label_safe(const char *s)
{
    /* It goes into the JSON report unescaped. */
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '.' || *p == '_'))
            return 0;
    return 1;
}

static int check_meaning(struct bench_opts *o, char *err, size_t errsz)
{
    if (!is_loopback(o->host))
        return fail(err, errsz, "--host %s: only loopback targets (127.0.0.0/8, ::1) are allowed", o->host);
    if (!*o->domain || !is_name_safe(o->domain))
        return fail(err, errsz, "--domain: use lower-case letters, digits, '-', '.', '_'");
    if (!*o->prefix || !is_name_safe(o->prefix))
        return fail(err, errsz, "--prefix: use lower-case letters, digits, '-', '.', '_'");
    if (strpbrk(o->plot, "'\n"))
        return fail(err, errsz, "--plot: the file name must not contain a quote or a newline");
    if (!*o->label || !is_label_safe(o->label))
        return fail(err, errsz, "--label: use letters, digits, '-', '.', '_'");
    if (!*o->password)
        return fail(err, errsz, "--password: must not be empty");
    if (o->rate < 0)
        o->rate = o->scenario == SCENARIO_CHAT ? 1000 : 0;
    if (o->scenario == SCENARIO_CHAT && o->users < 2)
        return fail(err, errsz, "chat needs at least 2 users");
    if (o->procs > o->users)
        o->procs = o->users;   /* an idle process would only wait */
    if (o->create && !*o->db)
        return fail(err, errsz, "--create needs --db");
    if (*o->db && strncmp(o->db, "sqlite:", 7) != 0 && strncmp(o->db, "pg:", 3) != 0)
        return fail(err, errsz, "--db: expected sqlite:PATH or pg:CONNINFO");
    if (o->sasl == SASL_PLAIN && o->tls == TLS_PLAIN)
        return fail(err, errsz, "--sasl plain needs TLS (servers refuse PLAIN in the clear)");
    if (o->first + opts_accounts(o) > 2000000000L)
        return fail(err, errsz, "--first + accounts exceeds 2000000000");
    return 0;
}

int opts_parse(int argc, char **argv, struct bench_opts *o, char *err, size_t errsz)
{
    int have_scenario = 0;

    defaults(o);
    if (errsz)
        err[0] = '\0';
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return OPTS_HELP;
        if (strncmp(a, "--", 2) != 0) {
            static const char scenarios[] = "connect|chat|offline";
            int s = enum_index(scenarios, a);
            if (have_scenario)
                return fail(err, errsz, "unexpected argument '%s'", a);
            if (s < 0)
                return fail(err, errsz, "unknown scenario '%s' (%s)", a, scenarios);
            o->scenario = (enum bench_scenario)s;
            have_scenario = 1;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const struct opt *t = NULL;
        for (size_t k = 0; k < sizeof(table) / sizeof(table[0]); k++)
            if (strlen(table[k].name) == nlen && strncmp(table[k].name, name, nlen) == 0)
                t = &table[k];
        if (!t)
            return fail(err, errsz, "unknown option '%.*s'", (int)(nlen + 2), a);
        if (t->type == T_FLAG) {
            if (eq)
                return fail(err, errsz, "--%s takes no value", t->name);
            *(int *)(void *)((char *)o + t->off) = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc)
                return fail(err, errsz, "--%s needs a value", t->name);
            v = argv[++i];
        }
        int rc = set_option(o, t, v, err, errsz);
        if (rc < 0)
            return rc;
    }
    if (!have_scenario)
        return fail(err, errsz, "no scenario given (connect|chat|offline)");
    return check_meaning(o, err, errsz);
}

long opts_accounts(const struct bench_opts *o)
{
    return o->users + (o->scenario == SCENARIO_OFFLINE ? o->receivers : 0);
}

const char *opts_scenario_name(enum bench_scenario s)
{
    static const char *const n[] = { "connect", "chat", "offline" };
    return (unsigned)s < 3 ? n[s] : "?";
}

const char *opts_tls_name(enum bench_tls t)
{
    static const char *const n[] = { "starttls", "plain", "direct" };
    return (unsigned)t < 3 ? n[t] : "?";
}

const char *opts_sasl_name(enum bench_sasl s)
{
    static const char *const n[] = { "scram-sha-256", "scram-sha-1", "plain" };
    return (unsigned)s < 3 ? n[s] : "?";
}
