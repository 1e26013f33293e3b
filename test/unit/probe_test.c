/* probe: against a small HTTP server on loopback: success and response time for a 200, success 0
 * for an unexpected status and for a refused connection; config errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "casca_err.h"
#include "config.h"
#include "probe.h"
#include "sections.h"

struct server {
    int fd, port;
    pthread_t thread;
};

/* Answers "GET /ok" with 200 after 20 ms, anything else with 500; until the socket closes. */
static void *serve(void *arg)
{
    struct server *s = arg;
    int c;
    while ((c = accept(s->fd, NULL, NULL)) >= 0) {
        char req[1024] = "";
        ssize_t n = read(c, req, sizeof(req) - 1);
        bool ok = n > 0 && !strncmp(req, "GET /ok ", 8);
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
        const char *resp =
            ok ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
               : "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        ssize_t w = write(c, resp, strlen(resp));
        (void)w;
        close(c);
    }
    return NULL;
}

struct sink {
    pthread_mutex_t lock;
    struct {
        char series[32], probe[32];
        double value;
        int64_t t;
    } pts[256];
    size_t n;
};

static void collect(void *arg, const char *probe, const struct tsdb_point *pts, size_t n)
{
    (void)probe; /* the points carry it as their probe= tag, checked below */
    struct sink *s = arg;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n && s->n < 256; i++, s->n++) {
        snprintf(s->pts[s->n].series, 32, "%s", pts[i].series);
        snprintf(s->pts[s->n].probe, 32, "%s", pts[i].tags[0].value);
        s->pts[s->n].value = pts[i].value;
        s->pts[s->n].t = pts[i].time_ns;
    }
    pthread_mutex_unlock(&s->lock);
}

static struct config *load(const char *text, struct config_errors *errs)
{
    char path[] = "/tmp/casca-probe-test-XXXXXX";
    int fd = mkstemp(path);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct config *c = NULL;
    config_load(path, NULL, cascad_config_sections, &c, errs);
    unlink(path);
    return c;
}

/* The last point of series for probe, or -1 if none. */
static double last(struct sink *s, const char *probe, const char *series, int *count)
{
    double v = -1;
    *count = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->pts[i].probe, probe) && !strcmp(s->pts[i].series, series)) {
            v = s->pts[i].value;
            (*count)++;
        }
    pthread_mutex_unlock(&s->lock);
    return v;
}

static void probes_record_time_and_success(void **state)
{
    struct server srv = {.fd = socket(AF_INET, SOCK_STREAM, 0)};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(srv.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(srv.fd, 16), 0);
    getsockname(srv.fd, (struct sockaddr *)&sa, &sl);
    srv.port = ntohs(sa.sin_port);
    pthread_create(&srv.thread, NULL, serve, &srv);
    int closed = socket(AF_INET, SOCK_STREAM, 0); /* bound, not listening: connection refused */
    struct sockaddr_in ca = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(closed, (struct sockaddr *)&ca, sizeof(ca));
    getsockname(closed, (struct sockaddr *)&ca, &sl);

    char text[1024];
    snprintf(text, sizeof(text),
             "probes:\n"
             "  - {name: up, url: \"http://127.0.0.1:%d/ok\", period: 100ms, tags: {svc: web}}\n"
             "  - {name: err, url: \"http://127.0.0.1:%d/fail\", period: 100ms}\n"
             "  - {name: down, url: \"http://127.0.0.1:%d/\", period: 100ms, timeout: 1s,\n"
             "     series: {response_time: down_ms, success: down_ok}}\n",
             srv.port, srv.port, ntohs(ca.sin_port));
    struct config_errors errs = {0};
    struct config *c = load(text, &errs);
    assert_non_null(c);
    struct sink sink = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct probes *p;
    char err[256];
    assert_int_equal(
        probes_create(config_section_of(c, &probes_config_section), collect, &sink, &p, err,
                      sizeof(err)),
        CASCA_OK);
    assert_int_equal(probes_count(p), 3);
    /* wait (with a deadline, so a busy machine only makes it slower) for three rounds of each */
    struct timespec t0, t1, ts = {0, 20000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int n, n_err, n_down;
    for (int i = 0; i < 1000; i++) {
        last(&sink, "up", "probe_success", &n);
        last(&sink, "err", "probe_success", &n_err);
        last(&sink, "down", "down_ok", &n_down);
        if (n >= 3 && n_err >= 3 && n_down >= 3) break;
        nanosleep(&ts, NULL);
    }
    probes_destroy(p);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ran_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    assert_true(last(&sink, "up", "probe_success", &n) == 1);
    assert_true(n >= 3 && n <= ran_ms / 100 + 2); /* every 100 ms, the first at once */
    double ms = last(&sink, "up", "probe_response_ms", &n);
    assert_true(ms >= 20 && ms < 1000);
    assert_true(last(&sink, "err", "probe_success", &n) == 0);
    assert_true(n >= 3);
    assert_true(last(&sink, "down", "down_ok", &n) == 0);
    assert_true(n >= 3);
    assert_true(last(&sink, "down", "down_ms", &n) >= 0);
    config_unref(c);
    shutdown(srv.fd, SHUT_RDWR);
    close(srv.fd);
    pthread_join(srv.thread, NULL);
    close(closed);
}

static void probe_config_errors(void **state)
{
    struct config_errors errs = {0};
    assert_null(load("probes:\n"
                     "  - {name: a, url: \"ftp://x\", period: soon}\n"
                     "  - {name: a, url: \"http://x\", method: POST, expect_status: 999, "
                     "tags: {probe: x}}\n"
                     "  - {name: s, url: \"http://x\", method: HEAD, scrape: true}\n"
                     "  - {name: m, url: \"http://x\", match: [node_], scrape: yes}\n",
                     &errs));
    const char *want[] = {":2:20: probe a needs a url starting with http://",
                          ":2:39: probe a: period 'soon'",
                          ":3:12: duplicate probe name 'a'",
                          "method 'POST' is not one of: GET, HEAD",
                          "expect_status '999'",
                          "the tag 'probe' is set to the probe's name",
                          ":4:40: probe s: a scrape probe reads the page: use GET",
                          ":5:39: probe m: match applies to scrape probes only: add scrape: true",
                          ":5:56: probe m: scrape is true or false, not 'yes'"};
    for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
        bool found = false;
        for (size_t i = 0; i < errs.n; i++)
            found |= strstr(errs.lines[i], want[w]) != NULL;
        if (!found) {
            for (size_t i = 0; i < errs.n; i++)
                fprintf(stderr, "  %s\n", errs.lines[i]);
            fail_msg("missing error: %s", want[w]);
        }
    }
    config_errors_free(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(probes_record_time_and_success),
        cmocka_unit_test(probe_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
