/* The common layer's time modules: timeconv (Timestamp <-> ns, civil dates, RFC 3339) and clock
 * (the two clocks and the monotonic timed wait). */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "clock.h"
#include "timeconv.h"

static void ns_of_saturates(void **state)
{
    assert_int_equal(casca_ns_of(0, 0), 0);
    assert_int_equal(casca_ns_of(1, 500), 1000000500);
    assert_int_equal(casca_ns_of(-1, 0), -1000000000);
    assert_true(casca_ns_of(INT64_MAX, 0) == INT64_MAX);
    assert_true(casca_ns_of(INT64_MIN, 0) == INT64_MIN);
    assert_true(casca_ns_of(9223372036, 854775807) == INT64_MAX);
    assert_true(casca_ns_of(9223372036, 999999999) == INT64_MAX); /* one past: saturates */
    assert_true(casca_ns_of(-9223372036, -999999999) == INT64_MIN);
}

static void ns_of_checked_refuses(void **state)
{
    int64_t ns = 42;
    assert_true(casca_ns_of_checked(1700000000, 123, &ns));
    assert_true(ns == INT64_C(1700000000000000123));
    ns = 42;
    assert_false(casca_ns_of_checked(1, -1, &ns));
    assert_false(casca_ns_of_checked(1, 1000000000, &ns));
    assert_false(casca_ns_of_checked(9223372036, 854775808, &ns));
    assert_false(casca_ns_of_checked(INT64_MAX, 0, &ns));
    assert_false(casca_ns_of_checked(INT64_MIN, 0, &ns));
    assert_int_equal(ns, 42); /* untouched on refusal */
    assert_true(casca_ns_of_checked(9223372036, 854775807, &ns));
    assert_true(ns == INT64_MAX);
}

static void parts_round_trip(void **state)
{
    const int64_t values[] = {
        0,  1,           999999999,   1000000000, INT64_C(1700000000123456789),
        -1, -1000000000, -1500000000, INT64_MAX,  INT64_MIN + 1};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        int64_t s;
        int32_t n;
        casca_timestamp_parts(values[i], &s, &n);
        assert_true(n >= 0 && n <= 999999999); /* the Timestamp contract */
        assert_true(casca_ns_of(s, n) == values[i]);
        casca_duration_parts(values[i], &s, &n);
        assert_true((s <= 0 && n <= 0) || (s >= 0 && n >= 0)); /* the Duration contract */
        assert_true(casca_ns_of(s, n) == values[i]);
    }
    int64_t s;
    int32_t n;
    casca_timestamp_parts(-1500000000, &s, &n);
    assert_true(s == -2 && n == 500000000);
    casca_duration_parts(-1500000000, &s, &n);
    assert_true(s == -1 && n == -500000000);
}

static void civil_matches_gmtime(void **state)
{
    assert_int_equal(casca_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(casca_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(casca_days_from_civil(1969, 12, 31), -1);
    /* every day from 1900 to 2200 against the C library, both ways */
    for (int64_t days = -25567; days < 84000; days++) {
        time_t t = (time_t)(days * 86400);
        struct tm tm;
        gmtime_r(&t, &tm);
        int64_t y;
        unsigned m, d;
        casca_civil_from_days(days, &y, &m, &d);
        if (y != tm.tm_year + 1900 || m != (unsigned)tm.tm_mon + 1 || d != (unsigned)tm.tm_mday)
            fail_msg("day %lld: %lld-%u-%u", (long long)days, (long long)y, m, d);
        assert_true(casca_days_from_civil(y, m, d) == days);
    }
}

static void rfc3339_digits(void **state)
{
    char buf[40];
    casca_rfc3339_format(buf, sizeof(buf), 0, 0);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    casca_rfc3339_format(buf, sizeof(buf), 1767607200, 250000000);
    assert_string_equal(buf, "2026-01-05T10:00:00.250Z");
    casca_rfc3339_format(buf, sizeof(buf), 1767607200, 250000);
    assert_string_equal(buf, "2026-01-05T10:00:00.000250Z");
    casca_rfc3339_format(buf, sizeof(buf), 1767607200, 1);
    assert_string_equal(buf, "2026-01-05T10:00:00.000000001Z");
    casca_rfc3339_format(buf, sizeof(buf), -1, 0);
    assert_string_equal(buf, "1969-12-31T23:59:59Z");
    casca_rfc3339_format(buf, 8, 1767607200, 1); /* short buffer: cut, still terminated */
    assert_string_equal(buf, "2026-01");
}

static void clocks_move(void **state)
{
    int64_t m0 = casca_mono_ns(), w = casca_wall_ns();
    assert_true(w > INT64_C(1600000000) * 1000000000); /* after 2020 */
    assert_true(casca_mono_ns() >= m0);
    struct timespec ts = casca_timespec_of(INT64_C(1500000000));
    assert_true(ts.tv_sec == 1 && ts.tv_nsec == 500000000);
    ts = casca_timespec_of(-5);
    assert_true(ts.tv_sec == 0 && ts.tv_nsec == 0);
}

static void cond_waits_on_the_monotonic_clock(void **state)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c;
    assert_int_equal(casca_cond_init_mono(&c), 0);
    pthread_mutex_lock(&m);
    int64_t start = casca_mono_ns(), deadline = start + 20 * CASCA_NS_PER_MS;
    int rc = 0;
    while (rc != ETIMEDOUT) /* a spurious wake-up waits again */
        rc = casca_cond_wait_until(&c, &m, deadline);
    assert_true(casca_mono_ns() >= deadline);
    /* a deadline in the past returns at once */
    assert_int_equal(casca_cond_wait_until(&c, &m, start), ETIMEDOUT);
    pthread_mutex_unlock(&m);
    pthread_cond_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ns_of_saturates),
        cmocka_unit_test(ns_of_checked_refuses),
        cmocka_unit_test(parts_round_trip),
        cmocka_unit_test(civil_matches_gmtime),
        cmocka_unit_test(rfc3339_digits),
        cmocka_unit_test(clocks_move),
        cmocka_unit_test(cond_waits_on_the_monotonic_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
