#include "carbon_csv.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "casca_err.h"
#include "timeconv.h"
#include "salloc.h"

/* Bump when the way bundled files are loaded changes, so existing data dirs reload them. */
#define BUNDLED_LOAD_VERSION 1
#define MAX_FIELDS 32

/* Countries of the OWID file (ISO 3166 alpha-3 -> casca zone) and zone names. */
static const struct {
    const char *iso3, *zone, *name;
} countries[] = {
    {"AUT", "AT", "Austria"},
    {"BEL", "BE", "Belgium"},
    {"BGR", "BG", "Bulgaria"},
    {"HRV", "HR", "Croatia"},
    {"CYP", "CY", "Cyprus"},
    {"CZE", "CZ", "Czechia"},
    {"DNK", "DK", "Denmark"},
    {"EST", "EE", "Estonia"},
    {"FIN", "FI", "Finland"},
    {"FRA", "FR", "France"},
    {"DEU", "DE", "Germany"},
    {"GRC", "GR", "Greece"},
    {"HUN", "HU", "Hungary"},
    {"IRL", "IE", "Ireland"},
    {"ITA", "IT", "Italy"},
    {"LVA", "LV", "Latvia"},
    {"LTU", "LT", "Lithuania"},
    {"LUX", "LU", "Luxembourg"},
    {"MLT", "MT", "Malta"},
    {"NLD", "NL", "Netherlands"},
    {"POL", "PL", "Poland"},
    {"PRT", "PT", "Portugal"},
    {"ROU", "RO", "Romania"},
    {"SVK", "SK", "Slovakia"},
    {"SVN", "SI", "Slovenia"},
    {"ESP", "ES", "Spain"},
    {"SWE", "SE", "Sweden"},
    {"GBR", "GB", "Great Britain"},
    {"CHE", "CH", "Switzerland"},
    {"NOR", "NO", "Norway"},
    {NULL, "DK-DK1", "West Denmark"},
    {NULL, "DK-DK2", "East Denmark"},
    {NULL, "IT-CNO", "Central North Italy"},
    {NULL, "IT-CSO", "Central South Italy"},
    {NULL, "IT-NO", "North Italy"},
    {NULL, "IT-SAR", "Sardinia"},
    {NULL, "IT-SIC", "Sicily"},
    {NULL, "IT-SO", "South Italy"},
    {NULL, "NO-NO1", "Southeast Norway"},
    {NULL, "SE-SE1", "North Sweden"},
    {NULL, "SE-SE2", "North Central Sweden"},
    {NULL, "SE-SE3", "South Central Sweden"},
    {NULL, "SE-SE4", "South Sweden"},
};

static const char *zone_name(const char *zone)
{
    for (size_t i = 0; i < sizeof(countries) / sizeof(countries[0]); i++)
        if (!strcmp(countries[i].zone, zone)) return countries[i].name;
    return "";
}

/* ---- small parsers ---- */

static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

const char *carbon_csv_parse_hour(const char *s, int64_t *hour)
{
    int y, mo, d, h = 0, mi = 0, sec = 0;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d))
        return "not a date-time (expected YYYY-MM-DD HH:MM:SS, UTC)";
    const char *p = s + 10;
    if (*p != 'T' && *p != ' ') return "no time of day (hourly rows need YYYY-MM-DD HH:MM:SS)";
    if (!digits(p + 1, 2, &h) || p[3] != ':' || !digits(p + 4, 2, &mi))
        return "not a time of day (expected HH:MM:SS)";
    p += 6;
    if (*p == ':') {
        if (!digits(p + 1, 2, &sec)) return "bad seconds";
        p += 3;
        if (*p == '.') {
            p++;
            while (*p >= '0' && *p <= '9')
                p++;
        }
    }
    if (*p == 'Z')
        p++;
    else if (!strcmp(p, "+00:00") || !strcmp(p, "+0000"))
        p += strlen(p);
    if (*p) return "unexpected text after the time (only UTC, 'Z' or '+00:00', is accepted)";
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970)
        return "date or time out of range";
    if (mi || sec) return "not on the hour (hourly rows start at HH:00:00)";
    *hour = casca_days_from_civil(y, (unsigned)mo, (unsigned)d) * 24 + h;
    return NULL;
}

static const char *parse_number(const char *s, double *out)
{
    if (!*s) return "empty value";
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v)) return "not a number";
    if (v < 0) return "negative intensity";
    *out = v;
    return NULL;
}

/* Splits one CSV line (RFC 4180 quotes) in place into fields; returns the count. */
static int split_fields(char *line, char **f, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == max) return n;
        if (*p == '"') {
            char *w = ++p;
            f[n++] = w;
            while (*p) {
                if (*p == '"' && p[1] == '"') {
                    *w++ = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    *w++ = *p++;
                }
            }
            while (*p && *p != ',')
                p++;
            char c = *p;
            *w = 0;
            if (!c) return n;
            p++;
        } else {
            f[n++] = p;
            char *comma = strchr(p, ',');
            if (!comma) return n;
            *comma = 0;
            p = comma + 1;
        }
    }
}

/* A header name lowered, U+2082 (E2 82 82) as '2', spaces trimmed. */
static void normalise(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    if ((unsigned char)in[0] == 0xEF && (unsigned char)in[1] == 0xBB &&
        (unsigned char)in[2] == 0xBF)
        in += 3; /* a UTF-8 byte-order mark */
    while (*in == ' ')
        in++;
    while (*in && n + 1 < cap) {
        if ((unsigned char)in[0] == 0xE2 && (unsigned char)in[1] == 0x82 &&
            (unsigned char)in[2] == 0x82) {
            out[n++] = '2';
            in += 3;
            continue;
        }
        char c = *in++;
        out[n++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    while (n && out[n - 1] == ' ')
        n--;
    out[n] = 0;
}

/* ---- parsed data ---- */

static struct carbon_csv_zone *data_zone(struct carbon_csv_data *d, const char *zone)
{
    for (size_t i = d->n; i-- > 0;)
        if (!strcmp(d->zones[i].zone, zone)) return &d->zones[i];
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        struct carbon_csv_zone *a = realloc(d->zones, cap * sizeof(*a));
        if (!a) return NULL;
        d->zones = a;
        d->cap = cap;
    }
    struct carbon_csv_zone *z = &d->zones[d->n++];
    memset(z, 0, sizeof(*z));
    snprintf(z->zone, sizeof(z->zone), "%s", zone);
    snprintf(z->name, sizeof(z->name), "%s", zone_name(zone));
    return z;
}

static int add_hour(struct carbon_csv_zone *z, const struct carbondb_hour *h)
{
    if (z->n == z->cap) {
        size_t cap = z->cap ? z->cap * 2 : 1024;
        struct carbondb_hour *a = realloc(z->hours, cap * sizeof(*a));
        if (!a) return CASCA_ERR_NOMEM;
        z->hours = a;
        z->cap = cap;
    }
    z->hours[z->n++] = *h;
    return CASCA_OK;
}

static int add_year(struct carbon_csv_zone *z, const struct carbondb_year *y)
{
    for (size_t i = 0; i < z->ny; i++)
        if (z->years[i].year == y->year) {
            z->years[i] = *y;
            return CASCA_OK;
        }
    if (z->ny == z->ycap) {
        size_t cap = z->ycap ? z->ycap * 2 : 32;
        struct carbondb_year *a = realloc(z->years, cap * sizeof(*a));
        if (!a) return CASCA_ERR_NOMEM;
        z->years = a;
        z->ycap = cap;
    }
    z->years[z->ny++] = *y;
    return CASCA_OK;
}

void carbon_csv_data_free(struct carbon_csv_data *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) {
        free(d->zones[i].hours);
        free(d->zones[i].years);
    }
    free(d->zones);
    memset(d, 0, sizeof(*d));
}

static void problem(struct carbon_csv_report *rep, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void problem(struct carbon_csv_report *rep, size_t line, const char *fmt, ...)
{
    rep->skipped++;
    if (rep->n_problems == CARBON_CSV_PROBLEMS) return;
    rep->problems[rep->n_problems].line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->problems[rep->n_problems].why, sizeof(rep->problems[0].why), fmt, ap);
    va_end(ap);
    rep->n_problems++;
}

/* ---- formats ---- */

/* Column indexes found in a header; -1 when absent. */
struct columns {
    int zone, time, value, estimated, name, year, code, entity;
    int years[64]; /* EM yearly: column -> year */
    int nyears;
};

static int find_col(char *const *names, int n, const char *const *wanted)
{
    for (int i = 0; i < n; i++)
        for (const char *const *w = wanted; *w; w++)
            if (!strcmp(names[i], *w)) return i;
    return -1;
}

static enum carbon_csv_format detect(char **raw, int n, const struct carbon_csv_options *o,
                                     struct columns *c, char *why, size_t whylen)
{
    char norm[MAX_FIELDS][128];
    char *names[MAX_FIELDS];
    for (int i = 0; i < n; i++) {
        normalise(raw[i], norm[i], sizeof(norm[i]));
        names[i] = norm[i];
    }
    memset(c, -1, sizeof(*c));
    c->nyears = 0;
#define COL(...) find_col(names, n, (const char *const[]){__VA_ARGS__, NULL})
    c->time = COL("datetime (utc)", "datetime_utc", "datetime");
    if (c->time >= 0) {
        c->zone = COL("zone id", "zone_id", "zone");
        c->name = COL("zone name", "zone_name");
        c->estimated = COL("data estimated", "data_estimated");
        c->value = o->direct ? COL("carbon intensity gco2eq/kwh (direct)")
                             : COL("carbon intensity gco2eq/kwh (lca)",
                                   "carbon intensity gco2eq/kwh (life cycle)",
                                   "carbon_intensity_gco2eq_per_kwh");
        if (c->zone < 0) {
            snprintf(why, whylen, "no zone column (looked for 'Zone Id' or 'zone')");
            return CARBON_CSV_UNKNOWN;
        }
        if (c->value < 0) {
            snprintf(why, whylen,
                     "no %s carbon-intensity column (looked for 'Carbon Intensity "
                     "gCO2eq/kWh %s' and its newer spelling)",
                     o->direct ? "direct" : "life-cycle", o->direct ? "(direct)" : "(LCA)");
            return CARBON_CSV_UNKNOWN;
        }
        return COL("carbon_intensity_gco2eq_per_kwh") == c->value ? CARBON_CSV_LONG_HOURLY
                                                                  : CARBON_CSV_EM_EXPORT;
    }
    c->code = COL("code");
    c->year = COL("year");
    c->value = COL("carbon intensity of electricity (gco2/kwh)");
    c->entity = COL("entity");
    if (c->code >= 0 && c->year >= 0 && c->value >= 0) return CARBON_CSV_OWID_YEARLY;
    c->zone = COL("zonecode", "zone");
    if (c->zone >= 0) {
        for (int i = 0; i < n && c->nyears < 64; i++) {
            int y;
            if (strlen(names[i]) == 4 && digits(names[i], 4, &y)) {
                c->years[i] = y;
                c->nyears++;
            } else {
                c->years[i] = -1;
            }
        }
        if (c->nyears) return CARBON_CSV_EM_YEARLY;
    }
#undef COL
    snprintf(why, whylen,
             "unknown CSV header: expected an Electricity Maps export ('Datetime (UTC)', "
             "'Zone Id', 'Carbon Intensity gCO2eq/kWh (LCA)', ...) or one of casca's bundled "
             "formats");
    return CARBON_CSV_UNKNOWN;
}

static bool truthy(const char *s)
{
    return !strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes");
}

static int parse_row(char **f, int nf, size_t line, const struct columns *c,
                     enum carbon_csv_format fmt, const struct carbon_csv_options *o,
                     struct carbon_csv_data *out, struct carbon_csv_report *rep)
{
    int need = c->value > c->zone ? c->value : c->zone;
    if (fmt == CARBON_CSV_OWID_YEARLY) {
        need = c->value > c->year ? c->value : c->year;
        need = need > c->code ? need : c->code;
    } else if (fmt != CARBON_CSV_EM_YEARLY && c->time > need) {
        need = c->time;
    }
    if (nf <= need) {
        problem(rep, line, "%d fields, the header has more (need at least %d)", nf, need + 1);
        return CASCA_OK;
    }
    double v;
    const char *why;
    if (fmt == CARBON_CSV_OWID_YEARLY) {
        const char *zone = NULL, *name = "";
        for (size_t i = 0; i < sizeof(countries) / sizeof(countries[0]); i++)
            if (countries[i].iso3 && !strcmp(countries[i].iso3, f[c->code])) {
                zone = countries[i].zone;
                name = countries[i].name;
            }
        if (!zone) return CASCA_OK; /* aggregates (EU-27) and countries outside the zone table */
        int y;
        if (strlen(f[c->year]) != 4 || !digits(f[c->year], 4, &y) || y < 1970) {
            problem(rep, line, "year '%.20s' is not a year", f[c->year]);
            return CASCA_OK;
        }
        if ((why = parse_number(f[c->value], &v))) {
            problem(rep, line, "intensity '%.40s': %s", f[c->value], why);
            return CASCA_OK;
        }
        struct carbon_csv_zone *z = data_zone(out, zone);
        if (!z) return CASCA_ERR_NOMEM;
        snprintf(z->name, sizeof(z->name), "%s", name);
        rep->rows++;
        return add_year(z, &(struct carbondb_year){y, v, CARBONDB_SRC_OWID_YEARLY, 0});
    }
    if (!carbondb_zone_valid(f[c->zone])) {
        problem(rep, line, "zone '%.40s' is not a zone code (letters, digits, '-', '_')",
                f[c->zone]);
        return CASCA_OK;
    }
    if (fmt == CARBON_CSV_EM_YEARLY) {
        struct carbon_csv_zone *z = data_zone(out, f[c->zone]);
        if (!z) return CASCA_ERR_NOMEM;
        for (int i = 0; i < nf && i < 64; i++) {
            if (c->years[i] < 0 || !*f[i]) continue;
            if ((why = parse_number(f[i], &v))) {
                problem(rep, line, "%d: '%.40s': %s", c->years[i], f[i], why);
                continue;
            }
            int rc =
                add_year(z, &(struct carbondb_year){c->years[i], v, CARBONDB_SRC_EM_YEARLY, 0});
            if (rc) return rc;
        }
        rep->rows++;
        return CASCA_OK;
    }
    struct carbondb_hour h = {.source = o->source ? o->source : CARBONDB_SRC_IMPORT};
    if ((why = carbon_csv_parse_hour(f[c->time], &h.hour))) {
        problem(rep, line, "time '%.40s': %s", f[c->time], why);
        return CASCA_OK;
    }
    if ((why = parse_number(f[c->value], &h.g))) {
        problem(rep, line, "intensity '%.40s': %s", f[c->value], why);
        return CASCA_OK;
    }
    if (c->estimated >= 0 && c->estimated < nf && truthy(f[c->estimated]))
        h.flags |= CARBONDB_ESTIMATED;
    if (o->direct) h.flags |= CARBONDB_DIRECT;
    struct carbon_csv_zone *z = data_zone(out, f[c->zone]);
    if (!z) return CASCA_ERR_NOMEM;
    if (c->name >= 0 && c->name < nf && *f[c->name])
        snprintf(z->name, sizeof(z->name), "%s", f[c->name]);
    rep->rows++;
    return add_hour(z, &h);
}

int carbon_csv_parse(const char *text, size_t len, const struct carbon_csv_options *o,
                     struct carbon_csv_data *out, struct carbon_csv_report *rep)
{
    static const struct carbon_csv_options defaults = {0};
    if (!o) o = &defaults;
    memset(rep, 0, sizeof(*rep));
    char *buf = malloc(len + 1);
    if (!buf) return CASCA_ERR_NOMEM;
    memcpy(buf, text, len);
    buf[len] = 0;
    if (strlen(buf) != len) {
        free(buf);
        snprintf(rep->error, sizeof(rep->error), "the file holds NUL bytes: not a CSV text file");
        return CASCA_ERR_INVALID;
    }
    struct columns c;
    int rc = CASCA_OK;
    size_t line = 0;
    enum carbon_csv_format fmt = CARBON_CSV_UNKNOWN;
    char *p = buf;
    while (*p && !rc) {
        char *nl = strchr(p, '\n');
        char *next = nl ? nl + 1 : p + strlen(p);
        if (nl) *nl = 0;
        size_t l = strlen(p);
        if (l && p[l - 1] == '\r') p[--l] = 0;
        line++;
        char *f[MAX_FIELDS];
        if (!l) {
            p = next;
            continue;
        }
        int nf = split_fields(p, f, MAX_FIELDS);
        if (fmt == CARBON_CSV_UNKNOWN) {
            fmt = detect(f, nf, o, &c, rep->error, sizeof(rep->error));
            if (fmt == CARBON_CSV_UNKNOWN) rc = CASCA_ERR_INVALID;
            rep->format = fmt;
        } else {
            rc = parse_row(f, nf, line, &c, fmt, o, out, rep);
        }
        p = next;
    }
    free(buf);
    if (!rc && fmt == CARBON_CSV_UNKNOWN) {
        snprintf(rep->error, sizeof(rep->error), "the file is empty: no CSV header");
        rc = CASCA_ERR_INVALID;
    }
    return rc;
}

int carbon_csv_parse_file(const char *path, const struct carbon_csv_options *o,
                          struct carbon_csv_data *out, struct carbon_csv_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(rep->error, sizeof(rep->error), "cannot open %s: %s", path, strerror(errno));
        return CASCA_ERR_IO;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[65536];
    size_t n;
    bool failed = !mem;
    while (mem && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (fwrite(chunk, 1, n, mem) != n) failed = true;
    failed |= ferror(f) != 0;
    fclose(f);
    if (mem) fclose(mem);
    if (failed) {
        free(buf);
        snprintf(rep->error, sizeof(rep->error), "cannot read %s", path);
        return CASCA_ERR_IO;
    }
    int rc = carbon_csv_parse(buf, len, o, out, rep);
    free(buf);
    return rc;
}

int carbon_csv_store(struct carbondb *db, const struct carbon_csv_data *d, bool keep_imports,
                     struct carbondb_put_stats *st)
{
    struct carbondb_put_stats sum = {0};
    int rc = CASCA_OK;
    for (size_t i = 0; i < d->n && !rc; i++) {
        const struct carbon_csv_zone *z = &d->zones[i];
        struct carbondb_put_stats one = {0}; /* put_hours leaves it alone when it refuses */
        rc = carbondb_put_hours(db, z->zone, z->hours, z->n, keep_imports, &one);
        sum.added += one.added;
        sum.changed += one.changed;
        sum.unchanged += one.unchanged;
        sum.kept += one.kept;
        if (!rc) rc = carbondb_put_years(db, z->zone, z->years, z->ny);
        if (!rc && *z->name) {
            char key[64], *old = NULL;
            snprintf(key, sizeof(key), "name/%s", z->zone);
            if (carbondb_meta_get(db, key, &old) != CASCA_OK || strcmp(old, z->name))
                rc = carbondb_meta_put(db, key, z->name);
            free(old);
        }
    }
    if (st) *st = sum;
    return rc;
}

/* ---- bundled data ---- */

static int rank(const char *name)
{
    /* yearly files first, so an hourly file's zone names win */
    return strstr(name, "yearly") ? 0 : 1;
}

static int name_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    int r = rank(x) - rank(y);
    return r ? r : strcmp(x, y);
}

/* Loads one bundled file unless the store remembers it with the same size and mtime. */
static int load_one(struct carbondb *db, const char *dir, const char *name,
                    struct carbon_load_report *rep)
{
    char *path = NULL, key[320], mark[96], *old = NULL;
    if (asprintf(&path, "%s/%s", dir, name) < 0) return CASCA_ERR_NOMEM;
    struct stat sb;
    if (stat(path, &sb) || !S_ISREG(sb.st_mode)) {
        free(path);
        return CASCA_OK;
    }
    snprintf(key, sizeof(key), "loaded/%s", name);
    snprintf(mark, sizeof(mark), "v%d size=%lld mtime=%lld", BUNDLED_LOAD_VERSION,
             (long long)sb.st_size, (long long)sb.st_mtime);
    if (carbondb_meta_get(db, key, &old) == CASCA_OK && !strcmp(old, mark)) {
        free(old);
        free(path);
        rep->files_skipped++;
        return CASCA_OK;
    }
    free(old);
    struct carbon_csv_data d = {0};
    struct carbon_csv_report r;
    struct carbon_csv_options o = {.source = CARBONDB_SRC_BUNDLED};
    int rc = carbon_csv_parse_file(path, &o, &d, &r);
    if (rc == CASCA_OK) rc = carbon_csv_store(db, &d, true, NULL);
    if (rc == CASCA_OK) {
        for (size_t i = 0; i < d.n; i++) {
            rep->hours += d.zones[i].n;
            rep->years += d.zones[i].ny;
        }
        rc = carbondb_meta_put(db, key, mark);
        rep->files_loaded++;
        if (r.skipped && !*rep->error)
            snprintf(rep->error, sizeof(rep->error), "%s:%zu: %s (%zu rows skipped)", name,
                     r.problems[0].line, r.problems[0].why, r.skipped);
    } else if (!*rep->error) {
        snprintf(rep->error, sizeof(rep->error), "%s: %s", name,
                 *r.error ? r.error : casca_strerror(rc));
    }
    carbon_csv_data_free(&d);
    free(path);
    return rc == CASCA_ERR_INVALID ? CASCA_OK : rc; /* a foreign CSV in the folder is not fatal */
}

int carbon_load_bundled(struct carbondb *db, const char *dir, struct carbon_load_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    DIR *dh = opendir(dir);
    if (!dh) {
        snprintf(rep->error, sizeof(rep->error), "no bundled carbon data at %s: %s", dir,
                 strerror(errno));
        return CASCA_OK;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = CASCA_OK;
    struct dirent *e;
    while ((e = readdir(dh))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".csv")) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            char **a = realloc(names, cap * sizeof(*a));
            if (!a) {
                rc = CASCA_ERR_NOMEM;
                break;
            }
            names = a;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = CASCA_ERR_NOMEM;
            break;
        }
        n++;
    }
    closedir(dh);
    if (n) qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; i < n && !rc; i++)
        rc = load_one(db, dir, names[i], rep);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}
