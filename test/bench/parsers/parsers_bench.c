/*
 * parsers_bench.c - measure the YAML and JSON libraries casca could use.
 *
 *   YAML: libyaml (event API)  vs  libfyaml (event API and document API)
 *   JSON: jansson              vs  cJSON
 *
 * Every input is generated here, nothing is read from disk. The program
 * prints Markdown (tables and error transcripts) on stdout, which is what
 * RESULTS.md is made of. Build and run it with run.sh next to this file.
 *
 * Usage: parsers_bench [--runs N] [--messages N]
 *   --runs N      timed runs per parse/serialise measurement (default 50)
 *   --messages N  JSON messages per throughput run (default 1000000)
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <jansson.h>
#include <libfyaml.h>
#include <yaml.h>

#define WARMUP_RUNS 3
#define MAX_DEPTH 64

static int g_runs = 50;
static long g_messages = 1000000;

/* ------------------------------------------------------------------------
 * Small utilities: growable string, clock, memory figures, statistics.
 * ---------------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
};

static void sbuf_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            abort();
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        b->cap = (b->cap + (size_t)n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Bytes currently allocated through malloc (small chunks and mmapped ones). */
static long heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (long)(mi.uordblks + mi.hblkhd);
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* 1-based line and column (in characters) of byte offset `off` in `src`. */
static void line_col_of(const char *src, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && src[i]; i++) {
        if (src[i] == '\n') {
            (*line)++;
            *col = 1;
        } else if (((unsigned char)src[i] & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

/* Start offset of every line, to turn a parser's (line, column) back into
 * a byte offset when checking that the position really points at the node. */
struct line_index {
    size_t *start;
    int count;
};

static struct line_index line_index_build(const char *src, size_t len)
{
    struct line_index li = {malloc(sizeof(size_t) * (len + 2)), 0};
    li.start[li.count++] = 0;
    for (size_t i = 0; i < len; i++)
        if (src[i] == '\n')
            li.start[li.count++] = i + 1;
    return li;
}

/* Byte offset of 0-based `line` / `column`, the column counted in
 * characters (code points), or -1 if it is outside the text. */
static long line_index_offset(const struct line_index *li, const char *src,
                              int line, int column)
{
    if (line < 0 || line >= li->count || column < 0)
        return -1;
    size_t off = li->start[line];
    for (int c = 0; c < column; c++) {
        if (src[off] == '\n' || src[off] == '\0')
            return -1;
        off++;
        while (((unsigned char)src[off] & 0xC0) == 0x80)
            off++;
    }
    return (long)off;
}

/* ------------------------------------------------------------------------
 * Forked, interleaved measurement. The jobs of one table are timed in
 * ROUNDS rounds (job 1, job 2, ..., then job 1 again, ...), each round in a
 * fresh child process: a slow spell of this shared machine then hits every
 * library alike, each peak RSS is the job's own, and a crash in one library
 * cannot spoil the others.
 * ---------------------------------------------------------------------- */

#define ROUNDS 5
#define MAX_RUNS_PER_ROUND 200

struct job {
    const char *name;
    void *(*run)(const void *ctx);  /* the timed work; returns what it built */
    void (*release)(void *result);  /* untimed clean-up of that result */
    const void *ctx;
};

struct perf {
    bool ok;
    double median_ms;
    long heap_bytes;     /* malloc'ed bytes the result holds while alive */
    long rss_delta_kib;  /* peak RSS growth during a round (largest round) */
};

struct round_result {
    bool ok;
    long heap_bytes, rss_delta_kib;
    int count;
    double ms[MAX_RUNS_PER_ROUND];
};

static int runs_per_round(void) { return (g_runs + ROUNDS - 1) / ROUNDS; }

static void run_round(const struct job *job, struct round_result *rr)
{
    long rss0 = peak_rss_kib();
    long heap0 = heap_in_use();
    void *r = job->run(job->ctx);
    rr->heap_bytes = heap_in_use() - heap0;
    rr->ok = r != NULL;
    if (!r)
        return;
    job->release(r);

    for (int i = 0; i < WARMUP_RUNS; i++)
        job->release(job->run(job->ctx));
    rr->count = runs_per_round();
    for (int i = 0; i < rr->count; i++) {
        double t0 = now_ms();
        r = job->run(job->ctx);
        rr->ms[i] = now_ms() - t0;
        job->release(r);
    }
    rr->rss_delta_kib = peak_rss_kib() - rss0;
}

static bool read_full(int fd, void *buf, size_t len)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

static void run_round_in_child(const struct job *job, struct round_result *rr)
{
    int fd[2];
    fflush(stdout);
    if (pipe(fd) != 0)
        abort();
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        run_round(job, rr);
        ssize_t n = write(fd[1], rr, sizeof *rr);
        _exit(n == (ssize_t)sizeof *rr ? 0 : 1);
    }
    close(fd[1]);
    if (!read_full(fd[0], rr, sizeof *rr))
        rr->ok = false;
    close(fd[0]);
    waitpid(pid, NULL, 0);
}

static void measure_all(const struct job *jobs, int n, struct perf *out)
{
    int per_job = runs_per_round() * ROUNDS;
    double *ms = malloc(sizeof(double) * (size_t)(n * per_job));
    struct round_result *rr = malloc(sizeof *rr);

    for (int j = 0; j < n; j++)
        out[j] = (struct perf){.ok = true};
    for (int round = 0; round < ROUNDS; round++) {
        for (int j = 0; j < n; j++) {
            memset(rr, 0, sizeof *rr);
            run_round_in_child(&jobs[j], rr);
            out[j].ok = out[j].ok && rr->ok;
            out[j].heap_bytes = rr->heap_bytes;
            if (rr->rss_delta_kib > out[j].rss_delta_kib)
                out[j].rss_delta_kib = rr->rss_delta_kib;
            if (rr->ok)
                memcpy(ms + j * per_job + round * rr->count, rr->ms,
                       sizeof(double) * (size_t)rr->count);
        }
    }
    for (int j = 0; j < n; j++)
        if (out[j].ok)
            out[j].median_ms = median(ms + j * per_job, per_job);
    free(rr);
    free(ms);
}

/* ========================================================================
 * YAML
 * ====================================================================== */

/* The configuration casca would load: settings, a few hooks, and n SLOs.
 * Some descriptions and label keys are non-ASCII so that column numbers
 * are checked on lines where bytes and characters differ. */
static char *make_config(int n_slos, size_t *len)
{
    static const struct {
        const char *series, *aggregation, *objective;
    } kinds[] = {
        {"transcoding_fps", "mean", "{min: 24, max: 30}"},
        {"dropped_frames", "sum", "{max: 0}"},
        {"power_w", "max", "{max: 20.5}"},
        {"latency_ms", "p99", "{max: 250}"},
    };
    static const char *windows[] = {"1m", "5m", "15m", "1h"};
    struct sbuf b = {0};

    sbuf_printf(&b,
        "# casca configuration, generated by parsers_bench.c\n"
        "settings:\n"
        "  listen: \"127.0.0.1:8080\"\n"
        "  store: \"sqlite:///var/lib/casca/casca.db\"\n"
        "  evaluation_interval: 15s\n"
        "  retention: 30d\n"
        "  log_level: info\n"
        "hooks:\n"
        "  - name: notify-ops\n"
        "    on: [violation, recovery]\n"
        "    command: [\"/usr/local/bin/notify\", \"--channel\", \"#ops\"]\n"
        "    timeout: 10s\n"
        "  - name: page-oncall\n"
        "    on: [violation]\n"
        "    command: [\"/usr/local/bin/page\", \"--team\", \"video\"]\n"
        "    timeout: 5s\n"
        "    env:\n"
        "      PAGER_URL: \"https://pager.example/hooks/casca\"\n"
        "  - name: archive\n"
        "    on: [recovery]\n"
        "    command: [\"/usr/bin/logger\", \"-t\", \"casca\"]\n"
        "    timeout: 2s\n"
        "slos:\n");

    for (int i = 0; i < n_slos; i++) {
        int k = i % 4;
        sbuf_printf(&b, "  - id: ServiceSLO%04d\n", i + 1);
        if (i % 3 == 0)
            sbuf_printf(&b, "    description: \"\"\n");
        else if (i % 3 == 1)
            sbuf_printf(&b, "    description: \"%s of encoder %d stays in range\"\n",
                        kinds[k].series, i % 97);
        else
            sbuf_printf(&b, "    description: \"Débit ≥ objectif sur l'encodeur %d\"\n",
                        i % 97);
        sbuf_printf(&b,
            "    series: %s\n"
            "    aggregation: %s\n"
            "    window: %s\n"
            "    objective: %s\n",
            kinds[k].series, kinds[k].aggregation, windows[i % 4],
            kinds[k].objective);
        if (i % 2 == 0)
            sbuf_printf(&b, "    labels: {équipe: vidéo, site: edge-%02d}\n", i % 40);
        else
            sbuf_printf(&b, "    labels:\n      équipe: vidéo\n      site: edge-%02d\n", i % 40);
    }
    *len = b.len;
    return b.p;
}

/* ---- casca's own tree: every node carries its 1-based line:column ---- */

enum cnode_kind { CN_SCALAR, CN_MAP, CN_SEQ };

struct cnode {
    enum cnode_kind kind;
    int line, col;             /* 1-based, as printed in file:line:col */
    char *text;                /* scalars only, NUL-terminated */
    size_t len;
    struct cnode *first, *last; /* children; a map alternates key, value */
    struct cnode *next;
};

static void cnode_free(struct cnode *n)
{
    while (n) {
        struct cnode *next = n->next;
        cnode_free(n->first);
        free(n->text);
        free(n);
        n = next;
    }
}

static void cnode_release(void *n) { cnode_free(n); }

/* What a parser said about a malformed file. */
struct parse_error {
    int line, col; /* 1-based; 0 if unknown */
    char msg[256];
};

struct tree_builder {
    struct cnode *root;
    struct cnode *stack[MAX_DEPTH];
    int depth;
};

/* Adds a node under the open collection; a new collection becomes the open
 * one. Returns false when nesting is too deep or a second root appears. */
static bool tb_add(struct tree_builder *tb, struct cnode *n)
{
    if (tb->depth == 0) {
        if (tb->root)
            return false;
        tb->root = n;
    } else {
        struct cnode *parent = tb->stack[tb->depth - 1];
        if (parent->last)
            parent->last->next = n;
        else
            parent->first = n;
        parent->last = n;
    }
    if (n->kind != CN_SCALAR) {
        if (tb->depth == MAX_DEPTH)
            return false;
        tb->stack[tb->depth++] = n;
    }
    return true;
}

/* The event APIs do not reject duplicate keys, so the builder does: returns
 * the second occurrence of a repeated scalar key in a mapping, or NULL. */
static const struct cnode *find_duplicate_key(const struct cnode *map, const struct cnode **first)
{
    for (const struct cnode *k = map->first; k && k->next; k = k->next->next) {
        for (const struct cnode *o = map->first; o != k; o = o->next->next) {
            if (k->kind == CN_SCALAR && o->kind == CN_SCALAR && k->len == o->len &&
                memcmp(k->text, o->text, k->len) == 0) {
                *first = o;
                return k;
            }
        }
    }
    return NULL;
}

/* Closes the open collection; false (with err filled in) on a duplicate key. */
static bool tb_end(struct tree_builder *tb, struct parse_error *err)
{
    if (tb->depth == 0)
        return true;
    const struct cnode *n = tb->stack[--tb->depth], *first, *dup;
    if (n->kind != CN_MAP || !(dup = find_duplicate_key(n, &first)))
        return true;
    if (err) {
        err->line = dup->line;
        err->col = dup->col;
        snprintf(err->msg, sizeof err->msg, "duplicate key \"%s\", first defined at %d:%d "
                 "(found by the bench's tree builder)", dup->text, first->line, first->col);
    }
    return false;
}

static struct cnode *cnode_new(enum cnode_kind kind, int line0, int col0)
{
    struct cnode *n = calloc(1, sizeof *n);
    n->kind = kind;
    n->line = line0 + 1;
    n->col = col0 + 1;
    return n;
}

/* ---- libyaml: event API -> cnode tree ---- */

static struct cnode *libyaml_build(const char *src, size_t len, struct parse_error *err)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    struct tree_builder tb = {0};
    bool done = false, ok = true;

    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)src, len);
    while (ok && !done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            if (err) {
                err->line = (int)parser.problem_mark.line + 1;
                err->col = (int)parser.problem_mark.column + 1;
                if (parser.context)
                    snprintf(err->msg, sizeof err->msg, "%s (%s, at %d:%d)",
                             parser.problem, parser.context,
                             (int)parser.context_mark.line + 1,
                             (int)parser.context_mark.column + 1);
                else
                    snprintf(err->msg, sizeof err->msg, "%s", parser.problem);
            }
            ok = false;
            break;
        }
        int line = (int)ev.start_mark.line, col = (int)ev.start_mark.column;
        struct cnode *n;
        switch (ev.type) {
        case YAML_SCALAR_EVENT:
            n = cnode_new(CN_SCALAR, line, col);
            /* take over the scalar libyaml already copied instead of copying again */
            n->text = (char *)ev.data.scalar.value;
            n->len = ev.data.scalar.length;
            ev.data.scalar.value = NULL;
            ok = tb_add(&tb, n);
            break;
        case YAML_MAPPING_START_EVENT:
            ok = tb_add(&tb, cnode_new(CN_MAP, line, col));
            break;
        case YAML_SEQUENCE_START_EVENT:
            ok = tb_add(&tb, cnode_new(CN_SEQ, line, col));
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            ok = tb_end(&tb, err);
            break;
        case YAML_ALIAS_EVENT: /* casca's config has no use for anchors */
            ok = false;
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (!ok) {
        cnode_free(tb.root);
        return NULL;
    }
    return tb.root;
}

/* ---- libfyaml: event API -> cnode tree ---- */

/* A diagnostic object that collects errors instead of printing them. */
static struct fy_diag *fy_collecting_diag(void)
{
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.colorize = false;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    fy_diag_set_collect_errors(diag, true);
    return diag;
}

static void fy_first_error(struct fy_diag *diag, struct parse_error *err)
{
    void *it = NULL;
    struct fy_diag_error *e = fy_diag_errors_iterate(diag, &it);
    if (e) {
        err->line = e->line; /* already 1-based */
        err->col = e->column;
        snprintf(err->msg, sizeof err->msg, "%s", e->msg);
    } else {
        snprintf(err->msg, sizeof err->msg, "(no diagnostic collected)");
    }
}

static struct cnode *libfyaml_build(const char *src, size_t len, struct parse_error *err)
{
    struct fy_diag *diag = err ? fy_collecting_diag() : NULL;
    struct fy_parse_cfg cfg = {.flags = FYPCF_QUIET, .diag = diag};
    struct fy_parser *parser = fy_parser_create(&cfg);
    struct tree_builder tb = {0};
    struct fy_event *ev;
    bool ok = true;

    fy_parser_set_string(parser, src, len);
    while (ok && (ev = fy_parser_parse(parser)) != NULL) {
        const struct fy_mark *m = fy_event_start_mark(ev);
        struct cnode *n;
        const char *text;
        switch (ev->type) {
        case FYET_SCALAR:
            n = cnode_new(CN_SCALAR, m->line, m->column);
            text = fy_token_get_text(ev->scalar.value, &n->len);
            n->text = strndup(text, n->len);
            ok = tb_add(&tb, n);
            break;
        case FYET_MAPPING_START:
            ok = tb_add(&tb, cnode_new(CN_MAP, m->line, m->column));
            break;
        case FYET_SEQUENCE_START:
            ok = tb_add(&tb, cnode_new(CN_SEQ, m->line, m->column));
            break;
        case FYET_MAPPING_END:
        case FYET_SEQUENCE_END:
            ok = tb_end(&tb, err);
            break;
        case FYET_ALIAS:
            ok = false;
            break;
        default:
            break;
        }
        fy_parser_event_free(parser, ev);
    }
    if (fy_parser_get_stream_error(parser)) {
        ok = false;
        if (err)
            fy_first_error(diag, err);
    }
    fy_parser_destroy(parser);
    if (diag)
        fy_diag_destroy(diag);
    if (!ok) {
        cnode_free(tb.root);
        return NULL;
    }
    return tb.root;
}

/* ---- libfyaml: document API (the tree is libfyaml's own) ---- */

static struct fy_document *libfyaml_doc(const char *src, size_t len, struct parse_error *err)
{
    struct fy_diag *diag = err ? fy_collecting_diag() : NULL;
    struct fy_parse_cfg cfg = {.flags = FYPCF_QUIET, .diag = diag};
    struct fy_document *doc = fy_document_build_from_string(&cfg, src, len);
    if (!doc && err)
        fy_first_error(diag, err);
    if (diag)
        fy_diag_destroy(diag);
    return doc;
}

/* ---- Checking positions: does every key and value know where it is? ---- */

struct pos_stats {
    long keys, keys_ok;             /* scalar keys whose mark points at them */
    long values, values_ok;         /* scalar values, same check */
    long collections, collections_pos; /* maps/sequences with any position */
};

/* The mark is right if the text at it is the scalar (after an opening
 * quote for quoted scalars). Only the first bytes are compared. */
static bool mark_points_at(const struct line_index *li, const char *src,
                           int line0, int col0, const char *text, size_t len)
{
    long off = line_index_offset(li, src, line0, col0);
    if (off < 0)
        return false;
    const char *s = src + off;
    if (*s == '"' || *s == '\'')
        s++;
    size_t n = len < 16 ? len : 16;
    return strncmp(s, text, n) == 0;
}

static void count_scalar(struct pos_stats *st, bool is_key, bool ok)
{
    if (is_key) {
        st->keys++;
        st->keys_ok += ok;
    } else {
        st->values++;
        st->values_ok += ok;
    }
}

static void cnode_positions(const struct cnode *n, bool is_key, const struct line_index *li,
                            const char *src, struct pos_stats *st)
{
    if (n->kind == CN_SCALAR) {
        count_scalar(st, is_key,
                     mark_points_at(li, src, n->line - 1, n->col - 1, n->text, n->len));
        return;
    }
    st->collections++;
    st->collections_pos += n->line > 0;
    int i = 0;
    for (const struct cnode *c = n->first; c; c = c->next, i++)
        cnode_positions(c, n->kind == CN_MAP && i % 2 == 0, li, src, st);
}

/* libfyaml 0.7.12 exports no fy_node_get_start_mark(): a scalar's position
 * comes from its token, a mapping or sequence has no public position. */
static void fynode_positions(struct fy_node *n, bool is_key, const struct line_index *li,
                             const char *src, struct pos_stats *st)
{
    void *it = NULL;
    switch (fy_node_get_type(n)) {
    case FYNT_SCALAR: {
        size_t len;
        const char *text = fy_node_get_scalar(n, &len);
        const struct fy_mark *m = fy_token_start_mark(fy_node_get_scalar_token(n));
        count_scalar(st, is_key, m && mark_points_at(li, src, m->line, m->column, text, len));
        break;
    }
    case FYNT_MAPPING: {
        struct fy_node_pair *pair;
        st->collections++;
        while ((pair = fy_node_mapping_iterate(n, &it)) != NULL) {
            fynode_positions(fy_node_pair_key(pair), true, li, src, st);
            fynode_positions(fy_node_pair_value(pair), false, li, src, st);
        }
        break;
    }
    case FYNT_SEQUENCE: {
        struct fy_node *item;
        st->collections++;
        while ((item = fy_node_sequence_iterate(n, &it)) != NULL)
            fynode_positions(item, false, li, src, st);
        break;
    }
    }
}

/* ---- YAML jobs ---- */

struct text {
    const char *p;
    size_t len;
};

static void *job_libyaml(const void *ctx)
{
    const struct text *t = ctx;
    return libyaml_build(t->p, t->len, NULL);
}

static void *job_libfyaml_events(const void *ctx)
{
    const struct text *t = ctx;
    return libfyaml_build(t->p, t->len, NULL);
}

/* Reads every scalar and its mark, as loading the config into casca's
 * structures would; the walk is part of the timed work. */
static long fy_visit(struct fy_node *n)
{
    void *it = NULL;
    long sum = 0;
    if (fy_node_is_scalar(n)) {
        size_t len;
        fy_node_get_scalar(n, &len);
        return (long)len + fy_token_start_mark(fy_node_get_scalar_token(n))->line;
    }
    if (fy_node_is_mapping(n)) {
        struct fy_node_pair *pair;
        while ((pair = fy_node_mapping_iterate(n, &it)) != NULL)
            sum += fy_visit(fy_node_pair_key(pair)) + fy_visit(fy_node_pair_value(pair));
    } else {
        struct fy_node *item;
        while ((item = fy_node_sequence_iterate(n, &it)) != NULL)
            sum += fy_visit(item);
    }
    return sum;
}

static volatile long g_sink; /* keeps the optimiser from dropping work */

static void *job_libfyaml_doc(const void *ctx)
{
    const struct text *t = ctx;
    struct fy_document *doc = libfyaml_doc(t->p, t->len, NULL);
    if (doc)
        g_sink += fy_visit(fy_document_root(doc));
    return doc;
}

static void fy_doc_release(void *doc) { fy_document_destroy(doc); }

/* ---- YAML sections ---- */

static const char *yes_no(bool b) { return b ? "yes" : "no"; }

static void print_perf_row(const char *name, const char *api, struct perf p, size_t input_len)
{
    if (!p.ok) {
        printf("| %s | %s | FAILED | | | |\n", name, api);
        return;
    }
    printf("| %s | %s | %.2f | %.0f | %.2f | %ld |\n", name, api, p.median_ms,
           (double)input_len / 1e6 / (p.median_ms / 1e3), p.heap_bytes / 1048576.0,
           p.rss_delta_kib);
}

static void yaml_section(void)
{
    size_t len;
    char *config = make_config(1000, &len);
    struct text t = {config, len};
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += config[i] == '\n';

    printf("## YAML: 1,000-SLO config (%zu bytes, %d lines)\n\n", len, lines);
    printf("Median of %d runs: %d interleaved rounds of %d, each round in a fresh process "
           "after %d warm-up runs. \"Tree MiB\" is the malloc'ed memory the parsed tree "
           "holds; \"peak RSS +KiB\" is how much a round's process peak grew.\n\n",
           runs_per_round() * ROUNDS, ROUNDS, runs_per_round(), WARMUP_RUNS);
    printf("| library | API | median ms | MB/s | tree MiB | peak RSS +KiB |\n");
    printf("|---|---|---:|---:|---:|---:|\n");

    struct job jobs[] = {
        {"libyaml", job_libyaml, cnode_release, &t},
        {"libfyaml", job_libfyaml_events, cnode_release, &t},
        {"libfyaml", job_libfyaml_doc, fy_doc_release, &t},
    };
    const char *apis[] = {
        "yaml_parser_parse events -> own tree with line:col",
        "fy_parser_parse events -> own tree with line:col",
        "fy_document_build_from_string + walk (marks of scalars)",
    };
    enum { NJOBS = sizeof jobs / sizeof jobs[0] };
    struct perf perf[NJOBS];
    measure_all(jobs, NJOBS, perf);
    for (int i = 0; i < NJOBS; i++)
        print_perf_row(jobs[i].name, apis[i], perf[i], len);

    /* Positions: count the keys/values whose line:col points at their text. */
    struct line_index li = line_index_build(config, len);
    struct pos_stats st[3] = {{0}};
    struct cnode *tree = libyaml_build(config, len, NULL);
    cnode_positions(tree, false, &li, config, &st[0]);
    cnode_free(tree);
    tree = libfyaml_build(config, len, NULL);
    cnode_positions(tree, false, &li, config, &st[1]);
    cnode_free(tree);
    struct fy_document *doc = libfyaml_doc(config, len, NULL);
    fynode_positions(fy_document_root(doc), false, &li, config, &st[2]);
    fy_document_destroy(doc);
    free(li.start);

    printf("\n### Positions (line:col checked against the source text, columns in characters)\n\n");
    printf("| library / API | keys with correct line:col | scalar values with correct line:col | maps/sequences with a position |\n");
    printf("|---|---:|---:|---:|\n");
    const char *names[] = {"libyaml events", "libfyaml events", "libfyaml document"};
    for (int i = 0; i < 3; i++)
        printf("| %s | %ld / %ld | %ld / %ld | %ld / %ld |\n", names[i], st[i].keys_ok,
               st[i].keys, st[i].values_ok, st[i].values, st[i].collections_pos,
               st[i].collections);
    free(config);
}

static void append_output(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag;
    sbuf_printf(user, "%.*s", (int)len, buf);
}

/* libfyaml's own report, as it prints it on stderr by default. */
static void print_libfyaml_report(const char *src, size_t len)
{
    struct sbuf out = {0};
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = append_output;
    dcfg.user = &out;
    dcfg.colorize = false;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    struct fy_parse_cfg cfg = {.flags = FYPCF_QUIET, .diag = diag};
    fy_document_destroy(fy_document_build_from_string(&cfg, src, len));
    fy_diag_destroy(diag);
    /* a string input is named "<memory-@start-end>"; show a stable name instead */
    const char *text = out.p ? out.p : "";
    const char *name_end = strncmp(text, "<memory-@", 9) == 0 ? strchr(text, '>') : NULL;
    printf("libfyaml's own report (its default diagnostic output; a string input "
           "is named `<memory-@address-range>`, shown here as `<memory>`):\n\n"
           "```\n%s%s```\n\n", name_end ? "<memory>" : "", name_end ? name_end + 1 : text);
    free(out.p);
}

static void yaml_errors_section(void)
{
    /* Each sample is broken on line 7. */
    static const char *head =
        "settings:\n"
        "  listen: \"127.0.0.1:8080\"\n"
        "slos:\n"
        "  - id: ServiceSLO\n"
        "    description: \"\"\n"
        "    series: transcoding_fps\n";
    static const struct {
        const char *what, *line7;
    } cases[] = {
        {"bad indent (3 spaces instead of 4)", "   aggregation: mean\n"},
        {"bad indent (5 spaces instead of 4)", "     aggregation: mean\n"},
        {"tab used for indentation", "\taggregation: mean\n"},
        {"unclosed flow mapping", "    objective: {min: 24, max: 30\n"},
        {"duplicate key `series`", "    series: dropped_frames\n"},
    };
    static const char *tail = "    window: 5m\n    objective: {min: 24, max: 30}\n";

    printf("\n### Error messages for malformed files (error on line 7)\n\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sbuf b = {0};
        sbuf_printf(&b, "%s%s%s", head, cases[i].line7, tail);
        const char *l7 = cases[i].line7;
        printf("**%s**, line 7 is `%s%.*s`:\n\n", cases[i].what, l7[0] == '\t' ? "\\t" : "",
               (int)strcspn(l7 + (l7[0] == '\t'), "\n"), l7 + (l7[0] == '\t'));
        printf("```\n");

        struct parse_error e = {0};
        struct cnode *tree = libyaml_build(b.p, b.len, &e);
        if (tree)
            printf("libyaml:  accepted (no error)\n");
        else
            printf("libyaml:  config.yaml:%d:%d: %s\n", e.line, e.col, e.msg);
        cnode_free(tree);

        memset(&e, 0, sizeof e);
        struct fy_document *doc = libfyaml_doc(b.p, b.len, &e);
        if (doc)
            printf("libfyaml: accepted (no error)\n");
        else
            printf("libfyaml: config.yaml:%d:%d: %s\n", e.line, e.col, e.msg);
        fy_document_destroy(doc);

        memset(&e, 0, sizeof e);
        tree = libfyaml_build(b.p, b.len, &e);
        if (tree)
            printf("libfyaml events: accepted (no error)\n");
        else
            printf("libfyaml events: config.yaml:%d:%d: %s\n", e.line, e.col, e.msg);
        cnode_free(tree);
        printf("```\n\n");
        if (i == 0)
            print_libfyaml_report(b.p, b.len);
        free(b.p);
    }
}

/* ========================================================================
 * JSON
 * ====================================================================== */

/* ---- JSON pointer (RFC 6901), shared by both libraries ---- */

/* Copies the next reference token of *ptr into tok, undoing ~1 and ~0.
 * Returns 1 for a token, 0 at the end of the pointer, -1 if malformed. */
static int pointer_next(const char **ptr, char *tok, size_t cap)
{
    const char *s = *ptr;
    size_t n = 0;
    if (*s == '\0')
        return 0;
    if (*s++ != '/')
        return -1;
    while (*s && *s != '/') {
        char c = *s++;
        if (c == '~') {
            if (*s != '0' && *s != '1')
                return -1;
            c = *s++ == '0' ? '~' : '/';
        }
        if (n + 1 >= cap)
            return -1;
        tok[n++] = c;
    }
    tok[n] = '\0';
    *ptr = s;
    return 1;
}

/* An array index token: "0" or digits without a leading zero. */
static bool pointer_index(const char *tok, size_t *idx)
{
    if (!*tok || (tok[0] == '0' && tok[1]))
        return false;
    *idx = 0;
    for (; *tok; tok++) {
        if (*tok < '0' || *tok > '9')
            return false;
        *idx = *idx * 10 + (size_t)(*tok - '0');
    }
    return true;
}

static json_t *jansson_pointer(json_t *v, const char *ptr)
{
    char tok[256];
    size_t idx;
    int r;
    while (v && (r = pointer_next(&ptr, tok, sizeof tok)) != 0) {
        if (r < 0)
            return NULL;
        if (json_is_object(v))
            v = json_object_get(v, tok);
        else if (json_is_array(v) && pointer_index(tok, &idx))
            v = json_array_get(v, idx);
        else
            v = NULL;
    }
    return v;
}

static cJSON *cjson_pointer(cJSON *v, const char *ptr)
{
    char tok[256];
    size_t idx;
    int r;
    while (v && (r = pointer_next(&ptr, tok, sizeof tok)) != 0) {
        if (r < 0)
            return NULL;
        if (cJSON_IsObject(v))
            v = cJSON_GetObjectItemCaseSensitive(v, tok); /* cJSON_GetObjectItem ignores case */
        else if (cJSON_IsArray(v) && pointer_index(tok, &idx) && idx <= INT32_MAX)
            v = cJSON_GetArrayItem(v, (int)idx);
        else
            v = NULL;
    }
    return v;
}

/* ---- How casca would call each parser ---- */

/* jansson: reject duplicate keys (the default keeps the last one). */
static json_t *jansson_parse(const char *s, size_t len, json_error_t *err)
{
    return json_loadb(s, len, JSON_REJECT_DUPLICATES, err);
}

/* cJSON: require the document to end at the input's NUL, else trailing
 * garbage is accepted. The length must then include that NUL. */
static cJSON *cjson_parse(const char *s, size_t len, const char **end)
{
    return cJSON_ParseWithLengthOpts(s, len + 1, end, true);
}

/* ---- (a) telemetry messages ---- */

enum msg_kind { MSG_WATCHER, MSG_ENERGY };

struct msg_set {
    int count;
    char **text;
    size_t *len;
};

static struct msg_set make_messages(int count)
{
    struct msg_set set = {count, malloc(sizeof(char *) * (size_t)count),
                          malloc(sizeof(size_t) * (size_t)count)};
    for (int i = 0; i < count; i++) {
        struct sbuf b = {0};
        int s = i % 60, m = (i / 60) % 60;
        if (i % 2 == MSG_WATCHER)
            sbuf_printf(&b,
                "{\"Autowatcher ID\": \"w%d\", \"Transcoding FPS\": %.1f, "
                "\"Dropped frames\": %d, \"Time (UTC)\": \"2026-01-05 10:%02d:%02d\"}",
                i % 16, 20.0 + (i % 100) / 10.0, i % 7 == 0 ? i % 5 : 0, m, s);
        else
            sbuf_printf(&b,
                "{\"Time\": \"2026-01-05T10:%02d:%02d\", \"ENERGY\": {\"Power\": %.1f, "
                "\"ApparentPower\": %.1f, \"Voltage\": %d}}",
                m, s, 10.0 + (i % 90) / 10.0, 12.0 + (i % 90) / 10.0, 225 + i % 10);
        set.text[i] = b.p;
        set.len[i] = b.len;
    }
    return set;
}

/* Parse one message, read what casca reads, free it. Returns a checksum,
 * or -1e9 if the message did not have the expected shape. */
static double handle_jansson(const char *s, size_t len, enum msg_kind kind)
{
    json_error_t err;
    json_t *root = jansson_parse(s, len, &err);
    double sum;
    if (!root)
        return -1e9;
    if (kind == MSG_WATCHER) {
        json_t *id = jansson_pointer(root, "/Autowatcher ID");
        json_t *fps = jansson_pointer(root, "/Transcoding FPS");
        json_t *dropped = jansson_pointer(root, "/Dropped frames");
        json_t *time = jansson_pointer(root, "/Time (UTC)");
        if (!json_is_string(id) || !json_is_number(fps) || !json_is_integer(dropped) ||
            !json_is_string(time))
            sum = -1e9;
        else
            sum = (double)json_string_length(id) + json_number_value(fps) +
                  (double)json_integer_value(dropped) + (double)json_string_length(time);
    } else {
        json_t *time = jansson_pointer(root, "/Time");
        json_t *power = jansson_pointer(root, "/ENERGY/Power");
        json_t *volts = jansson_pointer(root, "/ENERGY/Voltage");
        if (!json_is_string(time) || !json_is_number(power) || !json_is_number(volts))
            sum = -1e9;
        else
            sum = (double)json_string_length(time) + json_number_value(power) +
                  json_number_value(volts);
    }
    json_decref(root);
    return sum;
}

static double handle_cjson(const char *s, size_t len, enum msg_kind kind)
{
    const char *end;
    cJSON *root = cjson_parse(s, len, &end);
    double sum;
    if (!root)
        return -1e9;
    if (kind == MSG_WATCHER) {
        cJSON *id = cjson_pointer(root, "/Autowatcher ID");
        cJSON *fps = cjson_pointer(root, "/Transcoding FPS");
        cJSON *dropped = cjson_pointer(root, "/Dropped frames");
        cJSON *time = cjson_pointer(root, "/Time (UTC)");
        /* cJSON has one number type (double): an integer can only be checked by value */
        if (!cJSON_IsString(id) || !cJSON_IsNumber(fps) || !cJSON_IsNumber(dropped) ||
            !cJSON_IsString(time))
            sum = -1e9;
        else
            sum = (double)strlen(id->valuestring) + fps->valuedouble + dropped->valuedouble +
                  (double)strlen(time->valuestring);
    } else {
        cJSON *time = cjson_pointer(root, "/Time");
        cJSON *power = cjson_pointer(root, "/ENERGY/Power");
        cJSON *volts = cjson_pointer(root, "/ENERGY/Voltage");
        if (!cJSON_IsString(time) || !cJSON_IsNumber(power) || !cJSON_IsNumber(volts))
            sum = -1e9;
        else
            sum = (double)strlen(time->valuestring) + power->valuedouble + volts->valuedouble;
    }
    cJSON_Delete(root);
    return sum;
}

typedef double (*msg_handler)(const char *s, size_t len, enum msg_kind kind);

struct msg_worker {
    msg_handler handle;
    const struct msg_set *set;
    long first, count;
    double sum;
    long bad;
};

static void *msg_worker_main(void *arg)
{
    struct msg_worker *w = arg;
    for (long i = w->first; i < w->first + w->count; i++) {
        int k = (int)(i % w->set->count);
        double r = w->handle(w->set->text[k], w->set->len[k], (enum msg_kind)(k % 2));
        if (r < 0)
            w->bad++;
        else
            w->sum += r;
    }
    return NULL;
}

#define MAX_THREADS 8

/* Messages per second over `total` messages split across `threads` (at most
 * MAX_THREADS); *bad counts the messages that failed the shape check. */
static double msgs_per_second(msg_handler handle, const struct msg_set *set, long total,
                              int threads, long *bad)
{
    pthread_t tid[MAX_THREADS];
    struct msg_worker w[MAX_THREADS];
    double t0 = now_ms();
    for (int i = 0; i < threads; i++) {
        w[i] = (struct msg_worker){handle, set, total / threads * i, total / threads, 0, 0};
        pthread_create(&tid[i], NULL, msg_worker_main, &w[i]);
    }
    *bad = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
        *bad += w[i].bad;
        g_sink += (long)w[i].sum;
    }
    return (double)total / ((now_ms() - t0) / 1e3);
}

/* The same work split over two processes instead of two threads: what this
 * machine gives when nothing at all is shared, to compare the threads with. */
static double msgs_per_second_2procs(msg_handler handle, const struct msg_set *set, long total)
{
    pid_t pid[2];
    double t0 = now_ms();
    fflush(stdout);
    for (int i = 0; i < 2; i++) {
        pid[i] = fork();
        if (pid[i] == 0) {
            long bad;
            msgs_per_second(handle, set, total / 2, 1, &bad);
            _exit(bad != 0);
        }
    }
    for (int i = 0; i < 2; i++)
        waitpid(pid[i], NULL, 0);
    return (double)total / ((now_ms() - t0) / 1e3);
}

static void json_messages_section(void)
{
    struct msg_set set = make_messages(1024);
    enum { REPEATS = 5, LIBS = 2 };
    const struct {
        const char *name, *call;
        msg_handler handle;
    } libs[LIBS] = {
        {"jansson", "`json_loadb(s, len, JSON_REJECT_DUPLICATES, &err)`", handle_jansson},
        {"cJSON", "`cJSON_ParseWithLengthOpts(s, len + 1, &end, 1)`", handle_cjson},
    };
    double one[LIBS][REPEATS], threads[LIBS][REPEATS], procs[LIBS][REPEATS];
    long bad[LIBS] = {0}, b;

    for (int l = 0; l < LIBS; l++) /* warm-up */
        msgs_per_second(libs[l].handle, &set, g_messages / 10, 1, &b);
    for (int r = 0; r < REPEATS; r++) {
        for (int l = 0; l < LIBS; l++) {
            one[l][r] = msgs_per_second(libs[l].handle, &set, g_messages, 1, &b);
            bad[l] += b;
            threads[l][r] = msgs_per_second(libs[l].handle, &set, g_messages, 2, &b);
            bad[l] += b;
            procs[l][r] = msgs_per_second_2procs(libs[l].handle, &set, g_messages);
        }
    }

    printf("\n## JSON (a): telemetry messages, parse + JSON-pointer lookups + free\n\n");
    printf("Messages alternate between the two shapes:\n\n```\n%s\n%s\n```\n\n",
           set.text[0], set.text[1]);
    printf("Pointers read: `/Autowatcher ID`, `/Transcoding FPS`, `/Dropped frames` "
           "(checked to be an integer where the library can tell), `/Time (UTC)`; "
           "`/Time`, `/ENERGY/Power`, `/ENERGY/Voltage`. Median of %d interleaved runs "
           "of %ld messages. The 2-process column is the same work in two processes "
           "sharing nothing: what this machine's two cores give at best.\n\n",
           REPEATS, g_messages);
    printf("| library | call | msgs/s, 1 thread | µs/msg | msgs/s, 2 threads | msgs/s, 2 processes |\n");
    printf("|---|---|---:|---:|---:|---:|\n");
    for (int l = 0; l < LIBS; l++) {
        double m1 = median(one[l], REPEATS);
        printf("| %s | %s | %.0f | %.2f | %.0f | %.0f |\n", libs[l].name, libs[l].call, m1,
               1e6 / m1, median(threads[l], REPEATS), median(procs[l], REPEATS));
    }
    for (int l = 0; l < LIBS; l++)
        if (bad[l])
            printf("\n**%s: %ld messages failed the shape check**\n", libs[l].name, bad[l]);
    for (int i = 0; i < set.count; i++)
        free(set.text[i]);
    free(set.text);
    free(set.len);
}

/* ---- (b) 1 MB document: parse and serialise ---- */

static char *make_big_json(size_t target, size_t *len)
{
    struct sbuf b = {0};
    sbuf_printf(&b, "{\"generated\":\"2026-01-05T10:00:00Z\",\"source\":\"casca parsers_bench\","
                    "\"watchers\":[");
    for (int w = 0; b.len < target; w++) {
        sbuf_printf(&b,
            "%s{\"id\":\"w%04d\",\"host\":\"edge-%02d.example\","
            "\"labels\":{\"site\":\"Z\\u00fcrich\",\"note\":\"line 1\\nline \\\"2\\\"\"},"
            "\"bytes_total\":%lld,\"samples\":[",
            w ? "," : "", w, w % 40, 9007199254740993LL + w);
        for (int s = 0; s < 50; s++)
            sbuf_printf(&b,
                "%s{\"Time (UTC)\":\"2026-01-05 10:%02d:%02d\",\"Transcoding FPS\":%.1f,"
                "\"Dropped frames\":%d,\"ENERGY\":{\"Power\":%.1f,\"ApparentPower\":%.1f,"
                "\"Voltage\":%d},\"ok\":%s,\"tags\":[\"a\",\"b\",null]}",
                s ? "," : "", s, (w + s) % 60, 20.0 + (s % 100) / 10.0, (w * s) % 3,
                10.0 + (s % 90) / 10.0, 12.0 + (s % 90) / 10.0, 225 + s % 10,
                s % 5 ? "true" : "false");
        sbuf_printf(&b, "]}");
    }
    sbuf_printf(&b, "]}");
    *len = b.len;
    return b.p;
}

static void *job_jansson_parse(const void *ctx)
{
    const struct text *t = ctx;
    json_error_t err;
    return jansson_parse(t->p, t->len, &err);
}

static void *job_cjson_parse(const void *ctx)
{
    const struct text *t = ctx;
    const char *end;
    return cjson_parse(t->p, t->len, &end);
}

static void *job_jansson_dump(const void *ctx) { return json_dumps(ctx, JSON_COMPACT); }
static void *job_cjson_print(const void *ctx) { return cJSON_PrintUnformatted(ctx); }
static void jansson_release(void *v) { json_decref(v); }
static void cjson_release(void *v) { cJSON_Delete(v); }

static void json_big_section(void)
{
    size_t len;
    char *big = make_big_json(1000000, &len);
    struct text t = {big, len};
    json_error_t jerr;
    const char *end;
    json_t *jdoc = jansson_parse(big, len, &jerr);
    cJSON *cdoc = cjson_parse(big, len, &end);

    printf("\n## JSON (b): %zu-byte document, parse and compact serialise\n\n", len);
    printf("Median of %d runs, measured as in the YAML table.\n\n", runs_per_round() * ROUNDS);
    printf("| library | operation | median ms | MB/s | result MiB | peak RSS +KiB |\n");
    printf("|---|---|---:|---:|---:|---:|\n");
    struct job jobs[] = {
        {"jansson", job_jansson_parse, jansson_release, &t},
        {"cJSON", job_cjson_parse, cjson_release, &t},
        {"jansson", job_jansson_dump, free, jdoc},
        {"cJSON", job_cjson_print, free, cdoc},
    };
    const char *ops[] = {"parse", "parse", "`json_dumps(JSON_COMPACT)`", "`cJSON_PrintUnformatted`"};
    struct perf perf[4];
    measure_all(jobs, 4, perf);
    for (int i = 0; i < 4; i++)
        print_perf_row(jobs[i].name, ops[i], perf[i], len);

    /* Round trip: same bytes out as in? same tree after re-parsing? */
    char *jout = json_dumps(jdoc, JSON_COMPACT);
    char *cout = cJSON_PrintUnformatted(cdoc);
    json_t *jback = jansson_parse(jout, strlen(jout), &jerr);
    cJSON *cback = cjson_parse(cout, strlen(cout), &end);
    const char *ptr = "/watchers/0/bytes_total"; /* 9007199254740993 in the input */
    json_t *jn = jansson_pointer(jback, ptr);
    cJSON *cn = cjson_pointer(cback, ptr);
    printf("\n| library | output bytes | byte-identical to input | re-parsed tree equal | `%s` after the round trip (input: 9007199254740993) |\n", ptr);
    printf("|---|---:|---|---|---|\n");
    printf("| jansson | %zu | %s | %s (`json_equal`) | %" JSON_INTEGER_FORMAT " |\n", strlen(jout),
           yes_no(strcmp(jout, big) == 0), yes_no(json_equal(jdoc, jback)), json_integer_value(jn));
    printf("| cJSON | %zu | %s | %s (`cJSON_Compare`, which allows a relative error of DBL_EPSILON) | %.0f |\n",
           strlen(cout), yes_no(strcmp(cout, big) == 0), yes_no(cJSON_Compare(cdoc, cback, true)),
           cn ? cn->valuedouble : -1.0);
    printf("\nSecond sample as serialised, jansson: `%.160s`\n\ncJSON: `%.150s`\n",
           strstr(jout, "{\"Time (UTC)\":\"2026-01-05 10:01:"),
           strstr(cout, "{\"Time (UTC)\":\"2026-01-05 10:01:"));

    json_decref(jback);
    cJSON_Delete(cback);
    free(jout);
    free(cout);
    json_decref(jdoc);
    cJSON_Delete(cdoc);
    free(big);
}

/* ---- (c) error reports ---- */

static void json_errors_section(void)
{
    static const struct {
        const char *what, *text;
    } cases[] = {
        {"missing comma after line 3",
         "{\n  \"Autowatcher ID\": \"w1\",\n  \"Transcoding FPS\": 27.5\n"
         "  \"Dropped frames\": 0,\n  \"Time (UTC)\": \"2026-01-05 10:00:00\"\n}\n"},
        {"truncated message",
         "{\"Time\": \"2026-01-05T10:00:00\", \"ENERGY\": {\"Power\": 15.2, \"Apparent"},
        {"bad escape on line 2", "{\"Time\": \"2026-01-05T10:00:00\",\n \"Note\": \"a\\x\"}"},
    };

    printf("\n## JSON (c): error reports\n\n");
    printf("jansson fills a `json_error_t` (line, column, byte position, text, error code). "
           "cJSON only returns a pointer to where parsing stopped (through `return_parse_end`, "
           "or the process-global `cJSON_GetErrorPtr()`); line:col below are computed by the "
           "bench from that pointer.\n\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *s = cases[i].text;
        size_t len = strlen(s);
        json_error_t jerr;
        const char *end = NULL;
        json_t *j = jansson_parse(s, len, &jerr);
        cJSON *c = cjson_parse(s, len, &end);
        printf("**%s**:\n\n```\n%s\n```\n\n```\n", cases[i].what, s);
        if (j)
            printf("jansson: accepted\n");
        else
            printf("jansson: line %d, column %d, position %d: %s\n", jerr.line, jerr.column,
                   jerr.position, jerr.text);
        if (c) {
            printf("cJSON:   accepted\n");
        } else {
            int line, col;
            size_t off = (size_t)(end - s);
            line_col_of(s, off, &line, &col);
            printf("cJSON:   stopped at byte %zu (line %d, column %d, text there: \"%.12s\"), no message\n",
                   off, line, col, end);
        }
        printf("```\n\n");
        json_decref(j);
        cJSON_Delete(c);
    }
}

/* ---- (d) numbers and RFC 8259 strictness ---- */

/* What jansson made of the value under "v" (or of the root). */
static void jansson_describe(const json_t *v, char *out, size_t cap)
{
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        snprintf(out, cap, "integer %" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        snprintf(out, cap, "real %.17g", json_real_value(v));
        break;
    case JSON_STRING:
        snprintf(out, cap, "string, %zu bytes", json_string_length(v));
        break;
    case JSON_OBJECT:
        snprintf(out, cap, "object, %zu members", json_object_size(v));
        break;
    case JSON_ARRAY:
        snprintf(out, cap, "array, %zu items", json_array_size(v));
        break;
    default:
        snprintf(out, cap, "literal");
    }
}

static void cjson_describe(const cJSON *v, char *out, size_t cap)
{
    if (cJSON_IsNumber(v))
        snprintf(out, cap, "double %.17g, valueint %d", v->valuedouble, v->valueint);
    else if (cJSON_IsString(v))
        snprintf(out, cap, "string, strlen %zu", strlen(v->valuestring));
    else if (cJSON_IsObject(v))
        snprintf(out, cap, "object, %d members", cJSON_GetArraySize(v));
    else if (cJSON_IsArray(v))
        snprintf(out, cap, "array, %d items", cJSON_GetArraySize(v));
    else
        snprintf(out, cap, "literal");
}

/* "`<re-serialised>` (<description of v>)", shortened for the table, with
 * bytes outside printable ASCII shown as \xHH. */
static void cell_accepted(char *cell, size_t cap, const char *dump, const char *desc)
{
    char shown[64];
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)dump; *p && n < 44; p++) {
        if (*p >= 0x20 && *p < 0x7f)
            shown[n++] = (char)*p;
        else
            n += (size_t)snprintf(shown + n, sizeof shown - n, "\\x%02x", *p);
    }
    strcpy(n < 44 ? shown + n : shown + 41, "...");
    if (n < 44)
        shown[n] = '\0';
    snprintf(cell, cap, "`%s` (%s)", shown, desc);
}

static void strictness_row(const char *label, const char *s, size_t len, size_t jflags,
                           bool cjson_strict)
{
    char jcell[200], ccell[200], desc[100];

    json_error_t jerr;
    json_t *j = json_loadb(s, len, jflags, &jerr);
    if (!j) {
        snprintf(jcell, sizeof jcell, "rejected: %s", jerr.text);
    } else {
        json_t *v = json_is_object(j) && json_object_get(j, "v") ? json_object_get(j, "v") : j;
        jansson_describe(v, desc, sizeof desc);
        char *dump = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        cell_accepted(jcell, sizeof jcell, dump, desc);
        free(dump);
        json_decref(j);
    }

    const char *end = NULL;
    /* the default is cJSON_ParseWithLength(s, len); the Opts form also tells where it stopped */
    cJSON *c = cjson_strict ? cJSON_ParseWithLengthOpts(s, len + 1, &end, true)
                            : cJSON_ParseWithLengthOpts(s, len, &end, false);
    if (!c) {
        snprintf(ccell, sizeof ccell, "rejected at byte %ld", end ? (long)(end - s) : -1L);
    } else {
        cJSON *v = cJSON_IsObject(c) && cJSON_GetObjectItemCaseSensitive(c, "v")
                       ? cJSON_GetObjectItemCaseSensitive(c, "v") : c;
        cjson_describe(v, desc, sizeof desc);
        if (cJSON_IsObject(c) && cJSON_GetArraySize(c) > 1)
            snprintf(desc + strlen(desc), sizeof desc - strlen(desc), "; root has %d members",
                     cJSON_GetArraySize(c));
        char *dump = cJSON_PrintUnformatted(c);
        cell_accepted(ccell, sizeof ccell, dump ? dump : "(print failed)", desc);
        free(dump);
        cJSON_Delete(c);
    }
    printf("| %s | %s | %s |\n", label, jcell, ccell);
}

static void json_strictness_section(void)
{
    static const struct {
        const char *label, *text;
        size_t jansson_flags;   /* on top of jansson's defaults */
        bool cjson_strict;      /* cJSON_ParseWithLengthOpts(..., require_null_terminated) */
    } cases[] = {
        {"`{\"v\": 0}` (\"Dropped frames\")", "{\"v\": 0}", 0, false},
        {"`{\"v\": 27.5}`", "{\"v\": 27.5}", 0, false},
        {"`{\"v\": 15.2}`", "{\"v\": 15.2}", 0, false},
        {"`{\"v\": 1.0}`", "{\"v\": 1.0}", 0, false},
        {"`{\"v\": 9007199254740991}` (2^53-1)", "{\"v\": 9007199254740991}", 0, false},
        {"`{\"v\": 9007199254740993}` (2^53+1)", "{\"v\": 9007199254740993}", 0, false},
        {"`{\"v\": 1767607200123456789}` (ns timestamp)", "{\"v\": 1767607200123456789}", 0, false},
        {"`{\"v\": 9223372036854775807}` (2^63-1)", "{\"v\": 9223372036854775807}", 0, false},
        {"`{\"v\": 9223372036854775808}` (2^63)", "{\"v\": 9223372036854775808}", 0, false},
        {"`{\"v\": 1e400}`", "{\"v\": 1e400}", 0, false},
        {"`{\"v\": NaN}`", "{\"v\": NaN}", 0, false},
        {"`{\"v\": Infinity}`", "{\"v\": Infinity}", 0, false},
        {"`{\"v\": 01}` (leading zero)", "{\"v\": 01}", 0, false},
        {"`{\"v\": 1.}`", "{\"v\": 1.}", 0, false},
        {"`{\"v\": -.5}`", "{\"v\": -.5}", 0, false},
        {"`{\"v\": +1}`", "{\"v\": +1}", 0, false},
        {"`{\"v\": 1,}` (trailing comma)", "{\"v\": 1,}", 0, false},
        {"`{\"v\": [1, 2,]}`", "{\"v\": [1, 2,]}", 0, false},
        {"`{\"v\": 1, \"v\": 2}` default", "{\"v\": 1, \"v\": 2}", 0, false},
        {"same, JSON_REJECT_DUPLICATES", "{\"v\": 1, \"v\": 2}", JSON_REJECT_DUPLICATES, false},
        {"`{\"v\": 1} /* c */`", "{\"v\": 1} /* c */", 0, false},
        {"same, cJSON require_null_terminated", "{\"v\": 1} /* c */", 0, true},
        {"`{\"v\": 1} x` trailing garbage", "{\"v\": 1} x", 0, false},
        {"`{'v': 1}`", "{'v': 1}", 0, false},
        {"`{\"v\": \"a<TAB>b\"}` raw control char", "{\"v\": \"a\tb\"}", 0, false},
        {"`{\"v\": \"\\xff\"}` invalid UTF-8 byte", "{\"v\": \"\xff\"}", 0, false},
        {"`{\"v\": \"\\ud800\"}` lone surrogate", "{\"v\": \"\\ud800\"}", 0, false},
        {"`{\"v\": \"a\\u0000b\"}`", "{\"v\": \"a\\u0000b\"}", 0, false},
        {"`42` top-level scalar", "42", 0, false},
        {"same, JSON_DECODE_ANY", "42", JSON_DECODE_ANY, false},
        {"empty input", "", 0, false},
    };

    printf("\n## JSON (d): numbers and RFC 8259 strictness\n\n");
    printf("Library defaults unless the row says otherwise (jansson `json_loadb(s, len, 0, &err)`, "
           "cJSON `cJSON_ParseWithLength(s, len)`). Accepted input is shown re-serialised "
           "compactly, with what the library holds for `v`.\n\n");
    printf("| input | jansson 2.14 | cJSON 1.7.15 |\n|---|---|---|\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        strictness_row(cases[i].label, cases[i].text, strlen(cases[i].text),
                       cases[i].jansson_flags, cases[i].cjson_strict);

    /* Nesting depth: both libraries have a limit, which keeps the stack safe. */
    enum { DEPTH = 5000 };
    char *deep = malloc(2 * DEPTH + 1);
    memset(deep, '[', DEPTH);
    memset(deep + DEPTH, ']', DEPTH);
    deep[2 * DEPTH] = '\0';
    strictness_row("`[` x5000 then `]` x5000", deep, 2 * DEPTH, JSON_DECODE_ANY, false);
    free(deep);
}

/* ========================================================================
 * main
 * ====================================================================== */

static void print_environment(void)
{
    char model[128] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            snprintf(model, sizeof model, "%s", strchr(line, ':') + 2);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    }
    if (f)
        fclose(f);
    printf("# casca parser benchmark\n\n");
    printf("libyaml %s, libfyaml %s, jansson %s, cJSON %s; gcc %s -O2; CPU %s, %ld cores.\n\n",
           yaml_get_version_string(), fy_library_version(), jansson_version_str(),
           cJSON_Version(), __VERSION__, model, sysconf(_SC_NPROCESSORS_ONLN));
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            g_runs = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc) {
            g_messages = atol(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--runs N] [--messages N]\n", argv[0]);
            return 2;
        }
    }
    if (g_runs < 1 || g_runs > ROUNDS * MAX_RUNS_PER_ROUND || g_messages < 2) {
        fprintf(stderr, "--runs must be 1..%d and --messages >= 2\n", ROUNDS * MAX_RUNS_PER_ROUND);
        return 2;
    }

    json_object_seed(0); /* seed jansson's hash before any thread starts */
    print_environment();
    yaml_section();
    yaml_errors_section();
    json_messages_section();
    json_big_section();
    json_errors_section();
    json_strictness_section();
    return 0;
}
