/* cli_out.c: the casca tool's output: any protobuf-c message as JSON (the protobuf JSON mapping,
 * walked from the message's descriptor, so every reply prints the same way), aligned tables,
 * and formatters of values, ranges, times and durations for people. */
#include <math.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "timeconv.h"

/* ---- JSON ---- */

static json_t *message_json(const ProtobufCMessage *m);

/* proto field name -> JSON name: lower_snake -> lowerCamel, as protoc's json_name. */
static void json_name(const char *name, char *out, size_t cap)
{
    size_t n = 0;
    int upper = 0;
    for (const char *p = name; *p && n + 1 < cap; p++) {
        if (*p == '_') {
            upper = 1;
            continue;
        }
        out[n++] = upper && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
        upper = 0;
    }
    out[n] = 0;
}

static json_t *double_json(double v)
{
    if (isnan(v)) return json_string("NaN");
    if (isinf(v)) return json_string(v > 0 ? "Infinity" : "-Infinity");
    return json_real(v);
}

static json_t *int64_json(int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return json_string(buf);
}

static json_t *uint64_json(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    return json_string(buf);
}

static json_t *bytes_json(const ProtobufCBinaryData *b)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = (b->len + 2) / 3 * 4;
    char *s = malloc(n + 1);
    if (!s) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < b->len; i += 3) {
        uint32_t v = (uint32_t)b->data[i] << 16;
        if (i + 1 < b->len) v |= (uint32_t)b->data[i + 1] << 8;
        if (i + 2 < b->len) v |= b->data[i + 2];
        s[o++] = tab[v >> 18 & 63];
        s[o++] = tab[v >> 12 & 63];
        s[o++] = i + 1 < b->len ? tab[v >> 6 & 63] : '=';
        s[o++] = i + 2 < b->len ? tab[v & 63] : '=';
    }
    s[o] = 0;
    json_t *j = json_string(s);
    free(s);
    return j;
}

/* "2022-01-01T00:00:00Z", with 3, 6 or 9 fraction digits when needed (the JSON mapping). */
/* "1.500s", "-0.5s": seconds with 0, 3, 6 or 9 fraction digits (the JSON mapping). */
static void duration_json_text(char *buf, size_t cap, int64_t seconds, int32_t nanos)
{
    const char *sign = seconds < 0 || nanos < 0 ? "-" : "";
    uint64_t s = (uint64_t)(seconds < 0 ? -seconds : seconds);
    int32_t ns = nanos < 0 ? -nanos : nanos;
    if (!ns)
        snprintf(buf, cap, "%s%" PRIu64 "s", sign, s);
    else if (ns % 1000000 == 0)
        snprintf(buf, cap, "%s%" PRIu64 ".%03ds", sign, s, ns / 1000000);
    else if (ns % 1000 == 0)
        snprintf(buf, cap, "%s%" PRIu64 ".%06ds", sign, s, ns / 1000);
    else
        snprintf(buf, cap, "%s%" PRIu64 ".%09ds", sign, s, ns);
}

/* One value of a field (an element of a repeated field, or the field itself) at p. */
static json_t *value_json(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return int64_json(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return uint64_json(*(const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return double_json(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return double_json(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        return ev ? json_string(ev->name) : json_integer(v);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return json_string(s ? s : "");
    }
    case PROTOBUF_C_TYPE_BYTES:
        return bytes_json(p);
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        return m ? message_json(m) : json_null();
    }
    }
    return json_null();
}

/* Map keys are strings in JSON. */
static json_t *map_key(const ProtobufCFieldDescriptor *f, const void *p)
{
    json_t *k = value_json(f, p);
    if (!k || json_is_string(k)) return k;
    char buf[32];
    if (json_is_integer(k))
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(k));
    else
        snprintf(buf, sizeof(buf), "%s", json_is_true(k) ? "true" : "false");
    json_decref(k);
    return json_string(buf);
}

/* protoc's map<K, V> is a repeated nested XxxEntry {key = 1; value = 2;}. */
static int is_map_entry(const ProtobufCMessageDescriptor *d)
{
    size_t n = strlen(d->short_name);
    return d->n_fields == 2 && n > 5 && !strcmp(d->short_name + n - 5, "Entry") &&
           !strcmp(d->fields[0].name, "key") && !strcmp(d->fields[1].name, "value");
}

static size_t type_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

static json_t *message_json(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    char text[64];
    if (!strcmp(d->name, "google.protobuf.Timestamp")) {
        const Google__Protobuf__Timestamp *t = (const void *)m;
        casca_rfc3339_format(text, sizeof(text), t->seconds, t->nanos);
        return json_string(text);
    }
    if (!strcmp(d->name, "google.protobuf.Duration")) {
        const Google__Protobuf__Duration *du = (const void *)m;
        duration_json_text(text, sizeof(text), du->seconds, du->nanos);
        return json_string(text);
    }
    json_t *obj = json_object();
    for (unsigned i = 0; obj && i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *p = base + f->offset;
        json_t *v = NULL;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(char *const *)p;
            int map = f->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(f->descriptor);
            v = map ? json_object() : json_array();
            for (size_t k = 0; v && k < n; k++) {
                const void *e = arr + k * type_size(f->type);
                if (map) {
                    const ProtobufCMessage *entry = *(ProtobufCMessage *const *)e;
                    const ProtobufCMessageDescriptor *ed = entry->descriptor;
                    json_t *key =
                        map_key(&ed->fields[0], (const char *)entry + ed->fields[0].offset);
                    json_t *val =
                        value_json(&ed->fields[1], (const char *)entry + ed->fields[1].offset);
                    if (key && val) json_object_set(v, json_string_value(key), val);
                    json_decref(key);
                    json_decref(val);
                } else {
                    json_array_append_new(v, value_json(f, e));
                }
            }
        } else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)(base + f->quantifier_offset) == f->id) v = value_json(f, p);
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
                   f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING) {
            if (*(const protobuf_c_boolean *)(base + f->quantifier_offset)) v = value_json(f, p);
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            if (*(ProtobufCMessage *const *)p) v = value_json(f, p); /* unset: left out */
        } else {
            v = value_json(f, p); /* proto3 scalars, defaults included */
        }
        if (v) {
            char name[128];
            json_name(f->name, name, sizeof(name));
            json_object_set_new(obj, name, v);
        }
    }
    return obj;
}

int cli_print_json(const ProtobufCMessage *msg)
{
    json_t *j = message_json(msg);
    int rc = j ? json_dumpf(j, stdout, JSON_COMPACT | JSON_REAL_PRECISION(15)) : -1;
    json_decref(j);
    if (rc || fputc('\n', stdout) == EOF || fflush(stdout)) return CLI_REFUSED;
    return CLI_OK;
}

/* ---- tables ---- */

struct cli_table {
    size_t ncols, ncells, cap;
    char **cells; /* row-major, headers first */
    int has_header;
};

struct cli_table *cli_table_new(size_t ncols, const char *const *headers)
{
    struct cli_table *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    t->ncols = ncols;
    t->has_header = headers != NULL;
    for (size_t i = 0; headers && i < ncols; i++)
        cli_table_cell(t, "%s", headers[i]);
    return t;
}

void cli_table_cell(struct cli_table *t, const char *fmt, ...)
{
    if (!t) return;
    if (t->ncells == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char **cells = realloc(t->cells, cap * sizeof(*cells));
        if (!cells) return;
        t->cells = cells;
        t->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    for (char *p = s; p && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
    t->cells[t->ncells++] = s;
}

/* Width on a terminal: UTF-8 continuation bytes take no column. */
static size_t width(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80) n++;
    return n;
}

static void table_print(struct cli_table *t, FILE *f, const size_t *min_widths, int header)
{
    size_t *w = calloc(t->ncols, sizeof(*w));
    for (size_t i = 0; w && i < t->ncells; i++) {
        size_t n = width(t->cells[i]), col = i % t->ncols;
        if (min_widths && min_widths[col] > n) n = min_widths[col];
        if (n > w[col]) w[col] = n;
    }
    for (size_t i = header || !t->has_header ? 0 : t->ncols; w && i < t->ncells; i++) {
        size_t col = i % t->ncols;
        const char *s = t->cells[i] ? t->cells[i] : "";
        int last = col + 1 == t->ncols || i + 1 == t->ncells;
        fputs(s, f);
        if (last) {
            fputc('\n', f);
        } else {
            for (size_t k = width(s); k < w[col] + 2; k++)
                fputc(' ', f);
        }
    }
    for (size_t i = 0; i < t->ncells; i++)
        free(t->cells[i]);
    free(t->cells);
    free(w);
    free(t);
}

void cli_table_print(struct cli_table *t, FILE *f)
{
    if (t) table_print(t, f, NULL, 1);
}

void cli_table_print_stream(struct cli_table *t, FILE *f, const size_t *min_widths,
                            int *header_done)
{
    if (!t) return;
    table_print(t, f, min_widths, !*header_done);
    *header_done = 1;
}

/* ---- formatters ---- */

/* A number people read: integers without a point, else 10 significant digits (at most 24). */
static void fmt_num(char *buf, size_t cap, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, cap, "%.0f", v);
    else
        snprintf(buf, cap, "%.10g", v);
}

char *cli_fmt_double(char buf[CLI_FMT], double v)
{
    fmt_num(buf, CLI_FMT, v);
    return buf;
}

char *cli_fmt_value(char buf[CLI_FMT], const Casca__V1__Value *v)
{
    switch (v ? v->kind_case : CASCA__V1__VALUE__KIND__NOT_SET) {
    case CASCA__V1__VALUE__KIND_INT_VALUE:
        snprintf(buf, CLI_FMT, "%" PRId64, v->int_value);
        break;
    case CASCA__V1__VALUE__KIND_DOUBLE_VALUE:
        cli_fmt_double(buf, v->double_value);
        break;
    case CASCA__V1__VALUE__KIND_BOOL_VALUE:
        snprintf(buf, CLI_FMT, "%s", v->bool_value ? "true" : "false");
        break;
    case CASCA__V1__VALUE__KIND_STRING_VALUE:
        snprintf(buf, CLI_FMT, "%s", v->string_value);
        break;
    default:
        snprintf(buf, CLI_FMT, "-");
    }
    return buf;
}

char *cli_fmt_range(char buf[CLI_FMT], const Casca__V1__Range *r)
{
    char lo[32], hi[32];
    int has_min = r && r->optional_min_case == CASCA__V1__RANGE__OPTIONAL_MIN_MIN;
    int has_max = r && r->optional_max_case == CASCA__V1__RANGE__OPTIONAL_MAX_MAX;
    if (has_min) fmt_num(lo, sizeof(lo), r->min);
    if (has_max) fmt_num(hi, sizeof(hi), r->max);
    if (has_min && has_max && r->min == r->max)
        snprintf(buf, CLI_FMT, "= %s", lo);
    else if (has_min && has_max)
        snprintf(buf, CLI_FMT, "[%s, %s]", lo, hi);
    else if (has_min)
        snprintf(buf, CLI_FMT, ">= %s", lo);
    else if (has_max)
        snprintf(buf, CLI_FMT, "<= %s", hi);
    else
        snprintf(buf, CLI_FMT, "any");
    return buf;
}

char *cli_fmt_time(char buf[CLI_FMT], const Google__Protobuf__Timestamp *t)
{
    if (!t || (!t->seconds && !t->nanos))
        snprintf(buf, CLI_FMT, "-");
    else
        casca_rfc3339_format(buf, CLI_FMT, t->seconds, t->nanos / 1000000 * 1000000); /* ms */
    return buf;
}

char *cli_fmt_duration(char buf[CLI_FMT], const Google__Protobuf__Duration *d)
{
    if (!d) {
        snprintf(buf, CLI_FMT, "-");
        return buf;
    }
    int64_t s = d->seconds;
    if (s == 0 && d->nanos) { /* under a second */
        if (d->nanos % 1000000 == 0)
            snprintf(buf, CLI_FMT, "%dms", d->nanos / 1000000);
        else
            snprintf(buf, CLI_FMT, "%.3fms", d->nanos / 1e6);
        return buf;
    }
    size_t n = 0;
    if (s >= 86400 && s % 3600 == 0) {
        n += (size_t)snprintf(buf + n, CLI_FMT - n, "%" PRId64 "d", s / 86400);
        s %= 86400;
    }
    if (s >= 3600) {
        n += (size_t)snprintf(buf + n, CLI_FMT - n, "%" PRId64 "h", s / 3600);
        s %= 3600;
    }
    if (s >= 60) {
        n += (size_t)snprintf(buf + n, CLI_FMT - n, "%" PRId64 "m", s / 60);
        s %= 60;
    }
    if (s || d->nanos || !n) {
        if (d->nanos)
            snprintf(buf + n, CLI_FMT - n, "%.3gs", (double)s + d->nanos / 1e9);
        else
            snprintf(buf + n, CLI_FMT - n, "%" PRId64 "s", s);
    }
    return buf;
}

char *cli_fmt_bytes(char buf[CLI_FMT], uint64_t n)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, CLI_FMT, "%" PRIu64 " B", n);
    else
        snprintf(buf, CLI_FMT, "%.1f %s", v, units[u]);
    return buf;
}

char *cli_fmt_enum(char buf[CLI_FMT], const ProtobufCEnumDescriptor *d, int value,
                   const char *prefix)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, value);
    const char *name = ev ? ev->name : "?";
    size_t plen = strlen(prefix);
    if (!strncmp(name, prefix, plen)) name += plen;
    size_t i = 0;
    for (; name[i] && i + 1 < CLI_FMT; i++)
        buf[i] = name[i] >= 'A' && name[i] <= 'Z' ? (char)(name[i] - 'A' + 'a') : name[i];
    buf[i] = 0;
    return buf;
}
