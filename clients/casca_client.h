/* casca_client.h: libcasca's gRPC client (installed header), on grpc's C core.
 *
 * One client is one channel to cascad (HTTP/2, reconnected by grpc as needed). Calls are
 * synchronous and typed by protobuf-c: the request is any generated message, the reply is decoded
 * with the descriptor given. Methods are named by their full path, e.g.
 * "/casca.v1.SloService/GetSlo" (the generated casca/v1/ *.pb-c.h headers are installed beside
 * this one).
 *
 * Errors: every function returns CASCA_OK or a casca_err, and fills a struct casca_status with the
 * gRPC status code and the server's message when there is one (a message meant for people: what
 * was wrong and how to fix it; st may be NULL). UNAVAILABLE from a channel that cannot connect
 * says so with the target ("cannot reach cascad at HOST:PORT: ...connection refused").
 * casca_err_from_grpc maps a gRPC code to the one error enum.
 *
 * Threads: a client may be shared by threads (each call has its own completion queue). A stream
 * is used by one thread at a time. */
#ifndef CASCA_CLIENT_H
#define CASCA_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "casca_err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct casca_client;
struct casca_stream;

/* Zero fields take their defaults; timeout_ms < 0 = no deadline at all. */
struct casca_client_options {
    const char *token;      /* bearer token sent as "authorization: Bearer TOKEN", NULL = none */
    int tls;                /* 1 = TLS (system roots, or ca_file), 0 = plaintext */
    const char *ca_file;    /* PEM roots for TLS, NULL = system roots */
    int timeout_ms;         /* unary calls' deadline and a stream send's limit, default 5000 */
    int connect_timeout_ms; /* how long a call waits for an unconnected channel, default 3000 */
};

struct casca_status {
    int code;          /* gRPC status code: 0 OK, 5 NOT_FOUND, 14 UNAVAILABLE... */
    char message[512]; /* the server's message, or what failed locally; "" when OK */
};

/* Opens a client for target ("host:port", "dns:///host:port", "unix:/path"); opts may be NULL.
 * Nothing is connected yet: the first call connects (waiting at most connect_timeout_ms).
 * CASCA_ERR_INVALID for an empty target, a bad token or an unreadable ca_file (st, which may be
 * NULL, says which). */
int casca_client_open(const char *target, const struct casca_client_options *opts,
                      struct casca_client **out, struct casca_status *st);
/* Safe on NULL. Every stream of the client must be closed first. */
void casca_client_close(struct casca_client *c);

/* A unary call: sends req to method and decodes the reply with reply_desc into *reply (free it
 * with protobuf_c_message_free_unpacked). On failure *reply is NULL and st says why. */
int casca_call(struct casca_client *c, const char *method, const ProtobufCMessage *req,
               const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
               struct casca_status *st);

/* Streams: server streaming (WatchSlos, WatchSettings...), client streaming (PublishStream) or
 * both ways (AgentService/Session). Opens a call with no deadline; req (may be NULL) is sent as
 * the first message, and for a server-streaming method the sending side is then closed
 * (half_close = 1). An unreachable server is reported here (UNAVAILABLE) when the channel cannot
 * connect within connect_timeout_ms; anything the server says comes through casca_stream_recv.
 * The stream belongs to one thread at a time; close it before its client. */
int casca_stream_open(struct casca_client *c, const char *method, const ProtobufCMessage *req,
                      int half_close, struct casca_stream **out, struct casca_status *st);
/* Sends one message and waits (at most the client's timeout_ms) until grpc has taken it.
 * CASCA_ERR_UNAVAILABLE when the call has ended or the sending side is closed (then
 * casca_stream_recv tells why). */
int casca_stream_send(struct casca_stream *s, const ProtobufCMessage *msg, struct casca_status *st);
/* Closes the sending side (the server sees the end of the client's stream). */
int casca_stream_close_send(struct casca_stream *s, struct casca_status *st);
/* Waits at most timeout_ms (<0 = forever, 0 = poll) for the next message, decoded with desc into
 * *msg (free it with protobuf_c_message_free_unpacked).
 *   - a message: CASCA_OK and *msg set;
 *   - nothing in time: CASCA_ERR_TIMEOUT, *msg NULL, st->code 0 (the call is still open): the
 *     stream stays usable and the next recv goes on waiting for the same message;
 *   - end of stream: *msg NULL, st->code is the final status; CASCA_OK when the server finished
 *     with OK, otherwise casca_err_from_grpc(st->code). */
int casca_stream_recv(struct casca_stream *s, const ProtobufCMessageDescriptor *desc,
                      ProtobufCMessage **msg, int timeout_ms, struct casca_status *st);
/* Cancels the call if it is still open and frees the stream. Safe on NULL. */
void casca_stream_close(struct casca_stream *s);

/* gRPC status code -> casca_err (OK -> CASCA_OK, NOT_FOUND -> CASCA_ERR_NOT_FOUND...). */
int casca_err_from_grpc(int code);

#ifdef __cplusplus
}
#endif

#endif
