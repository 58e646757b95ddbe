/*
 * parley-storage: one storage worker. Wires config, log, backend, schema
 * migrations and the worker loop together; run several for parallelism,
 * each with its own -n NAME.
 *
 *   parley-storage [-c CONFIG] [-n NAME]
 *
 * Exit status: 0 after SIGTERM/SIGINT, 1 when start-up fails (bad config,
 * database unreachable, migration failed: the supervisor restarts us), 64
 * on a usage error.
 */
#include "backend.h"
#include "config.h"
#include "envelope.h"
#include "log.h"
#include "cpu_sched.h"
#include "migrate.h"
#include "util.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE 64

static void usage(FILE *f)
{
    fprintf(f, "usage: parley-storage [-c CONFIG] [-n NAME]\n"
               "  -c CONFIG  configuration file (default: built-in defaults)\n"
               "  -n NAME    ZeroMQ identity towards the router (default: storage-<pid>)\n");
}

static const struct backend_ops *backend_for(const char *name)
{
    if (strcmp(name, backend_pg.name) == 0)
        return &backend_pg;
    return &backend_sqlite;   /* config.c allows only "sqlite" and "postgresql" */
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    char *default_name = NULL, *err = NULL;
    struct config *conf = NULL;
    struct storage st = { 0 };
    enum log_level level;
    int opt, rc = 1;

    while ((opt = getopt(argc, argv, "c:n:h")) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'n': st.name = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!st.name)
        st.name = default_name = xasprintf("storage-%d", (int)getpid());
    if (!*st.name || strlen(st.name) > ENVELOPE_PEER_MAX) {
        fprintf(stderr, "parley-storage: NAME must be 1 to %d bytes\n", ENVELOPE_PEER_MAX);
        free(default_name);
        return EXIT_USAGE;
    }

    log_init("storage", LOGL_INFO);
    if (config_load(config_path, &conf, &err) < 0) {
        log_error("configuration: %s", err);
        free(err);
        goto out;
    }
    if (log_level_from_name(conf->log_level, &level) == 0)
        log_set_level(level);
    cpu_sched_apply(conf->cpu_scheduling); /* before ZeroMQ starts its thread */
    st.conf = conf;
    log_info("name=%s starting (backend %s)", st.name, conf->storage.backend);

    st.backend = backend_for(conf->storage.backend)->open(conf);
    if (!st.backend)
        goto out;
    if (migrate_run(st.backend, conf->storage.migrations_dir) < 0)
        goto out;
    if (worker_open(&st) < 0)
        goto out;
    worker_run(&st);
    worker_close(&st);
    log_info("name=%s stopped", st.name);
    rc = 0;
out:
    if (st.backend)
        st.backend->ops->close(st.backend);
    config_free(conf);
    free(default_name);
    return rc;
}
