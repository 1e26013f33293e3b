/* Server-side latency of TelemetryService.Query (telemetry_query: validation, series resolution,
 * the scan, building the response, plus packing it as the call layer does) and of the SLO
 * engine's path (tsdb_aggregate with a selector kept between evaluations), on a real LMDB store:
 *   - the 5-minute mean of a 1 Hz series (goal: under 50 us),
 *   - p99 over one hour of a 10 Hz series (goal: under 2 ms).
 * The window ends at the current time on every run, so its edges fall anywhere in a minute.
 * Usage: tsdb_query_bench [iterations] (default 2000). Prints the figures. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "casca_err.h"
#include "store.h"
#include "telemetry.h"
#include "tsdb.h"

#define SEC INT64_C(1000000000)

static int64_t wall(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * SEC + t.tv_nsec;
}

static int64_t mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * SEC + t.tv_nsec;
}

/* CPU time of this thread: what a run costs when other processes preempt it. */
static int64_t cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (int64_t)t.tv_sec * SEC + t.tv_nsec;
}

static int64_t *cpu_ns; /* per iteration, next to the wall-clock figures */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int pending;

static void done(int err, void *arg)
{
    (void)arg;
    if (err) fprintf(stderr, "write failed: %s\n", casca_strerror(err));
    pthread_mutex_lock(&mu);
    pending--;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

/* n points from start, every period, for series+tag; values vary. */
static void fill(struct tsdb *db, const char *series, const char *key, const char *val,
                 int64_t start, int64_t period, size_t n)
{
    struct tsdb_tag tag = {key, val};
    struct tsdb_point pts[1000];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < 1000 && i < n; k++, i++)
            pts[k] = (struct tsdb_point){series, &tag, 1, start + (int64_t)i * period,
                                         20 + (double)(i * 7919 % 1000) / 100.0};
        pthread_mutex_lock(&mu);
        pending++;
        pthread_mutex_unlock(&mu);
        while (tsdb_write(db, pts, k, done, NULL) == CASCA_ERR_FULL)
            usleep(1000);
    }
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void report(const char *what, int64_t *ns, int n, double goal_us, uint64_t count,
                   double value)
{
    qsort(ns, (size_t)n, sizeof(*ns), cmp64);
    qsort(cpu_ns, (size_t)n, sizeof(*cpu_ns), cmp64);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += (double)ns[i];
    double p50 = (double)ns[n / 2] / 1e3, p99 = (double)ns[n * 99 / 100] / 1e3;
    double c50 = (double)cpu_ns[n / 2] / 1e3, c99 = (double)cpu_ns[n * 99 / 100] / 1e3;
    printf("%s (%llu points -> %.3f)\n  wall: median %7.1f us, p99 %7.1f us, mean %7.1f us;"
           " thread CPU: median %7.1f us, p99 %7.1f us; goal < %.0f us: %s\n",
           what, (unsigned long long)count, value, p50, p99, sum / n / 1e3, c50, c99, goal_us,
           p50 < goal_us ? "met" : "MISSED");
}

static int64_t last_cpu;

/* One Query through the service's code path; returns its duration and fills count/value. */
static int64_t run_query(struct tsdb *db, Casca__V1__QueryRequest *req, int64_t span,
                         uint64_t *count, double *value)
{
    Google__Protobuf__Timestamp start = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    int64_t c0 = cpu(), t0 = mono(), now = wall(), s = now - span;
    start.seconds = s / SEC;
    start.nanos = (int32_t)(s % SEC);
    req->start = &start;
    Casca__V1__QueryResponse resp;
    struct telemetry_arena *arena;
    char why[256];
    int rc = telemetry_query(db, req, now, 100000, &resp, &arena, why, sizeof why);
    uint8_t buf[4096];
    size_t len = rc ? 0 : protobuf_c_message_get_packed_size(&resp.base);
    if (!rc && len <= sizeof buf) protobuf_c_message_pack(&resp.base, buf);
    int64_t t1 = mono();
    last_cpu = cpu() - c0;
    if (rc) {
        fprintf(stderr, "query failed: %s\n", why);
        exit(1);
    }
    *count = resp.n_series ? (uint64_t)resp.series[0]->samples[0]->count : 0;
    *value = resp.n_series ? resp.series[0]->samples[0]->value : 0;
    telemetry_arena_free(arena);
    req->start = NULL;
    return t1 - t0;
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 2000;
    if (iters < 10) iters = 10;
    char dir[] = "/tmp/casca-tsdb-bench-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    struct store_options so = {.dir = dir, .sync = STORE_SYNC_NONE};
    struct store *s;
    struct tsdb *db;
    char err[256];
    if (store_open(&so, &s, err, sizeof err) || tsdb_open(s, NULL, &db)) {
        fprintf(stderr, "cannot open a store in %s: %s\n", dir, err);
        return 1;
    }
    int64_t now = wall();
    int64_t t0 = mono();
    /* 3 h of history: the 1 Hz series of 20 clients (queries pick one by tag), one 10 Hz series */
    char client[16];
    for (int c = 0; c < 20; c++) {
        snprintf(client, sizeof client, "w%d", c);
        fill(db, "transcoding_fps", "client", client, now - 3 * 3600 * SEC, SEC, 3 * 3600);
    }
    fill(db, "response_ms", "probe", "edge-1", now - 3 * 3600 * SEC, SEC / 10, 3 * 36000);
    pthread_mutex_lock(&mu);
    while (pending)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    struct tsdb_stats st;
    tsdb_stats(db, &st);
    printf("store: %llu points in %llu series written in %.2f s (%llu transactions)\n\n",
           (unsigned long long)st.written, (unsigned long long)st.series,
           (double)(mono() - t0) / 1e9, (unsigned long long)st.batches);

    int64_t *ns = malloc((size_t)iters * sizeof(*ns));
    cpu_ns = malloc((size_t)iters * sizeof(*cpu_ns));
    uint64_t count = 0;
    double value = 0;

    /* TelemetryService.Query, server side */
    Casca__V1__QueryRequest__TagsEntry tag = CASCA__V1__QUERY_REQUEST__TAGS_ENTRY__INIT,
                                       *tagp = &tag;
    Casca__V1__QueryRequest req = CASCA__V1__QUERY_REQUEST__INIT;
    req.series = "transcoding_fps";
    tag.key = "client";
    tag.value = "w7";
    req.n_tags = 1;
    req.tags = &tagp;
    req.aggregation = CASCA__V1__AGGREGATION__AGGREGATION_MEAN;
    for (int i = 0; i < iters; i++)
        ns[i] = run_query(db, &req, 300 * SEC, &count, &value), cpu_ns[i] = last_cpu;
    report("Query: 5-min mean of a 1 Hz series", ns, iters, 50, count, value);

    req.series = "response_ms";
    tag.key = "probe";
    tag.value = "edge-1";
    req.aggregation = CASCA__V1__AGGREGATION__AGGREGATION_QUANTILE;
    req.quantile = 0.99;
    for (int i = 0; i < iters; i++)
        ns[i] = run_query(db, &req, 3600 * SEC, &count, &value), cpu_ns[i] = last_cpu;
    report("Query: p99 over 1 h of a 10 Hz series", ns, iters, 2000, count, value);

    /* the SLO engine's path: a selector resolved once, tsdb_aggregate every evaluation */
    struct tsdb_selector *sel;
    struct tsdb_tag w7 = {"client", "w7"}, edge = {"probe", "edge-1"};
    struct tsdb_sample smp;
    tsdb_select(db, "transcoding_fps", &w7, 1, &sel);
    for (int i = 0; i < iters; i++) {
        int64_t c = cpu(), a = mono(), n = wall();
        tsdb_aggregate(db, sel, n - 300 * SEC, n, TSDB_AGG_MEAN, 0, &smp);
        ns[i] = mono() - a;
        cpu_ns[i] = cpu() - c;
    }
    report("tsdb_aggregate (kept selector): 5-min mean, 1 Hz", ns, iters, 50, smp.count, smp.value);
    tsdb_selector_free(sel);
    tsdb_select(db, "response_ms", &edge, 1, &sel);
    for (int i = 0; i < iters; i++) {
        int64_t c = cpu(), a = mono(), n = wall();
        tsdb_aggregate(db, sel, n - 3600 * SEC, n, TSDB_AGG_QUANTILE, 0.99, &smp);
        ns[i] = mono() - a;
        cpu_ns[i] = cpu() - c;
    }
    report("tsdb_aggregate (kept selector): p99 over 1 h, 10 Hz", ns, iters, 2000, smp.count,
           smp.value);
    for (int i = 0; i < iters; i++) {
        int64_t c = cpu(), a = mono(), n = wall();
        tsdb_aggregate(db, sel, n - 3600 * SEC, n, TSDB_AGG_MEAN, 0, &smp);
        ns[i] = mono() - a;
        cpu_ns[i] = cpu() - c;
    }
    report("tsdb_aggregate (kept selector): mean over 1 h, 10 Hz", ns, iters, 2000, smp.count,
           smp.value);
    tsdb_selector_free(sel);

    free(ns);
    free(cpu_ns);
    tsdb_close(db);
    store_close(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
