/* agents_bench: many concurrent AgentService.Session streams against one cascad, from one thread
 * on one completion queue (grpc's C core async API), so the client stays light beside the server
 * on a small machine.
 *
 *   agents_bench --target 127.0.0.1:PORT --pid CASCAD_PID [--observe N] [--control K]
 *                [--conns C] [--period-ms P] [--ramp-ms R] [--warmup S] [--duration S]
 *
 * N OBSERVE sessions watch setting "Shared" and SLO "fps"; K CONTROL sessions each lease their own
 * setting "ctl<i>" (spread among the others) and answer every State with an Action (a new value
 * in 1..8). Sessions are spread over C connections (default: one each, as separate agents would be)
 * and opened evenly over R ms (default: one period; 0 opens all at once, so every tick falls
 * together). After every session is welcomed and the warm-up has passed, it measures for the
 * duration:
 *   - state delivery latency: receive time - State.time (both wall clock, one machine);
 *   - action -> ActionResult latency of the CONTROL sessions (the memory controller applies it);
 *   - cascad's CPU (utime + stime from /proc/PID/stat) as % of one core, its threads and its
 *     anonymous RSS (the heap: the store's file pages, which grow with recorded trajectories,
 *     are left out);
 *   - missed states (State.missed) and seq gaps, which should both be 0.
 * A benchmark, not a test: it prints figures and exits 0 unless it could not run. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "casca/v1/agent.pb-c.h"

enum tag_kind { T_START, T_MD, T_STATUS, T_RECV, T_SEND };

struct sess;
struct tag {
    enum tag_kind kind;
    struct sess *s;
};

struct sess {
    int idx;
    bool control;
    grpc_call *call;
    struct tag t[5];
    grpc_metadata_array md, trailing;
    grpc_byte_buffer *recv_buf, *send_buf;
    grpc_status_code status;
    grpc_slice details;
    bool welcomed, ended, sending;
    uint64_t last_seq;
    int64_t action_sent_mono;
    unsigned nonce;
    char setting[16];
};

struct samples {
    int64_t *v;
    size_t n, cap;
};

static void add(struct samples *s, int64_t x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 4096;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        if (!s->v) {
            perror("realloc");
            exit(1);
        }
    }
    s->v[s->n++] = x;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(struct samples *s, double p)
{
    if (!s->n) return 0;
    size_t i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
    return (double)s->v[i] / 1e6;
}

static void report(const char *what, struct samples *s)
{
    qsort(s->v, s->n, sizeof(*s->v), cmp64);
    printf("%-28s n=%-7zu p50=%7.3f ms  p90=%7.3f ms  p99=%7.3f ms  max=%7.3f ms\n", what, s->n,
           pct(s, 50), pct(s, 90), pct(s, 99), pct(s, 100));
}

static int64_t now_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* utime + stime of pid in clock ticks; threads and RSS (kB) from /proc/PID/status. */
static long long cpu_ticks(int pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

static long status_field(int pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, key, kl) && line[kl] == ':') v = atol(line + kl + 1);
    if (f) fclose(f);
    return v;
}

static grpc_byte_buffer *pack(const Casca__V1__AgentMessage *m)
{
    size_t n = casca__v1__agent_message__get_packed_size(m);
    grpc_slice sl = grpc_slice_malloc(n);
    casca__v1__agent_message__pack(m, GRPC_SLICE_START_PTR(sl));
    grpc_byte_buffer *b = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return b;
}

static Casca__V1__ControlMessage *unpack(grpc_byte_buffer *b)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, b)) return NULL;
    grpc_slice sl = grpc_byte_buffer_reader_readall(&r);
    Casca__V1__ControlMessage *m =
        casca__v1__control_message__unpack(NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    grpc_byte_buffer_reader_destroy(&r);
    return m;
}

static void batch(struct sess *s, const grpc_op *ops, size_t n, enum tag_kind k)
{
    grpc_call_error e = grpc_call_start_batch(s->call, ops, n, &s->t[k], NULL);
    if (e != GRPC_CALL_OK) {
        fprintf(stderr, "session %d: grpc_call_start_batch: %d\n", s->idx, (int)e);
        exit(1);
    }
}

static void start_recv(struct sess *s)
{
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
    op.data.recv_message.recv_message = &s->recv_buf;
    batch(s, &op, 1, T_RECV);
}

static void send_msg(struct sess *s, const Casca__V1__AgentMessage *m, enum tag_kind k,
                     bool with_md)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    if (with_md) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    s->send_buf = pack(m);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = s->send_buf;
    s->sending = true;
    batch(s, ops, n, k);
}

static void open_session(struct sess *s, grpc_channel *ch, grpc_completion_queue *cq,
                         int64_t period_ms)
{
    for (int k = 0; k < 5; k++)
        s->t[k] = (struct tag){(enum tag_kind)k, s};
    grpc_metadata_array_init(&s->md);
    grpc_metadata_array_init(&s->trailing);
    grpc_slice method = grpc_slice_from_static_string("/casca.v1.AgentService/Session");
    s->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    char name[32];
    snprintf(name, sizeof(name), "%s-%d", s->control ? "ctl" : "obs", s->idx);
    char *setting = s->setting, *slo = "fps";
    Google__Protobuf__Duration period = GOOGLE__PROTOBUF__DURATION__INIT;
    period.seconds = period_ms / 1000;
    period.nanos = (int32_t)(period_ms % 1000 * 1000000);
    Casca__V1__Hello h = CASCA__V1__HELLO__INIT;
    h.agent_name = name;
    h.mode = s->control ? CASCA__V1__AGENT_MODE__AGENT_MODE_CONTROL
                        : CASCA__V1__AGENT_MODE__AGENT_MODE_OBSERVE;
    h.n_setting_ids = 1;
    h.setting_ids = &setting;
    h.n_slo_ids = 1;
    h.slo_ids = &slo;
    h.period = &period;
    Casca__V1__AgentMessage m = CASCA__V1__AGENT_MESSAGE__INIT;
    m.msg_case = CASCA__V1__AGENT_MESSAGE__MSG_HELLO;
    m.hello = &h;
    send_msg(s, &m, T_START, true);
    grpc_op op = {.op = GRPC_OP_RECV_INITIAL_METADATA};
    op.data.recv_initial_metadata.recv_initial_metadata = &s->md;
    batch(s, &op, 1, T_MD);
    grpc_op st = {.op = GRPC_OP_RECV_STATUS_ON_CLIENT};
    st.data.recv_status_on_client.trailing_metadata = &s->trailing;
    st.data.recv_status_on_client.status = &s->status;
    st.data.recv_status_on_client.status_details = &s->details;
    batch(s, &st, 1, T_STATUS);
    start_recv(s);
}

static void act(struct sess *s, uint64_t seq)
{
    Casca__V1__Value v = CASCA__V1__VALUE__INIT;
    v.kind_case = CASCA__V1__VALUE__KIND_INT_VALUE;
    v.int_value = (int64_t)(seq % 8) + 1;
    Casca__V1__SetSettingRequest c = CASCA__V1__SET_SETTING_REQUEST__INIT;
    c.id = s->setting;
    c.value = &v;
    Casca__V1__SetSettingRequest *cp = &c;
    char nonce[24];
    snprintf(nonce, sizeof(nonce), "%u", ++s->nonce);
    Casca__V1__Action a = CASCA__V1__ACTION__INIT;
    a.state_seq = seq;
    a.n_changes = 1;
    a.changes = &cp;
    a.nonce = nonce;
    Casca__V1__AgentMessage m = CASCA__V1__AGENT_MESSAGE__INIT;
    m.msg_case = CASCA__V1__AGENT_MESSAGE__MSG_ACTION;
    m.action = &a;
    s->action_sent_mono = now_ns(CLOCK_MONOTONIC);
    send_msg(s, &m, T_SEND, false);
}

static void usage(void)
{
    fprintf(stderr, "usage: agents_bench --target HOST:PORT --pid PID [--observe N] [--control K] "
                    "[--conns C] [--period-ms P] [--ramp-ms R] [--warmup S] [--duration S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *target = NULL;
    int pid = 0, nobs = 1000, nctl = 20, nconns = 0;
    int64_t period_ms = 1000, warmup_s = 5, duration_s = 30, ramp_ms = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--target"))
            target = v;
        else if (!strcmp(k, "--pid"))
            pid = atoi(v);
        else if (!strcmp(k, "--observe"))
            nobs = atoi(v);
        else if (!strcmp(k, "--control"))
            nctl = atoi(v);
        else if (!strcmp(k, "--conns"))
            nconns = atoi(v);
        else if (!strcmp(k, "--period-ms"))
            period_ms = atoll(v);
        else if (!strcmp(k, "--warmup"))
            warmup_s = atoll(v);
        else if (!strcmp(k, "--ramp-ms"))
            ramp_ms = atoll(v);
        else if (!strcmp(k, "--duration"))
            duration_s = atoll(v);
        else
            usage();
    }
    if (ramp_ms < 0) ramp_ms = period_ms;
    if (!target || pid <= 0 || nobs < 0 || nctl < 0 || nobs + nctl == 0) usage();
    int n = nobs + nctl;
    int64_t ramp_ns = ramp_ms * 1000000;
    if (nconns <= 0 || nconns > n) nconns = n;

    grpc_init();
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_channel **chans = calloc((size_t)nconns, sizeof(*chans));
    struct sess *ss = calloc((size_t)n, sizeof(*ss));
    if (!chans || !ss) return 1;
    grpc_arg arg = {.type = GRPC_ARG_INTEGER,
                    .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
                    .value.integer = 1}; /* a connection of its own per channel */
    grpc_channel_args args = {1, &arg};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    for (int i = 0; i < nconns; i++)
        chans[i] = grpc_channel_create(target, creds, &args);
    grpc_channel_credentials_release(creds);

    /* sessions are opened evenly over one period, as independent agents would: their ticks are
     * then spread over the period instead of all falling at once */
    int64_t t0 = now_ns(CLOCK_MONOTONIC);
    int opened = 0;
    for (int i = 0; i < n; i++) {
        struct sess *s = &ss[i];
        s->idx = i;
        s->control = i % (n / (nctl ? nctl : 1)) == 0 && i / (n / (nctl ? nctl : 1)) < nctl;
    }
    for (int i = 0, c = 0; i < n; i++)
        if (ss[i].control)
            snprintf(ss[i].setting, sizeof(ss[i].setting), "ctl%d", c++);
        else
            snprintf(ss[i].setting, sizeof(ss[i].setting), "Shared");

    struct samples state_lat = {0}, action_lat = {0};
    int welcomed = 0, ended = 0, failed = 0;
    uint64_t states = 0, missed = 0, gaps = 0, applied = 0, rejected = 0;
    int64_t all_in = 0, win_start = 0, win_end = 0;
    long long cpu0 = 0, cpu1 = 0, self0 = 0, self1 = 0;
    long rss0 = 0, rss1 = 0, thr0 = 0, thr1 = 0;
    bool cancelling = false;
    while (ended < n) {
        gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                          gpr_time_from_millis(opened < n ? 1 : 50, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(cq, until, NULL);
        int64_t mono = now_ns(CLOCK_MONOTONIC);
        for (; opened < n && mono - t0 >= opened * ramp_ns / n; opened++)
            open_session(&ss[opened], chans[opened % nconns], cq, period_ms);
        if (!all_in && welcomed + failed == n) {
            all_in = mono;
            printf("%d sessions welcomed (%d failed) in %.2f s\n", welcomed, failed,
                   (double)(mono - t0) / 1e9);
            fflush(stdout);
        }
        if (all_in && !win_start && mono >= all_in + warmup_s * 1000000000) {
            win_start = mono;
            cpu0 = cpu_ticks(pid);
            self0 = cpu_ticks(getpid());
            rss0 = status_field(pid, "RssAnon");
            thr0 = status_field(pid, "Threads");
        }
        if (win_start && !win_end && mono >= win_start + duration_s * 1000000000) {
            win_end = mono;
            cpu1 = cpu_ticks(pid);
            self1 = cpu_ticks(getpid());
            rss1 = status_field(pid, "RssAnon");
            thr1 = status_field(pid, "Threads");
        }
        if (win_end && !cancelling) {
            cancelling = true;
            for (int i = 0; i < n; i++)
                if (!ss[i].ended) grpc_call_cancel(ss[i].call, NULL);
        }
        if (mono - t0 > (warmup_s + duration_s + 120) * 1000000000LL && !cancelling) {
            fprintf(stderr, "gave up: %d of %d sessions welcomed\n", welcomed, n);
            cancelling = true;
            win_end = mono;
            for (int i = 0; i < n; i++)
                grpc_call_cancel(ss[i].call, NULL);
        }
        if (ev.type != GRPC_OP_COMPLETE) continue;
        struct tag *t = ev.tag;
        struct sess *s = t->s;
        bool measuring = win_start && !win_end;
        switch (t->kind) {
        case T_START:
        case T_SEND:
            grpc_byte_buffer_destroy(s->send_buf);
            s->send_buf = NULL;
            s->sending = false;
            break;
        case T_MD:
            break;
        case T_STATUS:
            s->ended = true;
            ended++;
            if (!s->welcomed) {
                failed++;
                char *d = grpc_slice_to_c_string(s->details);
                fprintf(stderr, "session %d ended before Welcome: %d %s\n", s->idx, s->status, d);
                gpr_free(d);
            }
            break;
        case T_RECV: {
            if (!s->recv_buf) break; /* the stream is over: T_STATUS follows */
            int64_t wall = now_ns(CLOCK_REALTIME);
            Casca__V1__ControlMessage *m = unpack(s->recv_buf);
            grpc_byte_buffer_destroy(s->recv_buf);
            s->recv_buf = NULL;
            if (m && m->msg_case == CASCA__V1__CONTROL_MESSAGE__MSG_WELCOME) {
                s->welcomed = true;
                welcomed++;
            } else if (m && m->msg_case == CASCA__V1__CONTROL_MESSAGE__MSG_STATE) {
                const Casca__V1__State *st = m->state;
                if (measuring) {
                    states++;
                    missed += st->missed;
                    if (s->last_seq && st->seq != s->last_seq + 1) gaps++;
                    if (st->time)
                        add(&state_lat, wall - (st->time->seconds * 1000000000 + st->time->nanos));
                }
                s->last_seq = st->seq;
                if (s->control && !s->sending && !cancelling) act(s, st->seq);
            } else if (m && m->msg_case == CASCA__V1__CONTROL_MESSAGE__MSG_RESULT) {
                if (measuring) {
                    add(&action_lat, mono - s->action_sent_mono);
                    applied += m->result->n_applied;
                    rejected += m->result->n_rejected;
                }
            }
            if (m) casca__v1__control_message__free_unpacked(m, NULL);
            if (!cancelling) start_recv(s);
            break;
        }
        }
    }

    double secs = (double)(win_end - win_start) / 1e9;
    printf("sessions: %d OBSERVE + %d CONTROL over %d connections, period %" PRId64 " ms; "
           "measured %.1f s\n",
           nobs, nctl, nconns, period_ms, secs);
    report("state delivery latency", &state_lat);
    report("action -> ActionResult", &action_lat);
    printf("states received %" PRIu64 " (%.0f/s), missed %" PRIu64 ", seq gaps %" PRIu64
           "; changes applied %" PRIu64 ", rejected %" PRIu64 "\n",
           states, (double)states / secs, missed, gaps, applied, rejected);
    double tick = (double)sysconf(_SC_CLK_TCK);
    if (cpu0 >= 0 && cpu1 >= 0)
        printf("cascad CPU: %.1f%% of one core; threads %ld -> %ld; anonymous RSS %.1f -> %.1f MiB "
               "(this client: %.1f%%)\n",
               100.0 * (double)(cpu1 - cpu0) / tick / secs, thr0, thr1, (double)rss0 / 1024,
               (double)rss1 / 1024, 100.0 * (double)(self1 - self0) / tick / secs);

    for (int i = 0; i < n; i++) {
        grpc_call_unref(ss[i].call);
        grpc_metadata_array_destroy(&ss[i].md);
        grpc_metadata_array_destroy(&ss[i].trailing);
        grpc_slice_unref(ss[i].details);
    }
    for (int i = 0; i < nconns; i++)
        grpc_channel_destroy(chans[i]);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    grpc_shutdown();
    free(state_lat.v);
    free(action_lat.v);
    free(ss);
    free(chans);
    return failed ? 1 : 0;
}
