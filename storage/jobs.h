/*
 * Storage jobs: one OP_JOB in, one OP_JOB_RESULT out (the job kinds are
 * documented in common/envelope.h). Checks the request, calls the backend,
 * and maps its result code to the wire error; knows nothing of sockets.
 */
#ifndef PARLEY_STORAGE_JOBS_H
#define PARLEY_STORAGE_JOBS_H

#include "backend.h"

struct buf;
struct envelope;

/* A UserID is a bare JID; 3071 bytes bounds any JID (RFC 7622 §3.1). */
#define JOBS_USER_MAX 3071

/*
 * 1 when user can be a UserID: 1..JOBS_USER_MAX bytes, a valid JID
 * (jid_parse) with a localpart and no resource, already in normalized form
 * (normalizing is the router's job; a mixed-case key would be stored under
 * a name no lookup finds). Pure.
 */
int jobs_user_is_valid(const char *user);

/* Appends <query xmlns='jabber:iq:roster'> with one <item/> per entry of r
 * (attributes and group names escaped), or the empty element. Pure. */
void jobs_roster_xml(const struct roster *r, struct buf *out);

/*
 * Runs job (an OP_JOB) against b and returns the OP_JOB_RESULT to send,
 * which the caller owns; never NULL. The result echoes job, conn (when
 * present) and user. A malformed request or an unknown kind is answered
 * "bad-request" without touching the database; backend failures are
 * "not-found", "conflict", "internal" or "unavailable".
 */
struct envelope *jobs_run(struct backend *b, const struct envelope *job);

#endif
