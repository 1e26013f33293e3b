/* libcasca's gRPC client against a running cascad (see client.sh, which starts one):
 *   1. unary ServiceControl.GetSetting on a memory setting: latency p50/p99 and calls/s, from one
 *      thread and from THREADS threads sharing one client;
 *   2. an AgentService session in CONTROL mode: Action -> ActionResult round trip through the
 *      stream (the memory controller applies at once), paced under the 10-actions-per-period
 *      limit.
 * Usage: client_bench TARGET CALLS THREADS ACTIONS. A benchmark: it reports, it does not judge. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "casca/v1/agent.pb-c.h"
#include "casca/v1/control.pb-c.h"
#include "casca_client.h"

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, int n, double wall_us)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    printf("%-44s n=%d  mean %.0f us  p50 %.0f us  p99 %.0f us  max %.0f us", what, n, sum / n,
           v[n / 2], v[(int)(n * 0.99)], v[n - 1]);
    if (wall_us > 0) printf("  %.0f calls/s", n / (wall_us / 1e6));
    printf("\n");
}

struct worker {
    struct casca_client *c;
    int calls;
    double *lat;
    int failed;
};

static void *unary_worker(void *arg)
{
    struct worker *w = arg;
    Casca__V1__GetSettingRequest req = CASCA__V1__GET_SETTING_REQUEST__INIT;
    req.id = "Knob";
    for (int i = 0; i < w->calls; i++) {
        struct casca_status st;
        ProtobufCMessage *reply;
        double t0 = now_us();
        int rc = casca_call(w->c, "/casca.v1.ServiceControl/GetSetting", &req.base,
                            &casca__v1__setting_value__descriptor, &reply, &st);
        w->lat[i] = now_us() - t0;
        if (rc) {
            fprintf(stderr, "GetSetting: %s\n", st.message);
            w->failed++;
        } else {
            protobuf_c_message_free_unpacked(reply, NULL);
        }
    }
    return NULL;
}

static void unary(struct casca_client *c, int calls, int threads, int quiet)
{
    struct worker *w = calloc((size_t)threads, sizeof(*w));
    pthread_t *t = calloc((size_t)threads, sizeof(*t));
    double *all = calloc((size_t)(calls * threads), sizeof(double));
    double t0 = now_us();
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){.c = c, .calls = calls, .lat = all + i * calls};
        pthread_create(&t[i], NULL, unary_worker, &w[i]);
    }
    int failed = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        failed += w[i].failed;
    }
    char what[80];
    snprintf(what, sizeof(what), "unary GetSetting, %d thread%s%s", threads, threads > 1 ? "s" : "",
             failed ? " (failures!)" : "");
    if (!quiet) report(what, all, calls * threads, now_us() - t0);
    free(all);
    free(t);
    free(w);
}

static ProtobufCMessage *next(struct casca_stream *s, Casca__V1__ControlMessage__MsgCase want)
{
    for (;;) {
        struct casca_status st;
        ProtobufCMessage *m;
        if (casca_stream_recv(s, &casca__v1__control_message__descriptor, &m, 5000, &st)) {
            fprintf(stderr, "session: %s\n", st.message);
            exit(1);
        }
        if (((Casca__V1__ControlMessage *)m)->msg_case == want) return m;
        protobuf_c_message_free_unpacked(m, NULL);
    }
}

static void session(struct casca_client *c, int actions)
{
    char *settings[] = {"Knob"};
    Google__Protobuf__Duration period = GOOGLE__PROTOBUF__DURATION__INIT;
    period.nanos = 100000000; /* 100 ms: 10 actions each, 100 a second */
    Casca__V1__Hello hello = CASCA__V1__HELLO__INIT;
    hello.agent_name = "bench";
    hello.n_setting_ids = 1;
    hello.setting_ids = settings;
    hello.period = &period;
    hello.mode = CASCA__V1__AGENT_MODE__AGENT_MODE_CONTROL;
    Casca__V1__AgentMessage msg = CASCA__V1__AGENT_MESSAGE__INIT;
    msg.msg_case = CASCA__V1__AGENT_MESSAGE__MSG_HELLO;
    msg.hello = &hello;
    struct casca_stream *s;
    struct casca_status st;
    if (casca_stream_open(c, "/casca.v1.AgentService/Session", &msg.base, 0, &s, &st)) {
        fprintf(stderr, "session: %s\n", st.message);
        exit(1);
    }
    protobuf_c_message_free_unpacked(next(s, CASCA__V1__CONTROL_MESSAGE__MSG_WELCOME), NULL);
    double *lat = calloc((size_t)actions, sizeof(double));
    int rejected = 0;
    for (int i = 0; i < actions; i++) {
        Casca__V1__Value v = CASCA__V1__VALUE__INIT;
        v.kind_case = CASCA__V1__VALUE__KIND_INT_VALUE;
        v.int_value = 1 + i % 8;
        Casca__V1__SetSettingRequest ch = CASCA__V1__SET_SETTING_REQUEST__INIT;
        ch.id = "Knob";
        ch.value = &v;
        Casca__V1__SetSettingRequest *chs[] = {&ch};
        char nonce[32];
        snprintf(nonce, sizeof(nonce), "b%d", i);
        Casca__V1__Action a = CASCA__V1__ACTION__INIT;
        a.changes = chs;
        a.n_changes = 1;
        a.nonce = nonce;
        msg.msg_case = CASCA__V1__AGENT_MESSAGE__MSG_ACTION;
        msg.action = &a;
        double t0 = now_us();
        if (casca_stream_send(s, &msg.base, &st)) {
            fprintf(stderr, "send: %s\n", st.message);
            exit(1);
        }
        ProtobufCMessage *m = next(s, CASCA__V1__CONTROL_MESSAGE__MSG_RESULT);
        lat[i] = now_us() - t0;
        rejected += ((Casca__V1__ControlMessage *)m)->result->n_rejected > 0;
        protobuf_c_message_free_unpacked(m, NULL);
        struct timespec pause = {0, 12 * 1000000}; /* under 10 actions per 100 ms */
        nanosleep(&pause, NULL);
    }
    char what[80];
    snprintf(what, sizeof(what), "session Action -> ActionResult%s",
             rejected ? " (rejections!)" : "");
    report(what, lat, actions, 0);
    free(lat);
    casca_stream_close(s);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: client_bench TARGET CALLS THREADS ACTIONS\n");
        return 2;
    }
    struct casca_client *c;
    struct casca_status st;
    if (casca_client_open(argv[1], NULL, &c, &st)) {
        fprintf(stderr, "%s\n", st.message);
        return 1;
    }
    int calls = atoi(argv[2]), threads = atoi(argv[3]), actions = atoi(argv[4]);
    unary(c, 200, 1, 1); /* warm-up: connection, caches */
    unary(c, calls, 1, 0);
    unary(c, calls / threads, threads, 0);
    session(c, actions);
    casca_client_close(c);
    return 0;
}
