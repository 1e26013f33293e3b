"""casca.Session: one AgentService.Session stream (a decision agent's connection).

    with casca.Session(client, "my-agent", slos=["ServiceSLO"], settings=["ServiceParam"],
                       period=1.0, mode="control") as s:
        welcome = s.hello()
        for state in s.states():
            result = s.act({"ServiceParam": 6})
            ...
        s.goodbye("done")

A reader thread takes the server's messages: the Welcome, States (kept in a small local queue;
the server already coalesces for a slow agent, and past `max_states` the oldest local ones are
dropped and counted in `dropped`), and ActionResults (matched to act() by nonce).

Reconnecting (reconnect=True, the default): when cascad restarts or the connection breaks, the
reader opens the session again with the same Hello after an exponential backoff with full jitter
(0.2 s doubling up to 10 s), and takes its leases back; a lease the dead session still holds
(FAILED_PRECONDITION) is retried too. One warning is logged (logger "casca") when an outage starts
and one when it ends. Meanwhile next_state() waits, and send_action()/act() raise UNAVAILABLE.
`welcome` and `session_id` are the latest session's. What retrying cannot fix (UNAUTHENTICATED,
PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND, a lease another agent holds at the first Hello)
ends the session with that error. reconnect=False: any end of the stream ends the session.

Thread safety: act() may be called from several threads; states()/next_state() from one consumer.
Errors: a refused Hello, a session the server ends for good and timeouts raise casca.CascaError.
"""
import collections
import itertools
import logging
import random
import threading
import time as _time
import queue

import grpc

from .client import duration, to_value
from .errors import CascaError
from .v1 import agent_pb2, agent_pb2_grpc, control_pb2

MODES = {"control": agent_pb2.AGENT_MODE_CONTROL, "shadow": agent_pb2.AGENT_MODE_SHADOW,
         "observe": agent_pb2.AGENT_MODE_OBSERVE}
_METHOD = "casca.v1.AgentService/Session"
_MAX_RESULTS = 1024  # answers kept for act()/result() callers that never collected them
_BACKOFF_BASE, _BACKOFF_MAX = 0.2, 10.0
# what a reconnect may fix: a lost server or connection, a lease the dead session still holds
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.CANCELLED, grpc.StatusCode.ABORTED, grpc.StatusCode.INTERNAL,
              grpc.StatusCode.UNKNOWN, grpc.StatusCode.RESOURCE_EXHAUSTED,
              grpc.StatusCode.FAILED_PRECONDITION}
log = logging.getLogger("casca")


def backoff_delay(attempt, base=_BACKOFF_BASE, cap=_BACKOFF_MAX, rand=random.random):
    """Full jitter: a uniform draw in [0, min(cap, base * 2**attempt)]."""
    return rand() * min(cap, base * 2 ** min(attempt, 30))


class Session:
    """Session(client=None, name="agent", *, slos=(), settings=(), period=1.0, mode="control",
               zone="", resume_after_seq=0, max_states=64, reconnect=True, **client_args)

    client: a casca.Client (None = a new Client(**client_args), closed with the session).
    slos/settings: ids the states carry (empty = all visible); in CONTROL mode the settings are
    leased. period: seconds between states (>= 0.1). mode: "control", "shadow" or "observe".
    reconnect: open the session again after a lost connection (see the module's text).
    """

    def __init__(self, client=None, name="agent", *, slos=(), settings=(), period=1.0,
                 mode="control", zone="", resume_after_seq=0, max_states=64, reconnect=True,
                 **client_args):
        if client is None:
            from .client import Client
            client = Client(**client_args)
            self._own = True
        else:
            self._own = False
        if isinstance(mode, str):
            if mode.lower() not in MODES:
                raise CascaError(grpc.StatusCode.INVALID_ARGUMENT,
                                 f"mode must be one of {', '.join(MODES)}, not {mode!r}", _METHOD)
            mode = MODES[mode.lower()]
        self.client = client
        self.name = name
        self.hello_msg = agent_pb2.Hello(agent_name=name, slo_ids=list(slos),
                                         setting_ids=list(settings),
                                         period=duration(period, _METHOD), mode=mode, zone=zone,
                                         resume_after_seq=resume_after_seq)
        self.welcome = None
        self.last_state = None
        self.dropped = 0  # states dropped locally because the consumer fell behind
        self._types = {}
        self._out = queue.Queue()
        self._cv = threading.Condition()
        self._states = collections.deque()
        self._max_states = max_states
        self._results = collections.OrderedDict()  # nonce -> (arrival, ActionResult)
        self._arrival = 0  # messages received so far
        self._result_mark = 0  # arrival index of the last result act() returned
        self._nonces = itertools.count(1)
        self._ended = False
        self._error = None
        self._closing = False
        self._call = None
        self._reader = None
        self._reconnect = reconnect
        self._connected = False  # a session is open (welcomed) right now
        self._welcomed_once = False
        self.outages = 0  # connections lost and opened again
        self._outage_since = None
        self._attempt = 0
        self._last_error = None  # why the last call ended, while retrying
        self._calls = 0  # calls ended so far: an action sent on an ended call gets no answer
        self._sent = {}  # nonce -> self._calls when it was sent

    # -- stream plumbing -------------------------------------------------------------------------

    @staticmethod
    def _requests(out):
        while True:
            m = out.get()
            if m is None:
                return
            yield m

    def _open(self):
        """Opens one call with Hello (under _cv). False when closing."""
        if self._closing:
            return False
        self._out = queue.Queue()
        self._out.put(agent_pb2.AgentMessage(hello=self.hello_msg))
        stub = agent_pb2_grpc.AgentServiceStub(self.client.channel)
        self._call = stub.Session(self._requests(self._out), metadata=self.client.metadata)
        return True

    def _read_call(self):
        """Reads one call to its end; the CascaError it ended with (None: ended with OK)."""
        try:
            for m in self._call:
                kind = m.WhichOneof("msg")
                with self._cv:
                    self._arrival += 1
                    if kind == "welcome":
                        self.welcome = m.welcome
                        self._types = {s.id: s.type for s in m.welcome.settings}
                        self._connected = True
                    elif kind == "state":
                        if len(self._states) >= self._max_states:
                            self._states.popleft()
                            self.dropped += 1
                        self._states.append((self._arrival, m.state))
                    elif kind == "result":
                        self._results[m.result.nonce] = (self._arrival, m.result)
                        while len(self._results) > _MAX_RESULTS:
                            self._results.popitem(last=False)
                    self._cv.notify_all()
                if kind == "welcome" and self._outage_since is not None:
                    log.warning("casca: %s: %s to cascad at %s after %.1f s", self.name,
                                "reconnected" if self._welcomed_once else "connected",
                                self.client.target, _time.monotonic() - self._outage_since)
                    self._outage_since = None
                    self._attempt = 0
                if kind == "welcome":
                    self._welcomed_once = True
        except grpc.RpcError as e:
            return CascaError.from_rpc(e, _METHOD)
        return None

    def _retry(self, err):
        """Whether a call that ended with err (None = OK) is opened again."""
        if self._closing or not self._reconnect:
            return False
        if err is None:
            return self._welcomed_once  # the server ended a running session: a restart
        if err.code == grpc.StatusCode.FAILED_PRECONDITION and not self._welcomed_once:
            return False  # at the first Hello, a lease another agent holds
        return err.code in _RETRYABLE

    def _read(self):
        while True:
            err = self._read_call()
            self._out.put(None)  # lets gRPC's request thread finish
            with self._cv:
                self._connected = False
                self._calls += 1
                retry = self._retry(err)
                if not retry:
                    if self._closing and err is not None and \
                            err.code == grpc.StatusCode.CANCELLED:
                        err = None
                    self._ended = True
                    self._error = err
                    self._cv.notify_all()
                    return
                self._last_error = err
                if self._outage_since is None:
                    self._outage_since = _time.monotonic()
                    why = err.message if err is not None else "cascad ended the session"
                    if self._welcomed_once:
                        self.outages += 1
                        log.warning("casca: %s: lost connection to cascad at %s: %s; "
                                    "reconnecting", self.name, self.client.target, why)
                    else:
                        log.warning("casca: %s: cannot connect to cascad at %s yet: %s; "
                                    "retrying", self.name, self.client.target, why)
                self._cv.wait_for(lambda: self._closing, backoff_delay(self._attempt))
                self._attempt += 1
                if not self._open():
                    self._ended = True
                    self._cv.notify_all()
                    return

    def _wait(self, ready, timeout, what):
        """Waits under _cv until ready() or the stream ended; CascaError on timeout or error."""
        deadline = None if timeout is None else _time.monotonic() + timeout
        while not ready():
            if self._ended:
                raise self._error or CascaError(grpc.StatusCode.CANCELLED,
                                                f"the session ended before {what}", _METHOD)
            left = None if deadline is None else deadline - _time.monotonic()
            if left is not None and left <= 0:
                raise CascaError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                 f"no {what} within {timeout} s", _METHOD)
            self._cv.wait(left)

    # -- the session -----------------------------------------------------------------------------

    @property
    def connected(self):
        """Whether a session is open right now (False during an outage, while reconnecting)."""
        return self._connected

    def hello(self, timeout=10.0):
        """Opens the stream with Hello and returns the Welcome (casca.v1.Welcome: session_id, the
        SLOs and settings described, leased_setting_ids). CascaError if the server refuses, or
        when no Welcome came within timeout seconds (None = wait as long as it takes: with
        reconnect, an agent started before cascad then connects when cascad comes up)."""
        if self._call is not None:
            raise CascaError(grpc.StatusCode.FAILED_PRECONDITION, "hello() was already called",
                             _METHOD)
        with self._cv:
            self._open()
        self._reader = threading.Thread(target=self._read, name="casca-session", daemon=True)
        self._reader.start()
        try:
            with self._cv:
                self._wait(lambda: self.welcome is not None, timeout, "Welcome")
        except CascaError as e:
            self.close()
            last = self._last_error
            if e.code == grpc.StatusCode.DEADLINE_EXCEEDED and last is not None:
                raise CascaError(last.code, f"{last.message} (still no Welcome after {timeout} s "
                                 "of retrying)", _METHOD) from None
            raise
        return self.welcome

    @property
    def session_id(self):
        return self.welcome.session_id if self.welcome else None

    @property
    def ended(self):
        return self._ended

    def next_state(self, timeout=None, fresh=False):
        """The next State (casca.v1.State) in arrival order. fresh=True skips the states that
        arrived before the last act() answer, so the state returned shows that action's effect.
        CascaError if the session ends or timeout seconds pass first."""
        with self._cv:
            if fresh:
                while self._states and self._states[0][0] < self._result_mark:
                    self._states.popleft()
            self._wait(lambda: bool(self._states), timeout, "State")
            self.last_state = self._states.popleft()[1]
            return self.last_state

    def latest_state(self, timeout=None):
        """The newest State, dropping older unread ones (counted in `dropped`)."""
        with self._cv:
            self._wait(lambda: bool(self._states), timeout, "State")
            self.dropped += len(self._states) - 1
            self.last_state = self._states[-1][1]
            self._states.clear()
            return self.last_state

    def states(self, timeout=None):
        """Yields States until the session ends (after goodbye() a plain stop; errors raise)."""
        while True:
            try:
                yield self.next_state(timeout)
            except CascaError:
                if self._ended and self._error is None:
                    return
                raise

    def _changes(self, changes):
        if isinstance(changes, dict):
            changes = changes.items()
        out = []
        for c in changes:
            if isinstance(c, control_pb2.SetSettingRequest):
                out.append(c)
                continue
            sid, value = c[0], c[1]
            dry = bool(c[2]) if len(c) > 2 else False
            out.append(control_pb2.SetSettingRequest(
                id=sid, value=to_value(value, self._types.get(sid), _METHOD), dry_run=dry))
        return out

    def send_action(self, changes, state_seq=None, nonce=None):
        """Sends an Action without waiting; returns its nonce (for result()). changes: {id: value},
        (id, value[, dry_run]) pairs or casca.v1.SetSettingRequest; empty = a keepalive.
        state_seq: the State answered (None = the last one received)."""
        if self._call is None:
            raise CascaError(grpc.StatusCode.FAILED_PRECONDITION, "call hello() first", _METHOD)
        if self._ended:
            raise self._error or CascaError(grpc.StatusCode.CANCELLED, "the session is over",
                                            _METHOD)
        if not self._connected:
            raise CascaError(grpc.StatusCode.UNAVAILABLE,
                             f"reconnecting to cascad at {self.client.target}: try again later",
                             _METHOD)
        if state_seq is None:
            with self._cv:
                newest = self._states[-1][1] if self._states else self.last_state
            state_seq = newest.seq if newest is not None else 0
        if nonce is None:
            nonce = f"{self.name}-{next(self._nonces)}"
        with self._cv:
            self._sent[nonce] = self._calls
            while len(self._sent) > _MAX_RESULTS:
                self._sent.pop(next(iter(self._sent)))
        self._out.put(agent_pb2.AgentMessage(action=agent_pb2.Action(
            state_seq=state_seq, changes=self._changes(changes), nonce=nonce)))
        return nonce

    def result(self, nonce, timeout=10.0):
        """Waits for the ActionResult of the action with this nonce."""
        with self._cv:
            call = self._sent.get(nonce, self._calls)
            self._wait(lambda: nonce in self._results or self._calls != call, timeout,
                       f"ActionResult for {nonce!r}")
            self._sent.pop(nonce, None)
            if nonce not in self._results:  # the call it went out on ended: no answer comes
                raise CascaError(grpc.StatusCode.UNAVAILABLE,
                                 "the connection to cascad was lost before the ActionResult "
                                 "came: the action may or may not have been applied", _METHOD)
            mark, r = self._results.pop(nonce)
            self._result_mark = max(self._result_mark, mark)
            return r

    def act(self, changes, state_seq=None, nonce=None, timeout=10.0):
        """Sends an Action and returns its ActionResult (casca.v1.ActionResult: applied values read
        back, and a Rejection with the reason for each change not applied)."""
        return self.result(self.send_action(changes, state_seq, nonce), timeout)

    def keepalive(self):
        """An Action with no changes: keeps a CONTROL lease alive while the agent does nothing."""
        return self.act({})

    def goodbye(self, reason="", timeout=5.0):
        """Ends the session cleanly (releases leases) and waits for the server to close it."""
        if self._call is not None and not self._ended:
            self._closing = True  # the end that follows is final: no reconnect
            self._out.put(agent_pb2.AgentMessage(goodbye=agent_pb2.Goodbye(reason=reason)))
            self._out.put(None)
            with self._cv:
                deadline = _time.monotonic() + timeout
                while not self._ended and _time.monotonic() < deadline:
                    self._cv.wait(deadline - _time.monotonic())
        self.close()

    def close(self):
        """Ends the stream at once (cancels it if still open) and frees the client if owned."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if self._call is not None and not self._ended:
            self._call.cancel()
        self._out.put(None)
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)
        if self._own:
            self.client.close()
            self._own = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
