/* See cpu_sched.h. */
#include "cpu_sched.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <sched.h>
#include <string.h>

void cpu_sched_apply(const char *policy)
{
    struct sched_param param = { .sched_priority = 0 };
    int which = str_eq(policy, "batch") ? SCHED_BATCH : SCHED_OTHER;

    if (sched_setscheduler(0, which, &param) < 0)
        log_warn("cpu_scheduling %s refused: %s; running with the default policy", policy, strerror(errno));
}
