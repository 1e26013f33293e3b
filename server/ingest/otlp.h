/* otlp: the OpenTelemetry metrics receiver on cascad's gRPC port,
 * opentelemetry.proto.collector.metrics.v1.MetricsService/Export (OTLP/gRPC; reporter and
 * operator roles), so a service instrumented with an OpenTelemetry SDK, or a collector, exports
 * straight into casca. Every data point becomes points that take Publish's path
 * (telemetry_submit: the same checks, limit, counters and hooks; topic = the caller's token name):
 *
 *   gauge, sum        series = the metric's name, value as_double or as_int; a sum keeps what the
 *                     exporter sent, tagged temporality=cumulative (read it with aggregation:
 *                     rate) or temporality=delta (sum); a sum without a temporality is refused,
 *                     as the protocol says it must not be sent
 *   histogram         <name>_count, <name>_sum (when sent) and <name>_bucket with tag le
 *                     (cumulative counts, "+Inf" last), as Prometheus names them; tagged with
 *                     its temporality as a sum is
 *   summary           <name>_count, <name>_sum and <name> with tag quantile
 *   exponential
 *   histogram         refused: configure the exporter for explicit-bucket histograms
 *
 * Tags: the resource's attributes that opentelemetry.resource_tags names (by default
 * service.name, service.namespace and service.instance.id, as OpenTelemetry's Prometheus
 * exporters keep; "*": all), then the point's (a point's attribute replaces a resource's of the
 * same key). Strings as they are; ints, doubles and bools as text; a point's arrays and maps
 * as compact JSON and bytes in base64 (as OpenTelemetry's Prometheus exporters write them); a
 * resource's arrays, maps and bytes are left out (process metadata, too long for a series key);
 * a point's attribute without a value refuses the point. Time: time_unix_nano (0: the time of receipt). A point flagged "no
 * recorded value" is skipped. Refused points are counted in partial_success with the first
 * reason (and in the telemetry's rejected count); the rest are stored. The answer waits for them
 * to be stored. A request that would make more than tsdb.max_publish_points points, or 4M tag
 * entries in all, is refused whole (INVALID_ARGUMENT) before it is converted. */
#ifndef CASCA_OTLP_H
#define CASCA_OTLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hooks.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h"
#include "rpc.h"

struct config;
struct config_live;
struct telemetry;
struct otlp;

/* The opentelemetry: section: which of a resource's attributes become tags. */
struct otlp_config {
    char **resource_tags; /* attribute names */
    size_t nresource_tags;
    bool all_resource_tags; /* "*" is among them */
};
#define OTLP_CONFIG_KEYS "opentelemetry"
extern const struct config_section otlp_config_section;
/* The section of c, or the defaults when c has none. Never NULL; valid as long as c. */
const struct otlp_config *otlp_config_of(const struct config *c);

/* Registers MetricsService on srv (before rpc_server_start); live and t must outlive it (the
 * opentelemetry: section is read from live at each Export, so a reload changes it). CASCA_OK
 * and *out, or a casca_err with the reason in err. Main thread. */
int otlp_create(struct rpc_server *srv, struct config_live *live, struct telemetry *t,
                struct otlp **out, char *err, size_t errlen);
/* After rpc_server_destroy. Safe on NULL. */
void otlp_destroy(struct otlp *o);

/* The conversion alone (the handler and the tests use it): appends req's points to b (strings
 * in b's arena or borrowed from req). *refused counts the data points refused, the first reason in
 * first ("" when none). CASCA_OK; CASCA_ERR_INVALID when req is over max_points or the tag
 * limit, CASCA_ERR_NOMEM, with a message for the caller in why. Any thread. */
int otlp_points(const Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest *req,
                const struct otlp_config *oc, int64_t now_ns, uint64_t max_points, struct hook_batch *b, size_t *refused,
                char *first, size_t firstlen, char *why, size_t whylen);

#endif
