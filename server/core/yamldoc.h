/* yamldoc: a YAML (or JSON) file parsed into a tree of nodes that remember their line and column,
 * so that every configuration error can name file:line:col. Built on libyaml's event parser.
 * A document is immutable once parsed and may be read from any thread. */
#ifndef CASCA_YAMLDOC_H
#define CASCA_YAMLDOC_H

#include <stdbool.h>
#include <stddef.h>

enum yd_kind { YD_SCALAR, YD_MAP, YD_SEQ };

struct yd_node {
    enum yd_kind kind;
    unsigned line, col; /* 1-based, where the node starts */
    char *scalar;       /* YD_SCALAR: the text, NUL-terminated */
    bool plain;         /* YD_SCALAR: unquoted (so "null", "true" keep their YAML meaning) */
    size_t n;           /* YD_MAP: pairs; YD_SEQ: items */
    struct yd_node **keys;   /* YD_MAP: scalar keys */
    struct yd_node **values; /* YD_MAP: values; YD_SEQ: items */
};

struct yd_doc {
    char *name;           /* the file name used in messages */
    struct yd_node *root; /* NULL for an empty document */
    struct yd_chunk *mem; /* where the nodes, arrays and texts live, freed at once */
};

/* Parses a file. On error returns CASCA_ERR_CONFIG (or CASCA_ERR_IO if unreadable) and writes
 * "file:line:col: what is wrong" into err. Duplicate keys and aliases are errors. The caller frees
 * the document with yd_free. */
int yd_parse_file(const char *path, struct yd_doc **out, char *err, size_t errlen);
/* Same, from memory; name is used in messages. */
int yd_parse_string(const char *name, const char *text, size_t len, struct yd_doc **out, char *err,
                    size_t errlen);
void yd_free(struct yd_doc *doc);

/* The value of key in a map node, or NULL. */
const struct yd_node *yd_get(const struct yd_node *map, const char *key);
/* "map", "list" or "value", for messages. */
const char *yd_kind_name(enum yd_kind kind);

#endif
