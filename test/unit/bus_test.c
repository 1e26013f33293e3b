/* bus: framing, prefix fan-out over inproc, malformed and unrouted messages; libcasca's reporter
 * (its hand-made protobuf decoded by protobuf-c, reconnecting when the bus comes up late); and
 * running hooks: a hook storing into a real tsdb keeps storing while a hook whose database never
 * answers fills its bounded queue and drops (counted). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/pubsub0/sub.h>

#include "bus.h"
#include "casca.h"
#include "casca/v1/telemetry.pb-c.h"
#include "casca_err.h"
#include "config.h"
#include "hooks.h"
#include "sections.h"
#include "store.h"
#include "tsdb.h"
#include "udpaddr.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void send_framed(nng_socket s, const char *topic, const char *payload, size_t plen)
{
    nng_msg *m;
    assert_int_equal(nng_msg_alloc(&m, 0), 0);
    nng_msg_append(m, topic, strlen(topic) + 1);
    nng_msg_append(m, payload, plen);
    assert_int_equal(nng_sendmsg(s, m, 0), 0);
}

/* The next message on s within 2 s, as "topic|payload"; "" on timeout. */
static char *recv_text(nng_socket s, char *buf, size_t len)
{
    nng_msg *m;
    buf[0] = 0;
    if (nng_recvmsg(s, &m, 0)) return buf;
    const char *topic;
    size_t tl, pl;
    const void *payload;
    assert_true(bus_split(nng_msg_body(m), nng_msg_len(m), &topic, &tl, &payload, &pl));
    snprintf(buf, len, "%.*s|%.*s", (int)tl, topic, (int)pl, (const char *)payload);
    nng_msg_free(m);
    return buf;
}

static void framing(void **state)
{
    const char *topic;
    size_t tl, pl;
    const void *payload;
    assert_true(bus_split("a/b\0{}", 6, &topic, &tl, &payload, &pl));
    assert_int_equal(tl, 3);
    assert_int_equal(pl, 2);
    assert_true(bus_split("t\0", 2, &topic, &tl, &payload, &pl));
    assert_int_equal(pl, 0);
    assert_false(bus_split("\0x", 2, &topic, &tl, &payload, &pl)); /* empty topic */
    assert_false(bus_split("no nul", 6, &topic, &tl, &payload, &pl));
    char big[BUS_MAX_TOPIC + 10];
    memset(big, 'a', sizeof(big));
    big[BUS_MAX_TOPIC + 5] = 0;
    assert_false(bus_split(big, sizeof(big), &topic, &tl, &payload, &pl));
}

static void fan_out_by_prefix(void **state)
{
    const char *routes[] = {"player/", "plug/"};
    struct bus_options o = {.name = "t1", .max_message = 1 << 20, .routes = routes, .nroutes = 2};
    struct bus *b;
    char err[256];
    assert_int_equal(bus_create(&o, &b, err, sizeof(err)), CASCA_OK);
    nng_socket a, c, all, in;
    assert_int_equal(nng_sub0_open(&a), 0);
    assert_int_equal(nng_sub0_open(&c), 0);
    assert_int_equal(nng_sub0_open(&all), 0);
    nng_socket_set(a, NNG_OPT_SUB_SUBSCRIBE, "player/", 7);
    nng_socket_set(c, NNG_OPT_SUB_SUBSCRIBE, "plug/", 5);
    nng_socket_set(all, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    nng_socket subs[] = {a, c, all};
    for (int i = 0; i < 3; i++) {
        nng_socket_set_ms(subs[i], NNG_OPT_RECVTIMEO, 2000);
        assert_int_equal(nng_dial(subs[i], bus_publish_inproc(b), NULL, 0), 0);
    }
    assert_int_equal(nng_push0_open(&in), 0);
    assert_int_equal(nng_dial(in, bus_ingress_inproc(b), NULL, 0), 0);
    sleep_ms(50); /* subscriptions travel to the publisher */

    send_framed(in, "player/w1", "{\"fps\": 1}", 10);
    send_framed(in, "plug/p1", "{}", 2);
    send_framed(in, "other/x", "x", 1);
    nng_msg *bad;
    nng_msg_alloc(&bad, 0);
    nng_msg_append(bad, "no topic here", 13);
    nng_sendmsg(in, bad, 0);
    char buf[128];
    assert_string_equal(recv_text(a, buf, sizeof(buf)), "player/w1|{\"fps\": 1}");
    assert_string_equal(recv_text(c, buf, sizeof(buf)), "plug/p1|{}");
    assert_string_equal(recv_text(all, buf, sizeof(buf)), "player/w1|{\"fps\": 1}");
    assert_string_equal(recv_text(all, buf, sizeof(buf)), "plug/p1|{}");
    assert_string_equal(recv_text(all, buf, sizeof(buf)), "other/x|x");
    nng_socket_set_ms(a, NNG_OPT_RECVTIMEO, 100);
    assert_string_equal(recv_text(a, buf, sizeof(buf)), ""); /* nothing else for player/ */
    struct bus_stats st;
    bus_stats(b, &st);
    assert_int_equal(st.received, 4);
    assert_int_equal(st.published, 3);
    assert_int_equal(st.malformed, 1);
    assert_int_equal(st.unrouted, 1);
    for (int i = 0; i < 3; i++)
        nng_close(subs[i]);
    nng_close(in);
    bus_destroy(b);
}

static void address_errors(void **state)
{
    const char *bad[] = {"zmq://1.2.3.4:5"};
    struct bus_options o = {.name = "t2", .max_message = 1 << 20, .listen = bad, .nlisten = 1};
    struct bus *b = NULL;
    char err[256];
    assert_int_equal(bus_create(&o, &b, err, sizeof(err)), CASCA_ERR_CONFIG);
    assert_null(b);
    assert_non_null(strstr(err, "not an nng address"));
    const char *busy[] = {"inproc://casca/bus/t3/in"}; /* already the bus's own address */
    o = (struct bus_options){.name = "t3", .max_message = 1 << 20, .listen = busy, .nlisten = 1};
    assert_int_equal(bus_create(&o, &b, err, sizeof(err)), CASCA_ERR_UNAVAILABLE);
    assert_non_null(strstr(err, "cannot listen on inproc://casca/bus/t3/in"));
    const char *not_here[] = {"udp://192.0.2.1:5"}; /* an address this host does not have */
    o = (struct bus_options){
        .name = "t3u", .max_message = 1 << 20, .listen = not_here, .nlisten = 1};
    assert_int_equal(bus_create(&o, &b, err, sizeof(err)), CASCA_ERR_UNAVAILABLE);
    assert_non_null(strstr(err, "cannot listen on udp://192.0.2.1:5"));
    const char *bad_port[] = {"udp://127.0.0.1:70000"};
    o = (struct bus_options){
        .name = "t3p", .max_message = 1 << 20, .listen = bad_port, .nlisten = 1};
    assert_int_equal(bus_create(&o, &b, err, sizeof(err)), CASCA_ERR_CONFIG);
    assert_non_null(strstr(err, "port must be a number from 1 to 65535"));

    char why[256];
    assert_true(udpaddr_check("udp://*:5558", true, why, sizeof(why)));
    assert_true(udpaddr_check("udp://[::1]:5558", false, why, sizeof(why)));
    assert_false(udpaddr_check("udp://:5558", false, why, sizeof(why))); /* a sender needs a host */
    assert_non_null(strstr(why, "names no host"));
    assert_false(udpaddr_check("udp://127.0.0.1:", false, why, sizeof(why)));
    assert_non_null(strstr(why, "port must be"));
    assert_false(udpaddr_check("udp://[::1:5558", false, why, sizeof(why)));
    assert_non_null(strstr(why, "brackets"));
    assert_false(udpaddr_check("udp://host", true, why, sizeof(why)));
    assert_false(bus_address_ok("udp://127.0.0.1:5", why, sizeof(why))); /* not for publish */
    assert_non_null(strstr(why, "udp:// is for bus.listen only"));
}

/* A free UDP port on loopback (bound, read, closed). */
static int free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* A local subscriber that keeps what it is handed, and can be told to hold the bus's thread. */
struct collector {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool hold;
    size_t n;
    char texts[300][32]; /* "topic|payload" of the first 300 */
};

static void collect(void *arg, nng_msg *m)
{
    struct collector *c = arg;
    const char *topic;
    size_t tl, pl;
    const void *payload;
    pthread_mutex_lock(&c->mu);
    while (c->hold)
        pthread_cond_wait(&c->cv, &c->mu);
    if (c->n < 300 && bus_split(nng_msg_body(m), nng_msg_len(m), &topic, &tl, &payload, &pl))
        snprintf(c->texts[c->n], sizeof(c->texts[0]), "%.*s|%.*s", (int)tl, topic, (int)pl,
                 (const char *)payload);
    c->n++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    nng_msg_free(m);
}

/* Waits up to 5 s for the collector to have n messages; returns how many it has. */
static size_t collected(struct collector *c, size_t n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&c->mu);
    while (c->n < n && pthread_cond_timedwait(&c->cv, &c->mu, &until) == 0)
        ;
    size_t got = c->n;
    pthread_mutex_unlock(&c->mu);
    return got;
}

static void send_datagram(int fd, int port, const void *buf, size_t len)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(sendto(fd, buf, len, 0, (struct sockaddr *)&a, sizeof(a)), (ssize_t)len);
}

/* A bus listening on a free loopback UDP port (max_message 1024); addr gets its udp:// address. */
static struct bus *udp_bus(const char *name, size_t buffer, char addr[64], int *port)
{
    *port = free_udp_port();
    snprintf(addr, 64, "udp://127.0.0.1:%d", *port);
    const char *listen[] = {addr};
    struct bus_options o = {
        .name = name, .max_message = 1024, .udp_buffer = buffer, .listen = listen, .nlisten = 1};
    struct bus *b;
    char err[256];
    assert_int_equal(bus_create(&o, &b, err, sizeof(err)), CASCA_OK);
    return b;
}

/* udp:// in bus.listen: one datagram is one message, handed over in order; a datagram without a
 * topic or over max_message is dropped and counted; libcasca's reporter sends datagrams. */
static void udp_ingress(void **state)
{
    char addr[64];
    int port;
    struct bus *b = udp_bus("tu", 1 << 20, addr, &port);
    static struct collector c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};
    assert_int_equal(bus_subscribe(b, "t/", collect, &c), CASCA_OK);

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    char msg[2048];
    for (int i = 0; i < 200; i++) {
        int n = snprintf(msg, sizeof(msg), "t/%d", i % 3);
        n += 1 + snprintf(msg + n + 1, sizeof(msg) - (size_t)n - 1, "%d", i);
        send_datagram(fd, port, msg, (size_t)n);
    }
    send_datagram(fd, port, "no topic", 8);
    memset(msg, 'x', sizeof(msg));
    memcpy(msg, "t/big", 6);
    send_datagram(fd, port, msg, 1025); /* one byte over max_message */
    send_datagram(fd, port, msg, 1024); /* just fits */
    assert_int_equal(collected(&c, 201), 201);
    for (int i = 0; i < 200; i++) { /* in the order sent */
        char want[32];
        snprintf(want, sizeof(want), "t/%d|%d", i % 3, i);
        assert_string_equal(c.texts[i], want);
    }
    struct casca_reporter *r;
    assert_int_equal(casca_reporter_open(addr, "t/rep", NULL, &r), CASCA_OK);
    assert_int_equal(casca_report_json(r, "{\"a\": 1}", 8), CASCA_OK);
    static char huge[70000];
    memset(huge, ' ', sizeof(huge));
    assert_int_equal(casca_report_json(r, huge, sizeof(huge)), CASCA_ERR_INVALID);
    assert_int_equal(collected(&c, 202), 202);
    assert_string_equal(c.texts[201], "t/rep|{\"a\": 1}");
    assert_int_equal(casca_reporter_close(r, 1000), 0);

    struct bus_stats st;
    bus_stats(b, &st);
    assert_int_equal(st.received, 204); /* 200, no topic, too big, fits, the reporter's */
    assert_int_equal(st.malformed, 2);
    assert_int_equal(st.lost, 0);
    assert_int_equal(st.published, 0); /* nobody subscribes over nng */
    close(fd);
    bus_destroy(b);
    assert_int_equal(casca_reporter_open("udp://:5", "t", NULL, &r), CASCA_ERR_INVALID);
    assert_int_equal(casca_reporter_open("udp://no.such.host.invalid:5", "t", NULL, &r),
                     CASCA_ERR_INVALID);
}

/* Datagrams that arrive while the receive buffer is full are lost by the kernel: counted, so that
 * what was sent is what was received plus what was lost. */
static void udp_losses_are_counted(void **state)
{
    char addr[64];
    int port;
    struct bus *b = udp_bus("tl", 64 * 1024, addr, &port);
    static struct collector c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};
    c.hold = true; /* the first message holds the bus's reading thread */
    assert_int_equal(bus_subscribe(b, "t/", collect, &c), CASCA_OK);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    enum { SENT = 5000 };
    for (int i = 0; i < SENT; i++)
        send_datagram(fd, port, "t/x\0{}", 6);
    pthread_mutex_lock(&c.mu);
    c.hold = false;
    pthread_cond_broadcast(&c.cv);
    pthread_mutex_unlock(&c.mu);
    /* the kernel reports its drop count with the next datagram it queues: send markers until
     * every datagram sent is either read or counted as lost */
    struct bus_stats st;
    int markers = 0;
    for (int tries = 0; tries < 500; tries++) {
        send_datagram(fd, port, "t/marker\0", 9);
        markers++;
        sleep_ms(10);
        bus_stats(b, &st);
        if (st.lost && st.received + st.lost >= (uint64_t)(SENT + markers)) break;
    }
    assert_true(st.lost > 0);
    assert_int_equal(st.received + st.lost, SENT + markers);
    assert_int_equal(collected(&c, st.received), st.received);
    close(fd);
    bus_destroy(b);
}

/* libcasca against a bus that starts after the reporter: messages wait, then arrive; the points'
 * hand-made protobuf decodes with protobuf-c. */
static void reporter_reconnects_and_encodes(void **state)
{
    char addr[64];
    snprintf(addr, sizeof(addr), "ipc:///tmp/casca-bus-test-%d", (int)getpid());
    struct casca_reporter *r;
    assert_int_equal(casca_reporter_open(addr, "m/1", NULL, &r), CASCA_OK);
    struct casca_tag tags[] = {{"host", "a"}, {"env", "t"}};
    struct casca_point pts[] = {
        {"cpu", tags, 2, 0.5, 1767607200123456789},
        {"mem", NULL, 0, -3, 0},
        {"neg", NULL, 0, 1, -1500000000}, /* before the epoch */
    };
    assert_int_equal(casca_report_points(r, pts, 3), CASCA_OK);
    assert_int_equal(casca_report_json(r, "{\"a\": 1}", 8), CASCA_OK);
    struct casca_point nan_point = {"x", NULL, 0, 0.0 / 0.0, 0};
    assert_int_equal(casca_report_points(r, &nan_point, 1), CASCA_ERR_INVALID);
    sleep_ms(300); /* no bus yet: the reporter holds the messages */

    const char *listen[] = {addr};
    struct bus_options o = {.name = "t4", .max_message = 1 << 20, .listen = listen, .nlisten = 1};
    struct bus *b;
    char err[256];
    nng_socket sub;
    assert_int_equal(bus_create(&o, &b, err, sizeof(err)), CASCA_OK);
    assert_int_equal(nng_sub0_open(&sub), 0);
    nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 5000);
    assert_int_equal(nng_dial(sub, bus_publish_inproc(b), NULL, 0), 0);
    sleep_ms(50);

    nng_msg *m;
    assert_int_equal(nng_recvmsg(sub, &m, 0), 0);
    const char *topic;
    size_t tl, pl;
    const void *payload;
    assert_true(bus_split(nng_msg_body(m), nng_msg_len(m), &topic, &tl, &payload, &pl));
    Casca__V1__PublishRequest *req = casca__v1__publish_request__unpack(NULL, pl, payload);
    assert_non_null(req);
    assert_int_equal(req->n_points, 3);
    assert_string_equal(req->points[0]->series, "cpu");
    assert_true(req->points[0]->value == 0.5);
    assert_int_equal(req->points[0]->n_tags, 2);
    assert_string_equal(req->points[0]->tags[1]->key, "env");
    assert_int_equal(req->points[0]->time->seconds, 1767607200);
    assert_int_equal(req->points[0]->time->nanos, 123456789);
    assert_null(req->points[1]->time);
    assert_true(req->points[1]->value == -3);
    assert_int_equal(req->points[2]->time->seconds, -2);
    assert_int_equal(req->points[2]->time->nanos, 500000000);
    casca__v1__publish_request__free_unpacked(req, NULL);
    nng_msg_free(m);
    char buf[64];
    assert_string_equal(recv_text(sub, buf, sizeof(buf)), "m/1|{\"a\": 1}");
    /* the reporter thread counts a message after nng_send returns, which may be after the
     * subscriber has it: wait for the count rather than race it */
    struct casca_reporter_stats st;
    for (int i = 0; i < 200; i++) {
        casca_reporter_stats(r, &st);
        if (st.sent >= 2)
            break;
        sleep_ms(10);
    }
    assert_int_equal(st.sent, 2);
    assert_int_equal(casca_reporter_close(r, 1000), 0); /* the NaN batch was refused, not dropped */
    nng_close(sub);
    bus_destroy(b);
}

/* A full buffer drops and says so, never blocks. */
static void reporter_never_blocks(void **state)
{
    struct casca_reporter *r;
    struct casca_reporter_options o = {.max_queue_messages = 8};
    assert_int_equal(casca_reporter_open("tcp://127.0.0.1:1", "t", &o, &r), CASCA_OK);
    int full = 0;
    for (int i = 0; i < 100; i++)
        full += casca_report_json(r, "{}", 2) == CASCA_ERR_FULL;
    assert_true(full >= 90);
    assert_int_equal(casca_reporter_close(r, 0), 100); /* nothing could be sent */
    assert_int_equal(casca_reporter_open("tcp://127.0.0.1:1", "", NULL, &r), CASCA_ERR_INVALID);
    assert_int_equal(casca_reporter_open("bogus", "t", NULL, &r), CASCA_ERR_INVALID);
}

static int rm_entry(const char *p, const struct stat *sb, int f, struct FTW *ftw)
{
    (void)sb, (void)f, (void)ftw;
    return remove(p);
}

/* Hooks running on a bus: one stores into a real tsdb, one sends to an InfluxDB address that
 * accepts connections and never answers. The slow one drops (bounded queue) and the other keeps
 * storing every point. */
static void slow_hook_does_not_stall_others(void **state)
{
    int blackhole = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(blackhole, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(blackhole, 1), 0);
    getsockname(blackhole, (struct sockaddr *)&sa, &sl);

    char dir[] = "/tmp/casca-bus-test-XXXXXX", path[128], text[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/casca.yaml", dir);
    snprintf(text, sizeof(text),
             "bus: {name: t5}\n"
             "hooks:\n"
             "  - {name: fast, format: protobuf, tags: {topic: $TOPIC}}\n"
             "  - name: stuck\n"
             "    format: protobuf\n"
             "    queue: 4\n"
             "    connector: influxdb\n"
             "    influxdb: {url: \"http://127.0.0.1:%d\", database: x, batch: 1, timeout: 1s}\n",
             ntohs(sa.sin_port));
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    struct config_errors errs = {0};
    struct config *c = NULL;
    assert_int_equal(config_load(path, NULL, cascad_config_sections, &c, &errs), CASCA_OK);

    struct store *st;
    struct store_options so = {.dir = dir, .sync = STORE_SYNC_NONE};
    assert_int_equal(store_open(&so, &st, NULL, 0), CASCA_OK);
    struct hook_env env = {0};
    assert_int_equal(tsdb_open(st, NULL, &env.tsdb), CASCA_OK);
    struct hooks *hooks;
    char err[256];
    assert_int_equal(
        hooks_create(config_section_of(c, &hooks_config_section), &env, &hooks, err, sizeof(err)),
        CASCA_OK);
    struct casca_reporter *r;
    assert_int_equal(casca_reporter_open("inproc://casca/bus/t5/in", "m/1", NULL, &r), CASCA_OK);
    sleep_ms(100);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t t0 = (int64_t)now.tv_sec * 1000000000 - 60000000000;
    enum { MESSAGES = 50, PER = 100 };
    struct casca_point pts[PER];
    for (int m = 0; m < MESSAGES; m++) {
        for (int i = 0; i < PER; i++)
            pts[i] = (struct casca_point){"v", NULL, 0, 1.0, t0 + (m * PER + i) * 1000};
        assert_int_equal(casca_report_points(r, pts, PER), CASCA_OK);
    }
    struct hook_stats hs[2];
    for (int i = 0; i < 100; i++) {
        hooks_stats(hooks, hs, 2);
        if (hs[0].stored == MESSAGES * PER) break;
        sleep_ms(50);
    }
    assert_string_equal(hs[0].name, "fast");
    assert_int_equal(hs[0].stored, MESSAGES * PER);
    assert_int_equal(hs[0].dropped + hs[0].errors, 0);
    assert_string_equal(hs[1].name, "stuck");
    assert_int_equal(hs[1].stored, 0);
    assert_true(hs[1].dropped >= MESSAGES - 4 - 1); /* one in curl, four queued */
    assert_true(hs[1].queued <= 4);

    struct tsdb_selector *sel;
    struct tsdb_tag filter = {"topic", "m/1"};
    assert_int_equal(tsdb_select(env.tsdb, "v", &filter, 1, &sel), CASCA_OK);
    struct tsdb_sample sample;
    assert_int_equal(
        tsdb_aggregate(env.tsdb, sel, t0, t0 + 60000000000, TSDB_AGG_COUNT, 0, &sample), CASCA_OK);
    assert_int_equal(sample.count, MESSAGES * PER);
    tsdb_selector_free(sel);

    casca_reporter_close(r, 1000);
    hooks_destroy(hooks);
    tsdb_close(env.tsdb);
    store_close(st);
    config_unref(c);
    close(blackhole);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Points from the built-in sources: acked once committed, routed by topic, refused when no hook
 * takes them; casca-hook (no built-in sources) runs none. */
struct acked {
    atomic_int calls, err;
};

static void on_done(int err, const char *why, void *arg)
{
    struct acked *a = arg;
    (void)why;
    atomic_store(&a->err, err);
    atomic_fetch_add(&a->calls, 1);
}

static void builtin_sources(void **state)
{
    (void)state;
    char dir[] = "/tmp/casca-bus-test-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/casca.yaml", dir);
    FILE *f = fopen(path, "w");
    fputs("hooks:\n  - {name: sensors, bus: publish, topic: \"sensor-\"}\n", f);
    fclose(f);
    struct config_errors errs = {0};
    struct config *c = NULL;
    assert_int_equal(config_load(path, NULL, cascad_config_sections, &c, &errs), CASCA_OK);
    struct store *st;
    struct store_options so = {.dir = dir, .sync = STORE_SYNC_NONE};
    assert_int_equal(store_open(&so, &st, NULL, 0), CASCA_OK);
    struct hook_env env = {.builtin_sources = true};
    assert_int_equal(tsdb_open(st, NULL, &env.tsdb), CASCA_OK);
    struct hooks *hooks;
    char err[256];
    assert_int_equal(
        hooks_create(config_section_of(c, &hooks_config_section), &env, &hooks, err, sizeof(err)),
        CASCA_OK);
    assert_int_equal(hooks_count(hooks), 1); /* the implicit probes hook is not listed */

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tsdb_tag tag = {"k", "v"};
    struct tsdb_point pt = {"x", &tag, 1, (int64_t)now.tv_sec * 1000000000 - 1000000000, 2.5};
    struct acked a = {0};
    assert_int_equal(hooks_submit(hooks, HOOK_SOURCE_PUBLISH, "other", &pt, 1, on_done, &a, err,
                                  sizeof(err)),
                     CASCA_ERR_PRECONDITION);
    assert_non_null(strstr(err, "no hook takes publish points on topic 'other'"));
    assert_int_equal(hooks_submit(hooks, HOOK_SOURCE_PUBLISH, "sensor-1", &pt, 1, on_done, &a,
                                  err, sizeof(err)),
                     CASCA_OK);
    for (int i = 0; i < 200 && !atomic_load(&a.calls); i++)
        sleep_ms(10);
    assert_int_equal(atomic_load(&a.calls), 1);
    assert_int_equal(atomic_load(&a.err), CASCA_OK);
    struct tsdb_selector *sel; /* acked: committed, so readable now */
    assert_int_equal(tsdb_select(env.tsdb, "x", &tag, 1, &sel), CASCA_OK);
    struct tsdb_sample sample;
    assert_int_equal(tsdb_aggregate(env.tsdb, sel, pt.time_ns, pt.time_ns + 1, TSDB_AGG_COUNT, 0,
                                    &sample),
                     CASCA_OK);
    assert_int_equal(sample.count, 1);
    tsdb_selector_free(sel);
    /* probes: no hook in the file, so the implicit one takes every topic; nobody waits */
    assert_int_equal(
        hooks_submit(hooks, HOOK_SOURCE_PROBES, "web", &pt, 1, NULL, NULL, err, sizeof(err)),
        CASCA_OK);
    struct hook_stats hs;
    assert_int_equal(hooks_stats(hooks, &hs, 1), 1);
    assert_string_equal(hs.name, "sensors");
    assert_int_equal(hs.stored, 1);
    hooks_destroy(hooks);

    env.builtin_sources = false; /* casca-hook: the file's publish hook is not run */
    assert_int_equal(
        hooks_create(config_section_of(c, &hooks_config_section), &env, &hooks, err, sizeof(err)),
        CASCA_OK);
    assert_int_equal(hooks_count(hooks), 0);
    assert_int_equal(hooks_submit(hooks, HOOK_SOURCE_PUBLISH, "sensor-1", &pt, 1, on_done, &a,
                                  err, sizeof(err)),
                     CASCA_ERR_PRECONDITION);
    hooks_destroy(hooks);
    tsdb_close(env.tsdb);
    store_close(st);
    config_unref(c);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(framing),
        cmocka_unit_test(builtin_sources),
        cmocka_unit_test(fan_out_by_prefix),
        cmocka_unit_test(address_errors),
        cmocka_unit_test(udp_ingress),
        cmocka_unit_test(udp_losses_are_counted),
        cmocka_unit_test(reporter_reconnects_and_encodes),
        cmocka_unit_test(reporter_never_blocks),
        cmocka_unit_test(slow_hook_does_not_stall_others),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    nng_fini();
    return rc;
}
