/* admin: casca.v1.AdminService (operator role only): Reload, GetStatus, GetAuditLog, and the agent
 * session methods ListAgentSessions and ExportTrajectory (served by the agent module, agent.h). */
#ifndef CASCA_ADMIN_H
#define CASCA_ADMIN_H

#include "rpc.h"

struct daemon;
struct admin;

/* Registers AdminService on srv (before rpc_server_start). NULL on failure. */
struct admin *admin_create(struct rpc_server *srv, struct daemon *d);
void admin_destroy(struct admin *a); /* after rpc_server_destroy; safe on NULL */

#endif
