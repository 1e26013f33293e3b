/* carbondb + carbon_csv: the CSV formats (both Electricity Maps header variants, U+2082, malformed
 * rows with their line numbers), the bundled data loaded into LMDB (spot checks against the
 * published figures), idempotent re-import, imports surviving a bundled reload, the provider cache
 * and the zone listing. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw */
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "carbon_csv.h"
#include "carbondb.h"
#include "casca_err.h"
#include "store.h"

struct fixture {
    char *dir;
    struct store *s;
    struct carbondb *db;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->dir = fixture_tmpdir("carbon-test"))) return -1;
    struct store_options o = {.dir = f->dir, .sync = STORE_SYNC_NONE};
    char err[512];
    if (store_open(&o, &f->s, err, sizeof err) || carbondb_open(f->s, &f->db)) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    carbondb_close(f->db);
    store_close(f->s);
    int rc = fixture_remove_tree(f->dir);
    free(f->dir);
    free(f);
    return rc;
}

static int64_t hour_of(int y, int m, int d, int h)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d, .tm_hour = h};
    return (int64_t)timegm(&tm) / 3600;
}

static void test_parse_hour(void **state)
{
    (void)state;
    int64_t h;
    const int64_t want = hour_of(2022, 1, 1, 0);
    const char *ok[] = {"2022-01-01T00:00:00Z", "2022-01-01 00:00:00", "2022-01-01T00:00:00.000Z",
                        "2022-01-01T00:00:00+00:00", "2022-01-01T00:00"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        h = -1;
        assert_null(carbon_csv_parse_hour(ok[i], &h));
        assert_int_equal(h, want);
    }
    assert_null(carbon_csv_parse_hour("2024-02-29 23:00:00", &h));
    assert_int_equal(h, hour_of(2024, 2, 29, 23));
    assert_non_null(carbon_csv_parse_hour("2022-01-01T00:30:00Z", &h)); /* not on the hour */
    assert_non_null(carbon_csv_parse_hour("2022-01-01", &h));
    assert_non_null(carbon_csv_parse_hour("2022-13-01 00:00:00", &h));
    assert_non_null(carbon_csv_parse_hour("2022-01-01T00:00:00+02:00", &h));
    assert_non_null(carbon_csv_parse_hour("yesterday", &h));
    assert_non_null(carbon_csv_parse_hour("", &h));
}

/* The old header, exactly as the bundled ES export has it (U+2082 in "gCO₂eq"). */
static const char old_csv[] =
    "Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO\xe2\x82\x82"
    "eq/kWh (direct),"
    "Carbon Intensity gCO\xe2\x82\x82"
    "eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,"
    "Data Source,Data Estimated,Data Estimation Method\r\n"
    "2023-01-01 00:00:00,Spain,Spain,ES,82.99,114.42,84.03,50.66,entsoe.eu,false,\r\n"
    "2023-01-01 01:00:00,Spain,Spain,ES,85.96,117.69,83.61,49.16,entsoe.eu,true,TIME_SLICER\r\n";

/* The newer header, other case, other column names, and "Zone id". */
static const char new_csv[] =
    "Datetime (UTC),Country,Zone name,Zone id,Carbon intensity gCO\xe2\x82\x82"
    "eq/kWh (direct),"
    "Carbon intensity gCO\xe2\x82\x82"
    "eq/kWh (Life cycle),Carbon-free energy percentage (CFE%),"
    "Renewable energy percentage (RE%),Data source,Data estimated,Data estimation method\n"
    "2024-03-01T10:00:00.000Z,Germany,Germany,DE,300.5,350.25,50,45,entsoe.eu,false,\n"
    "2024-03-01T11:00:00.000Z,Germany,Germany,DE,290,340,51,46,entsoe.eu,false,\n"
    "2024-03-01T12:00:00.000Z,Germany,Germany,DE,280,330,52,47,entsoe.eu,false,\n";

static void test_em_export_headers(void **state)
{
    (void)state;
    struct carbon_csv_data d = {0};
    struct carbon_csv_report r;
    assert_int_equal(carbon_csv_parse(old_csv, strlen(old_csv), NULL, &d, &r), CASCA_OK);
    assert_int_equal(r.format, CARBON_CSV_EM_EXPORT);
    assert_int_equal(r.rows, 2);
    assert_int_equal(r.skipped, 0);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.zones[0].zone, "ES");
    assert_string_equal(d.zones[0].name, "Spain");
    assert_int_equal(d.zones[0].n, 2);
    assert_float_equal(d.zones[0].hours[0].g, 114.42, 1e-9); /* the LCA column, not direct */
    assert_int_equal(d.zones[0].hours[0].hour, hour_of(2023, 1, 1, 0));
    assert_int_equal(d.zones[0].hours[0].flags, 0);
    assert_int_equal(d.zones[0].hours[1].flags, CARBONDB_ESTIMATED);
    assert_int_equal(d.zones[0].hours[0].source, CARBONDB_SRC_IMPORT);
    carbon_csv_data_free(&d);

    assert_int_equal(carbon_csv_parse(new_csv, strlen(new_csv), NULL, &d, &r), CASCA_OK);
    assert_int_equal(r.format, CARBON_CSV_EM_EXPORT);
    assert_int_equal(r.rows, 3);
    assert_string_equal(d.zones[0].zone, "DE");
    assert_float_equal(d.zones[0].hours[0].g, 350.25, 1e-9);
    assert_int_equal(d.zones[0].hours[2].hour, hour_of(2024, 3, 1, 12));
    carbon_csv_data_free(&d);

    struct carbon_csv_options direct = {.direct = true};
    assert_int_equal(carbon_csv_parse(new_csv, strlen(new_csv), &direct, &d, &r), CASCA_OK);
    assert_float_equal(d.zones[0].hours[0].g, 300.5, 1e-9);
    assert_int_equal(d.zones[0].hours[0].flags, CARBONDB_DIRECT);
    carbon_csv_data_free(&d);
}

static void test_malformed_rows(void **state)
{
    (void)state;
    const char csv[] = "zone,datetime_utc,carbon_intensity_gco2eq_per_kwh\n"
                       "AT,2022-01-01T00:00:00Z,84.73\n"
                       "AT,2022-01-01T01:00:00Z,abc\n" /* line 3: not a number */
                       "AT,2022-01-01T02:30:00Z,70\n"  /* line 4: not on the hour */
                       "\n"
                       "AT,2022-01-01T03:00:00Z\n"                   /* line 6: a field short */
                       "A T,2022-01-01T04:00:00Z,70\n"               /* line 7: bad zone */
                       "AT,2022-01-01T05:00:00Z,-5\n"                /* line 8: negative */
                       "\"AT\",\"2022-01-01T06:00:00Z\",\"66.5\"\n"; /* quoted: fine */
    struct carbon_csv_data d = {0};
    struct carbon_csv_report r;
    assert_int_equal(carbon_csv_parse(csv, strlen(csv), NULL, &d, &r), CASCA_OK);
    assert_int_equal(r.format, CARBON_CSV_LONG_HOURLY);
    assert_int_equal(r.rows, 2);
    assert_int_equal(r.skipped, 5);
    assert_int_equal(r.n_problems, 5);
    const size_t lines[] = {3, 4, 6, 7, 8};
    for (int i = 0; i < 5; i++)
        assert_int_equal(r.problems[i].line, lines[i]);
    assert_non_null(strstr(r.problems[0].why, "not a number"));
    assert_non_null(strstr(r.problems[1].why, "on the hour"));
    assert_float_equal(d.zones[0].hours[1].g, 66.5, 1e-9);
    carbon_csv_data_free(&d);

    const char bad[] = "when,where,what\n1,2,3\n";
    assert_int_equal(carbon_csv_parse(bad, strlen(bad), NULL, &d, &r), CASCA_ERR_INVALID);
    assert_non_null(strstr(r.error, "unknown CSV header"));
    carbon_csv_data_free(&d);
    assert_int_equal(carbon_csv_parse("", 0, NULL, &d, &r), CASCA_ERR_INVALID);
    const char nul[] = "zone,datetime_utc\0,x\n";
    assert_int_equal(carbon_csv_parse(nul, sizeof(nul) - 1, NULL, &d, &r), CASCA_ERR_INVALID);
    const char nolca[] = "Datetime (UTC),Zone Id,Carbon Intensity gCO2eq/kWh (direct)\n";
    assert_int_equal(carbon_csv_parse(nolca, strlen(nolca), NULL, &d, &r), CASCA_ERR_INVALID);
    assert_non_null(strstr(r.error, "life-cycle"));
    carbon_csv_data_free(&d);
    struct carbon_csv_report fr;
    assert_int_equal(carbon_csv_parse_file("/nonexistent/x.csv", NULL, &d, &fr), CASCA_ERR_IO);
}

static double mean_hours(struct carbondb *db, const char *zone, int64_t from, int64_t to, size_t *n)
{
    struct carbondb_hour *h;
    assert_int_equal(carbondb_get_hours(db, zone, from, to, &h, n), CASCA_OK);
    double sum = 0;
    for (size_t i = 0; i < *n; i++)
        sum += h[i].g;
    free(h);
    return *n ? sum / (double)*n : NAN;
}

static void test_bundled_data(void **state)
{
    struct fixture *f = *state;
    struct carbon_load_report rep;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(carbon_load_bundled(f->db, CASCA_DATA_DIR, &rep), CASCA_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    print_message("bundled load: %zu files, %zu hours, %zu years in %.0f ms\n", rep.files_loaded,
                  rep.hours, rep.years,
                  (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    assert_string_equal(rep.error, "");
    assert_int_equal(rep.files_loaded, 4);
    assert_int_equal(rep.hours, 38 * 8760 + 8760);

    /* the spot checks */
    size_t n;
    int64_t y22 = hour_of(2022, 1, 1, 0), y23 = hour_of(2023, 1, 1, 0);
    assert_float_equal(mean_hours(f->db, "AT", y22, y23, &n), 244.52, 0.005);
    assert_int_equal(n, 8760);
    struct carbondb_hour h;
    assert_int_equal(carbondb_read_hours(f->db, "AT", y22, y22 + 1, &h, 1, &n), CASCA_OK);
    assert_int_equal(n, 1);
    assert_float_equal(h.g, 84.73, 1e-9);
    assert_int_equal(h.source, CARBONDB_SRC_BUNDLED);
    /* more than max in the range */
    assert_int_equal(carbondb_read_hours(f->db, "AT", y22, y22 + 2, &h, 1, &n), CASCA_ERR_FULL);
    /* the ES export, 2023 */
    assert_float_equal(mean_hours(f->db, "ES", y23, hour_of(2024, 1, 1, 0), &n) > 0, 1, 0);
    assert_int_equal(n, 8760);
    /* yearly: Electricity Maps' means win over OWID's for 2020, OWID before that */
    struct carbondb_year y;
    assert_int_equal(carbondb_get_year(f->db, "AT", 2021, &y), CASCA_OK);
    assert_float_equal(y.g, 219.97212328767125, 1e-9);
    assert_int_equal(y.source, CARBONDB_SRC_EM_YEARLY);
    assert_int_equal(carbondb_get_year(f->db, "AT", 2020, &y), CASCA_OK);
    assert_int_equal(y.source, CARBONDB_SRC_EM_YEARLY);
    assert_int_equal(carbondb_get_year(f->db, "AT", 2000, &y), CASCA_OK);
    assert_float_equal(y.g, 158, 1e-9);
    assert_int_equal(y.source, CARBONDB_SRC_OWID_YEARLY);
    assert_int_equal(carbondb_get_year(f->db, "AT", 1999, &y), CASCA_ERR_NOT_FOUND);
    assert_int_equal(carbondb_get_year(f->db, "US-CAL-CISO", 2022, &y), CASCA_OK);

    /* zones: prefix, coverage, names */
    struct carbondb_zone *zs;
    assert_int_equal(carbondb_zones(f->db, "DK", &zs, &n), CASCA_OK);
    assert_int_equal(n, 4); /* DK (OWID yearly), DK-BHM (yearly), DK-DK1, DK-DK2 */
    assert_string_equal(zs[0].zone, "DK");
    assert_int_equal(zs[0].first_hour, -1);
    assert_int_equal(zs[0].first_year, 2000);
    assert_string_equal(zs[2].zone, "DK-DK1");
    assert_int_equal(zs[2].first_hour, y22);
    assert_int_equal(zs[2].last_hour, y23 - 1);
    assert_int_equal(zs[2].first_year, 2020);
    assert_int_equal(zs[2].last_year, 2022);
    assert_string_equal(zs[2].name, "West Denmark");
    free(zs);
    assert_int_equal(carbondb_zones(f->db, "", &zs, &n), CASCA_OK);
    assert_true(n > 120);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(zs[i - 1].zone, zs[i].zone) < 0);
    free(zs);

    /* a second load reads nothing */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(carbon_load_bundled(f->db, CASCA_DATA_DIR, &rep), CASCA_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(rep.files_loaded, 0);
    assert_int_equal(rep.files_skipped, 4);
    print_message("later load: %.2f ms\n",
                  (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);

    /* a missing dir is not an error, and says so */
    assert_int_equal(carbon_load_bundled(f->db, "/nonexistent-carbon", &rep), CASCA_OK);
    assert_non_null(strstr(rep.error, "no bundled carbon data"));
}

static void test_import_idempotent(void **state)
{
    struct fixture *f = *state;
    char path[256];
    snprintf(path, sizeof(path), "%s/electricitymaps_ES_2023_hourly.csv", CASCA_DATA_DIR);
    struct carbon_csv_data d = {0};
    struct carbon_csv_report r;
    struct carbondb_put_stats st;
    assert_int_equal(carbon_csv_parse_file(path, NULL, &d, &r), CASCA_OK);
    assert_int_equal(r.rows, 8760);
    assert_int_equal(carbon_csv_store(f->db, &d, false, &st), CASCA_OK);
    assert_int_equal(st.added, 8760);
    assert_int_equal(carbon_csv_store(f->db, &d, false, &st), CASCA_OK);
    assert_int_equal(st.added, 0);
    assert_int_equal(st.changed, 0);
    assert_int_equal(st.unchanged, 8760);
    carbon_csv_data_free(&d);

    /* bundled data never replaces imported hours */
    struct carbondb_hour b = {
        .hour = hour_of(2023, 1, 1, 0), .g = 1, .source = CARBONDB_SRC_BUNDLED};
    assert_int_equal(carbondb_put_hours(f->db, "ES", &b, 1, true, &st), CASCA_OK);
    assert_int_equal(st.kept, 1);
    struct carbondb_hour h;
    size_t n;
    assert_int_equal(carbondb_read_hours(f->db, "ES", b.hour, b.hour + 1, &h, 1, &n), CASCA_OK);
    assert_float_equal(h.g, 114.42, 1e-9);
    assert_int_equal(h.source, CARBONDB_SRC_IMPORT);

    /* bad input loses nothing */
    struct carbondb_hour bad = {.hour = -1, .g = 1};
    assert_int_equal(carbondb_put_hours(f->db, "ES", &bad, 1, false, NULL), CASCA_ERR_INVALID);
    bad = (struct carbondb_hour){.hour = 5, .g = NAN};
    assert_int_equal(carbondb_put_hours(f->db, "ES", &bad, 1, false, NULL), CASCA_ERR_INVALID);
    assert_int_equal(carbondb_put_hours(f->db, "bad zone", &b, 1, false, NULL), CASCA_ERR_INVALID);
    assert_int_equal(carbondb_get_hours(f->db, "", 0, 1, &(struct carbondb_hour *){0}, &n),
                     CASCA_ERR_INVALID);
}

static void test_cache(void **state)
{
    struct fixture *f = *state;
    struct carbondb_hour h[3] = {
        {.hour = 100, .g = 10, .fetched_ns = 1000, .flags = CARBONDB_FORECAST},
        {.hour = 101, .g = 11, .fetched_ns = 2000},
        {.hour = 103, .g = 13, .fetched_ns = 3000, .flags = CARBONDB_DIRECT},
    };
    assert_int_equal(carbondb_cache_put(f->db, CARBONDB_SRC_UK, "GB", h, 3), CASCA_OK);
    struct carbondb_hour *out;
    size_t n;
    assert_int_equal(carbondb_cache_get(f->db, CARBONDB_SRC_UK, "GB", 101, 104, &out, &n),
                     CASCA_OK);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].hour, 101);
    assert_int_equal(out[0].fetched_ns, 2000);
    assert_int_equal(out[1].flags, CARBONDB_DIRECT);
    assert_int_equal(out[1].source, CARBONDB_SRC_UK);
    free(out);
    /* another provider, another zone with the same prefix: nothing */
    assert_int_equal(
        carbondb_cache_get(f->db, CARBONDB_SRC_ELECTRICITYMAPS, "GB", 0, 1000, &out, &n), CASCA_OK);
    assert_int_equal(n, 0);
    assert_int_equal(carbondb_cache_get(f->db, CARBONDB_SRC_UK, "G", 0, 1000, &out, &n), CASCA_OK);
    assert_int_equal(n, 0);
    /* the cache is not the hourly table */
    assert_int_equal(carbondb_get_hours(f->db, "GB", 0, 1000, &out, &n), CASCA_OK);
    assert_int_equal(n, 0);
    /* a newer answer replaces the old one */
    h[0].g = 9;
    h[0].fetched_ns = 5000;
    assert_int_equal(carbondb_cache_put(f->db, CARBONDB_SRC_UK, "GB", h, 1), CASCA_OK);
    assert_int_equal(carbondb_cache_get(f->db, CARBONDB_SRC_UK, "GB", 100, 101, &out, &n),
                     CASCA_OK);
    assert_int_equal(n, 1);
    assert_float_equal(out[0].g, 9, 0);
    assert_int_equal(out[0].fetched_ns, 5000);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_hour),
        cmocka_unit_test(test_em_export_headers),
        cmocka_unit_test(test_malformed_rows),
        cmocka_unit_test_setup_teardown(test_bundled_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_import_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
