/* cli_carbon.c: casca carbon intensity|mix|sources|zones|footprint over CarbonService. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "casca/v1/carbon.pb-c.h"
#include "cli.h"
#include "timeconv.h"

#define MAX_SHARES 64

static const char *granularity_name(char b[CLI_FMT], Casca__V1__Granularity g)
{
    return cli_fmt_enum(b, &casca__v1__granularity__descriptor, (int)g, "GRANULARITY_");
}

static int parse_granularity(struct cli *cli, Casca__V1__Granularity *g)
{
    static const struct {
        const char *name;
        Casca__V1__Granularity g;
    } names[] = {{"hourly", CASCA__V1__GRANULARITY__GRANULARITY_HOURLY},
                 {"daily", CASCA__V1__GRANULARITY__GRANULARITY_DAILY},
                 {"monthly", CASCA__V1__GRANULARITY__GRANULARITY_MONTHLY},
                 {"yearly", CASCA__V1__GRANULARITY__GRANULARITY_YEARLY}};
    *g = CASCA__V1__GRANULARITY__GRANULARITY_UNSPECIFIED;
    if (!cli->a.granularity) return CLI_OK;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcasecmp(cli->a.granularity, names[i].name)) return *g = names[i].g, CLI_OK;
    fprintf(stderr, "%s: --granularity '%s' is not hourly, daily, monthly or yearly\n", cli->prog,
            cli->a.granularity);
    return CLI_USAGE;
}

/* --time into ts (unset: left NULL, the server takes now). */
static int parse_time_opt(struct cli *cli, Google__Protobuf__Timestamp *ts,
                          Google__Protobuf__Timestamp **out)
{
    *out = NULL;
    if (!cli->a.time) return CLI_OK;
    int64_t ns;
    if (cli_arg_time(cli, "--time", cli->a.time, &ns)) return CLI_USAGE;
    google__protobuf__timestamp__init(ts);
    casca_timestamp_parts(ns, &ts->seconds, &ts->nanos);
    *out = ts;
    return CLI_OK;
}

/* Shares "SOURCE=SHARE", each word possibly several separated by commas, into shares[] (whose
 * source strings point into a copy, *text, freed by the caller). */
static int parse_shares(struct cli *cli, char **words, size_t nwords, Casca__V1__MixShare *shares,
                        Casca__V1__MixShare **ptrs, size_t *n, char **text)
{
    size_t len = 0;
    for (size_t i = 0; i < nwords; i++)
        len += strlen(words[i]) + 1;
    char *all = *text = malloc(len + 1), *p = all;
    if (!all) return CLI_REFUSED;
    for (size_t i = 0; i < nwords; i++)
        p += sprintf(p, "%s%s", i ? "," : "", words[i]);
    *n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(all, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok) {
            fprintf(stderr, "%s: '%s' is not SOURCE=SHARE (e.g. solar=60)\n", cli->prog, tok);
            return CLI_USAGE;
        }
        if (*n == MAX_SHARES) {
            fprintf(stderr, "%s: more than %d shares\n", cli->prog, MAX_SHARES);
            return CLI_USAGE;
        }
        *eq = 0;
        casca__v1__mix_share__init(&shares[*n]);
        shares[*n].source = tok;
        if (cli_arg_double(cli, tok, eq + 1, &shares[*n].share)) return CLI_USAGE;
        ptrs[*n] = &shares[*n];
        ++*n;
    }
    if (!*n) {
        fprintf(stderr, "%s: no SOURCE=SHARE given\n", cli->prog);
        return CLI_USAGE;
    }
    return CLI_OK;
}

static const char *const intensity_headers[] = {"ZONE",     "TIME",  "PERIOD",    "GCO2EQ/KWH",
                                                "PROVIDER", "BASIS", "ESTIMATED", "NOTE"};

static void intensity_row(struct cli_table *t, const Casca__V1__Intensity *in)
{
    char b[CLI_FMT];
    cli_table_cell(t, "%s", *in->zone ? in->zone : "-");
    cli_table_cell(t, "%s", cli_fmt_time(b, in->time));
    cli_table_cell(t, "%s", in->granularity ? granularity_name(b, in->granularity) : "-");
    cli_table_cell(t, "%s", cli_fmt_double(b, in->gco2eq_per_kwh));
    cli_table_cell(t, "%s", *in->provider ? in->provider : "-");
    cli_table_cell(t, "%s", *in->basis ? in->basis : "-");
    cli_table_cell(t, "%s", in->estimated ? "yes" : "no");
    cli_table_cell(t, "%s", *in->note ? in->note : "-");
}

static int print_intensity(struct cli *cli, Casca__V1__Intensity *in)
{
    int rc = CLI_OK;
    if (cli->a.json) {
        rc = cli_print_json(&in->base);
    } else if (*in->zone) {
        struct cli_table *t = cli_table_new(8, intensity_headers);
        intensity_row(t, in);
        cli_table_print(t, stdout);
    } else { /* a mix: no zone, time or provider */
        static const char *const h[] = {"GCO2EQ/KWH", "FACTOR_SET", "BASIS"};
        struct cli_table *t = cli_table_new(3, h);
        char b[CLI_FMT];
        cli_table_cell(t, "%s", cli_fmt_double(b, in->gco2eq_per_kwh));
        cli_table_cell(t, "%s", *in->factor_set ? in->factor_set : "-");
        cli_table_cell(t, "%s", *in->basis ? in->basis : "-");
        cli_table_print(t, stdout);
    }
    protobuf_c_message_free_unpacked(&in->base, NULL);
    return rc;
}

int cli_carbon_intensity(struct cli *cli)
{
    Casca__V1__GetLocationIntensityRequest req = CASCA__V1__GET_LOCATION_INTENSITY_REQUEST__INIT;
    Google__Protobuf__Timestamp ts;
    if (parse_granularity(cli, &req.granularity) || parse_time_opt(cli, &ts, &req.time))
        return CLI_USAGE;
    req.zone = (char *)(cli->a.zone ? cli->a.zone : "");
    Casca__V1__Intensity *in;
    int rc = cli_call(cli, "/casca.v1.CarbonService/GetLocationIntensity", &req.base,
                      &casca__v1__intensity__descriptor, (ProtobufCMessage **)&in);
    return rc ? rc : print_intensity(cli, in);
}

int cli_carbon_mix(struct cli *cli)
{
    Casca__V1__GetMixIntensityRequest req = CASCA__V1__GET_MIX_INTENSITY_REQUEST__INIT;
    Casca__V1__MixShare shares[MAX_SHARES], *ptrs[MAX_SHARES];
    char *text = NULL;
    int rc = parse_shares(cli, cli->pos, (size_t)cli->npos, shares, ptrs, &req.n_shares, &text);
    if (!rc) {
        req.shares = ptrs;
        req.factor_set = (char *)(cli->a.factor_set ? cli->a.factor_set : "");
        Casca__V1__Intensity *in;
        rc = cli_call(cli, "/casca.v1.CarbonService/GetMixIntensity", &req.base,
                      &casca__v1__intensity__descriptor, (ProtobufCMessage **)&in);
        if (!rc) rc = print_intensity(cli, in);
    }
    free(text);
    return rc;
}

int cli_carbon_sources(struct cli *cli)
{
    Casca__V1__ListSourcesRequest req = CASCA__V1__LIST_SOURCES_REQUEST__INIT;
    req.factor_set = (char *)(cli->a.factor_set ? cli->a.factor_set : "");
    Casca__V1__ListSourcesResponse *resp;
    int rc = cli_call(cli, "/casca.v1.CarbonService/ListSources", &req.base,
                      &casca__v1__list_sources_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc) return rc;
    if (cli->a.json) {
        rc = cli_print_json(&resp->base);
    } else {
        static const char *const h[] = {"SOURCE", "GCO2EQ/KWH", "FACTOR_SET", "DESCRIPTION"};
        struct cli_table *t = cli_table_new(4, h);
        char b[CLI_FMT];
        for (size_t i = 0; i < resp->n_sources; i++) {
            cli_table_cell(t, "%s", resp->sources[i]->source);
            cli_table_cell(t, "%s", cli_fmt_double(b, resp->sources[i]->gco2eq_per_kwh));
            cli_table_cell(t, "%s", resp->factor_set);
            cli_table_cell(t, "%s",
                           *resp->sources[i]->description ? resp->sources[i]->description : "-");
        }
        cli_table_print(t, stdout);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

int cli_carbon_zones(struct cli *cli)
{
    Casca__V1__ListZonesRequest req = CASCA__V1__LIST_ZONES_REQUEST__INIT;
    req.prefix = cli->npos ? cli->pos[0] : "";
    Casca__V1__ListZonesResponse *resp;
    int rc = cli_call(cli, "/casca.v1.CarbonService/ListZones", &req.base,
                      &casca__v1__list_zones_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc) return rc;
    if (cli->a.json) {
        rc = cli_print_json(&resp->base);
    } else {
        static const char *const h[] = {"ZONE", "NAME",          "FIRST",
                                        "LAST", "GRANULARITIES", "PROVIDER"};
        struct cli_table *t = cli_table_new(6, h);
        char b[CLI_FMT];
        for (size_t i = 0; i < resp->n_zones; i++) {
            const Casca__V1__Zone *z = resp->zones[i];
            char g[128] = "";
            size_t n = 0;
            for (size_t k = 0; k < z->n_granularities && n < sizeof(g); k++)
                n += (size_t)snprintf(g + n, sizeof(g) - n, "%s%s", k ? "," : "",
                                      granularity_name(b, z->granularities[k]));
            cli_table_cell(t, "%s", z->zone);
            cli_table_cell(t, "%s", *z->name ? z->name : "-");
            cli_table_cell(t, "%s", cli_fmt_time(b, z->first));
            cli_table_cell(t, "%s", cli_fmt_time(b, z->last));
            cli_table_cell(t, "%s", n ? g : "-");
            cli_table_cell(t, "%s", *z->provider ? z->provider : "-");
        }
        cli_table_print(t, stdout);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

static void print_footprint(const Casca__V1__Footprint *f)
{
    char b[CLI_FMT], b2[CLI_FMT];
    struct cli_table *t = cli_table_new(2, NULL);
    cli_table_cell(t, "footprint");
    cli_table_cell(t, "%s gCO2eq", cli_fmt_double(b, f->gco2eq));
    cli_table_cell(t, "energy");
    cli_table_cell(t, "%s Wh", cli_fmt_double(b, f->energy_wh));
    const Casca__V1__Intensity *in = f->intensity;
    if (in) {
        cli_table_cell(t, "intensity");
        cli_table_cell(t, "%s gCO2eq/kWh", cli_fmt_double(b, in->gco2eq_per_kwh));
        if (*in->zone) {
            cli_table_cell(t, "zone");
            cli_table_cell(t, "%s", in->zone);
            cli_table_cell(t, "period");
            cli_table_cell(t, "%s (%s)", cli_fmt_time(b, in->time),
                           granularity_name(b2, in->granularity));
        }
        if (*in->provider) {
            cli_table_cell(t, "provider");
            cli_table_cell(t, "%s", in->provider);
        }
        if (*in->factor_set) {
            cli_table_cell(t, "factor set");
            cli_table_cell(t, "%s", in->factor_set);
        }
        cli_table_cell(t, "basis");
        cli_table_cell(t, "%s", *in->basis ? in->basis : "-");
        cli_table_cell(t, "estimated");
        cli_table_cell(t, "%s%s%s", in->estimated ? "yes" : "no", *in->note ? ": " : "", in->note);
    }
    if (f->has_sci) {
        cli_table_cell(t, "sci");
        cli_table_cell(t, "%s gCO2eq per %s", cli_fmt_double(b, f->sci_gco2eq_per_unit),
                       *f->functional_unit ? f->functional_unit : "unit");
    }
    cli_table_print(t, stdout);
}

int cli_carbon_footprint(struct cli *cli)
{
    Casca__V1__ComputeFootprintRequest req = CASCA__V1__COMPUTE_FOOTPRINT_REQUEST__INIT;
    Casca__V1__PowerDuration power = CASCA__V1__POWER_DURATION__INIT;
    Google__Protobuf__Duration dur = GOOGLE__PROTOBUF__DURATION__INIT;
    Casca__V1__ZoneTime at = CASCA__V1__ZONE_TIME__INIT;
    Casca__V1__MixShares mix = CASCA__V1__MIX_SHARES__INIT;
    Casca__V1__MixShare shares[MAX_SHARES], *ptrs[MAX_SHARES];
    Google__Protobuf__Timestamp ts;
    const struct cli_args *a = &cli->a;
    char *text = NULL;

    if (!!a->energy == !!a->power) {
        fprintf(stderr, "%s: give the energy as --energy WH, or --power W with --duration\n",
                cli->prog);
        return CLI_USAGE;
    }
    if (!!a->power != !!a->duration) {
        fprintf(stderr, "%s: --power and --duration go together (mean watts over a time)\n",
                cli->prog);
        return CLI_USAGE;
    }
    if (a->mix && (a->zone || a->time || a->granularity)) {
        fprintf(stderr,
                "%s: --mix replaces --zone, --time and --granularity: give one or the other\n",
                cli->prog);
        return CLI_USAGE;
    }
    if (a->factor_set && !a->mix) {
        fprintf(stderr, "%s: --factor-set goes with --mix (a zone's intensity has its own)\n",
                cli->prog);
        return CLI_USAGE;
    }
    if (!!a->embodied != !!a->units) {
        fprintf(stderr, "%s: the SCI score needs both --embodied and --units\n", cli->prog);
        return CLI_USAGE;
    }
    if (a->energy) {
        req.energy_case = CASCA__V1__COMPUTE_FOOTPRINT_REQUEST__ENERGY_ENERGY_WH;
        if (cli_arg_double(cli, "--energy", a->energy, &req.energy_wh)) return CLI_USAGE;
    } else {
        int64_t ns;
        if (cli_arg_double(cli, "--power", a->power, &power.power_w) ||
            cli_arg_duration(cli, "--duration", a->duration, &ns))
            return CLI_USAGE;
        casca_duration_parts(ns, &dur.seconds, &dur.nanos);
        power.duration = &dur;
        req.energy_case = CASCA__V1__COMPUTE_FOOTPRINT_REQUEST__ENERGY_POWER;
        req.power = &power;
    }
    if (a->embodied) {
        req.optional_embodied_gco2eq_case =
            CASCA__V1__COMPUTE_FOOTPRINT_REQUEST__OPTIONAL_EMBODIED_GCO2EQ_EMBODIED_GCO2EQ;
        req.optional_functional_units_case =
            CASCA__V1__COMPUTE_FOOTPRINT_REQUEST__OPTIONAL_FUNCTIONAL_UNITS_FUNCTIONAL_UNITS;
        if (cli_arg_double(cli, "--embodied", a->embodied, &req.embodied_gco2eq) ||
            cli_arg_double(cli, "--units", a->units, &req.functional_units))
            return CLI_USAGE;
    }
    req.functional_unit = (char *)(a->unit ? a->unit : "");
    int rc;
    if (a->mix) {
        char *words[1] = {(char *)a->mix};
        rc = parse_shares(cli, words, 1, shares, ptrs, &mix.n_shares, &text);
        mix.shares = ptrs;
        mix.factor_set = (char *)(a->factor_set ? a->factor_set : "");
        req.where_case = CASCA__V1__COMPUTE_FOOTPRINT_REQUEST__WHERE_MIX;
        req.mix = &mix;
    } else {
        at.zone = (char *)(a->zone ? a->zone : "");
        rc = parse_granularity(cli, &at.granularity);
        if (!rc) rc = parse_time_opt(cli, &ts, &at.time);
        req.where_case = CASCA__V1__COMPUTE_FOOTPRINT_REQUEST__WHERE_AT;
        req.at = &at;
    }
    Casca__V1__Footprint *f = NULL;
    if (!rc)
        rc = cli_call(cli, "/casca.v1.CarbonService/ComputeFootprint", &req.base,
                      &casca__v1__footprint__descriptor, (ProtobufCMessage **)&f);
    if (!rc && cli->a.json)
        rc = cli_print_json(&f->base);
    else if (!rc)
        print_footprint(f);
    if (f) protobuf_c_message_free_unpacked(&f->base, NULL);
    free(text);
    return rc;
}
