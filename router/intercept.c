/* The interceptor table; see intercept.h. */
#include "intercept.h"
#include "archive.h"
#include "envelope.h"
#include "sessions.h"
#include "util.h"

typedef void (*interceptor)(struct router *r, const struct intercept_msg *m, int incoming, int processed);

/* M1 (archive.c): chat messages with a body, for both parties, once routed. */
static void archive_interceptor(struct router *r, const struct intercept_msg *m, int incoming, int processed)
{
    (void)incoming;
    if (!processed || !r->conf->archive.enabled || !m->id || !str_eq(envelope_get(m->env, ENV_TYPE), "chat") ||
        !(envelope_get_int(m->env, ENV_FLAGS, 0) & STANZA_FLAG_BODY))
        return;
    archive_store(r, m->from->user->user_id, m->to_user, "out", m->id, m->stamp, m->env->payload,
                  m->env->payload_len);
    archive_store(r, m->to_user, m->from->user->user_id, "in", m->id, m->stamp, m->xml, m->len);
}

static const interceptor interceptors[] = {
    archive_interceptor,
};

void intercept_message(struct router *r, const struct intercept_msg *m, int incoming, int processed)
{
    for (size_t i = 0; i < sizeof(interceptors) / sizeof(interceptors[0]); i++)
        interceptors[i](r, m, incoming, processed);
}
