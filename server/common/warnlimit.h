/* warnlimit: at most WARN_LIMIT_PER_SEC warning lines per second per source, so a flood of bad
 * messages cannot flood the log; the next line allowed says how many were left out.
 * Thread-safe (atomics; a race may let one extra line through). */
#ifndef CASCA_WARNLIMIT_H
#define CASCA_WARNLIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define WARN_LIMIT_PER_SEC 5

struct warn_limit {
    atomic_llong second;      /* the monotonic second being counted */
    atomic_uint lines;        /* lines logged in that second */
    atomic_ullong suppressed; /* lines left out since the last one logged */
};

/* True if the caller may log a line now; then *left_out is how many were suppressed before it. */
static inline bool warn_limit_allow(struct warn_limit *w, uint64_t *left_out)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long now = (long long)ts.tv_sec, was = atomic_load(&w->second);
    if (now != was && atomic_compare_exchange_strong(&w->second, &was, now))
        atomic_store(&w->lines, 0);
    if (atomic_fetch_add(&w->lines, 1) >= WARN_LIMIT_PER_SEC) {
        atomic_fetch_add(&w->suppressed, 1);
        return false;
    }
    *left_out = atomic_exchange(&w->suppressed, 0);
    return true;
}

#endif
