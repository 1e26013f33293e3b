/* cli_admin.c: casca agents list, audit, reload, status over AdminService (operator role). */
#include <inttypes.h>
#include <string.h>

#include "casca/v1/admin.pb-c.h"
#include "cli.h"
#include "timeconv.h"

int cli_agents_list(struct cli *cli)
{
    Casca__V1__ListAgentSessionsRequest req = CASCA__V1__LIST_AGENT_SESSIONS_REQUEST__INIT;
    Casca__V1__ListAgentSessionsResponse *resp;
    int rc =
        cli_call(cli, "/casca.v1.AdminService/ListAgentSessions", &req.base,
                 &casca__v1__list_agent_sessions_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc) return rc;
    if (cli->a.json) {
        rc = cli_print_json(&resp->base);
    } else {
        static const char *const h[] = {"SESSION", "AGENT",  "MODE",    "LEASES",
                                        "SINCE",   "STATES", "ACTIONS", "APPLIED"};
        struct cli_table *t = cli_table_new(8, h);
        char b[CLI_FMT];
        for (size_t i = 0; i < resp->n_sessions; i++) {
            const Casca__V1__AgentSessionInfo *s = resp->sessions[i];
            char leases[256] = "";
            size_t n = 0;
            for (size_t k = 0; k < s->n_leased_setting_ids && n < sizeof(leases); k++)
                n += (size_t)snprintf(leases + n, sizeof(leases) - n, "%s%s", k ? "," : "",
                                      s->leased_setting_ids[k]);
            cli_table_cell(t, "%s", s->session_id);
            cli_table_cell(t, "%s", s->agent_name);
            cli_table_cell(
                t, "%s",
                cli_fmt_enum(b, &casca__v1__agent_mode__descriptor, (int)s->mode, "AGENT_MODE_"));
            cli_table_cell(t, "%s", n ? leases : "-");
            cli_table_cell(t, "%s", cli_fmt_time(b, s->since));
            cli_table_cell(t, "%" PRIu64, s->states_sent);
            cli_table_cell(t, "%" PRIu64, s->actions_received);
            cli_table_cell(t, "%" PRIu64, s->actions_applied);
        }
        cli_table_print(t, stdout);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

static int time_opt(struct cli *cli, const char *opt, const char *s,
                    Google__Protobuf__Timestamp *ts, Google__Protobuf__Timestamp **out)
{
    int64_t ns;
    if (!s) return CLI_OK;
    if (cli_arg_time(cli, opt, s, &ns)) return CLI_USAGE;
    google__protobuf__timestamp__init(ts);
    casca_timestamp_parts(ns, &ts->seconds, &ts->nanos);
    *out = ts;
    return CLI_OK;
}

int cli_audit(struct cli *cli)
{
    Casca__V1__GetAuditLogRequest req = CASCA__V1__GET_AUDIT_LOG_REQUEST__INIT;
    Google__Protobuf__Timestamp start, end;
    long long limit = 0;
    if (time_opt(cli, "--since", cli->a.since, &start, &req.start) ||
        time_opt(cli, "--until", cli->a.until, &end, &req.end) ||
        (cli->a.limit && cli_arg_int(cli, "--limit", cli->a.limit, 1, UINT32_MAX, &limit)))
        return CLI_USAGE;
    req.limit = (uint32_t)limit;
    req.setting_id = (char *)(cli->a.setting ? cli->a.setting : "");
    Casca__V1__GetAuditLogResponse *resp;
    int rc = cli_call(cli, "/casca.v1.AdminService/GetAuditLog", &req.base,
                      &casca__v1__get_audit_log_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc) return rc;
    if (cli->a.json) {
        rc = cli_print_json(&resp->base);
    } else {
        static const char *const h[] = {"SEQ", "TIME", "CALLER",  "SETTING",
                                        "OLD", "NEW",  "OUTCOME", "REASON"};
        struct cli_table *t = cli_table_new(8, h);
        char b[CLI_FMT];
        for (size_t i = 0; i < resp->n_entries; i++) {
            const Casca__V1__AuditEntry *e = resp->entries[i];
            cli_table_cell(t, "%" PRIu64, e->seq);
            cli_table_cell(t, "%s", cli_fmt_time(b, e->time));
            cli_table_cell(t, "%s", *e->caller ? e->caller : "-");
            cli_table_cell(t, "%s", e->setting_id);
            cli_table_cell(t, "%s", cli_fmt_value(b, e->old_value));
            cli_table_cell(t, "%s", cli_fmt_value(b, e->new_value));
            cli_table_cell(t, "%s",
                           cli_fmt_enum(b, &casca__v1__audit_outcome__descriptor, (int)e->outcome,
                                        "AUDIT_OUTCOME_"));
            cli_table_cell(t, "%s", *e->reason ? e->reason : "-");
        }
        cli_table_print(t, stdout);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

int cli_reload(struct cli *cli)
{
    Casca__V1__ReloadRequest req = CASCA__V1__RELOAD_REQUEST__INIT;
    Casca__V1__ReloadResponse *resp;
    int rc = cli_call(cli, "/casca.v1.AdminService/Reload", &req.base,
                      &casca__v1__reload_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc) return rc;
    if (cli->a.json) {
        rc = cli_print_json(&resp->base);
    } else if (resp->ok) {
        printf("reloaded: configuration generation %" PRIu64 "\n", resp->generation);
    }
    for (size_t i = 0; !cli->a.json && i < resp->n_warnings; i++)
        fprintf(stderr, "warning: %s\n", resp->warnings[i]);
    if (!resp->ok) {
        if (!cli->a.json) {
            fprintf(stderr,
                    "%s: the configuration has errors; nothing changed (generation %" PRIu64
                    " stays in effect):\n",
                    cli->prog, resp->generation);
            for (size_t i = 0; i < resp->n_errors; i++)
                fprintf(stderr, "  %s\n", resp->errors[i]);
        }
        rc = CLI_REFUSED;
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

int cli_status(struct cli *cli)
{
    Casca__V1__GetStatusRequest req = CASCA__V1__GET_STATUS_REQUEST__INIT;
    Casca__V1__GetStatusResponse *r;
    int rc = cli_call(cli, "/casca.v1.AdminService/GetStatus", &req.base,
                      &casca__v1__get_status_response__descriptor, (ProtobufCMessage **)&r);
    if (rc) return rc;
    if (cli->a.json) {
        rc = cli_print_json(&r->base);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        return rc;
    }
    char b[CLI_FMT], b2[CLI_FMT];
    struct cli_table *t = cli_table_new(2, NULL);
    cli_table_cell(t, "version");
    cli_table_cell(t, "%s", r->version);
    cli_table_cell(t, "uptime");
    cli_table_cell(t, "%s (since %s)", cli_fmt_duration(b, r->uptime),
                   cli_fmt_time(b2, r->started_at));
    cli_table_cell(t, "config");
    cli_table_cell(t, "%s (generation %" PRIu64 ")", *r->config_path ? r->config_path : "-",
                   r->config_generation);
    cli_table_cell(t, "store");
    cli_table_cell(t, "%s of %s", cli_fmt_bytes(b, r->store_size_bytes),
                   cli_fmt_bytes(b2, r->store_map_size_bytes));
    cli_table_cell(t, "calls");
    cli_table_cell(t, "%" PRIu64 " total, %" PRIu64 " active, %" PRIu64 " failed", r->calls_total,
                   r->calls_active, r->calls_failed);
    for (size_t i = 0; i < r->n_counts; i++) {
        cli_table_cell(t, "%s", r->counts[i]->key);
        cli_table_cell(t, "%" PRId64, r->counts[i]->value);
    }
    cli_table_print(t, stdout);
    if (r->n_hooks) {
        static const char *const h[] = {"HOOK", "QUEUED", "DROPPED", "STORED", "ERRORS"};
        struct cli_table *ht = cli_table_new(5, h);
        for (size_t i = 0; i < r->n_hooks; i++) {
            const Casca__V1__HookStatus *hs = r->hooks[i];
            cli_table_cell(ht, "%s", hs->name);
            cli_table_cell(ht, "%" PRIu64, hs->queued);
            cli_table_cell(ht, "%" PRIu64, hs->dropped);
            cli_table_cell(ht, "%" PRIu64, hs->stored);
            cli_table_cell(ht, "%" PRIu64, hs->errors);
        }
        printf("\n");
        cli_table_print(ht, stdout);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return rc;
}
