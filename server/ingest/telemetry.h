/* telemetry: casca.v1.TelemetryService on the time-series store (stores/tsdb.h): Publish and
 * PublishStream (reporter and operator roles) hand points to the ingest stage (hooks_submit, the
 * built-in source "publish", topic: the caller's token name) and answer when they are stored; Query and
 * ListSeries (operator only: agents get SLOs, never raw series) read them. Also the `tsdb:`
 * configuration section: retention, rollups and the service's limits. */
#ifndef CASCA_TELEMETRY_H
#define CASCA_TELEMETRY_H

#include <stddef.h>
#include <stdint.h>

#include "casca/v1/telemetry.pb-c.h"
#include "config.h"
#include "rpc.h"
#include "tsdb.h"

/* The `tsdb:` section (telemetry_config_of); immutable once loaded. */
struct telemetry_config {
    struct tsdb_options tsdb;    /* retentions, purge interval, queue size */
    uint64_t max_publish_points; /* points in one Publish request (or stream message) */
    uint64_t max_query_samples;  /* samples in one Query response */
};

/* The tsdb section: its top-level key, and its descriptor for config_load. */
#define TELEMETRY_CONFIG_KEYS "tsdb"
extern const struct config_section telemetry_config_section;
/* The section of c, or the defaults when c has none. Never NULL; valid as long as c. */
const struct telemetry_config *telemetry_config_of(const struct config *c);

struct telemetry;

/* Registers TelemetryService on srv (before rpc_server_start). live, db and ingest (the hooks
 * that take published points) must outlive it.
 * CASCA_OK and *out, or a casca_err with the reason in err. Main thread. */
struct hooks;
int telemetry_create(struct rpc_server *srv, struct config_live *live, struct tsdb *db,
                     struct hooks *ingest, struct telemetry **out, char *err, size_t errlen);
/* After rpc_server_destroy (no call is running). Safe on NULL. */
void telemetry_destroy(struct telemetry *t);

/* Points accepted and rejected by Publish and PublishStream since start. Any thread. */
void telemetry_counts(struct telemetry *t, uint64_t *accepted, uint64_t *rejected);
/* Counts n points refused on another way in before they reached telemetry_submit. Any thread. */
void telemetry_count_rejected(struct telemetry *t, uint64_t n);
/* tsdb.max_publish_points of the configuration in force. Any thread. */
uint64_t telemetry_max_points(struct telemetry *t);

/* The ingest path of Publish, for other ways in (remote_write, OTLP): drops the points of pts that
 * tsdb_check_point refuses (counting them; the first reason in first_reject, "" when none;
 * *rejected says how many), hands the rest to the ingest stage as Publish does (source "publish",
 * topic caller) and counts them accepted when stored. done runs once (NULL: nobody waits), when
 * they are stored or failed, possibly before this returns; at once with 0 when none was valid.
 * Returns CASCA_OK when done will run; CASCA_ERR_INVALID when n is over tsdb.max_publish_points,
 * or the ingest stage's refusal (hooks_submit), with a message for the caller in why. pts is
 * reordered; its strings are borrowed. *rejected and first_reject are set before done runs.
 * Any thread. */
typedef void (*telemetry_done_fn)(int err, const char *why, void *arg);
int telemetry_submit(struct telemetry *t, const char *caller, struct tsdb_point *pts, size_t n,
                     size_t *rejected, char *first_reject, size_t rejectlen,
                     telemetry_done_fn done, void *arg, char *why, size_t whylen);

/* The work of Query without the call layer (the handler and the benchmark use it): validates req,
 * runs it against db with now as the default end, and fills *resp (owned by *arena, freed with
 * telemetry_arena_free even on error). On error returns a casca_err and a message for the caller
 * in why. Any thread. */
struct telemetry_arena;
int telemetry_query(struct tsdb *db, const Casca__V1__QueryRequest *req, int64_t now_ns,
                    size_t max_samples, Casca__V1__QueryResponse *resp,
                    struct telemetry_arena **arena, char *why, size_t whylen);
void telemetry_arena_free(struct telemetry_arena *a); /* safe on NULL */

#endif
