#include "daemon.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "agent.h"
#include "audit.h"
#include "auth.h"
#include "carbon.h"
#include "casca_err.h"
#include "clock.h"
#include "control.h"
#include "ctl.h"
#include "health.h"
#include "hooks.h"
#include "log.h"
#include "dashboard.h"
#include "metrics.h"
#include "otlp.h"
#include "remote_write.h"
#include "probe.h"
#include "reflection.h"
#include "sections.h"
#include "slo.h"
#include "slo_service.h"
#include "telemetry.h"
#include "tsdb.h"
#include "store.h"

const struct config_section *const cascad_config_sections[] = {
    &ctl_config_section,   &carbon_config_section,    &hooks_config_section,
    &probes_config_section, &telemetry_config_section, &slo_config_section,
    &http_config_section,  &otlp_config_section,      NULL,
};

extern const unsigned char casca_descriptor_set[];
extern const size_t casca_descriptor_set_size;

static void add_error(struct config_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_error(struct config_errors *errs, const char *fmt, ...)
{
    char *line = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    char **grown = n >= 0 ? realloc(errs->lines, (errs->n + 1) * sizeof(char *)) : NULL;
    if (!grown) {
        free(n >= 0 ? line : NULL);
        return;
    }
    errs->lines = grown;
    errs->lines[errs->n++] = line;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while (mem && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, mem);
    if (mem)
        fclose(mem);
    fclose(f);
    return buf;
}

static int open_store(struct daemon *d, const struct config *c, struct config_errors *errs)
{
    struct store_options so = {
        .dir = c->server.data_dir,
        .map_size = c->store.map_size,
        .max_map_size = c->store.max_map_size,
        .sync_interval_ms = (unsigned)c->store.sync_interval_ms,
    };
    store_sync_parse(c->store.sync, &so.sync);
    char err[512] = "";
    int rc = store_open(&so, &d->store, err, sizeof(err));
    if (rc) {
        add_error(errs, "%s", *err ? err : casca_strerror(rc));
        return rc;
    }
    if ((rc = audit_open(d->store, "audit", &d->audit)) != CASCA_OK) {
        add_error(errs,
                  "cannot open the audit log in %s (data.mdb, audit.wal): %s; check that this "
                  "user may read and write them",
                  c->server.data_dir, casca_strerror(rc));
        return rc;
    }
    if ((rc = tsdb_open(d->store, &telemetry_config_of(c)->tsdb, &d->tsdb)) != CASCA_OK)
        add_error(errs, "cannot open the time-series store in %s: %s", c->server.data_dir,
                  casca_strerror(rc));
    return rc;
}

/* The PEM text of server.tls's certificate, key and client CA (NULL each when not set), for
 * the gRPC and the HTTP listener; problems go to errs. */
static void read_tls(const struct config *c, char *pems[3], struct config_errors *errs)
{
    const char *files[3] = {c->server.tls_cert, c->server.tls_key, c->server.tls_client_ca};
    for (int i = 0; i < 3; i++) {
        pems[i] = c->server.tls_cert && files[i] ? read_file(files[i]) : NULL;
        if (c->server.tls_cert && files[i] && !pems[i])
            add_error(errs, "cannot read %s: %s", files[i], strerror(errno));
    }
}

static int listen_on(struct daemon *d, const struct config *c, struct config_errors *errs)
{
    struct rpc_tls tls = {0};
    char *pems[3];
    read_tls(c, pems, errs);
    if (c->server.tls_cert)
        tls = (struct rpc_tls){pems[0], pems[1], pems[2], c->server.tls_require_client_cert};
    if (!errs->n)
        d->port = rpc_server_listen(d->rpc, c->server.listen, c->server.tls_cert ? &tls : NULL);
    for (int i = 0; i < 3; i++)
        free(pems[i]);
    if (errs->n)
        return CASCA_ERR_IO;
    if (d->port <= 0) {
        add_error(errs,
                  "cannot listen on %s: the address is in use or not local to this host "
                  "(pick another with --listen HOST:PORT)",
                  c->server.listen);
        return CASCA_ERR_UNAVAILABLE;
    }
    return CASCA_OK;
}

/* The HTTP listener (http.listen, off when absent): the same tokens, roles and TLS certificate
 * as gRPC. Its handlers read the services, so it starts after them and stops before them. */
static int open_http(struct daemon *d, const struct config *c, const struct rpc_options *opts,
                     struct config_errors *errs)
{
    const char *listen = http_config_of(c)->listen;
    if (!listen)
        return CASCA_OK;
    if (!(d->dashboard = dashboard_create(d))) {
        add_error(errs, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    struct dashboard *db = d->dashboard;
    const struct http_route routes[] = {
        {"/metrics", "GET", RPC_ROLES_READ, metrics_handler, d},
        {REMOTE_WRITE_PATH, "POST", RPC_ROLE_REPORTER, remote_write_handler, d->telemetry},
        {"/", "GET", RPC_ROLES_READ, dashboard_file, db, HTTP_PUBLIC},
        {"/dashboard.js", "GET", RPC_ROLES_READ, dashboard_file, db, HTTP_PUBLIC},
        {"/dashboard.css", "GET", RPC_ROLES_READ, dashboard_file, db, HTTP_PUBLIC},
        {"/api/state", "GET", RPC_ROLES_READ, dashboard_state, db, HTTP_QUERY_TOKEN},
        {"/events", "GET", RPC_ROLES_READ, NULL, db, HTTP_QUERY_TOKEN, dashboard_events,
         DASHBOARD_MAX_STREAMS, dashboard_stream_count(db)},
    };
    _Static_assert(sizeof(routes) == sizeof(d->http_routes), "daemon.h: http_routes[]");
    memcpy(d->http_routes, routes, sizeof(routes));
    struct http_options ho = {.listen = listen, .auth = opts->auth, .auth_arg = opts->auth_arg};
    char *pems[3];
    read_tls(c, pems, errs);
    ho.cert_pem = pems[0];
    ho.key_pem = pems[1];
    ho.client_ca_pem = pems[2];
    ho.require_client_cert = c->server.tls_require_client_cert;
    char err[512] = "out of memory";
    int rc = errs->n ? CASCA_ERR_IO
                     : http_server_create(&ho, d->http_routes, sizeof(routes) / sizeof(routes[0]),
                                          &d->http, err, sizeof(err));
    if (rc && !errs->n)
        add_error(errs, "%s", err);
    for (int i = 0; i < 3; i++)
        free(pems[i]);
    return rc;
}

/* Probe results enter the ingest stage like published points (no one waits for them). A scraped
 * page may hold samples the store refuses (a label too long): they are left out, so that one bad
 * sample does not cost the batch. */
static void probe_sink(void *arg, const char *probe, const struct tsdb_point *pts, size_t n)
{
    struct daemon *d = arg;
    struct tsdb_point *ok = malloc(n * sizeof(*ok));
    if (!ok) {
        log_warn("probe", "probe results of %s not stored: out of memory", probe);
        return;
    }
    size_t kept = 0, refused = 0;
    int64_t now = casca_wall_ns();
    char why[256], first[200] = "";
    for (size_t i = 0; i < n; i++) {
        if (tsdb_check_point(d->tsdb, &pts[i], now, why, sizeof(why)) == CASCA_OK)
            ok[kept++] = pts[i];
        else if (!refused++)
            snprintf(first, sizeof(first), "%.60s: %.120s", pts[i].series, why);
    }
    if (refused)
        log_warn("probe", "probe %s: %zu samples refused by the store, the first: %s", probe,
                 refused, first);
    if (kept && hooks_submit(d->hooks, HOOK_SOURCE_PROBES, probe, ok, kept, NULL, NULL, why,
                             sizeof(why)))
        log_warn("probe", "probe results of %s not stored: %s", probe, why);
    free(ok);
}

/* The gRPC server and the services on it, in dependency order. Each part is created the same
 * way: a casca_err, with its reason in err. */
static int open_services(struct daemon *d, struct config *c, const struct rpc_options *opts,
                         char *err, size_t errlen)
{
    int rc;
    if (!(d->rpc = rpc_server_create(opts))) /* NULL only without memory */
        return CASCA_ERR_NOMEM;
    if ((rc = health_create(d->rpc, &d->health, err, errlen)) ||
        (rc = reflection_create(d->rpc, casca_descriptor_set, casca_descriptor_set_size,
                                &d->reflection, err, errlen)) ||
        (rc = admin_create(d->rpc, d, &d->admin, err, errlen)) ||
        (rc = telemetry_create(d->rpc, d->live, d->tsdb, d->hooks, &d->telemetry, err, errlen)) ||
        (rc = otlp_create(d->rpc, d->live, d->telemetry, &d->otlp, err, errlen)))
        return rc;
    if (!(d->ctl = ctl_create(c, d->audit))) /* NULL only without memory */
        return CASCA_ERR_NOMEM;
    if ((rc = control_create(d->rpc, d->ctl, &d->control, err, errlen)) ||
        (rc = carbon_create(d->rpc, d->live, d->store, &d->carbon, err, errlen)) ||
        (rc = slo_service_create(d->rpc, c, d->tsdb, d->carbon, &d->slo, err, errlen)))
        return rc;
    return agent_create(d->rpc, d->ctl, d->slo, d->carbon, d->live, d->store, &d->agent, err,
                        errlen);
}

int daemon_open(struct daemon **out, const char *config_path, const struct config_overrides *ov,
                struct config_errors *errs)
{
    *out = NULL;
    struct daemon *d = calloc(1, sizeof(*d));
    if (!d)
        return CASCA_ERR_NOMEM;
    pthread_mutex_init(&d->reload_lock, NULL);
    d->started_ns = casca_wall_ns();
    d->started_mono_ns = casca_mono_ns();
    d->config_path = strdup(config_path);
    d->overrides.listen = ov && ov->listen ? strdup(ov->listen) : NULL;
    d->overrides.data_dir = ov && ov->data_dir ? strdup(ov->data_dir) : NULL;

    struct config *c = NULL;
    int rc = config_load(config_path, &d->overrides, cascad_config_sections, &c, errs);
    if (rc) {
        daemon_close(d);
        return rc;
    }
    log_set_level((enum log_level)log_level_parse(c->server.log_level));
    d->live = config_live_create(c);
    if ((rc = open_store(d, c, errs))) {
        daemon_close(d);
        return rc;
    }

    struct rpc_options opts = {
        .cq_threads = c->server.threads,
        .workers = c->server.workers,
        .worker_queue = c->server.worker_queue,
        .max_message_bytes = c->server.max_message_bytes,
        .stream_queue = c->server.stream_queue,
        /* tokens are read per call from the live snapshot, so reload can add or revoke them;
         * with none configured at start the server is loopback-only and every caller an operator */
        .auth = auth_enabled(c) ? auth_check : NULL,
        .auth_arg = d->live,
        .descriptor_set = casca_descriptor_set,
        .descriptor_set_size = casca_descriptor_set_size,
    };
    /* the ingest stage first: every point source hands its points to the hooks */
    d->ingest_config = config_ref(c);
    struct hook_env henv = {.tsdb = d->tsdb, .builtin_sources = true};
    char err[512] = "out of memory";
    if ((rc = hooks_create(config_section_of(c, &hooks_config_section), &henv, &d->hooks, err,
                           sizeof(err))) ||
        (rc = probes_create(config_section_of(c, &probes_config_section), probe_sink, d,
                            &d->probes, err, sizeof(err)))) {
        add_error(errs, "%s", err);
        daemon_close(d);
        return rc;
    }
    if ((rc = open_services(d, c, &opts, err, sizeof(err)))) {
        add_error(errs, "cannot set up the services: %s", err);
        daemon_close(d);
        return rc;
    }
    if ((rc = listen_on(d, c, errs)) || (rc = rpc_server_start(d->rpc)) ||
        (rc = open_http(d, c, &opts, errs))) {
        daemon_close(d);
        return rc;
    }
    health_set_serving(d->health, true);
    log_info("cascad", "casca %s serving on %s (port %d), data in %s, %s", CASCA_VERSION,
             c->server.listen, d->port, c->server.data_dir,
             auth_enabled(c) ? "bearer tokens required" : "no tokens: loopback only");
    if (d->http)
        log_info("cascad", "metrics at %s://%s/metrics (port %d)",
                 c->server.tls_cert ? "https" : "http", http_config_of(c)->listen,
                 http_server_port(d->http));
    *out = d;
    return CASCA_OK;
}

int daemon_reload(struct daemon *d, struct config_errors *errs, struct config_errors *warnings,
                  uint64_t *generation)
{
    pthread_mutex_lock(&d->reload_lock);
    int64_t t0 = casca_mono_ns();
    struct config *next = NULL;
    int rc = config_load(d->config_path, &d->overrides, cascad_config_sections, &next, errs);
    if (rc == CASCA_OK) {
        struct config *cur = config_live_get(d->live);
        if (auth_enabled(cur) != auth_enabled(next)) {
            add_error(errs, "%s: auth.tokens: switching between no tokens and tokens needs a "
                            "restart (the listen address depends on it); nothing was changed",
                      d->config_path);
            rc = CASCA_ERR_CONFIG;
        } else {
            config_restart_warnings(cur, next, warnings);
            const char *was = http_config_of(cur)->listen, *now = http_config_of(next)->listen;
            if (!was != !now || (was && strcmp(was, now)))
                add_error(warnings, "%s: http.listen changed: it takes effect at the next restart",
                          d->config_path);
        }
        config_unref(cur);
    }
    if (rc == CASCA_OK) {
        log_set_level((enum log_level)log_level_parse(next->server.log_level));
        config_live_swap(d->live, next);
        tsdb_configure(d->tsdb, &telemetry_config_of(next)->tsdb);
        ctl_reload(d->ctl, next);
        carbon_reload(d->carbon, next);
        slo_service_reload(d->slo, next);
        hooks_reload(d->hooks, config_section_of(next, &hooks_config_section));
        probes_reload(d->probes, config_section_of(next, &probes_config_section));
        /* a removed token, or one whose role changed, loses its open calls now (agents their
         * leases), not only its next call */
        size_t ended = rpc_server_reauthorize(d->rpc, agent_revoke, d->agent);
        if (ended)
            log_info("cascad", "%zu open calls ended: their tokens were revoked or lost the role",
                     ended);
        *generation = next->generation;
        log_info("cascad", "configuration reloaded in %.1f ms: generation %llu",
                 (double)(casca_mono_ns() - t0) / 1e6, (unsigned long long)next->generation);
    } else {
        config_unref(next);
        for (size_t i = 0; i < errs->n; i++)
            log_warn("cascad", "reload rejected: %s", errs->lines[i]);
    }
    pthread_mutex_unlock(&d->reload_lock);
    return rc;
}

void daemon_close(struct daemon *d)
{
    if (!d)
        return;
    if (d->health)
        health_set_serving(d->health, false);
    http_server_destroy(d->http); /* its handlers read every part below */
    dashboard_destroy(d->dashboard); /* its open event streams, after the listener */
    rpc_server_destroy(d->rpc); /* every call is over after this */
    ctl_stop(d->ctl); /* no re-read reaches the watches and sessions below after this */
    admin_destroy(d->admin);
    agent_destroy(d->agent); /* before control, the SLO service, carbon and the store */
    slo_service_destroy(d->slo); /* before the carbon data and the tsdb it reads */
    control_destroy(d->control);
    ctl_destroy(d->ctl);
    carbon_destroy(d->carbon);
    reflection_destroy(d->reflection);
    health_destroy(d->health);
    probes_destroy(d->probes);
    hooks_destroy(d->hooks);
    config_unref(d->ingest_config);
    otlp_destroy(d->otlp);
    telemetry_destroy(d->telemetry);
    tsdb_close(d->tsdb); /* after everything that writes points (hooks, probes, telemetry) */
    audit_close(d->audit);
    store_close(d->store);
    config_live_destroy(d->live);
    free(d->config_path);
    free((char *)d->overrides.listen);
    free((char *)d->overrides.data_dir);
    pthread_mutex_destroy(&d->reload_lock);
    free(d);
}
