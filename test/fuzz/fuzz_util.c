#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "sections.h"

static char dir[256];

static void remove_dir(void)
{
    char cmd[300];
    if (dir[0] && snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir) < (int)sizeof(cmd))
        if (system(cmd) != 0)
            fprintf(stderr, "fuzz: could not remove %s\n", dir);
}

const char *fuzz_dir(void)
{
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof(dir), "%s/casca-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(remove_dir);
    }
    return dir;
}

const char *fuzz_write(const char *name, const void *data, size_t len)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    size_t w = len ? fwrite(data, 1, len, f) : 0;
    return fclose(f) == 0 && w == len ? path : NULL;
}

void fuzz_load_with_file(const char *main_config, const char *name, const uint8_t *data,
                         size_t size)
{
    if (!fuzz_write(name, data, size))
        return;
    const char *path = fuzz_write("casca.yaml", main_config, strlen(main_config));
    struct config *c = NULL;
    struct config_errors errs = {0};
    if (path)
        config_load(path, NULL, cascad_config_sections, &c, &errs);
    config_unref(c);
    config_errors_free(&errs);
}
