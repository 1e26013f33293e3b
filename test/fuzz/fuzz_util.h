/* Shared by the fuzz harnesses: a private temporary directory for the files a harness hands to
 * the code under test (config files, SLO files), so that no fuzzer writes anywhere else. */
#ifndef CASCA_FUZZ_UTIL_H
#define CASCA_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The directory (created on first use under $TMPDIR or /tmp, removed at exit). */
const char *fuzz_dir(void);
/* Writes len bytes to fuzz_dir()/name; returns the path (static buffer, valid until the next
 * call) or NULL. */
const char *fuzz_write(const char *name, const void *data, size_t len);
/* Loads main_config (text) as casca.yaml after writing the input as the file `name` that it
 * includes (settings_files:, slo_files:), then frees what was loaded. */
void fuzz_load_with_file(const char *main_config, const char *name, const uint8_t *data,
                         size_t size);

#endif
