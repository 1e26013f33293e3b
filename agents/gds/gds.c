/* casca-gds: the greedy decision system (the paper's Algorithm 1) as a casca agent, on libcasca's
 * gRPC client.
 *
 * One AgentService.Session in CONTROL mode leasing one setting. Every State is answered with one
 * Action (the decision of greedy.h, or no change as a keepalive), its ActionResult is awaited and
 * one line is printed. See usage() and agents/README.md's "GDS" section for the rules and the options.
 *
 * Exit status: 0 stopped by SIGINT/SIGTERM or --duration (Goodbye sent), 1 the session could not
 * be used (refused Hello, setting unusable, revoked token...), 2 bad options. A lost cascad or
 * connection is not an end: GDS says Hello again with backoff and takes its lease back, logging
 * one line per outage; --no-reconnect makes it exit 1 instead (for a supervisor). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "casca/v1/agent.pb-c.h"
#include "casca/v1/carbon.pb-c.h"
#include "casca_client.h"
#include "clock.h"
#include "greedy.h"
#include "timeconv.h"

#define SESSION_METHOD "/casca.v1.AgentService/Session"
#define POLL_MS 200              /* how often a wait looks at signals and the duration */
#define WELCOME_TIMEOUT_MS 10000 /* the server answers Hello at once */
#define RESULT_TIMEOUT_MS 30000  /* an action may wait for a slow service */
#define GOODBYE_TIMEOUT_MS 5000
#define SAMPLES_MAX 65536 /* decision times kept for the percentiles (reservoir) */
#define AHEAD_MAX 1024    /* hours of forecast a --carbon-aware decision looks at */
#define HOUR_NS (3600 * NS)
#define NS 1000000000LL

/* ---- options: one table for the flags, the config file and the usage text ---- */

struct opts {
    char *target, *token, *ca_file, *slo, *setting, *carbon_slo, *zone, *name, *config;
    double step, period, duration, settle; /* settle < 0 = auto */
    double max_move, cooldown;             /* --carbon-aware moves: 0 = no limit */
    int sign, carbon_sign, tls, no_reconnect, carbon_aware;
};

enum opt_kind { OPT_STRING, OPT_NUMBER, OPT_SIGN, OPT_FLAG, OPT_SETTLE };

struct opt_def {
    const char *name;
    enum opt_kind kind;
    size_t off;
    const char *arg;
    const char *help;
};

#define O(field) offsetof(struct opts, field)
static const struct opt_def opt_defs[] = {
    {"target", OPT_STRING, O(target), "HOST:PORT", "cascad's gRPC address (required)"},
    {"token", OPT_STRING, O(token), "TOKEN", "bearer token of an agent-role caller"},
    {"tls", OPT_FLAG, O(tls), NULL, "connect with TLS (system roots unless --ca-file)"},
    {"ca-file", OPT_STRING, O(ca_file), "FILE",
     "PEM roots to check the server with (implies --tls)"},
    {"slo", OPT_STRING, O(slo), "ID", "the SLO to keep within its objective (required)"},
    {"setting", OPT_STRING, O(setting), "ID", "the numeric setting to move (required)"},
    {"step", OPT_NUMBER, O(step), "D", "how far to move the setting per decision, > 0 (required)"},
    {"sign", OPT_SIGN, O(sign), "+1|-1",
     "+1 if raising the setting raises the SLO's value, -1 if it lowers it (required)"},
    {"carbon-slo", OPT_STRING, O(carbon_slo), "ID",
     "a carbon-footprint SLO: while the SLO is met and the footprint is above this SLO's max, "
     "step toward a lower footprint"},
    {"carbon-sign", OPT_SIGN, O(carbon_sign), "+1|-1",
     "+1 if raising the setting raises the footprint (default), -1 if it lowers it"},
    {"period", OPT_NUMBER, O(period), "SECONDS", "interval between states, 0.1..3600 (default 1)"},
    {"settle", OPT_SETTLE, O(settle), "SECONDS|auto",
     "after a change, hold this long before deciding again; auto (default): until the SLOs' "
     "windows hold only data measured after the change; 0: decide on every state"},
    {"carbon-aware", OPT_FLAG, O(carbon_aware), NULL,
     "spend the SLO's error budget in the dirtiest hours ahead (the SLO needs an error_budget): "
     "the setting goes to its lowest-footprint end then, and back afterwards"},
    {"max-move", OPT_NUMBER, O(max_move), "N",
     "--carbon-aware: move the setting by at most N per change (the setting's max_step rail)"},
    {"cooldown", OPT_NUMBER, O(cooldown), "SECONDS",
     "--carbon-aware: no change within SECONDS of the last one (the setting's cooldown rail)"},
    {"zone", OPT_STRING, O(zone), "ZONE", "grid zone of the carbon state (default: the server's)"},
    {"name", OPT_STRING, O(name), "NAME", "agent name shown in audits (default gds)"},
    {"duration", OPT_NUMBER, O(duration), "SECONDS",
     "stop after this long (default: run until a signal)"},
    {"no-reconnect", OPT_FLAG, O(no_reconnect), NULL,
     "fail fast: exit 1 when the session ends or cascad cannot be reached, instead of opening "
     "it again with backoff (for a supervisor that restarts GDS itself)"},
    {"config", OPT_STRING, O(config), "FILE",
     "read options from FILE: `key = value` lines with the names above; flags win"},
};
#define NOPTS (sizeof(opt_defs) / sizeof(opt_defs[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: casca-gds --target HOST:PORT --slo ID --setting ID --step D --sign +1|-1 "
               "[options]\n\nThe greedy decision system: keeps one SLO within its objective by "
               "moving one setting.\n\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char left[40];
        snprintf(left, sizeof(left), "--%s%s%s", opt_defs[i].name, opt_defs[i].arg ? " " : "",
                 opt_defs[i].arg ? opt_defs[i].arg : "");
        fprintf(f, "  %-26s %s\n", left, opt_defs[i].help);
    }
    fprintf(f, "  %-26s %s\n", "--help", "this text");
    fprintf(f,
            "\nExit status: 0 stopped (signal or --duration), 1 session failed (cascad lost, with "
            "--no-reconnect), 2 bad options.\n");
}

static void opt_error(const char *where, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void opt_error(const char *where, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "casca-gds: %s: ", where);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static const struct opt_def *opt_find(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(opt_defs[i].name) == len && !strncmp(opt_defs[i].name, name, len))
            return &opt_defs[i];
    return NULL;
}

static bool parse_number(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* Sets one option from text; where names it for errors ("--step" or "gds.conf:3"). */
static bool opt_set(struct opts *o, const struct opt_def *d, const char *value, const char *where)
{
    void *field = (char *)o + d->off;
    switch (d->kind) {
    case OPT_STRING: {
        if (!*value) {
            opt_error(where, "needs a value");
            return false;
        }
        char *copy = strdup(value);
        if (!copy) {
            opt_error(where, "out of memory");
            return false;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return true;
    }
    case OPT_NUMBER:
        if (!parse_number(value, (double *)field)) {
            opt_error(where, "'%s' is not a number", value);
            return false;
        }
        return true;
    case OPT_SETTLE:
        if (!strcmp(value, "auto")) {
            *(double *)field = -1;
            return true;
        }
        if (!parse_number(value, (double *)field) || *(double *)field < 0) {
            opt_error(where, "'%s' is neither a number of seconds >= 0 nor auto", value);
            return false;
        }
        return true;
    case OPT_SIGN:
        if (!strcmp(value, "+1") || !strcmp(value, "1"))
            *(int *)field = 1;
        else if (!strcmp(value, "-1"))
            *(int *)field = -1;
        else {
            opt_error(where, "'%s' is not +1 or -1", value);
            return false;
        }
        return true;
    case OPT_FLAG:
        if (!strcasecmp(value, "true") || !strcmp(value, "1") || !strcasecmp(value, "yes"))
            *(int *)field = 1;
        else if (!strcasecmp(value, "false") || !strcmp(value, "0") || !strcasecmp(value, "no"))
            *(int *)field = 0;
        else {
            opt_error(where, "'%s' is not true or false", value);
            return false;
        }
        return true;
    }
    return false;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && strchr(" \t\r\n", s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* The config file: `key = value` per line, # comments, blank lines; values may be quoted. */
static bool load_config(struct opts *o, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        opt_error(path, "cannot read the config file: %s", strerror(errno));
        return false;
    }
    char line[1024], where[512];
    bool ok = true;
    for (unsigned n = 1; ok && fgets(line, sizeof(line), f); n++) {
        snprintf(where, sizeof(where), "%s:%u", path, n);
        if (!strchr(line, '\n') && !feof(f)) {
            opt_error(where, "line longer than %zu characters", sizeof(line) - 2);
            ok = false;
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            opt_error(where, "expected `key = value`, got '%s'", s);
            ok = false;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        size_t vl = strlen(value);
        if (vl >= 2 && (value[0] == '"' || value[0] == '\'') && value[vl - 1] == value[0]) {
            value[vl - 1] = '\0';
            value++;
        }
        const struct opt_def *d = opt_find(key, strlen(key));
        snprintf(where, sizeof(where), "%s:%u: %s", path, n, key);
        if (!d || !strcmp(key, "config")) {
            opt_error(where, "unknown key '%s' (the keys are the long option names, see --help)",
                      key);
            ok = false;
        } else {
            ok = opt_set(o, d, value, where);
        }
    }
    if (ok && ferror(f)) {
        opt_error(path, "read error");
        ok = false;
    }
    fclose(f);
    return ok;
}

/* Flags, then checks. 0 = run, 1 = --help shown, -1 = bad options (said on stderr). */
static int parse_args(struct opts *o, int argc, char **argv)
{
    /* The config file first, so that flags override it wherever --config stands. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 1; i < argc; i++) {
            const char *a = argv[i];
            if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
                usage(stdout);
                return 1;
            }
            if (strncmp(a, "--", 2)) {
                opt_error(a, "unexpected argument (options start with --)");
                return -1;
            }
            const char *name = a + 2, *eq = strchr(name, '=');
            const struct opt_def *d = opt_find(name, eq ? (size_t)(eq - name) : strlen(name));
            if (!d) {
                opt_error(a, "unknown option");
                return -1;
            }
            const char *value;
            if (eq)
                value = eq + 1;
            else if (d->kind == OPT_FLAG)
                value = "true";
            else if (i + 1 < argc)
                value = argv[++i];
            else {
                opt_error(a, "needs a value (%s)", d->arg);
                return -1;
            }
            bool is_config = d->off == O(config);
            if (pass == 0 && is_config && (!opt_set(o, d, value, a) || !load_config(o, value)))
                return -1;
            if (pass == 1 && !is_config && !opt_set(o, d, value, a)) return -1;
        }
    }
    const char *missing = !o->target       ? "--target"
                          : !o->slo        ? "--slo"
                          : !o->setting    ? "--setting"
                          : isnan(o->step) ? "--step"
                          : !o->sign       ? "--sign"
                                           : NULL;
    if (missing) {
        opt_error(missing, "required (see --help)");
        return -1;
    }
    if (!(o->step > 0)) {
        opt_error("--step", "must be > 0, not %g", o->step);
        return -1;
    }
    if (!(o->period >= 0.1 && o->period <= 3600)) {
        opt_error("--period", "must be between 0.1 and 3600 seconds, not %g", o->period);
        return -1;
    }
    if (!(o->duration >= 0)) {
        opt_error("--duration", "must be >= 0 seconds, not %g", o->duration);
        return -1;
    }
    if (o->carbon_slo && !strcmp(o->carbon_slo, o->slo)) {
        opt_error("--carbon-slo", "must differ from --slo");
        return -1;
    }
    if (!(o->max_move >= 0) || !(o->cooldown >= 0)) {
        opt_error(o->max_move >= 0 ? "--cooldown" : "--max-move", "must be >= 0");
        return -1;
    }
    if (o->ca_file) o->tls = 1;
    return 0;
}

static void opts_free(struct opts *o)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (opt_defs[i].kind == OPT_STRING) free(*(char **)((char *)o + opt_defs[i].off));
}

/* ---- time ---- */

static int64_t ts_ns(const Google__Protobuf__Timestamp *t)
{
    return t ? casca_ns_of(t->seconds, t->nanos) : 0;
}

static int64_t dur_ns(const Google__Protobuf__Duration *d)
{
    return d ? casca_ns_of(d->seconds, d->nanos) : 0;
}

static void format_time(int64_t ns, char *buf, size_t len)
{
    if (ns <= 0) ns = casca_wall_ns();
    time_t secs = (time_t)(ns / NS);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char day[32];
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", day, (int)(ns % NS / 1000000));
}

/* ---- the agent ---- */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

struct gds {
    struct opts *o;
    struct casca_stream *stream;
    int64_t stop_at; /* monotonic; 0 = no --duration */
    /* from Welcome */
    struct greedy_params params;
    struct greedy_setting setting;
    struct greedy_range objective, carbon_objective;
    int64_t window_ns, carbon_window_ns;
    /* state */
    int64_t last_change_ns; /* server clock of the last applied change; 0 = none yet */
    uint64_t nonce;
    Casca__V1__ControlMessage *pending; /* a State that arrived while an answer was awaited */
    /* the summary */
    uint64_t decisions, applied, rejected, no_data, settling, missed;
    uint32_t samples[SAMPLES_MAX];
    uint64_t nsamples;
    double time_sum_us;
    unsigned rng;
    /* --carbon-aware: the hours ahead (fetched once per hour of the carbon state's clock) */
    struct casca_client *client;
    double ahead[AHEAD_MAX];
    size_t nahead;
    int64_t ahead_hour_ns; /* the hour they were fetched for; 0 = none */
    bool spending;         /* the last state was in an hour to spend the budget in */
    double resume;         /* the value to go back to when spending stops; NAN = none */
    uint64_t spent_decisions;
    int64_t last_state_ns, last_carbon_ns; /* to measure the carbon clock's speed */
    double speed; /* replayed seconds per second (1 when live); 0 = not measured yet */
    struct casca_reconnect rc;                /* outages: retry or not, backoff, one line each */
    const struct casca_client_options *copts; /* to open a fresh client after an outage */
};

static bool stopping(const struct gds *g)
{
    return stop_signal || (g->stop_at && casca_mono_ns() >= g->stop_at);
}

static void range_of(const Casca__V1__Range *r, struct greedy_range *out)
{
    memset(out, 0, sizeof(*out));
    if (!r) return;
    out->has_min = r->optional_min_case == CASCA__V1__RANGE__OPTIONAL_MIN_MIN;
    out->has_max = r->optional_max_case == CASCA__V1__RANGE__OPTIONAL_MAX_MAX;
    out->min = r->min;
    out->max = r->max;
}

static void format_range(const struct greedy_range *r, char *buf, size_t len)
{
    char lo[32] = "", hi[32] = "";
    if (r->has_min) snprintf(lo, sizeof(lo), "%g", r->min);
    if (r->has_max) snprintf(hi, sizeof(hi), "%g", r->max);
    snprintf(buf, len, "%s..%s", lo, hi);
}

enum got { GOT_MESSAGE, GOT_NOTHING, GOT_END };

/* Receives the next message, waiting in POLL_MS slices so that signals are seen, at most
 * timeout_ms (<0 = no limit). GOT_NOTHING when nothing came in time (or, when stoppable, as soon
 * as stopping(g)); GOT_END when the session is over, st saying why. */
static enum got receive(struct gds *g, int timeout_ms, bool stoppable,
                        Casca__V1__ControlMessage **out, struct casca_status *st)
{
    int64_t until = timeout_ms < 0 ? 0 : casca_mono_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int slice = POLL_MS;
        if (until) {
            int64_t left = (until - casca_mono_ns()) / 1000000;
            if (left <= 0) return GOT_NOTHING;
            if (left < slice) slice = (int)left;
        }
        ProtobufCMessage *m = NULL;
        int rc =
            casca_stream_recv(g->stream, &casca__v1__control_message__descriptor, &m, slice, st);
        if (rc == CASCA_OK && m) {
            *out = (Casca__V1__ControlMessage *)m;
            return GOT_MESSAGE;
        }
        if (rc != CASCA_ERR_TIMEOUT || st->code != 0) { /* the call is over */
            if (!st->message[0])
                snprintf(st->message, sizeof(st->message), "cascad closed the session");
            return GOT_END;
        }
        if (stoppable && stopping(g)) return GOT_NOTHING;
    }
}

/* Sends m. When the call is over, st says why: the final status, read past any message still
 * queued (at most GOODBYE_TIMEOUT_MS). */
static int send_message(struct gds *g, Casca__V1__AgentMessage *m, struct casca_status *st)
{
    int rc = casca_stream_send(g->stream, &m->base, st);
    if (rc != CASCA_ERR_UNAVAILABLE) return rc;
    int64_t until = casca_mono_ns() + (int64_t)GOODBYE_TIMEOUT_MS * 1000000;
    for (;;) {
        int left = (int)((until - casca_mono_ns()) / 1000000);
        Casca__V1__ControlMessage *reply;
        if (left <= 0) return rc;
        enum got got = receive(g, left, false, &reply, st);
        if (got != GOT_MESSAGE) return rc;
        protobuf_c_message_free_unpacked(&reply->base, NULL);
    }
}

/* The session ended on the server's side (or the stream broke): say why. */
static int session_failed(const char *what, const struct casca_status *st)
{
    const char *why = st->message[0] ? st->message : "the stream ended";
    if (what)
        fprintf(stderr, "casca-gds: %s: %s\n", what, why);
    else
        fprintf(stderr, "casca-gds: %s\n", why);
    return 1;
}

static const Casca__V1__SloStatus *find_slo(const Casca__V1__State *s, const char *id)
{
    for (size_t i = 0; i < s->n_slos; i++)
        if (s->slos[i]->slo && !strcmp(s->slos[i]->slo->id, id)) return s->slos[i];
    return NULL;
}

static const Casca__V1__SettingValue *find_value(Casca__V1__SettingValue *const *v, size_t n,
                                                 const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i]->id, id)) return v[i];
    return NULL;
}

static bool numeric(const Casca__V1__Value *v, double *out)
{
    if (v && v->kind_case == CASCA__V1__VALUE__KIND_INT_VALUE)
        *out = (double)v->int_value;
    else if (v && v->kind_case == CASCA__V1__VALUE__KIND_DOUBLE_VALUE)
        *out = v->double_value;
    else
        return false;
    return true;
}

/* Checks the Welcome against what GDS needs; fills g. false = unusable (said on stderr). */
static bool take_welcome(struct gds *g, const Casca__V1__Welcome *w)
{
    const struct opts *o = g->o;
    const Casca__V1__Setting *set = NULL;
    for (size_t i = 0; i < w->n_settings; i++)
        if (!strcmp(w->settings[i]->id, o->setting)) set = w->settings[i];
    bool leased = false;
    for (size_t i = 0; i < w->n_leased_setting_ids; i++)
        leased |= !strcmp(w->leased_setting_ids[i], o->setting);
    const Casca__V1__Slo *slo = NULL, *carbon = NULL;
    for (size_t i = 0; i < w->n_slos; i++) {
        if (!strcmp(w->slos[i]->id, o->slo)) slo = w->slos[i];
        if (o->carbon_slo && !strcmp(w->slos[i]->id, o->carbon_slo)) carbon = w->slos[i];
    }
    const char *why = NULL;
    char buf[256];
    if (!set)
        why = "the setting is not in the session (unknown to this caller?)";
    else if (set->type != CASCA__V1__VALUE_TYPE__VALUE_TYPE_INT &&
             set->type != CASCA__V1__VALUE_TYPE__VALUE_TYPE_DOUBLE)
        why = "the setting is not numeric: GDS moves int and double settings only";
    else if (set->read_only)
        why = "the setting is read-only";
    else if (!leased)
        why = "cascad granted no lease on the setting";
    else if (!slo)
        why = "the SLO is not in the session (unknown to this caller?)";
    else if (o->carbon_slo && !carbon)
        why = "the carbon SLO is not in the session (unknown to this caller?)";
    if (why) {
        fprintf(stderr, "casca-gds: cannot control setting '%s' for SLO '%s': %s\n", o->setting,
                o->slo, why);
        return false;
    }
    g->setting.is_int = set->type == CASCA__V1__VALUE_TYPE__VALUE_TYPE_INT;
    g->setting.grid = set->step;
    range_of(set->range, &g->setting.range);
    range_of(slo->objective, &g->objective);
    g->window_ns = dur_ns(slo->window);
    if (!g->objective.has_min && !g->objective.has_max) {
        fprintf(stderr,
                "casca-gds: SLO '%s' has an open objective (no min, no max): nothing to "
                "keep it within\n",
                o->slo);
        return false;
    }
    if (g->setting.is_int && o->step != floor(o->step)) {
        fprintf(stderr,
                "casca-gds: --step %g is not a whole number but setting '%s' is an "
                "integer\n",
                o->step, o->setting);
        return false;
    }
    if (carbon) {
        range_of(carbon->objective, &g->carbon_objective);
        g->carbon_window_ns = dur_ns(carbon->window);
        if (!g->carbon_objective.has_max) {
            fprintf(stderr,
                    "casca-gds: carbon SLO '%s' has no max: GDS steps toward a lower "
                    "footprint only when it is above its max\n",
                    o->carbon_slo);
            return false;
        }
    }
    char obj[80], rng[80];
    format_range(&g->objective, obj, sizeof(obj));
    format_range(&g->setting.range, rng, sizeof(rng));
    if (o->settle < 0 && (!g->window_ns || (carbon && !g->carbon_window_ns)))
        snprintf(buf, sizeof(buf),
                 "settle: the window is hidden, deciding on every state "
                 "(set --settle SECONDS)");
    else if (o->settle < 0)
        snprintf(buf, sizeof(buf), "settle: auto (window %g s)", g->window_ns / 1e9);
    else
        snprintf(buf, sizeof(buf), "settle: %g s", o->settle);
    char grid[48] = "";
    if (set->step > 0) snprintf(grid, sizeof(grid), " grid %g", set->step);
    printf("gds: session %s: SLO %s objective %s, setting %s %s range %s%s, step %g, sign %+d, "
           "period %g s, %s",
           w->session_id, o->slo, obj, o->setting, g->setting.is_int ? "int" : "double", rng, grid,
           o->step, o->sign, o->period, buf);
    if (carbon) {
        char cobj[80];
        format_range(&g->carbon_objective, cobj, sizeof(cobj));
        printf(", carbon SLO %s objective %s (carbon sign %+d)", o->carbon_slo, cobj,
               o->carbon_sign);
    }
    printf("\n");
    return true;
}

/* Whether the last change is too recent for the SLOs the decision rests on to show its effect:
 * the SLO, and for a step made for the footprint (carbon != NULL) the carbon SLO as well. */
static bool settling(const struct gds *g, const Casca__V1__State *s,
                     const Casca__V1__SloStatus *slo, const Casca__V1__SloStatus *carbon)
{
    if (!g->last_change_ns || g->o->settle == 0) return false;
    if (g->o->settle > 0) return ts_ns(s->time) - g->last_change_ns < (int64_t)(g->o->settle * 1e9);
    if (!g->window_ns) /* auto, window hidden: decide on every state */
        return false;
    if (slo && slo->has_value && ts_ns(slo->evaluated_at) - g->window_ns < g->last_change_ns)
        return true;
    if (carbon && g->carbon_window_ns && carbon->has_value &&
        ts_ns(carbon->evaluated_at) - g->carbon_window_ns < g->last_change_ns)
        return true;
    return false;
}

static void record_time(struct gds *g, int64_t ns)
{
    uint32_t us = (uint32_t)(ns / 1000);
    g->time_sum_us += us;
    if (g->nsamples < SAMPLES_MAX) {
        g->samples[g->nsamples] = us;
    } else { /* reservoir sampling keeps a uniform sample of every decision */
        uint64_t k =
            (uint64_t)rand_r(&g->rng) * ((uint64_t)RAND_MAX + 1) + (uint64_t)rand_r(&g->rng);
        k %= g->nsamples + 1;
        if (k < SAMPLES_MAX) g->samples[k] = us;
    }
    g->nsamples++;
}

/* Waits for the ActionResult with nonce; a State arriving meanwhile is kept as g->pending (the
 * latest wins). CASCA_ERR_CANCELLED when a signal came and the result did not follow within
 * GOODBYE_TIMEOUT_MS. */
static int await_result(struct gds *g, const char *nonce, Casca__V1__ControlMessage **out,
                        struct casca_status *st)
{
    int64_t until = casca_mono_ns() + (int64_t)RESULT_TIMEOUT_MS * 1000000;
    bool stop_seen = false;
    for (;;) {
        if (stop_signal && !stop_seen) { /* a signal: wait a little more, not 30 s */
            stop_seen = true;
            int64_t soon = casca_mono_ns() + (int64_t)GOODBYE_TIMEOUT_MS * 1000000;
            if (soon < until) until = soon;
        }
        int left = (int)((until - casca_mono_ns()) / 1000000);
        if (left <= 0 && stop_seen) {
            snprintf(st->message, sizeof(st->message), "stopped before the ActionResult came");
            return CASCA_ERR_CANCELLED;
        }
        if (left <= 0) {
            snprintf(st->message, sizeof(st->message),
                     "no ActionResult within %d s: the service may be hanging",
                     RESULT_TIMEOUT_MS / 1000);
            return CASCA_ERR_TIMEOUT;
        }
        Casca__V1__ControlMessage *m;
        enum got got = receive(g, left < POLL_MS ? left : POLL_MS, false, &m, st);
        if (got == GOT_NOTHING) continue;
        if (got == GOT_END) return CASCA_ERR_UNAVAILABLE;
        if (m->msg_case == CASCA__V1__CONTROL_MESSAGE__MSG_RESULT &&
            !strcmp(m->result->nonce, nonce)) {
            *out = m;
            return CASCA_OK;
        }
        if (m->msg_case == CASCA__V1__CONTROL_MESSAGE__MSG_STATE) {
            if (g->pending) {
                g->missed++;
                protobuf_c_message_free_unpacked(&g->pending->base, NULL);
            }
            g->pending = m;
        } else {
            protobuf_c_message_free_unpacked(&m->base, NULL);
        }
    }
}

static void format_slo(char *buf, size_t len, const char *id, const Casca__V1__SloStatus *st,
                       const struct greedy_range *r, const char *verdict)
{
    char obj[80];
    format_range(r, obj, sizeof(obj));
    if (st && st->has_value)
        snprintf(buf, len, "%s=%.4g (%s %s)", id, st->value, verdict, obj);
    else
        snprintf(buf, len, "%s=none (no data, objective %s)", id, obj);
}

/* One State: decide, act, await the result, print. Returns 0 or the session's end (st). */
/* The intensities of the budget window's hours ahead of the carbon state's hour, from
 * CarbonService (the bundled data, or under a replay the replayed day's). Fetched once an hour;
 * on failure the old ones are kept (none: no spending). */
static void fetch_ahead(struct gds *g, const Casca__V1__CarbonState *cs, int64_t window_ns)
{
    int64_t hour = cs->time ? ts_ns(cs->time) / HOUR_NS * HOUR_NS : 0;
    if (!hour || hour == g->ahead_hour_ns)
        return;
    Google__Protobuf__Timestamp start = GOOGLE__PROTOBUF__TIMESTAMP__INIT,
                                end = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    start.seconds = hour / NS;
    end.seconds = (hour + (window_ns > HOUR_NS ? window_ns : HOUR_NS)) / NS;
    Casca__V1__GetLocationHistoryRequest req = CASCA__V1__GET_LOCATION_HISTORY_REQUEST__INIT;
    req.zone = cs->zone;
    req.start = &start;
    req.end = &end;
    ProtobufCMessage *resp = NULL;
    struct casca_status st;
    if (casca_call(g->client, "/casca.v1.CarbonService/GetLocationHistory", &req.base,
                   &casca__v1__get_location_history_response__descriptor, &resp, &st)) {
        fprintf(stderr, "casca-gds: no carbon forecast for zone %s: %s\n", cs->zone, st.message);
        return;
    }
    const Casca__V1__GetLocationHistoryResponse *h = (const void *)resp;
    g->nahead = 0;
    for (size_t i = 0; i < h->n_points && g->nahead < AHEAD_MAX; i++)
        g->ahead[g->nahead++] = h->points[i]->gco2eq_per_kwh;
    g->ahead_hour_ns = hour;
    protobuf_c_message_free_unpacked(resp, NULL);
}

/* --carbon-aware: replaces the greedy decision d while the budget is being spent (a move to the
 * lowest-footprint end) and until the setting is back at the value it had (g->resume), each
 * move at most --max-move and --cooldown after the last change. */
static void carbon_aware(struct gds *g, const Casca__V1__State *s, const Casca__V1__SloStatus *slo,
                         double current, struct greedy_decision *d, bool *spend_move)
{
    const Casca__V1__ErrorBudget *b = slo ? slo->budget : NULL;
    const Casca__V1__CarbonState *cs = s->carbon;
    if (b && cs && cs->zone)
        fetch_ahead(g, cs, dur_ns(b->window));
    struct spend_input in = {
        .has_budget = b != NULL,
        .target = b ? b->target : 0,
        .remaining_ratio = b ? b->remaining_ratio : 0,
        .intensity = cs ? cs->intensity_gco2eq_per_kwh : 0,
        .ahead = g->ahead,
        .nahead = g->nahead,
    };
    const struct opts *o = g->o;
    /* the way back, in the window's (carbon clock's) time: the moves back at the rails' pace,
     * then the SLO's window filling with the restored setting */
    int64_t now = ts_ns(s->time), ct = cs && cs->time ? ts_ns(cs->time) : 0;
    if (ct && g->last_state_ns && now > g->last_state_ns && ct >= g->last_carbon_ns)
        g->speed = (double)(ct - g->last_carbon_ns) / (double)(now - g->last_state_ns);
    g->last_state_ns = now;
    g->last_carbon_ns = ct;
    if (!(g->speed > 0))
        return; /* the carbon clock's speed is not known yet: no reserve, no spending */
    if (b && dur_ns(b->window) > 0) {
        const struct greedy_range *r = &g->setting.range;
        double span = r->has_min && r->has_max ? r->max - r->min : 0;
        double moves = o->max_move > 0 ? ceil(span / o->max_move) : 1;
        double back_s = moves * fmax(o->cooldown, o->period) + g->window_ns / 1e9 + o->period;
        in.reserve = back_s * fmax(g->speed, 1) * 1e9 / (double)dur_ns(b->window);
    }
    g->spending = greedy_should_spend(&in);
    double to;
    if (g->spending) {
        const struct greedy_range *r = &g->setting.range;
        bool low = o->carbon_sign > 0;
        double end = low ? (r->has_min ? r->min : current) : (r->has_max ? r->max : current);
        if (isnan(g->resume))
            g->resume = current;
        g->spent_decisions++;
        to = greedy_fit(&g->setting, end, low ? 1 : -1);
    } else if (!isnan(g->resume) && current != g->resume) {
        to = g->resume;
    } else {
        g->resume = NAN; /* back where it was (or never left): greedy_decide's turn */
        return;
    }
    *spend_move = true;
    d->limited = false;
    d->value = current;
    d->change = false;
    if (o->cooldown > 0 && g->last_change_ns &&
        ts_ns(s->time) - g->last_change_ns < (int64_t)(o->cooldown * NS))
        return; /* the rail would refuse a change now: wait for a later state */
    if (o->max_move > 0 && fabs(to - current) > o->max_move) /* step there */
        to = greedy_fit(&g->setting, current + copysign(o->max_move, to - current),
                        to > current ? -1 : 1);
    d->value = to;
    d->change = to != current;
}

static int handle_state(struct gds *g, const Casca__V1__State *s, struct casca_status *st)
{
    int64_t t0 = casca_mono_ns();
    const struct opts *o = g->o;
    const Casca__V1__SloStatus *slo = find_slo(s, o->slo);
    const Casca__V1__SloStatus *carbon = o->carbon_slo ? find_slo(s, o->carbon_slo) : NULL;
    const Casca__V1__SettingValue *cur = find_value(s->settings, s->n_settings, o->setting);
    double current = 0;
    bool has_current = cur && numeric(cur->value, &current);
    g->missed += s->missed;

    struct greedy_input in = {
        .current = current,
        .has_value = slo && slo->has_value,
        .value = slo ? slo->value : 0,
        .objective = g->objective,
        .use_carbon = o->carbon_slo != NULL,
        .carbon_has_value = carbon && carbon->has_value,
        .carbon_value = carbon ? carbon->value : 0,
        .carbon_objective = g->carbon_objective,
    };
    struct greedy_decision d = greedy_decide(&g->params, &g->setting, &in);
    bool spend_move = false; /* a --carbon-aware move: made at once, never held to settle */
    if (o->carbon_aware && has_current)
        carbon_aware(g, s, slo, current, &d, &spend_move);
    bool hold = has_current && in.has_value && !spend_move &&
                settling(g, s, slo, d.why == GREEDY_CARBON ? carbon : NULL);
    bool act = has_current && d.change && !hold;

    Casca__V1__Value value = CASCA__V1__VALUE__INIT;
    Casca__V1__SetSettingRequest change = CASCA__V1__SET_SETTING_REQUEST__INIT;
    Casca__V1__SetSettingRequest *changes[1] = {&change};
    Casca__V1__Action action = CASCA__V1__ACTION__INIT;
    Casca__V1__AgentMessage msg = CASCA__V1__AGENT_MESSAGE__INIT;
    char nonce[32];
    snprintf(nonce, sizeof(nonce), "gds-%llu", (unsigned long long)++g->nonce);
    action.state_seq = s->seq;
    action.nonce = nonce;
    if (act) {
        if (g->setting.is_int) {
            value.kind_case = CASCA__V1__VALUE__KIND_INT_VALUE;
            value.int_value = (int64_t)llround(d.value);
        } else {
            value.kind_case = CASCA__V1__VALUE__KIND_DOUBLE_VALUE;
            value.double_value = d.value;
        }
        change.id = o->setting;
        change.value = &value;
        action.n_changes = 1;
        action.changes = changes;
    }
    msg.msg_case = CASCA__V1__AGENT_MESSAGE__MSG_ACTION;
    msg.action = &action;
    int rc = send_message(g, &msg, st);
    if (rc) return rc;
    int64_t decided_ns = casca_mono_ns() - t0;
    record_time(g, decided_ns);
    g->decisions++;

    Casca__V1__ControlMessage *reply = NULL;
    if ((rc = await_result(g, nonce, &reply, st))) return rc;
    const Casca__V1__ActionResult *r = reply->result;

    char outcome[400];
    if (!has_current) {
        snprintf(outcome, sizeof(outcome), "%s: no value yet, kept", o->setting);
    } else if (act && r->n_rejected) {
        g->rejected++;
        snprintf(outcome, sizeof(outcome), "%s %g -> %g: rejected: %s", o->setting, current,
                 d.value, r->rejected[0]->reason);
    } else if (act) {
        g->applied++;
        const Casca__V1__SettingValue *now = find_value(r->applied, r->n_applied, o->setting);
        double got = d.value;
        if (now) numeric(now->value, &got);
        g->last_change_ns = now && now->updated_at ? ts_ns(now->updated_at) : ts_ns(s->time);
        snprintf(outcome, sizeof(outcome), "%s %g -> %g: applied", o->setting, current, got);
    } else if (hold && d.change) {
        g->settling++;
        snprintf(outcome, sizeof(outcome), "%s %g: settling (would move to %g)", o->setting,
                 current, d.value);
    } else if (!in.has_value) {
        g->no_data++;
        snprintf(outcome, sizeof(outcome), "%s %g: kept", o->setting, current);
    } else if (d.why != GREEDY_MET && d.limited) {
        snprintf(outcome, sizeof(outcome), "%s %g: at its limit, kept", o->setting, current);
    } else {
        snprintf(outcome, sizeof(outcome), "%s %g: kept", o->setting, current);
    }
    if (!act && r->n_rejected) /* a keepalive is never rejected unless the session is in trouble */
        fprintf(stderr, "casca-gds: keepalive rejected: %s\n", r->rejected[0]->reason);

    char when[40], main_slo[200], carbon_slo[200] = "";
    format_time(ts_ns(s->time), when, sizeof(when));
    const char *verdict = d.why == GREEDY_CARBON ? "met" : greedy_why_name(d.why);
    if (g->spending)
        verdict = "spending budget";
    format_slo(main_slo, sizeof(main_slo), o->slo, slo, &g->objective, verdict);
    if (o->carbon_slo) {
        bool high = carbon && carbon->has_value && g->carbon_objective.has_max &&
                    carbon->value > g->carbon_objective.max;
        carbon_slo[0] = ' ';
        format_slo(carbon_slo + 1, sizeof(carbon_slo) - 1, o->carbon_slo, carbon,
                   &g->carbon_objective, high ? "above" : "met");
    }
    printf("%s seq=%llu %s%s %s, decided in %lld us\n", when, (unsigned long long)s->seq, main_slo,
           carbon_slo, outcome, (long long)(decided_ns / 1000));
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void print_summary(struct gds *g)
{
    size_t n = g->nsamples < SAMPLES_MAX ? (size_t)g->nsamples : SAMPLES_MAX;
    double mean = g->nsamples ? g->time_sum_us / (double)g->nsamples : 0;
    uint32_t p99 = 0;
    if (n) {
        qsort(g->samples, n, sizeof(g->samples[0]), cmp_u32);
        size_t k = (size_t)ceil(0.99 * (double)n);
        p99 = g->samples[k ? k - 1 : 0];
    }
    printf("gds: summary: %llu decisions, %llu changes applied, %llu rejected, %llu without data, "
           "%llu settling, %llu states missed; decision time mean %.0f us, p99 %u us\n",
           (unsigned long long)g->decisions, (unsigned long long)g->applied,
           (unsigned long long)g->rejected, (unsigned long long)g->no_data,
           (unsigned long long)g->settling, (unsigned long long)g->missed, mean, p99);
    if (g->o->carbon_aware)
        printf("gds: carbon-aware: %llu decisions spent error budget\n",
               (unsigned long long)g->spent_decisions);
}

/* Goodbye, half-close, and the server's end of the call. */
static void say_goodbye(struct gds *g, const char *reason)
{
    struct casca_status st;
    Casca__V1__Goodbye bye = CASCA__V1__GOODBYE__INIT;
    Casca__V1__AgentMessage msg = CASCA__V1__AGENT_MESSAGE__INIT;
    bye.reason = (char *)reason;
    msg.msg_case = CASCA__V1__AGENT_MESSAGE__MSG_GOODBYE;
    msg.goodbye = &bye;
    if (send_message(g, &msg, &st) || casca_stream_close_send(g->stream, &st)) return;
    int64_t until = casca_mono_ns() + (int64_t)GOODBYE_TIMEOUT_MS * 1000000;
    for (;;) {
        int left = (int)((until - casca_mono_ns()) / 1000000);
        Casca__V1__ControlMessage *m;
        if (left <= 0 || receive(g, left, false, &m, &st) != GOT_MESSAGE) return;
        protobuf_c_message_free_unpacked(&m->base, NULL);
    }
}

/* What one session came to: stopped (Goodbye said), worth opening again (st says why), or a
 * failure retrying cannot fix (said on stderr). */
enum outcome { SESSION_STOPPED, SESSION_RETRY, SESSION_FATAL };

/* The session ended with st: fatal when retrying cannot help (or --no-reconnect), said on stderr
 * then; otherwise SESSION_RETRY with st kept for the outage line. */
static enum outcome session_ended(const struct gds *g, const char *what,
                                  const struct casca_status *st)
{
    /* (FAILED_PRECONDITION at the first Hello is another agent's lease, not our dead session's) */
    if (casca_reconnect_should(&g->rc, st->code)) return SESSION_RETRY;
    session_failed(what, st);
    return SESSION_FATAL;
}

/* One session: Hello, Welcome, then a decision per State until stopped or the session ends. */
static enum outcome session(struct gds *g, struct casca_client *c, Casca__V1__AgentMessage *hello,
                            struct casca_status *st)
{
    g->client = c;
    if (casca_stream_open(c, SESSION_METHOD, &hello->base, 0, &g->stream, st))
        return session_ended(g, NULL, st);

    Casca__V1__ControlMessage *m = NULL;
    enum got got = receive(g, WELCOME_TIMEOUT_MS, true, &m, st);
    if (got == GOT_NOTHING && stopping(g)) return SESSION_STOPPED;
    if (got == GOT_NOTHING) {
        st->code = 4; /* DEADLINE_EXCEEDED */
        snprintf(st->message, sizeof(st->message), "no Welcome from cascad within %d s",
                 WELCOME_TIMEOUT_MS / 1000);
        return session_ended(g, NULL, st);
    }
    if (got == GOT_END && casca_err_from_grpc(st->code) == CASCA_ERR_UNAVAILABLE &&
        strstr(st->message, "cannot reach cascad"))
        return session_ended(g, NULL, st);
    if (got == GOT_END) return session_ended(g, "cascad refused the session", st);
    if (m->msg_case != CASCA__V1__CONTROL_MESSAGE__MSG_WELCOME) {
        protobuf_c_message_free_unpacked(&m->base, NULL);
        fprintf(stderr, "casca-gds: cascad did not answer Hello with Welcome\n");
        return SESSION_FATAL;
    }
    bool usable = take_welcome(g, m->welcome);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    if (!usable) {
        say_goodbye(g, "the setting or SLO cannot be used by GDS");
        return SESSION_FATAL;
    }
    casca_reconnect_ok(&g->rc); /* ends the outage, if any, with its one line */

    while (!stopping(g)) {
        m = g->pending;
        g->pending = NULL;
        if (!m) {
            got = receive(g, -1, true, &m, st);
            if (got == GOT_NOTHING) continue; /* stopping */
            if (got == GOT_END) return session_ended(g, "the session ended", st);
        }
        int rc = 0;
        if (m->msg_case == CASCA__V1__CONTROL_MESSAGE__MSG_STATE)
            rc = handle_state(g, m->state, st);
        protobuf_c_message_free_unpacked(&m->base, NULL);
        if (rc == CASCA_ERR_CANCELLED && stop_signal)
            break; /* stopped while awaiting a result: say goodbye all the same */
        if (rc == CASCA_ERR_TIMEOUT && !st->code) st->code = 4; /* no ActionResult: start over */
        if (rc) return session_ended(g, "the session ended", st);
    }
    char reason[64];
    if (stop_signal)
        snprintf(reason, sizeof(reason), "stopped by %s",
                 stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
    else
        snprintf(reason, sizeof(reason), "--duration reached");
    printf("gds: %s: saying goodbye\n", reason);
    say_goodbye(g, reason);
    return SESSION_STOPPED;
}

/* Sleeps ms in POLL_MS slices; false when stopping. */
static bool pause_ms(const struct gds *g, int ms)
{
    int64_t until = casca_mono_ns() + (int64_t)ms * 1000000;
    while (!stopping(g)) {
        int64_t left = until - casca_mono_ns();
        if (left <= 0) return true;
        if (left > (int64_t)POLL_MS * 1000000) left = (int64_t)POLL_MS * 1000000;
        struct timespec t = {0, (long)left};
        nanosleep(&t, NULL);
    }
    return false;
}

/* Sessions until stopped: a lost cascad or connection (a restart, a broken stream, a lease the
 * dead session still holds) is opened again after a jittered backoff, with one line when the
 * outage starts and one when it ends, not one per attempt. With --no-reconnect the first end is
 * final (exit 1), as a supervisor that restarts GDS itself prefers. */
static int run(struct gds *g, struct casca_client **c)
{
    const struct opts *o = g->o;
    struct casca_status st;
    char *slo_ids[2] = {o->slo, o->carbon_slo};
    char *setting_ids[1] = {o->setting};
    Google__Protobuf__Duration period = GOOGLE__PROTOBUF__DURATION__INIT;
    period.seconds = (int64_t)o->period;
    period.nanos = (int32_t)llround((o->period - floor(o->period)) * 1e9);
    if (period.nanos >= NS) {
        period.seconds++;
        period.nanos -= NS;
    }
    Casca__V1__Hello hello = CASCA__V1__HELLO__INIT;
    hello.agent_name = o->name;
    hello.n_slo_ids = o->carbon_slo ? 2 : 1;
    hello.slo_ids = slo_ids;
    hello.n_setting_ids = 1;
    hello.setting_ids = setting_ids;
    hello.period = &period;
    hello.mode = CASCA__V1__AGENT_MODE__AGENT_MODE_CONTROL;
    hello.zone = o->zone ? o->zone : "";
    Casca__V1__AgentMessage msg = CASCA__V1__AGENT_MESSAGE__INIT;
    msg.msg_case = CASCA__V1__AGENT_MESSAGE__MSG_HELLO;
    msg.hello = &hello;

    for (;;) {
        memset(&st, 0, sizeof(st));
        enum outcome out = session(g, *c, &msg, &st);
        if (out == SESSION_STOPPED) return 0;
        if (out == SESSION_FATAL) return 1;
        casca_stream_close(g->stream);
        g->stream = NULL;
        if (g->pending) {
            protobuf_c_message_free_unpacked(&g->pending->base, NULL);
            g->pending = NULL;
        }
        const char *why = st.message[0] ? st.message : "the stream ended";
        if (!pause_ms(g, casca_reconnect_wait_ms(&g->rc, why))) return 0;
        /* a fresh channel: grpc's channel would wait out its own backoff in TRANSIENT_FAILURE,
         * failing every call at once with a stale "connection refused" long after cascad is
         * back */
        struct casca_client *fresh = NULL;
        if (casca_client_open(o->target, g->copts, &fresh, &st) == CASCA_OK) {
            casca_client_close(*c);
            *c = fresh;
        }
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct opts o = {.step = NAN, .period = 1, .settle = -1, .carbon_sign = 1};
    int rc = parse_args(&o, argc, argv);
    if (rc) {
        if (rc < 0)
            fprintf(stderr, "usage: casca-gds --target HOST:PORT --slo ID --setting ID --step D "
                            "--sign +1|-1 [options]; see --help\n");
        opts_free(&o);
        return rc < 0 ? 2 : 0;
    }
    if (!o.name && !(o.name = strdup("gds"))) {
        opts_free(&o);
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct gds *g = calloc(1, sizeof(*g));
    if (!g) {
        fprintf(stderr, "casca-gds: out of memory\n");
        opts_free(&o);
        return 1;
    }
    g->o = &o;
    g->resume = NAN;
    g->params =
        (struct greedy_params){.step = o.step, .sign = o.sign, .carbon_sign = o.carbon_sign};
    g->rng = (unsigned)casca_mono_ns();
    if (o.duration > 0) g->stop_at = casca_mono_ns() + (int64_t)(o.duration * 1e9);

    struct casca_client_options copts = {.token = o.token, .tls = o.tls, .ca_file = o.ca_file};
    struct casca_client *c = NULL;
    struct casca_status st;
    if (casca_client_open(o.target, &copts, &c, &st)) {
        fprintf(stderr, "casca-gds: %s\n", st.message);
        rc = 1;
    } else {
        g->copts = &copts;
        g->rc.who = "casca-gds";
        g->rc.target = o.target;
        g->rc.fail_fast = o.no_reconnect;
        rc = run(g, &c);
    }
    if (g->pending) protobuf_c_message_free_unpacked(&g->pending->base, NULL);
    casca_stream_close(g->stream);
    casca_client_close(c);
    if (g->decisions || rc == 0) print_summary(g);
    free(g);
    opts_free(&o);
    return rc;
}
