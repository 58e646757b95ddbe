/*
 * Chat archive jobs (XEP-0313 storage, XEP-0059 paging): archive_put,
 * archive_query, archive_purge. The router turns a client's MAM query into
 * the flat <q/> of envelope.h and the <results/> back into MAM messages.
 *
 * Paging rules (XEP-0059 §2), on the order (stamp, id) of the entries that
 * match with/start/end:
 *   P1  after=X: the first max entries after X; before=Y: the last max
 *       entries before Y, still returned in time order; both: entries
 *       strictly between, paged backwards as with before alone.
 *   P2  before='' (present, empty): the last page.
 *   P3  an after/before id that is not in the user's archive: not-found.
 *   P4  complete='1' when the page reaches the end of the result set in the
 *       paging direction (the newest entry forwards, the oldest backwards).
 *   P5  count: every entry matching with/start/end, ignoring P1 and max.
 */
#include "jobs.h"
#include "jobs_kinds.h"
#include "buf.h"
#include "envelope.h"
#include "log.h"
#include "stanza.h"
#include "stanza_parse.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *nonempty(const char *s)
{
    return s && *s ? s : NULL;
}

int jobs_archive_filter_parse(const char *xml, size_t len, struct stanza **tree, struct archive_filter *f)
{
    struct stanza *q = NULL;
    const char *start, *end, *max;
    int64_t n;
    int rc = JOBS_OK;

    *tree = NULL;
    memset(f, 0, sizeof(*f));
    if (!xml || stanza_parse(xml, len, &q) < 0)
        return JOBS_ERR_XML;
    f->with = nonempty(stanza_attr(q, "with"));
    start = nonempty(stanza_attr(q, "start"));
    end = nonempty(stanza_attr(q, "end"));
    f->after = nonempty(stanza_attr(q, "after"));
    f->before = stanza_attr(q, "before");        /* "" is P2 */
    max = nonempty(stanza_attr(q, "max"));
    f->max = JOBS_ARCHIVE_PAGE_MAX;

    if (!str_eq(q->name, "q"))
        rc = JOBS_ERR_ELEMENT;
    else if (f->with && !jobs_jid_is_bare(f->with))
        rc = JOBS_ERR_JID;   /* only bare peers are stored: a full JID could match nothing */
    else if ((f->after && !jobs_id_is_valid(f->after)) || (nonempty(f->before) && !jobs_id_is_valid(f->before)))
        rc = JOBS_ERR_ID;
    if (rc == JOBS_OK && start) {
        rc = jobs_number_parse(start, &f->start);
        f->has_start = 1;
    }
    if (rc == JOBS_OK && end) {
        rc = jobs_number_parse(end, &f->end);
        f->has_end = 1;
    }
    if (rc == JOBS_OK && max && (rc = jobs_number_parse(max, &n)) == JOBS_OK && n < JOBS_ARCHIVE_PAGE_MAX)
        f->max = (long)n;
    if (rc != JOBS_OK) {
        stanza_free(q);
        memset(f, 0, sizeof(*f));
        return rc;
    }
    *tree = q;
    return JOBS_OK;
}

void jobs_archive_xml(const struct archive_page *p, struct buf *out)
{
    buf_printf(out, "<results complete='%d' count='%" PRId64 "'", p->is_complete ? 1 : 0, p->count);
    if (p->n == 0) {
        buf_append_str(out, "/>");
        return;
    }
    buf_append(out, ">", 1);
    for (size_t i = 0; i < p->n; i++) {
        const struct archive_entry *e = &p->items[i];
        buf_append_str(out, "<r");
        jobs_attr(out, "id", e->id);
        buf_printf(out, " stamp='%" PRId64 "'", e->stamp);
        jobs_attr(out, "jid", e->peer);
        jobs_attr(out, "dir", e->dir);
        buf_append(out, ">", 1);
        buf_append_str(out, e->xml);   /* one element: jobs_archive_drop_malformed */
        buf_append_str(out, "</r>");
    }
    buf_append_str(out, "</results>");
}

int jobs_archive_put(const struct envelope *job, struct backend_write *w)
{
    w->kind = BW_ARCHIVE_PUT;
    w->id = envelope_get(job, ENV_ID);
    w->jid = envelope_get(job, ENV_JID);
    w->text = envelope_get(job, ENV_TEXT);
    w->xml = job->payload;
    if (!jobs_id_is_valid(w->id))
        return JOBS_ERR_ID;
    if (!jobs_jid_is_bare(w->jid))
        return JOBS_ERR_JID;
    if (!str_eq(w->text, "in") && !str_eq(w->text, "out"))
        return JOBS_ERR_BAD_REQUEST;
    if (!envelope_has_int(job, ENV_STAMP) || (w->stamp = envelope_get_int(job, ENV_STAMP, 0)) < 0)
        return JOBS_ERR_NUMBER;
    /* The message is not parsed here, unlike offline_put's: the archive is
     * written for every chat message twice and read rarely, and parsing
     * it (a whole stanza tree) was a third of a row's cost. The router
     * stores what a gateway serialized, so it is well-formed; should a
     * broken one get in all the same, archive_query leaves it out of the
     * page (jobs_archive_drop_malformed) rather than spoil the page. The
     * row is bound as a C string: a NUL inside would cut it short. */
    if (!w->xml || job->payload_len == 0 || strlen(w->xml) != job->payload_len)
        return JOBS_ERR_XML;
    return JOBS_OK;
}

size_t jobs_archive_drop_malformed(struct archive_page *p)
{
    size_t kept = 0, n = p->n;

    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = &p->items[i];
        if (jobs_xml_is_element(e->xml)) {
            p->items[kept++] = *e;
            continue;
        }
        free(e->id);
        free(e->peer);
        free(e->dir);
        free(e->xml);
    }
    p->n = kept;
    return n - kept;
}

int jobs_archive_query(struct backend *b, const struct envelope *job, struct envelope *res)
{
    struct archive_filter f;
    struct archive_page p = { 0 };
    struct stanza *tree;
    int rc = jobs_archive_filter_parse(job->payload, job->payload_len, &tree, &f);

    if (rc != JOBS_OK)
        return rc;
    rc = b->ops->archive_query(b, envelope_get(job, ENV_USER), &f, &p);
    if (rc == BACKEND_OK) {
        struct buf out;
        size_t len, dropped = jobs_archive_drop_malformed(&p);
        char *data;
        /* Never expected (see jobs_archive_put): our own bug or a damaged
         * file, so error; the job id names the user in the debug line. */
        if (dropped > 0)
            log_error("job=%s archive_query: %zu stored message%s not well-formed; left out of the page", b->job,
                      dropped, dropped == 1 ? " is" : "s are");
        buf_init(&out);
        jobs_archive_xml(&p, &out);
        data = buf_steal(&out, &len);
        envelope_take_payload(res, data, len);
    }
    backend_archive_fini(&p);
    stanza_free(tree);
    return rc;
}

int jobs_archive_purge(struct backend *b, const struct envelope *job, struct envelope *res)
{
    int64_t before = envelope_get_int(job, ENV_STAMP, -1), deleted = 0;
    char text[24];
    int rc;

    if (!envelope_has_int(job, ENV_STAMP) || before < 0)
        return JOBS_ERR_NUMBER;
    rc = b->ops->archive_purge(b, before, &deleted);
    if (rc == BACKEND_OK) {
        snprintf(text, sizeof(text), "%" PRId64, deleted);
        envelope_set(res, ENV_TEXT, text);
    }
    return rc;
}
