#include "ctl.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "casca/v1/admin.pb-c.h"
#include "casca_err.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "timeconv.h"

#define MAX_LISTENERS 8
#define REFRESH_DEFAULT_NS 1000000000LL /* a watcher without a period wants values this fresh */
#define REFRESH_THREADS 2 /* reader threads: a slow service delays only its own settings' reads */
#define REFRESH_QUEUE 1024
#define MAX_ID_LEN 64
#define DEFAULT_TIMEOUT_MS 5000 /* a backend call without a deadline of its own */

/* The controllers: adding one is a file and a row here. */
static const struct ctl_ops *const controllers[] = {
    &ctl_http_json_ops,
    &ctl_file_ops,
    &ctl_exec_ops,
    &ctl_memory_ops,
};
#define NCONTROLLERS (sizeof(controllers) / sizeof(controllers[0]))

/* ---- values ---- */

void ctl_value_clear(struct ctl_value *v)
{
    free(v->s);
    memset(v, 0, sizeof(*v));
}

int ctl_value_copy(struct ctl_value *dst, const struct ctl_value *src)
{
    *dst = *src;
    if (src->kind == CTL_STRING && !(dst->s = strdup(src->s ? src->s : ""))) {
        memset(dst, 0, sizeof(*dst));
        return CASCA_ERR_NOMEM;
    }
    if (src->kind != CTL_STRING)
        dst->s = NULL;
    return CASCA_OK;
}

bool ctl_value_equal(const struct ctl_value *a, const struct ctl_value *b)
{
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case CTL_INT: return a->i == b->i;
    case CTL_DOUBLE: return a->d == b->d;
    case CTL_BOOL: return a->b == b->b;
    case CTL_STRING: return strcmp(a->s, b->s) == 0;
    default: return true;
    }
}

static bool parse_int64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno)
        return false;
    *out = v;
    return true;
}

int ctl_value_coerce(struct ctl_value *v, enum ctl_type t)
{
    if (t == CTL_ENUM)
        t = CTL_STRING;
    if (v->kind == t)
        return CASCA_OK;
    struct ctl_value n = {.kind = t};
    switch (t) {
    case CTL_INT:
        if (v->kind == CTL_DOUBLE && v->d == floor(v->d) && fabs(v->d) < 9.0e15)
            n.i = (int64_t)v->d;
        else if (v->kind == CTL_BOOL)
            n.i = v->b;
        else if (!(v->kind == CTL_STRING && parse_int64(v->s, &n.i)))
            return CASCA_ERR_INVALID;
        break;
    case CTL_DOUBLE:
        if (v->kind == CTL_INT)
            n.d = (double)v->i;
        else if (!(v->kind == CTL_STRING && !config_parse_double(v->s, &n.d)))
            return CASCA_ERR_INVALID;
        break;
    case CTL_BOOL:
        if (v->kind == CTL_INT && (v->i == 0 || v->i == 1))
            n.b = v->i;
        else if (!(v->kind == CTL_STRING && !config_parse_bool(v->s, &n.b)))
            return CASCA_ERR_INVALID;
        break;
    case CTL_STRING: {
        char buf[64];
        if (v->kind == CTL_INT)
            snprintf(buf, sizeof(buf), "%" PRId64, v->i);
        else if (v->kind == CTL_DOUBLE)
            snprintf(buf, sizeof(buf), "%.17g", v->d);
        else if (v->kind == CTL_BOOL)
            snprintf(buf, sizeof(buf), "%s", v->b ? "true" : "false");
        else
            return CASCA_ERR_INVALID;
        if (!(n.s = strdup(buf)))
            return CASCA_ERR_NOMEM;
        break;
    }
    default:
        return CASCA_ERR_INVALID;
    }
    ctl_value_clear(v);
    *v = n;
    return CASCA_OK;
}

const char *ctl_value_format(const struct ctl_value *v, char *buf, size_t len)
{
    switch (v->kind) {
    case CTL_INT: snprintf(buf, len, "%" PRId64, v->i); break;
    case CTL_DOUBLE: snprintf(buf, len, "%g", v->d); break;
    case CTL_BOOL: snprintf(buf, len, "%s", v->b ? "true" : "false"); break;
    case CTL_STRING: snprintf(buf, len, "\"%.*s\"", (int)(len > 8 ? len - 8 : 0), v->s); break;
    default: snprintf(buf, len, "(none)"); break;
    }
    return buf;
}

static const char *const type_names[] = {"none", "int", "double", "bool", "string", "enum"};

const char *ctl_type_name(enum ctl_type t)
{
    return t <= CTL_ENUM ? type_names[t] : "?";
}

static enum ctl_type type_parse(const char *s)
{
    for (int t = CTL_INT; t <= CTL_ENUM; t++)
        if (!strcmp(s, type_names[t]))
            return (enum ctl_type)t;
    return CTL_NONE;
}

static bool is_numeric(enum ctl_type t)
{
    return t == CTL_INT || t == CTL_DOUBLE;
}

static double as_double(const struct ctl_value *v)
{
    return v->kind == CTL_INT ? (double)v->i : v->kind == CTL_BOOL ? v->b : v->d;
}

void ctl_reading_clear(struct ctl_reading *r)
{
    ctl_value_clear(&r->value);
    r->updated_ns = 0;
    r->changed_by[0] = 0;
    r->reason[0] = 0;
}

int ctl_reading_copy(struct ctl_reading *dst, const struct ctl_reading *src)
{
    struct ctl_value v = src->value;
    v.s = NULL;
    *dst = *src;
    dst->value = v;
    return ctl_value_copy(&dst->value, &src->value);
}

/* ---- backend operations ---- */

int64_t ctl_io_left_ms(const struct ctl_io *io)
{
    if (io->deadline_ns == INT64_MAX)
        return INT64_MAX;
    int64_t left = io->deadline_ns - casca_mono_ns();
    return left <= 0 ? 0 : left < 1000000 ? 1 : left / 1000000;
}

void ctl_io_clamp(struct ctl_io *io, uint64_t timeout_ms)
{
    int64_t own = casca_mono_ns() + (int64_t)timeout_ms * 1000000;
    if (own < io->deadline_ns)
        io->deadline_ns = own;
}

int ctl_io_fail(struct ctl_io *io, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(io->detail, sizeof(io->detail), fmt, ap);
    va_end(ap);
    return err;
}

/* ---- parsing helpers for the settings and their controllers ---- */

struct ctl_parse {
    struct config_loader *ld;
    const char *file; /* the settings file being read; NULL: the main configuration file */
    char *dir;        /* the settings file's directory */
    enum ctl_type type;
};

void ctl_parse_error(struct ctl_parse *p, const struct yd_node *node, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (p->file)
        config_error_in(p->ld, p->file, node, "%s", msg);
    else
        config_error(p->ld, node, "%s", msg);
}

bool ctl_parse_keys(struct ctl_parse *p, const struct yd_node *map,
                    const struct config_key *known, const char *where)
{
    return !map || map->kind != YD_MAP || config_check_keys(p->ld, p->file, map, known, where);
}

const char *ctl_parse_str(struct ctl_parse *p, const struct yd_node *map, const char *key,
                          bool required)
{
    const struct yd_node *n = yd_get(map, key);
    if (!n) {
        if (required)
            ctl_parse_error(p, map, "'%s' is required here", key);
        return NULL;
    }
    if (n->kind != YD_SCALAR) {
        ctl_parse_error(p, n, "%s: expected a value, not a %s", key, yd_kind_name(n->kind));
        return NULL;
    }
    return n->scalar;
}

bool ctl_parse_ms(struct ctl_parse *p, const struct yd_node *map, const char *key, uint64_t def,
                  uint64_t *out)
{
    *out = def;
    const struct yd_node *n = yd_get(map, key);
    if (!n)
        return true;
    const char *why = n->kind == YD_SCALAR ? config_parse_duration_ms(n->scalar, out)
                                           : "expected a duration such as 500ms, 1s, 5m or 1h";
    if (why)
        ctl_parse_error(p, n, "%s: %s", key, why);
    return !why;
}

bool ctl_parse_bool(struct ctl_parse *p, const struct yd_node *map, const char *key, bool def,
                    bool *out)
{
    *out = def;
    const struct yd_node *n = yd_get(map, key);
    if (!n)
        return true;
    const char *why =
        n->kind == YD_SCALAR ? config_parse_bool(n->scalar, out) : "expected true or false";
    if (why)
        ctl_parse_error(p, n, "%s: %s", key, why);
    return !why;
}

char *ctl_parse_path(struct ctl_parse *p, const char *path)
{
    char *out = NULL;
    if (!p->file)
        return config_resolve_path(p->ld, path);
    if (path[0] == '/' || !p->dir)
        return strdup(path);
    return asprintf(&out, "%s/%s", p->dir, path) < 0 ? NULL : out;
}

char *ctl_parse_expand_env(struct ctl_parse *p, const struct yd_node *node, const char *text)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out)
        return NULL;
    bool ok = true;
    for (const char *s = text; *s; s++) {
        if (s[0] != '$' || s[1] != '{') {
            fputc(*s, out);
            continue;
        }
        const char *end = strchr(s + 2, '}');
        if (!end) {
            ctl_parse_error(p, node, "'${' without a closing '}': write ${NAME}");
            ok = false;
            break;
        }
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)(end - s - 2), s + 2);
        const char *val = getenv(name);
        if (!val) {
            ctl_parse_error(p, node, "environment variable %s is not set (it is used in this "
                                     "value): set it for cascad",
                            name);
            ok = false;
            break;
        }
        fputs(val, out);
        s = end;
    }
    fclose(out);
    if (!ok) {
        free(buf);
        return NULL;
    }
    return buf;
}

enum ctl_type ctl_parse_type(const struct ctl_parse *p)
{
    return p->type;
}

/* ---- expressions: public value -> service value (and back), e.g. "value * 1000" ----
 * Grammar: expr = term {(+|-) term}; term = unary {(*|/|%) unary}; unary = -unary | primary;
 * primary = number | value | fn(expr {, expr}) | (expr); fn: min max round floor ceil abs. */

struct expr {
    char op; /* 'n' number, 'v' value, 'f' function, '~' negate, or + - * / % */
    double num;
    int fn;  /* index into fns */
    struct expr *a, *b; /* operands; for functions a = first arg, b = second (or NULL) */
};

static const struct { const char *name; int nargs; } fns[] = {
    {"min", 2}, {"max", 2}, {"round", 1}, {"floor", 1}, {"ceil", 1}, {"abs", 1},
};

struct expr_parser {
    const char *s, *p;
    const char *err;
};

static void expr_free(struct expr *e)
{
    if (!e)
        return;
    expr_free(e->a);
    expr_free(e->b);
    free(e);
}

static struct expr *expr_node(struct expr_parser *ep, char op, struct expr *a, struct expr *b)
{
    struct expr *e = calloc(1, sizeof(*e));
    if (!e) {
        ep->err = "out of memory";
        expr_free(a);
        expr_free(b);
        return NULL;
    }
    e->op = op;
    e->a = a;
    e->b = b;
    return e;
}

static void skip_ws(struct expr_parser *ep)
{
    while (isspace((unsigned char)*ep->p))
        ep->p++;
}

static struct expr *parse_sum(struct expr_parser *ep);

static struct expr *parse_primary(struct expr_parser *ep)
{
    skip_ws(ep);
    if (*ep->p == '(') {
        ep->p++;
        struct expr *e = parse_sum(ep);
        skip_ws(ep);
        if (e && *ep->p != ')') {
            ep->err = "missing ')'";
            expr_free(e);
            return NULL;
        }
        ep->p++;
        return e;
    }
    if (isdigit((unsigned char)*ep->p) || *ep->p == '.') {
        char *end;
        double v = strtod(ep->p, &end);
        ep->p = end;
        struct expr *e = expr_node(ep, 'n', NULL, NULL);
        if (e)
            e->num = v;
        return e;
    }
    if (isalpha((unsigned char)*ep->p)) {
        const char *start = ep->p;
        while (isalnum((unsigned char)*ep->p) || *ep->p == '_')
            ep->p++;
        size_t len = (size_t)(ep->p - start);
        if (len == 5 && !strncmp(start, "value", 5))
            return expr_node(ep, 'v', NULL, NULL);
        for (size_t f = 0; f < sizeof(fns) / sizeof(fns[0]); f++) {
            if (strlen(fns[f].name) != len || strncmp(fns[f].name, start, len))
                continue;
            skip_ws(ep);
            if (*ep->p++ != '(') {
                ep->err = "a function name must be followed by '('";
                return NULL;
            }
            struct expr *a = parse_sum(ep), *b = NULL;
            skip_ws(ep);
            if (a && fns[f].nargs == 2) {
                if (*ep->p++ != ',') {
                    ep->err = "this function takes two arguments: f(a, b)";
                    expr_free(a);
                    return NULL;
                }
                if (!(b = parse_sum(ep))) {
                    expr_free(a);
                    return NULL;
                }
                skip_ws(ep);
            }
            if (!a)
                return NULL;
            if (*ep->p++ != ')') {
                ep->err = "missing ')' after the function's arguments";
                expr_free(a);
                expr_free(b);
                return NULL;
            }
            struct expr *e = expr_node(ep, 'f', a, b);
            if (e)
                e->fn = (int)f;
            return e;
        }
        ep->err = "unknown name (use value, numbers, + - * / %, min, max, round, floor, ceil, abs)";
        return NULL;
    }
    ep->err = *ep->p ? "unexpected character" : "unexpected end of the expression";
    return NULL;
}

static struct expr *parse_unary(struct expr_parser *ep)
{
    skip_ws(ep);
    if (*ep->p == '-') {
        ep->p++;
        struct expr *a = parse_unary(ep);
        return a ? expr_node(ep, '~', a, NULL) : NULL;
    }
    return parse_primary(ep);
}

static struct expr *parse_product(struct expr_parser *ep)
{
    struct expr *e = parse_unary(ep);
    for (;;) {
        skip_ws(ep);
        char op = *ep->p;
        if (!e || (op != '*' && op != '/' && op != '%'))
            return e;
        ep->p++;
        struct expr *b = parse_unary(ep);
        if (!b) {
            expr_free(e);
            return NULL;
        }
        e = expr_node(ep, op, e, b);
    }
}

static struct expr *parse_sum(struct expr_parser *ep)
{
    struct expr *e = parse_product(ep);
    for (;;) {
        skip_ws(ep);
        char op = *ep->p;
        if (!e || (op != '+' && op != '-'))
            return e;
        ep->p++;
        struct expr *b = parse_product(ep);
        if (!b) {
            expr_free(e);
            return NULL;
        }
        e = expr_node(ep, op, e, b);
    }
}

/* Compiles text; on error returns NULL and sets *err and *col (1-based offset in text). */
static struct expr *expr_compile(const char *text, const char **err, unsigned *col)
{
    struct expr_parser ep = {text, text, NULL};
    struct expr *e = parse_sum(&ep);
    skip_ws(&ep);
    if (e && *ep.p) {
        ep.err = "unexpected text after the expression";
        expr_free(e);
        e = NULL;
    }
    if (!e) {
        *err = ep.err ? ep.err : "invalid expression";
        *col = (unsigned)(ep.p - text) + 1;
    }
    return e;
}

static double expr_eval(const struct expr *e, double value)
{
    double a = e->a ? expr_eval(e->a, value) : 0, b = e->b ? expr_eval(e->b, value) : 0;
    switch (e->op) {
    case 'n': return e->num;
    case 'v': return value;
    case '~': return -a;
    case '+': return a + b;
    case '-': return a - b;
    case '*': return a * b;
    case '/': return a / b;
    case '%': return fmod(a, b);
    default:
        switch (e->fn) {
        case 0: return fmin(a, b);
        case 1: return fmax(a, b);
        case 2: return round(a);
        case 3: return floor(a);
        case 4: return ceil(a);
        default: return fabs(a);
        }
    }
}

/* value -> a value of type t (numbers round to the nearest int for int targets). */
static int number_to_value(double x, enum ctl_type t, struct ctl_value *out)
{
    memset(out, 0, sizeof(*out));
    if (!isfinite(x))
        return CASCA_ERR_INVALID;
    switch (t) {
    case CTL_INT:
        if (fabs(x) > 9.0e15)
            return CASCA_ERR_INVALID;
        *out = (struct ctl_value){.kind = CTL_INT, .i = (int64_t)llround(x)};
        return CASCA_OK;
    case CTL_DOUBLE: *out = (struct ctl_value){.kind = CTL_DOUBLE, .d = x}; return CASCA_OK;
    case CTL_BOOL: *out = (struct ctl_value){.kind = CTL_BOOL, .b = x != 0}; return CASCA_OK;
    default: {
        struct ctl_value d = {.kind = CTL_DOUBLE, .d = x};
        if (x == floor(x) && fabs(x) < 9.0e15)
            d = (struct ctl_value){.kind = CTL_INT, .i = (int64_t)x};
        *out = d;
        return ctl_value_coerce(out, CTL_STRING);
    }
    }
}

/* ---- declarations (the config section) ---- */

/* A target's private controller details; refcounted because open instances outlive the config
 * snapshot they came from when a reload keeps them. */
struct ctl_conf {
    atomic_uint refs;
    const struct ctl_ops *ops;
    void *priv;
    char *key; /* identity: setting, target, controller, directory and the controller's map */
};

struct ctl_target {
    char *name;
    enum ctl_type type; /* of the service value */
    struct ctl_conf *conf;
    struct expr *expr;    /* MAP_EXPR: public -> service */
    struct expr *inverse; /* MAP_EXPR: service -> public (NULL: not used for reading) */
};

enum map_kind { MAP_IDENTITY, MAP_TABLE, MAP_EXPR };

struct ctl_decl {
    struct ctl_public pub;
    char *id, *description, *unit, *where; /* where: file:line:col, for the operator's logs */
    struct ctl_value *allowed;
    size_t nallowed;
    uint64_t max_age_ms, cooldown_ms;
    double max_step; /* 0: no limit; for enums, positions in the allowed list */
    enum map_kind map;
    struct ctl_target *targets;
    size_t ntargets;
    struct ctl_value *rows;     /* MAP_TABLE: nrows public values */
    struct ctl_value *row_vals; /* MAP_TABLE: nrows * ntargets service values */
    size_t nrows;
};

struct ctl_decls {
    struct ctl_decl *v;
    size_t n;
};

static void conf_unref(struct ctl_conf *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1) {
        if (c->priv)
            c->ops->free_conf(c->priv);
        free(c->key);
        free(c);
    }
}

static void decl_free(struct ctl_decl *d)
{
    free(d->id);
    free(d->description);
    free(d->unit);
    free(d->where);
    for (size_t i = 0; i < d->nallowed; i++)
        ctl_value_clear(&d->allowed[i]);
    free(d->allowed);
    for (size_t i = 0; i < d->ntargets; i++) {
        free(d->targets[i].name);
        conf_unref(d->targets[i].conf);
        expr_free(d->targets[i].expr);
        expr_free(d->targets[i].inverse);
    }
    free(d->targets);
    for (size_t i = 0; i < d->nrows; i++)
        ctl_value_clear(&d->rows[i]);
    for (size_t i = 0; i < d->nrows * d->ntargets; i++)
        ctl_value_clear(&d->row_vals[i]);
    free(d->rows);
    free(d->row_vals);
}

static void ctl_config_free(void *decls)
{
    struct ctl_decls *ds = decls;
    if (!ds)
        return;
    for (size_t i = 0; i < ds->n; i++)
        decl_free(&ds->v[i]);
    free(ds->v);
    free(ds);
}

/* A canonical text of a node, for the identity of a controller's details. */
static void node_text(FILE *out, const struct yd_node *n)
{
    if (n->kind == YD_SCALAR) {
        fprintf(out, "%c%zu:%s", n->plain ? 'p' : 'q', strlen(n->scalar), n->scalar);
    } else {
        fputc(n->kind == YD_MAP ? '{' : '[', out);
        for (size_t i = 0; i < n->n; i++) {
            if (n->kind == YD_MAP) {
                node_text(out, n->keys[i]);
                fputc('=', out);
            }
            node_text(out, n->values[i]);
            fputc(',', out);
        }
        fputc(n->kind == YD_MAP ? '}' : ']', out);
    }
}

/* A scalar node as a value of type t; false after recording an error. */
static bool scalar_value(struct ctl_parse *p, const struct yd_node *n, enum ctl_type t,
                         const char *what, struct ctl_value *out)
{
    memset(out, 0, sizeof(*out));
    if (n->kind != YD_SCALAR) {
        ctl_parse_error(p, n, "%s: expected a value, not a %s", what, yd_kind_name(n->kind));
        return false;
    }
    struct ctl_value v = {.kind = CTL_STRING, .s = strdup(n->scalar)};
    if (!v.s || ctl_value_coerce(&v, t) != CASCA_OK) {
        ctl_parse_error(p, n, "%s: '%s' is not a %s value", what, n->scalar, ctl_type_name(t));
        ctl_value_clear(&v);
        return false;
    }
    *out = v;
    return true;
}

static bool parse_number(struct ctl_parse *p, const struct yd_node *map, const char *key,
                         bool *has, double *out)
{
    const struct yd_node *n = yd_get(map, key);
    *has = false;
    if (!n)
        return true;
    const char *why =
        n->kind == YD_SCALAR ? config_parse_double(n->scalar, out) : "expected a number";
    if (why) {
        ctl_parse_error(p, n, "%s: %s", key, why);
        return false;
    }
    *has = true;
    return true;
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

/* controller: {NAME: {...}} -> a conf with one reference. */
static struct ctl_conf *parse_controller(struct ctl_parse *p, const struct yd_node *node,
                                         const char *id, const char *target, enum ctl_type type)
{
    char names[128] = ""; /* for errors: from the table, so it cannot go stale */
    for (size_t i = 0; i < NCONTROLLERS; i++)
        snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", i ? ", " : "",
                 controllers[i]->name);
    if (node->kind != YD_MAP || node->n != 1) {
        ctl_parse_error(p, node, "controller: expected a map with exactly one controller (%s)",
                        names);
        return NULL;
    }
    const char *name = node->keys[0]->scalar;
    const struct ctl_ops *ops = NULL;
    for (size_t i = 0; i < NCONTROLLERS; i++)
        if (!strcmp(controllers[i]->name, name))
            ops = controllers[i];
    if (!ops) {
        ctl_parse_error(p, node->keys[0], "unknown controller '%s' (known: %s)", name, names);
        return NULL;
    }
    const struct yd_node *body = node->values[0];
    if (body->kind != YD_MAP) {
        ctl_parse_error(p, body, "%s: expected a map of its settings", name);
        return NULL;
    }
    enum ctl_type saved = p->type;
    p->type = type == CTL_ENUM ? CTL_STRING : type;
    size_t before = config_error_count(p->ld);
    void *priv = ops->parse(p, body);
    p->type = saved;
    if (!priv || config_error_count(p->ld) > before) {
        if (priv)
            ops->free_conf(priv);
        return NULL;
    }
    struct ctl_conf *c = calloc(1, sizeof(*c));
    char *buf = NULL;
    size_t len = 0;
    FILE *out = c ? open_memstream(&buf, &len) : NULL;
    if (!out) {
        free(c);
        ops->free_conf(priv);
        return NULL;
    }
    char *dir = ctl_parse_path(p, ""); /* the directory relative paths are resolved against */
    fprintf(out, "%s/%s|%s|%s|%s|", id, target, ctl_type_name(type), name, dir ? dir : "");
    free(dir);
    node_text(out, body);
    fclose(out);
    atomic_init(&c->refs, 1);
    c->ops = ops;
    c->priv = priv;
    c->key = buf;
    return c;
}

static const struct config_key setting_keys[] = {
    {"id"},       {"description"}, {"unit"},     {"type"},       {"range"},
    {"step"},     {"allowed"},     {"read_only"}, {"max_age"},   {"cooldown"},
    {"max_step"}, {"controller"},  {"targets"},  {"map"},        {NULL}};
static const struct config_key target_keys[] = {
    {"name"}, {"type"}, {"controller"}, {"expr"}, {"inverse"}, {NULL}};

static bool compile_expr(struct ctl_parse *p, const struct yd_node *map, const char *key,
                         struct expr **out)
{
    const char *text = ctl_parse_str(p, map, key, false);
    *out = NULL;
    if (!text)
        return true;
    const char *err;
    unsigned col;
    if (!(*out = expr_compile(text, &err, &col))) {
        ctl_parse_error(p, yd_get(map, key), "%s: %s at character %u of '%s'", key, err, col,
                        text);
        return false;
    }
    return true;
}

static bool on_step(const struct ctl_decl *d, double v)
{
    if (d->pub.step <= 0)
        return true;
    double base = d->pub.has_min ? d->pub.min : 0;
    double k = (v - base) / d->pub.step;
    return fabs(k - round(k)) < 1e-9 * fmax(1, fabs(k));
}

static bool in_range(const struct ctl_decl *d, double v)
{
    return !(d->pub.has_min && v < d->pub.min) && !(d->pub.has_max && v > d->pub.max);
}

static void parse_targets(struct ctl_parse *p, const struct yd_node *seq, struct ctl_decl *d)
{
    if (seq->kind != YD_SEQ || seq->n == 0) {
        ctl_parse_error(p, seq, "targets: expected a non-empty list of {name, type, controller}");
        return;
    }
    if (!(d->targets = calloc(seq->n, sizeof(*d->targets))))
        return;
    d->ntargets = seq->n;
    for (size_t i = 0; i < seq->n; i++) {
        const struct yd_node *t = seq->values[i];
        struct ctl_target *tg = &d->targets[i];
        if (!config_expect(p->ld, p->file, t, YD_MAP,
                           "targets: each target is a map {name, type, controller}"))
            continue;
        ctl_parse_keys(p, t, target_keys, "targets[]");
        const char *name = ctl_parse_str(p, t, "name", true);
        const char *type = ctl_parse_str(p, t, "type", true);
        const struct yd_node *ctlr = yd_get(t, "controller");
        if (!name || !type)
            continue;
        for (size_t j = 0; j < i; j++)
            if (d->targets[j].name && !strcmp(d->targets[j].name, name))
                ctl_parse_error(p, yd_get(t, "name"), "target '%s' is named twice", name);
        tg->name = strdup(name);
        tg->type = type_parse(type);
        if (tg->type == CTL_NONE || tg->type == CTL_ENUM) {
            ctl_parse_error(p, yd_get(t, "type"),
                            "type: '%s' is not a service value type (int, double, bool, string)",
                            type);
            continue;
        }
        if (!ctlr)
            ctl_parse_error(p, t, "'controller' is required in a target");
        else
            tg->conf = parse_controller(p, ctlr, d->id, name, tg->type);
        compile_expr(p, t, "expr", &tg->expr);
        compile_expr(p, t, "inverse", &tg->inverse);
    }
}

static void parse_table(struct ctl_parse *p, const struct yd_node *map, struct ctl_decl *d)
{
    if (map->kind != YD_MAP || map->n == 0) {
        ctl_parse_error(p, map, "map: expected a map from each public value to its service values,"
                                " e.g. {low: {resolution: 720, bitrate: 2000}}");
        return;
    }
    d->rows = calloc(map->n, sizeof(*d->rows));
    d->row_vals = calloc(map->n * d->ntargets, sizeof(*d->row_vals));
    if (!d->rows || !d->row_vals)
        return;
    d->nrows = map->n;
    for (size_t r = 0; r < map->n; r++) {
        if (!scalar_value(p, map->keys[r], d->pub.type, "map", &d->rows[r]))
            continue;
        for (size_t q = 0; q < r; q++)
            if (ctl_value_equal(&d->rows[q], &d->rows[r]))
                ctl_parse_error(p, map->keys[r], "map: '%s' is listed twice", map->keys[r]->scalar);
        const struct yd_node *row = map->values[r];
        if (row->kind != YD_MAP) {
            ctl_parse_error(p, row, "map: each public value maps to {target: value, ...}");
            continue;
        }
        for (size_t k = 0; k < row->n; k++) {
            size_t t = 0;
            while (t < d->ntargets && (!d->targets[t].name ||
                                       strcmp(d->targets[t].name, row->keys[k]->scalar)))
                t++;
            if (t == d->ntargets)
                ctl_parse_error(p, row->keys[k], "map: '%s' is not one of this setting's targets",
                                row->keys[k]->scalar);
            else
                scalar_value(p, row->values[k], d->targets[t].type, row->keys[k]->scalar,
                             &d->row_vals[r * d->ntargets + t]);
        }
        for (size_t t = 0; t < d->ntargets; t++)
            if (d->targets[t].name && !yd_get(row, d->targets[t].name))
                ctl_parse_error(p, row, "map: '%s' gives no value for target '%s'",
                                map->keys[r]->scalar, d->targets[t].name);
    }
}

/* n is a map (parse_list checked). */
static void parse_setting(struct ctl_parse *p, const struct yd_node *n, struct ctl_decl *d)
{
    ctl_parse_keys(p, n, setting_keys, "a setting");
    if (asprintf(&d->where, "%s:%u:%u", p->file ? p->file : config_loader_file(p->ld), n->line,
                 n->col) < 0)
        d->where = NULL;
    const char *id = ctl_parse_str(p, n, "id", true);
    if (id && !valid_id(id))
        ctl_parse_error(p, yd_get(n, "id"), "id: '%s' is not a valid id (1 to %d letters, digits "
                                            "or _-.:)", id, MAX_ID_LEN);
    d->id = strdup(id ? id : "");
    const char *desc = ctl_parse_str(p, n, "description", false);
    const char *unit = ctl_parse_str(p, n, "unit", false);
    d->description = strdup(desc ? desc : "");
    d->unit = strdup(unit ? unit : "");
    const char *type = ctl_parse_str(p, n, "type", true);
    d->pub.type = type ? type_parse(type) : CTL_NONE;
    if (type && d->pub.type == CTL_NONE)
        ctl_parse_error(p, yd_get(n, "type"), "type: '%s' is not one of int, double, bool, string, "
                                              "enum", type);
    if (!d->id || !d->description || !d->unit || d->pub.type == CTL_NONE)
        return;
    enum ctl_type t = d->pub.type;

    const struct yd_node *range = yd_get(n, "range");
    if (range) {
        static const struct config_key range_keys[] = {{"min"}, {"max"}, {NULL}};
        if (!is_numeric(t))
            ctl_parse_error(p, range, "range: only int and double settings have a range");
        else if (range->kind != YD_MAP)
            ctl_parse_error(p, range, "range: expected {min: N, max: N}");
        else if (ctl_parse_keys(p, range, range_keys, "range") &&
                 parse_number(p, range, "min", &d->pub.has_min, &d->pub.min) &&
                 parse_number(p, range, "max", &d->pub.has_max, &d->pub.max) && d->pub.has_min &&
                 d->pub.has_max && d->pub.min > d->pub.max)
            ctl_parse_error(p, range, "range: min %g is above max %g", d->pub.min, d->pub.max);
    }
    bool has;
    if (parse_number(p, n, "step", &has, &d->pub.step) && has) {
        if (!is_numeric(t))
            ctl_parse_error(p, yd_get(n, "step"), "step: only int and double settings have a step");
        else if (d->pub.step <= 0 || (t == CTL_INT && d->pub.step != floor(d->pub.step)))
            ctl_parse_error(p, yd_get(n, "step"), "step: must be above 0 (and whole for an int)");
    }
    if (parse_number(p, n, "max_step", &has, &d->max_step) && has) {
        if (!is_numeric(t) && t != CTL_ENUM)
            ctl_parse_error(p, yd_get(n, "max_step"),
                            "max_step: only int, double and enum settings have a maximum step");
        else if (d->max_step <= 0)
            ctl_parse_error(p, yd_get(n, "max_step"), "max_step: must be above 0");
    }
    ctl_parse_bool(p, n, "read_only", false, &d->pub.read_only);
    ctl_parse_ms(p, n, "max_age", 0, &d->max_age_ms);
    ctl_parse_ms(p, n, "cooldown", 0, &d->cooldown_ms);

    const struct yd_node *allowed = yd_get(n, "allowed");
    if (allowed) {
        if (allowed->kind != YD_SEQ || allowed->n == 0) {
            ctl_parse_error(p, allowed, "allowed: expected a non-empty list of values");
        } else if ((d->allowed = calloc(allowed->n, sizeof(*d->allowed)))) {
            for (size_t i = 0; i < allowed->n; i++) {
                if (!scalar_value(p, allowed->values[i], t, "allowed", &d->allowed[d->nallowed]))
                    continue;
                struct ctl_value *v = &d->allowed[d->nallowed++];
                if (is_numeric(t) && (!in_range(d, as_double(v)) || !on_step(d, as_double(v))))
                    ctl_parse_error(p, allowed->values[i],
                                    "allowed: %s is outside the range or off the step",
                                    allowed->values[i]->scalar);
            }
        }
    }

    const struct yd_node *ctlr = yd_get(n, "controller"), *targets = yd_get(n, "targets"),
                         *map = yd_get(n, "map");
    if (t == CTL_ENUM && !allowed && !map)
        ctl_parse_error(p, n, "setting '%s': an enum needs 'allowed' (or a 'map')", d->id);
    if (!!ctlr == !!targets) {
        ctl_parse_error(p, n, "setting '%s': give either 'controller' (one service value) or "
                              "'targets' (several, merged through 'map' or 'expr')", d->id);
        return;
    }
    if (ctlr) {
        if (map)
            ctl_parse_error(p, map, "map: only settings with 'targets' have a map");
        d->map = MAP_IDENTITY;
        if (!(d->targets = calloc(1, sizeof(*d->targets))))
            return;
        d->ntargets = 1;
        d->targets[0].name = strdup(d->id);
        d->targets[0].type = t == CTL_ENUM ? CTL_STRING : t;
        d->targets[0].conf = parse_controller(p, ctlr, d->id, "", t);
        return;
    }
    parse_targets(p, targets, d);
    if (config_error_count(p->ld))
        return;
    bool any_expr = false, any_inverse = false;
    for (size_t i = 0; i < d->ntargets; i++) {
        any_expr |= d->targets[i].expr != NULL;
        any_inverse |= d->targets[i].inverse != NULL;
    }
    if (map) {
        d->map = MAP_TABLE;
        if (any_expr || any_inverse)
            ctl_parse_error(p, map, "map: a setting is merged either by 'map' or by 'expr' in its "
                                    "targets, not both");
        parse_table(p, map, d);
        if (!d->nallowed && d->nrows && (d->allowed = calloc(d->nrows, sizeof(*d->allowed)))) {
            for (size_t r = 0; r < d->nrows; r++) /* allowed defaults to the table's values */
                if (ctl_value_copy(&d->allowed[d->nallowed], &d->rows[r]) == CASCA_OK)
                    d->nallowed++;
        } else {
            for (size_t a = 0; a < d->nallowed; a++) {
                size_t r = 0;
                while (r < d->nrows && !ctl_value_equal(&d->rows[r], &d->allowed[a]))
                    r++;
                if (r == d->nrows) {
                    char buf[80];
                    ctl_parse_error(p, allowed, "allowed: %s has no row in 'map'",
                                    ctl_value_format(&d->allowed[a], buf, sizeof(buf)));
                }
            }
        }
    } else {
        d->map = MAP_EXPR;
        if (!is_numeric(t) && t != CTL_BOOL)
            ctl_parse_error(p, targets, "targets: only int, double and bool settings can be merged "
                                        "by 'expr'; use 'map' for %s settings", ctl_type_name(t));
        for (size_t i = 0; i < d->ntargets; i++)
            if (!d->targets[i].expr)
                ctl_parse_error(p, targets->values[i], "target '%s' needs 'expr' (how the public "
                                                       "value gives its value), or the setting a "
                                                       "'map'", d->targets[i].name);
        if (!any_inverse)
            ctl_parse_error(p, targets, "targets: give one target an 'inverse' expression (its "
                                        "service value -> the public value) so the setting can be "
                                        "read back");
    }
}

/* Parses a list of settings (the config's own `settings:` or a settings file's). */
static void parse_list(struct ctl_parse *p, const struct yd_node *seq, struct ctl_decls *ds)
{
    if (seq->kind != YD_SEQ) {
        ctl_parse_error(p, seq, "settings: expected a list of settings (- id: ...)");
        return;
    }
    struct ctl_decl *grown = realloc(ds->v, (ds->n + seq->n) * sizeof(*grown));
    if (!grown)
        return;
    ds->v = grown;
    for (size_t i = 0; i < seq->n; i++) {
        /* an item that is not a map is left out: it has no id to compare with the next ones */
        if (!config_expect(p->ld, p->file, seq->values[i], YD_MAP,
                           "settings: each setting is a map with at least id, type and "
                           "controller"))
            continue;
        struct ctl_decl *d = &ds->v[ds->n];
        memset(d, 0, sizeof(*d));
        parse_setting(p, seq->values[i], d);
        for (size_t j = 0; d->id && *d->id && j < ds->n; j++)
            if (ds->v[j].id && !strcmp(ds->v[j].id, d->id))
                ctl_parse_error(p, yd_get(seq->values[i], "id"),
                                "setting '%s' is declared twice (first at %s)", d->id,
                                ds->v[j].where ? ds->v[j].where : "?");
        ds->n++;
    }
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : NULL;
}

static void parse_files(struct ctl_parse *mainp, const struct yd_node *files, struct ctl_decls *ds)
{
    if (files->kind != YD_SEQ) {
        ctl_parse_error(mainp, files, "settings_files: expected a list of file names");
        return;
    }
    for (size_t i = 0; i < files->n; i++) {
        const struct yd_node *f = files->values[i];
        if (!config_expect(mainp->ld, mainp->file, f, YD_SCALAR,
                           "settings_files: expected a file name"))
            continue;
        if (!*f->scalar) {
            ctl_parse_error(mainp, f, "settings_files: expected a file name, not ''");
            continue;
        }
        char *path = ctl_parse_path(mainp, f->scalar);
        char err[1024];
        struct yd_doc *doc = NULL;
        if (!path || yd_parse_file(path, &doc, err, sizeof(err)) != CASCA_OK) {
            ctl_parse_error(mainp, f, "settings_files: %s", path ? err : "out of memory");
            free(path);
            continue;
        }
        struct ctl_parse p = {.ld = mainp->ld, .file = path, .dir = dir_of(path)};
        const struct yd_node *root = doc->root, *list = root;
        if (root && root->kind == YD_MAP) {
            static const struct config_key file_keys[] = {{"settings"}, {NULL}};
            ctl_parse_keys(&p, root, file_keys, "a settings file");
            list = yd_get(root, "settings");
        }
        if (!list)
            ctl_parse_error(&p, root, "a settings file holds a list of settings, or a map with a "
                                      "'settings:' list");
        else
            parse_list(&p, list, ds);
        yd_free(doc);
        free(p.dir);
        free(path);
    }
}

static void *ctl_config_parse(struct config_loader *ld, const struct yd_node *const values[])
{
    struct ctl_decls *ds = calloc(1, sizeof(*ds));
    if (!ds)
        return NULL;
    struct ctl_parse p = {.ld = ld}; /* the main configuration file */
    for (int i = 0; i < 2; i++) {
        const struct yd_node *n = values[i];
        if (!n || (n->kind == YD_SCALAR && n->plain && (!*n->scalar || !strcmp(n->scalar, "null"))))
            continue; /* absent, or "settings:" with nothing under it */
        if (i == 0)
            parse_list(&p, n, ds);
        else
            parse_files(&p, n, ds);
    }
    return ds;
}

const struct config_section ctl_config_section = {
    .keys = (const char *const[]){CTL_CONFIG_KEYS, NULL},
    .parse = ctl_config_parse,
    .free = ctl_config_free,
};

/* ---- the runtime: instances, per-setting state, tables ---- */

struct inst {
    atomic_uint refs;
    struct ctl_conf *conf; /* a reference */
    void *priv;            /* NULL when open failed: every call answers UNAVAILABLE */
};

/* What casca knows of a setting; shared by the tables of successive reloads (found by id). */
struct state {
    atomic_uint refs;
    char *id;
    pthread_mutex_t set_lock; /* one change of this setting at a time */
    pthread_mutex_t lock;     /* guards the fields below */
    struct ctl_reading last;  /* last value read or written; last.value.kind NONE: unknown */
    int64_t read_mono_ns;     /* when last was read or written (0: never) */
    int64_t change_mono_ns;   /* when casca last changed it (0: never), for the cooldown */
    int64_t fail_since_ns;    /* wall clock of the first failed read since the last good one */
    int64_t attempt_mono_ns;  /* when the re-reader last started a read (0: never) */
    bool refreshing;          /* a re-read is queued or running */
};

struct entry {
    const struct ctl_decl *decl;
    struct state *st;
    struct inst **inst; /* one per target */
};

struct ctl_view {
    atomic_uint refs;
    struct config *config; /* keeps the declarations alive */
    size_t n;
    struct entry *e;
};

struct listener {
    ctl_listener_fn fn;
    void *arg;
};

/* Watchers of one setting that share a period (ctl_watch). */
struct interest {
    char *id;
    int64_t period_ns;
    unsigned count;
};

struct ctl {
    pthread_mutex_t lock; /* guards cur, listeners and the lease hook */
    struct ctl_view *cur;
    struct audit *audit;
    struct listener listeners[MAX_LISTENERS];
    size_t nlisteners;
    ctl_lease_fn lease;
    void *lease_arg;
    /* the re-reader: a thread that queues due reads on its own pool */
    pthread_mutex_t rlock; /* guards the fields below */
    pthread_cond_t rwake;  /* CLOCK_MONOTONIC */
    struct interest *iv;
    size_t ni;
    bool rstop, rstarted;
    pthread_t refresher;
    struct pool *readers;
};

static void inst_unref(struct inst *in)
{
    if (in && atomic_fetch_sub(&in->refs, 1) == 1) {
        if (in->priv)
            in->conf->ops->close(in->priv);
        conf_unref(in->conf);
        free(in);
    }
}

static void state_unref(struct state *st)
{
    if (st && atomic_fetch_sub(&st->refs, 1) == 1) {
        ctl_reading_clear(&st->last);
        pthread_mutex_destroy(&st->set_lock);
        pthread_mutex_destroy(&st->lock);
        free(st->id);
        free(st);
    }
}

void ctl_view_put(struct ctl_view *v)
{
    if (!v || atomic_fetch_sub(&v->refs, 1) != 1)
        return;
    for (size_t i = 0; i < v->n; i++) {
        for (size_t t = 0; v->e[i].inst && t < v->e[i].decl->ntargets; t++)
            inst_unref(v->e[i].inst[t]);
        free(v->e[i].inst);
        state_unref(v->e[i].st);
    }
    free(v->e);
    config_unref(v->config);
    free(v);
}

static struct inst *find_inst(const struct ctl_view *old, const struct ctl_conf *conf)
{
    for (size_t i = 0; old && i < old->n; i++)
        for (size_t t = 0; t < old->e[i].decl->ntargets; t++) {
            struct inst *in = old->e[i].inst[t];
            if (in && in->priv && in->conf->ops == conf->ops && !strcmp(in->conf->key, conf->key))
                return in;
        }
    return NULL;
}

static struct inst *open_inst(const struct ctl_decl *d, struct ctl_conf *conf,
                              const struct ctl_view *old, bool *reused)
{
    struct inst *in = find_inst(old, conf);
    if ((*reused = in != NULL)) {
        atomic_fetch_add(&in->refs, 1);
        return in;
    }
    if (!(in = calloc(1, sizeof(*in))))
        return NULL;
    atomic_init(&in->refs, 1);
    atomic_fetch_add(&conf->refs, 1);
    in->conf = conf;
    int rc = conf->ops->open(conf->priv, &in->priv);
    if (rc != CASCA_OK) {
        in->priv = NULL;
        log_warn("ctl", "setting %s (%s): cannot open its %s controller: %s", d->id, d->where,
                 conf->ops->name, casca_strerror(rc));
    }
    return in;
}

static struct state *find_state(const struct ctl_view *old, const char *id)
{
    for (size_t i = 0; old && i < old->n; i++)
        if (!strcmp(old->e[i].st->id, id))
            return old->e[i].st;
    return NULL;
}

/* A table for snapshot c, reusing old's instances and states where they match. */
static struct ctl_view *build_view(struct config *c, const struct ctl_view *old)
{
    const struct ctl_decls *ds = config_section_of(c, &ctl_config_section);
    struct ctl_view *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    atomic_init(&v->refs, 1);
    v->config = config_ref(c);
    size_t n = ds ? ds->n : 0, reused = 0, opened = 0;
    if (n && !(v->e = calloc(n, sizeof(*v->e)))) {
        ctl_view_put(v);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const struct ctl_decl *d = &ds->v[i];
        struct entry *e = &v->e[v->n];
        e->decl = d;
        if (!(e->inst = calloc(d->ntargets, sizeof(*e->inst)))) {
            ctl_view_put(v);
            return NULL;
        }
        struct state *st = find_state(old, d->id);
        if (st) {
            atomic_fetch_add(&st->refs, 1);
        } else if ((st = calloc(1, sizeof(*st))) && (st->id = strdup(d->id))) {
            atomic_init(&st->refs, 1);
            pthread_mutex_init(&st->set_lock, NULL);
            pthread_mutex_init(&st->lock, NULL);
        } else {
            free(st);
            free(e->inst);
            ctl_view_put(v);
            return NULL;
        }
        e->st = st;
        v->n++;
        for (size_t t = 0; t < d->ntargets; t++) {
            bool was;
            e->inst[t] = open_inst(d, d->targets[t].conf, old, &was);
            was ? reused++ : opened++;
        }
    }
    log_info("ctl", "%zu settings: %zu controllers opened, %zu kept from before", n, opened,
             reused);
    return v;
}

static void *refresher_main(void *arg);

struct ctl *ctl_create(struct config *c, struct audit *audit)
{
    struct ctl *ctl = calloc(1, sizeof(*ctl));
    if (!ctl)
        return NULL;
    pthread_mutex_init(&ctl->lock, NULL);
    pthread_mutex_init(&ctl->rlock, NULL);
    casca_cond_init_mono(&ctl->rwake);
    ctl->audit = audit;
    if (!(ctl->cur = build_view(c, NULL)) ||
        !(ctl->readers = pool_create(REFRESH_THREADS, REFRESH_QUEUE)) ||
        pthread_create(&ctl->refresher, NULL, refresher_main, ctl) != 0) {
        ctl_destroy(ctl);
        return NULL;
    }
    ctl->rstarted = true;
    return ctl;
}

void ctl_reload(struct ctl *ctl, struct config *c)
{
    pthread_mutex_lock(&ctl->lock);
    struct ctl_view *old = ctl->cur;
    atomic_fetch_add(&old->refs, 1);
    pthread_mutex_unlock(&ctl->lock);
    struct ctl_view *next = build_view(c, old);
    if (!next) {
        log_warn("ctl", "out of memory: the settings of the new configuration are not in force");
        ctl_view_put(old);
        return;
    }
    pthread_mutex_lock(&ctl->lock);
    ctl->cur = next;
    pthread_mutex_unlock(&ctl->lock);
    ctl_view_put(old); /* ours */
    ctl_view_put(old); /* the table's: freed when the last call using it ends */
}

void ctl_destroy(struct ctl *ctl)
{
    if (!ctl)
        return;
    ctl_stop(ctl);
    pool_destroy(ctl->readers); /* when the thread never started */
    for (size_t k = 0; k < ctl->ni; k++)
        free(ctl->iv[k].id);
    free(ctl->iv);
    ctl_view_put(ctl->cur);
    pthread_cond_destroy(&ctl->rwake);
    pthread_mutex_destroy(&ctl->rlock);
    pthread_mutex_destroy(&ctl->lock);
    free(ctl);
}

struct ctl_view *ctl_view_get(struct ctl *ctl)
{
    pthread_mutex_lock(&ctl->lock);
    struct ctl_view *v = ctl->cur;
    atomic_fetch_add(&v->refs, 1);
    pthread_mutex_unlock(&ctl->lock);
    return v;
}

size_t ctl_view_count(const struct ctl_view *v)
{
    return v->n;
}

const struct ctl_public *ctl_view_at(const struct ctl_view *v, size_t i)
{
    if (i >= v->n)
        return NULL;
    struct ctl_decl *d = (struct ctl_decl *)v->e[i].decl;
    /* the public view points into the declaration's own strings */
    d->pub.id = d->id;
    d->pub.description = d->description;
    d->pub.unit = d->unit;
    d->pub.allowed = d->allowed;
    d->pub.nallowed = d->nallowed;
    return &d->pub;
}

long ctl_view_find(const struct ctl_view *v, const char *id)
{
    for (size_t i = 0; i < v->n; i++)
        if (!strcmp(v->e[i].decl->id, id))
            return (long)i;
    return -1;
}

int ctl_listen(struct ctl *ctl, ctl_listener_fn fn, void *arg)
{
    pthread_mutex_lock(&ctl->lock);
    int rc = ctl->nlisteners < MAX_LISTENERS ? CASCA_OK : CASCA_ERR_FULL;
    if (!rc)
        ctl->listeners[ctl->nlisteners++] = (struct listener){fn, arg};
    pthread_mutex_unlock(&ctl->lock);
    return rc;
}

void ctl_unlisten(struct ctl *ctl, ctl_listener_fn fn, void *arg)
{
    pthread_mutex_lock(&ctl->lock);
    for (size_t i = 0; i < ctl->nlisteners; i++)
        if (ctl->listeners[i].fn == fn && ctl->listeners[i].arg == arg) {
            ctl->listeners[i] = ctl->listeners[--ctl->nlisteners];
            break;
        }
    pthread_mutex_unlock(&ctl->lock);
}

void ctl_set_lease_hook(struct ctl *ctl, ctl_lease_fn fn, void *arg)
{
    pthread_mutex_lock(&ctl->lock);
    ctl->lease = fn;
    ctl->lease_arg = arg;
    pthread_mutex_unlock(&ctl->lock);
}

static void notify(struct ctl *ctl, const char *id, const struct ctl_reading *r)
{
    struct listener ls[MAX_LISTENERS];
    pthread_mutex_lock(&ctl->lock);
    size_t n = ctl->nlisteners;
    memcpy(ls, ctl->listeners, n * sizeof(*ls));
    pthread_mutex_unlock(&ctl->lock);
    for (size_t i = 0; i < n; i++)
        ls[i].fn(ls[i].arg, id, r);
}

/* ---- reading and writing through the controllers ---- */

/* The public message for a backend failure of setting id (never the private detail). */
static int backend_error(int rc, const char *id, bool writing, char *msg, size_t len)
{
    switch (rc) {
    case CASCA_ERR_TIMEOUT:
        snprintf(msg, len,
                 "setting '%s': the service did not answer before the deadline%s; retry later or "
                 "with a longer deadline",
                 id, writing ? " (the change is not confirmed: GetSetting shows what is in force)"
                             : "");
        return CASCA_ERR_TIMEOUT;
    case CASCA_ERR_NOMEM:
        snprintf(msg, len, "setting '%s': the server is out of memory; retry later", id);
        return CASCA_ERR_NOMEM;
    default:
        snprintf(msg, len,
                 "setting '%s': the service is unavailable (not running, failing, or its answer "
                 "could not be read)%s; retry later, and tell the operator if it persists",
                 id, writing ? " and the change was not applied" : "");
        return CASCA_ERR_UNAVAILABLE;
    }
}

static int64_t deadline_of(int64_t deadline_ns)
{
    int64_t own = casca_mono_ns() + (int64_t)DEFAULT_TIMEOUT_MS * 1000000;
    return deadline_ns == INT64_MAX || deadline_ns <= 0 ? own : deadline_ns;
}

static void add_name(void *arg, const char *key)
{
    char *names = arg;
    size_t len = strlen(names);
    if (len + strlen(key) + 3 < 256)
        snprintf(names + len, 256 - len, "%s%s", len ? ", " : "", key);
}

/* Reads target t's service value, coerced to its type. */
static int read_target(const struct entry *e, size_t t, int64_t deadline_ns, struct ctl_value *out,
                       char *msg, size_t len)
{
    const struct ctl_decl *d = e->decl;
    const struct ctl_target *tg = &d->targets[t];
    struct inst *in = e->inst[t];
    struct ctl_io io = {.deadline_ns = deadline_of(deadline_ns)};
    memset(out, 0, sizeof(*out));
    int rc = in && in->priv ? tg->conf->ops->get(in->priv, out, &io)
                            : ctl_io_fail(&io, CASCA_ERR_UNAVAILABLE, "controller not open");
    if (rc == CASCA_OK && ctl_value_coerce(out, tg->type) != CASCA_OK) {
        char buf[96];
        rc = ctl_io_fail(&io, CASCA_ERR_UNAVAILABLE, "the service holds %s, not a %s",
                         ctl_value_format(out, buf, sizeof(buf)), ctl_type_name(tg->type));
        ctl_value_clear(out);
    }
    if (rc == CASCA_ERR_NOT_FOUND && in && in->priv && tg->conf->ops->list) {
        /* tell the operator what the service has instead */
        char names[256] = "";
        struct ctl_io lio = {.deadline_ns = io.deadline_ns};
        tg->conf->ops->list(in->priv, add_name, names, &lio);
        log_warn("ctl", "setting %s: the service has no such key; keys next to it: %s", d->id,
                 *names ? names : "(none)");
    }
    if (rc != CASCA_OK) {
        log_warn("ctl", "setting %s: reading %s (%s, %s): %s: %s", d->id, tg->name,
                 tg->conf->ops->name, d->where, casca_strerror(rc), io.detail);
        return backend_error(rc, d->id, false, msg, len);
    }
    return CASCA_OK;
}

/* The service values of target values vals as the public value (kind NONE when a merged setting's
 * services hold a combination the table does not name). */
static int to_public(const struct ctl_decl *d, struct ctl_value *vals, struct ctl_value *out)
{
    memset(out, 0, sizeof(*out));
    switch (d->map) {
    case MAP_IDENTITY:
        if (ctl_value_copy(out, &vals[0]) != CASCA_OK)
            return CASCA_ERR_NOMEM;
        return ctl_value_coerce(out, d->pub.type) == CASCA_OK ? CASCA_OK : CASCA_ERR_UNAVAILABLE;
    case MAP_TABLE:
        for (size_t r = 0; r < d->nrows; r++) {
            size_t t = 0;
            while (t < d->ntargets && ctl_value_equal(&d->row_vals[r * d->ntargets + t], &vals[t]))
                t++;
            if (t == d->ntargets)
                return ctl_value_copy(out, &d->rows[r]);
        }
        return CASCA_OK;
    default:
        for (size_t t = 0; t < d->ntargets; t++)
            if (d->targets[t].inverse)
                return number_to_value(expr_eval(d->targets[t].inverse, as_double(&vals[t])),
                                       d->pub.type, out) == CASCA_OK
                           ? CASCA_OK
                           : CASCA_ERR_UNAVAILABLE;
        return CASCA_OK;
    }
}

/* Reads the public value from the service(s). */
static int read_public(const struct entry *e, int64_t deadline_ns, struct ctl_value *out,
                       char *msg, size_t len)
{
    const struct ctl_decl *d = e->decl;
    struct ctl_value vals[d->ntargets];
    memset(vals, 0, sizeof(vals));
    int rc = CASCA_OK;
    for (size_t t = 0; t < d->ntargets && rc == CASCA_OK; t++) {
        /* reading an expression-merged setting needs only the targets with an inverse */
        if (d->map == MAP_EXPR && !d->targets[t].inverse)
            continue;
        rc = read_target(e, t, deadline_ns, &vals[t], msg, len);
    }
    if (rc == CASCA_OK && (rc = to_public(d, vals, out)) != CASCA_OK) {
        log_warn("ctl", "setting %s (%s): the service's value does not convert to a %s", d->id,
                 d->where, ctl_type_name(d->pub.type));
        rc = backend_error(CASCA_ERR_UNAVAILABLE, d->id, false, msg, len);
    }
    for (size_t t = 0; t < d->ntargets; t++)
        ctl_value_clear(&vals[t]);
    return rc;
}

/* Records a value seen at the service (by a read or a write); tells listeners if it changed.
 * changed_by: the caller of a change made now, or NULL for a read. */
static void remember(struct ctl *ctl, const struct entry *e, const struct ctl_value *v,
                     const char *changed_by, struct ctl_reading *copy_out)
{
    struct state *st = e->st;
    int64_t now = casca_mono_ns(), wall = casca_wall_ns();
    pthread_mutex_lock(&st->lock);
    /* listeners hear of a first value, a different one, and the first after failed reads */
    bool changed = st->last.value.kind == CTL_NONE || !ctl_value_equal(&st->last.value, v) ||
                   st->fail_since_ns;
    st->fail_since_ns = 0;
    struct ctl_value nv;
    if (ctl_value_copy(&nv, v) == CASCA_OK) {
        ctl_value_clear(&st->last.value);
        st->last.value = nv;
    }
    st->last.updated_ns = wall;
    st->read_mono_ns = now;
    if (changed_by) {
        snprintf(st->last.changed_by, sizeof(st->last.changed_by), "%s", changed_by);
        st->change_mono_ns = now;
    }
    struct ctl_reading r = {.updated_ns = st->last.updated_ns};
    memcpy(r.changed_by, st->last.changed_by, sizeof(r.changed_by));
    bool have = ctl_value_copy(&r.value, &st->last.value) == CASCA_OK;
    pthread_mutex_unlock(&st->lock);
    if (have && (changed || changed_by))
        notify(ctl, e->decl->id, &r);
    if (copy_out) {
        ctl_reading_clear(copy_out);
        *copy_out = r;
    } else {
        ctl_reading_clear(&r);
    }
}

/* The reason a setting has no value while its service has been failing since wall time ns. */
static void failing_reason(int64_t ns, char *buf, size_t len)
{
    char at[40];
    casca_rfc3339_format(at, sizeof(at), ns / 1000000000, 0);
    snprintf(buf, len, "service unavailable since %s", at);
}

/* A read of e failed: the setting has no known value until a read succeeds; listeners hear of
 * the first failure only. */
static void forget(struct ctl *ctl, const struct entry *e)
{
    struct state *st = e->st;
    pthread_mutex_lock(&st->lock);
    bool first = st->fail_since_ns == 0;
    if (first)
        st->fail_since_ns = casca_wall_ns();
    struct ctl_reading r = {.updated_ns = st->last.updated_ns};
    memcpy(r.changed_by, st->last.changed_by, sizeof(r.changed_by));
    failing_reason(st->fail_since_ns, r.reason, sizeof(r.reason));
    pthread_mutex_unlock(&st->lock);
    if (first) {
        log_warn("ctl", "setting %s (%s): its service stopped answering; agents see no value "
                        "until a read succeeds", e->decl->id, e->decl->where);
        notify(ctl, e->decl->id, &r);
    }
}

/* Reads e from its service and records the outcome (a value, or a failure). */
static int read_fresh(struct ctl *ctl, const struct entry *e, int64_t deadline_ns,
                      struct ctl_reading *out, char *msg, size_t msglen)
{
    struct ctl_value val;
    int rc = read_public(e, deadline_ns, &val, msg, msglen);
    if (rc == CASCA_OK) {
        remember(ctl, e, &val, NULL, out);
        ctl_value_clear(&val);
    } else if (rc == CASCA_ERR_UNAVAILABLE || rc == CASCA_ERR_TIMEOUT) {
        forget(ctl, e);
    }
    return rc;
}

int ctl_peek(struct ctl *ctl, const char *id, struct ctl_reading *out)
{
    memset(out, 0, sizeof(*out));
    struct ctl_view *v = ctl_view_get(ctl);
    long i = ctl_view_find(v, id);
    int rc = CASCA_ERR_NOT_FOUND;
    if (i >= 0) {
        struct state *st = v->e[i].st;
        pthread_mutex_lock(&st->lock);
        if (st->fail_since_ns) {
            out->updated_ns = st->last.updated_ns;
            memcpy(out->changed_by, st->last.changed_by, sizeof(out->changed_by));
            failing_reason(st->fail_since_ns, out->reason, sizeof(out->reason));
            rc = CASCA_OK;
        } else {
            rc = ctl_reading_copy(out, &st->last);
            if (out->value.kind == CTL_NONE)
                snprintf(out->reason, sizeof(out->reason), "not read from the service yet");
        }
        pthread_mutex_unlock(&st->lock);
    }
    ctl_view_put(v);
    return rc;
}

int ctl_get(struct ctl *ctl, const char *id, int64_t deadline_ns, struct ctl_reading *out,
            char *msg, size_t msglen)
{
    memset(out, 0, sizeof(*out));
    struct ctl_view *v = ctl_view_get(ctl);
    long i = ctl_view_find(v, id);
    int rc = CASCA_OK;
    if (i < 0) {
        snprintf(msg, msglen, "unknown setting '%.64s': ListSettings names the settings you may "
                              "use", id);
        ctl_view_put(v);
        return CASCA_ERR_NOT_FOUND;
    }
    const struct entry *e = &v->e[i];
    struct state *st = e->st;
    pthread_mutex_lock(&st->lock);
    bool fresh = e->decl->max_age_ms && st->read_mono_ns && st->last.value.kind != CTL_NONE &&
                 casca_mono_ns() - st->read_mono_ns <= (int64_t)e->decl->max_age_ms * 1000000;
    if (fresh) {
        rc = ctl_value_copy(&out->value, &st->last.value);
        out->updated_ns = st->last.updated_ns;
        memcpy(out->changed_by, st->last.changed_by, sizeof(out->changed_by));
    }
    pthread_mutex_unlock(&st->lock);
    if (!fresh)
        rc = read_fresh(ctl, e, deadline_ns, out, msg, msglen);
    ctl_view_put(v);
    return rc;
}

/* ---- re-reading what is watched ---- */

struct refresh_job {
    struct ctl *ctl;
    struct ctl_view *v; /* a reference: e stays valid across a reload */
    const struct entry *e;
};

static void refresh_run(void *arg)
{
    struct refresh_job *j = arg;
    char msg[256];
    struct ctl_reading r = {0};
    if (read_fresh(j->ctl, j->e, INT64_MAX, &r, msg, sizeof(msg)) == CASCA_OK)
        ctl_reading_clear(&r);
    pthread_mutex_lock(&j->e->st->lock);
    j->e->st->refreshing = false;
    pthread_mutex_unlock(&j->e->st->lock);
    ctl_view_put(j->v);
    free(j);
}

/* Queues a read of every watched setting whose value is older than its max age; returns when
 * the next one falls due (INT64_MAX: none watched). Under rlock. */
static int64_t refresh_due(struct ctl *ctl, int64_t now)
{
    int64_t next = INT64_MAX;
    struct ctl_view *v = ctl_view_get(ctl);
    for (size_t k = 0; k < ctl->ni; k++) {
        long i = ctl_view_find(v, ctl->iv[k].id);
        if (i < 0)
            continue; /* not (or no longer) declared */
        const struct entry *e = &v->e[i];
        struct state *st = e->st;
        int64_t max_age = e->decl->max_age_ms ? (int64_t)e->decl->max_age_ms * 1000000
                          : ctl->iv[k].period_ns ? ctl->iv[k].period_ns
                                                 : REFRESH_DEFAULT_NS;
        pthread_mutex_lock(&st->lock);
        int64_t last = st->read_mono_ns > st->attempt_mono_ns ? st->read_mono_ns
                                                               : st->attempt_mono_ns;
        bool due = !st->refreshing && now - last >= max_age;
        if (due) {
            st->refreshing = true;
            st->attempt_mono_ns = now;
        }
        pthread_mutex_unlock(&st->lock);
        struct refresh_job *j = due ? malloc(sizeof(*j)) : NULL;
        if (j) {
            *j = (struct refresh_job){ctl, v, e};
            atomic_fetch_add(&v->refs, 1);
            if (pool_submit(ctl->readers, refresh_run, j) != CASCA_OK) {
                ctl_view_put(v);
                free(j);
                j = NULL;
            }
        }
        if (due && !j) { /* could not queue it: try again next time */
            pthread_mutex_lock(&st->lock);
            st->refreshing = false;
            pthread_mutex_unlock(&st->lock);
        }
        /* a read in flight (or just queued) is looked at again a period from now, never in a
         * busy loop while a slow service keeps it running */
        int64_t at = (due || now - last >= max_age ? now : last) + max_age;
        next = at < next ? at : next;
    }
    ctl_view_put(v);
    return next;
}

static void *refresher_main(void *arg)
{
    struct ctl *ctl = arg;
    pthread_mutex_lock(&ctl->rlock);
    while (!ctl->rstop) {
        int64_t next = refresh_due(ctl, casca_mono_ns());
        if (next == INT64_MAX) {
            pthread_cond_wait(&ctl->rwake, &ctl->rlock);
            continue;
        }
        casca_cond_wait_until(&ctl->rwake, &ctl->rlock, next);
    }
    pthread_mutex_unlock(&ctl->rlock);
    return NULL;
}

int ctl_watch(struct ctl *ctl, const char *id, int64_t period_ns)
{
    int rc = CASCA_OK;
    pthread_mutex_lock(&ctl->rlock);
    size_t k = 0;
    while (k < ctl->ni && (ctl->iv[k].period_ns != period_ns || strcmp(ctl->iv[k].id, id)))
        k++;
    if (k < ctl->ni) {
        ctl->iv[k].count++;
    } else {
        struct interest *g = realloc(ctl->iv, (ctl->ni + 1) * sizeof(*g));
        char *dup = strdup(id);
        if (g)
            ctl->iv = g;
        if (g && dup)
            ctl->iv[ctl->ni++] = (struct interest){dup, period_ns, 1};
        else {
            free(dup);
            rc = CASCA_ERR_NOMEM;
        }
    }
    pthread_cond_signal(&ctl->rwake); /* a new watcher may be due at once */
    pthread_mutex_unlock(&ctl->rlock);
    return rc;
}

void ctl_unwatch(struct ctl *ctl, const char *id, int64_t period_ns)
{
    pthread_mutex_lock(&ctl->rlock);
    for (size_t k = 0; k < ctl->ni; k++)
        if (ctl->iv[k].period_ns == period_ns && !strcmp(ctl->iv[k].id, id)) {
            if (--ctl->iv[k].count == 0) {
                free(ctl->iv[k].id);
                ctl->iv[k] = ctl->iv[--ctl->ni];
            }
            break;
        }
    pthread_mutex_unlock(&ctl->rlock);
}

void ctl_stop(struct ctl *ctl)
{
    if (!ctl || !ctl->rstarted)
        return;
    pthread_mutex_lock(&ctl->rlock);
    ctl->rstop = true;
    pthread_cond_signal(&ctl->rwake);
    pthread_mutex_unlock(&ctl->rlock);
    pthread_join(ctl->refresher, NULL);
    pool_destroy(ctl->readers); /* runs the reads still queued */
    ctl->readers = NULL;
    ctl->rstarted = false;
}

/* ---- validation ---- */

static const char *kind_field(enum ctl_type k)
{
    static const char *const f[] = {"no value", "int_value", "double_value", "bool_value",
                                    "string_value", "string_value"};
    return k <= CTL_ENUM ? f[k] : "?";
}

/* Checks value against d's type, range, step and allowed values; puts the typed value in out. */
static int validate(const struct ctl_decl *d, const struct ctl_value *value, struct ctl_value *out,
                    char *msg, size_t len)
{
    enum ctl_type t = d->pub.type, want = t == CTL_ENUM ? CTL_STRING : t;
    memset(out, 0, sizeof(*out));
    if (value->kind == CTL_NONE) {
        snprintf(msg, len, "setting '%s': no value given: set value.%s", d->id, kind_field(want));
        return CASCA_ERR_INVALID;
    }
    bool ok = value->kind == want || (t == CTL_DOUBLE && value->kind == CTL_INT);
    if (!ok) {
        snprintf(msg, len, "setting '%s' is %s %s: send value.%s, not value.%s", d->id,
                 t == CTL_INT ? "an" : t == CTL_ENUM ? "an" : "a", ctl_type_name(t),
                 kind_field(want), kind_field(value->kind));
        return CASCA_ERR_INVALID;
    }
    if (ctl_value_copy(out, value) != CASCA_OK || ctl_value_coerce(out, t) != CASCA_OK) {
        snprintf(msg, len, "setting '%s': out of memory", d->id);
        ctl_value_clear(out);
        return CASCA_ERR_NOMEM;
    }
    char vb[96], lo[32], hi[32];
    ctl_value_format(out, vb, sizeof(vb));
    if (is_numeric(t)) {
        double x = as_double(out);
        if (!isfinite(x) || !in_range(d, x)) {
            snprintf(lo, sizeof(lo), "%g", d->pub.min);
            snprintf(hi, sizeof(hi), "%g", d->pub.max);
            snprintf(msg, len, "value %s is out of range for setting '%s': allowed %s to %s", vb,
                     d->id, d->pub.has_min ? lo : "-inf", d->pub.has_max ? hi : "+inf");
            ctl_value_clear(out);
            return CASCA_ERR_INVALID;
        }
        if (!on_step(d, x)) {
            double base = d->pub.has_min ? d->pub.min : 0;
            double k = floor((x - base) / d->pub.step);
            double below = base + k * d->pub.step, above = below + d->pub.step;
            snprintf(msg, len,
                     "value %s is off-step for setting '%s': it moves in steps of %g from %g "
                     "(nearest allowed: %g or %g)",
                     vb, d->id, d->pub.step, base, below, above);
            ctl_value_clear(out);
            return CASCA_ERR_INVALID;
        }
    }
    if (d->nallowed) {
        size_t a = 0;
        while (a < d->nallowed && !ctl_value_equal(&d->allowed[a], out))
            a++;
        if (a == d->nallowed) {
            char list[384] = "", b[96];
            for (a = 0; a < d->nallowed && strlen(list) < sizeof(list) - 100; a++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", a ? ", " : "",
                         ctl_value_format(&d->allowed[a], b, sizeof(b)));
            snprintf(msg, len, "value %s is not allowed for setting '%s': allowed values are %s",
                     vb, d->id, list);
            ctl_value_clear(out);
            return CASCA_ERR_INVALID;
        }
    }
    return CASCA_OK;
}

static long allowed_index(const struct ctl_decl *d, const struct ctl_value *v)
{
    for (size_t a = 0; a < d->nallowed; a++)
        if (ctl_value_equal(&d->allowed[a], v))
            return (long)a;
    return -1;
}

/* Cooldown and maximum step; old is the current value (kind NONE: unknown). */
static int check_rails(const struct entry *e, const struct ctl_value *old,
                       const struct ctl_value *nv, char *msg, size_t len)
{
    const struct ctl_decl *d = e->decl;
    if (d->cooldown_ms) {
        pthread_mutex_lock(&e->st->lock);
        int64_t last = e->st->change_mono_ns;
        pthread_mutex_unlock(&e->st->lock);
        int64_t since = casca_mono_ns() - last, cd = (int64_t)d->cooldown_ms * 1000000;
        if (last && since < cd) {
            char at[32];
            int64_t next_ns = casca_wall_ns() + (cd - since);
            casca_rfc3339_format(at, sizeof(at), next_ns / 1000000000, 0);
            snprintf(msg, len,
                     "setting '%s' was changed %.1f s ago and its cooldown is %.1f s: the next "
                     "change is allowed in %.1f s (at %s)",
                     d->id, since / 1e9, cd / 1e9, (cd - since) / 1e9, at);
            return CASCA_ERR_PRECONDITION;
        }
    }
    if (d->max_step > 0 && old->kind != CTL_NONE) {
        char ob[96];
        ctl_value_format(old, ob, sizeof(ob));
        if (is_numeric(d->pub.type)) {
            double from = as_double(old), to = as_double(nv);
            if (fabs(to - from) > d->max_step * (1 + 1e-12)) {
                double lo = from - d->max_step, hi = from + d->max_step;
                if (d->pub.has_min)
                    lo = fmax(lo, d->pub.min);
                if (d->pub.has_max)
                    hi = fmin(hi, d->pub.max);
                snprintf(msg, len,
                         "setting '%s' may move by at most %g per change: from its current value "
                         "%s, send a value between %g and %g",
                         d->id, d->max_step, ob, lo, hi);
                return CASCA_ERR_PRECONDITION;
            }
        } else {
            long from = allowed_index(d, old), to = allowed_index(d, nv);
            if (from >= 0 && labs(to - from) > (long)d->max_step) {
                snprintf(msg, len,
                         "setting '%s' may move by at most %g position(s) in its list of allowed "
                         "values per change: its current value is %s",
                         d->id, d->max_step, ob);
                return CASCA_ERR_PRECONDITION;
            }
        }
    }
    return CASCA_OK;
}

/* ---- the audit log ---- */

void ctl_value_to_pb(const struct ctl_value *v, Casca__V1__Value *pb)
{
    casca__v1__value__init(pb);
    switch (v->kind) {
    case CTL_INT: pb->kind_case = CASCA__V1__VALUE__KIND_INT_VALUE; pb->int_value = v->i; break;
    case CTL_DOUBLE:
        pb->kind_case = CASCA__V1__VALUE__KIND_DOUBLE_VALUE;
        pb->double_value = v->d;
        break;
    case CTL_BOOL: pb->kind_case = CASCA__V1__VALUE__KIND_BOOL_VALUE; pb->bool_value = v->b; break;
    case CTL_STRING:
        pb->kind_case = CASCA__V1__VALUE__KIND_STRING_VALUE;
        pb->string_value = v->s;
        break;
    default: break;
    }
}

/* A change's answer, kept until its audit entry is committed (ctl_set_async). */
struct set_async {
    ctl_set_done_fn done;
    void *arg;
    int rc;
    struct ctl_reading out;
    char msg[512];
    char id[MAX_ID_LEN * 2 + 1], caller[64]; /* for the log, if the entry cannot be written */
};

static void audit_failed(const char *id, const char *caller, int rc)
{
    log_warn("ctl", "setting %s: the audit entry of %s's change could not be written: %s", id,
             caller, casca_strerror(rc));
}

/* On the store's writer thread: the entry is committed (or failed); the change is answered. */
static void set_async_done(int err, uint64_t seq, void *arg)
{
    struct set_async *as = arg;
    (void)seq;
    if (err) audit_failed(as->id, as->caller, err);
    as->done(as->arg, as->rc, &as->out, as->msg);
    ctl_reading_clear(&as->out);
    free(as);
}

/* Writes the audit entry of a change: waits for its commit, or (as not NULL) queues it and
 * answers the change through as once it is committed. */
static void audit_as(struct ctl *ctl, struct set_async *as, const char *caller, const char *id,
                     const struct ctl_value *old, const struct ctl_value *nv,
                     Casca__V1__AuditOutcome outcome, const char *reason)
{
    if (!ctl->audit) {
        if (as) set_async_done(CASCA_OK, 0, as);
        return;
    }
    int64_t now = casca_wall_ns();
    Casca__V1__AuditEntry e = CASCA__V1__AUDIT_ENTRY__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Casca__V1__Value ov, nvv;
    casca_timestamp_parts(now, &ts.seconds, &ts.nanos);
    char idbuf[MAX_ID_LEN * 2 + 1];
    snprintf(idbuf, sizeof(idbuf), "%s", id); /* an unknown id from a caller, kept short */
    e.time = &ts;
    e.caller = (char *)(caller ? caller : "");
    e.setting_id = idbuf;
    if (old && old->kind != CTL_NONE) {
        ctl_value_to_pb(old, &ov);
        e.old_value = &ov;
    }
    if (nv && nv->kind != CTL_NONE) {
        ctl_value_to_pb(nv, &nvv);
        e.new_value = &nvv;
    }
    e.outcome = outcome;
    e.reason = (char *)(reason ? reason : "");
    size_t len = casca__v1__audit_entry__get_packed_size(&e);
    uint8_t *buf = malloc(len ? len : 1);
    int rc = buf ? CASCA_OK : CASCA_ERR_NOMEM;
    if (buf) {
        casca__v1__audit_entry__pack(&e, buf);
        if (as) {
            snprintf(as->id, sizeof(as->id), "%s", idbuf);
            snprintf(as->caller, sizeof(as->caller), "%s", e.caller);
            rc = audit_append_async(ctl->audit, now, buf, len, set_async_done, as);
        } else {
            rc = audit_append(ctl->audit, now, buf, len, NULL);
        }
        free(buf);
    }
    if (rc != CASCA_OK) {
        audit_failed(idbuf, e.caller, rc);
        if (as) set_async_done(CASCA_OK, 0, as); /* answered all the same: logged above */
    }
}

static void audit(struct ctl *ctl, const char *caller, const char *id, const struct ctl_value *old,
                  const struct ctl_value *nv, Casca__V1__AuditOutcome outcome, const char *reason)
{
    audit_as(ctl, NULL, caller, id, old, nv, outcome, reason);
}

void ctl_audit_event(struct ctl *ctl, const char *caller, const char *id,
                     Casca__V1__AuditOutcome outcome, const char *reason)
{
    audit(ctl, caller, id, NULL, NULL, outcome, reason);
}

/* ---- changes ---- */

/* Target t's service value for public value v. */
static int to_service(const struct ctl_decl *d, size_t t, const struct ctl_value *v,
                      struct ctl_value *out)
{
    switch (d->map) {
    case MAP_IDENTITY:
        if (ctl_value_copy(out, v) != CASCA_OK)
            return CASCA_ERR_NOMEM;
        return ctl_value_coerce(out, d->targets[t].type);
    case MAP_TABLE:
        for (size_t r = 0; r < d->nrows; r++)
            if (ctl_value_equal(&d->rows[r], v))
                return ctl_value_copy(out, &d->row_vals[r * d->ntargets + t]);
        return CASCA_ERR_INVALID;
    default:
        return number_to_value(expr_eval(d->targets[t].expr, as_double(v)), d->targets[t].type,
                               out);
    }
}

static int write_target(const struct entry *e, size_t t, const struct ctl_value *sv,
                        int64_t deadline_ns)
{
    const struct ctl_decl *d = e->decl;
    const struct ctl_target *tg = &d->targets[t];
    struct inst *in = e->inst[t];
    struct ctl_io io = {.deadline_ns = deadline_of(deadline_ns)};
    int rc = in && in->priv ? tg->conf->ops->set(in->priv, sv, &io)
                            : ctl_io_fail(&io, CASCA_ERR_UNAVAILABLE, "controller not open");
    if (rc != CASCA_OK)
        log_warn("ctl", "setting %s: writing %s (%s, %s): %s: %s", d->id, tg->name,
                 tg->conf->ops->name, d->where, casca_strerror(rc), io.detail);
    return rc;
}

/* Writes every target; on a failure puts back the targets already written (best effort). */
static int apply(const struct entry *e, const struct ctl_value *nv, const struct ctl_value *old,
                 int64_t deadline_ns)
{
    const struct ctl_decl *d = e->decl;
    for (size_t t = 0; t < d->ntargets; t++) {
        struct ctl_value sv;
        int rc = to_service(d, t, nv, &sv);
        if (rc == CASCA_OK)
            rc = write_target(e, t, &sv, deadline_ns);
        ctl_value_clear(&sv);
        if (rc == CASCA_OK)
            continue;
        for (size_t u = t; u-- > 0 && old->kind != CTL_NONE;) {
            struct ctl_value back;
            if (to_service(d, u, old, &back) == CASCA_OK &&
                write_target(e, u, &back, casca_mono_ns() + 2000000000LL) == CASCA_OK)
                log_warn("ctl", "setting %s: target %s put back after a failed change", d->id,
                         d->targets[u].name);
            ctl_value_clear(&back);
        }
        return rc;
    }
    return CASCA_OK;
}

static int lock_until(pthread_mutex_t *m, int64_t deadline_ns)
{
    int64_t left = deadline_ns == INT64_MAX ? (int64_t)DEFAULT_TIMEOUT_MS * 1000000
                                            : deadline_ns - casca_mono_ns();
    if (left <= 0)
        return pthread_mutex_trylock(m);
    /* pthread_mutex_timedlock waits on CLOCK_REALTIME */
    struct timespec abs = casca_timespec_of(casca_wall_ns() + left);
    return pthread_mutex_timedlock(m, &abs);
}

/* as (ctl_set_async): the answer goes there, and is given once the audit entry is committed. */
static int set(struct ctl *ctl, const struct ctl_request *req, struct ctl_reading *out, char *msg,
               size_t msglen, struct set_async *as)
{
    memset(out, 0, sizeof(*out));
    *msg = 0;
    const char *caller = req->caller && *req->caller ? req->caller : "local";
    struct ctl_view *v = ctl_view_get(ctl);
    long i = ctl_view_find(v, req->id);
    if (i < 0) {
        snprintf(msg, msglen, "unknown setting '%.64s': ListSettings names the settings you may "
                              "change", req->id);
        if (as) {
            as->rc = CASCA_ERR_NOT_FOUND;
            snprintf(as->msg, sizeof(as->msg), "%s", msg);
        }
        audit_as(ctl, as, caller, req->id, NULL, req->value,
                 CASCA__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_REJECTED, msg);
        ctl_view_put(v);
        return CASCA_ERR_NOT_FOUND;
    }
    const struct entry *e = &v->e[i];
    const struct ctl_decl *d = e->decl;
    struct ctl_value nv = {0}, old = {0};
    bool locked = false;
    int rc = CASCA_OK;
    Casca__V1__AuditOutcome outcome = CASCA__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_REJECTED;

    if (d->pub.read_only) {
        snprintf(msg, msglen, "setting '%s' is read-only: it can be read but not changed", d->id);
        rc = CASCA_ERR_PRECONDITION;
        goto done;
    }
    if ((rc = validate(d, req->value, &nv, msg, msglen)) != CASCA_OK)
        goto done;
    if (!req->dry_run) {
        pthread_mutex_lock(&ctl->lock);
        ctl_lease_fn lease = ctl->lease;
        void *lease_arg = ctl->lease_arg;
        pthread_mutex_unlock(&ctl->lock);
        if (lease && (rc = lease(lease_arg, d->id, caller, req->session, msg, msglen)) != CASCA_OK)
            goto done;
    }
    if (lock_until(&e->st->set_lock, req->deadline_ns) != 0) {
        snprintf(msg, msglen, "setting '%s': another change of it is still in progress; retry "
                              "later", d->id);
        rc = CASCA_ERR_TIMEOUT;
        goto done;
    }
    locked = true;
    /* the current value: read fresh when the step rail needs it (within max_age), else the last
     * one casca saw (for the audit's old value) */
    pthread_mutex_lock(&e->st->lock);
    bool fresh = e->st->read_mono_ns && e->st->last.value.kind != CTL_NONE &&
                 casca_mono_ns() - e->st->read_mono_ns <= (int64_t)d->max_age_ms * 1000000;
    ctl_value_copy(&old, &e->st->last.value);
    pthread_mutex_unlock(&e->st->lock);
    if ((d->max_step > 0 || old.kind == CTL_NONE) && !fresh) {
        ctl_value_clear(&old);
        if ((rc = read_public(e, req->deadline_ns, &old, msg, msglen)) != CASCA_OK)
            goto done;
        remember(ctl, e, &old, NULL, NULL);
    }
    if ((rc = check_rails(e, &old, &nv, msg, msglen)) != CASCA_OK)
        goto done;
    if (req->dry_run || req->shadow) {
        outcome = req->dry_run ? CASCA__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DRY_RUN : CASCA__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_SHADOW;
        rc = ctl_value_copy(&out->value, &nv);
        goto done;
    }
    if ((rc = apply(e, &nv, &old, req->deadline_ns)) != CASCA_OK) {
        rc = backend_error(rc, d->id, true, msg, msglen);
        goto done;
    }
    outcome = CASCA__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_APPLIED;
    struct ctl_value back;
    if ((rc = read_public(e, req->deadline_ns, &back, msg, msglen)) != CASCA_OK) {
        snprintf(msg, msglen, "setting '%s': the change was written but could not be read back "
                              "(the service stopped answering); GetSetting shows what is in force",
                 d->id);
        remember(ctl, e, &nv, caller, NULL);
        goto done;
    }
    if (!ctl_value_equal(&back, &nv)) {
        char b1[96], b2[96];
        snprintf(msg, msglen, "the service keeps %s instead of the %s asked for",
                 ctl_value_format(&back, b1, sizeof(b1)), ctl_value_format(&nv, b2, sizeof(b2)));
    }
    remember(ctl, e, &back, caller, out);
    ctl_value_clear(&nv);
    nv = back;
done:
    if (locked)
        pthread_mutex_unlock(&e->st->set_lock);
    if (rc == CASCA_OK && out->updated_ns == 0) { /* dry run / shadow: the validated value */
        out->updated_ns = casca_wall_ns();
        snprintf(out->changed_by, sizeof(out->changed_by), "%s", caller);
    }
    if (as) { /* the answer, before the entry is queued: it may be committed at once */
        as->rc = rc;
        as->out = *out;
        memset(out, 0, sizeof(*out));
        snprintf(as->msg, sizeof(as->msg), "%s", msg);
    }
    audit_as(ctl, as, caller, d->id, &old, nv.kind != CTL_NONE ? &nv : req->value, outcome, msg);
    ctl_value_clear(&nv);
    ctl_value_clear(&old);
    ctl_view_put(v);
    return rc;
}

int ctl_set(struct ctl *ctl, const struct ctl_request *req, struct ctl_reading *out, char *msg,
            size_t msglen)
{
    return set(ctl, req, out, msg, msglen, NULL);
}

int ctl_set_async(struct ctl *ctl, const struct ctl_request *req, ctl_set_done_fn done, void *arg)
{
    struct set_async *as = calloc(1, sizeof(*as));
    if (!as) return CASCA_ERR_NOMEM;
    as->done = done;
    as->arg = arg;
    struct ctl_reading out;
    char msg[sizeof(as->msg)];
    set(ctl, req, &out, msg, sizeof(msg), as); /* answers through as, which it then owns */
    return CASCA_OK;
}
