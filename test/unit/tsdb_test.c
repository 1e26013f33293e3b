#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw */
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fixture.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "casca_err.h"
#include "store.h"
#include "tsdb.h"

#define SEC INT64_C(1000000000)
#define BASE (INT64_C(1767607200) * SEC) /* 2026-01-05 10:00:00 UTC, an hour boundary */

struct fixture {
    char *dir;
    struct store *s;
    struct tsdb *db;
    int64_t now; /* the test's clock */
    struct tsdb_options o;
};

static int64_t test_clock(void *arg)
{
    return __atomic_load_n(&((struct fixture *)arg)->now, __ATOMIC_SEQ_CST);
}

static int open_db(struct fixture *f)
{
    struct store_options so = {.dir = f->dir, .sync = STORE_SYNC_NONE};
    char err[512];
    if (store_open(&so, &f->s, err, sizeof err) != CASCA_OK) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    f->o.clock = test_clock;
    f->o.clock_arg = f;
    return tsdb_open(f->s, &f->o, &f->db) == CASCA_OK ? 0 : -1;
}

static void close_db(struct fixture *f)
{
    tsdb_close(f->db);
    store_close(f->s);
    f->db = NULL;
    f->s = NULL;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->dir = fixture_tmpdir("tsdb-test"))) return -1;
    f->now = BASE + 6 * TSDB_HOUR_NS;
    if (open_db(f)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    close_db(f);
    int rc = fixture_remove_tree(f->dir);
    free(f->dir);
    free(f);
    return rc;
}

/* ---- helpers ---- */

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending, err;
};

static struct waiter waiter = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void done_cb(int err, void *arg)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    if (err) w->err = err;
    w->pending--;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int write_async(struct fixture *f, const struct tsdb_point *p, size_t n)
{
    pthread_mutex_lock(&waiter.mu);
    waiter.pending++;
    pthread_mutex_unlock(&waiter.mu);
    int rc = tsdb_write(f->db, p, n, done_cb, &waiter);
    if (rc) {
        pthread_mutex_lock(&waiter.mu);
        waiter.pending--;
        pthread_mutex_unlock(&waiter.mu);
    }
    return rc;
}

static void wait_all(void)
{
    pthread_mutex_lock(&waiter.mu);
    while (waiter.pending > 0)
        pthread_cond_wait(&waiter.cv, &waiter.mu);
    int err = waiter.err;
    waiter.err = 0;
    pthread_mutex_unlock(&waiter.mu);
    assert_int_equal(err, 0);
}

static int write_wait(struct fixture *f, const struct tsdb_point *p, size_t n)
{
    int rc = write_async(f, p, n);
    wait_all();
    return rc;
}

static void put1(struct fixture *f, const char *series, const char *k, const char *v, int64_t t,
                 double value)
{
    struct tsdb_tag tag = {k, v};
    struct tsdb_point p = {series, k ? &tag : NULL, k ? 1 : 0, t, value};
    assert_int_equal(write_wait(f, &p, 1), CASCA_OK);
}

static struct tsdb_sample agg(struct fixture *f, const char *series, const struct tsdb_tag *filter,
                              size_t nf, int64_t a, int64_t b, enum tsdb_agg g, double q)
{
    struct tsdb_selector *sel;
    assert_int_equal(tsdb_select(f->db, series, filter, nf, &sel), CASCA_OK);
    struct tsdb_sample s;
    assert_int_equal(tsdb_aggregate(f->db, sel, a, b, g, q, &s), CASCA_OK);
    tsdb_selector_free(sel);
    return s;
}

/* ---- the brute-force reference ---- */

#define NSERIES 3
static const char *hosts[NSERIES] = {"a", "b", "c"};

struct refpt {
    int64_t t;
    double v;
    bool set;
};

struct model {
    struct refpt *pts[NSERIES]; /* indexed by (t - BASE) / SEC: points are on whole seconds */
    size_t span;
};

static int dcmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The reference figure for series s over [a, b): count 0 when there is none. */
static struct tsdb_sample ref_agg(const struct model *m, int s, int64_t a, int64_t b,
                                  enum tsdb_agg g, double q)
{
    struct tsdb_sample out = {.time_ns = a};
    double *vals = malloc(m->span * sizeof(double));
    size_t n = 0;
    double sum = 0, mn = 0, mx = 0, last = 0, prev = 0, incr = 0;
    int64_t first_t = 0, last_t = 0;
    for (size_t i = 0; i < m->span; i++) {
        const struct refpt *p = &m->pts[s][i];
        if (!p->set || p->t < a || p->t >= b) continue;
        if (n == 0) {
            mn = mx = p->v;
            first_t = p->t;
        } else {
            incr += p->v >= prev ? p->v - prev : p->v;
        }
        if (p->v < mn) mn = p->v;
        if (p->v > mx) mx = p->v;
        sum += p->v;
        last = prev = p->v;
        last_t = p->t;
        vals[n++] = p->v;
    }
    out.count = n;
    if (n) {
        switch (g) {
        case TSDB_AGG_MEAN:
            out.value = sum / (double)n;
            break;
        case TSDB_AGG_MIN:
            out.value = mn;
            break;
        case TSDB_AGG_MAX:
            out.value = mx;
            break;
        case TSDB_AGG_SUM:
            out.value = sum;
            break;
        case TSDB_AGG_COUNT:
            out.value = (double)n;
            break;
        case TSDB_AGG_LAST:
            out.value = last;
            break;
        case TSDB_AGG_RATE:
            if (n < 2 || last_t == first_t)
                out.count = 0;
            else
                out.value = incr / ((double)(last_t - first_t) / 1e9);
            break;
        case TSDB_AGG_QUANTILE: {
            qsort(vals, n, sizeof(double), dcmp);
            double h = (double)(n - 1) * q;
            size_t k = (size_t)h;
            out.value = k + 1 < n ? vals[k] + (h - (double)k) * (vals[k + 1] - vals[k]) : vals[k];
            break;
        }
        default:
            break;
        }
    }
    free(vals);
    return out;
}

static void assert_close(double got, double want, const char *what)
{
    double tol = 1e-9 * (fabs(want) > 1 ? fabs(want) : 1);
    if (fabs(got - want) > tol) {
        fprintf(stderr, "%s: got %.17g, want %.17g\n", what, got, want);
        fail();
    }
}

struct collect {
    struct tsdb_sample samples[NSERIES][4096];
    size_t n[NSERIES];
    size_t calls;
};

static int collect_fn(const struct tsdb_series_result *r, void *arg)
{
    struct collect *c = arg;
    assert_string_equal(r->series, "fps");
    assert_int_equal(r->ntags, 2);
    assert_string_equal(r->tags[0].key, "host");
    assert_string_equal(r->tags[1].key, "kind");
    int s = r->tags[0].value[0] - 'a';
    assert_true(s >= 0 && s < NSERIES);
    assert_true(r->nsamples <= 4096);
    memcpy(c->samples[s], r->samples, r->nsamples * sizeof(*r->samples));
    c->n[s] = r->nsamples;
    c->calls++;
    return 0;
}

/* Random points over 3 hours for 3 series, written out of order, in many calls, with duplicates;
 * then random ranges, steps and aggregations checked against the reference. */
static void test_random_against_reference(void **state)
{
    struct fixture *f = *state;
    srand(42);
    struct model m = {.span = 3 * 3600};
    for (int s = 0; s < NSERIES; s++)
        m.pts[s] = calloc(m.span, sizeof(struct refpt));

    enum { NPTS = 40000, CALL = 97 };
    struct tsdb_point pts[CALL];
    struct tsdb_tag tags[CALL][2];
    size_t n = 0;
    for (int i = 0; i < NPTS; i++) {
        int s = rand() % NSERIES;
        size_t sec;
        if (i < NPTS / 2)
            sec = (size_t)i * m.span / (NPTS / 2); /* mostly in order... */
        else
            sec = (size_t)rand() % m.span; /* ...then anywhere, including duplicates */
        double v = (double)(rand() % 20000) / 8.0 - 500;
        int64_t t = BASE + (int64_t)sec * SEC;
        m.pts[s][sec] = (struct refpt){t, v, true};
        /* tags in varying order: identity sorts them */
        tags[n][i & 1] = (struct tsdb_tag){"host", hosts[s]};
        tags[n][!(i & 1)] = (struct tsdb_tag){"kind", "player"};
        pts[n] = (struct tsdb_point){"fps", tags[n], 2, t, v};
        if (++n == CALL || i == NPTS - 1) {
            assert_int_equal(write_async(f, pts, n), CASCA_OK);
            n = 0;
        }
    }
    wait_all();

    struct tsdb_stats st;
    tsdb_stats(f->db, &st);
    assert_int_equal(st.series, NSERIES);
    assert_true(st.batches < NPTS / CALL); /* calls were grouped into fewer transactions */

    struct tsdb_selector *all, *one;
    struct tsdb_tag kind = {"kind", "player"}, host = {"host", "b"};
    assert_int_equal(tsdb_select(f->db, "fps", &kind, 1, &all), CASCA_OK);
    assert_int_equal(tsdb_select(f->db, "fps", &host, 1, &one), CASCA_OK);
    static const double qs[] = {0, 0.5, 0.9, 0.99, 1};
    struct collect *c = malloc(sizeof *c);
    for (int round = 0; round < 300; round++) {
        int64_t a = BASE - 600 * SEC + (int64_t)(rand() % (4 * 3600)) * SEC / 1 +
                    (rand() % 2 ? (int64_t)(rand() % 1000) * 1000000 : 0);
        int64_t len = round % 3 == 0 ? (int64_t)(rand() % 300) * SEC
                                     : (int64_t)(rand() % (3 * 3600)) * SEC + rand() % 1000;
        int64_t b = a + len;
        enum tsdb_agg g = (enum tsdb_agg)(round % TSDB_AGG__COUNT);
        double q = qs[rand() % 5];
        int64_t step = round % 4 == 0 ? 0 : (int64_t)(60 + rand() % 1800) * SEC;

        memset(c, 0, sizeof *c);
        struct tsdb_query query = {a, b, step, g, q, 0};
        assert_int_equal(tsdb_query(f->db, all, &query, collect_fn, c), CASCA_OK);
        int64_t w = step ? step : (b - a);
        for (int s = 0; s < NSERIES; s++) {
            size_t k = 0;
            for (int64_t x = a; x < b && w; x += w) {
                int64_t y = b - x > w ? x + w : b;
                struct tsdb_sample want = ref_agg(&m, s, x, y, g, q);
                if (!want.count) continue;
                assert_true(k < c->n[s]);
                struct tsdb_sample *got = &c->samples[s][k++];
                assert_int_equal(got->time_ns, x);
                assert_int_equal(got->count, want.count);
                assert_close(got->value, want.value, tsdb_agg_name(g));
            }
            assert_int_equal(k, c->n[s]);
        }
        /* one series through the SLO path */
        struct tsdb_sample got;
        assert_int_equal(tsdb_aggregate(f->db, one, a, b, g, q, &got), CASCA_OK);
        struct tsdb_sample want = ref_agg(&m, 1, a, b, g, q);
        assert_int_equal(got.count, want.count);
        if (want.count) assert_close(got.value, want.value, tsdb_agg_name(g));
    }
    /* all three merged: count and mean over everything */
    struct tsdb_sample got;
    assert_int_equal(
        tsdb_aggregate(f->db, all, BASE, BASE + 3 * TSDB_HOUR_NS, TSDB_AGG_COUNT, 0, &got),
        CASCA_OK);
    uint64_t total = 0;
    for (int s = 0; s < NSERIES; s++)
        total += ref_agg(&m, s, BASE, BASE + 3 * TSDB_HOUR_NS, TSDB_AGG_COUNT, 0).count;
    assert_int_equal(got.count, total);
    assert_close(got.value, (double)total, "merged count");

    free(c);
    tsdb_selector_free(all);
    tsdb_selector_free(one);
    for (int s = 0; s < NSERIES; s++)
        free(m.pts[s]);
}

static void test_duplicates_last_write_wins(void **state)
{
    struct fixture *f = *state;
    int64_t t = BASE + 10 * SEC;
    put1(f, "temp", "room", "1", t, 20);
    put1(f, "temp", "room", "1", t, 21); /* a later call replaces */
    struct tsdb_tag tag = {"room", "1"};
    struct tsdb_point two[2] = {{"temp", &tag, 1, t + SEC, 5}, {"temp", &tag, 1, t + SEC, 6}};
    assert_int_equal(write_wait(f, two, 2), CASCA_OK); /* within a call the later element wins */
    struct tsdb_sample s = agg(f, "temp", NULL, 0, BASE, BASE + TSDB_HOUR_NS, TSDB_AGG_SUM, 0);
    assert_int_equal(s.count, 2);
    assert_close(s.value, 27, "sum");
    /* the minute rollup was rebuilt: an hour-wide query (which reads it) agrees */
    s = agg(f, "temp", NULL, 0, BASE - TSDB_HOUR_NS, BASE + 2 * TSDB_HOUR_NS, TSDB_AGG_MAX, 0);
    assert_close(s.value, 21, "max");
    assert_int_equal(s.count, 2);
    struct tsdb_stats st;
    tsdb_stats(f->db, &st);
    assert_int_equal(st.replaced, 1); /* the pair within one call never reached the store */
    assert_int_equal(st.written, 3);
}

static void test_rate_with_counter_reset(void **state)
{
    struct fixture *f = *state;
    /* a counter: 0, 10, 30, reset to 5, 15 over 40 s: increase 10 + 20 + 5 + 10 = 45 */
    double v[] = {0, 10, 30, 5, 15};
    for (int i = 0; i < 5; i++)
        put1(f, "bytes", NULL, NULL, BASE + 50 * SEC + i * 10 * SEC, v[i]);
    struct tsdb_sample s =
        agg(f, "bytes", NULL, 0, BASE, BASE + 2 * TSDB_HOUR_NS, TSDB_AGG_RATE, 0);
    assert_int_equal(s.count, 5);
    assert_close(s.value, 45.0 / 40.0, "rate");
    /* one point: no rate */
    s = agg(f, "bytes", NULL, 0, BASE + 50 * SEC, BASE + 51 * SEC, TSDB_AGG_RATE, 0);
    assert_int_equal(s.count, 0);
    /* two counters of one quantity: their rates add up */
    put1(f, "req", "host", "a", BASE, 0);
    put1(f, "req", "host", "a", BASE + 10 * SEC, 10);
    put1(f, "req", "host", "b", BASE, 100);
    put1(f, "req", "host", "b", BASE + 20 * SEC, 140);
    s = agg(f, "req", NULL, 0, BASE, BASE + TSDB_HOUR_NS, TSDB_AGG_RATE, 0);
    assert_close(s.value, 1.0 + 2.0, "rate of two");
}

static void test_filter_and_list(void **state)
{
    struct fixture *f = *state;
    put1(f, "power_w", "plug", "p1", BASE, 15);
    put1(f, "power_w", "plug", "p2", BASE, 25);
    put1(f, "power", NULL, NULL, BASE, 1); /* a name that is a prefix of another */
    put1(f, "voltage", "plug", "p1", BASE, 229);
    struct tsdb_tag p2 = {"plug", "p2"}, none = {"plug", "p9"}, other = {"x", "p1"};
    assert_close(agg(f, "power_w", NULL, 0, BASE, BASE + SEC, TSDB_AGG_SUM, 0).value, 40, "all");
    assert_close(agg(f, "power_w", &p2, 1, BASE, BASE + SEC, TSDB_AGG_SUM, 0).value, 25, "p2");
    assert_int_equal(agg(f, "power_w", &none, 1, BASE, BASE + SEC, TSDB_AGG_SUM, 0).count, 0);
    assert_int_equal(agg(f, "power_w", &other, 1, BASE, BASE + SEC, TSDB_AGG_SUM, 0).count, 0);
    assert_int_equal(agg(f, "power", NULL, 0, BASE, BASE + SEC, TSDB_AGG_COUNT, 0).count, 1);
    assert_int_equal(agg(f, "nosuch", NULL, 0, BASE, BASE + SEC, TSDB_AGG_COUNT, 0).count, 0);
    /* end is exclusive */
    assert_int_equal(agg(f, "power_w", NULL, 0, BASE, BASE, TSDB_AGG_COUNT, 0).count, 0);
    assert_int_equal(agg(f, "power_w", NULL, 0, BASE + 1, BASE + SEC, TSDB_AGG_COUNT, 0).count, 0);
}

struct listing {
    char names[8][64];
    uint64_t points[8];
    size_t n;
};

static int list_fn(const struct tsdb_series_info *info, void *arg)
{
    struct listing *l = arg;
    assert_true(l->n < 8);
    snprintf(l->names[l->n], 64, "%s%s%s", info->series, info->ntags ? "," : "",
             info->ntags ? info->tags[0].value : "");
    l->points[l->n++] = info->points;
    return 0;
}

static void test_list_series(void **state)
{
    struct fixture *f = *state;
    put1(f, "power_w", "plug", "p2", BASE, 25);
    put1(f, "power_w", "plug", "p1", BASE, 15);
    put1(f, "power_w", "plug", "p1", BASE + SEC, 16);
    put1(f, "voltage", NULL, NULL, BASE, 229);
    struct listing l = {0};
    assert_int_equal(tsdb_list(f->db, "power", list_fn, &l), CASCA_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.names[0], "power_w,p1");
    assert_int_equal(l.points[0], 2);
    assert_string_equal(l.names[1], "power_w,p2");
    memset(&l, 0, sizeof l);
    assert_int_equal(tsdb_list(f->db, "", list_fn, &l), CASCA_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.names[2], "voltage");
}

static void test_bad_points(void **state)
{
    struct fixture *f = *state;
    char why[256];
    struct tsdb_tag dup[2] = {{"a", "1"}, {"a", "2"}}, empty = {"", "x"};
    char longname[600];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    struct tsdb_point bad[] = {
        {"s", NULL, 0, BASE, NAN},
        {"s", NULL, 0, BASE, INFINITY},
        {"s", NULL, 0, BASE, -INFINITY},
        {"", NULL, 0, BASE, 1},
        {NULL, NULL, 0, BASE, 1},
        {"s", dup, 2, BASE, 1},
        {"s", &empty, 1, BASE, 1},
        {longname, NULL, 0, BASE, 1},
        {"s", NULL, 0, f->now - 8 * TSDB_DAY_NS, 1}, /* older than the raw retention */
        {"s", NULL, 0, f->now + 2 * TSDB_DAY_NS, 1}, /* far in the future */
        {"s", NULL, 0, -5, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        assert_int_equal(tsdb_check_point(f->db, &bad[i], f->now, why, sizeof why),
                         CASCA_ERR_INVALID);
        assert_true(strlen(why) > 10);
        /* a batch with one bad point is refused whole */
        struct tsdb_point batch[2] = {{"good", NULL, 0, BASE, 1}, bad[i]};
        assert_int_equal(tsdb_write(f->db, batch, 2, NULL, NULL), CASCA_ERR_INVALID);
    }
    struct tsdb_point ok = {"good", NULL, 0, BASE, 1};
    assert_int_equal(tsdb_check_point(f->db, &ok, f->now, why, sizeof why), CASCA_OK);
    assert_int_equal(write_wait(f, NULL, 0), CASCA_OK); /* an empty batch still completes */
    assert_int_equal(agg(f, "good", NULL, 0, 0, f->now, TSDB_AGG_COUNT, 0).count, 0);
    struct tsdb_stats st;
    tsdb_stats(f->db, &st);
    assert_int_equal(st.refused_invalid, sizeof bad / sizeof bad[0]);
    assert_int_equal(st.written, 0);
}

static void test_queue_full(void **state)
{
    struct fixture *f = *state;
    close_db(f);
    f->o.queue_points = 100;
    assert_int_equal(open_db(f), 0);
    struct tsdb_point pts[101];
    for (int i = 0; i < 101; i++)
        pts[i] = (struct tsdb_point){"s", NULL, 0, BASE + i * SEC, i};
    assert_int_equal(tsdb_write(f->db, pts, 101, NULL, NULL), CASCA_ERR_FULL);
    assert_int_equal(write_wait(f, pts, 100), CASCA_OK);
    struct tsdb_stats st;
    tsdb_stats(f->db, &st);
    assert_int_equal(st.refused_full, 101);
    assert_int_equal(st.written, 100);
}

static void test_bad_queries(void **state)
{
    struct fixture *f = *state;
    struct tsdb_selector *sel;
    struct tsdb_sample s;
    assert_int_equal(tsdb_select(f->db, "", NULL, 0, &sel), CASCA_ERR_INVALID);
    struct tsdb_tag dup[2] = {{"a", "1"}, {"a", "2"}};
    assert_int_equal(tsdb_select(f->db, "x", dup, 2, &sel), CASCA_ERR_INVALID);
    assert_int_equal(tsdb_select(f->db, "x", NULL, 0, &sel), CASCA_OK);
    assert_int_equal(tsdb_aggregate(f->db, sel, BASE, BASE - 1, TSDB_AGG_MEAN, 0, &s),
                     CASCA_ERR_INVALID);
    assert_int_equal(tsdb_aggregate(f->db, sel, BASE, BASE + 1, TSDB_AGG_QUANTILE, 1.5, &s),
                     CASCA_ERR_INVALID);
    assert_int_equal(tsdb_aggregate(f->db, sel, BASE, BASE + 1, TSDB_AGG_QUANTILE, -0.1, &s),
                     CASCA_ERR_INVALID);
    assert_int_equal(tsdb_aggregate(f->db, sel, BASE, BASE + 1, TSDB_AGG_QUANTILE, NAN, &s),
                     CASCA_ERR_INVALID);
    assert_int_equal(tsdb_aggregate(f->db, sel, BASE, BASE + 1, (enum tsdb_agg)99, 0, &s),
                     CASCA_ERR_INVALID);
    struct tsdb_query q = {BASE, BASE + TSDB_DAY_NS, 1, TSDB_AGG_MEAN, 0, 0}; /* 1 ns steps */
    assert_int_equal(tsdb_query(f->db, sel, &q, collect_fn, NULL), CASCA_ERR_INVALID);
    q.step_ns = -1;
    assert_int_equal(tsdb_query(f->db, sel, &q, collect_fn, NULL), CASCA_ERR_INVALID);
    tsdb_selector_free(sel);

    /* too many samples: refused before any is delivered */
    for (int i = 0; i < 10; i++)
        put1(f, "x", NULL, NULL, BASE + i * SEC, i);
    assert_int_equal(tsdb_select(f->db, "x", NULL, 0, &sel), CASCA_OK);
    q = (struct tsdb_query){BASE, BASE + 10 * SEC, SEC, TSDB_AGG_MEAN, 0, 5};
    assert_int_equal(tsdb_query(f->db, sel, &q, collect_fn, NULL), CASCA_ERR_FULL);
    tsdb_selector_free(sel);

    enum tsdb_agg g;
    double qv = -1;
    assert_int_equal(tsdb_agg_parse("p99", &g, &qv), CASCA_OK);
    assert_int_equal(g, TSDB_AGG_QUANTILE);
    assert_close(qv, 0.99, "p99");
    assert_int_equal(tsdb_agg_parse("rate", &g, NULL), CASCA_OK);
    assert_int_equal(g, TSDB_AGG_RATE);
    assert_int_equal(tsdb_agg_parse("average", &g, NULL), CASCA_ERR_INVALID);
    assert_string_equal(tsdb_agg_name(TSDB_AGG_LAST), "last");
}

/* A selector made before its series exists picks it up once written (the SLO engine keeps one). */
static void test_selector_sees_new_series(void **state)
{
    struct fixture *f = *state;
    struct tsdb_selector *sel;
    struct tsdb_tag tag = {"client", "w1"};
    assert_int_equal(tsdb_select(f->db, "fps", &tag, 1, &sel), CASCA_OK);
    struct tsdb_sample s;
    assert_int_equal(tsdb_aggregate(f->db, sel, BASE, BASE + TSDB_HOUR_NS, TSDB_AGG_MEAN, 0, &s),
                     CASCA_OK);
    assert_int_equal(s.count, 0);
    put1(f, "fps", "client", "w1", BASE + SEC, 27.5);
    put1(f, "fps", "client", "w2", BASE + SEC, 10);
    assert_int_equal(tsdb_aggregate(f->db, sel, BASE, BASE + TSDB_HOUR_NS, TSDB_AGG_MEAN, 0, &s),
                     CASCA_OK);
    assert_int_equal(s.count, 1);
    assert_close(s.value, 27.5, "mean");
    tsdb_selector_free(sel);
}

/* Raw points expire, rollups keep long windows answerable; a reopened store keeps everything. */
static void test_retention_and_rollups(void **state)
{
    struct fixture *f = *state;
    close_db(f);
    f->o.raw_retention_ns = 2 * TSDB_HOUR_NS;
    f->o.minute_retention_ns = 5 * TSDB_HOUR_NS;
    f->o.hour_retention_ns = 24 * TSDB_HOUR_NS;
    f->now = BASE + 30 * TSDB_MINUTE_NS;
    assert_int_equal(open_db(f), 0);
    /* 1 Hz for 90 minutes from BASE - 60 min: values are the minute index (0..89) */
    struct tsdb_point pts[600];
    for (int chunk = 0; chunk < 9; chunk++) {
        for (int i = 0; i < 600; i++) {
            int sec = chunk * 600 + i;
            pts[i] = (struct tsdb_point){"load", NULL, 0, BASE - TSDB_HOUR_NS + sec * SEC,
                                         (double)(sec / 60)};
        }
        assert_int_equal(write_wait(f, pts, 600), CASCA_OK);
    }
    int64_t a = BASE - TSDB_HOUR_NS, b = BASE + 30 * TSDB_MINUTE_NS;
    struct tsdb_sample s = agg(f, "load", NULL, 0, a, b, TSDB_AGG_MEAN, 0);
    assert_int_equal(s.count, 5400);
    assert_close(s.value, 44.5, "mean");

    /* 3 h later: raw points before BASE + 1h30 are gone, minute rollups still hold them */
    f->now += 3 * TSDB_HOUR_NS;
    assert_int_equal(tsdb_purge(f->db), CASCA_OK);
    struct listing l = {0};
    assert_int_equal(tsdb_list(f->db, "load", list_fn, &l), CASCA_OK);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.points[0], 0);
    struct tsdb_stats st;
    tsdb_stats(f->db, &st);
    assert_int_equal(st.purged, 5400);
    s = agg(f, "load", NULL, 0, a, b, TSDB_AGG_MEAN, 0);
    assert_int_equal(s.count, 5400);
    assert_close(s.value, 44.5, "mean from rollups");
    s = agg(f, "load", NULL, 0, a + 10 * TSDB_MINUTE_NS, a + 20 * TSDB_MINUTE_NS, TSDB_AGG_MAX, 0);
    assert_close(s.value, 19, "max of minutes 10..19");
    assert_int_equal(s.count, 600);
    s = agg(f, "load", NULL, 0, a, b, TSDB_AGG_QUANTILE, 0.5); /* raw only: none left */
    assert_int_equal(s.count, 0);
    /* a point older than the raw horizon is refused now */
    struct tsdb_point old = {"load", NULL, 0, BASE, 1};
    assert_int_equal(tsdb_write(f->db, &old, 1, NULL, NULL), CASCA_ERR_INVALID);

    /* 6 h later minute rollups are gone too: hour buckets remain (start inside the range) */
    f->now += 3 * TSDB_HOUR_NS;
    assert_int_equal(tsdb_purge(f->db), CASCA_OK);
    s = agg(f, "load", NULL, 0, a, b, TSDB_AGG_COUNT, 0);
    assert_int_equal(s.count, 5400);
    s = agg(f, "load", NULL, 0, a, a + TSDB_HOUR_NS, TSDB_AGG_SUM, 0);
    assert_close(s.value, 60.0 * (59 * 60 / 2), "sum of the first hour");

    /* reopen: all of it persisted */
    close_db(f);
    assert_int_equal(open_db(f), 0);
    s = agg(f, "load", NULL, 0, a, b, TSDB_AGG_MEAN, 0);
    assert_close(s.value, 44.5, "mean after reopen");

    /* 2 days later everything has expired and the series is forgotten */
    f->now += 48 * TSDB_HOUR_NS;
    assert_int_equal(tsdb_purge(f->db), CASCA_OK);
    memset(&l, 0, sizeof l);
    assert_int_equal(tsdb_list(f->db, "", list_fn, &l), CASCA_OK);
    assert_int_equal(l.n, 0);
    assert_int_equal(agg(f, "load", NULL, 0, 0, f->now, TSDB_AGG_COUNT, 0).count, 0);
}

/* The writer purges on its own every purge_interval. */
static void test_background_purge(void **state)
{
    struct fixture *f = *state;
    close_db(f);
    f->o.raw_retention_ns = TSDB_HOUR_NS;
    f->o.purge_interval_ns = TSDB_MINUTE_NS;
    assert_int_equal(open_db(f), 0);
    put1(f, "x", NULL, NULL, f->now - 30 * TSDB_MINUTE_NS, 1);
    f->now += 2 * TSDB_HOUR_NS;
    for (int i = 0; i < 200; i++) { /* each write may trigger the purge */
        put1(f, "y", NULL, NULL, f->now, i);
        struct tsdb_stats st;
        tsdb_stats(f->db, &st);
        if (st.purged == 1) return;
        f->now += SEC;
    }
    fail_msg("the writer never purged");
}

struct thread_arg {
    struct fixture *f;
    int id;
};

static void *writer_thread(void *arg)
{
    struct thread_arg *ta = arg;
    char host[8];
    snprintf(host, sizeof host, "h%d", ta->id);
    struct tsdb_tag tag = {"host", host};
    for (int i = 0; i < 2000; i++) {
        struct tsdb_point p = {"conc", &tag, 1, BASE + i * SEC, 1};
        while (write_async(ta->f, &p, 1) == CASCA_ERR_FULL)
            ;
    }
    return NULL;
}

static void test_concurrent_writers_and_readers(void **state)
{
    struct fixture *f = *state;
    pthread_t th[4];
    struct thread_arg ta[4];
    for (int i = 0; i < 4; i++) {
        ta[i] = (struct thread_arg){f, i};
        pthread_create(&th[i], NULL, writer_thread, &ta[i]);
    }
    struct tsdb_selector *sel;
    assert_int_equal(tsdb_select(f->db, "conc", NULL, 0, &sel), CASCA_OK);
    uint64_t seen = 0;
    for (int i = 0; i < 200; i++) {
        struct tsdb_sample s;
        assert_int_equal(tsdb_aggregate(f->db, sel, BASE, BASE + TSDB_HOUR_NS, TSDB_AGG_SUM, 0, &s),
                         CASCA_OK);
        assert_true(s.count >= seen); /* never goes backwards */
        seen = s.count;
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    wait_all();
    struct tsdb_sample s;
    assert_int_equal(tsdb_aggregate(f->db, sel, BASE, BASE + TSDB_HOUR_NS, TSDB_AGG_SUM, 0, &s),
                     CASCA_OK);
    assert_int_equal(s.count, 8000);
    assert_close(s.value, 8000, "sum");
    tsdb_selector_free(sel);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_random_against_reference, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates_last_write_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_with_counter_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filter_and_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_series, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_points, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_selector_sees_new_series, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_and_rollups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_background_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers_and_readers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
