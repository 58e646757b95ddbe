/*
 * Allocation helpers and small string utilities shared by every process.
 *
 * Allocation failure is fatal (STYLE.md "Errors"): configured limits bound
 * what any client can make us allocate, so running out of memory is a host
 * problem and aborting with a log line is the honest answer.
 */
#ifndef PARLEY_UTIL_H
#define PARLEY_UTIL_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
/* Returns a heap copy the caller owns; xstrdup(NULL) returns NULL. */
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Heap-allocated printf; never returns NULL. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* True when both are NULL or both are equal strings. */
int str_eq(const char *a, const char *b);

#endif
