/*
 * JIDs: splitting per RFC 7622 §3.1, part lengths per §3, and normalization
 * with the stringprep profiles of RFC 6122 (nodeprep, nameprep,
 * resourceprep, via libidn). JIDs are normalized on every message, so pure
 * ASCII parts take a fast path that gives the same results as libidn.
 */
#ifndef PARLEY_JID_H
#define PARLEY_JID_H

#define JID_PART_MAX 1023

enum {
    JID_OK = 0,
    JID_ERR_EMPTY = -1,     /* a part is empty (also after preparation) or the domain is missing */
    JID_ERR_TOO_LONG = -2,  /* a part is over JID_PART_MAX bytes after preparation */
    JID_ERR_SYNTAX = -3,    /* invalid UTF-8, empty domain label, bad IP literal */
    JID_ERR_PREP = -4,      /* a character the profile prohibits, or not allowed in a domain */
};

/* local/resource NULL when absent; each normalized; owned by the struct. */
struct jid { char *local; char *domain; char *resource; };

/* Parses and normalizes in. Returns JID_OK, or an error with *out zeroed. */
int jid_parse(const char *in, struct jid *out);
/* Frees the parts (NULL parts ok) and zeroes them. */
void jid_fini(struct jid *j);
/* Returns "local@domain" or "domain"; caller frees. */
char *jid_bare(const struct jid *j);
/* Returns the bare JID plus "/resource" when present; caller frees. */
char *jid_full(const struct jid *j);
/* Parses in and returns its normalized full form in *out (caller frees);
 * *out is NULL on error. */
int jid_normalize(const char *in, char **out);

/*
 * Prepare one part (1..JID_PART_MAX bytes afterwards). Each returns JID_OK
 * and a string in *out the caller frees, or an error with *out NULL.
 * jid_nameprep applies all domainpart rules, not just the nameprep profile:
 * a bracketed IPv6 literal is kept as is; otherwise nameprep, ideographic
 * full stops become dots, one trailing dot is stripped, labels must not be
 * empty and ASCII characters must be letters, digits, '-' or '.'.
 */
int jid_nodeprep(const char *in, char **out);
int jid_nameprep(const char *in, char **out);
int jid_resourceprep(const char *in, char **out);

/* Short static description of a JID_* code, for logs. */
const char *jid_error_string(int code);

#endif
