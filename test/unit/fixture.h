/* fixture: what several unit tests set up the same way: a fresh temporary directory (a store's
 * data dir, config files) and its removal. Header-only; include after cmocka.h. */
#ifndef CASCA_TEST_FIXTURE_H
#define CASCA_TEST_FIXTURE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw */
#endif
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A new directory /tmp/casca-<name>-XXXXXX (malloc'ed path), or NULL. */
static inline char *fixture_tmpdir(const char *name)
{
    char *dir = NULL;
    if (asprintf(&dir, "/tmp/casca-%s-XXXXXX", name) < 0)
        return NULL;
    if (!mkdtemp(dir)) {
        free(dir);
        return NULL;
    }
    return dir;
}

static inline int fixture_remove_entry(const char *path, const struct stat *sb, int flag,
                                       struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes dir and everything under it; 0 or -1. */
static inline int fixture_remove_tree(const char *dir)
{
    return nftw(dir, fixture_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
