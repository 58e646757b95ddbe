/* The chat archive: XEP-0313 (urn:xmpp:mam:2) and XEP-0359 ids; see archive.c. */
#ifndef PARLEY_ROUTER_ARCHIVE_H
#define PARLEY_ROUTER_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include "router.h"

struct envelope;
struct session;

#define NS_MAM "urn:xmpp:mam:2"
#define NS_SID "urn:xmpp:sid:0"
#define ARCHIVE_ID_MAX 24

/* A new server-assigned id: unique and ordered in time (16 hex digits:
 * the microsecond it stands for). Returns that microsecond, the stamp to
 * store with it. */
int64_t archive_new_id(struct router *r, char *out);
/* Appends one archive entry for owner (fire and forget; failures logged). */
void archive_store(struct router *r, const char *owner, const char *peer, const char *dir, const char *id,
                   int64_t stamp, const char *xml, size_t len);
/* MAM query on the sender's own archive (bare == NULL or its own JID). */
void archive_iq(struct router *r, struct session *from, const struct envelope *env, const char *bare);
/* Deletes entries older than stamp; cb(result) as for jobs. */
void archive_purge(struct router *r, int64_t stamp, void (*cb)(struct router *, const struct envelope *, void *),
                   void *ctx);
/* Applies archive.retention_days, at most once an hour. */
void archive_tick(struct router *r);

#endif
