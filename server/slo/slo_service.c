#include "slo_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "carbon.h"
#include "casca/v1/slo.pb-c.h"
#include "casca_err.h"
#include "log.h"
#include "slo_engine.h"
#include "timeconv.h"
#include "watch.h"


typedef Casca__V1__SloStatus SloStatus;

/* The public face of an SLO: what any caller may see. Strings borrowed or owned (see users). */
struct pub {
    char *id, *description, *unit, *aggregation;
    int kind;
    bool has_min, has_max;
    double min, max;
    int64_t window_ns; /* 0 when hidden */
    double budget_target; /* 0: no error budget */
    int64_t budget_window_ns;
};

static void pub_of(const struct slo_def *d, struct pub *p)
{
    *p = (struct pub){
        .id = d->id,
        .description = d->description,
        .unit = d->unit,
        .aggregation = d->hide_aggregation ? "" : d->aggregation,
        .kind = (int)d->kind,
        .has_min = d->has_min,
        .has_max = d->has_max,
        .min = d->min,
        .max = d->max,
        .window_ns = d->hide_window ? 0 : d->window_ns,
        .budget_target = d->budget_target,
        .budget_window_ns = d->budget_window_ns,
    };
}

static void pub_clear(struct pub *p)
{
    free(p->id);
    free(p->description);
    free(p->unit);
    free(p->aggregation);
    memset(p, 0, sizeof(*p));
}

static int pub_copy(struct pub *dst, const struct pub *src)
{
    pub_clear(dst);
    *dst = *src;
    dst->id = strdup(src->id);
    dst->description = strdup(src->description ? src->description : "");
    dst->unit = strdup(src->unit ? src->unit : "");
    dst->aggregation = strdup(src->aggregation ? src->aggregation : "");
    if (!dst->id || !dst->description || !dst->unit || !dst->aggregation) {
        pub_clear(dst);
        return CASCA_ERR_NOMEM;
    }
    return CASCA_OK;
}

/* ---- messages ---- */

struct slo_parts {
    Casca__V1__Slo slo;
    Casca__V1__Range objective;
    Google__Protobuf__Duration window;
};

static void duration_of(int64_t ns, Google__Protobuf__Duration *d)
{
    google__protobuf__duration__init(d);
    casca_duration_parts(ns, &d->seconds, &d->nanos);
}

/* Fills parts from p (borrowing its strings). With removed, only the id. */
static void slo_msg(const struct pub *p, bool removed, struct slo_parts *parts)
{
    casca__v1__slo__init(&parts->slo);
    parts->slo.id = p->id;
    if (removed)
        return;
    parts->slo.description = p->description;
    parts->slo.unit = p->unit;
    parts->slo.aggregation = p->aggregation;
    parts->slo.kind = (Casca__V1__SloKind)p->kind;
    casca__v1__range__init(&parts->objective);
    if (p->has_min) {
        parts->objective.optional_min_case = CASCA__V1__RANGE__OPTIONAL_MIN_MIN;
        parts->objective.min = p->min;
    }
    if (p->has_max) {
        parts->objective.optional_max_case = CASCA__V1__RANGE__OPTIONAL_MAX_MAX;
        parts->objective.max = p->max;
    }
    parts->slo.objective = &parts->objective;
    if (p->window_ns) {
        duration_of(p->window_ns, &parts->window);
        parts->slo.window = &parts->window;
    }
}

struct status_parts {
    SloStatus s;
    struct slo_parts slo;
    Google__Protobuf__Timestamp at;
    Google__Protobuf__Duration covered, period;
    Casca__V1__ErrorBudget budget;
    Google__Protobuf__Duration budget_window, allowed, spent, remaining, budget_covered;
};

static void budget_msg(const struct pub *d, const struct slo_status *st,
                       struct status_parts *parts)
{
    Casca__V1__ErrorBudget *b = &parts->budget;
    casca__v1__error_budget__init(b);
    b->target = d->budget_target;
    duration_of(d->budget_window_ns, &parts->budget_window);
    b->window = &parts->budget_window;
    duration_of(st->budget_allowed_ns, &parts->allowed);
    b->allowed = &parts->allowed;
    duration_of(st->budget_spent_ns, &parts->spent);
    b->spent = &parts->spent;
    int64_t remaining = st->budget_allowed_ns - st->budget_spent_ns;
    duration_of(remaining, &parts->remaining);
    b->remaining = &parts->remaining;
    b->remaining_ratio =
        st->budget_allowed_ns ? (double)remaining / (double)st->budget_allowed_ns : 0;
    b->burn_rate_1h = st->burn_rate_1h;
    duration_of(st->budget_covered_ns, &parts->budget_covered);
    b->covered = &parts->budget_covered;
    parts->s.budget = b;
}

static void status_msg(const struct pub *p, const struct slo_status *st, bool removed,
                       struct status_parts *parts)
{
    casca__v1__slo_status__init(&parts->s);
    slo_msg(p, removed, &parts->slo);
    parts->s.slo = &parts->slo.slo;
    parts->s.removed = removed;
    if (removed || !st)
        return;
    parts->s.has_value = st->has_value;
    parts->s.value = st->has_value ? st->value : 0;
    parts->s.fulfilled = st->fulfilled;
    parts->s.sample_count = (int64_t)st->count;
    google__protobuf__timestamp__init(&parts->at);
    casca_timestamp_parts(st->evaluated_ns, &parts->at.seconds, &parts->at.nanos);
    parts->s.evaluated_at = &parts->at;
    parts->s.compliance = st->compliance_covered_ns ? st->compliance : 0;
    duration_of(st->compliance_covered_ns, &parts->covered);
    parts->s.compliance_covered = &parts->covered;
    duration_of(st->compliance_period_ns, &parts->period);
    parts->s.compliance_period = &parts->period;
    if (st->has_budget)
        budget_msg(p, st, parts);
}

/* ---- the service ---- */

struct slo_service {
    struct slo_engine *engine;
    struct carbon *carbon;
    struct watch_hub *watches;
};

static int intensity_at(void *arg, const char *zone, int64_t time_ns, double *g)
{
    struct carbon_figure fig;
    /* telemetry keeps real time; the grid's hour is the carbon clock's (replay.h) */
    int rc = carbon_intensity_at(arg, zone, carbon_replay_time(arg, time_ns, NULL, NULL, 0), &fig);
    if (rc == CASCA_OK)
        *g = fig.gco2eq_per_kwh;
    return rc;
}

static double budget_speed(void *arg, int64_t now_ns)
{
    double speed = 1;
    carbon_replay_time(arg, now_ns, &speed, NULL, 0);
    return speed;
}

#define NOT_FOUND_FMT "unknown SLO '%.64s': ListSlos names the SLOs you may read"
#define ID_HOW "the public id of an SLO, as ListSlos names them"

/* ---- ListSlos ---- */

static void list_slos(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct slo_service *s = rpc_method_arg(ctx);
    const Casca__V1__ListSlosRequest *req = (const Casca__V1__ListSlosRequest *)msg;
    if (!rpc_require_each(ctx, "ids", req->ids, req->n_ids, ID_HOW " (or no ids for all)"))
        return;
    struct slo_view *v = slo_view_get(s->engine);
    size_t n = req->n_ids ? req->n_ids : slo_view_count(v);
    for (size_t i = 0; i < req->n_ids; i++)
        if (slo_view_find(v, req->ids[i]) < 0) {
            rpc_finish(ctx, CASCA_ERR_NOT_FOUND, NOT_FOUND_FMT, req->ids[i]);
            slo_view_put(v);
            return;
        }
    struct slo_parts *parts = calloc(n ? n : 1, sizeof(*parts));
    Casca__V1__Slo **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    if (!parts || !ptrs) {
        rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
    } else {
        for (size_t i = 0; i < n; i++) {
            size_t k = req->n_ids ? (size_t)slo_view_find(v, req->ids[i]) : i;
            struct pub p;
            pub_of(slo_view_def(v, k), &p);
            slo_msg(&p, false, &parts[i]);
            ptrs[i] = &parts[i].slo;
        }
        Casca__V1__ListSlosResponse resp = CASCA__V1__LIST_SLOS_RESPONSE__INIT;
        resp.n_slos = n;
        resp.slos = ptrs;
        rpc_reply(ctx, &resp.base);
    }
    free(parts);
    free(ptrs);
    slo_view_put(v);
}

/* ---- GetSlo ---- */

static void get_slo(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct slo_service *s = rpc_method_arg(ctx);
    const Casca__V1__GetSloRequest *req = (const Casca__V1__GetSloRequest *)msg;
    if (!rpc_require(ctx, "id", req->id, ID_HOW))
        return;
    struct slo_view *v = slo_view_get(s->engine);
    long i = slo_view_find(v, req->id);
    if (i < 0) {
        rpc_finish(ctx, CASCA_ERR_NOT_FOUND, NOT_FOUND_FMT, req->id);
    } else {
        struct slo_status st;
        slo_view_status(s->engine, v, (size_t)i, &st);
        struct pub p;
        pub_of(slo_view_def(v, (size_t)i), &p);
        struct status_parts parts;
        status_msg(&p, &st, false, &parts);
        rpc_reply(ctx, &parts.s.base);
    }
    slo_view_put(v);
}

/* ---- GetSloHistory ---- */

struct history {
    Casca__V1__SloSample *samples;
    Google__Protobuf__Timestamp *times;
    size_t n, cap;
};

static int add_sample(void *arg, const struct slo_status *st)
{
    struct history *h = arg;
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        Casca__V1__SloSample *s = realloc(h->samples, cap * sizeof(*s));
        if (s)
            h->samples = s;
        Google__Protobuf__Timestamp *t = s ? realloc(h->times, cap * sizeof(*t)) : NULL;
        if (!t)
            return CASCA_ERR_NOMEM;
        h->times = t;
        h->cap = cap;
    }
    Casca__V1__SloSample *s = &h->samples[h->n];
    casca__v1__slo_sample__init(s);
    google__protobuf__timestamp__init(&h->times[h->n]);
    casca_timestamp_parts(st->evaluated_ns, &h->times[h->n].seconds, &h->times[h->n].nanos);
    s->has_value = st->has_value;
    s->value = st->has_value ? st->value : 0;
    s->fulfilled = st->fulfilled;
    s->sample_count = (int64_t)st->count;
    h->n++;
    return CASCA_OK;
}

static int64_t ts_ns(const Google__Protobuf__Timestamp *t)
{
    return casca_ns_of(t->seconds, t->nanos);
}

static void get_slo_history(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct slo_service *s = rpc_method_arg(ctx);
    const Casca__V1__GetSloHistoryRequest *req = (const Casca__V1__GetSloHistoryRequest *)msg;
    if (!rpc_require(ctx, "id", req->id, ID_HOW))
        return;
    struct slo_view *v = slo_view_get(s->engine);
    long i = slo_view_find(v, req->id);
    if (i < 0) {
        rpc_finish(ctx, CASCA_ERR_NOT_FOUND, NOT_FOUND_FMT, req->id);
        slo_view_put(v);
        return;
    }
    const int64_t limit = INT64_C(4102444800) * 1000000000; /* 2100-01-01 */
    const Google__Protobuf__Timestamp *ts[2] = {req->start, req->end};
    for (int k = 0; k < 2; k++)
        if (ts[k] && (ts[k]->seconds < 0 || ts[k]->seconds > limit / 1000000000 ||
                      ts[k]->nanos < 0 || ts[k]->nanos > 999999999)) {
            rpc_finish(ctx, CASCA_ERR_INVALID, "%s is not a valid time between 1970 and 2100",
                       k ? "end" : "start");
            slo_view_put(v);
            return;
        }
    if (!req->start) {
        rpc_finish(ctx, CASCA_ERR_INVALID, "start is required: the first time to evaluate at");
        slo_view_put(v);
        return;
    }
    int64_t step = 0;
    if (req->step) {
        if (req->step->seconds < 0 || req->step->nanos < 0 || req->step->nanos > 999999999 ||
            req->step->seconds > 366LL * 86400) {
            rpc_finish(ctx, CASCA_ERR_INVALID,
                       "step must be a positive duration of at most a year (or unset)");
            slo_view_put(v);
            return;
        }
        step = casca_ns_of(req->step->seconds, req->step->nanos);
    }
    int64_t end = req->end ? ts_ns(req->end) : slo_engine_now(s->engine);
    struct history h = {0};
    char why[256] = "";
    int rc = slo_view_history(s->engine, v, (size_t)i, ts_ns(req->start), end, step, add_sample,
                              &h, why, sizeof(why));
    if (rc != CASCA_OK) {
        rpc_finish(ctx, rc, "%s", *why ? why : "out of memory");
    } else {
        Casca__V1__SloSample **ptrs = calloc(h.n ? h.n : 1, sizeof(*ptrs));
        if (!ptrs) {
            rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
        } else {
            for (size_t k = 0; k < h.n; k++) {
                h.samples[k].time = &h.times[k];
                ptrs[k] = &h.samples[k];
            }
            Casca__V1__GetSloHistoryResponse resp = CASCA__V1__GET_SLO_HISTORY_RESPONSE__INIT;
            resp.n_samples = h.n;
            resp.samples = ptrs;
            rpc_reply(ctx, &resp.base);
            free(ptrs);
        }
    }
    free(h.samples);
    free(h.times);
    slo_view_put(v);
}

/* ---- WatchSlos ---- */

/* A watch slot's value: the SLO's public face and latest status, or its removal. */
struct watched {
    struct pub pub; /* owned */
    struct slo_status st;
    bool removed;
};

static void watched_clear(void *value)
{
    struct watched *x = value;
    pub_clear(&x->pub);
    memset(x, 0, sizeof(*x));
}

static int watched_send(struct rpc_ctx *ctx, const char *id, void *value)
{
    struct watched *x = value;
    struct pub p = x->pub;
    p.id = (char *)id; /* a removal keeps only the id */
    struct status_parts parts;
    status_msg(&p, &x->st, x->removed, &parts);
    return rpc_send(ctx, &parts.s.base);
}

static const struct watch_ops watch_ops = {
    .value_size = sizeof(struct watched),
    .clear = watched_clear,
    .send = watched_send,
};

struct status_of {
    const struct pub *pub;
    const struct slo_status *st; /* NULL: removed */
};

/* fill: the status (or removal) arg. */
static int watched_fill(void *value, void *arg)
{
    struct watched *x = value;
    const struct status_of *a = arg;
    if (!a->st) {
        x->removed = true;
        return CASCA_OK;
    }
    if (pub_copy(&x->pub, a->pub) != CASCA_OK)
        return CASCA_ERR_NOMEM; /* keeps its old status; a later event retries */
    x->st = *a->st;
    x->removed = false;
    return CASCA_OK;
}

static void on_event(void *arg, enum slo_event ev, const struct slo_def *def,
                     const struct slo_status *st)
{
    struct slo_service *s = arg;
    struct pub p;
    pub_of(def, &p);
    struct status_of a = {&p, ev == SLO_EVENT_REMOVED ? NULL : st};
    watch_publish(s->watches, def->id, ev == SLO_EVENT_STATUS, watched_fill, &a);
}

static void watch_slos(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct slo_service *s = rpc_method_arg(ctx);
    const Casca__V1__WatchSlosRequest *req = (const Casca__V1__WatchSlosRequest *)msg;
    if (!rpc_require_each(ctx, "ids", req->ids, req->n_ids, ID_HOW " (or no ids for all)"))
        return;
    const Google__Protobuf__Duration *mi = req->min_interval;
    if (mi && (mi->seconds < 0 || mi->nanos < 0 || mi->nanos > 999999999 ||
               mi->seconds > 86400)) {
        rpc_finish(ctx, CASCA_ERR_INVALID,
                   "min_interval must be a duration from 0 to 24h (0 or unset: no limit)");
        return;
    }
    struct slo_view *v = slo_view_get(s->engine);
    for (size_t i = 0; i < req->n_ids; i++)
        if (slo_view_find(v, req->ids[i]) < 0) {
            rpc_finish(ctx, CASCA_ERR_NOT_FOUND, NOT_FOUND_FMT, req->ids[i]);
            slo_view_put(v);
            return;
        }
    size_t n = req->n_ids ? req->n_ids : slo_view_count(v);
    const char **ids = calloc(n ? n : 1, sizeof(*ids));
    struct watch *w = NULL;
    if (ids) {
        for (size_t i = 0; i < n; i++)
            ids[i] = req->n_ids ? req->ids[i] : slo_view_def(v, i)->id;
        w = watch_open(s->watches, ctx, ids, n, req->n_ids == 0,
                       mi ? casca_ns_of(mi->seconds, mi->nanos) : 0);
    }
    if (!w) {
        free(ids);
        slo_view_put(v);
        rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
        return;
    }
    /* the first statuses, read without the lock (an event meanwhile is newer than what we read) */
    for (size_t i = 0; i < n; i++) {
        long k = slo_view_find(v, ids[i]);
        struct slo_status st;
        slo_view_status(s->engine, v, (size_t)k, &st);
        struct pub p;
        pub_of(slo_view_def(v, (size_t)k), &p);
        struct status_of a = {&p, &st};
        watch_seed(w, ids[i], watched_fill, &a);
    }
    watch_start(w);
    free(ids);
    slo_view_put(v);
}

/* ---- lifecycle ---- */

/* Viewers, agents, operators; history and watches may read the store: the worker pool. */
static const struct rpc_method_def slo_methods[] = {
    RPC_METHOD("ListSlos", casca__v1__list_slos_request, casca__v1__list_slos_response, RPC_UNARY,
               RPC_ROLES_READ, 0, list_slos),
    RPC_METHOD("GetSlo", casca__v1__get_slo_request, casca__v1__slo_status, RPC_UNARY,
               RPC_ROLES_READ, 0, get_slo),
    RPC_METHOD("GetSloHistory", casca__v1__get_slo_history_request,
               casca__v1__get_slo_history_response, RPC_UNARY, RPC_ROLES_READ, RPC_BLOCKING,
               get_slo_history),
    RPC_METHOD("WatchSlos", casca__v1__watch_slos_request, casca__v1__slo_status,
               RPC_SERVER_STREAM, RPC_ROLES_READ, RPC_BLOCKING, watch_slos),
};

int slo_service_create(struct rpc_server *srv, struct config *c, struct tsdb *db,
                       struct carbon *carbon, struct slo_service **out, char *err, size_t errlen)
{
    struct slo_service *s = *out = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    s->carbon = carbon;
    struct slo_engine_options o = {
        .db = db,
        .intensity = carbon ? intensity_at : NULL,
        .intensity_arg = carbon,
        .budget_speed = carbon ? budget_speed : NULL,
        .budget_speed_arg = carbon,
    };
    int rc = CASCA_ERR_NOMEM;
    if (!(s->watches = watch_hub_create(&watch_ops, NULL)) ||
        !(s->engine = slo_engine_create(&o, c))) {
        snprintf(err, errlen, "the SLO engine cannot start (out of memory or threads)");
    } else {
        slo_engine_listen(s->engine, on_event, s);
        rc = rpc_server_add_service(srv, &casca__v1__slo_service__descriptor, NULL, slo_methods,
                                    RPC_NMETHODS(slo_methods), s, err, errlen);
    }
    if (rc) {
        slo_service_destroy(s);
        *out = NULL;
    }
    return rc;
}

void slo_service_reload(struct slo_service *s, struct config *c)
{
    slo_engine_reload(s->engine, c);
}

int slo_service_public_status(struct slo_service *s, const char *id, bool with_status,
                              SloStatus **out)
{
    *out = NULL;
    struct slo_view *v = slo_view_get(s->engine);
    long i = slo_view_find(v, id);
    if (i < 0) {
        slo_view_put(v);
        return CASCA_ERR_NOT_FOUND;
    }
    struct slo_status st;
    if (with_status)
        slo_view_status(s->engine, v, (size_t)i, &st);
    struct pub p;
    pub_of(slo_view_def(v, (size_t)i), &p);
    struct status_parts parts;
    status_msg(&p, with_status ? &st : NULL, false, &parts);
    /* a deep copy through the wire format, so the caller owns every string */
    size_t len = protobuf_c_message_get_packed_size(&parts.s.base);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf) {
        protobuf_c_message_pack(&parts.s.base, buf);
        *out = casca__v1__slo_status__unpack(NULL, len, buf);
        free(buf);
    }
    slo_view_put(v);
    return *out ? CASCA_OK : CASCA_ERR_NOMEM;
}

struct slo_engine *slo_service_engine(struct slo_service *s)
{
    return s->engine;
}

void slo_service_destroy(struct slo_service *s)
{
    if (!s)
        return;
    if (s->engine)
        slo_engine_listen(s->engine, NULL, NULL);
    slo_engine_destroy(s->engine);
    watch_hub_destroy(s->watches);
    free(s);
}
