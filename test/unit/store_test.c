#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw */
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fixture.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "casca_err.h"
#include "store.h"

/* ---- fixtures: every test gets its own directory under /tmp ---- */

static int make_dir(void **state)
{
    char *dir = fixture_tmpdir("store-test");
    if (!dir)
        return -1;
    *state = dir;
    return 0;
}

static int remove_dir(void **state)
{
    char *dir = *state;
    int rc = fixture_remove_tree(dir);
    free(dir);
    return rc;
}

static struct store *open_store(const struct store_options *o)
{
    char err[512];
    struct store *s = NULL;
    int e = store_open(o, &s, err, sizeof err);
    if (e != CASCA_OK) fail_msg("store_open: %s: %s", casca_strerror(e), err);
    return s;
}

static void sleep_ms(unsigned ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

/* ---- writes the tests queue ---- */

/* Puts key -> value (value of vlen bytes, each byte = fill) into dbi. */
struct put {
    MDB_dbi dbi;
    char key[32];
    size_t vlen;
    unsigned char fill;
    int fail_with; /* after the put, return this (to test that only this write is rolled back) */
    int err;       /* set by put_done */
    atomic_int *done_count;
};

static int put_write(MDB_txn *txn, void *arg)
{
    struct put *p = arg;
    MDB_val k = {.mv_size = strlen(p->key), .mv_data = p->key};
    MDB_val v = {.mv_size = p->vlen, .mv_data = NULL};
    int rc = mdb_put(txn, p->dbi, &k, &v, MDB_RESERVE);
    if (rc != 0) return store_err(rc);
    memset(v.mv_data, p->fill, p->vlen);
    return p->fail_with;
}

static void put_done(int err, void *arg)
{
    struct put *p = arg;
    p->err = err;
    if (p->done_count) atomic_fetch_add(p->done_count, 1);
}

/* 0 when key holds vlen bytes of fill, else a casca_err or -1. */
static int check_key(struct store *s, MDB_dbi dbi, const char *key, size_t vlen, unsigned char fill)
{
    MDB_txn *txn;
    int e = store_read_begin(s, &txn);
    if (e != CASCA_OK) return e;
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key}, v;
    e = store_err(mdb_get(txn, dbi, &k, &v));
    if (e == CASCA_OK) {
        if (v.mv_size != vlen) e = -1;
        for (size_t i = 0; e == CASCA_OK && i < vlen; i++)
            if (((unsigned char *)v.mv_data)[i] != fill) e = -1;
    }
    store_read_end(s, txn);
    return e;
}

static size_t count_entries(struct store *s, MDB_dbi dbi)
{
    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), CASCA_OK);
    MDB_stat st;
    assert_int_equal(mdb_stat(txn, dbi, &st), 0);
    store_read_end(s, txn);
    return st.ms_entries;
}

/* A write that blocks the writer until released, so tests can line up a queue behind it. */
struct gate_write {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started, released;
};

static int gate_write(MDB_txn *txn, void *arg)
{
    (void)txn;
    struct gate_write *g = arg;
    pthread_mutex_lock(&g->mu);
    g->started = true;
    pthread_cond_broadcast(&g->cv);
    while (!g->released)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    return CASCA_OK;
}

static void gate_wait_started(struct gate_write *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->started)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_release(struct gate_write *g)
{
    pthread_mutex_lock(&g->mu);
    g->released = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void wait_count(atomic_int *n, int want)
{
    for (int i = 0; i < 20000 && atomic_load(n) < want; i++)
        sleep_ms(1);
    assert_int_equal(atomic_load(n), want);
}

/* ---- tests ---- */

static void open_close(void **state)
{
    struct store_options o = {.dir = *state};
    struct store *s = open_store(&o);
    struct store_stats st;
    assert_int_equal(store_stats(s, &st), CASCA_OK);
    assert_int_equal(st.map_bytes, 64u << 20);
    assert_true(st.file_bytes > 0);
    assert_int_equal(st.pending, 0);
    assert_string_equal(st.last_error, "");
    MDB_dbi a, b, a2;
    assert_int_equal(store_dbi(s, "a", 0, &a), CASCA_OK);
    assert_int_equal(store_dbi(s, "b", 0, &b), CASCA_OK);
    assert_int_equal(store_dbi(s, "a", 0, &a2), CASCA_OK);
    assert_int_equal(a, a2);
    assert_int_not_equal(a, b);
    store_close(s);
}

static void creates_missing_dirs(void **state)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/x/y/z", (char *)*state);
    struct store_options o = {.dir = dir};
    store_close(open_store(&o));
    struct stat sb;
    assert_int_equal(stat(dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
}

static void bad_dir_says_why(void **state)
{
    char file[256], dir[300], err[512];
    snprintf(file, sizeof file, "%s/file", (char *)*state);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(dir, sizeof dir, "%s/sub", file);

    struct store_options o = {.dir = dir};
    struct store *s = (struct store *)&o; /* must be reset to NULL */
    assert_int_equal(store_open(&o, &s, err, sizeof err), CASCA_ERR_IO);
    assert_null(s);
    assert_non_null(strstr(err, dir));
    assert_non_null(strstr(err, "Not a directory"));

    o.dir = NULL;
    assert_int_equal(store_open(&o, &s, err, sizeof err), CASCA_ERR_INVALID);
    assert_true(strlen(err) > 0);

    o = (struct store_options){.dir = *state, .map_size = 8 << 20, .max_map_size = 4 << 20};
    assert_int_equal(store_open(&o, &s, err, sizeof err), CASCA_ERR_INVALID);
    assert_non_null(strstr(err, "max_map_size"));
}

static void close_null(void **state)
{
    (void)state;
    store_close(NULL);
}

static void sync_parse(void **state)
{
    (void)state;
    enum store_sync m;
    assert_int_equal(store_sync_parse("every_commit", &m), CASCA_OK);
    assert_int_equal(m, STORE_SYNC_EVERY_COMMIT);
    assert_int_equal(store_sync_parse("periodic", &m), CASCA_OK);
    assert_int_equal(m, STORE_SYNC_PERIODIC);
    assert_int_equal(store_sync_parse("none", &m), CASCA_OK);
    assert_int_equal(m, STORE_SYNC_NONE);
    assert_int_equal(store_sync_parse("always", &m), CASCA_ERR_INVALID);
    assert_int_equal(store_sync_parse(NULL, &m), CASCA_ERR_INVALID);
}

#define WRITERS 4
#define PER_WRITER 1000

struct writer_args {
    struct store *s;
    MDB_dbi dbi;
    int id;
    struct put puts[PER_WRITER];
    atomic_int done;
};

static void *writer_thread(void *arg)
{
    struct writer_args *w = arg;
    for (int i = 0; i < PER_WRITER; i++) {
        struct put *p = &w->puts[i];
        *p = (struct put){.dbi = w->dbi,
                          .vlen = 16,
                          .fill = (unsigned char)w->id,
                          .err = -1,
                          .done_count = &w->done};
        snprintf(p->key, sizeof p->key, "w%d-%04d", w->id, i);
        if (i == PER_WRITER - 1) { /* the last one waits: done after all the others (FIFO) */
            p->err = store_write_wait(w->s, put_write, p);
            atomic_fetch_add(&w->done, 1);
        } else {
            while (store_write(w->s, put_write, p, put_done, p) == CASCA_ERR_FULL)
                sleep_ms(1);
        }
    }
    return NULL;
}

static void group_commit(void **state)
{
    struct store_options o = {.dir = *state};
    struct store *s = open_store(&o);
    MDB_dbi dbi;
    assert_int_equal(store_dbi(s, "t", 0, &dbi), CASCA_OK);
    struct store_stats before, after;
    store_stats(s, &before);

    static struct writer_args w[WRITERS];
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i].s = s;
        w[i].dbi = dbi;
        w[i].id = i;
        atomic_init(&w[i].done, 0);
        assert_int_equal(pthread_create(&th[i], NULL, writer_thread, &w[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < WRITERS; i++) {
        assert_int_equal(atomic_load(&w[i].done), PER_WRITER);
        for (int j = 0; j < PER_WRITER; j++)
            assert_int_equal(w[i].puts[j].err, CASCA_OK);
    }
    store_stats(s, &after);
    uint64_t writes = after.writes - before.writes, commits = after.commits - before.commits;
    print_message("group commit: %llu writes in %llu commits\n", (unsigned long long)writes,
                  (unsigned long long)commits);
    assert_int_equal(writes, WRITERS * PER_WRITER);
    assert_true(commits < writes);
    assert_int_equal(after.failed_writes, 0);
    store_close(s);

    s = open_store(&o);
    assert_int_equal(store_dbi(s, "t", 0, &dbi), CASCA_OK);
    assert_int_equal(count_entries(s, dbi), WRITERS * PER_WRITER);
    assert_int_equal(check_key(s, dbi, "w3-0999", 16, 3), CASCA_OK);
    store_close(s);
}

static void failing_write_alone(void **state)
{
    struct store_options o = {.dir = *state};
    struct store *s = open_store(&o);
    MDB_dbi dbi;
    assert_int_equal(store_dbi(s, "t", 0, &dbi), CASCA_OK);
    struct store_stats before, after;
    store_stats(s, &before);

    /* Hold the writer so the ten writes queue up and run as one batch. */
    struct gate_write g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    assert_int_equal(store_write(s, gate_write, &g, NULL, NULL), CASCA_OK);
    gate_wait_started(&g);
    atomic_int done;
    atomic_init(&done, 0);
    struct put p[10];
    for (int i = 0; i < 10; i++) {
        p[i] = (struct put){.dbi = dbi, .vlen = 8, .fill = 'a', .err = -1, .done_count = &done};
        snprintf(p[i].key, sizeof p[i].key, "k%d", i);
    }
    p[4].fail_with = CASCA_ERR_INVALID; /* puts its key, then fails */
    p[7].fail_with = CASCA_ERR_FULL;    /* a FULL of its own, not a full map: no growth, no retry */
    for (int i = 0; i < 10; i++)
        assert_int_equal(store_write(s, put_write, &p[i], put_done, &p[i]), CASCA_OK);
    gate_release(&g);
    wait_count(&done, 10);

    for (int i = 0; i < 10; i++) {
        int want = i == 4 ? CASCA_ERR_INVALID : i == 7 ? CASCA_ERR_FULL : CASCA_OK;
        assert_int_equal(p[i].err, want);
        assert_int_equal(check_key(s, dbi, p[i].key, 8, 'a'),
                         want == CASCA_OK ? CASCA_OK : CASCA_ERR_NOT_FOUND);
    }
    store_stats(s, &after);
    assert_int_equal(after.commits - before.commits, 2); /* the gate's batch, then the ten */
    assert_int_equal(after.writes - before.writes, 9);
    assert_int_equal(after.failed_writes - before.failed_writes, 2);
    assert_int_equal(after.map_bytes, before.map_bytes);
    store_close(s);
}

static void map_grows(void **state)
{
    struct store_options o = {.dir = *state, .map_size = 1 << 20};
    struct store *s = open_store(&o);
    MDB_dbi dbi;
    assert_int_equal(store_dbi(s, "big", 0, &dbi), CASCA_OK);

    enum { N = 320, VLEN = 64 << 10 }; /* 20 MiB */
    static struct put p[N];
    atomic_int done;
    atomic_init(&done, 0);
    for (int i = 0; i < N; i++) {
        p[i] = (struct put){
            .dbi = dbi, .vlen = VLEN, .fill = (unsigned char)i, .err = -1, .done_count = &done};
        snprintf(p[i].key, sizeof p[i].key, "blob-%03d", i);
        assert_int_equal(store_write(s, put_write, &p[i], put_done, &p[i]), CASCA_OK);
    }
    wait_count(&done, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(p[i].err, CASCA_OK);
        assert_int_equal(check_key(s, dbi, p[i].key, VLEN, (unsigned char)i), CASCA_OK);
    }
    struct store_stats st;
    store_stats(s, &st);
    print_message("map grew to %llu MiB, file %llu MiB\n", (unsigned long long)st.map_bytes >> 20,
                  (unsigned long long)st.file_bytes >> 20);
    assert_true(st.map_bytes >= (uint64_t)N * VLEN);
    assert_true(st.file_bytes >= (uint64_t)N * VLEN);
    store_close(s);

    /* Reopened with the small initial size, the map is at least the file. */
    s = open_store(&o);
    assert_int_equal(store_dbi(s, "big", 0, &dbi), CASCA_OK);
    assert_int_equal(check_key(s, dbi, "blob-319", VLEN, (unsigned char)319), CASCA_OK);
    struct put more = {.dbi = dbi, .vlen = VLEN, .fill = 1, .key = "more"};
    assert_int_equal(store_write_wait(s, put_write, &more), CASCA_OK);
    store_close(s);
}

static void map_full_at_max(void **state)
{
    struct store_options o = {.dir = *state, .map_size = 1 << 20, .max_map_size = 4 << 20};
    struct store *s = open_store(&o);
    MDB_dbi dbi;
    assert_int_equal(store_dbi(s, "big", 0, &dbi), CASCA_OK);
    int e = CASCA_OK, i;
    for (i = 0; i < 100 && e == CASCA_OK; i++) {
        struct put p = {.dbi = dbi, .vlen = 64 << 10, .fill = 'x'};
        snprintf(p.key, sizeof p.key, "blob-%03d", i);
        e = store_write_wait(s, put_write, &p);
    }
    assert_int_equal(e, CASCA_ERR_FULL);
    assert_true(i > 40); /* about 4 MiB went in */
    struct store_stats st;
    store_stats(s, &st);
    assert_int_equal(st.map_bytes, 4 << 20);
    print_message("at max: %s\n", st.last_error);
    assert_non_null(strstr(st.last_error, "max_map_size"));
    /* What is there stays readable, and small writes that fit still work. */
    assert_int_equal(check_key(s, dbi, "blob-000", 64 << 10, 'x'), CASCA_OK);
    struct put small = {.dbi = dbi, .vlen = 8, .fill = 's', .key = "small"};
    assert_int_equal(store_write_wait(s, put_write, &small), CASCA_OK);
    store_close(s);
}

static void reopen_keeps_data(void **state)
{
    struct store_options o = {.dir = *state};
    struct store *s = open_store(&o);
    MDB_dbi dbi;
    assert_int_equal(store_dbi(s, "t", 0, &dbi), CASCA_OK);
    struct put p = {.dbi = dbi, .vlen = 100, .fill = 'q', .key = "kept"};
    assert_int_equal(store_write_wait(s, put_write, &p), CASCA_OK);
    store_close(s);

    s = open_store(&o);
    assert_int_equal(store_dbi(s, "t", 0, &dbi), CASCA_OK);
    assert_int_equal(check_key(s, dbi, "kept", 100, 'q'), CASCA_OK);
    assert_int_equal(check_key(s, dbi, "absent", 100, 'q'), CASCA_ERR_NOT_FOUND);
    store_close(s);
}

static void every_sync_mode(void **state)
{
    const enum store_sync modes[] = {STORE_SYNC_EVERY_COMMIT, STORE_SYNC_PERIODIC, STORE_SYNC_NONE};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        char dir[256];
        snprintf(dir, sizeof dir, "%s/mode%zu", (char *)*state, m);
        struct store_options o = {.dir = dir, .sync = modes[m], .sync_interval_ms = 20};
        struct store *s = open_store(&o);
        MDB_dbi dbi;
        assert_int_equal(store_dbi(s, "t", 0, &dbi), CASCA_OK);
        static struct put p[100];
        atomic_int done;
        atomic_init(&done, 0);
        for (int i = 0; i < 100; i++) {
            p[i] = (struct put){.dbi = dbi, .vlen = 32, .fill = 'm', .done_count = &done};
            snprintf(p[i].key, sizeof p[i].key, "k%03d", i);
            assert_int_equal(store_write(s, put_write, &p[i], put_done, &p[i]), CASCA_OK);
            if (i % 10 == 0) sleep_ms(5); /* several batches, so periodic mode syncs on its timer */
        }
        wait_count(&done, 100);
        sleep_ms(50);
        for (int i = 0; i < 100; i++)
            assert_int_equal(p[i].err, CASCA_OK);
        struct store_stats st;
        store_stats(s, &st);
        assert_string_equal(st.last_error, "");
        store_close(s);

        s = open_store(&o);
        assert_int_equal(store_dbi(s, "t", 0, &dbi), CASCA_OK);
        assert_int_equal(count_entries(s, dbi), 100);
        store_close(s);
    }
}

static int nothing(MDB_txn *txn, void *arg)
{
    (void)txn;
    (void)arg;
    return CASCA_OK;
}

/* Lazy writes commit on their own (after the linger), and at once, in order, ahead of a write
 * someone waits for. */
static void lazy_writes(void **state)
{
    struct store_options o = {.dir = *state, .sync = STORE_SYNC_PERIODIC};
    struct store *s = open_store(&o);
    MDB_dbi dbi;
    assert_int_equal(store_dbi(s, "t", 0, &dbi), CASCA_OK);
    static struct put p[20];
    atomic_int done;
    atomic_init(&done, 0);
    for (int i = 0; i < 10; i++) {
        p[i] = (struct put){.dbi = dbi, .vlen = 8, .fill = 'l', .done_count = &done};
        snprintf(p[i].key, sizeof p[i].key, "lazy%d", i);
        assert_int_equal(store_write_lazy(s, put_write, &p[i], put_done, &p[i]), CASCA_OK);
    }
    wait_count(&done, 10); /* nobody hurried them */
    for (int i = 10; i < 20; i++) {
        p[i] = (struct put){.dbi = dbi, .vlen = 8, .fill = 'l', .done_count = &done};
        snprintf(p[i].key, sizeof p[i].key, "lazy%d", i);
        assert_int_equal(store_write_lazy(s, put_write, &p[i], put_done, &p[i]), CASCA_OK);
    }
    assert_int_equal(store_write_wait(s, nothing, NULL), CASCA_OK);
    assert_int_equal(atomic_load(&done), 20); /* committed with the waited write, before it */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(p[i].err, CASCA_OK);
        assert_int_equal(check_key(s, dbi, p[i].key, 8, 'l'), 0);
    }
    store_close(s);
}

static void queue_full(void **state)
{
    struct store_options o = {.dir = *state, .queue_limit = 2, .max_batch = 1};
    struct store *s = open_store(&o);
    MDB_dbi dbi;
    assert_int_equal(store_dbi(s, "t", 0, &dbi), CASCA_OK);

    struct gate_write g = {
        .mu = PTHREAD_MUTEX_INITIALIZER,
        .cv = PTHREAD_COND_INITIALIZER}; /* the slow write: taken by the writer, so not queued */
    atomic_int done;
    atomic_init(&done, 0);
    struct put p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = (struct put){.dbi = dbi, .vlen = 8, .fill = 'f', .err = -1, .done_count = &done};
        snprintf(p[i].key, sizeof p[i].key, "q%d", i);
    }
    assert_int_equal(store_write(s, gate_write, &g, NULL, NULL), CASCA_OK);
    gate_wait_started(&g);
    assert_int_equal(store_write(s, put_write, &p[0], put_done, &p[0]), CASCA_OK);
    assert_int_equal(store_write(s, put_write, &p[1], put_done, &p[1]), CASCA_OK);
    assert_int_equal(store_write(s, put_write, &p[2], put_done, &p[2]), CASCA_ERR_FULL);
    struct store_stats st;
    store_stats(s, &st);
    assert_int_equal(st.pending, 2);
    gate_release(&g);
    store_close(s); /* drains: both queued writes are committed and reported */
    assert_int_equal(atomic_load(&done), 2);
    assert_int_equal(p[0].err, CASCA_OK);
    assert_int_equal(p[1].err, CASCA_OK);
    assert_int_equal(p[2].err, -1); /* never queued, never called */

    s = open_store(&o);
    assert_int_equal(store_dbi(s, "t", 0, &dbi), CASCA_OK);
    assert_int_equal(count_entries(s, dbi), 2);
    store_close(s);
}

struct nested_wait {
    struct store *s;
    int err;
};

static int waits_inside_writer(MDB_txn *txn, void *arg)
{
    (void)txn;
    struct nested_wait *n = arg;
    n->err = store_write_wait(n->s, waits_inside_writer, arg);
    return CASCA_OK;
}

static void wait_from_writer_refused(void **state)
{
    struct store_options o = {.dir = *state};
    struct store *s = open_store(&o);
    struct nested_wait n = {.s = s, .err = -1};
    assert_int_equal(store_write_wait(s, waits_inside_writer, &n), CASCA_OK);
    assert_int_equal(n.err, CASCA_ERR_INVALID);
    store_close(s);
}

/* A big write that needs the map to grow while another thread holds a read transaction: the
 * resize waits for the reader, the reader's snapshot stays good, and the read may end on another
 * thread than the one that began it. */
struct big_writer {
    struct store *s;
    struct put p;
    atomic_bool finished;
    int err;
};

static void *big_writer_thread(void *arg)
{
    struct big_writer *b = arg;
    b->err = store_write_wait(b->s, put_write, &b->p);
    atomic_store(&b->finished, true);
    return NULL;
}

struct ender {
    struct store *s;
    MDB_txn *txn;
};

static void *end_read_thread(void *arg)
{
    struct ender *e = arg;
    store_read_end(e->s, e->txn);
    return NULL;
}

static void resize_waits_for_readers(void **state)
{
    struct store_options o = {.dir = *state, .map_size = 1 << 20};
    struct store *s = open_store(&o);
    MDB_dbi dbi;
    assert_int_equal(store_dbi(s, "t", 0, &dbi), CASCA_OK);
    struct put first = {.dbi = dbi, .vlen = 10, .fill = 'r', .key = "first"};
    assert_int_equal(store_write_wait(s, put_write, &first), CASCA_OK);

    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), CASCA_OK);
    MDB_val k = {.mv_size = 5, .mv_data = "first"}, v;
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);

    struct big_writer b = {.s = s, .p = {.dbi = dbi, .vlen = 4 << 20, .fill = 'B', .key = "big"}};
    atomic_init(&b.finished, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, big_writer_thread, &b), 0);
    sleep_ms(200);
    assert_false(atomic_load(&b.finished)); /* the resize is waiting for our read */
    assert_int_equal(v.mv_size, 10);
    assert_int_equal(((char *)v.mv_data)[9], 'r');

    struct ender en = {.s = s, .txn = txn};
    pthread_t th2;
    assert_int_equal(pthread_create(&th2, NULL, end_read_thread, &en), 0);
    pthread_join(th2, NULL);
    pthread_join(th, NULL);
    assert_int_equal(b.err, CASCA_OK);
    assert_int_equal(check_key(s, dbi, "big", 4 << 20, 'B'), CASCA_OK);
    store_close(s);
}

/* Runs in a separate process (this binary exec'ed with --grow-child DIR): opens the store in DIR
 * with a 1 MiB map and writes 6 MiB, growing the file beyond the parent's map. */
static int grow_child(const char *dir)
{
    struct store_options o = {.dir = dir, .map_size = 1 << 20};
    struct store *c = NULL;
    MDB_dbi dbi = 0;
    int e = store_open(&o, &c, NULL, 0);
    if (e == CASCA_OK) e = store_dbi(c, "t", 0, &dbi);
    struct put big = {.dbi = dbi, .vlen = 6 << 20, .fill = 'c', .key = "child"};
    if (e == CASCA_OK) e = store_write_wait(c, put_write, &big);
    store_close(c);
    return e;
}

static const char *self_path; /* argv[0], to exec this binary as the other process */

/* Another process grows the file beyond our map: reads and writes adopt the new size. */
static void map_resized_by_another_process(void **state)
{
    struct store_options o = {.dir = *state, .map_size = 1 << 20};
    struct store *s = open_store(&o);
    MDB_dbi dbi;
    assert_int_equal(store_dbi(s, "t", 0, &dbi), CASCA_OK);
    struct put p = {.dbi = dbi, .vlen = 10, .fill = 'p', .key = "parent"};
    assert_int_equal(store_write_wait(s, put_write, &p), CASCA_OK);

    /* exec, not just fork: this process has threads, and the child needs a clean one. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(self_path, self_path, "--grow-child", (char *)*state, (char *)NULL);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    assert_int_equal(check_key(s, dbi, "child", 6 << 20, 'c'), CASCA_OK);
    struct store_stats st;
    store_stats(s, &st);
    assert_true(st.map_bytes >= 6 << 20);
    struct put after = {.dbi = dbi, .vlen = 10, .fill = 'a', .key = "after"};
    assert_int_equal(store_write_wait(s, put_write, &after), CASCA_OK);
    store_close(s);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--grow-child") == 0) return grow_child(argv[2]);
    self_path = argv[0];
#define T(f) cmocka_unit_test_setup_teardown(f, make_dir, remove_dir)
    const struct CMUnitTest tests[] = {
        T(open_close),
        T(creates_missing_dirs),
        T(bad_dir_says_why),
        T(close_null),
        T(sync_parse),
        T(group_commit),
        T(failing_write_alone),
        T(map_grows),
        T(map_full_at_max),
        T(reopen_keeps_data),
        T(every_sync_mode),
        T(lazy_writes),
        T(queue_full),
        T(wait_from_writer_refused),
        T(resize_waits_for_readers),
        T(map_resized_by_another_process),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
