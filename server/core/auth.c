#include "auth.h"

#include <stdio.h>
#include <string.h>

#include "casca_err.h"

/* Compares in time that depends only on the lengths, so a caller cannot learn a token byte by
 * byte from response times. */
static int same_secret(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < alen; i++)
        diff |= (unsigned char)(a[i] ^ b[i % (blen ? blen : 1)]);
    return diff == 0;
}

int auth_check(void *live, const char *token, size_t len, enum rpc_role *role, char *name,
               size_t namelen)
{
    struct config *c = config_live_get(live);
    int err = CASCA_ERR_UNAUTH;
    for (size_t i = 0; i < c->auth.ntokens; i++) {
        const struct config_token *t = &c->auth.tokens[i];
        if (same_secret(token, len, t->secret, strlen(t->secret))) {
            *role = t->role;
            snprintf(name, namelen, "%s", t->name);
            err = CASCA_OK;
        }
    }
    config_unref(c);
    return err;
}
