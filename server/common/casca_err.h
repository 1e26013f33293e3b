/* casca_err: the one error type of casca, with a string table.
 * 0 is success; every module returns these, and the gRPC layer maps them to status codes in
 * exactly one place (rpc_status_of). Thread-safe: the strings are static. */
#ifndef CASCA_ERR_H
#define CASCA_ERR_H

enum casca_err {
    CASCA_OK = 0,
    CASCA_ERR_INVALID,     /* bad value, type or range from the caller */
    CASCA_ERR_NOT_FOUND,   /* unknown id */
    CASCA_ERR_EXISTS,      /* already exists */
    CASCA_ERR_PRECONDITION,/* read-only, leased, cooldown */
    CASCA_ERR_PERMISSION,  /* role does not allow it */
    CASCA_ERR_UNAUTH,      /* no or unknown credentials */
    CASCA_ERR_NOMEM,       /* allocation failed */
    CASCA_ERR_FULL,        /* a bounded queue or the store is full */
    CASCA_ERR_UNAVAILABLE, /* backend down, shutting down */
    CASCA_ERR_TIMEOUT,     /* deadline passed */
    CASCA_ERR_CANCELLED,   /* the caller went away */
    CASCA_ERR_UNIMPLEMENTED,
    CASCA_ERR_IO,          /* file or store I/O failed */
    CASCA_ERR_CONFIG,      /* configuration is invalid */
    CASCA_ERR_INTERNAL,    /* a bug: should not happen */
    CASCA_ERR__COUNT
};

/* Short English description of err, never NULL. */
const char *casca_strerror(int err);

/* The name of a gRPC status code ("NOT_FOUND" for 5), "UNKNOWN" for a number out of range. */
const char *casca_grpc_code_name(int code);

#endif
