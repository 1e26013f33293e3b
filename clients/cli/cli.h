/* cli.h: the pieces the casca tool's files share: the command table's row, the parsed command
 * line, exit codes, calls to cascad (cli_rpc.c) and output helpers (cli_out.c).
 * The tool is single-threaded: nothing here is thread-safe, and nothing needs to be. */
#ifndef CASCA_CLI_H
#define CASCA_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <protobuf-c/protobuf-c.h>

#include "casca/v1/common.pb-c.h"
#include "casca_client.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"

/* Exit codes: one per thing a script may want to tell apart. */
enum cli_exit {
    CLI_OK = 0,      /* done */
    CLI_REFUSED = 1, /* cascad answered with an error (unknown id, bad value, no permission...) */
    CLI_USAGE = 2,   /* bad command line; nothing was sent */
    CLI_UNREACHABLE = 3, /* no answer: cascad (or the service behind it) unavailable, or deadline */
};

/* Every option of every command, as given (values are parsed by the command that takes them).
 * Flags are ints (1 = given); the rest point into argv, NULL when not given. */
struct cli_args {
    /* global */
    const char *target, *token, *ca, *timeout;
    int tls, json, help;
    /* per command */
    const char *zone, *time, *granularity, *factor_set, *mix, *energy, *power, *duration;
    const char *embodied, *units, *unit, *setting, *since, *until, *limit, *count, *interval;
    int dry_run;
};

struct cli;

/* One row of the command table (casca_cli.c). */
struct cli_command {
    const char *group;           /* first word ("settings"), or the whole command ("status") */
    const char *name;            /* second word ("set"); NULL for a one-word command */
    const char *synopsis;        /* positional arguments for the usage line, e.g. "ID VALUE" */
    int min_args, max_args;      /* positional argument count; max_args -1 = any number */
    const char *options;         /* space-separated names of the command's own options */
    const char *summary;         /* one line for the command list */
    const char *help;            /* what --help adds below the usage line */
    int (*run)(struct cli *cli); /* returns an enum cli_exit */
    int (*run_argv)(int argc, char **argv); /* instead of run: parses its own arguments */
};

/* A parsed command line; the client is opened on the first call. */
struct cli {
    const struct cli_command *cmd;
    char prog[64]; /* "casca settings set", for messages */
    struct cli_args a;
    char **pos; /* positional arguments */
    int npos;
    int timeout_ms; /* deadline of unary calls */
    struct casca_client *client;
};

/* ---- commands (cli_slo.c, cli_settings.c, cli_carbon.c, cli_admin.c, cli_report.c) ---- */
int cli_slos_list(struct cli *cli);
int cli_slos_get(struct cli *cli);
int cli_slos_watch(struct cli *cli);
int cli_settings_list(struct cli *cli);
int cli_settings_get(struct cli *cli);
int cli_settings_set(struct cli *cli);
int cli_settings_watch(struct cli *cli);
int cli_carbon_intensity(struct cli *cli);
int cli_carbon_mix(struct cli *cli);
int cli_carbon_sources(struct cli *cli);
int cli_carbon_zones(struct cli *cli);
int cli_carbon_footprint(struct cli *cli);
int cli_agents_list(struct cli *cli);
int cli_audit(struct cli *cli);
int cli_reload(struct cli *cli);
int cli_status(struct cli *cli);
int cli_report(int argc, char **argv);

/* ---- calls to cascad (cli_rpc.c) ---- */

/* A unary call. On success CLI_OK and *reply (free with protobuf_c_message_free_unpacked); on
 * failure prints "PROG: CODE_NAME: message" to stderr and returns CLI_REFUSED or
 * CLI_UNREACHABLE, *reply NULL. */
int cli_call(struct cli *cli, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply);

/* Called for each message of a watch in human mode; returns 0 to go on, 1 to stop. */
typedef int (*cli_watch_fn)(struct cli *cli, const ProtobufCMessage *msg);

/* A server-streaming call (WatchSlos, WatchSettings): prints each message (JSON: one object per
 * line; else through show) until SIGINT or SIGTERM (CLI_OK), --count messages (CLI_OK), or the
 * end of the stream (CLI_OK if the server ended it with OK, else as cli_call). */
int cli_watch(struct cli *cli, const char *method, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *desc, cli_watch_fn show);

/* The exit code for a gRPC status code (0 -> CLI_OK). */
int cli_exit_of_status(int code);
/* "NOT_FOUND" for 5...; never NULL. */
const char *cli_status_name(int code);

/* Closes the client if one was opened. */
void cli_close(struct cli *cli);

/* ---- argument parsing (casca_cli.c): each prints what was wrong and returns CLI_USAGE ---- */

/* A positive or zero decimal integer (opt names the option, e.g. "--limit"). */
int cli_arg_int(struct cli *cli, const char *opt, const char *s, long long min, long long max,
                long long *out);
/* A finite number. */
int cli_arg_double(struct cli *cli, const char *opt, const char *s, double *out);
/* A duration: "500ms", "30s", "5m", "2h", "1d", "1h30m" or plain seconds ("1.5"). */
int cli_arg_duration(struct cli *cli, const char *opt, const char *s, int64_t *ns);
/* A time: RFC 3339 ("2022-01-01T00:00:00Z", "2022-01-01T01:00:00+01:00"), a date
 * ("2022-01-01" = midnight UTC), "now", or "-DURATION" (that long ago). */
int cli_arg_time(struct cli *cli, const char *opt, const char *s, int64_t *ns);

/* ---- output (cli_out.c) ---- */

/* Prints msg as one line of JSON (the protobuf JSON mapping: lowerCamel names, enums by name,
 * 64-bit integers as strings, Timestamp as RFC 3339, Duration as "1.5s"; fields with default
 * values are included). Returns CLI_OK, or CLI_REFUSED if stdout failed. */
int cli_print_json(const ProtobufCMessage *msg);

/* A table of strings printed with aligned columns (kubectl-style: upper-case headers, two
 * spaces between columns, the last column not padded). Cells are copied. */
struct cli_table;
/* ncols headers (NULL: no header row); NULL on allocation failure (then every other call is a
 * no-op). */
struct cli_table *cli_table_new(size_t ncols, const char *const *headers);
/* Appends one cell (printf-style) to the current row; a row ends after ncols cells. Control
 * characters in cells are printed as spaces. */
void cli_table_cell(struct cli_table *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints the table to f (nothing for a NULL table) and frees it. */
void cli_table_print(struct cli_table *t, FILE *f);
/* For rows of a stream, which cannot be measured ahead: prints t's rows with every column at
 * least min_widths[col] wide, the header only when *header_done is 0 (then sets it); frees t. */
void cli_table_print_stream(struct cli_table *t, FILE *f, const size_t *min_widths,
                            int *header_done);

/* Formatters: write into buf (always NUL-terminated) and return buf. */
#define CLI_FMT 96
char *cli_fmt_double(char buf[CLI_FMT], double v);                 /* "24", "84.73", "1.5e-07" */
char *cli_fmt_value(char buf[CLI_FMT], const Casca__V1__Value *v); /* "6", "true", "fast", "-" */
char *cli_fmt_range(char buf[CLI_FMT], const Casca__V1__Range *r); /* "[1, 8]", ">= 24", "any" */
char *cli_fmt_time(char buf[CLI_FMT], const Google__Protobuf__Timestamp *t); /* RFC 3339 UTC, "-" */
char *cli_fmt_duration(char buf[CLI_FMT], const Google__Protobuf__Duration *d); /* "1h30m", "-" */
char *cli_fmt_bytes(char buf[CLI_FMT], uint64_t n);                             /* "12.5 MiB" */
/* An enum value's name without its prefix, lower-case: (VALUE_TYPE_INT, "VALUE_TYPE_") -> "int". */
char *cli_fmt_enum(char buf[CLI_FMT], const ProtobufCEnumDescriptor *d, int value,
                   const char *prefix);

#endif
