/*
 * Logging: formats one complete line in a stack buffer and writes it with a
 * single write(2), so lines from one process never interleave mid-line.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_process = "parley";
static enum log_level log_threshold = LOGL_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_init(const char *process, enum log_level level)
{
    log_process = process;
    log_threshold = level;
}

void log_set_level(enum log_level level)
{
    log_threshold = level;
}

int log_enabled(enum log_level level)
{
    return level >= log_threshold;
}

int log_level_from_name(const char *name, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    char line[2048];
    struct tm tm;
    time_t now;
    size_t n;
    va_list ap;

    if (!log_enabled(level))
        return;
    now = time(NULL);
    gmtime_r(&now, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ ", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, "%s %s[%d] ", level_names[level],
                          log_process, (int)getpid());
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* A short write to stderr has nowhere better to be reported. */
    (void)!write(STDERR_FILENO, line, n);
}

const char *log_safe(const char *s, size_t len, char *out, size_t outsz)
{
    size_t max = outsz > 4 ? outsz - 4 : 0;
    size_t i, j = 0;

    if (!s) {
        snprintf(out, outsz, "(none)");
        return out;
    }
    for (i = 0; i < len && j < max; i++) {
        unsigned char c = (unsigned char)s[i];
        out[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (i < len && outsz >= 4) {
        memcpy(out + j, "...", 3);
        j += 3;
    }
    out[j] = '\0';
    return out;
}

int log_limit_ok(struct log_limit *l, unsigned long *suppressed)
{
    long now = (long)time(NULL);
    if (now == l->last) {
        l->suppressed++;
        return 0;
    }
    l->last = now;
    *suppressed = l->suppressed;
    l->suppressed = 0;
    return 1;
}
