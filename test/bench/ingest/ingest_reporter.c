/* ingest_reporter: one benchmark reporter process. Sends batches of points (casca.v1
 * PublishRequest, via libcasca's casca_report_points) to a bus for a number of seconds, at a
 * target rate or as fast as the reporter's buffer takes them.
 *   ingest_reporter ADDR TOPIC SECONDS BATCH RATE ID
 * RATE: points per second (0 = unlimited: offer batches flat out; a full buffer is counted and
 * retried after 1 ms). Each point: series "bench", tags {reporter: ID, sensor: 0..7}, a distinct
 * time (1 us apart per sensor, starting an hour ago). Prints "sent N points, M batches refused
 * (buffer full), K dropped" on stdout at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "casca.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: ingest_reporter ADDR TOPIC SECONDS BATCH RATE ID\n");
        return 2;
    }
    const char *addr = argv[1], *topic = argv[2], *id = argv[6];
    double seconds = atof(argv[3]), rate = atof(argv[5]);
    size_t batch = (size_t)atol(argv[4]);
    struct casca_reporter_options o = {.max_queue_messages = 256};
    struct casca_reporter *r;
    if (casca_reporter_open(addr, topic, &o, &r) != CASCA_OK) {
        fprintf(stderr, "ingest_reporter: cannot open %s\n", addr);
        return 1;
    }
    char sensors[8][4];
    struct casca_tag tags[8][2];
    for (int s = 0; s < 8; s++) {
        snprintf(sensors[s], sizeof(sensors[s]), "%d", s);
        tags[s][0] = (struct casca_tag){"reporter", id};
        tags[s][1] = (struct casca_tag){"sensor", sensors[s]};
    }
    struct casca_point *pts = calloc(batch, sizeof(*pts));
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    int64_t t0 = ((int64_t)wall.tv_sec - 3600) * 1000000000;
    uint64_t seq = 0, sent = 0, refused = 0;
    double start = now_s(), end = start + seconds;
    while (now_s() < end) {
        if (rate > 0) { /* pace: never ahead of the target */
            double due = start + (double)sent / rate;
            double wait = due - now_s();
            if (wait > 0) {
                struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
        for (size_t i = 0; i < batch; i++, seq++) {
            int s = (int)(seq % 8);
            pts[i] = (struct casca_point){"bench", tags[s], 2, (double)(seq % 1000),
                                          t0 + (int64_t)(seq / 8) * 1000};
        }
        int rc = casca_report_points(r, pts, batch);
        if (rc == CASCA_OK) {
            sent += batch;
        } else {
            refused++;
            seq -= batch; /* offer the same points again */
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    uint64_t dropped = casca_reporter_close(r, 5000);
    printf("sent %llu points, %llu batches refused (buffer full), %llu dropped\n",
           (unsigned long long)sent, (unsigned long long)(refused),
           (unsigned long long)(dropped - refused));
    free(pts);
    return 0;
}
