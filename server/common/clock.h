/* clock: the one place that reads the clocks and sets up timed waits.
 * Wall time (CLOCK_REALTIME) stamps points and events; monotonic time (CLOCK_MONOTONIC) measures
 * intervals and deadlines, and is what every timed condition wait in casca runs on, so a wall
 * clock step (NTP, an operator) never makes a wait end early or hang. Thread-safe. */
#ifndef CASCA_CLOCK_H
#define CASCA_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#define CASCA_NS_PER_SEC INT64_C(1000000000)
#define CASCA_NS_PER_MS INT64_C(1000000)

/* CLOCK_MONOTONIC in ns: for intervals and deadlines, never for stamps. */
int64_t casca_mono_ns(void);

/* CLOCK_REALTIME in ns since the epoch: for stamps. */
int64_t casca_wall_ns(void);

/* ns (non-negative) as a struct timespec, the form pthread's timed waits take. */
struct timespec casca_timespec_of(int64_t ns);

/* Initialises a condition variable whose timed waits run on CLOCK_MONOTONIC; 0 or an errno. */
int casca_cond_init_mono(pthread_cond_t *c);

/* pthread_cond_timedwait on a condition set up by casca_cond_init_mono until the monotonic
 * deadline_ns: 0 when woken, ETIMEDOUT when the deadline passed. */
int casca_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_ns);

#endif
