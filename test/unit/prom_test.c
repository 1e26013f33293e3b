/* prom: the Prometheus text format as written: values (integers, shortest round trip, NaN, Inf),
 * # HELP / # TYPE lines, label values escaped, cumulative histograms, and a failed buffer that
 * stops writing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

static void test_values(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(prom_format_value(0, buf, sizeof(buf)), "0");
    assert_string_equal(prom_format_value(-0.0, buf, sizeof(buf)), "0");
    assert_string_equal(prom_format_value(42, buf, sizeof(buf)), "42");
    assert_string_equal(prom_format_value(-7, buf, sizeof(buf)), "-7");
    assert_string_equal(prom_format_value(123456789012.0, buf, sizeof(buf)), "123456789012");
    assert_string_equal(prom_format_value(0.1, buf, sizeof(buf)), "0.1");
    assert_string_equal(prom_format_value(2.5, buf, sizeof(buf)), "2.5");
    assert_string_equal(prom_format_value(1e20, buf, sizeof(buf)), "1e+20");
    assert_string_equal(prom_format_value(NAN, buf, sizeof(buf)), "NaN");
    assert_string_equal(prom_format_value(INFINITY, buf, sizeof(buf)), "+Inf");
    assert_string_equal(prom_format_value(-INFINITY, buf, sizeof(buf)), "-Inf");
    double third = 1.0 / 3.0; /* needs 17 digits to read back */
    assert_true(strtod(prom_format_value(third, buf, sizeof(buf)), NULL) == third);
}

static void test_family_and_escaping(void **state)
{
    (void)state;
    struct prom_buf b = {0};
    prom_family(&b, "casca_x", "gauge", "Help with a \\ backslash,\na newline and \"quotes\".");
    prom_sample(&b, "casca_x", NULL, 0, 1);
    struct prom_label l[] = {{"setting", "Mode"}, {"value", "a\"b\\c\nd"}};
    prom_sample(&b, "casca_x", l, 2, 0.25);
    prom_sample1(&b, "casca_x", "slo", "FPS", 27.5);
    prom_sample1(&b, "casca_x", "slo", NULL, 1); /* NULL is an empty value */
    assert_false(b.failed);
    assert_string_equal(b.data,
                        "# HELP casca_x Help with a \\\\ backslash,\\na newline and \"quotes\".\n"
                        "# TYPE casca_x gauge\n"
                        "casca_x 1\n"
                        "casca_x{setting=\"Mode\",value=\"a\\\"b\\\\c\\nd\"} 0.25\n"
                        "casca_x{slo=\"FPS\"} 27.5\n"
                        "casca_x{slo=\"\"} 1\n");
    assert_int_equal(b.len, strlen(b.data));
    prom_buf_free(&b);
    assert_null(b.data);
}

static void test_histogram(void **state)
{
    (void)state;
    struct prom_buf b = {0};
    const double bounds[] = {0.1, 1};
    const uint64_t counts[] = {1, 2, 3}; /* per bucket; the last is +Inf */
    struct prom_label l = {"method", "/a.B/C"};
    prom_histogram(&b, "casca_d_seconds", &l, 1, bounds, counts, 2, 4.5);
    prom_histogram(&b, "casca_e_seconds", NULL, 0, bounds, counts, 2, 0);
    assert_string_equal(b.data, "casca_d_seconds_bucket{method=\"/a.B/C\",le=\"0.1\"} 1\n"
                                "casca_d_seconds_bucket{method=\"/a.B/C\",le=\"1\"} 3\n"
                                "casca_d_seconds_bucket{method=\"/a.B/C\",le=\"+Inf\"} 6\n"
                                "casca_d_seconds_sum{method=\"/a.B/C\"} 4.5\n"
                                "casca_d_seconds_count{method=\"/a.B/C\"} 6\n"
                                "casca_e_seconds_bucket{le=\"0.1\"} 1\n"
                                "casca_e_seconds_bucket{le=\"1\"} 3\n"
                                "casca_e_seconds_bucket{le=\"+Inf\"} 6\n"
                                "casca_e_seconds_sum 0\n"
                                "casca_e_seconds_count 6\n");
    prom_buf_free(&b);
}

static void test_growth_and_failure(void **state)
{
    (void)state;
    struct prom_buf b = {0};
    char id[40];
    for (int i = 0; i < 5000; i++) { /* several times the first 4 KiB */
        snprintf(id, sizeof(id), "slo_%d", i);
        prom_sample1(&b, "casca_slo_value", "slo", id, i);
    }
    assert_false(b.failed);
    assert_non_null(strstr(b.data, "casca_slo_value{slo=\"slo_4999\"} 4999\n"));
    assert_int_equal(b.len, strlen(b.data));
    size_t len = b.len;
    b.failed = true; /* as after an allocation failure: nothing more is written */
    prom_sample(&b, "casca_y", NULL, 0, 1);
    assert_int_equal(b.len, len);
    prom_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_family_and_escaping),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_growth_and_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
