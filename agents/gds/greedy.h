/* greedy: the decision rule of the GDS agent (the paper's Algorithm 1), with no I/O, so that it
 * is tested on its own. Pure functions; any thread.
 *
 * One SLO, one numeric setting, a step D and the sign of the correlation between the setting and
 * the SLO's value (+1: a larger setting raises the value). Each state:
 *   - the SLO has no value (no data in its window): no change;
 *   - value below the objective's min: move the setting by D in the direction that raises the
 *     value (sign), above its max: the other way;
 *   - within its objective, with a carbon SLO whose value is above its max (footprint too high):
 *     move by D in the direction that lowers the footprint (carbon_sign: the correlation between
 *     the setting and the footprint; +1 = a larger setting costs more carbon). The main SLO wins:
 *     the carbon SLO is only looked at while the main one is met;
 *   - otherwise no change.
 * The new value is clamped to the setting's range and kept on its grid (range.min + k x grid);
 * integer settings stay whole numbers. */
#ifndef CASCA_GREEDY_H
#define CASCA_GREEDY_H

#include <stdbool.h>
#include <stddef.h>

/* An inclusive range; a side without its has_ flag is open. */
struct greedy_range {
    bool has_min, has_max;
    double min, max;
};

struct greedy_params {
    double step;     /* D > 0 */
    int sign;        /* +1 or -1: setting vs SLO value */
    int carbon_sign; /* +1 or -1: setting vs carbon footprint */
};

struct greedy_setting {
    struct greedy_range range;
    double grid; /* the setting's step (allowed increment from range.min); 0 = any */
    bool is_int;
};

/* What one state says. */
struct greedy_input {
    double current; /* the setting's value now */
    bool has_value;
    double value;
    struct greedy_range objective;
    bool use_carbon; /* a carbon SLO was given */
    bool carbon_has_value;
    double carbon_value;
    struct greedy_range carbon_objective;
};

enum greedy_why {
    GREEDY_NO_DATA, /* the SLO has no value: nothing to do */
    GREEDY_MET,     /* within the objective (and the carbon SLO met or not given) */
    GREEDY_BELOW,   /* below min: move toward a higher value */
    GREEDY_ABOVE,   /* above max: move toward a lower value */
    GREEDY_CARBON,  /* met, footprint above its max: move toward a lower footprint */
};

struct greedy_decision {
    enum greedy_why why;
    bool change;  /* value differs from current */
    bool limited; /* the move was cut by the setting's range (at its limit) */
    double value; /* the new value (== current when !change) */
};

struct greedy_decision greedy_decide(const struct greedy_params *p, const struct greedy_setting *s,
                                     const struct greedy_input *in);

/* v clamped to r and put on s's grid (whole numbers for integer settings); dir (+1/-1/0) says
 * which way to round a value between two grid points. */
double greedy_fit(const struct greedy_setting *s, double v, int dir);

/* The carbon-aware variant (casca-gds --carbon-aware): an SLO with an error budget may be missed
 * for a share of its window. Spend that share where missing saves most carbon, the dirtiest
 * hours, and never early: the budget is spent on the current hour only if it still covers every
 * hour ahead in the window that is dirtier, and this one, and the way back (reserve: the
 * setting's moves back and the SLO's window seeing them). While spending, the setting goes to its
 * lowest-footprint end; afterwards it goes back to the value it had, and greedy_decide resumes.
 * Shares, not durations, are compared, so the rule holds whatever clock the hours play at (a
 * replayed day). */
struct spend_input {
    bool has_budget;
    double target;          /* the SLO's compliance target, (0, 1) */
    double remaining_ratio; /* ErrorBudget.remaining_ratio: 1 untouched, <= 0 exhausted */
    double intensity;       /* the grid's intensity now */
    const double *ahead;    /* the intensities of the window's hours ahead (equal slots) */
    size_t nahead;
    double reserve; /* share of the window kept for the way back (the misses after spending) */
};

/* Whether to spend budget now (no forecast or no budget: never). */
bool greedy_should_spend(const struct spend_input *in);

/* "below", "above"... for printing. */
const char *greedy_why_name(enum greedy_why why);

#endif
