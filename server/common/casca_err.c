#include "casca_err.h"

static const char *const messages[CASCA_ERR__COUNT] = {
    [CASCA_OK] = "ok",
    [CASCA_ERR_INVALID] = "invalid argument",
    [CASCA_ERR_NOT_FOUND] = "not found",
    [CASCA_ERR_EXISTS] = "already exists",
    [CASCA_ERR_PRECONDITION] = "failed precondition",
    [CASCA_ERR_PERMISSION] = "permission denied",
    [CASCA_ERR_UNAUTH] = "unauthenticated",
    [CASCA_ERR_NOMEM] = "out of memory",
    [CASCA_ERR_FULL] = "resource exhausted",
    [CASCA_ERR_UNAVAILABLE] = "unavailable",
    [CASCA_ERR_TIMEOUT] = "deadline exceeded",
    [CASCA_ERR_CANCELLED] = "cancelled",
    [CASCA_ERR_UNIMPLEMENTED] = "not implemented",
    [CASCA_ERR_IO] = "input/output error",
    [CASCA_ERR_CONFIG] = "invalid configuration",
    [CASCA_ERR_INTERNAL] = "internal error",
};

const char *casca_strerror(int err)
{
    if (err < 0 || err >= CASCA_ERR__COUNT || !messages[err])
        return "unknown error";
    return messages[err];
}

static const char *const grpc_codes[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *casca_grpc_code_name(int code)
{
    if (code < 0 || code >= (int)(sizeof(grpc_codes) / sizeof(grpc_codes[0])))
        return "UNKNOWN";
    return grpc_codes[code];
}
