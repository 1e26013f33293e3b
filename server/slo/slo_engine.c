#include "slo_engine.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "casca_err.h"
#include "clock.h"
#include "config.h"
#include "log.h"

#define COMPLIANCE_BUDGET 64        /* compliance steps evaluated per SLO per tick (backfill) */
#define COMPLIANCE_TICK_BUDGET 2000 /* ... and over all SLOs, so a reload of thousands of new
                                     * SLOs backfills over a few ticks instead of hogging a core */
#define DEFAULT_HISTORY_STEP_NS (60 * INT64_C(1000000000))

enum step_state { STEP_UNKNOWN, STEP_NO_DATA, STEP_MISSED, STEP_MET };

/* The runtime state of one SLO; shared by the views of successive reloads while the SLO's
 * definition does not change. */
struct rt {
    atomic_uint refs;
    pthread_mutex_t lock; /* guards everything below */
    struct tsdb_selector *sel; /* resolved at the first evaluation */
    bool valid;                /* st holds an evaluation */
    struct slo_status st;
    /* compliance: ring[k] is the step ending at k' * step with k' % nring == k */
    uint8_t *ring;
    size_t nring;
    int64_t ring_end_ns; /* end of the newest evaluated step; 0 = none */
    /* what the listener was last told */
    bool told;
    bool told_has_value, told_fulfilled;
    double told_value;
    bool retell; /* the public description changed: tell again */
};

struct slo_view {
    atomic_uint refs;
    struct config *config; /* keeps the definitions alive */
    const struct slo_config *sc;
    struct rt **rt;    /* parallel to sc->v */
    size_t *by_id;     /* indexes sorted by id, for slo_view_find */
};

struct slo_engine {
    struct slo_engine_options o;
    pthread_mutex_t lock; /* guards cur, reloaded, stopping; the tick waits on wake */
    pthread_cond_t wake;
    struct slo_view *cur;
    bool reloaded; /* since the tick's pass began: it runs another at once */
    bool stopping;
    pthread_t thread;
    bool started;
    /* one notification at a time; the listener and told. Only the tick thread notifies, so a
     * reload never waits for a notification (telling 100 watches can take milliseconds on a
     * busy machine, and a reload used to wait for the one in progress) */
    pthread_mutex_t notify_lock;
    slo_listener_fn listener;
    void *listener_arg;
    struct slo_view *told; /* the table the listener knows: removals are told against it */
};

static int64_t realtime_ns(void *arg)
{
    (void)arg;
    return casca_wall_ns();
}

int64_t slo_engine_now(const struct slo_engine *e)
{
    return e->o.clock(e->o.clock_arg);
}

/* ---- evaluation ---- */

static int evaluate_carbon(struct tsdb *db, struct tsdb_selector *sel, const struct slo_def *d,
                           slo_intensity_fn intensity, void *iarg, int64_t start, int64_t end,
                           struct slo_status *out)
{
    /* The intensity is hourly: split the window at UTC hour boundaries and weigh each part's
     * power by its hour's intensity. mean: sum(W_i x I_h(i)) / n; min/max: over the parts of
     * extreme(W) x I_h (I >= 0 keeps the order); last: the latest part with data. */
    enum tsdb_agg agg = d->agg == TSDB_AGG_MEAN ? TSDB_AGG_SUM : d->agg;
    double acc = 0;
    uint64_t n = 0;
    bool have = false;
    int64_t part_start = start;
    while (part_start < end) {
        int64_t hour = part_start - (part_start % TSDB_HOUR_NS + TSDB_HOUR_NS) % TSDB_HOUR_NS;
        int64_t part_end = hour + TSDB_HOUR_NS < end ? hour + TSDB_HOUR_NS : end;
        struct tsdb_sample s;
        int rc = tsdb_aggregate(db, sel, part_start, part_end, agg, d->q, &s);
        if (rc != CASCA_OK)
            return rc;
        double g = 0;
        /* the middle of the part: its hour, or under a carbon replay the replayed time the
         * part stands for (a few seconds may span replayed hours) */
        int64_t mid = part_start + (part_end - part_start) / 2;
        if (s.count > 0 && intensity && intensity(iarg, d->zone, mid, &g) == CASCA_OK) {
            double x = s.value * g / 60.0; /* W x g/kWh -> mg/min */
            switch (d->agg) {
            case TSDB_AGG_MIN: acc = have && acc < x ? acc : x; break;
            case TSDB_AGG_MAX: acc = have && acc > x ? acc : x; break;
            case TSDB_AGG_LAST: acc = x; break; /* parts come in time order */
            default: acc += x; break;           /* sums, divided by n below */
            }
            n += s.count;
            have = true;
        }
        part_start = part_end;
    }
    if (!have)
        return CASCA_OK;
    out->has_value = true;
    out->value = d->agg == TSDB_AGG_MEAN ? acc / (double)n : acc;
    out->count = n;
    return CASCA_OK;
}

int slo_evaluate(struct tsdb *db, struct tsdb_selector *sel, const struct slo_def *d,
                 slo_intensity_fn intensity, void *intensity_arg, int64_t end_ns,
                 struct slo_status *out)
{
    memset(out, 0, sizeof(*out));
    out->evaluated_ns = end_ns;
    out->compliance_period_ns = d->compliance_period_ns;
    int64_t start = end_ns - d->window_ns;
    int rc;
    if (d->kind == SLO_KIND_CARBON_FOOTPRINT) {
        rc = evaluate_carbon(db, sel, d, intensity, intensity_arg, start, end_ns, out);
    } else {
        struct tsdb_sample s;
        rc = tsdb_aggregate(db, sel, start, end_ns, d->agg, d->q, &s);
        if (rc == CASCA_OK && s.count > 0) {
            out->has_value = true;
            out->value = s.value;
            out->count = s.count;
        }
    }
    if (rc != CASCA_OK) {
        out->has_value = false;
        out->value = 0;
        out->count = 0;
    }
    out->fulfilled = out->has_value && slo_objective_met(d, out->value);
    return rc;
}

/* Evaluates SLO d with its runtime r at end_ns. Under r->lock. */
static void eval_locked(struct slo_engine *e, const struct slo_def *d, struct rt *r,
                        int64_t end_ns, struct slo_status *out)
{
    if (!r->sel) {
        int rc = tsdb_select(e->o.db, d->series, d->tags, d->ntags, &r->sel);
        if (rc != CASCA_OK) {
            memset(out, 0, sizeof(*out));
            out->evaluated_ns = end_ns;
            log_warn("slo", "slo %s: cannot select its series: %s", d->id, casca_strerror(rc));
            return;
        }
    }
    int rc = slo_evaluate(e->o.db, r->sel, d, e->o.intensity, e->o.intensity_arg, end_ns, out);
    if (rc != CASCA_OK)
        log_warn("slo", "slo %s: evaluation failed: %s", d->id, casca_strerror(rc));
}

static void refresh_locked(struct slo_engine *e, const struct slo_def *d, struct rt *r,
                           int64_t now)
{
    struct slo_status st;
    eval_locked(e, d, r, now, &st);
    st.compliance = r->st.compliance;
    st.compliance_covered_ns = r->st.compliance_covered_ns;
    st.compliance_period_ns = d->compliance_period_ns;
    st.has_budget = r->st.has_budget;
    st.budget_allowed_ns = r->st.budget_allowed_ns;
    st.budget_spent_ns = r->st.budget_spent_ns;
    st.budget_covered_ns = r->st.budget_covered_ns;
    st.burn_rate_1h = r->st.burn_rate_1h;
    r->st = st;
    r->valid = true;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

struct step_counts {
    size_t met, with_data;
};

/* The steps of the ring in the span (ns) that ends with the newest evaluated step. */
static struct step_counts count_steps(const struct rt *r, int64_t step, int64_t span)
{
    struct step_counts c = {0, 0};
    if (!r->ring_end_ns)
        return c;
    size_t n = (size_t)((span + step - 1) / step);
    if (n > r->nring)
        n = r->nring;
    int64_t newest = floor_div(r->ring_end_ns, step);
    for (size_t j = 0; j < n; j++) {
        uint8_t v = r->ring[(size_t)((newest - (int64_t)j) % (int64_t)r->nring)];
        c.met += v == STEP_MET;
        c.with_data += v == STEP_MET || v == STEP_MISSED;
    }
    return c;
}

#define HOUR_NS (3600 * INT64_C(1000000000))

/* speed: the carbon clock's replayed seconds per real second (slo_engine_options). */
static void budget_figures(const struct slo_def *d, struct rt *r, int64_t step, double speed)
{
    struct slo_status *st = &r->st;
    st->has_budget = d->budget_target > 0;
    if (!st->has_budget)
        return;
    double slack = 1 - d->budget_target;
    int64_t window = (int64_t)((double)d->budget_window_ns / speed); /* real time */
    int64_t hour = (int64_t)((double)HOUR_NS / speed);
    struct step_counts w = count_steps(r, step, window);
    st->budget_allowed_ns = llround(slack * (double)d->budget_window_ns);
    st->budget_spent_ns = llround((double)((int64_t)(w.with_data - w.met) * step) * speed);
    st->budget_covered_ns = llround((double)((int64_t)w.with_data * step) * speed);
    struct step_counts h = count_steps(r, step, window < hour ? window : hour);
    st->burn_rate_1h =
        h.with_data ? (double)(h.with_data - h.met) / (double)h.with_data / slack : 0;
}

/* Evaluates up to budget new compliance steps up to now and recomputes the figure; returns the
 * number evaluated. Under lock. */
static int compliance_locked(struct slo_engine *e, const struct slo_def *d, struct rt *r,
                             int64_t now, int budget)
{
    int used = 0;
    int64_t step = d->compliance_step_ns;
    double speed = e->o.budget_speed ? e->o.budget_speed(e->o.budget_speed_arg, now) : 1;
    if (!(speed >= 1))
        speed = 1;
    if (!r->ring) {
        /* long enough for both figures (a budget window at the speed of the first tick) */
        int64_t bw = (int64_t)((double)d->budget_window_ns / speed);
        int64_t span = d->compliance_period_ns > bw ? d->compliance_period_ns : bw;
        r->nring = (size_t)((span + step - 1) / step);
        if (!(r->ring = calloc(r->nring, 1)))
            return 0;
    }
    int64_t target = floor_div(now, step) * step; /* the newest step that has ended */
    int64_t first = target - (int64_t)(r->nring - 1) * step;
    int64_t next = first;
    if (r->ring_end_ns && r->ring_end_ns + step >= first)
        next = r->ring_end_ns + step; /* the steps up to ring_end are in the ring */
    else
        memset(r->ring, STEP_UNKNOWN, r->nring); /* none yet, or too far behind: start over */
    for (; next <= target && used < budget; next += step, used++) {
        struct slo_status st;
        eval_locked(e, d, r, next, &st);
        size_t k = (size_t)(floor_div(next, step) % (int64_t)r->nring);
        r->ring[k] = !st.has_value ? STEP_NO_DATA : st.fulfilled ? STEP_MET : STEP_MISSED;
        r->ring_end_ns = next;
    }
    struct step_counts c = count_steps(r, step, d->compliance_period_ns);
    r->st.compliance = c.with_data ? (double)c.met / (double)c.with_data : 0;
    r->st.compliance_covered_ns = (int64_t)c.with_data * step;
    r->st.compliance_period_ns = d->compliance_period_ns;
    budget_figures(d, r, step, speed);
    return used;
}

/* ---- views ---- */

static void rt_unref(struct rt *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    tsdb_selector_free(r->sel);
    free(r->ring);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static struct rt *rt_new(void)
{
    struct rt *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    atomic_init(&r->refs, 1);
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

void slo_view_put(struct slo_view *v)
{
    if (!v || atomic_fetch_sub(&v->refs, 1) != 1)
        return;
    for (size_t i = 0; v->rt && i < v->sc->n; i++)
        rt_unref(v->rt[i]);
    free(v->rt);
    free(v->by_id);
    config_unref(v->config);
    free(v);
}

struct slo_view *slo_view_get(struct slo_engine *e)
{
    pthread_mutex_lock(&e->lock);
    struct slo_view *v = e->cur;
    atomic_fetch_add(&v->refs, 1);
    pthread_mutex_unlock(&e->lock);
    return v;
}

size_t slo_view_count(const struct slo_view *v)
{
    return v->sc->n;
}

const struct slo_def *slo_view_def(const struct slo_view *v, size_t i)
{
    return &v->sc->v[i];
}

const struct slo_config *slo_view_config(const struct slo_view *v)
{
    return v->sc;
}

static const struct slo_def *sort_defs; /* qsort has no argument; only used under build_lock */
static pthread_mutex_t build_lock = PTHREAD_MUTEX_INITIALIZER;

static int by_id_cmp(const void *a, const void *b)
{
    return strcmp(sort_defs[*(const size_t *)a].id, sort_defs[*(const size_t *)b].id);
}

long slo_view_find(const struct slo_view *v, const char *id)
{
    size_t lo = 0, hi = v->sc->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v->sc->v[v->by_id[mid]].id, id);
        if (!c)
            return (long)v->by_id[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Whether the public description of two definitions differs. */
static bool public_differs(const struct slo_def *a, const struct slo_def *b)
{
    return strcmp(a->description, b->description) || strcmp(a->unit, b->unit) ||
           strcmp(a->aggregation, b->aggregation) || a->hide_window != b->hide_window ||
           a->hide_aggregation != b->hide_aggregation;
}

/* A view of c's SLOs, reusing the runtime state of old's unchanged ones. */
static struct slo_view *build_view(struct config *c, const struct slo_view *old)
{
    struct slo_view *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    atomic_init(&v->refs, 1);
    v->config = config_ref(c);
    v->sc = slo_config_of(c);
    size_t n = v->sc->n;
    v->rt = calloc(n ? n : 1, sizeof(*v->rt));
    v->by_id = calloc(n ? n : 1, sizeof(*v->by_id));
    if (!v->rt || !v->by_id) {
        slo_view_put(v);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const struct slo_def *d = &v->sc->v[i];
        long j = old ? slo_view_find(old, d->id) : -1;
        const struct slo_def *od = j >= 0 ? &old->sc->v[j] : NULL;
        if (od && !strcmp(od->signature, d->signature)) {
            v->rt[i] = old->rt[j];
            atomic_fetch_add(&v->rt[i]->refs, 1);
            if (public_differs(od, d)) {
                pthread_mutex_lock(&v->rt[i]->lock);
                v->rt[i]->retell = true;
                pthread_mutex_unlock(&v->rt[i]->lock);
            }
        } else if (!(v->rt[i] = rt_new())) {
            slo_view_put(v);
            return NULL;
        }
        v->by_id[i] = i;
    }
    pthread_mutex_lock(&build_lock);
    sort_defs = v->sc->v;
    qsort(v->by_id, n, sizeof(*v->by_id), by_id_cmp);
    pthread_mutex_unlock(&build_lock);
    return v;
}

void slo_view_status(struct slo_engine *e, struct slo_view *v, size_t i, struct slo_status *out)
{
    struct rt *r = v->rt[i];
    int64_t now = slo_engine_now(e);
    pthread_mutex_lock(&r->lock);
    if (!r->valid || now - r->st.evaluated_ns >= v->sc->interval_ns || now < r->st.evaluated_ns)
        refresh_locked(e, &v->sc->v[i], r, now);
    *out = r->st;
    pthread_mutex_unlock(&r->lock);
}

int slo_view_history(struct slo_engine *e, struct slo_view *v, size_t i, int64_t start_ns,
                     int64_t end_ns, int64_t step_ns,
                     int (*fn)(void *arg, const struct slo_status *st), void *arg, char *why,
                     size_t whylen)
{
    const struct slo_def *d = &v->sc->v[i];
    int64_t now = slo_engine_now(e);
    if (end_ns > now)
        end_ns = now;
    if (start_ns >= end_ns) {
        snprintf(why, whylen, "the range is empty: start must be before end (and before now)");
        return CASCA_ERR_INVALID;
    }
    uint64_t max = v->sc->history_max_samples;
    int64_t span = end_ns - start_ns;
    if (step_ns < 0) {
        snprintf(why, whylen, "step must not be negative");
        return CASCA_ERR_INVALID;
    }
    if (step_ns == 0) { /* the default: a minute, or wider to stay within the limit */
        step_ns = DEFAULT_HISTORY_STEP_NS;
        if ((uint64_t)((span + step_ns - 1) / step_ns) > max) {
            step_ns = (span + (int64_t)max - 1) / (int64_t)max;
            step_ns = (step_ns + 999999999) / 1000000000 * 1000000000;
        }
    }
    uint64_t nsteps = (uint64_t)((span + step_ns - 1) / step_ns);
    if (nsteps > max) {
        snprintf(why, whylen,
                 "the range holds %llu steps, more than the limit of %llu: use a step of at "
                 "least %llds or a shorter range",
                 (unsigned long long)nsteps, (unsigned long long)max,
                 (long long)((span / (int64_t)max + 999999999) / 1000000000));
        return CASCA_ERR_INVALID;
    }
    struct tsdb_selector *sel = NULL;
    int rc = tsdb_select(e->o.db, d->series, d->tags, d->ntags, &sel);
    if (rc != CASCA_OK) {
        snprintf(why, whylen, "the store could not be read (%s): try again", casca_strerror(rc));
        return rc;
    }
    for (int64_t t = start_ns; t < end_ns && rc == CASCA_OK; t += step_ns) {
        struct slo_status st;
        int erc = slo_evaluate(e->o.db, sel, d, e->o.intensity, e->o.intensity_arg, t, &st);
        if (erc != CASCA_OK) {
            snprintf(why, whylen, "the store could not be read (%s): try again",
                     casca_strerror(erc));
            rc = erc;
            break;
        }
        rc = fn(arg, &st);
    }
    tsdb_selector_free(sel);
    return rc;
}

/* ---- the engine ---- */

static void *tick_main(void *arg);

struct slo_engine *slo_engine_create(const struct slo_engine_options *o, struct config *c)
{
    struct slo_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->o = *o;
    if (!e->o.clock)
        e->o.clock = realtime_ns;
    pthread_mutex_init(&e->lock, NULL);
    pthread_mutex_init(&e->notify_lock, NULL);
    casca_cond_init_mono(&e->wake);
    if (!(e->cur = build_view(c, NULL))) {
        slo_engine_destroy(e);
        return NULL;
    }
    e->told = slo_view_get(e);
    if (!o->manual) {
        if (pthread_create(&e->thread, NULL, tick_main, e) != 0) {
            slo_engine_destroy(e);
            return NULL;
        }
        e->started = true;
    }
    log_info("slo", "%zu SLOs declared", e->cur->sc->n);
    return e;
}

void slo_engine_listen(struct slo_engine *e, slo_listener_fn fn, void *arg)
{
    pthread_mutex_lock(&e->notify_lock);
    e->listener = fn;
    e->listener_arg = arg;
    pthread_mutex_unlock(&e->notify_lock);
}

void slo_engine_reload(struct slo_engine *e, struct config *c)
{
    struct slo_view *old = slo_view_get(e);
    struct slo_view *v = build_view(c, old);
    if (!v) {
        log_warn("slo", "out of memory: the SLOs were not reloaded");
        slo_view_put(old);
        return;
    }
    size_t added = 0, changed = 0, removed = 0;
    for (size_t i = 0; i < v->sc->n; i++) {
        long j = slo_view_find(old, v->sc->v[i].id);
        added += j < 0;
        changed += j >= 0 && v->rt[i] != old->rt[j];
    }
    for (size_t j = 0; j < old->sc->n; j++)
        removed += slo_view_find(v, old->sc->v[j].id) < 0;
    pthread_mutex_lock(&e->lock);
    struct slo_view *prev = e->cur;
    e->cur = v;
    e->reloaded = true;
    pthread_cond_signal(&e->wake); /* tell the removals, the new and changed SLOs soon */
    pthread_mutex_unlock(&e->lock);
    slo_view_put(prev);
    slo_view_put(old);
    log_info("slo", "SLOs reloaded: %zu declared, %zu added, %zu changed, %zu removed", v->sc->n,
             added, changed, removed);
}

/* Tells the listener the SLOs of the table it knows that v no longer has, and that it knows v
 * from now on. Under notify_lock. */
static void tell_removed_locked(struct slo_engine *e, struct slo_view *v)
{
    if (e->told == v)
        return;
    for (size_t j = 0; j < e->told->sc->n; j++)
        if (slo_view_find(v, e->told->sc->v[j].id) < 0 && e->listener)
            e->listener(e->listener_arg, SLO_EVENT_REMOVED, &e->told->sc->v[j], NULL);
    slo_view_put(e->told);
    atomic_fetch_add(&v->refs, 1);
    e->told = v;
}

size_t slo_engine_tick(struct slo_engine *e)
{
    struct slo_view *v = slo_view_get(e);
    pthread_mutex_lock(&e->notify_lock);
    tell_removed_locked(e, v); /* before any status of v */
    pthread_mutex_unlock(&e->notify_lock);
    size_t evaluated = 0;
    int budget = COMPLIANCE_TICK_BUDGET;
    for (size_t i = 0; i < v->sc->n; i++) {
        const struct slo_def *d = &v->sc->v[i];
        struct rt *r = v->rt[i];
        int64_t now = slo_engine_now(e);
        pthread_mutex_lock(&r->lock);
        if (!r->valid || now - r->st.evaluated_ns >= v->sc->interval_ns ||
            now < r->st.evaluated_ns) {
            refresh_locked(e, d, r, now);
            evaluated++;
        }
        budget -= compliance_locked(e, d, r, now, budget < COMPLIANCE_BUDGET ? budget : COMPLIANCE_BUDGET);
        struct slo_status st = r->st;
        bool tell = !r->told || r->retell || r->told_has_value != st.has_value ||
                    r->told_fulfilled != st.fulfilled ||
                    (st.has_value && r->told_value != st.value);
        pthread_mutex_unlock(&r->lock);
        if (!tell)
            continue;
        pthread_mutex_lock(&e->notify_lock);
        pthread_mutex_lock(&e->lock);
        bool current = e->cur == v;
        pthread_mutex_unlock(&e->lock);
        if (current) { /* a reload meanwhile: the next pass tells the new table */
            if (e->listener)
                e->listener(e->listener_arg, SLO_EVENT_STATUS, d, &st);
            pthread_mutex_lock(&r->lock);
            r->told = true;
            r->retell = false;
            r->told_has_value = st.has_value;
            r->told_fulfilled = st.fulfilled;
            r->told_value = st.value;
            pthread_mutex_unlock(&r->lock);
        }
        pthread_mutex_unlock(&e->notify_lock);
    }
    slo_view_put(v);
    return evaluated;
}

static void *tick_main(void *arg)
{
    struct slo_engine *e = arg;
    pthread_mutex_lock(&e->lock);
    while (!e->stopping) {
        e->reloaded = false;
        pthread_mutex_unlock(&e->lock);
        int64_t t0 = casca_mono_ns();
        slo_engine_tick(e);
        pthread_mutex_lock(&e->lock);
        if (e->stopping)
            break;
        if (!e->reloaded) /* a reload during the pass wants one more at once */
            casca_cond_wait_until(&e->wake, &e->lock, t0 + e->cur->sc->interval_ns);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

void slo_engine_destroy(struct slo_engine *e)
{
    if (!e)
        return;
    if (e->started) {
        pthread_mutex_lock(&e->lock);
        e->stopping = true;
        pthread_cond_signal(&e->wake);
        pthread_mutex_unlock(&e->lock);
        pthread_join(e->thread, NULL);
    }
    slo_view_put(e->cur);
    slo_view_put(e->told);
    pthread_cond_destroy(&e->wake);
    pthread_mutex_destroy(&e->notify_lock);
    pthread_mutex_destroy(&e->lock);
    free(e);
}
