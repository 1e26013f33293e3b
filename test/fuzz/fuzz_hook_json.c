/* Fuzzes the hook JSON interpreter with every time format: the first byte picks one of the hooks
 * below, the rest is the message. The message's text is also read as a time in that format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_util.h"
#include "hooks.h"
#include "sections.h"

static const char hooks_config[] =
    "bus: {}\n"
    "hooks:\n"
    "  - {name: strptime, values: {v: /v, w: {field: /a/0/w, default: 1}}, tags: {t: /t, "
    "topic: $TOPIC, site: lab}, time: {field: /time, format: \"%Y-%m-%d %H:%M:%S\", "
    "timezone: Europe/Vienna}}\n"
    "  - {name: strptime_zone, series: s, value: /v, time: {field: /time, "
    "format: \"%Y-%m-%dT%H:%M:%S%z\"}}\n"
    "  - {name: rfc3339, series: s, value: /v, tags: {t: {field: /t, default: none}}, "
    "time: {field: /time, format: rfc3339, timezone: America/New_York}}\n"
    "  - {name: rfc3339_utc, series: s, value: /v, time: {field: /time, format: rfc3339, "
    "default: $RECEIVED}}\n"
    "  - {name: unix, series: s, value: /v, time: {field: /time, format: unix}}\n"
    "  - {name: unix_ms, series: s, value: /v, time: {field: /time, format: unix_ms, "
    "default: 1767607200123}}\n"
    "  - {name: unix_us, series: s, value: {field: /v, default: 0}, time: {field: /time, "
    "format: unix_us}}\n"
    "  - {name: unix_ns, series: s, value: /v, time: {field: /time, format: unix_ns}}\n"
    "  - {name: received, series: s, value: /v}\n";

static struct config *cfg;
static const struct hooks_section *sec;

static void unload(void)
{
    config_unref(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cfg) {
        const char *path = fuzz_write("hooks.yaml", hooks_config, strlen(hooks_config));
        struct config_errors errs = {0};
        if (!path || config_load(path, NULL, cascad_config_sections, &cfg, &errs) != 0) {
            for (size_t i = 0; i < errs.n; i++)
                fprintf(stderr, "fuzz_hook_json: %s\n", errs.lines[i]);
            abort();
        }
        config_errors_free(&errs);
        sec = config_section_of(cfg, &hooks_config_section);
        atexit(unload);
    }
    if (size < 1)
        return 0;
    const struct hook_config *h = &sec->hooks[data[0] % sec->nhooks];
    struct hook_batch b = {0};
    char err[512];
    hook_json_interpret(h, "tele/plug1", data + 1, size - 1, 1800000000000000000LL, &b, err,
                        sizeof(err));
    hook_batch_free(&b);

    char *text = strndup((const char *)data + 1, size - 1);
    if (text) {
        int64_t ns;
        hook_time_parse_string(&h->time, text, &ns);
        free(text);
    }
    return 0;
}
