#include "probe.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "casca_err.h"
#include "clock.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "prom_text.h"
#include "warnlimit.h"
#include "yamldoc.h"

/* ---- config ---- */

static bool is_null(const struct yd_node *n)
{
    return n && n->kind == YD_SCALAR && n->plain && (!*n->scalar || !strcmp(n->scalar, "null"));
}

static const char *scalar_of(struct config_loader *ld, const struct yd_node *n, const char *where)
{
    if (n->kind == YD_SCALAR) return n->scalar;
    config_error(ld, n, "%s must be a single value, not a %s", where, yd_kind_name(n->kind));
    return NULL;
}

static uint64_t fingerprint(uint64_t h, const struct yd_node *n)
{
    const char *s = !n ? "~" : n->kind == YD_SCALAR ? n->scalar : n->kind == YD_MAP ? "{" : "[";
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    for (size_t i = 0; n && n->kind != YD_SCALAR && i < n->n; i++) {
        if (n->kind == YD_MAP) h = fingerprint(h, n->keys[i]);
        h = fingerprint(h, n->values[i]);
    }
    return (h ^ '}') * 1099511628211ull;
}

/* scrape: true|false and match: [prefix, ...] */
static void parse_scrape(struct config_loader *ld, const struct yd_node *n, struct probe_config *p)
{
    const struct yd_node *v = yd_get(n, "scrape");
    const char *str = v ? scalar_of(ld, v, "probes.scrape") : "false";
    if (str && strcmp(str, "true") && strcmp(str, "false"))
        config_error(ld, v, "probe %s: scrape is true or false, not '%s'", p->name, str);
    p->scrape = str && !strcmp(str, "true");
    if (p->scrape && strcmp(p->method, "GET"))
        config_error(ld, yd_get(n, "method"), "probe %s: a scrape probe reads the page: use GET",
                     p->name);
    if (!(v = yd_get(n, "match"))) return;
    if (!p->scrape)
        config_error(ld, v, "probe %s: match applies to scrape probes only: add scrape: true",
                     p->name);
    if (v->kind != YD_SEQ) {
        config_error(ld, v, "probe %s: match is a list of metric name prefixes", p->name);
        return;
    }
    if (!(p->match = calloc(v->n ? v->n : 1, sizeof(*p->match)))) return;
    for (size_t i = 0; i < v->n; i++)
        if ((str = scalar_of(ld, v->values[i], "probes.match[]")))
            p->match[p->nmatch++] = strdup(str);
}

/* n is a map (probes_section_parse checked). */
static void parse_probe(struct config_loader *ld, const struct yd_node *n, struct probes_section *s,
                        struct probe_config *p)
{
    static const struct config_key keys[] = {
        {"name"},          {"url"},    {"method"}, {"period"}, {"timeout"},
        {"expect_status"}, {"series"}, {"tags"},   {"scrape"}, {"match"}, {NULL}};
    config_check_keys(ld, NULL, n, keys, "probes[]");
    const struct yd_node *v;
    const char *str;
    str = (v = yd_get(n, "name")) ? scalar_of(ld, v, "probes.name") : NULL;
    if (!str || !*str) config_error(ld, v ? v : n, "every probe needs a name");
    p->name = strdup(str && *str ? str : "?");
    for (struct probe_config *o = s->probes; o < p; o++)
        if (!strcmp(o->name, p->name)) config_error(ld, v, "duplicate probe name '%s'", p->name);
    str = (v = yd_get(n, "url")) ? scalar_of(ld, v, "probes.url") : NULL;
    if (!str || (strncmp(str, "http://", 7) && strncmp(str, "https://", 8)))
        config_error(ld, v ? v : n, "probe %s needs a url starting with http:// or https://",
                     p->name);
    p->url = strdup(str ? str : "");
    str = (v = yd_get(n, "method")) ? scalar_of(ld, v, "probes.method") : "GET";
    if (str && strcmp(str, "GET") && strcmp(str, "HEAD"))
        config_error(ld, v, "probe %s: method '%s' is not one of: GET, HEAD", p->name, str);
    p->method = strdup(str ? str : "GET");
    const char *why;
    str = (v = yd_get(n, "period")) ? scalar_of(ld, v, "probes.period") : "10s";
    if (str && ((why = config_parse_duration_ms(str, &p->period_ms)) ||
                (why = p->period_ms < 10 ? "at least 10ms" : NULL)))
        config_error(ld, v, "probe %s: period '%s': %s", p->name, str, why);
    str = (v = yd_get(n, "timeout")) ? scalar_of(ld, v, "probes.timeout") : NULL;
    if (str && ((why = config_parse_duration_ms(str, &p->timeout_ms)) ||
                (why = !p->timeout_ms ? "at least 1ms" : NULL)))
        config_error(ld, v, "probe %s: timeout '%s': %s", p->name, str, why);
    if (!str) p->timeout_ms = p->period_ms < 5000 ? p->period_ms : 5000;
    uint64_t status = 0;
    str = (v = yd_get(n, "expect_status")) ? scalar_of(ld, v, "probes.expect_status") : NULL;
    if (str && (config_parse_uint(str, &status) || status < 100 || status > 599))
        config_error(ld, v, "probe %s: expect_status '%s' is not an HTTP status (100-599)", p->name,
                     str);
    p->expect_status = (long)status;
    const struct yd_node *series = yd_get(n, "series");
    const struct yd_node *rt =
        series && series->kind == YD_MAP ? yd_get(series, "response_time") : NULL;
    const struct yd_node *ok = series && series->kind == YD_MAP ? yd_get(series, "success") : NULL;
    if (series && (series->kind != YD_MAP || series->n != (size_t)(!!rt + !!ok)))
        config_error(ld, series, "probe %s: series is a map {response_time: NAME, success: NAME}",
                     p->name);
    str = rt ? scalar_of(ld, rt, "series.response_time") : NULL;
    p->time_series = strdup(str && *str ? str : "probe_response_ms");
    str = ok ? scalar_of(ld, ok, "series.success") : NULL;
    p->success_series = strdup(str && *str ? str : "probe_success");
    parse_scrape(ld, n, p);
    const struct yd_node *tags = yd_get(n, "tags");
    if (tags && !is_null(tags) && tags->kind != YD_MAP)
        config_error(ld, tags, "probe %s: tags must be a map of tag: value", p->name);
    size_t nt = tags && tags->kind == YD_MAP ? tags->n : 0;
    p->tags = calloc(nt + 1, sizeof(*p->tags));
    if (!p->tags) return;
    p->tags[p->ntags++] = (struct tsdb_tag){strdup("probe"), strdup(p->name)};
    for (size_t i = 0; i < nt; i++) {
        if (!strcmp(tags->keys[i]->scalar, "probe")) {
            config_error(ld, tags->keys[i], "probe %s: the tag 'probe' is set to the probe's name",
                         p->name);
            continue;
        }
        if ((str = scalar_of(ld, tags->values[i], "probes.tags")))
            p->tags[p->ntags++] = (struct tsdb_tag){strdup(tags->keys[i]->scalar), strdup(str)};
    }
}

static void *probes_section_parse(struct config_loader *ld, const struct yd_node *const values[])
{
    const struct yd_node *n = values[0];
    if (!n || is_null(n)) return NULL;
    struct probes_section *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->fingerprint = fingerprint(14695981039346656037ull, n);
    if (n->kind != YD_SEQ) {
        config_error(ld, n, "probes must be a list of probes (- name: ...)");
        return s;
    }
    if (!(s->probes = calloc(n->n ? n->n : 1, sizeof(*s->probes)))) return s;
    for (size_t i = 0; i < n->n; i++) /* an item that is not a map is left out, uncounted */
        if (config_expect(ld, NULL, n->values[i], YD_MAP,
                          "probes: each probe is a map {name, url, period, ...}"))
            parse_probe(ld, n->values[i], s, &s->probes[s->n++]);
    return s;
}

static void probes_section_free(void *section)
{
    struct probes_section *s = section;
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        struct probe_config *p = &s->probes[i];
        free(p->name);
        free(p->url);
        free(p->method);
        free(p->time_series);
        free(p->success_series);
        for (size_t t = 0; t < p->ntags; t++) {
            free((char *)p->tags[t].key);
            free((char *)p->tags[t].value);
        }
        free(p->tags);
        for (size_t m = 0; m < p->nmatch; m++)
            free(p->match[m]);
        free(p->match);
    }
    free(s->probes);
    free(s);
}

const struct config_section probes_config_section = {
    .keys = (const char *const[]){PROBES_CONFIG_KEYS, NULL},
    .parse = probes_section_parse,
    .free = probes_section_free,
};

/* ---- running ---- */

#define PROBE_MAX_PAGE (16u << 20) /* a scraped page over it fails the probe */

struct probe {
    const struct probe_config *cfg;
    probe_sink_fn sink;
    void *sink_arg;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    struct warn_limit warn;
};

struct probes {
    const struct probes_section *sec;
    struct probe *p;
    size_t n;
};

static int progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    struct probe *p = arg;
    (void)a, (void)b, (void)c, (void)d;
    pthread_mutex_lock(&p->lock);
    bool stop = p->stop;
    pthread_mutex_unlock(&p->lock);
    return stop; /* non-zero aborts the transfer at shutdown */
}

/* The points of one scrape: every tag array is one run of tags[] (index first_tag). */
struct scrape {
    const struct probe_config *cfg;
    int64_t time_ns;
    struct tsdb_point *pts;
    size_t n, cap;
    struct tsdb_tag *tags;
    size_t ntags, tags_cap;
    size_t *first_tag, first_cap;
    bool failed; /* out of memory */
};

static bool grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return true;
    size_t cap2 = *cap ? *cap * 2 : 64;
    while (cap2 < need)
        cap2 *= 2;
    void *q = realloc(*p, cap2 * size);
    if (!q) return false;
    *p = q;
    *cap = cap2;
    return true;
}

static void scraped(void *arg, const char *name, const struct prom_text_label *labels, size_t n,
                    double value, bool has_time, int64_t time_ms)
{
    struct scrape *sc = arg;
    const struct probe_config *c = sc->cfg;
    if (sc->failed || !isfinite(value)) return;
    bool keep = !c->nmatch;
    for (size_t m = 0; m < c->nmatch && !keep; m++)
        keep = !strncmp(name, c->match[m], strlen(c->match[m]));
    if (!keep) return;
    if (!grow((void **)&sc->pts, &sc->cap, sc->n + 1, sizeof(*sc->pts)) ||
        !grow((void **)&sc->first_tag, &sc->first_cap, sc->n + 1, sizeof(*sc->first_tag)) ||
        !grow((void **)&sc->tags, &sc->tags_cap, sc->ntags + c->ntags + n, sizeof(*sc->tags))) {
        sc->failed = true;
        return;
    }
    sc->first_tag[sc->n] = sc->ntags;
    memcpy(sc->tags + sc->ntags, c->tags, c->ntags * sizeof(*c->tags));
    for (size_t i = 0; i < n; i++)
        sc->tags[sc->ntags + c->ntags + i] = (struct tsdb_tag){
            !strcmp(labels[i].name, "probe") ? "exported_probe" : labels[i].name, labels[i].value};
    int64_t t = sc->time_ns;
    if (has_time && time_ms >= 0 && time_ms <= INT64_MAX / 1000000) t = time_ms * 1000000;
    sc->pts[sc->n++] = (struct tsdb_point){name, NULL, c->ntags + n, t, value};
    sc->ntags += c->ntags + n;
}

static void probe_once(struct probe *p, CURL *curl)
{
    const struct probe_config *c = p->cfg;
    struct casca_http_request req = {.method = c->method, .url = c->url,
                                     .timeout_ms = (long)c->timeout_ms};
    struct casca_http_body body = {.max = PROBE_MAX_PAGE};
    long status = 0;
    char why[160];
    int64_t start_wall = casca_wall_ns(), start = casca_mono_ns();
    int rc = casca_http_request(curl, &req, c->scrape ? &body : NULL, &status, why, sizeof(why));
    double ms = (double)(casca_mono_ns() - start) / 1e6;
    bool ok = rc == CASCA_OK &&
              (c->expect_status ? status == c->expect_status : status >= 200 && status < 400);
    uint64_t left_out = 0;
    if (!ok && warn_limit_allow(&p->warn, &left_out)) {
        if (rc != CASCA_OK)
            log_warn("probe", "probe %s: %s %s failed after %.1f ms: %s", c->name, c->method,
                     c->url, ms, why);
        else
            log_warn("probe", "probe %s: %s %s answered HTTP %ld (expected %s)", c->name, c->method,
                     c->url, status, c->expect_status ? "that status" : "2xx or 3xx");
    }
    struct scrape sc = {.cfg = c, .time_ns = start_wall};
    if (ok && c->scrape && body.p) {
        size_t bad = prom_text_parse(body.p, scraped, &sc, why, sizeof(why));
        if (bad && warn_limit_allow(&p->warn, &left_out))
            log_warn("probe", "probe %s: %zu %s of %s %s, the first at %s", c->name, bad,
                     bad == 1 ? "line" : "lines", c->url,
                     bad == 1 ? "is not a Prometheus sample" : "are not Prometheus samples", why);
        if (sc.failed) log_warn("probe", "probe %s: out of memory: this scrape is lost", c->name);
    }
    if (sc.failed || !grow((void **)&sc.pts, &sc.cap, sc.n + 2, sizeof(*sc.pts))) {
        sc.n = 0; /* the probe's own two points still go, from the stack */
        free(sc.pts);
        sc.pts = NULL;
    }
    for (size_t i = 0; i < sc.n; i++)
        sc.pts[i].tags = sc.tags + sc.first_tag[i];
    struct tsdb_point own[2] = {
        {c->time_series, c->tags, c->ntags, start_wall, ms},
        {c->success_series, c->tags, c->ntags, start_wall, ok ? 1.0 : 0.0},
    };
    if (sc.pts) {
        memcpy(sc.pts + sc.n, own, sizeof(own));
        p->sink(p->sink_arg, c->name, sc.pts, sc.n + 2);
    } else {
        p->sink(p->sink_arg, c->name, own, 2);
    }
    free(sc.pts);
    free(sc.tags);
    free(sc.first_tag);
    free(body.p);
}

static void *probe_thread(void *arg)
{
    struct probe *p = arg;
    const struct probe_config *c = p->cfg;
    CURL *curl = curl_easy_init();
    if (!curl) {
        log_warn("probe", "probe %s: cannot set up libcurl: not probing", c->name);
        return NULL;
    }
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, p);
    curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L); /* each probe measures a fresh connection */
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "casca-probe/" CASCA_VERSION);
    int64_t next = casca_mono_ns(), period = (int64_t)c->period_ms * 1000000;
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        int64_t now = casca_mono_ns();
        if (now < next) {
            casca_cond_wait_until(&p->cond, &p->lock, next);
            continue;
        }
        pthread_mutex_unlock(&p->lock);
        probe_once(p, curl);
        next += period;
        now = casca_mono_ns();
        if (next < now) /* a slow request: skip the missed slots, keep the phase */
            next += ((now - next) / period + 1) * period;
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    curl_easy_cleanup(curl);
    return NULL;
}

int probes_create(const struct probes_section *sec, probe_sink_fn sink, void *sink_arg,
                  struct probes **out, char *err, size_t errlen)
{
    *out = NULL;
    struct probes *ps = calloc(1, sizeof(*ps));
    if (!ps || (sec && sec->n && !(ps->p = calloc(sec->n, sizeof(*ps->p))))) {
        free(ps);
        snprintf(err, errlen, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    ps->sec = sec;
    if (sec && sec->n && casca_http_init() != CASCA_OK) {
        free(ps->p);
        free(ps);
        snprintf(err, errlen, "cannot start libcurl for the probes");
        return CASCA_ERR_INTERNAL;
    }
    for (size_t i = 0; sec && i < sec->n; i++) {
        struct probe *p = &ps->p[i];
        p->cfg = &sec->probes[i];
        p->sink = sink;
        p->sink_arg = sink_arg;
        pthread_mutex_init(&p->lock, NULL);
        casca_cond_init_mono(&p->cond);
        if (pthread_create(&p->thread, NULL, probe_thread, p)) {
            pthread_mutex_destroy(&p->lock);
            pthread_cond_destroy(&p->cond);
            snprintf(err, errlen, "probe %s: cannot start its thread", p->cfg->name);
            probes_destroy(ps);
            return CASCA_ERR_INTERNAL;
        }
        ps->n++;
        log_info("probe", "probe %s: %s %s every %llu ms", p->cfg->name, p->cfg->method,
                 p->cfg->url, (unsigned long long)p->cfg->period_ms);
    }
    *out = ps;
    return CASCA_OK;
}

void probes_destroy(struct probes *ps)
{
    if (!ps) return;
    for (size_t i = 0; i < ps->n; i++) {
        struct probe *p = &ps->p[i];
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
    for (size_t i = 0; i < ps->n; i++) {
        pthread_join(ps->p[i].thread, NULL);
        pthread_mutex_destroy(&ps->p[i].lock);
        pthread_cond_destroy(&ps->p[i].cond);
    }
    free(ps->p);
    free(ps);
}

void probes_reload(struct probes *ps, const struct probes_section *next)
{
    uint64_t a = ps && ps->sec ? ps->sec->fingerprint : 0, b = next ? next->fingerprint : 0;
    if (a != b)
        log_warn("probe", "probes: changed: the running probes stay as they are until the next "
                          "restart");
}

size_t probes_count(const struct probes *ps)
{
    return ps ? ps->n : 0;
}
