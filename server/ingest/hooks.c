/* hooks: the config sections bus: and hooks:, the message batch, time parsing, and the running
 * hooks (subscription, bounded queue, thread, connector). Interpreters are in hook_json.c and
 * hook_protobuf.c, connectors in hook_lmdb.c and hook_influxdb.c. */
#include "hooks.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "bus.h"
#include "casca/v1/admin.pb-c.h"
#include "casca_err.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "tz.h"
#include "udpaddr.h"
#include "warnlimit.h"
#include "yamldoc.h"

#define HOOK_DEFAULT_QUEUE "1024"
#define HOOK_DEFAULT_QUEUE_BYTES "64MiB"
#define HOOK_DEFAULT_MAX_MESSAGE "1MiB"
#define BUS_DEFAULT_MAX_MESSAGE "16MiB"
#define BUS_DEFAULT_UDP_BUFFER "8MiB"
#define HOOK_SUB_RECVBUF 128 /* messages nng holds for a hook before its callback takes them */
#define HOOK_DRAIN_MS 2000   /* at stop, queued messages still get this long to be stored */

/* ---- the connector table: one row per connector ---- */

static const struct hook_connector_ops *const connectors[] = {
    &hook_connector_lmdb,
    &hook_connector_influxdb,
};
#define NCONNECTORS (sizeof(connectors) / sizeof(connectors[0]))

const struct hook_connector_ops *hook_connector_find(const char *name)
{
    for (size_t i = 0; i < NCONNECTORS; i++)
        if (!strcmp(connectors[i]->name, name)) return connectors[i];
    return NULL;
}

/* The keys of a hook's map: its own, then each connector's options (under the connector's name),
 * so the list an unknown key's error gives is the real one. Built once. */
static const char *const hook_own_keys[] = {"name",   "bus",  "topic",     "format",
                                            "series", "value", "values",   "tags",
                                            "time",   "connector", "queue", "queue_bytes",
                                            "max_message"};
#define NOWN (sizeof(hook_own_keys) / sizeof(hook_own_keys[0]))
static struct config_key hook_key_table[NOWN + NCONNECTORS + 1];
static pthread_once_t hook_keys_once = PTHREAD_ONCE_INIT;

static void hook_keys_build(void)
{
    for (size_t i = 0; i < NOWN; i++)
        hook_key_table[i].name = hook_own_keys[i];
    for (size_t i = 0; i < NCONNECTORS; i++)
        hook_key_table[NOWN + i].name = connectors[i]->name;
}

static const struct config_key *hook_keys(void)
{
    pthread_once(&hook_keys_once, hook_keys_build);
    return hook_key_table;
}

static const struct {
    const char *name;
    enum hook_format format;
    hook_interpret_fn interpret;
} interpreters[] = {
    {"json", HOOK_FORMAT_JSON, hook_json_interpret},
    {"protobuf", HOOK_FORMAT_PROTOBUF, hook_protobuf_interpret},
};

/* ---- batch and arena ---- */

struct hook_arena_chunk {
    struct hook_arena_chunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

void *hook_batch_alloc(struct hook_batch *b, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    struct hook_arena_chunk *c = b->arena;
    if (!c || c->size - c->used < size) {
        size_t want = size > 60000 ? size : 60000;
        struct hook_arena_chunk *n = malloc(sizeof(*n) + want);
        if (!n) return NULL;
        n->used = 0;
        n->size = want;
        n->next = c;
        b->arena = c = n;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

struct tsdb_point *hook_batch_add(struct hook_batch *b)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct tsdb_point *p = realloc(b->pts, cap * sizeof(*p));
        if (!p) return NULL;
        b->pts = p;
        b->cap = cap;
    }
    struct tsdb_point *p = &b->pts[b->n++];
    memset(p, 0, sizeof(*p));
    return p;
}

void hook_batch_reset(struct hook_batch *b)
{
    b->n = 0;
    if (b->held) {
        b->release(b->held);
        b->held = NULL;
    }
    struct hook_arena_chunk *c = b->arena;
    if (!c) return;
    while (c->next) { /* keep the oldest chunk: the usual message fits in it */
        struct hook_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    c->used = 0;
    b->arena = c;
}

void hook_batch_free(struct hook_batch *b)
{
    hook_batch_reset(b);
    free(b->arena);
    free(b->pts);
    memset(b, 0, sizeof(*b));
}

/* ---- time ---- */

static int unix_to_ns(enum hook_time_kind kind, double v, int64_t *out)
{
    /* long double: its 64-bit mantissa keeps integer milliseconds exact when scaled to ns */
    static const long double per[] = {[HOOK_TIME_UNIX_S] = 1e9L,
                                      [HOOK_TIME_UNIX_MS] = 1e6L,
                                      [HOOK_TIME_UNIX_US] = 1e3L,
                                      [HOOK_TIME_UNIX_NS] = 1};
    long double ns = (long double)v * per[kind];
    if (!isfinite(ns) || ns < -9.2e18L || ns > 9.2e18L) return CASCA_ERR_INVALID;
    *out = (int64_t)llroundl(ns);
    return CASCA_OK;
}

/* secs (+ frac ns) since the epoch as ns; a time past 2262 (or before 1677) does not fit int64
 * ns and is a bad time, not an overflow. */
static int secs_to_ns(int64_t secs, int64_t frac, int64_t *out)
{
    int64_t ns;
    if (__builtin_mul_overflow(secs, (int64_t)1000000000, &ns) ||
        __builtin_add_overflow(ns, frac, &ns))
        return CASCA_ERR_INVALID;
    *out = ns;
    return CASCA_OK;
}

int hook_time_parse_number(const struct hook_time *t, double v, int64_t *out_ns)
{
    if (t->kind < HOOK_TIME_UNIX_S)
        return CASCA_ERR_INVALID; /* a number where a formatted time was expected */
    return unix_to_ns(t->kind, v, out_ns);
}

/* "2026-01-05T10:00:00[.fff][Z|+hh:mm]" ('T' or ' '); no zone = t->tz. */
static int parse_rfc3339(const struct hook_time *t, const char *s, int64_t *out)
{
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%d", &tm);
    if (!p || (*p != 'T' && *p != 't' && *p != ' ')) return CASCA_ERR_INVALID;
    if (!(p = strptime(p + 1, "%H:%M:%S", &tm))) return CASCA_ERR_INVALID;
    int64_t frac = 0;
    if (*p == '.') {
        int64_t scale = 100000000;
        if (!isdigit((unsigned char)*++p)) return CASCA_ERR_INVALID;
        for (; isdigit((unsigned char)*p); p++, scale /= 10)
            frac += (*p - '0') * scale;
    }
    int64_t secs = (int64_t)timegm(&tm);
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int h, m;
        if (strlen(p) != 6 || p[3] != ':' || sscanf(p + 1, "%2d:%2d", &h, &m) != 2 || h > 23 ||
            m > 59)
            return CASCA_ERR_INVALID;
        secs -= (*p == '-' ? -1 : 1) * (h * 3600 + m * 60);
        p += 6;
    } else {
        secs = tz_local_to_utc(t->tz, secs);
    }
    if (*p) return CASCA_ERR_INVALID;
    return secs_to_ns(secs, frac, out);
}

int hook_time_parse_string(const struct hook_time *t, const char *s, int64_t *out_ns)
{
    if (t->kind >= HOOK_TIME_UNIX_S) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || *end || errno) return CASCA_ERR_INVALID;
        return unix_to_ns(t->kind, v, out_ns);
    }
    if (t->kind == HOOK_TIME_RFC3339) return parse_rfc3339(t, s, out_ns);
    struct tm tm = {0};
    const char *end = strptime(s, t->format, &tm);
    if (!end || *end) return CASCA_ERR_INVALID;
    int64_t secs = (int64_t)timegm(&tm);
    if (t->format_has_zone)
        secs -= tm.tm_gmtoff;
    else
        secs = tz_local_to_utc(t->tz, secs);
    return secs_to_ns(secs, 0, out_ns);
}

/* ---- config: bus: and hooks: ---- */

static uint64_t fnv(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t fingerprint(uint64_t h, const struct yd_node *n)
{
    if (!n) return fnv(h, "~", 1);
    h = fnv(h, (const char *)&n->kind, sizeof(n->kind));
    if (n->kind == YD_SCALAR) return fnv(h, n->scalar, strlen(n->scalar) + 1);
    for (size_t i = 0; i < n->n; i++) {
        if (n->kind == YD_MAP) h = fingerprint(h, n->keys[i]);
        h = fingerprint(h, n->values[i]);
    }
    return h;
}

static bool is_null(const struct yd_node *n)
{
    return n && n->kind == YD_SCALAR && n->plain && !strcmp(n->scalar, "null");
}

static const char *scalar(struct config_loader *ld, const struct yd_node *n, const char *where)
{
    if (n->kind != YD_SCALAR) {
        config_error(ld, n, "%s must be a single value, not a %s", where, yd_kind_name(n->kind));
        return NULL;
    }
    return n->scalar;
}

/* Checks that map is a map with only keys from known (read by hand: {"name"} rows). */
static bool check_keys(struct config_loader *ld, const struct yd_node *map, const char *where,
                       const struct config_key *known)
{
    if (map->kind != YD_MAP) {
        config_error(ld, map, "%s must be a map of keys, not a %s", where, yd_kind_name(map->kind));
        return false;
    }
    return config_check_keys(ld, NULL, map, known, where);
}

/* A scalar or a list of scalars -> a string array of bus addresses (udp:// too if listen). */
static void string_list(struct config_loader *ld, const struct yd_node *n, const char *where,
                        bool listen, char ***out, size_t *nout)
{
    if (!n || is_null(n)) return;
    size_t cnt = n->kind == YD_SEQ ? n->n : 1;
    *out = calloc(cnt ? cnt : 1, sizeof(char *));
    for (size_t i = 0; *out && i < cnt; i++) {
        const struct yd_node *item = n->kind == YD_SEQ ? n->values[i] : n;
        const char *s = scalar(ld, item, where);
        char why[256];
        if (!s) continue;
        bool ok = listen && udpaddr_is(s) ? udpaddr_check(s, true, why, sizeof(why))
                                          : bus_address_ok(s, why, sizeof(why));
        if (!ok) {
            config_error(ld, item, "%s: %s", where, why);
            continue;
        }
        (*out)[(*nout)++] = strdup(s);
    }
}

static void size_value(struct config_loader *ld, const struct yd_node *n, const char *where,
                       const char *def, uint64_t min, uint64_t max, bool bytes, uint64_t *out)
{
    const char *s = n ? scalar(ld, n, where) : def;
    if (!s) return;
    const char *why = bytes ? config_parse_size(s, out) : config_parse_uint(s, out);
    if (why)
        config_error(ld, n, "%s: '%s': %s", where, s, why);
    else if (*out < min || *out > max)
        config_error(ld, n, "%s: %s is out of range [%llu, %llu]", where, s,
                     (unsigned long long)min, (unsigned long long)max);
}

static const char *const builtin_sources[] = {HOOK_SOURCE_PUBLISH, HOOK_SOURCE_PROBES};
#define NSOURCES (sizeof(builtin_sources) / sizeof(builtin_sources[0]))

static bool is_builtin_source(const char *name)
{
    for (size_t i = 0; i < NSOURCES; i++)
        if (!strcmp(builtin_sources[i], name)) return true;
    return false;
}

static void parse_buses(struct config_loader *ld, const struct yd_node *n, struct hooks_section *s)
{
    if (!n || is_null(n)) return;
    size_t cnt = n->kind == YD_SEQ ? n->n : 1;
    if (!(s->buses = calloc(cnt ? cnt : 1, sizeof(*s->buses)))) return;
    static const struct config_key keys[] = {{"name"},        {"listen"},     {"publish"},
                                             {"max_message"}, {"udp_buffer"}, {NULL}};
    for (size_t i = 0; i < cnt; i++) {
        const struct yd_node *b = n->kind == YD_SEQ ? n->values[i] : n;
        if (!config_expect(ld, NULL, b, YD_MAP, "bus: each bus is a map {name, listen, publish}") ||
            !check_keys(ld, b, "bus", keys))
            continue;
        struct bus_config *bc = &s->buses[s->nbuses++];
        const struct yd_node *name = yd_get(b, "name");
        const char *nm = name ? scalar(ld, name, "bus.name") : (i == 0 ? "main" : NULL);
        if (!name && !nm) config_error(ld, b, "bus: every bus after the first needs a name");
        if (nm && (!*nm || strspn(nm, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789_-.") != strlen(nm)))
            config_error(ld, name, "bus.name '%s': use letters, digits, '_', '-' and '.'", nm);
        if (nm && is_builtin_source(nm))
            config_error(ld, name, "bus.name '%s' is the name of a built-in source: pick another",
                         nm);
        bc->name = strdup(nm ? nm : "");
        for (size_t j = 0; j + 1 < s->nbuses; j++)
            if (!strcmp(s->buses[j].name, bc->name))
                config_error(ld, name ? name : b, "bus: duplicate bus name '%s'", bc->name);
        string_list(ld, yd_get(b, "listen"), "bus.listen", true, &bc->listen, &bc->nlisten);
        string_list(ld, yd_get(b, "publish"), "bus.publish", false, &bc->publish, &bc->npublish);
        size_value(ld, yd_get(b, "max_message"), "bus.max_message", BUS_DEFAULT_MAX_MESSAGE, 1024,
                   1ull << 30, true, &bc->max_message);
        size_value(ld, yd_get(b, "udp_buffer"), "bus.udp_buffer", BUS_DEFAULT_UDP_BUFFER, 64 * 1024,
                   1ull << 30, true, &bc->udp_buffer);
    }
}

/* Splits an RFC 6901 pointer "/a~1b/0" into unescaped tokens. */
static bool split_pointer(const char *ptr, char ***out, size_t *n)
{
    size_t cnt = 0;
    for (const char *p = ptr; *p; p++)
        cnt += *p == '/';
    char **t = calloc(cnt ? cnt : 1, sizeof(char *));
    if (!t) return false;
    *out = t;
    const char *p = ptr + 1;
    for (size_t i = 0; i < cnt; i++) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *tok = malloc(len + 1), *w = tok;
        if (!tok) return false;
        for (size_t k = 0; k < len; k++) {
            if (p[k] == '~' && k + 1 < len && (p[k + 1] == '0' || p[k + 1] == '1')) {
                *w++ = p[k + 1] == '0' ? '~' : '/';
                k++;
            } else {
                *w++ = p[k];
            }
        }
        *w = 0;
        t[(*n)++] = tok;
        p += len + 1;
    }
    return true;
}

enum field_use { USE_VALUE, USE_TAG, USE_TIME };

static void field_text(struct config_loader *ld, const struct yd_node *at, const char *text,
                       enum field_use use, const char *where, struct hook_field *f)
{
    f->text = strdup(text);
    if (!strcmp(text, "$TOPIC") && use == USE_TAG) {
        f->kind = HOOK_FIELD_TOPIC;
    } else if (!strcmp(text, "$RECEIVED") && use == USE_TIME) {
        f->kind = HOOK_FIELD_RECEIVED;
    } else if (text[0] == '/') {
        f->kind = HOOK_FIELD_POINTER;
        if (!split_pointer(text, &f->tokens, &f->ntokens))
            config_error(ld, at, "%s: out of memory", where);
    } else if (use == USE_TAG && text[0] != '$') {
        f->kind = HOOK_FIELD_LITERAL;
    } else {
        config_error(ld, at,
                     "%s: '%s' is not a JSON pointer (write \"/Field\", \"/ENERGY/Power\")%s",
                     where, text,
                     use == USE_TAG    ? ", $TOPIC or a constant"
                     : use == USE_TIME ? " or $RECEIVED"
                                       : "");
    }
}

/* "/ptr" | {field: "/ptr", default: X} */
static void parse_field(struct config_loader *ld, const struct yd_node *n, enum field_use use,
                        const char *where, struct hook_field *f)
{
    if (n->kind == YD_SCALAR) {
        field_text(ld, n, n->scalar, use, where, f);
        return;
    }
    static const struct config_key keys[] = {{"field"}, {"default"}, {NULL}};
    if (!check_keys(ld, n, where, keys)) return;
    const struct yd_node *field = yd_get(n, "field"), *def = yd_get(n, "default");
    const char *text = field ? scalar(ld, field, where) : NULL;
    if (!field) config_error(ld, n, "%s needs a field (a JSON pointer such as \"/Power\")", where);
    if (text) field_text(ld, field, text, use, where, f);
    if (def && (text = scalar(ld, def, where))) {
        f->has_default = true;
        const char *why = use == USE_VALUE ? config_parse_double(text, &f->def_num) : NULL;
        if (why) config_error(ld, def, "%s.default: '%s': %s", where, text, why);
        f->def_str = strdup(text);
    }
}

static void parse_time(struct config_loader *ld, const struct yd_node *n, struct hook_time *t)
{
    t->kind = HOOK_TIME_RFC3339;
    if (!n || is_null(n)) {
        t->f.kind = HOOK_FIELD_RECEIVED;
        return;
    }
    if (n->kind == YD_SCALAR) {
        field_text(ld, n, n->scalar, USE_TIME, "time", &t->f);
        return;
    }
    static const struct config_key keys[] = {
        {"field"}, {"format"}, {"timezone"}, {"default"}, {NULL}};
    if (!check_keys(ld, n, "time", keys)) return;
    const struct yd_node *field = yd_get(n, "field"), *fmt = yd_get(n, "format"),
                         *zone = yd_get(n, "timezone"), *def = yd_get(n, "default");
    const char *s;
    if (!field) {
        config_error(ld, n, "time needs a field (a JSON pointer, or $RECEIVED)");
        return;
    }
    if ((s = scalar(ld, field, "time.field")))
        field_text(ld, field, s, USE_TIME, "time.field", &t->f);
    if (fmt && (s = scalar(ld, fmt, "time.format"))) {
        static const struct {
            const char *name;
            enum hook_time_kind kind;
        } kinds[] = {
            {"rfc3339", HOOK_TIME_RFC3339}, {"iso8601", HOOK_TIME_RFC3339},
            {"unix", HOOK_TIME_UNIX_S},     {"unix_ms", HOOK_TIME_UNIX_MS},
            {"unix_us", HOOK_TIME_UNIX_US}, {"unix_ns", HOOK_TIME_UNIX_NS},
        };
        size_t k = 0;
        while (k < sizeof(kinds) / sizeof(kinds[0]) && strcmp(kinds[k].name, s))
            k++;
        if (k < sizeof(kinds) / sizeof(kinds[0])) {
            t->kind = kinds[k].kind;
        } else if (strchr(s, '%')) {
            t->kind = HOOK_TIME_STRPTIME;
            t->format = strdup(s);
            t->format_has_zone = strstr(s, "%z") != NULL;
        } else {
            config_error(ld, fmt,
                         "time.format '%s': use rfc3339, unix, unix_ms, unix_us, unix_ns "
                         "or a strptime format such as \"%%Y-%%m-%%d %%H:%%M:%%S\"",
                         s);
        }
    }
    if (zone && (s = scalar(ld, zone, "time.timezone"))) {
        char why[256];
        if (!(t->tz = tz_load(s, why, sizeof(why))))
            config_error(ld, zone, "time.timezone: %s", why);
    }
    if (def && (s = scalar(ld, def, "time.default"))) {
        t->f.has_default = true;
        t->f.def_str = strdup(s);
        int64_t ns;
        if (strcmp(s, "$RECEIVED") && hook_time_parse_string(t, s, &ns))
            config_error(ld, def,
                         "time.default: '%s' is neither $RECEIVED nor a time in the "
                         "format of time.format",
                         s);
    }
}

static bool valid_name(const char *s)
{
    return *s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/") ==
                     strlen(s);
}

static void parse_hook(struct config_loader *ld, const struct yd_node *n, struct hooks_section *s,
                       struct hook_config *h)
{
    if (!check_keys(ld, n, "hooks[]", hook_keys()) && n->kind != YD_MAP) {
        h->name = strdup("?");
        return;
    }
    const struct yd_node *v;
    const char *str;
    if (!(v = yd_get(n, "name")) || !(str = scalar(ld, v, "hooks.name")) || !valid_name(str)) {
        config_error(ld, v ? v : n, "every hook needs a name (letters, digits, '_', '-', '.')");
        h->name = strdup("?");
    } else {
        h->name = strdup(str);
    }
    for (struct hook_config *o = s->hooks; o < h; o++)
        if (!strcmp(o->name, h->name)) config_error(ld, v, "duplicate hook name '%s'", h->name);

    str = (v = yd_get(n, "bus")) ? scalar(ld, v, "hooks.bus") : NULL;
    bool builtin = str && is_builtin_source(str);
    if (builtin) {
        /* points come interpreted: what a json hook needs does not apply */
        static const char *const unused[] = {"format", "series", "value", "values", "time", "tags"};
        for (size_t i = 0; i < sizeof(unused) / sizeof(unused[0]); i++)
            if ((v = yd_get(n, unused[i])))
                config_error(ld, v,
                             "hook %s: bus %s gives points, not messages: remove %s: (only "
                             "topic:, connector: and queue options apply)",
                             h->name, str, unused[i]);
    } else if (str && !strstr(str, "://")) {
        size_t b = 0;
        while (b < s->nbuses && strcmp(s->buses[b].name, str))
            b++;
        if (b == s->nbuses)
            config_error(ld, v,
                         "hook %s: bus '%s' is not defined in bus: (or give the address "
                         "of a remote bus's publish side, tcp://HOST:PORT, or a built-in "
                         "source: %s, %s)",
                         h->name, str, HOOK_SOURCE_PUBLISH, HOOK_SOURCE_PROBES);
    } else if (str) {
        char why[256];
        if (!bus_address_ok(str, why, sizeof(why)))
            config_error(ld, v, "hook %s: bus: %s", h->name, why);
    } else if (!s->nbuses) {
        config_error(ld, n,
                     "hook %s: there is no bus to subscribe to: add a bus: section, or "
                     "bus: tcp://HOST:PORT for a remote bus",
                     h->name);
    }
    h->bus = strdup(str ? str : s->nbuses ? s->buses[0].name : "");

    str = (v = yd_get(n, "topic")) ? scalar(ld, v, "hooks.topic") : "";
    if (str && strlen(str) > BUS_MAX_TOPIC)
        config_error(ld, v, "hook %s: topic is longer than %d bytes", h->name, BUS_MAX_TOPIC);
    h->topic = strdup(str ? str : "");

    str = builtin ? NULL : (v = yd_get(n, "format")) ? scalar(ld, v, "hooks.format") : "json";
    size_t f = 0;
    while (str && f < sizeof(interpreters) / sizeof(interpreters[0]) &&
           strcmp(interpreters[f].name, str))
        f++;
    if (str && f == sizeof(interpreters) / sizeof(interpreters[0]))
        config_error(ld, v, "hook %s: format '%s' is not one of: json, protobuf", h->name, str);
    else if (str)
        h->format = interpreters[f].format;

    /* values: {series: "/ptr" | {field, default}}, or series: + value: for one */
    const struct yd_node *values = yd_get(n, "values"), *series = yd_get(n, "series"),
                         *value = yd_get(n, "value");
    if (values && (series || value))
        config_error(ld, values, "hook %s: give either values: or series: with value:", h->name);
    if (values && values->kind == YD_MAP) {
        h->values = calloc(values->n ? values->n : 1, sizeof(*h->values));
        for (size_t i = 0; h->values && i < values->n; i++) {
            struct hook_series *hs = &h->values[h->nvalues++];
            hs->series = strdup(values->keys[i]->scalar);
            if (!*hs->series)
                config_error(ld, values->keys[i], "hook %s: empty series name", h->name);
            parse_field(ld, values->values[i], USE_VALUE, "values", &hs->f);
        }
    } else if (values) {
        config_error(ld, values, "hook %s: values must be a map of series: \"/json/pointer\"",
                     h->name);
    } else if (series || value) {
        const char *sn = series ? scalar(ld, series, "series") : NULL;
        if (!series || !value || !sn || !*sn) {
            config_error(ld, n, "hook %s: series: and value: go together", h->name);
        } else if ((h->values = calloc(1, sizeof(*h->values)))) {
            h->nvalues = 1;
            h->values[0].series = strdup(sn);
            parse_field(ld, value, USE_VALUE, "value", &h->values[0].f);
        }
    }
    if (h->format == HOOK_FORMAT_JSON && !h->nvalues && !values && !builtin)
        config_error(ld, n,
                     "hook %s: a json hook needs values: {series: \"/json/pointer\"} (or "
                     "series: and value:)",
                     h->name);
    if (h->format == HOOK_FORMAT_PROTOBUF && h->nvalues)
        config_error(ld,
                     values   ? values
                     : series ? series
                              : value,
                     "hook %s: a protobuf hook takes series and values from each Point: remove "
                     "values:/series:/value:",
                     h->name);

    if ((v = yd_get(n, "tags")) && !is_null(v)) {
        if (v->kind != YD_MAP) {
            config_error(ld, v,
                         "hook %s: tags must be a map of tag: \"/json/pointer\" | $TOPIC "
                         "| constant",
                         h->name);
        } else if ((h->tags = calloc(v->n ? v->n : 1, sizeof(*h->tags)))) {
            for (size_t i = 0; i < v->n; i++) {
                struct hook_tagspec *t = &h->tags[h->ntags++];
                t->key = strdup(v->keys[i]->scalar);
                parse_field(ld, v->values[i], USE_TAG, "tags", &t->f);
                if (h->format == HOOK_FORMAT_PROTOBUF && t->f.kind == HOOK_FIELD_POINTER)
                    config_error(ld, v->values[i],
                                 "hook %s: a protobuf hook's tags can only be "
                                 "$TOPIC or constants",
                                 h->name);
            }
        }
    }
    parse_time(ld, yd_get(n, "time"), &h->time);
    if (h->format == HOOK_FORMAT_PROTOBUF && yd_get(n, "time"))
        config_error(ld, yd_get(n, "time"),
                     "hook %s: a protobuf hook takes the time from each "
                     "Point (unset: $RECEIVED): remove time:",
                     h->name);

    str = (v = yd_get(n, "connector")) ? scalar(ld, v, "hooks.connector") : "lmdb";
    if (str && !(h->connector = hook_connector_find(str))) {
        char list[128] = "";
        for (size_t i = 0; i < NCONNECTORS; i++)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                     connectors[i]->name);
        config_error(ld, v, "hook %s: connector '%s' is not one of: %s", h->name, str, list);
    }
    /* a connector's options live under its name and are its own to read */
    for (size_t i = 0; i < NCONNECTORS; i++) {
        const struct hook_connector_ops *c = connectors[i];
        const struct yd_node *opts = yd_get(n, c->name);
        if (c == h->connector && c->parse)
            h->connector_options = c->parse(ld, opts, n);
        else if (opts && c == h->connector)
            config_error(ld, opts, "hook %s: connector %s takes no options: remove %s:", h->name,
                         c->name, c->name);
        else if (opts)
            config_error(ld, opts, "hook %s: %s: is only for connector: %s", h->name, c->name,
                         c->name);
    }

    size_value(ld, yd_get(n, "queue"), "hooks.queue", HOOK_DEFAULT_QUEUE, 1, 1000000, false,
               &h->queue);
    size_value(ld, yd_get(n, "queue_bytes"), "hooks.queue_bytes", HOOK_DEFAULT_QUEUE_BYTES, 1024,
               1ull << 34, true, &h->queue_bytes);
    size_value(ld, yd_get(n, "max_message"), "hooks.max_message", HOOK_DEFAULT_MAX_MESSAGE, 64,
               1ull << 30, true, &h->max_message);
}

static void *hooks_section_parse(struct config_loader *ld, const struct yd_node *const values[])
{
    const struct yd_node *bus = values[0], *hooks = values[1];
    if ((!bus || is_null(bus)) && (!hooks || is_null(hooks))) return NULL;
    struct hooks_section *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->fingerprint = fingerprint(fingerprint(14695981039346656037ull, bus), hooks);
    if (bus && bus->kind == YD_SCALAR && !is_null(bus))
        config_error(ld, bus, "bus must be a map {name, listen, publish} or a list of them");
    else
        parse_buses(ld, bus, s);
    if (hooks && !is_null(hooks)) {
        if (hooks->kind != YD_SEQ) {
            config_error(ld, hooks, "hooks must be a list of hooks (- name: ...)");
        } else if ((s->hooks = calloc(hooks->n ? hooks->n : 1, sizeof(*s->hooks)))) {
            for (size_t i = 0; i < hooks->n; i++)
                if (config_expect(ld, NULL, hooks->values[i], YD_MAP,
                                  "hooks: each hook is a map (- name: ..., topic: ...)"))
                    parse_hook(ld, hooks->values[i], s, &s->hooks[s->nhooks++]);
        }
    }
    return s;
}

static void field_free(struct hook_field *f)
{
    free(f->text);
    for (size_t i = 0; i < f->ntokens; i++)
        free(f->tokens[i]);
    free(f->tokens);
    free(f->def_str);
}

static void hooks_section_free(void *section)
{
    struct hooks_section *s = section;
    if (!s) return;
    for (size_t i = 0; i < s->nbuses; i++) {
        struct bus_config *b = &s->buses[i];
        for (size_t j = 0; j < b->nlisten; j++)
            free(b->listen[j]);
        for (size_t j = 0; j < b->npublish; j++)
            free(b->publish[j]);
        free(b->listen);
        free(b->publish);
        free(b->name);
    }
    free(s->buses);
    for (size_t i = 0; i < s->nhooks; i++) {
        struct hook_config *h = &s->hooks[i];
        free(h->name);
        free(h->bus);
        free(h->topic);
        for (size_t j = 0; j < h->nvalues; j++) {
            free(h->values[j].series);
            field_free(&h->values[j].f);
        }
        free(h->values);
        for (size_t j = 0; j < h->ntags; j++) {
            free(h->tags[j].key);
            field_free(&h->tags[j].f);
        }
        free(h->tags);
        field_free(&h->time.f);
        free(h->time.format);
        tz_free(h->time.tz);
        if (h->connector && h->connector->free_options)
            h->connector->free_options(h->connector_options);
    }
    free(s->hooks);
    free(s);
}

const struct config_section hooks_config_section = {
    .keys = (const char *const[]){HOOKS_CONFIG_KEYS, NULL},
    .parse = hooks_section_parse,
    .free = hooks_section_free,
};

/* ---- running hooks ---- */

void hook_counters_unref(struct hook_counters *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1) free(c);
}

struct hook_ack {
    atomic_uint refs;
    atomic_int err; /* the first failure */
    char why[256];  /* written once, by whoever set err */
    hook_done_fn done;
    void *arg;
};

struct hook_ack *hook_ack_hold(struct hook_ack *a)
{
    if (a) atomic_fetch_add(&a->refs, 1);
    return a;
}

static void ack_record(struct hook_ack *a, int err, const char *why)
{
    int none = CASCA_OK;
    if (a && err && atomic_compare_exchange_strong(&a->err, &none, err))
        snprintf(a->why, sizeof(a->why), "%s", why && *why ? why : casca_strerror(err));
}

void hook_ack_release(struct hook_ack *a, int err, const char *why)
{
    if (!a) return;
    ack_record(a, err, why);
    if (atomic_fetch_sub(&a->refs, 1) != 1) return;
    if (a->done) a->done(atomic_load(&a->err), a->why, a->arg);
    free(a);
}

/* Points from a built-in source, copied in one block for the hooks that queue them. */
struct hook_points {
    atomic_uint refs;
    size_t n, bytes;
    struct tsdb_point pts[]; /* then the tags, then the strings */
};

static struct hook_points *points_copy(const struct tsdb_point *pts, size_t n)
{
    size_t bytes = sizeof(struct hook_points) + n * sizeof(*pts);
    for (size_t i = 0; i < n; i++) {
        bytes += pts[i].ntags * sizeof(struct tsdb_tag) + strlen(pts[i].series) + 1;
        for (size_t t = 0; t < pts[i].ntags; t++)
            bytes += strlen(pts[i].tags[t].key) + strlen(pts[i].tags[t].value) + 2;
    }
    struct hook_points *hp = malloc(bytes);
    if (!hp) return NULL;
    atomic_init(&hp->refs, 1);
    hp->n = n;
    hp->bytes = bytes;
    struct tsdb_tag *tags = (struct tsdb_tag *)(hp->pts + n);
    size_t ntags = 0;
    for (size_t i = 0; i < n; i++)
        ntags += pts[i].ntags;
    char *str = (char *)(tags + ntags);
#define COPY(dst, src) (dst = memcpy(str, src, strlen(src) + 1), str += strlen(src) + 1)
    for (size_t i = 0; i < n; i++) {
        hp->pts[i] = pts[i];
        COPY(hp->pts[i].series, pts[i].series);
        hp->pts[i].tags = tags;
        for (size_t t = 0; t < pts[i].ntags; t++, tags++) {
            COPY(tags->key, pts[i].tags[t].key);
            COPY(tags->value, pts[i].tags[t].value);
        }
    }
#undef COPY
    return hp;
}

static void points_unref(struct hook_points *hp)
{
    if (hp && atomic_fetch_sub(&hp->refs, 1) == 1) free(hp);
}

/* A queued message from a bus (msg), or points from a built-in source (pts, with its ack). */
struct queued {
    nng_msg *msg;
    struct hook_points *pts;
    struct hook_ack *ack;
    size_t len;
    int64_t received_ns;
};

struct hook {
    const struct hook_config *cfg;
    const char *source; /* a built-in source it takes points from, or NULL: a bus */
    hook_interpret_fn interpret;
    struct bus *local; /* the bus of this process it subscribes to, or NULL: a remote one */
    nng_socket sub;    /* remote buses only */
    bool sub_open;
    nng_aio *aio;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct queued *ring;
    size_t head, count;
    uint64_t bytes;
    bool stop;
    pthread_t thread;
    bool thread_started;
    void *conn;
    struct hook_counters *ctr;
    struct warn_limit warn_in, warn_work;
    struct hook_batch batch;
};

struct hooks {
    const struct hooks_section *sec;
    struct bus **buses;
    size_t nbuses;
    struct hook **hooks; /* the file's, then the implicit ones */
    size_t nhooks, nlisted;
};

/* Takes the built-in source's points when no hook of the file does. */
static const struct hook_config implicit_hooks[] = {
    {.name = HOOK_SOURCE_PUBLISH, .bus = HOOK_SOURCE_PUBLISH, .topic = "",
     .connector = &hook_connector_lmdb, .queue = 1024, .queue_bytes = 64 << 20},
    {.name = HOOK_SOURCE_PROBES, .bus = HOOK_SOURCE_PROBES, .topic = "",
     .connector = &hook_connector_lmdb, .queue = 1024, .queue_bytes = 64 << 20},
};

/* Puts q in the queue, or counts it as dropped and returns false. Never blocks. */
static bool enqueue(struct hook *h, struct queued q)
{
    uint64_t left_out = 0;
    pthread_mutex_lock(&h->lock);
    bool full = h->count == h->cfg->queue || h->bytes + q.len > h->cfg->queue_bytes;
    if (!full) {
        h->ring[(h->head + h->count++) % h->cfg->queue] = q;
        h->bytes += q.len;
        pthread_cond_signal(&h->cond);
    }
    pthread_mutex_unlock(&h->lock);
    if (full) {
        atomic_fetch_add(&h->ctr->dropped, 1);
        if (warn_limit_allow(&h->warn_in, &left_out))
            log_warn("hooks",
                     "hook %s: queue full (%llu messages): dropping messages until "
                     "it catches up%s",
                     h->cfg->name, (unsigned long long)h->cfg->queue,
                     left_out ? " (more suppressed)" : "");
    }
    return !full;
}

static void process(struct hook *h, nng_msg *m, int64_t received_ns);

/* Takes the message into the queue (or, for a connector that only queues, stores it now), or
 * drops and counts it. Never blocks. */
static void take(struct hook *h, nng_msg *m)
{
    size_t len = nng_msg_len(m);
    uint64_t left_out = 0;
    if (len > h->cfg->max_message) {
        atomic_fetch_add(&h->ctr->errors, 1);
        if (warn_limit_allow(&h->warn_in, &left_out))
            log_warn("hooks",
                     "hook %s: dropped a message of %zu bytes: over max_message %llu "
                     "(raise hooks.max_message if it is real)%s",
                     h->cfg->name, len, (unsigned long long)h->cfg->max_message,
                     left_out ? " (more suppressed)" : "");
        nng_msg_free(m);
    } else if (h->cfg->connector->any_thread) {
        /* the connector only queues (lmdb): interpreting here saves a thread hand-off and a
         * wake-up per message; messages of one hook arrive on one thread at a time */
        process(h, m, casca_wall_ns());
        nng_msg_free(m);
    } else if (!enqueue(h, (struct queued){.msg = m, .len = len, .received_ns = casca_wall_ns()})) {
        nng_msg_free(m);
    }
}

/* A local bus hands a message over (bus_deliver_fn), on its forwarding thread. */
static void deliver(void *arg, nng_msg *m)
{
    take(arg, m);
}

/* A remote bus: a message arrived on the SUB socket, on an nng task thread. */
static void on_message(void *arg)
{
    struct hook *h = arg;
    if (nng_aio_result(h->aio) != 0) return; /* the socket closed */
    take(h, nng_aio_get_msg(h->aio));
    nng_recv_aio(h->sub, h->aio);
}

/* Hands points to the connector; counts and logs what it refuses (counted: the message already
 * counts as an error) and records it in ack. */
static void store(struct hook *h, const char *topic, const struct tsdb_point *pts, size_t n,
                  struct hook_ack *ack, bool counted)
{
    char why[256] = "";
    uint64_t left_out = 0;
    int wrc = h->cfg->connector->write(h->conn, pts, n, ack, why, sizeof(why));
    if (wrc == CASCA_ERR_FULL) {
        atomic_fetch_add(&h->ctr->dropped, 1);
        if (warn_limit_allow(&h->warn_work, &left_out))
            log_warn("hooks", "hook %s: the %s store is overloaded: dropped %zu points%s",
                     h->cfg->name, h->cfg->connector->name, n, left_out ? " (more suppressed)" : "");
        snprintf(why, sizeof(why), "the store's write queue is full (tsdb.queue_points)");
    } else if (wrc != CASCA_OK) {
        if (!counted) atomic_fetch_add(&h->ctr->errors, 1);
        if (warn_limit_allow(&h->warn_work, &left_out))
            log_warn("hooks", "hook %s: message on topic '%s': cannot store %s%s", h->cfg->name,
                     topic, *why ? why : casca_strerror(wrc), left_out ? " (more suppressed)" : "");
    }
    ack_record(ack, wrc, why);
}

static void process(struct hook *h, nng_msg *m, int64_t received_ns)
{
    const char *topic;
    size_t tlen, plen;
    const void *payload;
    char topic_z[BUS_MAX_TOPIC + 1], err[512] = "";
    uint64_t left_out = 0;
    if (!bus_split(nng_msg_body(m), nng_msg_len(m), &topic, &tlen, &payload, &plen)) {
        atomic_fetch_add(&h->ctr->errors, 1);
        if (warn_limit_allow(&h->warn_work, &left_out))
            log_warn("hooks", "hook %s: a message without topic framing: dropped", h->cfg->name);
        return;
    }
    memcpy(topic_z, topic, tlen);
    topic_z[tlen] = 0;
    int rc = h->interpret(h->cfg, topic_z, payload, plen, received_ns, &h->batch, err, sizeof(err));
    if (rc != CASCA_OK) {
        atomic_fetch_add(&h->ctr->errors, 1);
        if (warn_limit_allow(&h->warn_work, &left_out))
            log_warn("hooks", "hook %s: message on topic '%s' %s: %s%s", h->cfg->name, topic_z,
                     h->batch.n ? "partly stored" : "dropped", err,
                     left_out ? " (more suppressed)" : "");
    }
    if (h->batch.n) store(h, topic_z, h->batch.pts, h->batch.n, NULL, rc != CASCA_OK);
    hook_batch_reset(&h->batch);
}

/* Frees what q holds; err: why it was not stored (CASCA_OK: it was handed on). */
static void drop_queued(struct queued *q, int err)
{
    if (q->msg) nng_msg_free(q->msg);
    points_unref(q->pts);
    hook_ack_release(q->ack, err, err ? "cascad is stopping" : NULL);
}

static void *hook_thread(void *arg)
{
    struct hook *h = arg;
    const struct hook_connector_ops *ops = h->cfg->connector;
    uint64_t next_flush_ms = UINT64_MAX;
    int64_t drain_deadline = 0;
    pthread_mutex_lock(&h->lock);
    for (;;) {
        while (!h->count && !h->stop) {
            if (next_flush_ms == UINT64_MAX) {
                pthread_cond_wait(&h->cond, &h->lock);
            } else {
                int64_t at = casca_mono_ns() + (int64_t)next_flush_ms * CASCA_NS_PER_MS;
                if (casca_cond_wait_until(&h->cond, &h->lock, at) == ETIMEDOUT) {
                    pthread_mutex_unlock(&h->lock);
                    next_flush_ms = ops->flush(h->conn, false);
                    pthread_mutex_lock(&h->lock);
                }
            }
        }
        if (h->stop && !drain_deadline)
            drain_deadline = casca_mono_ns() + (int64_t)HOOK_DRAIN_MS * 1000000;
        if (!h->count || (h->stop && casca_mono_ns() > drain_deadline)) break;
        struct queued q = h->ring[h->head];
        h->head = (h->head + 1) % h->cfg->queue;
        h->count--;
        h->bytes -= q.len;
        pthread_mutex_unlock(&h->lock);
        if (q.msg)
            process(h, q.msg, q.received_ns);
        else
            store(h, h->source, q.pts->pts, q.pts->n, q.ack, false);
        drop_queued(&q, CASCA_OK);
        next_flush_ms = ops->flush(h->conn, false);
        pthread_mutex_lock(&h->lock);
    }
    size_t left = h->count;
    pthread_mutex_unlock(&h->lock);
    if (left)
        log_warn("hooks",
                 "hook %s: stopping with %zu messages not stored (the store did not keep "
                 "up within %d ms)",
                 h->cfg->name, left, HOOK_DRAIN_MS);
    ops->flush(h->conn, true);
    return NULL;
}

static void hook_destroy(struct hook *h)
{
    if (!h) return;
    if (h->local) bus_unsubscribe(h->local, h); /* no delivery runs once it returns */
    if (h->sub_open) nng_close(h->sub);
    if (h->aio) nng_aio_stop(h->aio);
    nng_aio_free(h->aio);
    if (h->thread_started) {
        pthread_mutex_lock(&h->lock);
        h->stop = true;
        pthread_cond_signal(&h->cond);
        pthread_mutex_unlock(&h->lock);
        pthread_join(h->thread, NULL);
    }
    if (h->conn) h->cfg->connector->close(h->conn);
    for (size_t i = 0; i < h->count; i++) {
        atomic_fetch_add(&h->ctr->dropped, 1);
        drop_queued(&h->ring[(h->head + i) % h->cfg->queue], CASCA_ERR_UNAVAILABLE);
    }
    uint64_t stored = atomic_load(&h->ctr->stored), dropped = atomic_load(&h->ctr->dropped),
             errors = atomic_load(&h->ctr->errors);
    log_info("hooks", "hook %s stopped: %llu points stored, %llu messages dropped, %llu errors",
             h->cfg->name, (unsigned long long)stored, (unsigned long long)dropped,
             (unsigned long long)errors);
    hook_counters_unref(h->ctr);
    hook_batch_free(&h->batch);
    free(h->ring);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    free(h);
}

static int hook_start(const struct hook_config *cfg, struct bus *local, const char *address,
                      const struct hook_env *env, struct hook **out, char *err, size_t errlen)
{
    struct hook *h = calloc(1, sizeof(*h));
    if (!h) return CASCA_ERR_NOMEM;
    h->cfg = cfg;
    pthread_mutex_init(&h->lock, NULL);
    casca_cond_init_mono(&h->cond);
    for (size_t i = 0; i < sizeof(interpreters) / sizeof(interpreters[0]); i++)
        if (interpreters[i].format == cfg->format) h->interpret = interpreters[i].interpret;
    h->ctr = calloc(1, sizeof(*h->ctr));
    h->ring = calloc(cfg->queue, sizeof(*h->ring));
    if (!h->ctr || !h->ring) {
        hook_destroy(h);
        return CASCA_ERR_NOMEM;
    }
    atomic_init(&h->ctr->refs, 1);
    int rc = cfg->connector->open(cfg, env, h->ctr, &h->conn, err, errlen);
    if (rc) {
        hook_destroy(h);
        return rc;
    }
    if (pthread_create(&h->thread, NULL, hook_thread, h)) {
        snprintf(err, errlen, "hook %s: cannot start its thread", cfg->name);
        hook_destroy(h);
        return CASCA_ERR_INTERNAL;
    }
    h->thread_started = true;
    if (is_builtin_source(cfg->bus)) { /* hooks_submit hands it points */
        h->source = cfg->bus;
        *out = h;
        return CASCA_OK;
    }
    if (local) { /* in this process: the bus hands messages over, nothing lost on the way */
        if ((rc = bus_subscribe(local, cfg->topic, deliver, h))) {
            snprintf(err, errlen, "hook %s: cannot subscribe to bus %s", cfg->name,
                     bus_name(local));
            hook_destroy(h);
            return rc;
        }
        h->local = local;
        *out = h;
        return CASCA_OK;
    }
    int rv;
    if ((rv = nng_sub0_open(&h->sub)) || !(h->sub_open = true) ||
        (rv = nng_socket_set(h->sub, NNG_OPT_SUB_SUBSCRIBE, cfg->topic, strlen(cfg->topic))) ||
        (rv = nng_socket_set_size(h->sub, NNG_OPT_RECVMAXSZ, 0)) || /* the bus limits sizes */
        (rv = nng_socket_set_int(h->sub, NNG_OPT_RECVBUF, HOOK_SUB_RECVBUF)) ||
        (rv = nng_aio_alloc(&h->aio, on_message, h))) {
        snprintf(err, errlen, "hook %s: cannot open its socket: %s", cfg->name, nng_strerror(rv));
        hook_destroy(h);
        return CASCA_ERR_INTERNAL;
    }
    /* a remote bus may be down now: the dialer keeps retrying in the background */
    if ((rv = nng_dial(h->sub, address, NULL, NNG_FLAG_NONBLOCK))) {
        snprintf(err, errlen, "hook %s: cannot subscribe to %s: %s", cfg->name, address,
                 nng_strerror(rv));
        hook_destroy(h);
        return CASCA_ERR_UNAVAILABLE;
    }
    nng_recv_aio(h->sub, h->aio);
    *out = h;
    return CASCA_OK;
}

int hooks_create(const struct hooks_section *sec, const struct hook_env *env, struct hooks **out,
                 char *err, size_t errlen)
{
    *out = NULL;
    struct hooks *hs = calloc(1, sizeof(*hs));
    if (!hs) return CASCA_ERR_NOMEM;
    hs->sec = sec;
    int rc = CASCA_OK;
    if (sec && sec->nbuses && !(hs->buses = calloc(sec->nbuses, sizeof(*hs->buses)))) {
        hooks_destroy(hs);
        return CASCA_ERR_NOMEM;
    }
    for (size_t i = 0; sec && i < sec->nbuses && !rc; i++) {
        const struct bus_config *bc = &sec->buses[i];
        const char **routes = calloc(sec->nhooks + 1, sizeof(char *));
        size_t nroutes = 0;
        for (size_t j = 0; routes && j < sec->nhooks; j++)
            if (!strcmp(sec->hooks[j].bus, bc->name)) routes[nroutes++] = sec->hooks[j].topic;
        struct bus_options o = {
            .name = bc->name,
            .listen = (const char *const *)bc->listen,
            .nlisten = bc->nlisten,
            .publish = (const char *const *)bc->publish,
            .npublish = bc->npublish,
            .max_message = bc->max_message,
            .udp_buffer = bc->udp_buffer,
            .routes = routes,
            .nroutes = nroutes,
        };
        rc = routes ? bus_create(&o, &hs->buses[hs->nbuses], err, errlen) : CASCA_ERR_NOMEM;
        free(routes);
        if (!rc) {
            hs->nbuses++;
            log_info("hooks", "bus %s: listening on %zu address(es) + %s, publishing on %zu + %s",
                     bc->name, bc->nlisten, bus_ingress_inproc(hs->buses[i]), bc->npublish,
                     bus_publish_inproc(hs->buses[i]));
        }
    }
    if (!(hs->hooks = calloc((sec ? sec->nhooks : 0) + NSOURCES, sizeof(*hs->hooks)))) {
        hooks_destroy(hs);
        return CASCA_ERR_NOMEM;
    }
    bool fed[NSOURCES] = {false}; /* a built-in source has a hook in the file */
    for (size_t i = 0; sec && i < sec->nhooks && !rc; i++) {
        const struct hook_config *hc = &sec->hooks[i];
        if (is_builtin_source(hc->bus)) {
            for (size_t k = 0; k < NSOURCES; k++)
                fed[k] |= !strcmp(builtin_sources[k], hc->bus);
            if (!env || !env->builtin_sources) {
                log_info("hooks", "hook %s: takes cascad's %s points: not run here", hc->name,
                         hc->bus);
                continue;
            }
        }
        struct bus *local = NULL;
        for (size_t b = 0; b < hs->nbuses; b++)
            if (!strcmp(bus_name(hs->buses[b]), hc->bus))
                local = hs->buses[b];
        if ((rc = hook_start(hc, local, hc->bus, env, &hs->hooks[hs->nhooks], err, errlen)) ==
            CASCA_OK) {
            hs->nhooks++;
            log_info("hooks", "hook %s: topic '%s' on %s, format %s, connector %s", hc->name,
                     hc->topic, hc->bus, hc->format == HOOK_FORMAT_JSON ? "json" : "protobuf",
                     hc->connector->name);
        }
    }
    hs->nlisted = hs->nhooks;
    for (size_t k = 0; k < NSOURCES && !rc && env && env->builtin_sources; k++)
        if (!fed[k] && (rc = hook_start(&implicit_hooks[k], NULL, NULL, env,
                                        &hs->hooks[hs->nhooks], err, errlen)) == CASCA_OK)
            hs->nhooks++;
    if (rc) {
        hooks_destroy(hs);
        return rc;
    }
    *out = hs;
    return CASCA_OK;
}

void hooks_destroy(struct hooks *hs)
{
    if (!hs) return;
    for (size_t i = 0; i < hs->nhooks; i++)
        hook_destroy(hs->hooks[i]);
    for (size_t i = 0; i < hs->nbuses; i++)
        bus_destroy(hs->buses[i]);
    free(hs->hooks);
    free(hs->buses);
    free(hs);
}

void hooks_reload(struct hooks *hs, const struct hooks_section *next)
{
    uint64_t a = hs && hs->sec ? hs->sec->fingerprint : 0, b = next ? next->fingerprint : 0;
    if (a != b)
        log_warn("hooks", "bus: or hooks: changed: the running buses and hooks stay as they are "
                          "until the next restart");
}

size_t hooks_count(const struct hooks *hs)
{
    return hs ? hs->nlisted : 0;
}

int hooks_submit(struct hooks *hs, const char *source, const char *topic,
                 const struct tsdb_point *pts, size_t n, hook_done_fn done, void *arg, char *why,
                 size_t whylen)
{
    struct hook_ack *ack = calloc(1, sizeof(*ack));
    if (!ack) {
        snprintf(why, whylen, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    atomic_init(&ack->refs, 1); /* this call's, released at the end */
    ack->done = done;
    ack->arg = arg;
    struct hook_points *copy = NULL;
    size_t taken = 0;
    for (size_t i = 0; hs && i < hs->nhooks; i++) {
        struct hook *h = hs->hooks[i];
        if (!h->source || strcmp(h->source, source) ||
            strncmp(topic, h->cfg->topic, strlen(h->cfg->topic)))
            continue;
        taken++;
        if (h->cfg->connector->any_thread) { /* no hand-off: the connector only queues */
            store(h, topic, pts, n, ack, false);
            continue;
        }
        if (!copy && !(copy = points_copy(pts, n))) {
            ack_record(ack, CASCA_ERR_NOMEM, "out of memory");
            continue;
        }
        atomic_fetch_add(&copy->refs, 1);
        struct queued q = {.pts = copy, .ack = hook_ack_hold(ack), .len = copy->bytes,
                           .received_ns = casca_wall_ns()};
        if (!enqueue(h, q)) {
            ack_record(ack, CASCA_ERR_FULL, "an ingest hook's queue is full (hooks.queue)");
            drop_queued(&q, CASCA_OK);
        }
    }
    points_unref(copy);
    if (!taken) {
        free(ack);
        snprintf(why, whylen, "no hook takes %s points on topic '%s'", source, topic);
        return CASCA_ERR_PRECONDITION;
    }
    hook_ack_release(ack, CASCA_OK, NULL);
    return CASCA_OK;
}

size_t hooks_stats(const struct hooks *hs, struct hook_stats *out, size_t max)
{
    size_t n = 0;
    for (; hs && n < hs->nlisted && n < max; n++) {
        struct hook *h = hs->hooks[n];
        pthread_mutex_lock(&h->lock);
        out[n].queued = h->count;
        pthread_mutex_unlock(&h->lock);
        out[n].name = h->cfg->name;
        out[n].dropped = atomic_load(&h->ctr->dropped);
        out[n].stored = atomic_load(&h->ctr->stored);
        out[n].errors = atomic_load(&h->ctr->errors);
    }
    return n;
}

void hooks_bus_stats(const struct hooks *hs, struct bus_stats *sum)
{
    *sum = (struct bus_stats){0};
    for (size_t i = 0; hs && i < hs->nbuses; i++) {
        struct bus_stats st;
        bus_stats(hs->buses[i], &st);
        sum->received += st.received;
        sum->published += st.published;
        sum->malformed += st.malformed;
        sum->unrouted += st.unrouted;
        sum->lost += st.lost;
    }
}

Casca__V1__HookStatus **hooks_status_pb(const struct hooks *hs, size_t *n)
{
    *n = 0;
    size_t cnt = hooks_count(hs);
    if (!cnt) return NULL;
    /* one block: the pointer array, the messages, the stats */
    Casca__V1__HookStatus **ptrs =
        malloc(cnt * (sizeof(*ptrs) + sizeof(Casca__V1__HookStatus) + sizeof(struct hook_stats)));
    if (!ptrs) return NULL;
    Casca__V1__HookStatus *msgs = (Casca__V1__HookStatus *)(ptrs + cnt);
    struct hook_stats *st = (struct hook_stats *)(msgs + cnt);
    cnt = hooks_stats(hs, st, cnt);
    for (size_t i = 0; i < cnt; i++) {
        casca__v1__hook_status__init(&msgs[i]);
        msgs[i].name = (char *)st[i].name;
        msgs[i].queued = st[i].queued;
        msgs[i].dropped = st[i].dropped;
        msgs[i].stored = st[i].stored;
        msgs[i].errors = st[i].errors;
        ptrs[i] = &msgs[i];
    }
    *n = cnt;
    return ptrs;
}
