/* salloc: how the stores allocate. Normally this header does nothing and the stores call libc.
 * Built with CASCA_ALLOC_HOOK (the casca_store_faults library, for unit tests only), every
 * malloc, calloc, realloc and strdup of the stores first asks a hook that can fail the Nth one
 * from now, so a test can walk every allocation failure of an operation and check that each
 * one gives an error, leaks nothing and leaves the store readable (STYLE 9, after SQLite's
 * fault injection). Include it after the system headers. */
#ifndef CASCA_SALLOC_H
#define CASCA_SALLOC_H

#ifdef CASCA_ALLOC_HOOK
#include <stdbool.h>
#include <stddef.h>

void *salloc_malloc(size_t n);
void *salloc_calloc(size_t n, size_t size);
void *salloc_realloc(void *p, size_t n);
char *salloc_strdup(const char *s);
#define malloc(n) salloc_malloc(n)
#define calloc(n, size) salloc_calloc(n, size)
#define realloc(p, n) salloc_realloc(p, n)
#define strdup(s) salloc_strdup(s)

/* From now on, allocation number n (0: the next one) fails, and with sticky every later one
 * too; n < 0: none fails. Resets the count. Any thread. */
void salloc_fail_at(long n, bool sticky);
/* Allocations asked for since the last salloc_fail_at, and how many of them failed. */
long salloc_count(void);
long salloc_failed(void);
#endif

#endif
