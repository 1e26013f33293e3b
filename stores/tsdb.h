/* tsdb: the time-series store of casca, on the LMDB environment of store.h. Series identity is the
 * name plus its tags sorted by key; points (time, double) are queued by any thread and written in
 * batches by the store's writer (group commit); queries aggregate a time range over raw points and
 * over 1-minute and 1-hour rollups, so long windows stay cheap.
 *
 * Layout (named databases of the store):
 *   tsdb.series  identity -> series id (4 bytes, big-endian). identity = name NUL key NUL value
 *                NUL ... with the tags sorted by key, so one name's series are one key range.
 *   tsdb.meta    id (4 bytes BE) -> {points, first, last, identity}; id 0 holds the next id.
 *                Ids are never reused, so a resolved selector never reads another series' data.
 *   tsdb.raw     id (4 bytes BE) -> sorted duplicates of 16 bytes: time (8 bytes BE) + value
 *                (double). LMDB's DUPSORT|DUPFIXED keeps one series' points contiguous and in time
 *                order; a range scan reads whole pages of points at once (MDB_GET_MULTIPLE).
 *   tsdb.m1      id + minute start (4 + 8 bytes BE) -> rollup {count, sum, min, max, first, last,
 *   tsdb.h1      id + hour start                        increase}; one record per bucket.
 *
 * Rules a caller can rely on:
 *   - Duplicates: a point with the same series, tags and time as a stored one replaces its value
 *     (last write wins, in the order tsdb_write calls were queued; within one call, the later
 *     element of pts wins).
 *   - Out of order: points may arrive in any order; rollups are kept exact (a bucket that gets an
 *     out-of-order point or a replacement is recomputed from its raw points in the same batch).
 *   - Retention: raw points older than raw_retention (rounded down to the minute), minute rollups
 *     older than minute_retention (rounded down to the hour) and hour rollups older than
 *     hour_retention (0 = kept forever) are deleted by a purge that runs in the writer about every
 *     purge_interval. Points older than the raw retention horizon are refused by tsdb_write.
 *   - Queries are exact where the raw points are kept: every aggregation but quantile reads whole
 *     rollup buckets inside the range and raw points at its edges, which gives the same figures as
 *     scanning every raw point (sums may differ in the last bits of a double). Where the range
 *     reaches back beyond the raw retention, the minute (then hour) buckets whose start lies in the
 *     range stand for their points; quantiles use raw points only, so they cover only the raw
 *     retention period. Sample.count says how many points went into a figure.
 *
 * Threads: tsdb_write, tsdb_select, tsdb_query, tsdb_aggregate and tsdb_list may be called from
 * any thread at once (reads use their own LMDB read transaction and never block the writer). A
 * struct tsdb_selector is used by one thread at a time. */
#ifndef CASCA_TSDB_H
#define CASCA_TSDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct tsdb;

struct tsdb_tag {
    const char *key;
    const char *value;
};

struct tsdb_point {
    const char *series;          /* e.g. "transcoding_fps" */
    const struct tsdb_tag *tags; /* any order; identity = series + tags sorted by key */
    size_t ntags;
    int64_t time_ns; /* ns since the Unix epoch, UTC */
    double value;    /* finite */
};

#define TSDB_MINUTE_NS (60 * INT64_C(1000000000))
#define TSDB_HOUR_NS (60 * TSDB_MINUTE_NS)
#define TSDB_DAY_NS (24 * TSDB_HOUR_NS)
#define TSDB_MAX_IDENTITY 480 /* bytes of name + tags (+ a NUL after each), LMDB's key limit */
#define TSDB_MAX_FUTURE_NS TSDB_DAY_NS /* points may be at most this far ahead of the clock */

/* A zero field means its default. */
struct tsdb_options {
    int64_t raw_retention_ns;    /* raw points, default 7 days, at least 1 minute */
    int64_t minute_retention_ns; /* 1-minute rollups, default 90 days, >= raw_retention */
    int64_t hour_retention_ns;   /* 1-hour rollups, default 0 = forever, else >= minute_retention */
    int64_t purge_interval_ns;   /* how often the writer deletes expired data, default 1 minute */
    size_t queue_points;         /* points queued before tsdb_write says FULL, default 1,000,000 */
    size_t batch_points;         /* points per write transaction, default 65536 */
    /* The wall clock, ns since the epoch (tests set their own); default CLOCK_REALTIME. */
    int64_t (*clock)(void *clock_arg);
    void *clock_arg;
};

struct tsdb_stats {
    uint64_t series;          /* time series known (series + tag sets) */
    uint64_t queued;          /* points queued, not yet taken by the writer */
    uint64_t written;         /* points committed (new or replacing) */
    uint64_t replaced;        /* of those, points that replaced a stored value */
    uint64_t refused_full;    /* points tsdb_write refused with CASCA_ERR_FULL */
    uint64_t refused_invalid; /* calls tsdb_write refused with CASCA_ERR_INVALID */
    uint64_t expired;         /* points that were past the retention when the writer saw them */
    uint64_t failed;          /* points whose batch failed to commit (done got an error) */
    uint64_t purged;          /* raw points deleted by retention */
    uint64_t batches;         /* write transactions (group commits) */
};

/* Opens (creating if needed) the time-series databases of s with the options o (NULL: defaults).
 * The caller owns *out and closes it with tsdb_close before store_close. CASCA_ERR_INVALID when
 * the retentions are inconsistent. Any thread except the store's writer thread; blocks. */
int tsdb_open(struct store *s, const struct tsdb_options *o, struct tsdb **out);

/* Writes every point still queued (their done callbacks run), waits for it and for a running
 * purge, and frees db. Should the store refuse that last write, the calls left get done with
 * CASCA_ERR_UNAVAILABLE on this thread. Call it after every other user of db has stopped, before
 * store_close. Safe on NULL. */
void tsdb_close(struct tsdb *db);

/* Replaces the retention and queue settings (a config reload). CASCA_ERR_INVALID (and nothing
 * changes) when they are inconsistent. The clock is not changed. Any thread. */
int tsdb_configure(struct tsdb *db, const struct tsdb_options *o);

/* Checks one point as tsdb_write would, against the clock now. Returns 0 or CASCA_ERR_INVALID
 * with a reason for the caller (no series name or tag in it) in why. Any thread. */
int tsdb_check_point(struct tsdb *db, const struct tsdb_point *p, int64_t now_ns, char *why,
                     size_t whylen);

/* Queues copies of pts[0..n) for the writer thread (group commit) and returns at once.
 * CASCA_ERR_FULL when the queue is over its limit (nothing queued: the caller counts the drop),
 * CASCA_ERR_INVALID for a point that is not finite or has an empty series name. done (may be NULL)
 * is called once from the writer thread when the batch is durable per the store's sync mode.
 * Any thread.
 * More precisely: CASCA_ERR_INVALID (nothing queued) when any point fails tsdb_check_point (also
 * an empty or duplicate tag key, an identity over TSDB_MAX_IDENTITY bytes, a time before the raw
 * retention horizon or more than TSDB_MAX_FUTURE_NS ahead); CASCA_ERR_UNAVAILABLE once the store
 * is closing; CASCA_ERR_NOMEM. n == 0 is valid (done still runs). done gets 0, or the commit's
 * error; points that fell behind the retention horizon between the check and the write are
 * dropped and counted as expired, not reported as an error. The caller keeps ownership of pts
 * and its strings. */
int tsdb_write(struct tsdb *db, const struct tsdb_point *pts, size_t n, store_done_fn done,
               void *arg);

/* Queues a purge of expired data and waits for it (the writer also does this on its own every
 * purge_interval). Returns 0 or a casca_err. Not on the writer thread. */
int tsdb_purge(struct tsdb *db);

/* ---- reading ---- */

enum tsdb_agg {
    TSDB_AGG_MEAN,
    TSDB_AGG_MIN,
    TSDB_AGG_MAX,
    TSDB_AGG_SUM,
    TSDB_AGG_COUNT,
    TSDB_AGG_LAST,     /* value of the latest point */
    TSDB_AGG_RATE,     /* per-second increase of a counter, see below */
    TSDB_AGG_QUANTILE, /* with a quantile q in [0, 1] */
    TSDB_AGG__COUNT
};
/* rate: the increase between the first and the last point of the range divided by the seconds
 * between them, where a decrease counts as a counter reset (the increase across it is the new
 * value, as Prometheus does); needs two points at different times. Over several series the rates
 * add up (several counters of one quantity).
 * quantile: linear interpolation between the closest ranks (numpy's default): with the n values
 * sorted x[0..n), h = (n-1)q, x[floor h] + (h - floor h)(x[floor h + 1] - x[floor h]). */

/* Names: "mean" "min" "max" "sum" "count" "last" "rate", "quantile" (q is left alone) and the
 * shorthands "p50" "p90" "p99" "median" (which set q). CASCA_ERR_INVALID for anything else.
 * q may be NULL when no quantile name is expected. Pure. */
int tsdb_agg_parse(const char *name, enum tsdb_agg *agg, double *q);
const char *tsdb_agg_name(enum tsdb_agg agg); /* "mean"...; "?" when out of range */

/* One aggregated figure. count 0 means there was no data (value is then 0 and meaningless);
 * rate also needs two points at different times, else count is 0. */
struct tsdb_sample {
    int64_t time_ns; /* start of the step (or of the range) */
    double value;
    uint64_t count; /* raw points that went into value */
};

/* The series of one name whose tags include a filter (subset match), resolved to ids once and
 * re-resolved only when new series appear: what a rolling-window evaluation keeps between runs. */
struct tsdb_selector;

/* Resolves series + filter[0..nfilter) (copied; filter keys must be distinct). The caller owns
 * *out and frees it with tsdb_selector_free. An unknown series is not an error: the selector
 * matches nothing until the series appears. Any thread. */
int tsdb_select(struct tsdb *db, const char *series, const struct tsdb_tag *filter, size_t nfilter,
                struct tsdb_selector **out);
void tsdb_selector_free(struct tsdb_selector *sel); /* safe on NULL */

/* The aggregate of every point of the selected series in [start_ns, end_ns) merged into one
 * figure (a mean of all their points, the latest last, the sum of their rates...), written to
 * *out (out->time_ns = start_ns). The fast path for SLO windows: one read transaction, no
 * allocation except for quantiles (a buffer the selector keeps). CASCA_ERR_INVALID for
 * end < start, an unknown aggregation or q outside [0, 1]. One thread per selector. */
int tsdb_aggregate(struct tsdb *db, struct tsdb_selector *sel, int64_t start_ns, int64_t end_ns,
                   enum tsdb_agg agg, double q, struct tsdb_sample *out);

struct tsdb_query {
    int64_t start_ns, end_ns; /* [start, end) */
    int64_t step_ns;          /* 0: one sample over the whole range; else steps from start */
    enum tsdb_agg agg;
    double q;           /* for TSDB_AGG_QUANTILE, in [0, 1] */
    size_t max_samples; /* over all series; 0 = no limit. More: CASCA_ERR_FULL, nothing sent */
};

/* One series of a query result: valid only during the callback. tags are sorted by key. */
struct tsdb_series_result {
    const char *series;
    const struct tsdb_tag *tags;
    size_t ntags;
    const struct tsdb_sample *samples; /* in time order; steps without data are left out */
    size_t nsamples;
};

/* Calls fn once per selected series (in identity order) with its samples; a series with no sample
 * in the range is left out. Stops when fn returns non-zero and returns that. CASCA_ERR_INVALID for
 * a bad range, step, aggregation or q; CASCA_ERR_FULL when the result would exceed max_samples
 * (checked before fn is called). fn must not write to the store and wait. One thread per
 * selector. */
typedef int (*tsdb_series_fn)(const struct tsdb_series_result *r, void *arg);
int tsdb_query(struct tsdb *db, struct tsdb_selector *sel, const struct tsdb_query *q,
               tsdb_series_fn fn, void *arg);

/* One stored series and its coverage, for listings; valid only during the callback. */
struct tsdb_series_info {
    const char *series;
    const struct tsdb_tag *tags;
    size_t ntags;
    uint64_t points;           /* raw points stored */
    int64_t first_ns, last_ns; /* oldest and newest raw point (0 when points is 0) */
};

/* Calls fn for each series whose name starts with prefix ("" = all), ordered by name then tags.
 * Stops when fn returns non-zero and returns that. Any thread. */
int tsdb_list(struct tsdb *db, const char *prefix,
              int (*fn)(const struct tsdb_series_info *info, void *arg), void *arg);

/* Fills *st. Any thread. */
void tsdb_stats(struct tsdb *db, struct tsdb_stats *st);

#endif
