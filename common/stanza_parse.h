/*
 * Parses one serialized stanza (as carried in envelope payloads, namespace
 * jabber:client implied) into a tree. Used off the hot path only: by the
 * router when it must understand a stanza (errors, presence, iq queries).
 */
#ifndef PARLEY_STANZA_PARSE_H
#define PARLEY_STANZA_PARSE_H

#include <stddef.h>

struct stanza;

/* Returns 0 and a tree the caller owns, or a negative XML_ERR_* code
 * (or XML_ERR_MALFORMED when the text holds no element or more than one). */
int stanza_parse(const char *xml, size_t len, struct stanza **out);

#endif
