/* cascad: the casca control-plane daemon.
 *   cascad --config FILE [--listen HOST:PORT] [--data-dir DIR]
 * Signals: SIGHUP reloads the configuration; SIGTERM and SIGINT stop gracefully.
 * Exit codes: 0 stopped cleanly, 1 runtime failure (port busy, store unusable), 2 bad usage or
 * configuration. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "casca_err.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "sections.h"

static void usage(FILE *to)
{
    fprintf(to, "usage: cascad --config FILE [--listen HOST:PORT] [--data-dir DIR]\n"
                "       cascad --check --config FILE   (validate the configuration and exit)\n"
                "       cascad --version\n"
                "Flags override the file. SIGHUP reloads the file; SIGTERM stops gracefully.\n");
}

static void print_errors(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "cascad: %s\n", errs->lines[i]);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"listen", required_argument, NULL, 'l'},
        {"data-dir", required_argument, NULL, 'd'}, {"check", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    struct config_overrides ov = {0};
    int check_only = 0, opt;
    while ((opt = getopt_long(argc, argv, "c:l:d:kVh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'l': ov.listen = optarg; break;
        case 'd': ov.data_dir = optarg; break;
        case 'k': check_only = 1; break;
        case 'V': printf("cascad %s\n", CASCA_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!config_path || optind != argc) {
        usage(stderr);
        return 2;
    }

    struct config_errors errs = {0};
    if (check_only) {
        struct config *c = NULL;
        int rc = config_load(config_path, &ov, cascad_config_sections, &c, &errs);
        print_errors(&errs);
        config_errors_free(&errs);
        if (!rc)
            printf("%s: ok\n", config_path);
        config_unref(c);
        return rc ? 2 : 0;
    }

    /* Block the signals in every thread (the ones started below inherit the mask) and take them
     * synchronously here: no work happens in a signal handler. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct daemon *d = NULL;
    int rc = daemon_open(&d, config_path, &ov, &errs);
    print_errors(&errs);
    config_errors_free(&errs);
    if (rc)
        return rc == CASCA_ERR_CONFIG ? 2 : 1;

    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig != SIGHUP) {
            log_info("cascad", "%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            break;
        }
        struct config_errors warnings = {0};
        uint64_t gen = 0;
        daemon_reload(d, &errs, &warnings, &gen);
        for (size_t i = 0; i < warnings.n; i++)
            log_warn("cascad", "%s", warnings.lines[i]);
        config_errors_free(&errs);
        config_errors_free(&warnings);
    }
    daemon_close(d);
    log_info("cascad", "stopped");
    return 0;
}
