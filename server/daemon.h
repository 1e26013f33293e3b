/* daemon: cascad's parts wired together: the live configuration, the store, the gRPC server and
 * its services; opening, reloading and closing them in the right order. main.c owns one. */
#ifndef CASCA_DAEMON_H
#define CASCA_DAEMON_H

#include <pthread.h>
#include <stdint.h>

#include "config.h"
#include "http_server.h"

struct daemon {
    char *config_path;
    struct config_overrides overrides;
    struct config_live *live;
    struct store *store;
    struct audit *audit;
    struct rpc_server *rpc;
    struct health *health;
    struct reflection *reflection;
    struct admin *admin;
    struct ctl *ctl;         /* service control: settings and their controllers */
    struct control *control; /* ServiceControl */
    struct carbon *carbon;
    struct hooks *hooks;   /* telemetry: the buses and hooks (hooks.h) */
    struct probes *probes; /* HTTP probes (probe.h) */
    struct config *ingest_config; /* the snapshot the hooks and probes run with */
    struct tsdb *tsdb;           /* the time-series store (stores/tsdb.h) */
    struct telemetry *telemetry; /* TelemetryService */
    struct otlp *otlp;           /* OTLP MetricsService (Export) */
    struct slo_service *slo;     /* the SLO engine and SloService */
    struct agent *agent;         /* AgentService sessions, leases, trajectories */
    struct http_server *http;    /* the HTTP listener (http.listen), or NULL */
    struct http_route http_routes[7]; /* its routes: /metrics, remote write, the dashboard */
    struct dashboard *dashboard;      /* the page at / and its event feed */
    int64_t started_ns; /* wall clock, ns since the epoch */
    int64_t started_mono_ns;
    int port; /* bound port */
    pthread_mutex_t reload_lock; /* one reload at a time (SIGHUP and AdminService.Reload) */
};

/* Loads the configuration, opens the store, builds and starts the server. On a bad configuration
 * returns CASCA_ERR_CONFIG with every problem in errs; on other failures a casca_err with the
 * reason in errs. Main thread. */
int daemon_open(struct daemon **out, const char *config_path, const struct config_overrides *ov,
                struct config_errors *errs);
/* Re-reads the configuration file; on success swaps it in and returns its generation. A bad file
 * changes nothing: errs lists the problems. Keys that need a restart come back in warnings.
 * Any thread; serialised. */
int daemon_reload(struct daemon *d, struct config_errors *errs, struct config_errors *warnings,
                  uint64_t *generation);
/* Graceful stop: health turns NOT_SERVING, calls drain and are cancelled, the store is closed.
 * Safe on NULL. Main thread. */
void daemon_close(struct daemon *d);

#endif
