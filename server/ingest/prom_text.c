#include "prom_text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool name_char(char c)
{
    return name_start(c) || (c >= '0' && c <= '9');
}

static char *skip_blanks(char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* A label value "..." at p (after the quote), unescaped in place; the char after the closing
 * quote, or NULL. */
static char *label_value(char *p)
{
    char *out = p;
    for (; *p != '"'; p++) {
        if (!*p || *p == '\n') return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'n') *out++ = '\n';
            else if (*p == '\\' || *p == '"') *out++ = *p;
            else return NULL;
        } else {
            *out++ = *p;
        }
    }
    *out = 0;
    return p + 1;
}

/* One line (NUL-terminated, no newline): NULL and the sample, or the reason it is not one. */
static const char *parse_line(char *p, prom_text_sample_fn fn, void *arg)
{
    if (!name_start(*p)) return "a metric name must start with a letter, '_' or ':'";
    char *name = p;
    while (name_char(*p))
        p++;
    char *name_end = p;
    struct prom_text_label labels[PROM_TEXT_MAX_LABELS];
    size_t n = 0;
    char *after = skip_blanks(p);
    if (*after == '{') {
        *name_end = 0;
        p = skip_blanks(after + 1);
        while (*p != '}') {
            if (n == PROM_TEXT_MAX_LABELS) return "more than 32 labels";
            if (!name_start(*p) || *p == ':') return "a label name must start with a letter or '_'";
            labels[n].name = p;
            while (name_char(*p) && *p != ':')
                p++;
            char *label_end = p;
            p = skip_blanks(p);
            if (*p != '=') return "a label needs =";
            p = skip_blanks(p + 1);
            if (*p != '"') return "a label value must be quoted";
            *label_end = 0;
            labels[n].value = p + 1;
            if (!(p = label_value(p + 1))) return "a label value is not closed or has a bad escape";
            n++;
            p = skip_blanks(p);
            if (*p == ',') p = skip_blanks(p + 1);
            else if (*p != '}') return "labels must be separated by ','";
        }
        p++;
    }
    if (*p != ' ' && *p != '\t') return "a value must follow the name after a space";
    char *value_at = skip_blanks(p);
    *name_end = 0;
    p = value_at;
    char *end;
    double value = strtod(p, &end);
    if (end == p) return "the value is not a number";
    p = skip_blanks(end);
    bool has_time = false;
    long long ms = 0;
    if (*p) {
        errno = 0;
        ms = strtoll(p, &end, 10);
        if (end == p || errno) return "the timestamp is not an integer of milliseconds";
        has_time = true;
        if (*skip_blanks(end)) return "unexpected text after the timestamp";
    }
    fn(arg, name, labels, n, value, has_time, (int64_t)ms);
    return NULL;
}

size_t prom_text_parse(char *text, prom_text_sample_fn fn, void *arg, char *why, size_t whylen)
{
    size_t bad = 0, line = 0;
    if (whylen) *why = 0;
    for (char *p = text; *p;) {
        char *eol = strchr(p, '\n');
        char *next = eol ? eol + 1 : p + strlen(p);
        if (eol) *eol = 0;
        if (eol > p && eol[-1] == '\r') eol[-1] = 0;
        line++;
        char *s = skip_blanks(p);
        const char *err = *s && *s != '#' ? parse_line(s, fn, arg) : NULL;
        if (err && !bad++ && whylen) snprintf(why, whylen, "line %zu: %s", line, err);
        p = next;
    }
    return bad;
}
