/*
 * Offline message jobs (RFC 6121 §8.5.2.1.1): offline_put, offline_get,
 * offline_del. The router decides what is stored and when it is deleted
 * (only after the client acknowledged it, DESIGN.md "Storage"); here the
 * quota and the unique id make a redelivered put harmless.
 */
#include "jobs.h"
#include "jobs_kinds.h"
#include "buf.h"
#include "envelope.h"
#include "log.h"
#include "stanza.h"
#include "util.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int jobs_ids_parse(const char *payload, size_t len, char ***ids, size_t *n)
{
    char **out = NULL;
    size_t count = 0;
    const char *p = payload, *end = payload + len;

    *ids = NULL;
    *n = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        if (stop > p) {
            char *id = xstrndup(p, (size_t)(stop - p));
            out = xrealloc(out, (count + 1) * sizeof(*out));
            out[count++] = id;
            /* strlen catches a NUL inside the line. */
            if (strlen(id) != (size_t)(stop - p) || !jobs_id_is_valid(id)) {
                for (size_t i = 0; i < count; i++)
                    free(out[i]);
                free(out);
                return JOBS_ERR_ID;
            }
        }
        p = stop + 1;
    }
    *ids = out;
    *n = count;
    return JOBS_OK;
}

void jobs_offline_xml(const struct offline_list *l, struct buf *out)
{
    if (l->n == 0) {
        buf_append_str(out, "<messages/>");
        return;
    }
    buf_append_str(out, "<messages>");
    for (size_t i = 0; i < l->n; i++) {
        const struct offline_msg *m = &l->msgs[i];
        buf_append_str(out, "<msg id='");
        stanza_escape(out, m->id, strlen(m->id), 1);
        buf_printf(out, "' stamp='%" PRId64 "'>", m->stamp);
        buf_append_str(out, m->xml);   /* one element: jobs_offline_drop_malformed */
        buf_append_str(out, "</msg>");
    }
    buf_append_str(out, "</messages>");
}

int jobs_offline_put(const struct envelope *job, struct backend_write *w)
{
    w->kind = BW_OFFLINE_PUT;
    w->id = envelope_get(job, ENV_ID);
    w->xml = job->payload;
    if (!jobs_id_is_valid(w->id))
        return JOBS_ERR_ID;
    if (!envelope_has_int(job, ENV_STAMP) || !envelope_has_int(job, ENV_LIMIT))
        return JOBS_ERR_NUMBER;
    w->stamp = envelope_get_int(job, ENV_STAMP, 0);
    w->limit = envelope_get_int(job, ENV_LIMIT, 0);
    if (w->stamp < 0 || w->limit < 0)
        return JOBS_ERR_NUMBER;
    /* Not parsed here, as archive_put is not: the router stores what a
     * gateway serialized, so it is well-formed, and parsing every stored
     * message (an expat parser and a tree) was the worker's largest cost
     * per message in an offline burst. offline_get checks each row it
     * reads instead (jobs_offline_drop_malformed), so a broken one, if it
     * ever got in, cannot spoil the other messages of that login. Bound
     * as a C string: a NUL inside would cut it short. */
    if (!w->xml || job->payload_len == 0 || strlen(w->xml) != job->payload_len)
        return JOBS_ERR_XML;
    return JOBS_OK;
}

size_t jobs_offline_drop_malformed(struct offline_list *l)
{
    size_t kept = 0, n = l->n;

    for (size_t i = 0; i < n; i++) {
        struct offline_msg *m = &l->msgs[i];
        if (jobs_xml_is_element(m->xml)) {
            l->msgs[kept++] = *m;
            continue;
        }
        free(m->id);
        free(m->xml);
    }
    l->n = kept;
    return n - kept;
}

int jobs_offline_del(const struct envelope *job, struct backend_write *w)
{
    w->kind = BW_OFFLINE_DEL;
    if (!job->payload)
        return JOBS_ERR_ID;
    return jobs_ids_parse(job->payload, job->payload_len, &w->ids, &w->nids);
}

int jobs_offline_get(struct backend *b, const struct envelope *job, struct envelope *res)
{
    struct offline_list l = { 0 };
    int rc = b->ops->offline_get(b, envelope_get(job, ENV_USER), &l);

    if (rc == BACKEND_OK) {
        struct buf out;
        size_t len, dropped = jobs_offline_drop_malformed(&l);
        char *data;
        /* Never expected (see jobs_offline_put): our own bug or a damaged
         * database, so error. The row stays stored and counted. */
        if (dropped > 0)
            log_error("job=%s offline_get user=%s: %zu stored message%s not well-formed; left out", b->job,
                      envelope_get(job, ENV_USER), dropped, dropped == 1 ? " is" : "s are");
        buf_init(&out);
        jobs_offline_xml(&l, &out);
        data = buf_steal(&out, &len);
        envelope_take_payload(res, data, len);
    }
    backend_offline_fini(&l);
    return rc;
}
