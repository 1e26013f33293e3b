/* Fuzzes SLO files: the input is a file named by slo_files: of a fixed configuration. */
#include <string.h>

#include "config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char main_config[] = "slo_files: [slos.yaml]\n";
    if (!fuzz_write("slos.yaml", data, size))
        return 0;
    const char *path = fuzz_write("casca.yaml", main_config, strlen(main_config));
    struct config *c = NULL;
    struct config_errors errs = {0};
    if (path)
        config_load(path, NULL, &c, &errs);
    config_unref(c);
    config_errors_free(&errs);
    return 0;
}
