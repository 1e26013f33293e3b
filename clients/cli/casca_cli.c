/* casca: the command-line tool for cascad, the ops tool beside grpcurl. This file is its entry
 * point: the table of commands and the table of options (the whole command-line surface, with
 * its help), the parser, and the parsers of option values. The commands live in cli_slo.c,
 * cli_settings.c, cli_carbon.c, cli_admin.c and cli_report.c; calls in cli_rpc.c, output in
 * cli_out.c.
 *
 *   casca [GLOBAL OPTIONS] COMMAND [SUBCOMMAND] [ARGS] [OPTIONS]
 *
 * Options may come anywhere after the command; global options also before it. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "clock.h"

#define DEFAULT_TARGET "127.0.0.1:50051"
#define DEFAULT_TIMEOUT_MS 5000

/* An option: --name VALUE (or --name=VALUE), or a flag --name. */
struct cli_opt {
    const char *name; /* without "--" */
    const char *arg;  /* placeholder of the value in help; NULL = a flag */
    size_t offset;    /* its field in struct cli_args: const char * for values, int for flags */
    const char *help;
};

#define ARG(field) offsetof(struct cli_args, field)

static const struct cli_opt global_opts[] = {
    {"target", "HOST:PORT", ARG(target),
     "cascad's address (default $CASCA_TARGET, else " DEFAULT_TARGET ")"},
    {"token", "TOKEN", ARG(token),
     "bearer token (default $CASCA_TOKEN; the environment keeps it out of ps)"},
    {"tls", NULL, ARG(tls), "connect with TLS, checking the server against the system's roots"},
    {"ca", "FILE", ARG(ca), "TLS, checking the server against the PEM roots in FILE"},
    {"timeout", "MS", ARG(timeout), "deadline of each call in milliseconds (default 5000)"},
    {"json", NULL, ARG(json), "print each reply as one line of JSON (protobuf JSON mapping)"},
    {"help", NULL, ARG(help), "show the help of the command"},
};

/* Options of single commands: a command lists the names it takes in cli_command.options. */
static const struct cli_opt command_opts[] = {
    {"zone", "ZONE", ARG(zone), "grid zone, e.g. AT (default: the server's default zone)"},
    {"time", "TIME", ARG(time), "a time inside the period (default now)"},
    {"granularity", "G", ARG(granularity), "hourly (default), daily, monthly or yearly"},
    {"factor-set", "NAME", ARG(factor_set), "emission factor set (default: the server's)"},
    {"mix", "SRC=SHARE,...", ARG(mix), "an energy mix instead of a zone, e.g. solar=60,gas=40"},
    {"energy", "WH", ARG(energy), "energy used, in watt-hours"},
    {"power", "W", ARG(power), "mean power in watts, drawn for --duration"},
    {"duration", "DURATION", ARG(duration), "how long --power was drawn, e.g. 90s, 1h30m"},
    {"embodied", "G", ARG(embodied), "embodied emissions in gCO2eq (with --units: the SCI score)"},
    {"units", "N", ARG(units), "functional units served (with --embodied: the SCI score)"},
    {"unit", "NAME", ARG(unit), "name of the functional unit, e.g. request"},
    {"setting", "ID", ARG(setting), "only changes of this setting"},
    {"since", "TIME", ARG(since), "from this time, inclusive (default: the oldest entry)"},
    {"until", "TIME", ARG(until), "up to this time, exclusive (default now)"},
    {"limit", "N", ARG(limit),
     "at most N entries, the oldest of the range (default 100, max 10000)"},
    {"count", "N", ARG(count), "stop after N messages"},
    {"interval", "DURATION", ARG(interval), "at most one status per SLO per DURATION, e.g. 5s"},
    {"dry-run", NULL, ARG(dry_run), "validate only: cascad checks the value and changes nothing"},
};

#define TIME_HELP                                                                                  \
    "  TIME is RFC 3339 (2022-01-01T00:00:00Z, 2022-01-01T01:00:00+01:00), a date (2022-01-01,\n"  \
    "  midnight UTC), now, or -DURATION for that long ago (-1h). DURATION is 500ms, 30s, 5m,\n"    \
    "  2h, 1d, 1h30m or plain seconds.\n"

static const struct cli_command commands[] = {
    {"slos", "list", "[ID...]", 0, -1, "", "list the SLOs: id, kind, objective, window",
     "  The SLOs visible to the caller (all, or the ids given), in configuration order.\n",
     cli_slos_list, NULL},
    {"slos", "get", "[ID...]", 0, -1, "", "current value and fulfilment of SLOs",
     "  Each SLO's value over its window, whether it is fulfilled, its compliance over the\n"
     "  compliance period, and when it was evaluated. No ID: every SLO. VALUE is '-' when the\n"
     "  window holds no data (such an SLO is not fulfilled). --json: one SloStatus per line.\n",
     cli_slos_get, NULL},
    {"slos", "watch", "[ID...]", 0, -1, "interval count", "stream SLO statuses as they change",
     "  Prints a status whenever an SLO's value, data or fulfilment changes (no ID: every\n"
     "  SLO), until Ctrl-C, --count statuses, or cascad ends the stream. --json: one\n"
     "  SloStatus per line.\n",
     cli_slos_watch, NULL},
    {"settings", "list", "[ID...]", 0, -1, "", "list the settings: id, type, range, step",
     "  The settings visible to the caller (all, or the ids given), in configuration order.\n",
     cli_settings_list, NULL},
    {"settings", "get", "[ID...]", 0, -1, "", "current values of settings",
     "  Reads each setting through to the service (or a cache no older than its max age).\n"
     "  No ID: every setting. --json: one SettingValue per line.\n",
     cli_settings_get, NULL},
    {"settings", "set", "ID VALUE", 2, 2, "dry-run", "change a setting",
     "  VALUE is read by the setting's type: an integer, a number, true/false (also yes/no,\n"
     "  on/off, 1/0), or a string (string and enum settings). cascad checks range, step, allowed\n"
     "  values, read-only, leases and the safety rails (cooldown, max step), applies the value,\n"
     "  and prints the value read back from the service. A negative VALUE works as is (-5).\n",
     cli_settings_set, NULL},
    {"settings", "watch", "[ID...]", 0, -1, "count", "stream setting values as they change",
     "  Prints the current values, then every change (no ID: every setting), until Ctrl-C,\n"
     "  --count values, or cascad ends the stream. --json: one SettingValue per line.\n",
     cli_settings_watch, NULL},
    {"carbon", "intensity", "", 0, 0, "zone time granularity", "carbon intensity of a grid zone",
     TIME_HELP, cli_carbon_intensity, NULL},
    {"carbon", "mix", "SOURCE=SHARE...", 1, -1, "factor-set", "carbon intensity of an energy mix",
     "  Shares are fractions or percentages (normalised), e.g. solar=60 gas=40. `casca carbon\n"
     "  sources` lists the sources.\n",
     cli_carbon_mix, NULL},
    {"carbon", "sources", "", 0, 0, "factor-set", "energy sources and their emission factors", "",
     cli_carbon_sources, NULL},
    {"carbon", "zones", "[PREFIX]", 0, 1, "", "grid zones with data, and their coverage",
     "  Only zones whose code starts with PREFIX when given (e.g. DE).\n", cli_carbon_zones, NULL},
    {"carbon", "footprint", "", 0, 0,
     "energy power duration zone time granularity mix factor-set embodied units unit",
     "emissions of an energy use",
     "  The energy is --energy WH, or --power W with --duration; where it came from is --zone\n"
     "  (and --time) or --mix. With --embodied and --units, also the SCI score\n"
     "  (operational + embodied) / units.\n" TIME_HELP,
     cli_carbon_footprint, NULL},
    {"agents", "list", "", 0, 0, "", "open agent sessions (operator)",
     "  Each open AgentService session: id, agent name, mode, leased settings, since when, states\n"
     "  sent, actions received and applied.\n",
     cli_agents_list, NULL},
    {"audit", NULL, "", 0, 0, "setting since until limit",
     "the audit log of setting changes (operator)",
     "  Every applied, rejected, dry-run and shadow change: when, who, setting, old and\n"
     "  new value, outcome and reason, oldest first.\n" TIME_HELP,
     cli_audit, NULL},
    {"reload", NULL, "", 0, 0, "", "re-read cascad's configuration (operator)",
     "  A bad configuration changes nothing: the errors (file:line:col) are printed and the exit\n"
     "  code is 1.\n",
     cli_reload, NULL},
    {"status", NULL, "", 0, 0, "", "cascad's version, uptime, store and counts (operator)", "",
     cli_status, NULL},
    {"report", NULL, NULL, 0, 0, NULL, "send each JSON line of stdin to a casca bus", NULL, NULL,
     cli_report},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))
#define N_GLOBAL (sizeof(global_opts) / sizeof(global_opts[0]))
#define N_COMMAND_OPTS (sizeof(command_opts) / sizeof(command_opts[0]))

static const char exit_help[] =
    "Exit codes:\n"
    "  0  success\n"
    "  1  cascad refused: unknown id, bad value, read-only or leased setting, no permission,\n"
    "     a configuration with errors (reload)... the message says what and how to fix it\n"
    "  2  bad command line (nothing was sent)\n"
    "  3  no answer: cascad unreachable or shutting down, the service behind it unavailable, or\n"
    "     the deadline passed (trying again later may work)\n";

/* ---- help ---- */

/* Whether word (space-separated) is in list. */
static int has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; p && *p;) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, " ");
        if (len == n && !strncmp(p, word, n)) return 1;
        p += len;
    }
    return 0;
}

static void print_opts(FILE *to, const struct cli_opt *o, size_t n, const char *only)
{
    for (size_t i = 0; i < n; i++) {
        if (only && !has_word(only, o[i].name)) continue;
        char left[48];
        snprintf(left, sizeof(left), "--%s%s%s", o[i].name, o[i].arg ? " " : "",
                 o[i].arg ? o[i].arg : "");
        fprintf(to, "  %-26s %s\n", left, o[i].help);
    }
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: casca [OPTIONS] COMMAND [ARGS] [OPTIONS]   (casca COMMAND --help for more)\n"
            "\nCommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        char name[40];
        snprintf(name, sizeof(name), "%s%s%s", commands[i].group, commands[i].name ? " " : "",
                 commands[i].name ? commands[i].name : "");
        fprintf(to, "  %-20s %s\n", name, commands[i].summary);
    }
    fprintf(to, "\nGlobal options:\n");
    print_opts(to, global_opts, N_GLOBAL, NULL);
    fprintf(to, "\n%s", exit_help);
}

static void group_usage(FILE *to, const char *group)
{
    fprintf(to, "usage: casca %s SUBCOMMAND [ARGS] [OPTIONS]   (casca %s SUBCOMMAND --help)\n",
            group, group);
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i].group, group))
            fprintf(to, "  %-10s %s\n", commands[i].name ? commands[i].name : "",
                    commands[i].summary);
}

static void command_usage(FILE *to, const struct cli_command *c, int full)
{
    char name[40];
    snprintf(name, sizeof(name), "%s%s%s", c->group, c->name ? " " : "", c->name ? c->name : "");
    char line[512];
    size_t n = (size_t)snprintf(line, sizeof(line), "usage: casca %s%s%s", name,
                                *c->synopsis ? " " : "", c->synopsis);
    for (size_t i = 0; i < N_COMMAND_OPTS && n < sizeof(line); i++)
        if (has_word(c->options, command_opts[i].name))
            n += (size_t)snprintf(line + n, sizeof(line) - n, " [--%s%s%s]", command_opts[i].name,
                                  command_opts[i].arg ? " " : "",
                                  command_opts[i].arg ? command_opts[i].arg : "");
    if (n > 80) /* too long for one line: the options are listed below */
        snprintf(line, sizeof(line), "usage: casca %s%s%s [OPTIONS]", name, *c->synopsis ? " " : "",
                 c->synopsis);
    fprintf(to, "%s [GLOBAL OPTIONS]\n", line);
    if (!full) {
        fprintf(to, "  (casca %s --help for more)\n", name);
        return;
    }
    fprintf(to, "  %c%s.\n%s", toupper((unsigned char)c->summary[0]), c->summary + 1, c->help);
    if (*c->options) {
        fprintf(to, "\nOptions:\n");
        print_opts(to, command_opts, N_COMMAND_OPTS, c->options);
    }
    fprintf(to, "\nGlobal options:\n");
    print_opts(to, global_opts, N_GLOBAL, NULL);
    fprintf(to, "\n%s", exit_help);
}

/* ---- the parser ---- */

static const struct cli_opt *find_opt(const struct cli_command *c, const char *name, size_t len)
{
    for (size_t i = 0; i < N_GLOBAL; i++)
        if (strlen(global_opts[i].name) == len && !strncmp(global_opts[i].name, name, len))
            return &global_opts[i];
    for (size_t i = 0; c && i < N_COMMAND_OPTS; i++)
        if (strlen(command_opts[i].name) == len && !strncmp(command_opts[i].name, name, len) &&
            has_word(c->options, command_opts[i].name))
            return &command_opts[i];
    return NULL;
}

/* A negative number is an argument, not an option: `casca settings set Offset -5`. */
static int is_option(const char *s)
{
    if (s[0] != '-' || !s[1]) return 0;
    return !(isdigit((unsigned char)s[1]) || s[1] == '.');
}

/* Parses the option at argv[*i] (advancing *i past its value). */
static int parse_opt(struct cli *cli, const struct cli_command *c, int argc, char **argv, int *i)
{
    const char *s = argv[*i];
    if (!strcmp(s, "-h")) {
        cli->a.help = 1;
        return CLI_OK;
    }
    if (s[1] != '-') {
        fprintf(stderr, "%s: unknown option %s (options are long: --help lists them)\n", cli->prog,
                s);
        return CLI_USAGE;
    }
    const char *name = s + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const struct cli_opt *o = find_opt(c, name, len);
    if (!o) {
        fprintf(stderr, "%s: unknown option --%.*s (%s --help lists the options)\n", cli->prog,
                (int)len, name, cli->prog);
        return CLI_USAGE;
    }
    char *field = (char *)&cli->a + o->offset;
    if (!o->arg) {
        if (eq) {
            fprintf(stderr, "%s: --%s takes no value\n", cli->prog, o->name);
            return CLI_USAGE;
        }
        *(int *)field = 1;
        return CLI_OK;
    }
    const char *value = eq ? eq + 1 : NULL;
    if (!value) {
        if (*i + 1 >= argc) {
            fprintf(stderr, "%s: --%s needs a value (%s)\n", cli->prog, o->name, o->arg);
            return CLI_USAGE;
        }
        value = argv[++*i];
    }
    *(const char **)field = value;
    return CLI_OK;
}

static const struct cli_command *find_command(const char *group, const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i].group, group) &&
            (!commands[i].name || (name && !strcmp(commands[i].name, name))))
            return &commands[i];
    return NULL;
}

static int is_group(const char *word)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i].group, word)) return 1;
    return 0;
}

/* Fills in what the environment and defaults give, and checks the global values. */
static int finish_globals(struct cli *cli)
{
    if (cli->a.target && !*cli->a.target) {
        fprintf(stderr, "%s: --target is empty (HOST:PORT, e.g. %s)\n", cli->prog, DEFAULT_TARGET);
        return CLI_USAGE;
    }
    if (!cli->a.target) cli->a.target = getenv("CASCA_TARGET");
    if (!cli->a.target || !*cli->a.target) cli->a.target = DEFAULT_TARGET;
    if (!cli->a.token) cli->a.token = getenv("CASCA_TOKEN");
    if (cli->a.token && !*cli->a.token) cli->a.token = NULL;
    if (cli->a.ca) cli->a.tls = 1;
    cli->timeout_ms = DEFAULT_TIMEOUT_MS;
    if (cli->a.timeout) {
        long long ms;
        if (cli_arg_int(cli, "--timeout", cli->a.timeout, 1, 24LL * 3600 * 1000, &ms))
            return CLI_USAGE;
        cli->timeout_ms = (int)ms;
    }
    return CLI_OK;
}

int main(int argc, char **argv)
{
    static char *pos[256];
    struct cli cli = {.pos = pos};
    snprintf(cli.prog, sizeof(cli.prog), "casca");

    /* global options before the command */
    int i = 1;
    for (; i < argc && is_option(argv[i]) && strcmp(argv[i], "--"); i++)
        if (parse_opt(&cli, NULL, argc, argv, &i)) return CLI_USAGE;
    if (i >= argc) {
        usage(cli.a.help ? stdout : stderr);
        return cli.a.help ? CLI_OK : CLI_USAGE;
    }
    const char *group = argv[i++];
    if (!is_group(group)) {
        fprintf(stderr, "casca: unknown command '%s' (casca --help lists the commands)\n", group);
        return CLI_USAGE;
    }
    const struct cli_command *c = find_command(group, NULL);
    if (c && c->run_argv) return c->run_argv(argc - i + 1, argv + i - 1);
    if (!c) { /* a group: the subcommand comes next */
        const char *name = i < argc ? argv[i] : NULL;
        if (!name || !strcmp(name, "--help") || !strcmp(name, "-h")) {
            group_usage(name ? stdout : stderr, group);
            return name ? CLI_OK : CLI_USAGE;
        }
        if (!(c = find_command(group, name))) {
            fprintf(stderr, "casca %s: unknown subcommand '%s'\n", group, name);
            group_usage(stderr, group);
            return CLI_USAGE;
        }
        i++;
        snprintf(cli.prog, sizeof(cli.prog), "casca %s %s", group, name);
    } else {
        snprintf(cli.prog, sizeof(cli.prog), "casca %s", group);
    }
    cli.cmd = c;

    int only_args = 0;
    for (; i < argc; i++) {
        if (!only_args && !strcmp(argv[i], "--")) {
            only_args = 1;
        } else if (!only_args && is_option(argv[i])) {
            if (parse_opt(&cli, c, argc, argv, &i)) {
                command_usage(stderr, c, 0);
                return CLI_USAGE;
            }
        } else if (cli.npos < (int)(sizeof(pos) / sizeof(pos[0]))) {
            pos[cli.npos++] = argv[i];
        } else {
            fprintf(stderr, "%s: too many arguments\n", cli.prog);
            return CLI_USAGE;
        }
    }
    if (cli.a.help) {
        command_usage(stdout, c, 1);
        return CLI_OK;
    }
    if (cli.npos < c->min_args || (c->max_args >= 0 && cli.npos > c->max_args)) {
        fprintf(stderr, "%s: %s\n", cli.prog,
                cli.npos < c->min_args ? "missing arguments" : "too many arguments");
        command_usage(stderr, c, 0);
        return CLI_USAGE;
    }
    if (finish_globals(&cli)) return CLI_USAGE;
    int rc = c->run(&cli);
    cli_close(&cli);
    return rc;
}

/* ---- values of options ---- */

int cli_arg_int(struct cli *cli, const char *opt, const char *s, long long min, long long max,
                long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max) {
        fprintf(stderr, "%s: %s '%s' is not an integer from %lld to %lld\n", cli->prog, opt, s, min,
                max);
        return CLI_USAGE;
    }
    *out = v;
    return CLI_OK;
}

int cli_arg_double(struct cli *cli, const char *opt, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v)) {
        fprintf(stderr, "%s: %s '%s' is not a number\n", cli->prog, opt, s);
        return CLI_USAGE;
    }
    *out = v;
    return CLI_OK;
}

/* "1h30m", "500ms", "1.5" (seconds); 0 on success. */
static int parse_duration(const char *s, int64_t *ns)
{
    static const struct {
        const char *unit;
        double ns;
    } units[] = {{"ns", 1},   {"us", 1e3},   {"ms", 1e6},   {"s", 1e9},
                 {"m", 60e9}, {"h", 3600e9}, {"d", 86400e9}};
    double total = 0;
    const char *p = s;
    if (!*p) return -1;
    while (*p) {
        char *end;
        if (!isdigit((unsigned char)*p) && *p != '.') return -1;
        double v = strtod(p, &end);
        if (end == p) return -1;
        p = end;
        size_t ulen = 0;
        while (isalpha((unsigned char)p[ulen]))
            ulen++;
        if (!ulen) {
            if (p != s + strlen(s) || total) return -1; /* bare seconds only on their own */
            total = v * 1e9;
            break;
        }
        size_t k = 0;
        for (; k < sizeof(units) / sizeof(units[0]); k++)
            if (strlen(units[k].unit) == ulen && !strncmp(units[k].unit, p, ulen)) break;
        if (k == sizeof(units) / sizeof(units[0])) return -1;
        total += v * units[k].ns;
        p += ulen;
    }
    if (!(total >= 0 && total < 9e18)) return -1;
    *ns = (int64_t)total;
    return 0;
}

int cli_arg_duration(struct cli *cli, const char *opt, const char *s, int64_t *ns)
{
    if (parse_duration(s, ns)) {
        fprintf(stderr, "%s: %s '%s' is not a duration (e.g. 500ms, 30s, 5m, 2h, 1d, 1h30m)\n",
                cli->prog, opt, s);
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* RFC 3339 or a date; 0 on success. */
static int parse_time(const char *s, int64_t *ns)
{
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%d", &tm);
    if (!p) return -1;
    int64_t frac = 0, offset = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        if (!(p = strptime(p + 1, "%H:%M", &tm))) return -1;
        if (*p == ':' && !(p = strptime(p + 1, "%S", &tm))) return -1;
        if (*p == '.') {
            int64_t scale = 100000000;
            for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
                frac += (*p - '0') * scale;
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int hh, mm;
            if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2 || strlen(p) != 6) return -1;
            offset = (*p == '+' ? 1 : -1) * ((int64_t)hh * 3600 + mm * 60);
            p += 6;
        } else if (*p) {
            return -1;
        }
    }
    if (*p) return -1;
    time_t t = timegm(&tm);
    *ns = ((int64_t)t - offset) * 1000000000 + frac;
    return 0;
}

int cli_arg_time(struct cli *cli, const char *opt, const char *s, int64_t *ns)
{
    int64_t ago;
    if (!strcmp(s, "now")) {
        *ns = casca_wall_ns();
        return CLI_OK;
    }
    if (s[0] == '-' && !parse_duration(s + 1, &ago)) {
        *ns = casca_wall_ns() - ago;
        return CLI_OK;
    }
    if (!parse_time(s, ns)) return CLI_OK;
    fprintf(stderr,
            "%s: %s '%s' is not a time (RFC 3339 like 2022-01-01T00:00:00Z, a date like "
            "2022-01-01, now, or -DURATION like -1h)\n",
            cli->prog, opt, s);
    return CLI_USAGE;
}
