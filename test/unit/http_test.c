/* The libcurl wrapper against a small HTTP server on a loopback port (one connection at a time,
 * "Connection: close"): statuses, the body cap both ways, timeouts, an unreachable port, and one
 * easy handle reused across methods. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "casca_err.h"
#include "http.h"

static int listen_fd;
static int port;
static pthread_t server;

/* Reads one request; returns the first line's "METHOD /path" and the body (after the headers). */
static void read_request(int fd, char *line, size_t linecap, char *body, size_t bodycap)
{
    char buf[8192];
    size_t n = 0;
    ssize_t r;
    char *end = NULL;
    while (n < sizeof(buf) - 1 && (r = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0) {
        n += (size_t)r;
        buf[n] = 0;
        if ((end = strstr(buf, "\r\n\r\n"))) {
            const char *cl = strcasestr(buf, "content-length:");
            size_t want = cl && cl < end ? (size_t)atol(cl + 15) : 0;
            if (n - (size_t)(end + 4 - buf) >= want) break;
        }
    }
    buf[n] = 0;
    snprintf(line, linecap, "%.*s", (int)strcspn(buf, " "), buf);
    const char *path = strchr(buf, ' ');
    if (path)
        snprintf(line + strlen(line), linecap - strlen(line), " %.*s", (int)strcspn(path + 1, " "),
                 path + 1);
    snprintf(body, bodycap, "%s", end ? end + 4 : "");
}

static void *serve(void *arg)
{
    (void)arg;
    int fd;
    while ((fd = accept(listen_fd, NULL, NULL)) >= 0) {
        char line[256], body[4096], reply[8400];
        read_request(fd, line, sizeof(line), body, sizeof(body));
        const char *path = strchr(line, ' ') ? strchr(line, ' ') + 1 : "";
        int status = 200;
        char content[4400];
        if (!strcmp(path, "/slow")) { /* never answers: wait for the client to give up */
            char sink[256];
            while (read(fd, sink, sizeof(sink)) > 0)
                ;
            close(fd);
            continue;
        } else if (!strcmp(path, "/big")) {
            memset(content, 'x', 2000);
            content[2000] = 0;
        } else if (!strcmp(path, "/down")) {
            status = 503;
            snprintf(content, sizeof(content), "down for maintenance");
        } else {
            snprintf(content, sizeof(content), "%s:%s", line, body);
        }
        int len = snprintf(reply, sizeof(reply),
                           "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                           status, strcmp(line, "HEAD /") ? strlen(content) : 0, content);
        if (write(fd, reply, (size_t)len) < 0) break;
        close(fd);
    }
    return NULL;
}

static int setup(void **state)
{
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) ||
        listen(listen_fd, 8) || getsockname(listen_fd, (struct sockaddr *)&a, &alen))
        return -1;
    port = ntohs(a.sin_port);
    return pthread_create(&server, NULL, serve, NULL) ? -1 : 0;
}

static int teardown(void **state)
{
    shutdown(listen_fd, SHUT_RDWR); /* wakes accept */
    pthread_join(server, NULL);
    close(listen_fd);
    return 0;
}

static char *url(const char *path)
{
    static char u[64];
    snprintf(u, sizeof(u), "http://127.0.0.1:%d%s", port, path);
    return u;
}

static void init_is_idempotent(void **state)
{
    assert_int_equal(casca_http_init(), CASCA_OK);
    assert_int_equal(casca_http_init(), CASCA_OK);
}

static void one_handle_many_methods(void **state)
{
    assert_int_equal(casca_http_init(), CASCA_OK);
    CURL *e = curl_easy_init();
    assert_non_null(e);
    long status;
    char why[128];
    struct casca_http_body b = {.max = 1024};
    struct casca_http_request r = {
        .method = "PUT", .url = url("/x"), .body = "{\"v\":1}", .body_len = 7, .timeout_ms = 5000};
    assert_int_equal(casca_http_request(e, &r, &b, &status, why, sizeof(why)), CASCA_OK);
    assert_int_equal(status, 200);
    assert_string_equal(b.p, "PUT /x:{\"v\":1}");
    free(b.p);
    /* the same handle: a GET after the PUT is a GET with no body */
    b = (struct casca_http_body){.max = 1024};
    r = (struct casca_http_request){.url = url("/y"), .timeout_ms = 5000};
    assert_int_equal(casca_http_request(e, &r, &b, &status, why, sizeof(why)), CASCA_OK);
    assert_string_equal(b.p, "GET /y:");
    free(b.p);
    b = (struct casca_http_body){.max = 1024};
    r = (struct casca_http_request){
        .method = "POST", .url = url("/z"), .body = "a=1", .body_len = 3, .timeout_ms = 5000};
    assert_int_equal(casca_http_request(e, &r, &b, &status, why, sizeof(why)), CASCA_OK);
    assert_string_equal(b.p, "POST /z:a=1");
    free(b.p);
    r = (struct casca_http_request){.method = "HEAD", .url = url("/"), .timeout_ms = 5000};
    assert_int_equal(casca_http_request(e, &r, NULL, &status, why, sizeof(why)), CASCA_OK);
    assert_int_equal(status, 200);
    /* any status is the caller's to judge */
    b = (struct casca_http_body){.max = 1024};
    r = (struct casca_http_request){.url = url("/down"), .timeout_ms = 5000};
    assert_int_equal(casca_http_request(e, &r, &b, &status, why, sizeof(why)), CASCA_OK);
    assert_int_equal(status, 503);
    assert_string_equal(b.p, "down for maintenance");
    free(b.p);
    curl_easy_cleanup(e);
}

static void body_cap(void **state)
{
    assert_int_equal(casca_http_init(), CASCA_OK);
    CURL *e = curl_easy_init();
    long status;
    char why[128];
    struct casca_http_request r = {.url = url("/big"), .timeout_ms = 5000};
    struct casca_http_body b = {.max = 100};
    assert_int_equal(casca_http_request(e, &r, &b, &status, why, sizeof(why)),
                     CASCA_ERR_UNAVAILABLE);
    assert_true(b.overflow);
    assert_string_equal(why, "answer larger than 100 bytes");
    free(b.p);
    b = (struct casca_http_body){.max = 100, .truncate = true};
    assert_int_equal(casca_http_request(e, &r, &b, &status, why, sizeof(why)), CASCA_OK);
    assert_true(b.overflow);
    assert_int_equal(b.len, 100);
    assert_int_equal(strlen(b.p), 100);
    free(b.p);
    b = (struct casca_http_body){.max = 2000}; /* exactly the size: fits */
    assert_int_equal(casca_http_request(e, &r, &b, &status, why, sizeof(why)), CASCA_OK);
    assert_false(b.overflow);
    assert_int_equal(b.len, 2000);
    free(b.p);
    curl_easy_cleanup(e);
}

static void failures_name_no_url(void **state)
{
    assert_int_equal(casca_http_init(), CASCA_OK);
    CURL *e = curl_easy_init();
    long status = 7;
    char why[128];
    struct casca_http_request r = {.url = url("/slow"), .timeout_ms = 200};
    assert_int_equal(casca_http_request(e, &r, NULL, &status, why, sizeof(why)), CASCA_ERR_TIMEOUT);
    assert_string_equal(why, "no answer within 200 ms");
    assert_int_equal(status, 0);
    /* a port nobody listens on: the one this test's server does not use */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    char dead[64];
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%d/", ntohs(a.sin_port));
    r = (struct casca_http_request){.url = dead, .timeout_ms = 2000};
    assert_int_equal(casca_http_request(e, &r, NULL, &status, why, sizeof(why)),
                     CASCA_ERR_UNAVAILABLE);
    assert_null(strstr(why, "127.0.0.1"));
    close(fd);
    /* only http and https */
    r = (struct casca_http_request){.url = "file:///etc/passwd", .timeout_ms = 2000};
    assert_int_equal(casca_http_request(e, &r, NULL, &status, why, sizeof(why)),
                     CASCA_ERR_UNAVAILABLE);
    assert_null(strstr(why, "passwd"));
    curl_easy_cleanup(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(init_is_idempotent),
        cmocka_unit_test(one_handle_many_methods),
        cmocka_unit_test(body_cap),
        cmocka_unit_test(failures_name_no_url),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
