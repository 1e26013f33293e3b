/* casca-carbon-import: loads Electricity Maps CSV exports (hourly; both header variants) into the
 * carbon data of a casca data dir, so GetLocationIntensity answers for the zones and years in them.
 * Safe while cascad runs on the same data dir: LMDB serialises the writers of both processes and
 * cascad reads every figure from the store, so it answers from the new data once this commits.
 * Re-importing a file changes nothing (its hours are replaced by the same values).
 *
 *   casca-carbon-import (--data-dir DIR | --config casca.yaml) [--direct] [--strict] FILE.csv...
 *
 * Exit status: 0 imported (malformed rows, if any, were listed and skipped), 1 a file was refused
 * or the store failed, 2 bad usage. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "carbon_csv.h"
#include "carbondb.h"
#include "casca_err.h"
#include "config.h"
#include "sections.h"
#include "store.h"

/* Only server: and store: are read from the config: cascad's sections are known, not read. */
static const struct config_section cascad_keys = {
    .keys = (const char *const[]){CASCAD_CONFIG_KEYS, NULL},
};
static const struct config_section *const sections[] = {&cascad_keys, NULL};

static void usage(FILE *to)
{
    fprintf(to,
            "usage: casca-carbon-import (--data-dir DIR | --config FILE) [--direct] [--strict] "
            "FILE.csv...\n"
            "  loads Electricity Maps CSV exports (hourly) into cascad's carbon data\n"
            "  --data-dir DIR   cascad's data dir\n"
            "  --config FILE    read the data dir (and store settings) from cascad's config\n"
            "  --direct         import the direct-emission column instead of the life-cycle one\n"
            "  --strict         import nothing from a file with a malformed row\n");
}

static void span_of(const struct carbon_csv_zone *z, char *buf, size_t len)
{
    int64_t lo = INT64_MAX, hi = -1;
    for (size_t i = 0; i < z->n; i++) {
        lo = z->hours[i].hour < lo ? z->hours[i].hour : lo;
        hi = z->hours[i].hour > hi ? z->hours[i].hour : hi;
    }
    char a[40], b[40];
    time_t ta = (time_t)(lo * 3600), tb = (time_t)(hi * 3600);
    struct tm tm;
    strftime(a, sizeof(a), "%Y-%m-%dT%HZ", gmtime_r(&ta, &tm));
    strftime(b, sizeof(b), "%Y-%m-%dT%HZ", gmtime_r(&tb, &tm));
    snprintf(buf, len, "%s..%s", a, b);
}

static int import_file(struct carbondb *db, const char *path, bool direct, bool strict)
{
    struct carbon_csv_options o = {.direct = direct, .source = CARBONDB_SRC_IMPORT};
    struct carbon_csv_data d = {0};
    struct carbon_csv_report r;
    int rc = carbon_csv_parse_file(path, &o, &d, &r);
    for (size_t i = 0; i < r.n_problems; i++)
        fprintf(stderr, "%s:%zu: %s\n", path, r.problems[i].line, r.problems[i].why);
    if (r.skipped > r.n_problems)
        fprintf(stderr, "%s: %zu more malformed rows\n", path, r.skipped - r.n_problems);
    if (rc) {
        fprintf(stderr, "%s: %s\n", path, *r.error ? r.error : casca_strerror(rc));
        carbon_csv_data_free(&d);
        return 1;
    }
    if (r.format != CARBON_CSV_EM_EXPORT && r.format != CARBON_CSV_LONG_HOURLY) {
        fprintf(stderr,
                "%s: not an hourly Electricity Maps export (yearly tables are bundled "
                "data, not imports)\n",
                path);
        carbon_csv_data_free(&d);
        return 1;
    }
    if (strict && r.skipped) {
        fprintf(stderr, "%s: %zu malformed rows: nothing imported (--strict)\n", path, r.skipped);
        carbon_csv_data_free(&d);
        return 1;
    }
    if (!d.n) {
        fprintf(stderr, "%s: no rows with data: nothing imported\n", path);
        carbon_csv_data_free(&d);
        return 1;
    }
    struct carbondb_put_stats st;
    rc = carbon_csv_store(db, &d, false, &st);
    if (rc) {
        fprintf(stderr, "%s: cannot write to the store: %s\n", path, casca_strerror(rc));
        carbon_csv_data_free(&d);
        return 1;
    }
    for (size_t i = 0; i < d.n; i++) {
        char span[96];
        span_of(&d.zones[i], span, sizeof(span));
        printf("%s: zone %s, %zu hours %s (%s)\n", path, d.zones[i].zone, d.zones[i].n, span,
               direct ? "direct" : "life cycle");
    }
    printf("%s: %zu rows: %zu hours added, %zu changed, %zu unchanged; %zu malformed rows "
           "skipped\n",
           path, r.rows, st.added, st.changed, st.unchanged, r.skipped);
    carbon_csv_data_free(&d);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data-dir", required_argument, NULL, 'd'}, {"config", required_argument, NULL, 'c'},
        {"direct", no_argument, NULL, 'D'},         {"strict", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    const char *dir = NULL, *config = NULL;
    bool direct = false, strict = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "d:c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            dir = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'D':
            direct = true;
            break;
        case 's':
            strict = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if ((!dir == !config) || optind == argc) {
        usage(stderr);
        return 2;
    }
    struct store_options so = {.sync = STORE_SYNC_EVERY_COMMIT};
    struct config *c = NULL;
    if (config) {
        struct config_errors errs = {0};
        if (config_load(config, NULL, sections, &c, &errs)) {
            for (size_t i = 0; i < errs.n; i++)
                fprintf(stderr, "%s\n", errs.lines[i]);
            config_errors_free(&errs);
            return 1;
        }
        so.dir = c->server.data_dir;
        so.map_size = c->store.map_size;
        so.max_map_size = c->store.max_map_size;
    } else {
        so.dir = dir;
    }
    struct store *s = NULL;
    struct carbondb *db = NULL;
    char err[512] = "";
    int rc = store_open(&so, &s, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "%s\n", *err ? err : casca_strerror(rc));
        config_unref(c);
        return 1;
    }
    int status = 0;
    if ((rc = carbondb_open(s, &db))) {
        fprintf(stderr, "cannot open the carbon data in %s: %s\n", so.dir, casca_strerror(rc));
        status = 1;
    }
    for (int i = optind; i < argc && db; i++)
        if (import_file(db, argv[i], direct, strict)) status = 1;
    carbondb_close(db);
    store_close(s);
    config_unref(c);
    return status;
}
