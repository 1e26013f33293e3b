/* Allocation failures in the stores (stores/salloc.h): a day in the life of a store (open, write
 * points, append audit entries, put a kv value, read them back, close) is run once for every
 * allocation it makes, with that one allocation failing, and once with every allocation from
 * some point on failing. Each run must end without a crash or a leak (the suite also runs under
 * ASan and LeakSanitizer), every failure must come back as a casca_err, and afterwards, with
 * allocations working again, the store must open and hold everything that was acknowledged. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "audit.h"
#include "carbon_csv.h"
#include "carbondb.h"
#include "casca_err.h"
#include "fixture.h"
#include "kv.h"
#include "salloc.h"
#include "store.h"
#include "tsdb.h"

#define POINTS 40
#define ENTRIES 3
#define CALLS 4        /* the busy day's tsdb_write calls, CALL_POINTS points each, */
#define CALL_POINTS 10 /* one call per write transaction (batch_points) */
#define HOURS 24

/* What a run got acknowledged, to look for afterwards. */
struct acked {
    bool points, kv;
    int entries;
    /* the busy day */
    bool call[CALLS], kv_async, hours, csv, meta;
    int async_entries;
};

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int err;
};

static void wake(int err, void *arg)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    w->err = err;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* tsdb_write, waiting for the commit: CASCA_OK or a casca_err. */
static int write_points(struct tsdb *db, int64_t t0)
{
    static struct tsdb_tag tag = {"host", "a"};
    struct tsdb_point pts[POINTS];
    for (int i = 0; i < POINTS; i++)
        pts[i] = (struct tsdb_point){"cpu", &tag, 1, t0 + i * 1000000000LL, (double)i};
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
    int rc = tsdb_write(db, pts, POINTS, wake, &w);
    if (rc != CASCA_OK) return rc;
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    return w.err;
}

static bool is_err(int rc)
{
    return rc > CASCA_OK && rc < CASCA_ERR__COUNT;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The store in dir, or NULL when opening it failed as an allocation failure may make it fail. */
static struct store *open_store(const char *dir)
{
    struct store *s = NULL;
    struct store_options o = {.dir = dir, .sync = STORE_SYNC_NONE};
    char err[256];
    int rc = store_open(&o, &s, err, sizeof(err));
    if (rc != CASCA_OK) {
        assert_true(is_err(rc));
        assert_null(s);
    }
    return s;
}

/* The day, with allocations failing as salloc_fail_at says. Records what was acknowledged. */
static void day(const char *dir, int64_t t0, struct acked *ok)
{
    struct store *s = open_store(dir);
    if (!s) return;
    struct tsdb *db = NULL;
    struct audit *a = NULL;
    struct kv *kv = NULL;
    int rc;
    if ((rc = tsdb_open(s, NULL, &db)) == CASCA_OK) {
        rc = write_points(db, t0);
        assert_true(rc == CASCA_OK || is_err(rc));
        ok->points |= rc == CASCA_OK;
        struct tsdb_selector *sel = NULL;
        struct tsdb_tag tag = {"host", "a"};
        if ((rc = tsdb_select(db, "cpu", &tag, 1, &sel)) == CASCA_OK) {
            struct tsdb_sample sample;
            rc =
                tsdb_aggregate(db, sel, t0, t0 + POINTS * 1000000000LL, TSDB_AGG_COUNT, 0, &sample);
            assert_true(rc == CASCA_OK || is_err(rc));
            tsdb_selector_free(sel);
        } else {
            assert_true(is_err(rc) || rc == CASCA_ERR_NOT_FOUND);
        }
    } else {
        assert_true(is_err(rc));
    }
    if ((rc = audit_open(s, "audit", &a)) == CASCA_OK) {
        for (int i = 0; i < ENTRIES; i++) {
            char entry[32];
            int len = snprintf(entry, sizeof(entry), "entry %d", i);
            rc = audit_append(a, t0 + i, entry, (size_t)len, NULL);
            assert_true(rc == CASCA_OK || is_err(rc));
            ok->entries += rc == CASCA_OK;
        }
    } else {
        assert_true(is_err(rc));
    }
    if ((rc = kv_open(s, "kv", &kv)) == CASCA_OK) {
        rc = kv_put(kv, "k", 1, "value", 5);
        assert_true(rc == CASCA_OK || is_err(rc));
        ok->kv |= rc == CASCA_OK;
        void *val = NULL;
        size_t vlen = 0;
        rc = kv_get(kv, "k", 1, &val, &vlen);
        assert_true(rc == CASCA_OK || is_err(rc));
        free(val);
    } else {
        assert_true(is_err(rc));
    }
    kv_close(kv);
    audit_close(a);
    tsdb_close(db);
    store_close(s);
}

/* ---- the busy day: queued writes, every kind of read, carbon data ---- */

struct waiters {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;
    int err[CALLS + 2];
};

struct slot {
    struct waiters *ws;
    int i;
};

static void slot_done(int err, void *arg)
{
    struct slot *sl = arg;
    struct waiters *ws = sl->ws;
    pthread_mutex_lock(&ws->mu);
    ws->err[sl->i] = err;
    ws->pending--;
    pthread_cond_signal(&ws->cv);
    pthread_mutex_unlock(&ws->mu);
}

static void slot_audit_done(int err, uint64_t seq, void *arg)
{
    (void)seq;
    slot_done(err, arg);
}

static void wait_all(struct waiters *ws)
{
    pthread_mutex_lock(&ws->mu);
    while (ws->pending > 0)
        pthread_cond_wait(&ws->cv, &ws->mu);
    pthread_mutex_unlock(&ws->mu);
}

static int count_series(const struct tsdb_series_result *r, void *arg)
{
    (void)r;
    ++*(int *)arg;
    return 0;
}

static int count_info(const struct tsdb_series_info *info, void *arg)
{
    (void)info;
    ++*(int *)arg;
    return 0;
}

static const char csv[] = "zone,datetime_utc,carbon_intensity_gco2eq_per_kwh\n"
                          "YY,2022-01-01T00:00:00Z,84.5\n"
                          "YY,2022-01-01T01:00:00Z,77.0\n"
                          "ZZ,2022-01-01T00:00:00Z,300\n";

static void busy_tsdb(struct store *s, int64_t t0, struct acked *ok)
{
    struct tsdb_options to = {.batch_points = CALL_POINTS};
    struct tsdb *db = NULL;
    int rc = tsdb_open(s, &to, &db);
    if (rc != CASCA_OK) {
        assert_true(is_err(rc));
        return;
    }
    /* CALLS calls queued at once: the writer takes one per transaction and queues the rest */
    static struct tsdb_tag tags[2] = {{"host", "b"}, {"disk", "0"}};
    struct tsdb_point pts[CALLS][CALL_POINTS];
    struct waiters ws = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {0}};
    struct slot slots[CALLS];
    bool queued[CALLS] = {false};
    for (int j = 0; j < CALLS; j++) {
        for (int i = 0; i < CALL_POINTS; i++)
            pts[j][i] = (struct tsdb_point){"mem", tags, 2,
                                            t0 + (j * CALL_POINTS + i) * 1000000000LL, i * 1.5};
        slots[j] = (struct slot){&ws, j};
        pthread_mutex_lock(&ws.mu);
        ws.pending++;
        pthread_mutex_unlock(&ws.mu);
        rc = tsdb_write(db, pts[j], CALL_POINTS, slot_done, &slots[j]);
        if (rc != CASCA_OK) {
            assert_true(is_err(rc));
            pthread_mutex_lock(&ws.mu);
            ws.pending--;
            pthread_mutex_unlock(&ws.mu);
        } else {
            queued[j] = true;
        }
    }
    wait_all(&ws); /* a call whose done never runs hangs here (and the ctest timeout fails it) */
    for (int j = 0; j < CALLS; j++) {
        if (!queued[j]) continue;
        assert_true(ws.err[j] == CASCA_OK || is_err(ws.err[j]));
        ok->call[j] = ws.err[j] == CASCA_OK;
    }
    /* reads: a quantile (the selector's value buffer), a stepped query, a listing, a purge */
    struct tsdb_selector *sel = NULL;
    if ((rc = tsdb_select(db, "mem", tags, 1, &sel)) == CASCA_OK) {
        struct tsdb_sample sample;
        int64_t end = t0 + CALLS * CALL_POINTS * 1000000000LL;
        rc = tsdb_aggregate(db, sel, t0, end, TSDB_AGG_QUANTILE, 0.9, &sample);
        assert_true(rc == CASCA_OK || is_err(rc));
        struct tsdb_query q = {t0, end, 5000000000LL, TSDB_AGG_MEAN, 0, 0};
        int nseries = 0;
        rc = tsdb_query(db, sel, &q, count_series, &nseries);
        assert_true(rc == CASCA_OK || is_err(rc));
        tsdb_selector_free(sel);
    } else {
        assert_true(is_err(rc));
    }
    int nlist = 0;
    rc = tsdb_list(db, "", count_info, &nlist);
    assert_true(rc == CASCA_OK || is_err(rc));
    rc = tsdb_purge(db);
    assert_true(rc == CASCA_OK || is_err(rc));
    tsdb_close(db);
}

static void busy_async(struct store *s, int64_t t0, struct acked *ok)
{
    struct kv *kv = NULL;
    struct audit *a = NULL;
    int rc;
    if ((rc = kv_open(s, "kv", &kv)) != CASCA_OK) assert_true(is_err(rc));
    if ((rc = audit_open(s, "audit", &a)) != CASCA_OK) assert_true(is_err(rc));
    struct waiters ws = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {0}};
    struct slot sk = {&ws, 0}, sa = {&ws, 1};
    bool kq = false, aq = false;
    pthread_mutex_lock(&ws.mu);
    ws.pending = 2;
    pthread_mutex_unlock(&ws.mu);
    if (kv && (rc = kv_put_async(kv, "async", 5, "later", 5, slot_done, &sk)) == CASCA_OK)
        kq = true;
    else if (kv)
        assert_true(is_err(rc));
    if (!kq) slot_done(0, &sk);
    if (a && (rc = audit_append_async(a, t0, "async", 5, slot_audit_done, &sa)) == CASCA_OK)
        aq = true;
    else if (a)
        assert_true(is_err(rc));
    if (!aq) slot_done(0, &sa);
    wait_all(&ws);
    if (kq) {
        assert_true(ws.err[0] == CASCA_OK || is_err(ws.err[0]));
        ok->kv_async = ws.err[0] == CASCA_OK;
    }
    if (aq) {
        assert_true(ws.err[1] == CASCA_OK || is_err(ws.err[1]));
        ok->async_entries += ws.err[1] == CASCA_OK;
    }
    audit_close(a);
    kv_close(kv);
}

static void busy_carbon(struct store *s, struct acked *ok)
{
    struct carbondb *cdb = NULL;
    int rc = carbondb_open(s, &cdb);
    if (rc != CASCA_OK) {
        assert_true(is_err(rc));
        assert_null(cdb);
        return;
    }
    struct carbondb_hour h[HOURS];
    for (int i = 0; i < HOURS; i++)
        h[i] =
            (struct carbondb_hour){.hour = 460000 + i, .g = 100 + i, .source = CARBONDB_SRC_IMPORT};
    struct carbondb_put_stats st;
    rc = carbondb_put_hours(cdb, "XX", h, HOURS, false, &st);
    assert_true(rc == CASCA_OK || is_err(rc));
    ok->hours |= rc == CASCA_OK;
    struct carbondb_hour *got = NULL;
    size_t n = 0;
    rc = carbondb_get_hours(cdb, "XX", 0, 1000000, &got, &n);
    assert_true(rc == CASCA_OK || is_err(rc));
    if (rc) assert_null(got);
    free(got);
    struct carbondb_zone *zones = NULL;
    rc = carbondb_zones(cdb, "", &zones, &n);
    assert_true(rc == CASCA_OK || is_err(rc));
    free(zones);
    rc = carbondb_meta_put(cdb, "faults", "yes");
    assert_true(rc == CASCA_OK || is_err(rc));
    ok->meta |= rc == CASCA_OK;
    char *val = NULL;
    rc = carbondb_meta_get(cdb, "faults", &val);
    assert_true(rc == CASCA_OK || rc == CASCA_ERR_NOT_FOUND || is_err(rc));
    free(val);

    struct carbon_csv_data d = {0};
    struct carbon_csv_report rep;
    struct carbon_csv_options co = {0};
    rc = carbon_csv_parse(csv, sizeof csv - 1, &co, &d, &rep);
    assert_true(rc == CASCA_OK || is_err(rc));
    if (rc == CASCA_OK) {
        rc = carbon_csv_store(cdb, &d, true, &st);
        assert_true(rc == CASCA_OK || is_err(rc));
        ok->csv |= rc == CASCA_OK;
    }
    carbon_csv_data_free(&d);
    carbondb_close(cdb);
}

/* The busy day: several tsdb calls queued at once (one write transaction each), quantiles,
 * stepped queries, listings and a purge, asynchronous kv and audit writes, carbon data. */
static void busy_day(const char *dir, int64_t t0, struct acked *ok)
{
    struct store *s = open_store(dir);
    if (!s) return;
    busy_tsdb(s, t0, ok);
    busy_async(s, t0, ok);
    busy_carbon(s, ok);
    store_close(s);
}

/* With allocations working: what the busy day got acknowledged is there. */
static void busy_check(struct store *s, int64_t t0, const struct acked *ok)
{
    struct tsdb *db;
    assert_int_equal(tsdb_open(s, NULL, &db), CASCA_OK);
    struct tsdb_selector *sel;
    struct tsdb_tag tag = {"disk", "0"};
    assert_int_equal(tsdb_select(db, "mem", &tag, 1, &sel), CASCA_OK);
    for (int j = 0; j < CALLS; j++) {
        if (!ok->call[j]) continue;
        struct tsdb_sample sample;
        int64_t a = t0 + j * CALL_POINTS * 1000000000LL, b = a + CALL_POINTS * 1000000000LL;
        assert_int_equal(tsdb_aggregate(db, sel, a, b, TSDB_AGG_COUNT, 0, &sample), CASCA_OK);
        assert_int_equal(sample.count, CALL_POINTS);
    }
    tsdb_selector_free(sel);
    tsdb_close(db);
    struct kv *kv;
    assert_int_equal(kv_open(s, "kv", &kv), CASCA_OK);
    if (ok->kv_async) {
        void *val = NULL;
        size_t vlen = 0;
        assert_int_equal(kv_get(kv, "async", 5, &val, &vlen), CASCA_OK);
        assert_int_equal(vlen, 5);
        free(val);
    }
    kv_close(kv);
    struct carbondb *cdb;
    assert_int_equal(carbondb_open(s, &cdb), CASCA_OK);
    struct carbondb_hour *got = NULL;
    size_t n = 0;
    if (ok->hours) {
        assert_int_equal(carbondb_get_hours(cdb, "XX", 0, 1000000, &got, &n), CASCA_OK);
        assert_int_equal(n, HOURS);
        free(got);
    }
    if (ok->csv) {
        assert_int_equal(carbondb_get_hours(cdb, "YY", 0, 1000000, &got, &n), CASCA_OK);
        assert_int_equal(n, 2);
        free(got);
    }
    if (ok->meta) {
        char *val = NULL;
        assert_int_equal(carbondb_meta_get(cdb, "faults", &val), CASCA_OK);
        assert_string_equal(val, "yes");
        free(val);
    }
    carbondb_close(cdb);
}

static int count_entry(uint64_t seq, int64_t time_ns, const void *payload, size_t len, void *arg)
{
    (void)seq;
    (void)time_ns;
    (void)payload;
    (void)len;
    ++*(int *)arg;
    return 0;
}

/* With allocations working: the store opens and holds what was acknowledged. */
static void check(const char *dir, int64_t t0, const struct acked *ok)
{
    salloc_fail_at(-1, false);
    struct store *s;
    struct store_options o = {.dir = dir, .sync = STORE_SYNC_NONE};
    assert_int_equal(store_open(&o, &s, NULL, 0), CASCA_OK);
    struct tsdb *db;
    assert_int_equal(tsdb_open(s, NULL, &db), CASCA_OK);
    if (ok->points) {
        struct tsdb_selector *sel;
        struct tsdb_tag tag = {"host", "a"};
        assert_int_equal(tsdb_select(db, "cpu", &tag, 1, &sel), CASCA_OK);
        struct tsdb_sample sample;
        assert_int_equal(
            tsdb_aggregate(db, sel, t0, t0 + POINTS * 1000000000LL, TSDB_AGG_COUNT, 0, &sample),
            CASCA_OK);
        assert_true(sample.count >= POINTS);
        tsdb_selector_free(sel);
    }
    struct audit *a;
    assert_int_equal(audit_open(s, "audit", &a), CASCA_OK);
    int n = 0;
    assert_int_equal(audit_scan(a, INT64_MIN, INT64_MAX, 0, 0, count_entry, &n), CASCA_OK);
    assert_true(n >= ok->entries + ok->async_entries);
    struct kv *kv;
    assert_int_equal(kv_open(s, "kv", &kv), CASCA_OK);
    if (ok->kv) {
        void *val = NULL;
        size_t vlen = 0;
        assert_int_equal(kv_get(kv, "k", 1, &val, &vlen), CASCA_OK);
        assert_int_equal(vlen, 5);
        free(val);
    }
    kv_close(kv);
    audit_close(a);
    tsdb_close(db);
    busy_check(s, t0, ok);
    store_close(s);
}

/* Runs a day with allocation n failing (and, sticky, every one after it), for n = 0, 1, ...
 * until a day makes fewer allocations than n: every failure point has been tried. */
static void walk(const char *name, void (*run)(const char *, int64_t, struct acked *), bool sticky)
{
    char *dir = fixture_tmpdir(name);
    assert_non_null(dir);
    int64_t t0 = now_ns() - 3600 * 1000000000LL;
    long runs = 0;
    for (long n = 0;; n++, runs++) {
        struct acked ok = {0};
        salloc_fail_at(n, sticky);
        run(dir, t0, &ok);
        long made = salloc_count(), failed = salloc_failed();
        salloc_fail_at(-1, false);
        check(dir, t0, &ok);
        if (!failed && made <= n) break; /* the whole day ran: nothing left to fail */
        assert_true(n < 100000);
    }
    print_message("%s: %ld runs, one per allocation of the day\n", name, runs);
    assert_true(runs > 10); /* the hook really reaches the stores */
    fixture_remove_tree(dir);
    free(dir);
}

static void each_allocation_fails_once(void **state)
{
    (void)state;
    walk("faults", day, false);
}

static void allocations_fail_from_a_point_on(void **state)
{
    (void)state;
    walk("faults-sticky", day, true);
}

static void busy_day_each_allocation_fails_once(void **state)
{
    (void)state;
    walk("faults-busy", busy_day, false);
}

static void busy_day_allocations_fail_from_a_point_on(void **state)
{
    (void)state;
    walk("faults-busy-sticky", busy_day, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_allocation_fails_once),
        cmocka_unit_test(allocations_fail_from_a_point_on),
        cmocka_unit_test(busy_day_each_allocation_fails_once),
        cmocka_unit_test(busy_day_allocations_fail_from_a_point_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
