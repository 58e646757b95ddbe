/*
 * One line per event on stderr (journald or the launcher collects it):
 *   2025-06-01T10:22:31Z info gateway[3121] conn=8812 jid=... what happened
 * Callers put the connection id / JID / job id into the message themselves,
 * first, as key=value words. error = we are broken; warn = a peer or the
 * environment is; info = lifecycle; debug = everything else. A client's own
 * mistake is info so no client can flood the error log (STYLE.md "Logging").
 */
#ifndef PARLEY_LOG_H
#define PARLEY_LOG_H

#include <stddef.h>

enum log_level { LOGL_DEBUG, LOGL_INFO, LOGL_WARN, LOGL_ERROR };

/* process is the program's short name ("gateway"); borrowed, must outlive the log. */
void log_init(const char *process, enum log_level level);
void log_set_level(enum log_level level);
int log_enabled(enum log_level level);
/* "debug" | "info" | "warn" | "error" -> 0, or -1 when unknown. */
int log_level_from_name(const char *name, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) do { if (log_enabled(LOGL_DEBUG)) log_msg(LOGL_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...) log_msg(LOGL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOGL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOGL_ERROR, __VA_ARGS__)

/*
 * A repeated event (a full queue, a refused write) is logged at most once a
 * second, with how many like it were not: a flood of one kind of failure
 * must not flood the log. Embed one struct per kind of event.
 */
struct log_limit {
    long last;                 /* second of the last logged event */
    unsigned long suppressed;  /* events not logged since */
};
/* Returns 1 when this event may be logged (then *suppressed is how many
 * were skipped before it), 0 when it is to be counted and skipped. */
int log_limit_ok(struct log_limit *l, unsigned long *suppressed);

/*
 * Untrusted text for a log line: truncated to at most max bytes and with
 * anything outside printable ASCII shown as '?'. Writes into out (size
 * outsz, at least max + 4) and returns it.
 */
const char *log_safe(const char *s, size_t len, char *out, size_t outsz);

#endif
