/* ctl_exec: a value read and written by commands of the service.
 *   controller:
 *     exec:
 *       get: [/usr/local/bin/svc-ctl, get, threads]      # prints the value on stdout
 *       set: [/usr/local/bin/svc-ctl, set, threads]      # the value is the last argument,
 *                                                        # or replaces {value} in an argument
 *       timeout: 5s                                      # upper bound; a call's deadline is shorter
 * A command is a list (no shell) or a string run by /bin/sh -c (the value is then passed as $1,
 * never pasted into the shell line). Commands run in their own process group; at the deadline
 * the whole group is killed (ctl_cmd.c runs them). */
#include <stdlib.h>
#include <string.h>

#include "casca_err.h"
#include "config.h"
#include "ctl.h"

/* ---- the exec controller ---- */

struct ex_conf {
    struct ctl_cmd get, set;
    uint64_t timeout_ms;
};

static void ex_free_conf(void *conf)
{
    struct ex_conf *c = conf;
    ctl_cmd_free(&c->get);
    ctl_cmd_free(&c->set);
    free(c);
}

static void *ex_parse(struct ctl_parse *p, const struct yd_node *body)
{
    static const struct config_key keys[] = {{"get"}, {"set"}, {"timeout"}, {NULL}};
    struct ex_conf *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    ctl_parse_keys(p, body, keys, "controller exec");
    const struct yd_node *g = yd_get(body, "get"), *s = yd_get(body, "set");
    if (!g)
        ctl_parse_error(p, body, "exec: 'get' (the command printing the value) is required");
    else
        ctl_parse_cmd(p, g, &c->get);
    if (s)
        ctl_parse_cmd(p, s, &c->set);
    ctl_parse_ms(p, body, "timeout", 5000, &c->timeout_ms);
    return c;
}

struct ex {
    const struct ex_conf *conf;
};

static int ex_open(const void *conf, void **inst)
{
    struct ex *e = calloc(1, sizeof(*e));
    if (!e)
        return CASCA_ERR_NOMEM;
    e->conf = conf;
    *inst = e;
    return CASCA_OK;
}

static void ex_close(void *inst)
{
    free(inst);
}

static int ex_get(void *inst, struct ctl_value *out, struct ctl_io *io)
{
    struct ex *e = inst;
    char *text = NULL;
    ctl_io_clamp(io, e->conf->timeout_ms);
    int rc = ctl_cmd_run(&e->conf->get, NULL, false, &text, io);
    if (rc != CASCA_OK)
        return rc;
    size_t n = strlen(text);
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
        text[--n] = 0;
    *out = (struct ctl_value){.kind = CTL_STRING, .s = text};
    return CASCA_OK;
}

static int ex_set(void *inst, const struct ctl_value *v, struct ctl_io *io)
{
    struct ex *e = inst;
    if (!e->conf->set.argv)
        return ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "exec: no 'set' command configured");
    struct ctl_value s;
    if (ctl_value_copy(&s, v) != CASCA_OK || ctl_value_coerce(&s, CTL_STRING) != CASCA_OK) {
        ctl_value_clear(&s);
        return ctl_io_fail(io, CASCA_ERR_NOMEM, "out of memory");
    }
    ctl_io_clamp(io, e->conf->timeout_ms);
    int rc = ctl_cmd_run(&e->conf->set, s.s, true, NULL, io);
    ctl_value_clear(&s);
    return rc;
}

const struct ctl_ops ctl_exec_ops = {
    .name = "exec",
    .parse = ex_parse,
    .free_conf = ex_free_conf,
    .open = ex_open,
    .get = ex_get,
    .set = ex_set,
    .list = NULL,
    .close = ex_close,
};
