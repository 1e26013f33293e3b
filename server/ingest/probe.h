/* probe: black-box HTTP probes. Each configured probe requests its URL every period with libcurl
 * and records two points: the response time in milliseconds and success (1 or 0), tagged
 * probe=NAME plus the configured tags, so an SLO such as "p90 of the response time over 5 min
 * below 100 ms" needs no change to the service. A failed request (refused, timed out, unexpected
 * status) records success 0 and the time it took (a timeout counts as the whole timeout), so
 * failures show in response-time quantiles too. One thread per probe; the `probes:` section.
 *
 * A scrape probe (`scrape: true`) also reads the answer as a Prometheus /metrics page
 * (prom_text.h) and records every sample, or those whose name starts with one of `match:`:
 * series = the metric name, tags = the probe's tags and the sample's labels (a label named
 * `probe` becomes `exported_probe`), time = the sample's timestamp or the scrape's start.
 * Samples that are not finite (NaN, +Inf) are left out. */
#ifndef CASCA_PROBE_H
#define CASCA_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsdb.h"

struct config_loader;
struct yd_node;

struct probe_config {
    char *name;
    char *url;
    char *method; /* GET or HEAD */
    uint64_t period_ms, timeout_ms;
    long expect_status;    /* 0: any 2xx or 3xx */
    char *time_series;     /* default "probe_response_ms" */
    char *success_series;  /* default "probe_success" */
    struct tsdb_tag *tags; /* probe=NAME first, then the configured ones */
    size_t ntags;
    bool scrape;  /* read the answer as a Prometheus text page */
    char **match; /* metric name prefixes to keep (scrape; none: every sample) */
    size_t nmatch;
};

/* config_section_of(c, &probes_config_section) */
struct probes_section {
    struct probe_config *probes;
    size_t n;
    uint64_t fingerprint;
};

/* The probes section: its top-level key, and its descriptor for config_load. */
#define PROBES_CONFIG_KEYS "probes"
extern const struct config_section probes_config_section;

/* Where a probe's points go; called on the probe's thread. */
typedef void (*probe_sink_fn)(void *arg, const char *probe, const struct tsdb_point *pts,
                              size_t n);

struct probes;

/* Starts one thread per probe of sec (NULL: none); the first request goes out at once. sec must
 * outlive the probes. Main thread. */
int probes_create(const struct probes_section *sec, probe_sink_fn sink, void *sink_arg,
                  struct probes **out, char *err, size_t errlen);
/* Stops the probes (an in-flight request is abandoned within its timeout). Safe on NULL. */
void probes_destroy(struct probes *p);
/* A reload: probes do not change while running; says so when next differs. */
void probes_reload(struct probes *p, const struct probes_section *next);
size_t probes_count(const struct probes *p);

#endif
