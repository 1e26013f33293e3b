#include "dashboard.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agent.h"
#include "audit.h"
#include "carbon.h"
#include "casca/v1/admin.pb-c.h"
#include "casca_err.h"
#include "clock.h"
#include "ctl.h"
#include "daemon.h"
#include "log.h"
#include "slo_engine.h"
#include "slo_service.h"

#define SPARK_POINTS 60
#define SPARK_STEP_NS (10 * CASCA_NS_PER_SEC)
#define CHANGES_PER_SETTING 5
#define AUDIT_TAIL 500 /* the newest audit entries read for changes and last actions */
#define MAX_SESSIONS 256
#define DAY_HOURS 24
#define BEST_HOURS 3
#define HOUR_NS (3600 * CASCA_NS_PER_SEC)
#define TICK_NS (250 * CASCA_NS_PER_MS)
#define HEARTBEAT_NS (15 * CASCA_NS_PER_SEC)
#define SETTING_READ_BUDGET_NS (200 * CASCA_NS_PER_MS) /* per state, for settings never read */

/* The page's files, compiled in (cmake/embed.cmake). */
extern const unsigned char casca_web_index_html[], casca_web_dashboard_js[],
    casca_web_dashboard_css[];
extern const size_t casca_web_index_html_size, casca_web_dashboard_js_size,
    casca_web_dashboard_css_size;

/* One SLO's recent values, a point every SPARK_STEP_NS. */
struct spark {
    char *id;
    double v[SPARK_POINTS];
    bool has[SPARK_POINTS];
    size_t n;
    int64_t last_ns;
};

struct client {
    struct http_stream *s;
    bool fed; /* has had a state */
};

struct dashboard {
    struct daemon *d;
    atomic_uint streams;
    pthread_mutex_t spark_lock; /* sparks */
    struct spark *sparks;
    size_t nsparks;
    pthread_mutex_t lock; /* clients, stop */
    pthread_cond_t wake;
    bool stop;
    struct client clients[DASHBOARD_MAX_STREAMS];
    size_t nclients;
    pthread_t thread;
};

static json_t *ms_json(int64_t ns)
{
    return json_integer(ns / CASCA_NS_PER_MS);
}

static json_t *number(bool has, double v)
{
    return has && isfinite(v) ? json_real(v) : json_null();
}

/* ---- SLOs ---- */

static void spark_push(struct spark *sp, bool has, double v)
{
    if (sp->n == SPARK_POINTS) {
        memmove(sp->v, sp->v + 1, (SPARK_POINTS - 1) * sizeof(*sp->v));
        memmove(sp->has, sp->has + 1, (SPARK_POINTS - 1) * sizeof(*sp->has));
        sp->n--;
    }
    sp->v[sp->n] = v;
    sp->has[sp->n++] = has;
}

static int history_point(void *arg, const struct slo_status *st)
{
    spark_push(arg, st->has_value, st->value);
    return 0;
}

/* SLO i's sparkline, brought up to now: filled from the SLO's history when it is new or stale,
 * else one point per step from the current status. spark_lock held. */
static struct spark *spark_of(struct dashboard *db, struct slo_engine *e, struct slo_view *v,
                              size_t i, const struct slo_status *st, int64_t now)
{
    const char *id = slo_view_def(v, i)->id;
    if (i >= db->nsparks) {
        struct spark *more = realloc(db->sparks, (i + 1) * sizeof(*more));
        if (!more) return NULL;
        memset(more + db->nsparks, 0, (i + 1 - db->nsparks) * sizeof(*more));
        db->sparks = more;
        db->nsparks = i + 1;
    }
    struct spark *sp = &db->sparks[i];
    if (!sp->id || strcmp(sp->id, id)) { /* a new SLO, or a reload moved them */
        free(sp->id);
        memset(sp, 0, sizeof(*sp));
        if (!(sp->id = strdup(id))) return NULL;
    }
    if (!sp->n || now - sp->last_ns > SPARK_POINTS * SPARK_STEP_NS) {
        char why[128];
        sp->n = 0;
        if (slo_view_history(e, v, i, now - (SPARK_POINTS - 1) * SPARK_STEP_NS, now + 1,
                             SPARK_STEP_NS, history_point, sp, why, sizeof(why)) != CASCA_OK)
            sp->n = 0;
        sp->last_ns = now;
    } else if (now - sp->last_ns >= SPARK_STEP_NS) {
        spark_push(sp, st->has_value, st->value);
        sp->last_ns += (now - sp->last_ns) / SPARK_STEP_NS * SPARK_STEP_NS;
    }
    return sp;
}

static json_t *slos_json(struct dashboard *db)
{
    struct slo_engine *e = slo_service_engine(db->d->slo);
    struct slo_view *v = slo_view_get(e);
    json_t *arr = json_array();
    int64_t now = slo_engine_now(e);
    pthread_mutex_lock(&db->spark_lock);
    for (size_t i = 0; arr && i < slo_view_count(v); i++) {
        const struct slo_def *def = slo_view_def(v, i);
        struct slo_status st;
        slo_view_status(e, v, i, &st);
        json_t *spark = json_array();
        const struct spark *sp = spark_of(db, e, v, i, &st, now);
        for (size_t k = 0; sp && spark && k < sp->n; k++)
            json_array_append_new(spark, number(sp->has[k], sp->v[k]));
        json_t *budget =
            number(st.has_budget && st.budget_allowed_ns > 0,
                   1.0 - (double)st.budget_spent_ns / (double)(st.budget_allowed_ns ? st.budget_allowed_ns : 1));
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:o, s:b, s:o, s:o, s:o, s:o, s:o}", "id", def->id, "unit",
                           def->unit, "value", number(st.has_value, st.value), "fulfilled",
                           st.fulfilled, "min", number(def->has_min, def->min), "max",
                           number(def->has_max, def->max), "compliance",
                           number(st.compliance_covered_ns > 0, st.compliance), "budget", budget,
                           "spark", spark ? spark : json_array()));
    }
    pthread_mutex_unlock(&db->spark_lock);
    slo_view_put(v);
    return arr;
}

/* ---- the audit log's tail: changes and last actions ---- */

static json_t *value_json(const Casca__V1__Value *v)
{
    switch (v ? v->kind_case : CASCA__V1__VALUE__KIND__NOT_SET) {
    case CASCA__V1__VALUE__KIND_INT_VALUE: return json_integer(v->int_value);
    case CASCA__V1__VALUE__KIND_DOUBLE_VALUE: return number(true, v->double_value);
    case CASCA__V1__VALUE__KIND_BOOL_VALUE: return json_boolean(v->bool_value);
    case CASCA__V1__VALUE__KIND_STRING_VALUE: return json_string(v->string_value);
    default: return json_null();
    }
}

static const char *outcome_name(Casca__V1__AuditOutcome o)
{
    switch (o) {
    case CASCA__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_APPLIED: return "applied";
    case CASCA__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_REJECTED: return "rejected";
    case CASCA__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DRY_RUN: return "dry run";
    case CASCA__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_SHADOW: return "shadow";
    default: return "revoked";
    }
}

struct tail {
    json_t *entries; /* oldest first: {time, who, setting, old, new, outcome} */
};

static int tail_entry(uint64_t seq, int64_t time_ns, const void *payload, size_t len, void *arg)
{
    (void)seq;
    struct tail *t = arg;
    Casca__V1__AuditEntry *e = casca__v1__audit_entry__unpack(NULL, len, payload);
    if (!e) return 0; /* a record this version cannot read */
    json_array_append_new(t->entries,
                          json_pack("{s:o, s:s, s:s, s:o, s:o, s:s}", "time", ms_json(time_ns),
                                    "who", e->caller, "setting", e->setting_id, "old",
                                    value_json(e->old_value), "new", value_json(e->new_value),
                                    "outcome", outcome_name(e->outcome)));
    casca__v1__audit_entry__free_unpacked(e, NULL);
    return 0;
}

/* The newest entries of tail whose key equals name, newest first, at most max. */
static json_t *newest(const json_t *entries, const char *key, const char *name, size_t max)
{
    json_t *out = json_array();
    for (size_t i = json_array_size(entries); out && i-- > 0 && json_array_size(out) < max;) {
        json_t *e = json_array_get(entries, i);
        if (!strcmp(json_string_value(json_object_get(e, key)), name))
            json_array_append(out, e);
    }
    return out;
}

/* ---- settings, carbon, sessions ---- */

/* The value casca last read or applied; one never read is read now while the build's budget
 * lasts (a service that does not answer leaves it null this time). */
static json_t *setting_value(struct ctl *ctl, const char *id, int64_t deadline)
{
    struct ctl_reading r = {0};
    json_t *out = NULL;
    bool known = ctl_peek(ctl, id, &r) == CASCA_OK && r.value.kind != CTL_NONE;
    if (!known && casca_mono_ns() < deadline) {
        char why[256];
        ctl_reading_clear(&r);
        if (ctl_get(ctl, id, deadline, &r, why, sizeof(why)) != CASCA_OK) ctl_reading_clear(&r);
    }
    const struct ctl_value *x = &r.value;
    if (x->kind == CTL_INT) out = json_integer(x->i);
    else if (x->kind == CTL_DOUBLE) out = number(true, x->d);
    else if (x->kind == CTL_BOOL) out = json_boolean(x->b);
    else if (x->kind == CTL_STRING && x->s) out = json_string(x->s);
    ctl_reading_clear(&r);
    return out ? out : json_null();
}

static json_t *allowed_json(const struct ctl_public *p)
{
    json_t *arr = json_array();
    for (size_t k = 0; arr && k < p->nallowed; k++)
        if (p->allowed[k].kind == CTL_STRING) json_array_append_new(arr, json_string(p->allowed[k].s));
    return arr ? arr : json_null();
}

static json_t *settings_json(struct dashboard *db, const json_t *tail)
{
    static const char *const types[] = {"", "int", "double", "bool", "string", "enum"};
    struct ctl_view *v = ctl_view_get(db->d->ctl);
    json_t *arr = json_array();
    int64_t deadline = casca_mono_ns() + SETTING_READ_BUDGET_NS;
    for (size_t i = 0; arr && i < ctl_view_count(v); i++) {
        const struct ctl_public *p = ctl_view_at(v, i);
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o}", "id", p->id, "unit",
                           p->unit, "type", types[p->type <= CTL_ENUM ? p->type : 0], "value",
                           setting_value(db->d->ctl, p->id, deadline), "min",
                           number(p->has_min, p->min), "max", number(p->has_max, p->max),
                           "allowed", allowed_json(p), "changes",
                           newest(tail, "setting", p->id, CHANGES_PER_SETTING)));
    }
    ctl_view_put(v);
    return arr;
}

static json_t *carbon_json(struct dashboard *db)
{
    struct config *c = config_live_get(db->d->live);
    const char *zone = carbon_default_zone(c);
    int64_t at = carbon_replay_time(db->d->carbon, casca_wall_ns(), NULL, NULL, 0);
    int64_t hour0 = at - ((at % HOUR_NS) + HOUR_NS) % HOUR_NS;
    double g[DAY_HOURS];
    bool has[DAY_HOURS];
    json_t *hours = json_array();
    for (int h = 0; h < DAY_HOURS; h++) {
        struct carbon_figure f;
        has[h] = carbon_intensity_at(db->d->carbon, zone, hour0 + h * HOUR_NS, &f) == CASCA_OK;
        g[h] = has[h] ? f.gco2eq_per_kwh : 0;
        json_array_append_new(hours, json_pack("[o, o]", ms_json(hour0 + h * HOUR_NS),
                                               number(has[h], g[h])));
    }
    /* the lowest mean over BEST_HOURS hours in a row that all have a figure */
    int best = -1;
    double best_mean = INFINITY;
    for (int h = 0; h + BEST_HOURS <= DAY_HOURS; h++) {
        double sum = 0;
        bool all = true;
        for (int k = h; k < h + BEST_HOURS; k++) {
            all &= has[k];
            sum += g[k];
        }
        if (all && sum / BEST_HOURS < best_mean - 1e-9) {
            best = h;
            best_mean = sum / BEST_HOURS;
        }
    }
    json_t *out = json_pack("{s:s, s:o, s:o, s:o}", "zone", zone, "now", ms_json(hour0), "hours",
                            hours,
                            "best", best < 0 ? json_null()
                                             : json_pack("{s:o, s:i, s:f}", "start",
                                                         ms_json(hour0 + best * HOUR_NS), "hours",
                                                         BEST_HOURS, "mean", best_mean));
    config_unref(c);
    return out;
}

static json_t *sessions_json(struct dashboard *db, const json_t *tail)
{
    static const char *const modes[] = {"", "control", "shadow", "observe"};
    struct agent_brief *b = calloc(MAX_SESSIONS, sizeof(*b));
    json_t *arr = json_array();
    size_t n = b ? agent_sessions(db->d->agent, b, MAX_SESSIONS) : 0;
    for (size_t i = 0; arr && i < n; i++) {
        json_t *last = newest(tail, "who", b[i].name, 1);
        json_t *one = json_array_size(last) ? json_incref(json_array_get(last, 0)) : json_null();
        json_decref(last);
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:o, s:I, s:I, s:I, s:o}", "agent", b[i].name, "mode",
                           modes[b[i].mode >= 1 && b[i].mode <= 3 ? b[i].mode : 0], "since",
                           ms_json(b[i].since_ns), "states", (json_int_t)b[i].states_sent,
                           "actions", (json_int_t)b[i].actions_received, "applied",
                           (json_int_t)b[i].actions_applied, "last", one));
    }
    free(b);
    return arr;
}

char *dashboard_state_json(struct dashboard *db)
{
    struct tail tail = {json_array()};
    uint64_t count = audit_count(db->d->audit);
    if (tail.entries)
        audit_scan(db->d->audit, INT64_MIN, INT64_MAX, count > AUDIT_TAIL ? count - AUDIT_TAIL : 0,
                   0, tail_entry, &tail);
    json_t *root = json_pack("{s:s, s:o, s:o, s:o, s:o}", "version", CASCA_VERSION, "slos",
                             slos_json(db), "settings", settings_json(db, tail.entries), "carbon",
                             carbon_json(db), "sessions", sessions_json(db, tail.entries));
    json_decref(tail.entries);
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return text;
}

/* ---- the feed ---- */

static uint64_t config_generation_of(struct dashboard *db)
{
    struct config *c = config_live_get(db->d->live);
    uint64_t g = c->generation;
    config_unref(c);
    return g;
}

static void *feed(void *arg)
{
    struct dashboard *db = arg;
    char *last = NULL;
    int64_t last_write = casca_mono_ns();
    uint64_t checked_generation = config_generation_of(db);
    pthread_mutex_lock(&db->lock);
    while (!db->stop) {
        if (!db->nclients) {
            free(last); /* a page opened later gets a fresh state */
            last = NULL;
            pthread_cond_wait(&db->wake, &db->lock);
            continue;
        }
        pthread_mutex_unlock(&db->lock);
        char *state = dashboard_state_json(db);
        char *msg = NULL;
        bool changed = state && (!last || strcmp(state, last));
        if (state && asprintf(&msg, "data: %s\n\n", state) < 0) msg = NULL;
        if (changed) {
            free(last);
            last = state;
        } else {
            free(state);
        }
        int64_t now = casca_mono_ns();
        /* the heartbeat is the state again: a write waiting behind a slow client's is replaced
         * by the next one, and must not be replaced by less than a state */
        bool beat = now - last_write >= HEARTBEAT_NS;
        uint64_t generation = config_generation_of(db);
        bool recheck = generation != checked_generation;
        checked_generation = generation;
        pthread_mutex_lock(&db->lock);
        for (size_t i = 0; i < db->nclients;) {
            struct client *c = &db->clients[i];
            /* the page was closed, or a reload took its token away */
            if (http_stream_gone(c->s) || (recheck && !http_stream_allowed(c->s))) {
                http_stream_close(c->s);
                db->clients[i] = db->clients[--db->nclients];
                continue;
            }
            if (msg && (changed || beat || !c->fed)) {
                http_stream_write(c->s, msg, strlen(msg));
                c->fed = true;
            }
            i++;
        }
        if (changed || beat) last_write = now;
        free(msg);
        casca_cond_wait_until(&db->wake, &db->lock, now + TICK_NS);
    }
    pthread_mutex_unlock(&db->lock);
    free(last);
    return NULL;
}

void dashboard_events(void *arg, const struct http_request *req, struct http_stream *s)
{
    (void)req;
    struct dashboard *db = arg;
    pthread_mutex_lock(&db->lock);
    if (db->nclients == DASHBOARD_MAX_STREAMS) {
        /* cannot happen: the route admits DASHBOARD_MAX_STREAMS streams; left to the client */
        pthread_mutex_unlock(&db->lock);
        log_warn("dashboard", "more event streams than %d: one is left unserved",
                 DASHBOARD_MAX_STREAMS);
        return;
    }
    db->clients[db->nclients++] = (struct client){s, false};
    pthread_cond_signal(&db->wake);
    pthread_mutex_unlock(&db->lock);
}

atomic_uint *dashboard_stream_count(struct dashboard *db)
{
    return &db->streams;
}

/* ---- routes ---- */

void dashboard_file(void *arg, const struct http_request *req, struct http_response *res)
{
    (void)arg;
    static const struct {
        const char *path, *type;
        const unsigned char *data;
        const size_t *size;
    } files[] = {
        {"/", "text/html; charset=utf-8", casca_web_index_html, &casca_web_index_html_size},
        {"/dashboard.js", "text/javascript; charset=utf-8", casca_web_dashboard_js,
         &casca_web_dashboard_js_size},
        {"/dashboard.css", "text/css; charset=utf-8", casca_web_dashboard_css,
         &casca_web_dashboard_css_size},
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (strcmp(req->path, files[i].path)) continue;
        if (!(res->body = malloc(*files[i].size ? *files[i].size : 1))) break;
        memcpy(res->body, files[i].data, *files[i].size);
        res->len = *files[i].size;
        res->content_type = files[i].type;
        /* the page loads only its own files and talks only to cascad; no framing (clickjacking) */
        if (!strcmp(req->path, "/"))
            res->header = "Content-Security-Policy: default-src 'self'; img-src 'self' data:; "
                          "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
        return;
    }
    res->status = 503; /* out of memory (every route of this handler is in the table) */
}

void dashboard_state(void *arg, const struct http_request *req, struct http_response *res)
{
    (void)req;
    char *json = dashboard_state_json(arg);
    if (!json) {
        res->status = 503;
        return;
    }
    res->body = json;
    res->len = strlen(json);
    res->content_type = "application/json";
}

/* ---- life ---- */

struct dashboard *dashboard_create(struct daemon *d)
{
    struct dashboard *db = calloc(1, sizeof(*db));
    if (!db) return NULL;
    db->d = d;
    pthread_mutex_init(&db->spark_lock, NULL);
    pthread_mutex_init(&db->lock, NULL);
    casca_cond_init_mono(&db->wake);
    if (pthread_create(&db->thread, NULL, feed, db)) {
        pthread_mutex_destroy(&db->spark_lock);
        pthread_mutex_destroy(&db->lock);
        pthread_cond_destroy(&db->wake);
        free(db);
        return NULL;
    }
    return db;
}

void dashboard_destroy(struct dashboard *db)
{
    if (!db) return;
    pthread_mutex_lock(&db->lock);
    db->stop = true;
    pthread_cond_signal(&db->wake);
    pthread_mutex_unlock(&db->lock);
    pthread_join(db->thread, NULL);
    for (size_t i = 0; i < db->nclients; i++)
        http_stream_close(db->clients[i].s);
    for (size_t i = 0; i < db->nsparks; i++)
        free(db->sparks[i].id);
    free(db->sparks);
    pthread_mutex_destroy(&db->spark_lock);
    pthread_mutex_destroy(&db->lock);
    pthread_cond_destroy(&db->wake);
    free(db);
}
