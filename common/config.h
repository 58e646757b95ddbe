/*
 * The configuration: one JSON file (comments allowed), a section per
 * process. Every option is one row of the table in config.c (name, type,
 * default, bounds); loading walks the table, and an unknown key or an
 * out-of-range value stops startup naming the option's path and the reason.
 * After startup the struct is treated as const. deploy/parley.conf.example
 * documents every option; a new option goes into both in the same commit.
 *
 * Relative paths are relative to the process's working directory (the state
 * directory: the launcher and the systemd units start every process there).
 */
#ifndef PARLEY_CONFIG_H
#define PARLEY_CONFIG_H

#include <stddef.h>

struct config_router {
    char *gateway_endpoint;   /* ROUTER socket gateways connect to */
    char *storage_endpoint;   /* ROUTER socket storage workers connect to */
    char *admin_endpoint;     /* ROUTER socket parleyctl connects to */
    int heartbeat_ms;
    int peer_timeout_ms;
    int job_timeout_ms;
    int job_queue_max;
};

struct config_gateway {
    char *router_endpoint;
    char *bind_address;
    int starttls_port;        /* 0 disables */
    int tls_port;             /* 0 disables */
    char *tls_cert;
    char *tls_key;
    int allow_plain_loopback; /* authenticate without TLS on loopback only */
    int max_stanza_bytes;
    int max_depth;
    int max_connections;
    int auth_fail_delay_ms;
    int max_auth_failures;
    int router_buffer_bytes;  /* what clients send while the router is away */
    int handshake_timeout_ms; /* stream + TLS + SASL + bind must finish in time */
};

struct config_storage {
    char *router_endpoint;
    char *backend;            /* "sqlite" | "postgresql" */
    char *sqlite_path;
    char *sqlite_synchronous; /* "normal" | "full": when a commit waits for fsync */
    char *pg_conninfo;
    char *migrations_dir;
};

struct config_device_class {
    char *prefix;             /* login name prefix before '#', e.g. "1" */
    char *name;               /* the resource it binds, e.g. "ios" */
};

struct config_sessions {
    char *conflict;           /* "kick_old" | "reject_new" */
    int max_per_user;         /* 0 = unlimited */
    struct config_device_class *device_classes; /* empty = off */
    size_t ndevice_classes;
};

struct config_roster {
    int max_items;
};

struct config_offline {
    int quota;                /* messages kept per user */
};

struct config_archive {
    int enabled;              /* archive chat messages (XEP-0313) */
    int retention_days;       /* 0 = forever */
};

struct config_routing {
    char *bare_jid;           /* "all" | "highest_priority" */
};

struct config_idle {
    int timeout;              /* seconds a bound client may stay silent: pinged at half, closed at the end */
};

struct config_sm {
    int resume_timeout;       /* seconds a dropped XEP-0198 session waits to be resumed; 0 = no resumption */
    int max_queue;            /* unacknowledged stanzas kept per session; more ends the session */
};

struct config {
    char *domain;
    char *log_level;
    char *cpu_scheduling;     /* "batch" | "normal" (cpu_sched.h) */
    int scram_iterations;
    struct config_router router;
    struct config_gateway gateway;
    struct config_storage storage;
    struct config_sessions sessions;
    struct config_routing routing;
    struct config_idle idle;
    struct config_sm sm;
    struct config_roster roster;
    struct config_offline offline;
    struct config_archive archive;
};

/* The device class whose prefix is prefix[0..len), or NULL. */
const struct config_device_class *config_device_class(const struct config *c, const char *prefix, size_t len);

/*
 * Loads path (NULL: defaults only). Returns 0 and a new config the caller
 * owns, or -1 with *err set to a heap message naming the option and reason.
 */
int config_load(const char *path, struct config **out, char **err);
void config_free(struct config *c);

#endif
