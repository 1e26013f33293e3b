#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "bus.h"
#include "carbon.h"
#include "casca_err.h"
#include "clock.h"
#include "ctl.h"
#include "daemon.h"
#include "hooks.h"
#include "rpc.h"
#include "slo_engine.h"
#include "slo_service.h"
#include "store.h"
#include "telemetry.h"
#include "tsdb.h"

#define SETTING_READ_BUDGET_NS (1 * CASCA_NS_PER_SEC) /* for settings not read yet, per scrape */
#define MAX_ZONES 32
#define MAX_HOOKS 256

static double seconds(int64_t ns)
{
    return (double)ns / 1e9;
}

static void write_process(struct daemon *d, struct prom_buf *b)
{
    struct config *c = config_live_get(d->live);
    prom_family(b, "casca_build_info", "gauge", "casca's version; always 1.");
    prom_sample1(b, "casca_build_info", "version", CASCA_VERSION, 1);
    prom_family(b, "casca_start_time_seconds", "gauge",
                "When cascad started, in seconds since the epoch.");
    prom_sample(b, "casca_start_time_seconds", NULL, 0, seconds(d->started_ns));
    prom_family(b, "casca_config_generation", "gauge",
                "The configuration's generation: 1 at start, +1 per successful reload.");
    prom_sample(b, "casca_config_generation", NULL, 0, (double)c->generation);
    config_unref(c);
}

/* ---- SLOs: one status per SLO, then one family at a time (a family's samples stay together) ----
 */

static void write_slos(struct daemon *d, struct prom_buf *b)
{
    struct slo_engine *e = slo_service_engine(d->slo);
    struct slo_view *v = slo_view_get(e);
    size_t n = slo_view_count(v);
    struct slo_status *st = calloc(n ? n : 1, sizeof(*st));
    if (!st) {
        b->failed = true;
        slo_view_put(v);
        return;
    }
    for (size_t i = 0; i < n; i++)
        slo_view_status(e, v, i, &st[i]);
#define EACH_SLO(cond, name, value)                                                                \
    for (size_t i = 0; i < n; i++)                                                                 \
        if (cond) prom_sample1(b, name, "slo", slo_view_def(v, i)->id, (value));

    prom_family(b, "casca_slo_value", "gauge",
                "The SLO's current value over its window, in the SLO's unit (absent while the "
                "window holds no data).");
    EACH_SLO(st[i].has_value, "casca_slo_value", st[i].value)
    prom_family(b, "casca_slo_fulfilled", "gauge",
                "1 when the SLO has a value and its objective is met, else 0.");
    EACH_SLO(true, "casca_slo_fulfilled", st[i].fulfilled ? 1 : 0)
    prom_family(b, "casca_slo_objective_min", "gauge",
                "The objective's lower bound (a target is both bounds).");
    EACH_SLO(slo_view_def(v, i)->has_min, "casca_slo_objective_min", slo_view_def(v, i)->min)
    prom_family(b, "casca_slo_objective_max", "gauge", "The objective's upper bound.");
    EACH_SLO(slo_view_def(v, i)->has_max, "casca_slo_objective_max", slo_view_def(v, i)->max)
    prom_family(b, "casca_slo_compliance_ratio", "gauge",
                "Share of the compliance period's steps with data in which the SLO was fulfilled.");
    EACH_SLO(st[i].compliance_covered_ns > 0, "casca_slo_compliance_ratio", st[i].compliance)
    prom_family(b, "casca_slo_error_budget_remaining_seconds", "gauge",
                "Error budget left in the budget window (negative once overspent); SLOs with an "
                "error_budget only.");
    EACH_SLO(st[i].has_budget, "casca_slo_error_budget_remaining_seconds",
             seconds(st[i].budget_allowed_ns - st[i].budget_spent_ns))
    prom_family(b, "casca_slo_error_budget_remaining_ratio", "gauge",
                "Error budget left as a share of the budget allowed (1 = untouched).");
    EACH_SLO(st[i].has_budget && st[i].budget_allowed_ns > 0,
             "casca_slo_error_budget_remaining_ratio",
             1.0 - (double)st[i].budget_spent_ns / (double)st[i].budget_allowed_ns)
    prom_family(b, "casca_slo_error_budget_burn_rate", "gauge",
                "Missed share of the last hour over the share the budget allows (1 = burning "
                "exactly at budget).");
    EACH_SLO(st[i].has_budget, "casca_slo_error_budget_burn_rate", st[i].burn_rate_1h)
#undef EACH_SLO
    free(st);
    slo_view_put(v);
}

/* ---- settings ---- */

static void write_settings(struct daemon *d, struct prom_buf *b)
{
    struct ctl_view *v = ctl_view_get(d->ctl);
    size_t n = ctl_view_count(v);
    struct ctl_reading *r = calloc(n ? n : 1, sizeof(*r));
    if (!r) {
        b->failed = true;
        ctl_view_put(v);
        return;
    }
    int64_t deadline = casca_mono_ns() + SETTING_READ_BUDGET_NS;
    for (size_t i = 0; i < n; i++) {
        const struct ctl_public *p = ctl_view_at(v, i);
        if (p->type == CTL_STRING) continue; /* free text has no number to show */
        /* the value casca last read or applied; a setting not read yet is read now, once the
         * budget allows (a service that does not answer leaves it out of this scrape) */
        bool known = ctl_peek(d->ctl, p->id, &r[i]) == CASCA_OK && r[i].value.kind != CTL_NONE;
        if (!known && casca_mono_ns() < deadline) {
            char why[256];
            ctl_reading_clear(&r[i]);
            if (ctl_get(d->ctl, p->id, deadline, &r[i], why, sizeof(why)) != CASCA_OK)
                ctl_reading_clear(&r[i]);
        }
    }
    prom_family(b, "casca_setting_value", "gauge",
                "A numeric or boolean setting's value as casca last read or applied it (bool: 0 "
                "or 1).");
    for (size_t i = 0; i < n; i++) {
        const struct ctl_value *x = &r[i].value;
        const char *id = ctl_view_at(v, i)->id;
        if (x->kind == CTL_INT)
            prom_sample1(b, "casca_setting_value", "setting", id, (double)x->i);
        else if (x->kind == CTL_DOUBLE)
            prom_sample1(b, "casca_setting_value", "setting", id, x->d);
        else if (x->kind == CTL_BOOL)
            prom_sample1(b, "casca_setting_value", "setting", id, x->b ? 1 : 0);
    }
    prom_family(b, "casca_setting_enum_value", "gauge",
                "An enum setting's value: 1 for the allowed value it has, 0 for the others.");
    for (size_t i = 0; i < n; i++) {
        const struct ctl_public *p = ctl_view_at(v, i);
        if (p->type != CTL_ENUM || r[i].value.kind != CTL_STRING) continue;
        for (size_t k = 0; k < p->nallowed; k++) {
            const char *allowed = p->allowed[k].kind == CTL_STRING ? p->allowed[k].s : NULL;
            if (!allowed) continue;
            struct prom_label l[] = {{"setting", p->id}, {"value", allowed}};
            prom_sample(b, "casca_setting_enum_value", l, 2,
                        !strcmp(allowed, r[i].value.s) ? 1 : 0);
        }
    }
    for (size_t i = 0; i < n; i++)
        ctl_reading_clear(&r[i]);
    free(r);
    ctl_view_put(v);
}

/* ---- carbon and agents ---- */

static void write_carbon(struct daemon *d, struct prom_buf *b)
{
    struct config *c = config_live_get(d->live);
    const char *zones[MAX_ZONES];
    size_t n = carbon_zones(c, zones, MAX_ZONES);
    int64_t at = carbon_replay_time(d->carbon, casca_wall_ns(), NULL, NULL, 0);
    prom_family(b, "casca_grid_intensity_grams_per_kwh", "gauge",
                "The grid's carbon intensity now (the carbon clock's hour) in each configured "
                "zone, gCO2eq/kWh, from the store (bundled, imported or cached provider data).");
    for (size_t i = 0; i < n; i++) {
        struct carbon_figure f;
        if (carbon_intensity_at(d->carbon, zones[i], at, &f) == CASCA_OK)
            prom_sample1(b, "casca_grid_intensity_grams_per_kwh", "zone", zones[i],
                         f.gco2eq_per_kwh);
    }
    config_unref(c);

    static const char *const modes[AGENT_MODES] = {NULL, "control", "shadow", "observe"};
    size_t counts[AGENT_MODES];
    agent_session_modes(d->agent, counts);
    prom_family(b, "casca_agent_sessions", "gauge", "Agent sessions open now, by mode.");
    for (size_t m = 1; m < AGENT_MODES; m++)
        prom_sample1(b, "casca_agent_sessions", "mode", modes[m], (double)counts[m]);
}

/* ---- ingest: hooks, buses, telemetry ---- */

/* Hook names are the operator's private vocabulary (they often name the service or its series):
 * only an operator sees the per-hook rows. */
static void write_ingest(struct daemon *d, struct prom_buf *b, bool operator)
{
    struct hook_stats hs[MAX_HOOKS];
    size_t n = hooks_stats(d->hooks, hs, MAX_HOOKS);
    static const struct {
        const char *name, *type, *help;
        size_t offset;
    } hook_rows[] = {
        {"casca_hook_queued_messages", "gauge", "Messages waiting in the hook's queue.",
         offsetof(struct hook_stats, queued)},
        {"casca_hook_dropped_total", "counter", "Messages the hook dropped: its queue was full.",
         offsetof(struct hook_stats, dropped)},
        {"casca_hook_stored_total", "counter", "Messages the hook interpreted and stored.",
         offsetof(struct hook_stats, stored)},
        {"casca_hook_errors_total", "counter", "Messages the hook could not interpret or store.",
         offsetof(struct hook_stats, errors)},
    };
    for (size_t r = 0; operator && r < sizeof(hook_rows) / sizeof(hook_rows[0]); r++) {
        prom_family(b, hook_rows[r].name, hook_rows[r].type, hook_rows[r].help);
        for (size_t i = 0; i < n; i++)
            prom_sample1(b, hook_rows[r].name, "hook", hs[i].name,
                         (double)*(const uint64_t *)((const char *)&hs[i] + hook_rows[r].offset));
    }
    struct bus_stats bus;
    hooks_bus_stats(d->hooks, &bus);
    prom_family(b, "casca_bus_received_total", "counter", "Messages the buses received.");
    prom_sample(b, "casca_bus_received_total", NULL, 0, (double)bus.received);
    prom_family(b, "casca_bus_malformed_total", "counter",
                "Messages the buses could not read (no topic, too large).");
    prom_sample(b, "casca_bus_malformed_total", NULL, 0, (double)bus.malformed);
    prom_family(b, "casca_bus_unrouted_total", "counter", "Messages no hook subscribed to.");
    prom_sample(b, "casca_bus_unrouted_total", NULL, 0, (double)bus.unrouted);
    prom_family(b, "casca_bus_datagrams_lost_total", "counter",
                "Datagrams a udp:// bus address lost before reading them (receive buffer full).");
    prom_sample(b, "casca_bus_datagrams_lost_total", NULL, 0, (double)bus.lost);

    uint64_t accepted = 0, rejected = 0;
    telemetry_counts(d->telemetry, &accepted, &rejected);
    prom_family(b, "casca_telemetry_points_accepted_total", "counter",
                "Points Publish, PublishStream, remote write and OTLP Export accepted.");
    prom_sample(b, "casca_telemetry_points_accepted_total", NULL, 0, (double)accepted);
    prom_family(b, "casca_telemetry_points_rejected_total", "counter",
                "Points Publish, PublishStream, remote write and OTLP Export rejected.");
    prom_sample(b, "casca_telemetry_points_rejected_total", NULL, 0, (double)rejected);
}

/* ---- the store ---- */

static void write_store(struct daemon *d, struct prom_buf *b)
{
    struct store_stats ss = {0};
    store_stats(d->store, &ss);
    struct tsdb_stats ts = {0};
    tsdb_stats(d->tsdb, &ts);
    const struct {
        const char *name, *type, *help;
        double value;
    } rows[] = {
        {"casca_store_size_bytes", "gauge", "Size of the store's data file (data.mdb).",
         (double)ss.file_bytes},
        {"casca_store_map_size_bytes", "gauge", "The store's current LMDB map size.",
         (double)ss.map_bytes},
        {"casca_store_pending_writes", "gauge", "Writes queued for the store's writer.",
         (double)ss.pending},
        {"casca_store_commits_total", "counter", "Write transactions committed (group commits).",
         (double)ss.commits},
        {"casca_store_writes_total", "counter", "Writes committed.", (double)ss.writes},
        {"casca_store_failed_writes_total", "counter", "Writes that completed with an error.",
         (double)ss.failed_writes},
        {"casca_store_last_commit_duration_seconds", "gauge",
         "Duration of the last group commit: begin, writes, commit and sync.",
         seconds((int64_t)ss.last_commit_ns)},
        {"casca_store_max_write_wait_seconds", "gauge",
         "The longest a write waited from being queued to its commit, since start.",
         seconds((int64_t)ss.max_wait_ns)},
        {"casca_tsdb_series", "gauge", "Time series known (series + tag sets).", (double)ts.series},
        {"casca_tsdb_points_written_total", "counter", "Points committed to the time-series store.",
         (double)ts.written},
        {"casca_tsdb_points_refused_total", "counter",
         "Points the time-series store refused because its queue was full.",
         (double)ts.refused_full},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        prom_family(b, rows[i].name, rows[i].type, rows[i].help);
        prom_sample(b, rows[i].name, NULL, 0, rows[i].value);
    }
}

/* ---- the call layer ---- */

struct method_list {
    struct rpc_method_stats *v;
    size_t n, cap;
    bool failed;
};

static void collect_method(void *arg, const struct rpc_method_stats *st)
{
    struct method_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        struct rpc_method_stats *grown = realloc(l->v, cap * sizeof(*grown));
        if (!grown) {
            l->failed = true;
            return;
        }
        l->v = grown;
        l->cap = cap;
    }
    l->v[l->n++] = *st;
}

static int by_path(const void *a, const void *b)
{
    return strcmp(((const struct rpc_method_stats *)a)->path,
                  ((const struct rpc_method_stats *)b)->path);
}

static void write_rpc(struct daemon *d, struct prom_buf *b)
{
    struct rpc_stats rs;
    rpc_server_stats(d->rpc, &rs);
    prom_family(b, "casca_rpc_calls_active", "gauge", "gRPC calls in progress.");
    prom_sample(b, "casca_rpc_calls_active", NULL, 0, (double)rs.calls_active);
    struct method_list l = {0};
    rpc_server_method_stats(d->rpc, collect_method, &l); /* paths live as long as the server */
    if (l.failed) b->failed = true;
    if (l.n) qsort(l.v, l.n, sizeof(*l.v), by_path);
    prom_family(b, "casca_rpc_calls_total", "counter",
                "gRPC calls ended, by method and status code (codes with no call are left out).");
    for (size_t i = 0; i < l.n; i++)
        for (size_t c = 0; c < RPC_STATUS_CODES; c++)
            if (l.v[i].codes[c]) {
                struct prom_label lb[] = {{"method", l.v[i].path},
                                          {"code", casca_grpc_code_name((int)c)}};
                prom_sample(b, "casca_rpc_calls_total", lb, 2, (double)l.v[i].codes[c]);
            }
    prom_family(b, "casca_rpc_duration_seconds", "histogram",
                "Time from a gRPC call's arrival to its status (for streams: the stream's life), "
                "by method; methods never called are left out.");
    for (size_t i = 0; i < l.n; i++) {
        uint64_t total = 0;
        for (size_t k = 0; k <= RPC_LATENCY_BUCKETS; k++)
            total += l.v[i].latency[k];
        if (!total) continue;
        struct prom_label lb = {"method", l.v[i].path};
        prom_histogram(b, "casca_rpc_duration_seconds", &lb, 1, rpc_latency_bounds_s,
                       l.v[i].latency, RPC_LATENCY_BUCKETS,
                       seconds((int64_t)l.v[i].latency_sum_ns));
    }
    free(l.v);
}

void metrics_write(struct daemon *d, struct prom_buf *b, bool operator)
{
    write_process(d, b);
    write_slos(d, b);
    write_settings(d, b);
    write_carbon(d, b);
    write_ingest(d, b, operator);
    write_store(d, b);
    write_rpc(d, b);
}

void metrics_handler(void *arg, const struct http_request *req, struct http_response *res)
{
    struct prom_buf b = {0};
    metrics_write(arg, &b, req->role == RPC_ROLE_OPERATOR);
    if (b.failed) {
        prom_buf_free(&b);
        res->status = 503;
        res->body = strdup("server out of memory while writing the metrics; retry\n");
        res->len = res->body ? strlen(res->body) : 0;
        return;
    }
    res->content_type = PROM_CONTENT_TYPE;
    res->body = b.data; /* the server frees it */
    res->len = b.len;
}
