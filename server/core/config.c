#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "casca_err.h"
#include "yamldoc.h"

/* ---- errors ---- */

struct config_loader {
    const char *file;
    char *dir; /* the file's directory, for relative paths */
    struct config_errors *errs;
    const struct config *c; /* the snapshot being built */
};

static void add_line(struct config_errors *e, char *line)
{
    char **grown = line ? realloc(e->lines, (e->n + 1) * sizeof(*grown)) : NULL;
    if (!grown) {
        free(line);
        return;
    }
    e->lines = grown;
    e->lines[e->n++] = line;
}

static void verror_in(struct config_loader *ld, const char *file, const struct yd_node *at,
                      const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    char *line = NULL;
    int n = at ? asprintf(&line, "%s:%u:%u: %s", file, at->line, at->col, msg)
               : asprintf(&line, "%s: %s", file, msg);
    if (n < 0)
        line = NULL;
    add_line(ld->errs, line);
}

void config_error_in(struct config_loader *ld, const char *file, const struct yd_node *at,
                     const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror_in(ld, file, at, fmt, ap);
    va_end(ap);
}

void config_error(struct config_loader *ld, const struct yd_node *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror_in(ld, ld->file, at, fmt, ap);
    va_end(ap);
}

bool config_expect(struct config_loader *ld, const char *file, const struct yd_node *n,
                   enum yd_kind want, const char *fmt, ...)
{
    if (n->kind == want)
        return true;
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (n->kind == YD_SCALAR)
        config_error_in(ld, file ? file : ld->file, n, "%s, not a value ('%.40s')", what,
                        n->scalar);
    else
        config_error_in(ld, file ? file : ld->file, n, "%s, not a %s", what,
                        yd_kind_name(n->kind));
    return false;
}

const char *config_loader_file(const struct config_loader *ld)
{
    return ld->file;
}

size_t config_error_count(const struct config_loader *ld)
{
    return ld->errs->n;
}

const char *config_parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(v))
        return "expected a finite number";
    *out = v;
    return NULL;
}

void config_errors_free(struct config_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->lines[i]);
    free(e->lines);
    e->lines = NULL;
    e->n = 0;
}

/* ---- value parsers: text -> typed value, or an error message ---- */

const char *config_parse_uint(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)*s))
        return "expected a whole number";
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return "expected a whole number";
    *out = v;
    return NULL;
}

/* "64MiB", "4096", "1GB": bytes. */
const char *config_parse_size(const char *s, uint64_t *out)
{
    static const struct { const char *suffix; uint64_t mult; } units[] = {
        {"", 1},           {"B", 1},           {"KiB", 1ull << 10}, {"MiB", 1ull << 20},
        {"GiB", 1ull << 30}, {"TiB", 1ull << 40}, {"KB", 1000},        {"MB", 1000000},
        {"GB", 1000000000}, {"k", 1ull << 10},    {"M", 1ull << 20},   {"G", 1ull << 30},
    };
    char *end;
    if (!isdigit((unsigned char)*s))
        return "expected a size such as 4096, 64MiB or 1GiB";
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            if (errno || (units[i].mult > 1 && v > UINT64_MAX / units[i].mult))
                return "size too large";
            *out = v * units[i].mult;
            return NULL;
        }
    }
    return "expected a size such as 4096, 64MiB or 1GiB";
}

/* "500ms", "1s", "5m", "1h", "250us": milliseconds (rounded down, sub-ms values to 0). */
const char *config_parse_duration_ms(const char *s, uint64_t *out)
{
    static const struct { const char *suffix; double ms; } units[] = {
        {"us", 0.001}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
    };
    char *end;
    if (!isdigit((unsigned char)*s))
        return "expected a duration such as 500ms, 1s, 5m or 1h";
    double v = strtod(s, &end);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(end, units[i].suffix) == 0) {
            if (v * units[i].ms > 1e15)
                return "duration too long";
            *out = (uint64_t)(v * units[i].ms);
            return NULL;
        }
    return "expected a duration such as 500ms, 1s, 5m or 1h (a unit is required)";
}

const char *config_parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) {
        *out = true;
        return NULL;
    }
    if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) {
        *out = false;
        return NULL;
    }
    return "expected true or false";
}

/* ---- the key engine ---- */

#define AT(field) offsetof(struct config, field)

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const sync_modes[] = {"every_commit", "periodic", "none", NULL};

static const struct config_key tls_keys[] = {
    {"cert", CONFIG_PATH, AT(server.tls_cert)},
    {"key", CONFIG_PATH, AT(server.tls_key)},
    {"client_ca", CONFIG_PATH, AT(server.tls_client_ca)},
    {"require_client_cert", CONFIG_BOOL, AT(server.tls_require_client_cert), "false"},
    {NULL},
};

static const struct config_key server_keys[] = {
    {"listen", CONFIG_STR, AT(server.listen), "127.0.0.1:50051"},
    {"data_dir", CONFIG_PATH, AT(server.data_dir), "./casca-data"},
    {"log_level", CONFIG_CHOICE, AT(server.log_level), "info", .choices = log_levels},
    {"threads", CONFIG_UINT, AT(server.threads), "2", 1, 64},
    {"workers", CONFIG_UINT, AT(server.workers), "4", 1, 256},
    {"worker_queue", CONFIG_UINT, AT(server.worker_queue), "4096", 1, 1000000},
    {"stream_queue", CONFIG_UINT, AT(server.stream_queue), "64", 1, 100000},
    {"max_message_bytes", CONFIG_SIZE, AT(server.max_message_bytes), "4MiB", 1024, 1ull << 30},
    {"tls", CONFIG_SECTION, 0, .section = tls_keys},
    {NULL},
};

static void load_tokens(struct config_loader *ld, const struct yd_node *seq, void *obj);

static const struct config_key auth_keys[] = {
    {"tokens", CONFIG_LIST, 0, .list = load_tokens},
    {NULL},
};

static const struct config_key store_keys[] = {
    {"sync", CONFIG_CHOICE, AT(store.sync), "periodic", .choices = sync_modes},
    {"sync_interval", CONFIG_MS, AT(store.sync_interval_ms), "1s", 1, 3600000},
    {"map_size", CONFIG_SIZE, AT(store.map_size), "64MiB", 1ull << 20, 1ull << 44},
    {"max_map_size", CONFIG_SIZE, AT(store.max_map_size), "64GiB", 1ull << 20, 1ull << 44},
    {NULL},
};

static const struct config_key root_keys[] = {
    {"server", CONFIG_SECTION, 0, .section = server_keys},
    {"auth", CONFIG_SECTION, 0, .section = auth_keys},
    {"store", CONFIG_SECTION, 0, .section = store_keys},
    {NULL},
};

char *config_resolve_path(const struct config_loader *ld, const char *p)
{
    char *out = NULL;
    if (p[0] == '/' || !ld->dir)
        return strdup(p);
    return asprintf(&out, "%s/%s", ld->dir, p) < 0 ? NULL : out;
}

/* Parses text for k into obj; errors call the key name, at locates them (NULL for defaults). */
static void set_value(struct config_loader *ld, const struct config_key *k, const char *name,
                      const char *text, const struct yd_node *at, void *obj)
{
    void *field = (char *)obj + k->offset;
    const char *why = NULL;
    uint64_t u = 0;
    switch (k->type) {
    case CONFIG_STR:
    case CONFIG_PATH:
    case CONFIG_CHOICE: {
        if (k->type == CONFIG_CHOICE) {
            size_t i = 0;
            while (k->choices[i] && strcmp(k->choices[i], text))
                i++;
            if (!k->choices[i]) {
                char list[256] = "";
                for (i = 0; k->choices[i]; i++)
                    snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                             i ? ", " : "", k->choices[i]);
                config_error(ld, at, "%s: '%s' is not one of: %s", name, text, list);
                return;
            }
        }
        free(*(char **)field);
        *(char **)field = k->type == CONFIG_PATH && *text ? config_resolve_path(ld, text)
                                                          : strdup(text);
        return;
    }
    case CONFIG_BOOL:
        why = config_parse_bool(text, (bool *)field);
        break;
    case CONFIG_UINT:
    case CONFIG_COUNT:
        why = config_parse_uint(text, &u);
        break;
    case CONFIG_SIZE:
        why = config_parse_size(text, &u);
        break;
    case CONFIG_NS:
        if (k->forever && !strcmp(text, "forever")) {
            *(int64_t *)field = 0;
            return;
        }
        /* fall through */
    case CONFIG_MS:
        why = config_parse_duration_ms(text, &u);
        if (!why && k->type == CONFIG_NS && u > (uint64_t)INT64_MAX / 1000000 / 4)
            why = "duration too long";
        break;
    default:
        return;
    }
    if (why) {
        config_error(ld, at, "%s: '%s': %s", name, text, why);
        return;
    }
    if (k->type == CONFIG_BOOL)
        return;
    if (!(k->forever && u == 0) && (u < k->min || (k->max && u > k->max))) {
        if (k->max)
            config_error(ld, at, "%s: %s is out of range [%llu, %llu]", name, text,
                         (unsigned long long)k->min, (unsigned long long)k->max);
        else
            config_error(ld, at, "%s: %s is out of range (at least %llu%s%s)", name, text,
                         (unsigned long long)k->min,
                         k->type == CONFIG_MS || k->type == CONFIG_NS ? "ms" : "",
                         k->forever ? ", or forever" : "");
        return;
    }
    if (k->type == CONFIG_UINT)
        *(unsigned *)field = (unsigned)u;
    else if (k->type == CONFIG_NS)
        *(int64_t *)field = (int64_t)u * 1000000;
    else
        *(uint64_t *)field = u;
}

void config_key_defaults(struct config_loader *ld, const struct config_key *keys, void *obj)
{
    for (const struct config_key *k = keys; k->name; k++) {
        if (k->type == CONFIG_SECTION)
            config_key_defaults(ld, k->section, obj);
        else if (k->def)
            set_value(ld, k, k->name, k->def, NULL, obj);
    }
}

/* A YAML null: "key:" with nothing after it (an empty plain value), or null. */
static bool is_null(const struct yd_node *n)
{
    return n->kind == YD_SCALAR && n->plain && (!n->scalar[0] || !strcmp(n->scalar, "null"));
}

static bool has_key(const struct config_key *keys, const char *name)
{
    while (keys->name && strcmp(keys->name, name))
        keys++;
    return keys->name != NULL;
}

/* Whether one of sections (NULL-terminated, or the first n) owns the top-level key name. */
static bool section_owns(const struct config_section *const *sections, size_t n, const char *name)
{
    for (size_t s = 0; sections && s < n && sections[s]; s++)
        for (const char *const *k = sections[s]->keys; *k; k++)
            if (!strcmp(*k, name))
                return true;
    return false;
}

/* Whether key (a key of a map) is in keys or owned by one of sections; if not, an error that
 * lists them (the list is generated, so it cannot go stale). */
static bool known_key(struct config_loader *ld, const char *file, const struct yd_node *key,
                      const struct config_key *keys, const char *where,
                      const struct config_section *const *sections)
{
    const char *name = key->scalar;
    if (has_key(keys, name) || section_owns(sections, SIZE_MAX, name))
        return true;
    char list[512] = "";
    for (const struct config_key *o = keys; o->name; o++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", o == keys ? "" : ", ",
                 o->name);
    for (size_t s = 0; sections && sections[s]; s++)
        for (const char *const *k = sections[s]->keys; *k; k++)
            if (!section_owns(sections, s, *k)) /* a program's list may repeat a key */
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                         *list ? ", " : "", *k);
    config_error_in(ld, file ? file : ld->file, key, "unknown key '%s' in %s (known: %s)", name,
                    where, list);
    return false;
}

bool config_check_keys(struct config_loader *ld, const char *file, const struct yd_node *map,
                       const struct config_key *keys, const char *where)
{
    bool ok = true;
    for (size_t i = 0; i < map->n; i++)
        ok &= known_key(ld, file, map->keys[i], keys, where, NULL);
    return ok;
}

/* full: value errors name keys by their path ("tsdb.raw_retention"); server:, auth: and store:
 * keep their short names ("threads"). */
static bool load_map(struct config_loader *ld, const struct config_key *keys,
                     const struct yd_node *map, const char *where, void *obj, bool full,
                     const struct config_section *const *sections)
{
    if (!map || is_null(map))
        return true; /* "server:" with nothing under it */
    if (map->kind != YD_MAP) {
        config_error(ld, map, "%s must be a map of keys, not a %s", where, yd_kind_name(map->kind));
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < map->n; i++) {
        const struct yd_node *key = map->keys[i], *val = map->values[i];
        if (!known_key(ld, NULL, key, keys, where, sections)) {
            ok = false;
            continue;
        }
        const struct config_key *k = keys;
        while (k->name && strcmp(k->name, key->scalar))
            k++;
        if (!k->name || k->type == CONFIG_CUSTOM)
            continue; /* a section's, or one the caller reads */
        char sub[128];
        snprintf(sub, sizeof(sub), "%s%s%s", *where == '(' ? "" : where, *where == '(' ? "" : ".",
                 k->name);
        if (k->type == CONFIG_SECTION) {
            ok &= load_map(ld, k->section, val, sub, obj, full, NULL);
        } else if (k->type == CONFIG_LIST) {
            if (val->kind == YD_SEQ)
                k->list(ld, val, obj);
            else if (!is_null(val))
                config_error(ld, val, "%s must be a list", sub);
        } else if (val->kind != YD_SCALAR) {
            config_error(ld, val, "%s must be a single value, not a %s", sub, yd_kind_name(val->kind));
        } else {
            set_value(ld, k, full ? sub : k->name, val->scalar, val, obj);
        }
    }
    return ok;
}

bool config_load_keys(struct config_loader *ld, const struct config_key *keys,
                      const struct yd_node *map, const char *where, void *obj)
{
    return load_map(ld, keys, map, where, obj, true, NULL);
}

/* ---- feature sections ---- */

static void load_sections(struct config_loader *ld, const struct yd_node *root, struct config *c)
{
    for (size_t s = 0; c->defs[s]; s++) {
        const struct config_section *sec = c->defs[s];
        if (!sec->parse)
            continue; /* another program's */
        const struct yd_node *values[CONFIG_SECTIONS_MAX] = {NULL};
        for (size_t i = 0; i < CONFIG_SECTIONS_MAX && sec->keys[i]; i++)
            values[i] = yd_get(root, sec->keys[i]);
        c->sections[s] = sec->parse(ld, values);
    }
}

void *config_section_of(const struct config *c, const struct config_section *sec)
{
    for (size_t s = 0; c && c->defs[s]; s++)
        if (c->defs[s] == sec)
            return c->sections[s];
    return NULL;
}

/* ---- auth.tokens ---- */

static char *read_first_line(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char buf[1024];
    char *line = fgets(buf, sizeof(buf), f) ? strdup(buf) : strdup("");
    fclose(f);
    if (line)
        line[strcspn(line, "\r\n")] = 0;
    return line;
}

/* An item of auth.tokens: read by load_tokens (one of the last three is the secret). */
static const struct config_key token_keys[] = {
    {"name"}, {"role"}, {"token_env"}, {"token_file"}, {"token"}, {NULL},
};

static void load_tokens(struct config_loader *ld, const struct yd_node *seq, void *obj)
{
    struct config *c = obj;
    c->auth.tokens = calloc(seq->n ? seq->n : 1, sizeof(*c->auth.tokens));
    if (!c->auth.tokens)
        return;
    for (size_t i = 0; i < seq->n; i++) {
        const struct yd_node *t = seq->values[i];
        if (!config_expect(ld, NULL, t, YD_MAP,
                           "auth.tokens[%zu] must be a map {name, role, token_env | token_file "
                           "| token}", i))
            continue;
        for (size_t k = 0; k < t->n; k++)
            if (known_key(ld, NULL, t->keys[k], token_keys, "auth.tokens", NULL) &&
                t->values[k]->kind != YD_SCALAR)
                config_error(ld, t->values[k], "auth.tokens.%s must be a single value",
                             t->keys[k]->scalar);
        const struct yd_node *name = yd_get(t, "name"), *role = yd_get(t, "role");
        const struct yd_node *env = yd_get(t, "token_env"), *file = yd_get(t, "token_file");
        const struct yd_node *lit = yd_get(t, "token");
        if (!name || name->kind != YD_SCALAR || !role || role->kind != YD_SCALAR) {
            config_error(ld, t, "auth.tokens[%zu] needs a name and a role", i);
            continue;
        }
        enum rpc_role r = rpc_role_parse(role->scalar);
        if (r == RPC_ROLE_NONE) {
            config_error(ld, role, "role '%s' is not one of: operator, agent, reporter, viewer",
                     role->scalar);
            continue;
        }
        int sources = !!env + !!file + !!lit;
        if (sources != 1) {
            config_error(ld, t, "token '%s' needs exactly one of token_env, token_file or token",
                     name->scalar);
            continue;
        }
        char *secret = NULL;
        const struct yd_node *src = env ? env : file ? file : lit;
        if (src->kind != YD_SCALAR)
            continue;
        if (env) {
            const char *v = getenv(env->scalar);
            if (!v || !*v) {
                config_error(ld, env, "token '%s': environment variable %s is not set", name->scalar,
                         env->scalar);
                continue;
            }
            secret = strdup(v);
        } else if (file) {
            char *p = config_resolve_path(ld, file->scalar);
            secret = p ? read_first_line(p) : NULL;
            if (!secret)
                config_error(ld, file, "token '%s': cannot read token_file %s: %s", name->scalar,
                         file->scalar, strerror(errno));
            free(p);
            if (!secret)
                continue;
        } else {
            secret = strdup(lit->scalar);
        }
        if (!secret)
            continue;
        if (strlen(secret) < 16) {
            config_error(ld, src, "token '%s' is too short (%zu characters): use at least 16 random "
                              "characters, e.g. from 'openssl rand -hex 24'",
                     name->scalar, strlen(secret));
            free(secret);
            continue;
        }
        for (size_t j = 0; j < c->auth.ntokens; j++)
            if (!strcmp(c->auth.tokens[j].name, name->scalar))
                config_error(ld, name, "duplicate token name '%s'", name->scalar);
        c->auth.tokens[c->auth.ntokens++] =
            (struct config_token){strdup(name->scalar), secret, r};
    }
}

/* ---- cross-key validation ---- */

/* Whether listen ("host:port", "[v6]:port", "unix:path") only accepts local connections: a unix
 * socket, "localhost", or a literal address in 127.0.0.0/8 or ::1. Host names other than
 * localhost are not loopback, whatever they start with. */
static bool is_loopback(const char *listen)
{
    if (!strncmp(listen, "unix:", 5) || !strncmp(listen, "unix-abstract:", 14))
        return true;
    if (!strncmp(listen, "ipv4:", 5) || !strncmp(listen, "ipv6:", 5))
        listen += 5;
    const char *colon = strrchr(listen, ':');
    if (!colon)
        return false;
    char host[INET6_ADDRSTRLEN + 2];
    size_t len = (size_t)(colon - listen);
    if (len >= sizeof(host))
        return false;
    memcpy(host, listen, len);
    host[len] = 0;
    if (!strcmp(host, "localhost"))
        return true;
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (len > 2 && host[0] == '[' && host[len - 1] == ']') {
        host[len - 1] = 0;
        return inet_pton(AF_INET6, host + 1, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
    }
    return false;
}

bool config_listen_is_loopback(const char *listen)
{
    return is_loopback(listen);
}

const struct config *config_loader_config(const struct config_loader *ld)
{
    return ld->c;
}

static void validate(struct config_loader *ld, const struct yd_doc *doc, struct config *c)
{
    const struct yd_node *server = yd_get(doc->root, "server");
    const struct yd_node *listen_at = yd_get(server, "listen");
    const char *colon = strrchr(c->server.listen, ':');
    if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1))
        if (strncmp(c->server.listen, "unix:", 5))
            config_error(ld, listen_at, "server.listen: '%s' is not host:port (e.g. 127.0.0.1:50051)",
                     c->server.listen);
    if (c->auth.ntokens == 0 && !is_loopback(c->server.listen))
        config_error(ld, listen_at,
                 "server.listen: refusing to listen on %s with no auth tokens: add auth.tokens, "
                 "or listen on 127.0.0.1",
                 c->server.listen);
    const struct yd_node *tls = yd_get(server, "tls");
    if (!c->server.tls_cert != !c->server.tls_key)
        config_error(ld, tls, "server.tls needs both cert and key");
    const char *files[] = {c->server.tls_cert, c->server.tls_key, c->server.tls_client_ca};
    const char *names[] = {"cert", "key", "client_ca"};
    for (int i = 0; i < 3; i++)
        if (files[i] && access(files[i], R_OK) != 0)
            config_error(ld, yd_get(tls, names[i]), "server.tls.%s: cannot read %s: %s", names[i],
                     files[i], strerror(errno));
    if (c->server.tls_require_client_cert && !c->server.tls_client_ca)
        config_error(ld, yd_get(tls, "require_client_cert"),
                 "server.tls.require_client_cert needs client_ca to verify them");
    if (c->store.map_size > c->store.max_map_size)
        config_error(ld, yd_get(yd_get(doc->root, "store"), "map_size"),
                 "store.map_size is larger than store.max_map_size");
}

/* ---- snapshots ---- */

static void config_free(struct config *c)
{
    free(c->path);
    free(c->server.listen);
    free(c->server.data_dir);
    free(c->server.log_level);
    free(c->server.tls_cert);
    free(c->server.tls_key);
    free(c->server.tls_client_ca);
    for (size_t i = 0; i < c->auth.ntokens; i++) {
        free(c->auth.tokens[i].name);
        if (c->auth.tokens[i].secret) {
            memset(c->auth.tokens[i].secret, 0, strlen(c->auth.tokens[i].secret));
            free(c->auth.tokens[i].secret);
        }
    }
    free(c->auth.tokens);
    free(c->store.sync);
    for (size_t s = 0; c->defs && c->defs[s]; s++)
        if (c->sections[s])
            c->defs[s]->free(c->sections[s]);
    free(c);
}

struct config *config_ref(struct config *c)
{
    atomic_fetch_add(&c->refs, 1);
    return c;
}

void config_unref(struct config *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1)
        config_free(c);
}

int config_load(const char *path, const struct config_overrides *ov,
                const struct config_section *const sections[], struct config **out,
                struct config_errors *errs)
{
    static const struct config_section *const none[] = {NULL};
    *out = NULL;
    struct config *c = calloc(1, sizeof(*c));
    if (!c)
        return CASCA_ERR_NOMEM;
    atomic_init(&c->refs, 1);
    c->defs = sections ? sections : none;
    for (size_t s = 0; c->defs[s]; s++)
        if (s >= CONFIG_SECTIONS_MAX) {
            c->defs = none; /* a program's mistake, not the file's */
            add_line(errs, strdup("config_load: too many sections (raise CONFIG_SECTIONS_MAX)"));
            config_free(c);
            return CASCA_ERR_CONFIG;
        }
    c->path = strdup(path);
    struct config_loader ld = {.file = path, .errs = errs, .c = c};
    const char *slash = strrchr(path, '/');
    ld.dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : NULL;
    config_key_defaults(&ld, root_keys, c);

    char err[1024];
    struct yd_doc *doc = NULL;
    int rc = yd_parse_file(path, &doc, err, sizeof(err));
    if (rc) {
        add_line(errs, strdup(err));
        rc = CASCA_ERR_CONFIG; /* unreadable or unparsable: either way the file is the problem */
    } else {
        if (doc->root && doc->root->kind != YD_MAP)
            config_error(&ld, doc->root, "the configuration must be a map of sections "
                                         "(server:, auth:, store:, ...)");
        else if (doc->root)
            load_map(&ld, root_keys, doc->root, "(top level)", c, false, c->defs);
        load_sections(&ld, doc->root && doc->root->kind == YD_MAP ? doc->root : NULL, c);
        if (ov && ov->listen) {
            free(c->server.listen);
            c->server.listen = strdup(ov->listen);
        }
        if (ov && ov->data_dir) {
            free(c->server.data_dir);
            c->server.data_dir = strdup(ov->data_dir);
        }
        if (!errs->n)
            validate(&ld, doc, c);
        rc = errs->n ? CASCA_ERR_CONFIG : CASCA_OK;
    }
    yd_free(doc);
    free(ld.dir);
    if (rc) {
        config_free(c);
        return rc;
    }
    *out = c;
    return CASCA_OK;
}

static bool differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b));
}

void config_restart_warnings(const struct config *cur, const struct config *next,
                             struct config_errors *w)
{
    const struct { const char *name; bool changed; } keys[] = {
        {"server.listen", differs(cur->server.listen, next->server.listen)},
        {"server.data_dir", differs(cur->server.data_dir, next->server.data_dir)},
        {"server.threads", cur->server.threads != next->server.threads},
        {"server.workers", cur->server.workers != next->server.workers},
        {"server.worker_queue", cur->server.worker_queue != next->server.worker_queue},
        {"server.stream_queue", cur->server.stream_queue != next->server.stream_queue},
        {"server.max_message_bytes", cur->server.max_message_bytes != next->server.max_message_bytes},
        {"server.tls", differs(cur->server.tls_cert, next->server.tls_cert) ||
                           differs(cur->server.tls_key, next->server.tls_key) ||
                           differs(cur->server.tls_client_ca, next->server.tls_client_ca)},
        {"store", differs(cur->store.sync, next->store.sync) ||
                      cur->store.map_size != next->store.map_size ||
                      cur->store.max_map_size != next->store.max_map_size ||
                      cur->store.sync_interval_ms != next->store.sync_interval_ms},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char *line = NULL;
        if (keys[i].changed &&
            asprintf(&line, "%s: %s changed; it takes effect at the next restart", next->path,
                     keys[i].name) >= 0)
            add_line(w, line);
    }
}

struct config_live {
    pthread_mutex_t lock;
    struct config *cur;
};

struct config_live *config_live_create(struct config *first)
{
    struct config_live *live = calloc(1, sizeof(*live));
    if (!live)
        return NULL;
    pthread_mutex_init(&live->lock, NULL);
    first->generation = 1;
    live->cur = first;
    return live;
}

struct config *config_live_get(struct config_live *live)
{
    pthread_mutex_lock(&live->lock);
    struct config *c = config_ref(live->cur);
    pthread_mutex_unlock(&live->lock);
    return c;
}

void config_live_swap(struct config_live *live, struct config *next)
{
    pthread_mutex_lock(&live->lock);
    struct config *old = live->cur;
    next->generation = old->generation + 1;
    live->cur = next;
    pthread_mutex_unlock(&live->lock);
    config_unref(old);
}

void config_live_destroy(struct config_live *live)
{
    if (!live)
        return;
    config_unref(live->cur);
    pthread_mutex_destroy(&live->lock);
    free(live);
}
