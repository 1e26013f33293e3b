/* Fuzzes settings files: the input is a file named by settings_files: of a fixed configuration. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_load_with_file("settings_files: [settings.yaml]\n", "settings.yaml", data, size);
    return 0;
}
