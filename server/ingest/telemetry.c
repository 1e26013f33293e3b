#include "telemetry.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "casca_err.h"
#include "clock.h"
#include "hooks.h"
#include "log.h"
#include "timeconv.h"

#define MAX_ERRORS 10                      /* rejection reasons in one PublishResponse */
#define MAX_TS_SECONDS INT64_C(9223372035) /* the last second whose ns fit in an int64 */

/* ---- the service ---- */

struct telemetry {
    struct config_live *live;
    struct tsdb *db;      /* read by Query and ListSeries */
    struct hooks *ingest; /* takes published points (hooks_submit) */
    _Atomic uint64_t accepted, rejected;
};

void telemetry_counts(struct telemetry *t, uint64_t *accepted, uint64_t *rejected)
{
    *accepted = atomic_load(&t->accepted);
    *rejected = atomic_load(&t->rejected);
}

void telemetry_count_rejected(struct telemetry *t, uint64_t n)
{
    atomic_fetch_add(&t->rejected, n);
}

/* A Timestamp as ns since the epoch; NULL when it cannot be one (why says so). */
static const char *ts_ns(const Google__Protobuf__Timestamp *t, int64_t *out)
{
    if (t->seconds < 0 || t->seconds > MAX_TS_SECONDS || t->nanos < 0 || t->nanos > 999999999)
        return "the time is outside 1970..2262 or its nanos outside [0, 999999999]";
    if (!casca_ns_of_checked(t->seconds, t->nanos, out)) return "the time is after 2262";
    return NULL;
}

static const char *duration_ns(const Google__Protobuf__Duration *d, int64_t *out)
{
    if (d->seconds < 0 || d->nanos < 0 || d->nanos > 999999999 || d->seconds > MAX_TS_SECONDS)
        return "the step must be a positive duration (or unset for one sample)";
    if (!casca_ns_of_checked(d->seconds, d->nanos, out)) return "the step is too long";
    return NULL;
}

static void ns_ts(int64_t ns, Google__Protobuf__Timestamp *t)
{
    google__protobuf__timestamp__init(t);
    casca_timestamp_parts(ns, &t->seconds, &t->nanos);
}

/* What a Publish or a whole PublishStream tells its caller. */
struct report {
    int64_t accepted, rejected;
    char *errors[MAX_ERRORS];
    size_t nerrors;
};

static void report_reject(struct report *r, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report_reject(struct report *r, size_t n, const char *fmt, ...)
{
    r->rejected += (int64_t)n;
    if (r->nerrors == MAX_ERRORS) return;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&r->errors[r->nerrors], fmt, ap) >= 0) r->nerrors++;
    va_end(ap);
}

static void report_free(struct report *r)
{
    for (size_t i = 0; i < r->nerrors; i++)
        free(r->errors[i]);
}

static void report_reply(struct rpc_ctx *ctx, struct report *r)
{
    Casca__V1__PublishResponse resp = CASCA__V1__PUBLISH_RESPONSE__INIT;
    resp.accepted = r->accepted;
    resp.rejected = r->rejected;
    resp.n_errors = r->nerrors;
    resp.errors = r->errors;
    rpc_reply(ctx, &resp.base);
}

/* The valid points of one request, as tsdb points (strings borrowed from the request). */
struct batch {
    struct tsdb_point *pts;
    struct tsdb_tag *tags;
    size_t n;
};

/* Converts req's points; rejects the bad ones into r (first is the index of req's first point
 * in the call, for the messages). Returns CASCA_ERR_NOMEM or 0. */
static int convert(struct tsdb *db, const Casca__V1__PublishRequest *req, int64_t now,
                   int64_t first, struct batch *b, struct report *r)
{
    size_t ntags = 0;
    for (size_t i = 0; i < req->n_points; i++)
        ntags += req->points[i]->n_tags;
    b->n = 0;
    b->pts = malloc((req->n_points ? req->n_points : 1) * sizeof(*b->pts));
    b->tags = malloc((ntags ? ntags : 1) * sizeof(*b->tags));
    if (!b->pts || !b->tags) return CASCA_ERR_NOMEM;
    struct tsdb_tag *tags = b->tags;
    for (size_t i = 0; i < req->n_points; i++) {
        const Casca__V1__Point *p = req->points[i];
        int64_t index = first + (int64_t)i;
        struct tsdb_point *tp = &b->pts[b->n];
        *tp = (struct tsdb_point){p->series, tags, p->n_tags, now, p->value};
        for (size_t k = 0; k < p->n_tags; k++)
            tags[k] = (struct tsdb_tag){p->tags[k]->key, p->tags[k]->value};
        const char *bad = p->time ? ts_ns(p->time, &tp->time_ns) : NULL;
        char why[200];
        if (bad) {
            report_reject(r, 1, "point %lld: %s", (long long)index, bad);
            continue;
        }
        if (tsdb_check_point(db, tp, now, why, sizeof why) != CASCA_OK) {
            report_reject(r, 1, "point %lld: %s", (long long)index, why);
            continue;
        }
        tags += p->n_tags;
        b->n++;
    }
    return CASCA_OK;
}

static void batch_free(struct batch *b)
{
    free(b->pts);
    free(b->tags);
}

uint64_t telemetry_max_points(struct telemetry *t)
{
    struct config *c = config_live_get(t->live);
    uint64_t max = telemetry_config_of(c)->max_publish_points;
    config_unref(c);
    return max;
}

/* -- Publish -- */

struct publish {
    struct rpc_ctx *ctx;
    struct telemetry *t;
    struct report r;
    size_t n; /* points written */
};

/* The answer to points the ingest stage did not store: why says where it failed. */
static void finish_unstored(struct rpc_ctx *ctx, int err, const char *why)
{
    if (err == CASCA_ERR_FULL)
        rpc_finish(ctx, err, "%s: retry in a moment", why);
    else if (err == CASCA_ERR_PRECONDITION)
        rpc_finish(ctx, err, "%s: add a hook with bus: " HOOK_SOURCE_PUBLISH " for it", why);
    else
        rpc_finish(ctx, err, "the points could not be stored: %s; retry later", why);
}

static void publish_done(int err, const char *why, void *arg)
{
    struct publish *p = arg;
    if (err) {
        atomic_fetch_add(&p->t->rejected, p->n + (uint64_t)p->r.rejected);
        log_warn("telemetry", "a Publish batch of %zu points was not stored: %s", p->n, why);
        finish_unstored(p->ctx, err, why);
    } else {
        atomic_fetch_add(&p->t->accepted, p->n);
        atomic_fetch_add(&p->t->rejected, (uint64_t)p->r.rejected);
        p->r.accepted = (int64_t)p->n;
        report_reply(p->ctx, &p->r);
    }
    report_free(&p->r);
    free(p);
}

static void publish(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct telemetry *t = rpc_method_arg(ctx);
    const Casca__V1__PublishRequest *req = (const Casca__V1__PublishRequest *)msg;
    uint64_t max = telemetry_max_points(t);
    if (req->n_points > max) {
        atomic_fetch_add(&t->rejected, req->n_points);
        rpc_finish(ctx, CASCA_ERR_INVALID,
                   "%zu points in one request is over the limit of %llu (tsdb.max_publish_points):"
                   " split the batch",
                   req->n_points, (unsigned long long)max);
        return;
    }
    struct publish *p = calloc(1, sizeof(*p));
    struct batch b = {0};
    if (!p || convert(t->db, req, casca_wall_ns(), 0, &b, &p->r)) {
        if (p) report_free(&p->r);
        free(p);
        batch_free(&b);
        rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory: retry with a smaller batch");
        return;
    }
    p->ctx = ctx;
    p->t = t;
    p->n = b.n;
    char why[256] = "";
    int rc = b.n ? hooks_submit(t->ingest, HOOK_SOURCE_PUBLISH, rpc_caller_name(ctx), b.pts, b.n,
                                publish_done, p, why, sizeof(why))
                 : CASCA_OK;
    batch_free(&b);
    if (!b.n) { /* nothing valid: answer now */
        publish_done(0, NULL, p);
        return;
    }
    if (rc == CASCA_OK) return; /* publish_done answers */
    atomic_fetch_add(&t->rejected, req->n_points);
    report_free(&p->r);
    free(p);
    finish_unstored(ctx, rc, why);
}

/* -- other ways in (telemetry_submit) -- */

struct submit {
    struct telemetry *t;
    size_t n;
    telemetry_done_fn done;
    void *arg;
};

static void submit_done(int err, const char *why, void *arg)
{
    struct submit *s = arg;
    atomic_fetch_add(err ? &s->t->rejected : &s->t->accepted, s->n);
    if (err) log_warn("telemetry", "a batch of %zu points was not stored: %s", s->n, why);
    if (s->done) s->done(err, why, s->arg);
    free(s);
}

int telemetry_submit(struct telemetry *t, const char *caller, struct tsdb_point *pts, size_t n,
                     size_t *rejected, char *first_reject, size_t rejectlen,
                     telemetry_done_fn done, void *arg, char *why, size_t whylen)
{
    *rejected = 0;
    if (rejectlen) *first_reject = 0;
    uint64_t max = telemetry_max_points(t);
    if (n > max) {
        atomic_fetch_add(&t->rejected, n);
        snprintf(why, whylen,
                 "%zu points in one request is over the limit of %llu (tsdb.max_publish_points):"
                 " send smaller batches",
                 n, (unsigned long long)max);
        return CASCA_ERR_INVALID;
    }
    int64_t now = casca_wall_ns();
    size_t valid = 0;
    for (size_t i = 0; i < n; i++) {
        char bad[200];
        if (tsdb_check_point(t->db, &pts[i], now, bad, sizeof(bad)) != CASCA_OK) {
            if (!*rejected && rejectlen) snprintf(first_reject, rejectlen, "%s", bad);
            ++*rejected;
            continue;
        }
        pts[valid++] = pts[i];
    }
    atomic_fetch_add(&t->rejected, *rejected);
    if (!valid) {
        if (done) done(0, NULL, arg);
        return CASCA_OK;
    }
    struct submit *s = malloc(sizeof(*s));
    if (!s) {
        atomic_fetch_add(&t->rejected, valid);
        snprintf(why, whylen, "out of memory: retry with a smaller batch");
        return CASCA_ERR_NOMEM;
    }
    *s = (struct submit){t, valid, done, arg};
    int rc = hooks_submit(t->ingest, HOOK_SOURCE_PUBLISH, caller, pts, valid, submit_done, s, why,
                          whylen);
    if (rc != CASCA_OK) {
        atomic_fetch_add(&t->rejected, valid);
        free(s);
    }
    return rc;
}

/* -- PublishStream -- */

struct stream {
    pthread_mutex_t mu;
    struct rpc_ctx *ctx;
    struct telemetry *t;
    struct report r;
    int64_t seen;         /* points received, for the messages' indexes */
    unsigned outstanding; /* tsdb_write batches not done */
    bool closed, answered;
    int err; /* a write that failed */
    char why[256];
};

struct stream_write {
    struct stream *s;
    size_t n;
    int64_t first, last; /* the points' indexes in the stream */
};

/* Answers once the client has closed and every batch is done. Takes s->mu; frees s. */
static void stream_maybe_answer(struct stream *s)
{
    pthread_mutex_lock(&s->mu);
    bool now = s->closed && s->outstanding == 0 && !s->answered;
    if (now) s->answered = true;
    pthread_mutex_unlock(&s->mu);
    if (!now) return;
    if (s->err)
        rpc_finish(s->ctx, s->err,
                   "some points could not be stored (%lld accepted so far): %s; retry later",
                   (long long)s->r.accepted, s->why);
    else if (rpc_cancelled(s->ctx))
        rpc_finish(s->ctx, CASCA_ERR_CANCELLED, "the stream was cancelled");
    else
        report_reply(s->ctx, &s->r);
    report_free(&s->r);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void stream_done(int err, const char *why, void *arg)
{
    struct stream_write *w = arg;
    struct stream *s = w->s;
    pthread_mutex_lock(&s->mu);
    if (err == CASCA_ERR_FULL) { /* overload: those points are rejected, the stream goes on */
        report_reject(&s->r, w->n,
                      "points %lld to %lld: %zu valid points dropped: %s; slow down and "
                      "resend them",
                      (long long)w->first, (long long)w->last, w->n, why);
        atomic_fetch_add(&s->t->rejected, w->n);
    } else if (err) {
        if (!s->err) snprintf(s->why, sizeof(s->why), "%s", why);
        s->err = err;
        s->r.rejected += (int64_t)w->n;
        atomic_fetch_add(&s->t->rejected, w->n);
    } else {
        s->r.accepted += (int64_t)w->n;
        atomic_fetch_add(&s->t->accepted, w->n);
    }
    s->outstanding--;
    pthread_mutex_unlock(&s->mu);
    free(w);
    stream_maybe_answer(s);
}

static void publish_stream(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct telemetry *t = rpc_method_arg(ctx);
    struct stream *s = rpc_data(ctx);
    if (!s) {
        if (!(s = calloc(1, sizeof(*s)))) {
            rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
            return;
        }
        pthread_mutex_init(&s->mu, NULL);
        s->ctx = ctx;
        s->t = t;
        rpc_set_data(ctx, s, NULL); /* freed by stream_maybe_answer */
    }
    if (!msg) {
        pthread_mutex_lock(&s->mu);
        s->closed = true;
        pthread_mutex_unlock(&s->mu);
        stream_maybe_answer(s);
        return;
    }
    const Casca__V1__PublishRequest *req = (const Casca__V1__PublishRequest *)msg;
    int64_t first = s->seen;
    s->seen += (int64_t)req->n_points; /* only this thread touches seen */
    uint64_t max = telemetry_max_points(t);
    struct report local = {0};
    struct batch b = {0};
    if (req->n_points > max) {
        report_reject(&local, req->n_points,
                      "points %lld to %lld: %zu points in one message is over the limit of %llu "
                      "(tsdb.max_publish_points): split the message",
                      (long long)first, (long long)(s->seen - 1), req->n_points,
                      (unsigned long long)max);
    } else if (convert(t->db, req, casca_wall_ns(), first, &b, &local)) {
        report_reject(&local, req->n_points, "points %lld to %lld: out of memory", (long long)first,
                      (long long)(s->seen - 1));
    } else if (b.n) {
        struct stream_write *w = malloc(sizeof(*w));
        if (w) {
            *w = (struct stream_write){s, b.n, first, s->seen - 1};
            pthread_mutex_lock(&s->mu);
            s->outstanding++;
            pthread_mutex_unlock(&s->mu);
        }
        char why[256] = "out of memory";
        int rc = w ? hooks_submit(t->ingest, HOOK_SOURCE_PUBLISH, rpc_caller_name(ctx), b.pts,
                                  b.n, stream_done, w, why, sizeof(why))
                   : CASCA_ERR_NOMEM;
        if (rc) {
            if (w) {
                pthread_mutex_lock(&s->mu);
                s->outstanding--;
                pthread_mutex_unlock(&s->mu);
                free(w);
            }
            report_reject(&local, b.n,
                          "points %lld to %lld: %zu valid points dropped: %s; slow down and "
                          "resend them",
                          (long long)first, (long long)(s->seen - 1), b.n, why);
        }
    }
    batch_free(&b);
    atomic_fetch_add(&t->rejected, (uint64_t)local.rejected);
    pthread_mutex_lock(&s->mu);
    s->r.rejected += local.rejected;
    for (size_t i = 0; i < local.nerrors; i++) {
        if (s->r.nerrors < MAX_ERRORS)
            s->r.errors[s->r.nerrors++] = local.errors[i];
        else
            free(local.errors[i]);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- Query ---- */

/* A bump allocator for one response: every part of it is freed at once. */
struct telemetry_arena {
    struct telemetry_arena *next;
    size_t used, cap;
    _Alignas(max_align_t) unsigned char data[];
};

static void *arena_alloc(struct telemetry_arena **a, size_t size)
{
    size = (size + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
    if (!*a || (*a)->cap - (*a)->used < size) {
        size_t cap = size > 65536 ? size : 65536;
        struct telemetry_arena *n = malloc(sizeof(*n) + cap);
        if (!n) return NULL;
        n->next = *a;
        n->used = 0;
        n->cap = cap;
        *a = n;
    }
    void *p = (*a)->data + (*a)->used;
    (*a)->used += size;
    return p;
}

static char *arena_strdup(struct telemetry_arena **a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = arena_alloc(a, n);
    if (d) memcpy(d, s, n);
    return d;
}

void telemetry_arena_free(struct telemetry_arena *a)
{
    while (a) {
        struct telemetry_arena *next = a->next;
        free(a);
        a = next;
    }
}

/* The growing list of series of a QueryResponse. */
struct qbuild {
    struct telemetry_arena **arena;
    Casca__V1__QuerySeries **series;
    size_t n, cap;
    bool nomem;
};

static int add_series(const struct tsdb_series_result *r, void *arg)
{
    struct qbuild *qb = arg;
    if (qb->n == qb->cap) {
        size_t cap = qb->cap ? 2 * qb->cap : 8;
        Casca__V1__QuerySeries **grown = arena_alloc(qb->arena, cap * sizeof(*grown));
        if (!grown) goto nomem;
        if (qb->n) memcpy(grown, qb->series, qb->n * sizeof(*grown));
        qb->series = grown;
        qb->cap = cap;
    }
    Casca__V1__QuerySeries *qs = arena_alloc(qb->arena, sizeof(*qs));
    Casca__V1__QuerySeries__TagsEntry *tags =
        arena_alloc(qb->arena, (r->ntags ? r->ntags : 1) * sizeof(*tags));
    Casca__V1__QuerySeries__TagsEntry **tagp =
        arena_alloc(qb->arena, (r->ntags ? r->ntags : 1) * sizeof(*tagp));
    Casca__V1__Sample *smp = arena_alloc(qb->arena, r->nsamples * sizeof(*smp));
    Casca__V1__Sample **smpp = arena_alloc(qb->arena, r->nsamples * sizeof(*smpp));
    Google__Protobuf__Timestamp *ts = arena_alloc(qb->arena, r->nsamples * sizeof(*ts));
    if (!qs || !tags || !tagp || !smp || !smpp || !ts) goto nomem;
    casca__v1__query_series__init(qs);
    if (!(qs->series = arena_strdup(qb->arena, r->series))) goto nomem;
    for (size_t i = 0; i < r->ntags; i++) {
        casca__v1__query_series__tags_entry__init(&tags[i]);
        tags[i].key = arena_strdup(qb->arena, r->tags[i].key);
        tags[i].value = arena_strdup(qb->arena, r->tags[i].value);
        if (!tags[i].key || !tags[i].value) goto nomem;
        tagp[i] = &tags[i];
    }
    qs->n_tags = r->ntags;
    qs->tags = tagp;
    for (size_t i = 0; i < r->nsamples; i++) {
        casca__v1__sample__init(&smp[i]);
        ns_ts(r->samples[i].time_ns, &ts[i]);
        smp[i].time = &ts[i];
        smp[i].value = r->samples[i].value;
        smp[i].count = (int64_t)r->samples[i].count;
        smpp[i] = &smp[i];
    }
    qs->n_samples = r->nsamples;
    qs->samples = smpp;
    qb->series[qb->n++] = qs;
    return 0;
nomem:
    qb->nomem = true;
    return CASCA_ERR_NOMEM;
}

/* Aggregation enum -> tsdb_agg, in the proto's order. */
static const enum tsdb_agg aggs[] = {
    [CASCA__V1__AGGREGATION__AGGREGATION_UNSPECIFIED] = TSDB_AGG_MEAN,
    [CASCA__V1__AGGREGATION__AGGREGATION_MEAN] = TSDB_AGG_MEAN,
    [CASCA__V1__AGGREGATION__AGGREGATION_MIN] = TSDB_AGG_MIN,
    [CASCA__V1__AGGREGATION__AGGREGATION_MAX] = TSDB_AGG_MAX,
    [CASCA__V1__AGGREGATION__AGGREGATION_SUM] = TSDB_AGG_SUM,
    [CASCA__V1__AGGREGATION__AGGREGATION_COUNT] = TSDB_AGG_COUNT,
    [CASCA__V1__AGGREGATION__AGGREGATION_LAST] = TSDB_AGG_LAST,
    [CASCA__V1__AGGREGATION__AGGREGATION_RATE] = TSDB_AGG_RATE,
    [CASCA__V1__AGGREGATION__AGGREGATION_QUANTILE] = TSDB_AGG_QUANTILE,
};

int telemetry_query(struct tsdb *db, const Casca__V1__QueryRequest *req, int64_t now,
                    size_t max_samples, Casca__V1__QueryResponse *resp,
                    struct telemetry_arena **arena, char *why, size_t whylen)
{
    casca__v1__query_response__init(resp);
    *arena = NULL;
    const char *bad;
    if (!req->series || !*req->series) {
        snprintf(why, whylen, "series is empty: name the series to query");
        return CASCA_ERR_INVALID;
    }
    if (!req->start) {
        snprintf(why, whylen, "start is required: set the beginning of the range");
        return CASCA_ERR_INVALID;
    }
    struct tsdb_query q = {.end_ns = now};
    if ((bad = ts_ns(req->start, &q.start_ns)) ||
        (req->end && (bad = ts_ns(req->end, &q.end_ns)))) {
        snprintf(why, whylen, "%s", bad);
        return CASCA_ERR_INVALID;
    }
    if (q.end_ns < q.start_ns) {
        snprintf(why, whylen, "end is before start: swap them, or leave end unset for now");
        return CASCA_ERR_INVALID;
    }
    if ((unsigned)req->aggregation >= sizeof aggs / sizeof aggs[0]) {
        snprintf(why, whylen,
                 "aggregation %d is unknown: use MEAN, MIN, MAX, SUM, COUNT, LAST, RATE or "
                 "QUANTILE",
                 (int)req->aggregation);
        return CASCA_ERR_INVALID;
    }
    q.agg = aggs[req->aggregation];
    q.q = req->quantile;
    if (q.agg == TSDB_AGG_QUANTILE && !(q.q >= 0 && q.q <= 1)) {
        snprintf(why, whylen, "quantile %g is outside [0, 1]: use e.g. 0.5, 0.9 or 0.99", q.q);
        return CASCA_ERR_INVALID;
    }
    if (req->step && (bad = duration_ns(req->step, &q.step_ns))) {
        snprintf(why, whylen, "%s", bad);
        return CASCA_ERR_INVALID;
    }
    if (q.step_ns && (q.end_ns - q.start_ns) / q.step_ns >= 1000000) {
        snprintf(why, whylen,
                 "the step is too small for the range (over 1,000,000 steps): widen "
                 "the step or narrow the range");
        return CASCA_ERR_INVALID;
    }
    q.max_samples = max_samples;

    struct tsdb_tag filter[req->n_tags ? req->n_tags : 1];
    for (size_t i = 0; i < req->n_tags; i++)
        filter[i] = (struct tsdb_tag){req->tags[i]->key, req->tags[i]->value};
    struct tsdb_selector *sel;
    int rc = tsdb_select(db, req->series, filter, req->n_tags, &sel);
    if (rc) {
        snprintf(why, whylen, "bad tag filter: give each tag key once");
        return rc;
    }
    struct qbuild qb = {.arena = arena};
    rc = tsdb_query(db, sel, &q, add_series, &qb);
    tsdb_selector_free(sel);
    if (rc == CASCA_ERR_FULL)
        snprintf(why, whylen,
                 "the result would hold more than %zu samples (tsdb.max_query_samples): narrow "
                 "the range, widen the step or filter by tags",
                 max_samples);
    else if (rc == CASCA_ERR_INVALID)
        snprintf(why, whylen, "the query is not valid: check the range, step and aggregation");
    else if (rc)
        snprintf(why, whylen, "cannot read the store: %s", casca_strerror(rc));
    if (rc) return rc;
    resp->n_series = qb.n;
    resp->series = qb.series;
    return CASCA_OK;
}

static void query(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct telemetry *t = rpc_method_arg(ctx);
    struct config *c = config_live_get(t->live);
    size_t max = (size_t)telemetry_config_of(c)->max_query_samples;
    config_unref(c);
    Casca__V1__QueryResponse resp;
    struct telemetry_arena *arena;
    char why[300];
    int rc = telemetry_query(t->db, (const Casca__V1__QueryRequest *)msg, casca_wall_ns(), max, &resp,
                             &arena, why, sizeof why);
    if (rc)
        rpc_finish(ctx, rc, "%s", why);
    else
        rpc_reply(ctx, &resp.base);
    telemetry_arena_free(arena);
}

/* ---- ListSeries ---- */

struct lbuild {
    struct telemetry_arena *arena;
    Casca__V1__SeriesInfo **series;
    size_t n, cap;
};

static int add_info(const struct tsdb_series_info *info, void *arg)
{
    struct lbuild *lb = arg;
    struct telemetry_arena **a = &lb->arena;
    if (lb->n == lb->cap) {
        size_t cap = lb->cap ? 2 * lb->cap : 16;
        Casca__V1__SeriesInfo **grown = arena_alloc(a, cap * sizeof(*grown));
        if (!grown) return CASCA_ERR_NOMEM;
        if (lb->n) memcpy(grown, lb->series, lb->n * sizeof(*grown));
        lb->series = grown;
        lb->cap = cap;
    }
    size_t nt = info->ntags ? info->ntags : 1;
    Casca__V1__SeriesInfo *si = arena_alloc(a, sizeof(*si));
    Casca__V1__SeriesInfo__TagsEntry *tags = arena_alloc(a, nt * sizeof(*tags));
    Casca__V1__SeriesInfo__TagsEntry **tagp = arena_alloc(a, nt * sizeof(*tagp));
    Google__Protobuf__Timestamp *ts = arena_alloc(a, 2 * sizeof(*ts));
    if (!si || !tags || !tagp || !ts) return CASCA_ERR_NOMEM;
    casca__v1__series_info__init(si);
    if (!(si->series = arena_strdup(a, info->series))) return CASCA_ERR_NOMEM;
    for (size_t i = 0; i < info->ntags; i++) {
        casca__v1__series_info__tags_entry__init(&tags[i]);
        tags[i].key = arena_strdup(a, info->tags[i].key);
        tags[i].value = arena_strdup(a, info->tags[i].value);
        if (!tags[i].key || !tags[i].value) return CASCA_ERR_NOMEM;
        tagp[i] = &tags[i];
    }
    si->n_tags = info->ntags;
    si->tags = tagp;
    si->points = (int64_t)info->points;
    if (info->points) {
        ns_ts(info->first_ns, &ts[0]);
        ns_ts(info->last_ns, &ts[1]);
        si->first = &ts[0];
        si->last = &ts[1];
    }
    lb->series[lb->n++] = si;
    return 0;
}

static void list_series(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct telemetry *t = rpc_method_arg(ctx);
    const Casca__V1__ListSeriesRequest *req = (const Casca__V1__ListSeriesRequest *)msg;
    struct lbuild lb = {0};
    int rc = tsdb_list(t->db, req->prefix ? req->prefix : "", add_info, &lb);
    if (rc) {
        rpc_finish(ctx, rc, "cannot list the series: %s", casca_strerror(rc));
    } else {
        Casca__V1__ListSeriesResponse resp = CASCA__V1__LIST_SERIES_RESPONSE__INIT;
        resp.n_series = lb.n;
        resp.series = lb.series;
        rpc_reply(ctx, &resp.base);
    }
    telemetry_arena_free(lb.arena);
}

/* ---- registration ---- */

/* Publish only queues (tsdb_write never blocks): it stays on the completion-queue thread.
 * Reads may touch the disk through LMDB's map, so they run on the worker pool. */
#define PUBLISHERS (RPC_ROLE_REPORTER | RPC_ROLE_OPERATOR)
static const struct rpc_method_def telemetry_methods[] = {
    RPC_METHOD("Publish", casca__v1__publish_request, casca__v1__publish_response, RPC_UNARY,
               PUBLISHERS, 0, publish),
    RPC_METHOD("PublishStream", casca__v1__publish_request, casca__v1__publish_response,
               RPC_CLIENT_STREAM, PUBLISHERS, 0, publish_stream),
    RPC_METHOD("Query", casca__v1__query_request, casca__v1__query_response, RPC_UNARY,
               RPC_ROLE_OPERATOR, RPC_BLOCKING, query),
    RPC_METHOD("ListSeries", casca__v1__list_series_request, casca__v1__list_series_response,
               RPC_UNARY, RPC_ROLE_OPERATOR, RPC_BLOCKING, list_series),
};
#undef PUBLISHERS

int telemetry_create(struct rpc_server *srv, struct config_live *live, struct tsdb *db,
                     struct hooks *ingest, struct telemetry **out, char *err, size_t errlen)
{
    struct telemetry *t = *out = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    t->live = live;
    t->db = db;
    t->ingest = ingest;
    int rc = rpc_server_add_service(srv, &casca__v1__telemetry_service__descriptor, NULL,
                                    telemetry_methods, RPC_NMETHODS(telemetry_methods), t, err,
                                    errlen);
    if (rc) {
        free(t);
        *out = NULL;
    }
    return rc;
}

void telemetry_destroy(struct telemetry *t)
{
    free(t);
}
