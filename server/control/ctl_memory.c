/* ctl_memory: a value held in cascad's memory, for tests and simulations.
 *   controller: {memory: {value: 4, latency: 0ms}}
 * `value` is the initial value (default: none until set); `latency` delays every get and set, to
 * simulate a slow service (it honours the operation's deadline). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "casca_err.h"
#include "config.h"
#include "ctl.h"

struct mem_conf {
    struct ctl_value initial;
    uint64_t latency_ms;
};

struct mem {
    const struct mem_conf *conf;
    pthread_mutex_t lock;
    struct ctl_value value;
};

static void *mem_parse(struct ctl_parse *p, const struct yd_node *body)
{
    static const struct config_key keys[] = {{"value"}, {"latency"}, {NULL}};
    struct mem_conf *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    ctl_parse_keys(p, body, keys, "controller memory");
    const char *v = ctl_parse_str(p, body, "value", false);
    if (v) {
        c->initial = (struct ctl_value){.kind = CTL_STRING, .s = strdup(v)};
        if (!c->initial.s || ctl_value_coerce(&c->initial, ctl_parse_type(p)) != CASCA_OK)
            ctl_parse_error(p, yd_get(body, "value"), "value: '%s' is not a %s", v,
                            ctl_type_name(ctl_parse_type(p)));
    }
    ctl_parse_ms(p, body, "latency", 0, &c->latency_ms);
    return c;
}

static void mem_free_conf(void *conf)
{
    struct mem_conf *c = conf;
    ctl_value_clear(&c->initial);
    free(c);
}

static int mem_open(const void *conf, void **inst)
{
    struct mem *m = calloc(1, sizeof(*m));
    if (!m)
        return CASCA_ERR_NOMEM;
    m->conf = conf;
    pthread_mutex_init(&m->lock, NULL);
    if (ctl_value_copy(&m->value, &m->conf->initial) != CASCA_OK) {
        free(m);
        return CASCA_ERR_NOMEM;
    }
    *inst = m;
    return CASCA_OK;
}

/* Sleeps the configured latency, or fails with TIMEOUT if the deadline comes first. */
static int mem_wait(const struct mem *m, struct ctl_io *io)
{
    if (!m->conf->latency_ms)
        return CASCA_OK;
    int64_t left = ctl_io_left_ms(io);
    int64_t ms = (int64_t)m->conf->latency_ms < left ? (int64_t)m->conf->latency_ms : left;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
    if ((int64_t)m->conf->latency_ms > left)
        return ctl_io_fail(io, CASCA_ERR_TIMEOUT, "memory: latency %llu ms is past the deadline",
                           (unsigned long long)m->conf->latency_ms);
    return CASCA_OK;
}

static int mem_get(void *inst, struct ctl_value *out, struct ctl_io *io)
{
    struct mem *m = inst;
    int rc = mem_wait(m, io);
    if (rc)
        return rc;
    pthread_mutex_lock(&m->lock);
    rc = m->value.kind == CTL_NONE ? ctl_io_fail(io, CASCA_ERR_NOT_FOUND, "memory: no value yet")
                                   : ctl_value_copy(out, &m->value);
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static int mem_set(void *inst, const struct ctl_value *v, struct ctl_io *io)
{
    struct mem *m = inst;
    int rc = mem_wait(m, io);
    if (rc)
        return rc;
    struct ctl_value copy;
    if (ctl_value_copy(&copy, v) != CASCA_OK)
        return ctl_io_fail(io, CASCA_ERR_NOMEM, "memory: out of memory");
    pthread_mutex_lock(&m->lock);
    ctl_value_clear(&m->value);
    m->value = copy;
    pthread_mutex_unlock(&m->lock);
    return CASCA_OK;
}

static void mem_close(void *inst)
{
    struct mem *m = inst;
    ctl_value_clear(&m->value);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

const struct ctl_ops ctl_memory_ops = {
    .name = "memory",
    .parse = mem_parse,
    .free_conf = mem_free_conf,
    .open = mem_open,
    .get = mem_get,
    .set = mem_set,
    .list = NULL,
    .close = mem_close,
};
