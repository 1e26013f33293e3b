/* agent: the rules of agent sessions that need no network (agent_logic.h): Hello validation with
 * its messages, leases all or nothing, the action rate limit, the state clock (one state per
 * period, latest wins, missed counted, cadence kept after a stall), the keepalive, and the keys
 * and values of recorded trajectories (round trip, sort order, bad keys). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "agent_logic.h"
#include "casca_err.h"

#define MS AGENT_MS
#define S (1000 * MS)

/* ---- Hello ---- */

static Casca__V1__Hello hello(const char *name, Casca__V1__AgentMode mode)
{
    Casca__V1__Hello h = CASCA__V1__HELLO__INIT;
    h.agent_name = (char *)name;
    h.mode = mode;
    return h;
}

static int check(const Casca__V1__Hello *h, int64_t *period, char *why)
{
    *period = -1;
    why[0] = 0;
    return agent_hello_check(h, period, why, 256);
}

static void hello_accepts_a_good_one(void **state)
{
    (void)state;
    char why[256];
    int64_t p;
    Casca__V1__Hello h = hello("gds", CASCA__V1__AGENT_MODE__AGENT_MODE_CONTROL);
    assert_int_equal(check(&h, &p, why), CASCA_OK);
    assert_int_equal(p, AGENT_DEFAULT_PERIOD_NS); /* unset period: 1 s */

    Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
    d.nanos = 250000000;
    h.period = &d;
    h.mode = CASCA__V1__AGENT_MODE__AGENT_MODE_OBSERVE;
    h.zone = "DE";
    assert_int_equal(check(&h, &p, why), CASCA_OK);
    assert_int_equal(p, 250 * MS);
    d.nanos = 0; /* zero: the default too */
    assert_int_equal(check(&h, &p, why), CASCA_OK);
    assert_int_equal(p, S);
    d.seconds = 3600; /* the longest */
    assert_int_equal(check(&h, &p, why), CASCA_OK);
    assert_int_equal(p, 3600 * S);

    char name[AGENT_NAME_MAX_LEN + 1];
    memset(name, 'n', AGENT_NAME_MAX_LEN);
    name[AGENT_NAME_MAX_LEN] = 0;
    h = hello(name, CASCA__V1__AGENT_MODE__AGENT_MODE_SHADOW);
    assert_int_equal(check(&h, &p, why), CASCA_OK);
}

static void hello_refuses_bad_fields(void **state)
{
    (void)state;
    char why[256];
    int64_t p;
    char long_name[AGENT_NAME_MAX_LEN + 2];
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = 0;
    const struct {
        const char *name;
        Casca__V1__AgentMode mode;
        int64_t seconds;
        int32_t nanos;
        const char *zone;
        const char *words;
    } bad[] = {
        {"", CASCA__V1__AGENT_MODE__AGENT_MODE_CONTROL, 0, 0, "", "Hello.agent_name"},
        {long_name, CASCA__V1__AGENT_MODE__AGENT_MODE_CONTROL, 0, 0, "", "Hello.agent_name"},
        {"tab\there", CASCA__V1__AGENT_MODE__AGENT_MODE_CONTROL, 0, 0, "", "printable"},
        {"x", CASCA__V1__AGENT_MODE__AGENT_MODE_UNSPECIFIED, 0, 0, "", "Hello.mode"},
        {"x", (Casca__V1__AgentMode)7, 0, 0, "", "Hello.mode"},
        {"x", CASCA__V1__AGENT_MODE__AGENT_MODE_OBSERVE, 0, 50000000, "", "100 ms"},
        {"x", CASCA__V1__AGENT_MODE__AGENT_MODE_OBSERVE, 3601, 0, "", "1 h"},
        {"x", CASCA__V1__AGENT_MODE__AGENT_MODE_OBSERVE, -1, 0, "", "Hello.period"},
        {"x", CASCA__V1__AGENT_MODE__AGENT_MODE_OBSERVE, 0, -5, "", "Hello.period"},
        {"x", CASCA__V1__AGENT_MODE__AGENT_MODE_OBSERVE, INT64_MAX, 0, "", "Hello.period"},
        {"x", CASCA__V1__AGENT_MODE__AGENT_MODE_OBSERVE, 0, 0,
         "a zone name far longer than any zone code", "Hello.zone"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        Casca__V1__Hello h = hello(bad[i].name, bad[i].mode);
        Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
        d.seconds = bad[i].seconds;
        d.nanos = bad[i].nanos;
        h.period = &d;
        h.zone = (char *)bad[i].zone;
        assert_int_equal(check(&h, &p, why), CASCA_ERR_INVALID);
        if (!strstr(why, bad[i].words))
            fail_msg("case %zu: '%s' does not say '%s'", i, why, bad[i].words);
        assert_int_equal(p, -1); /* untouched */
    }
}

/* ---- leases ---- */

static void leases_are_all_or_nothing(void **state)
{
    (void)state;
    struct agent_leases *l = agent_leases_create();
    assert_non_null(l);
    int a, b; /* two holders: only their addresses matter */
    char why[256];
    char *ab[] = {"A", "B"}, *bc[] = {"B", "C"}, *c[] = {"C"};
    /* a holder with nothing to lease (OBSERVE, SHADOW) on an empty table */
    assert_int_equal(agent_leases_acquire(l, &b, "beta", NULL, 0, why, sizeof(why)), CASCA_OK);
    agent_leases_release(l, &b);
    assert_int_equal(agent_leases_acquire(l, &a, "alpha", ab, 2, why, sizeof(why)), CASCA_OK);
    /* B is held: b gets neither B nor C */
    assert_int_equal(agent_leases_acquire(l, &b, "beta", bc, 2, why, sizeof(why)),
                     CASCA_ERR_PRECONDITION);
    assert_non_null(strstr(why, "'B'"));
    assert_non_null(strstr(why, "'alpha'"));
    assert_int_equal(agent_leases_check(l, "C", &a, why, sizeof(why)), CASCA_OK); /* still free */
    assert_int_equal(agent_leases_check(l, "C", NULL, why, sizeof(why)), CASCA_OK);
    /* holders pass their own, others are told who holds it */
    assert_int_equal(agent_leases_check(l, "A", &a, why, sizeof(why)), CASCA_OK);
    assert_int_equal(agent_leases_check(l, "A", &b, why, sizeof(why)), CASCA_ERR_PRECONDITION);
    assert_non_null(strstr(why, "'alpha'"));
    assert_int_equal(agent_leases_check(l, "A", NULL, why, sizeof(why)), CASCA_ERR_PRECONDITION);
    assert_int_equal(agent_leases_acquire(l, &b, "beta", c, 1, why, sizeof(why)), CASCA_OK);
    assert_int_equal(agent_leases_check(l, "C", &a, why, sizeof(why)), CASCA_ERR_PRECONDITION);
    assert_non_null(strstr(why, "'beta'"));
    /* releasing a frees its settings only */
    agent_leases_release(l, &a);
    assert_int_equal(agent_leases_check(l, "A", &b, why, sizeof(why)), CASCA_OK);
    assert_int_equal(agent_leases_check(l, "C", &a, why, sizeof(why)), CASCA_ERR_PRECONDITION);
    assert_int_equal(agent_leases_acquire(l, &b, "beta", bc, 2, why, sizeof(why)), CASCA_OK);
    assert_int_equal(agent_leases_acquire(l, &a, "alpha", ab, 2, why, sizeof(why)),
                     CASCA_ERR_PRECONDITION);
    assert_int_equal(agent_leases_acquire(l, &a, "alpha", NULL, 0, why, sizeof(why)), CASCA_OK);
    agent_leases_release(l, &b);
    agent_leases_release(l, &b); /* twice: nothing left to release */
    assert_int_equal(agent_leases_acquire(l, &a, "alpha", ab, 2, why, sizeof(why)), CASCA_OK);
    agent_leases_release(l, &a);
    agent_leases_destroy(l);
    agent_leases_destroy(NULL);
}

/* ---- rate limit ---- */

static void rate_limit_counts_per_period(void **state)
{
    (void)state;
    struct agent_rate r = {0};
    int64_t t = 5 * S, period = 200 * MS;
    for (int i = 0; i < AGENT_MAX_ACTIONS_PER_PERIOD; i++)
        assert_true(agent_rate_take(&r, t + i * MS, period));
    assert_false(agent_rate_take(&r, t + 50 * MS, period)); /* the 11th in the window */
    assert_false(agent_rate_take(&r, t + 199 * MS, period));
    assert_true(agent_rate_take(&r, t + 200 * MS, period)); /* a new window */
    for (int i = 1; i < AGENT_MAX_ACTIONS_PER_PERIOD; i++)
        assert_true(agent_rate_take(&r, t + 201 * MS, period));
    assert_false(agent_rate_take(&r, t + 202 * MS, period));
}

/* ---- the state clock ---- */

static void clock_ticks_once_per_period(void **state)
{
    (void)state;
    struct agent_clock c;
    int64_t t0 = 100 * S, p = 200 * MS;
    agent_clock_start(&c, p, 0, t0);
    assert_int_equal(agent_clock_due(&c, t0), t0); /* the first state right away */
    assert_true(agent_clock_tick(&c, t0));
    assert_int_equal(c.seq, 1);
    assert_true(c.pending);
    assert_false(agent_clock_tick(&c, t0 + p - 1)); /* not yet */
    /* pending: the timer comes back soon to retry the send */
    assert_int_equal(agent_clock_due(&c, t0 + 10 * MS), t0 + 10 * MS + AGENT_RETRY_NS);
    agent_clock_sent(&c);
    assert_false(c.pending);
    assert_int_equal(agent_clock_due(&c, t0 + 10 * MS), t0 + p);
    for (int k = 1; k <= 5; k++) { /* a little late each time: the cadence stays on t0 + k p */
        assert_true(agent_clock_tick(&c, t0 + k * p + 3 * MS));
        assert_int_equal(c.seq, (uint64_t)k + 1);
        assert_int_equal(c.missed, 0);
        assert_int_equal(c.next_tick_ns, t0 + (k + 1) * p);
        agent_clock_sent(&c);
    }
    /* resume_after_seq: seq goes on from there */
    agent_clock_start(&c, p, 41, t0);
    assert_true(agent_clock_tick(&c, t0));
    assert_int_equal(c.seq, 42);
}

static void clock_coalesces_latest_wins(void **state)
{
    (void)state;
    struct agent_clock c;
    int64_t t0 = 7 * S, p = 100 * MS;
    agent_clock_start(&c, p, 0, t0);
    assert_true(agent_clock_tick(&c, t0));
    agent_clock_sent(&c);
    /* a reader that takes nothing for 5 periods: one pending state, the others counted missed */
    for (int k = 1; k <= 5; k++)
        assert_true(agent_clock_tick(&c, t0 + k * p));
    assert_true(c.pending);
    assert_int_equal(c.seq, 6);    /* the pending state is the latest */
    assert_int_equal(c.missed, 4); /* states 2..5 were replaced before they went out */
    agent_clock_sent(&c);
    assert_int_equal(c.missed, 0);
    assert_true(agent_clock_tick(&c, t0 + 6 * p));
    assert_int_equal(c.seq, 7);
    assert_int_equal(c.missed, 0);
}

static void clock_keeps_cadence_after_a_stall(void **state)
{
    (void)state;
    struct agent_clock c;
    int64_t t0 = 3 * S, p = 100 * MS;
    agent_clock_start(&c, p, 0, t0);
    assert_true(agent_clock_tick(&c, t0));
    agent_clock_sent(&c);
    /* the timer stalls for 10 periods: one state, no burst of catch-up states */
    int64_t late = t0 + 10 * p + 30 * MS;
    assert_true(agent_clock_tick(&c, late));
    assert_int_equal(c.seq, 2);
    assert_int_equal(c.next_tick_ns, late + p);
    assert_false(agent_clock_tick(&c, late + 1));
}

static void keepalive_is_three_periods_and_five_seconds(void **state)
{
    (void)state;
    assert_int_equal(agent_keepalive_ns(100 * MS), 5300 * MS);
    assert_int_equal(agent_keepalive_ns(S), 8 * S);
}

/* ---- trajectories ---- */

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static void trajectory_keys_round_trip_and_sort(void **state)
{
    (void)state;
    const char *sid = "as-0018f3a2b4c5d00001";
    size_t plen = strlen(sid) + 1;
    char k[6][80];
    agent_key_state(k[0], sizeof(k[0]), sid, 2);
    agent_key_action(k[1], sizeof(k[1]), sid, 2, 0);
    agent_key_action(k[2], sizeof(k[2]), sid, 2, 1);
    agent_key_state(k[3], sizeof(k[3]), sid, 16);
    agent_key_action(k[4], sizeof(k[4]), sid, 16, 2);
    agent_key_state(k[5], sizeof(k[5]), sid, UINT64_MAX);
    assert_string_equal(k[0], "as-0018f3a2b4c5d00001/0000000000000002/S");
    assert_string_equal(k[2], "as-0018f3a2b4c5d00001/0000000000000002/A00000001");
    /* sorted as LMDB sorts them: actions of a state before it, states in seq order */
    char *v[6];
    for (int i = 0; i < 6; i++)
        v[i] = k[i];
    qsort(v, 6, sizeof(v[0]), cmp_str);
    const char *want[] = {k[1], k[2], k[0], k[4], k[3], k[5]};
    for (int i = 0; i < 6; i++)
        assert_string_equal(v[i], want[i]);
    const struct {
        int i;
        uint64_t seq;
        bool is_state;
    } parsed[] = {{0, 2, true}, {1, 2, false}, {4, 16, false}, {5, UINT64_MAX, true}};
    for (size_t i = 0; i < sizeof(parsed) / sizeof(parsed[0]); i++) {
        uint64_t seq = 0;
        bool st = !parsed[i].is_state;
        assert_true(agent_key_parse(k[parsed[i].i], strlen(k[parsed[i].i]), plen, &seq, &st));
        assert_true(seq == parsed[i].seq);
        assert_int_equal(st, parsed[i].is_state);
    }
    const char *bad[] = {
        "as-0018f3a2b4c5d00001/0000000000000002",          /* no kind */
        "as-0018f3a2b4c5d00001/000000000000000g/S",        /* not hex */
        "as-0018f3a2b4c5d00001/0000000000000002/X",        /* unknown kind */
        "as-0018f3a2b4c5d00001/0000000000000002/A0000001", /* short action number */
        "as-0018f3a2b4c5d00001/0000000000000002/S/extra",  /* trailing */
        "as-0018f3a2b4c5d00001/00000000000000020/S",       /* long seq */
        "as-0018f3a2b4c5d00001/",                          /* nothing */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t seq;
        bool st;
        if (agent_key_parse(bad[i], strlen(bad[i]), plen, &seq, &st))
            fail_msg("accepted bad key '%s'", bad[i]);
    }
}

static void trajectory_values_round_trip(void **state)
{
    (void)state;
    Casca__V1__State st = CASCA__V1__STATE__INIT;
    st.seq = 77;
    st.missed = 3;
    size_t len = 0;
    int64_t t = 1700000000123456789LL, back = 0;
    uint8_t *buf = agent_record_pack(t, &st.base, &len);
    assert_non_null(buf);
    assert_true(agent_record_time(buf, len, &back));
    assert_true(back == t);
    Casca__V1__State *u = casca__v1__state__unpack(NULL, len - 8, buf + 8);
    assert_non_null(u);
    assert_int_equal(u->seq, 77);
    assert_int_equal(u->missed, 3);
    casca__v1__state__free_unpacked(u, NULL);
    free(buf);
    assert_false(agent_record_time("short", 5, &back));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hello_accepts_a_good_one),
        cmocka_unit_test(hello_refuses_bad_fields),
        cmocka_unit_test(leases_are_all_or_nothing),
        cmocka_unit_test(rate_limit_counts_per_period),
        cmocka_unit_test(clock_ticks_once_per_period),
        cmocka_unit_test(clock_coalesces_latest_wins),
        cmocka_unit_test(clock_keeps_cadence_after_a_stall),
        cmocka_unit_test(keepalive_is_three_periods_and_five_seconds),
        cmocka_unit_test(trajectory_keys_round_trip_and_sort),
        cmocka_unit_test(trajectory_values_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
