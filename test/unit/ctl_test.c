/* ctl: the settings section (every bad input names file:line:col), validation and safety rails,
 * merged settings, the file/exec/memory controllers on real files and processes, the audit
 * entries, listeners and reloads that keep controllers. */
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "casca/v1/admin.pb-c.h"
#include "casca_err.h"
#include "config.h"
#include "ctl.h"
#include "sections.h"
#include "store.h"

static char dir[256];

static char *path_of(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
    return buf[k];
}

static void write_text(const char *name, const char *text)
{
    FILE *f = fopen(path_of(name), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *name)
{
    FILE *f = fopen(path_of(name), "r");
    assert_non_null(f);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* Loads a config whose text is given; returns it, or NULL with the errors joined in errbuf. */
static struct config *load(const char *text, char *errbuf, size_t len)
{
    write_text("casca.yaml", text);
    struct config *c = NULL;
    struct config_errors errs = {0};
    int rc = config_load(path_of("casca.yaml"), NULL, cascad_config_sections, &c, &errs);
    if (errbuf) {
        errbuf[0] = 0;
        for (size_t i = 0; i < errs.n; i++)
            snprintf(errbuf + strlen(errbuf), len - strlen(errbuf), "%s\n", errs.lines[i]);
    }
    config_errors_free(&errs);
    return rc == CASCA_OK ? c : NULL;
}

static void expect_error(const char *settings, const char *where, const char *what)
{
    char text[4096], errs[4096];
    snprintf(text, sizeof(text), "settings:\n%s", settings);
    struct config *c = load(text, errs, sizeof(errs));
    if (c || !strstr(errs, where) || !strstr(errs, what)) {
        config_unref(c);
        fail_msg("expected an error at %s containing '%s', got:\n%s", where, what, errs);
    }
    if (getenv("CTL_TEST_VERBOSE"))
        printf("%s", errs);
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/ctl-unit/t-%d-%ld", getpid(), (long)time(NULL));
    mkdir("/tmp/ctl-unit", 0700);
    mkdir(dir, 0700);
    return 0;
}

static void test_config_errors(void **state)
{
    expect_error("  - id: A\n    type: integer\n    controller: {memory: {}}\n", "casca.yaml:3:11",
                 "not one of int");
    expect_error("  - id: A\n    type: int\n", "casca.yaml:2:5", "either 'controller'");
    expect_error("  - id: A\n    type: int\n    range: {min: 5, max: 1}\n    controller: {memory: {}}\n",
                 "casca.yaml:4:12", "min 5 is above max 1");
    expect_error("  - id: A\n    type: int\n    controller: {nope: {}}\n", "casca.yaml:4:18",
                 "unknown controller 'nope'");
    expect_error("  - id: A\n    type: int\n    colour: red\n    controller: {memory: {}}\n",
                 "casca.yaml:4:5", "unknown key 'colour'");
    expect_error("  - id: A\n    type: int\n    controller: {memory: {}}\n  - id: A\n    type: int\n"
                 "    controller: {memory: {}}\n",
                 "casca.yaml:5:9", "declared twice");
    expect_error("  - id: A\n    type: enum\n    controller: {memory: {}}\n", "casca.yaml:2:5",
                 "an enum needs 'allowed'");
    expect_error("  - id: A\n    type: int\n    controller: {http_json: {url: ftp://x, pointer: /a}}\n",
                 "casca.yaml:4:35", "http:// or https://");
    expect_error("  - id: A\n    type: int\n    controller:\n      http_json:\n        url: http://x\n"
                 "        pointer: /a\n        headers: {Authorization: \"Bearer ${CTL_TEST_UNSET}\"}\n",
                 "casca.yaml:8:34", "CTL_TEST_UNSET is not set");
    expect_error("  - id: A\n    type: int\n    targets:\n      - {name: a, type: int, expr: \"value *\","
                 " inverse: value, controller: {memory: {}}}\n",
                 "casca.yaml:5:36", "unexpected end of the expression");
    expect_error("  - id: q\n    type: enum\n    targets:\n      - {name: a, type: int, controller: "
                 "{memory: {}}}\n    map:\n      low: {b: 1}\n",
                 "casca.yaml:7:13", "'b' is not one of this setting's targets");
    expect_error("  - id: A\n    type: int\n    step: 2\n    allowed: [1, 2]\n    controller: "
                 "{memory: {}}\n",
                 "casca.yaml:5:15", "off the step");
    expect_error("  - id: A\n    type: int\n    controller: {file: {path: x.txt, key: /a}}\n",
                 "casca.yaml:4:24", "format: give json, yaml or ini");
    expect_error("  - id: A\n    type: int\n    controller: {exec: {set: [x]}}\n", "casca.yaml:4:24",
                 "'get'");
}

static void test_settings_files(void **state)
{
    write_text("more.yaml", "settings:\n  - id: B\n    type: bool\n    controller: {memory: {value: yes}}\n");
    write_text("bad.yaml", "- id: C\n  type: int\n  range: {min: x}\n  controller: {memory: {}}\n");
    char errs[4096];
    struct config *c = load("settings_files: [more.yaml, bad.yaml]\n", errs, sizeof(errs));
    assert_null(c);
    if (!strstr(errs, "bad.yaml:3:16: min: expected a finite number"))
        fail_msg("%s", errs);
    c = load("settings:\n  - {id: A, type: int, controller: {memory: {value: 3}}}\n"
             "settings_files: [more.yaml]\n", errs, sizeof(errs));
    assert_non_null(c);
    struct ctl *ctl = ctl_create(c, NULL);
    struct ctl_view *v = ctl_view_get(ctl);
    assert_int_equal(ctl_view_count(v), 2);
    assert_string_equal(ctl_view_at(v, 1)->id, "B");
    ctl_view_put(v);
    struct ctl_reading r;
    char msg[512];
    assert_int_equal(ctl_get(ctl, "B", INT64_MAX, &r, msg, sizeof(msg)), CASCA_OK);
    assert_int_equal(r.value.kind, CTL_BOOL);
    assert_true(r.value.b);
    ctl_reading_clear(&r);
    ctl_destroy(ctl);
    config_unref(c);
    c = load("settings_files: [missing.yaml]\n", errs, sizeof(errs));
    assert_null(c);
    assert_non_null(strstr(errs, "casca.yaml:1:18: settings_files:"));
}

static int set_value(struct ctl *ctl, const char *id, struct ctl_value v, char *msg,
                     struct ctl_reading *out)
{
    struct ctl_request req = {.id = id, .value = &v, .caller = "tester", .deadline_ns = INT64_MAX};
    struct ctl_reading r;
    int rc = ctl_set(ctl, &req, out ? out : &r, msg, 512);
    if (!out)
        ctl_reading_clear(&r);
    return rc;
}

#define INT(x) ((struct ctl_value){.kind = CTL_INT, .i = (x)})
#define DBL(x) ((struct ctl_value){.kind = CTL_DOUBLE, .d = (x)})
#define STR(x) ((struct ctl_value){.kind = CTL_STRING, .s = (char *)(x)})

static void test_validation_and_rails(void **state)
{
    struct config *c = load(
        "settings:\n"
        "  - {id: A, type: int, range: {min: 1, max: 9}, step: 2, controller: {memory: {value: 3}}}\n"
        "  - {id: R, type: int, read_only: true, controller: {memory: {value: 1}}}\n"
        "  - {id: E, type: enum, allowed: [low, mid, high], max_step: 1,\n"
        "     controller: {memory: {value: low}}}\n"
        "  - {id: C, type: double, cooldown: 1h, controller: {memory: {value: 1.5}}}\n"
        "  - {id: S, type: int, max_step: 2, controller: {memory: {value: 4}}}\n",
        NULL, 0);
    assert_non_null(c);
    struct ctl *ctl = ctl_create(c, NULL);
    char msg[512];
    struct ctl_reading r;
    assert_int_equal(set_value(ctl, "A", INT(5), msg, &r), CASCA_OK);
    assert_int_equal(r.value.i, 5);
    assert_string_equal(r.changed_by, "tester");
    ctl_reading_clear(&r);
    assert_int_equal(set_value(ctl, "A", INT(4), msg, NULL), CASCA_ERR_INVALID);
    assert_non_null(strstr(msg, "off-step"));
    assert_non_null(strstr(msg, "3 or 5"));
    assert_int_equal(set_value(ctl, "A", INT(11), msg, NULL), CASCA_ERR_INVALID);
    assert_non_null(strstr(msg, "allowed 1 to 9"));
    assert_int_equal(set_value(ctl, "A", DBL(5), msg, NULL), CASCA_ERR_INVALID);
    assert_non_null(strstr(msg, "send value.int_value, not value.double_value"));
    assert_int_equal(set_value(ctl, "A", (struct ctl_value){0}, msg, NULL), CASCA_ERR_INVALID);
    assert_int_equal(set_value(ctl, "R", INT(2), msg, NULL), CASCA_ERR_PRECONDITION);
    assert_non_null(strstr(msg, "read-only"));
    assert_int_equal(set_value(ctl, "nope", INT(2), msg, NULL), CASCA_ERR_NOT_FOUND);
    assert_int_equal(set_value(ctl, "E", STR("ultra"), msg, NULL), CASCA_ERR_INVALID);
    assert_non_null(strstr(msg, "\"low\", \"mid\", \"high\""));
    assert_int_equal(set_value(ctl, "E", STR("high"), msg, NULL), CASCA_ERR_PRECONDITION);
    assert_int_equal(set_value(ctl, "E", STR("mid"), msg, NULL), CASCA_OK);
    assert_int_equal(set_value(ctl, "C", INT(2), msg, NULL), CASCA_OK); /* int accepted for double */
    assert_int_equal(set_value(ctl, "C", DBL(2.5), msg, NULL), CASCA_ERR_PRECONDITION);
    assert_non_null(strstr(msg, "next change is allowed in"));
    assert_int_equal(set_value(ctl, "S", INT(7), msg, NULL), CASCA_ERR_PRECONDITION);
    assert_non_null(strstr(msg, "between 2 and 6"));
    assert_int_equal(set_value(ctl, "S", INT(6), msg, NULL), CASCA_OK);
    /* a dry run validates and changes nothing */
    struct ctl_value v = INT(7);
    struct ctl_request req = {.id = "A", .value = &v, .dry_run = true, .deadline_ns = INT64_MAX};
    assert_int_equal(ctl_set(ctl, &req, &r, msg, sizeof(msg)), CASCA_OK);
    ctl_reading_clear(&r);
    assert_int_equal(ctl_get(ctl, "A", INT64_MAX, &r, msg, sizeof(msg)), CASCA_OK);
    assert_int_equal(r.value.i, 5);
    ctl_reading_clear(&r);
    ctl_destroy(ctl);
    config_unref(c);
}

static void test_merged(void **state)
{
    struct config *c = load(
        "settings:\n"
        "  - id: quality\n"
        "    type: enum\n"
        "    targets:\n"
        "      - {name: res, type: int, controller: {memory: {value: 720}}}\n"
        "      - {name: rate, type: int, controller: {memory: {value: 2000}}}\n"
        "    map:\n"
        "      low: {res: 720, rate: 2000}\n"
        "      high: {res: 1080, rate: 4000}\n"
        "  - id: kbps\n"
        "    type: int\n"
        "    range: {min: 1, max: 100}\n"
        "    targets:\n"
        "      - {name: bps, type: int, expr: value * 1000, inverse: value / 1000,\n"
        "         controller: {memory: {value: 5000}}}\n"
        "      - {name: buf, type: double, expr: 'max(value / 2, 8)', controller: {memory: {}}}\n",
        NULL, 0);
    assert_non_null(c);
    struct ctl *ctl = ctl_create(c, NULL);
    char msg[512];
    struct ctl_reading r;
    assert_int_equal(ctl_get(ctl, "quality", INT64_MAX, &r, msg, sizeof(msg)), CASCA_OK);
    assert_string_equal(r.value.s, "low");
    ctl_reading_clear(&r);
    assert_int_equal(set_value(ctl, "quality", STR("high"), msg, &r), CASCA_OK);
    assert_string_equal(r.value.s, "high");
    ctl_reading_clear(&r);
    assert_int_equal(set_value(ctl, "quality", STR("mid"), msg, NULL), CASCA_ERR_INVALID);
    assert_int_equal(ctl_get(ctl, "kbps", INT64_MAX, &r, msg, sizeof(msg)), CASCA_OK);
    assert_int_equal(r.value.i, 5);
    ctl_reading_clear(&r);
    assert_int_equal(set_value(ctl, "kbps", INT(40), msg, &r), CASCA_OK);
    assert_int_equal(r.value.i, 40);
    ctl_reading_clear(&r);
    ctl_destroy(ctl);
    config_unref(c);
}

static void test_file_controller(void **state)
{
    write_text("svc.yaml", "# encoder settings\nencoding:\n  threads: 4   # per job\n  preset: fast\n"
                           "other: [1, 2]\n");
    write_text("svc.ini", "; top\nname = demo\n[encoding]\nthreads = 2\nmode = \"quick\"\n");
    write_text("svc.json", "{\"encoding\": {\"threads\": 1, \"keep\": true}}");
    write_text("reload.sh", "#!/bin/sh\necho reloaded >> \"$(dirname \"$0\")/reloads.txt\"\n");
    chmod(path_of("reload.sh"), 0755);
    char text[2048];
    snprintf(text, sizeof(text),
             "settings:\n"
             "  - {id: Y, type: int, controller: {file: {path: svc.yaml, key: /encoding/threads,\n"
             "     reload: {command: [%s]}}}}\n"
             "  - {id: P, type: string, controller: {file: {path: svc.yaml, key: /encoding/preset}}}\n"
             "  - {id: I, type: int, controller: {file: {path: svc.ini, key: /encoding/threads}}}\n"
             "  - {id: M, type: string, controller: {file: {path: svc.ini, key: /encoding/mode}}}\n"
             "  - {id: J, type: int, controller: {file: {path: svc.json, key: /encoding/threads}}}\n"
             "  - {id: X, type: int, controller: {file: {path: svc.yaml, key: /encoding/none}}}\n",
             path_of("reload.sh"));
    struct config *c = load(text, NULL, 0);
    assert_non_null(c);
    struct ctl *ctl = ctl_create(c, NULL);
    char msg[512];
    struct ctl_reading r;
    assert_int_equal(ctl_get(ctl, "Y", INT64_MAX, &r, msg, sizeof(msg)), CASCA_OK);
    assert_int_equal(r.value.i, 4);
    ctl_reading_clear(&r);
    assert_int_equal(set_value(ctl, "Y", INT(6), msg, NULL), CASCA_OK);
    assert_string_equal(read_text("svc.yaml"), "# encoder settings\nencoding:\n  threads: 6   # per "
                                               "job\n  preset: fast\nother: [1, 2]\n");
    assert_string_equal(read_text("reloads.txt"), "reloaded\n");
    assert_int_equal(set_value(ctl, "P", STR("very slow: \"x\""), msg, NULL), CASCA_OK);
    assert_non_null(strstr(read_text("svc.yaml"), "preset: \"very slow: \\\"x\\\"\"\n"));
    assert_int_equal(ctl_get(ctl, "P", INT64_MAX, &r, msg, sizeof(msg)), CASCA_OK);
    assert_string_equal(r.value.s, "very slow: \"x\"");
    ctl_reading_clear(&r);
    assert_int_equal(set_value(ctl, "I", INT(8), msg, NULL), CASCA_OK);
    assert_int_equal(ctl_get(ctl, "M", INT64_MAX, &r, msg, sizeof(msg)), CASCA_OK);
    assert_string_equal(r.value.s, "quick");
    ctl_reading_clear(&r);
    assert_string_equal(read_text("svc.ini"),
                        "; top\nname = demo\n[encoding]\nthreads = 8\nmode = \"quick\"\n");
    assert_int_equal(set_value(ctl, "J", INT(3), msg, NULL), CASCA_OK);
    assert_non_null(strstr(read_text("svc.json"), "\"threads\": 3"));
    assert_non_null(strstr(read_text("svc.json"), "\"keep\": true"));
    /* a key the file does not have: UNAVAILABLE with only the public id in the message */
    assert_int_equal(ctl_get(ctl, "X", INT64_MAX, &r, msg, sizeof(msg)), CASCA_ERR_UNAVAILABLE);
    assert_non_null(strstr(msg, "'X'"));
    assert_null(strstr(msg, "svc.yaml"));
    /* garbage in the file: UNAVAILABLE, and a write changes nothing */
    write_text("svc.json", "{not json");
    assert_int_equal(set_value(ctl, "J", INT(5), msg, NULL), CASCA_ERR_UNAVAILABLE);
    assert_string_equal(read_text("svc.json"), "{not json");
    ctl_destroy(ctl);
    config_unref(c);
}

static void test_exec_controller(void **state)
{
    write_text("val.txt", "3\n");
    char text[2048];
    snprintf(text, sizeof(text),
             "settings:\n"
             "  - id: T\n    type: int\n    controller:\n      exec:\n"
             "        get: [cat, %s]\n"
             "        set: 'echo \"$1\" > %s'\n"
             "  - id: Slow\n    type: int\n    controller: {exec: {get: [sleep, '5'], timeout: 200ms}}\n"
             "  - id: Fails\n    type: int\n    controller: {exec: {get: [sh, -c, 'echo oops >&2; exit 3']}}\n",
             path_of("val.txt"), path_of("val.txt"));
    struct config *c = load(text, NULL, 0);
    assert_non_null(c);
    struct ctl *ctl = ctl_create(c, NULL);
    char msg[512];
    struct ctl_reading r;
    assert_int_equal(ctl_get(ctl, "T", INT64_MAX, &r, msg, sizeof(msg)), CASCA_OK);
    assert_int_equal(r.value.i, 3);
    ctl_reading_clear(&r);
    assert_int_equal(set_value(ctl, "T", INT(7), msg, &r), CASCA_OK);
    assert_int_equal(r.value.i, 7);
    ctl_reading_clear(&r);
    assert_string_equal(read_text("val.txt"), "7\n");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(ctl_get(ctl, "Slow", INT64_MAX, &r, msg, sizeof(msg)), CASCA_ERR_TIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 3);
    assert_int_equal(ctl_get(ctl, "Fails", INT64_MAX, &r, msg, sizeof(msg)), CASCA_ERR_UNAVAILABLE);
    assert_null(strstr(msg, "oops"));
    ctl_destroy(ctl);
    config_unref(c);
}

struct seen {
    int n;
    char last[64];
};

static void on_change(void *arg, const char *id, const struct ctl_reading *r)
{
    struct seen *s = arg;
    s->n++;
    snprintf(s->last, sizeof(s->last), "%s=%lld", id, (long long)r->value.i);
}

static void test_reload_keeps_instances_and_listeners(void **state)
{
    const char *cfg = "settings:\n"
                      "  - {id: A, type: int, controller: {memory: {value: 1}}}\n"
                      "  - {id: B, type: int, controller: {memory: {value: 1}}}\n";
    struct config *c = load(cfg, NULL, 0);
    struct ctl *ctl = ctl_create(c, NULL);
    struct seen seen = {0};
    assert_int_equal(ctl_listen(ctl, on_change, &seen), CASCA_OK);
    char msg[512];
    assert_int_equal(set_value(ctl, "A", INT(5), msg, NULL), CASCA_OK);
    assert_int_equal(set_value(ctl, "B", INT(5), msg, NULL), CASCA_OK);
    assert_int_equal(seen.n, 4); /* each: the first value read (1), then the change (5) */
    assert_string_equal(seen.last, "B=5");
    /* A unchanged: its memory instance (value 5) is kept; B's details changed: reopened */
    struct config *c2 = load("settings:\n"
                             "  - {id: A, type: int, controller: {memory: {value: 1}}}\n"
                             "  - {id: B, type: int, controller: {memory: {value: 2}}}\n",
                             NULL, 0);
    ctl_reload(ctl, c2);
    struct ctl_reading r;
    assert_int_equal(ctl_get(ctl, "A", INT64_MAX, &r, msg, sizeof(msg)), CASCA_OK);
    assert_int_equal(r.value.i, 5);
    assert_string_equal(r.changed_by, "tester"); /* state carried over */
    ctl_reading_clear(&r);
    assert_int_equal(ctl_get(ctl, "B", INT64_MAX, &r, msg, sizeof(msg)), CASCA_OK);
    assert_int_equal(r.value.i, 2);
    ctl_reading_clear(&r);
    assert_string_equal(seen.last, "B=2"); /* a read that saw a new value tells the listeners */
    ctl_unlisten(ctl, on_change, &seen);
    ctl_destroy(ctl);
    config_unref(c);
    config_unref(c2);
}

static int collect(uint64_t seq, int64_t t, const void *p, size_t len, void *arg)
{
    Casca__V1__AuditEntry **out = arg;
    for (int i = 0; i < 16; i++)
        if (!out[i]) {
            out[i] = casca__v1__audit_entry__unpack(NULL, len, p);
            break;
        }
    return 0;
}

static int deny_lease(void *arg, const char *id, const char *caller, const void *session,
                      char *why, size_t len)
{
    snprintf(why, len, "setting '%s' is leased by agent other", id);
    return CASCA_ERR_PRECONDITION;
}

static void test_audit_and_lease_hook(void **state)
{
    char data[300];
    snprintf(data, sizeof(data), "%s/data", dir);
    struct store_options so = {.dir = data};
    struct store *s = NULL;
    assert_int_equal(store_open(&so, &s, NULL, 0), CASCA_OK);
    struct audit *a = NULL;
    assert_int_equal(audit_open(s, "audit", &a), CASCA_OK);
    struct config *c = load("settings:\n  - {id: A, type: int, range: {max: 5}, controller: "
                            "{memory: {value: 1}}}\n",
                            NULL, 0);
    struct ctl *ctl = ctl_create(c, a);
    char msg[512];
    assert_int_equal(set_value(ctl, "A", INT(3), msg, NULL), CASCA_OK);
    assert_int_equal(set_value(ctl, "A", INT(9), msg, NULL), CASCA_ERR_INVALID);
    ctl_set_lease_hook(ctl, deny_lease, NULL);
    assert_int_equal(set_value(ctl, "A", INT(4), msg, NULL), CASCA_ERR_PRECONDITION);
    assert_non_null(strstr(msg, "leased"));
    Casca__V1__AuditEntry *e[16] = {0};
    assert_int_equal(audit_scan(a, INT64_MIN, INT64_MAX, 0, 0, collect, e), 0);
    assert_non_null(e[2]);
    assert_int_equal(e[0]->outcome, CASCA__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_APPLIED);
    assert_string_equal(e[0]->caller, "tester");
    assert_int_equal(e[0]->old_value->int_value, 1);
    assert_int_equal(e[0]->new_value->int_value, 3);
    assert_int_equal(e[1]->outcome, CASCA__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_REJECTED);
    assert_non_null(strstr(e[1]->reason, "out of range"));
    assert_int_equal(e[2]->outcome, CASCA__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_REJECTED);
    for (int i = 0; i < 16 && e[i]; i++)
        casca__v1__audit_entry__free_unpacked(e[i], NULL);
    ctl_destroy(ctl);
    config_unref(c);
    audit_close(a);
    store_close(s);
}

static void test_values(void **state)
{
    struct ctl_value v = {.kind = CTL_STRING, .s = strdup("42")};
    assert_int_equal(ctl_value_coerce(&v, CTL_INT), CASCA_OK);
    assert_int_equal(v.i, 42);
    assert_int_equal(ctl_value_coerce(&v, CTL_DOUBLE), CASCA_OK);
    assert_int_equal(ctl_value_coerce(&v, CTL_STRING), CASCA_OK);
    assert_string_equal(v.s, "42");
    assert_int_equal(ctl_value_coerce(&v, CTL_BOOL), CASCA_ERR_INVALID);
    ctl_value_clear(&v);
    v = (struct ctl_value){.kind = CTL_DOUBLE, .d = 2.5};
    assert_int_equal(ctl_value_coerce(&v, CTL_INT), CASCA_ERR_INVALID);
}

/* What a listener on the re-reader's threads saw. */
struct heard {
    pthread_mutex_t lock;
    int values, failures;
    long long last;
    char reason[96];
};

static void on_heard(void *arg, const char *id, const struct ctl_reading *r)
{
    struct heard *h = arg;
    (void)id;
    pthread_mutex_lock(&h->lock);
    if (r->value.kind == CTL_NONE) {
        h->failures++;
        snprintf(h->reason, sizeof(h->reason), "%s", r->reason);
    } else {
        h->values++;
        h->last = (long long)r->value.i;
    }
    pthread_mutex_unlock(&h->lock);
}

/* Waits up to 10 s for ctl_peek of id to show value want (or no value when want < 0). */
static bool peek_until(struct ctl *ctl, const char *id, long long want, struct ctl_reading *r)
{
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(ctl_peek(ctl, id, r), CASCA_OK);
        if (want < 0 ? r->value.kind == CTL_NONE && r->reason[0]
                     : r->value.kind == CTL_INT && r->value.i == want)
            return true;
        ctl_reading_clear(r);
        usleep(10000);
    }
    return false;
}

/* A watched setting is re-read: a change made on the service itself, a failure and a recovery
 * all show in ctl_peek and reach the listeners, without any ctl_get. */
static void test_watch_rereads_the_service(void **state)
{
    (void)state;
    write_text("w.txt", "3\n");
    char text[1024];
    snprintf(text, sizeof(text),
             "settings:\n  - {id: W, type: int, controller: {exec: {get: [cat, %s]}}}\n",
             path_of("w.txt"));
    struct config *c = load(text, NULL, 0);
    assert_non_null(c);
    struct ctl *ctl = ctl_create(c, NULL);
    struct heard h = {.lock = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(ctl_listen(ctl, on_heard, &h), CASCA_OK);
    struct ctl_reading r;
    assert_int_equal(ctl_peek(ctl, "W", &r), CASCA_OK);
    assert_int_equal(r.value.kind, CTL_NONE);
    assert_string_equal(r.reason, "not read from the service yet");
    assert_int_equal(ctl_peek(ctl, "Nope", &r), CASCA_ERR_NOT_FOUND);

    assert_int_equal(ctl_watch(ctl, "W", 50 * 1000000LL), CASCA_OK);
    assert_int_equal(ctl_watch(ctl, "W", 0), CASCA_OK); /* a second watcher, default period */
    assert_true(peek_until(ctl, "W", 3, &r));
    ctl_reading_clear(&r);
    write_text("w.txt", "9\n"); /* changed outside casca */
    assert_true(peek_until(ctl, "W", 9, &r));
    ctl_reading_clear(&r);
    assert_int_equal(unlink(path_of("w.txt")), 0); /* the service stops answering */
    assert_true(peek_until(ctl, "W", -1, &r));
    assert_non_null(strstr(r.reason, "service unavailable since 20"));
    assert_null(strstr(r.reason, "w.txt")); /* never the private details */
    ctl_reading_clear(&r);
    write_text("w.txt", "9\n"); /* back, with the same value: still news */
    assert_true(peek_until(ctl, "W", 9, &r));
    ctl_reading_clear(&r);
    ctl_unwatch(ctl, "W", 50 * 1000000LL);
    ctl_unwatch(ctl, "W", 0);
    ctl_stop(ctl); /* no listener call after this */
    pthread_mutex_lock(&h.lock);
    assert_true(h.values >= 3); /* 3, 9, and 9 again after the failure */
    assert_int_equal(h.last, 9);
    assert_int_equal(h.failures, 1); /* the first failed read only */
    assert_non_null(strstr(h.reason, "service unavailable since"));
    pthread_mutex_unlock(&h.lock);
    ctl_unlisten(ctl, on_heard, &h);
    ctl_destroy(ctl);
    config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_settings_files),
        cmocka_unit_test(test_validation_and_rails),
        cmocka_unit_test(test_merged),
        cmocka_unit_test(test_file_controller),
        cmocka_unit_test(test_exec_controller),
        cmocka_unit_test(test_reload_keeps_instances_and_listeners),
        cmocka_unit_test(test_audit_and_lease_hook),
        cmocka_unit_test(test_watch_rereads_the_service),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
