/* auth: bearer tokens to roles, checked once per call by the call layer (rpc_auth_fn) against the
 * live configuration, so a reload that adds or revokes a token takes effect on the next call. */
#ifndef CASCA_AUTH_H
#define CASCA_AUTH_H

#include <stddef.h>

#include "config.h"
#include "rpc.h"

/* rpc_auth_fn over a struct config_live (arg). Any thread; does not block. */
int auth_check(void *live, const char *token, size_t len, enum rpc_role *role, char *name,
               size_t namelen);
/* Whether the snapshot has tokens (without any, every caller is an operator on loopback). */
static inline int auth_enabled(const struct config *c)
{
    return c->auth.ntokens > 0;
}

#endif
