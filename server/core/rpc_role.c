/* The roles' names (rpc.h), apart from the call layer so that the config engine can parse
 * auth.tokens without linking gRPC into the programs that only read the file. */
#include <string.h>

#include "rpc.h"

static const char *const role_names[] = {"viewer", "reporter", "agent", "operator"};

const char *rpc_role_name(enum rpc_role role)
{
    for (unsigned i = 0; i < 4; i++)
        if (role == (1u << i))
            return role_names[i];
    return "none";
}

enum rpc_role rpc_role_parse(const char *name)
{
    for (unsigned i = 0; i < 4; i++)
        if (strcmp(name, role_names[i]) == 0)
            return (enum rpc_role)(1u << i);
    return RPC_ROLE_NONE;
}
