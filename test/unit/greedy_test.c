/* greedy: the GDS decision rule (agents/gds/greedy.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "greedy.h"

static const struct greedy_params up = {.step = 1, .sign = 1, .carbon_sign = 1};
static const struct greedy_setting threads = {
    .range = {.has_min = true, .has_max = true, .min = 1, .max = 16}, .is_int = true};

static struct greedy_input fps(double current, double value)
{
    return (struct greedy_input){
        .current = current,
        .has_value = true,
        .value = value,
        .objective = {.has_min = true, .has_max = true, .min = 24, .max = 30},
    };
}

static void test_below_above_met(void **state)
{
    (void)state;
    struct greedy_input in = fps(1, 4.2);
    struct greedy_decision d = greedy_decide(&up, &threads, &in);
    assert_int_equal(d.why, GREEDY_BELOW);
    assert_true(d.change);
    assert_true(d.value == 2);

    in = fps(16, 67.2);
    d = greedy_decide(&up, &threads, &in);
    assert_int_equal(d.why, GREEDY_ABOVE);
    assert_true(d.value == 15);

    in = fps(6, 25.2);
    d = greedy_decide(&up, &threads, &in);
    assert_int_equal(d.why, GREEDY_MET);
    assert_false(d.change);
    assert_true(d.value == 6);

    /* the objective's bounds are inclusive */
    in = fps(6, 24);
    assert_int_equal(greedy_decide(&up, &threads, &in).why, GREEDY_MET);
    in = fps(6, 30);
    assert_int_equal(greedy_decide(&up, &threads, &in).why, GREEDY_MET);
}

static void test_negative_sign(void **state)
{
    (void)state;
    /* e.g. a latency SLO that falls as the setting grows */
    struct greedy_params down = {.step = 2, .sign = -1, .carbon_sign = 1};
    struct greedy_input in = fps(8, 10); /* below: raise the value = lower the setting */
    struct greedy_decision d = greedy_decide(&down, &threads, &in);
    assert_int_equal(d.why, GREEDY_BELOW);
    assert_true(d.value == 6);
    in = fps(8, 40);
    d = greedy_decide(&down, &threads, &in);
    assert_true(d.value == 10);
}

static void test_no_data(void **state)
{
    (void)state;
    struct greedy_input in = fps(3, 0);
    in.has_value = false;
    struct greedy_decision d = greedy_decide(&up, &threads, &in);
    assert_int_equal(d.why, GREEDY_NO_DATA);
    assert_false(d.change);
    assert_true(d.value == 3);
}

static void test_clamp(void **state)
{
    (void)state;
    struct greedy_params big = {.step = 5, .sign = 1, .carbon_sign = 1};
    struct greedy_input in = fps(14, 10);
    struct greedy_decision d = greedy_decide(&big, &threads, &in);
    assert_true(d.change);
    assert_true(d.limited);
    assert_true(d.value == 16);
    in = fps(16, 10); /* at the limit already: no change */
    d = greedy_decide(&big, &threads, &in);
    assert_false(d.change);
    assert_true(d.limited);
    in = fps(3, 90);
    d = greedy_decide(&big, &threads, &in);
    assert_true(d.value == 1);
    assert_true(d.limited);

    /* open bounds do not clamp */
    struct greedy_setting open = {.is_int = false};
    in = fps(-3, 90);
    d = greedy_decide(&big, &open, &in);
    assert_true(d.value == -8);
    assert_false(d.limited);
}

static void test_grid(void **state)
{
    (void)state;
    /* range 1..16 in steps of 2 (1, 3, ..., 15): 16 is not on the grid */
    struct greedy_setting odd = {.range = {.has_min = true, .has_max = true, .min = 1, .max = 16},
                                 .grid = 2,
                                 .is_int = true};
    struct greedy_input in = fps(15, 10);
    struct greedy_decision d = greedy_decide(&up, &odd, &in);
    assert_false(d.change); /* 16 is off the grid, 17 out of range */
    in = fps(3, 10);
    d = greedy_decide(&up, &odd, &in); /* D = 1 < grid: at least one grid step */
    assert_true(d.value == 5);
    in = fps(5, 40);
    d = greedy_decide(&up, &odd, &in);
    assert_true(d.value == 3);

    /* doubles on a 0.25 grid from 0.5 */
    struct greedy_setting q = {.range = {.has_min = true, .has_max = true, .min = 0.5, .max = 2},
                               .grid = 0.25};
    struct greedy_params p = {.step = 0.25, .sign = 1, .carbon_sign = 1};
    in = fps(0.75, 10);
    d = greedy_decide(&p, &q, &in);
    assert_true(fabs(d.value - 1.0) < 1e-12);
    assert_true(fabs(greedy_fit(&q, 1.1, 0) - 1.0) < 1e-12);
    assert_true(fabs(greedy_fit(&q, 1.1, 1) - 1.25) < 1e-12);
    assert_true(fabs(greedy_fit(&q, 7, 1) - 2.0) < 1e-12);
    assert_true(fabs(greedy_fit(&q, -7, -1) - 0.5) < 1e-12);
}

static void test_carbon(void **state)
{
    (void)state;
    struct greedy_input in = fps(8, 28);
    in.use_carbon = true;
    in.carbon_has_value = true;
    in.carbon_value = 400;
    in.carbon_objective = (struct greedy_range){.has_max = true, .max = 340};
    /* met, footprint too high: fewer threads (carbon_sign +1) */
    struct greedy_decision d = greedy_decide(&up, &threads, &in);
    assert_int_equal(d.why, GREEDY_CARBON);
    assert_true(d.value == 7);
    /* carbon_sign -1: the footprint falls as the setting grows */
    struct greedy_params inv = {.step = 1, .sign = 1, .carbon_sign = -1};
    assert_true(greedy_decide(&inv, &threads, &in).value == 9);
    /* the main SLO wins: below its objective, raise it whatever the footprint */
    in.value = 20;
    d = greedy_decide(&up, &threads, &in);
    assert_int_equal(d.why, GREEDY_BELOW);
    assert_true(d.value == 9);
    /* footprint within its max, or unknown: nothing */
    in.value = 28;
    in.carbon_value = 300;
    assert_int_equal(greedy_decide(&up, &threads, &in).why, GREEDY_MET);
    in.carbon_value = 400;
    in.carbon_has_value = false;
    assert_int_equal(greedy_decide(&up, &threads, &in).why, GREEDY_MET);
    /* no carbon SLO given: the footprint is not looked at */
    in.carbon_has_value = true;
    in.use_carbon = false;
    assert_int_equal(greedy_decide(&up, &threads, &in).why, GREEDY_MET);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(greedy_why_name(GREEDY_BELOW), "below");
    assert_string_equal(greedy_why_name(GREEDY_CARBON), "carbon");
    assert_string_equal(greedy_why_name((enum greedy_why)99), "?");
}

/* A day of 24 hourly intensities: the evening peak (hours 18-20) is dirtiest. */
static const double day[24] = {200, 190, 180, 180, 190, 210, 250, 300, 280, 220, 150, 120,
                               100, 100, 110, 140, 200, 300, 420, 450, 400, 320, 260, 220};

static void test_spend(void **state)
{
    (void)state;
    struct spend_input in = {.has_budget = true, .target = 0.875, .remaining_ratio = 1,
                             .ahead = day, .nahead = 24};
    /* 12.5% of 24 h = 3 h: the three dirtiest hours (450, 420, 400) get it, not 320 */
    in.intensity = 450;
    assert_true(greedy_should_spend(&in));
    in.intensity = 400; /* two dirtier hours ahead + this one = 3 h: fits */
    assert_true(greedy_should_spend(&in));
    in.intensity = 320; /* three dirtier hours ahead need the whole budget: keep it */
    assert_false(greedy_should_spend(&in));
    in.intensity = 100;
    assert_false(greedy_should_spend(&in));
    /* a third of the budget left (1 h): only an hour with nothing dirtier ahead */
    in.remaining_ratio = 1.0 / 3.0;
    in.intensity = 450;
    assert_true(greedy_should_spend(&in));
    in.intensity = 420;
    assert_false(greedy_should_spend(&in));
    /* a reserve for the way back (a tenth of the window) leaves 2.5% of 12.5%: not an hour */
    in.remaining_ratio = 1;
    in.intensity = 450;
    in.reserve = 0.1;
    assert_false(greedy_should_spend(&in));
    in.reserve = 0.125 - 1.0 / 24; /* exactly what the hour needs besides */
    assert_true(greedy_should_spend(&in));
    in.reserve = 0;
    /* exhausted, no budget, no forecast: never */
    in.remaining_ratio = 0;
    assert_false(greedy_should_spend(&in));
    in.remaining_ratio = 1;
    in.has_budget = false;
    assert_false(greedy_should_spend(&in));
    in.has_budget = true;
    in.nahead = 0;
    assert_false(greedy_should_spend(&in));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_below_above_met),
        cmocka_unit_test(test_negative_sign),
        cmocka_unit_test(test_no_data),
        cmocka_unit_test(test_clamp),
        cmocka_unit_test(test_grid),
        cmocka_unit_test(test_carbon),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_spend),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
