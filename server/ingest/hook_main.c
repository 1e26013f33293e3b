/* casca-hook: runs the buses and hooks of a configuration file without the gRPC server, so a bus
 * or a hook can live on another host:
 *   casca-hook --config FILE [--data-dir DIR]
 * A hook with bus: tcp://HOST:PORT subscribes to the publish side of a remote bus (cascad's
 * bus.publish); hooks with the lmdb connector store into the data dir's time-series store.
 * SIGTERM and SIGINT stop it (queued messages are stored first); the hooks' counters are logged
 * every minute and at exit. Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad usage or
 * configuration. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "casca_err.h"
#include "config.h"
#include "hooks.h"
#include "log.h"
#include "sections.h"
#include "store.h"
#include "telemetry.h"
#include "tsdb.h"

#define STATS_EVERY_S 60

/* casca-hook reads the buses, the hooks and the tsdb options of a file cascad reads too: cascad's
 * other keys are known, not read. */
static const struct config_section cascad_keys = {
    .keys = (const char *const[]){CASCAD_CONFIG_KEYS, NULL},
};
static const struct config_section *const sections[] = {
    &hooks_config_section, &telemetry_config_section, &cascad_keys, NULL,
};

static void usage(FILE *to)
{
    fprintf(to, "usage: casca-hook --config FILE [--data-dir DIR]\n"
                "Runs the bus: and hooks: of FILE; SIGTERM stops it.\n");
}

static bool needs_store(const struct hooks_section *sec)
{
    for (size_t i = 0; sec && i < sec->nhooks; i++)
        if (sec->hooks[i].connector == &hook_connector_lmdb) return true;
    return false;
}

static void log_stats(const struct hooks *h)
{
    struct hook_stats st[64];
    size_t n = hooks_stats(h, st, 64);
    for (size_t i = 0; i < n; i++)
        log_info("casca-hook",
                 "hook %s: %llu queued, %llu dropped, %llu points stored, %llu errors", st[i].name,
                 (unsigned long long)st[i].queued, (unsigned long long)st[i].dropped,
                 (unsigned long long)st[i].stored, (unsigned long long)st[i].errors);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    struct config_overrides ov = {0};
    int opt;
    while ((opt = getopt_long(argc, argv, "c:d:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'd':
            ov.data_dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!path || optind != argc) {
        usage(stderr);
        return 2;
    }
    struct config_errors errs = {0};
    struct config *c = NULL;
    if (config_load(path, &ov, sections, &c, &errs) != CASCA_OK) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "casca-hook: %s\n", errs.lines[i]);
        config_errors_free(&errs);
        return 2;
    }
    log_set_level((enum log_level)log_level_parse(c->server.log_level));
    const struct hooks_section *sec = config_section_of(c, &hooks_config_section);
    if (!sec || (!sec->nhooks && !sec->nbuses)) {
        fprintf(stderr, "casca-hook: %s has no bus: and no hooks: to run\n", path);
        config_unref(c);
        return 2;
    }

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct store *store = NULL;
    struct hook_env env = {0};
    char err[512] = "";
    int rc = CASCA_OK;
    if (needs_store(sec)) {
        struct store_options so = {
            .dir = c->server.data_dir,
            .map_size = c->store.map_size,
            .max_map_size = c->store.max_map_size,
            .sync_interval_ms = (unsigned)c->store.sync_interval_ms,
        };
        store_sync_parse(c->store.sync, &so.sync);
        if ((rc = store_open(&so, &store, err, sizeof(err))) ||
            (rc = tsdb_open(store, &telemetry_config_of(c)->tsdb, &env.tsdb)))
            fprintf(stderr, "casca-hook: cannot open the store in %s: %s\n", c->server.data_dir,
                    *err ? err : casca_strerror(rc));
    }
    struct hooks *hooks = NULL;
    if (!rc && (rc = hooks_create(sec, &env, &hooks, err, sizeof(err))))
        fprintf(stderr, "casca-hook: %s\n", err);
    if (!rc) {
        log_info("casca-hook", "running %zu hooks from %s", hooks_count(hooks), path);
        for (;;) {
            struct timespec every = {STATS_EVERY_S, 0};
            int sig = sigtimedwait(&sigs, NULL, &every);
            if (sig == SIGTERM || sig == SIGINT) break;
            if (sig == SIGHUP)
                log_warn("casca-hook", "SIGHUP: casca-hook does not reload; restart it to apply "
                                       "a new configuration");
            else if (sig < 0)
                log_stats(hooks);
        }
        log_stats(hooks);
    }
    hooks_destroy(hooks);
    tsdb_close(env.tsdb);
    store_close(store);
    config_unref(c);
    log_info("casca-hook", "stopped");
    return rc ? 1 : 0;
}
