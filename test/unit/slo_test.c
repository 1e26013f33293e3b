/* slo + slo_engine: SLO files and their errors (file:line:col), evaluation against hand-computed
 * windows on a real tsdb, has_value without data, the cache, compliance, carbon-footprint
 * arithmetic, history and reload. */
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "casca_err.h"
#include "config.h"
#include "sections.h"
#include "slo.h"
#include "slo_engine.h"
#include "store.h"
#include "tsdb.h"

#define SEC INT64_C(1000000000)
#define HOUR TSDB_HOUR_NS
#define BASE (INT64_C(1767607200) * SEC) /* 2026-01-05 10:00:00 UTC, an hour boundary */
#define NOW (BASE + 6 * HOUR)

struct fx {
    char dir[64];
    struct store *s;
    struct tsdb *db;
    int64_t now;
    struct config *c;
    struct config_errors errs;
    struct slo_engine *e;
    /* listener record */
    char events[64][80];
    int nevents;
    /* intensity calls */
    char zone[16];
    double speed; /* the carbon clock's replay speed for budgets; 0 = none */
};

static double test_speed(void *arg, int64_t now_ns)
{
    (void)now_ns;
    return ((struct fx *)arg)->speed;
}

static int64_t test_clock(void *arg)
{
    return __atomic_load_n(&((struct fx *)arg)->now, __ATOMIC_SEQ_CST);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char *dir = fixture_tmpdir("slo-test");
    if (!dir)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s", dir);
    free(dir);
    f->now = NOW;
    char data[128];
    snprintf(data, sizeof(data), "%s/data", f->dir);
    struct store_options so = {.dir = data, .sync = STORE_SYNC_NONE};
    char err[512];
    if (store_open(&so, &f->s, err, sizeof(err)) != CASCA_OK)
        return -1;
    struct tsdb_options o = {.clock = test_clock, .clock_arg = f};
    if (tsdb_open(f->s, &o, &f->db) != CASCA_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    slo_engine_destroy(f->e);
    config_unref(f->c);
    config_errors_free(&f->errs);
    tsdb_close(f->db);
    store_close(f->s);
    fixture_remove_tree(f->dir);
    free(f);
    return 0;
}

static void write_text(struct fx *f, const char *name, const char *text)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* Loads casca.yaml with text; returns config_load's result (errors in f->errs). */
static int load(struct fx *f, const char *text, struct config **out)
{
    write_text(f, "casca.yaml", text);
    char path[160];
    snprintf(path, sizeof(path), "%s/casca.yaml", f->dir);
    config_errors_free(&f->errs);
    memset(&f->errs, 0, sizeof(f->errs));
    return config_load(path, NULL, cascad_config_sections, out, &f->errs);
}

static bool has_error(struct fx *f, const char *needle)
{
    for (size_t i = 0; i < f->errs.n; i++)
        if (strstr(f->errs.lines[i], needle))
            return true;
    return false;
}

static void dump_errors(struct fx *f)
{
    for (size_t i = 0; i < f->errs.n; i++)
        fprintf(stderr, "  %s\n", f->errs.lines[i]);
}

static int table_intensity(void *arg, const char *zone, int64_t t, double *g)
{
    struct fx *f = arg;
    snprintf(f->zone, sizeof(f->zone), "%s", zone);
    t -= t % HOUR; /* the engine asks for a time inside each hour's part of the window */
    if (t == NOW - HOUR) {
        *g = 300;
        return CASCA_OK;
    }
    if (t == NOW && strcmp(zone, "XX")) {
        *g = 150;
        return CASCA_OK;
    }
    return CASCA_ERR_NOT_FOUND;
}

static void listener(void *arg, enum slo_event ev, const struct slo_def *d,
                     const struct slo_status *st)
{
    struct fx *f = arg;
    if (f->nevents < 64)
        snprintf(f->events[f->nevents++], 80, "%s %s %d %g", ev == SLO_EVENT_REMOVED ? "rm" : "st",
                 d->id, st ? st->has_value : -1, st ? st->value : 0);
}

static void start(struct fx *f, const char *yaml)
{
    if (load(f, yaml, &f->c) != CASCA_OK) {
        dump_errors(f);
        fail_msg("config did not load");
    }
    struct slo_engine_options o = {.db = f->db, .intensity = table_intensity, .intensity_arg = f,
                                   .clock = test_clock, .clock_arg = f, .manual = true,
                                   .budget_speed = f->speed ? test_speed : NULL,
                                   .budget_speed_arg = f};
    f->e = slo_engine_create(&o, f->c);
    assert_non_null(f->e);
    slo_engine_listen(f->e, listener, f);
}

static void put(struct fx *f, const char *series, const char *client, int64_t t, double v)
{
    struct tsdb_tag tag = {"client", client};
    struct tsdb_point p = {series, client ? &tag : NULL, client ? 1 : 0, t, v};
    assert_int_equal(tsdb_write(f->db, &p, 1, NULL, NULL), CASCA_OK);
}

static void flush(struct fx *f)
{
    /* tsdb_purge waits for the writer, which has taken every point queued before it */
    assert_int_equal(tsdb_purge(f->db), CASCA_OK);
}

static struct slo_status status(struct fx *f, const char *id)
{
    struct slo_view *v = slo_view_get(f->e);
    long i = slo_view_find(v, id);
    assert_true(i >= 0);
    struct slo_status st;
    slo_view_status(f->e, v, (size_t)i, &st);
    slo_view_put(v);
    return st;
}

/* ---- evaluation against hand-computed windows ---- */

/* fps{client=a}: 20 + (s mod 10) at every second s of the last 10 minutes (1 Hz);
 * fps{client=b}: 100. In [NOW-300s, NOW): 300 points of a, each of 20..29 30 times. */
static void put_fps(struct fx *f)
{
    for (int s = 600; s >= 1; s--) {
        int64_t t = NOW - s * SEC;
        put(f, "fps", "a", t, 20 + (double)((NOW / SEC - s) % 10));
        put(f, "fps", "b", t, 100);
        put(f, "requests_total", NULL, t, 2.0 * (600 - s)); /* a counter: +2 per second */
    }
    flush(f);
}

static const char *fps_slos = "slos:\n"
                              "  - {id: A, series: fps, tags: {client: a}, aggregation: mean, window: 5m, objective: {min: 24, max: 30}}\n"
                              "  - {id: Amin, series: fps, tags: {client: a}, aggregation: min, window: 5m, objective: {min: 21}}\n"
                              "  - {id: Amax, series: fps, tags: {client: a}, aggregation: max, window: 5m, objective: {max: 29}}\n"
                              "  - {id: Ap90, series: fps, tags: {client: a}, aggregation: p90, window: 5m, objective: {max: 28}}\n"
                              "  - {id: Acount, series: fps, tags: {client: a}, aggregation: count, window: 5m, objective: {target: 300}}\n"
                              "  - {id: Alast, series: fps, tags: {client: a}, aggregation: last, window: 5m, objective: {target: 29}}\n"
                              "  - {id: Both, series: fps, window: 5m, objective: {max: 30}}\n"
                              "  - {id: Rate, series: requests_total, aggregation: rate, window: 5m, objective: {min: 1}}\n"
                              "  - {id: Short, series: fps, tags: {client: a}, window: 10s, objective: {min: 0}}\n"
                              "  - {id: None, series: nothing_here, window: 5m, objective: {min: 0}}\n";

static void test_hand_computed_windows(void **state)
{
    struct fx *f = *state;
    start(f, fps_slos);
    put_fps(f);
    struct slo_status st = status(f, "A");
    assert_true(st.has_value);
    assert_int_equal(st.count, 300);
    assert_true(fabs(st.value - 24.5) < 1e-9); /* (20+...+29)/10 */
    assert_true(st.fulfilled);
    assert_int_equal(st.evaluated_ns, NOW);
    st = status(f, "Amin");
    assert_true(st.value == 20 && !st.fulfilled); /* 20 < 21 */
    st = status(f, "Amax");
    assert_true(st.value == 29 && st.fulfilled);
    /* p90 of 300 values: h = 299 * 0.9 = 269.1; x[269] = 28, x[270] = 29 -> 28.1 */
    st = status(f, "Ap90");
    assert_true(fabs(st.value - 28.1) < 1e-9);
    assert_false(st.fulfilled);
    st = status(f, "Acount");
    assert_true(st.value == 300 && st.fulfilled); /* a target: equality */
    st = status(f, "Alast"); /* the point at NOW-1s: 20 + (NOW/SEC - 1) % 10 */
    assert_true(st.value == 20 + (double)((NOW / SEC - 1) % 10));
    assert_true(st.fulfilled == (st.value == 29));
    st = status(f, "Both"); /* no tag filter: a and b, (24.5 * 300 + 100 * 300) / 600 */
    assert_true(fabs(st.value - 62.25) < 1e-9 && st.count == 600 && !st.fulfilled);
    st = status(f, "Rate"); /* +2 per second */
    assert_true(fabs(st.value - 2.0) < 1e-9 && st.fulfilled);
    st = status(f, "Short"); /* [NOW-10s, NOW): one of each 20..29 */
    assert_true(st.count == 10 && fabs(st.value - 24.5) < 1e-9);
    st = status(f, "None");
    assert_false(st.has_value);
    assert_false(st.fulfilled);
    assert_true(st.value == 0 && st.count == 0);
}

static void test_no_data_in_window(void **state)
{
    struct fx *f = *state;
    start(f, fps_slos);
    put_fps(f);
    f->now = NOW + 20 * 60 * SEC; /* 20 minutes later the 5-minute window is empty */
    struct slo_status st = status(f, "A");
    assert_false(st.has_value);
    assert_false(st.fulfilled);
    assert_int_equal(st.count, 0);
}

static void test_cache_and_interval(void **state)
{
    struct fx *f = *state;
    start(f, "slo_engine: {interval: 2s}\n"
             "slos: [{id: A, series: fps, window: 1m, aggregation: count, objective: {min: 1}}]\n");
    struct slo_status st = status(f, "A");
    assert_false(st.has_value);
    put(f, "fps", NULL, NOW - SEC, 1);
    flush(f);
    f->now = NOW + SEC; /* within the interval: the cached status */
    st = status(f, "A");
    assert_false(st.has_value);
    assert_int_equal(st.evaluated_ns, NOW);
    f->now = NOW + 2 * SEC; /* the interval has passed: evaluated again */
    st = status(f, "A");
    assert_true(st.has_value && st.value == 1 && st.fulfilled);
    assert_int_equal(st.evaluated_ns, NOW + 2 * SEC);
}

static void test_target_bool(void **state)
{
    struct fx *f = *state;
    start(f, "slos:\n"
             "  - {id: Up, series: up, aggregation: last, window: 1m, objective: {target: true}}\n"
             "  - {id: Down, series: up, aggregation: last, window: 1m, objective: {target: false}}\n"
             "  - {id: Five, series: up, aggregation: mean, window: 1m, objective: {target: 5}}\n");
    put(f, "up", NULL, NOW - 2 * SEC, 0);
    put(f, "up", NULL, NOW - SEC, 1);
    flush(f);
    assert_true(status(f, "Up").fulfilled);
    assert_false(status(f, "Down").fulfilled);
    struct slo_status st = status(f, "Five");
    assert_true(st.has_value && st.value == 0.5 && !st.fulfilled);
}

/* 32 steps of 10 s end at NOW-310s .. NOW, step j covering [NOW-320s+10j, NOW-310s+10j): steps
 * 3, 7 and 20 have mean 50 (above a max of 30: missed), the other 29 mean 25. */
static void put_32_steps(struct fx *f)
{
    for (int s = 320; s >= 1; s--) {
        int j = (320 - s) / 10;
        put(f, "fps", NULL, NOW - s * SEC, j == 3 || j == 7 || j == 20 ? 50 : 25);
    }
    flush(f);
}

/* ---- compliance ---- */

static void test_compliance(void **state)
{
    struct fx *f = *state;
    start(f, "slos:\n"
             "  - {id: C, series: fps, window: 10s, objective: {max: 30},\n"
             "     compliance_period: 320s, compliance_step: 10s}\n");
    put_32_steps(f); /* 29 of 32 met: 90.625% */
    slo_engine_tick(f->e);
    struct slo_status st = status(f, "C");
    assert_true(st.has_value && st.value == 25);
    assert_true(fabs(st.compliance - 29.0 / 32.0) < 1e-12);
    assert_int_equal(st.compliance_covered_ns, 320 * SEC);
    assert_int_equal(st.compliance_period_ns, 320 * SEC);
    /* 10 s later, no new data: step 0 (met) leaves the period, the new step has no data and is
     * left out: 28 of 31 */
    f->now = NOW + 10 * SEC;
    slo_engine_tick(f->e);
    st = status(f, "C");
    assert_false(st.has_value);
    assert_true(fabs(st.compliance - 28.0 / 31.0) < 1e-12);
    assert_int_equal(st.compliance_covered_ns, 310 * SEC);
    /* an hour later nothing is left in the period: no figure (covered 0), never a made-up 0% */
    f->now = NOW + HOUR;
    slo_engine_tick(f->e);
    st = status(f, "C");
    assert_int_equal(st.compliance_covered_ns, 0);
}

static void test_compliance_backfill_budget(void **state)
{
    struct fx *f = *state;
    /* 200 steps of 1 s; the tick evaluates at most 64 per SLO per pass, oldest first */
    start(f, "slos: [{id: C, series: fps, window: 1s, objective: {max: 30}, compliance_period: 200s, "
             "compliance_step: 1s}]\n");
    for (int s = 200; s >= 1; s--)
        put(f, "fps", NULL, NOW - s * SEC, s > 100 ? 25 : 50); /* older half met */
    flush(f);
    slo_engine_tick(f->e);
    struct slo_status st = status(f, "C");
    /* steps end at NOW-199s.. : the first 64 cover points NOW-200s..NOW-137s, all met */
    assert_int_equal(st.compliance_covered_ns, 64 * SEC);
    assert_true(st.compliance == 1.0);
    for (int i = 0; i < 3; i++)
        slo_engine_tick(f->e);
    st = status(f, "C");
    /* all 200: step ending at E covers [E-1s, E); 100 met, 99 missed, the last (ending at NOW,
     * covering NOW-1s) missed too: 100/200 */
    assert_int_equal(st.compliance_covered_ns, 200 * SEC);
    assert_true(fabs(st.compliance - 0.5) < 1e-12);
}

static void test_error_budget(void **state)
{
    struct fx *f = *state;
    /* the data of test_compliance: 32 steps of 10 s, steps 3, 7 and 20 missed; compliance over
     * the last 100 s only, the budget over all 320 s */
    start(f, "slos:\n"
             "  - {id: B, series: fps, window: 10s, objective: {max: 30},\n"
             "     compliance_period: 100s, compliance_step: 10s,\n"
             "     error_budget: {target: 0.8, window: 320s}}\n");
    put_32_steps(f);
    slo_engine_tick(f->e);
    struct slo_status st = status(f, "B");
    assert_true(st.compliance == 1.0); /* the last 10 steps were all met */
    assert_int_equal(st.compliance_covered_ns, 100 * SEC);
    assert_true(st.has_budget);
    assert_int_equal(st.budget_allowed_ns, 64 * SEC); /* (1 - 0.8) x 320 s */
    assert_int_equal(st.budget_spent_ns, 30 * SEC);   /* 3 missed steps of 10 s */
    assert_int_equal(st.budget_covered_ns, 320 * SEC);
    /* the window is shorter than an hour: its missed share 3/32 over 0.2 */
    assert_true(fabs(st.burn_rate_1h - (3.0 / 32.0) / 0.2) < 1e-9);
    /* 100 s later, no new data: steps 0-9 (3 and 7 missed) left the window */
    f->now = NOW + 100 * SEC;
    slo_engine_tick(f->e);
    st = status(f, "B");
    assert_int_equal(st.budget_spent_ns, 10 * SEC);
    assert_int_equal(st.budget_covered_ns, 220 * SEC);
}

/* ---- carbon footprint ---- */

static void test_carbon_footprint(void **state)
{
    struct fx *f = *state;
    start(f, "slos:\n"
             "  - {id: CF, kind: carbon_footprint, power_series: power_w, zone: AT, window: 5m,\n"
             "     objective: {max: 550}}\n"
             "  - {id: CFmax, kind: carbon_footprint, power_series: power_w, zone: AT, window: 5m,\n"
             "     aggregation: max, objective: {max: 550}}\n"
             "  - {id: CFmin, kind: carbon_footprint, power_series: power_w, zone: AT, window: 5m,\n"
             "     aggregation: min, objective: {max: 550}}\n"
             "  - {id: CFlast, kind: carbon_footprint, power_series: power_w, zone: AT, window: 5m,\n"
             "     aggregation: last, objective: {max: 550}}\n"
             "  - {id: CFxx, kind: carbon_footprint, power_series: power_w, zone: XX, window: 5m,\n"
             "     objective: {max: 550}}\n");
    /* the window [NOW-180s, NOW+120s) straddles an hour: 180 points of 100 W in the hour
     * before NOW (300 g/kWh) and 120 points of 240 W after it (150 g/kWh).
     * W x g/kWh / 60 = mg/min: 100 x 300 / 60 = 500, 240 x 150 / 60 = 600 (100 W for a minute
     * is 1/600 kWh; at 300 g/kWh 0.5 g = 500 mg). mean = (180 x 500 + 120 x 600) / 300 = 540 */
    f->now = NOW + 120 * SEC;
    for (int s = -180; s < 120; s++)
        put(f, "power_w", NULL, NOW + s * SEC, s < 0 ? 100 : 240);
    flush(f);
    struct slo_status st = status(f, "CF");
    assert_true(st.has_value);
    assert_int_equal(st.count, 300);
    assert_true(fabs(st.value - 540) < 1e-9);
    assert_true(st.fulfilled);
    assert_string_equal(f->zone, "AT");
    assert_true(fabs(status(f, "CFmax").value - 600) < 1e-9);
    assert_true(fabs(status(f, "CFmin").value - 500) < 1e-9);
    st = status(f, "CFlast");
    assert_true(fabs(st.value - 600) < 1e-9 && !st.fulfilled);
    /* zone XX has no intensity after NOW: those points are left out, not counted as zero */
    st = status(f, "CFxx");
    assert_true(st.has_value && st.count == 180 && fabs(st.value - 500) < 1e-9);
    /* no intensity at all: no value */
    f->now = NOW + 2 * HOUR;
    put(f, "power_w", NULL, NOW + 2 * HOUR - SEC, 100);
    flush(f);
    st = status(f, "CF");
    assert_false(st.has_value);
    assert_false(st.fulfilled);
}

/* ---- history ---- */

struct hist {
    struct slo_status s[16];
    int n;
};

static int collect(void *arg, const struct slo_status *st)
{
    struct hist *h = arg;
    if (h->n < 16)
        h->s[h->n++] = *st;
    return 0;
}

static void test_history(void **state)
{
    struct fx *f = *state;
    start(f, "slos: [{id: H, series: fps, window: 1m, aggregation: mean, objective: {max: 15}}]\n");
    /* minute m before NOW (m = 1..5) holds 60 points of value m * 5: the 1-minute window
     * ending at NOW - (m-1) minutes has mean 5m */
    for (int s = 300; s >= 1; s--)
        put(f, "fps", NULL, NOW - s * SEC, ((s - 1) / 60 + 1) * 5.0);
    flush(f);
    struct slo_view *v = slo_view_get(f->e);
    struct hist h = {0};
    char why[256];
    assert_int_equal(slo_view_history(f->e, v, 0, NOW - 6 * 60 * SEC, NOW + HOUR, 60 * SEC,
                                      collect, &h, why, sizeof(why)),
                     CASCA_OK);
    /* at NOW-6m, -5m, -4m, -3m, -2m, -1m (end clamped to now: NOW excluded) */
    assert_int_equal(h.n, 6);
    assert_false(h.s[0].has_value); /* [NOW-7m, NOW-6m) and [NOW-6m, NOW-5m): nothing */
    assert_false(h.s[1].has_value);
    assert_false(h.s[1].fulfilled);
    for (int k = 2; k < 6; k++) {
        assert_true(h.s[k].has_value);
        assert_int_equal(h.s[k].evaluated_ns, NOW - (6 - k) * 60 * SEC);
        assert_true(fabs(h.s[k].value - 5.0 * (7 - k)) < 1e-9); /* 25, 20, 15, 10 */
        assert_int_equal(h.s[k].count, 60);
        assert_true(h.s[k].fulfilled == (h.s[k].value <= 15));
    }
    /* too many steps, empty range: INVALID with a public message */
    assert_int_equal(slo_view_history(f->e, v, 0, NOW - HOUR * 24 * 30, NOW, SEC, collect, &h, why,
                                      sizeof(why)),
                     CASCA_ERR_INVALID);
    assert_non_null(strstr(why, "step"));
    assert_int_equal(slo_view_history(f->e, v, 0, NOW, NOW - SEC, 0, collect, &h, why, sizeof(why)),
                     CASCA_ERR_INVALID);
    slo_view_put(v);
}

/* ---- reload ---- */

static void test_reload_keeps_state_and_reports(void **state)
{
    struct fx *f = *state;
    start(f, "slos:\n"
             "  - {id: Keep, series: fps, window: 10s, objective: {max: 30}, compliance_period: 20s, compliance_step: 10s}\n"
             "  - {id: Change, series: fps, window: 10s, objective: {max: 30}}\n"
             "  - {id: Gone, series: fps, window: 10s, objective: {max: 30}}\n");
    for (int s = 20; s >= 1; s--)
        put(f, "fps", NULL, NOW - s * SEC, 25);
    flush(f);
    slo_engine_tick(f->e);
    assert_int_equal(f->nevents, 3); /* the first status of each */
    assert_int_equal(status(f, "Keep").compliance_covered_ns, 20 * SEC);
    slo_engine_tick(f->e);
    assert_int_equal(f->nevents, 3); /* nothing changed: nothing told */

    struct config *next = NULL;
    assert_int_equal(load(f, "slos:\n"
                             "  - {id: Keep, description: now public, series: fps, window: 10s, objective: {max: 30}, compliance_period: 20s, compliance_step: 10s}\n"
                             "  - {id: Change, series: fps, window: 10s, objective: {max: 20}}\n"
                             "  - {id: New, series: fps, window: 10s, objective: {max: 30}}\n",
                          &next),
                     CASCA_OK);
    f->nevents = 0;
    slo_engine_reload(f->e, next);
    assert_int_equal(f->nevents, 0); /* the tick tells, so a reload never waits for a listener */
    slo_engine_tick(f->e); /* Gone went first; Keep's description changed, Change's objective,
                              New is new */
    assert_int_equal(f->nevents, 4);
    assert_string_equal(f->events[0], "rm Gone -1 0");
    assert_string_equal(f->events[1], "st Keep 1 25");
    assert_string_equal(f->events[2], "st Change 1 25");
    assert_string_equal(f->events[3], "st New 1 25");
    assert_false(status(f, "Change").fulfilled); /* 25 > 20 now */
    /* Keep kept its state: the compliance ring was not re-read (its evaluation time too) */
    assert_int_equal(status(f, "Keep").compliance_covered_ns, 20 * SEC);
    struct slo_view *v = slo_view_get(f->e);
    assert_int_equal(slo_view_count(v), 3);
    assert_true(slo_view_find(v, "Gone") < 0);
    assert_string_equal(slo_view_def(v, (size_t)slo_view_find(v, "Keep"))->description,
                        "now public");
    slo_view_put(v);
    config_unref(f->c);
    f->c = next;
}

/* ---- configuration ---- */

static void test_config_file_and_defaults(void **state)
{
    struct fx *f = *state;
    write_text(f, "more.yaml",
               "slos:\n"
               "  - id: ServiceSLO\n"
               "    description: \"\"\n"
               "    series: transcoding_fps\n"
               "    aggregation: p99\n"
               "    window: 5m\n"
               "    objective: {min: 24, max: 30}\n"
               "  - id: carbon\n"
               "    kind: carbon_footprint\n"
               "    power_series: apparent_power_w\n"
               "    unit: mg/min\n"
               "    window: 5m\n"
               "    hide: [window, aggregation]\n"
               "    objective: {max: 80}\n");
    struct config *c = NULL;
    int rc = load(f, "slos:\n"
                     "  - {id: A, description: frames, unit: fps, series: s, window: 30s, objective: {min: 1}}\n"
                     "slo_files: [more.yaml]\n"
                     "slo_engine: {interval: 500ms, compliance_period: 2h, compliance_step: 1m}\n",
                  &c);
    if (rc)
        dump_errors(f);
    assert_int_equal(rc, CASCA_OK);
    const struct slo_config *sc = slo_config_of(c);
    assert_int_equal(sc->n, 3);
    assert_int_equal(sc->interval_ns, 500 * 1000000LL);
    assert_string_equal(sc->v[0].id, "A");
    assert_string_equal(sc->v[0].description, "frames");
    assert_string_equal(sc->v[0].aggregation, "mean");
    assert_int_equal(sc->v[0].window_ns, 30 * SEC);
    assert_int_equal(sc->v[0].compliance_period_ns, 2 * HOUR);
    assert_int_equal(sc->v[0].compliance_step_ns, 60 * SEC);
    const struct slo_def *s = slo_config_find(sc, "ServiceSLO");
    assert_non_null(s);
    assert_string_equal(s->description, "");
    assert_int_equal(s->agg, TSDB_AGG_QUANTILE);
    assert_true(s->q == 0.99);
    assert_string_equal(s->aggregation, "p99");
    assert_true(s->has_min && s->has_max && s->min == 24 && s->max == 30 && !s->is_target);
    const struct slo_def *cf = slo_config_find(sc, "carbon");
    assert_int_equal(cf->kind, SLO_KIND_CARBON_FOOTPRINT);
    assert_string_equal(cf->series, "apparent_power_w");
    assert_string_equal(cf->zone, "");
    assert_true(cf->hide_window && cf->hide_aggregation);
    assert_true(!cf->has_min && cf->has_max && cf->max == 80);
    assert_true(slo_objective_met(cf, 80) && !slo_objective_met(cf, 80.001));
    config_unref(c);
}

static void test_config_errors_have_positions(void **state)
{
    struct fx *f = *state;
    write_text(f, "bad.yaml",
               "- id: ok\n"              /* 1 */
               "  series: s\n"           /* 2 */
               "  window: 5m\n"          /* 3 */
               "  objective: {min: 1}\n" /* 4 */
               "- id: NoObjective\n"     /* 5 */
               "  series: s\n"           /* 6 */
               "  window: 5m\n"          /* 7 */
               "- id: A\n"               /* 8: a duplicate of the config's */
               "  series: s\n"
               "  window: 5m\n"
               "  objective: {min: 3, max: 2}\n" /* 11 */
               "- id: Bad\n"                     /* 12 */
               "  series: s\n"
               "  window: five\n"                /* 14 */
               "  aggregation: average\n"        /* 15 */
               "  colour: red\n"                 /* 16 */
               "  objective: {target: 1, min: 0}\n" /* 17 */
               "- id: CF\n"                         /* 18 */
               "  kind: carbon_footprint\n"
               "  series: s\n"                      /* 20 */
               "  window: 5m\n"
               "  aggregation: p90\n"               /* 22 */
               "  objective: {max: 1}\n");
    struct config *c = NULL;
    char yaml[512];
    snprintf(yaml, sizeof(yaml),
             "slos:\n"
             "  - {id: A, series: s, window: 5m, objective: {min: 1}}\n"
             "  - {series: s, window: 5m, objective: {min: 1}}\n"
             "slo_files: [bad.yaml, missing.yaml]\n");
    assert_int_equal(load(f, yaml, &c), CASCA_ERR_CONFIG);
    assert_null(c);
    char want[256];
#define WANT(file, line, col, text)                                                               \
    do {                                                                                       \
        snprintf(want, sizeof(want), "%s/%s:%d:%d: %s", f->dir, file, line, col, text);        \
        if (!has_error(f, want)) {                                                             \
            dump_errors(f);                                                                    \
            fail_msg("missing error: %s", want);                                               \
        }                                                                                      \
    } while (0)
    WANT("bad.yaml", 5, 3, "slo 'NoObjective': 'objective' is required");
    WANT("bad.yaml", 8, 7, "slo 'A' is declared twice (first at line 2 column 5 of the config file)");
    WANT("bad.yaml", 11, 14, "slo 'A': objective: min (3) is above max (2)");
    WANT("bad.yaml", 14, 11, "slo 'Bad': window: ");
    WANT("bad.yaml", 15, 16, "slo 'Bad': aggregation: 'average' is not one of");
    WANT("bad.yaml", 16, 3, "unknown key 'colour' in slo 'Bad' (known: id, description");
    WANT("bad.yaml", 17, 14, "slo 'Bad': objective: give either a target or a range");
    WANT("bad.yaml", 18, 3, "slo 'CF': 'power_series' is required");
    WANT("bad.yaml", 20, 11, "slo 'CF': a carbon_footprint SLO takes power_series, not series");
    WANT("bad.yaml", 22, 16, "slo 'CF': aggregation: a carbon_footprint SLO takes mean, min, max or last");
    WANT("casca.yaml", 3, 5, "slo: no id: the public id (alias) is required");
    WANT("casca.yaml", 4, 23, "slo_files: ");
    assert_true(has_error(f, "missing.yaml"));
}

static void test_config_more_errors(void **state)
{
    struct fx *f = *state;
    struct config *c = NULL;
    assert_int_equal(load(f, "slos:\n"
                             "  - {id: 'bad id', series: s, window: 5m, objective: {min: 1}}\n"
                             "  - {id: NoWindow, series: s, objective: {min: 1}}\n"
                             "  - {id: EmptyObj, series: s, window: 5m, objective: {}}\n"
                             "  - {id: Str, series: s, window: 5m, objective: {min: lots}}\n"
                             "  - {id: Hide, series: s, window: 5m, hide: [series], objective: {min: 1}}\n"
                             "  - {id: Quant, series: s, window: 5m, aggregation: quantile, objective: {min: 1}}\n"
                             "  - {id: Steps, series: s, window: 5m, compliance_period: 1s, compliance_step: 1m, objective: {min: 1}}\n"
                             "slo_engine: {interval: 0s, bogus: 1}\n",
                          &c),
                     CASCA_ERR_CONFIG);
    char want[256];
    WANT("casca.yaml", 2, 10, "slo: bad id");
    WANT("casca.yaml", 3, 5, "slo 'NoWindow': 'window' is required");
    WANT("casca.yaml", 4, 54, "slo 'EmptyObj': objective: needs min, max");
    WANT("casca.yaml", 5, 55, "slo 'Str': objective: 'lots': expected a finite number");
    WANT("casca.yaml", 6, 46, "slo 'Hide': hide: only 'window' and 'aggregation' can be hidden");
    WANT("casca.yaml", 7, 53, "slo 'Quant': aggregation: 'quantile' is not one of");
    WANT("casca.yaml", 8, 5, "slo 'Steps': the compliance period must hold 1 to");
    WANT("casca.yaml", 9, 24, "slo_engine: interval: 0s is out of range");
    WANT("casca.yaml", 9, 28, "unknown key 'bogus' in slo_engine (known: interval");
}

/* Under a carbon replay at 10x, a budget window of 3200 s of replayed time lasts 320 s: the
 * figures of test_error_budget, with the durations in replayed time. */
static void test_error_budget_replayed(void **state)
{
    struct fx *f = *state;
    f->speed = 10;
    start(f, "slos:\n"
             "  - {id: B, series: fps, window: 10s, objective: {max: 30},\n"
             "     compliance_period: 100s, compliance_step: 10s,\n"
             "     error_budget: {target: 0.8, window: 3200s}}\n");
    put_32_steps(f);
    slo_engine_tick(f->e);
    struct slo_status st = status(f, "B");
    assert_true(st.has_budget);
    assert_int_equal(st.budget_allowed_ns, 640 * SEC); /* (1 - 0.8) x 3200 s */
    assert_int_equal(st.budget_spent_ns, 300 * SEC);   /* 3 steps of 10 s real = 300 s replayed */
    assert_int_equal(st.budget_covered_ns, 3200 * SEC);
    /* the burn rate's hour is 360 s real: all 32 steps */
    assert_true(fabs(st.burn_rate_1h - (3.0 / 32.0) / 0.2) < 1e-9);
}

static void test_error_budget_errors(void **state)
{
    struct fx *f = *state;
    struct config *c = NULL;
    assert_int_equal(load(f, "slos:\n"
                             "  - {id: A, series: s, window: 5m, objective: {min: 1}, error_budget: {target: 1.5, window: 1h}}\n"
                             "  - {id: B, series: s, window: 5m, objective: {min: 1}, error_budget: {target: 0.9}}\n"
                             "  - {id: C, series: s, window: 5m, objective: {min: 1}, error_budget: 0.9}\n"
                             "  - {id: D, series: s, window: 5m, objective: {min: 1}, error_budget: {target: 0.9, window: 1h, burn: 2}}\n"
                             "  - {id: E, series: s, window: 5m, objective: {min: 1}, compliance_step: 1m, error_budget: {target: 0.9, window: 10s}}\n",
                          &c),
                     CASCA_ERR_CONFIG);
    char want[256];
    WANT("casca.yaml", 2, 80, "slo 'A': error_budget: target: 1.5 is not a share");
    WANT("casca.yaml", 3, 71, "slo 'B': error_budget: 'window' is required");
    WANT("casca.yaml", 4, 71, "slo 'C': error_budget: expected a map");
    WANT("casca.yaml", 5, 97, "unknown key 'burn' in slo 'D': error_budget (known: target, window)");
    WANT("casca.yaml", 6, 92, "slo 'E': error_budget: the window must hold 1 to");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hand_computed_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_data_in_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_and_interval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_target_bool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compliance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compliance_backfill_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_budget_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_budget_replayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_carbon_footprint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_keeps_state_and_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_file_and_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors_have_positions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_more_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
