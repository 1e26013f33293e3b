#include "carbon.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "carbon_csv.h"
#include "carbon_providers.h"
#include "replay.h"
#include "carbondb.h"
#include "casca/v1/carbon.pb-c.h"
#include "casca_err.h"
#include "clock.h"
#include "log.h"
#include "timeconv.h"

#ifndef CASCA_DATA_DIR
#define CASCA_DATA_DIR "data/carbon"
#endif

#define HOUR_NS CARBONDB_HOUR_NS
#define MAX_SERIES_HOURS (367 * 24) /* one request reads at most about a year of hours */
#define MAX_FETCH_HOURS (31 * 24)   /* a live provider is asked for at most a month at once */
#define MAX_HISTORY_POINTS 10000
#define UNKNOWN_SOURCE "unknown"

typedef Casca__V1__Granularity Gran;
#define G_HOURLY CASCA__V1__GRANULARITY__GRANULARITY_HOURLY
#define G_DAILY CASCA__V1__GRANULARITY__GRANULARITY_DAILY
#define G_MONTHLY CASCA__V1__GRANULARITY__GRANULARITY_MONTHLY
#define G_YEARLY CASCA__V1__GRANULARITY__GRANULARITY_YEARLY

/* ---- the config section ---- */

struct factor {
    char *source, *description;
    double g;
};

struct factor_set {
    char *name, *basis;
    struct factor *f;
    size_t n;
};

struct carbon_conf {
    char *default_zone;
    char *bundled_data;
    bool estimate;
    char *default_set;
    struct factor_set *sets; /* sets[0] is the built-in IPCC AR5 set */
    size_t nsets;
    struct carbon_provider_conf *providers;
    size_t nproviders;
    struct replay_conf replay;
};

#define IPCC_SET "IPCC AR5 2014 lifecycle medians"
static const struct {
    const char *source;
    double g;
    const char *description;
} ipcc_ar5[] = {
    {"coal", 820, "coal, pulverised"},
    {"gas", 490, "natural gas, combined cycle"},
    {"oil", 650, "oil (AR5 gives none; UK POST 2014)"},
    {"biomass", 230, "biomass, dedicated"},
    {"biomass_cofiring", 740, "biomass, co-firing with coal"},
    {"solar", 48, "solar PV, utility scale"},
    {"solar_rooftop", 41, "solar PV, rooftop"},
    {"solar_concentrated", 27, "concentrated solar power"},
    {"geothermal", 38, "geothermal"},
    {"hydro", 24, "hydropower"},
    {"nuclear", 12, "nuclear"},
    {"wind_offshore", 12, "wind, offshore"},
    {"wind_onshore", 11, "wind, onshore"},
    {UNKNOWN_SOURCE, 700, "a source not known: conservative default"},
};

static void free_set(struct factor_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->f[i].source);
        free(s->f[i].description);
    }
    free(s->f);
    free(s->name);
    free(s->basis);
}

static void carbon_config_free(void *section)
{
    struct carbon_conf *c = section;
    if (!c) return;
    for (size_t i = 0; i < c->nsets; i++)
        free_set(&c->sets[i]);
    free(c->sets);
    for (size_t i = 0; i < c->nproviders; i++) {
        struct carbon_provider_conf *p = &c->providers[i];
        free(p->url);
        free(p->token);
        free(p->token_env);
        for (size_t z = 0; z < p->nzones; z++)
            free(p->zones[z]);
        free(p->zones);
    }
    free(c->providers);
    free(c->default_zone);
    free(c->bundled_data);
    free(c->default_set);
    free(c);
}

static bool add_factor(struct factor_set *s, const char *source, double g, const char *desc)
{
    struct factor *f = realloc(s->f, (s->n + 1) * sizeof(*f));
    if (!f) return false;
    s->f = f;
    f[s->n] = (struct factor){strdup(source), strdup(desc ? desc : ""), g};
    for (char *p = f[s->n].source; p && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    s->n++;
    return true;
}

static const struct factor_set *find_set(const struct carbon_conf *c, const char *name)
{
    for (size_t i = 0; i < c->nsets; i++)
        if (!strcasecmp(c->sets[i].name, name)) return &c->sets[i];
    return NULL;
}

static bool scalar(struct config_loader *ld, const struct yd_node *n, const char *what)
{
    if (n && n->kind == YD_SCALAR) return true;
    config_error(ld, n, "%s must be a value, not a %s", what,
                 n ? yd_kind_name(n->kind) : "nothing");
    return false;
}

/* n is a map (parse_factor_sets checked). */
static void parse_factor_set(struct config_loader *ld, const struct yd_node *n,
                             struct carbon_conf *c)
{
    static const char *const bases[] = {"lifecycle", "direct", NULL};
    static const struct config_key keys[] = {
        {"name", CONFIG_STR, offsetof(struct factor_set, name)},
        {"basis", CONFIG_CHOICE, offsetof(struct factor_set, basis), "lifecycle", .choices = bases},
        {"sources"},
        {NULL}};
    struct factor_set s = {0};
    config_key_defaults(ld, keys, &s);
    config_load_keys(ld, keys, n, "carbon.factor_sets", &s);
    const struct yd_node *sources = yd_get(n, "sources");
    struct factor_set *sets = NULL;
    if (!s.name || !*s.name)
        config_error(ld, n, "a factor set needs a name");
    else if (find_set(c, s.name))
        config_error(ld, yd_get(n, "name"), "factor set '%s' is defined twice", s.name);
    else if (!sources || sources->kind != YD_MAP || !sources->n)
        config_error(ld, sources ? sources : n,
                     "factor set '%s' needs sources: a map of source: gCO2eq/kWh", s.name);
    else
        sets = realloc(c->sets, (c->nsets + 1) * sizeof(*sets));
    if (!sets) {
        free_set(&s);
        return;
    }
    c->sets = sets;
    struct factor_set *set = &sets[c->nsets++];
    *set = s;
    for (size_t i = 0; i < sources->n; i++) {
        const struct yd_node *v = sources->values[i], *fv = v, *dv = NULL;
        const char *src = sources->keys[i]->scalar;
        if (!carbondb_zone_valid(src)) { /* same alphabet: letters, digits, '-', '_' */
            config_error(ld, sources->keys[i], "source name '%s': use letters, digits, '-', '_'",
                         src);
            continue;
        }
        if (v->kind == YD_MAP) {
            fv = yd_get(v, "factor");
            dv = yd_get(v, "description");
            if (!fv) {
                config_error(ld, v, "source '%s' needs factor: gCO2eq/kWh", src);
                continue;
            }
        }
        double g;
        const char *why = scalar(ld, fv, "a factor") ? config_parse_double(fv->scalar, &g) : "";
        if (why && *why)
            config_error(ld, fv, "factor of '%s': '%s': %s", src, fv->scalar, why);
        else if (!why && g < 0)
            config_error(ld, fv, "factor of '%s' is negative", src);
        else if (!why)
            add_factor(set, src, g, dv && dv->kind == YD_SCALAR ? dv->scalar : "");
    }
}

/* carbon.factor_sets: a list of maps {name, basis, sources}; obj is the carbon_conf. */
static void parse_factor_sets(struct config_loader *ld, const struct yd_node *seq, void *obj)
{
    for (size_t i = 0; i < seq->n; i++)
        if (config_expect(ld, NULL, seq->values[i], YD_MAP,
                          "carbon.factor_sets items are maps {name, basis, sources}"))
            parse_factor_set(ld, seq->values[i], obj);
}

/* A provider's zones: obj is its carbon_provider_conf. */
static void parse_zones(struct config_loader *ld, const struct yd_node *seq, void *obj)
{
    struct carbon_provider_conf *p = obj;
    p->zones = calloc(seq->n ? seq->n : 1, sizeof(char *));
    for (size_t i = 0; p->zones && i < seq->n; i++) {
        if (!scalar(ld, seq->values[i], "a zone") || !carbondb_zone_valid(seq->values[i]->scalar)) {
            config_error(ld, seq->values[i], "not a zone code (e.g. DE, US-CAL-CISO)");
            continue;
        }
        p->zones[p->nzones++] = strdup(seq->values[i]->scalar);
    }
}

#define PROVIDER(field) offsetof(struct carbon_provider_conf, field)

/* An item of carbon.providers given as a map (url and token_env default to the provider's). */
static const struct config_key provider_keys[] = {
    {"name"},
    {"url", CONFIG_STR, PROVIDER(url)},
    {"token_env", CONFIG_STR, PROVIDER(token_env)},
    {"ttl", CONFIG_MS, PROVIDER(ttl_ms), "1h"},
    {"timeout", CONFIG_MS, PROVIDER(timeout_ms), "5s", 10, 120000},
    {"zones", CONFIG_LIST, 0, .list = parse_zones},
    {NULL},
};

static void parse_provider(struct config_loader *ld, const struct yd_node *n, struct carbon_conf *c)
{
    const struct yd_node *name = n->kind == YD_SCALAR ? n : yd_get(n, "name");
    if (n->kind == YD_SEQ || !name || name->kind != YD_SCALAR) {
        config_error(ld, n,
                     "carbon.providers items are a provider name or a map {name, url, "
                     "token_env, ttl, timeout, zones}");
        return;
    }
    const struct carbon_provider_ops *ops = carbon_provider_find(name->scalar);
    if (!ops) {
        char list[128] = "";
        for (const struct carbon_provider_ops *const *p = carbon_provider_table; *p; p++)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                     p == carbon_provider_table ? "" : ", ", (*p)->name);
        config_error(ld, name, "unknown carbon provider '%s' (known: %s)", name->scalar, list);
        return;
    }
    for (size_t i = 0; i < c->nproviders; i++)
        if (c->providers[i].ops == ops) {
            config_error(ld, name, "carbon provider '%s' is listed twice", ops->name);
            return;
        }
    struct carbon_provider_conf *ps = realloc(c->providers, (c->nproviders + 1) * sizeof(*ps));
    if (!ps) return;
    c->providers = ps;
    struct carbon_provider_conf *p = &ps[c->nproviders++];
    *p = (struct carbon_provider_conf){.ops = ops};
    config_key_defaults(ld, provider_keys, p);
    if (n->kind == YD_MAP) {
        if (!ops->fetch && n->n > 1)
            config_error(ld, n, "the bundled provider takes no settings (see carbon.bundled_data)");
        config_load_keys(ld, provider_keys, n, "carbon.providers", p);
    }
    if (p->url && strncmp(p->url, "http://", 7) && strncmp(p->url, "https://", 8))
        config_error(ld, yd_get(n, "url"), "url must start with http:// or https://");
    if (!p->url && ops->default_url)
        p->url = strdup(ops->default_url);
    for (size_t l = p->url ? strlen(p->url) : 0; l && p->url[l - 1] == '/';)
        p->url[--l] = 0;
    if (!p->token_env && ops->token_env)
        p->token_env = strdup(ops->token_env);
    const char *t = p->token_env && ops->fetch ? getenv(p->token_env) : NULL;
    if (t && *t)
        p->token = strdup(t);
    else if (p->token_env && ops->fetch)
        config_error(ld, name,
                     "carbon provider %s: environment variable %s (its API key) is not set",
                     ops->name, p->token_env);
}

/* carbon.providers: a list of names or maps; obj is the carbon_conf. */
static void parse_providers(struct config_loader *ld, const struct yd_node *seq, void *obj)
{
    for (size_t i = 0; i < seq->n; i++)
        parse_provider(ld, seq->values[i], obj);
}

#define CARBON(field) offsetof(struct carbon_conf, field)

/* carbon: (replay is read by replay_parse; bundled_data defaults to CASCA_DATA_DIR). */
static const struct config_key carbon_keys[] = {
    {"default_zone", CONFIG_STR, CARBON(default_zone), "AT"},
    {"bundled_data", CONFIG_PATH, CARBON(bundled_data)},
    {"estimate_from_nearest_year", CONFIG_BOOL, CARBON(estimate), "false"},
    {"default_factor_set", CONFIG_STR, CARBON(default_set), IPCC_SET},
    {"factor_sets", CONFIG_LIST, 0, .list = parse_factor_sets},
    {"providers", CONFIG_LIST, 0, .list = parse_providers},
    {"replay"},
    {NULL},
};

static void *carbon_config_parse(struct config_loader *ld, const struct yd_node *const values[])
{
    const struct yd_node *root = values[0];
    struct carbon_conf *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->sets = calloc(1, sizeof(*c->sets));
    if (c->sets) {
        c->nsets = 1;
        c->sets[0] = (struct factor_set){strdup(IPCC_SET), strdup("lifecycle"), NULL, 0};
        for (size_t i = 0; i < sizeof(ipcc_ar5) / sizeof(ipcc_ar5[0]); i++)
            add_factor(&c->sets[0], ipcc_ar5[i].source, ipcc_ar5[i].g, ipcc_ar5[i].description);
    }
    config_key_defaults(ld, carbon_keys, c);
    config_load_keys(ld, carbon_keys, root, "carbon", c);
    const struct yd_node *v;
    if ((v = yd_get(root, "default_zone")) && !carbondb_zone_valid(c->default_zone))
        config_error(ld, v, "carbon.default_zone: '%s' is not a zone code (e.g. AT, DE)",
                     c->default_zone);
    if ((v = yd_get(root, "default_factor_set")) && !find_set(c, c->default_set))
        config_error(ld, v, "default_factor_set: no factor set named '%s'", c->default_set);
    replay_parse(ld, yd_get(root, "replay"), &c->replay);
    bool has_bundled = false;
    for (size_t i = 0; i < c->nproviders; i++)
        has_bundled |= c->providers[i].ops == &carbon_provider_bundled;
    if (!has_bundled) {
        struct carbon_provider_conf *ps = realloc(c->providers, (c->nproviders + 1) * sizeof(*ps));
        if (ps) {
            c->providers = ps;
            ps[c->nproviders++] = (struct carbon_provider_conf){.ops = &carbon_provider_bundled};
        }
    }
    if (!c->bundled_data)
        c->bundled_data = strdup(CASCA_DATA_DIR);
    return c;
}

const struct config_section carbon_config_section = {
    .keys = (const char *const[]){CARBON_CONFIG_KEYS, NULL},
    .parse = carbon_config_parse,
    .free = carbon_config_free,
};

/* ---- the module ---- */

struct carbon {
    struct config_live *live;
    struct carbondb *db;
    char *loaded_dir; /* the bundled_data dir loaded last */
    struct replay_clock clock; /* carbon.replay's */
};

static struct carbon_conf *conf_of(const struct config *cfg)
{
    return config_section_of(cfg, &carbon_config_section);
}

const char *carbon_default_zone(const struct config *cfg)
{
    const struct carbon_conf *c = conf_of(cfg);
    return c && c->default_zone ? c->default_zone : "";
}

size_t carbon_zones(const struct config *cfg, const char **out, size_t max)
{
    const struct carbon_conf *c = conf_of(cfg);
    size_t n = 0;
    const char *first = carbon_default_zone(cfg);
    if (*first && n < max)
        out[n++] = first;
    for (size_t p = 0; c && p < c->nproviders; p++)
        for (size_t z = 0; z < c->providers[p].nzones; z++) {
            const char *zone = c->providers[p].zones[z];
            bool seen = false;
            for (size_t i = 0; i < n && !seen; i++)
                seen = !strcmp(out[i], zone);
            if (!seen && n < max)
                out[n++] = zone;
        }
    return n;
}

static int64_t mono_ms(void)
{
    return casca_mono_ns() / CASCA_NS_PER_MS;
}

static void load_bundled(struct carbon *c, const char *dir)
{
    if (!*dir) return; /* bundled data switched off */
    int64_t t0 = mono_ms();
    struct carbon_load_report rep;
    int rc = carbon_load_bundled(c->db, dir, &rep);
    if (rc)
        log_warn("carbon", "loading bundled carbon data from %s failed: %s", dir,
                 casca_strerror(rc));
    else if (rep.files_loaded) {
        log_info("carbon",
                 "bundled carbon data loaded from %s in %lld ms: %zu files, %zu hours, "
                 "%zu yearly figures%s%s",
                 dir, (long long)(mono_ms() - t0), rep.files_loaded, rep.hours, rep.years,
                 *rep.error ? "; " : "", rep.error);
        malloc_trim(0); /* the load's parse buffers (about 12 MB) go back to the OS, not idle */
    } else if (*rep.error)
        log_warn("carbon", "%s", rep.error);
    else
        log_info("carbon", "bundled carbon data up to date (%zu files checked in %lld ms)",
                 rep.files_skipped, (long long)(mono_ms() - t0));
    free(c->loaded_dir);
    c->loaded_dir = strdup(dir);
}

/* ---- time ---- */

struct civil {
    int y, m, d, h;
};

static struct civil civil_of_hour(int64_t hour)
{
    int64_t days = hour / 24, h = hour % 24, y;
    if (h < 0) {
        days--;
        h += 24;
    }
    unsigned m, d;
    casca_civil_from_days(days, &y, &m, &d);
    return (struct civil){(int)y, (int)m, (int)d, (int)h};
}

static int64_t hour_of_civil(struct civil c)
{
    return casca_days_from_civil(c.y, (unsigned)c.m, (unsigned)c.d) * 24 + c.h;
}

/* The period [from, to) in hours that holds hour at granularity g. */
static void period_of(int64_t hour, Gran g, int64_t *from, int64_t *to)
{
    struct civil c = civil_of_hour(hour);
    switch (g) {
    case G_DAILY:
        *from = hour_of_civil((struct civil){c.y, c.m, c.d, 0});
        *to = *from + 24;
        break;
    case G_MONTHLY:
        *from = hour_of_civil((struct civil){c.y, c.m, 1, 0});
        *to =
            hour_of_civil((struct civil){c.m == 12 ? c.y + 1 : c.y, c.m == 12 ? 1 : c.m + 1, 1, 0});
        break;
    case G_YEARLY:
        *from = hour_of_civil((struct civil){c.y, 1, 1, 0});
        *to = hour_of_civil((struct civil){c.y + 1, 1, 1, 0});
        break;
    default:
        *from = hour;
        *to = hour + 1;
    }
}

static void fmt_hour(int64_t hour, char *buf, size_t len)
{
    struct civil c = civil_of_hour(hour);
    snprintf(buf, len, "%04d-%02d-%02dT%02dZ", c.y, c.m, c.d, c.h);
}

static const char *gran_name(Gran g)
{
    switch (g) {
    case G_DAILY:
        return "daily";
    case G_MONTHLY:
        return "monthly";
    case G_YEARLY:
        return "yearly";
    default:
        return "hourly";
    }
}

/* ---- series: hourly values of a zone over a range, from the providers in order ---- */

struct series {
    int64_t from, to;
    double *g; /* NAN where no provider had the hour */
    uint8_t *src, *flags;
    size_t n, have;
    char note[384];
};

static void series_free(struct series *s)
{
    free(s->g);
    free(s->src);
    free(s->flags);
    memset(s, 0, sizeof(*s));
}

static int series_init(struct series *s, int64_t from, int64_t to)
{
    memset(s, 0, sizeof(*s));
    s->from = from;
    s->to = to;
    s->n = (size_t)(to - from);
    s->g = malloc(s->n * sizeof(double));
    s->src = calloc(s->n, 1);
    s->flags = calloc(s->n, 1);
    if (!s->g || !s->src || !s->flags) {
        series_free(s);
        return CASCA_ERR_NOMEM;
    }
    for (size_t i = 0; i < s->n; i++)
        s->g[i] = NAN;
    return CASCA_OK;
}

static void note_add(char *note, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void note_add(char *note, size_t cap, const char *fmt, ...)
{
    size_t l = strlen(note);
    if (l && l + 2 < cap) {
        memcpy(note + l, "; ", 3);
        l += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(note + l, cap - l, fmt, ap);
    va_end(ap);
}

/* Fills the still-missing hours of s from hours (fresh_after_ns: cache records fetched before it
 * are skipped; 0 takes all). */
static void fill(struct series *s, const struct carbondb_hour *h, size_t n, int64_t fresh_after_ns,
                 uint8_t source)
{
    for (size_t i = 0; i < n; i++) {
        if (h[i].hour < s->from || h[i].hour >= s->to || h[i].fetched_ns < fresh_after_ns) continue;
        size_t k = (size_t)(h[i].hour - s->from);
        if (!isnan(s->g[k])) continue;
        s->g[k] = h[i].g;
        s->src[k] = source ? source : h[i].source;
        s->flags[k] = h[i].flags;
        s->have++;
    }
}

/* The smallest span [a, b) of s holding every missing hour; false when none is missing. */
static bool missing_span(const struct series *s, int64_t *a, int64_t *b)
{
    size_t i = 0, j = s->n;
    while (i < s->n && !isnan(s->g[i]))
        i++;
    if (i == s->n) return false;
    while (j > i && !isnan(s->g[j - 1]))
        j--;
    *a = s->from + (int64_t)i;
    *b = s->from + (int64_t)j;
    return true;
}

struct lookup {
    struct carbon *c;
    const struct carbon_conf *conf;
    bool network;        /* live providers may be asked (worker threads only) */
    int64_t deadline_ms; /* monotonic; 0 = none */
};

static int ask_provider(const struct lookup *lk, const struct carbon_provider_conf *p,
                        const char *zone, struct series *s)
{
    int64_t a, b;
    if (!missing_span(s, &a, &b)) return CASCA_OK;
    int64_t now = casca_wall_ns();
    struct carbondb_hour *cached = NULL;
    size_t nc = 0;
    int rc = carbondb_cache_get(lk->c->db, p->ops->source, zone, a, b, &cached, &nc);
    if (rc) return rc;
    fill(s, cached, nc, now - (int64_t)p->ttl_ms * 1000000, 0);
    int64_t now_h = now / HOUR_NS;
    bool want = missing_span(s, &a, &b);
    if (want) { /* only what the provider can answer, at most a month */
        if (p->ops->past_days && a < now_h - p->ops->past_days * 24)
            a = now_h - p->ops->past_days * 24;
        if (b > now_h + 1 + p->ops->future_hours) b = now_h + 1 + p->ops->future_hours;
        if (b - a > MAX_FETCH_HOURS) a = b - MAX_FETCH_HOURS;
        want = a < b;
    }
    long timeout = (long)p->timeout_ms;
    if (want && lk->deadline_ms) {
        int64_t left = lk->deadline_ms - mono_ms() - 20;
        if (left < timeout) timeout = (long)left;
    }
    if (want && lk->network && timeout > 0) {
        struct carbon_hours got = {0};
        char why[200] = "";
        rc = p->ops->fetch(p, zone, a, b, now_h, timeout, &got, why, sizeof(why));
        if (rc == CASCA_OK) {
            for (size_t i = 0; i < got.n; i++) {
                got.a[i].source = p->ops->source;
                got.a[i].fetched_ns = now;
            }
            int wrc = carbondb_cache_put(lk->c->db, p->ops->source, zone, got.a, got.n);
            if (wrc)
                log_warn("carbon", "cannot cache %s answers for %s: %s", p->ops->name, zone,
                         casca_strerror(wrc));
            fill(s, got.a, got.n, 0, p->ops->source);
        } else {
            log_warn("carbon", "provider %s (%s) failed for zone %s: %s", p->ops->name, p->url,
                     zone, why);
            note_add(s->note, sizeof(s->note), "%s unavailable: %s", p->ops->name, why);
            size_t before = s->have;
            fill(s, cached, nc, 0, 0); /* stale answers beat none */
            if (s->have > before)
                note_add(s->note, sizeof(s->note), "older cached %s figures used", p->ops->name);
        }
        carbon_hours_free(&got);
        rc = CASCA_OK;
    } else {
        fill(s, cached, nc, 0, 0); /* no network here: cached answers of any age */
    }
    free(cached);
    return rc;
}

static int from_providers(const struct lookup *lk, const char *zone, struct series *s)
{
    int rc = CASCA_OK;
    for (size_t i = 0; i < lk->conf->nproviders && !rc && s->have < s->n; i++) {
        const struct carbon_provider_conf *p = &lk->conf->providers[i];
        int64_t a, b;
        if (!missing_span(s, &a, &b)) break;
        if (!p->ops->fetch) {
            struct carbondb_hour *h = NULL;
            size_t n = 0;
            if (!(rc = carbondb_get_hours(lk->c->db, zone, a, b, &h, &n))) fill(s, h, n, 0, 0);
            free(h);
        } else if (carbon_provider_serves(p, zone)) {
            rc = ask_provider(lk, p, zone, s);
        }
    }
    return rc;
}

/* The zones a country code stands for: its grid zones "DK-..." with hourly data, when the code
 * has no hourly data of its own. */
static int grid_zones(struct carbon *c, const char *zone, struct carbondb_zone **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (strlen(zone) != 2) return CASCA_OK;
    char prefix[4];
    snprintf(prefix, sizeof(prefix), "%s-", zone);
    struct carbondb_zone *zs;
    size_t nz, k = 0;
    int rc = carbondb_zones(c->db, prefix, &zs, &nz);
    if (rc) return rc;
    for (size_t i = 0; i < nz; i++)
        if (zs[i].first_hour >= 0) zs[k++] = zs[i];
    if (!k) {
        free(zs);
        zs = NULL;
    }
    *out = zs;
    *n = k;
    return CASCA_OK;
}

static bool has_own_hours(struct carbon *c, const char *zone)
{
    struct carbondb_hour h;
    size_t n = 0;
    int rc = carbondb_read_hours(c->db, zone, 0, (int64_t)UINT32_MAX, &h, 1, &n);
    return n > 0 || rc == CASCA_ERR_FULL;
}

static int load_series(const struct lookup *lk, const char *zone, int64_t from, int64_t to,
                       bool estimate, struct series *s);

/* Country code: the per-hour mean of its grid zones. */
static int from_grid_zones(const struct lookup *lk, const char *zone, struct series *s)
{
    struct carbondb_zone *zs;
    size_t nz;
    int rc = grid_zones(lk->c, zone, &zs, &nz);
    if (rc || !nz || has_own_hours(lk->c, zone)) {
        free(zs);
        return rc;
    }
    double *sum = calloc(s->n, sizeof(double));
    unsigned *cnt = calloc(s->n, sizeof(unsigned));
    char names[200] = "";
    for (size_t z = 0; z < nz && sum && cnt && !rc; z++) {
        struct series sub;
        if ((rc = load_series(lk, zs[z].zone, s->from, s->to, false, &sub))) break;
        if (sub.have)
            snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
                     *names ? ", " : "", zs[z].zone);
        for (size_t i = 0; i < s->n; i++) {
            if (isnan(sub.g[i]) || !isnan(s->g[i])) continue;
            sum[i] += sub.g[i];
            cnt[i]++;
            s->src[i] = sub.src[i];
            s->flags[i] |= sub.flags[i];
        }
        if (*sub.note) note_add(s->note, sizeof(s->note), "%s", sub.note);
        series_free(&sub);
    }
    if (!sum || !cnt) rc = rc ? rc : CASCA_ERR_NOMEM;
    for (size_t i = 0; !rc && i < s->n; i++)
        if (cnt[i] && isnan(s->g[i])) {
            s->g[i] = sum[i] / cnt[i];
            s->have++;
        }
    if (!rc && s->have)
        note_add(s->note, sizeof(s->note),
                 "%s has no data of its own: the mean of its grid zones %s", zone, names);
    free(sum);
    free(cnt);
    free(zs);
    return rc;
}

/* The year with hourly data nearest to year for zone (or its grid zones); 0 if none. */
static int nearest_hourly_year(struct carbon *c, const char *zone, int year)
{
    struct carbondb_zone *zs;
    size_t nz;
    int best = 0;
    if (carbondb_zones(c->db, zone, &zs, &nz)) return 0;
    for (size_t i = 0; i < nz; i++) {
        size_t zl = strlen(zone);
        if (zs[i].first_hour < 0 || strncmp(zs[i].zone, zone, zl) ||
            (zs[i].zone[zl] && zs[i].zone[zl] != '-'))
            continue;
        int fy = civil_of_hour(zs[i].first_hour).y, ly = civil_of_hour(zs[i].last_hour).y;
        int y = year < fy ? fy : year > ly ? ly : year;
        if (y != year && (!best || abs(y - year) < abs(best - year) ||
                          (abs(y - year) == abs(best - year) && y > best)))
            best = y;
    }
    free(zs);
    return best;
}

static int64_t shift_year(int64_t hour, int dy)
{
    struct civil cv = civil_of_hour(hour);
    cv.y += dy;
    if (cv.m == 2 && cv.d == 29) cv.d = 28; /* the same hour of a year without 29 February */
    return hour_of_civil(cv);
}

/* Nothing covers the range: the same hours of the nearest covered year, flagged estimated. */
static int from_nearest_year(const struct lookup *lk, const char *zone, struct series *s)
{
    int year = civil_of_hour(s->from).y;
    int y = nearest_hourly_year(lk->c, zone, year);
    if (!y) return CASCA_OK;
    int dy = y - year;
    struct series sub;
    int64_t a = shift_year(s->from, dy), b = shift_year(s->to - 1, dy) + 1;
    if (b <= a || b - a > MAX_SERIES_HOURS + 48) return CASCA_OK;
    struct lookup quiet = *lk;
    quiet.network = false;
    int rc = load_series(&quiet, zone, a, b, false, &sub);
    if (rc) return rc;
    for (size_t i = 0; i < s->n; i++) {
        int64_t h = shift_year(s->from + (int64_t)i, dy);
        if (h < sub.from || h >= sub.to || isnan(sub.g[h - sub.from])) continue;
        s->g[i] = sub.g[h - sub.from];
        s->src[i] = sub.src[h - sub.from];
        s->flags[i] = sub.flags[h - sub.from] | CARBONDB_ESTIMATED;
        s->have++;
    }
    if (s->have)
        note_add(s->note, sizeof(s->note),
                 "no data for %d: the same hours of %d stand in (estimated from the nearest "
                 "covered year)",
                 year, y);
    series_free(&sub);
    return CASCA_OK;
}

static int load_series(const struct lookup *lk, const char *zone, int64_t from, int64_t to,
                       bool estimate, struct series *s)
{
    int rc = series_init(s, from, to);
    if (!rc) rc = from_providers(lk, zone, s);
    if (!rc && !s->have) rc = from_grid_zones(lk, zone, s);
    if (!rc && !s->have && estimate && lk->conf->estimate) rc = from_nearest_year(lk, zone, s);
    if (rc) series_free(s);
    return rc;
}

/* ---- figures ---- */

/* The providers of the hours [i, j) of s, "a" or "a+b". */
static const char *providers_of(const struct series *s, size_t i, size_t j)
{
    uint8_t first = 0;
    bool mixed = false;
    for (size_t k = i; k < j; k++) {
        if (isnan(s->g[k])) continue;
        if (!first)
            first = s->src[k];
        else if (strcmp(carbondb_source_name(s->src[k]), carbondb_source_name(first)))
            mixed = true;
    }
    return mixed ? "mixed" : carbondb_source_name(first);
}

/* Mean of the hours [i, j) of s into fig; false when none has data. */
static bool mean_of(const struct series *s, size_t i, size_t j, struct carbon_figure *fig)
{
    double sum = 0;
    size_t n = 0;
    uint8_t flags = 0;
    for (size_t k = i; k < j; k++)
        if (!isnan(s->g[k])) {
            sum += s->g[k];
            n++;
            flags |= s->flags[k];
        }
    if (!n) return false;
    memset(fig, 0, sizeof(*fig));
    fig->gco2eq_per_kwh = sum / (double)n;
    fig->provider = providers_of(s, i, j);
    fig->estimated = flags & (CARBONDB_ESTIMATED | CARBONDB_FORECAST);
    fig->forecast = flags & CARBONDB_FORECAST;
    fig->direct = flags & CARBONDB_DIRECT;
    snprintf(fig->note, sizeof(fig->note), "%.255s", s->note);
    if (n < j - i)
        note_add(fig->note, sizeof(fig->note), "mean of the %zu of %zu hours with data", n, j - i);
    return true;
}

static const char *yearly_note(uint8_t source)
{
    return source == CARBONDB_SRC_OWID_YEARLY
               ? "yearly figure of Our World in Data / Ember (CC BY 4.0)"
               : "yearly mean published by Electricity Maps (ODbL)";
}

/* Explains what data zone has, for a NOT_FOUND message. */
static void coverage_of(struct carbon *c, const char *zone, char *buf, size_t len)
{
    struct carbondb_zone *zs;
    size_t nz;
    *buf = 0;
    if (carbondb_zones(c->db, zone, &zs, &nz)) return;
    for (size_t i = 0; i < nz; i++) {
        if (strcmp(zs[i].zone, zone)) continue;
        char a[32], b[32];
        if (zs[i].first_hour >= 0) {
            fmt_hour(zs[i].first_hour, a, sizeof(a));
            fmt_hour(zs[i].last_hour, b, sizeof(b));
            snprintf(buf, len, "%s has hourly data %s..%s", zone, a, b);
        }
        if (zs[i].first_year)
            snprintf(buf + strlen(buf), len - strlen(buf), "%s yearly figures %d..%d",
                     *buf ? " and" : zone, zs[i].first_year, zs[i].last_year);
    }
    free(zs);
}

/* The figure of the period of granularity g holding hour. NOT_FOUND (msg says why) when no data. */
static int figure_for(const struct lookup *lk, const char *zone, int64_t hour, Gran g,
                      struct carbon_figure *fig, char *msg, size_t msglen)
{
    int64_t from, to;
    period_of(hour, g, &from, &to);
    struct lookup lk2 = *lk;
    if (to - from > MAX_FETCH_HOURS) lk2.network = false; /* a year is answered from stored data */
    struct series s;
    int rc = load_series(&lk2, zone, from, to, false, &s);
    if (rc) return rc;
    bool complete = s.have == s.n;
    bool found = complete && mean_of(&s, 0, s.n, fig);
    struct carbondb_year y;
    if (!found && g == G_YEARLY && !carbondb_get_year(lk->c->db, zone, civil_of_hour(from).y, &y)) {
        memset(fig, 0, sizeof(*fig));
        fig->gco2eq_per_kwh = y.g;
        fig->provider = carbondb_source_name(y.source);
        snprintf(fig->note, sizeof(fig->note), "%s", yearly_note(y.source));
        found = true;
    }
    if (!found) found = mean_of(&s, 0, s.n, fig);
    char down[384];
    snprintf(down, sizeof(down), "%s", s.note); /* a provider that failed, if any */
    series_free(&s);
    if (!found && lk->conf->estimate) {
        if ((rc = load_series(&lk2, zone, from, to, true, &s))) return rc;
        found = mean_of(&s, 0, s.n, fig);
        series_free(&s);
        if (!found && g == G_YEARLY) { /* the nearest year of the yearly table */
            int year = civil_of_hour(from).y;
            for (int d = 1; d < 100 && !found; d++)
                for (int sign = 1; sign >= -1 && !found; sign -= 2)
                    if (!carbondb_get_year(lk->c->db, zone, year + sign * d, &y)) {
                        memset(fig, 0, sizeof(*fig));
                        fig->gco2eq_per_kwh = y.g;
                        fig->provider = carbondb_source_name(y.source);
                        fig->estimated = true;
                        snprintf(fig->note, sizeof(fig->note),
                                 "no figure for %d: the %s of %d stands in (estimated from the "
                                 "nearest covered year)",
                                 year, yearly_note(y.source), y.year);
                        found = true;
                    }
        }
    }
    if (found) return CASCA_OK;
    char when[32], cov[200];
    fmt_hour(hour, when, sizeof(when));
    if (*down) {
        snprintf(msg, msglen,
                 "no carbon intensity for %s at %s: %s, and no cached or bundled "
                 "data stands in",
                 zone, when, down);
        return CASCA_ERR_UNAVAILABLE;
    }
    coverage_of(lk->c, zone, cov, sizeof(cov));
    if (*cov)
        snprintf(msg, msglen,
                 "no %s carbon intensity for %s at %s: %s. Import an Electricity "
                 "Maps export (casca carbon import) or enable carbon.estimate_from_nearest_year",
                 gran_name(g), zone, when, cov);
    else
        snprintf(msg, msglen,
                 "no carbon-intensity data for zone '%s' at %s: ListZones lists "
                 "the zones with data",
                 zone, when);
    return CASCA_ERR_NOT_FOUND;
}

int carbon_intensity_at(struct carbon *c, const char *zone, int64_t time_ns,
                        struct carbon_figure *out)
{
    struct config *cfg = config_live_get(c->live);
    const struct carbon_conf *conf = conf_of(cfg);
    if (!zone || !*zone) zone = conf->default_zone;
    int rc = CASCA_ERR_INVALID;
    char msg[400];
    if (carbondb_zone_valid(zone) && time_ns >= 0) {
        struct lookup lk = {c, conf, false, 0};
        rc = figure_for(&lk, zone, time_ns / HOUR_NS, G_HOURLY, out, msg, sizeof(msg));
    }
    config_unref(cfg);
    return rc;
}

/* ---- mixes ---- */

static int mix_intensity(const struct carbon_conf *conf, const char *set_name,
                         Casca__V1__MixShare **shares, size_t n, const struct factor_set **used,
                         double *g, char *note, size_t notelen, char *msg, size_t msglen)
{
    const struct factor_set *set = find_set(conf, *set_name ? set_name : conf->default_set);
    *note = 0;
    if (!set) {
        char list[300] = "";
        for (size_t i = 0; i < conf->nsets; i++)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s'%s'", i ? ", " : "",
                     conf->sets[i].name);
        snprintf(msg, msglen, "unknown factor set '%.80s' (known: %s)", set_name, list);
        return CASCA_ERR_NOT_FOUND;
    }
    if (!n) {
        snprintf(msg, msglen,
                 "the mix is empty: give shares such as {source: \"wind_onshore\", "
                 "share: 0.6} (ListSources lists the sources)");
        return CASCA_ERR_INVALID;
    }
    double total = 0, sum = 0;
    for (size_t i = 0; i < n; i++) {
        const struct factor *f = NULL;
        for (size_t k = 0; k < set->n && !f; k++)
            if (!strcasecmp(set->f[k].source, shares[i]->source)) f = &set->f[k];
        if (!f) {
            char list[400] = "";
            for (size_t k = 0; k < set->n; k++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", k ? ", " : "",
                         set->f[k].source);
            snprintf(msg, msglen, "unknown energy source '%.60s' in factor set '%s' (known: %s)",
                     shares[i]->source, set->name, list);
            return CASCA_ERR_INVALID;
        }
        if (!isfinite(shares[i]->share) || shares[i]->share < 0) {
            snprintf(msg, msglen,
                     "share of '%s' is %g: shares must be >= 0 (fractions or "
                     "percentages)",
                     f->source, shares[i]->share);
            return CASCA_ERR_INVALID;
        }
        if (!strcmp(f->source, UNKNOWN_SOURCE) && shares[i]->share > 0)
            snprintf(note, notelen, "'unknown' counted at the conservative default %g gCO2eq/kWh",
                     f->g);
        total += shares[i]->share;
        sum += shares[i]->share * f->g;
    }
    if (!(total > 0)) {
        snprintf(msg, msglen, "the shares add up to 0: at least one must be positive");
        return CASCA_ERR_INVALID;
    }
    *g = sum / total;
    *used = set;
    return CASCA_OK;
}

/* ---- handlers ---- */

static void set_ts(Google__Protobuf__Timestamp *t, int64_t secs)
{
    google__protobuf__timestamp__init(t);
    t->seconds = secs;
}

/* Resolves "" to the default zone and upper-cases; false when not a zone code. */
static bool zone_of(const struct carbon_conf *conf, const char *in, char *out)
{
    const char *z = *in ? in : conf->default_zone;
    if (!carbondb_zone_valid(z)) return false;
    size_t i = 0;
    for (; z[i]; i++)
        out[i] = (char)toupper((unsigned char)z[i]);
    out[i] = 0;
    return true;
}

static Gran gran_of(Gran g)
{
    return g == G_DAILY || g == G_MONTHLY || g == G_YEARLY ? g : G_HOURLY;
}

/* Everything an Intensity message points to. */
struct intensity_msg {
    Casca__V1__Intensity m;
    Google__Protobuf__Timestamp time;
    Google__Protobuf__Duration dur;
    char zone[CARBONDB_ZONE_MAX];
    char note[256];
};

static void intensity_fill(struct intensity_msg *im, const char *zone, int64_t from, int64_t to,
                           Gran g, const struct carbon_figure *fig)
{
    casca__v1__intensity__init(&im->m);
    snprintf(im->zone, sizeof(im->zone), "%s", zone);
    snprintf(im->note, sizeof(im->note), "%s", fig->note);
    set_ts(&im->time, from * 3600);
    google__protobuf__duration__init(&im->dur);
    im->dur.seconds = (to - from) * 3600;
    im->m.zone = im->zone;
    im->m.time = &im->time;
    im->m.duration = &im->dur;
    im->m.gco2eq_per_kwh = fig->gco2eq_per_kwh;
    im->m.granularity = g;
    im->m.provider = (char *)fig->provider;
    im->m.estimated = fig->estimated;
    im->m.basis = fig->direct ? "direct" : "lifecycle";
    im->m.note = im->note;
}

struct call {
    struct carbon *c;
    struct config *cfg;
    const struct carbon_conf *conf;
    struct lookup lk;
};

static void call_begin(struct rpc_ctx *ctx, struct call *k)
{
    k->c = rpc_method_arg(ctx);
    k->cfg = config_live_get(k->c->live);
    k->conf = conf_of(k->cfg);
    int64_t left = rpc_deadline_ms(ctx);
    k->lk = (struct lookup){k->c, k->conf, true, left == INT64_MAX ? 0 : mono_ms() + left};
}

/* A request's time; unset = now, which under carbon.replay is the replayed time. */
static bool ts_ns(struct call *k, const Google__Protobuf__Timestamp *t, int64_t *ns)
{
    if (!t) {
        *ns = replay_time(&k->c->clock, &k->conf->replay, casca_wall_ns());
        return true;
    }
    if (t->seconds < 0 || t->seconds > 4102444800LL * 10 || t->nanos < 0 || t->nanos > 999999999)
        return false;
    *ns = casca_ns_of(t->seconds, t->nanos);
    return true;
}

static void get_mix_intensity(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    const Casca__V1__GetMixIntensityRequest *req = (const void *)msg;
    struct call k;
    call_begin(ctx, &k);
    const struct factor_set *set;
    double g;
    char note[160], err[600];
    int rc = mix_intensity(k.conf, req->factor_set, req->shares, req->n_shares, &set, &g, note,
                           sizeof(note), err, sizeof(err));
    if (rc) {
        rpc_finish(ctx, rc, "%s", err);
    } else {
        Casca__V1__Intensity m = CASCA__V1__INTENSITY__INIT;
        m.gco2eq_per_kwh = g;
        m.factor_set = set->name;
        m.basis = set->basis;
        m.note = note;
        rpc_reply(ctx, &m.base);
    }
    config_unref(k.cfg);
}

static void list_sources(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    const Casca__V1__ListSourcesRequest *req = (const void *)msg;
    struct call k;
    call_begin(ctx, &k);
    const char *name = *req->factor_set ? req->factor_set : k.conf->default_set;
    const struct factor_set *set = find_set(k.conf, name);
    if (!set) {
        char list[300] = "";
        for (size_t i = 0; i < k.conf->nsets; i++)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s'%s'", i ? ", " : "",
                     k.conf->sets[i].name);
        rpc_finish(ctx, CASCA_ERR_NOT_FOUND, "unknown factor set '%.80s' (known: %s)", name, list);
        config_unref(k.cfg);
        return;
    }
    Casca__V1__SourceFactor *f = calloc(set->n, sizeof(*f));
    Casca__V1__SourceFactor **fp = calloc(set->n, sizeof(*fp));
    if (!f || !fp) {
        rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
    } else {
        for (size_t i = 0; i < set->n; i++) {
            casca__v1__source_factor__init(&f[i]);
            f[i].source = set->f[i].source;
            f[i].gco2eq_per_kwh = set->f[i].g;
            f[i].description = set->f[i].description;
            fp[i] = &f[i];
        }
        Casca__V1__ListSourcesResponse resp = CASCA__V1__LIST_SOURCES_RESPONSE__INIT;
        resp.factor_set = set->name;
        resp.n_sources = set->n;
        resp.sources = fp;
        rpc_reply(ctx, &resp.base);
    }
    free(f);
    free(fp);
    config_unref(k.cfg);
}

static void get_location_intensity(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    const Casca__V1__GetLocationIntensityRequest *req = (const void *)msg;
    struct call k;
    call_begin(ctx, &k);
    char zone[CARBONDB_ZONE_MAX], err[600];
    int64_t t;
    Gran g = gran_of(req->granularity);
    struct carbon_figure fig;
    int rc;
    if (!zone_of(k.conf, req->zone, zone)) {
        rpc_finish(ctx, CASCA_ERR_INVALID,
                   "zone '%.40s' is not a zone code (e.g. AT, DE, "
                   "US-CAL-CISO: letters, digits, '-')",
                   req->zone);
    } else if (!ts_ns(&k, req->time, &t) || t < 0) {
        rpc_finish(ctx, CASCA_ERR_INVALID, "time must be a valid time after 1970-01-01");
    } else if ((rc = figure_for(&k.lk, zone, t / HOUR_NS, g, &fig, err, sizeof(err)))) {
        rpc_finish(ctx, rc, "%s",
                   rc == CASCA_ERR_NOT_FOUND || rc == CASCA_ERR_UNAVAILABLE ? err
                                                                            : casca_strerror(rc));
    } else {
        struct intensity_msg im;
        int64_t from, to;
        period_of(t / HOUR_NS, g, &from, &to);
        if (!req->time && k.conf->replay.on) { /* "now" was the replayed time: say so */
            char note[96];
            replay_note(&k.conf->replay, note, sizeof(note));
            note_add(fig.note, sizeof(fig.note), "%s", note);
        }
        intensity_fill(&im, zone, from, to, g, &fig);
        rpc_reply(ctx, &im.m.base);
    }
    config_unref(k.cfg);
}

static void get_location_history(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    const Casca__V1__GetLocationHistoryRequest *req = (const void *)msg;
    struct call k;
    call_begin(ctx, &k);
    char zone[CARBONDB_ZONE_MAX], err[600];
    int64_t start, end;
    Gran g = gran_of(req->granularity);
    struct intensity_msg *ims = NULL;
    Casca__V1__Intensity **pts = NULL;
    size_t n = 0;
    if (!zone_of(k.conf, req->zone, zone)) {
        rpc_finish(ctx, CASCA_ERR_INVALID, "zone '%.40s' is not a zone code (e.g. AT, DE)",
                   req->zone);
        goto out;
    }
    if (!req->start || !ts_ns(&k, req->start, &start) || !ts_ns(&k, req->end, &end) || start < 0) {
        rpc_finish(ctx, CASCA_ERR_INVALID,
                   "start is required (and end, when given, must be a "
                   "valid time after 1970-01-01)");
        goto out;
    }
    if (end <= start) {
        rpc_finish(ctx, CASCA_ERR_INVALID, "end must be after start");
        goto out;
    }
    int64_t from, to, ignore;
    period_of(start / HOUR_NS, g, &from, &ignore);
    period_of((end - 1) / HOUR_NS, g, &ignore, &to);
    size_t max = g == G_HOURLY ? MAX_SERIES_HOURS : MAX_HISTORY_POINTS;
    int64_t periods = g == G_HOURLY    ? to - from
                      : g == G_DAILY   ? (to - from) / 24
                      : g == G_MONTHLY ? (to - from) / (24 * 28)
                                       : (to - from) / (24 * 365);
    if (periods > (int64_t)max) {
        rpc_finish(ctx, CASCA_ERR_INVALID,
                   "the range holds about %lld %s points, more than %zu: "
                   "ask for a shorter range or a coarser granularity",
                   (long long)periods, gran_name(g), max);
        goto out;
    }
    /* Live providers are asked once for the whole range (it fills their cache); the periods are
     * then read from the cache and the store. */
    char warm_note[384] = "";
    if (to - from <= MAX_FETCH_HOURS) {
        struct series s;
        if (!load_series(&k.lk, zone, from, to, false, &s)) {
            snprintf(warm_note, sizeof(warm_note), "%s", s.note);
            series_free(&s);
        }
    }
    struct lookup quiet = k.lk;
    quiet.network = false;
    ims = calloc((size_t)periods + 2, sizeof(*ims));
    pts = calloc((size_t)periods + 2, sizeof(*pts));
    if (!ims || !pts) {
        rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
        goto out;
    }
    int rc = CASCA_OK;
    for (int64_t p = from; p < to && n < (size_t)periods + 2;) {
        int64_t a, b;
        period_of(p, g, &a, &b);
        struct carbon_figure fig;
        rc = figure_for(&quiet, zone, a, g, &fig, err, sizeof(err));
        if (rc == CASCA_OK) {
            if (*warm_note && !strstr(fig.note, warm_note))
                note_add(fig.note, sizeof(fig.note), "%s", warm_note);
            intensity_fill(&ims[n], zone, a, b, g, &fig);
            pts[n] = &ims[n].m;
            n++;
        } else if (rc != CASCA_ERR_NOT_FOUND) {
            break;
        }
        rc = CASCA_OK;
        p = b;
    }
    if (rc) {
        rpc_finish(ctx, rc, "%s", casca_strerror(rc));
    } else if (!n && !has_own_hours(k.c, zone)) {
        char cov[200];
        coverage_of(k.c, zone, cov, sizeof(cov));
        if (*cov)
            rpc_finish(ctx, CASCA_ERR_NOT_FOUND, "no %s data for %s in that range: %s",
                       gran_name(g), zone, cov);
        else
            rpc_finish(ctx, CASCA_ERR_NOT_FOUND,
                       "no carbon-intensity data for zone '%s': "
                       "ListZones lists the zones with data",
                       zone);
    } else {
        Casca__V1__GetLocationHistoryResponse resp = CASCA__V1__GET_LOCATION_HISTORY_RESPONSE__INIT;
        resp.n_points = n;
        resp.points = pts;
        rpc_reply(ctx, &resp.base);
    }
out:
    free(ims);
    free(pts);
    config_unref(k.cfg);
}

static void list_zones(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    const Casca__V1__ListZonesRequest *req = (const void *)msg;
    struct call k;
    call_begin(ctx, &k);
    struct carbondb_zone *zs = NULL;
    size_t nz = 0;
    char prefix[CARBONDB_ZONE_MAX];
    size_t pl = strlen(req->prefix);
    if (pl >= CARBONDB_ZONE_MAX) {
        rpc_finish(ctx, CASCA_ERR_INVALID, "prefix is longer than any zone code");
        config_unref(k.cfg);
        return;
    }
    for (size_t i = 0; i <= pl; i++)
        prefix[i] = (char)toupper((unsigned char)req->prefix[i]);
    int rc = carbondb_zones(k.c->db, prefix, &zs, &nz);
    /* per zone: its hourly coverage, its yearly coverage, and each live provider naming it */
    size_t cap = nz * 2 + 64, n = 0;
    Casca__V1__Zone *z = calloc(cap, sizeof(*z));
    Casca__V1__Zone **zp = calloc(cap, sizeof(*zp));
    Google__Protobuf__Timestamp *ts = calloc(cap * 2, sizeof(*ts));
    static Casca__V1__Granularity all[] = {G_HOURLY, G_DAILY, G_MONTHLY, G_YEARLY};
    static Casca__V1__Granularity yearly[] = {G_YEARLY};
    if (rc || !z || !zp || !ts) {
        rpc_finish(ctx, rc ? rc : CASCA_ERR_NOMEM, "cannot list the zones: %s",
                   casca_strerror(rc ? rc : CASCA_ERR_NOMEM));
        goto out;
    }
    for (size_t i = 0; i < nz; i++) {
        if (zs[i].first_hour >= 0) {
            casca__v1__zone__init(&z[n]);
            z[n].zone = zs[i].zone;
            z[n].name = zs[i].name;
            set_ts(&ts[2 * n], zs[i].first_hour * 3600);
            set_ts(&ts[2 * n + 1], (zs[i].last_hour + 1) * 3600);
            z[n].first = &ts[2 * n];
            z[n].last = &ts[2 * n + 1];
            z[n].n_granularities = 4;
            z[n].granularities = all;
            z[n].provider = (char *)carbondb_source_name(zs[i].hourly_source);
            zp[n] = &z[n];
            n++;
        }
        if (zs[i].first_year) {
            casca__v1__zone__init(&z[n]);
            z[n].zone = zs[i].zone;
            z[n].name = zs[i].name;
            set_ts(&ts[2 * n], casca_days_from_civil(zs[i].first_year, 1, 1) * 86400);
            set_ts(&ts[2 * n + 1], casca_days_from_civil(zs[i].last_year + 1, 1, 1) * 86400);
            z[n].first = &ts[2 * n];
            z[n].last = &ts[2 * n + 1];
            z[n].n_granularities = 1;
            z[n].granularities = yearly;
            z[n].provider = (char *)carbondb_source_name(zs[i].yearly_source);
            zp[n] = &z[n];
            n++;
        }
    }
    int64_t now_h = casca_wall_ns() / HOUR_NS;
    for (size_t i = 0; i < k.conf->nproviders; i++) {
        const struct carbon_provider_conf *p = &k.conf->providers[i];
        const char *const *list = (const char *const *)p->zones;
        size_t nl = p->nzones;
        if (!p->ops->fetch || (!list && !p->ops->zones)) continue;
        if (!list)
            for (nl = 0, list = p->ops->zones; list[nl]; nl++)
                ;
        for (size_t j = 0; j < nl && n < cap; j++) {
            if (strncmp(list[j], prefix, pl)) continue;
            casca__v1__zone__init(&z[n]);
            z[n].zone = (char *)list[j];
            z[n].name = "";
            set_ts(&ts[2 * n], (now_h - 24) * 3600);
            set_ts(&ts[2 * n + 1], (now_h + 1 + p->ops->future_hours) * 3600);
            z[n].first = &ts[2 * n];
            z[n].last = &ts[2 * n + 1];
            z[n].n_granularities = 4;
            z[n].granularities = all;
            z[n].provider = (char *)p->ops->name;
            zp[n] = &z[n];
            n++;
        }
    }
    Casca__V1__ListZonesResponse resp = CASCA__V1__LIST_ZONES_RESPONSE__INIT;
    resp.n_zones = n;
    resp.zones = zp;
    rpc_reply(ctx, &resp.base);
out:
    free(z);
    free(zp);
    free(ts);
    free(zs);
    config_unref(k.cfg);
}

static bool duration_ns(const Google__Protobuf__Duration *d, int64_t *ns)
{
    if (!d || d->seconds < 0 || d->nanos < 0 || d->seconds > 100LL * 366 * 86400) return false;
    *ns = casca_ns_of(d->seconds, d->nanos);
    return *ns > 0;
}

static void compute_footprint(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    const Casca__V1__ComputeFootprintRequest *req = (const void *)msg;
    struct call k;
    call_begin(ctx, &k);
    double wh;
    int64_t dur;
    char err[600];
    struct intensity_msg im;
    struct carbon_figure fig;
    if (req->energy_case == CASCA__V1__COMPUTE_FOOTPRINT_REQUEST__ENERGY_ENERGY_WH) {
        wh = req->energy_wh;
        if (!isfinite(wh) || wh < 0) {
            rpc_finish(ctx, CASCA_ERR_INVALID, "energy_wh must be a number >= 0 (watt-hours)");
            goto out;
        }
    } else if (req->energy_case == CASCA__V1__COMPUTE_FOOTPRINT_REQUEST__ENERGY_POWER) {
        if (!isfinite(req->power->power_w) || req->power->power_w < 0 ||
            !duration_ns(req->power->duration, &dur)) {
            rpc_finish(ctx, CASCA_ERR_INVALID,
                       "power needs power_w >= 0 (watts) and a positive "
                       "duration");
            goto out;
        }
        wh = req->power->power_w * (double)dur / 3.6e12;
    } else {
        rpc_finish(ctx, CASCA_ERR_INVALID,
                   "set the energy: energy_wh, or power {power_w, duration}");
        goto out;
    }
    bool sci = req->optional_functional_units_case ==
               CASCA__V1__COMPUTE_FOOTPRINT_REQUEST__OPTIONAL_FUNCTIONAL_UNITS_FUNCTIONAL_UNITS;
    bool embodied = req->optional_embodied_gco2eq_case ==
                    CASCA__V1__COMPUTE_FOOTPRINT_REQUEST__OPTIONAL_EMBODIED_GCO2EQ_EMBODIED_GCO2EQ;
    if (sci && !(isfinite(req->functional_units) && req->functional_units > 0)) {
        rpc_finish(ctx, CASCA_ERR_INVALID, "functional_units (the SCI R) must be > 0");
        goto out;
    }
    if (embodied && !(isfinite(req->embodied_gco2eq) && req->embodied_gco2eq >= 0)) {
        rpc_finish(ctx, CASCA_ERR_INVALID, "embodied_gco2eq (the SCI M) must be >= 0");
        goto out;
    }
    if (req->where_case == CASCA__V1__COMPUTE_FOOTPRINT_REQUEST__WHERE_AT) {
        char zone[CARBONDB_ZONE_MAX];
        int64_t t, from, to;
        Gran g = gran_of(req->at->granularity);
        if (!zone_of(k.conf, req->at->zone, zone)) {
            rpc_finish(ctx, CASCA_ERR_INVALID, "at.zone '%.40s' is not a zone code", req->at->zone);
            goto out;
        }
        if (!ts_ns(&k, req->at->time, &t) || t < 0) {
            rpc_finish(ctx, CASCA_ERR_INVALID, "at.time must be a valid time after 1970-01-01");
            goto out;
        }
        int rc = figure_for(&k.lk, zone, t / HOUR_NS, g, &fig, err, sizeof(err));
        if (rc) {
            rpc_finish(ctx, rc, "%s",
                       rc == CASCA_ERR_NOT_FOUND || rc == CASCA_ERR_UNAVAILABLE
                           ? err
                           : casca_strerror(rc));
            goto out;
        }
        period_of(t / HOUR_NS, g, &from, &to);
        intensity_fill(&im, zone, from, to, g, &fig);
    } else if (req->where_case == CASCA__V1__COMPUTE_FOOTPRINT_REQUEST__WHERE_MIX) {
        const struct factor_set *set;
        double g;
        char note[160];
        int rc = mix_intensity(k.conf, req->mix->factor_set, req->mix->shares, req->mix->n_shares,
                               &set, &g, note, sizeof(note), err, sizeof(err));
        if (rc) {
            rpc_finish(ctx, rc, "%s", err);
            goto out;
        }
        casca__v1__intensity__init(&im.m);
        im.m.gco2eq_per_kwh = g;
        im.m.factor_set = set->name;
        im.m.basis = set->basis;
        snprintf(im.note, sizeof(im.note), "%s", note);
        im.m.note = im.note;
    } else {
        rpc_finish(ctx, CASCA_ERR_INVALID,
                   "set where the energy came from: at {zone, time} or mix");
        goto out;
    }
    Casca__V1__Footprint fp = CASCA__V1__FOOTPRINT__INIT;
    fp.energy_wh = wh;
    fp.gco2eq = wh / 1000.0 * im.m.gco2eq_per_kwh;
    fp.intensity = &im.m;
    fp.functional_unit = req->functional_unit;
    if (sci && embodied) {
        fp.has_sci = true;
        fp.sci_gco2eq_per_unit = (fp.gco2eq + req->embodied_gco2eq) / req->functional_units;
    }
    rpc_reply(ctx, &fp.base);
out:
    config_unref(k.cfg);
}

/* The integral of the intensity from the series' start to t_ns, in hour units (cum: prefix sums).
 */
static double integral(const struct series *s, const double *cum, int64_t t_ns)
{
    int64_t off = t_ns - s->from * HOUR_NS;
    size_t i = (size_t)(off / HOUR_NS);
    double frac = (double)(off % HOUR_NS) / HOUR_NS;
    return cum[i] + (i < s->n && frac > 0 ? frac * s->g[i] : 0);
}

static void get_best_window(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    const Casca__V1__GetBestWindowRequest *req = (const void *)msg;
    struct call k;
    call_begin(ctx, &k);
    char zone[CARBONDB_ZONE_MAX];
    int64_t start, end, dur;
    struct series s = {0};
    double *cum = NULL;
    unsigned *gaps = NULL;
    if (!zone_of(k.conf, req->zone, zone)) {
        rpc_finish(ctx, CASCA_ERR_INVALID, "zone '%.40s' is not a zone code", req->zone);
        goto out;
    }
    if (!ts_ns(&k, req->start, &start) || start < 0 || !req->end || !ts_ns(&k, req->end, &end)) {
        rpc_finish(ctx, CASCA_ERR_INVALID,
                   "end is required (and start, when given, must be a "
                   "valid time after 1970-01-01)");
        goto out;
    }
    if (!duration_ns(req->duration, &dur)) {
        rpc_finish(ctx, CASCA_ERR_INVALID, "duration must be positive (the length of the job)");
        goto out;
    }
    if (end - start < dur) {
        rpc_finish(ctx, CASCA_ERR_INVALID,
                   "the job (%lld s) does not fit between start and end "
                   "(%lld s)",
                   (long long)(dur / 1000000000), (long long)((end - start) / 1000000000));
        goto out;
    }
    int64_t from = start / HOUR_NS, to = (end + HOUR_NS - 1) / HOUR_NS;
    if (to - from > MAX_SERIES_HOURS) {
        rpc_finish(ctx, CASCA_ERR_INVALID,
                   "start..end spans more than %d days: ask for a shorter "
                   "range",
                   MAX_SERIES_HOURS / 24);
        goto out;
    }
    struct lookup lk = k.lk;
    if (to - from > MAX_FETCH_HOURS) lk.network = false;
    int rc = load_series(&lk, zone, from, to, true, &s);
    if (rc) {
        rpc_finish(ctx, rc, "%s", casca_strerror(rc));
        goto out;
    }
    /* cum[i]: the integral of the intensity over hours [from, from + i) in g/kWh x hours, so the
     * mean over any [t, t + dur) is (F(t + dur) - F(t)) / dur; gaps[i] counts missing hours. */
    cum = calloc(s.n + 1, sizeof(double));
    gaps = calloc(s.n + 1, sizeof(unsigned));
    if (!cum || !gaps) {
        rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < s.n; i++) {
        bool miss = isnan(s.g[i]);
        cum[i + 1] = cum[i] + (miss ? 0 : s.g[i]);
        gaps[i + 1] = gaps[i] + miss;
    }
    int64_t best_t = -1;
    double best = INFINITY;
    for (int64_t t = start; t + dur <= end;) {
        size_t i0 = (size_t)((t - from * HOUR_NS) / HOUR_NS);
        size_t i1 = (size_t)((t + dur - from * HOUR_NS + HOUR_NS - 1) / HOUR_NS);
        if (i1 > s.n) i1 = s.n;
        if (gaps[i1] == gaps[i0]) {
            double mean =
                (integral(&s, cum, t + dur) - integral(&s, cum, t)) * (double)HOUR_NS / (double)dur;
            if (mean < best - 1e-9) {
                best = mean;
                best_t = t;
            }
        }
        t = (t / HOUR_NS + 1) * HOUR_NS; /* window starts: start, then every hour boundary */
    }
    if (best_t < 0) {
        char cov[200];
        coverage_of(k.c, zone, cov, sizeof(cov));
        rpc_finish(ctx, CASCA_ERR_NOT_FOUND,
                   "no window of that length in that range has "
                   "carbon-intensity data for %s%s%s",
                   zone, *cov ? ": " : "", cov);
        goto out;
    }
    size_t i0 = (size_t)((best_t - from * HOUR_NS) / HOUR_NS);
    size_t i1 = (size_t)((best_t + dur - from * HOUR_NS + HOUR_NS - 1) / HOUR_NS);
    struct carbon_figure fig;
    mean_of(&s, i0, i1 < s.n ? i1 : s.n, &fig);
    Casca__V1__GetBestWindowResponse resp = CASCA__V1__GET_BEST_WINDOW_RESPONSE__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    casca_timestamp_parts(best_t, &ts.seconds, &ts.nanos);
    resp.start = &ts;
    resp.mean_gco2eq_per_kwh = best;
    resp.provider = (char *)fig.provider;
    resp.forecast = fig.forecast;
    resp.estimated = fig.estimated;
    resp.basis = fig.direct ? "direct" : "lifecycle";
    resp.note = fig.note;
    rpc_reply(ctx, &resp.base);
out:
    free(cum);
    free(gaps);
    series_free(&s);
    config_unref(k.cfg);
}

/* ---- create / destroy ---- */

/* Viewers, agents, operators. The location methods read LMDB and may ask a live provider over
 * HTTP: the worker pool. */
#define R RPC_ROLES_READ
static const struct rpc_method_def carbon_methods[] = {
    RPC_METHOD("GetMixIntensity", casca__v1__get_mix_intensity_request, casca__v1__intensity,
               RPC_UNARY, R, 0, get_mix_intensity),
    RPC_METHOD("ListSources", casca__v1__list_sources_request, casca__v1__list_sources_response,
               RPC_UNARY, R, 0, list_sources),
    RPC_METHOD("GetLocationIntensity", casca__v1__get_location_intensity_request,
               casca__v1__intensity, RPC_UNARY, R, RPC_BLOCKING, get_location_intensity),
    RPC_METHOD("GetLocationHistory", casca__v1__get_location_history_request,
               casca__v1__get_location_history_response, RPC_UNARY, R, RPC_BLOCKING,
               get_location_history),
    RPC_METHOD("ListZones", casca__v1__list_zones_request, casca__v1__list_zones_response,
               RPC_UNARY, R, RPC_BLOCKING, list_zones),
    RPC_METHOD("ComputeFootprint", casca__v1__compute_footprint_request, casca__v1__footprint,
               RPC_UNARY, R, RPC_BLOCKING, compute_footprint),
    RPC_METHOD("GetBestWindow", casca__v1__get_best_window_request,
               casca__v1__get_best_window_response, RPC_UNARY, R, RPC_BLOCKING, get_best_window),
};
#undef R

int carbon_create(struct rpc_server *srv, struct config_live *live, struct store *store,
                  struct carbon **out, char *err, size_t errlen)
{
    *out = NULL;
    struct carbon *c = calloc(1, sizeof(*c));
    if (!c) return CASCA_ERR_NOMEM;
    c->live = live;
    replay_clock_init(&c->clock);
    int rc = carbondb_open(store, &c->db);
    if (rc) {
        snprintf(err, errlen, "cannot open the carbon data in the store: %s", casca_strerror(rc));
        replay_clock_destroy(&c->clock);
        free(c);
        return rc;
    }
    struct config *cfg = config_live_get(live);
    load_bundled(c, conf_of(cfg)->bundled_data);
    replay_time(&c->clock, &conf_of(cfg)->replay, casca_wall_ns()); /* the replay starts now */
    config_unref(cfg);
    if (srv && (rc = rpc_server_add_service(srv, &casca__v1__carbon_service__descriptor, NULL,
                                            carbon_methods, RPC_NMETHODS(carbon_methods), c, err,
                                            errlen))) {
        carbon_destroy(c);
        return rc;
    }
    *out = c;
    return CASCA_OK;
}

void carbon_reload(struct carbon *c, const struct config *cfg)
{
    if (!c) return;
    load_bundled(c, conf_of(cfg)->bundled_data);
    replay_time(&c->clock, &conf_of(cfg)->replay, casca_wall_ns()); /* a new replay starts now */
}

void carbon_destroy(struct carbon *c)
{
    if (!c) return;
    carbondb_close(c->db);
    free(c->loaded_dir);
    replay_clock_destroy(&c->clock);
    free(c);
}

int64_t carbon_replay_time(struct carbon *c, int64_t real_ns, double *speed, char *note,
                           size_t notelen)
{
    struct config *cfg = config_live_get(c->live);
    const struct replay_conf *r = &conf_of(cfg)->replay;
    int64_t t = replay_time(&c->clock, r, real_ns);
    if (speed) *speed = r->on ? r->speed : 1;
    if (note) replay_note(r, note, notelen);
    config_unref(cfg);
    return t;
}
