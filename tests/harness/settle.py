"""Waiting without the wall clock.

A test that sleeps and polls ("until it is true, check every 10 ms") is slow when it
passes and flaky when the machine is busy. Two ways instead:

- ``settle(clock, ...)``: a world whose time is a ``task.Clock`` (and whose HTTP is
  ``treq.testing.StubTreq``) is run until nothing is left to do, by jumping the clock
  from one scheduled call to the next. Nothing waits; it is exact and repeatable.
- ``when(condition, *sources)`` and friends: where a real socket stays, the test waits
  for an event (a Deferred, a push received, a call scheduled on a clock) and looks
  at the condition again after each one.
"""

from twisted.internet import defer, task
from twisted.internet import reactor as global_reactor

HORIZON = 3600.0  # settle() does not jump further than this past where it started


def settle(clock, *flushers, until=None, horizon=HORIZON, limit=100000):
    """Run a Clock-driven world until it is quiet, or until ``until()`` is true.

    Each round calls every flusher (e.g. ``StubTreq.flush``, which answers the
    requests made so far), then advances ``clock`` to its next scheduled call.
    Calls further than ``horizon`` seconds ahead of the start (periodic jobs such
    as a daily prune) count as quiet. Returns the seconds the clock moved.
    """
    start = clock.seconds()
    for _ in range(limit):
        for flush in flushers:
            flush()
        if until is not None and until():
            return clock.seconds() - start
        due = [c.getTime() for c in clock.getDelayedCalls() if c.getTime() <= start + horizon]
        if not due:
            if until is not None:
                raise AssertionError("the world went quiet before the condition held")
            return clock.seconds() - start
        clock.advance(max(0.0, min(due) - clock.seconds()))
    raise AssertionError("still busy after %d rounds" % (limit,))


class ObservedClock(task.Clock):
    """A task.Clock that tells ``when()`` each time something is scheduled on it.

    Code under test that runs on the real reactor (a socket) but keeps its timers
    on this clock reports "I am waiting now" by scheduling a call.
    """

    def __init__(self):
        super().__init__()
        self._watchers = []

    def callLater(self, delay, f, *args, **kw):
        call = super().callLater(delay, f, *args, **kw)
        watchers, self._watchers = self._watchers, []
        for notify in watchers:
            notify()
        return call

    def next_call(self):
        """A Deferred fired (on the next reactor turn) after the next callLater.

        Cancelling it (``when()`` does, once it is done) forgets the watch.
        """
        scheduled = []

        def fire():
            if not d.called:
                d.callback(None)

        def notify():
            scheduled.append(global_reactor.callLater(0, fire))

        def forget(_):
            if notify in self._watchers:
                self._watchers.remove(notify)
            for call in scheduled:
                if call.active():
                    call.cancel()

        d = defer.Deferred(canceller=forget)
        self._watchers.append(notify)
        return d


@defer.inlineCallbacks
def when(condition, *sources):
    """Wait until ``condition()`` is true, looking again after each event.

    Each source is a function returning a Deferred for the next event (for example
    ``clock.next_call``); a source may also be a Deferred, which counts once.
    No timer: if the events stop before the condition holds, trial's timeout fails
    the test. The watches still open at the end are cancelled.
    """
    pending = {}
    try:
        while not condition():
            for source in sources:
                if source not in pending or pending[source].called:
                    if isinstance(source, defer.Deferred):
                        if source.called:
                            continue
                        pending[source] = _observe(source)
                    else:
                        pending[source] = source()
            waits = [d for d in pending.values() if not d.called]
            if not waits:
                raise AssertionError("no event left to wait for and the condition is false")
            yield defer.DeferredList(waits, fireOnOneCallback=True, fireOnOneErrback=True,
                                     consumeErrors=True)
    finally:
        for d in pending.values():
            if not d.called:
                d.addErrback(lambda f: f.trap(defer.CancelledError))
                d.cancel()


def _observe(d):
    """A Deferred fired when ``d`` fires, leaving ``d``'s result to its owner."""
    seen = defer.Deferred()

    def fired(result):
        if not seen.called:
            seen.callback(None)
        return result

    d.addBoth(fired)
    return seen


@defer.inlineCallbacks
def received_until(pushservice, condition, subscription=None):
    """Pushes of ``subscription`` once ``condition(pushes)`` holds; re-checked per push."""
    while True:
        pushes = pushservice.received(subscription)
        if condition(pushes):
            return pushes
        yield pushservice.wait_for(len(pushes) + 1, subscription)


class OutcomeWatch:
    """Sees every final outcome of a PushDeliveryService, and waits for it to be idle.

    It stands between the service and its observer (the WebPushService, which still
    gets every outcome first); ``idle()`` fires once ``pending()`` is 0, which only
    an outcome (or stopping) can bring about.
    """

    def __init__(self, sender):
        self.sender = sender
        self.outcomes = []
        self._next = []
        self._observer = sender.observer
        sender.observer = self

    def pushOutcome(self, outcome):
        if self._observer is not None:
            self._observer.pushOutcome(outcome)
        self.outcomes.append(outcome)
        waiting, self._next = self._next, []
        for d in waiting:  # next turn: the service finishes its own work first
            global_reactor.callLater(0, d.callback, outcome)

    def next_outcome(self):
        d = defer.Deferred()
        self._next.append(d)
        return d

    def idle(self):
        """Fires once the service has no delivery without a final outcome."""
        return when(lambda: not self.sender.running or self.sender.pending() == 0,
                    self.next_outcome)
