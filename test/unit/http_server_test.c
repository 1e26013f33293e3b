/* http_server: the route table over a real loopback listener (raw HTTP/1.1 over a socket): 200 from
 * the handler on its worker thread, HEAD without a body, 404 for an unknown path, 405 with Allow,
 * and with tokens 401 (missing, malformed, unknown, with WWW-Authenticate) and 403 for a role the
 * route does not allow; a bad address and a port in use fail with the reason. A stream whose
 * client stops reading is counted gone once a write has waited 10 s; one that reads is not. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "casca_err.h"
#include "http_server.h"

static atomic_int handled;

static void hello(void *arg, const struct http_request *req, struct http_response *res)
{
    (void)arg;
    atomic_fetch_add(&handled, 1);
    res->content_type = "text/plain; version=0.0.4; charset=utf-8";
    if (asprintf(&res->body, "hello %s %s role=%d q=%s\n", req->caller, req->path, (int)req->role,
                 req->query) < 0)
        res->body = NULL;
    res->len = res->body ? strlen(res->body) : 0;
}

static const struct http_route routes[] = {
    {"/metrics", "GET", RPC_ROLES_READ, hello, NULL},
};

static int fake_auth(void *arg, const char *token, size_t len, enum rpc_role *role, char *name,
                     size_t namelen)
{
    (void)arg;
    static const struct {
        const char *secret, *name;
        enum rpc_role role;
    } toks[] = {{"view-tok", "dash", RPC_ROLE_VIEWER}, {"rep-tok", "meter", RPC_ROLE_REPORTER}};
    for (size_t i = 0; i < 2; i++)
        if (strlen(toks[i].secret) == len && !memcmp(toks[i].secret, token, len)) {
            *role = toks[i].role;
            snprintf(name, namelen, "%s", toks[i].name);
            return CASCA_OK;
        }
    return CASCA_ERR_UNAUTH;
}

/* Sends one request and returns the whole answer (malloc'ed). */
static char *ask(int port, const char *method, const char *path, const char *extra)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n", method,
                     path, extra ? extra : "");
    assert_int_equal(write(fd, req, (size_t)n), n);
    char *out = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&out, &len);
    char buf[4096];
    ssize_t r;
    while ((r = read(fd, buf, sizeof(buf))) > 0)
        fwrite(buf, 1, (size_t)r, mem);
    fclose(mem);
    close(fd);
    return out;
}

static void expect(int port, const char *method, const char *path, const char *extra,
                   const char *status, const char *header, const char *body)
{
    char *a = ask(port, method, path, extra);
    assert_non_null(a);
    if (strncmp(a, status, strlen(status)))
        fail_msg("%s %s: expected %s, got:\n%s", method, path, status, a);
    if (header && !strstr(a, header))
        fail_msg("%s %s: no header %s in:\n%s", method, path, header, a);
    const char *b = strstr(a, "\r\n\r\n");
    assert_non_null(b);
    assert_string_equal(b + 4, body);
    free(a);
}

static void test_routes_without_tokens(void **state)
{
    (void)state;
    struct http_options o = {.listen = "127.0.0.1:0"};
    struct http_server *s = NULL;
    char err[256] = "";
    assert_int_equal(http_server_create(&o, routes, 1, &s, err, sizeof(err)), CASCA_OK);
    int port = http_server_port(s);
    assert_true(port > 0);
    expect(port, "GET", "/metrics?a=1", NULL, "HTTP/1.1 200",
           "Content-Type: text/plain; version=0.0.4; charset=utf-8",
           "hello local /metrics role=8 q=a=1\n");
    expect(port, "HEAD", "/metrics", NULL, "HTTP/1.1 200", "Content-Length: 31", "");
    expect(port, "GET", "/", NULL, "HTTP/1.1 404", NULL,
           "no such path /: cascad serves GET /metrics\n");
    expect(port, "GET", "/metrics/more", NULL, "HTTP/1.1 404", NULL,
           "no such path /metrics/more: cascad serves GET /metrics\n");
    expect(port, "DELETE", "/metrics", NULL, "HTTP/1.1 405", "Allow: GET, HEAD",
           "method DELETE is not allowed on /metrics: use GET, HEAD\n");
    expect(port, "GET", "/metrics", "Authorization: Bearer anything\r\n", "HTTP/1.1 200", NULL,
           "hello local /metrics role=8 q=\n");
    http_server_destroy(s);
}

static void test_tokens_and_roles(void **state)
{
    (void)state;
    struct http_options o = {.listen = "127.0.0.1:0", .auth = fake_auth, .workers = 1};
    struct http_server *s = NULL;
    char err[256] = "";
    assert_int_equal(http_server_create(&o, routes, 1, &s, err, sizeof(err)), CASCA_OK);
    int port = http_server_port(s);
    int before = atomic_load(&handled);
    expect(port, "GET", "/metrics", NULL, "HTTP/1.1 401",
           "WWW-Authenticate: Bearer realm=\"casca\"",
           "missing credentials: send the header 'Authorization: Bearer <token>'\n");
    expect(port, "GET", "/metrics", "Authorization: Basic eDp5\r\n", "HTTP/1.1 401", NULL,
           "malformed Authorization header: send 'Authorization: Bearer <token>'\n");
    expect(port, "GET", "/metrics", "Authorization: Bearer nope\r\n", "HTTP/1.1 401", NULL,
           "unknown bearer token: ask the operator for a token\n");
    expect(port, "GET", "/metrics", "Authorization: Bearer rep-tok\r\n", "HTTP/1.1 403", NULL,
           "role 'reporter' may not GET /metrics; it needs one of: viewer, agent, operator\n");
    assert_int_equal(atomic_load(&handled), before); /* refused before any handler ran */
    expect(port, "GET", "/metrics", "Authorization: bearer view-tok\r\n", "HTTP/1.1 200", NULL,
           "hello dash /metrics role=1 q=\n");
    expect(port, "POST", "/metrics",
           "Authorization: Bearer rep-tok\r\nContent-Length: 3\r\n\r\nabc", "HTTP/1.1 405", NULL,
           "method POST is not allowed on /metrics: use GET, HEAD\n");
    http_server_destroy(s);
    http_server_destroy(NULL);
}

/* ---- streams ---- */

static struct http_stream *_Atomic taken;

static void take(void *arg, const struct http_request *req, struct http_stream *s)
{
    (void)arg, (void)req;
    atomic_store(&taken, s);
}

/* Opens the stream with a small receive buffer; the answer's head is read, nothing more. */
static int open_stream(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    static const char req[] = "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    return fd;
}

static struct http_stream *wait_taken(void)
{
    for (int i = 0; i < 1000 && !atomic_load(&taken); i++)
        usleep(10000);
    struct http_stream *st = atomic_exchange(&taken, NULL);
    assert_non_null(st);
    return st;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_stream_that_stops_reading(void **state)
{
    (void)state;
    static atomic_uint count;
    const struct http_route r[] = {
        {"/events", "GET", RPC_ROLES_READ, NULL, NULL, 0, take, 4, &count},
    };
    struct http_options o = {.listen = "127.0.0.1:0"};
    struct http_server *s = NULL;
    char err[256] = "";
    assert_int_equal(http_server_create(&o, r, 1, &s, err, sizeof(err)), CASCA_OK);
    int port = http_server_port(s);
    int stuck_fd = open_stream(port);
    struct http_stream *stuck = wait_taken();
    int reader_fd = open_stream(port);
    struct http_stream *reader = wait_taken();
    /* the stuck client reads nothing: 1 MiB writes fill the kernel's buffers and the next waits */
    size_t big = 1 << 20;
    char *chunk = malloc(big);
    assert_non_null(chunk);
    memset(chunk, 'x', big);
    double start = now_s(), deadline = start + 60;
    bool was_gone = false;
    while (now_s() < deadline && !(was_gone = http_stream_gone(stuck))) {
        http_stream_write(stuck, chunk, big);
        http_stream_write(reader, "data: 1\n\n", 10);
        char buf[65536];
        while (recv(reader_fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
            ;
        usleep(100000);
    }
    assert_true(was_gone);
    assert_true(now_s() - start >= 10.0); /* never before a write has waited 10 s */
    assert_false(http_stream_gone(reader));
    free(chunk);
    http_stream_close(stuck);
    http_stream_close(reader);
    assert_int_equal(atomic_load(&count), 0);
    close(stuck_fd);
    close(reader_fd);
    http_server_destroy(s);
}

static void test_bad_addresses(void **state)
{
    (void)state;
    struct http_server *s = NULL, *t = NULL;
    char err[256] = "";
    struct http_options o = {.listen = "127.0.0.1:0"};
    assert_int_equal(http_server_create(&o, routes, 1, &s, err, sizeof(err)), CASCA_OK);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", http_server_port(s));
    /* the same address in this process: nng shares its server, so use another process's view:
     * a plain socket bound to a port makes that port busy */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    o.listen = addr;
    assert_int_equal(http_server_create(&o, routes, 1, &t, err, sizeof(err)),
                     CASCA_ERR_UNAVAILABLE);
    assert_null(t);
    assert_non_null(strstr(err, "cannot listen on"));
    close(fd);
    o.listen = "not an address";
    assert_int_not_equal(http_server_create(&o, routes, 1, &t, err, sizeof(err)), CASCA_OK);
    assert_null(t);
    http_server_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_without_tokens),
        cmocka_unit_test(test_tokens_and_roles),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_stream_that_stops_reading),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
