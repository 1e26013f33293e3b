/* Fuzzes the carbon CSV importer (Electricity Maps exports and the other formats it detects):
 * the first byte picks the options, the rest is the file. Parsing only: nothing is stored. */
#include <stdlib.h>
#include <string.h>

#include "carbon_csv.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct carbon_csv_options o = {.direct = data[0] & 1, .source = CARBONDB_SRC_IMPORT};
    struct carbon_csv_data d = {0};
    struct carbon_csv_report r;
    carbon_csv_parse((const char *)data + 1, size - 1, &o, &d, &r);
    carbon_csv_data_free(&d);

    char *text = strndup((const char *)data + 1, size - 1);
    if (text) {
        int64_t hour;
        carbon_csv_parse_hour(text, &hour);
        free(text);
    }
    return 0;
}
