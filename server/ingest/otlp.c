#include "otlp.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "casca_err.h"
#include "clock.h"
#include "config.h"
#include "telemetry.h"

typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest ExportRequest;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceResponse ExportResponse;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsPartialSuccess PartialSuccess;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Metrics__V1__Metric Metric;
typedef Opentelemetry__Proto__Metrics__V1__NumberDataPoint NumberPoint;
typedef Opentelemetry__Proto__Metrics__V1__HistogramDataPoint HistogramPoint;
typedef Opentelemetry__Proto__Metrics__V1__SummaryDataPoint SummaryPoint;

#define NO_RECORDED_VALUE 1u /* DataPointFlags.FLAG_NO_RECORDED_VALUE_MASK */
/* Tag entries all the points of one request may carry: attributes are copied into every bucket of
 * a histogram, so a 4 MiB request could otherwise take gigabytes (64 MiB of entries at most). */
#define MAX_TAG_ENTRIES (UINT64_C(1) << 22)

/* ---- the opentelemetry: section ---- */

/* OpenTelemetry's own Prometheus exporters keep only these of a resource as labels (job and
 * instance); the rest (process, host, SDK and runtime metadata) would make a new series per
 * restart (process.pid) or keys past LMDB's 480 bytes (process.command_line). */
static const char *const default_resource_tags[] = {"service.name", "service.namespace",
                                                    "service.instance.id"};
static const struct otlp_config defaults = {
    .resource_tags = (char **)default_resource_tags,
    .nresource_tags = sizeof(default_resource_tags) / sizeof(default_resource_tags[0]),
};

static void parse_resource_tags(struct config_loader *ld, const struct yd_node *seq, void *obj)
{
    struct otlp_config *c = obj;
    c->resource_tags = calloc(seq->n ? seq->n : 1, sizeof(char *));
    for (size_t i = 0; c->resource_tags && i < seq->n; i++) {
        const struct yd_node *v = seq->values[i];
        if (v->kind != YD_SCALAR || !*v->scalar) {
            config_error(ld, v,
                         "opentelemetry.resource_tags lists attribute names (e.g. service.name, "
                         "host.name), or \"*\" for all of them");
            continue;
        }
        if (strcmp(v->scalar, "*") == 0) c->all_resource_tags = true;
        if (!(c->resource_tags[c->nresource_tags] = strdup(v->scalar))) break;
        c->nresource_tags++;
    }
}

static const struct config_key keys[] = {
    {"resource_tags", CONFIG_LIST, 0, .list = parse_resource_tags},
    {NULL},
};

static void otlp_config_free(void *section)
{
    struct otlp_config *c = section;
    if (!c) return;
    if (c->resource_tags != defaults.resource_tags) {
        for (size_t i = 0; i < c->nresource_tags; i++)
            free(c->resource_tags[i]);
        free(c->resource_tags);
    }
    free(c);
}

static void *otlp_config_parse(struct config_loader *ld, const struct yd_node *const values[])
{
    struct otlp_config *c = malloc(sizeof(*c));
    if (!c) return NULL;
    *c = defaults;
    const struct yd_node *list = values[0] ? yd_get(values[0], "resource_tags") : NULL;
    if (list && list->kind == YD_SEQ) { /* given: replaces the defaults */
        c->resource_tags = NULL;
        c->nresource_tags = 0;
    }
    config_load_keys(ld, keys, values[0], "opentelemetry", c);
    if (!c->resource_tags) { /* out of memory, or a list that was not one (an error said so) */
        c->resource_tags = defaults.resource_tags;
        c->nresource_tags = defaults.nresource_tags;
    }
    return c;
}

const struct config_section otlp_config_section = {
    .keys = (const char *const[]){OTLP_CONFIG_KEYS, NULL},
    .parse = otlp_config_parse,
    .free = otlp_config_free,
};

const struct otlp_config *otlp_config_of(const struct config *c)
{
    const struct otlp_config *o = config_section_of(c, &otlp_config_section);
    return o ? o : &defaults;
}

static bool resource_tag(const struct otlp_config *oc, const char *key)
{
    if (oc->all_resource_tags) return true;
    for (size_t i = 0; i < oc->nresource_tags; i++)
        if (strcmp(oc->resource_tags[i], key) == 0) return true;
    return false;
}

/* ---- conversion ---- */

struct conv {
    struct hook_batch *b;
    int64_t now_ns;
    size_t refused;
    char *first;
    size_t firstlen;
    bool nomem;
};

static void refuse(struct conv *c, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void refuse(struct conv *c, size_t n, const char *fmt, ...)
{
    if (!c->refused && c->firstlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->first, c->firstlen, fmt, ap);
        va_end(ap);
    }
    c->refused += n;
}

static char *arena_strdup(struct conv *c, const char *s)
{
    size_t len = strlen(s) + 1;
    char *p = hook_batch_alloc(c->b, len);
    if (!p) {
        c->nomem = true;
        return NULL;
    }
    return memcpy(p, s, len);
}

/* v as text, shortest that reads back the same (le="0.25", not "0.25000000000000000"). */
static const char *number_text(struct conv *c, double v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, sizeof(buf), "%.17g", v);
    return arena_strdup(c, buf);
}

static char *base64(const uint8_t *data, size_t len)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t n = (uint32_t)data[i] << 16 | (i + 1 < len ? (uint32_t)data[i + 1] << 8 : 0) |
                     (i + 2 < len ? data[i + 2] : 0);
        *o++ = digits[n >> 18];
        *o++ = digits[n >> 12 & 63];
        *o++ = i + 1 < len ? digits[n >> 6 & 63] : '=';
        *o++ = i + 2 < len ? digits[n & 63] : '=';
    }
    *o = 0;
    return out;
}

/* v as JSON: arrays and kvlists as JSON arrays and objects (as OpenTelemetry's Prometheus
 * exporters write them), bytes in base64, a double that JSON cannot hold as text; NULL when out
 * of memory. The call layer bounds the nesting (rpc_nesting_exceeds). */
static json_t *any_json(const AnyValue *v)
{
    json_t *j = NULL;
    char *b64;
    switch (v ? v->value_case : OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE__NOT_SET) {
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
        return json_string(v->string_value);
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
        return json_boolean(v->bool_value);
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
        return json_integer((json_int_t)v->int_value);
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
        if (isfinite(v->double_value)) return json_real(v->double_value);
        return json_string(isnan(v->double_value) ? "NaN" : v->double_value > 0 ? "+Inf" : "-Inf");
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE:
        if (!(b64 = base64(v->bytes_value.data, v->bytes_value.len))) return NULL;
        j = json_string(b64);
        free(b64);
        return j;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE:
        j = json_array();
        for (size_t i = 0; j && v->array_value && i < v->array_value->n_values; i++)
            if (json_array_append_new(j, any_json(v->array_value->values[i]))) {
                json_decref(j);
                return NULL;
            }
        return j;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE:
        j = json_object();
        for (size_t i = 0; j && v->kvlist_value && i < v->kvlist_value->n_values; i++) {
            const KeyValue *kv = v->kvlist_value->values[i];
            if (json_object_set_new(j, kv->key, any_json(kv->value))) {
                json_decref(j);
                return NULL;
            }
        }
        return j;
    default:
        return json_null();
    }
}

/* An attribute's value as a tag value, or NULL with the reason in *why. */
static const char *attr_text(struct conv *c, const AnyValue *v, const char **why)
{
    char buf[32];
    json_t *j;
    char *text;
    const char *copy;
    switch (v ? v->value_case : OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE__NOT_SET) {
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
        return v->string_value;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
        return v->bool_value ? "true" : "false";
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
        snprintf(buf, sizeof(buf), "%lld", (long long)v->int_value);
        return arena_strdup(c, buf);
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
        return number_text(c, v->double_value);
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE:
        if (!(text = base64(v->bytes_value.data, v->bytes_value.len))) break;
        copy = arena_strdup(c, text);
        free(text);
        return copy;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE:
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE:
        /* compact JSON; invalid UTF-8 in a string makes it fail, as a tag value must be text */
        j = any_json(v);
        text = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER) : NULL;
        json_decref(j);
        if (!text) {
            *why = "is an array or map that is not valid UTF-8 text";
            return NULL;
        }
        copy = arena_strdup(c, text);
        free(text);
        return copy;
    default:
        *why = "has no value";
        return NULL;
    }
    c->nomem = true;
    return NULL;
}

/* The resource's tags followed by the point's attributes, then temporality when not NULL, with
 * room for one more (le, quantile): *n set, or NULL (refused, with the reason counted; or out of
 * memory). */
struct tagset {
    const struct tsdb_tag *tags;
    size_t n;
};

static void set_tag(struct tsdb_tag *t, size_t *n, const char *key, const char *value)
{
    size_t k = 0;
    while (k < *n && strcmp(t[k].key, key))
        k++;
    t[k] = (struct tsdb_tag){key, value};
    if (k == *n) ++*n;
}

static struct tsdb_tag *point_tags(struct conv *c, const struct tagset *res, const Metric *m,
                                   KeyValue *const *attrs, size_t nattrs, const char *temporality,
                                   size_t *n)
{
    struct tsdb_tag *t = hook_batch_alloc(c->b, (res->n + nattrs + 2) * sizeof(*t));
    if (!t) {
        c->nomem = true;
        return NULL;
    }
    memcpy(t, res->tags, res->n * sizeof(*t));
    *n = res->n;
    for (size_t i = 0; i < nattrs; i++) {
        const char *why = NULL, *value = attr_text(c, attrs[i]->value, &why);
        if (!value) {
            if (!c->nomem)
                refuse(c, 1, "metric %.100s: attribute '%.100s' %s", m->name, attrs[i]->key, why);
            return NULL;
        }
        set_tag(t, n, attrs[i]->key, value);
    }
    if (temporality) set_tag(t, n, "temporality", temporality);
    return t;
}

static int64_t point_time(const struct conv *c, uint64_t unix_nano)
{
    /* past 2262 an int64 cannot hold it: let the store refuse it as too far ahead */
    return !unix_nano ? c->now_ns : unix_nano > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)unix_nano;
}

static void add(struct conv *c, const char *series, const struct tsdb_tag *tags, size_t ntags,
                int64_t t, double value)
{
    struct tsdb_point *p = hook_batch_add(c->b);
    if (!p) {
        c->nomem = true;
        return;
    }
    *p = (struct tsdb_point){series, tags, ntags, t, value};
}

/* A point with tags plus key=value (le, quantile); value NULL: out of memory already. */
static void add_tagged(struct conv *c, const char *series, const struct tsdb_tag *tags, size_t nt,
                       const char *key, const char *value, int64_t t, double v)
{
    struct tsdb_tag *more = value ? hook_batch_alloc(c->b, (nt + 1) * sizeof(*more)) : NULL;
    if (!more) {
        c->nomem = true;
        return;
    }
    memcpy(more, tags, nt * sizeof(*more));
    more[nt] = (struct tsdb_tag){key, value};
    add(c, series, more, nt + 1, t, v);
}

static const char *suffixed(struct conv *c, const char *name, const char *suffix)
{
    size_t a = strlen(name), b = strlen(suffix);
    char *s = hook_batch_alloc(c->b, a + b + 1);
    if (!s) {
        c->nomem = true;
        return NULL;
    }
    memcpy(s, name, a);
    memcpy(s + a, suffix, b + 1);
    return s;
}

static void number_points(struct conv *c, const struct tagset *res, const Metric *m,
                          NumberPoint *const *pts, size_t n, const char *temporality)
{
    for (size_t i = 0; i < n && !c->nomem; i++) {
        const NumberPoint *p = pts[i];
        if (p->flags & NO_RECORDED_VALUE) continue;
        size_t nt;
        const struct tsdb_tag *tags =
            point_tags(c, res, m, p->attributes, p->n_attributes, temporality, &nt);
        if (!tags) continue;
        double v;
        if (p->value_case == OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_DOUBLE)
            v = p->as_double;
        else if (p->value_case == OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT)
            v = (double)p->as_int;
        else {
            refuse(c, 1, "metric %.100s: a data point has no value (as_double or as_int)", m->name);
            continue;
        }
        add(c, m->name, tags, nt, point_time(c, p->time_unix_nano), v);
    }
}

static void histogram_points(struct conv *c, const struct tagset *res, const Metric *m,
                             const char *temporality)
{
    const Opentelemetry__Proto__Metrics__V1__Histogram *h = m->histogram;
    const char *count = suffixed(c, m->name, "_count"), *sum = suffixed(c, m->name, "_sum"),
               *bucket = suffixed(c, m->name, "_bucket");
    for (size_t i = 0; i < h->n_data_points && !c->nomem; i++) {
        const HistogramPoint *p = h->data_points[i];
        if (p->flags & NO_RECORDED_VALUE) continue;
        if (p->n_bucket_counts && p->n_bucket_counts != p->n_explicit_bounds + 1) {
            refuse(c, 1, "metric %.100s: a histogram point has %zu bucket counts for %zu bounds "
                         "(it needs bounds + 1)",
                   m->name, p->n_bucket_counts, p->n_explicit_bounds);
            continue;
        }
        size_t nt;
        struct tsdb_tag *tags =
            point_tags(c, res, m, p->attributes, p->n_attributes, temporality, &nt);
        if (!tags) continue;
        int64_t t = point_time(c, p->time_unix_nano);
        add(c, count, tags, nt, t, (double)p->count);
        if (p->_sum_case == OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT___SUM_SUM)
            add(c, sum, tags, nt, t, p->sum); /* optional: absent when a value can be negative */
        uint64_t cumulative = 0;
        for (size_t k = 0; k < p->n_bucket_counts && !c->nomem; k++) {
            const char *le = k < p->n_explicit_bounds ? number_text(c, p->explicit_bounds[k])
                                                      : "+Inf";
            cumulative += p->bucket_counts[k];
            add_tagged(c, bucket, tags, nt, "le", le, t, (double)cumulative);
        }
    }
}

static void summary_points(struct conv *c, const struct tagset *res, const Metric *m)
{
    const Opentelemetry__Proto__Metrics__V1__Summary *s = m->summary;
    const char *count = suffixed(c, m->name, "_count"), *sum = suffixed(c, m->name, "_sum");
    for (size_t i = 0; i < s->n_data_points && !c->nomem; i++) {
        const SummaryPoint *p = s->data_points[i];
        if (p->flags & NO_RECORDED_VALUE) continue;
        size_t nt;
        struct tsdb_tag *tags = point_tags(c, res, m, p->attributes, p->n_attributes, NULL, &nt);
        if (!tags) continue;
        int64_t t = point_time(c, p->time_unix_nano);
        add(c, count, tags, nt, t, (double)p->count);
        add(c, sum, tags, nt, t, p->sum);
        for (size_t k = 0; k < p->n_quantile_values && !c->nomem; k++) {
            const char *q = number_text(c, p->quantile_values[k]->quantile);
            add_tagged(c, m->name, tags, nt, "quantile", q, t, p->quantile_values[k]->value);
        }
    }
}

/* A sum's or histogram's temporality as a tag value: a series can arrive both ways (two
 * exporters, or one reconfigured), and running totals mixed with increases spoil rate and sum.
 * NULL when unspecified, which the protocol says must not be sent. */
static const char *temporality_name(int t)
{
    switch (t) {
    case OPENTELEMETRY__PROTO__METRICS__V1__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_CUMULATIVE:
        return "cumulative";
    case OPENTELEMETRY__PROTO__METRICS__V1__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_DELTA:
        return "delta";
    default:
        return NULL;
    }
}

static void metric_points(struct conv *c, const struct tagset *res, const Metric *m)
{
    const char *temporality;
    switch (m->data_case) {
    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE:
        number_points(c, res, m, m->gauge->data_points, m->gauge->n_data_points, NULL);
        break;
    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM:
        if (!(temporality = temporality_name(m->sum->aggregation_temporality))) {
            refuse(c, m->sum->n_data_points,
                   "metric %.100s: a sum without aggregation_temporality (set cumulative or delta)",
                   m->name);
            break;
        }
        number_points(c, res, m, m->sum->data_points, m->sum->n_data_points, temporality);
        break;
    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM:
        if (!(temporality = temporality_name(m->histogram->aggregation_temporality))) {
            refuse(c, m->histogram->n_data_points,
                   "metric %.100s: a histogram without aggregation_temporality (set cumulative or "
                   "delta)",
                   m->name);
            break;
        }
        histogram_points(c, res, m, temporality);
        break;
    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUMMARY:
        summary_points(c, res, m);
        break;
    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_EXPONENTIAL_HISTOGRAM:
        refuse(c, m->exponential_histogram->n_data_points,
               "metric %.100s: exponential histograms are not supported: configure the exporter "
               "for explicit-bucket histograms",
               m->name);
        break;
    default:
        refuse(c, 1, "metric %.100s has no data (gauge, sum, histogram or summary)", m->name);
    }
}

/* The points req makes at most, and the tag entries they carry (attributes plus casca's own). */
static void request_size(const ExportRequest *req, uint64_t *points, uint64_t *tags)
{
    *points = *tags = 0;
    for (size_t r = 0; r < req->n_resource_metrics; r++) {
        const Opentelemetry__Proto__Metrics__V1__ResourceMetrics *rm = req->resource_metrics[r];
        uint64_t nres = rm->resource ? rm->resource->n_attributes : 0;
        for (size_t s = 0; s < rm->n_scope_metrics; s++) {
            for (size_t k = 0; k < rm->scope_metrics[s]->n_metrics; k++) {
                const Metric *m = rm->scope_metrics[s]->metrics[k];
                NumberPoint **np = NULL;
                size_t n = 0;
                if (m->data_case == OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE)
                    np = m->gauge->data_points, n = m->gauge->n_data_points;
                else if (m->data_case == OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM)
                    np = m->sum->data_points, n = m->sum->n_data_points;
                for (size_t i = 0; i < n; i++) {
                    *points += 1;
                    *tags += nres + np[i]->n_attributes + 1;
                }
                if (m->data_case == OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM) {
                    for (size_t i = 0; i < m->histogram->n_data_points; i++) {
                        const HistogramPoint *p = m->histogram->data_points[i];
                        *points += 2 + p->n_bucket_counts;
                        *tags += (2 + p->n_bucket_counts) * (nres + p->n_attributes + 2);
                    }
                } else if (m->data_case == OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUMMARY) {
                    for (size_t i = 0; i < m->summary->n_data_points; i++) {
                        const SummaryPoint *p = m->summary->data_points[i];
                        *points += 2 + p->n_quantile_values;
                        *tags += (2 + p->n_quantile_values) * (nres + p->n_attributes + 1);
                    }
                }
            }
        }
    }
}

int otlp_points(const ExportRequest *req, const struct otlp_config *oc, int64_t now_ns,
                uint64_t max_points, struct hook_batch *b, size_t *refused, char *first,
                size_t firstlen, char *why, size_t whylen)
{
    struct conv c = {.b = b, .now_ns = now_ns, .first = first, .firstlen = firstlen};
    if (firstlen) *first = 0;
    *refused = 0;
    /* refuse what is too large before converting it: the conversion's memory grows with both */
    uint64_t points, entries;
    request_size(req, &points, &entries);
    if (points > max_points) {
        snprintf(why, whylen,
                 "the request makes %llu points (a histogram point makes _count, _sum and one "
                 "_bucket per bucket, a summary point _count, _sum and one per quantile), over the "
                 "limit of %llu (tsdb.max_publish_points): send smaller batches",
                 (unsigned long long)points, (unsigned long long)max_points);
        return CASCA_ERR_INVALID;
    }
    if (entries > MAX_TAG_ENTRIES) {
        snprintf(why, whylen,
                 "the request's points carry %llu tags in all (attributes are copied into every "
                 "bucket of a histogram), over the limit of %llu: send smaller batches or fewer "
                 "attributes",
                 (unsigned long long)entries, (unsigned long long)MAX_TAG_ENTRIES);
        return CASCA_ERR_INVALID;
    }
    for (size_t r = 0; r < req->n_resource_metrics && !c.nomem; r++) {
        const Opentelemetry__Proto__Metrics__V1__ResourceMetrics *rm = req->resource_metrics[r];
        /* the resource's tags, once: those opentelemetry.resource_tags names. An attribute that
         * cannot be a tag is left out of them and refuses nothing (the points still say which
         * service they come from), and so are arrays, maps and bytes: process metadata such as
         * process.command_args would make every series of the service long (LMDB's keys hold
         * 480 bytes of name and tags) */
        size_t na = rm->resource ? rm->resource->n_attributes : 0, n = 0;
        struct tsdb_tag *tags = hook_batch_alloc(b, (na ? na : 1) * sizeof(*tags));
        if (!tags) {
            snprintf(why, whylen, "out of memory: retry with a smaller batch");
            return CASCA_ERR_NOMEM;
        }
        for (size_t i = 0; i < na; i++) {
            const KeyValue *kv = rm->resource->attributes[i];
            int vc = kv->value ? (int)kv->value->value_case : 0;
            if (!resource_tag(oc, kv->key) ||
                vc == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE ||
                vc == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE ||
                vc == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE)
                continue;
            const char *unused, *value = attr_text(&c, kv->value, &unused);
            if (value) tags[n++] = (struct tsdb_tag){kv->key, value};
        }
        struct tagset res = {tags, n};
        for (size_t s = 0; s < rm->n_scope_metrics && !c.nomem; s++)
            for (size_t m = 0; m < rm->scope_metrics[s]->n_metrics && !c.nomem; m++)
                metric_points(&c, &res, rm->scope_metrics[s]->metrics[m]);
    }
    *refused = c.refused;
    if (c.nomem) snprintf(why, whylen, "out of memory: retry with a smaller batch");
    return c.nomem ? CASCA_ERR_NOMEM : CASCA_OK;
}

/* ---- the service ---- */

struct otlp {
    struct telemetry *t;
    struct config_live *live;
};

/* One Export waiting for its points to be stored. */
struct export {
    struct rpc_ctx *ctx;
    size_t refused;          /* by the conversion */
    char first[256];
    size_t rejected;         /* by the store's checks (telemetry_submit) */
    char first_rejected[200];
};

static void answer(struct rpc_ctx *ctx, size_t refused, const char *first)
{
    ExportResponse resp = OPENTELEMETRY__PROTO__COLLECTOR__METRICS__V1__EXPORT_METRICS_SERVICE_RESPONSE__INIT;
    PartialSuccess partial =
        OPENTELEMETRY__PROTO__COLLECTOR__METRICS__V1__EXPORT_METRICS_PARTIAL_SUCCESS__INIT;
    if (refused) {
        partial.rejected_data_points = (int64_t)refused;
        partial.error_message = (char *)first;
        resp.partial_success = &partial;
    }
    rpc_reply(ctx, &resp.base);
}

static void stored(int err, const char *why, void *arg)
{
    struct export *e = arg;
    if (err == CASCA_ERR_FULL)
        rpc_finish(e->ctx, err, "%s: retry in a moment", why);
    else if (err == CASCA_ERR_PRECONDITION)
        rpc_finish(e->ctx, err, "%s: add a hook with bus: publish for it", why);
    else if (err)
        rpc_finish(e->ctx, err, "the points could not be stored: %s; retry later", why);
    else
        answer(e->ctx, e->refused + e->rejected, e->refused ? e->first : e->first_rejected);
    free(e);
}

static void export_metrics(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct otlp *o = rpc_method_arg(ctx);
    const ExportRequest *req = (const ExportRequest *)msg;
    struct export *e = calloc(1, sizeof(*e));
    struct hook_batch b = {0};
    char why[256] = "";
    if (!e) {
        rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory: retry with a smaller batch");
        return;
    }
    struct config *c = config_live_get(o->live);
    int rc = otlp_points(req, otlp_config_of(c), casca_wall_ns(), telemetry_max_points(o->t), &b,
                         &e->refused, e->first, sizeof(e->first), why, sizeof(why));
    config_unref(c); /* the points borrow req's strings, not the configuration's */
    if (rc) {
        free(e);
        hook_batch_free(&b);
        rpc_finish(ctx, rc, "%s", why);
        return;
    }
    telemetry_count_rejected(o->t, e->refused);
    e->ctx = ctx;
    /* stored() may run, and free e, before this returns */
    rc = telemetry_submit(o->t, rpc_caller_name(ctx), b.pts, b.n, &e->rejected,
                              e->first_rejected, sizeof(e->first_rejected), stored, e, why,
                              sizeof(why));
    hook_batch_free(&b); /* the ingest stage copied what it queued */
    if (rc == CASCA_OK) return; /* stored() answers */
    free(e);
    if (rc == CASCA_ERR_INVALID)
        rpc_finish(ctx, rc, "%s", why);
    else
        rpc_finish(ctx, rc, "the points could not be stored: %s", why);
}

static const struct rpc_method_def otlp_methods[] = {
    RPC_METHOD("Export", opentelemetry__proto__collector__metrics__v1__export_metrics_service_request,
               opentelemetry__proto__collector__metrics__v1__export_metrics_service_response,
               RPC_UNARY, RPC_ROLE_REPORTER | RPC_ROLE_OPERATOR, 0, export_metrics),
};

int otlp_create(struct rpc_server *srv, struct config_live *live, struct telemetry *t,
                struct otlp **out, char *err, size_t errlen)
{
    struct otlp *o = *out = calloc(1, sizeof(*o));
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    o->t = t;
    o->live = live;
    int rc = rpc_server_add_service(
        srv, &opentelemetry__proto__collector__metrics__v1__metrics_service__descriptor, NULL,
        otlp_methods, RPC_NMETHODS(otlp_methods), o, err, errlen);
    if (rc) {
        free(o);
        *out = NULL;
    }
    return rc;
}

void otlp_destroy(struct otlp *o)
{
    free(o);
}
