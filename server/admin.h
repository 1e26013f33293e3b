/* admin: casca.v1.AdminService (operator role only): Reload, GetStatus, GetAuditLog, and the agent
 * session methods ListAgentSessions and ExportTrajectory (served by the agent module, agent.h). */
#ifndef CASCA_ADMIN_H
#define CASCA_ADMIN_H

#include "rpc.h"

struct daemon;
struct admin;

/* Registers AdminService on srv (before rpc_server_start): CASCA_OK and *out, or a casca_err
 * with the reason in err. */
int admin_create(struct rpc_server *srv, struct daemon *d, struct admin **out, char *err,
                 size_t errlen);
void admin_destroy(struct admin *a); /* after rpc_server_destroy; safe on NULL */

#endif
