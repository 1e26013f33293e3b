/* slo: the declared service-level objectives. The `slos:` list of the config file, the SLO files
 * named by `slo_files:` (relative to the config file; each holds a list of SLOs, or a map with a
 * `slos:` list) and the `slo_engine:` settings, parsed into an immutable table that belongs to a
 * config snapshot (slo_config_section). Every error names file:line:col.
 *
 *   slos:
 *     - id: ServiceSLO              # public alias, unique: [A-Za-z0-9_.:-], at most 64 bytes
 *       description: ""             # public; "" or absent = hidden
 *       unit: fps                   # public; absent = none
 *       series: transcoding_fps     # private: the series (kind value)
 *       tags: {client: a1}          # private: only time series having these tags
 *       aggregation: mean           # mean|min|max|sum|count|last|rate|p50|p90|p99|median
 *       window: 5m                  # the rolling window
 *       objective: {min: 24, max: 30}   # or {min: 24}, {max: 30}, {target: 1}, {target: true}
 *     - id: carbon
 *       kind: carbon_footprint      # power (W) x grid intensity -> mg CO2eq per minute
 *       power_series: apparent_power_w
 *       zone: AT                    # private; absent = the carbon section's default zone
 *       window: 5m
 *       objective: {max: 80}
 *   slo_files: [slos/service.yaml]
 *   slo_engine: {interval: 1s, compliance_period: 1h, compliance_step: 1m, history_max_samples: 10000}
 *
 * Per SLO, `compliance_period` and `compliance_step` override the slo_engine defaults, and
 * `error_budget: {target: 0.9, window: 24h}` gives the SLO an error budget: it must be fulfilled
 * 90% of any 24 h, measured on the compliance steps (slo_engine.h). And
 * `hide: [window, aggregation]` keeps those two out of the public description (they are public by
 * default: they say over which time scale and how the objective is judged, not what is measured).
 * Private (never sent to agents or viewers, nor put into any reply): series, power_series, tags,
 * zone, and where the SLO was declared. */
#ifndef CASCA_SLO_H
#define CASCA_SLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsdb.h"

struct config;
struct config_loader;
struct yd_node;

enum slo_kind { SLO_KIND_VALUE = 1, SLO_KIND_CARBON_FOOTPRINT = 2 }; /* casca.v1.SloKind's numbers */

/* One declared SLO; immutable, owned by its struct slo_config. */
struct slo_def {
    /* public */
    char *id;
    char *description; /* "" when hidden or absent */
    char *unit;        /* "" when absent */
    enum slo_kind kind;
    char *aggregation; /* canonical name ("mean", "p90"); shown unless hide_aggregation */
    int64_t window_ns;
    bool has_min, has_max; /* the objective: an inclusive range, either side open */
    double min, max;
    bool is_target; /* objective {target: x}: min == max == x */
    bool hide_window, hide_aggregation;
    int64_t compliance_period_ns, compliance_step_ns;
    double budget_target;     /* error_budget: share to fulfil, (0, 1); 0 = no budget */
    int64_t budget_window_ns; /* ... over this rolling window */
    /* private */
    char *series; /* kind value: the series; carbon_footprint: the power series (W) */
    struct tsdb_tag *tags;
    size_t ntags;
    enum tsdb_agg agg;
    double q; /* quantile for TSDB_AGG_QUANTILE */
    char *zone; /* carbon_footprint: "" = the carbon section's default zone */
    char *where; /* "file:line:col" of the SLO, for the operator's messages */
    /* A canonical text of everything that defines the SLO's values (not where): two SLOs with
     * the same id and signature compute the same figures, so a reload keeps their state. */
    char *signature;
};

struct slo_config {
    struct slo_def *v; /* in declaration order: slos:, then each file of slo_files: in order */
    size_t n;
    int64_t interval_ns;           /* how often the engine re-evaluates (and a cached value lives) */
    int64_t compliance_period_ns;  /* defaults of the SLOs' own keys */
    int64_t compliance_step_ns;
    uint64_t history_max_samples;  /* samples in one GetSloHistory answer */
};

/* The section of c, or an empty one with the defaults when c has none. Never NULL; valid as long
 * as c. Any thread. */
const struct slo_config *slo_config_of(const struct config *c);
/* The SLO with this id, or NULL. Linear; any thread. */
const struct slo_def *slo_config_find(const struct slo_config *sc, const char *id);
/* Whether value meets d's objective (a target is met by equality). Pure. */
bool slo_objective_met(const struct slo_def *d, double value);

/* The SLO section: its top-level keys, and its descriptor for config_load (parsed on the
 * config-loading thread). */
#define SLO_CONFIG_KEYS "slos", "slo_files", "slo_engine"
extern const struct config_section slo_config_section;

#endif
