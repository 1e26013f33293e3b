#include "yamldoc.h"

#include <errno.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "casca_err.h"

#define MAX_DEPTH 64
#define CHUNK_SIZE (64 * 1024)

/* A document's memory: nodes, their arrays and texts are carved from chunks and freed together,
 * because a file of 1,000 SLOs makes tens of thousands of them (a reload spent a third of its
 * time in malloc and free). */
struct yd_chunk {
    struct yd_chunk *next;
    size_t used, size;
    alignas(max_align_t) unsigned char data[];
};

static void *doc_alloc(struct yd_doc *doc, size_t len)
{
    len = (len + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
    struct yd_chunk *c = doc->mem;
    if (!c || c->size - c->used < len) {
        size_t size = len > CHUNK_SIZE / 4 ? len : CHUNK_SIZE; /* a big one gets its own */
        if (!(c = malloc(sizeof(*c) + size)))
            return NULL;
        c->used = 0;
        c->size = size;
        if (doc->mem && size != CHUNK_SIZE) { /* keep carving the current chunk */
            c->next = doc->mem->next;
            doc->mem->next = c;
        } else {
            c->next = doc->mem;
            doc->mem = c;
        }
    }
    void *p = c->data + c->used;
    c->used += len;
    return p;
}

void yd_free(struct yd_doc *doc)
{
    if (!doc)
        return;
    for (struct yd_chunk *c = doc->mem, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(doc->name);
    free(doc);
}

struct parse {
    yaml_parser_t parser;
    const char *name;
    char *err;
    size_t errlen;
    int failed;
    struct yd_doc *doc; /* being built */
};

__attribute__((format(printf, 4, 5))) static void fail(struct parse *p, unsigned line,
                                                      unsigned col, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = CASCA_ERR_CONFIG;
    int n = snprintf(p->err, p->errlen, "%s:%u:%u: ", p->name, line, col);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < p->errlen)
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static bool next_event(struct parse *p, yaml_event_t *ev)
{
    if (yaml_parser_parse(&p->parser, ev))
        return true;
    const yaml_mark_t *m = &p->parser.problem_mark;
    char what[256];
    snprintf(what, sizeof(what), "%s%s%s", p->parser.problem ? p->parser.problem : "syntax error",
             p->parser.context ? " " : "", p->parser.context ? p->parser.context : "");
    fail(p, (unsigned)m->line + 1, (unsigned)m->column + 1, "%s", what);
    return false;
}

static struct yd_node *new_node(struct parse *p, enum yd_kind kind, const yaml_event_t *ev)
{
    struct yd_node *n = doc_alloc(p->doc, sizeof(*n));
    if (n)
        *n = (struct yd_node){.kind = kind,
                              .line = (unsigned)ev->start_mark.line + 1,
                              .col = (unsigned)ev->start_mark.column + 1};
    return n;
}

/* *array, holding n items, with room for one more: it doubles when n is 0, 4, 8, 16... (the
 * old array stays in the chunk: at most as much again). */
static int grow(struct parse *p, struct yd_node ***array, size_t n)
{
    if (n && (n < 4 || (n & (n - 1))))
        return 0;
    struct yd_node **a = doc_alloc(p->doc, (n ? 2 * n : 4) * sizeof(*a));
    if (!a)
        return -1;
    if (n)
        memcpy(a, *array, n * sizeof(*a));
    *array = a;
    return 0;
}

static int append(struct parse *p, struct yd_node *parent, struct yd_node *key,
                  struct yd_node *value)
{
    if (grow(p, &parent->values, parent->n) ||
        (parent->kind == YD_MAP && grow(p, &parent->keys, parent->n)))
        return -1;
    if (parent->kind == YD_MAP)
        parent->keys[parent->n] = key;
    parent->values[parent->n++] = value;
    return 0;
}

/* Parses the node that starts with ev (already read). */
static struct yd_node *parse_node(struct parse *p, yaml_event_t *ev, int depth)
{
    if (depth > MAX_DEPTH) {
        fail(p, (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1,
             "nesting deeper than %d levels", MAX_DEPTH);
        return NULL;
    }
    struct yd_node *n = NULL;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if ((n = new_node(p, YD_SCALAR, ev))) {
            size_t len = ev->data.scalar.length;
            if ((n->scalar = doc_alloc(p->doc, len + 1))) {
                memcpy(n->scalar, ev->data.scalar.value, len);
                n->scalar[len] = 0;
            }
            n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            if (!n->scalar)
                n = NULL;
        }
        break;
    case YAML_ALIAS_EVENT:
        fail(p, (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1,
             "YAML aliases (*%s) are not supported: write the value out", (const char *)ev->data.alias.anchor);
        return NULL;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool map = ev->type == YAML_MAPPING_START_EVENT;
        if (!(n = new_node(p, map ? YD_MAP : YD_SEQ, ev)))
            break;
        for (;;) {
            yaml_event_t kev;
            if (!next_event(p, &kev))
                goto bad;
            if (kev.type == YAML_SEQUENCE_END_EVENT || kev.type == YAML_MAPPING_END_EVENT) {
                yaml_event_delete(&kev);
                break;
            }
            struct yd_node *key = parse_node(p, &kev, depth + 1);
            yaml_event_delete(&kev);
            if (!key)
                goto bad;
            struct yd_node *value = NULL;
            if (map) {
                if (key->kind != YD_SCALAR) {
                    fail(p, key->line, key->col, "a key must be a plain value");
                    goto bad;
                }
                if (yd_get(n, key->scalar)) {
                    fail(p, key->line, key->col, "duplicate key '%s'", key->scalar);
                    goto bad;
                }
                yaml_event_t vev;
                if (!next_event(p, &vev)) {
                    goto bad;
                }
                value = parse_node(p, &vev, depth + 1);
                yaml_event_delete(&vev);
                if (!value) {
                    goto bad;
                }
            } else {
                value = key;
                key = NULL;
            }
            if (append(p, n, key, value) != 0)
                goto bad;
        }
        break;
    bad: /* what was made stays in the document's chunks, freed with it */
        if (!p->failed)
            fail(p, 0, 0, "out of memory");
        return NULL;
    }
    default:
        fail(p, (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1,
             "unexpected YAML event");
        return NULL;
    }
    if (!n)
        fail(p, 0, 0, "out of memory");
    return n;
}

static int parse(struct parse *p, struct yd_doc **out)
{
    struct yd_doc *doc = calloc(1, sizeof(*doc));
    if (!doc || !(doc->name = strdup(p->name))) {
        free(doc);
        return CASCA_ERR_NOMEM;
    }
    p->doc = doc;
    yaml_event_t ev;
    bool in_doc = false, seen_doc = false;
    while (!p->failed && next_event(p, &ev)) {
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT) {
            if (seen_doc || in_doc)
                fail(p, (unsigned)ev.start_mark.line + 1, (unsigned)ev.start_mark.column + 1,
                     "only one YAML document per file");
            in_doc = seen_doc = true;
        } else if (t == YAML_DOCUMENT_END_EVENT) {
            in_doc = false;
        } else if (t != YAML_STREAM_START_EVENT) {
            doc->root = parse_node(p, &ev, 0);
            /* "---" with nothing after it: libyaml reports an empty plain scalar ('' is quoted) */
            if (doc->root && doc->root->kind == YD_SCALAR && doc->root->plain &&
                !doc->root->scalar[0])
                doc->root = NULL;
        }
        yaml_event_delete(&ev);
    }
    if (p->failed) {
        yd_free(doc);
        return p->failed;
    }
    *out = doc;
    return CASCA_OK;
}

int yd_parse_string(const char *name, const char *text, size_t len, struct yd_doc **out, char *err,
                    size_t errlen)
{
    struct parse p = {.name = name, .err = err, .errlen = errlen};
    if (!yaml_parser_initialize(&p.parser))
        return CASCA_ERR_NOMEM;
    yaml_parser_set_input_string(&p.parser, (const unsigned char *)text, len);
    int rc = parse(&p, out);
    yaml_parser_delete(&p.parser);
    return rc;
}

int yd_parse_file(const char *path, struct yd_doc **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return CASCA_ERR_IO;
    }
    struct parse p = {.name = path, .err = err, .errlen = errlen};
    if (!yaml_parser_initialize(&p.parser)) {
        fclose(f);
        return CASCA_ERR_NOMEM;
    }
    yaml_parser_set_input_file(&p.parser, f);
    int rc = parse(&p, out);
    yaml_parser_delete(&p.parser);
    fclose(f);
    return rc;
}

const struct yd_node *yd_get(const struct yd_node *map, const char *key)
{
    if (!map || map->kind != YD_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i]->scalar, key) == 0)
            return map->values[i];
    return NULL;
}

const char *yd_kind_name(enum yd_kind kind)
{
    return kind == YD_MAP ? "map" : kind == YD_SEQ ? "list" : "value";
}
