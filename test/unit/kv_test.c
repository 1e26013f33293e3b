#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw */
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fixture.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "casca_err.h"
#include "kv.h"
#include "store.h"

struct fixture {
    char *dir;
    struct store *s;
    struct kv *kv;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->dir = fixture_tmpdir("kv-test"))) return -1;
    struct store_options o = {.dir = f->dir};
    char err[512];
    if (store_open(&o, &f->s, err, sizeof err) != CASCA_OK ||
        kv_open(f->s, "kv", &f->kv) != CASCA_OK) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kv_close(f->kv);
    store_close(f->s);
    int rc = fixture_remove_tree(f->dir);
    free(f->dir);
    free(f);
    return rc;
}

static void assert_value(struct kv *kv, const char *key, const char *want)
{
    void *v = NULL;
    size_t vl = 0;
    assert_int_equal(kv_get(kv, key, strlen(key), &v, &vl), CASCA_OK);
    assert_int_equal(vl, strlen(want));
    assert_memory_equal(v, want, vl);
    free(v);
}

static void put_get_overwrite(void **state)
{
    struct kv *kv = ((struct fixture *)*state)->kv;
    assert_int_equal(kv_put(kv, "a", 1, "one", 3), CASCA_OK);
    assert_value(kv, "a", "one");
    assert_int_equal(kv_put(kv, "a", 1, "uno!", 4), CASCA_OK);
    assert_value(kv, "a", "uno!");
    assert_int_equal(kv_put(kv, "empty", 5, NULL, 0), CASCA_OK); /* an empty value is a value */
    void *v = NULL;
    size_t vl = 99;
    assert_int_equal(kv_get(kv, "empty", 5, &v, &vl), CASCA_OK);
    assert_non_null(v);
    assert_int_equal(vl, 0);
    free(v);
}

static void not_found_and_del(void **state)
{
    struct kv *kv = ((struct fixture *)*state)->kv;
    void *v = NULL;
    size_t vl;
    assert_int_equal(kv_get(kv, "nope", 4, &v, &vl), CASCA_ERR_NOT_FOUND);
    assert_null(v);
    assert_int_equal(kv_del(kv, "nope", 4), CASCA_ERR_NOT_FOUND);
    assert_int_equal(kv_put(kv, "k", 1, "v", 1), CASCA_OK);
    assert_int_equal(kv_del(kv, "k", 1), CASCA_OK);
    assert_int_equal(kv_get(kv, "k", 1, &v, &vl), CASCA_ERR_NOT_FOUND);
}

static void bad_arguments(void **state)
{
    struct kv *kv = ((struct fixture *)*state)->kv;
    char big[600];
    memset(big, 'k', sizeof big);
    void *v;
    size_t vl;
    assert_int_equal(kv_put(kv, "", 0, "v", 1), CASCA_ERR_INVALID);
    assert_int_equal(kv_put(kv, "k", 1, NULL, 3), CASCA_ERR_INVALID);
    assert_int_equal(kv_put(kv, big, sizeof big, "v", 1), CASCA_ERR_INVALID); /* > 511 bytes */
    assert_int_equal(kv_get(kv, NULL, 1, &v, &vl), CASCA_ERR_INVALID);
    assert_int_equal(kv_put(NULL, "k", 1, "v", 1), CASCA_ERR_INVALID);
    kv_close(NULL);
}

struct collected {
    char keys[16][16];
    int n;
    int stop_at; /* return 42 when n reaches this */
};

static int collect(const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
    struct collected *c = arg;
    assert_true(kl < sizeof c->keys[0]);
    assert_int_equal(vl, 2);
    assert_memory_equal(v, "xx", 2);
    memcpy(c->keys[c->n], k, kl);
    c->keys[c->n][kl] = '\0';
    return ++c->n == c->stop_at ? 42 : 0;
}

static void prefix_scan(void **state)
{
    struct kv *kv = ((struct fixture *)*state)->kv;
    const char *keys[] = {"slo/b", "setting/x", "slo/a", "slo", "slp", "sl", "slo/c/1"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_int_equal(kv_put(kv, keys[i], strlen(keys[i]), "xx", 2), CASCA_OK);

    struct collected c = {.n = 0};
    assert_int_equal(kv_foreach_prefix(kv, "slo/", 4, collect, &c), 0);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.keys[0], "slo/a");
    assert_string_equal(c.keys[1], "slo/b");
    assert_string_equal(c.keys[2], "slo/c/1");

    c = (struct collected){.n = 0};
    assert_int_equal(kv_foreach_prefix(kv, "", 0, collect, &c), 0);
    assert_int_equal(c.n, 7);
    assert_string_equal(c.keys[0], "setting/x");

    c = (struct collected){.n = 0};
    assert_int_equal(kv_foreach_prefix(kv, "zzz", 3, collect, &c), 0);
    assert_int_equal(c.n, 0);

    c = (struct collected){.n = 0, .stop_at = 2};
    assert_int_equal(kv_foreach_prefix(kv, "slo", 3, collect, &c), 42);
    assert_int_equal(c.n, 2);
}

struct async_result {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls, err;
};

static void async_done(int err, void *arg)
{
    struct async_result *r = arg;
    pthread_mutex_lock(&r->mu);
    r->calls++;
    r->err = err;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void put_async(void **state)
{
    struct kv *kv = ((struct fixture *)*state)->kv;
    struct async_result r = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1};
    char key[8] = "async", val[8] = "later";
    assert_int_equal(kv_put_async(kv, key, 5, val, 5, async_done, &r), CASCA_OK);
    memset(key, 0, sizeof key); /* copied: the caller may reuse its buffers at once */
    memset(val, 0, sizeof val);
    pthread_mutex_lock(&r.mu);
    while (r.calls == 0)
        pthread_cond_wait(&r.cv, &r.mu);
    pthread_mutex_unlock(&r.mu);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, CASCA_OK);
    assert_value(kv, "async", "later");
    assert_int_equal(kv_put_async(kv, "n", 1, "v", 1, NULL, NULL), CASCA_OK); /* no callback */
}

static void reopen_keeps_values(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(kv_put(f->kv, "kept", 4, "yes", 3), CASCA_OK);
    kv_close(f->kv);
    store_close(f->s);
    struct store_options o = {.dir = f->dir};
    assert_int_equal(store_open(&o, &f->s, NULL, 0), CASCA_OK);
    assert_int_equal(kv_open(f->s, "kv", &f->kv), CASCA_OK);
    assert_value(f->kv, "kept", "yes");
    struct kv *other;
    assert_int_equal(kv_open(f->s, "other", &other), CASCA_OK);
    void *v;
    size_t vl;
    assert_int_equal(kv_get(other, "kept", 4, &v, &vl), CASCA_ERR_NOT_FOUND); /* separate maps */
    kv_close(other);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(put_get_overwrite), T(not_found_and_del), T(bad_arguments),
        T(prefix_scan),       T(put_async),         T(reopen_keeps_values),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
