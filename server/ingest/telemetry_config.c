/* The `tsdb:` configuration section (telemetry.h), apart from TelemetryService so that casca-hook
 * reads it without linking the gRPC server. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "config.h"
#include "telemetry.h"

static const struct telemetry_config defaults = {
    .tsdb = {.raw_retention_ns = 7 * TSDB_DAY_NS,
             .minute_retention_ns = 90 * TSDB_DAY_NS,
             .hour_retention_ns = 0,
             .purge_interval_ns = TSDB_MINUTE_NS,
             .queue_points = 1000000},
    .max_publish_points = 100000,
    .max_query_samples = 100000,
};

#define AT(field) offsetof(struct telemetry_config, field)
_Static_assert(sizeof(size_t) == sizeof(uint64_t), "tsdb.queue_points is read as a CONFIG_COUNT");

/* Durations' bounds in ms; the defaults are the struct above (telemetry_config_of gives them to a
 * config without a tsdb section). */
static const struct config_key keys[] = {
    {"raw_retention", CONFIG_NS, AT(tsdb.raw_retention_ns), NULL, 60000},
    {"minute_retention", CONFIG_NS, AT(tsdb.minute_retention_ns), NULL, 60000},
    {"hour_retention", CONFIG_NS, AT(tsdb.hour_retention_ns), .forever = true},
    {"purge_interval", CONFIG_NS, AT(tsdb.purge_interval_ns), NULL, 1000, 86400000},
    {"queue_points", CONFIG_COUNT, AT(tsdb.queue_points), NULL, 1000, 100000000},
    {"max_publish_points", CONFIG_COUNT, AT(max_publish_points), NULL, 1, 10000000},
    {"max_query_samples", CONFIG_COUNT, AT(max_query_samples), NULL, 1, 100000000},
    {NULL},
};

static void *telemetry_config_parse(struct config_loader *ld, const struct yd_node *const values[])
{
    const struct yd_node *root = values[0];
    struct telemetry_config *c = malloc(sizeof(*c));
    if (!c) return NULL;
    *c = defaults;
    config_load_keys(ld, keys, root, "tsdb", c);
    if (!root || root->kind != YD_MAP) return c;
    const struct tsdb_options *o = &c->tsdb;
    if (o->minute_retention_ns < o->raw_retention_ns)
        config_error(ld, root,
                     "tsdb.minute_retention must be at least tsdb.raw_retention (rollups are "
                     "built from raw points)");
    if (o->hour_retention_ns && o->hour_retention_ns < o->minute_retention_ns)
        config_error(ld, root,
                     "tsdb.hour_retention must be at least tsdb.minute_retention, or forever");
    return c;
}

static void telemetry_config_free(void *section)
{
    free(section);
}

const struct config_section telemetry_config_section = {
    .keys = (const char *const[]){TELEMETRY_CONFIG_KEYS, NULL},
    .parse = telemetry_config_parse,
    .free = telemetry_config_free,
};

const struct telemetry_config *telemetry_config_of(const struct config *c)
{
    const struct telemetry_config *t = config_section_of(c, &telemetry_config_section);
    return t ? t : &defaults;
}
