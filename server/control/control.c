#include "control.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "casca/v1/control.pb-c.h"
#include "casca_err.h"
#include "clock.h"
#include "log.h"
#include "timeconv.h"
#include "watch.h"

#define MSG_LEN 512

struct control {
    struct ctl *ctl;
    struct watch_hub *watches;
};

/* The call's deadline as CLOCK_MONOTONIC ns, a little early so the answer beats the client's
 * own timer; INT64_MAX when the caller set none. */
static int64_t deadline_of(struct rpc_ctx *ctx)
{
    int64_t ms = rpc_deadline_ms(ctx);
    if (ms == INT64_MAX)
        return INT64_MAX;
    int64_t margin = ms / 10 < 10 ? ms / 10 : 10;
    return casca_mono_ns() + (ms - margin) * 1000000;
}

/* ---- messages ---- */

void control_value_from_pb(const Casca__V1__Value *pb, struct ctl_value *v)
{
    memset(v, 0, sizeof(*v));
    switch (pb ? pb->kind_case : CASCA__V1__VALUE__KIND__NOT_SET) {
    case CASCA__V1__VALUE__KIND_INT_VALUE: *v = (struct ctl_value){.kind = CTL_INT, .i = pb->int_value}; break;
    case CASCA__V1__VALUE__KIND_DOUBLE_VALUE:
        *v = (struct ctl_value){.kind = CTL_DOUBLE, .d = pb->double_value};
        break;
    case CASCA__V1__VALUE__KIND_BOOL_VALUE:
        *v = (struct ctl_value){.kind = CTL_BOOL, .b = pb->bool_value};
        break;
    case CASCA__V1__VALUE__KIND_STRING_VALUE:
        *v = (struct ctl_value){.kind = CTL_STRING, .s = pb->string_value};
        break;
    default: break;
    }
}

void control_setting_value(const char *id, const struct ctl_reading *r, struct control_sv *p)
{
    casca__v1__setting_value__init(&p->sv);
    p->sv.id = (char *)id;
    if (r->value.kind != CTL_NONE) {
        ctl_value_to_pb(&r->value, &p->value);
        p->sv.value = &p->value;
    }
    if (r->updated_ns) {
        google__protobuf__timestamp__init(&p->at);
        casca_timestamp_parts(r->updated_ns, &p->at.seconds, &p->at.nanos);
        p->sv.updated_at = &p->at;
    }
    p->sv.changed_by = (char *)r->changed_by;
    if (r->value.kind == CTL_NONE)
        p->sv.reason = (char *)r->reason;
}

#define ID_HOW "the public id of a setting, as ListSettings names them"

/* ---- ListSettings ---- */

static void list_settings(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct control *c = rpc_method_arg(ctx);
    const Casca__V1__ListSettingsRequest *req = (const Casca__V1__ListSettingsRequest *)msg;
    if (!rpc_require_each(ctx, "ids", req->ids, req->n_ids, ID_HOW " (or no ids for all)"))
        return;
    struct ctl_view *v = ctl_view_get(c->ctl);
    size_t n = req->n_ids ? req->n_ids : ctl_view_count(v);
    for (size_t i = 0; i < req->n_ids; i++)
        if (ctl_view_find(v, req->ids[i]) < 0) {
            rpc_finish(ctx, CASCA_ERR_NOT_FOUND,
                       "unknown setting '%.64s': leave ids empty to list every setting",
                       req->ids[i]);
            ctl_view_put(v);
            return;
        }
    Casca__V1__Setting *settings = calloc(n ? n : 1, sizeof(*settings));
    Casca__V1__Setting **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    Casca__V1__Range *ranges = calloc(n ? n : 1, sizeof(*ranges));
    size_t nallowed = 0;
    for (size_t i = 0; i < ctl_view_count(v); i++)
        nallowed += ctl_view_at(v, i)->nallowed;
    Casca__V1__Value *allowed = calloc(nallowed ? nallowed : 1, sizeof(*allowed));
    Casca__V1__Value **aptrs = calloc(nallowed ? nallowed : 1, sizeof(*aptrs));
    if (!settings || !ptrs || !ranges || !allowed || !aptrs) {
        rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
        goto out;
    }
    size_t a = 0;
    for (size_t i = 0; i < n; i++) {
        const struct ctl_public *p =
            ctl_view_at(v, req->n_ids ? (size_t)ctl_view_find(v, req->ids[i]) : i);
        Casca__V1__Setting *s = &settings[i];
        casca__v1__setting__init(s);
        s->id = (char *)p->id;
        s->description = (char *)p->description;
        s->unit = (char *)p->unit;
        s->type = (Casca__V1__ValueType)p->type;
        s->step = p->step;
        s->read_only = p->read_only;
        if (p->has_min || p->has_max) {
            casca__v1__range__init(&ranges[i]);
            if (p->has_min) {
                ranges[i].optional_min_case = CASCA__V1__RANGE__OPTIONAL_MIN_MIN;
                ranges[i].min = p->min;
            }
            if (p->has_max) {
                ranges[i].optional_max_case = CASCA__V1__RANGE__OPTIONAL_MAX_MAX;
                ranges[i].max = p->max;
            }
            s->range = &ranges[i];
        }
        s->allowed = &aptrs[a];
        s->n_allowed = p->nallowed;
        for (size_t k = 0; k < p->nallowed && a < nallowed; k++, a++) {
            ctl_value_to_pb(&p->allowed[k], &allowed[a]);
            aptrs[a] = &allowed[a];
        }
        ptrs[i] = s;
    }
    Casca__V1__ListSettingsResponse resp = CASCA__V1__LIST_SETTINGS_RESPONSE__INIT;
    resp.n_settings = n;
    resp.settings = ptrs;
    rpc_reply(ctx, &resp.base);
out:
    free(settings);
    free(ptrs);
    free(ranges);
    free(allowed);
    free(aptrs);
    ctl_view_put(v);
}

/* ---- GetSetting, SetSetting ---- */

static void get_setting(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct control *c = rpc_method_arg(ctx);
    const Casca__V1__GetSettingRequest *req = (const Casca__V1__GetSettingRequest *)msg;
    if (!rpc_require(ctx, "id", req->id, ID_HOW))
        return;
    struct ctl_reading r;
    char why[MSG_LEN];
    int rc = ctl_get(c->ctl, req->id, deadline_of(ctx), &r, why, sizeof(why));
    if (rc != CASCA_OK) {
        rpc_finish(ctx, rc, "%s", why);
        return;
    }
    struct control_sv p;
    control_setting_value(req->id, &r, &p);
    rpc_reply(ctx, &p.sv.base);
    ctl_reading_clear(&r);
}

/* A SetSetting waiting for its audit entry's commit: the worker thread is free meanwhile, so
 * changes in flight together share one commit. */
struct set_call {
    struct rpc_ctx *ctx;
    char id[160];
};

static void set_answer(void *arg, int rc, const struct ctl_reading *r, const char *why)
{
    struct set_call *call = arg;
    if (rc != CASCA_OK) {
        rpc_finish(call->ctx, rc, "%s", why);
    } else {
        struct control_sv p;
        control_setting_value(call->id, r, &p);
        rpc_reply(call->ctx, &p.sv.base);
    }
    free(call);
}

static void set_setting(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct control *c = rpc_method_arg(ctx);
    const Casca__V1__SetSettingRequest *req = (const Casca__V1__SetSettingRequest *)msg;
    if (!rpc_require(ctx, "id", req->id, ID_HOW))
        return;
    struct ctl_value value;
    control_value_from_pb(req->value, &value);
    struct ctl_request cr = {
        .id = req->id,
        .value = &value,
        .dry_run = req->dry_run,
        .caller = rpc_caller_name(ctx),
        .deadline_ns = deadline_of(ctx),
    };
    struct set_call *call = malloc(sizeof(*call));
    if (!call) {
        rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
        return;
    }
    call->ctx = ctx;
    snprintf(call->id, sizeof(call->id), "%s", req->id);
    if (ctl_set_async(c->ctl, &cr, set_answer, call) != CASCA_OK) {
        free(call);
        rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
    }
}

/* ---- WatchSettings ---- */

/* A watch slot's value: the latest reading of the setting. */
static void reading_clear(void *value)
{
    ctl_reading_clear(value);
}

static int reading_send(struct rpc_ctx *ctx, const char *id, void *value)
{
    struct control_sv p;
    control_setting_value(id, value, &p);
    return rpc_send(ctx, &p.sv.base);
}

/* A watched setting is re-read at least every second (or its max_age), so changes made on the
 * service itself and failures reach the watch too. */
static void keyed(void *arg, const char *id)
{
    ctl_watch(arg, id, 0);
}

static void unkeyed(void *arg, const char *id)
{
    ctl_unwatch(arg, id, 0);
}

static const struct watch_ops watch_ops = {
    .value_size = sizeof(struct ctl_reading),
    .clear = reading_clear,
    .send = reading_send,
    .keyed = keyed,
    .unkeyed = unkeyed,
};

/* fill: copies the reading arg. */
static int reading_copy(void *value, void *arg)
{
    struct ctl_reading *dst = value;
    const struct ctl_reading *r = arg;
    ctl_reading_clear(dst);
    if (ctl_reading_copy(dst, r) != CASCA_OK) {
        ctl_reading_clear(dst);
        return CASCA_ERR_NOMEM;
    }
    return CASCA_OK;
}

/* fill: takes the reading arg over (arg is left empty). */
static int reading_move(void *value, void *arg)
{
    struct ctl_reading *dst = value, *r = arg;
    ctl_reading_clear(dst);
    *dst = *r;
    memset(r, 0, sizeof(*r));
    return CASCA_OK;
}

/* ctl listener: a setting's value changed. Never blocks: sends or coalesces. */
static void on_change(void *arg, const char *id, const struct ctl_reading *r)
{
    struct control *c = arg;
    watch_publish(c->watches, id, true, reading_copy, (void *)r);
}

static void watch_settings(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct control *c = rpc_method_arg(ctx);
    const Casca__V1__WatchSettingsRequest *req = (const Casca__V1__WatchSettingsRequest *)msg;
    if (!rpc_require_each(ctx, "ids", req->ids, req->n_ids, ID_HOW " (or no ids for all)"))
        return;
    struct ctl_view *v = ctl_view_get(c->ctl);
    for (size_t i = 0; i < req->n_ids; i++)
        if (ctl_view_find(v, req->ids[i]) < 0) {
            rpc_finish(ctx, CASCA_ERR_NOT_FOUND,
                       "unknown setting '%.64s': ListSettings names the settings you may watch",
                       req->ids[i]);
            ctl_view_put(v);
            return;
        }
    size_t n = req->n_ids ? req->n_ids : ctl_view_count(v);
    const char **ids = calloc(n ? n : 1, sizeof(*ids));
    struct watch *w = NULL;
    if (ids) {
        for (size_t i = 0; i < n; i++)
            ids[i] = req->n_ids ? req->ids[i] : ctl_view_at(v, i)->id;
        w = watch_open(c->watches, ctx, ids, n, req->n_ids == 0, 0);
    }
    if (!w) {
        free(ids);
        ctl_view_put(v);
        rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
        return;
    }
    /* the current values, read without the lock (changes meanwhile land in the slots and are
     * newer than what we read); a setting unreadable for now is sent without a value */
    int64_t deadline = deadline_of(ctx);
    for (size_t i = 0; i < n; i++) {
        struct ctl_reading r;
        char why[MSG_LEN];
        if (ctl_get(c->ctl, ids[i], deadline, &r, why, sizeof(why)) != CASCA_OK)
            ctl_peek(c->ctl, ids[i], &r); /* no value, and why */
        watch_seed(w, ids[i], reading_move, &r);
        ctl_reading_clear(&r);
    }
    watch_start(w);
    free(ids);
    ctl_view_put(v);
}

/* ---- lifecycle ---- */

/* Reads for viewers, agents and operators; a change for agents and operators. Everything that
 * may call the service behind a setting runs on the worker pool. */
static const struct rpc_method_def control_methods[] = {
    RPC_METHOD("ListSettings", casca__v1__list_settings_request,
               casca__v1__list_settings_response, RPC_UNARY, RPC_ROLES_READ, 0, list_settings),
    RPC_METHOD("GetSetting", casca__v1__get_setting_request, casca__v1__setting_value, RPC_UNARY,
               RPC_ROLES_READ, RPC_BLOCKING, get_setting),
    RPC_METHOD("SetSetting", casca__v1__set_setting_request, casca__v1__setting_value, RPC_UNARY,
               RPC_ROLE_AGENT | RPC_ROLE_OPERATOR, RPC_BLOCKING, set_setting),
    RPC_METHOD("WatchSettings", casca__v1__watch_settings_request, casca__v1__setting_value,
               RPC_SERVER_STREAM, RPC_ROLES_READ, RPC_BLOCKING, watch_settings),
};

int control_create(struct rpc_server *srv, struct ctl *ctl, struct control **out, char *err,
                   size_t errlen)
{
    struct control *c = *out = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    c->ctl = ctl;
    int rc = CASCA_ERR_NOMEM;
    if (!(c->watches = watch_hub_create(&watch_ops, ctl)) ||
        (rc = ctl_listen(ctl, on_change, c)) != CASCA_OK)
        snprintf(err, errlen, "service control: %s", casca_strerror(rc));
    else
        rc = rpc_server_add_service(srv, &casca__v1__service_control__descriptor, NULL,
                                    control_methods, RPC_NMETHODS(control_methods), c, err,
                                    errlen);
    if (rc) {
        control_destroy(c);
        *out = NULL;
    }
    return rc;
}

void control_destroy(struct control *c)
{
    if (!c)
        return;
    ctl_unlisten(c->ctl, on_change, c);
    watch_hub_destroy(c->watches);
    free(c);
}
