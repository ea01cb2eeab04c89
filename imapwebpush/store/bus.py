"""The change bus: fans typed change events out to listeners, in order, once each.

A listener that raises is logged and skipped; the others still get the event.
Events published *while* the bus is delivering (a listener that changes the
store) are queued and delivered after the current one, so every listener sees
every event in the same order.
"""

from collections import deque

from twisted.logger import Logger
from zope.interface import implementer

from imapwebpush.interfaces import IChangeBus, IChangeListener

log = Logger()


@implementer(IChangeBus)
class ChangeBus:
    """An L{IChangeBus}. Listeners are L{IChangeListener} providers or plain callables."""

    def __init__(self):
        self._listeners = []
        self._queue = deque()
        self._delivering = False

    def subscribe(self, listener):
        if listener not in self._listeners:
            self._listeners.append(listener)

    def unsubscribe(self, listener):
        try:
            self._listeners.remove(listener)
        except ValueError:
            pass

    def listeners(self):
        """The listeners now subscribed, in subscription order."""
        return list(self._listeners)

    def publish(self, event):
        self._queue.append(event)
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._queue:
                self._deliver(self._queue.popleft())
        finally:
            self._delivering = False

    def _deliver(self, event):
        for listener in list(self._listeners):
            changed = getattr(listener, "changed", None)
            if changed is None:
                changed = listener
            try:
                changed(event)
            except Exception:
                log.failure(
                    "change listener {listener!r} failed on {event_type}",
                    listener=listener,
                    event_type=type(event).__name__,
                )


@implementer(IChangeListener)
class Forwarder:
    """Republishes every event it hears on another bus (account bus -> store bus)."""

    def __init__(self, bus):
        self.bus = bus

    def changed(self, event):
        self.bus.publish(event)
