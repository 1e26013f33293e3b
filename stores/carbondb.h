/* carbondb: carbon-intensity data in LMDB: hourly intensity per grid zone (bundled and imported),
 * yearly figures, and the cache of live providers' answers, all keyed for sequential range scans.
 *
 * Named databases of the store (the file is stores/carbondb.h and not carbon.h because the daemon's
 * server/carbon/carbon.h is on the same include path):
 *   carbon.hourly  zone NUL hour(u32 BE, hours since 1970)  -> {double g, u8 source, u8 flags}
 *   carbon.yearly  zone NUL year(u16 BE)                    -> {double g, u8 source, u8 flags}
 *   carbon.cache   provider(u8) zone NUL hour(u32 BE)       -> {double g, i64 fetched_ns, u8 flags}
 *   carbon.meta    text keys (zone names "name/AT", loaded files "loaded/...")
 * Several processes may open the same data dir (LMDB's lock file serialises writers), so the
 * importer can write while cascad serves; readers see a write once it commits.
 *
 * Threads: every function may be called from any thread except the store's writer thread. Reads
 * never block on writes; writes block until committed (store_write_wait). */
#ifndef CASCA_CARBONDB_H
#define CASCA_CARBONDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define CARBONDB_ZONE_MAX 32 /* zone codes are 1..31 bytes of A-Z, a-z, 0-9, '-' and '_' */
#define CARBONDB_HOUR_NS 3600000000000LL

/* Where a figure came from. Stored in every record; never renumber. */
enum carbondb_source {
    CARBONDB_SRC_NONE = 0,
    CARBONDB_SRC_BUNDLED = 1,         /* hourly data shipped with casca (Electricity Maps, ODbL) */
    CARBONDB_SRC_IMPORT = 2,          /* an Electricity Maps CSV export imported by a user */
    CARBONDB_SRC_EM_YEARLY = 3,       /* bundled Electricity Maps yearly means (ODbL) */
    CARBONDB_SRC_OWID_YEARLY = 4,     /* bundled Our World in Data / Ember yearly (CC BY 4.0) */
    CARBONDB_SRC_ELECTRICITYMAPS = 5, /* cached Electricity Maps API answer */
    CARBONDB_SRC_UK = 6,              /* cached UK National Grid carbon-intensity API answer */
    CARBONDB_SRC__COUNT
};

enum carbondb_flags {
    CARBONDB_ESTIMATED = 1u << 0, /* the provider estimated it (not measured) */
    CARBONDB_FORECAST = 1u << 1,  /* a forecast */
    CARBONDB_DIRECT = 1u << 2,    /* direct (combustion) emissions; lifecycle when clear */
};

struct carbondb_hour {
    int64_t hour;       /* hours since 1970-01-01T00Z */
    double g;           /* gCO2eq/kWh */
    uint8_t source;     /* enum carbondb_source */
    uint8_t flags;      /* enum carbondb_flags */
    int64_t fetched_ns; /* cache records only: when the provider answered */
};

struct carbondb_year {
    int year;
    double g;
    uint8_t source, flags;
};

/* One zone's coverage, from the keys present. hours == 0 when the zone has no hourly data;
 * first_year == 0 when it has no yearly figure. */
struct carbondb_zone {
    char zone[CARBONDB_ZONE_MAX];
    char name[64];                 /* human name, "" if unknown */
    int64_t first_hour, last_hour; /* inclusive */
    uint8_t hourly_source;         /* source of the first hour */
    int first_year, last_year;     /* yearly table */
    uint8_t yearly_source;
};

struct carbondb;

/* True when z is a valid zone code (see CARBONDB_ZONE_MAX). Pure. */
bool carbondb_zone_valid(const char *z);
/* Name of a source ("bundled", "import", "electricitymaps", ...). Pure, never NULL. */
const char *carbondb_source_name(unsigned source);

/* Opens the carbon databases of s (creating them). The caller closes *out before store_close. */
int carbondb_open(struct store *s, struct carbondb **out);
void carbondb_close(struct carbondb *db); /* safe on NULL */
struct store *carbondb_store(struct carbondb *db);

/* Counts of a put: records new, changed, identical to what was stored, and kept because an
 * import already holds that hour (for bundled loads). */
struct carbondb_put_stats {
    size_t added, changed, unchanged, kept;
};

/* Writes hours of zone (any order, hour >= 0), replacing what is stored for those hours; with
 * keep_imports an hour already holding imported data keeps it. One transaction. Blocks. */
int carbondb_put_hours(struct carbondb *db, const char *zone, const struct carbondb_hour *h,
                       size_t n, bool keep_imports, struct carbondb_put_stats *st);
/* The stored hours of zone in [from, to), ascending, into a malloc'ed array the caller frees
 * (*out is NULL when *n is 0). fetched_ns is 0. */
int carbondb_get_hours(struct carbondb *db, const char *zone, int64_t from, int64_t to,
                       struct carbondb_hour **out, size_t *n);
/* Same into a caller's array of max records (*n set to the count; fast path, no allocation).
 * CASCA_ERR_FULL when more than max are stored in the range. */
int carbondb_read_hours(struct carbondb *db, const char *zone, int64_t from, int64_t to,
                        struct carbondb_hour *out, size_t max, size_t *n);

int carbondb_put_years(struct carbondb *db, const char *zone, const struct carbondb_year *y,
                       size_t n);
/* The yearly figure of zone in year; CASCA_ERR_NOT_FOUND when none. */
int carbondb_get_year(struct carbondb *db, const char *zone, int year, struct carbondb_year *out);

/* Every zone whose code starts with prefix ("" = all), ordered by code, with its coverage, in a
 * malloc'ed array the caller frees. One read transaction; cost grows with the number of zones,
 * not of records. */
int carbondb_zones(struct carbondb *db, const char *prefix, struct carbondb_zone **out, size_t *n);

/* Live-provider cache: hours with their fetch time (fetched_ns), replacing older answers. */
int carbondb_cache_put(struct carbondb *db, unsigned provider, const char *zone,
                       const struct carbondb_hour *h, size_t n);
/* Cached hours of zone from provider in [from, to), ascending, fresh or not (the caller compares
 * fetched_ns with its TTL); malloc'ed like carbondb_get_hours. */
int carbondb_cache_get(struct carbondb *db, unsigned provider, const char *zone, int64_t from,
                       int64_t to, struct carbondb_hour **out, size_t *n);

/* Small metadata: the value of key as a malloc'ed NUL-terminated string (caller frees), or
 * CASCA_ERR_NOT_FOUND. put replaces. */
int carbondb_meta_get(struct carbondb *db, const char *key, char **val);
int carbondb_meta_put(struct carbondb *db, const char *key, const char *val);

#endif
