/* config: defaults, every key, every error as file:line:col (all of them), relative paths,
 * overrides, tokens, restart warnings and live snapshots. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw */
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fixture.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "casca_err.h"
#include "config.h"
#include "sections.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

struct fx {
    char dir[64];
    char path[128]; /* $D/casca.yaml, the file load() writes */
    struct config_errors errs;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    char *dir = fixture_tmpdir("config-test");
    if (!dir)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s", dir);
    free(dir);
    snprintf(f->path, sizeof(f->path), "%s/casca.yaml", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    config_errors_free(&f->errs);
    int rc = fixture_remove_tree(f->dir);
    free(f);
    return rc;
}

/* Writes text to $D/name (creating $D/sub/ for "sub/name"); returns the path, malloc'ed. */
static char *put(struct fx *f, const char *name, const char *text)
{
    char *path = NULL;
    assert_true(asprintf(&path, "%s/%s", f->dir, name) > 0);
    char *slash = strrchr(path, '/');
    *slash = 0;
    mkdir(path, 0700);
    *slash = '/';
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    fputs(text, out);
    assert_int_equal(fclose(out), 0);
    return path;
}

static void put_free(struct fx *f, const char *name, const char *text)
{
    free(put(f, name, text));
}

/* Loads path; errors replace f->errs. */
static int load_path(struct fx *f, const char *path, const struct config_overrides *ov,
                     struct config **c)
{
    config_errors_free(&f->errs);
    static struct config sentinel;
    *c = &sentinel; /* config_load must overwrite it */
    int rc = config_load(path, ov, cascad_config_sections, c, &f->errs);
    if (rc == CASCA_OK)
        assert_non_null(*c);
    else
        assert_null(*c);
    return rc;
}

static int load_ov(struct fx *f, const char *text, const struct config_overrides *ov,
                   struct config **c)
{
    put_free(f, "casca.yaml", text);
    return load_path(f, f->path, ov, c);
}

static int load(struct fx *f, const char *text, struct config **c)
{
    return load_ov(f, text, NULL, c);
}

/* Loads text that must be valid. */
static struct config *load_ok(struct fx *f, const char *text)
{
    struct config *c;
    int rc = load(f, text, &c);
    if (rc != CASCA_OK) {
        for (size_t i = 0; i < f->errs.n; i++)
            print_error("  %s\n", f->errs.lines[i]);
        fail_msg("config did not load: %d", rc);
    }
    assert_int_equal(f->errs.n, 0);
    return c;
}

/* pattern with $F replaced by the config's path and $D by its directory ($* is kept); malloc'ed. */
static char *expand(const struct fx *f, const char *pattern)
{
    size_t cap = strlen(pattern) + 1;
    for (const char *p = pattern; (p = strchr(p, '$')); p++)
        cap += sizeof(f->path);
    char *out = calloc(1, cap), *o = out;
    assert_non_null(out);
    for (const char *p = pattern; *p; p++) {
        if (p[0] == '$' && (p[1] == 'F' || p[1] == 'D')) {
            const char *s = p[1] == 'F' ? f->path : f->dir;
            o = stpcpy(o, s);
            p++;
        } else {
            *o++ = *p;
        }
    }
    return out;
}

/* Whether got is want, where one "$*" in want stands for any text (the feature sections that
 * follow the core keys in the top-level "known:" list). */
static bool matches(const char *got, const char *want)
{
    const char *star = strstr(want, "$*");
    if (!star)
        return !strcmp(got, want);
    size_t pre = (size_t)(star - want), post = strlen(star + 2), n = strlen(got);
    return n >= pre + post && !strncmp(got, want, pre) && !strcmp(got + n - post, star + 2);
}

/* The errors (or warnings) in e must be exactly the n patterns that follow. */
static void expect_lines(const struct fx *f, const struct config_errors *e, size_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    bool ok = e->n == n;
    char *want[32];
    assert_true(n <= 32);
    for (size_t i = 0; i < n; i++) {
        want[i] = expand(f, va_arg(ap, const char *));
        if (ok && !matches(e->lines[i], want[i]))
            ok = false;
    }
    va_end(ap);
    if (!ok) {
        print_error("expected %zu lines:\n", n);
        for (size_t i = 0; i < n; i++)
            print_error("  %s\n", want[i]);
        print_error("got %zu:\n", e->n);
        for (size_t i = 0; i < e->n; i++)
            print_error("  %s\n", e->lines[i]);
    }
    for (size_t i = 0; i < n; i++)
        free(want[i]);
    assert_true(ok);
}

#define expect_errors(f, n, ...) expect_lines(f, &(f)->errs, n, __VA_ARGS__)

/* text must fail to load with exactly the n errors that follow. */
#define load_fails(f, text, n, ...)                                                              \
    do {                                                                                         \
        struct config *c_;                                                                       \
        assert_int_equal(load(f, text, &c_), CASCA_ERR_CONFIG);                                  \
        expect_errors(f, n, __VA_ARGS__);                                                        \
    } while (0)

static void assert_str_expanded(const struct fx *f, const char *got, const char *pattern)
{
    char *want = expand(f, pattern);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(want);
}

/* ---- defaults and values ---- */

static void assert_defaults(const struct fx *f, const struct config *c)
{
    assert_string_equal(c->path, f->path);
    assert_string_equal(c->server.listen, "127.0.0.1:50051");
    /* the default ./casca-data is relative to the file's directory too */
    char *a = expand(f, "$D/./casca-data"), *b = expand(f, "$D/casca-data");
    if (strcmp(c->server.data_dir, a) && strcmp(c->server.data_dir, b))
        fail_msg("data_dir %s", c->server.data_dir);
    free(a);
    free(b);
    assert_string_equal(c->server.log_level, "info");
    assert_int_equal(c->server.threads, 2);
    assert_int_equal(c->server.workers, 4);
    assert_int_equal(c->server.worker_queue, 4096);
    assert_int_equal(c->server.stream_queue, 64);
    assert_int_equal(c->server.max_message_bytes, 4 * MiB);
    assert_null(c->server.tls_cert);
    assert_null(c->server.tls_key);
    assert_null(c->server.tls_client_ca);
    assert_false(c->server.tls_require_client_cert);
    assert_int_equal(c->auth.ntokens, 0);
    assert_string_equal(c->store.sync, "periodic");
    assert_int_equal(c->store.sync_interval_ms, 1000);
    assert_int_equal(c->store.map_size, 64 * MiB);
    assert_int_equal(c->store.max_map_size, 64 * GiB);
    assert_int_equal(atomic_load(&c->refs), 1);
}

static void defaults_from_empty_file(void **state)
{
    struct fx *f = *state;
    const char *empty[] = {
        "",
        "# nothing but a comment\n",
        "---\n# all defaults\n",
        "server:\nauth:\nstore:\n",
        "server: null\nauth:\n  tokens:\nstore: {}\n",
        "auth:\n  tokens: []\n",
        "{}\n",
    };
    for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
        struct config *c = load_ok(f, empty[i]);
        assert_defaults(f, c);
        config_unref(c);
    }
}

static void every_key_parsed(void **state)
{
    struct fx *f = *state;
    put_free(f, "server.pem", "cert\n");
    put_free(f, "server.key", "key\n");
    put_free(f, "ca.pem", "ca\n");
    struct config *c = load_ok(f, "server:\n"
                                  "  listen: 0.0.0.0:6000\n"
                                  "  data_dir: /var/lib/casca\n"
                                  "  log_level: warn\n"
                                  "  threads: 8\n"
                                  "  workers: 16\n"
                                  "  worker_queue: 100\n"
                                  "  stream_queue: 10\n"
                                  "  max_message_bytes: 4096\n"
                                  "  tls:\n"
                                  "    cert: server.pem\n"
                                  "    key: server.key\n"
                                  "    client_ca: ca.pem\n"
                                  "    require_client_cert: yes\n"
                                  "auth:\n"
                                  "  tokens:\n"
                                  "    - name: ops\n"
                                  "      role: operator\n"
                                  "      token: 0123456789abcdef0123\n"
                                  "store:\n"
                                  "  sync: every_commit\n"
                                  "  sync_interval: 500ms\n"
                                  "  map_size: 1GiB\n"
                                  "  max_map_size: 2TiB\n");
    assert_string_equal(c->server.listen, "0.0.0.0:6000");
    assert_string_equal(c->server.data_dir, "/var/lib/casca");
    assert_string_equal(c->server.log_level, "warn");
    assert_int_equal(c->server.threads, 8);
    assert_int_equal(c->server.workers, 16);
    assert_int_equal(c->server.worker_queue, 100);
    assert_int_equal(c->server.stream_queue, 10);
    assert_int_equal(c->server.max_message_bytes, 4096);
    assert_str_expanded(f, c->server.tls_cert, "$D/server.pem");
    assert_str_expanded(f, c->server.tls_key, "$D/server.key");
    assert_str_expanded(f, c->server.tls_client_ca, "$D/ca.pem");
    assert_true(c->server.tls_require_client_cert);
    assert_int_equal(c->auth.ntokens, 1);
    assert_string_equal(c->auth.tokens[0].name, "ops");
    assert_string_equal(c->auth.tokens[0].secret, "0123456789abcdef0123");
    assert_int_equal(c->auth.tokens[0].role, RPC_ROLE_OPERATOR);
    assert_string_equal(c->store.sync, "every_commit");
    assert_int_equal(c->store.sync_interval_ms, 500);
    assert_int_equal(c->store.map_size, GiB);
    assert_int_equal(c->store.max_map_size, 2048 * GiB);
    config_unref(c);

    c = load_ok(f, "server:\n"
                   "  log_level: debug\n"
                   "  max_message_bytes: 64MiB\n"
                   "store:\n"
                   "  sync: none\n"
                   "  sync_interval: 5m\n"
                   "  map_size: 1048576\n"
                   "  max_map_size: 1 GiB\n");
    assert_string_equal(c->server.log_level, "debug");
    assert_int_equal(c->server.max_message_bytes, 64 * MiB);
    assert_string_equal(c->store.sync, "none");
    assert_int_equal(c->store.sync_interval_ms, 300000);
    assert_int_equal(c->store.map_size, MiB);
    assert_int_equal(c->store.max_map_size, GiB);
    config_unref(c);

    /* the bounds themselves are accepted; quoted numbers are values like any other */
    c = load_ok(f, "server:\n"
                   "  threads: 64\n"
                   "  workers: \"256\"\n"
                   "  worker_queue: 1000000\n"
                   "  stream_queue: 1\n"
                   "  max_message_bytes: 1GiB\n"
                   "  log_level: error\n"
                   "  tls:\n"
                   "    require_client_cert: off\n"
                   "store:\n"
                   "  sync_interval: 1h\n"
                   "  map_size: 1MiB\n"
                   "  max_map_size: 16TiB\n");
    assert_int_equal(c->server.threads, 64);
    assert_int_equal(c->server.workers, 256);
    assert_int_equal(c->server.worker_queue, 1000000);
    assert_int_equal(c->server.stream_queue, 1);
    assert_int_equal(c->server.max_message_bytes, GiB);
    assert_false(c->server.tls_require_client_cert);
    assert_int_equal(c->store.sync_interval_ms, 3600000);
    assert_int_equal(c->store.max_map_size, 16384 * GiB);
    config_unref(c);
}

static void json_config(void **state)
{
    struct fx *f = *state;
    struct config *c = load_ok(f, "{\"server\": {\"threads\": 3, \"listen\": \"localhost:7000\"},\n"
                                  " \"store\": {\"sync\": \"none\", \"sync_interval\": \"2s\"}}\n");
    assert_int_equal(c->server.threads, 3);
    assert_string_equal(c->server.listen, "localhost:7000");
    assert_string_equal(c->store.sync, "none");
    assert_int_equal(c->store.sync_interval_ms, 2000);
    config_unref(c);
    load_fails(f, "{\"server\": {\"threads\": 0},\n \"bogus\": 1}\n", 2,
               "$F:1:24: threads: 0 is out of range [1, 64]",
               "$F:2:2: unknown key 'bogus' in (top level) (known: server, auth, store$*)");
}

struct parse_case {
    const char *text;
    uint64_t want;
    const char *why; /* NULL: parses to want */
};

static void run_cases(const char *(*parse)(const char *, uint64_t *), const struct parse_case *cases,
                      size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 12345;
        const char *why = parse(cases[i].text, &v);
        if (cases[i].why) {
            if (!why || strcmp(why, cases[i].why))
                fail_msg("'%s': got '%s', want '%s'", cases[i].text, why ? why : "(ok)",
                         cases[i].why);
            assert_int_equal(v, 12345); /* untouched on error */
        } else {
            if (why)
                fail_msg("'%s': %s", cases[i].text, why);
            if (v != cases[i].want)
                fail_msg("'%s': got %llu, want %llu", cases[i].text, (unsigned long long)v,
                         (unsigned long long)cases[i].want);
        }
    }
}

static void value_parsers(void **state)
{
    (void)state;
    static const char size_err[] = "expected a size such as 4096, 64MiB or 1GiB";
    static const struct parse_case sizes[] = {
        {"4096", 4096},
        {"0", 0},
        {"7B", 7},
        {"1KiB", 1024},
        {"64MiB", 64 * MiB},
        {"1GiB", GiB},
        {"2TiB", 2048 * GiB},
        {"4 MiB", 4 * MiB},
        {"10KB", 10000},
        {"3MB", 3000000},
        {"2GB", 2000000000},
        {"1k", 1024},
        {"5M", 5 * MiB},
        {"1G", GiB},
        {"18446744073709551615", UINT64_MAX},
        {"", 0, size_err},
        {"MiB", 0, size_err},
        {"-1", 0, size_err},
        {" 1", 0, size_err},
        {"1.5GiB", 0, size_err},
        {"12XB", 0, size_err},
        {"1mib", 0, size_err},
        {"1 GiBs", 0, size_err},
        {"16777216TiB", 0, "size too large"},
        {"18446744073709551616", 0, "size too large"},
    };
    run_cases(config_parse_size, sizes, sizeof(sizes) / sizeof(sizes[0]));

    static const char dur_err[] = "expected a duration such as 500ms, 1s, 5m or 1h";
    static const char unit_err[] = "expected a duration such as 500ms, 1s, 5m or 1h "
                                   "(a unit is required)";
    static const struct parse_case durations[] = {
        {"500ms", 500},
        {"0ms", 0},
        {"1s", 1000},
        {"1.5s", 1500},
        {"5m", 300000},
        {"1h", 3600000},
        {"2d", 172800000},
        {"1500us", 1},
        {"250us", 0},
        {"1.9ms", 1},
        {"10", 0, unit_err},
        {"1sec", 0, unit_err},
        {"1 s", 0, unit_err},
        {"", 0, dur_err},
        {"ms", 0, dur_err},
        {"-1s", 0, dur_err},
        {"1e30h", 0, "duration too long"},
    };
    run_cases(config_parse_duration_ms, durations, sizeof(durations) / sizeof(durations[0]));

    static const char uint_err[] = "expected a whole number";
    static const struct parse_case uints[] = {
        {"0", 0},
        {"42", 42},
        {"007", 7},
        {"18446744073709551615", UINT64_MAX},
        {"18446744073709551616", 0, uint_err},
        {"-1", 0, uint_err},
        {"+1", 0, uint_err},
        {" 1", 0, uint_err},
        {"1x", 0, uint_err},
        {"1.0", 0, uint_err},
        {"", 0, uint_err},
    };
    run_cases(config_parse_uint, uints, sizeof(uints) / sizeof(uints[0]));

    const char *truthy[] = {"true", "yes", "on"}, *falsy[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        bool b = false;
        assert_null(config_parse_bool(truthy[i], &b));
        assert_true(b);
        assert_null(config_parse_bool(falsy[i], &b));
        assert_false(b);
    }
    const char *not_bool[] = {"", "1", "0", "y", "truee"};
    for (int i = 0; i < 5; i++) {
        bool b = true;
        assert_string_equal(config_parse_bool(not_bool[i], &b), "expected true or false");
        assert_true(b);
    }

    double d = 0;
    assert_null(config_parse_double("1.5", &d));
    assert_true(d == 1.5);
    assert_null(config_parse_double("-2e3", &d));
    assert_true(d == -2000);
    const char *not_double[] = {"", "nan", "inf", "-inf", "1e999", "1x", "x"};
    for (int i = 0; i < 7; i++) {
        d = 7;
        assert_string_equal(config_parse_double(not_double[i], &d), "expected a finite number");
        assert_true(d == 7);
    }
}

/* ---- errors ---- */

static void unknown_keys(void **state)
{
    struct fx *f = *state;
    load_fails(f,
               "server:\n"
               "  treads: 4\n"
               "  tls:\n"
               "    crt: x.pem\n"
               "stor:\n"
               "  sync: none\n"
               "auth:\n"
               "  tokens:\n"
               "    - name: ops\n"
               "      role: operator\n"
               "      token: 0123456789abcdef\n"
               "      secret: x\n"
               "  token: y\n",
               5,
               "$F:2:3: unknown key 'treads' in server (known: listen, data_dir, log_level, "
               "threads, workers, worker_queue, stream_queue, max_message_bytes, tls)",
               "$F:4:5: unknown key 'crt' in server.tls (known: cert, key, client_ca, "
               "require_client_cert)",
               "$F:5:1: unknown key 'stor' in (top level) (known: server, auth, store$*)",
               "$F:12:7: unknown key 'secret' in auth.tokens (known: name, role, token_env, "
               "token_file, token)",
               "$F:13:3: unknown key 'token' in auth (known: tokens)");
}

static void all_errors_reported(void **state)
{
    struct fx *f = *state;
    load_fails(f,
               "server:\n"
               "  threads: 0\n"
               "  workers: many\n"
               "  log_level: loud\n"
               "store:\n"
               "  sync: sometimes\n"
               "bogus: true\n",
               5, "$F:2:12: threads: 0 is out of range [1, 64]",
               "$F:3:12: workers: 'many': expected a whole number",
               "$F:4:14: log_level: 'loud' is not one of: debug, info, warn, error",
               "$F:6:9: sync: 'sometimes' is not one of: every_commit, periodic, none",
               "$F:7:1: unknown key 'bogus' in (top level) (known: server, auth, store$*)");
}

static void out_of_range(void **state)
{
    struct fx *f = *state;
    load_fails(f,
               "server:\n"
               "  threads: 65\n"
               "  workers: 0\n"
               "  worker_queue: 4294967297\n"
               "  stream_queue: 100001\n"
               "  max_message_bytes: 512\n"
               "store:\n"
               "  sync_interval: 2h\n"
               "  map_size: 1KiB\n"
               "  max_map_size: 32TiB\n",
               8, "$F:2:12: threads: 65 is out of range [1, 64]",
               "$F:3:12: workers: 0 is out of range [1, 256]",
               "$F:4:17: worker_queue: 4294967297 is out of range [1, 1000000]",
               "$F:5:17: stream_queue: 100001 is out of range [1, 100000]",
               "$F:6:22: max_message_bytes: 512 is out of range [1024, 1073741824]",
               "$F:8:18: sync_interval: 2h is out of range [1, 3600000]",
               "$F:9:13: map_size: 1KiB is out of range [1048576, 17592186044416]",
               "$F:10:17: max_map_size: 32TiB is out of range [1048576, 17592186044416]");
    load_fails(f,
               "server:\n"
               "  max_message_bytes: 2GiB\n"
               "store:\n"
               "  sync_interval: 500us\n",
               2, "$F:2:22: max_message_bytes: 2GiB is out of range [1024, 1073741824]",
               "$F:4:18: sync_interval: 500us is out of range [1, 3600000]");
}

static void bad_values(void **state)
{
    struct fx *f = *state;
    load_fails(f,
               "server:\n"
               "  threads: -1\n"
               "  workers: 99999999999999999999\n"
               "  max_message_bytes: 4XB\n"
               "  tls:\n"
               "    require_client_cert: maybe\n"
               "store:\n"
               "  sync_interval: 10\n"
               "  sync: Periodic\n",
               6, "$F:2:12: threads: '-1': expected a whole number",
               "$F:3:12: workers: '99999999999999999999': expected a whole number",
               "$F:4:22: max_message_bytes: '4XB': expected a size such as 4096, 64MiB or 1GiB",
               "$F:6:26: require_client_cert: 'maybe': expected true or false",
               "$F:8:18: sync_interval: '10': expected a duration such as 500ms, 1s, 5m or 1h "
               "(a unit is required)",
               "$F:9:9: sync: 'Periodic' is not one of: every_commit, periodic, none");
}

static void wrong_shapes(void **state)
{
    struct fx *f = *state;
    load_fails(f,
               "server:\n"
               "  listen: [a, b]\n"
               "  tls:\n"
               "    cert: {a: b}\n"
               "store: 5\n"
               "auth:\n"
               "  tokens: abc\n",
               4, "$F:2:11: server.listen must be a single value, not a list",
               "$F:4:11: server.tls.cert must be a single value, not a map",
               "$F:5:8: store must be a map of keys, not a value",
               "$F:7:11: auth.tokens must be a list");
    load_fails(f, "- server\n", 1,
               "$F:1:1: the configuration must be a map of sections (server:, auth:, store:, ...)");
    load_fails(f, "hello\n", 1,
               "$F:1:1: the configuration must be a map of sections (server:, auth:, store:, ...)");
    load_fails(f, "server:\n  - listen\n", 1, "$F:2:3: server must be a map of keys, not a list");
    load_fails(f, "server:\n  tls: [cert]\n", 1,
               "$F:2:8: server.tls must be a map of keys, not a list");
    load_fails(f,
               "auth:\n"
               "  tokens:\n"
               "    - just-a-string\n"
               "    - [a]\n",
               2,
               "$F:3:7: auth.tokens[0] must be a map {name, role, token_env | token_file | token}"
               ", not a value ('just-a-string')",
               "$F:4:7: auth.tokens[1] must be a map {name, role, token_env | token_file | token}"
               ", not a list");
}

/* text must fail to load with (at least) an error at each position of at[] ("$F:2:5", NULL-ended). */
static void fails_at(struct fx *f, const char *text, const char *const at[])
{
    struct config *c;
    assert_int_equal(load(f, text, &c), CASCA_ERR_CONFIG);
    for (size_t i = 0; at[i]; i++) {
        char *want = expand(f, at[i]);
        size_t j = 0;
        while (j < f->errs.n && strncmp(f->errs.lines[j], want, strlen(want)))
            j++;
        if (j == f->errs.n) {
            print_error("no error at %s in:\n%s\ngot %zu:\n", want, text, f->errs.n);
            for (j = 0; j < f->errs.n; j++)
                print_error("  %s\n", f->errs.lines[j]);
            fail();
        }
        free(want);
    }
}

/* Every list of every section and included file answers an item of the wrong kind ("- x",
 * "- [a]", a map where a list of values is expected) with a file:line:col error, before a valid
 * item (the next item used to be compared with the half-read one, and cascad crashed). */
static void lists_reject_wrong_kinds(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *text;
        const char *at[3];
    } cases[] = {
        {"settings:\n  - x\n  - [a]\n  - {id: a, type: int, controller: {memory: {value: 1}}}\n",
         {"$F:2:5: ", "$F:3:5: "}},
        {"settings_files:\n  - [a]\n  - {a: b}\n", {"$F:2:5: ", "$F:3:5: "}},
        {"slos:\n  - x\n  - [a]\n  - {id: a, series: s, aggregation: mean, window: 1s, "
         "objective: {min: 1}}\n",
         {"$F:2:5: ", "$F:3:5: "}},
        {"slo_files:\n  - [a]\n  - {a: b}\n", {"$F:2:5: ", "$F:3:5: "}},
        {"bus: {}\nhooks:\n  - x\n  - [a]\n  - {name: h, series: s, value: /v}\n",
         {"$F:3:5: ", "$F:4:5: "}},
        {"bus:\n  - x\n  - [a]\n  - {name: b}\n", {"$F:2:5: ", "$F:3:5: "}},
        {"probes:\n  - x\n  - [a]\n  - {name: a, url: \"http://127.0.0.1:1/\", period: 1s}\n",
         {"$F:2:5: ", "$F:3:5: "}},
        {"auth:\n  tokens:\n    - x\n    - [a]\n"
         "    - {name: ops, role: operator, token: 0123456789abcdef0123}\n",
         {"$F:3:7: ", "$F:4:7: "}},
        {"carbon:\n  factor_sets:\n    - x\n    - [a]\n    - {name: f, sources: {coal: 820}}\n",
         {"$F:3:7: ", "$F:4:7: "}},
        {"carbon:\n  providers:\n    - [a]\n    - bundled\n", {"$F:3:7: "}},
        {"settings:\n  - id: q\n    type: int\n    targets:\n      - x\n      - [a]\n",
         {"$F:5:9: ", "$F:6:9: "}},
        /* a map where a list is expected */
        {"settings: {id: a}\n", {"$F:1:11: "}},
        {"settings_files: {a: b}\n", {"$F:1:17: "}},
        {"slos: {id: a}\n", {"$F:1:7: "}},
        {"slo_files: {a: b}\n", {"$F:1:12: "}},
        {"hooks: {name: a}\n", {"$F:1:8: "}},
        {"probes: {name: a}\n", {"$F:1:9: "}},
        {"auth:\n  tokens: {name: a}\n", {"$F:2:11: "}},
        {"carbon:\n  factor_sets: {name: a}\n", {"$F:2:16: "}},
        {"carbon:\n  providers: {name: uk}\n", {"$F:2:14: "}},
        /* included files: a settings file and an SLO file, each way */
        {"settings_files: [s1.yaml]\n", {"$D/s1.yaml:2:5: ", "$D/s1.yaml:3:5: "}},
        {"settings_files: [s2.yaml]\n", {"$D/s2.yaml:1:11: "}},
        {"slo_files: [o1.yaml]\n", {"$D/o1.yaml:2:5: ", "$D/o1.yaml:3:5: "}},
        {"slo_files: [o2.yaml]\n", {"$D/o2.yaml:1:7: "}},
    };
    put_free(f, "s1.yaml", "settings:\n  - x\n  - [a]\n"
                           "  - {id: a, type: int, controller: {memory: {value: 1}}}\n");
    put_free(f, "s2.yaml", "settings: {id: a}\n");
    put_free(f, "o1.yaml", "slos:\n  - x\n  - [a]\n"
                           "  - {id: a, series: s, aggregation: mean, window: 1s, "
                           "objective: {min: 1}}\n");
    put_free(f, "o2.yaml", "slos: {id: a}\n");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        fails_at(f, cases[i].text, cases[i].at);
    /* the message says what was expected and what was found */
    load_fails(f, "probes:\n  - [a]\n", 1,
               "$F:2:5: probes: each probe is a map {name, url, period, ...}, not a list");
}

static void yaml_errors_and_unreadable_file(void **state)
{
    struct fx *f = *state;
    load_fails(f, "server:\n  threads: 4\n threads: 5\n", 1,
               "$F:3:2: did not find expected key while parsing a block mapping");
    load_fails(f, "server:\n  threads: 4\n  threads: 5\n", 1, "$F:3:3: duplicate key 'threads'");
    load_fails(f, "server:\n  threads: &n 4\n  workers: *n\n", 1,
               "$F:3:12: YAML aliases (*n) are not supported: write the value out");

    struct config *c;
    char *missing = expand(f, "$D/missing.yaml");
    assert_int_equal(load_path(f, missing, NULL, &c), CASCA_ERR_CONFIG);
    expect_errors(f, 1, "$D/missing.yaml: cannot open: No such file or directory");
    free(missing);
}

static void relative_paths_resolve_against_the_file(void **state)
{
    struct fx *f = *state;
    put_free(f, "etc/ca.pem", "ca\n");
    put_free(f, "etc/certs/server.pem", "cert\n");
    put_free(f, "key.pem", "key\n");
    put_free(f, "etc/tokens/ops.token", "ops-token-0123456789\n");
    char *text = expand(f, "server:\n"
                           "  data_dir: data\n"
                           "  tls:\n"
                           "    cert: certs/server.pem\n"
                           "    key: $D/key.pem\n"
                           "    client_ca: ./ca.pem\n"
                           "auth:\n"
                           "  tokens:\n"
                           "    - {name: ops, role: operator, token_file: tokens/ops.token}\n");
    char *path = put(f, "etc/casca.yaml", text);
    free(text);
    struct config *c;
    assert_int_equal(load_path(f, path, NULL, &c), CASCA_OK);
    assert_str_expanded(f, c->server.data_dir, "$D/etc/data");
    assert_str_expanded(f, c->server.tls_cert, "$D/etc/certs/server.pem");
    assert_str_expanded(f, c->server.tls_key, "$D/key.pem");
    assert_str_expanded(f, c->server.tls_client_ca, "$D/etc/./ca.pem");
    assert_int_equal(c->auth.ntokens, 1);
    assert_string_equal(c->auth.tokens[0].secret, "ops-token-0123456789");
    config_unref(c);

    /* ../ goes up from the file's directory, not from the working directory */
    put_free(f, "etc/casca.yaml", "server:\n  data_dir: ../var/casca\n");
    assert_int_equal(load_path(f, path, NULL, &c), CASCA_OK);
    assert_str_expanded(f, c->server.data_dir, "$D/etc/../var/casca");
    config_unref(c);
    free(path);
}

static void overrides_win(void **state)
{
    struct fx *f = *state;
    const char *text = "server:\n"
                       "  listen: 127.0.0.1:7000\n"
                       "  data_dir: data\n";
    struct config *c;
    struct config_overrides ov = {.listen = "127.0.0.1:9999", .data_dir = "/srv/casca"};
    assert_int_equal(load_ov(f, text, &ov, &c), CASCA_OK);
    assert_string_equal(c->server.listen, "127.0.0.1:9999");
    assert_string_equal(c->server.data_dir, "/srv/casca");
    config_unref(c);

    /* a command-line data_dir is the user's, relative to the working directory */
    ov = (struct config_overrides){.data_dir = "rel/dir"};
    assert_int_equal(load_ov(f, text, &ov, &c), CASCA_OK);
    assert_string_equal(c->server.listen, "127.0.0.1:7000");
    assert_string_equal(c->server.data_dir, "rel/dir");
    config_unref(c);

    ov = (struct config_overrides){0};
    assert_int_equal(load_ov(f, text, &ov, &c), CASCA_OK);
    assert_string_equal(c->server.listen, "127.0.0.1:7000");
    assert_str_expanded(f, c->server.data_dir, "$D/data");
    config_unref(c);

    /* an overridden listen is validated like one from the file */
    ov = (struct config_overrides){.listen = "0.0.0.0:1"};
    assert_int_equal(load_ov(f, "", &ov, &c), CASCA_ERR_CONFIG);
    expect_errors(f, 1,
                  "$F: server.listen: refusing to listen on 0.0.0.0:1 with no auth tokens: add "
                  "auth.tokens, or listen on 127.0.0.1");
}

static void listen_needs_tokens_off_loopback(void **state)
{
    struct fx *f = *state;
    load_fails(f, "server:\n  listen: 0.0.0.0:50051\n", 1,
               "$F:2:11: server.listen: refusing to listen on 0.0.0.0:50051 with no auth tokens: "
               "add auth.tokens, or listen on 127.0.0.1");
    load_fails(f, "server:\n  listen: \"[::]:50051\"\n", 1,
               "$F:2:11: server.listen: refusing to listen on [::]:50051 with no auth tokens: "
               "add auth.tokens, or listen on 127.0.0.1");
    load_fails(f, "server:\n  listen: 10.1.2.3:50051\n", 1,
               "$F:2:11: server.listen: refusing to listen on 10.1.2.3:50051 with no auth tokens: "
               "add auth.tokens, or listen on 127.0.0.1");
    /* a host name is not loopback because of how it starts */
    load_fails(f, "server:\n  listen: 127.example.com:50051\n", 1,
               "$F:2:11: server.listen: refusing to listen on 127.example.com:50051 with no auth "
               "tokens: add auth.tokens, or listen on 127.0.0.1");

    const char *loopback[] = {"127.0.0.1:1", "127.0.0.2:50051", "localhost:50051",
                              "\"[::1]:50051\"", "ipv4:127.0.0.1:5", "unix:/tmp/casca.sock"};
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "server:\n  listen: %s\n", loopback[i]);
        config_unref(load_ok(f, text));
    }

    struct config *c = load_ok(f, "server:\n"
                                  "  listen: 0.0.0.0:50051\n"
                                  "auth:\n"
                                  "  tokens:\n"
                                  "    - {name: ops, role: operator, token: 0123456789abcdef}\n");
    assert_string_equal(c->server.listen, "0.0.0.0:50051");
    assert_int_equal(c->auth.ntokens, 1);
    config_unref(c);

    /* not host:port */
    struct config *bad;
    assert_int_equal(load(f, "server:\n  listen: localhost\n", &bad), CASCA_ERR_CONFIG);
    assert_true(f->errs.n >= 1);
    assert_str_expanded(f, f->errs.lines[0],
                        "$F:2:11: server.listen: 'localhost' is not host:port (e.g. 127.0.0.1:50051)");
    assert_int_equal(load(f, "server:\n  listen: \"127.0.0.1:http\"\n", &bad), CASCA_ERR_CONFIG);
    assert_true(f->errs.n >= 1);
    assert_str_expanded(f, f->errs.lines[0],
                        "$F:2:11: server.listen: '127.0.0.1:http' is not host:port (e.g. "
                        "127.0.0.1:50051)");
    assert_int_equal(load(f, "server:\n  listen: \"127.0.0.1:\"\n", &bad), CASCA_ERR_CONFIG);
    assert_true(f->errs.n >= 1);
}

/* ---- tokens ---- */

static void token_sources(void **state)
{
    struct fx *f = *state;
    assert_int_equal(setenv("CASCA_TEST_TOKEN_ENV", "env-token-0123456789", 1), 0);
    put_free(f, "agent.token", "file-token-abcdefghijkl\nsecond line ignored\n");
    put_free(f, "crlf.token", "crlf-token-abcdefghijkl\r\n");
    struct config *c = load_ok(f, "auth:\n"
                                  "  tokens:\n"
                                  "    - name: ops\n"
                                  "      role: operator\n"
                                  "      token_env: CASCA_TEST_TOKEN_ENV\n"
                                  "    - name: agent-1\n"
                                  "      role: agent\n"
                                  "      token_file: agent.token\n"
                                  "    - name: pub\n"
                                  "      role: reporter\n"
                                  "      token: \"literal token 0123456789\"\n"
                                  "    - name: dash\n"
                                  "      role: viewer\n"
                                  "      token: abcdefghijklmnop\n"
                                  "    - name: win\n"
                                  "      role: viewer\n"
                                  "      token_file: crlf.token\n"
                                  "server:\n"
                                  "  listen: 0.0.0.0:50051\n");
    assert_int_equal(c->auth.ntokens, 5);
    const struct { const char *name, *secret; enum rpc_role role; } want[] = {
        {"ops", "env-token-0123456789", RPC_ROLE_OPERATOR},
        {"agent-1", "file-token-abcdefghijkl", RPC_ROLE_AGENT},
        {"pub", "literal token 0123456789", RPC_ROLE_REPORTER},
        {"dash", "abcdefghijklmnop", RPC_ROLE_VIEWER}, /* exactly 16: the minimum */
        {"win", "crlf-token-abcdefghijkl", RPC_ROLE_VIEWER},
    };
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(c->auth.tokens[i].name, want[i].name);
        assert_string_equal(c->auth.tokens[i].secret, want[i].secret);
        assert_int_equal(c->auth.tokens[i].role, want[i].role);
    }
    config_unref(c);
    unsetenv("CASCA_TEST_TOKEN_ENV");
}

static void token_errors(void **state)
{
    struct fx *f = *state;
    assert_int_equal(setenv("CASCA_TEST_TOKEN_ENV", "env-token-0123456789", 1), 0);
    assert_int_equal(setenv("CASCA_TEST_EMPTY_VAR", "", 1), 0);
    unsetenv("CASCA_TEST_MISSING_VAR");
    load_fails(f,
               "auth:\n"                                 /* 1 */
               "  tokens:\n"                             /* 2 */
               "    - name: short\n"                     /* 3 */
               "      role: operator\n"                  /* 4 */
               "      token: 0123456789abcde\n"          /* 5 */
               "    - name: badrole\n"                   /* 6 */
               "      role: admin\n"                     /* 7 */
               "      token: 0123456789abcdef\n"         /* 8 */
               "    - name: noenv\n"                     /* 9 */
               "      role: viewer\n"                    /* 10 */
               "      token_env: CASCA_TEST_MISSING_VAR\n" /* 11 */
               "    - name: emptyenv\n"                  /* 12 */
               "      role: viewer\n"                    /* 13 */
               "      token_env: CASCA_TEST_EMPTY_VAR\n" /* 14 */
               "    - name: two\n"                       /* 15 */
               "      role: agent\n"                     /* 16 */
               "      token: 0123456789abcdef\n"         /* 17 */
               "      token_env: CASCA_TEST_TOKEN_ENV\n" /* 18 */
               "    - name: none\n"                      /* 19 */
               "      role: agent\n"                     /* 20 */
               "    - name: nofile\n"                    /* 21 */
               "      role: agent\n"                     /* 22 */
               "      token_file: missing.token\n"       /* 23 */
               "    - role: agent\n"                     /* 24 */
               "      token: 0123456789abcdef\n"         /* 25 */
               "    - name: dup\n"                       /* 26 */
               "      role: agent\n"                     /* 27 */
               "      token: 0123456789abcdef\n"         /* 28 */
               "    - name: dup\n"                       /* 29 */
               "      role: viewer\n"                    /* 30 */
               "      token: 0123456789abcdeg\n",        /* 31 */
               9,
               "$F:5:14: token 'short' is too short (15 characters): use at least 16 random "
               "characters, e.g. from 'openssl rand -hex 24'",
               "$F:7:13: role 'admin' is not one of: operator, agent, reporter, viewer",
               "$F:11:18: token 'noenv': environment variable CASCA_TEST_MISSING_VAR is not set",
               "$F:14:18: token 'emptyenv': environment variable CASCA_TEST_EMPTY_VAR is not set",
               "$F:15:7: token 'two' needs exactly one of token_env, token_file or token",
               "$F:19:7: token 'none' needs exactly one of token_env, token_file or token",
               "$F:23:19: token 'nofile': cannot read token_file missing.token: No such file or "
               "directory",
               "$F:24:7: auth.tokens[7] needs a name and a role",
               "$F:29:13: duplicate token name 'dup'");
}

static void token_errors_one_at_a_time(void **state)
{
    struct fx *f = *state;
    load_fails(f, "auth:\n  tokens:\n    - {name: a, role: agent, token: short}\n", 1,
               "$F:3:37: token 'a' is too short (5 characters): use at least 16 random "
               "characters, e.g. from 'openssl rand -hex 24'");
    load_fails(f, "auth:\n  tokens:\n    - {name: a, role: root, token: 0123456789abcdef}\n", 1,
               "$F:3:23: role 'root' is not one of: operator, agent, reporter, viewer");
    unsetenv("CASCA_TEST_MISSING_VAR");
    load_fails(f,
               "auth:\n  tokens:\n    - {name: a, role: agent, token_env: CASCA_TEST_MISSING_VAR}\n",
               1, "$F:3:41: token 'a': environment variable CASCA_TEST_MISSING_VAR is not set");
    put_free(f, "a.token", "0123456789abcdef\n");
    load_fails(f,
               "auth:\n  tokens:\n"
               "    - {name: a, role: agent, token: 0123456789abcdef, token_file: a.token}\n",
               1, "$F:3:7: token 'a' needs exactly one of token_env, token_file or token");
    load_fails(f, "auth:\n  tokens:\n    - {name: a, role: agent, token: [x]}\n", 1,
               "$F:3:37: auth.tokens.token must be a single value");
}

/* ---- cross-key checks ---- */

static void tls_checks(void **state)
{
    struct fx *f = *state;
    put_free(f, "server.pem", "cert\n");
    put_free(f, "server.key", "key\n");
    load_fails(f, "server:\n  tls:\n    cert: server.pem\n", 1,
               "$F:3:5: server.tls needs both cert and key");
    load_fails(f, "server:\n  tls:\n    key: server.key\n", 1,
               "$F:3:5: server.tls needs both cert and key");
    load_fails(f, "server:\n  tls:\n    cert: nope.pem\n    key: server.key\n", 1,
               "$F:3:11: server.tls.cert: cannot read $D/nope.pem: No such file or directory");
    load_fails(f,
               "server:\n"
               "  tls:\n"
               "    cert: server.pem\n"
               "    key: server.key\n"
               "    require_client_cert: true\n",
               1, "$F:5:26: server.tls.require_client_cert needs client_ca to verify them");
    load_fails(f, "store:\n  map_size: 2GiB\n  max_map_size: 1GiB\n", 1,
               "$F:2:13: store.map_size is larger than store.max_map_size");
}

/* ---- reloads ---- */

static void restart_warnings(void **state)
{
    struct fx *f = *state;
    put_free(f, "server.pem", "cert\n");
    put_free(f, "server.key", "key\n");
    struct config *base = load_ok(f, "");
    struct config_errors w = {0};

    /* reloadable keys: no warnings */
    struct config *next = load_ok(f, "server:\n"
                                     "  log_level: debug\n"
                                     "auth:\n"
                                     "  tokens:\n"
                                     "    - {name: ops, role: operator, token: 0123456789abcdef}\n");
    config_restart_warnings(base, next, &w);
    expect_lines(f, &w, 0, NULL);
    config_restart_warnings(base, base, &w);
    expect_lines(f, &w, 0, NULL);
    config_unref(next);

    const struct { const char *yaml, *key; } one[] = {
        {"server:\n  listen: 127.0.0.1:7000\n", "server.listen"},
        {"server:\n  data_dir: elsewhere\n", "server.data_dir"},
        {"server:\n  threads: 3\n", "server.threads"},
        {"server:\n  workers: 5\n", "server.workers"},
        {"server:\n  worker_queue: 10\n", "server.worker_queue"},
        {"server:\n  stream_queue: 10\n", "server.stream_queue"},
        {"server:\n  max_message_bytes: 8MiB\n", "server.max_message_bytes"},
        {"server:\n  tls: {cert: server.pem, key: server.key}\n", "server.tls"},
        {"store:\n  sync: none\n", "store"},
        {"store:\n  sync_interval: 2s\n", "store"},
        {"store:\n  map_size: 128MiB\n", "store"},
        {"store:\n  max_map_size: 1TiB\n", "store"},
    };
    for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
        next = load_ok(f, one[i].yaml);
        config_restart_warnings(base, next, &w);
        char want[128];
        snprintf(want, sizeof(want), "$F: %s changed; it takes effect at the next restart",
                 one[i].key);
        expect_lines(f, &w, 1, want);
        config_errors_free(&w);
        config_unref(next);
    }

    /* several at once, in table order, naming the new file */
    char *other = put(f, "next.yaml", "store:\n  sync: none\nserver:\n  threads: 4\n"
                                      "  listen: localhost:1\n  log_level: error\n");
    assert_int_equal(load_path(f, other, NULL, &next), CASCA_OK);
    config_restart_warnings(base, next, &w);
    expect_lines(f, &w, 3, "$D/next.yaml: server.listen changed; it takes effect at the next restart",
                 "$D/next.yaml: server.threads changed; it takes effect at the next restart",
                 "$D/next.yaml: store changed; it takes effect at the next restart");
    config_errors_free(&w);
    config_unref(next);
    free(other);
    config_unref(base);
}

static struct config *load_listen(struct fx *f, int port)
{
    char text[64];
    snprintf(text, sizeof(text), "server:\n  listen: 127.0.0.1:%d\n", port);
    return load_ok(f, text);
}

static void live_snapshots(void **state)
{
    struct fx *f = *state;
    struct config *c1 = load_listen(f, 1), *c2 = load_listen(f, 2), *c3 = load_listen(f, 3);
    struct config_live *live = config_live_create(c1);
    assert_non_null(live);

    struct config *old = config_live_get(live);
    assert_ptr_equal(old, c1);
    assert_int_equal(old->generation, 1);
    assert_int_equal(atomic_load(&old->refs), 2);

    config_live_swap(live, c2);
    struct config *cur = config_live_get(live);
    assert_ptr_equal(cur, c2);
    assert_int_equal(cur->generation, 2);
    /* the old snapshot is still whole while referenced */
    assert_int_equal(atomic_load(&old->refs), 1);
    assert_string_equal(old->server.listen, "127.0.0.1:1");
    assert_int_equal(old->generation, 1);
    config_unref(old); /* the last reference: freed here */
    config_unref(cur);

    config_live_swap(live, c3);
    cur = config_live_get(live);
    assert_ptr_equal(cur, c3);
    assert_int_equal(cur->generation, 3);
    assert_string_equal(cur->server.listen, "127.0.0.1:3");
    config_live_destroy(live); /* drops the live reference; ours remains */
    assert_int_equal(atomic_load(&cur->refs), 1);
    assert_string_equal(cur->server.listen, "127.0.0.1:3");
    config_unref(cur);

    c1 = load_listen(f, 4);
    assert_ptr_equal(config_ref(c1), c1);
    assert_int_equal(atomic_load(&c1->refs), 2);
    config_unref(c1);
    config_unref(c1);
    config_unref(NULL);
    config_live_destroy(NULL);
}

struct reader {
    struct config_live *live;
    atomic_bool *stop;
    unsigned long reads;
    bool bad;
};

static void *read_loop(void *arg)
{
    struct reader *r = arg;
    uint64_t last = 0;
    while (!atomic_load(r->stop)) {
        struct config *c = config_live_get(r->live);
        unsigned port = 0;
        if (c->generation < last || sscanf(c->server.listen, "127.0.0.1:%u", &port) != 1 ||
            port != c->generation)
            r->bad = true;
        last = c->generation;
        config_unref(c);
        r->reads++;
    }
    return NULL;
}

static void live_swaps_while_reading(void **state)
{
    struct fx *f = *state;
    enum { READERS = 4, SWAPS = 200 };
    struct config *configs[SWAPS + 1];
    for (int i = 1; i <= SWAPS; i++)
        configs[i] = load_listen(f, i); /* generation i listens on port i */
    struct config_live *live = config_live_create(configs[1]);
    atomic_bool stop = false;
    struct reader r[READERS];
    pthread_t t[READERS];
    for (int i = 0; i < READERS; i++) {
        r[i] = (struct reader){.live = live, .stop = &stop};
        assert_int_equal(pthread_create(&t[i], NULL, read_loop, &r[i]), 0);
    }
    for (int i = 2; i <= SWAPS; i++) {
        config_live_swap(live, configs[i]);
        usleep(100);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < READERS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_false(r[i].bad);
        assert_true(r[i].reads > 0);
    }
    struct config *last = config_live_get(live);
    assert_int_equal(last->generation, SWAPS);
    config_unref(last);
    config_live_destroy(live);
}

/* A program that reads only some sections of cascad's file (casca-hook): cascad's other keys are
 * known but not read, a misspelt key is still an error listing the keys of that program, and the
 * key engine reads a feature's map by its table. */
static void program_sections(void **state)
{
    struct fx *f = *state;
    /* CASCAD_CONFIG_KEYS (for the programs sharing the file) is cascad_config_sections' keys */
    static const char *const all[] = {CASCAD_CONFIG_KEYS, NULL};
    size_t n = 0;
    for (size_t s = 0; cascad_config_sections[s]; s++)
        for (const char *const *k = cascad_config_sections[s]->keys; *k; k++, n++) {
            assert_non_null(all[n]);
            assert_string_equal(all[n], *k);
        }
    assert_null(all[n]);

    static const struct config_section elsewhere = {.keys = all};
    static const struct config_section *const hook[] = {&telemetry_config_section, &elsewhere,
                                                        NULL};
    put_free(f, "casca.yaml", "tsdb: {raw_retention: 2m, hour_retention: forever}\n"
                              "slos: [{id: x}]\nsettings: 3\n");
    struct config *c = NULL;
    assert_int_equal(config_load(f->path, NULL, hook, &c, &f->errs), CASCA_OK);
    assert_null(config_section_of(c, &slo_config_section)); /* not read: no error for its items */
    assert_int_equal(telemetry_config_of(c)->tsdb.raw_retention_ns, 120 * 1000000000LL);
    assert_int_equal(telemetry_config_of(c)->tsdb.hour_retention_ns, 0);
    config_unref(c);

    put_free(f, "casca.yaml", "tsdb: {queue_points: 5, colour: red}\nslo: []\n");
    assert_int_equal(config_load(f->path, NULL, hook, &c, &f->errs), CASCA_ERR_CONFIG);
    assert_null(c);
    expect_errors(f, 3,
                  "$F:2:1: unknown key 'slo' in (top level) (known: server, auth, store, tsdb, "
                  "settings, settings_files, carbon, bus, hooks, probes, slos, slo_files, "
                  "slo_engine, http, opentelemetry)",
                  "$F:1:22: tsdb.queue_points: 5 is out of range [1000, 100000000]",
                  "$F:1:25: unknown key 'colour' in tsdb (known: raw_retention, "
                  "minute_retention, hour_retention, purge_interval, queue_points, "
                  "max_publish_points, max_query_samples)");
    config_errors_free(&f->errs);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(defaults_from_empty_file),
        T(every_key_parsed),
        T(json_config),
        cmocka_unit_test(value_parsers),
        T(unknown_keys),
        T(all_errors_reported),
        T(out_of_range),
        T(bad_values),
        T(wrong_shapes),
        T(lists_reject_wrong_kinds),
        T(yaml_errors_and_unreadable_file),
        T(relative_paths_resolve_against_the_file),
        T(overrides_win),
        T(listen_needs_tokens_off_loopback),
        T(token_sources),
        T(token_errors),
        T(token_errors_one_at_a_time),
        T(tls_checks),
        T(restart_warnings),
        T(live_snapshots),
        T(program_sections),
        T(live_swaps_while_reading),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
