/* auth: a bearer token gives its role and name from the live configuration; anything else is
 * CASCA_ERR_UNAUTH; a reload that drops a token revokes it for the next call. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "casca_err.h"
#include "config.h"
#include "sections.h"

#define OPS "ops-secret-0123456789abcdef"  /* 27 characters */
#define AGENT "agent-secret-9876543210zyxw" /* 27 characters too */

struct fx {
    char dir[64];
    char path[128];
    struct config_live *live;
};

static struct config *load(struct fx *f, const char *text)
{
    FILE *out = fopen(f->path, "w");
    assert_non_null(out);
    fputs(text, out);
    assert_int_equal(fclose(out), 0);
    struct config *c = NULL;
    struct config_errors errs = {0};
    int rc = config_load(f->path, NULL, cascad_config_sections, &c, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("  %s\n", errs.lines[i]);
    config_errors_free(&errs);
    assert_int_equal(rc, CASCA_OK);
    return c;
}

static const char both_tokens[] = "auth:\n"
                                  "  tokens:\n"
                                  "    - {name: ops, role: operator, token: " OPS "}\n"
                                  "    - {name: gds-agent, role: agent, token: " AGENT "}\n";
static const char agent_only[] = "auth:\n"
                                 "  tokens:\n"
                                 "    - {name: gds-agent, role: agent, token: " AGENT "}\n";

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/casca-auth-test-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/casca.yaml", f->dir);
    *state = f;
    f->live = config_live_create(load(f, both_tokens));
    return f->live ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    config_live_destroy(f->live);
    int rc = unlink(f->path);
    rc |= rmdir(f->dir);
    free(f);
    return rc;
}

static int check(struct fx *f, const char *token, size_t len, enum rpc_role *role, char *name,
                 size_t namelen)
{
    return auth_check(f->live, token, len, role, name, namelen);
}

static void expect_role(struct fx *f, const char *token, enum rpc_role want, const char *who)
{
    enum rpc_role role = RPC_ROLE_NONE;
    char name[64] = "";
    assert_int_equal(check(f, token, strlen(token), &role, name, sizeof(name)), CASCA_OK);
    assert_int_equal(role, want);
    assert_string_equal(name, who);
}

static void expect_unauth(struct fx *f, const char *token, size_t len)
{
    enum rpc_role role = RPC_ROLE_NONE;
    char name[64] = "";
    assert_int_equal(check(f, token, len, &role, name, sizeof(name)), CASCA_ERR_UNAUTH);
    assert_int_equal(role, RPC_ROLE_NONE);
    assert_string_equal(name, "");
}

static void right_tokens(void **state)
{
    struct fx *f = *state;
    struct config *c = config_live_get(f->live);
    assert_true(auth_enabled(c));
    config_unref(c);
    expect_role(f, OPS, RPC_ROLE_OPERATOR, "ops");
    expect_role(f, AGENT, RPC_ROLE_AGENT, "gds-agent");

    /* the token from metadata is (pointer, length), not NUL-terminated */
    const char buf[] = AGENT "trailing-bytes";
    enum rpc_role role = RPC_ROLE_NONE;
    char name[64] = "";
    assert_int_equal(check(f, buf, strlen(AGENT), &role, name, sizeof(name)), CASCA_OK);
    assert_int_equal(role, RPC_ROLE_AGENT);
    assert_string_equal(name, "gds-agent");

    /* the name is cut to the buffer, NUL-terminated */
    char small[4];
    memset(small, 'Z', sizeof(small));
    assert_int_equal(check(f, AGENT, strlen(AGENT), &role, small, sizeof(small)), CASCA_OK);
    assert_string_equal(small, "gds");
}

static void wrong_tokens(void **state)
{
    struct fx *f = *state;
    char same_len[] = OPS;
    same_len[sizeof(same_len) - 2] ^= 1; /* last character */
    expect_unauth(f, same_len, strlen(same_len));
    char first_wrong[] = AGENT;
    first_wrong[0] = 'A';
    expect_unauth(f, first_wrong, strlen(first_wrong));
    expect_unauth(f, OPS, strlen(OPS) - 1);                   /* a prefix */
    expect_unauth(f, OPS, 1);                                 /* a one-byte prefix */
    expect_unauth(f, OPS "x", strlen(OPS) + 1);               /* the token, then more */
    expect_unauth(f, OPS OPS, 2 * strlen(OPS));               /* repeated */
    expect_unauth(f, "", 0);                                  /* empty */
    expect_unauth(f, "ops", 3);                               /* a name is not a token */
    expect_unauth(f, "short-and-wrong", strlen("short-and-wrong"));
    expect_unauth(f, "a-much-longer-token-that-is-not-configured-anywhere-0123456789",
                  strlen("a-much-longer-token-that-is-not-configured-anywhere-0123456789"));
    /* the two tokens' halves put together */
    char mixed[] = OPS;
    memcpy(mixed + 13, AGENT + 13, strlen(AGENT) - 13);
    expect_unauth(f, mixed, strlen(mixed));
}

static void reload_revokes(void **state)
{
    struct fx *f = *state;
    /* a call in flight keeps its snapshot */
    struct config *before = config_live_get(f->live);

    config_live_swap(f->live, load(f, agent_only));
    expect_unauth(f, OPS, strlen(OPS));
    expect_role(f, AGENT, RPC_ROLE_AGENT, "gds-agent");
    assert_int_equal(before->auth.ntokens, 2);
    assert_string_equal(before->auth.tokens[0].secret, OPS);
    config_unref(before);

    /* and a reload can add it back */
    config_live_swap(f->live, load(f, both_tokens));
    expect_role(f, OPS, RPC_ROLE_OPERATOR, "ops");

    /* no tokens at all: auth is off (loopback only) and no token is accepted */
    config_live_swap(f->live, load(f, ""));
    struct config *c = config_live_get(f->live);
    assert_false(auth_enabled(c));
    assert_int_equal(c->generation, 4);
    config_unref(c);
    expect_unauth(f, OPS, strlen(OPS));
    expect_unauth(f, AGENT, strlen(AGENT));
    expect_unauth(f, "", 0);
}

struct caller {
    struct fx *f;
    atomic_bool *stop;
    unsigned long calls, bad;
};

static void *call_loop(void *arg)
{
    struct caller *c = arg;
    while (!atomic_load(c->stop)) {
        enum rpc_role role = RPC_ROLE_NONE;
        char name[64] = "";
        /* the agent is in every snapshot; ops comes and goes */
        if (check(c->f, AGENT, strlen(AGENT), &role, name, sizeof(name)) != CASCA_OK ||
            role != RPC_ROLE_AGENT || strcmp(name, "gds-agent"))
            c->bad++;
        role = RPC_ROLE_NONE;
        int rc = check(c->f, OPS, strlen(OPS), &role, name, sizeof(name));
        if (!(rc == CASCA_ERR_UNAUTH || (rc == CASCA_OK && role == RPC_ROLE_OPERATOR)))
            c->bad++;
        c->calls++;
    }
    return NULL;
}

static void checks_during_reloads(void **state)
{
    struct fx *f = *state;
    enum { CALLERS = 4, RELOADS = 100 };
    struct config *snap[RELOADS];
    for (int i = 0; i < RELOADS; i++)
        snap[i] = load(f, i % 2 ? both_tokens : agent_only);
    atomic_bool stop = false;
    struct caller callers[CALLERS];
    pthread_t t[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        callers[i] = (struct caller){.f = f, .stop = &stop};
        assert_int_equal(pthread_create(&t[i], NULL, call_loop, &callers[i]), 0);
    }
    for (int i = 0; i < RELOADS; i++) {
        config_live_swap(f->live, snap[i]);
        usleep(200);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < CALLERS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(callers[i].bad, 0);
        assert_true(callers[i].calls > 0);
    }
    expect_role(f, OPS, RPC_ROLE_OPERATOR, "ops"); /* the last snapshot has both */
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(right_tokens),
        T(wrong_tokens),
        T(reload_revokes),
        T(checks_during_reloads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
