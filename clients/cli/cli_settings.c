/* cli_settings.c: casca settings list|get|set|watch over ServiceControl. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "casca/v1/control.pb-c.h"
#include "cli.h"

#define TYPE_PREFIX "VALUE_TYPE_"

static int list_settings(struct cli *cli, char **ids, size_t n,
                         Casca__V1__ListSettingsResponse **out)
{
    Casca__V1__ListSettingsRequest req = CASCA__V1__LIST_SETTINGS_REQUEST__INIT;
    req.ids = ids;
    req.n_ids = n;
    return cli_call(cli, "/casca.v1.ServiceControl/ListSettings", &req.base,
                    &casca__v1__list_settings_response__descriptor, (ProtobufCMessage **)out);
}

/* What a setting accepts: its range, and its allowed values when it lists them. */
static void allowed_cell(struct cli_table *t, const Casca__V1__Setting *s)
{
    char b[CLI_FMT], all[512] = "";
    size_t n = 0;
    for (size_t i = 0; i < s->n_allowed && n + 1 < sizeof(all); i++)
        n += (size_t)snprintf(all + n, sizeof(all) - n, "%s%s", i ? "|" : "",
                              cli_fmt_value(b, s->allowed[i]));
    if (n >= sizeof(all)) n = sizeof(all) - 1;
    int numeric = s->type == CASCA__V1__VALUE_TYPE__VALUE_TYPE_INT ||
                  s->type == CASCA__V1__VALUE_TYPE__VALUE_TYPE_DOUBLE;
    if (s->type == CASCA__V1__VALUE_TYPE__VALUE_TYPE_BOOL && !n)
        cli_table_cell(t, "true|false");
    else if (numeric && n)
        cli_table_cell(t, "%s %s", cli_fmt_range(b, s->range), all);
    else if (numeric)
        cli_table_cell(t, "%s", cli_fmt_range(b, s->range));
    else
        cli_table_cell(t, "%s", n ? all : "any");
}

int cli_settings_list(struct cli *cli)
{
    Casca__V1__ListSettingsResponse *resp;
    int rc = list_settings(cli, cli->pos, (size_t)cli->npos, &resp);
    if (rc) return rc;
    if (cli->a.json) {
        rc = cli_print_json(&resp->base);
    } else {
        static const char *const h[] = {"ID",   "TYPE",   "ALLOWED",    "STEP",
                                        "UNIT", "ACCESS", "DESCRIPTION"};
        struct cli_table *t = cli_table_new(7, h);
        char b[CLI_FMT];
        for (size_t i = 0; i < resp->n_settings; i++) {
            const Casca__V1__Setting *s = resp->settings[i];
            cli_table_cell(t, "%s", s->id);
            cli_table_cell(
                t, "%s",
                cli_fmt_enum(b, &casca__v1__value_type__descriptor, (int)s->type, TYPE_PREFIX));
            allowed_cell(t, s);
            cli_table_cell(t, "%s", s->step ? cli_fmt_double(b, s->step) : "-");
            cli_table_cell(t, "%s", *s->unit ? s->unit : "-");
            cli_table_cell(t, "%s", s->read_only ? "read-only" : "read-write");
            cli_table_cell(t, "%s", *s->description ? s->description : "-");
        }
        cli_table_print(t, stdout);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

static const char *const value_headers[] = {"ID", "VALUE", "UNIT", "UPDATED", "CHANGED_BY"};
static const char *const watch_headers[] = {"ID", "VALUE", "UPDATED", "CHANGED_BY"};

/* unit: the setting's unit; NULL = no UNIT column (watches). */
static void value_row(struct cli_table *t, const Casca__V1__SettingValue *v, const char *unit)
{
    char b[CLI_FMT];
    cli_table_cell(t, "%s", v->id);
    cli_table_cell(t, "%s", cli_fmt_value(b, v->value));
    if (unit) cli_table_cell(t, "%s", *unit ? unit : "-");
    cli_table_cell(t, "%s", cli_fmt_time(b, v->updated_at));
    cli_table_cell(t, "%s", *v->changed_by ? v->changed_by : "-");
}

int cli_settings_get(struct cli *cli)
{
    /* the list gives the ids when none are named, the units, and NOT_FOUND for a wrong id */
    Casca__V1__ListSettingsResponse *list;
    int rc = list_settings(cli, cli->pos, (size_t)cli->npos, &list), worst = CLI_OK;
    if (rc) return rc;
    struct cli_table *t = cli->a.json ? NULL : cli_table_new(5, value_headers);
    for (size_t i = 0; i < list->n_settings; i++) {
        Casca__V1__GetSettingRequest req = CASCA__V1__GET_SETTING_REQUEST__INIT;
        req.id = list->settings[i]->id;
        Casca__V1__SettingValue *v;
        rc = cli_call(cli, "/casca.v1.ServiceControl/GetSetting", &req.base,
                      &casca__v1__setting_value__descriptor, (ProtobufCMessage **)&v);
        if (rc) { /* the others are still shown; the exit code says one failed */
            if (rc > worst) worst = rc;
            continue;
        }
        if (cli->a.json) {
            if (cli_print_json(&v->base)) worst = CLI_REFUSED;
        } else {
            value_row(t, v, list->settings[i]->unit);
        }
        protobuf_c_message_free_unpacked(&v->base, NULL);
    }
    cli_table_print(t, stdout);
    protobuf_c_message_free_unpacked(&list->base, NULL);
    return worst;
}

static int parse_bool(const char *s, protobuf_c_boolean *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no",
                                                                                "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i])) return *out = 1, 0;
        if (!strcasecmp(s, no[i])) return *out = 0, 0;
    }
    return -1;
}

/* text -> a Value of the setting's type; on failure prints why and returns CLI_USAGE. */
static int parse_value(struct cli *cli, const Casca__V1__Setting *s, char *text,
                       Casca__V1__Value *v)
{
    char *end, b[CLI_FMT];
    const char *want = NULL;
    errno = 0;
    switch (s->type) {
    case CASCA__V1__VALUE_TYPE__VALUE_TYPE_INT:
        v->kind_case = CASCA__V1__VALUE__KIND_INT_VALUE;
        v->int_value = strtoll(text, &end, 10);
        if (!*text || *end || errno) want = "an integer";
        break;
    case CASCA__V1__VALUE_TYPE__VALUE_TYPE_DOUBLE:
        v->kind_case = CASCA__V1__VALUE__KIND_DOUBLE_VALUE;
        v->double_value = strtod(text, &end);
        if (!*text || *end || errno || !isfinite(v->double_value)) want = "a number";
        break;
    case CASCA__V1__VALUE_TYPE__VALUE_TYPE_BOOL:
        v->kind_case = CASCA__V1__VALUE__KIND_BOOL_VALUE;
        if (parse_bool(text, &v->bool_value)) want = "true or false";
        break;
    default: /* string, enum (cascad checks the allowed values) */
        v->kind_case = CASCA__V1__VALUE__KIND_STRING_VALUE;
        v->string_value = text;
    }
    if (!want) return CLI_OK;
    fprintf(stderr, "%s: %s needs %s (its type is %s), not '%s'\n", cli->prog, s->id, want,
            cli_fmt_enum(b, &casca__v1__value_type__descriptor, (int)s->type, TYPE_PREFIX), text);
    return CLI_USAGE;
}

int cli_settings_set(struct cli *cli)
{
    Casca__V1__ListSettingsResponse *list;
    int rc = list_settings(cli, cli->pos, 1, &list);
    if (rc) return rc;
    if (list->n_settings != 1) { /* cascad answers NOT_FOUND first; a guard, not a path */
        fprintf(stderr, "%s: NOT_FOUND: no setting '%s'\n", cli->prog, cli->pos[0]);
        protobuf_c_message_free_unpacked(&list->base, NULL);
        return CLI_REFUSED;
    }
    const Casca__V1__Setting *s = list->settings[0];
    Casca__V1__SetSettingRequest req = CASCA__V1__SET_SETTING_REQUEST__INIT;
    Casca__V1__Value value = CASCA__V1__VALUE__INIT;
    req.id = s->id;
    req.value = &value;
    req.dry_run = cli->a.dry_run;
    Casca__V1__SettingValue *v = NULL;
    rc = parse_value(cli, s, cli->pos[1], &value);
    if (!rc)
        rc = cli_call(cli, "/casca.v1.ServiceControl/SetSetting", &req.base,
                      &casca__v1__setting_value__descriptor, (ProtobufCMessage **)&v);
    if (!rc && cli->a.json) {
        rc = cli_print_json(&v->base);
    } else if (!rc && cli->a.dry_run) {
        char b[CLI_FMT];
        printf("%s: %s is valid (dry run: nothing changed)\n", v->id, cli_fmt_value(b, v->value));
    } else if (!rc) {
        struct cli_table *t = cli_table_new(5, value_headers);
        value_row(t, v, s->unit);
        cli_table_print(t, stdout);
    }
    if (v) protobuf_c_message_free_unpacked(&v->base, NULL);
    protobuf_c_message_free_unpacked(&list->base, NULL);
    return rc;
}

static int show_value(struct cli *cli, const ProtobufCMessage *msg)
{
    static const size_t widths[] = {16, 10, 24, 10};
    static int header_done;
    struct cli_table *t = cli_table_new(4, watch_headers);
    value_row(t, (const Casca__V1__SettingValue *)msg, NULL);
    cli_table_print_stream(t, stdout, widths, &header_done);
    return 0;
}

int cli_settings_watch(struct cli *cli)
{
    Casca__V1__WatchSettingsRequest req = CASCA__V1__WATCH_SETTINGS_REQUEST__INIT;
    req.ids = cli->pos;
    req.n_ids = (size_t)cli->npos;
    return cli_watch(cli, "/casca.v1.ServiceControl/WatchSettings", &req.base,
                     &casca__v1__setting_value__descriptor, show_value);
}
