#include "control.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "casca/v1/control.pb-c.h"
#include "casca_err.h"
#include "log.h"

#define FLUSH_INTERVAL_MS 20 /* how often watches with coalesced values retry their sends */
#define MSG_LEN 512

/* A coalesced value waiting for room in a watch's send queue (latest wins). */
struct slot {
    char *id;
    struct ctl_reading r;
    bool pending;
};

struct watcher {
    struct rpc_ctx *ctx;
    int refs;   /* the list's and the handler's; under control.lock */
    bool dead;  /* the call is over: never touch ctx again */
    bool ready; /* the initial values are sent; until then changes only fill slots */
    bool all;   /* watches every setting */
    struct slot *slots;
    size_t nslots;
    struct watcher *next;
};

struct control {
    struct ctl *ctl;
    pthread_mutex_t lock; /* guards the watcher list, every watcher, stopping */
    pthread_cond_t wake;
    struct watcher *watchers;
    bool stopping;
    pthread_t flusher;
    bool flusher_started;
    struct rpc_method methods[4];
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The call's deadline as CLOCK_MONOTONIC ns, a little early so the answer beats the client's
 * own timer; INT64_MAX when the caller set none. */
static int64_t deadline_of(struct rpc_ctx *ctx)
{
    int64_t ms = rpc_deadline_ms(ctx);
    if (ms == INT64_MAX)
        return INT64_MAX;
    int64_t margin = ms / 10 < 10 ? ms / 10 : 10;
    return mono_ns() + (ms - margin) * 1000000;
}

/* ---- messages ---- */

void control_value_to_pb(const struct ctl_value *v, Casca__V1__Value *pb)
{
    casca__v1__value__init(pb);
    switch (v->kind) {
    case CTL_INT: pb->kind_case = CASCA__V1__VALUE__KIND_INT_VALUE; pb->int_value = v->i; break;
    case CTL_DOUBLE:
        pb->kind_case = CASCA__V1__VALUE__KIND_DOUBLE_VALUE;
        pb->double_value = v->d;
        break;
    case CTL_BOOL: pb->kind_case = CASCA__V1__VALUE__KIND_BOOL_VALUE; pb->bool_value = v->b; break;
    case CTL_STRING:
        pb->kind_case = CASCA__V1__VALUE__KIND_STRING_VALUE;
        pb->string_value = v->s;
        break;
    default: break;
    }
}

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
        control_value_to_pb(&r->value, &p->value);
        p->sv.value = &p->value;
    }
    if (r->updated_ns) {
        google__protobuf__timestamp__init(&p->at);
        p->at.seconds = r->updated_ns / 1000000000;
        p->at.nanos = (int32_t)(r->updated_ns % 1000000000);
        p->sv.updated_at = &p->at;
    }
    p->sv.changed_by = (char *)r->changed_by;
}

/* ---- ListSettings ---- */

static void list_settings(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct control *c = rpc_method_arg(ctx);
    const Casca__V1__ListSettingsRequest *req = (const Casca__V1__ListSettingsRequest *)msg;
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
            control_value_to_pb(&p->allowed[k], &allowed[a]);
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

static void set_setting(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct control *c = rpc_method_arg(ctx);
    const Casca__V1__SetSettingRequest *req = (const Casca__V1__SetSettingRequest *)msg;
    struct ctl_value value;
    control_value_from_pb(req->value, &value);
    struct ctl_request cr = {
        .id = req->id,
        .value = &value,
        .dry_run = req->dry_run,
        .caller = rpc_caller_name(ctx),
        .deadline_ns = deadline_of(ctx),
    };
    struct ctl_reading r;
    char why[MSG_LEN];
    int rc = ctl_set(c->ctl, &cr, &r, why, sizeof(why));
    if (rc != CASCA_OK) {
        rpc_finish(ctx, rc, "%s", why);
        return;
    }
    struct control_sv p;
    control_setting_value(req->id, &r, &p);
    rpc_reply(ctx, &p.sv.base);
    ctl_reading_clear(&r);
}

/* ---- WatchSettings ---- */

static void watcher_unref_locked(struct watcher *w)
{
    if (--w->refs > 0)
        return;
    for (size_t i = 0; i < w->nslots; i++) {
        free(w->slots[i].id);
        ctl_reading_clear(&w->slots[i].r);
    }
    free(w->slots);
    free(w);
}

static bool has_pending(const struct watcher *w)
{
    for (size_t i = 0; i < w->nslots; i++)
        if (w->slots[i].pending)
            return true;
    return false;
}

/* Sends what is pending, in slot order, until the queue is full. Under c->lock. */
static void flush_locked(struct watcher *w)
{
    for (size_t i = 0; i < w->nslots && !w->dead; i++) {
        struct slot *s = &w->slots[i];
        if (!s->pending)
            continue;
        struct control_sv p;
        control_setting_value(s->id, &s->r, &p);
        int rc = rpc_send(w->ctx, &p.sv.base);
        if (rc == CASCA_ERR_FULL)
            return; /* stays pending: the flusher retries, later values overwrite it */
        s->pending = false;
        ctl_reading_clear(&s->r);
    }
}

static struct slot *slot_of(struct watcher *w, const char *id)
{
    for (size_t i = 0; i < w->nslots; i++)
        if (!strcmp(w->slots[i].id, id))
            return &w->slots[i];
    if (!w->all)
        return NULL;
    struct slot *grown = realloc(w->slots, (w->nslots + 1) * sizeof(*grown));
    if (!grown)
        return NULL;
    w->slots = grown;
    struct slot *s = &w->slots[w->nslots];
    memset(s, 0, sizeof(*s));
    if (!(s->id = strdup(id)))
        return NULL;
    w->nslots++;
    return s;
}

/* Stores r in w's slot for id (latest wins). Under c->lock. */
static void store_locked(struct watcher *w, const char *id, const struct ctl_reading *r)
{
    struct slot *s = slot_of(w, id);
    if (!s)
        return;
    ctl_reading_clear(&s->r);
    if (ctl_value_copy(&s->r.value, &r->value) != CASCA_OK)
        return;
    s->r.updated_ns = r->updated_ns;
    memcpy(s->r.changed_by, r->changed_by, sizeof(s->r.changed_by));
    s->pending = true;
}

/* ctl listener: a setting's value changed. Never blocks: sends or coalesces. */
static void on_change(void *arg, const char *id, const struct ctl_reading *r)
{
    struct control *c = arg;
    bool wake = false;
    pthread_mutex_lock(&c->lock);
    for (struct watcher *w = c->watchers; w; w = w->next) {
        store_locked(w, id, r);
        if (w->ready)
            flush_locked(w);
        wake |= has_pending(w) && w->ready;
    }
    if (wake)
        pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
}

static void *flusher(void *arg)
{
    struct control *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->stopping) {
        bool any = false;
        for (struct watcher *w = c->watchers; w; w = w->next) {
            if (w->ready && has_pending(w))
                flush_locked(w);
            any |= w->ready && has_pending(w);
        }
        if (!any) {
            pthread_cond_wait(&c->wake, &c->lock);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += FLUSH_INTERVAL_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&c->wake, &c->lock, &ts);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void watch_cancelled(struct rpc_ctx *ctx, void *arg)
{
    struct control *c = arg;
    pthread_mutex_lock(&c->lock);
    struct watcher **p = &c->watchers;
    while (*p && (*p)->ctx != ctx)
        p = &(*p)->next;
    struct watcher *w = *p;
    if (w) {
        *p = w->next;
        w->dead = true;
        watcher_unref_locked(w);
    }
    pthread_mutex_unlock(&c->lock);
    if (w)
        rpc_finish(ctx, CASCA_ERR_CANCELLED, "watch ended");
}

static void watch_settings(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct control *c = rpc_method_arg(ctx);
    const Casca__V1__WatchSettingsRequest *req = (const Casca__V1__WatchSettingsRequest *)msg;
    struct ctl_view *v = ctl_view_get(c->ctl);
    size_t n = req->n_ids ? req->n_ids : ctl_view_count(v);
    struct watcher *w = calloc(1, sizeof(*w));
    if (w)
        w->slots = calloc(n ? n : 1, sizeof(*w->slots));
    if (!w || !w->slots) {
        if (w)
            free(w);
        ctl_view_put(v);
        rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
        return;
    }
    w->ctx = ctx;
    w->all = req->n_ids == 0;
    w->refs = 2;
    for (size_t i = 0; i < n; i++) {
        const char *id = req->n_ids ? req->ids[i] : ctl_view_at(v, i)->id;
        if (req->n_ids && ctl_view_find(v, id) < 0) {
            rpc_finish(ctx, CASCA_ERR_NOT_FOUND,
                       "unknown setting '%.64s': ListSettings names the settings you may watch",
                       id);
            w->refs = 1;
            pthread_mutex_lock(&c->lock);
            watcher_unref_locked(w);
            pthread_mutex_unlock(&c->lock);
            ctl_view_put(v);
            return;
        }
        bool dup = false;
        for (size_t k = 0; k < w->nslots; k++)
            dup |= !strcmp(w->slots[k].id, id);
        if (!dup && (w->slots[w->nslots].id = strdup(id)))
            w->nslots++;
    }
    /* the ids, copied: an all-settings watch's slots can grow while we read */
    size_t ninit = w->nslots;
    char **ids = calloc(ninit ? ninit : 1, sizeof(*ids));
    struct ctl_reading *init = calloc(ninit ? ninit : 1, sizeof(*init));
    for (size_t i = 0; ids && i < ninit; i++)
        ids[i] = strdup(w->slots[i].id);
    ctl_view_put(v);
    pthread_mutex_lock(&c->lock);
    w->next = c->watchers;
    c->watchers = w;
    pthread_mutex_unlock(&c->lock);
    rpc_on_cancel(ctx, watch_cancelled, c);

    /* the current values, read without the lock (changes meanwhile land in the slots) */
    int64_t deadline = deadline_of(ctx);
    for (size_t i = 0; ids && init && i < ninit; i++) {
        char why[MSG_LEN];
        if (!ids[i] || ctl_get(c->ctl, ids[i], deadline, &init[i], why, sizeof(why)) != CASCA_OK)
            memset(&init[i], 0, sizeof(init[i])); /* unknown for now: sent without a value */
    }
    pthread_mutex_lock(&c->lock);
    if (!w->dead) {
        for (size_t i = 0; ids && init && i < ninit; i++) {
            struct slot *s = ids[i] ? slot_of(w, ids[i]) : NULL;
            if (s && !s->pending) { /* a change seen meanwhile is newer than what we read */
                s->r = init[i];
                memset(&init[i], 0, sizeof(init[i]));
                s->pending = true;
            }
        }
        w->ready = true;
        flush_locked(w);
        if (has_pending(w))
            pthread_cond_signal(&c->wake);
    }
    watcher_unref_locked(w);
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < ninit; i++) {
        if (init)
            ctl_reading_clear(&init[i]);
        if (ids)
            free(ids[i]);
    }
    free(ids);
    free(init);
}

/* ---- lifecycle ---- */

struct control *control_create(struct rpc_server *srv, struct ctl *ctl)
{
    struct control *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->ctl = ctl;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
#define M(name, req, resp, kind, roles, flags, fn)                                                \
    (struct rpc_method)                                                                        \
    {                                                                                          \
        "/casca.v1.ServiceControl/" name, &casca__v1__##req##__descriptor,                     \
            &casca__v1__##resp##__descriptor, kind, roles, flags, fn, c, NULL                  \
    }
    c->methods[0] = M("ListSettings", list_settings_request, list_settings_response, RPC_UNARY,
                      RPC_ROLES_READ, 0, list_settings);
    c->methods[1] = M("GetSetting", get_setting_request, setting_value, RPC_UNARY, RPC_ROLES_READ,
                      RPC_BLOCKING, get_setting);
    c->methods[2] = M("SetSetting", set_setting_request, setting_value, RPC_UNARY,
                      RPC_ROLE_AGENT | RPC_ROLE_OPERATOR, RPC_BLOCKING, set_setting);
    c->methods[3] = M("WatchSettings", watch_settings_request, setting_value, RPC_SERVER_STREAM,
                      RPC_ROLES_READ, RPC_BLOCKING, watch_settings);
#undef M
    if (pthread_create(&c->flusher, NULL, flusher, c) != 0) {
        control_destroy(c);
        return NULL;
    }
    c->flusher_started = true;
    if (rpc_server_add_methods(srv, c->methods, 4) != CASCA_OK ||
        ctl_listen(ctl, on_change, c) != CASCA_OK) {
        control_destroy(c);
        return NULL;
    }
    return c;
}

void control_destroy(struct control *c)
{
    if (!c)
        return;
    ctl_unlisten(c->ctl, on_change, c);
    if (c->flusher_started) {
        pthread_mutex_lock(&c->lock);
        c->stopping = true;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->flusher, NULL);
    }
    while (c->watchers) { /* none after rpc_server_destroy; defensive */
        struct watcher *w = c->watchers;
        c->watchers = w->next;
        w->refs = 1;
        watcher_unref_locked(w);
    }
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
