/* Fuzzes SLO files: the input is a file named by slo_files: of a fixed configuration. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_load_with_file("slo_files: [slos.yaml]\n", "slos.yaml", data, size);
    return 0;
}
