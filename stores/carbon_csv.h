/* carbon_csv: the CSV formats of carbon data casca ships and imports, parsed into per-zone hours
 * and years, then written to a carbondb. Columns are found by name, case-insensitively, with the
 * CO₂ subscript (U+2082) read as "2". Formats, detected from the header:
 *   long hourly    zone,datetime_utc,carbon_intensity_gco2eq_per_kwh   (casca's bundled 2022 file)
 *   EM export      Electricity Maps CSV export, old ("Zone Id", "... (LCA)") and new ("Zone id",
 *                  "... (Life cycle)") headers; hourly rows only
 *   EM yearly      zonecode,2020,2021,2022
 *   OWID yearly    Entity,Code,Year,Carbon intensity of electricity (gCO2/kWh)   (ISO3 codes)
 * Pure functions plus carbon_csv_store / carbon_load_bundled, which write (any thread except the
 * store's writer). */
#ifndef CASCA_CARBON_CSV_H
#define CASCA_CARBON_CSV_H

#include <stdbool.h>
#include <stddef.h>

#include "carbondb.h"

enum carbon_csv_format {
    CARBON_CSV_UNKNOWN,
    CARBON_CSV_LONG_HOURLY,
    CARBON_CSV_EM_EXPORT,
    CARBON_CSV_EM_YEARLY,
    CARBON_CSV_OWID_YEARLY,
};

#define CARBON_CSV_PROBLEMS 20 /* rows described in a report; the rest are only counted */

struct carbon_csv_report {
    enum carbon_csv_format format;
    size_t rows;    /* data rows read */
    size_t skipped; /* malformed rows left out */
    size_t n_problems;
    struct {
        size_t line; /* 1-based line of the file */
        char why[160];
    } problems[CARBON_CSV_PROBLEMS];
    char error[256]; /* why the whole file was refused, "" otherwise */
};

struct carbon_csv_zone {
    char zone[CARBONDB_ZONE_MAX];
    char name[64];
    struct carbondb_hour *hours;
    size_t n, cap;
    struct carbondb_year *years;
    size_t ny, ycap;
};

struct carbon_csv_data {
    struct carbon_csv_zone *zones;
    size_t n, cap;
};

struct carbon_csv_options {
    bool direct;    /* EM export: read the direct column instead of the lifecycle one */
    uint8_t source; /* enum carbondb_source recorded for hours (default CARBONDB_SRC_IMPORT) */
};

/* Parses text (len bytes; name is for messages). Malformed rows are skipped and listed in rep with
 * their line number; a file that cannot be read at all (unknown header, missing column) returns
 * CASCA_ERR_INVALID with rep->error set. out must be zeroed; free it with carbon_csv_data_free. */
int carbon_csv_parse(const char *text, size_t len, const struct carbon_csv_options *o,
                     struct carbon_csv_data *out, struct carbon_csv_report *rep);
/* Same, reading path; CASCA_ERR_IO (rep->error says why) when it cannot be read. */
int carbon_csv_parse_file(const char *path, const struct carbon_csv_options *o,
                          struct carbon_csv_data *out, struct carbon_csv_report *rep);
void carbon_csv_data_free(struct carbon_csv_data *d);

/* Writes parsed data: hours (one transaction per zone; keep_imports as in carbondb_put_hours),
 * years and zone names. st sums the hours' counts. */
int carbon_csv_store(struct carbondb *db, const struct carbon_csv_data *d, bool keep_imports,
                     struct carbondb_put_stats *st);

/* "2022-01-01T00:00:00Z", "2023-01-01 00:00:00", "...T00:00:00.000Z", "...+00:00" -> hours since
 * 1970. NULL on success, else why not (also when not on the hour). Pure. */
const char *carbon_csv_parse_hour(const char *s, int64_t *hour);

struct carbon_load_report {
    size_t files_loaded, files_skipped; /* skipped: already loaded, unchanged */
    size_t hours, years;
    char error[320]; /* the first problem, "" if none */
};

/* Loads every *.csv of dir (bundled data) that was not loaded before in the same version (size
 * and mtime are remembered in the carbondb), yearly files before hourly ones. Hourly records get
 * CARBONDB_SRC_BUNDLED and never replace imported hours. A missing dir loads nothing and is not
 * an error (rep->error says so). */
int carbon_load_bundled(struct carbondb *db, const char *dir, struct carbon_load_report *rep);

#endif
