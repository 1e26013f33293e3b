/* pool: every job runs exactly once, on worker threads, in FIFO order per worker; the queue is
 * bounded; pool_destroy drains the queue first. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "casca_err.h"
#include "pool.h"

/* ---- a gate: jobs that hold their worker until the test opens it ---- */

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned started; /* gate jobs that are running */
    bool open;
};

static void gate_init(struct gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->started = 0;
    g->open = false;
}

static void gate_destroy(struct gate *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

static struct timespec deadline(int seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += seconds;
    return ts;
}

static void gate_job(void *arg)
{
    struct gate *g = arg;
    pthread_mutex_lock(&g->mu);
    g->started++;
    pthread_cond_broadcast(&g->cv);
    struct timespec until = deadline(30); /* a broken test fails instead of hanging */
    while (!g->open && pthread_cond_timedwait(&g->cv, &g->mu, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&g->mu);
}

/* Waits (at most 10 s) until n gate jobs run at the same time. */
static bool gate_wait_started(struct gate *g, unsigned n)
{
    pthread_mutex_lock(&g->mu);
    struct timespec until = deadline(10);
    int rc = 0;
    while (g->started < n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&g->cv, &g->mu, &until);
    bool ok = g->started >= n;
    pthread_mutex_unlock(&g->mu);
    return ok;
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void *open_later(void *arg)
{
    usleep(50 * 1000);
    gate_open(arg);
    return NULL;
}

/* ---- counting jobs ---- */

static void count_job(void *arg)
{
    atomic_fetch_add((atomic_uint *)arg, 1);
}

#define NJOBS 10000

struct tally {
    atomic_uint ran[NJOBS];
    atomic_uint total;
    pthread_t submitter;
    atomic_bool on_submitter; /* a job ran on the submitting thread */
};

struct slot {
    struct tally *t;
    unsigned i;
};

static void tally_job(void *arg)
{
    struct slot *s = arg;
    atomic_fetch_add(&s->t->ran[s->i], 1);
    atomic_fetch_add(&s->t->total, 1);
    if (pthread_equal(pthread_self(), s->t->submitter))
        atomic_store(&s->t->on_submitter, true);
}

struct submitter {
    struct pool *p;
    struct slot *slots;
    unsigned from, to;
    int failures;
};

static void *submit_range(void *arg)
{
    struct submitter *s = arg;
    for (unsigned i = s->from; i < s->to; i++)
        if (pool_submit(s->p, tally_job, &s->slots[i]) != CASCA_OK)
            s->failures++;
    return NULL;
}

static void every_job_runs_exactly_once(void **state)
{
    (void)state;
    struct tally *t = calloc(1, sizeof(*t));
    struct slot *slots = calloc(NJOBS, sizeof(*slots));
    assert_non_null(t);
    assert_non_null(slots);
    t->submitter = pthread_self();
    for (unsigned i = 0; i < NJOBS; i++)
        slots[i] = (struct slot){t, i};

    struct pool *p = pool_create(4, NJOBS);
    assert_non_null(p);

    /* four jobs that only finish when all four run at once: the pool really has 4 workers */
    struct gate g;
    gate_init(&g);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pool_submit(p, gate_job, &g), CASCA_OK);
    assert_true(gate_wait_started(&g, 4));
    gate_open(&g);

    /* 10,000 jobs from four threads at once */
    struct submitter subs[4];
    pthread_t threads[4];
    for (unsigned i = 0; i < 4; i++) {
        subs[i] = (struct submitter){p, slots, i * NJOBS / 4, (i + 1) * NJOBS / 4, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, submit_range, &subs[i]), 0);
    }
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(subs[i].failures, 0);
    }
    pool_destroy(p);

    assert_int_equal(atomic_load(&t->total), NJOBS);
    for (unsigned i = 0; i < NJOBS; i++)
        if (atomic_load(&t->ran[i]) != 1)
            fail_msg("job %u ran %u times", i, atomic_load(&t->ran[i]));
    assert_false(atomic_load(&t->on_submitter));
    assert_int_equal(g.started, 4);
    gate_destroy(&g);
    free(slots);
    free(t);
}

struct order {
    pthread_mutex_t mu;
    unsigned next, seen[100];
};

struct order_slot {
    struct order *o;
    unsigned i;
};

static void order_job(void *arg)
{
    struct order_slot *s = arg;
    pthread_mutex_lock(&s->o->mu);
    s->o->seen[s->o->next++] = s->i;
    pthread_mutex_unlock(&s->o->mu);
}

static void destroy_runs_queued_jobs(void **state)
{
    (void)state;
    struct pool *p = pool_create(1, 1000);
    assert_non_null(p);
    struct gate g;
    gate_init(&g);
    assert_int_equal(pool_submit(p, gate_job, &g), CASCA_OK);
    assert_true(gate_wait_started(&g, 1));

    atomic_uint count = 0;
    for (int i = 0; i < 500; i++)
        assert_int_equal(pool_submit(p, count_job, &count), CASCA_OK);
    struct order o = {.next = 0};
    pthread_mutex_init(&o.mu, NULL);
    struct order_slot slots[100];
    for (unsigned i = 0; i < 100; i++) {
        slots[i] = (struct order_slot){&o, i};
        assert_int_equal(pool_submit(p, order_job, &slots[i]), CASCA_OK);
    }
    assert_int_equal(atomic_load(&count), 0); /* the only worker is held by the gate */

    /* destroy begins with 600 jobs queued; the gate opens while it waits */
    pthread_t opener;
    assert_int_equal(pthread_create(&opener, NULL, open_later, &g), 0);
    pool_destroy(p);
    assert_int_equal(atomic_load(&count), 500);
    assert_int_equal(o.next, 100);
    for (unsigned i = 0; i < 100; i++)
        assert_int_equal(o.seen[i], i); /* one worker: FIFO */
    assert_int_equal(pthread_join(opener, NULL), 0);
    pthread_mutex_destroy(&o.mu);
    gate_destroy(&g);
}

static void full_queue_is_refused(void **state)
{
    (void)state;
    struct pool *p = pool_create(2, 3);
    assert_non_null(p);
    struct gate g;
    gate_init(&g);
    assert_int_equal(pool_submit(p, gate_job, &g), CASCA_OK);
    assert_int_equal(pool_submit(p, gate_job, &g), CASCA_OK);
    assert_true(gate_wait_started(&g, 2)); /* both workers busy, the queue empty */

    atomic_uint count = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(pool_submit(p, count_job, &count), CASCA_OK);
    assert_int_equal(pool_submit(p, count_job, &count), CASCA_ERR_FULL);
    assert_int_equal(pool_submit(p, count_job, &count), CASCA_ERR_FULL);
    assert_int_equal(atomic_load(&count), 0);

    gate_open(&g);
    for (int i = 0; i < 1000 && atomic_load(&count) < 3; i++)
        usleep(1000);
    assert_int_equal(atomic_load(&count), 3);
    /* room again once the queue drained */
    assert_int_equal(pool_submit(p, count_job, &count), CASCA_OK);
    pool_destroy(p);
    assert_int_equal(atomic_load(&count), 4); /* the refused jobs never ran */
    gate_destroy(&g);
}

struct chain {
    struct pool *p;
    atomic_uint done;
    atomic_int errors;
};

static void chain_job(void *arg)
{
    struct chain *c = arg;
    if (atomic_fetch_add(&c->done, 1) + 1 < 100 && pool_submit(c->p, chain_job, c) != CASCA_OK)
        atomic_fetch_add(&c->errors, 1);
}

static void jobs_may_submit_jobs(void **state)
{
    (void)state;
    struct chain c = {.p = pool_create(2, 4)};
    assert_non_null(c.p);
    assert_int_equal(pool_submit(c.p, chain_job, &c), CASCA_OK);
    for (int i = 0; i < 5000 && atomic_load(&c.done) < 100; i++)
        usleep(1000);
    pool_destroy(c.p);
    assert_int_equal(atomic_load(&c.done), 100);
    assert_int_equal(atomic_load(&c.errors), 0);
}

static void create_and_destroy(void **state)
{
    (void)state;
    pool_destroy(NULL);
    for (unsigned threads = 1; threads <= 8; threads *= 2) {
        struct pool *p = pool_create(threads, 1);
        assert_non_null(p);
        pool_destroy(p); /* idle workers wake and exit */
    }
    atomic_uint count = 0;
    struct pool *p = pool_create(1, 1);
    assert_non_null(p);
    assert_int_equal(pool_submit(p, count_job, &count), CASCA_OK);
    pool_destroy(p);
    assert_int_equal(atomic_load(&count), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_job_runs_exactly_once),
        cmocka_unit_test(destroy_runs_queued_jobs),
        cmocka_unit_test(full_queue_is_refused),
        cmocka_unit_test(jobs_may_submit_jobs),
        cmocka_unit_test(create_and_destroy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
