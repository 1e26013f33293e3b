/* ctl_file: a key in a configuration file of the service (JSON, YAML or INI), written atomically
 * (temporary file in the same directory, fsync, rename), then the service told to reload.
 *   controller:
 *     file:
 *       path: /etc/svc/encoder.yaml      # relative to the settings file
 *       format: yaml                     # json | yaml | ini (default: from the extension)
 *       key: /encoding/threads           # a pointer: /a/b; for INI /section/key (or /key)
 *       reload: {signal: HUP, pid_file: /run/svc.pid}   # or {command: [svcctl, reload]}
 *       timeout: 5s
 * YAML and INI files are edited in place: only the value's bytes change, comments and layout stay.
 * JSON files are re-serialised (two-space indent, key order kept). Writes of one instance are
 * serialised; the file keeps its permissions. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "casca_err.h"
#include "config.h"
#include "ctl.h"

#define MAX_FILE (16u << 20)

enum fmt { FMT_JSON, FMT_YAML, FMT_INI };
static const char *const fmt_names[] = {"json", "yaml", "ini", NULL};

static const struct {
    const char *signame;
    int signo;
} signals[] = {{"HUP", SIGHUP}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"INT", SIGINT},
               {"TERM", SIGTERM}};

struct file_conf {
    char *path, *key;
    enum fmt fmt;
    char **segs; /* the key's segments */
    size_t nsegs;
    int signo;      /* 0: no signal */
    char *pid_file; /* where the pid to signal is */
    long pid;       /* or the pid itself */
    struct ctl_cmd reload;
    uint64_t timeout_ms;
};

struct file_inst {
    const struct file_conf *conf;
    pthread_mutex_t lock; /* one read-modify-write at a time */
};

/* ---- configuration ---- */

static bool split_key(const char *key, struct file_conf *c)
{
    if (*key != '/')
        return false;
    size_t n = 0;
    for (const char *p = key; *p; p++)
        n += *p == '/';
    if (!(c->segs = calloc(n, sizeof(char *))))
        return false;
    for (const char *p = key; *p == '/';) {
        p++;
        size_t len = strcspn(p, "/");
        char *s = malloc(len + 1);
        if (!s)
            return false;
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
            if (p[i] == '~' && i + 1 < len && (p[i + 1] == '0' || p[i + 1] == '1'))
                s[o++] = p[++i] == '0' ? '~' : '/';
            else
                s[o++] = p[i];
        }
        s[o] = 0;
        c->segs[c->nsegs++] = s;
        p += len;
    }
    return c->nsegs > 0;
}

static void file_free_conf(void *conf)
{
    struct file_conf *c = conf;
    free(c->path);
    free(c->key);
    for (size_t i = 0; i < c->nsegs; i++)
        free(c->segs[i]);
    free(c->segs);
    free(c->pid_file);
    ctl_cmd_free(&c->reload);
    free(c);
}

static void *file_parse(struct ctl_parse *p, const struct yd_node *body)
{
    static const struct config_key keys[] = {
        {"path"}, {"format"}, {"key"}, {"reload"}, {"timeout"}, {NULL}};
    static const struct config_key reload_keys[] = {
        {"signal"}, {"pid_file"}, {"pid"}, {"command"}, {NULL}};
    struct file_conf *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    ctl_parse_keys(p, body, keys, "controller file");
    const char *path = ctl_parse_str(p, body, "path", true);
    const char *fmt = ctl_parse_str(p, body, "format", false);
    const char *key = ctl_parse_str(p, body, "key", true);
    c->path = path ? ctl_parse_path(p, path) : NULL;
    const char *ext = path ? strrchr(path, '.') : NULL;
    if (!fmt && ext)
        fmt = !strcmp(ext, ".json")                         ? "json"
              : !strcmp(ext, ".yaml") || !strcmp(ext, ".yml") ? "yaml"
              : !strcmp(ext, ".ini") || !strcmp(ext, ".conf") || !strcmp(ext, ".cfg") ? "ini"
                                                                                      : NULL;
    int f = 0;
    while (fmt && fmt_names[f] && strcmp(fmt_names[f], fmt))
        f++;
    if (path && (!fmt || !fmt_names[f]))
        ctl_parse_error(p, yd_get(body, "format") ? yd_get(body, "format") : body,
                        "format: give json, yaml or ini (the file's extension does not tell)");
    c->fmt = (enum fmt)(fmt && fmt_names[f] ? f : 0);
    if (key && !split_key(key, c))
        ctl_parse_error(p, yd_get(body, "key"), "key: expected a pointer such as /encoding/threads "
                                                "(for INI: /section/key)");
    else if (key && c->fmt == FMT_INI && c->nsegs > 2)
        ctl_parse_error(p, yd_get(body, "key"), "key: an INI key is /section/key or /key");
    c->key = key ? strdup(key) : NULL;
    const struct yd_node *r = yd_get(body, "reload");
    if (r && r->kind != YD_MAP) {
        ctl_parse_error(p, r, "reload: expected {signal: HUP, pid_file: ...} or {command: [...]}");
    } else if (r) {
        ctl_parse_keys(p, r, reload_keys, "controller file: reload");
        const char *sig = ctl_parse_str(p, r, "signal", false);
        const char *pid_file = ctl_parse_str(p, r, "pid_file", false);
        const char *pid = ctl_parse_str(p, r, "pid", false);
        const struct yd_node *cmd = yd_get(r, "command");
        if (sig) {
            const char *name = strncmp(sig, "SIG", 3) ? sig : sig + 3;
            for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
                if (!strcmp(signals[i].signame, name))
                    c->signo = signals[i].signo;
            if (!c->signo)
                ctl_parse_error(p, yd_get(r, "signal"), "signal: '%s' is not HUP, USR1, USR2, INT "
                                                        "or TERM", sig);
            if (!pid_file == !pid)
                ctl_parse_error(p, r, "reload: a signal needs exactly one of pid_file or pid");
        }
        uint64_t u = 0;
        if (pid && (config_parse_uint(pid, &u) || u < 2 || u > 4194304))
            ctl_parse_error(p, yd_get(r, "pid"), "pid: expected a process id");
        c->pid = (long)u;
        c->pid_file = pid_file ? ctl_parse_path(p, pid_file) : NULL;
        if (cmd)
            ctl_parse_cmd(p, cmd, &c->reload);
        if (!sig && !cmd)
            ctl_parse_error(p, r, "reload: give a signal (with pid_file or pid) or a command");
    }
    ctl_parse_ms(p, body, "timeout", 5000, &c->timeout_ms);
    return c;
}

/* ---- reading the file ---- */

static int slurp(const char *path, char **out, size_t *len, struct ctl_io *io)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0;
    FILE *mem = open_memstream(&buf, &n);
    char chunk[8192];
    size_t r;
    bool big = false;
    while (mem && (r = fread(chunk, 1, sizeof(chunk), f)) > 0 && !(big = n + r > MAX_FILE))
        fwrite(chunk, 1, r, mem);
    bool bad = ferror(f);
    fclose(f);
    if (mem)
        fclose(mem);
    if (!mem || bad || big) {
        free(buf);
        return ctl_io_fail(io, big ? CASCA_ERR_UNAVAILABLE : CASCA_ERR_IO, "cannot read %s%s", path,
                           big ? ": larger than 16 MiB" : "");
    }
    *out = buf;
    *len = n;
    return CASCA_OK;
}

/* Where the value of the key is in a YAML text: the scalar's byte range [start, end). */
struct yhit {
    bool found, not_scalar;
    size_t start, end;
    yaml_scalar_style_t style;
    char *text;
};

/* Consumes one node whose first event is ev (owned here); on_path: the path so far matches. */
static bool y_node(yaml_parser_t *ps, yaml_event_t *ev, const struct file_conf *c, size_t depth,
                   bool on_path, struct yhit *hit)
{
    bool ok = true;
    bool target = on_path && depth == c->nsegs;
    if (ev->type == YAML_SCALAR_EVENT) {
        if (target && !hit->found) {
            hit->found = true;
            hit->start = ev->start_mark.index;
            hit->end = ev->end_mark.index;
            hit->style = ev->data.scalar.style;
            hit->text = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        }
        yaml_event_delete(ev);
        return true;
    }
    if (ev->type != YAML_MAPPING_START_EVENT && ev->type != YAML_SEQUENCE_START_EVENT) {
        yaml_event_delete(ev); /* an alias */
        return true;
    }
    if (target)
        hit->not_scalar = true;
    bool map = ev->type == YAML_MAPPING_START_EVENT;
    yaml_event_delete(ev);
    for (size_t idx = 0; ok; idx++) {
        yaml_event_t k;
        if (!yaml_parser_parse(ps, &k))
            return false;
        if (k.type == YAML_MAPPING_END_EVENT || k.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&k);
            return true;
        }
        bool match = false;
        if (map) {
            match = on_path && depth < c->nsegs && k.type == YAML_SCALAR_EVENT &&
                    !strcmp((const char *)k.data.scalar.value, c->segs[depth]);
            if (k.type == YAML_SCALAR_EVENT)
                yaml_event_delete(&k);
            else if (!y_node(ps, &k, c, depth + 1, false, hit)) /* a complex key: skip it */
                return false;
            yaml_event_t v;
            if (!yaml_parser_parse(ps, &v))
                return false;
            ok = y_node(ps, &v, c, depth + 1, match, hit);
        } else {
            char num[24];
            snprintf(num, sizeof(num), "%zu", idx);
            match = on_path && depth < c->nsegs && !strcmp(num, c->segs[depth]);
            ok = y_node(ps, &k, c, depth + 1, match, hit);
        }
    }
    return ok;
}

static int yaml_find(const struct file_conf *c, const char *text, size_t len, struct yhit *hit,
                     struct ctl_io *io)
{
    memset(hit, 0, sizeof(*hit));
    yaml_parser_t ps;
    if (!yaml_parser_initialize(&ps))
        return ctl_io_fail(io, CASCA_ERR_NOMEM, "yaml parser");
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
    bool ok = true;
    yaml_event_t ev;
    /* stream start, document start, the root node */
    for (int i = 0; ok && i < 2; i++) {
        ok = yaml_parser_parse(&ps, &ev);
        if (ok) {
            bool end = ev.type == YAML_STREAM_END_EVENT;
            yaml_event_delete(&ev);
            if (end)
                break;
        }
    }
    if (ok && (ok = yaml_parser_parse(&ps, &ev)))
        ok = ev.type == YAML_DOCUMENT_END_EVENT ? (yaml_event_delete(&ev), true)
                                                : y_node(&ps, &ev, c, 0, true, hit);
    int rc = CASCA_OK;
    if (!ok)
        rc = ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "%s: not valid YAML: %s at line %zu",
                         c->path, ps.problem ? ps.problem : "?", ps.problem_mark.line + 1);
    else if (hit->not_scalar || !hit->found)
        rc = ctl_io_fail(io, CASCA_ERR_NOT_FOUND, "%s: %s %s", c->path,
                         hit->not_scalar ? "not a single value at" : "nothing at", c->key);
    yaml_parser_delete(&ps);
    if (rc != CASCA_OK) {
        free(hit->text);
        hit->text = NULL;
    }
    return rc;
}

/* An INI line's value range; section/key as in the conf's segments. */
static bool ini_find(const struct file_conf *c, const char *text, size_t *start, size_t *end)
{
    const char *want_sec = c->nsegs == 2 ? c->segs[0] : "", *want_key = c->segs[c->nsegs - 1];
    char sec[256] = "";
    for (const char *line = text; *line;) {
        const char *eol = strchr(line, '\n');
        size_t n = eol ? (size_t)(eol - line) : strlen(line);
        const char *p = line, *lend = line + n;
        if (lend > line && lend[-1] == '\r')
            lend--;
        while (p < lend && (*p == ' ' || *p == '\t'))
            p++;
        if (p < lend && *p == '[') {
            const char *close = memchr(p, ']', (size_t)(lend - p));
            if (close)
                snprintf(sec, sizeof(sec), "%.*s", (int)(close - p - 1), p + 1);
        } else if (p < lend && *p != ';' && *p != '#') {
            const char *eq = memchr(p, '=', (size_t)(lend - p));
            if (eq) {
                const char *ke = eq;
                while (ke > p && (ke[-1] == ' ' || ke[-1] == '\t'))
                    ke--;
                if (!strcmp(sec, want_sec) && (size_t)(ke - p) == strlen(want_key) &&
                    !strncmp(p, want_key, (size_t)(ke - p))) {
                    const char *vs = eq + 1, *ve = lend;
                    while (vs < ve && (*vs == ' ' || *vs == '\t'))
                        vs++;
                    while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
                        ve--;
                    *start = (size_t)(vs - text);
                    *end = (size_t)(ve - text);
                    return true;
                }
            }
        }
        line = eol ? eol + 1 : line + n;
    }
    return false;
}

/* Reads the value at the key (as text for YAML/INI, typed for JSON). */
static int read_value(const struct file_conf *c, const char *text, size_t len,
                      struct ctl_value *out, struct ctl_io *io)
{
    memset(out, 0, sizeof(*out));
    if (c->fmt == FMT_JSON) {
        json_error_t err;
        json_t *doc = json_loadb(text, len, 0, &err);
        if (!doc)
            return ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "%s: not JSON: %s (line %d)", c->path,
                               err.text, err.line);
        json_t *j = ctl_json_follow(doc, c->key, NULL, NULL);
        int rc = !j ? ctl_io_fail(io, CASCA_ERR_NOT_FOUND, "%s: nothing at %s", c->path, c->key)
                 : ctl_json_to_value(j, out) != CASCA_OK
                     ? ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "%s: %s is not a single value",
                                   c->path, c->key)
                     : CASCA_OK;
        json_decref(doc);
        return rc;
    }
    if (c->fmt == FMT_YAML) {
        struct yhit hit;
        int rc = yaml_find(c, text, len, &hit, io);
        if (rc == CASCA_OK)
            *out = (struct ctl_value){.kind = CTL_STRING, .s = hit.text};
        return rc;
    }
    size_t s, e;
    if (strlen(text) != len || !ini_find(c, text, &s, &e))
        return ctl_io_fail(io, CASCA_ERR_NOT_FOUND, "%s: no %s", c->path, c->key);
    if (e - s >= 2 && (text[s] == '"' || text[s] == '\'') && text[e - 1] == text[s]) {
        s++;
        e--;
    }
    *out = (struct ctl_value){.kind = CTL_STRING, .s = strndup(text + s, e - s)};
    return out->s ? CASCA_OK : CASCA_ERR_NOMEM;
}

/* ---- writing ---- */

/* v as YAML scalar text: numbers and bools plain, strings plain when safe, else double-quoted. */
static char *yaml_scalar(const struct ctl_value *v)
{
    struct ctl_value s;
    if (ctl_value_copy(&s, v) != CASCA_OK || ctl_value_coerce(&s, CTL_STRING) != CASCA_OK) {
        ctl_value_clear(&s);
        return NULL;
    }
    bool plain = v->kind != CTL_STRING;
    if (!plain && *s.s && strspn(s.s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789_-./") == strlen(s.s)) {
        struct ctl_value probe = {.kind = CTL_STRING, .s = s.s};
        bool b;
        double d;
        /* a string that YAML would read as a number or bool must be quoted */
        plain = config_parse_double(probe.s, &d) != NULL && config_parse_bool(probe.s, &b) != NULL &&
                strcmp(probe.s, "null") && strcmp(probe.s, "~");
    }
    if (plain)
        return s.s;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (out) {
        fputc('"', out);
        for (const unsigned char *p = (const unsigned char *)s.s; *p; p++) {
            if (*p == '"' || *p == '\\')
                fprintf(out, "\\%c", *p);
            else if (*p < 0x20)
                fprintf(out, "\\x%02x", *p);
            else
                fputc(*p, out);
        }
        fputc('"', out);
        fclose(out);
    }
    ctl_value_clear(&s);
    return buf;
}

static char *replace_range(const char *text, size_t len, size_t start, size_t end, const char *with)
{
    size_t wl = strlen(with);
    char *out = malloc(len - (end - start) + wl + 1);
    if (!out)
        return NULL;
    memcpy(out, text, start);
    memcpy(out + start, with, wl);
    memcpy(out + start + wl, text + end, len - end);
    out[len - (end - start) + wl] = 0;
    return out;
}

/* The new text of the file with v at the key. */
static int modify(const struct file_conf *c, const char *text, size_t len, const struct ctl_value *v,
                  char **out, struct ctl_io *io)
{
    *out = NULL;
    if (c->fmt == FMT_JSON) {
        json_error_t err;
        json_t *doc = json_loadb(text, len, JSON_PRESERVE_ORDER, &err), *parent = NULL;
        if (!doc)
            return ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "%s: not JSON: %s (line %d)", c->path,
                               err.text, err.line);
        char *key = NULL;
        json_t *cur = ctl_json_follow(doc, c->key, &parent, &key), *nv = ctl_json_from_value(v);
        int rc = CASCA_OK;
        if (!cur || !parent || !nv)
            rc = ctl_io_fail(io, CASCA_ERR_NOT_FOUND, "%s: nothing at %s", c->path, c->key);
        else if ((json_is_object(parent) ? json_object_set(parent, key, nv)
                                         : json_array_set(parent, strtoul(key, NULL, 10), nv)) ||
                 !(*out = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER)))
            rc = ctl_io_fail(io, CASCA_ERR_NOMEM, "out of memory");
        json_decref(nv);
        json_decref(doc);
        free(key);
        if (*out) {
            char *nl = NULL;
            if (asprintf(&nl, "%s\n", *out) >= 0) {
                free(*out);
                *out = nl;
            }
        }
        return rc;
    }
    size_t s, e;
    char *scalar = NULL;
    if (c->fmt == FMT_YAML) {
        struct yhit hit;
        int rc = yaml_find(c, text, len, &hit, io);
        if (rc != CASCA_OK)
            return rc;
        free(hit.text);
        s = hit.start;
        e = hit.end;
        if (hit.style == YAML_LITERAL_SCALAR_STYLE || hit.style == YAML_FOLDED_SCALAR_STYLE)
            return ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "%s: %s is a block scalar; casca edits "
                                                          "single-line values only",
                               c->path, c->key);
        scalar = yaml_scalar(v);
    } else {
        if (strlen(text) != len || !ini_find(c, text, &s, &e))
            return ctl_io_fail(io, CASCA_ERR_NOT_FOUND, "%s: no %s", c->path, c->key);
        struct ctl_value sv;
        if (ctl_value_copy(&sv, v) == CASCA_OK && ctl_value_coerce(&sv, CTL_STRING) == CASCA_OK &&
            !strpbrk(sv.s, "\r\n"))
            scalar = sv.s;
        else
            ctl_value_clear(&sv);
        if (!scalar)
            return ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "an INI value cannot hold a line break");
    }
    if (!scalar)
        return ctl_io_fail(io, CASCA_ERR_NOMEM, "out of memory");
    *out = replace_range(text, len, s, e, scalar);
    free(scalar);
    return *out ? CASCA_OK : ctl_io_fail(io, CASCA_ERR_NOMEM, "out of memory");
}

/* Replaces path's content atomically: temp file in the same directory, fsync, rename, fsync dir. */
static int write_atomic(const char *path, const char *text, struct ctl_io *io)
{
    char *tmp = NULL, *dircopy = strdup(path);
    if (!dircopy || asprintf(&tmp, "%s.casca-XXXXXX", path) < 0) {
        free(dircopy);
        return ctl_io_fail(io, CASCA_ERR_NOMEM, "out of memory");
    }
    struct stat st;
    bool have_mode = stat(path, &st) == 0;
    int fd = mkstemp(tmp);
    int rc = CASCA_OK;
    if (fd < 0) {
        rc = ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    if (have_mode)
        fchmod(fd, st.st_mode & 07777);
    if (off < len || fsync(fd) != 0) {
        rc = ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        rc = ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "cannot rename %s to %s: %s", tmp, path,
                         strerror(errno));
        unlink(tmp);
        goto out;
    }
    int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
out:
    free(tmp);
    free(dircopy);
    return rc;
}

static int reload(const struct file_conf *c, struct ctl_io *io)
{
    if (c->signo) {
        long pid = c->pid;
        if (c->pid_file) {
            char *text = NULL;
            size_t len;
            int rc = slurp(c->pid_file, &text, &len, io);
            if (rc != CASCA_OK)
                return rc;
            char *end;
            pid = strtol(text, &end, 10);
            bool bad = end == text || pid < 2;
            free(text);
            if (bad)
                return ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "%s holds no process id",
                                   c->pid_file);
        }
        if (kill((pid_t)pid, c->signo) != 0)
            return ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "cannot signal process %ld: %s", pid,
                               strerror(errno));
    }
    if (c->reload.argv)
        return ctl_cmd_run(&c->reload, NULL, false, NULL, io);
    return CASCA_OK;
}

/* ---- ops ---- */

static int file_open(const void *conf, void **inst)
{
    struct file_inst *f = calloc(1, sizeof(*f));
    if (!f)
        return CASCA_ERR_NOMEM;
    f->conf = conf;
    pthread_mutex_init(&f->lock, NULL);
    *inst = f;
    return CASCA_OK;
}

static void file_close(void *inst)
{
    struct file_inst *f = inst;
    pthread_mutex_destroy(&f->lock);
    free(f);
}

static int file_get(void *inst, struct ctl_value *out, struct ctl_io *io)
{
    struct file_inst *f = inst;
    char *text = NULL;
    size_t len = 0;
    int rc = slurp(f->conf->path, &text, &len, io);
    if (rc == CASCA_OK)
        rc = read_value(f->conf, text, len, out, io);
    free(text);
    return rc;
}

static int file_set(void *inst, const struct ctl_value *v, struct ctl_io *io)
{
    struct file_inst *f = inst;
    ctl_io_clamp(io, f->conf->timeout_ms);
    pthread_mutex_lock(&f->lock);
    char *text = NULL, *next = NULL;
    size_t len = 0;
    int rc = slurp(f->conf->path, &text, &len, io);
    if (rc == CASCA_OK)
        rc = modify(f->conf, text, len, v, &next, io);
    if (rc == CASCA_OK && ctl_io_left_ms(io) <= 0)
        rc = ctl_io_fail(io, CASCA_ERR_TIMEOUT, "deadline passed before writing %s", f->conf->path);
    if (rc == CASCA_OK && strcmp(text, next) != 0 && (rc = write_atomic(f->conf->path, next, io)) ==
                                                         CASCA_OK)
        rc = reload(f->conf, io);
    pthread_mutex_unlock(&f->lock);
    free(text);
    free(next);
    return rc;
}

static void list_json(json_t *parent, void (*fn)(void *, const char *), void *arg)
{
    const char *k;
    json_t *val;
    if (json_is_object(parent))
        json_object_foreach(parent, k, val) fn(arg, k);
}

static int file_list(void *inst, void (*fn)(void *arg, const char *key), void *arg,
                     struct ctl_io *io)
{
    struct file_inst *f = inst;
    const struct file_conf *c = f->conf;
    char *text = NULL;
    size_t len = 0;
    int rc = slurp(c->path, &text, &len, io);
    if (rc != CASCA_OK)
        return rc;
    if (c->fmt == FMT_JSON) {
        json_t *doc = json_loadb(text, len, 0, NULL), *parent = NULL;
        if (doc) {
            ctl_json_follow(doc, c->key, &parent, NULL);
            list_json(parent, fn, arg);
            json_decref(doc);
        }
    } else {
        /* YAML and INI: the names that start a line ("name:" or "name ="), at any level: a hint
         * for the operator, not a parse */
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
            size_t n = strspn(line, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
                                    "-.");
            char *p = line + n;
            while (*p == ' ')
                p++;
            if (n && (*p == ':' || *p == '=')) {
                line[n] = 0;
                fn(arg, line);
            }
        }
    }
    free(text);
    return CASCA_OK;
}

const struct ctl_ops ctl_file_ops = {
    .name = "file",
    .parse = file_parse,
    .free_conf = file_free_conf,
    .open = file_open,
    .get = file_get,
    .set = file_set,
    .list = file_list,
    .close = file_close,
};
