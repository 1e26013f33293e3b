/* Replays fuzz inputs without libFuzzer (any compiler): calls LLVMFuzzerTestOneInput once per file
 * of the directories (or files) given, so `make test` re-runs the seed corpus and every crash
 * input ever found, in both the plain and the ASan build. A missing directory is skipped. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, n;
    do {
        if (len == cap) {
            uint8_t *grown = realloc(buf, cap = cap ? 2 * cap : 4096);
            if (!grown) {
                free(buf);
                fclose(f);
                return 1;
            }
            buf = grown;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    fclose(f);
    /* an exact-size copy, so ASan sees a read past the input as libFuzzer would */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return 1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    size_t files = 0;
    int failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0)
            continue; /* e.g. no crash has been found for this harness yet */
        if (!S_ISDIR(st.st_mode)) {
            failed |= replay_file(argv[i]);
            files++;
            continue;
        }
        struct dirent **names;
        int n = scandir(argv[i], &names, NULL, NULL);
        if (n < 0) {
            perror(argv[i]);
            return 1;
        }
        char **sorted = calloc((size_t)n + 1, sizeof(*sorted));
        for (int j = 0; sorted && j < n; j++)
            sorted[j] = names[j]->d_name;
        if (sorted)
            qsort(sorted, (size_t)n, sizeof(*sorted), cmp);
        for (int j = 0; sorted && j < n; j++) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[i], sorted[j]);
            if (sorted[j][0] == '.' || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            printf("replay %s\n", path);
            fflush(stdout);
            failed |= replay_file(path);
            files++;
        }
        free(sorted);
        for (int j = 0; j < n; j++)
            free(names[j]);
        free(names);
    }
    printf("replayed %zu inputs\n", files);
    return failed;
}
