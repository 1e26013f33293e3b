/* yamldoc: YAML and JSON into a tree of nodes with 1-based line:col, and every error as
 * "name:line:col: what". */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "casca_err.h"
#include "yamldoc.h"

static struct yd_doc *parse_ok(const char *text)
{
    struct yd_doc *doc = NULL;
    char err[512] = "";
    int rc = yd_parse_string("t.yaml", text, strlen(text), &doc, err, sizeof(err));
    if (rc != CASCA_OK)
        fail_msg("unexpected error %d: %s", rc, err);
    assert_non_null(doc);
    assert_string_equal(doc->name, "t.yaml");
    return doc;
}

/* Parses text expecting CASCA_ERR_CONFIG and exactly the message want. */
static void parse_fails(const char *text, const char *want)
{
    struct yd_doc *doc = NULL;
    char err[512] = "";
    assert_int_equal(yd_parse_string("t.yaml", text, strlen(text), &doc, err, sizeof(err)),
                     CASCA_ERR_CONFIG);
    assert_null(doc);
    assert_string_equal(err, want);
}

static void assert_scalar(const struct yd_node *n, const char *text, bool plain, unsigned line,
                          unsigned col)
{
    assert_non_null(n);
    assert_int_equal(n->kind, YD_SCALAR);
    assert_string_equal(n->scalar, text);
    assert_int_equal(n->plain, plain);
    assert_int_equal(n->line, line);
    assert_int_equal(n->col, col);
}

static void assert_at(const struct yd_node *n, enum yd_kind kind, size_t count, unsigned line,
                      unsigned col)
{
    assert_non_null(n);
    assert_int_equal(n->kind, kind);
    assert_int_equal(n->n, count);
    assert_int_equal(n->line, line);
    assert_int_equal(n->col, col);
}

static void block_maps_and_lists(void **state)
{
    (void)state;
    struct yd_doc *doc = parse_ok("server:\n"
                                  "  listen: 127.0.0.1:1\n"
                                  "  names:\n"
                                  "    - a\n"
                                  "    - \"b\"\n"
                                  "store: x\n");
    const struct yd_node *root = doc->root;
    assert_at(root, YD_MAP, 2, 1, 1);
    assert_scalar(root->keys[0], "server", true, 1, 1);
    assert_scalar(root->keys[1], "store", true, 6, 1);
    assert_scalar(root->values[1], "x", true, 6, 8);

    const struct yd_node *server = yd_get(root, "server");
    assert_ptr_equal(server, root->values[0]);
    assert_at(server, YD_MAP, 2, 2, 3);
    assert_scalar(server->keys[0], "listen", true, 2, 3);
    assert_scalar(yd_get(server, "listen"), "127.0.0.1:1", true, 2, 11);
    assert_scalar(server->keys[1], "names", true, 3, 3);

    const struct yd_node *names = yd_get(server, "names");
    assert_at(names, YD_SEQ, 2, 4, 5);
    assert_null(names->keys);
    assert_scalar(names->values[0], "a", true, 4, 7);
    assert_scalar(names->values[1], "b", false, 5, 7);

    assert_null(yd_get(root, "missing"));
    assert_null(yd_get(server, "server")); /* not searched recursively */
    yd_free(doc);
}

static void flow_style(void **state)
{
    (void)state;
    struct yd_doc *doc = parse_ok("{a: [1, 'two', \"three\"], b: {c: d}, e: []}");
    const struct yd_node *root = doc->root;
    assert_at(root, YD_MAP, 3, 1, 1);
    assert_scalar(root->keys[0], "a", true, 1, 2);
    const struct yd_node *a = yd_get(root, "a");
    assert_at(a, YD_SEQ, 3, 1, 5);
    assert_scalar(a->values[0], "1", true, 1, 6);
    assert_scalar(a->values[1], "two", false, 1, 9);
    assert_scalar(a->values[2], "three", false, 1, 16);
    assert_scalar(root->keys[1], "b", true, 1, 26);
    const struct yd_node *b = yd_get(root, "b");
    assert_at(b, YD_MAP, 1, 1, 29);
    assert_scalar(b->keys[0], "c", true, 1, 30);
    assert_scalar(yd_get(b, "c"), "d", true, 1, 33);
    assert_at(yd_get(root, "e"), YD_SEQ, 0, 1, 40);
    yd_free(doc);
}

static void plain_and_quoted_scalars(void **state)
{
    (void)state;
    struct yd_doc *doc = parse_ok("a: null\n"
                                  "b: \"null\"\n"
                                  "c: 'true'\n"
                                  "d: true\n"
                                  "e:\n"
                                  "f: ''\n"
                                  "g: |\n"
                                  "  block\n"
                                  "h: >-\n"
                                  "  folded\n"
                                  "  text\n"
                                  "'quoted key': \"tab\\there\"\n");
    const struct yd_node *r = doc->root;
    assert_int_equal(r->n, 9);
    assert_scalar(yd_get(r, "a"), "null", true, 1, 4);
    assert_scalar(yd_get(r, "b"), "null", false, 2, 4);
    assert_scalar(yd_get(r, "c"), "true", false, 3, 4);
    assert_scalar(yd_get(r, "d"), "true", true, 4, 4);
    /* a key with nothing after it: an empty plain value */
    const struct yd_node *e = yd_get(r, "e");
    assert_non_null(e);
    assert_int_equal(e->kind, YD_SCALAR);
    assert_string_equal(e->scalar, "");
    assert_true(e->plain);
    assert_scalar(yd_get(r, "f"), "", false, 6, 4);
    assert_scalar(yd_get(r, "g"), "block\n", false, 7, 4);
    assert_scalar(yd_get(r, "h"), "folded text", false, 9, 4);
    assert_scalar(r->keys[8], "quoted key", false, 12, 1);
    assert_scalar(yd_get(r, "quoted key"), "tab\there", false, 12, 15);
    yd_free(doc);
}

static void json_input(void **state)
{
    (void)state;
    struct yd_doc *doc = parse_ok("{\n"
                                  "  \"server\": {\"threads\": 4,\n"
                                  "    \"tls\": null},\n"
                                  "  \"list\": [1, 2.5, true, \"s\"]\n"
                                  "}\n");
    const struct yd_node *r = doc->root;
    assert_at(r, YD_MAP, 2, 1, 1);
    assert_scalar(r->keys[0], "server", false, 2, 3);
    const struct yd_node *server = yd_get(r, "server");
    assert_at(server, YD_MAP, 2, 2, 13);
    assert_scalar(server->keys[0], "threads", false, 2, 14);
    assert_scalar(yd_get(server, "threads"), "4", true, 2, 25);
    assert_scalar(yd_get(server, "tls"), "null", true, 3, 12);
    const struct yd_node *list = yd_get(r, "list");
    assert_at(list, YD_SEQ, 4, 4, 11);
    assert_scalar(list->values[0], "1", true, 4, 12);
    assert_scalar(list->values[1], "2.5", true, 4, 15);
    assert_scalar(list->values[2], "true", true, 4, 20);
    assert_scalar(list->values[3], "s", false, 4, 26);
    yd_free(doc);
}

static void syntax_errors_name_line_and_col(void **state)
{
    (void)state;
    parse_fails("a: 1\n"
                "b: 2\n"
                "  c: 3\n",
                "t.yaml:3:4: mapping values are not allowed in this context");
    parse_fails("a:\n"
                "  b: 1\n"
                " c: 2\n",
                "t.yaml:3:2: did not find expected key while parsing a block mapping");
    parse_fails("a: 1\n"
                "b: \"unterminated\n",
                "t.yaml:3:1: found unexpected end of stream while scanning a quoted scalar");
    parse_fails("- x\n"
                "-: y\n",
                "t.yaml:2:1: did not find expected '-' indicator while parsing a block collection");
}

static void duplicate_keys(void **state)
{
    (void)state;
    parse_fails("a: 1\nb: 2\na: 3\n", "t.yaml:3:1: duplicate key 'a'");
    parse_fails("a: 1\n"
                "b:\n"
                "  c: 2\n"
                "  c: 3\n",
                "t.yaml:4:3: duplicate key 'c'");
    parse_fails("- {x: 1, x: 2}\n", "t.yaml:1:10: duplicate key 'x'");
    /* quoting does not make a different key */
    parse_fails("k: 1\n\"k\": 2\n", "t.yaml:2:1: duplicate key 'k'");
    /* the same key in different maps is fine */
    struct yd_doc *doc = parse_ok("a: {x: 1}\nb: {x: 2}\n");
    assert_string_equal(yd_get(yd_get(doc->root, "b"), "x")->scalar, "2");
    yd_free(doc);
}

static void aliases_rejected(void **state)
{
    (void)state;
    parse_fails("a: &anchor 1\n"
                "b: *anchor\n",
                "t.yaml:2:4: YAML aliases (*anchor) are not supported: write the value out");
    parse_fails("base: &b {x: 1}\n"
                "derived:\n"
                "  <<: *b\n",
                "t.yaml:3:7: YAML aliases (*b) are not supported: write the value out");
}

static void non_scalar_key_rejected(void **state)
{
    (void)state;
    parse_fails("? [a, b]\n: 1\n", "t.yaml:1:3: a key must be a plain value");
    parse_fails("{[a]: 1}", "t.yaml:1:2: a key must be a plain value");
}

static void empty_documents(void **state)
{
    (void)state;
    const char *empty[] = {"", "\n\n", "# only a comment\n", "---\n", "---\n# comment\n",
                           "---\n...\n"};
    for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
        struct yd_doc *doc = parse_ok(empty[i]);
        if (doc->root)
            fail_msg("document %zu (\"%s\") has a root", i, empty[i]);
        assert_null(yd_get(doc->root, "x"));
        yd_free(doc);
    }
    /* but a document that is an empty string is not empty */
    struct yd_doc *doc = parse_ok("--- ''\n");
    assert_scalar(doc->root, "", false, 1, 5);
    yd_free(doc);
}

static void one_document_per_file(void **state)
{
    (void)state;
    parse_fails("a: 1\n---\nb: 2\n", "t.yaml:2:1: only one YAML document per file");
    parse_fails("---\n---\nb: 2\n", "t.yaml:2:1: only one YAML document per file");
}

static char *nested_lists(int levels)
{
    char *s = malloc((size_t)levels * 2 + 2);
    assert_non_null(s);
    memset(s, '[', (size_t)levels);
    s[levels] = 'x';
    memset(s + levels + 1, ']', (size_t)levels);
    s[2 * levels + 1] = 0;
    return s;
}

static void nesting_limit(void **state)
{
    (void)state;
    char *ok = nested_lists(64);
    struct yd_doc *doc = parse_ok(ok);
    const struct yd_node *n = doc->root;
    for (int i = 0; i < 64; i++) {
        assert_at(n, YD_SEQ, 1, 1, (unsigned)i + 1);
        n = n->values[0];
    }
    assert_scalar(n, "x", true, 1, 65);
    yd_free(doc);
    free(ok);

    char *deep = nested_lists(65);
    parse_fails(deep, "t.yaml:1:66: nesting deeper than 64 levels");
    free(deep);

    /* block style: 65 nested maps, the 66th level (the innermost key) on line 65 */
    char text[65 * 140] = "";
    for (int i = 0; i < 65; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "%*sk:%s\n", 2 * i, "",
                 i == 64 ? " v" : "");
    parse_fails(text, "t.yaml:65:129: nesting deeper than 64 levels");
}

static void get_on_non_map(void **state)
{
    (void)state;
    struct yd_doc *doc = parse_ok("list: [a, b]\nvalue: a\n");
    assert_null(yd_get(yd_get(doc->root, "list"), "a"));
    assert_null(yd_get(yd_get(doc->root, "value"), "a"));
    assert_null(yd_get(NULL, "a"));
    assert_string_equal(yd_kind_name(YD_MAP), "map");
    assert_string_equal(yd_kind_name(YD_SEQ), "list");
    assert_string_equal(yd_kind_name(YD_SCALAR), "value");
    yd_free(doc);
    yd_free(NULL);
}

static void files(void **state)
{
    (void)state;
    char dir[] = "/tmp/casca-yamldoc-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/c.yaml", dir);

    struct yd_doc *doc = NULL;
    char err[512] = "";
    assert_int_equal(yd_parse_file(path, &doc, err, sizeof(err)), CASCA_ERR_IO);
    assert_null(doc);
    char want[512];
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);

    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("a:\n  - 1\n  - 2\nb: [\n", f);
    fclose(f);
    assert_int_equal(yd_parse_file(path, &doc, err, sizeof(err)), CASCA_ERR_CONFIG);
    snprintf(want, sizeof(want),
             "%s:5:1: did not find expected node content while parsing a flow node", path);
    assert_string_equal(err, want);

    f = fopen(path, "w");
    assert_non_null(f);
    fputs("a:\n  - 1\n  - 2\n", f);
    fclose(f);
    assert_int_equal(yd_parse_file(path, &doc, err, sizeof(err)), CASCA_OK);
    assert_string_equal(doc->name, path);
    const struct yd_node *a = yd_get(doc->root, "a");
    assert_at(a, YD_SEQ, 2, 2, 3);
    assert_scalar(a->values[1], "2", true, 3, 5);
    yd_free(doc);

    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

static void small_error_buffer_is_truncated(void **state)
{
    (void)state;
    struct yd_doc *doc = NULL;
    char err[12];
    memset(err, 'Z', sizeof(err));
    const char *text = "a: 1\na: 2\n";
    assert_int_equal(yd_parse_string("t.yaml", text, strlen(text), &doc, err, 8), CASCA_ERR_CONFIG);
    assert_string_equal(err, "t.yaml:");
    assert_int_equal(err[8], 'Z');
    assert_int_equal(yd_parse_string("t.yaml", text, strlen(text), &doc, err, sizeof(err)),
                     CASCA_ERR_CONFIG);
    assert_string_equal(err, "t.yaml:2:1:");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(block_maps_and_lists),
        cmocka_unit_test(flow_style),
        cmocka_unit_test(plain_and_quoted_scalars),
        cmocka_unit_test(json_input),
        cmocka_unit_test(syntax_errors_name_line_and_col),
        cmocka_unit_test(duplicate_keys),
        cmocka_unit_test(aliases_rejected),
        cmocka_unit_test(non_scalar_key_rejected),
        cmocka_unit_test(empty_documents),
        cmocka_unit_test(one_document_per_file),
        cmocka_unit_test(nesting_limit),
        cmocka_unit_test(get_on_non_map),
        cmocka_unit_test(files),
        cmocka_unit_test(small_error_buffer_is_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
