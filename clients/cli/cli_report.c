/* casca report: sends each JSON line of stdin to a casca bus as one report (libcasca's nng
 * reporter), and with --csv also appends every report to FILE as "received,topic,report" rows.
 * Exit codes: 0 everything sent, 1 some lines were skipped or dropped, 2 bad usage. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "casca.h"
#include "cli.h"

static void report_usage(FILE *to)
{
    fprintf(to,
            "usage: casca report --bus ADDR --topic TOPIC [--csv FILE] [--raw] [--timeout MS]\n"
            "  Sends each line of stdin (a JSON object, or an array of objects) to the bus at\n"
            "  ADDR (tcp://HOST:PORT, ipc:///path or udp://HOST:PORT) under TOPIC.\n"
            "  --csv FILE   also append every report to FILE (columns: received, topic, report)\n"
            "  --raw        send lines as they are, without checking that they are JSON\n"
            "  --timeout MS at the end of input, wait at most MS for the bus (default 5000)\n");
}

/* RFC 4180: quote the field, doubling quotes. */
static void csv_field(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"') fputc('"', f);
        fputc(s[i], f);
    }
    fputc('"', f);
}

int cli_report(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"bus", required_argument, NULL, 'b'},
        {"topic", required_argument, NULL, 't'},
        {"csv", required_argument, NULL, 'c'},
        {"raw", no_argument, NULL, 'r'},
        {"timeout", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *bus = NULL, *topic = NULL, *csv_path = NULL;
    int raw = 0, timeout_ms = 5000, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "b:t:c:rT:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            bus = optarg;
            break;
        case 't':
            topic = optarg;
            break;
        case 'c':
            csv_path = optarg;
            break;
        case 'r':
            raw = 1;
            break;
        case 'T':
            timeout_ms = atoi(optarg);
            break;
        case 'h':
            report_usage(stdout);
            return 0;
        default:
            report_usage(stderr);
            return 2;
        }
    }
    if (!bus || !topic || optind != argc) {
        report_usage(stderr);
        return 2;
    }
    FILE *csv = NULL;
    if (csv_path) {
        if (!(csv = fopen(csv_path, "a"))) {
            fprintf(stderr, "casca report: cannot open %s: %s\n", csv_path, strerror(errno));
            return 2;
        }
        if (ftell(csv) == 0) fputs("received,topic,report\n", csv);
    }
    struct casca_reporter *r = NULL;
    int rc = casca_reporter_open(bus, topic, NULL, &r);
    if (rc) {
        fprintf(stderr,
                "casca report: cannot report to %s on topic '%s': %s (the address is "
                "tcp://HOST:PORT, ipc:///path or udp://HOST:PORT, the topic 1 to 256 bytes)\n",
                bus, topic, casca_strerror(rc));
        if (csv) fclose(csv);
        return 2;
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0, skipped = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (!len) continue;
        if (!raw) {
            json_error_t je;
            json_t *doc = json_loadb(line, (size_t)len, JSON_REJECT_DUPLICATES, &je);
            if (!doc || !(json_is_object(doc) || json_is_array(doc))) {
                fprintf(stderr, "casca report: line %zu skipped: %s\n", lineno,
                        doc ? "not a JSON object or array" : je.text);
                json_decref(doc);
                skipped++;
                continue;
            }
            json_decref(doc);
        }
        /* stdin is ours to wait on: when the buffer is full, wait for it rather than drop */
        while ((rc = casca_report_json(r, line, (size_t)len)) == CASCA_ERR_FULL) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        if (rc != CASCA_OK) {
            fprintf(stderr, "casca report: line %zu skipped: %s%s\n", lineno, casca_strerror(rc),
                    rc == CASCA_ERR_INVALID ? " (over 65,507 bytes, more than one datagram holds:"
                                              " send it over tcp://)"
                                            : "");
            skipped++;
            continue;
        }
        if (csv) {
            struct timespec now;
            struct tm tm;
            char when[40];
            clock_gettime(CLOCK_REALTIME, &now);
            gmtime_r(&now.tv_sec, &tm);
            size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
            snprintf(when + n, sizeof(when) - n, ".%03ldZ", now.tv_nsec / 1000000);
            fprintf(csv, "%s,", when);
            csv_field(csv, topic, strlen(topic));
            fputc(',', csv);
            csv_field(csv, line, (size_t)len);
            fputc('\n', csv);
        }
    }
    free(line);
    struct casca_reporter_stats st;
    casca_reporter_stats(r, &st);
    uint64_t dropped = casca_reporter_close(r, timeout_ms);
    uint64_t sent = st.sent + (st.queued > dropped ? st.queued - dropped : 0);
    fprintf(stderr, "casca report: %llu sent, %llu dropped, %zu skipped\n",
            (unsigned long long)sent, (unsigned long long)dropped, skipped);
    if (csv && fclose(csv) != 0) {
        fprintf(stderr, "casca report: writing %s failed: %s\n", csv_path, strerror(errno));
        return 1;
    }
    return dropped || skipped ? 1 : 0;
}
