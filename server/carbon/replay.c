/* replay: the carbon replay clock (see replay.h). */
#include "replay.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "yamldoc.h"

#define NS 1000000000LL
#define MAX_SPEED 100000.0 /* a year in about five minutes */

/* "2022-03-14T00:00:00Z", "2022-03-14T00:00:00+01:00" or "2022-03-14" (midnight UTC). */
static bool parse_when(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *p = strptime(s, "%Y-%m-%d", &tm);
    if (!p) return false;
    long offset = 0;
    if (*p == 'T' || *p == ' ') {
        if (!(p = strptime(p + 1, "%H:%M:%S", &tm))) return false;
        if (*p == 'Z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int h, m;
            if (sscanf(p + 1, "%2d:%2d", &h, &m) != 2 || h > 23 || m > 59) return false;
            offset = (*p == '-' ? -1 : 1) * (h * 3600L + m * 60L);
            p += 6;
        } else {
            return false; /* a time needs its zone: Z or an offset */
        }
    }
    if (*p) return false;
    time_t t = timegm(&tm);
    if (t < 0) return false;
    *out = ((int64_t)t - offset) * NS;
    return true;
}

void replay_parse(struct config_loader *ld, const struct yd_node *n, struct replay_conf *out)
{
    memset(out, 0, sizeof(*out));
    if (!n || (n->kind == YD_SCALAR && n->plain && (!*n->scalar || !strcmp(n->scalar, "null"))))
        return;
    if (!config_expect(ld, NULL, n, YD_MAP,
                       "carbon.replay: expected a map such as {from: 2022-03-14T00:00:00Z, "
                       "speed: 120}"))
        return;
    static const struct config_key keys[] = {{"from"}, {"speed"}, {NULL}};
    config_check_keys(ld, NULL, n, keys, "carbon.replay");
    const struct yd_node *from = yd_get(n, "from"), *speed = yd_get(n, "speed");
    bool ok = true;
    if (!from || from->kind != YD_SCALAR || !parse_when(from->scalar, &out->from_ns)) {
        config_error(ld, from ? from : n,
                     "carbon.replay: 'from' is required: the UTC time the replay starts at, "
                     "e.g. from: 2022-03-14T00:00:00Z");
        ok = false;
    }
    out->speed = 1;
    if (speed) {
        const char *why = speed->kind == YD_SCALAR ? config_parse_double(speed->scalar, &out->speed)
                                                   : "expected a number";
        if (!why && !(out->speed >= 1 && out->speed <= MAX_SPEED))
            why = "out of range: use 1 (real time) to 100000";
        if (why) {
            config_error(ld, speed, "carbon.replay: speed: %s%s%s", why,
                         speed->kind == YD_SCALAR ? ": " : "",
                         speed->kind == YD_SCALAR ? speed->scalar : "");
            ok = false;
        }
    }
    out->on = ok;
}

void replay_clock_init(struct replay_clock *rc)
{
    memset(rc, 0, sizeof(*rc));
    pthread_mutex_init(&rc->lock, NULL);
}

void replay_clock_destroy(struct replay_clock *rc)
{
    pthread_mutex_destroy(&rc->lock);
}

int64_t replay_time(struct replay_clock *rc, const struct replay_conf *conf, int64_t real_ns)
{
    if (!conf->on)
        return real_ns;
    pthread_mutex_lock(&rc->lock);
    if (!rc->conf.on || rc->conf.from_ns != conf->from_ns || rc->conf.speed != conf->speed) {
        rc->conf = *conf;
        rc->start_ns = real_ns;
    }
    int64_t start = rc->start_ns;
    pthread_mutex_unlock(&rc->lock);
    return conf->from_ns + (int64_t)((double)(real_ns - start) * conf->speed);
}

void replay_note(const struct replay_conf *conf, char *buf, size_t len)
{
    if (!conf->on) {
        if (len) *buf = 0;
        return;
    }
    time_t t = (time_t)(conf->from_ns / NS);
    struct tm tm;
    gmtime_r(&t, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(buf, len, "replayed: from %s at %gx", when, conf->speed);
}
