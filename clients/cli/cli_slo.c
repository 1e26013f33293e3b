/* cli_slo.c: casca slos list|get|watch over SloService. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "casca/v1/slo.pb-c.h"
#include "cli.h"
#include "timeconv.h"

static const char *kind_name(char buf[CLI_FMT], Casca__V1__SloKind kind)
{
    if (kind == CASCA__V1__SLO_KIND__SLO_KIND_CARBON_FOOTPRINT) return "carbon";
    return cli_fmt_enum(buf, &casca__v1__slo_kind__descriptor, (int)kind, "SLO_KIND_");
}

int cli_slos_list(struct cli *cli)
{
    Casca__V1__ListSlosRequest req = CASCA__V1__LIST_SLOS_REQUEST__INIT;
    req.ids = cli->pos;
    req.n_ids = (size_t)cli->npos;
    Casca__V1__ListSlosResponse *resp;
    int rc = cli_call(cli, "/casca.v1.SloService/ListSlos", &req.base,
                      &casca__v1__list_slos_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc) return rc;
    if (cli->a.json) {
        rc = cli_print_json(&resp->base);
    } else {
        static const char *const h[] = {"ID",     "KIND",        "OBJECTIVE",  "UNIT",
                                        "WINDOW", "AGGREGATION", "DESCRIPTION"};
        struct cli_table *t = cli_table_new(7, h);
        char b[CLI_FMT];
        for (size_t i = 0; i < resp->n_slos; i++) {
            const Casca__V1__Slo *s = resp->slos[i];
            cli_table_cell(t, "%s", s->id);
            cli_table_cell(t, "%s", kind_name(b, s->kind));
            cli_table_cell(t, "%s", cli_fmt_range(b, s->objective));
            cli_table_cell(t, "%s", *s->unit ? s->unit : "-");
            cli_table_cell(t, "%s", cli_fmt_duration(b, s->window));
            cli_table_cell(t, "%s", *s->aggregation ? s->aggregation : "-");
            cli_table_cell(t, "%s", *s->description ? s->description : "-");
        }
        cli_table_print(t, stdout);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

static const char *const status_headers[] = {"ID",        "VALUE",      "UNIT",    "OBJECTIVE",
                                             "FULFILLED", "COMPLIANCE", "SAMPLES", "EVALUATED"};

static void status_row(struct cli_table *t, const Casca__V1__SloStatus *s)
{
    char b[CLI_FMT];
    const Casca__V1__Slo *slo = s->slo;
    cli_table_cell(t, "%s", slo ? slo->id : "?");
    if (s->removed) {
        for (int i = 0; i < 6; i++)
            cli_table_cell(t, "%s", i == 3 ? "removed" : "-");
        cli_table_cell(t, "%s", cli_fmt_time(b, s->evaluated_at));
        return;
    }
    cli_table_cell(t, "%s", s->has_value ? cli_fmt_double(b, s->value) : "-");
    cli_table_cell(t, "%s", slo && *slo->unit ? slo->unit : "-");
    cli_table_cell(t, "%s", cli_fmt_range(b, slo ? slo->objective : NULL));
    cli_table_cell(t, "%s", !s->has_value ? "no data" : s->fulfilled ? "yes" : "no");
    if (s->compliance_covered && (s->compliance_covered->seconds || s->compliance_covered->nanos))
        cli_table_cell(t, "%.1f%% of %s", s->compliance * 100,
                       cli_fmt_duration(b, s->compliance_covered));
    else
        cli_table_cell(t, "-");
    cli_table_cell(t, "%" PRId64, s->sample_count);
    cli_table_cell(t, "%s", cli_fmt_time(b, s->evaluated_at));
}

/* The ids to read: the arguments, or every SLO (*all, freed by the caller) when none. */
static int slo_ids(struct cli *cli, Casca__V1__ListSlosResponse **all, char ***ids, size_t *n)
{
    *all = NULL;
    if (cli->npos) {
        *ids = cli->pos;
        *n = (size_t)cli->npos;
        return CLI_OK;
    }
    Casca__V1__ListSlosRequest req = CASCA__V1__LIST_SLOS_REQUEST__INIT;
    int rc = cli_call(cli, "/casca.v1.SloService/ListSlos", &req.base,
                      &casca__v1__list_slos_response__descriptor, (ProtobufCMessage **)all);
    if (rc) return rc;
    *n = (*all)->n_slos;
    *ids = calloc(*n ? *n : 1, sizeof(**ids));
    if (!*ids) {
        protobuf_c_message_free_unpacked(&(*all)->base, NULL);
        return CLI_REFUSED;
    }
    for (size_t i = 0; i < *n; i++)
        (*ids)[i] = (*all)->slos[i]->id;
    return CLI_OK;
}

int cli_slos_get(struct cli *cli)
{
    Casca__V1__ListSlosResponse *all;
    char **ids;
    size_t n;
    int rc = slo_ids(cli, &all, &ids, &n), worst = CLI_OK;
    if (rc) return rc;
    struct cli_table *t = cli->a.json ? NULL : cli_table_new(8, status_headers);
    for (size_t i = 0; i < n; i++) {
        Casca__V1__GetSloRequest req = CASCA__V1__GET_SLO_REQUEST__INIT;
        req.id = ids[i];
        Casca__V1__SloStatus *s;
        rc = cli_call(cli, "/casca.v1.SloService/GetSlo", &req.base,
                      &casca__v1__slo_status__descriptor, (ProtobufCMessage **)&s);
        if (rc) { /* the others are still shown; the exit code says one failed */
            if (rc > worst) worst = rc;
            continue;
        }
        if (cli->a.json) {
            if (cli_print_json(&s->base)) worst = CLI_REFUSED;
        } else {
            status_row(t, s);
        }
        protobuf_c_message_free_unpacked(&s->base, NULL);
    }
    cli_table_print(t, stdout);
    if (all) {
        free(ids);
        protobuf_c_message_free_unpacked(&all->base, NULL);
    }
    return worst;
}

static int show_status(struct cli *cli, const ProtobufCMessage *msg)
{
    static const size_t widths[] = {16, 8, 6, 10, 9, 18, 7, 24};
    static int header_done;
    struct cli_table *t = cli_table_new(8, status_headers);
    status_row(t, (const Casca__V1__SloStatus *)msg);
    cli_table_print_stream(t, stdout, widths, &header_done);
    return 0;
}

int cli_slos_watch(struct cli *cli)
{
    Casca__V1__WatchSlosRequest req = CASCA__V1__WATCH_SLOS_REQUEST__INIT;
    Google__Protobuf__Duration interval = GOOGLE__PROTOBUF__DURATION__INIT;
    req.ids = cli->pos;
    req.n_ids = (size_t)cli->npos;
    if (cli->a.interval) {
        int64_t ns;
        if (cli_arg_duration(cli, "--interval", cli->a.interval, &ns)) return CLI_USAGE;
        casca_duration_parts(ns, &interval.seconds, &interval.nanos);
        req.min_interval = &interval;
    }
    return cli_watch(cli, "/casca.v1.SloService/WatchSlos", &req.base,
                     &casca__v1__slo_status__descriptor, show_status);
}
