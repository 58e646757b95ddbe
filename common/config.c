/*
 * Table-driven configuration loader (see config.h). The table below is the
 * complete list of options; deploy/parley.conf.example documents each row.
 */
#include "config.h"
#include "util.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#ifndef PARLEY_MIGRATIONS_DIR
#define PARLEY_MIGRATIONS_DIR "/usr/share/parley/migrations"
#endif

enum opt_type { OPT_STR, OPT_INT, OPT_BOOL, OPT_ENUM, OPT_DEVICE_CLASSES };

struct option {
    const char *path;         /* "section.key" */
    enum opt_type type;
    size_t offset;            /* into struct config */
    const char *dflt;         /* as text; NULL = empty string for OPT_STR */
    long long min, max;       /* OPT_INT bounds */
    const char *choices;      /* OPT_ENUM: "a|b|c" */
};

#define O(f) offsetof(struct config, f)

static const struct option options[] = {
    { "domain", OPT_STR, O(domain), "localhost", 0, 0, NULL },
    { "log.level", OPT_ENUM, O(log_level), "info", 0, 0, "debug|info|warn|error" },
    { "cpu_scheduling", OPT_ENUM, O(cpu_scheduling), "batch", 0, 0, "batch|normal" },
    { "scram_iterations", OPT_INT, O(scram_iterations), "4096", 4096, 1000000, NULL },

    { "router.gateway_endpoint", OPT_STR, O(router.gateway_endpoint), "ipc://run/gateways.sock", 0, 0, NULL },
    { "router.storage_endpoint", OPT_STR, O(router.storage_endpoint), "ipc://run/storage.sock", 0, 0, NULL },
    { "router.admin_endpoint", OPT_STR, O(router.admin_endpoint), "ipc://run/admin.sock", 0, 0, NULL },
    { "router.heartbeat_ms", OPT_INT, O(router.heartbeat_ms), "1000", 100, 60000, NULL },
    { "router.peer_timeout_ms", OPT_INT, O(router.peer_timeout_ms), "5000", 300, 600000, NULL },
    { "router.job_timeout_ms", OPT_INT, O(router.job_timeout_ms), "30000", 100, 3600000, NULL },
    { "router.job_queue_max", OPT_INT, O(router.job_queue_max), "100000", 1, 100000000, NULL },

    { "gateway.router_endpoint", OPT_STR, O(gateway.router_endpoint), "ipc://run/gateways.sock", 0, 0, NULL },
    { "gateway.bind_address", OPT_STR, O(gateway.bind_address), "127.0.0.1", 0, 0, NULL },
    { "gateway.starttls_port", OPT_INT, O(gateway.starttls_port), "5222", 0, 65535, NULL },
    { "gateway.tls_port", OPT_INT, O(gateway.tls_port), "5223", 0, 65535, NULL },
    { "gateway.tls_cert", OPT_STR, O(gateway.tls_cert), "tls/cert.pem", 0, 0, NULL },
    { "gateway.tls_key", OPT_STR, O(gateway.tls_key), "tls/key.pem", 0, 0, NULL },
    { "gateway.allow_plain_loopback", OPT_BOOL, O(gateway.allow_plain_loopback), "false", 0, 0, NULL },
    { "gateway.max_stanza_bytes", OPT_INT, O(gateway.max_stanza_bytes), "262144", 1024, 16777216, NULL },
    { "gateway.max_depth", OPT_INT, O(gateway.max_depth), "32", 4, 1000, NULL },
    { "gateway.max_connections", OPT_INT, O(gateway.max_connections), "19000", 1, 10000000, NULL },
    { "gateway.auth_fail_delay_ms", OPT_INT, O(gateway.auth_fail_delay_ms), "1000", 0, 60000, NULL },
    { "gateway.max_auth_failures", OPT_INT, O(gateway.max_auth_failures), "3", 1, 100, NULL },
    { "gateway.router_buffer_bytes", OPT_INT, O(gateway.router_buffer_bytes), "16777216", 0, 1073741824, NULL },
    { "gateway.handshake_timeout_ms", OPT_INT, O(gateway.handshake_timeout_ms), "60000", 1000, 3600000, NULL },

    { "storage.router_endpoint", OPT_STR, O(storage.router_endpoint), "ipc://run/storage.sock", 0, 0, NULL },
    { "storage.backend", OPT_ENUM, O(storage.backend), "sqlite", 0, 0, "sqlite|postgresql" },
    { "storage.sqlite_path", OPT_STR, O(storage.sqlite_path), "parley.db", 0, 0, NULL },
    { "storage.sqlite_synchronous", OPT_ENUM, O(storage.sqlite_synchronous), "normal", 0, 0, "normal|full" },
    { "storage.pg_conninfo", OPT_STR, O(storage.pg_conninfo), "dbname=parley", 0, 0, NULL },
    { "storage.migrations_dir", OPT_STR, O(storage.migrations_dir), PARLEY_MIGRATIONS_DIR, 0, 0, NULL },

    { "sessions.conflict", OPT_ENUM, O(sessions.conflict), "kick_old", 0, 0, "kick_old|reject_new" },
    { "sessions.max_per_user", OPT_INT, O(sessions.max_per_user), "0", 0, 100000, NULL },
    { "sessions.device_classes", OPT_DEVICE_CLASSES, O(sessions), NULL, 0, 0, NULL },

    { "roster.max_items", OPT_INT, O(roster.max_items), "1000", 1, 1000000, NULL },
    { "offline.quota", OPT_INT, O(offline.quota), "1000", 0, 10000000, NULL },
    { "archive.enabled", OPT_BOOL, O(archive.enabled), "true", 0, 0, NULL },
    { "archive.retention_days", OPT_INT, O(archive.retention_days), "0", 0, 36500, NULL },

    { "routing.bare_jid", OPT_ENUM, O(routing.bare_jid), "all", 0, 0, "all|highest_priority" },

    { "idle.timeout", OPT_INT, O(idle.timeout), "300", 2, 86400, NULL },

    { "sm.resume_timeout", OPT_INT, O(sm.resume_timeout), "300", 0, 86400, NULL },
    { "sm.max_queue", OPT_INT, O(sm.max_queue), "1000", 1, 1000000, NULL },
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

static char **str_field(struct config *c, const struct option *o)
{
    return (char **)((char *)c + o->offset);
}

static int *int_field(struct config *c, const struct option *o)
{
    return (int *)((char *)c + o->offset);
}

static int enum_allows(const char *choices, const char *v)
{
    size_t n = strlen(v);
    const char *p = choices;
    while (*p) {
        const char *end = strchr(p, '|');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return 1;
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
}

static void free_device_classes(struct config *c)
{
    for (size_t i = 0; i < c->sessions.ndevice_classes; i++) {
        free(c->sessions.device_classes[i].prefix);
        free(c->sessions.device_classes[i].name);
    }
    free(c->sessions.device_classes);
    c->sessions.device_classes = NULL;
    c->sessions.ndevice_classes = 0;
}

/* sessions.device_classes: {"1": "ios", ...}. A prefix is what a login
 * name carries before '#'; the name becomes the bound resource, so it must
 * be a short, plain word. */
static int set_device_classes(struct config *c, const struct option *o, yajl_val node, char **err)
{
    free_device_classes(c);
    if (!node)
        return 0;
    if (!YAJL_IS_OBJECT(node)) {
        *err = xasprintf("%s: expected an object of prefix: class name", o->path);
        return -1;
    }
    c->sessions.device_classes = xcalloc(node->u.object.len, sizeof(*c->sessions.device_classes));
    for (size_t i = 0; i < node->u.object.len; i++) {
        const char *prefix = node->u.object.keys[i];
        yajl_val v = node->u.object.values[i];
        const char *name = YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : NULL;
        size_t plen = strlen(prefix);
        if (plen == 0 || plen > 16 || strchr(prefix, '#') || strchr(prefix, '@') || strchr(prefix, '/')) {
            *err = xasprintf("%s: prefix \"%s\" must be 1-16 characters without # @ /", o->path, prefix);
            return -1;
        }
        if (!name || !*name || strlen(name) > 64 || strpbrk(name, "/@ \t")) {
            *err = xasprintf("%s.%s: the class name must be a word of 1-64 characters", o->path, prefix);
            return -1;
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(c->sessions.device_classes[k].name, name) == 0) {
                *err = xasprintf("%s: class name \"%s\" is used twice", o->path, name);
                return -1;
            }
        }
        c->sessions.device_classes[i].prefix = xstrdup(prefix);
        c->sessions.device_classes[i].name = xstrdup(name);
        c->sessions.ndevice_classes++;
    }
    return 0;
}

const struct config_device_class *config_device_class(const struct config *c, const char *prefix, size_t len)
{
    for (size_t i = 0; i < c->sessions.ndevice_classes; i++) {
        const struct config_device_class *d = &c->sessions.device_classes[i];
        if (strlen(d->prefix) == len && memcmp(d->prefix, prefix, len) == 0)
            return d;
    }
    return NULL;
}

/* Applies one value given as text (defaults) or as a JSON node. */
static int set_option(struct config *c, const struct option *o, const char *text, yajl_val node, char **err)
{
    switch (o->type) {
    case OPT_STR:
    case OPT_ENUM: {
        const char *v = text;
        if (node) {
            if (!YAJL_IS_STRING(node)) {
                *err = xasprintf("%s: expected a string", o->path);
                return -1;
            }
            v = YAJL_GET_STRING(node);
        }
        if (o->type == OPT_ENUM && !enum_allows(o->choices, v)) {
            *err = xasprintf("%s: \"%s\" is not one of %s", o->path, v, o->choices);
            return -1;
        }
        free(*str_field(c, o));
        *str_field(c, o) = xstrdup(v ? v : "");
        return 0;
    }
    case OPT_INT: {
        long long v;
        if (node) {
            if (!YAJL_IS_INTEGER(node)) {
                *err = xasprintf("%s: expected an integer", o->path);
                return -1;
            }
            v = YAJL_GET_INTEGER(node);
        } else {
            v = strtoll(text, NULL, 10);
        }
        if (v < o->min || v > o->max) {
            *err = xasprintf("%s: %lld is out of range [%lld, %lld]", o->path, v, o->min, o->max);
            return -1;
        }
        *int_field(c, o) = (int)v;
        return 0;
    }
    case OPT_DEVICE_CLASSES:
        return set_device_classes(c, o, node, err);
    case OPT_BOOL:
        if (node) {
            if (!YAJL_IS_TRUE(node) && !YAJL_IS_FALSE(node)) {
                *err = xasprintf("%s: expected true or false", o->path);
                return -1;
            }
            *int_field(c, o) = YAJL_IS_TRUE(node);
        } else {
            *int_field(c, o) = strcmp(text, "true") == 0;
        }
        return 0;
    }
    return -1;
}

static const struct option *find_option(const char *path)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strcmp(options[i].path, path) == 0)
            return &options[i];
    return NULL;
}

static int is_section(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strncmp(options[i].path, name, n) == 0 && options[i].path[n] == '.')
            return 1;
    return 0;
}

/* Walks the top-level object and its sections; every leaf must be a row. */
static int apply_tree(struct config *c, yajl_val root, char **err)
{
    if (!YAJL_IS_OBJECT(root)) {
        *err = xstrdup("the configuration must be a JSON object");
        return -1;
    }
    for (size_t i = 0; i < root->u.object.len; i++) {
        const char *key = root->u.object.keys[i];
        yajl_val v = root->u.object.values[i];

        if (YAJL_IS_OBJECT(v) && is_section(key)) {
            for (size_t j = 0; j < v->u.object.len; j++) {
                char *path = xasprintf("%s.%s", key, v->u.object.keys[j]);
                const struct option *o = find_option(path);
                int rc = -1;
                if (!o)
                    *err = xasprintf("%s: unknown option", path);
                else
                    rc = set_option(c, o, NULL, v->u.object.values[j], err);
                free(path);
                if (rc < 0)
                    return -1;
            }
            continue;
        }
        const struct option *o = find_option(key);
        if (!o) {
            *err = xasprintf("%s: unknown option", key);
            return -1;
        }
        if (set_option(c, o, NULL, v, err) < 0)
            return -1;
    }
    return 0;
}

static char *read_file(const char *path, char **err)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t len = 0, cap = 0, n;

    if (!f) {
        *err = xasprintf("%s: %s", path, strerror(errno));
        return NULL;
    }
    do {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            data = xrealloc(data, cap);
        }
        n = fread(data + len, 1, cap - len - 1, f);
        len += n;
    } while (n > 0);
    if (ferror(f)) {
        *err = xasprintf("%s: read error", path);
        free(data);
        data = NULL;
    } else {
        data[len] = '\0';
    }
    fclose(f);
    return data;
}

int config_load(const char *path, struct config **out, char **err)
{
    struct config *c = xcalloc(1, sizeof(*c));
    char *text = NULL;
    yajl_val root = NULL;
    char errbuf[512];
    int rc = -1;

    *out = NULL;
    *err = NULL;
    for (size_t i = 0; i < NOPTIONS; i++)
        if (set_option(c, &options[i], options[i].dflt ? options[i].dflt : "", NULL, err) < 0)
            goto out;
    if (path) {
        text = read_file(path, err);
        if (!text)
            goto out;
        /* yajl_tree_parse accepts C and C++ style comments. */
        root = yajl_tree_parse(text, errbuf, sizeof(errbuf));
        if (!root) {
            for (char *p = errbuf; *p; p++)
                if (*p == '\n')
                    *p = ' ';
            *err = xasprintf("%s: not valid JSON: %s", path, errbuf);
            goto out;
        }
        if (apply_tree(c, root, err) < 0)
            goto out;
    }
    *out = c;
    c = NULL;
    rc = 0;
out:
    yajl_tree_free(root);
    free(text);
    config_free(c);
    return rc;
}

void config_free(struct config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < NOPTIONS; i++)
        if (options[i].type == OPT_STR || options[i].type == OPT_ENUM)
            free(*str_field(c, &options[i]));
    free_device_classes(c);
    free(c);
}
