/* replay: a clock that plays a stretch of past grid data faster than real time, so that one day
 * of a zone's hourly carbon intensity plays in minutes:
 *
 *   carbon:
 *     replay: {from: 2022-03-14T00:00:00Z, speed: 120}   # a day in 12 minutes
 *
 * Replayed time = from + (now - start) x speed, where start is when cascad first loaded this
 * replay (a reload that keeps from and speed keeps the clock running; one that changes them
 * starts it again). It is what "now" means to the carbon service (CarbonService calls without a
 * time, carbon-footprint SLOs, agents' CarbonState) and the clock of error budgets; telemetry,
 * SLO windows and everything else keep real time. Every figure answered for a replayed "now"
 * says so in its note. */
#ifndef CASCA_CARBON_REPLAY_H
#define CASCA_CARBON_REPLAY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config_loader;
struct yd_node;

/* The `replay:` key of the carbon section, as parsed; off when absent. */
struct replay_conf {
    bool on;
    int64_t from_ns; /* ns since the epoch, UTC */
    double speed;    /* replayed seconds per real second, >= 1 */
};

/* Parses n (a map {from, speed}) into out; errors go to ld with file:line:col. */
void replay_parse(struct config_loader *ld, const struct yd_node *n, struct replay_conf *out);

/* The running clock: one per carbon module, shared by every thread. */
struct replay_clock {
    pthread_mutex_t lock;
    struct replay_conf conf; /* the replay the clock runs */
    int64_t start_ns;        /* real time it started */
};

void replay_clock_init(struct replay_clock *rc);
void replay_clock_destroy(struct replay_clock *rc);
/* The replayed time of real_ns under conf (conf off: real_ns itself). The clock (re)starts at
 * real_ns when conf differs from the one it runs. Any thread. */
int64_t replay_time(struct replay_clock *rc, const struct replay_conf *conf, int64_t real_ns);
/* "replayed: 2022-03-14T00:00:00Z at 120x" into buf ("" when off). */
void replay_note(const struct replay_conf *conf, char *buf, size_t len);

#endif
