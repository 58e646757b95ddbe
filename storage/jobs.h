/*
 * Storage jobs: one OP_JOB in, one OP_JOB_RESULT out (the job kinds are
 * documented in common/envelope.h). Checks the request, calls the backend,
 * and maps its result code to the wire error; knows nothing of sockets.
 *
 * The per-user writes (jobs_is_batched) are split in two so that batch.c can
 * run many of them in one transaction: jobs_prepare checks a job and turns
 * it into a struct backend_write, the backend runs the writes, and
 * jobs_finish turns each one's outcome into its result. jobs_run does all
 * three for a single job of any kind.
 */
#ifndef PARLEY_STORAGE_JOBS_H
#define PARLEY_STORAGE_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

struct buf;
struct envelope;
struct stanza;

/* A UserID is a bare JID; 3071 bytes bounds any JID (RFC 7622 §3.1). */
#define JOBS_USER_MAX 3071
/* Offline message and archive ids: the router makes them, short and printable. */
#define JOBS_ID_MAX 1023
/* Roster item name and group name, in bytes (the router's own limits). */
#define JOBS_ROSTER_TEXT_MAX 1023
#define JOBS_ROSTER_GROUPS_MAX 1000
/* archive_query pages: the default and the largest page size. */
#define JOBS_ARCHIVE_PAGE_MAX 1000

/* Why a request was refused (all are answered "bad-request"). Pure helpers
 * below return these; jobs_error_string names them for the log line. */
enum {
    JOBS_OK = 0,
    JOBS_ERR_BAD_REQUEST = -100,  /* generic: a field missing or malformed */
    JOBS_ERR_XML = -101,          /* payload is not exactly one well-formed element */
    JOBS_ERR_ELEMENT = -102,      /* the element is not the expected one */
    JOBS_ERR_JID = -103,          /* not a normalized bare JID */
    JOBS_ERR_SUBSCRIPTION = -104, /* subscription not none|to|from|both */
    JOBS_ERR_ASK = -105,          /* ask present and not "subscribe" */
    JOBS_ERR_NAME = -106,         /* item name over JOBS_ROSTER_TEXT_MAX bytes */
    JOBS_ERR_GROUP = -107,        /* a group empty, too long or repeated */
    JOBS_ERR_GROUPS = -108,       /* more than JOBS_ROSTER_GROUPS_MAX groups */
    JOBS_ERR_NUMBER = -109,       /* not a decimal integer in range */
    JOBS_ERR_ID = -110,           /* an id empty, too long or with control characters */
};

/* Short static description of a JOBS_ERR_* code, for logs. */
const char *jobs_error_string(int code);

/*
 * 1 when user can be a UserID: 1..JOBS_USER_MAX bytes, a valid JID
 * (jid_parse) with a localpart and no resource, already in normalized form
 * (normalizing is the router's job; a mixed-case key would be stored under
 * a name no lookup finds). Pure.
 */
int jobs_user_is_valid(const char *user);

/* 1 when jid is a normalized bare JID (a localpart is optional: servers and
 * components are contacts too). Pure. */
int jobs_jid_is_bare(const char *jid);

/* 1 when id can be an offline or archive id: 1..JOBS_ID_MAX bytes, none
 * below 0x20 (offline_del separates ids by newlines). Pure. */
int jobs_id_is_valid(const char *id);

/* Parses a non-negative decimal integer of at most 18 digits (no sign, no
 * spaces): JOBS_OK with *out set, or JOBS_ERR_NUMBER. Pure. */
int jobs_number_parse(const char *s, int64_t *out);

/* Appends <query xmlns='jabber:iq:roster' ver='N'> with one <item/> per
 * entry of r (attributes and group names escaped) followed by one
 * <pending xmlns='urn:parley:internal' jid=''/> per pending request, or
 * the empty element. Pure. */
void jobs_roster_xml(const struct roster *r, struct buf *out);

/*
 * Parses a roster_put payload, one <item xmlns='jabber:iq:roster'/>, into
 * *out (heap, the caller frees with backend_roster_item_fini + free),
 * checking it as envelope.h and RFC 6121 §2.1 require: jid a normalized
 * bare JID, subscription none|to|from|both (absent: none), ask absent or
 * "subscribe", name at most JOBS_ROSTER_TEXT_MAX bytes, each group
 * non-empty, at most JOBS_ROSTER_TEXT_MAX bytes and not repeated, at most
 * JOBS_ROSTER_GROUPS_MAX groups (sorted in *out). JOBS_OK or JOBS_ERR_*
 * with *out NULL. Pure.
 */
int jobs_roster_item_parse(const char *xml, size_t len, struct roster_item **out);

/* Splits an offline_del payload, ids one per line (empty lines skipped),
 * into *ids (heap array of heap strings, *n of them; the caller frees).
 * JOBS_OK, or JOBS_ERR_ID with nothing allocated. Pure. */
int jobs_ids_parse(const char *payload, size_t len, char ***ids, size_t *n);

/* Appends <messages> with one <msg id='' stamp=''>xml</msg> per message,
 * or <messages/>. Pure. */
void jobs_offline_xml(const struct offline_list *l, struct buf *out);
/* 1 when xml is one well-formed element (as a stanza inside a
 * jabber:client stream), else 0. For stored messages, which are nested
 * verbatim into the XML of reads. Pure. */
int jobs_xml_is_element(const char *xml);

/* Removes (and frees) the messages of l that are not one well-formed
 * element, keeping the order of the rest; returns how many went. */
size_t jobs_offline_drop_malformed(struct offline_list *l);

/*
 * Parses an archive_query payload, <q with='' start='' end='' after=''
 * before='' max=''/>, into *f. The strings in *f point into *tree, which
 * the caller frees with stanza_free when done with f. max absent or above
 * JOBS_ARCHIVE_PAGE_MAX becomes JOBS_ARCHIVE_PAGE_MAX. JOBS_OK or
 * JOBS_ERR_* with *tree NULL. Pure.
 */
int jobs_archive_filter_parse(const char *xml, size_t len, struct stanza **tree, struct archive_filter *f);

/* Appends <results complete='0|1' count='N'> with one <r id='' stamp=''
 * jid='' dir=''>xml</r> per entry. Pure. */
void jobs_archive_xml(const struct archive_page *p, struct buf *out);

/* Removes (and frees) the entries of p whose xml is not one well-formed
 * element, keeping the order of the others; returns how many went. Pure. */
size_t jobs_archive_drop_malformed(struct archive_page *p);

/* 1 when job is one of the per-user writes batch.c runs in a shared
 * transaction (roster_put, roster_del, pending_put, pending_del, last_set,
 * offline_put, offline_del, archive_put). */
int jobs_is_batched(const struct envelope *job);

/*
 * Checks a batched job and fills *w for b->ops->write. Returns NULL when w
 * is ready (the caller later passes it to jobs_finish), or the
 * OP_JOB_RESULT to send at once (bad-request), which the caller owns; w
 * then holds nothing to free.
 */
struct envelope *jobs_prepare(const struct envelope *job, struct backend_write *w);

/* Returns the OP_JOB_RESULT (caller owns) for a prepared job whose write
 * ran and set w->rc, and finis w. */
struct envelope *jobs_finish(const struct envelope *job, struct backend_write *w);

/*
 * Runs job (an OP_JOB) against b and returns the OP_JOB_RESULT to send,
 * which the caller owns; never NULL. The result echoes job, conn (when
 * present) and user. A malformed request or an unknown kind is answered
 * "bad-request" without touching the database; backend failures are
 * "not-found", "conflict", "resource-constraint", "internal" or
 * "unavailable". A batched kind runs as a batch of one.
 */
struct envelope *jobs_run(struct backend *b, const struct envelope *job);

#endif
