#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "audit.h"
#include "bus.h"
#include "casca/v1/admin.pb-c.h"
#include "clock.h"
#include "config.h"
#include "ctl.h"
#include "daemon.h"
#include "hooks.h"
#include "slo_engine.h"
#include "slo_service.h"
#include "store.h"
#include "timeconv.h"

#define AUDIT_DEFAULT_LIMIT 100
#define AUDIT_MAX_LIMIT 10000

struct admin {
    struct daemon *d;
};

static int64_t ts_to_ns(const Google__Protobuf__Timestamp *t, int64_t if_unset)
{
    return t ? casca_ns_of(t->seconds, t->nanos) : if_unset;
}

static void ns_to_ts(int64_t ns, Google__Protobuf__Timestamp *t)
{
    google__protobuf__timestamp__init(t);
    casca_timestamp_parts(ns, &t->seconds, &t->nanos);
}

static void reload(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct admin *a = rpc_method_arg(ctx);
    struct config_errors errs = {0}, warnings = {0};
    uint64_t gen = 0;
    int rc = daemon_reload(a->d, &errs, &warnings, &gen);
    Casca__V1__ReloadResponse resp = CASCA__V1__RELOAD_RESPONSE__INIT;
    resp.ok = rc == CASCA_OK;
    resp.n_errors = errs.n;
    resp.errors = errs.lines;
    resp.n_warnings = warnings.n;
    resp.warnings = warnings.lines;
    if (!resp.ok) {
        struct config *cur = config_live_get(a->d->live);
        gen = cur->generation; /* the generation still in force */
        config_unref(cur);
    }
    resp.generation = gen;
    rpc_reply(ctx, &resp.base);
    config_errors_free(&errs);
    config_errors_free(&warnings);
}

static void get_status(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct admin *a = rpc_method_arg(ctx);
    struct daemon *d = a->d;
    Casca__V1__GetStatusResponse resp = CASCA__V1__GET_STATUS_RESPONSE__INIT;
    Google__Protobuf__Duration uptime = GOOGLE__PROTOBUF__DURATION__INIT;
    Google__Protobuf__Timestamp started;
    struct config *c = config_live_get(d->live);
    struct rpc_stats rs;
    struct store_stats ss = {0};

    resp.version = CASCA_VERSION;
    casca_duration_parts(casca_mono_ns() - d->started_mono_ns, &uptime.seconds, &uptime.nanos);
    resp.uptime = &uptime;
    ns_to_ts(d->started_ns, &started);
    resp.started_at = &started;
    resp.config_generation = c->generation;
    resp.config_path = c->path;
    store_stats(d->store, &ss);
    resp.store_size_bytes = ss.file_bytes;
    resp.store_map_size_bytes = ss.map_bytes;
    rpc_server_stats(d->rpc, &rs);
    resp.calls_total = rs.calls_total;
    resp.calls_active = rs.calls_active;
    resp.calls_failed = rs.calls_failed;

    const char *const *names;
    struct ctl_view *settings = ctl_view_get(d->ctl);
    struct slo_view *slos = slo_view_get(slo_service_engine(d->slo));
    struct bus_stats bus;
    hooks_bus_stats(d->hooks, &bus);
    const struct {
        const char *key;
        int64_t value;
    } rows[] = {
        {"slos", (int64_t)slo_view_count(slos)},
        {"settings", (int64_t)ctl_view_count(settings)},
        {"hooks", (int64_t)hooks_count(d->hooks)},
        {"agent_sessions", (int64_t)agent_session_count(d->agent)},
        {"services", (int64_t)rpc_server_services(d->rpc, &names)},
        {"auth_tokens", (int64_t)c->auth.ntokens},
        {"audit_entries", (int64_t)audit_count(d->audit)},
        {"bus_received", (int64_t)bus.received},
        {"bus_malformed", (int64_t)bus.malformed},
        {"bus_unrouted", (int64_t)bus.unrouted},
        {"bus_datagrams_lost", (int64_t)bus.lost},
        {"store_commits", (int64_t)ss.commits},
        {"store_max_write_wait_us", (int64_t)(ss.max_wait_ns / 1000)},
    };
    enum { NROWS = sizeof(rows) / sizeof(rows[0]) };
    slo_view_put(slos);
    ctl_view_put(settings);
    Casca__V1__GetStatusResponse__CountsEntry counts[NROWS], *count_ptrs[NROWS];
    for (size_t i = 0; i < NROWS; i++) {
        casca__v1__get_status_response__counts_entry__init(&counts[i]);
        counts[i].key = (char *)rows[i].key;
        counts[i].value = rows[i].value;
        count_ptrs[i] = &counts[i];
    }
    resp.n_counts = NROWS;
    resp.counts = count_ptrs;
    resp.hooks = hooks_status_pb(d->hooks, &resp.n_hooks);
    rpc_reply(ctx, &resp.base);
    free(resp.hooks);
    config_unref(c);
}

struct audit_scan {
    const char *setting_id;
    size_t limit;
    Casca__V1__AuditEntry **entries;
    size_t n;
    int err;
};

static int collect_entry(uint64_t seq, int64_t time_ns, const void *payload, size_t len, void *arg)
{
    struct audit_scan *s = arg;
    Casca__V1__AuditEntry *e = casca__v1__audit_entry__unpack(NULL, len, payload);
    if (!e)
        return 0; /* a record this version cannot read: skip it */
    if (*s->setting_id && strcmp(e->setting_id, s->setting_id) != 0) {
        casca__v1__audit_entry__free_unpacked(e, NULL);
        return 0;
    }
    e->seq = seq;
    if (!e->time) { /* the log's own time is authoritative */
        e->time = malloc(sizeof(*e->time));
        if (!e->time) {
            casca__v1__audit_entry__free_unpacked(e, NULL);
            s->err = CASCA_ERR_NOMEM;
            return 1;
        }
    }
    ns_to_ts(time_ns, e->time);
    s->entries[s->n++] = e;
    return s->n >= s->limit;
}

static void get_audit_log(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct admin *a = rpc_method_arg(ctx);
    const Casca__V1__GetAuditLogRequest *req = (const Casca__V1__GetAuditLogRequest *)msg;
    int64_t start = ts_to_ns(req->start, INT64_MIN), end = ts_to_ns(req->end, INT64_MAX);
    if (end < start) {
        rpc_finish(ctx, CASCA_ERR_INVALID, "end is before start: swap them or leave end unset");
        return;
    }
    if (req->limit > AUDIT_MAX_LIMIT) {
        rpc_finish(ctx, CASCA_ERR_INVALID, "limit %u is over %d: page with start instead",
                   req->limit, AUDIT_MAX_LIMIT);
        return;
    }
    struct audit_scan s = {.setting_id = req->setting_id,
                           .limit = req->limit ? req->limit : AUDIT_DEFAULT_LIMIT};
    if (!(s.entries = calloc(s.limit, sizeof(*s.entries)))) {
        rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
        return;
    }
    int rc = audit_scan(a->d->audit, start, end, 0, SIZE_MAX, collect_entry, &s);
    if (rc < 0 || s.err) {
        rpc_finish(ctx, s.err ? s.err : CASCA_ERR_IO, "cannot read the audit log");
    } else {
        Casca__V1__GetAuditLogResponse resp = CASCA__V1__GET_AUDIT_LOG_RESPONSE__INIT;
        resp.n_entries = s.n;
        resp.entries = s.entries;
        rpc_reply(ctx, &resp.base);
    }
    for (size_t i = 0; i < s.n; i++)
        casca__v1__audit_entry__free_unpacked(s.entries[i], NULL);
    free(s.entries);
}

/* The agent module owns the sessions and their recorded trajectories (agent.h). */
static void list_agent_sessions(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct admin *a = rpc_method_arg(ctx);
    agent_list_sessions(a->d->agent, ctx, msg);
}

static void export_trajectory(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct admin *a = rpc_method_arg(ctx);
    agent_export_trajectory(a->d->agent, ctx, msg);
}

/* Operators only; Reload, GetAuditLog and ExportTrajectory read the disk (GetAuditLog may wait
 * for the commit of entries on their way): the worker pool. */
#define OP RPC_ROLE_OPERATOR
static const struct rpc_method_def admin_methods[] = {
    RPC_METHOD("Reload", casca__v1__reload_request, casca__v1__reload_response, RPC_UNARY, OP,
               RPC_BLOCKING, reload),
    RPC_METHOD("GetStatus", casca__v1__get_status_request, casca__v1__get_status_response,
               RPC_UNARY, OP, 0, get_status),
    RPC_METHOD("GetAuditLog", casca__v1__get_audit_log_request, casca__v1__get_audit_log_response,
               RPC_UNARY, OP, RPC_BLOCKING, get_audit_log),
    RPC_METHOD("ListAgentSessions", casca__v1__list_agent_sessions_request,
               casca__v1__list_agent_sessions_response, RPC_UNARY, OP, 0, list_agent_sessions),
    RPC_METHOD("ExportTrajectory", casca__v1__export_trajectory_request,
               casca__v1__trajectory_step, RPC_SERVER_STREAM, OP, RPC_BLOCKING, export_trajectory),
};
#undef OP

int admin_create(struct rpc_server *srv, struct daemon *d, struct admin **out, char *err,
                 size_t errlen)
{
    struct admin *a = *out = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    a->d = d;
    int rc = rpc_server_add_service(srv, &casca__v1__admin_service__descriptor, NULL,
                                    admin_methods, RPC_NMETHODS(admin_methods), a, err, errlen);
    if (rc) {
        free(a);
        *out = NULL;
    }
    return rc;
}

void admin_destroy(struct admin *a)
{
    free(a);
}
