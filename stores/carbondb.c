#include "carbondb.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "casca_err.h"
#include "kv.h"
#include "salloc.h"

#define KEY_MAX (1 + CARBONDB_ZONE_MAX + 4)

struct carbondb {
    struct store *s;
    MDB_dbi hourly, yearly, cache;
    struct kv *meta;
};

/* The stored records; packed by hand so the layout does not depend on the compiler. */
#define HOUR_VAL 10  /* double g, u8 source, u8 flags */
#define YEAR_VAL 10  /* double g, u8 source, u8 flags */
#define CACHE_VAL 17 /* double g, i64 fetched_ns, u8 flags */

static const char *const source_names[CARBONDB_SRC__COUNT] = {
    [CARBONDB_SRC_NONE] = "none",
    [CARBONDB_SRC_BUNDLED] = "bundled",
    [CARBONDB_SRC_IMPORT] = "import",
    [CARBONDB_SRC_EM_YEARLY] = "bundled",
    [CARBONDB_SRC_OWID_YEARLY] = "bundled",
    [CARBONDB_SRC_ELECTRICITYMAPS] = "electricitymaps",
    [CARBONDB_SRC_UK] = "uk",
};

const char *carbondb_source_name(unsigned source)
{
    return source < CARBONDB_SRC__COUNT ? source_names[source] : "unknown";
}

bool carbondb_zone_valid(const char *z)
{
    size_t n = z ? strlen(z) : 0;
    if (n == 0 || n >= CARBONDB_ZONE_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = z[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* ---- keys and values ---- */

static size_t zone_key(unsigned char *k, int provider, const char *zone, uint32_t tail,
                       int tail_bytes)
{
    size_t n = 0;
    if (provider >= 0) k[n++] = (unsigned char)provider;
    size_t zl = strlen(zone);
    memcpy(k + n, zone, zl + 1);
    n += zl + 1;
    for (int i = tail_bytes - 1; i >= 0; i--)
        k[n++] = (unsigned char)(tail >> (8 * i));
    return n;
}

static uint32_t key_tail(const MDB_val *k, int tail_bytes)
{
    const unsigned char *p = (const unsigned char *)k->mv_data + k->mv_size - tail_bytes;
    uint32_t v = 0;
    for (int i = 0; i < tail_bytes; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_hour_val(unsigned char *v, const struct carbondb_hour *h)
{
    memcpy(v, &h->g, 8);
    v[8] = h->source;
    v[9] = h->flags;
}

static void get_hour_val(const MDB_val *v, struct carbondb_hour *h)
{
    memset(h, 0, sizeof(*h));
    if (v->mv_size < HOUR_VAL) {
        h->g = NAN;
        return;
    }
    memcpy(&h->g, v->mv_data, 8);
    h->source = ((const unsigned char *)v->mv_data)[8];
    h->flags = ((const unsigned char *)v->mv_data)[9];
}

/* ---- open / close ---- */

int carbondb_open(struct store *s, struct carbondb **out)
{
    *out = NULL;
    struct carbondb *db = calloc(1, sizeof(*db));
    if (!db) return CASCA_ERR_NOMEM;
    db->s = s;
    int rc = store_dbi(s, "carbon.hourly", 0, &db->hourly);
    if (!rc) rc = store_dbi(s, "carbon.yearly", 0, &db->yearly);
    if (!rc) rc = store_dbi(s, "carbon.cache", 0, &db->cache);
    if (!rc) rc = kv_open(s, "carbon.meta", &db->meta);
    if (rc) {
        carbondb_close(db);
        return rc;
    }
    *out = db;
    return CASCA_OK;
}

void carbondb_close(struct carbondb *db)
{
    if (!db) return;
    kv_close(db->meta);
    free(db);
}

struct store *carbondb_store(struct carbondb *db)
{
    return db->s;
}

/* ---- hourly ---- */

struct put_hours {
    MDB_dbi dbi;
    int provider; /* -1 for the hourly table */
    const char *zone;
    const struct carbondb_hour *h;
    size_t n;
    bool keep_imports;
    struct carbondb_put_stats st;
};

static int put_hours_write(MDB_txn *txn, void *arg)
{
    struct put_hours *p = arg;
    memset(&p->st, 0, sizeof(p->st));
    for (size_t i = 0; i < p->n; i++) {
        const struct carbondb_hour *h = &p->h[i];
        unsigned char kb[KEY_MAX], vb[CACHE_VAL];
        MDB_val k = {zone_key(kb, p->provider, p->zone, (uint32_t)h->hour, 4), kb}, old;
        MDB_val v = {HOUR_VAL, vb};
        put_hour_val(vb, h);
        if (p->provider >= 0) {
            memcpy(vb + 8, &h->fetched_ns, 8);
            vb[16] = h->flags;
            v.mv_size = CACHE_VAL;
        }
        int rc = mdb_get(txn, p->dbi, &k, &old);
        if (rc == 0) {
            if (p->keep_imports && old.mv_size >= HOUR_VAL &&
                ((unsigned char *)old.mv_data)[8] == CARBONDB_SRC_IMPORT) {
                p->st.kept++;
                continue;
            }
            if (old.mv_size == v.mv_size && !memcmp(old.mv_data, v.mv_data, v.mv_size)) {
                p->st.unchanged++;
                continue;
            }
            p->st.changed++;
        } else if (rc == MDB_NOTFOUND) {
            p->st.added++;
        } else {
            return store_err(rc);
        }
        if ((rc = mdb_put(txn, p->dbi, &k, &v, 0))) return store_err(rc);
    }
    return CASCA_OK;
}

static int check_hours(const char *zone, const struct carbondb_hour *h, size_t n)
{
    if (!carbondb_zone_valid(zone) || (n && !h)) return CASCA_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        if (h[i].hour < 0 || h[i].hour > UINT32_MAX || !isfinite(h[i].g)) return CASCA_ERR_INVALID;
    return CASCA_OK;
}

int carbondb_put_hours(struct carbondb *db, const char *zone, const struct carbondb_hour *h,
                       size_t n, bool keep_imports, struct carbondb_put_stats *st)
{
    int rc = check_hours(zone, h, n);
    if (rc) return rc;
    struct put_hours p = {db->hourly, -1, zone, h, n, keep_imports, {0}};
    rc = n ? store_write_wait(db->s, put_hours_write, &p) : CASCA_OK;
    if (st) *st = p.st;
    return rc;
}

int carbondb_cache_put(struct carbondb *db, unsigned provider, const char *zone,
                       const struct carbondb_hour *h, size_t n)
{
    int rc = check_hours(zone, h, n);
    if (rc || provider > 255) return rc ? rc : CASCA_ERR_INVALID;
    struct put_hours p = {db->cache, (int)provider, zone, h, n, false, {0}};
    return n ? store_write_wait(db->s, put_hours_write, &p) : CASCA_OK;
}

/* Scans [from, to) of one zone (and provider) with a cursor; emit gets each record. */
static int scan_hours(struct carbondb *db, MDB_dbi dbi, int provider, const char *zone,
                      int64_t from, int64_t to,
                      int (*emit)(const MDB_val *k, const MDB_val *v, void *arg), void *arg)
{
    if (!carbondb_zone_valid(zone)) return CASCA_ERR_INVALID;
    if (from < 0) from = 0;
    if (to > (int64_t)UINT32_MAX + 1) to = (int64_t)UINT32_MAX + 1;
    if (to <= from) return CASCA_OK;
    unsigned char kb[KEY_MAX];
    size_t plen = zone_key(kb, provider, zone, 0, 0);
    MDB_val k = {zone_key(kb, provider, zone, (uint32_t)from, 4), kb}, v;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = store_read_begin(db->s, &txn);
    if (rc) return rc;
    if ((rc = mdb_cursor_open(txn, dbi, &cur))) {
        store_read_end(db->s, txn);
        return store_err(rc);
    }
    unsigned char prefix[KEY_MAX];
    memcpy(prefix, kb, plen);
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    rc = CASCA_OK;
    while (mrc == 0) {
        if (k.mv_size != plen + 4 || memcmp(k.mv_data, prefix, plen)) break;
        if ((int64_t)key_tail(&k, 4) >= to) break;
        if ((rc = emit(&k, &v, arg))) break;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (!rc && mrc && mrc != MDB_NOTFOUND) rc = store_err(mrc);
    mdb_cursor_close(cur);
    store_read_end(db->s, txn);
    return rc;
}

struct hour_list {
    struct carbondb_hour *a;
    size_t n, cap;
    bool fixed; /* caller's array: no growing */
    bool cache;
};

static int emit_hour(const MDB_val *k, const MDB_val *v, void *arg)
{
    struct hour_list *l = arg;
    if (l->n == l->cap) {
        if (l->fixed) return CASCA_ERR_FULL;
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct carbondb_hour *a = realloc(l->a, cap * sizeof(*a));
        if (!a) return CASCA_ERR_NOMEM;
        l->a = a;
        l->cap = cap;
    }
    struct carbondb_hour *h = &l->a[l->n++];
    if (l->cache) {
        memset(h, 0, sizeof(*h));
        h->g = NAN;
        if (v->mv_size >= CACHE_VAL) {
            memcpy(&h->g, v->mv_data, 8);
            memcpy(&h->fetched_ns, (const char *)v->mv_data + 8, 8);
            h->flags = ((const unsigned char *)v->mv_data)[16];
            h->source = ((const unsigned char *)k->mv_data)[0];
        }
    } else {
        get_hour_val(v, h);
    }
    h->hour = key_tail(k, 4);
    return CASCA_OK;
}

static int get_list(struct carbondb *db, MDB_dbi dbi, int provider, const char *zone, int64_t from,
                    int64_t to, struct carbondb_hour **out, size_t *n)
{
    struct hour_list l = {.cache = provider >= 0};
    int rc = scan_hours(db, dbi, provider, zone, from, to, emit_hour, &l);
    if (rc) {
        free(l.a);
        l.a = NULL;
        l.n = 0;
    }
    *out = l.a;
    *n = l.n;
    return rc;
}

int carbondb_get_hours(struct carbondb *db, const char *zone, int64_t from, int64_t to,
                       struct carbondb_hour **out, size_t *n)
{
    return get_list(db, db->hourly, -1, zone, from, to, out, n);
}

int carbondb_read_hours(struct carbondb *db, const char *zone, int64_t from, int64_t to,
                        struct carbondb_hour *out, size_t max, size_t *n)
{
    struct hour_list l = {.a = out, .cap = max, .fixed = true};
    int rc = scan_hours(db, db->hourly, -1, zone, from, to, emit_hour, &l);
    *n = l.n;
    return rc;
}

int carbondb_cache_get(struct carbondb *db, unsigned provider, const char *zone, int64_t from,
                       int64_t to, struct carbondb_hour **out, size_t *n)
{
    if (provider > 255) return CASCA_ERR_INVALID;
    return get_list(db, db->cache, (int)provider, zone, from, to, out, n);
}

/* ---- yearly ---- */

struct put_years {
    MDB_dbi dbi;
    const char *zone;
    const struct carbondb_year *y;
    size_t n;
};

static int put_years_write(MDB_txn *txn, void *arg)
{
    struct put_years *p = arg;
    for (size_t i = 0; i < p->n; i++) {
        unsigned char kb[KEY_MAX], vb[YEAR_VAL];
        MDB_val k = {zone_key(kb, -1, p->zone, (uint32_t)p->y[i].year, 2), kb};
        MDB_val v = {YEAR_VAL, vb}, old;
        /* Electricity Maps' own yearly means win over OWID's for the same year, whatever the
         * order the files load in: they match the hourly data */
        if (p->y[i].source == CARBONDB_SRC_OWID_YEARLY && !mdb_get(txn, p->dbi, &k, &old) &&
            old.mv_size >= YEAR_VAL && ((unsigned char *)old.mv_data)[8] == CARBONDB_SRC_EM_YEARLY)
            continue;
        memcpy(vb, &p->y[i].g, 8);
        vb[8] = p->y[i].source;
        vb[9] = p->y[i].flags;
        int rc = mdb_put(txn, p->dbi, &k, &v, 0);
        if (rc) return store_err(rc);
    }
    return CASCA_OK;
}

int carbondb_put_years(struct carbondb *db, const char *zone, const struct carbondb_year *y,
                       size_t n)
{
    if (!carbondb_zone_valid(zone) || (n && !y)) return CASCA_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        if (y[i].year < 1970 || y[i].year > 65535 || !isfinite(y[i].g)) return CASCA_ERR_INVALID;
    struct put_years p = {db->yearly, zone, y, n};
    return n ? store_write_wait(db->s, put_years_write, &p) : CASCA_OK;
}

int carbondb_get_year(struct carbondb *db, const char *zone, int year, struct carbondb_year *out)
{
    if (!carbondb_zone_valid(zone) || year < 0 || year > 65535) return CASCA_ERR_INVALID;
    unsigned char kb[KEY_MAX];
    MDB_val k = {zone_key(kb, -1, zone, (uint32_t)year, 2), kb}, v;
    MDB_txn *txn;
    int rc = store_read_begin(db->s, &txn);
    if (rc) return rc;
    rc = mdb_get(txn, db->yearly, &k, &v);
    if (rc == 0 && v.mv_size >= YEAR_VAL) {
        out->year = year;
        memcpy(&out->g, v.mv_data, 8);
        out->source = ((const unsigned char *)v.mv_data)[8];
        out->flags = ((const unsigned char *)v.mv_data)[9];
    }
    store_read_end(db->s, txn);
    return rc == 0 ? CASCA_OK : store_err(rc);
}

/* ---- zones ---- */

struct zone_list {
    struct carbondb_zone *a;
    size_t n, cap;
};

static struct carbondb_zone *zone_slot(struct zone_list *l, const char *zone)
{
    for (size_t i = l->n; i-- > 0;)
        if (!strcmp(l->a[i].zone, zone)) return &l->a[i];
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct carbondb_zone *a = realloc(l->a, cap * sizeof(*a));
        if (!a) return NULL;
        l->a = a;
        l->cap = cap;
    }
    struct carbondb_zone *z = &l->a[l->n++];
    memset(z, 0, sizeof(*z));
    z->first_hour = z->last_hour = -1;
    snprintf(z->zone, sizeof(z->zone), "%s", zone);
    return z;
}

/* Walks the distinct zones of a zone-keyed table: seek to each zone's first key, then its last
 * (seek past "zone\0\xff..." and step back), then jump to the next zone. */
static int walk_zones(MDB_txn *txn, MDB_dbi dbi, int tail_bytes, const char *prefix,
                      struct zone_list *l, bool hourly)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc) return store_err(rc);
    size_t plen = strlen(prefix);
    unsigned char seek[KEY_MAX + 1];
    memcpy(seek, prefix, plen);
    MDB_val k = {plen ? plen : 1, seek}, v;
    if (!plen) seek[0] = 0;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    rc = CASCA_OK;
    while (mrc == 0) {
        const char *zone = k.mv_data;
        size_t zl = strnlen(zone, k.mv_size);
        if (zl >= CARBONDB_ZONE_MAX || k.mv_size != zl + 1 + (size_t)tail_bytes)
            break; /* not a key of ours: stop rather than guess */
        if (plen && (zl < plen || memcmp(zone, prefix, plen))) break;
        char name[CARBONDB_ZONE_MAX];
        memcpy(name, zone, zl + 1);
        struct carbondb_zone *z = zone_slot(l, name);
        if (!z) {
            rc = CASCA_ERR_NOMEM;
            break;
        }
        uint32_t first = key_tail(&k, tail_bytes);
        uint8_t src = v.mv_size > 8 ? ((const unsigned char *)v.mv_data)[8] : 0;
        /* the last key of this zone */
        memcpy(seek, name, zl + 1);
        memset(seek + zl + 1, 0xff, (size_t)tail_bytes);
        seek[zl + 1 + tail_bytes] = 0xff;
        k = (MDB_val){zl + 2 + (size_t)tail_bytes, seek};
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        mrc = mrc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_PREV)
                       : mdb_cursor_get(cur, &k, &v, MDB_LAST);
        if (mrc) break;
        uint32_t last = key_tail(&k, tail_bytes);
        if (hourly) {
            z->first_hour = first;
            z->last_hour = last;
            z->hourly_source = src;
        } else {
            z->first_year = (int)first;
            z->last_year = (int)last;
            z->yearly_source = src;
        }
        /* the next zone: the first key after "zone\x01" */
        memcpy(seek, name, zl);
        seek[zl] = 1;
        k = (MDB_val){zl + 1, seek};
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    if (!rc && mrc && mrc != MDB_NOTFOUND) rc = store_err(mrc);
    mdb_cursor_close(cur);
    return rc;
}

static int zone_cmp(const void *a, const void *b)
{
    return strcmp(((const struct carbondb_zone *)a)->zone, ((const struct carbondb_zone *)b)->zone);
}

int carbondb_zones(struct carbondb *db, const char *prefix, struct carbondb_zone **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!prefix || strlen(prefix) >= CARBONDB_ZONE_MAX) return CASCA_ERR_INVALID;
    struct zone_list l = {0};
    MDB_txn *txn;
    int rc = store_read_begin(db->s, &txn);
    if (rc) return rc;
    rc = walk_zones(txn, db->hourly, 4, prefix, &l, true);
    if (!rc) rc = walk_zones(txn, db->yearly, 2, prefix, &l, false);
    store_read_end(db->s, txn);
    if (rc) {
        free(l.a);
        return rc;
    }
    if (l.n) qsort(l.a, l.n, sizeof(*l.a), zone_cmp);
    for (size_t i = 0; i < l.n; i++) {
        char key[64], *name = NULL;
        snprintf(key, sizeof(key), "name/%s", l.a[i].zone);
        if (carbondb_meta_get(db, key, &name) == CASCA_OK)
            snprintf(l.a[i].name, sizeof(l.a[i].name), "%s", name);
        free(name);
    }
    *out = l.a;
    *n = l.n;
    return CASCA_OK;
}

/* ---- meta ---- */

int carbondb_meta_get(struct carbondb *db, const char *key, char **val)
{
    void *v = NULL;
    size_t vl = 0;
    *val = NULL;
    int rc = kv_get(db->meta, key, strlen(key), &v, &vl);
    if (rc) return rc;
    char *s = malloc(vl + 1);
    if (!s) {
        free(v);
        return CASCA_ERR_NOMEM;
    }
    memcpy(s, v, vl);
    s[vl] = 0;
    free(v);
    *val = s;
    return CASCA_OK;
}

int carbondb_meta_put(struct carbondb *db, const char *key, const char *val)
{
    return kv_put(db->meta, key, strlen(key), val, strlen(val));
}
