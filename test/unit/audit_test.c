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
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "audit.h"
#include "casca_err.h"
#include "store.h"

static int make_dir(void **state)
{
    char *dir = fixture_tmpdir("audit-test");
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

static void open_log(const char *dir, enum store_sync sync, struct store **s, struct audit **a)
{
    struct store_options o = {.dir = dir, .sync = sync};
    char err[512];
    int e = store_open(&o, s, err, sizeof err);
    if (e != CASCA_OK) fail_msg("store_open: %s", err);
    assert_int_equal(audit_open(*s, "audit", a), CASCA_OK);
}

static void close_log(struct store *s, struct audit *a)
{
    audit_close(a);
    store_close(s);
}

/* What a scan saw. */
struct seen {
    uint64_t seq[2048];
    int64_t time[2048];
    char payload[2048][16];
    size_t n;
    size_t stop_at; /* return 7 when n reaches this (0: never) */
};

static int record(uint64_t seq, int64_t time_ns, const void *payload, size_t len, void *arg)
{
    struct seen *s = arg;
    assert_true(s->n < 2048);
    assert_true(len < sizeof s->payload[0]);
    s->seq[s->n] = seq;
    s->time[s->n] = time_ns;
    memcpy(s->payload[s->n], payload, len);
    s->payload[s->n][len] = '\0';
    return ++s->n == s->stop_at ? 7 : 0;
}

static void check_append_in_order(void **state, enum store_sync sync)
{
    struct store *s;
    struct audit *a;
    open_log(*state, sync, &s, &a);
    assert_int_equal(audit_count(a), 0);
    for (int i = 1; i <= 10; i++) {
        char p[32];
        int n = snprintf(p, sizeof p, "rec%d", i);
        uint64_t seq = 0;
        assert_int_equal(audit_append(a, (int64_t)i * 1000, p, (size_t)n, &seq), CASCA_OK);
        assert_int_equal(seq, i);
    }
    assert_int_equal(audit_append(a, -5, NULL, 0, NULL), CASCA_OK); /* empty payload, old time */
    assert_int_equal(audit_count(a), 11);

    static struct seen seen;
    seen = (struct seen){.n = 0};
    assert_int_equal(audit_scan(a, INT64_MIN, INT64_MAX, 0, 0, record, &seen), 0);
    assert_int_equal(seen.n, 11);
    for (size_t i = 0; i < 10; i++) {
        char p[32];
        snprintf(p, sizeof p, "rec%zu", i + 1);
        assert_int_equal(seen.seq[i], i + 1);
        assert_int_equal(seen.time[i], (int64_t)(i + 1) * 1000);
        assert_string_equal(seen.payload[i], p);
    }
    assert_int_equal(seen.seq[10], 11);
    assert_int_equal(seen.time[10], -5);
    assert_string_equal(seen.payload[10], "");
    close_log(s, a);
}

static void append_in_order(void **state)
{
    check_append_in_order(state, STORE_SYNC_EVERY_COMMIT);
}

/* Through the write-ahead file: the same records, the same reads. */
static void append_in_order_wal(void **state)
{
    check_append_in_order(state, STORE_SYNC_NONE);
}

static void seq_continues_after_reopen(void **state)
{
    struct store *s;
    struct audit *a;
    open_log(*state, STORE_SYNC_EVERY_COMMIT, &s, &a);
    for (int i = 0; i < 3; i++)
        assert_int_equal(audit_append(a, i, "x", 1, NULL), CASCA_OK);
    close_log(s, a);

    open_log(*state, STORE_SYNC_PERIODIC, &s, &a);
    uint64_t seq;
    assert_int_equal(audit_count(a), 3);
    assert_int_equal(audit_append(a, 3, "y", 1, &seq), CASCA_OK);
    assert_int_equal(seq, 4);
    close_log(s, a);
}

static void scan_filters(void **state)
{
    struct store *s;
    struct audit *a;
    open_log(*state, STORE_SYNC_NONE, &s, &a);
    for (int i = 1; i <= 10; i++) /* seq i at time i*100 */
        assert_int_equal(audit_append(a, i * 100, "p", 1, NULL), CASCA_OK);

    static struct seen seen;
    seen = (struct seen){.n = 0};
    assert_int_equal(audit_scan(a, 300, 700, 0, 0, record, &seen), 0); /* [300, 700) */
    assert_int_equal(seen.n, 4);
    assert_int_equal(seen.seq[0], 3);
    assert_int_equal(seen.seq[3], 6);

    seen = (struct seen){.n = 0};
    assert_int_equal(audit_scan(a, 300, 700, 4, 0, record, &seen), 0);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.seq[0], 5);
    assert_int_equal(seen.seq[1], 6);

    seen = (struct seen){.n = 0};
    assert_int_equal(audit_scan(a, 300, 700, 4, 1, record, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.seq[0], 5);

    seen = (struct seen){.n = 0};
    assert_int_equal(audit_scan(a, INT64_MIN, INT64_MAX, 7, 0, record, &seen), 0);
    assert_int_equal(seen.n, 3);
    assert_int_equal(seen.seq[0], 8);

    seen = (struct seen){.n = 0, .stop_at = 2};
    assert_int_equal(audit_scan(a, INT64_MIN, INT64_MAX, 0, 0, record, &seen), 7);
    assert_int_equal(seen.n, 2);

    seen = (struct seen){.n = 0};
    assert_int_equal(audit_scan(a, 2000, 3000, 0, 0, record, &seen), 0);
    assert_int_equal(audit_scan(a, INT64_MIN, INT64_MAX, 10, 0, record, &seen), 0);
    assert_int_equal(audit_scan(a, INT64_MIN, INT64_MAX, UINT64_MAX, 0, record, &seen), 0);
    assert_int_equal(seen.n, 0);
    close_log(s, a);
}

#define THREADS 8
#define PER_THREAD 200

struct appender {
    struct audit *a;
    int id;
    uint64_t seqs[PER_THREAD];
    int err;
};

static void *append_thread(void *arg)
{
    struct appender *ap = arg;
    for (int i = 0; i < PER_THREAD && ap->err == CASCA_OK; i++) {
        char p[32];
        int n = snprintf(p, sizeof p, "t%d-%d", ap->id, i);
        ap->err = audit_append(ap->a, i, p, (size_t)n, &ap->seqs[i]);
    }
    return NULL;
}

static void check_concurrent_appends(void **state, enum store_sync sync)
{
    struct store *s;
    struct audit *a;
    open_log(*state, sync, &s, &a);
    static struct appender ap[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        ap[i] = (struct appender){.a = a, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, append_thread, &ap[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);

    static bool taken[THREADS * PER_THREAD + 1];
    memset(taken, 0, sizeof taken);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(ap[i].err, CASCA_OK);
        for (int j = 0; j < PER_THREAD; j++) {
            uint64_t seq = ap[i].seqs[j];
            assert_true(seq >= 1 && seq <= THREADS * PER_THREAD);
            assert_false(taken[seq]);
            taken[seq] = true;
            if (j > 0)
                assert_true(seq > ap[i].seqs[j - 1]); /* one thread's appends stay in order */
        }
    }
    assert_int_equal(audit_count(a), THREADS * PER_THREAD);

    /* The log holds each thread's payloads in that thread's order, under contiguous seqs. */
    static struct seen seen;
    seen = (struct seen){.n = 0};
    assert_int_equal(audit_scan(a, INT64_MIN, INT64_MAX, 0, 0, record, &seen), 0);
    assert_int_equal(seen.n, THREADS * PER_THREAD);
    int next[THREADS] = {0};
    for (size_t i = 0; i < seen.n; i++) {
        int t, k;
        assert_int_equal(seen.seq[i], i + 1);
        assert_int_equal(sscanf(seen.payload[i], "t%d-%d", &t, &k), 2);
        assert_int_equal(k, next[t]++);
        assert_int_equal(ap[t].seqs[k], seen.seq[i]);
    }
    close_log(s, a);
}

static void concurrent_appends(void **state)
{
    check_concurrent_appends(state, STORE_SYNC_EVERY_COMMIT);
}

static void concurrent_appends_wal(void **state)
{
    check_concurrent_appends(state, STORE_SYNC_PERIODIC);
}

/* A child appends and reports each acknowledged seq through a pipe; we SIGKILL it mid-way. The
 * store must open, hold every acknowledged record, and have seqs 1..n. */
static void check_survives_sigkill(void **state, enum store_sync sync)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        struct store *s;
        struct audit *a;
        struct store_options o = {.dir = *state, .sync = sync};
        if (store_open(&o, &s, NULL, 0) != CASCA_OK || audit_open(s, "audit", &a) != CASCA_OK)
            _exit(1);
        for (int i = 0; i < 1000; i++) {
            char p[32];
            int n = snprintf(p, sizeof p, "c%d", i);
            uint64_t seq;
            if (audit_append(a, i, p, (size_t)n, &seq) != CASCA_OK) _exit(2);
            if (write(fds[1], &seq, sizeof seq) != sizeof seq) _exit(3);
        }
        _exit(0);
    }
    close(fds[1]);
    uint64_t seq, acked = 0;
    while (acked < 300 && read(fds[0], &seq, sizeof seq) == sizeof seq)
        acked = seq;
    assert_int_equal(acked, 300);
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    while (read(fds[0], &seq, sizeof seq) == sizeof seq) /* acknowledged before it died */
        acked = seq;
    close(fds[0]);
    print_message("killed=%d after %llu acknowledged appends\n",
                  WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, (unsigned long long)acked);

    struct store *s;
    struct audit *a;
    open_log(*state, STORE_SYNC_EVERY_COMMIT, &s, &a);
    uint64_t count = audit_count(a);
    assert_true(count >= acked);
    assert_true(count <= 1000);
    static struct seen seen;
    seen = (struct seen){.n = 0};
    assert_int_equal(audit_scan(a, INT64_MIN, INT64_MAX, 0, 0, record, &seen), 0);
    assert_int_equal(seen.n, count);
    for (size_t i = 0; i < seen.n; i++) {
        char p[32];
        snprintf(p, sizeof p, "c%zu", i);
        assert_int_equal(seen.seq[i], i + 1);
        assert_string_equal(seen.payload[i], p);
    }
    assert_int_equal(audit_append(a, 0, "after", 5, &seq), CASCA_OK);
    assert_int_equal(seq, count + 1);
    close_log(s, a);
}

static void survives_sigkill(void **state)
{
    check_survives_sigkill(state, STORE_SYNC_EVERY_COMMIT);
}

static void survives_sigkill_wal(void **state)
{
    check_survives_sigkill(state, STORE_SYNC_PERIODIC);
}

/* ---- the write-ahead file ---- */

static char *wal_path(const char *dir, const char *suffix)
{
    static char path[8192];
    snprintf(path, sizeof path, "%.4000s/audit%s", dir, suffix);
    return path;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Holds the store's writer, so appends stay in the write-ahead file only. */
static int stuck_write(MDB_txn *txn, void *arg)
{
    (void)txn;
    (void)arg;
    pause(); /* until the test kills the process */
    return CASCA_OK;
}

static void note_seq(int err, uint64_t seq, void *arg)
{
    if (err == CASCA_OK) *(uint64_t *)arg = seq;
}

/* A child whose store writer is stuck appends n records ("w0", "w1"...) half with audit_append,
 * half with audit_append_async, then is killed: none of them reached the database. */
static void appends_then_killed(const char *dir, int n)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        struct store *s;
        struct audit *a;
        struct store_options o = {.dir = dir, .sync = STORE_SYNC_PERIODIC};
        if (store_open(&o, &s, NULL, 0) != CASCA_OK || audit_open(s, "audit", &a) != CASCA_OK ||
            store_write(s, stuck_write, NULL, NULL, NULL) != CASCA_OK)
            _exit(1);
        uint64_t seq = 0;
        for (int i = 0; i < n; i++) {
            char p[32];
            int len = snprintf(p, sizeof p, "w%d", i);
            int rc = i % 2 ? audit_append_async(a, i, p, (size_t)len, note_seq, &seq)
                           : audit_append(a, i, p, (size_t)len, &seq);
            if (rc != CASCA_OK || seq != (uint64_t)i + 1) _exit(2);
        }
        if (audit_count(a) != (uint64_t)n) _exit(4); /* counted, without waiting for the writer */
        if (write(fds[1], &seq, sizeof seq) != sizeof seq) _exit(3);
        pause();
        _exit(0);
    }
    close(fds[1]);
    uint64_t acked = 0;
    assert_int_equal(read(fds[0], &acked, sizeof acked), sizeof acked);
    assert_int_equal(acked, n);
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    close(fds[0]);
    assert_true(exists(wal_path(dir, ".wal")));
}

/* The records [0, n) of appends_then_killed, and the next append gets seq n + 1. */
static void assert_replayed(const char *dir, enum store_sync sync, int n)
{
    struct store *s;
    struct audit *a;
    open_log(dir, sync, &s, &a);
    assert_int_equal(audit_count(a), n);
    static struct seen seen;
    seen = (struct seen){.n = 0};
    assert_int_equal(audit_scan(a, INT64_MIN, INT64_MAX, 0, 0, record, &seen), 0);
    assert_int_equal(seen.n, n);
    for (int i = 0; i < n; i++) {
        char p[32];
        snprintf(p, sizeof p, "w%d", i);
        assert_int_equal(seen.seq[i], i + 1);
        assert_int_equal(seen.time[i], i);
        assert_string_equal(seen.payload[i], p);
    }
    uint64_t seq;
    assert_int_equal(audit_append(a, 0, "next", 4, &seq), CASCA_OK);
    assert_int_equal(seq, n + 1);
    close_log(s, a);
    assert_false(exists(wal_path(dir, ".wal"))); /* a clean close leaves no file to replay */
}

/* Answered appends the database never got are committed by the next open, in either mode. */
static void wal_replayed_after_kill(void **state)
{
    appends_then_killed(*state, 40);
    assert_replayed(*state, STORE_SYNC_PERIODIC, 40);
}

static void wal_replayed_into_every_commit(void **state)
{
    appends_then_killed(*state, 7);
    assert_replayed(*state, STORE_SYNC_EVERY_COMMIT, 7);
    struct store *s;
    struct audit *a;
    open_log(*state, STORE_SYNC_EVERY_COMMIT, &s, &a);
    assert_false(exists(wal_path(*state, ".wal"))); /* every_commit writes no file */
    close_log(s, a);
}

static void append_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* A torn end (a machine crash mid-write) or a damaged record ends the replay of that file there;
 * what came before it is kept and nothing fails. */
static void wal_torn_end(void **state)
{
    appends_then_killed(*state, 5);
    append_bytes(wal_path(*state, ".wal"), "\0\0\0\x09half a rec", 15);
    assert_replayed(*state, STORE_SYNC_PERIODIC, 5);

    char dir2[4096];
    snprintf(dir2, sizeof dir2, "%s/two", (char *)*state);
    appends_then_killed(dir2, 6);
    FILE *f = fopen(wal_path(dir2, ".wal"), "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 3 * (24 + 2) + 25, SEEK_SET), 0); /* the 4th record's payload */
    assert_int_equal(fputc('X', f), 'X');
    assert_int_equal(fclose(f), 0);
    assert_replayed(dir2, STORE_SYNC_PERIODIC, 3);
}

static int count_record(uint64_t seq, int64_t time_ns, const void *payload, size_t len, void *arg)
{
    (void)seq, (void)time_ns, (void)payload, (void)len;
    ++*(size_t *)arg;
    return 0;
}

/* The file is renamed past 1 MiB and deleted once committed, so it stays small for good. */
static void wal_rotates(void **state)
{
    struct store *s;
    struct audit *a;
    open_log(*state, STORE_SYNC_PERIODIC, &s, &a);
    static char payload[1000];
    memset(payload, 'p', sizeof payload);
    bool rotated = false;
    for (int i = 0; i < 3000; i++) {
        assert_int_equal(audit_append(a, i, payload, sizeof payload, NULL), CASCA_OK);
        rotated |= exists(wal_path(*state, ".wal.1"));
    }
    assert_true(rotated);
    size_t n = 0;
    assert_int_equal(audit_scan(a, INT64_MIN, INT64_MAX, 2999, 0, count_record, &n), 0);
    assert_int_equal(n, 1); /* the scan waited for every commit */
    assert_false(exists(wal_path(*state, ".wal.1")));
    /* When the writer lags, the file grows past 1 MiB until the previous one is gone; the next
     * append renames it. */
    assert_int_equal(audit_append(a, 0, payload, sizeof payload, NULL), CASCA_OK);
    n = 0;
    assert_int_equal(audit_scan(a, INT64_MIN, INT64_MAX, 3000, 0, count_record, &n), 0);
    assert_int_equal(n, 1);
    assert_false(exists(wal_path(*state, ".wal.1")));
    struct stat st;
    assert_int_equal(stat(wal_path(*state, ".wal"), &st), 0);
    assert_true(st.st_size < (1 << 20));
    close_log(s, a);
    assert_false(exists(wal_path(*state, ".wal")));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, make_dir, remove_dir)
    const struct CMUnitTest tests[] = {
        T(append_in_order),        T(append_in_order_wal),   T(seq_continues_after_reopen),
        T(scan_filters),           T(concurrent_appends),    T(concurrent_appends_wal),
        T(survives_sigkill),       T(survives_sigkill_wal),  T(wal_replayed_after_kill),
        T(wal_replayed_into_every_commit), T(wal_torn_end),  T(wal_rotates),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
