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

#include "carbon.h"
#include "casca_err.h"
#include "ctl.h"
#include "hooks.h"
#include "probe.h"
#include "slo.h"
#include "telemetry.h"
#include "yamldoc.h"

/* ---- errors ---- */

struct config_loader {
    const char *file;
    char *dir; /* the file's directory, for relative paths */
    struct config_errors *errs;
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

/* ---- key tables ---- */

enum key_type { K_STR, K_PATH, K_UINT, K_SIZE, K_MS, K_BOOL, K_CHOICE, K_SECTION, K_LIST };

struct key;
typedef void (*list_fn)(struct config_loader *ld, const struct yd_node *seq, struct config *c);

struct key {
    const char *name;
    enum key_type type;
    size_t offset;
    const char *def;              /* default, parsed like a value from the file; NULL: none */
    uint64_t min, max;            /* K_UINT, K_SIZE, K_MS bounds (max 0: none) */
    const char *const *choices;   /* K_CHOICE: NULL-terminated */
    const struct key *section;    /* K_SECTION: its keys, ending with {NULL} */
    list_fn list;                 /* K_LIST */
};

#define AT(field) offsetof(struct config, field)

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const sync_modes[] = {"every_commit", "periodic", "none", NULL};

static const struct key tls_keys[] = {
    {"cert", K_PATH, AT(server.tls_cert)},
    {"key", K_PATH, AT(server.tls_key)},
    {"client_ca", K_PATH, AT(server.tls_client_ca)},
    {"require_client_cert", K_BOOL, AT(server.tls_require_client_cert), "false"},
    {NULL},
};

static const struct key server_keys[] = {
    {"listen", K_STR, AT(server.listen), "127.0.0.1:50051"},
    {"data_dir", K_PATH, AT(server.data_dir), "./casca-data"},
    {"log_level", K_CHOICE, AT(server.log_level), "info", .choices = log_levels},
    {"threads", K_UINT, AT(server.threads), "2", 1, 64},
    {"workers", K_UINT, AT(server.workers), "4", 1, 256},
    {"worker_queue", K_UINT, AT(server.worker_queue), "4096", 1, 1000000},
    {"stream_queue", K_UINT, AT(server.stream_queue), "64", 1, 100000},
    {"max_message_bytes", K_SIZE, AT(server.max_message_bytes), "4MiB", 1024, 1ull << 30},
    {"tls", K_SECTION, 0, .section = tls_keys},
    {NULL},
};

static void load_tokens(struct config_loader *ld, const struct yd_node *seq, struct config *c);

static const struct key auth_keys[] = {
    {"tokens", K_LIST, 0, .list = load_tokens},
    {NULL},
};

static const struct key store_keys[] = {
    {"sync", K_CHOICE, AT(store.sync), "periodic", .choices = sync_modes},
    {"sync_interval", K_MS, AT(store.sync_interval_ms), "1s", 1, 3600000},
    {"map_size", K_SIZE, AT(store.map_size), "64MiB", 1ull << 20, 1ull << 44},
    {"max_map_size", K_SIZE, AT(store.max_map_size), "64GiB", 1ull << 20, 1ull << 44},
    {NULL},
};

static const struct key root_keys[] = {
    {"server", K_SECTION, 0, .section = server_keys},
    {"auth", K_SECTION, 0, .section = auth_keys},
    {"store", K_SECTION, 0, .section = store_keys},
    {NULL},
};

/* Feature sections: a feature owns some top-level keys and parses them into its own immutable
 * struct, kept in config->sections[id]. Adding a feature adds one row here. */
#define SECTION_KEYS 4
struct config_section {
    enum config_section_id id;
    const char *keys[SECTION_KEYS]; /* the top-level keys it owns */
    /* values[i] is the node of keys[i], or NULL when absent. Called on every load, so the
     * feature can fill its defaults. Returns the section (NULL is allowed when it has nothing)
     * and records problems with config_error. */
    void *(*parse)(struct config_loader *ld, const struct yd_node *const values[SECTION_KEYS]);
    void (*free)(void *section);
};

static const struct config_section sections[] = {
    {CONFIG_SECTION_SETTINGS, {"settings", "settings_files"}, ctl_config_parse, ctl_config_free},
    {CONFIG_SECTION_CARBON, {"carbon"}, carbon_config_parse, carbon_config_free},
    {CONFIG_SECTION_HOOKS, {"bus", "hooks"}, hooks_section_parse, hooks_section_free},
    {CONFIG_SECTION_PROBES, {"probes"}, probes_section_parse, probes_section_free},
    {CONFIG_SECTION_TSDB, {"tsdb"}, telemetry_config_parse, telemetry_config_free},
    {CONFIG_SECTION_SLOS, {"slos", "slo_files", "slo_engine"}, slo_config_parse, slo_config_free},
    {CONFIG_SECTION__COUNT}, /* end */
};

static bool section_owns(const char *key)
{
    for (const struct config_section *sec = sections; sec->parse; sec++)
        for (int i = 0; i < SECTION_KEYS && sec->keys[i]; i++)
            if (!strcmp(sec->keys[i], key))
                return true;
    return false;
}

static void load_sections(struct config_loader *ld, const struct yd_node *root, struct config *c)
{
    for (const struct config_section *sec = sections; sec->parse; sec++) {
        const struct yd_node *values[SECTION_KEYS] = {NULL};
        for (int i = 0; i < SECTION_KEYS && sec->keys[i]; i++)
            values[i] = yd_get(root, sec->keys[i]);
        c->sections[sec->id] = sec->parse(ld, values);
    }
}

char *config_resolve_path(const struct config_loader *ld, const char *p)
{
    char *out = NULL;
    if (p[0] == '/' || !ld->dir)
        return strdup(p);
    return asprintf(&out, "%s/%s", ld->dir, p) < 0 ? NULL : out;
}

/* Parses text for k into the config; at locates errors (NULL for defaults). */
static void set_value(struct config_loader *ld, const struct key *k, const char *text,
                      const struct yd_node *at, struct config *c)
{
    void *field = (char *)c + k->offset;
    const char *why = NULL;
    uint64_t u = 0;
    switch (k->type) {
    case K_STR:
    case K_PATH:
    case K_CHOICE: {
        if (k->type == K_CHOICE) {
            size_t i = 0;
            while (k->choices[i] && strcmp(k->choices[i], text))
                i++;
            if (!k->choices[i]) {
                char list[256] = "";
                for (i = 0; k->choices[i]; i++)
                    snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                             i ? ", " : "", k->choices[i]);
                config_error(ld, at, "%s: '%s' is not one of: %s", k->name, text, list);
                return;
            }
        }
        if (k->type == K_STR || k->type == K_CHOICE || !*text) {
            free(*(char **)field);
            *(char **)field = strdup(text);
        } else {
            free(*(char **)field);
            *(char **)field = config_resolve_path(ld, text);
        }
        return;
    }
    case K_BOOL:
        why = config_parse_bool(text, (bool *)field);
        break;
    case K_UINT:
        why = config_parse_uint(text, &u);
        break;
    case K_SIZE:
        why = config_parse_size(text, &u);
        break;
    case K_MS:
        why = config_parse_duration_ms(text, &u);
        break;
    default:
        return;
    }
    if (why) {
        config_error(ld, at, "%s: '%s': %s", k->name, text, why);
        return;
    }
    if (k->type == K_BOOL)
        return;
    if (u < k->min || (k->max && u > k->max)) {
        config_error(ld, at, "%s: %s is out of range [%llu, %llu]", k->name, text,
                 (unsigned long long)k->min, (unsigned long long)k->max);
        return;
    }
    if (k->type == K_UINT)
        *(unsigned *)field = (unsigned)u;
    else
        *(uint64_t *)field = u;
}

static void apply_defaults(struct config_loader *ld, const struct key *keys, struct config *c)
{
    for (const struct key *k = keys; k->name; k++) {
        if (k->type == K_SECTION)
            apply_defaults(ld, k->section, c);
        else if (k->def)
            set_value(ld, k, k->def, NULL, c);
    }
}

/* A YAML null: "key:" with nothing after it (an empty plain value), or null. */
static bool is_null(const struct yd_node *n)
{
    return n->kind == YD_SCALAR && n->plain && (!n->scalar[0] || !strcmp(n->scalar, "null"));
}

static void load_section(struct config_loader *ld, const struct key *keys, const struct yd_node *map,
                         const char *where, struct config *c)
{
    if (!map || is_null(map))
        return; /* "server:" with nothing under it */
    if (map->kind != YD_MAP) {
        config_error(ld, map, "%s must be a map of keys, not a %s", where, yd_kind_name(map->kind));
        return;
    }
    for (size_t i = 0; i < map->n; i++) {
        const struct yd_node *key = map->keys[i], *val = map->values[i];
        const struct key *k = keys;
        while (k->name && strcmp(k->name, key->scalar))
            k++;
        if (!k->name && keys == root_keys && section_owns(key->scalar))
            continue; /* a feature section: load_sections parses it */
        if (!k->name) {
            char list[512] = "";
            for (const struct key *o = keys; o->name; o++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                         o == keys ? "" : ", ", o->name);
            for (const struct config_section *sec = sections; keys == root_keys && sec->parse;
                 sec++)
                for (int j = 0; j < SECTION_KEYS && sec->keys[j]; j++)
                    snprintf(list + strlen(list), sizeof(list) - strlen(list), ", %s",
                             sec->keys[j]);
            config_error(ld, key, "unknown key '%s' in %s (known: %s)", key->scalar, where, list);
            continue;
        }
        char sub[128];
        snprintf(sub, sizeof(sub), "%s%s%s", *where == '(' ? "" : where, *where == '(' ? "" : ".",
                 k->name);
        if (k->type == K_SECTION) {
            load_section(ld, k->section, val, sub, c);
        } else if (k->type == K_LIST) {
            if (val->kind == YD_SEQ)
                k->list(ld, val, c);
            else if (!is_null(val))
                config_error(ld, val, "%s must be a list", sub);
        } else if (val->kind != YD_SCALAR) {
            config_error(ld, val, "%s must be a single value, not a %s", sub, yd_kind_name(val->kind));
        } else {
            set_value(ld, k, val->scalar, val, c);
        }
    }
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

static void load_tokens(struct config_loader *ld, const struct yd_node *seq, struct config *c)
{
    c->auth.tokens = calloc(seq->n ? seq->n : 1, sizeof(*c->auth.tokens));
    if (!c->auth.tokens)
        return;
    for (size_t i = 0; i < seq->n; i++) {
        const struct yd_node *t = seq->values[i];
        if (!config_expect(ld, NULL, t, YD_MAP,
                           "auth.tokens[%zu] must be a map {name, role, token_env | token_file "
                           "| token}", i))
            continue;
        for (size_t k = 0; k < t->n; k++) {
            const char *name = t->keys[k]->scalar;
            if (strcmp(name, "name") && strcmp(name, "role") && strcmp(name, "token") &&
                strcmp(name, "token_env") && strcmp(name, "token_file"))
                config_error(ld, t->keys[k],
                         "unknown key '%s' in auth.tokens (known: name, role, token_env, "
                         "token_file, token)", name);
            else if (t->values[k]->kind != YD_SCALAR)
                config_error(ld, t->values[k], "auth.tokens.%s must be a single value", name);
        }
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
    for (const struct config_section *sec = sections; sec->parse; sec++)
        if (c->sections[sec->id])
            sec->free(c->sections[sec->id]);
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

int config_load(const char *path, const struct config_overrides *ov, struct config **out,
                struct config_errors *errs)
{
    *out = NULL;
    struct config *c = calloc(1, sizeof(*c));
    if (!c)
        return CASCA_ERR_NOMEM;
    atomic_init(&c->refs, 1);
    c->path = strdup(path);
    struct config_loader ld = {.file = path, .errs = errs};
    const char *slash = strrchr(path, '/');
    ld.dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : NULL;
    apply_defaults(&ld, root_keys, c);

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
            load_section(&ld, root_keys, doc->root, "(top level)", c);
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
