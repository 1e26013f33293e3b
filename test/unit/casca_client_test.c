/* casca_client: the parts that need no cascad: bad arguments, error mapping, a port with nobody
 * listening (UNAVAILABLE, said clearly and at once), a port that never speaks HTTP/2 (the connect
 * timeout), a server that never answers (deadlines for calls, timeouts that leave a stream
 * usable). Calls against a real cascad are exercised end to
 * end by the GDS agent (test/e2e/test_gds.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

#include "casca/v1/admin.pb-c.h"
#include "casca/v1/agent.pb-c.h"
#include "casca_client.h"

#define STATUS_METHOD "/casca.v1.AdminService/GetStatus"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* A loopback port: bound (so nobody else takes it) and listening or not. */
static int loopback_port(int listening, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    if (listening) assert_int_equal(listen(fd, 16), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void test_error_mapping(void **state)
{
    (void)state;
    static const struct {
        int code, err;
    } table[] = {
        {0, CASCA_OK},
        {1, CASCA_ERR_CANCELLED},
        {2, CASCA_ERR_INTERNAL},
        {3, CASCA_ERR_INVALID},
        {4, CASCA_ERR_TIMEOUT},
        {5, CASCA_ERR_NOT_FOUND},
        {6, CASCA_ERR_EXISTS},
        {7, CASCA_ERR_PERMISSION},
        {8, CASCA_ERR_FULL},
        {9, CASCA_ERR_PRECONDITION},
        {10, CASCA_ERR_PRECONDITION},
        {11, CASCA_ERR_INVALID},
        {12, CASCA_ERR_UNIMPLEMENTED},
        {13, CASCA_ERR_INTERNAL},
        {14, CASCA_ERR_UNAVAILABLE},
        {15, CASCA_ERR_IO},
        {16, CASCA_ERR_UNAUTH},
        {17, CASCA_ERR_INTERNAL},
        {-1, CASCA_ERR_INTERNAL},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        assert_int_equal(casca_err_from_grpc(table[i].code), table[i].err);
}

static void test_open_bad_arguments(void **state)
{
    (void)state;
    struct casca_client *c = (struct casca_client *)1;
    struct casca_status st;
    assert_int_equal(casca_client_open("", NULL, &c, &st), CASCA_ERR_INVALID);
    assert_null(c);
    assert_int_equal(st.code, 3);
    assert_non_null(strstr(st.message, "HOST:PORT"));
    assert_int_equal(casca_client_open(NULL, NULL, &c, NULL), CASCA_ERR_INVALID);

    struct casca_client_options o = {.token = "abc\ndef"};
    assert_int_equal(casca_client_open("127.0.0.1:1", &o, &c, &st), CASCA_ERR_INVALID);
    assert_non_null(strstr(st.message, "token"));

    o = (struct casca_client_options){.tls = 1, .ca_file = "/nonexistent/ca.pem"};
    assert_int_equal(casca_client_open("127.0.0.1:1", &o, &c, &st), CASCA_ERR_INVALID);
    assert_non_null(strstr(st.message, "/nonexistent/ca.pem"));

    char path[] = "/tmp/casca_client_test_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not a certificate\n", 18), 18);
    close(fd);
    o.ca_file = path;
    assert_int_equal(casca_client_open("127.0.0.1:1", &o, &c, &st), CASCA_ERR_INVALID);
    assert_non_null(strstr(st.message, "no PEM certificate"));
    unlink(path);
    assert_null(c);
    casca_client_close(NULL);
    casca_stream_close(NULL);
}

static void test_bad_method(void **state)
{
    (void)state;
    struct casca_client *c;
    struct casca_status st;
    assert_int_equal(casca_client_open("127.0.0.1:1", NULL, &c, &st), CASCA_OK);
    Casca__V1__GetStatusRequest req = CASCA__V1__GET_STATUS_REQUEST__INIT;
    ProtobufCMessage *reply = (ProtobufCMessage *)1;
    assert_int_equal(casca_call(c, "GetStatus", &req.base,
                                &casca__v1__get_status_response__descriptor, &reply, &st),
                     CASCA_ERR_INVALID);
    assert_null(reply);
    assert_non_null(strstr(st.message, "/package.Service/Method"));
    struct casca_stream *s = (struct casca_stream *)1;
    assert_int_equal(casca_stream_open(c, "/nope", NULL, 1, &s, &st), CASCA_ERR_INVALID);
    assert_null(s);
    casca_client_close(c);
}

/* Nobody listens: UNAVAILABLE at once, naming the target and the reason. */
static void test_unreachable_unary(void **state)
{
    (void)state;
    int port;
    int fd = loopback_port(0, &port);
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    struct casca_client *c;
    struct casca_status st;
    struct casca_client_options o = {.token = "0123456789abcdef", .timeout_ms = 5000};
    assert_int_equal(casca_client_open(target, &o, &c, &st), CASCA_OK);
    for (int i = 0; i < 2; i++) { /* the first call connects; the second finds the failure */
        Casca__V1__GetStatusRequest req = CASCA__V1__GET_STATUS_REQUEST__INIT;
        ProtobufCMessage *reply = NULL;
        double t0 = now_s();
        int rc = casca_call(c, STATUS_METHOD, &req.base,
                            &casca__v1__get_status_response__descriptor, &reply, &st);
        assert_int_equal(rc, CASCA_ERR_UNAVAILABLE);
        assert_null(reply);
        assert_int_equal(st.code, 14);
        assert_non_null(strstr(st.message, "cannot reach cascad at"));
        assert_non_null(strstr(st.message, target));
        assert_non_null(strstr(st.message, "refused"));
        assert_true(now_s() - t0 < 3.0);
    }
    casca_client_close(c);
    close(fd);
}

/* A stream to a port with nobody listening: the failure comes through recv, send then refuses. */
static void test_unreachable_stream(void **state)
{
    (void)state;
    int port;
    int fd = loopback_port(0, &port);
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    struct casca_client *c;
    struct casca_status st;
    assert_int_equal(casca_client_open(target, NULL, &c, &st), CASCA_OK);
    struct casca_stream *s = NULL;
    /* open finds the channel failed and leaves the reason to the call */
    assert_int_equal(casca_stream_open(c, "/casca.v1.AgentService/Session", NULL, 0, &s, &st),
                     CASCA_OK);
    ProtobufCMessage *m = NULL;
    int rc = casca_stream_recv(s, &casca__v1__control_message__descriptor, &m, 3000, &st);
    assert_null(m);
    assert_int_equal(rc, CASCA_ERR_UNAVAILABLE);
    assert_int_equal(st.code, 14);
    assert_non_null(strstr(st.message, target));
    assert_non_null(strstr(st.message, "refused"));
    /* recv again: the same end */
    assert_int_equal(casca_stream_recv(s, &casca__v1__control_message__descriptor, &m, 10, &st),
                     CASCA_ERR_UNAVAILABLE);
    Casca__V1__AgentMessage hello = CASCA__V1__AGENT_MESSAGE__INIT;
    assert_int_equal(casca_stream_send(s, &hello.base, &st), CASCA_ERR_UNAVAILABLE);
    assert_int_equal(casca_stream_close_send(s, &st), CASCA_ERR_UNAVAILABLE);
    casca_stream_close(s);
    casca_client_close(c);
    close(fd);
}

/* A port that accepts TCP and never speaks HTTP/2: the channel never gets ready, and calls and
 * streams give up after connect_timeout_ms with UNAVAILABLE. */
static void test_connect_timeout(void **state)
{
    (void)state;
    int port;
    int fd = loopback_port(1, &port);
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    struct casca_client *c;
    struct casca_status st;
    struct casca_client_options o = {.timeout_ms = 5000, .connect_timeout_ms = 300};
    assert_int_equal(casca_client_open(target, &o, &c, &st), CASCA_OK);

    Casca__V1__GetStatusRequest req = CASCA__V1__GET_STATUS_REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    double t0 = now_s();
    int rc = casca_call(c, STATUS_METHOD, &req.base, &casca__v1__get_status_response__descriptor,
                        &reply, &st);
    double took = now_s() - t0;
    assert_int_equal(rc, CASCA_ERR_UNAVAILABLE);
    assert_null(reply);
    assert_int_equal(st.code, 14);
    assert_non_null(strstr(st.message, "no connection within 300 ms"));
    assert_non_null(strstr(st.message, target));
    assert_true(took >= 0.25 && took < 2.0);

    struct casca_stream *s = (struct casca_stream *)1;
    rc = casca_stream_open(c, "/casca.v1.AgentService/Session", NULL, 0, &s, &st);
    assert_int_equal(rc, CASCA_ERR_UNAVAILABLE);
    assert_null(s);
    assert_non_null(strstr(st.message, "no connection within 300 ms"));
    casca_client_close(c);
    close(fd);
}

/* A server that speaks HTTP/2 (its SETTINGS) and never answers a call. */
struct mute {
    int lfd, port;
    pthread_t thread;
};

static void *mute_run(void *arg)
{
    struct mute *m = arg;
    int fd = accept(m->lfd, NULL, NULL);
    if (fd < 0) return NULL;
    /* an empty SETTINGS frame, then a SETTINGS ACK for the client's */
    static const unsigned char frames[] = {0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0};
    if (write(fd, frames, sizeof(frames)) != (ssize_t)sizeof(frames)) {
        close(fd);
        return NULL;
    }
    char buf[4096];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    close(fd);
    return NULL;
}

static void test_silent_server(void **state)
{
    (void)state;
    struct mute m;
    m.lfd = loopback_port(1, &m.port);
    assert_int_equal(pthread_create(&m.thread, NULL, mute_run, &m), 0);
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", m.port);
    struct casca_client *c;
    struct casca_status st;
    struct casca_client_options o = {.timeout_ms = 400};
    assert_int_equal(casca_client_open(target, &o, &c, &st), CASCA_OK);

    /* a unary call ends at its deadline */
    Casca__V1__GetStatusRequest req = CASCA__V1__GET_STATUS_REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    double t0 = now_s();
    int rc = casca_call(c, STATUS_METHOD, &req.base, &casca__v1__get_status_response__descriptor,
                        &reply, &st);
    double took = now_s() - t0;
    assert_int_equal(rc, CASCA_ERR_TIMEOUT);
    assert_null(reply);
    assert_int_equal(st.code, 4);
    assert_true(st.message[0] != '\0');
    assert_true(took >= 0.35 && took < 2.0);

    /* a stream: receives time out and leave it usable; sends still go out */
    struct casca_stream *s = NULL;
    Casca__V1__AgentMessage hello = CASCA__V1__AGENT_MESSAGE__INIT;
    assert_int_equal(
        casca_stream_open(c, "/casca.v1.AgentService/Session", &hello.base, 0, &s, &st), CASCA_OK);
    for (int i = 0; i < 3; i++) {
        ProtobufCMessage *msg = (ProtobufCMessage *)1;
        t0 = now_s();
        rc = casca_stream_recv(s, &casca__v1__control_message__descriptor, &msg, 100, &st);
        assert_int_equal(rc, CASCA_ERR_TIMEOUT);
        assert_null(msg);
        assert_int_equal(st.code, 0); /* the call is still open */
        assert_true(now_s() - t0 >= 0.09 && now_s() - t0 < 1.0);
        assert_int_equal(casca_stream_send(s, &hello.base, &st), CASCA_OK);
    }
    ProtobufCMessage *msg = NULL;
    assert_int_equal(casca_stream_recv(s, &casca__v1__control_message__descriptor, &msg, 0, &st),
                     CASCA_ERR_TIMEOUT);
    assert_int_equal(casca_stream_close_send(s, &st), CASCA_OK);
    assert_int_equal(casca_stream_close_send(s, &st), CASCA_OK); /* twice is harmless */
    assert_int_equal(casca_stream_send(s, &hello.base, &st), CASCA_ERR_UNAVAILABLE);
    casca_stream_close(s); /* cancels the call and its pending receive */
    casca_client_close(c);
    shutdown(m.lfd, SHUT_RDWR);
    close(m.lfd);
    pthread_join(m.thread, NULL);
}

/* Backoff: the ceiling doubles from base to the cap; every draw is within [1, ceiling]; the
 * draws are spread (full jitter), and a reset starts again at base. */
static void test_backoff(void **state)
{
    (void)state;
    struct casca_backoff b = {0};
    assert_int_equal(casca_backoff_ceiling(&b), CASCA_BACKOFF_BASE_MS);
    int want[] = {200, 400, 800, 1600, 3200, 6400, 10000, 10000};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(casca_backoff_ceiling(&b), want[i]);
        int d = casca_backoff_next(&b);
        assert_true(d >= 1 && d <= want[i]);
    }
    b.attempt = 1000; /* no overflow however long the outage */
    assert_int_equal(casca_backoff_ceiling(&b), CASCA_BACKOFF_MAX_MS);
    casca_backoff_reset(&b);
    assert_int_equal(casca_backoff_ceiling(&b), CASCA_BACKOFF_BASE_MS);

    /* full jitter: many draws at the cap cover low and high ends, mean near half */
    struct casca_backoff c = {.base_ms = 100, .max_ms = 1000, .seed = 42};
    assert_int_equal(casca_backoff_ceiling(&c), 100);
    double sum = 0;
    int lo = 1000, hi = 0;
    for (int i = 0; i < 2000; i++) {
        c.attempt = 10;
        int d = casca_backoff_next(&c);
        assert_true(d >= 1 && d <= 1000);
        sum += d;
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo < 100 && hi > 900);
    assert_true(sum / 2000 > 400 && sum / 2000 < 600);
}

static void test_retryable(void **state)
{
    (void)state;
    assert_true(casca_retryable(14));  /* UNAVAILABLE */
    assert_true(casca_retryable(4));   /* DEADLINE_EXCEEDED */
    assert_true(casca_retryable(9));   /* FAILED_PRECONDITION: a lease the old session holds */
    assert_false(casca_retryable(16)); /* UNAUTHENTICATED */
    assert_false(casca_retryable(7));  /* PERMISSION_DENIED */
    assert_false(casca_retryable(3));  /* INVALID_ARGUMENT */
    assert_false(casca_retryable(5));  /* NOT_FOUND */
    assert_false(casca_retryable(0));
}

/* The outage tracker: fail_fast and what cannot be fixed are not retried; a lease held at the first
 * Hello is not retried, but after a success it is (the dead session's); one line per outage. */
static void test_reconnect(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *log = open_memstream(&text, &len);
    assert_non_null(log);
    struct casca_reconnect r = {.who = "agent", .target = "127.0.0.1:1", .log = log};
    assert_true(casca_reconnect_should(&r, 14));
    assert_true(casca_reconnect_should(&r, 0)); /* the server ended the session */
    assert_false(casca_reconnect_should(&r, 9));
    assert_false(casca_reconnect_should(&r, 16));
    for (int i = 0; i < 5; i++) {
        int ms = casca_reconnect_wait_ms(&r, "connection refused");
        assert_true(ms >= 1 && ms <= CASCA_BACKOFF_MAX_MS);
    }
    casca_reconnect_ok(&r);
    assert_true(casca_reconnect_should(&r, 9)); /* now: the dead session's lease */
    casca_reconnect_ok(&r);                     /* no outage: no line */
    for (int i = 0; i < 3; i++)
        casca_reconnect_wait_ms(&r, "");
    casca_reconnect_ok(&r);
    assert_int_equal(r.backoff.attempt, 0);
    fclose(log);
    const char *want[] = {
        "agent: cannot connect to cascad at 127.0.0.1:1 yet: connection refused; retrying\n",
        "agent: connected after ",
        "agent: lost connection to cascad at 127.0.0.1:1: the session ended; reconnecting\n",
        "agent: reconnected after ",
    };
    const char *p = text;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_memory_equal(p, want[i], strlen(want[i]));
        p = strchr(p, '\n') + 1;
    }
    assert_string_equal(p, ""); /* four lines in all */
    free(text);
    r.fail_fast = 1;
    assert_false(casca_reconnect_should(&r, 14));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_mapping),      cmocka_unit_test(test_open_bad_arguments),
        cmocka_unit_test(test_bad_method),         cmocka_unit_test(test_unreachable_unary),
        cmocka_unit_test(test_unreachable_stream), cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_silent_server),      cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_retryable),          cmocka_unit_test(test_reconnect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
