/*
 * XEP-0012 Last Activity.
 *
 * Rules, cited where applied:
 *   L1  to the server: seconds since the server started (§5)
 *   L2  to an account's bare JID: allowed for the account itself and for
 *       contacts the account shares presence with ('from' or 'both' in the
 *       account's roster); anyone else gets forbidden (§4, §8)
 *   L3  an account with an available resource answers seconds='0';
 *       otherwise the seconds since its last logout and the status it left
 *       with (stored by presence.c); never logged in: item-not-found
 */
#include "last.h"
#include "buf.h"
#include "envelope.h"
#include "jobs.h"
#include "log.h"
#include "reply.h"
#include "roster.h"
#include "sessions.h"
#include "stanza.h"
#include "util.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct last_wait {
    struct envelope *req;
    struct session_ref who;
    char *target;
};

static void wait_free(struct last_wait *w)
{
    envelope_free(w->req);
    session_ref_fini(&w->who);
    free(w->target);
    free(w);
}

static struct session *requester(struct router *r, struct last_wait *w)
{
    return session_ref_get(r, &w->who);
}

static void answer(struct router *r, struct session *s, const struct envelope *req, long long seconds,
                   const char *status)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "<query xmlns='" NS_LAST "' seconds='%lld'", seconds < 0 ? 0 : seconds);
    if (status && *status) {
        buf_append_str(&b, ">");
        stanza_escape(&b, status, strlen(status), 0);
        buf_append_str(&b, "</query>");
    } else {
        buf_append_str(&b, "/>");
    }
    reply_iq_result(r, s, req, b.data);
    buf_fini(&b);
}

static void on_stored(struct router *r, const struct envelope *res, void *ctx)
{
    struct last_wait *w = ctx;
    struct session *s = requester(r, w);
    const char *err = envelope_get(res, ENV_ERROR);

    if (s) {
        if (err && strcmp(err, "not-found") == 0)
            reply_error(r, s, w->req, "item-not-found", "cancel");          /* L3 */
        else if (err)
            reply_error(r, s, w->req, "internal-server-error", "wait");
        else
            answer(r, s, w->req, (long long)time(NULL) - envelope_get_int(res, ENV_SINCE, 0),
                   envelope_get(res, ENV_TEXT));                             /* L3 */
    }
    wait_free(w);
}

static void lookup(struct router *r, struct last_wait *w)
{
    struct user *u = sessions_user(r, w->target);
    struct session *s = requester(r, w);

    for (struct session *t = u ? u->sessions : NULL; t; t = t->next) {
        if (t->available) {
            if (s)
                answer(r, s, w->req, 0, NULL);                               /* L3 */
            wait_free(w);
            return;
        }
    }
    struct envelope *job = envelope_new(OP_JOB);
    envelope_set(job, ENV_WHAT, "last_get");
    envelope_set(job, ENV_JOB, "last");
    envelope_set(job, ENV_USER, w->target);
    jobs_submit(r, &job, on_stored, w);
}

static void on_target_roster(struct router *r, struct roster *ro, void *ctx)
{
    struct last_wait *w = ctx;
    struct session *s = requester(r, w);
    struct roster_item *it = ro && s ? roster_item(ro, s->user->user_id) : NULL;

    if (!s) {
        wait_free(w);
        return;
    }
    if (!it || !roster_sub_has_from(it->sub)) {
        reply_error(r, s, w->req, "forbidden", "auth");                     /* L2 */
        wait_free(w);
        return;
    }
    lookup(r, w);
}

void last_iq(struct router *r, struct session *from, const struct envelope *env, const char *bare)
{
    struct last_wait *w;

    if (!str_eq(envelope_get(env, ENV_TYPE), "get")) {
        reply_error(r, from, env, "bad-request", "modify");
        return;
    }
    if (bare && strcmp(bare, r->conf->domain) == 0) {
        answer(r, from, env, (long long)(time(NULL) - r->started), NULL);   /* L1 */
        return;
    }
    w = xcalloc(1, sizeof(*w));
    w->req = envelope_copy(env);
    session_ref_set(&w->who, from);
    w->target = xstrdup(bare ? bare : from->user->user_id);
    if (strcmp(w->target, from->user->user_id) == 0)
        lookup(r, w);                                                        /* L2 */
    else
        roster_with(r, w->target, on_target_roster, w);
}
