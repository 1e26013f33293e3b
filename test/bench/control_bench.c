/* Overhead of casca's ServiceControl: GetSetting / SetSetting through cascad against the same
 * operation made directly on the service, side by side in one run, with the same client stack
 * kind: C clients on one kept-alive connection, one request at a time (h2load for gRPC over HTTP/2,
 * libcurl for HTTP/1.1 to the service; libcurl 7.88 cannot reuse an HTTP/2 connection to
 * grpc-core, hence h2load). The two sides alternate in rounds so they see the same machine.
 *
 *   control_bench CASCAD WORKDIR [ITERATIONS]
 *
 * Starts a small HTTP JSON service (Jellyfin's /System/Configuration/encoding shape) on loopback,
 * starts cascad with one http_json setting on it (read-modify-write, max_age 0: every GetSetting
 * reaches the service), then interleaves the four operations ITERATIONS times:
 *   direct get: GET the document, read EncodingThreadCount
 *   casca  get: ServiceControl.GetSetting
 *   direct set: GET, change EncodingThreadCount, POST the document, GET to read it back
 *   casca  set: ServiceControl.SetSetting (validate, the same GET/POST/GET, audit entry committed)
 * and prints median and p99 of each, and casca's overhead. Then SetSetting 20 at a time: one
 * setting over one connection (h2load -m 20), and 20 memory settings by 20 callers (one h2load
 * each), with the changes per store commit from /metrics. A benchmark, not a test. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t doc_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *doc;

/* ---- the service: HTTP/1.1 keep-alive, one thread per connection ---- */

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char buf[65536];
    size_t have = 0;
    for (;;) {
        char *end = have ? memmem(buf, have, "\r\n\r\n", 4) : NULL;
        if (!end) {
            ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
            if (n <= 0)
                break;
            have += (size_t)n;
            continue;
        }
        size_t hlen = (size_t)(end - buf) + 4, clen = 0;
        char saved = buf[hlen - 1];
        buf[hlen - 1] = 0; /* search the headers only */
        char *cl = strcasestr(buf, "content-length:");
        buf[hlen - 1] = saved;
        if (cl && cl < end)
            clen = strtoul(cl + 15, NULL, 10);
        while (have < hlen + clen) {
            ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
            if (n <= 0)
                goto out;
            have += (size_t)n;
        }
        char resp[4096];
        int rlen;
        if (!strncmp(buf, "GET ", 4)) {
            pthread_mutex_lock(&doc_lock);
            char *body = json_dumps(doc, JSON_COMPACT);
            pthread_mutex_unlock(&doc_lock);
            rlen = snprintf(resp, sizeof(resp),
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n\r\n%s",
                            strlen(body), body);
            free(body);
        } else {
            json_t *j = json_loadb(buf + hlen, clen, 0, NULL);
            if (j) {
                pthread_mutex_lock(&doc_lock);
                json_decref(doc);
                doc = j;
                pthread_mutex_unlock(&doc_lock);
            }
            rlen = snprintf(resp, sizeof(resp), j ? "HTTP/1.1 204 No Content\r\n\r\n"
                                                  : "HTTP/1.1 400 Bad Request\r\n"
                                                    "Content-Length: 0\r\n\r\n");
        }
        if (write(fd, resp, (size_t)rlen) != rlen)
            break;
        memmove(buf, buf + hlen + clen, have - hlen - clen);
        have -= hlen + clen;
    }
out:
    close(fd);
    return NULL;
}

static void *serve(void *arg)
{
    int ls = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_t t;
        pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
    return NULL;
}

static int listen_any(int *port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 64) ||
        getsockname(s, (struct sockaddr *)&a, &len))
        return -1;
    *port = ntohs(a.sin_port);
    return s;
}

/* ---- clients ---- */

struct buf {
    char p[65536];
    size_t len;
};

static size_t on_body(char *d, size_t s, size_t n, void *arg)
{
    struct buf *b = arg;
    size_t len = s * n;
    if (b->len + len < sizeof(b->p)) {
        memcpy(b->p + b->len, d, len);
        b->len += len;
    }
    return len;
}


static CURL *http;
static pid_t cascad_pid;

static void stop_cascad(void)
{
    if (cascad_pid > 0) {
        kill(cascad_pid, SIGTERM);
        waitpid(cascad_pid, NULL, 0);
        cascad_pid = 0;
    }
}
static struct curl_slist *json_headers;
static char service_url[128], casca_base[128];

static void http_do(const char *body, struct buf *b)
{
    b->len = 0;
    curl_easy_setopt(http, CURLOPT_URL, service_url);
    curl_easy_setopt(http, CURLOPT_WRITEDATA, b);
    if (body) {
        curl_easy_setopt(http, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(http, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else {
        curl_easy_setopt(http, CURLOPT_HTTPGET, 1L);
    }
    long code = 0;
    if (curl_easy_perform(http) != CURLE_OK ||
        curl_easy_getinfo(http, CURLINFO_RESPONSE_CODE, &code) || code / 100 != 2) {
        fprintf(stderr, "direct request failed (%ld)\n", code);
        exit(1);
    }
    b->p[b->len] = 0;
}

static long long direct_get(void)
{
    struct buf b;
    http_do(NULL, &b);
    json_t *j = json_loads(b.p, 0, NULL);
    long long v = json_integer_value(json_object_get(j, "EncodingThreadCount"));
    json_decref(j);
    return v;
}

static long long direct_set(long long v)
{
    struct buf b;
    http_do(NULL, &b);
    json_t *j = json_loads(b.p, 0, NULL);
    json_object_set_new(j, "EncodingThreadCount", json_integer(v));
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    http_do(body, &b);
    free(body);
    return direct_get();
}

static const char ID[] = "ServiceParam";
#define MANY 20 /* callers, each with its own setting */
static char metrics_url[128];

/* The two requests as gRPC frames: GetSetting{id} and SetSetting{id, value{int_value: 42}}. */
static void write_grpc_bodies(const char *id, const char *get_path, const char *set_path)
{
    size_t idlen = strlen(id);
    unsigned char m[64] = {0, 0, 0, 0, 0, 0x0a, (unsigned char)idlen};
    size_t n = 7;
    memcpy(m + n, id, idlen);
    n += idlen;
    m[4] = (unsigned char)(n - 5);
    FILE *f = fopen(get_path, "wb");
    fwrite(m, 1, n, f);
    fclose(f);
    m[n++] = 0x12; /* value */
    m[n++] = 2;
    m[n++] = 0x08; /* int_value */
    m[n++] = 42;
    m[4] = (unsigned char)(n - 5);
    f = fopen(set_path, "wb");
    fwrite(m, 1, n, f);
    fclose(f);
}

/* n sequential calls (one connection, one stream at a time) with h2load; their latencies in us
 * go to out (may be NULL). Exits if any call failed. */
static double h2load_streams(const char *work, const char *method, const char *body, size_t n,
                             int streams, double *out)
{
    char cmd[2048], log[512];
    snprintf(log, sizeof(log), "%s/h2load.log", work);
    unlink(log); /* h2load appends */
    snprintf(cmd, sizeof(cmd),
             "h2load -n %zu -c 1 -m %d -t 1 -H 'content-type: application/grpc' -H 'te: trailers' "
             "-d %s --log-file=%s %s/casca.v1.ServiceControl/%s > %s/h2load.out 2>&1",
             n, streams, body, log, casca_base, method, work);
    if (system(cmd) != 0) {
        fprintf(stderr, "h2load failed: %s\n", cmd);
        exit(1);
    }
    snprintf(cmd, sizeof(cmd), "grep -q ' 0 failed, 0 errored' %s/h2load.out", work);
    if (system(cmd) != 0) {
        fprintf(stderr, "%s: some calls failed (see %s/h2load.out)\n", method, work);
        exit(1);
    }
    FILE *f = fopen(log, "r");
    double start, lat;
    int status;
    size_t i = 0;
    while (f && i < n && fscanf(f, "%lf %d %lf", &start, &status, &lat) == 3)
        if (out)
            out[i++] = lat;
    if (f)
        fclose(f);
    double rate = 0;
    snprintf(cmd, sizeof(cmd), "%s/h2load.out", work);
    if ((f = fopen(cmd, "r"))) { /* "finished in 1.23s, 4567.89 req/s, ..." */
        char line[512];
        while (fgets(line, sizeof(line), f)) {
            char *comma = strncmp(line, "finished in", 11) ? NULL : strchr(line, ',');
            if (comma && sscanf(comma + 1, "%lf req/s", &rate) == 1)
                break;
        }
        fclose(f);
    }
    return rate;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* A sample's value in cascad's /metrics, or -1. */
static double metric(const char *name)
{
    CURL *c = curl_easy_init();
    static struct buf b;
    b.len = 0;
    curl_easy_setopt(c, CURLOPT_URL, metrics_url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    double v = -1;
    if (curl_easy_perform(c) == CURLE_OK) {
        b.p[b.len] = 0;
        size_t n = strlen(name);
        for (char *line = b.p; line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
            if (strncmp(line, name, n) == 0 && line[n] == ' ') {
                v = strtod(line + n + 1, NULL);
                break;
            }
    }
    curl_easy_cleanup(c);
    return v;
}

/* MANY callers at once, each changing its own setting (memory controller: no service behind it),
 * one h2load each, n changes in all; latencies to out. The changes' audit entries share commits.
 * Returns the changes per second. */
static double many_callers(const char *work, size_t n, double *out)
{
    size_t per = n / MANY;
    pid_t pids[MANY];
    double t0 = now_us();
    for (int i = 0; i < MANY; i++) {
        char id[16], get_body[512], set_body[512], dir[512], log[600], out[600], count[32];
        snprintf(id, sizeof(id), "M%d", i);
        snprintf(dir, sizeof(dir), "%s/m%d", work, i);
        mkdir(dir, 0700);
        snprintf(get_body, sizeof(get_body), "%s/get.bin", dir);
        snprintf(set_body, sizeof(set_body), "%s/set.bin", dir);
        snprintf(log, sizeof(log), "--log-file=%s/h2load.log", dir);
        snprintf(out, sizeof(out), "%s/h2load.out", dir);
        snprintf(count, sizeof(count), "%zu", per);
        char url[256];
        snprintf(url, sizeof(url), "%s/casca.v1.ServiceControl/SetSetting", casca_base);
        write_grpc_bodies(id, get_body, set_body);
        if ((pids[i] = fork()) == 0) {
            int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            dup2(fd, 1);
            dup2(fd, 2);
            execlp("h2load", "h2load", "-n", count, "-c", "1", "-m", "1", "-t", "1", "-H",
                   "content-type: application/grpc", "-H", "te: trailers", "-d", set_body, log,
                   url, (char *)NULL);
            _exit(127);
        }
    }
    for (int i = 0; i < MANY; i++)
        waitpid(pids[i], NULL, 0);
    double secs = (now_us() - t0) / 1e6;
    size_t k = 0;
    for (int i = 0; i < MANY; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/m%d/h2load.out", work, i);
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "grep -q ' 0 failed, 0 errored' %s", path);
        if (system(cmd) != 0) {
            fprintf(stderr, "concurrent SetSetting: some calls failed (see %s)\n", path);
            exit(1);
        }
        snprintf(path, sizeof(path), "%s/m%d/h2load.log", work, i);
        FILE *f = fopen(path, "r");
        double start, lat;
        int status;
        while (f && k < n && fscanf(f, "%lf %d %lf", &start, &status, &lat) == 3)
            out[k++] = lat;
        if (f) fclose(f);
    }
    return (double)k / secs;
}

static void h2load(const char *work, const char *method, const char *body, size_t n, double *out)
{
    h2load_streams(work, method, body, n, 1, out);
}

/* The service's value now (to check casca's SetSetting reached it). */
static long long casca_value(void)
{
    return direct_get();
}

/* ---- timing ---- */


static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void stats(double *v, size_t n, double *p50, double *p99)
{
    qsort(v, n, sizeof(*v), cmp);
    *p50 = v[n / 2];
    *p99 = v[(size_t)(n * 0.99)];
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s CASCAD WORKDIR [ITERATIONS]\n", argv[0]);
        return 2;
    }
    size_t iters = argc > 3 ? strtoul(argv[3], NULL, 10) : 5000;
    doc = json_pack("{s:i, s:s, s:f, s:s, s:i, s:b}", "EncodingThreadCount", 4, "EncoderPreset",
                    "fast", "DownMixAudioBoost", 2.0, "HardwareAccelerationType", "none",
                    "MaxMuxingQueueSize", 2048, "EnableTonemapping", 0);
    int sport, cport, cs;
    int ls = listen_any(&sport);
    pthread_t t;
    pthread_create(&t, NULL, serve, (void *)(intptr_t)ls);
    if ((cs = listen_any(&cport)) < 0)
        return 1;
    close(cs); /* a free port for cascad */
    snprintf(service_url, sizeof(service_url),
             "http://127.0.0.1:%d/System/Configuration/encoding", sport);
    snprintf(casca_base, sizeof(casca_base), "http://127.0.0.1:%d", cport);
    int mport, ms = listen_any(&mport);
    close(ms); /* a free port for /metrics */
    snprintf(metrics_url, sizeof(metrics_url), "http://127.0.0.1:%d/metrics", mport);
    char cfg[512], listen_arg[64], data[512];
    snprintf(cfg, sizeof(cfg), "%s/casca.yaml", argv[2]);
    snprintf(data, sizeof(data), "%s/data", argv[2]);
    snprintf(listen_arg, sizeof(listen_arg), "127.0.0.1:%d", cport);
    FILE *f = fopen(cfg, "w");
    fprintf(f,
            "server: {log_level: warn}\n"
            "http: {listen: \"127.0.0.1:%d\"}\n"
            "store: {sync: %s}\n"
            "settings:\n"
            "  - id: ServiceParam\n"
            "    type: int\n"
            "    range: {min: 1, max: 100}\n"
            "    controller:\n"
            "      http_json:\n"
            "        url: \"%s\"\n"
            "        pointer: /EncodingThreadCount\n"
            "        write: {method: POST, body: read_modify_write}\n",
            mport, getenv("STORE_SYNC") ? getenv("STORE_SYNC") : "periodic", service_url);
    for (int i = 0; i < MANY; i++)
        fprintf(f, "  - {id: M%d, type: int, range: {min: 1, max: 100}, "
                   "controller: {memory: {value: 1}}}\n", i);
    fclose(f);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl(argv[1], argv[1], "--config", cfg, "--listen", listen_arg, "--data-dir", data,
              (char *)NULL);
        _exit(127);
    }
    cascad_pid = pid;
    atexit(stop_cascad);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    http = curl_easy_init();
    json_headers = curl_slist_append(NULL, "Content-Type: application/json");
    json_headers = curl_slist_append(json_headers, "Expect:");
    curl_easy_setopt(http, CURLOPT_HTTPHEADER, json_headers);
    curl_easy_setopt(http, CURLOPT_WRITEFUNCTION, on_body);
    for (int i = 0; i < 200; i++) { /* wait for cascad */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cport),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (ok)
            break;
        usleep(50000);
    }
    usleep(300000);
    double *t_dg = calloc(iters, sizeof(double)), *t_cg = calloc(iters, sizeof(double)),
           *t_ds = calloc(iters, sizeof(double)), *t_cs = calloc(iters, sizeof(double));
    char get_body[256], set_body[256];
    snprintf(get_body, sizeof(get_body), "%s/get.bin", argv[2]);
    snprintf(set_body, sizeof(set_body), "%s/set.bin", argv[2]);
    write_grpc_bodies(ID, get_body, set_body);
    for (size_t i = 0; i < 300; i++) { /* warm-up */
        direct_get();
        direct_set(5 + (long long)(i % 2));
    }
    h2load(argv[2], "GetSetting", get_body, 300, NULL);
    h2load(argv[2], "SetSetting", set_body, 300, NULL);
    /* rounds, so that both sides see the same machine: direct gets, casca gets, direct sets,
     * casca sets */
    size_t rounds = 10, per = iters / rounds;
    for (size_t r = 0; r < rounds; r++) {
        for (size_t i = 0; i < per; i++) {
            double t0 = now_us();
            direct_get();
            t_dg[r * per + i] = now_us() - t0;
        }
        h2load(argv[2], "GetSetting", get_body, per, t_cg + r * per);
        for (size_t i = 0; i < per; i++) {
            long long v = 2 + (long long)(i % 50);
            double t0 = now_us();
            if (direct_set(v) != v) {
                fprintf(stderr, "the service did not keep %lld\n", v);
                return 1;
            }
            t_ds[r * per + i] = now_us() - t0;
        }
        h2load(argv[2], "SetSetting", set_body, per, t_cs + r * per);
    }
    if (casca_value() != 42) {
        fprintf(stderr, "SetSetting through casca did not reach the service\n");
        return 1;
    }
    iters = rounds * per;
    double dg50, dg99, cg50, cg99, ds50, ds99, cs50, cs99;
    stats(t_dg, iters, &dg50, &dg99);
    stats(t_cg, iters, &cg50, &cg99);
    stats(t_ds, iters, &ds50, &ds99);
    stats(t_cs, iters, &cs50, &cs99);
    printf("%zu iterations of each, interleaved; store sync %s; times in ms\n", iters,
           getenv("STORE_SYNC") ? getenv("STORE_SYNC") : "periodic");
    printf("%-34s %9s %9s\n", "", "median", "p99");
    printf("%-34s %9.3f %9.3f\n", "direct GET (HTTP/1.1 keep-alive)", dg50 / 1e3, dg99 / 1e3);
    printf("%-34s %9.3f %9.3f\n", "casca GetSetting (gRPC)", cg50 / 1e3, cg99 / 1e3);
    printf("%-34s %9.3f %9.3f\n", "  overhead", (cg50 - dg50) / 1e3, (cg99 - dg99) / 1e3);
    printf("%-34s %9.3f %9.3f\n", "direct GET+POST+GET", ds50 / 1e3, ds99 / 1e3);
    printf("%-34s %9.3f %9.3f\n", "casca SetSetting (gRPC, audited)", cs50 / 1e3, cs99 / 1e3);
    printf("%-34s %9.3f %9.3f\n", "  overhead", (cs50 - ds50) / 1e3, (cs99 - ds99) / 1e3);
    /* many callers at once: their audit entries should share commits (and syncs) */
    int streams = getenv("CONCURRENT") ? atoi(getenv("CONCURRENT")) : 20;
    double rate = h2load_streams(argv[2], "SetSetting", set_body, iters, streams, t_cs);
    stats(t_cs, iters, &cs50, &cs99);
    printf("%-34s %9.3f %9.3f   (%.0f changes/s)\n", "casca SetSetting, concurrent", cs50 / 1e3,
           cs99 / 1e3, rate);
    printf("  (%d streams at once on one connection, %zu changes of one setting)\n", streams, iters);
    double commits = metric("casca_store_commits_total");
    rate = many_callers(argv[2], iters, t_cs);
    commits = metric("casca_store_commits_total") - commits;
    size_t done = iters / MANY * MANY;
    stats(t_cs, done, &cs50, &cs99);
    printf("%-34s %9.3f %9.3f   (%.0f changes/s, %.1f per commit)\n",
           "casca SetSetting, many settings", cs50 / 1e3, cs99 / 1e3, rate,
           commits > 0 ? done / commits : 0);
    printf("  (%d callers at once, each its own connection and setting (memory controller), %zu "
           "changes)\n", MANY, done);
    return 0; /* stop_cascad runs at exit */
}
