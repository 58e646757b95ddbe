/*
 * Last activity jobs (XEP-0012): last_set when a user's last session ends,
 * last_get when somebody asks how long ago that was. One row per user,
 * replaced by every last_set.
 */
#include "jobs.h"
#include "jobs_kinds.h"
#include "envelope.h"

#include <stdlib.h>

int jobs_last_set(const struct envelope *job, struct backend_write *w)
{
    w->kind = BW_LAST_SET;
    w->text = envelope_get(job, ENV_TEXT);   /* absent: the presence had no status */
    if (!envelope_has_int(job, ENV_SINCE))
        return JOBS_ERR_NUMBER;
    w->since = envelope_get_int(job, ENV_SINCE, 0);
    return w->since < 0 ? JOBS_ERR_NUMBER : JOBS_OK;
}

int jobs_last_get(struct backend *b, const struct envelope *job, struct envelope *res)
{
    int64_t since = 0;
    char *text = NULL;
    int rc = b->ops->last_get(b, envelope_get(job, ENV_USER), &since, &text);

    if (rc == BACKEND_OK) {
        envelope_set_int(res, ENV_SINCE, since);
        envelope_set(res, ENV_TEXT, text);
    }
    free(text);
    return rc;
}
