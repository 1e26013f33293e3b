/* hooks: the bus:/hooks: config (and its errors as file:line:col), the json interpreter (pointers,
 * tags, $TOPIC, $RECEIVED, defaults, time formats and zones, batches, every kind of bad input),
 * the protobuf interpreter, and time zones. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "casca/v1/telemetry.pb-c.h"
#include "casca_err.h"
#include "config.h"
#include "hooks.h"
#include "sections.h"
#include "tz.h"

#define S(sec) ((int64_t)(sec)*1000000000)
#define RECEIVED S(1800000000)
#define T_2026_01_05_10 S(1767607200) /* 2026-01-05T10:00:00Z */

static struct config_errors errs;

/* Loads a config from text; NULL on errors (then errs has them). */
static struct config *load(const char *text)
{
    char path[] = "/tmp/casca-hooks-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    config_errors_free(&errs);
    struct config *c = NULL;
    config_load(path, NULL, cascad_config_sections, &c, &errs);
    unlink(path);
    return c;
}

static const struct hook_config *hook0(struct config *c)
{
    const struct hooks_section *s = config_section_of(c, &hooks_config_section);
    assert_non_null(s);
    assert_true(s->nhooks > 0);
    return &s->hooks[0];
}

static bool has_error(const char *needle)
{
    for (size_t i = 0; i < errs.n; i++)
        if (strstr(errs.lines[i], needle)) return true;
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "  error: %s\n", errs.lines[i]);
    return false;
}

static const char *tag(const struct tsdb_point *p, const char *key)
{
    for (size_t i = 0; i < p->ntags; i++)
        if (!strcmp(p->tags[i].key, key)) return p->tags[i].value;
    return NULL;
}

static int run_json(const struct hook_config *h, const char *topic, const char *msg,
                    struct hook_batch *b, char *err)
{
    hook_batch_reset(b);
    err[0] = 0;
    return hook_json_interpret(h, topic, msg, strlen(msg), RECEIVED, b, err, 512);
}

static const char *PLAYER = "bus: {}\n"
                            "hooks:\n"
                            "  - name: player\n"
                            "    topic: autowatcher/\n"
                            "    values:\n"
                            "      transcoding_fps: \"/Transcoding FPS\"\n"
                            "      dropped_frames: {field: \"/Dropped frames\", default: 0}\n"
                            "    time: {field: \"/Time (UTC)\", format: \"%Y-%m-%d %H:%M:%S\", "
                            "timezone: UTC}\n"
                            "    tags: {client: \"/Autowatcher ID\", topic: $TOPIC, site: lab}\n";

static void player_report(void **state)
{
    struct config *c = load(PLAYER);
    assert_non_null(c);
    const struct hook_config *h = hook0(c);
    struct hook_batch b = {0};
    char err[512];
    assert_int_equal(run_json(h, "autowatcher/w1",
                              "{\"Autowatcher ID\": \"w1\", \"Transcoding FPS\": 27.5, "
                              "\"Dropped frames\": 3, \"Time (UTC)\": \"2026-01-05 10:00:00\"}",
                              &b, err),
                     CASCA_OK);
    assert_int_equal(b.n, 2); /* two value fields: two series */
    assert_string_equal(b.pts[0].series, "transcoding_fps");
    assert_true(b.pts[0].value == 27.5);
    assert_string_equal(b.pts[1].series, "dropped_frames");
    assert_true(b.pts[1].value == 3);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(b.pts[i].time_ns, T_2026_01_05_10);
        assert_int_equal(b.pts[i].ntags, 3);
        assert_string_equal(tag(&b.pts[i], "client"), "w1");
        assert_string_equal(tag(&b.pts[i], "topic"), "autowatcher/w1");
        assert_string_equal(tag(&b.pts[i], "site"), "lab");
    }
    /* a missing field with a default takes it */
    assert_int_equal(run_json(h, "autowatcher/w1",
                              "{\"Autowatcher ID\": \"w1\", \"Transcoding FPS\": 30, "
                              "\"Time (UTC)\": \"2026-01-05 10:00:00\"}",
                              &b, err),
                     CASCA_OK);
    assert_int_equal(b.n, 2);
    assert_true(b.pts[1].value == 0);
    /* a batch: an array of reports */
    assert_int_equal(run_json(h, "autowatcher/w2",
                              "[{\"Autowatcher ID\": \"a\", \"Transcoding FPS\": 1, "
                              "\"Time (UTC)\": \"2026-01-05 10:00:00\"},"
                              " {\"Autowatcher ID\": 7, \"Transcoding FPS\": 2, "
                              "\"Time (UTC)\": \"2026-01-05 10:00:01\"}]",
                              &b, err),
                     CASCA_OK);
    assert_int_equal(b.n, 4);
    assert_string_equal(tag(&b.pts[2], "client"), "7"); /* a number as a tag */
    assert_int_equal(b.pts[3].time_ns, T_2026_01_05_10 + S(1));
    hook_batch_free(&b);
    config_unref(c);
}

static void bad_input(void **state)
{
    struct config *c = load(PLAYER);
    const struct hook_config *h = hook0(c);
    struct hook_batch b = {0};
    char err[512];
    static const struct {
        const char *msg, *why;
        size_t points_left;
    } cases[] = {
        {"{\"Transcoding FPS\": 27.5", "malformed JSON", 0},
        {"not json", "malformed JSON", 0},
        {"{\"a\": 1, \"a\": 2}", "malformed JSON", 0}, /* duplicate keys */
        {"{\"Autowatcher ID\": \"w1\", \"Transcoding FPS\": NaN, \"Time (UTC)\": "
         "\"2026-01-05 10:00:00\"}",
         "malformed JSON", 0},
        {"{\"Autowatcher ID\": \"w1\", \"Transcoding FPS\": 1e999, \"Time (UTC)\": "
         "\"2026-01-05 10:00:00\"}",
         "malformed JSON", 0},
        {"42", "expected a JSON object", 0},
        {"{\"Autowatcher ID\": \"w1\", \"Time (UTC)\": \"2026-01-05 10:00:00\"}",
         "field /Transcoding FPS is missing", 1},
        {"{\"Autowatcher ID\": \"w1\", \"Transcoding FPS\": \"fast\", \"Time (UTC)\": "
         "\"2026-01-05 10:00:00\"}",
         "is a string, not a number", 1},
        {"{\"Autowatcher ID\": \"w1\", \"Transcoding FPS\": 25, \"Time (UTC)\": "
         "\"05.01.2026 10:00\"}",
         "does not match time.format", 0},
        {"{\"Autowatcher ID\": \"w1\", \"Transcoding FPS\": 25}",
         "time field /Time (UTC) is "
         "missing",
         0},
        {"{\"Autowatcher ID\": [1], \"Transcoding FPS\": 25, \"Time (UTC)\": "
         "\"2026-01-05 10:00:00\"}",
         "not a string or number", 0},
        {"{\"Transcoding FPS\": 25, \"Time (UTC)\": \"2026-01-05 10:00:00\"}",
         "tag client: field /Autowatcher ID is missing", 0},
        {"[1, {\"Autowatcher ID\": \"w1\", \"Transcoding FPS\": 25, \"Time (UTC)\": "
         "\"2026-01-05 10:00:00\"}]",
         "item 0: expected a JSON object", 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = run_json(h, "autowatcher/w1", cases[i].msg, &b, err);
        if (rc != CASCA_ERR_INVALID || !strstr(err, cases[i].why) || b.n != cases[i].points_left)
            fail_msg("case %zu: rc %d, %zu points, err '%s' (wanted '%s')", i, rc, b.n, err,
                     cases[i].why);
    }
    hook_batch_free(&b);
    config_unref(c);
}

static void tasmota_in_local_time(void **state)
{
    struct config *c = load("bus: {}\n"
                            "hooks:\n"
                            "  - name: plug\n"
                            "    topic: tele/\n"
                            "    values:\n"
                            "      power_w: /ENERGY/Power\n"
                            "      apparent_power_va: /ENERGY/ApparentPower\n"
                            "      voltage_v: /ENERGY/Voltage\n"
                            "    time: {field: /Time, format: rfc3339, timezone: Europe/Vienna}\n"
                            "    tags: {plug: $TOPIC}\n");
    assert_non_null(c);
    const struct hook_config *h = hook0(c);
    struct hook_batch b = {0};
    char err[512];
    const char *winter = "{\"Time\": \"2026-01-05T10:00:00\", \"ENERGY\": {\"Power\": 15.2, "
                         "\"ApparentPower\": 17.1, \"Voltage\": 229}}";
    assert_int_equal(run_json(h, "tele/plug1", winter, &b, err), CASCA_OK);
    assert_int_equal(b.n, 3);
    assert_int_equal(b.pts[0].time_ns, T_2026_01_05_10 - S(3600)); /* CET = UTC+1 */
    assert_true(b.pts[0].value == 15.2 && b.pts[1].value == 17.1 && b.pts[2].value == 229);
    assert_string_equal(tag(&b.pts[2], "plug"), "tele/plug1");
    const char *summer = "{\"Time\": \"2026-07-05T10:00:00\", \"ENERGY\": {\"Power\": 1, "
                         "\"ApparentPower\": 1, \"Voltage\": 1}}";
    assert_int_equal(run_json(h, "tele/plug1", summer, &b, err), CASCA_OK);
    assert_int_equal(b.pts[0].time_ns, S(1783245600) - S(7200)); /* CEST = UTC+2 */
    /* an explicit offset wins over the zone */
    const char *offset = "{\"Time\": \"2026-01-05T10:00:00.250+03:00\", \"ENERGY\": {\"Power\": 1,"
                         " \"ApparentPower\": 1, \"Voltage\": 1}}";
    assert_int_equal(run_json(h, "tele/plug1", offset, &b, err), CASCA_OK);
    assert_int_equal(b.pts[0].time_ns, T_2026_01_05_10 - S(3 * 3600) + 250000000);
    hook_batch_free(&b);
    config_unref(c);
}

/* A time past 2262 does not fit int64 ns: it is a bad time (the message is an error, counted in
 * the hook's errors), never an overflow (UBSan aborted on it). Every time format. */
static void times_after_2262_are_bad(void **state)
{
    struct config *c = load("bus: {}\n"
                            "hooks:\n"
                            "  - {name: a, series: s, value: /v, time: {field: /t, format: rfc3339}}\n"
                            "  - {name: b, series: s, value: /v, time: {field: /t, "
                            "format: \"%Y-%m-%d %H:%M:%S\", timezone: Europe/Vienna}}\n"
                            "  - {name: c, series: s, value: /v, time: {field: /t, "
                            "format: \"%Y-%m-%dT%H:%M:%S%z\"}}\n"
                            "  - {name: d, series: s, value: /v, time: {field: /t, format: unix}}\n"
                            "  - {name: e, series: s, value: /v, time: {field: /t, format: unix_ms}}\n");
    assert_non_null(c);
    const struct hooks_section *sec = config_section_of(c, &hooks_config_section);
    static const char *const msgs[] = {
        "{\"v\": 1, \"t\": \"2300-01-01T00:00:00Z\"}",
        "{\"v\": 1, \"t\": \"2300-01-01 00:00:00\"}",
        "{\"v\": 1, \"t\": \"2300-01-01T00:00:00+0100\"}",
        "{\"v\": 1, \"t\": 10413792000}",     /* 2300-01-01 in seconds */
        "{\"v\": 1, \"t\": \"10413792000000\"}", /* ... in ms */
    };
    struct hook_batch b = {0};
    char err[512];
    for (size_t i = 0; i < sec->nhooks; i++) {
        assert_int_equal(run_json(&sec->hooks[i], "x", msgs[i], &b, err), CASCA_ERR_INVALID);
        assert_int_equal(b.n, 0);
        assert_non_null(strstr(err, "does not match time.format"));
        int64_t ns;
        assert_int_equal(hook_time_parse_string(&sec->hooks[i].time, "2300-06-01T00:00:00Z", &ns),
                         CASCA_ERR_INVALID);
    }
    /* 2262-04-11 still fits */
    assert_int_equal(run_json(&sec->hooks[0], "x", "{\"v\": 1, \"t\": \"2262-04-11T00:00:00Z\"}",
                              &b, err),
                     CASCA_OK);
    assert_int_equal(b.pts[0].time_ns, S(9223286400));
    hook_batch_free(&b);
    config_unref(c);
}

static void received_and_unix_times(void **state)
{
    struct config *c = load("bus: {}\n"
                            "hooks:\n"
                            "  - {name: a, series: s, value: /v}\n"
                            "  - {name: b, series: s, value: /v, time: {field: /t, format: unix_ms,"
                            " default: $RECEIVED}}\n");
    assert_non_null(c);
    const struct hooks_section *sec = config_section_of(c, &hooks_config_section);
    struct hook_batch b = {0};
    char err[512];
    assert_int_equal(run_json(&sec->hooks[0], "x", "{\"v\": true}", &b, err), CASCA_OK);
    assert_int_equal(b.pts[0].time_ns, RECEIVED);
    assert_true(b.pts[0].value == 1); /* booleans are 1 and 0 */
    assert_int_equal(b.pts[0].ntags, 0);
    assert_int_equal(run_json(&sec->hooks[1], "x", "{\"v\": 2, \"t\": 1767607200123}", &b, err),
                     CASCA_OK);
    assert_int_equal(b.pts[0].time_ns, T_2026_01_05_10 + 123000000);
    assert_int_equal(run_json(&sec->hooks[1], "x", "{\"v\": 2}", &b, err), CASCA_OK);
    assert_int_equal(b.pts[0].time_ns, RECEIVED);
    assert_int_equal(run_json(&sec->hooks[1], "x", "{\"v\": 2, \"t\": \"soon\"}", &b, err),
                     CASCA_ERR_INVALID);
    hook_batch_free(&b);
    config_unref(c);
}

static void config_errors_have_positions(void **state)
{
    assert_null(load("bus: {listen: \"zmq://1.2.3.4:5\", publish: \"udp://127.0.0.1:5\"}\n"
                     "hooks:\n"
                     "  - name: a\n"
                     "    values: {s: \"Transcoding FPS\"}\n"
                     "    colour: red\n"
                     "  - name: a\n"
                     "    bus: nowhere\n"
                     "    series: s\n"
                     "    value: /v\n"
                     "    connector: mongodb\n"
                     "    time: {field: /t, timezone: Mars/Olympus}\n"
                     "  - name: c\n"
                     "    format: protobuf\n"
                     "    connector: influxdb\n"));
    assert_true(has_error(":1:"));
    assert_true(has_error("not an nng address"));
    assert_true(has_error("bus.publish: 'udp://127.0.0.1:5': udp:// is for bus.listen only"));
    assert_true(has_error(":4:17: values: 'Transcoding FPS' is not a JSON pointer"));
    assert_true(has_error(":5:5: unknown key 'colour'"));
    assert_true(has_error(":6:11: duplicate hook name 'a'"));
    assert_true(has_error(":7:10: hook a: bus 'nowhere' is not defined"));
    assert_true(has_error(":10:16: hook a: connector 'mongodb' is not one of"));
    assert_true(has_error("timezone 'Mars/Olympus' is unknown"));
    assert_true(has_error(":12:5: the influxdb connector needs influxdb: {url"));
    assert_null(load("hooks:\n  - {name: a, series: s, value: /v}\n"));
    assert_true(has_error("there is no bus to subscribe to"));
    /* a connector's options are its own: read by it, refused for another connector; the lists in
     * errors come from the tables */
    assert_null(load("bus: {}\n"
                     "hooks:\n"
                     "  - {name: a, format: protobuf, influxdb: {url: \"http://x\", database: d}}\n"
                     "  - name: b\n"
                     "    format: protobuf\n"
                     "    connector: influxdb\n"
                     "    influxdb: {url: \"ftp://x\", database: d, batch: 0, colour: red}\n"
                     "  - {name: c, format: protobuf, connector: mongodb}\n"
                     "  - {name: d, format: protobuf, colour: red}\n"));
    assert_true(has_error(":3:43: hook a: influxdb: is only for connector: influxdb"));
    assert_true(has_error(":7:55: unknown key 'colour' in influxdb (known: url, database, username, "
                          "password_env, batch, flush_interval, timeout)"));
    assert_true(has_error("hook c: connector 'mongodb' is not one of: lmdb, influxdb"));
    assert_true(has_error("unknown key 'colour' in hooks[] (known: name, bus, topic, format, series, "
                          "value, values, tags, time, connector, queue, queue_bytes, max_message, "
                          "lmdb, influxdb)"));
    assert_null(load("bus: {}\n"
                     "hooks:\n"
                     "  - name: b\n"
                     "    format: protobuf\n"
                     "    connector: influxdb\n"
                     "    influxdb: {url: \"ftp://x\", database: d, batch: 0}\n"));
    assert_true(has_error(":6:21: influxdb.url 'ftp://x' must start with http:// or https://"));
    assert_true(has_error("influxdb.batch: 0 is out of range [1, 1000000]"));
    assert_null(load("bus: {}\n"
                     "hooks:\n"
                     "  - {name: a, format: protobuf, lmdb: {x: 1}}\n"
                     "  - {name: b, format: protobuf, connector: influxdb, influxdb: [x]}\n"));
    assert_true(has_error(":3:39: hook a: connector lmdb takes no options: remove lmdb:"));
    assert_true(has_error(":4:64: influxdb must be a map of keys, not a list"));
}

static void protobuf_points(void **state)
{
    struct config *c = load("bus: {}\n"
                            "hooks:\n"
                            "  - {name: pb, format: protobuf, tags: {topic: $TOPIC, env: test}}\n");
    assert_non_null(c);
    const struct hook_config *h = hook0(c);
    Casca__V1__Point p[3];
    Casca__V1__Point *pp[3];
    Casca__V1__Point__TagsEntry te = CASCA__V1__POINT__TAGS_ENTRY__INIT, *tep = &te;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts.seconds = 1767607200;
    ts.nanos = 5;
    te.key = "env";
    te.value = "prod";
    for (int i = 0; i < 3; i++) {
        casca__v1__point__init(&p[i]);
        pp[i] = &p[i];
        p[i].series = "cpu";
        p[i].value = i;
    }
    p[0].time = &ts;
    p[0].n_tags = 1;
    p[0].tags = &tep;
    p[1].value = NAN;
    Casca__V1__PublishRequest req = CASCA__V1__PUBLISH_REQUEST__INIT;
    req.n_points = 3;
    req.points = pp;
    uint8_t buf[512];
    size_t len = casca__v1__publish_request__pack(&req, buf);
    struct hook_batch b = {0};
    char err[512] = "";
    assert_int_equal(hook_protobuf_interpret(h, "m/1", buf, len, RECEIVED, &b, err, sizeof(err)),
                     CASCA_ERR_INVALID);
    assert_non_null(strstr(err, "point 1 (series 'cpu') has a value that is not a finite"));
    assert_int_equal(b.n, 2);
    assert_int_equal(b.pts[0].time_ns, T_2026_01_05_10 + 5);
    assert_int_equal(b.pts[0].ntags, 2);
    assert_string_equal(tag(&b.pts[0], "env"), "test"); /* the hook's tag replaces the point's */
    assert_string_equal(tag(&b.pts[0], "topic"), "m/1");
    assert_int_equal(b.pts[1].time_ns, RECEIVED);
    assert_true(b.pts[1].value == 2);
    hook_batch_reset(&b);
    assert_int_equal(
        hook_protobuf_interpret(h, "m/1", "\xff\xff\xff", 3, RECEIVED, &b, err, sizeof(err)),
        CASCA_ERR_INVALID);
    assert_int_equal(b.n, 0);
    hook_batch_free(&b);
    config_unref(c);
}

static void time_zones(void **state)
{
    char err[256];
    struct tz *z = tz_load("Europe/Vienna", err, sizeof(err));
    assert_non_null(z);
    /* 2026-03-29 02:30 local does not exist (clocks jump 02:00 -> 03:00): offset before */
    assert_int_equal(tz_local_to_utc(z, 1774751400), 1774751400 - 3600);
    /* 2026-10-25 02:30 local happens twice: the first (CEST) */
    assert_int_equal(tz_local_to_utc(z, 1792895400), 1792895400 - 7200);
    tz_free(z);
    assert_non_null(z = tz_load("-05:30", err, sizeof(err)));
    assert_int_equal(tz_local_to_utc(z, 0), 5 * 3600 + 1800);
    tz_free(z);
    assert_null(tz_load("../../etc/passwd", err, sizeof(err)));
    assert_null(tz_load("+25:00", err, sizeof(err)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(player_report),
        cmocka_unit_test(bad_input),
        cmocka_unit_test(tasmota_in_local_time),
        cmocka_unit_test(received_and_unix_times),
        cmocka_unit_test(times_after_2262_are_bad),
        cmocka_unit_test(config_errors_have_positions),
        cmocka_unit_test(protobuf_points),
        cmocka_unit_test(time_zones),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    config_errors_free(&errs);
    return rc;
}
