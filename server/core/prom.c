#include "prom.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void prom_buf_free(struct prom_buf *b)
{
    free(b->data);
    *b = (struct prom_buf){0};
}

static bool reserve(struct prom_buf *b, size_t more)
{
    if (b->failed) return false;
    if (b->len + more + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *grown = realloc(b->data, cap);
    if (!grown) {
        b->failed = true;
        return false;
    }
    b->data = grown;
    b->cap = cap;
    return true;
}

static void put(struct prom_buf *b, const char *s, size_t n)
{
    if (!reserve(b, n)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void puts_(struct prom_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* s with \ and newline escaped, and " too when quote (label values; HELP text leaves it). */
static void put_escaped(struct prom_buf *b, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = *s == '\\'           ? "\\\\"
                          : *s == '\n'         ? "\\n"
                          : quote && *s == '"' ? "\\\""
                                               : NULL;
        if (!esc) continue;
        put(b, run, (size_t)(s - run));
        put(b, esc, 2);
        run = s + 1;
    }
    put(b, run, (size_t)(s - run));
}

const char *prom_format_value(double v, char *buf, size_t len)
{
    if (isnan(v))
        snprintf(buf, len, "NaN");
    else if (isinf(v))
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, len, "%.0f", v == 0 ? 0.0 : v); /* no "-0" */
    else {
        snprintf(buf, len, "%.15g", v);
        if (strtod(buf, NULL) != v) snprintf(buf, len, "%.17g", v);
    }
    return buf;
}

void prom_family(struct prom_buf *b, const char *name, const char *type, const char *help)
{
    puts_(b, "# HELP ");
    puts_(b, name);
    put(b, " ", 1);
    put_escaped(b, help, false);
    puts_(b, "\n# TYPE ");
    puts_(b, name);
    put(b, " ", 1);
    puts_(b, type);
    put(b, "\n", 1);
}

static void put_labels(struct prom_buf *b, const struct prom_label *labels, size_t n,
                       const char *le)
{
    if (!n && !le) return;
    put(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        if (i) put(b, ",", 1);
        puts_(b, labels[i].name);
        put(b, "=\"", 2);
        put_escaped(b, labels[i].value ? labels[i].value : "", true);
        put(b, "\"", 1);
    }
    if (le) {
        puts_(b, n ? ",le=\"" : "le=\"");
        puts_(b, le);
        put(b, "\"", 1);
    }
    put(b, "}", 1);
}

static void put_value(struct prom_buf *b, double v)
{
    char num[32];
    put(b, " ", 1);
    puts_(b, prom_format_value(v, num, sizeof(num)));
    put(b, "\n", 1);
}

void prom_sample(struct prom_buf *b, const char *name, const struct prom_label *labels, size_t n,
                 double value)
{
    puts_(b, name);
    put_labels(b, labels, n, NULL);
    put_value(b, value);
}

void prom_sample1(struct prom_buf *b, const char *name, const char *label, const char *value,
                  double v)
{
    struct prom_label l = {label, value};
    prom_sample(b, name, &l, 1, v);
}

void prom_histogram(struct prom_buf *b, const char *name, const struct prom_label *labels, size_t n,
                    const double *bounds, const uint64_t *counts, size_t nbounds, double sum)
{
    uint64_t total = 0;
    char le[32];
    for (size_t i = 0; i <= nbounds; i++) {
        total += counts[i];
        puts_(b, name);
        puts_(b, "_bucket");
        put_labels(b, labels, n,
                   i < nbounds ? prom_format_value(bounds[i], le, sizeof(le)) : "+Inf");
        put_value(b, (double)total);
    }
    puts_(b, name);
    puts_(b, "_sum");
    put_labels(b, labels, n, NULL);
    put_value(b, sum);
    puts_(b, name);
    puts_(b, "_count");
    put_labels(b, labels, n, NULL);
    put_value(b, (double)total);
}
