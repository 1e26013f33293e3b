"""casca.Reporter: publishes telemetry points through TelemetryService.Publish in batches.

report() never blocks and never raises for the network: it stamps the point with the current time
(unless given one) and queues it; a background thread sends a batch when `batch` points are queued
or `interval` seconds after the oldest queued point. The queue is bounded (`max_queue`): beyond it
new points are dropped and counted. A batch that fails for a passing reason (UNAVAILABLE,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED) is retried with back-off; one refused for good
(bad token, role, bad request) is counted as failed and its error kept in last_error. Points the
server rejects one by one (bad name or value) are counted in `rejected`, reasons in `errors`.

Thread safety: report(), flush() and close() may be called from any thread.
"""
import collections
import threading
import time as _time

import grpc

from .errors import CascaError

_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED}


class Reporter:
    """Reporter(client=None, *, batch=500, interval=1.0, max_queue=100000, tags=None,
                timeout=10.0, **client_args)

    client: a casca.Client to publish through; None = a new Client(**client_args) (target,
    token, tls...), closed by close(). tags: added to every point (a point's own tags win).
    """

    def __init__(self, client=None, *, batch=500, interval=1.0, max_queue=100000, tags=None,
                 timeout=10.0, **client_args):
        if batch < 1 or max_queue < batch or interval <= 0:
            raise ValueError("need batch >= 1, max_queue >= batch and interval > 0")
        if client is None:
            from .client import Client
            client = Client(**client_args)
            self._own = True
        else:
            self._own = False
        self.client = client
        self.batch, self.interval, self.max_queue = batch, interval, max_queue
        self.timeout = timeout
        self.tags = dict(tags or {})
        self.accepted = self.rejected = self.dropped = self.failed = 0
        self.errors = collections.deque(maxlen=20)  # the server's reasons for rejected points
        self.last_error = None  # CascaError of the last failed batch
        self._q = collections.deque()  # (index, Point)
        self._queued = 0  # points ever queued (the next point's index)
        self._done = 0  # points published, rejected, failed or dropped, in queue order
        self._first_at = None  # monotonic time the oldest queued point was queued
        self._flush = False
        self._closing = False
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="casca-reporter", daemon=True)
        self._thread.start()

    def report(self, series, value, tags=None, time=None):
        """Queues one point (time None = now); False when the queue was full and it was dropped."""
        t = _time.time() if time is None else time
        all_tags = dict(self.tags, **(tags or {})) if self.tags else dict(tags or {})
        p = self.client.point(series, value, all_tags, t)
        with self._cv:
            if self._closing:
                raise CascaError(grpc.StatusCode.FAILED_PRECONDITION, "the reporter is closed",
                                 "Reporter.report")
            if len(self._q) >= self.max_queue:
                self.dropped += 1
                return False
            self._q.append((self._queued, p))
            self._queued += 1
            if self._first_at is None:  # the thread now waits for the interval to pass
                self._first_at = _time.monotonic()
                self._cv.notify_all()
            elif len(self._q) >= self.batch:
                self._cv.notify_all()
        return True

    def flush(self, timeout=None):
        """Sends everything queued so far now; True once it is all published (or given up on),
        False if timeout seconds passed first."""
        deadline = None if timeout is None else _time.monotonic() + timeout
        with self._cv:
            target = self._queued
            self._flush = True
            self._cv.notify_all()
            while self._done < target:
                left = None if deadline is None else deadline - _time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def close(self, timeout=5.0):
        """Flushes (up to timeout seconds), stops the thread; points still queued then are
        dropped and counted. Returns True when nothing was left behind."""
        ok = self.flush(timeout)
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._thread.join(timeout=max(1.0, self.timeout + 1))
        with self._cv:
            self.dropped += len(self._q)
            self._done += len(self._q)
            self._q.clear()
        if self._own:
            self.client.close()
        return ok

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _take(self):
        """Waits for a batch to send; None when closing with nothing queued (under _cv)."""
        while True:
            if self._q:
                due = self._first_at + self.interval
                if (len(self._q) >= self.batch or self._flush or self._closing
                        or _time.monotonic() >= due):
                    n = min(self.batch, len(self._q))
                    batch = [self._q.popleft() for _ in range(n)]
                    self._first_at = _time.monotonic() if self._q else None
                    if not self._q:
                        self._flush = False
                    return batch
                self._cv.wait(max(0.0, due - _time.monotonic()))
            elif self._closing:
                return None
            else:
                self._flush = False
                self._cv.wait()

    def _run(self):
        backoff = 0.1
        while True:
            with self._cv:
                batch = self._take()
            if batch is None:
                return
            try:
                r = self.client.publish([p for _, p in batch], timeout=self.timeout)
            except CascaError as e:
                with self._cv:
                    self.last_error = e
                    if e.code in _TRANSIENT and not self._closing:
                        room = self.max_queue - len(self._q)
                        keep = batch[:max(0, room)]
                        self.dropped += len(batch) - len(keep)
                        self._done += len(batch) - len(keep)
                        self._q.extendleft(reversed(keep))
                        if keep and self._first_at is None:
                            self._first_at = _time.monotonic()
                        self._cv.notify_all()
                        self._cv.wait(backoff)  # a flush or close() retries at once
                        backoff = min(5.0, backoff * 2)
                        continue
                    self.failed += len(batch)
                    self._done += len(batch)
                    self._cv.notify_all()
                continue
            backoff = 0.1
            with self._cv:
                self.accepted += r.accepted
                self.rejected += r.rejected
                self.errors.extend(r.errors)
                self._done += len(batch)
                self._cv.notify_all()
