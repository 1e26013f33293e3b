#include "slo.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "casca_err.h"
#include "config.h"
#include "yamldoc.h"

#define MAX_ID_LEN 64
#define MS 1000000LL
#define MAX_WINDOW_MS (31LL * 24 * 3600 * 1000)
#define MAX_COMPLIANCE_STEPS 100000

static const struct slo_config defaults = {
    .interval_ns = 1000 * MS,
    .compliance_period_ns = 3600 * 1000 * MS,
    .compliance_step_ns = 60 * 1000 * MS,
    .history_max_samples = 10000,
};

/* ---- reading ---- */

const struct slo_config *slo_config_of(const struct config *c)
{
    const struct slo_config *sc = config_section_of(c, &slo_config_section);
    return sc ? sc : &defaults;
}

const struct slo_def *slo_config_find(const struct slo_config *sc, const char *id)
{
    for (size_t i = 0; i < sc->n; i++)
        if (!strcmp(sc->v[i].id, id))
            return &sc->v[i];
    return NULL;
}

bool slo_objective_met(const struct slo_def *d, double value)
{
    if (d->is_target)
        return value == d->min;
    return (!d->has_min || value >= d->min) && (!d->has_max || value <= d->max);
}

/* ---- freeing ---- */

static void def_free(struct slo_def *d)
{
    free(d->id);
    free(d->description);
    free(d->unit);
    free(d->aggregation);
    free(d->series);
    for (size_t i = 0; i < d->ntags; i++) {
        free((char *)d->tags[i].key);
        free((char *)d->tags[i].value);
    }
    free(d->tags);
    free(d->zone);
    free(d->where);
    free(d->signature);
}

static void slo_config_free(void *section)
{
    struct slo_config *sc = section;
    if (!sc)
        return;
    for (size_t i = 0; i < sc->n; i++)
        def_free(&sc->v[i]);
    free(sc->v);
    free(sc);
}

/* ---- parsing ---- */

/* The ids seen so far (open addressing, indexes into the table being built), so that a file of
 * thousands of SLOs is checked for duplicates in linear time. */
struct idset {
    size_t *slot; /* index + 1; 0 = empty */
    size_t cap;   /* a power of two, kept at least twice the count */
    size_t n;
};

static size_t id_hash(const char *s)
{
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* Adds sc->v[i]'s id; returns the index of an earlier SLO with the same id, or -1. */
static long idset_add(struct idset *set, const struct slo_config *sc, size_t i)
{
    if ((set->n + 1) * 2 > set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        size_t *slot = calloc(cap, sizeof(*slot));
        if (!slot)
            return -1;
        for (size_t k = 0; k < set->cap; k++)
            if (set->slot[k]) {
                size_t h = id_hash(sc->v[set->slot[k] - 1].id) & (cap - 1);
                while (slot[h])
                    h = (h + 1) & (cap - 1);
                slot[h] = set->slot[k];
            }
        free(set->slot);
        set->slot = slot;
        set->cap = cap;
    }
    size_t h = id_hash(sc->v[i].id) & (set->cap - 1);
    for (; set->slot[h]; h = (h + 1) & (set->cap - 1))
        if (!strcmp(sc->v[set->slot[h] - 1].id, sc->v[i].id))
            return (long)set->slot[h] - 1;
    set->slot[h] = i + 1;
    set->n++;
    return -1;
}

struct parse {
    struct config_loader *ld;
    struct idset *ids;
    const char *file; /* the SLO file being read; NULL: the main configuration file */
    const struct slo_config *sc; /* the slo_engine defaults */
    bool failed;      /* an error was recorded for the SLO being parsed */
};

static void perr(struct parse *p, const struct yd_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void perr(struct parse *p, const struct yd_node *at, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (p->file)
        config_error_in(p->ld, p->file, at, "%s", msg);
    else
        config_error(p->ld, at, "%s", msg);
    p->failed = true;
}

static bool is_null(const struct yd_node *n)
{
    return n && n->kind == YD_SCALAR && n->plain && (!*n->scalar || !strcmp(n->scalar, "null"));
}

/* The config engine's unknown-key check, in the file being read. */
static void check_keys(struct parse *p, const struct yd_node *map, const char *what,
                       const struct config_key *known)
{
    if (!config_check_keys(p->ld, p->file, map, known, what)) p->failed = true;
}

/* The scalar of key in map, NULL when absent (or after an error: not a scalar). */
static const char *scalar(struct parse *p, const struct yd_node *map, const char *key,
                          const char *what)
{
    const struct yd_node *n = yd_get(map, key);
    if (!n)
        return NULL;
    if (n->kind != YD_SCALAR) {
        perr(p, n, "%s: %s: expected a value, not a %s", what, key, yd_kind_name(n->kind));
        return NULL;
    }
    return n->scalar;
}

/* A duration key in ns; absent: def. */
static int64_t duration(struct parse *p, const struct yd_node *map, const char *key, int64_t def,
                        int64_t min_ms, int64_t max_ms, const char *what)
{
    const struct yd_node *n = yd_get(map, key);
    if (!n)
        return def;
    uint64_t ms = 0;
    const char *why = n->kind == YD_SCALAR ? config_parse_duration_ms(n->scalar, &ms)
                                           : "expected a duration such as 10s, 5m or 1h";
    if (!why && ((int64_t)ms < min_ms || (int64_t)ms > max_ms)) {
        perr(p, n, "%s: %s: %s is out of range: use %lldms .. %lldh", what, key, n->scalar,
             (long long)min_ms, (long long)(max_ms / 3600000));
        return def;
    }
    if (why) {
        perr(p, n, "%s: %s: %s", what, key, why);
        return def;
    }
    return (int64_t)ms * MS;
}

static bool valid_id(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > MAX_ID_LEN)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_-.:", *s))
            return false;
    return true;
}

/* A number, or (for a target) true / false as 1 / 0. */
static bool number(struct parse *p, const struct yd_node *n, bool allow_bool, double *out,
                   const char *what)
{
    if (n->kind != YD_SCALAR) {
        perr(p, n, "%s: expected a number, not a %s", what, yd_kind_name(n->kind));
        return false;
    }
    bool b;
    if (allow_bool && n->plain && !config_parse_bool(n->scalar, &b) && isalpha(*n->scalar)) {
        *out = b ? 1 : 0;
        return true;
    }
    const char *why = config_parse_double(n->scalar, out);
    if (why)
        perr(p, n, "%s: '%s': %s%s", what, n->scalar, why, allow_bool ? " (or true/false)" : "");
    return !why;
}

static void parse_objective(struct parse *p, const struct yd_node *slo, struct slo_def *d,
                            const char *what)
{
    const struct yd_node *o = yd_get(slo, "objective");
    if (!o || is_null(o)) {
        perr(p, o ? o : slo,
             "%s: 'objective' is required: a range such as objective: {min: 24, max: 30} (either "
             "bound may be left out) or a target such as objective: {target: true}",
             what);
        return;
    }
    if (o->kind != YD_MAP) {
        perr(p, o, "%s: objective: expected a map such as {min: 24, max: 30} or {target: 1}",
             what);
        return;
    }
    static const struct config_key keys[] = {{"min"}, {"max"}, {"target"}, {NULL}};
    char w[160];
    snprintf(w, sizeof(w), "%.140s: objective", what);
    check_keys(p, o, w, keys);
    const struct yd_node *mn = yd_get(o, "min"), *mx = yd_get(o, "max"), *t = yd_get(o, "target");
    if (t) {
        if (mn || mx) {
            perr(p, o, "%s: give either a target or a range (min/max), not both", w);
            return;
        }
        if (number(p, t, true, &d->min, w)) {
            d->max = d->min;
            d->has_min = d->has_max = d->is_target = true;
        }
        return;
    }
    if (!mn && !mx) {
        perr(p, o, "%s: needs min, max (or both) or a target", w);
        return;
    }
    if (mn)
        d->has_min = number(p, mn, false, &d->min, w);
    if (mx)
        d->has_max = number(p, mx, false, &d->max, w);
    if (d->has_min && d->has_max && d->min > d->max)
        perr(p, o, "%s: min (%g) is above max (%g)", w, d->min, d->max);
}

static void parse_tags(struct parse *p, const struct yd_node *n, struct slo_def *d,
                       const char *what)
{
    if (n->kind != YD_MAP) {
        perr(p, n, "%s: tags: expected a map such as {client: a1}", what);
        return;
    }
    if (!(d->tags = calloc(n->n ? n->n : 1, sizeof(*d->tags))))
        return;
    for (size_t i = 0; i < n->n; i++) {
        const struct yd_node *v = n->values[i];
        if (v->kind != YD_SCALAR || !*n->keys[i]->scalar) {
            perr(p, v, "%s: tags: '%s' must be a non-empty key with a value", what,
                 n->keys[i]->scalar);
            continue;
        }
        d->tags[d->ntags].key = strdup(n->keys[i]->scalar);
        d->tags[d->ntags].value = strdup(v->scalar);
        d->ntags++;
    }
}

static void parse_hide(struct parse *p, const struct yd_node *n, struct slo_def *d,
                       const char *what)
{
    if (n->kind != YD_SEQ) {
        perr(p, n, "%s: hide: expected a list such as [window, aggregation]", what);
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        const struct yd_node *v = n->values[i];
        if (v->kind == YD_SCALAR && !strcmp(v->scalar, "window"))
            d->hide_window = true;
        else if (v->kind == YD_SCALAR && !strcmp(v->scalar, "aggregation"))
            d->hide_aggregation = true;
        else
            perr(p, v, "%s: hide: only 'window' and 'aggregation' can be hidden (leave out "
                       "description or unit to hide those)", what);
    }
}

/* error_budget: {target: 0.9, window: 24h}: fulfilled 90% of any 24 h. The window is measured
 * on the compliance steps, so it must hold whole steps, and no more than the ring allows. */
static void parse_budget(struct parse *p, const struct yd_node *slo, struct slo_def *d,
                         const char *what)
{
    const struct yd_node *b = yd_get(slo, "error_budget");
    if (!b || is_null(b))
        return;
    if (b->kind != YD_MAP) {
        perr(p, b, "%s: error_budget: expected a map such as {target: 0.9, window: 24h}, not a %s",
             what, yd_kind_name(b->kind));
        return;
    }
    static const struct config_key keys[] = {{"target"}, {"window"}, {NULL}};
    char where[160];
    snprintf(where, sizeof(where), "%s: error_budget", what);
    check_keys(p, b, where, keys);
    const struct yd_node *t = yd_get(b, "target");
    double target = 0;
    if (!t)
        perr(p, b, "%s: 'target' is required: the share of the window the SLO must be "
                   "fulfilled, e.g. target: 0.9", where);
    else if (number(p, t, false, &target, where) && !(target > 0 && target < 1))
        perr(p, t, "%s: target: %s is not a share: use a number between 0 and 1 (exclusive), "
                   "e.g. 0.9 for 90%% of the time", where, t->scalar);
    if (!yd_get(b, "window"))
        perr(p, b, "%s: 'window' is required: the rolling window, e.g. window: 24h", where);
    int64_t window = duration(p, b, "window", 24 * 3600 * 1000 * MS, 1000,
                              366LL * 24 * 3600 * 1000, where);
    if (window < d->compliance_step_ns ||
        window / d->compliance_step_ns > MAX_COMPLIANCE_STEPS)
        perr(p, b, "%s: the window must hold 1 to %d compliance steps (compliance_step is "
                   "%lld ms): lengthen the window or raise compliance_step", where,
             MAX_COMPLIANCE_STEPS, (long long)(d->compliance_step_ns / MS));
    if (target > 0 && target < 1) {
        d->budget_target = target;
        d->budget_window_ns = window;
    }
}

/* The signature is compared, never read: numbers go in as the hex of their bits and strings
 * with their length, without printf (formatting five doubles with %.17g was a tenth of a reload
 * of 1,000 SLOs). */
struct sig {
    char *buf;
    size_t len, cap;
    bool nomem;
};

static void sig_put(struct sig *g, const void *data, size_t len)
{
    if (g->nomem)
        return;
    if (g->len + len + 1 > g->cap) {
        size_t cap = g->cap ? g->cap : 256;
        while (cap < g->len + len + 1)
            cap *= 2;
        char *b = realloc(g->buf, cap);
        if (!b) {
            g->nomem = true;
            return;
        }
        g->buf = b;
        g->cap = cap;
    }
    memcpy(g->buf + g->len, data, len);
    g->len += len;
    g->buf[g->len] = 0;
}

static void sig_u64(struct sig *g, uint64_t v)
{
    char hex[17];
    for (int i = 15; i >= 0; i--, v >>= 4)
        hex[i] = "0123456789abcdef"[v & 15];
    hex[16] = '|';
    sig_put(g, hex, sizeof(hex));
}

static void sig_double(struct sig *g, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    sig_u64(g, bits);
}

static void sig_str(struct sig *g, const char *s)
{
    size_t n = strlen(s);
    sig_u64(g, n);
    sig_put(g, s, n);
}

static char *make_signature(const struct slo_def *d)
{
    struct sig g = {0};
    sig_u64(&g, (uint64_t)d->kind);
    sig_str(&g, d->series);
    sig_u64(&g, (uint64_t)d->agg);
    sig_double(&g, d->q);
    sig_u64(&g, (uint64_t)d->window_ns);
    sig_u64(&g, (uint64_t)d->has_min << 2 | (uint64_t)d->has_max << 1 | (uint64_t)d->is_target);
    sig_double(&g, d->min);
    sig_double(&g, d->max);
    sig_str(&g, d->zone);
    sig_u64(&g, (uint64_t)d->compliance_period_ns);
    sig_u64(&g, (uint64_t)d->compliance_step_ns);
    sig_double(&g, d->budget_target);
    sig_u64(&g, (uint64_t)d->budget_window_ns);
    for (size_t i = 0; i < d->ntags; i++) {
        sig_str(&g, d->tags[i].key);
        sig_str(&g, d->tags[i].value);
    }
    if (g.nomem) {
        free(g.buf);
        return NULL;
    }
    return g.buf;
}

/* n is a map (parse_list checked). */
static void parse_slo(struct parse *p, const struct yd_node *n, struct slo_def *d)
{
    p->failed = false;
    static const struct config_key keys[] = {
        {"id"},     {"description"}, {"unit"},        {"kind"},
        {"series"}, {"power_series"}, {"tags"},       {"aggregation"},
        {"window"}, {"objective"},   {"zone"},        {"hide"},
        {"compliance_period"},       {"compliance_step"}, {"error_budget"}, {NULL}};
    const char *id = scalar(p, n, "id", "slo");
    char what[128];
    if (!id || !valid_id(id)) {
        perr(p, id ? yd_get(n, "id") : n,
             "slo: %s: the public id (alias) is required: 1 to %d letters, digits or _-.:",
             id ? "bad id" : "no id", MAX_ID_LEN);
        snprintf(what, sizeof(what), "slo");
    } else {
        snprintf(what, sizeof(what), "slo '%s'", id);
    }
    check_keys(p, n, what, keys);
    d->id = strdup(id ? id : "");
    const char *desc = scalar(p, n, "description", what), *unit = scalar(p, n, "unit", what);
    d->description = strdup(desc && !is_null(yd_get(n, "description")) ? desc : "");
    d->unit = strdup(unit && !is_null(yd_get(n, "unit")) ? unit : "");

    const char *kind = scalar(p, n, "kind", what);
    d->kind = SLO_KIND_VALUE;
    if (kind && !strcmp(kind, "carbon_footprint"))
        d->kind = SLO_KIND_CARBON_FOOTPRINT;
    else if (kind && strcmp(kind, "value"))
        perr(p, yd_get(n, "kind"), "%s: kind: '%s' is not a kind: use value or carbon_footprint",
             what, kind);

    const char *series = scalar(p, n, "series", what), *power = scalar(p, n, "power_series", what);
    const char *zone = scalar(p, n, "zone", what);
    if (d->kind == SLO_KIND_VALUE) {
        if (!series || !*series)
            perr(p, n, "%s: 'series' is required (the time series the SLO aggregates)", what);
        if (power)
            perr(p, yd_get(n, "power_series"), "%s: power_series is for kind: carbon_footprint",
                 what);
        if (zone)
            perr(p, yd_get(n, "zone"), "%s: zone is for kind: carbon_footprint", what);
    } else {
        if (!power || !*power)
            perr(p, n, "%s: 'power_series' is required (the power series, in W)", what);
        if (series)
            perr(p, yd_get(n, "series"),
                 "%s: a carbon_footprint SLO takes power_series, not series", what);
        series = power;
    }
    d->series = strdup(series ? series : "");
    d->zone = strdup(zone ? zone : "");
    const struct yd_node *tags = yd_get(n, "tags");
    if (tags && !is_null(tags))
        parse_tags(p, tags, d, what);

    const char *agg = scalar(p, n, "aggregation", what);
    d->agg = TSDB_AGG_MEAN;
    d->q = 0;
    bool agg_ok = !agg || tsdb_agg_parse(agg, &d->agg, &d->q) == CASCA_OK;
    if (agg_ok && agg && d->agg == TSDB_AGG_QUANTILE && !strcmp(agg, "quantile"))
        agg_ok = false; /* a quantile is named by its shorthand: p50, p90, p99, median */
    if (!agg_ok) {
        perr(p, yd_get(n, "aggregation"),
             "%s: aggregation: '%s' is not one of mean, min, max, sum, count, last, rate, p50, "
             "p90, p99, median",
             what, agg);
        d->agg = TSDB_AGG_MEAN;
    }
    if (d->kind == SLO_KIND_CARBON_FOOTPRINT && d->agg != TSDB_AGG_MEAN && d->agg != TSDB_AGG_MIN &&
        d->agg != TSDB_AGG_MAX && d->agg != TSDB_AGG_LAST)
        perr(p, yd_get(n, "aggregation"),
             "%s: aggregation: a carbon_footprint SLO takes mean, min, max or last", what);
    d->aggregation = strdup(agg && !p->failed ? agg : tsdb_agg_name(d->agg));

    if (!yd_get(n, "window"))
        perr(p, n, "%s: 'window' is required (the rolling window, e.g. window: 5m)", what);
    d->window_ns = duration(p, n, "window", 60000 * MS, 1000, MAX_WINDOW_MS, what);
    d->compliance_period_ns = duration(p, n, "compliance_period", p->sc->compliance_period_ns,
                                       1000, 366LL * 24 * 3600 * 1000, what);
    d->compliance_step_ns = duration(p, n, "compliance_step", p->sc->compliance_step_ns, 100,
                                     24LL * 3600 * 1000, what);
    if (d->compliance_step_ns > d->compliance_period_ns ||
        d->compliance_period_ns / d->compliance_step_ns > MAX_COMPLIANCE_STEPS)
        perr(p, n, "%s: the compliance period must hold 1 to %d steps: raise compliance_step "
                   "or shorten compliance_period", what, MAX_COMPLIANCE_STEPS);
    const struct yd_node *hide = yd_get(n, "hide");
    if (hide && !is_null(hide))
        parse_hide(p, hide, d, what);
    parse_objective(p, n, d, what);
    parse_budget(p, n, d, what);
    if ((p->file ? asprintf(&d->where, "%s:%u:%u", p->file, n->line, n->col)
                 : asprintf(&d->where, "line %u column %u of the config file", n->line, n->col)) <
        0)
        d->where = NULL;
    d->signature = make_signature(d);
}

static void parse_list(struct parse *p, const struct yd_node *seq, struct slo_config *sc)
{
    if (seq->kind != YD_SEQ) {
        perr(p, seq, "slos: expected a list of SLOs (- id: ...)");
        return;
    }
    struct slo_def *grown = realloc(sc->v, (sc->n + seq->n) * sizeof(*grown));
    if (!grown && seq->n)
        return;
    sc->v = grown;
    for (size_t i = 0; i < seq->n; i++) {
        /* an item that is not a map is left out: it has no id to compare with the next ones */
        if (!config_expect(p->ld, p->file, seq->values[i], YD_MAP,
                           "slos: each SLO is a map (- id: ..., series: ..., objective: ...)"))
            continue;
        struct slo_def *d = &sc->v[sc->n];
        memset(d, 0, sizeof(*d));
        parse_slo(p, seq->values[i], d);
        if (!d->id || !d->signature || !d->where || !d->series || !d->zone || !d->aggregation ||
            !d->description || !d->unit) {
            if (!p->failed)
                perr(p, seq->values[i], "out of memory");
        }
        long j = d->id && *d->id ? idset_add(p->ids, sc, sc->n) : -1;
        if (j >= 0)
            perr(p, yd_get(seq->values[i], "id"), "slo '%s' is declared twice (first at %s)",
                 d->id, sc->v[j].where ? sc->v[j].where : "?");
        sc->n++;
    }
}

static void parse_files(struct parse *mainp, const struct yd_node *files, struct slo_config *sc)
{
    if (files->kind != YD_SEQ) {
        perr(mainp, files, "slo_files: expected a list of file names");
        return;
    }
    for (size_t i = 0; i < files->n; i++) {
        const struct yd_node *f = files->values[i];
        if (!config_expect(mainp->ld, mainp->file, f, YD_SCALAR, "slo_files: expected a file name"))
            continue;
        if (!*f->scalar) {
            perr(mainp, f, "slo_files: expected a file name, not ''");
            continue;
        }
        char *path = config_resolve_path(mainp->ld, f->scalar);
        char err[1024];
        struct yd_doc *doc = NULL;
        if (!path || yd_parse_file(path, &doc, err, sizeof(err)) != CASCA_OK) {
            perr(mainp, f, "slo_files: %s", path ? err : "out of memory");
            free(path);
            continue;
        }
        struct parse p = {.ld = mainp->ld, .ids = mainp->ids, .file = path, .sc = mainp->sc};
        const struct yd_node *root = doc->root, *list = root;
        if (root && root->kind == YD_MAP) {
            static const struct config_key keys[] = {{"slos"}, {NULL}};
            check_keys(&p, root, "SLO file", keys);
            list = yd_get(root, "slos");
        }
        if (!list || is_null(list)) {
            if (!root || root->kind != YD_MAP || !list)
                perr(&p, root, "an SLO file holds a list of SLOs, or a map with a 'slos:' list");
        } else {
            parse_list(&p, list, sc);
        }
        yd_free(doc);
        free(path);
    }
}

static void parse_engine(struct parse *p, const struct yd_node *n, struct slo_config *sc)
{
    if (n->kind != YD_MAP) {
        perr(p, n, "slo_engine: expected a map such as {interval: 1s, compliance_period: 1h}");
        return;
    }
    static const struct config_key keys[] = {
        {"interval"}, {"compliance_period"}, {"compliance_step"}, {"history_max_samples"}, {NULL}};
    check_keys(p, n, "slo_engine", keys);
    sc->interval_ns = duration(p, n, "interval", sc->interval_ns, 10, 3600 * 1000, "slo_engine");
    sc->compliance_period_ns = duration(p, n, "compliance_period", sc->compliance_period_ns, 1000,
                                        366LL * 24 * 3600 * 1000, "slo_engine");
    sc->compliance_step_ns = duration(p, n, "compliance_step", sc->compliance_step_ns, 100,
                                      24LL * 3600 * 1000, "slo_engine");
    const char *max = scalar(p, n, "history_max_samples", "slo_engine");
    if (max) {
        uint64_t v = 0;
        const char *why = config_parse_uint(max, &v);
        if (why || v < 1 || v > 1000000)
            perr(p, yd_get(n, "history_max_samples"),
                 "slo_engine: history_max_samples: %s", why ? why : "use 1 .. 1000000");
        else
            sc->history_max_samples = v;
    }
}

static void *slo_config_parse(struct config_loader *ld, const struct yd_node *const values[])
{
    struct slo_config *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return NULL;
    *sc = defaults;
    struct idset ids = {0};
    struct parse p = {.ld = ld, .ids = &ids, .sc = sc}; /* the main configuration file */
    if (values[2] && !is_null(values[2]))
        parse_engine(&p, values[2], sc);
    if (values[0] && !is_null(values[0]))
        parse_list(&p, values[0], sc);
    if (values[1] && !is_null(values[1]))
        parse_files(&p, values[1], sc);
    free(ids.slot);
    return sc;
}

const struct config_section slo_config_section = {
    .keys = (const char *const[]){SLO_CONFIG_KEYS, NULL},
    .parse = slo_config_parse,
    .free = slo_config_free,
};
