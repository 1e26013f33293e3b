/* greedy: the GDS decision rule (see greedy.h). */
#include "greedy.h"

#include <math.h>

#define EPS 1e-9 /* slack for grid arithmetic on doubles */

static const char *const why_names[] = {
    [GREEDY_NO_DATA] = "no data", [GREEDY_MET] = "met",       [GREEDY_BELOW] = "below",
    [GREEDY_ABOVE] = "above",     [GREEDY_CARBON] = "carbon",
};

const char *greedy_why_name(enum greedy_why why)
{
    return why <= GREEDY_CARBON ? why_names[why] : "?";
}

/* The grid a setting's values lie on: base + k x grid (grid 0 = none). */
static void grid_of(const struct greedy_setting *s, double *base, double *grid)
{
    *grid = s->grid > 0 ? s->grid : 0;
    *base = s->range.has_min ? s->range.min : 0;
    if (s->is_int) {
        if (*grid < 1) *grid = 1;
        *base = ceil(*base - EPS);
    }
}

static double snap(double v, double base, double grid, int dir)
{
    if (grid <= 0) return v;
    double k = (v - base) / grid;
    k = dir > 0 ? ceil(k - EPS) : dir < 0 ? floor(k + EPS) : round(k);
    return base + k * grid;
}

double greedy_fit(const struct greedy_setting *s, double v, int dir)
{
    double base, grid;
    grid_of(s, &base, &grid);
    v = snap(v, base, grid, dir);
    if (s->range.has_max && v > s->range.max + EPS)
        v = snap(s->range.max, base, grid, -1); /* the highest grid point within range */
    if (s->range.has_min && v < s->range.min - EPS)
        v = snap(s->range.min, base, grid, +1); /* the lowest one */
    return v;
}

struct greedy_decision greedy_decide(const struct greedy_params *p, const struct greedy_setting *s,
                                     const struct greedy_input *in)
{
    struct greedy_decision d = {.why = GREEDY_NO_DATA, .value = in->current};
    if (!in->has_value) return d;
    int dir = 0;
    if (in->objective.has_min && in->value < in->objective.min) {
        d.why = GREEDY_BELOW;
        dir = p->sign;
    } else if (in->objective.has_max && in->value > in->objective.max) {
        d.why = GREEDY_ABOVE;
        dir = -p->sign;
    } else {
        d.why = GREEDY_MET;
        if (in->use_carbon && in->carbon_has_value && in->carbon_objective.has_max &&
            in->carbon_value > in->carbon_objective.max) {
            d.why = GREEDY_CARBON;
            dir = -p->carbon_sign;
        }
    }
    if (!dir) return d;
    double target = in->current + dir * p->step;
    d.limited = (dir > 0 && s->range.has_max && target > s->range.max + EPS) ||
                (dir < 0 && s->range.has_min && target < s->range.min - EPS);
    d.value = greedy_fit(s, target, dir);
    d.change = fabs(d.value - in->current) > EPS;
    if (!d.change) d.value = in->current;
    return d;
}

bool greedy_should_spend(const struct spend_input *in)
{
    if (!in->has_budget || !in->nahead || !(in->target > 0 && in->target < 1) ||
        !(in->remaining_ratio > 0))
        return false;
    size_t dirtier = 0;
    for (size_t i = 0; i < in->nahead; i++)
        dirtier += in->ahead[i] > in->intensity;
    /* the window's share still spendable vs the share the dirtier hours and this one need */
    double left = in->remaining_ratio * (1 - in->target);
    return (double)(dirtier + 1) / (double)in->nahead + in->reserve <= left + EPS;
}
