/* slo_engine: evaluates the declared SLOs (slo.h) over their rolling windows in the time-series
 * store, caches each SLO's status, keeps its compliance figure, and tells a listener when a status
 * changes. One background thread (the tick) re-evaluates every SLO each `slo_engine.interval`.
 *
 * Cost: an evaluation is one tsdb_aggregate over [now - window, now) (for carbon_footprint one per
 * UTC hour the window touches), which reads whole 1-minute rollup buckets inside the window and raw
 * points only at its two edges, so a dense window is never rescanned point by point; and a status
 * is cached for `interval`, so any number of readers cost at most one evaluation per SLO per
 * interval. The tsdb selector (series + tag filter resolved to ids) is resolved once per SLO, at
 * its first evaluation, and kept across reloads that leave the SLO unchanged.
 *
 * Compliance: the SLO is evaluated at fixed steps (multiples of compliance_step since the epoch,
 * each over the window ending there) over the last compliance_period; the figure is the share of
 * the steps with data in which the objective was met. Steps already evaluated are kept in a ring
 * and only new steps are evaluated (incremental); the first figure backfills from the store, so
 * it survives restarts, at most 64 steps per SLO and 2,000 in all per tick (so a reload that adds
 * thousands of SLOs backfills over a few ticks instead of hogging a core).
 *
 * Error budget: an SLO with error_budget {target, window} keeps its ring long enough for the
 * longer of compliance_period and the budget window; the budget spent is the missed steps of the
 * window, the burn rate the missed share of the last hour over (1 - target).
 *
 * Reload: slo_engine_reload swaps in the SLOs of a new config snapshot. An SLO whose id and
 * definition are unchanged keeps its state (cached status, selector, compliance ring); a changed
 * one starts afresh; a removed one is reported to the listener (SLO_EVENT_REMOVED) by the next
 * pass, which the reload starts at once. */
#ifndef CASCA_SLO_ENGINE_H
#define CASCA_SLO_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slo.h"
#include "tsdb.h"

struct config;

/* The grid's carbon intensity (gCO2eq/kWh) of zone ("" = default) for the hour holding time_ns;
 * CASCA_OK, or an error when unknown (those points are then left out). Must not block on the
 * network. Called from the engine's thread and from readers' threads. */
typedef int (*slo_intensity_fn)(void *arg, const char *zone, int64_t time_ns, double *gco2eq_per_kwh);

struct slo_status {
    bool has_value;       /* false: the window held no (usable) data; value is then 0 and meaningless */
    double value;         /* carbon_footprint: mg CO2eq per minute */
    bool fulfilled;       /* has_value and the objective is met */
    uint64_t count;       /* raw points the value was computed from */
    int64_t evaluated_ns; /* end of the window (wall clock, ns since the epoch) */
    double compliance;    /* share of the covered steps in which the SLO was fulfilled, [0, 1] */
    int64_t compliance_covered_ns; /* steps with data x step; 0 = no compliance figure yet */
    int64_t compliance_period_ns;
    /* the error budget (slo.h's error_budget), on the same steps; has_budget false: none */
    bool has_budget;
    int64_t budget_allowed_ns;  /* (1 - target) x window */
    int64_t budget_spent_ns;    /* missed steps in the window x step */
    int64_t budget_covered_ns;  /* steps with data in the window x step */
    double burn_rate_1h;        /* missed share of the last hour / (1 - target); 0: no data */
};

/* One evaluation of d over [end_ns - window, end_ns) with the selector sel (of d's series and
 * tags). intensity is needed for carbon_footprint SLOs (NULL: they have no value). Fills every
 * field but the compliance ones. Returns 0 or the casca_err of the store (then has_value is
 * false). The caller serialises uses of sel. */
int slo_evaluate(struct tsdb *db, struct tsdb_selector *sel, const struct slo_def *d,
                 slo_intensity_fn intensity, void *intensity_arg, int64_t end_ns,
                 struct slo_status *out);

enum slo_event {
    SLO_EVENT_STATUS,  /* a new or changed value or fulfilment, or a new or changed SLO */
    SLO_EVENT_REMOVED, /* a reload removed the SLO; st is NULL */
};
/* def and st are valid during the call only. Called from the tick thread only (slo_engine_tick):
 * after a reload, its next pass first tells the SLOs the reload removed, then statuses of the new
 * table; never a status of a removed SLO after its REMOVED. Must not block. */
typedef void (*slo_listener_fn)(void *arg, enum slo_event ev, const struct slo_def *def,
                                const struct slo_status *st);

struct slo_engine_options {
    struct tsdb *db;
    slo_intensity_fn intensity; /* NULL: carbon_footprint SLOs never have a value */
    void *intensity_arg;
    int64_t (*clock)(void *arg); /* wall clock in ns; NULL = CLOCK_REALTIME */
    void *clock_arg;
    /* error budgets run on the carbon clock: under a carbon replay at speed x, a budget window
     * and the burn rate's hour last 1/x of their real length, and the durations a budget
     * reports are replayed time. NULL = speed 1 (real time). */
    double (*budget_speed)(void *arg, int64_t now_ns);
    void *budget_speed_arg;
    bool manual; /* no tick thread: the caller runs slo_engine_tick (unit tests) */
};

struct slo_engine;

/* Creates the engine with the SLOs of c (a reference is taken). db must outlive the engine.
 * NULL on allocation failure. Main thread. */
struct slo_engine *slo_engine_create(const struct slo_engine_options *o, struct config *c);
/* Swaps in the SLOs of c (see above). Any thread; one reload at a time. */
void slo_engine_reload(struct slo_engine *e, struct config *c);
/* Sets the one listener (NULL to remove). Before the tick can see watchers; any thread. */
void slo_engine_listen(struct slo_engine *e, slo_listener_fn fn, void *arg);
/* Stops the tick and frees everything. No reader may still hold a view. Safe on NULL. */
void slo_engine_destroy(struct slo_engine *e);
/* One pass of the tick: evaluates due SLOs, advances compliance, notifies. Any thread; the tick
 * thread calls it every interval. Returns the number of SLOs evaluated. */
size_t slo_engine_tick(struct slo_engine *e);

/* ---- readers: a view is the table of one config generation ---- */

struct slo_view;
/* The current table, with a reference; put it back with slo_view_put. Any thread, cheap. */
struct slo_view *slo_view_get(struct slo_engine *e);
void slo_view_put(struct slo_view *v); /* safe on NULL */
size_t slo_view_count(const struct slo_view *v);
const struct slo_def *slo_view_def(const struct slo_view *v, size_t i); /* valid while v is held */
long slo_view_find(const struct slo_view *v, const char *id); /* index, or -1; O(log n) */
const struct slo_config *slo_view_config(const struct slo_view *v);
/* The status of SLO i: the cached one when younger than the interval, else evaluated now (a few
 * tens of microseconds: LMDB reads, no network). Any thread. */
void slo_view_status(struct slo_engine *e, struct slo_view *v, size_t i, struct slo_status *out);

/* Evaluations of SLO i at end times start, start + step, ... < end (end is clamped to now), each
 * over the window ending there, passed to fn in order; fn returns non-zero to stop (returned).
 * CASCA_ERR_INVALID with a message in why (public: names no private detail) for a bad range or
 * step or more than history_max_samples steps. Uses its own selector: any thread, blocking for
 * up to a few ms per thousand samples. */
int slo_view_history(struct slo_engine *e, struct slo_view *v, size_t i, int64_t start_ns,
                     int64_t end_ns, int64_t step_ns,
                     int (*fn)(void *arg, const struct slo_status *st), void *arg, char *why,
                     size_t whylen);

/* The engine's clock (wall, ns since the epoch). */
int64_t slo_engine_now(const struct slo_engine *e);

#endif
