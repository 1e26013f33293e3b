#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "casca_err.h"
#include "clock.h"
#include "salloc.h"

#define MIB ((size_t)1 << 20)

static const struct store_options defaults = {
    .map_size = 64 * MIB,
    .max_map_size = 64 * 1024 * MIB,
    .max_dbs = 32,
    .sync = STORE_SYNC_EVERY_COMMIT,
    .sync_interval_ms = 1000,
    .max_batch = 256,
    .queue_limit = 65536,
};

/* A queued write. Heap-allocated by store_write, freed by the writer after done. */
struct write_req {
    struct write_req *next;
    store_write_fn fn;
    void *arg;
    store_done_fn done;
    void *done_arg;
    int err;
    int64_t queued_ns; /* monotonic, when store_write took it */
    bool lazy;         /* store_write_lazy */
};

/* How long the writer lets lazy writes gather before it commits them: in periodic mode each
 * commit fdatasyncs its data pages, which costs a VM's two cores more than the commit itself. */
#define LAZY_LINGER_NS (5 * CASCA_NS_PER_MS)

/* The map gate: mdb_env_set_mapsize must not run while this process has a read transaction open.
 * Readers count themselves in; a resize waits for zero readers and keeps new ones out meanwhile.
 * A counter rather than a pthread_rwlock because MDB_NOTLS lets a read transaction end on another
 * thread than the one that began it, and a rwlock must be unlocked by the thread that locked it.
 * Readers are preferred (like glibc's default rwlock), so one thread may hold several. */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned readers;
    bool resizing;
};

struct dbi_entry {
    char *name;
    MDB_dbi dbi;
};

struct store {
    MDB_env *env;
    char *dir;
    char *data_path;        /* dir/data.mdb, for the file size in store_stats */
    struct store_options o; /* defaults applied; o.dir is dir */
    pthread_t writer;

    pthread_mutex_t mu;  /* guards the fields down to the gate */
    pthread_cond_t work; /* the writer waits for writes or the stop (CLOCK_MONOTONIC) */
    pthread_cond_t done; /* store_write_wait callers wait for their write */
    struct write_req *head, *tail;
    size_t pending;
    size_t lazy; /* of the pending writes, those queued by store_write_lazy */
    bool stopping;
    struct dbi_entry *dbis;
    size_t ndbis;
    size_t map_size;             /* written by the writer only */
    struct store_stats counters; /* commits, writes, failed_writes, last_commit_ns, last_error */

    struct gate gate;

    /* writer thread only */
    bool unsynced; /* periodic mode: a commit since the last sync */
    int64_t next_sync_ns; /* CLOCK_MONOTONIC */
};

static const struct {
    int mdb;
    enum casca_err err;
} mdb_errors[] = {
    {MDB_NOTFOUND, CASCA_ERR_NOT_FOUND},  {MDB_KEYEXIST, CASCA_ERR_EXISTS},
    {MDB_MAP_FULL, CASCA_ERR_FULL},       {MDB_DBS_FULL, CASCA_ERR_FULL},
    {MDB_BAD_VALSIZE, CASCA_ERR_INVALID}, {ENOMEM, CASCA_ERR_NOMEM},
};

int store_err(int mdb_rc)
{
    if (mdb_rc == MDB_SUCCESS) return CASCA_OK;
    for (size_t i = 0; i < sizeof mdb_errors / sizeof mdb_errors[0]; i++)
        if (mdb_errors[i].mdb == mdb_rc) return mdb_errors[i].err;
    return CASCA_ERR_IO;
}

static const struct {
    const char *name;
    enum store_sync sync;
} sync_names[] = {
    {"every_commit", STORE_SYNC_EVERY_COMMIT},
    {"periodic", STORE_SYNC_PERIODIC},
    {"none", STORE_SYNC_NONE},
};

int store_sync_parse(const char *s, enum store_sync *out)
{
    for (size_t i = 0; s && i < sizeof sync_names / sizeof sync_names[0]; i++) {
        if (strcmp(s, sync_names[i].name) == 0) {
            *out = sync_names[i].sync;
            return CASCA_OK;
        }
    }
    return CASCA_ERR_INVALID;
}

__attribute__((format(printf, 3, 4))) static void say(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Keeps a message for store_stats. Any thread; takes s->mu. */
__attribute__((format(printf, 2, 3))) static void note_error(struct store *s, const char *fmt, ...)
{
    pthread_mutex_lock(&s->mu);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->counters.last_error, sizeof s->counters.last_error, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&s->mu);
}

/* ---- the map gate ---- */

static void gate_enter(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    while (g->resizing)
        pthread_cond_wait(&g->cv, &g->mu);
    g->readers++;
    pthread_mutex_unlock(&g->mu);
}

static void gate_leave(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    if (--g->readers == 0) pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void gate_close(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    while (g->readers > 0)
        pthread_cond_wait(&g->cv, &g->mu);
    g->resizing = true;
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->resizing = false;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* ---- the writer thread ---- */

/* Sets the map size (0: adopt the size another process gave the file) with no transaction of this
 * process open. Writer thread only, between write transactions. Returns an LMDB code. */
static int set_map_size(struct store *s, size_t size)
{
    MDB_envinfo info;
    gate_close(&s->gate);
    int rc = mdb_env_set_mapsize(s->env, size);
    if (rc == 0) rc = mdb_env_info(s->env, &info);
    gate_open(&s->gate);
    if (rc != 0) {
        note_error(s, "cannot resize the map of the store in '%s' to %zu MiB: %s", s->dir,
                   size / MIB, mdb_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&s->mu);
    s->map_size = info.me_mapsize;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static void sync_env(struct store *s)
{
    int rc = mdb_env_sync(s->env, 1);
    if (rc != 0)
        note_error(s, "cannot sync the store in '%s' to disk: %s; check the disk", s->dir,
                   mdb_strerror(rc));
    s->unsynced = false;
}

/* Periodic mode: starts the interval at the first commit after a sync, syncs once it is over. */
static void after_commit(struct store *s)
{
    if (s->o.sync != STORE_SYNC_PERIODIC)
        return; /* every_commit: mdb_txn_commit synced; none: store_close syncs */
    int64_t now = casca_mono_ns();
    if (!s->unsynced) {
        s->unsynced = true;
        s->next_sync_ns = now + (int64_t)s->o.sync_interval_ms * CASCA_NS_PER_MS;
    } else if (now >= s->next_sync_ns) {
        sync_env(s);
    }
}

static void note_map_full(struct store *s)
{
    note_error(s,
               "the store in '%s' is full at max_map_size (%zu MiB); raise max_map_size or "
               "delete old data",
               s->dir, s->o.max_map_size / MIB);
}

/* After an LMDB call fails inside a transaction, LMDB marks the transaction as failed and refuses
 * it a child (MDB_BAD_TXN). That tells a write that really hit MDB_MAP_FULL from one that returned
 * CASCA_ERR_FULL for a reason of its own, which a bigger map would not cure. */
static bool txn_failed(MDB_env *env, MDB_txn *txn)
{
    MDB_txn *probe;
    int rc = mdb_txn_begin(env, txn, 0, &probe);
    if (rc == 0) mdb_txn_abort(probe);
    return rc == MDB_BAD_TXN;
}

/* Runs the batch in one write transaction, each write in a nested one so that a failing write is
 * rolled back alone. Returns 0 when the transaction committed (each r->err says how its write
 * went), MDB_MAP_FULL when the map must grow first (nothing committed), or the LMDB code that
 * failed the whole batch. */
static int try_batch(struct store *s, struct write_req *batch, bool can_grow)
{
    for (struct write_req *r = batch; r; r = r->next)
        r->err = CASCA_OK;
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0) return rc;
    for (struct write_req *r = batch; r; r = r->next) {
        MDB_txn *child;
        rc = mdb_txn_begin(s->env, txn, 0, &child);
        if (rc != 0) {
            r->err = store_err(rc);
            continue;
        }
        r->err = r->fn(child, r->arg);
        if (r->err == CASCA_OK) {
            r->err = store_err(mdb_txn_commit(child));
        } else if (r->err == CASCA_ERR_FULL && txn_failed(s->env, child)) {
            mdb_txn_abort(child);
            if (can_grow) {
                mdb_txn_abort(txn);
                return MDB_MAP_FULL;
            }
            note_map_full(s); /* this write fails alone; the others may still fit */
        } else {
            mdb_txn_abort(child);
        }
    }
    return mdb_txn_commit(txn);
}

static void run_batch(struct store *s, struct write_req *batch)
{
    int64_t start = casca_mono_ns();
    int rc, adopted = 0;
    for (;;) {
        bool can_grow = s->map_size < s->o.max_map_size;
        rc = try_batch(s, batch, can_grow);
        if (rc == MDB_MAP_FULL && can_grow) {
            size_t size = s->map_size > s->o.max_map_size / 2 ? s->o.max_map_size : 2 * s->map_size;
            if ((rc = set_map_size(s, size)) == 0) continue;
        } else if (rc == MDB_MAP_RESIZED && adopted++ < 3) {
            /* Another process grew the file beyond our map. */
            if ((rc = set_map_size(s, 0)) == 0) continue;
        }
        break;
    }
    if (rc == 0)
        after_commit(s);
    else if (rc == MDB_MAP_FULL)
        note_map_full(s);
    else
        note_error(s, "cannot commit to the store in '%s': %s", s->dir, mdb_strerror(rc));

    pthread_mutex_lock(&s->mu);
    for (struct write_req *r = batch; r; r = r->next) {
        if (rc != 0 && r->err == CASCA_OK) r->err = store_err(rc);
        if (r->err == CASCA_OK)
            s->counters.writes++;
        else
            s->counters.failed_writes++;
    }
    if (rc == 0) s->counters.commits++;
    int64_t end = casca_mono_ns();
    s->counters.last_commit_ns = (uint64_t)(end - start);
    if ((uint64_t)(end - batch->queued_ns) > s->counters.max_wait_ns) /* the batch's oldest */
        s->counters.max_wait_ns = (uint64_t)(end - batch->queued_ns);
    pthread_mutex_unlock(&s->mu);
}

/* Called with s->mu held and the queue empty: waits for a write or the stop, and in periodic mode
 * syncs when the interval is over. */
static void wait_for_work(struct store *s)
{
    if (!s->unsynced) {
        pthread_cond_wait(&s->work, &s->mu);
        return;
    }
    if (casca_cond_wait_until(&s->work, &s->mu, s->next_sync_ns) == ETIMEDOUT) {
        pthread_mutex_unlock(&s->mu);
        sync_env(s);
        pthread_mutex_lock(&s->mu);
    }
}

static void *writer_main(void *arg)
{
    struct store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (!s->head) {
            if (s->stopping) break;
            wait_for_work(s);
            continue;
        }
        if (s->lazy == s->pending && s->pending < s->o.max_batch && !s->stopping &&
            casca_mono_ns() < s->head->queued_ns + LAZY_LINGER_NS) {
            casca_cond_wait_until(&s->work, &s->mu, s->head->queued_ns + LAZY_LINGER_NS);
            continue;
        }
        struct write_req *batch = s->head, *last = batch;
        size_t n = 1, lazy = batch->lazy;
        while (n < s->o.max_batch && last->next) {
            last = last->next;
            n++;
            lazy += last->lazy;
        }
        s->head = last->next;
        if (!s->head) s->tail = NULL;
        last->next = NULL;
        s->pending -= n;
        s->lazy -= lazy;
        pthread_mutex_unlock(&s->mu);

        run_batch(s, batch);
        for (struct write_req *r = batch, *next; r; r = next) {
            next = r->next;
            if (r->done) r->done(r->err, r->done_arg);
            free(r);
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    sync_env(s);
    return NULL;
}

/* ---- open and close ---- */

/* mkdir -p with mode 0700 (the store holds the private side of SLOs and settings). Returns 0 or an
 * errno. */
static int make_dirs(const char *dir)
{
    char *path = strdup(dir);
    if (!path) return ENOMEM;
    int e = 0;
    for (char *c = path + 1;; c++) {
        if (*c != '/' && *c != '\0') continue;
        char saved = *c;
        *c = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            e = errno;
            break;
        }
        *c = saved;
        if (saved == '\0') break;
    }
    free(path);
    struct stat sb;
    if (e == 0 && stat(dir, &sb) != 0)
        e = errno;
    else if (e == 0 && !S_ISDIR(sb.st_mode))
        e = ENOTDIR;
    return e;
}

static size_t round_to_page(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (n + page - 1) / page * page;
}

static void store_free(struct store *s)
{
    if (s->env) mdb_env_close(s->env);
    for (size_t i = 0; i < s->ndbis; i++)
        free(s->dbis[i].name);
    free(s->dbis);
    pthread_cond_destroy(&s->gate.cv);
    pthread_mutex_destroy(&s->gate.mu);
    pthread_cond_destroy(&s->done);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    free(s->data_path);
    free(s->dir);
    free(s);
}

int store_open(const struct store_options *o, struct store **out, char *err, size_t errlen)
{
    say(err, errlen, "%s", "");
    if (!out || !o || !o->dir || !*o->dir) {
        say(err, errlen, "no store directory given; set the data dir");
        return CASCA_ERR_INVALID;
    }
    *out = NULL;
    struct store_options opt = *o;
    opt.map_size = round_to_page(opt.map_size ? opt.map_size : defaults.map_size);
    opt.max_map_size = round_to_page(opt.max_map_size ? opt.max_map_size : defaults.max_map_size);
    opt.max_dbs = opt.max_dbs ? opt.max_dbs : defaults.max_dbs;
    opt.sync_interval_ms = opt.sync_interval_ms ? opt.sync_interval_ms : defaults.sync_interval_ms;
    opt.max_batch = opt.max_batch ? opt.max_batch : defaults.max_batch;
    opt.queue_limit = opt.queue_limit ? opt.queue_limit : defaults.queue_limit;
    if (opt.sync != STORE_SYNC_EVERY_COMMIT && opt.sync != STORE_SYNC_PERIODIC &&
        opt.sync != STORE_SYNC_NONE) {
        say(err, errlen, "store in '%s': unknown sync mode %d; use every_commit, periodic or none",
            opt.dir, (int)opt.sync);
        return CASCA_ERR_INVALID;
    }
    if (opt.max_map_size < opt.map_size) {
        say(err, errlen,
            "store in '%s': max_map_size (%zu MiB) is below map_size (%zu MiB); raise "
            "max_map_size",
            opt.dir, opt.max_map_size / MIB, opt.map_size / MIB);
        return CASCA_ERR_INVALID;
    }
    int e = make_dirs(opt.dir);
    if (e == ENOMEM) {
        say(err, errlen, "out of memory opening the store in '%s'", opt.dir);
        return CASCA_ERR_NOMEM;
    }
    if (e != 0) {
        say(err, errlen,
            "cannot create the store directory '%s': %s; choose a data dir that this user can "
            "create, below directories only",
            opt.dir, strerror(e));
        return CASCA_ERR_IO;
    }

    struct store *s = calloc(1, sizeof *s);
    if (!s) {
        say(err, errlen, "out of memory opening the store in '%s'", opt.dir);
        return CASCA_ERR_NOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    casca_cond_init_mono(&s->work);
    pthread_cond_init(&s->done, NULL);
    pthread_mutex_init(&s->gate.mu, NULL);
    pthread_cond_init(&s->gate.cv, NULL);

    size_t dirlen = strlen(opt.dir);
    s->dir = strdup(opt.dir);
    s->data_path = malloc(dirlen + sizeof "/data.mdb");
    if (!s->dir || !s->data_path) {
        store_free(s);
        say(err, errlen, "out of memory opening the store in '%s'", opt.dir);
        return CASCA_ERR_NOMEM;
    }
    memcpy(s->data_path, opt.dir, dirlen);
    memcpy(s->data_path + dirlen, "/data.mdb", sizeof "/data.mdb");
    opt.dir = s->dir;
    s->o = opt;

    /* MDB_NOTLS: read transactions are not tied to threads. periodic skips only the meta-page
     * sync (the file stays consistent) and the writer calls mdb_env_sync on its timer; none skips
     * every sync. See enum store_sync. */
    unsigned flags = MDB_NOTLS | (opt.sync == STORE_SYNC_PERIODIC ? MDB_NOMETASYNC
                                  : opt.sync == STORE_SYNC_NONE   ? MDB_NOSYNC
                                                                  : 0);
    MDB_envinfo info;
    int rc = mdb_env_create(&s->env);
    if (rc == 0) rc = mdb_env_set_mapsize(s->env, opt.map_size);
    if (rc == 0) rc = mdb_env_set_maxdbs(s->env, opt.max_dbs);
    if (rc == 0) rc = mdb_env_open(s->env, s->dir, flags, 0600);
    if (rc == 0)
        rc = mdb_env_info(s->env, &info); /* the file may already be bigger than map_size */
    if (rc != 0) {
        say(err, errlen,
            "cannot open the LMDB store in '%s': %s; check that this user may read and write the "
            "directory and that its data.mdb is an LMDB file",
            s->dir, mdb_strerror(rc));
        store_free(s);
        return rc == ENOMEM ? CASCA_ERR_NOMEM : CASCA_ERR_IO;
    }
    int dead;
    mdb_reader_check(s->env, &dead); /* free reader slots of crashed processes */
    s->map_size = info.me_mapsize;

    if ((e = pthread_create(&s->writer, NULL, writer_main, s)) != 0) {
        say(err, errlen, "cannot start the writer thread of the store in '%s': %s", s->dir,
            strerror(e));
        store_free(s);
        return CASCA_ERR_NOMEM;
    }
    *out = s;
    return CASCA_OK;
}

void store_close(struct store *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->writer, NULL); /* the writer drains the queue and syncs before it returns */
    store_free(s);
}

/* ---- writes ---- */

static int queue_write(struct store *s, store_write_fn fn, void *arg, store_done_fn done,
                       void *done_arg, bool lazy)
{
    if (!s || !fn) return CASCA_ERR_INVALID;
    struct write_req *r = malloc(sizeof *r);
    if (!r) return CASCA_ERR_NOMEM;
    *r = (struct write_req){.fn = fn, .arg = arg, .done = done, .done_arg = done_arg,
                            .queued_ns = casca_mono_ns(), .lazy = lazy};
    pthread_mutex_lock(&s->mu);
    int e = s->stopping                      ? CASCA_ERR_UNAVAILABLE
            : s->pending >= s->o.queue_limit ? CASCA_ERR_FULL
                                             : CASCA_OK;
    if (e == CASCA_OK) {
        if (s->tail)
            s->tail->next = r;
        else
            s->head = r;
        s->tail = r;
        s->pending++;
        s->lazy += lazy;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
    if (e != CASCA_OK) free(r);
    return e;
}

int store_write(struct store *s, store_write_fn fn, void *arg, store_done_fn done, void *done_arg)
{
    return queue_write(s, fn, arg, done, done_arg, false);
}

int store_write_lazy(struct store *s, store_write_fn fn, void *arg, store_done_fn done,
                     void *done_arg)
{
    return queue_write(s, fn, arg, done, done_arg, true);
}

struct waiter {
    struct store *s;
    int err;
    bool finished;
};

static void wake_waiter(int err, void *arg)
{
    struct waiter *w = arg;
    struct store *s = w->s; /* w lives on the waiter's stack: gone once we unlock */
    pthread_mutex_lock(&s->mu);
    w->err = err;
    w->finished = true;
    pthread_cond_broadcast(&s->done);
    pthread_mutex_unlock(&s->mu);
}

int store_write_wait(struct store *s, store_write_fn fn, void *arg)
{
    if (!s || pthread_equal(pthread_self(), s->writer)) return CASCA_ERR_INVALID;
    struct waiter w = {.s = s};
    int e = store_write(s, fn, arg, wake_waiter, &w);
    if (e != CASCA_OK) return e;
    pthread_mutex_lock(&s->mu);
    while (!w.finished)
        pthread_cond_wait(&s->done, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return w.err;
}

/* ---- named databases ---- */

struct dbi_open {
    struct store *s;
    const char *name;
    unsigned flags;
    MDB_dbi dbi;
};

static int dbi_open_write(MDB_txn *txn, void *arg)
{
    struct dbi_open *d = arg;
    int rc = mdb_dbi_open(txn, d->name, d->flags | MDB_CREATE, &d->dbi);
    if (rc == MDB_DBS_FULL)
        note_error(d->s, "the store in '%s' has its max_dbs (%u) named databases; raise max_dbs",
                   d->s->dir, d->s->o.max_dbs);
    return store_err(rc);
}

/* Called with s->mu held. */
static bool dbi_cached(struct store *s, const char *name, MDB_dbi *out)
{
    for (size_t i = 0; i < s->ndbis; i++) {
        if (strcmp(s->dbis[i].name, name) == 0) {
            *out = s->dbis[i].dbi;
            return true;
        }
    }
    return false;
}

int store_dbi(struct store *s, const char *name, unsigned mdb_flags, MDB_dbi *out)
{
    if (!s || !name || !out) return CASCA_ERR_INVALID;
    pthread_mutex_lock(&s->mu);
    bool cached = dbi_cached(s, name, out);
    pthread_mutex_unlock(&s->mu);
    if (cached) return CASCA_OK;

    struct dbi_open d = {.s = s, .name = name, .flags = mdb_flags};
    int e = store_write_wait(s, dbi_open_write, &d);
    if (e != CASCA_OK) return e;

    char *copy = strdup(name);
    pthread_mutex_lock(&s->mu);
    if (!dbi_cached(s, name, out)) { /* another thread may have opened it meanwhile */
        struct dbi_entry *grown = copy ? realloc(s->dbis, (s->ndbis + 1) * sizeof *grown) : NULL;
        if (grown) {
            s->dbis = grown;
            s->dbis[s->ndbis++] = (struct dbi_entry){.name = copy, .dbi = d.dbi};
            copy = NULL;
        }
        *out = d.dbi; /* valid even if not cached: LMDB keeps it until the env closes */
    }
    pthread_mutex_unlock(&s->mu);
    free(copy);
    return CASCA_OK;
}

/* ---- reads ---- */

static int noop_write(MDB_txn *txn, void *arg)
{
    (void)txn;
    (void)arg;
    return CASCA_OK;
}

int store_read_begin(struct store *s, MDB_txn **txn)
{
    if (!s || !txn) return CASCA_ERR_INVALID;
    for (int tries = 0;; tries++) {
        gate_enter(&s->gate);
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
        if (rc == 0) return CASCA_OK;
        gate_leave(&s->gate);
        *txn = NULL;
        if (rc != MDB_MAP_RESIZED || tries == 3) return store_err(rc);
        /* Another process grew the file beyond our map: the writer adopts the new size when it
         * next begins a write transaction, so give it one. */
        int e = store_write_wait(s, noop_write, NULL);
        if (e != CASCA_OK) return e;
    }
}

void store_read_end(struct store *s, MDB_txn *txn)
{
    if (!s || !txn) return;
    mdb_txn_abort(txn);
    gate_leave(&s->gate);
}

const char *store_dir(const struct store *s)
{
    return s->dir;
}

enum store_sync store_sync_mode(const struct store *s)
{
    return s->o.sync;
}

int store_sync(struct store *s)
{
    return store_err(mdb_env_sync(s->env, 1));
}

int store_stats(struct store *s, struct store_stats *st)
{
    if (!s || !st) return CASCA_ERR_INVALID;
    pthread_mutex_lock(&s->mu);
    *st = s->counters;
    st->pending = s->pending;
    st->map_bytes = s->map_size;
    pthread_mutex_unlock(&s->mu);
    struct stat sb;
    st->file_bytes = stat(s->data_path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    return CASCA_OK;
}
