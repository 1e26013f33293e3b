#include "clock.h"

static int64_t ns_of(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * CASCA_NS_PER_SEC + ts.tv_nsec;
}

int64_t casca_mono_ns(void)
{
    return ns_of(CLOCK_MONOTONIC);
}

int64_t casca_wall_ns(void)
{
    return ns_of(CLOCK_REALTIME);
}

struct timespec casca_timespec_of(int64_t ns)
{
    if (ns < 0) ns = 0;
    return (struct timespec){.tv_sec = (time_t)(ns / CASCA_NS_PER_SEC),
                             .tv_nsec = (long)(ns % CASCA_NS_PER_SEC)};
}

int casca_cond_init_mono(pthread_cond_t *c)
{
    pthread_condattr_t ca;
    int err = pthread_condattr_init(&ca);
    if (err) return err;
    err = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (!err) err = pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
    return err;
}

int casca_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_ns)
{
    struct timespec at = casca_timespec_of(deadline_ns);
    return pthread_cond_timedwait(c, m, &at);
}
