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
#include "casca_err.h"
#include "fixture.h"
#include "kv.h"
#include "salloc.h"
#include "store.h"
#include "tsdb.h"

#define POINTS 40
#define ENTRIES 3

/* What a run got acknowledged, to look for afterwards. */
struct acked {
    bool points, kv;
    int entries;
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

/* The day, with allocations failing as salloc_fail_at says. Records what was acknowledged. */
static void day(const char *dir, int64_t t0, struct acked *ok)
{
    struct store *s = NULL;
    struct store_options o = {.dir = dir, .sync = STORE_SYNC_NONE};
    char err[256];
    int rc = store_open(&o, &s, err, sizeof(err));
    if (rc != CASCA_OK) {
        assert_true(is_err(rc));
        assert_null(s);
        return;
    }
    struct tsdb *db = NULL;
    struct audit *a = NULL;
    struct kv *kv = NULL;
    if ((rc = tsdb_open(s, NULL, &db)) == CASCA_OK) {
        rc = write_points(db, t0);
        assert_true(rc == CASCA_OK || is_err(rc));
        ok->points |= rc == CASCA_OK;
        struct tsdb_selector *sel = NULL;
        struct tsdb_tag tag = {"host", "a"};
        if ((rc = tsdb_select(db, "cpu", &tag, 1, &sel)) == CASCA_OK) {
            struct tsdb_sample sample;
            rc = tsdb_aggregate(db, sel, t0, t0 + POINTS * 1000000000LL, TSDB_AGG_COUNT, 0,
                                &sample);
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
        assert_int_equal(tsdb_aggregate(db, sel, t0, t0 + POINTS * 1000000000LL, TSDB_AGG_COUNT,
                                        0, &sample),
                         CASCA_OK);
        assert_true(sample.count >= POINTS);
        tsdb_selector_free(sel);
    }
    struct audit *a;
    assert_int_equal(audit_open(s, "audit", &a), CASCA_OK);
    int n = 0;
    assert_int_equal(audit_scan(a, INT64_MIN, INT64_MAX, 0, 0, count_entry, &n), CASCA_OK);
    assert_true(n >= ok->entries);
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
    store_close(s);
}

/* Runs the day with allocation n failing (and, sticky, every one after it), for n = 0, 1, ...
 * until a day makes fewer allocations than n: every failure point has been tried. */
static void walk(bool sticky)
{
    char *dir = fixture_tmpdir(sticky ? "faults-sticky" : "faults");
    assert_non_null(dir);
    int64_t t0 = now_ns() - 3600 * 1000000000LL;
    long runs = 0;
    for (long n = 0;; n++, runs++) {
        struct acked ok = {0};
        salloc_fail_at(n, sticky);
        day(dir, t0, &ok);
        long made = salloc_count(), failed = salloc_failed();
        salloc_fail_at(-1, false);
        check(dir, t0, &ok);
        if (!failed && made <= n) break; /* the whole day ran: nothing left to fail */
        assert_true(n < 100000);
    }
    print_message("%ld runs, one per allocation of the day\n", runs);
    assert_true(runs > 10); /* the hook really reaches the stores */
    fixture_remove_tree(dir);
    free(dir);
}

static void each_allocation_fails_once(void **state)
{
    (void)state;
    walk(false);
}

static void allocations_fail_from_a_point_on(void **state)
{
    (void)state;
    walk(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_allocation_fails_once),
        cmocka_unit_test(allocations_fail_from_a_point_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
