/* agent: casca.v1.AgentService, one bidirectional Session per decision agent, and the agent half
 * of AdminService (ListAgentSessions, ExportTrajectory).
 *
 * A session: the agent's first message is Hello (anything else ends the call with
 * INVALID_ARGUMENT); the server answers Welcome (session id, the public descriptions of the SLOs
 * and settings named, as SloService and ServiceControl show them, and the leases granted), then a
 * State every period (default 1 s, at least 100 ms) and one ActionResult per Action.
 *   - CONTROL takes an exclusive lease on the settings named (all writable settings when none are
 *     named) through ctl's lease hook. Leases are all or nothing: if one of them is held by
 *     another CONTROL session the Hello is refused with FAILED_PRECONDITION naming the setting and
 *     the holder's agent name (the second controller is refused, it does not wait). While a
 *     setting is leased, changes from anyone else (other agents, plain SetSetting, operators
 *     included) are refused by ctl with the same reason.
 *   - SHADOW validates each change (ctl's rails, audited as SHADOW) and records it, never applies.
 *   - OBSERVE receives states; its actions are answered with every change rejected.
 * Leases end when the stream ends (half-close, cancel, server shutdown), on Goodbye, or when a
 * CONTROL agent sends nothing for 3 periods + 5 s (keepalive: an Action with no changes is
 * enough); the call then ends with DEADLINE_EXCEEDED saying so.
 * Actions: at most 10 per period; more are answered with every change rejected (rate limit).
 * A change is rejected when the setting is unknown, not part of (CONTROL: not leased by) the
 * session, or when ctl refuses it (type, range, step, read-only, cooldown, max step...).
 * States: seq increases by one per period; a state that cannot be sent because the previous
 * messages are still queued waits as the one pending state (latest wins) and State.missed counts
 * the ones coalesced away, so a slow agent costs at most one pending state. ActionResults are
 * never dropped: one the transport has no room for is held (in order) and sent when there is;
 * an agent that lets 64 results pile up, or reads nothing for 10 s while one waits, is closed
 * with RESOURCE_EXHAUSTED. Setting values come
 * from what ctl last read (ctl_peek: ctl re-reads the settings of open sessions every period, so
 * a State says when a service does not answer), SLO statuses from the SLO engine, the carbon intensity
 * from the carbon store for the session's zone at now; power and footprint are filled when a
 * carbon_footprint SLO is among the session's SLOs (footprint = its value, power = footprint x 60
 * / intensity), 0 otherwise.
 * Trajectories: every state sent and every (action, result) is recorded in the store (named
 * databases agent_sessions and agent_steps, asynchronously: recording never delays a session),
 * except rate-limited actions, which are answered but not recorded.
 *
 * Threads: each Session message runs on the worker pool (RPC_BLOCKING: Hello reads the current
 * values and actions wait for the managed service and the audit log); between messages a session
 * holds no thread, and no thread ever waits for a slow agent. One timer thread sends the states
 * and enforces the keepalive: it keeps the sessions in a heap on when each is next due, so a
 * wake-up costs only the sessions due then. The rules that need no network (Hello checks,
 * leases, rate limit, state clock, trajectory keys) are in agent_logic.h. */
#ifndef CASCA_AGENT_H
#define CASCA_AGENT_H

#include "agent_logic.h"
#include "rpc.h"

struct ctl;
struct slo_service;
struct carbon;
struct config_live;
struct store;
struct agent;

/* Registers AgentService on srv (before rpc_server_start), installs ctl's lease hook and a
 * settings listener, opens the trajectory databases in store and starts the timer. Every argument
 * must outlive the module. CASCA_OK and *out, or a casca_err with the reason in err. Main
 * thread. */
int agent_create(struct rpc_server *srv, struct ctl *ctl, struct slo_service *slo,
                 struct carbon *carbon, struct config_live *live, struct store *store,
                 struct agent **out, char *err, size_t errlen);
/* After rpc_server_destroy (every session is over), before ctl, the SLO service, carbon and the
 * store are destroyed. Safe on NULL. */
void agent_destroy(struct agent *a);
/* rpc_revoke_fn for a reload that revoked ctx's token: when ctx is an agent session, it is ended
 * with err and why, its leases released and each release audited (AUDIT_OUTCOME_REVOKED);
 * returns false for any other call. Blocks (audit): the reloading thread. */
bool agent_revoke(void *agent, struct rpc_ctx *ctx, int err, const char *why);
/* Agent sessions open now (0 for NULL). Any thread. */
size_t agent_session_count(struct agent *a);

/* Open sessions by mode: counts[m] for casca.v1.AgentMode m (1 CONTROL, 2 SHADOW, 3 OBSERVE;
 * 0 stays 0). Any thread; holds the session list's lock briefly. */
#define AGENT_MODES 4
void agent_session_modes(struct agent *a, size_t counts[AGENT_MODES]);

/* One open session, for the dashboard. */
struct agent_brief {
    char name[AGENT_NAME_MAX_LEN + 1];
    int mode; /* casca.v1.AgentMode */
    int64_t since_ns;
    uint64_t states_sent, actions_received, actions_applied;
};
/* Up to max open sessions, oldest first, into out; returns how many. Any thread; holds the
 * session list's lock briefly. */
size_t agent_sessions(struct agent *a, struct agent_brief *out, size_t max);

/* AdminService handlers (admin.c registers them; a may be NULL before the module exists: the call
 * then ends with UNAVAILABLE). ListAgentSessions: unary, never blocks. ExportTrajectory: server
 * stream, blocks (RPC_BLOCKING). */
void agent_list_sessions(struct agent *a, struct rpc_ctx *ctx, const ProtobufCMessage *msg);
void agent_export_trajectory(struct agent *a, struct rpc_ctx *ctx, const ProtobufCMessage *msg);

#endif
