"""Stand-ins for ``threads.deferToThread`` given to the store as its ``run``.

``run_now`` runs the work at once (tests on a Clock and an in-memory wire, where a
real thread's result would never come back); L{HeldRun} holds each piece of work
until the test lets it go, to see what a client hears while a copy is under way.
"""

from twisted.internet import defer


def run_now(f, *args, **kwargs):
    """The work done here and now; a fired Deferred of its result."""
    return defer.maybeDeferred(f, *args, **kwargs)


class HeldRun:
    """A ``run`` whose calls wait in ``held`` until ``release()`` (or ``release_all()``)."""

    def __init__(self):
        self.held = []  # [(Deferred, f, args, kwargs)]

    def __call__(self, f, *args, **kwargs):
        d = defer.Deferred()
        self.held.append((d, f, args, kwargs))
        return d

    def release(self):
        """Do the oldest held work and fire its Deferred with what it gave or raised."""
        d, f, args, kwargs = self.held.pop(0)
        defer.maybeDeferred(f, *args, **kwargs).chainDeferred(d)

    def release_all(self):
        while self.held:
            self.release()
