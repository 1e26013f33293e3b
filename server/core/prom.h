/* prom: writes the Prometheus text exposition format (version 0.0.4) into a growing buffer:
 * families with their # HELP and # TYPE lines, samples with escaped label values, histograms.
 * Pure (no I/O, no locks); one buffer is used by one thread at a time. */
#ifndef CASCA_PROM_H
#define CASCA_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The Content-Type of what these functions write. */
#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The text written so far. After an allocation failure failed is true, nothing more is written
 * and data holds what fitted (do not serve it). Zero-initialise; free data with prom_buf_free. */
struct prom_buf {
    char *data; /* NUL-terminated when not NULL */
    size_t len, cap;
    bool failed;
};
void prom_buf_free(struct prom_buf *b); /* frees data; b can be reused */

struct prom_label {
    const char *name;  /* a valid label name ([a-zA-Z_][a-zA-Z0-9_]*): written as is */
    const char *value; /* any UTF-8 text: escaped (\\, \", \n) */
};

/* "# HELP name help\n# TYPE name type\n"; type is "gauge", "counter" or "histogram"; help is
 * escaped (\\, \n). Write a family's header once, before its samples. */
void prom_family(struct prom_buf *b, const char *name, const char *type, const char *help);
/* "name{l1="v1",...} value\n" (no braces without labels). */
void prom_sample(struct prom_buf *b, const char *name, const struct prom_label *labels, size_t n,
                 double value);
/* The same with one label, the common case. */
void prom_sample1(struct prom_buf *b, const char *name, const char *label, const char *value,
                  double v);
/* A histogram's samples: name_bucket{labels...,le="bound"} with cumulative counts (counts[] holds
 * nbounds + 1 per-bucket counts, the last one for +Inf), then name_sum (sum, in the metric's
 * unit) and name_count. */
void prom_histogram(struct prom_buf *b, const char *name, const struct prom_label *labels, size_t n,
                    const double *bounds, const uint64_t *counts, size_t nbounds, double sum);

/* A sample value as the format writes it: "NaN", "+Inf", "-Inf", integers without a fraction,
 * others in the shortest form that reads back as the same double. buf needs 32 bytes. */
const char *prom_format_value(double v, char *buf, size_t len);

#endif
