/* control: casca.v1.ServiceControl, the settings API for agents and operators: ListSettings,
 * GetSetting, SetSetting (dry_run: validate only) and WatchSettings, on top of ctl.
 * Reads and changes reach the managed service, so GetSetting, SetSetting and WatchSettings run on
 * the worker pool (RPC_BLOCKING) and the call's deadline bounds the service's. Replies and errors
 * name settings only by their public ids. */
#ifndef CASCA_CONTROL_H
#define CASCA_CONTROL_H

#include "casca/v1/control.pb-c.h"
#include "ctl.h"
#include "rpc.h"

struct control;

/* Conversions between the API's messages and ctl's values (the other way is ctl_value_to_pb),
 * shared by ServiceControl and the agent sessions so both read a setting the same way. Pure, any
 * thread. */
void control_value_from_pb(const Casca__V1__Value *pb, struct ctl_value *v); /* borrows pb's */

/* A SettingValue with the parts it points to. */
struct control_sv {
    Casca__V1__SettingValue sv;
    Casca__V1__Value value;
    Google__Protobuf__Timestamp at;
};
/* Fills p from a reading; borrows id and the reading's strings. */
void control_setting_value(const char *id, const struct ctl_reading *r, struct control_sv *p);

/* Registers ServiceControl on srv (before rpc_server_start) and listens to ctl's changes for the
 * watches. CASCA_OK and *out, or a casca_err with the reason in err. Main thread. */
int control_create(struct rpc_server *srv, struct ctl *ctl, struct control **out, char *err,
                   size_t errlen);
/* After rpc_server_destroy (every watch is over). Safe on NULL. */
void control_destroy(struct control *c);

#endif
