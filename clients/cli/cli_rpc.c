/* cli_rpc.c: the casca tool's calls to cascad through libcasca's client: opening the client from
 * the global options, unary calls and watches, and turning a gRPC status into a message and an
 * exit code, in one place. */
#include <signal.h>
#include <string.h>

#include "casca_err.h"
#include "cli.h"

#define STATUS_DEADLINE_EXCEEDED 4
#define STATUS_UNAVAILABLE 14

const char *cli_status_name(int code)
{
    return casca_grpc_code_name(code);
}

int cli_exit_of_status(int code)
{
    if (code == 0) return CLI_OK;
    if (code == STATUS_UNAVAILABLE || code == STATUS_DEADLINE_EXCEEDED) return CLI_UNREACHABLE;
    return CLI_REFUSED;
}

/* The exit code and message of a failed call: the server's status, or what failed locally. */
static int fail(struct cli *cli, int rc, const struct casca_status *st)
{
    int code = st->code;
    if (!code) /* a local failure without a status: classify it by the error */
        code = rc == CASCA_ERR_UNAVAILABLE  ? STATUS_UNAVAILABLE
               : rc == CASCA_ERR_TIMEOUT    ? STATUS_DEADLINE_EXCEEDED
               : rc == CASCA_ERR_INVALID    ? 3
               : rc == CASCA_ERR_UNAUTH     ? 16
               : rc == CASCA_ERR_PERMISSION ? 7
                                            : 2;
    const char *msg = st->message[0] ? st->message : casca_strerror(rc);
    fprintf(stderr, "%s: %s: %s", cli->prog, cli_status_name(code), msg);
    if (cli_exit_of_status(code) == CLI_UNREACHABLE && !strstr(msg, cli->a.target))
        fprintf(stderr, " (cascad at %s)", cli->a.target);
    fputc('\n', stderr);
    return cli_exit_of_status(code);
}

static int open_client(struct cli *cli)
{
    if (cli->client) return CLI_OK;
    struct casca_client_options o = {
        .token = cli->a.token,
        .tls = cli->a.tls,
        .ca_file = cli->a.ca,
        .timeout_ms = cli->timeout_ms,
        .connect_timeout_ms = cli->timeout_ms,
    };
    struct casca_status st = {0};
    int rc = casca_client_open(cli->a.target, &o, &cli->client, &st);
    if (rc) {
        fprintf(stderr, "%s: cannot use target '%s': %s\n", cli->prog, cli->a.target,
                st.message[0] ? st.message : casca_strerror(rc));
        return CLI_USAGE;
    }
    return CLI_OK;
}

int cli_call(struct cli *cli, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply)
{
    *reply = NULL;
    int rc = open_client(cli);
    if (rc) return rc;
    struct casca_status st = {0};
    rc = casca_call(cli->client, method, req, reply_desc, reply, &st);
    if (rc == CASCA_OK && *reply) return CLI_OK;
    return fail(cli, rc ? rc : CASCA_ERR_INTERNAL, &st);
}

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int cli_watch(struct cli *cli, const char *method, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *desc, cli_watch_fn show)
{
    long long count = 0;
    if (cli->a.count && cli_arg_int(cli, "--count", cli->a.count, 1, 1000000000, &count))
        return CLI_USAGE;
    int rc = open_client(cli);
    if (rc) return rc;

    /* no SA_RESTART: a signal ends the wait for the next message at once */
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct casca_status st = {0};
    struct casca_stream *s = NULL;
    rc = casca_stream_open(cli->client, method, req, 1, &s, &st);
    if (rc) return fail(cli, rc, &st);
    long long seen = 0;
    int result = CLI_OK;
    while (!stop_requested) {
        ProtobufCMessage *msg = NULL;
        memset(&st, 0, sizeof(st));
        rc = casca_stream_recv(s, desc, &msg, 200, &st);
        if (rc == CASCA_ERR_TIMEOUT && !msg && !st.code) continue; /* nothing yet */
        if (!msg) {                                                /* the end of the stream */
            if (rc != CASCA_OK || st.code) result = fail(cli, rc, &st);
            break;
        }
        int done = cli->a.json ? cli_print_json(msg) != CLI_OK : show(cli, msg);
        if (!cli->a.json && fflush(stdout)) done = 1; /* stdout closed: nobody is reading */
        protobuf_c_message_free_unpacked(msg, NULL);
        if (done || (count && ++seen >= count)) break;
    }
    casca_stream_close(s);
    return result;
}

void cli_close(struct cli *cli)
{
    casca_client_close(cli->client);
    cli->client = NULL;
}
