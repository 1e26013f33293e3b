/* Fuzzes config loading: the input is a whole configuration file, YAML or JSON (libyaml reads
 * both), loaded with every feature section (settings, carbon, bus/hooks, probes, tsdb, SLOs). */
#include <stdlib.h>

#include "config.h"
#include "fuzz_util.h"
#include "sections.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("casca.yaml", data, size);
    if (!path)
        return 0;
    struct config *c = NULL;
    struct config_errors errs = {0};
    if (config_load(path, NULL, cascad_config_sections, &c, &errs) == 0) {
        struct config_errors warnings = {0};
        config_restart_warnings(c, c, &warnings); /* a reload to the same file */
        config_errors_free(&warnings);
    }
    config_unref(c);
    config_errors_free(&errs);
    return 0;
}
