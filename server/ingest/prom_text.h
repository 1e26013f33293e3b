/* prom_text: a reader of the Prometheus text exposition format (version 0.0.4, what every
 * /metrics endpoint serves), for the scrape probe. Each sample line becomes one call:
 *   name{label="value",...} value [timestamp_ms]
 * Comments (# HELP, # TYPE, ...) and blank lines are skipped; histograms and summaries arrive as
 * their plain samples (_bucket with le, _sum, _count, quantile), as Prometheus stores them. */
#ifndef CASCA_PROM_TEXT_H
#define CASCA_PROM_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROM_TEXT_MAX_LABELS 32

struct prom_text_label {
    const char *name, *value;
};

/* One sample; the strings point into the parsed text. */
typedef void (*prom_text_sample_fn)(void *arg, const char *name,
                                    const struct prom_text_label *labels, size_t nlabels,
                                    double value, bool has_time, int64_t time_ms);

/* Parses text (NUL-terminated; modified in place: label values are unescaped there) and calls
 * fn for every valid sample line. Returns how many lines were not valid sample lines, the first
 * one's number and reason in why ("" when none). Never fails otherwise. Any thread. */
size_t prom_text_parse(char *text, prom_text_sample_fn fn, void *arg, char *why, size_t whylen);

#endif
