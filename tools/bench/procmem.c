/*
 * Server RSS sampling; see procmem.h.
 */
#include "procmem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int procmem_parse_status(const char *text, long *kb)
{
    const char *p = strstr(text, "\nVmRSS:");
    if (!p && strncmp(text, "VmRSS:", 6) == 0)
        p = text - 1;
    if (!p)
        return -1;
    char *end;
    long v = strtol(p + 7, &end, 10);
    if (end == p + 7 || v < 0)
        return -1;
    *kb = v;
    return 0;
}

int procmem_rss_kb(int pid, long *kb)
{
    char path[64], text[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    return procmem_parse_status(text, kb);
}
