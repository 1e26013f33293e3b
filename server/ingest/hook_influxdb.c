/* The influxdb connector: points become InfluxDB line protocol ("series,tag=v value=1.5 <ns>"),
 * buffered and POSTed to /write of an InfluxDB 1.x HTTP API with libcurl when batch points are
 * buffered or the oldest is flush_interval old. A batch InfluxDB refuses or cannot be reached for
 * is counted as errors (one per message in it) and logged at warn; it is not retried, so an
 * unreachable database costs the hook one timeout per batch and never grows memory. The acks of
 * the buffered points are released when their batch is written or fails. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "casca_err.h"
#include "clock.h"
#include "config.h"
#include "hooks.h"
#include "http.h"
#include "log.h"
#include "warnlimit.h"
#include "yamldoc.h"

/* ---- the options: a hook's influxdb: map ---- */

struct influx_options {
    char *url; /* http://127.0.0.1:8086, without a trailing / */
    char *database;
    char *username, *password; /* NULL: none (password from password_env) */
    uint64_t batch_points;     /* flush when this many points are buffered */
    uint64_t flush_ms;         /* ...or when the oldest buffered point is this old */
    uint64_t timeout_ms;       /* per HTTP request */
};

#define AT(field) offsetof(struct influx_options, field)
static const struct config_key option_keys[] = {
    {"url", CONFIG_STR, AT(url)},
    {"database", CONFIG_STR, AT(database)},
    {"username", CONFIG_STR, AT(username)},
    {"password_env"}, /* read below: the variable's value is the password */
    {"batch", CONFIG_COUNT, AT(batch_points), "5000", 1, 1000000},
    {"flush_interval", CONFIG_MS, AT(flush_ms), "1s", 1, 3600000},
    {"timeout", CONFIG_MS, AT(timeout_ms), "5s", 1, 600000},
    {NULL},
};

static void influx_free_options(void *options)
{
    struct influx_options *o = options;
    if (!o) return;
    free(o->url);
    free(o->database);
    free(o->username);
    free(o->password);
    free(o);
}

/* n: the hook's influxdb: map (NULL: none). NULL only when out of memory. */
static void *influx_parse(struct config_loader *ld, const struct yd_node *n,
                          const struct yd_node *hook)
{
    struct influx_options *o = calloc(1, sizeof(*o));
    if (!o) return NULL;
    config_key_defaults(ld, option_keys, o);
    if (n && n->kind != YD_MAP) { /* "influxdb:" with nothing under it included */
        config_error(ld, n, "influxdb must be a map of keys, not a %s", yd_kind_name(n->kind));
        return o;
    }
    if (!config_load_keys(ld, option_keys, n, "influxdb", o)) return o;
    if (o->url) {
        if (strncmp(o->url, "http://", 7) && strncmp(o->url, "https://", 8))
            config_error(ld, yd_get(n, "url"),
                         "influxdb.url '%s' must start with http:// or https://", o->url);
        size_t len = strlen(o->url);
        while (len > 8 && o->url[len - 1] == '/')
            o->url[--len] = 0;
    }
    const struct yd_node *v = n ? yd_get(n, "password_env") : NULL;
    if (v && v->kind == YD_SCALAR) {
        const char *pw = getenv(v->scalar);
        if (!pw)
            config_error(ld, v, "influxdb.password_env: environment variable %s is not set",
                         v->scalar);
        else
            o->password = strdup(pw);
    } else if (v) {
        config_error(ld, v, "influxdb.password_env must be a single value, not a %s",
                     yd_kind_name(v->kind));
    }
    if (!o->url || !*o->url || !o->database || !*o->database)
        config_error(ld, n ? n : hook,
                     "the influxdb connector needs influxdb: {url: http://HOST:8086, "
                     "database: NAME}");
    return o;
}

/* ---- the connector ---- */

struct influx_conn {
    const struct hook_config *h;
    const struct influx_options *o;
    struct hook_counters *ctr;
    CURL *curl;
    char *write_url;
    char *buf;
    size_t len, cap;
    size_t points, messages;
    int64_t oldest_ns; /* monotonic time of the first buffered point */
    struct warn_limit warn;
    struct hook_ack **acks; /* of the buffered points */
    size_t nacks, capacks;
};

/* Holds ack until the buffered batch is posted. */
static bool keep_ack(struct influx_conn *c, struct hook_ack *ack)
{
    if (!ack) return true;
    if (c->nacks == c->capacks) {
        size_t cap = c->capacks ? 2 * c->capacks : 16;
        struct hook_ack **grown = realloc(c->acks, cap * sizeof(*grown));
        if (!grown) return false;
        c->acks = grown;
        c->capacks = cap;
    }
    c->acks[c->nacks++] = hook_ack_hold(ack);
    return true;
}

static bool reserve(struct influx_conn *c, size_t more)
{
    if (c->len + more <= c->cap) return true;
    size_t cap = c->cap ? c->cap : 65536;
    while (cap < c->len + more)
        cap *= 2;
    char *b = realloc(c->buf, cap);
    if (!b) return false;
    c->buf = b;
    c->cap = cap;
    return true;
}

/* Appends s with a backslash before each character of special. */
static bool put_escaped(struct influx_conn *c, const char *s, const char *special)
{
    size_t n = strlen(s);
    if (!reserve(c, 2 * n)) return false;
    for (; *s; s++) {
        if (strchr(special, *s)) c->buf[c->len++] = '\\';
        c->buf[c->len++] = *s == '\n' ? ' ' : *s;
    }
    return true;
}

static bool put_char(struct influx_conn *c, char ch)
{
    if (!reserve(c, 1)) return false;
    c->buf[c->len++] = ch;
    return true;
}

static int influx_open(const struct hook_config *h, const struct hook_env *env,
                       struct hook_counters *ctr, void **state, char *err, size_t errlen)
{
    (void)env;
    if (!h->connector_options) {
        snprintf(err, errlen, "hook %s: out of memory", h->name);
        return CASCA_ERR_NOMEM;
    }
    struct influx_conn *c = casca_http_init() == CASCA_OK ? calloc(1, sizeof(*c)) : NULL;
    if (!c || !(c->curl = curl_easy_init())) {
        free(c);
        snprintf(err, errlen, "hook %s: cannot set up libcurl", h->name);
        return CASCA_ERR_NOMEM;
    }
    c->h = h;
    c->ctr = ctr;
    const struct influx_options *o = c->o = h->connector_options;
    char *db = curl_easy_escape(c->curl, o->database, 0);
    if (!db || asprintf(&c->write_url, "%s/write?db=%s&precision=ns", o->url, db) < 0)
        c->write_url = NULL;
    curl_free(db);
    if (!c->write_url) {
        curl_easy_cleanup(c->curl);
        free(c);
        snprintf(err, errlen, "hook %s: out of memory", h->name);
        return CASCA_ERR_NOMEM;
    }
    if (o->username) {
        curl_easy_setopt(c->curl, CURLOPT_USERNAME, o->username);
        curl_easy_setopt(c->curl, CURLOPT_PASSWORD, o->password ? o->password : "");
    }
    *state = c;
    return CASCA_OK;
}

static void post(struct influx_conn *c)
{
    uint64_t left_out = 0;
    struct casca_http_request req = {.method = "POST",
                                     .url = c->write_url,
                                     .body = c->buf,
                                     .body_len = c->len,
                                     .timeout_ms = (long)c->o->timeout_ms};
    struct casca_http_body reply = {.max = 511, .truncate = true}; /* enough for a log line */
    long status = 0;
    char why[160];
    int rc = casca_http_request(c->curl, &req, &reply, &status, why, sizeof(why));
    bool ok = rc == CASCA_OK && status / 100 == 2;
    for (size_t i = 0; i < c->nacks; i++)
        hook_ack_release(c->acks[i], ok ? CASCA_OK : CASCA_ERR_UNAVAILABLE,
                         ok ? NULL : "InfluxDB did not take the points");
    c->nacks = 0;
    if (ok) {
        atomic_fetch_add(&c->ctr->stored, c->points);
    } else {
        atomic_fetch_add(&c->ctr->errors, c->messages);
        if (warn_limit_allow(&c->warn, &left_out)) {
            if (rc != CASCA_OK)
                log_warn("hooks", "hook %s: cannot reach InfluxDB at %s: %s; %zu points lost%s",
                         c->h->name, c->o->url, why, c->points,
                         left_out ? " (more suppressed)" : "");
            else
                log_warn("hooks", "hook %s: InfluxDB at %s refused %zu points: HTTP %ld %s%s",
                         c->h->name, c->o->url, c->points, status,
                         reply.p ? reply.p : "", left_out ? " (more suppressed)" : "");
        }
    }
    free(reply.p);
    c->len = c->points = c->messages = 0;
}

static uint64_t influx_flush(void *state, bool force)
{
    struct influx_conn *c = state;
    if (!c->points) return UINT64_MAX;
    int64_t age_ms = (casca_mono_ns() - c->oldest_ns) / 1000000;
    if (!force && c->points < c->o->batch_points && age_ms < (int64_t)c->o->flush_ms)
        return c->o->flush_ms - (uint64_t)age_ms;
    post(c);
    return UINT64_MAX;
}

static int influx_write(void *state, const struct tsdb_point *pts, size_t n,
                        struct hook_ack *ack, char *why, size_t whylen)
{
    struct influx_conn *c = state;
    size_t mark = c->len;
    if (!keep_ack(c, ack)) goto nomem;
    if (!c->points) c->oldest_ns = casca_mono_ns();
    for (size_t i = 0; i < n; i++) {
        const struct tsdb_point *p = &pts[i];
        if (!put_escaped(c, p->series, ", ")) goto nomem;
        for (size_t t = 0; t < p->ntags; t++) {
            if (!*p->tags[t].value || !*p->tags[t].key)
                continue; /* InfluxDB has no empty tag values: absent is the same */
            if (!put_char(c, ',') || !put_escaped(c, p->tags[t].key, ",= ") || !put_char(c, '=') ||
                !put_escaped(c, p->tags[t].value, ",= "))
                goto nomem;
        }
        if (!reserve(c, 64)) goto nomem;
        c->len += (size_t)snprintf(c->buf + c->len, 64, " value=%.17g %lld\n", p->value,
                                   (long long)p->time_ns);
    }
    c->points += n;
    c->messages++;
    if (c->points >= c->o->batch_points) post(c);
    return CASCA_OK;
nomem:
    if (ack && c->nacks && c->acks[c->nacks - 1] == ack)
        hook_ack_release(c->acks[--c->nacks], CASCA_OK, NULL); /* the caller records the error */
    c->len = mark;
    snprintf(why, whylen, "out of memory for the InfluxDB batch");
    return CASCA_ERR_NOMEM;
}

static void influx_close(void *state)
{
    struct influx_conn *c = state;
    curl_easy_cleanup(c->curl);
    free(c->write_url);
    free(c->buf);
    free(c->acks); /* released by the forced flush before close */
    free(c);
}

const struct hook_connector_ops hook_connector_influxdb = {
    .name = "influxdb",
    .parse = influx_parse,
    .free_options = influx_free_options,
    .open = influx_open,
    .write = influx_write,
    .flush = influx_flush,
    .close = influx_close,
};
