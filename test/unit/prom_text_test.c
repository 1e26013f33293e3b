/* prom_text: the text exposition format as /metrics pages write it (casca's own, node_exporter's
 * shapes): names, labels with escapes, NaN/Inf, timestamps, comments; bad lines are counted and
 * the first named, the good ones around them still read. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "prom_text.h"

struct got {
    char lines[16][160];
    double values[16];
    size_t n;
};

static void collect(void *arg, const char *name, const struct prom_text_label *labels, size_t n,
                    double value, bool has_time, int64_t time_ms)
{
    struct got *g = arg;
    if (g->n == 16) return;
    char *s = g->lines[g->n];
    size_t len = sizeof(g->lines[0]);
    int at = snprintf(s, len, "%s", name);
    for (size_t i = 0; i < n; i++)
        at += snprintf(s + at, len - (size_t)at, "|%s=%s", labels[i].name, labels[i].value);
    if (has_time) snprintf(s + at, len - (size_t)at, "@%lld", (long long)time_ms);
    g->values[g->n++] = value;
}

static void reads_samples(void **state)
{
    (void)state;
    char text[] =
        "# HELP node_load1 1m load average.\n"
        "# TYPE node_load1 gauge\n"
        "node_load1 0.42\n"
        "\n"
        "http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n"
        "msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find \\\"x\\\"\\n\"} 1.458255915e9\n"
        "rpc_duration_seconds_bucket{le=\"+Inf\", } +Inf\r\n"
        "  weird_but_valid { a = \"1\" } -Inf\n"
        "nan_value NaN\n"
        "last_without_newline{x=\"\"} 3";
    struct got g = {0};
    char why[128];
    assert_int_equal(prom_text_parse(text, collect, &g, why, sizeof(why)), 0);
    assert_string_equal(why, "");
    assert_int_equal(g.n, 7);
    assert_string_equal(g.lines[0], "node_load1");
    assert_true(g.values[0] == 0.42);
    assert_string_equal(g.lines[1], "http_requests_total|method=post|code=200@1395066363000");
    assert_true(g.values[1] == 1027);
    assert_string_equal(g.lines[2],
                        "msdos_file_access_time_seconds|path=C:\\DIR\\FILE.TXT|error=Cannot find "
                        "\"x\"\n");
    assert_string_equal(g.lines[3], "rpc_duration_seconds_bucket|le=+Inf");
    assert_true(isinf(g.values[3]) && g.values[3] > 0);
    assert_string_equal(g.lines[4], "weird_but_valid|a=1");
    assert_true(isinf(g.values[4]) && g.values[4] < 0);
    assert_true(isnan(g.values[5]));
    assert_string_equal(g.lines[6], "last_without_newline|x=");
    assert_true(g.values[6] == 3);
}

static void counts_bad_lines(void **state)
{
    (void)state;
    char text[] = "ok_one 1\n"
                  "9starts_with_digit 1\n"
                  "no_value\n"
                  "bad_label{a=1} 2\n"
                  "open_label{a=\"x} 2\n"
                  "bad_escape{a=\"\\q\"} 2\n"
                  "value_not_number abc\n"
                  "trailing 1 2 3\n"
                  "float_time 1 1.5\n"
                  "missing_comma{a=\"1\" b=\"2\"} 1\n"
                  "ok_two{a=\"1\"} 2\n";
    struct got g = {0};
    char why[128];
    assert_int_equal(prom_text_parse(text, collect, &g, why, sizeof(why)), 9);
    assert_string_equal(why, "line 2: a metric name must start with a letter, '_' or ':'");
    assert_int_equal(g.n, 2);
    assert_string_equal(g.lines[0], "ok_one");
    assert_string_equal(g.lines[1], "ok_two|a=1");
}

static void too_many_labels(void **state)
{
    (void)state;
    char text[2048] = "many{";
    for (int i = 0; i <= PROM_TEXT_MAX_LABELS; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "l%d=\"v\",", i);
    strcat(text, "} 1\n");
    struct got g = {0};
    char why[128];
    assert_int_equal(prom_text_parse(text, collect, &g, why, sizeof(why)), 1);
    assert_string_equal(why, "line 1: more than 32 labels");
    char empty[] = "";
    assert_int_equal(prom_text_parse(empty, collect, &g, why, sizeof(why)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_samples),
        cmocka_unit_test(counts_bad_lines),
        cmocka_unit_test(too_many_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
