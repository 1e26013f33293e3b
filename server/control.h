/* control: casca.v1.ServiceControl, the settings API for agents and operators: ListSettings,
 * GetSetting, SetSetting (dry_run: validate only) and WatchSettings, on top of ctl.
 * Reads and changes reach the managed service, so GetSetting, SetSetting and WatchSettings run on
 * the worker pool (RPC_BLOCKING) and the call's deadline bounds the service's. Replies and errors
 * name settings only by their public ids. */
#ifndef CASCA_CONTROL_H
#define CASCA_CONTROL_H

#include "ctl.h"
#include "rpc.h"

struct control;

/* Registers ServiceControl on srv (before rpc_server_start) and listens to ctl's changes for the
 * watches. NULL on failure. Main thread. */
struct control *control_create(struct rpc_server *srv, struct ctl *ctl);
/* After rpc_server_destroy (every watch is over). Safe on NULL. */
void control_destroy(struct control *c);

#endif
