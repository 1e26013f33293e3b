/* The allocation hook of salloc.h (only in the casca_store_faults library). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "salloc.h"

static atomic_long fail_at = -1, count, failed;
static atomic_bool sticky;

void salloc_fail_at(long n, bool stick)
{
    atomic_store(&count, 0);
    atomic_store(&failed, 0);
    atomic_store(&sticky, stick);
    atomic_store(&fail_at, n);
}

long salloc_count(void)
{
    return atomic_load(&count);
}

long salloc_failed(void)
{
    return atomic_load(&failed);
}

/* Whether this allocation is to fail. */
static bool fail_now(void)
{
    long at = atomic_load(&fail_at), i = atomic_fetch_add(&count, 1);
    bool fail = at >= 0 && (i == at || (i > at && atomic_load(&sticky)));
    if (fail) atomic_fetch_add(&failed, 1);
    return fail;
}

#undef malloc
#undef calloc
#undef realloc
#undef strdup

void *salloc_malloc(size_t n)
{
    return fail_now() ? NULL : malloc(n);
}

void *salloc_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : calloc(n, size);
}

void *salloc_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : realloc(p, n);
}

char *salloc_strdup(const char *s)
{
    return fail_now() ? NULL : strdup(s);
}
