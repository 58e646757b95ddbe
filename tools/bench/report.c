/*
 * Run reports; see report.h.
 */
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const fail_names[FAIL_MAX] = {
    "connect", "tls", "stream", "auth", "bind", "timeout", "protocol", "dropped",
};

static double per_s(double n, double t0, double t1)
{
    return t1 > t0 ? n / (t1 - t0) : 0.0;
}

void report_figures(const struct result *r, struct figures *f)
{
    const struct counters *t = &r->total;
    memset(f, 0, sizeof(*f));
    f->login_rate = per_s((double)r->after_login.login_ok, r->t_login0, r->after_login.t_last_login);
    uint64_t accounted = t->received + t->bounced;
    f->lost = t->sent > accounted ? t->sent - accounted : 0;
    if (r->o->scenario == SCENARIO_CHAT) {
        f->send_rate = per_s((double)t->sent, r->t_send0, r->t_send_end);
        f->recv_rate = per_s((double)t->received, r->t_send0, t->t_last_rx > r->t_send_end ? t->t_last_rx
                                                                                            : r->t_send_end);
    }
    if (r->o->scenario == SCENARIO_OFFLINE) {
        f->store_rate = per_s((double)t->sent, r->t_send0, r->t_stored);
        f->drain_rate = per_s((double)t->received, r->t_drain0, t->t_last_rx);
        f->offline_complete = t->sent == (uint64_t)r->o->messages && t->received == t->sent &&
                              t->delayed == t->received && t->duplicates == 0;
    }
    if (r->has_archive) {
        f->archive_caught_up = r->archived_rows >= 2 * (long long)t->received;
        f->archive_lag = r->t_archived - r->t_send_end;
    }
    if (r->has_mem && r->mem_sessions > 0)
        f->mem_per_session = (double)(r->mem_after_kb - r->mem_before_kb) * 1024.0 / (double)r->mem_sessions;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

void report_print(FILE *out, const struct result *r)
{
    const struct bench_opts *o = r->o;
    const struct counters *t = &r->total;
    struct figures f;
    report_figures(r, &f);

    fprintf(out, "\n== parley-bench %s against %s (%s:%d%s, %s, %s), %ld procs, %.1f s\n",
            opts_scenario_name(o->scenario), o->label, o->host, o->ports[0], o->nports > 1 ? ",..." : "",
            opts_tls_name(o->tls), opts_sasl_name(o->sasl), o->procs, r->wall_s);
    fprintf(out, "login      %" PRIu64 " ok, %" PRIu64 " failed of %" PRIu64 " started; %.0f logins/s; "
                 "login time p50 %.2f ms p99 %.2f ms max %.2f ms\n",
            t->login_ok, t->login_failed, t->login_started, f.login_rate, ms(histo_percentile(&r->login, 50)),
            ms(histo_percentile(&r->login, 99)), ms(r->login.max == 0 ? 0 : r->login.max));
    int any = 0;
    for (int i = 0; i < FAIL_MAX; i++)
        if (t->fails[i]) {
            fprintf(out, "%s%s %" PRIu64, any ? ", " : "failures   ", fail_names[i], t->fails[i]);
            any = 1;
        }
    if (any)
        fputc('\n', out);
    if (o->scenario == SCENARIO_CONNECT)
        fprintf(out, "held       %" PRIu64 " connections at the end (fewest during the hold %" PRIu64 ")\n",
                r->online_end, r->online_min_hold);
    if (r->has_mem)
        fprintf(out, "memory     server RSS %ld -> %ld KiB with %" PRIu64 " sessions: %.0f bytes per session\n",
                r->mem_before_kb, r->mem_after_kb, r->mem_sessions, f.mem_per_session);
    if (o->scenario == SCENARIO_CHAT) {
        fprintf(out, "messages   offered %.0f/s; sent %" PRIu64 " (%.0f/s), received %" PRIu64 " (%.0f/s), "
                     "lost %" PRIu64 ", bounced %" PRIu64 ", not sent %" PRIu64 "\n",
                o->rate, t->sent, f.send_rate, t->received, f.recv_rate, f.lost, t->bounced, t->send_skipped);
        fprintf(out, "latency    p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  mean %.3f ms\n",
                ms(histo_percentile(&r->latency, 50)), ms(histo_percentile(&r->latency, 90)),
                ms(histo_percentile(&r->latency, 99)), ms(r->latency.n ? r->latency.max : 0),
                histo_mean(&r->latency) / 1e6);
        if (r->has_archive)
            fprintf(out, "archive    %lld rows for %" PRIu64 " messages (2 each expected): %s %.2f s after the "
                         "last send\n",
                    r->archived_rows, t->received, f.archive_caught_up ? "caught up" : "STILL BEHIND", f.archive_lag);
    }
    if (o->scenario == SCENARIO_OFFLINE) {
        static const char *const how[] = { "not checked", "rows in the store", "ping barrier" };
        fprintf(out, "store      %" PRIu64 " sent (%" PRIu64 " not sent); stored in %.2f s: %.0f msgs/s (%s)\n",
                t->sent, t->send_skipped, r->t_stored > r->t_send0 ? r->t_stored - r->t_send0 : 0.0, f.store_rate,
                how[r->store_check]);
        fprintf(out, "drain      %" PRIu64 " received (%" PRIu64 " with <delay/>, %" PRIu64 " duplicates, %" PRIu64
                     " lost, %" PRIu64 " bounced) in %.2f s: %.0f msgs/s; %s\n",
                t->received, t->delayed, t->duplicates, f.lost, t->bounced,
                t->t_last_rx > r->t_drain0 ? t->t_last_rx - r->t_drain0 : 0.0,
                f.drain_rate, f.offline_complete ? "every message arrived once" : "INCOMPLETE");
    }
    if (t->stale)
        fprintf(out, "note       %" PRIu64 " messages of earlier runs were received and ignored\n", t->stale);
    if (r->workers_lost)
        fprintf(out, "note       %d generator processes died; their figures are missing\n", r->workers_lost);
}

static void json_histo(FILE *f, const struct histo *h)
{
    fprintf(f, "{\"count\": %" PRIu64 ", \"p50_ms\": %.4f, \"p90_ms\": %.4f, \"p99_ms\": %.4f, \"p999_ms\": %.4f, "
               "\"max_ms\": %.4f, \"mean_ms\": %.4f}",
            h->n, ms(histo_percentile(h, 50)), ms(histo_percentile(h, 90)), ms(histo_percentile(h, 99)),
            ms(histo_percentile(h, 99.9)), ms(h->n ? h->max : 0), histo_mean(h) / 1e6);
}

int report_json(const char *path, const struct result *r)
{
    const struct bench_opts *o = r->o;
    const struct counters *t = &r->total;
    struct figures fg;
    report_figures(r, &fg);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\n  \"scenario\": \"%s\", \"label\": \"%s\", \"run\": %" PRIu32 ", \"wall_s\": %.3f,\n",
            opts_scenario_name(o->scenario), o->label, r->run, r->wall_s);
    fprintf(f, "  \"config\": {\"host\": \"%s\", \"port\": %d, \"ports\": %d, \"tls\": \"%s\", \"sasl\": \"%s\", "
               "\"users\": %ld, \"receivers\": %ld, \"messages\": %ld, \"rate\": %.1f, \"ramp\": %.1f, "
               "\"duration\": %.1f, \"procs\": %ld, \"sources\": %ld, \"pad\": %ld},\n",
            o->host, o->ports[0], o->nports, opts_tls_name(o->tls), opts_sasl_name(o->sasl), o->users, o->receivers,
            o->messages, o->rate, o->ramp, o->duration, o->procs, o->sources, o->pad);
    fprintf(f, "  \"login\": {\"started\": %" PRIu64 ", \"ok\": %" PRIu64 ", \"failed\": %" PRIu64
               ", \"rate_per_s\": %.1f, \"time\": ",
            t->login_started, t->login_ok, t->login_failed, fg.login_rate);
    json_histo(f, &r->login);
    fprintf(f, "},\n  \"failures\": {");
    for (int i = 0; i < FAIL_MAX; i++)
        fprintf(f, "%s\"%s\": %" PRIu64, i ? ", " : "", fail_names[i], t->fails[i]);
    fprintf(f, "},\n  \"connections\": {\"held_end\": %" PRIu64 ", \"min_during_hold\": %" PRIu64 "},\n",
            r->online_end, r->online_min_hold);
    if (r->has_mem) {
        fprintf(f, "  \"memory\": {\"rss_before_kib\": %ld, \"rss_after_kib\": %ld, \"sessions\": %" PRIu64
                   ", \"bytes_per_session\": %.1f, \"pids\": [",
                r->mem_before_kb, r->mem_after_kb, r->mem_sessions, fg.mem_per_session);
        for (int i = 0; i < o->nmem_pids; i++)
            fprintf(f, "%s{\"pid\": %d, \"before_kib\": %ld, \"after_kib\": %ld}", i ? ", " : "", o->mem_pids[i],
                    r->pid_before_kb[i], r->pid_after_kb[i]);
        fprintf(f, "]},\n");
    }
    fprintf(f, "  \"messages\": {\"sent\": %" PRIu64 ", \"not_sent\": %" PRIu64 ", \"received\": %" PRIu64
               ", \"lost\": %" PRIu64 ", \"bounced\": %" PRIu64 ", \"duplicates\": %" PRIu64 ", \"delayed\": %" PRIu64
               ", \"stale\": %" PRIu64 ", \"send_rate_per_s\": %.1f, \"recv_rate_per_s\": %.1f, \"latency\": ",
            t->sent, t->send_skipped, t->received, fg.lost, t->bounced, t->duplicates, t->delayed, t->stale,
            fg.send_rate, fg.recv_rate);
    json_histo(f, &r->latency);
    fprintf(f, "},\n");
    if (r->has_archive)
        fprintf(f, "  \"archive\": {\"rows\": %lld, \"caught_up\": %s, \"lag_s\": %.3f},\n", r->archived_rows,
                fg.archive_caught_up ? "true" : "false", fg.archive_lag);
    if (o->scenario == SCENARIO_OFFLINE)
        fprintf(f, "  \"offline\": {\"store_rate_per_s\": %.1f, \"store_s\": %.3f, \"store_check\": \"%s\", "
                   "\"stored_rows\": %lld, \"drain_rate_per_s\": %.1f, \"drain_s\": %.3f, \"complete\": %s},\n",
                fg.store_rate, r->t_stored - r->t_send0,
                r->store_check == STORE_CHECK_DB ? "db" : r->store_check == STORE_CHECK_BARRIER ? "barrier" : "none",
                r->stored_rows, fg.drain_rate, t->t_last_rx > r->t_drain0 ? t->t_last_rx - r->t_drain0 : 0.0,
                fg.offline_complete ? "true" : "false");
    fprintf(f, "  \"workers_lost\": %d\n}\n", r->workers_lost);
    return fclose(f) == 0 ? 0 : -1;
}

int report_plot(const char *path, const struct result *r, char *err, size_t errsz)
{
    const struct histo *h = r->o->scenario == SCENARIO_CONNECT ? &r->login : &r->latency;
    char data[] = "/tmp/parley-bench-plot-XXXXXX";
    int fd = mkstemp(data);
    if (h->n == 0) {
        snprintf(err, errsz, "no latencies to plot");
        if (fd >= 0) {
            close(fd);
            unlink(data);
        }
        return -1;
    }
    if (fd < 0) {
        snprintf(err, errsz, "mkstemp: %s", strerror(errno));
        return -1;
    }
    FILE *df = fdopen(fd, "w");
    for (size_t i = 0; i < HISTO_BUCKETS; i++)
        if (h->counts[i])
            fprintf(df, "%.6f %.6f %" PRIu64 "\n", (double)histo_bucket_low(i) / 1e6,
                    (double)(histo_bucket_high(i) + 1) / 1e6, h->counts[i]);
    fclose(df);
    FILE *gp = popen("gnuplot 2>/dev/null", "w");
    int rc = -1;
    if (gp) {
        fprintf(gp, "set terminal png size 900,500\nset output '%s'\nset logscale x\nset xlabel '%s (ms)'\n"
                    "set ylabel 'count'\nset title 'parley-bench %s vs %s: p50 %.3f ms, p99 %.3f ms, n=%" PRIu64 "'\n"
                    "set style fill solid\nunset key\n"
                    "plot '%s' using (($1+$2)/2):3:($2-$1) with boxes\n",
                path, r->o->scenario == SCENARIO_CONNECT ? "login time" : "delivery latency",
                opts_scenario_name(r->o->scenario), r->o->label, ms(histo_percentile(h, 50)),
                ms(histo_percentile(h, 99)), h->n, data);
        int st = pclose(gp);
        if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            rc = 0;
        else
            snprintf(err, errsz, "gnuplot failed or is not installed (apt-get install gnuplot-nox)");
    } else {
        snprintf(err, errsz, "cannot run gnuplot: %s", strerror(errno));
    }
    unlink(data);
    return rc;
}
