"""One place that knows every connection a test opened, so it can close them all.

Trial fails a test that leaves a socket open, and a test that closes its ports but
not the connections on them leaves the server side half-closed. A tracker wraps
the factories of the test's servers (and notes the clients it connects), gives a
Deferred per connection that fires when it is gone, and closes everything at the end.
"""

from twisted.internet import defer, endpoints
from twisted.internet import reactor as global_reactor

LOOPBACK = "127.0.0.1"


class ConnectionTracker:
    """Ports and connections of one test; ``close()`` (an addCleanup) ends them all."""

    def __init__(self, reactor=None):
        self.reactor = reactor or global_reactor
        self.ports = []
        self.connections = []  # protocols, in the order they were built or connected
        self._lost = []  # one Deferred per connection, fired by its connectionLost
        self._accepted = []  # the Deferreds of the connections a tracked server accepted

    def track(self, factory):
        """Watch every protocol ``factory`` builds from now on; returns the factory."""
        build = factory.buildProtocol

        def buildProtocol(addr):
            protocol = build(addr)
            if protocol is not None:
                self.watch(protocol)
                self._accepted.append(self._lost[-1])
            return protocol

        factory.buildProtocol = buildProtocol
        return factory

    def watch(self, protocol):
        """Note one connection's protocol; ``lost(n)`` fires when it is closed."""
        done = defer.Deferred()
        original = protocol.connectionLost

        def connectionLost(reason):
            try:
                original(reason)
            finally:
                done.callback(None)

        protocol.connectionLost = connectionLost
        self.connections.append(protocol)
        self._lost.append(done)
        return protocol

    def listen(self, factory, listen=None):
        """Listen on 127.0.0.1:0 (or with ``listen(factory)``); the port number."""
        self.track(factory)
        if listen is None:
            port = self.reactor.listenTCP(0, factory, interface=LOOPBACK)
        else:
            port = listen(factory)
        self.ports.append(port)
        return port.getHost().port

    def connect(self, protocol, port):
        """Connect ``protocol`` to 127.0.0.1:``port``; fires with it once connected."""
        endpoint = endpoints.TCP4ClientEndpoint(self.reactor, LOOPBACK, port)
        self.watch(protocol)
        done = self._lost[-1]

        def failed(reason):  # never connected: nothing to wait for
            if not done.called:
                done.callback(None)
            return reason

        return endpoints.connectProtocol(endpoint, protocol).addErrback(failed)

    def lost(self, n):
        """A Deferred fired when the server side of the ``n``-th accepted connection
        (0 = the first) is closed."""
        return self._accepted[n]

    def idle(self):
        """A Deferred fired once every connection noted so far is closed."""
        return defer.gatherResults(list(self._lost)).addCallback(lambda _: None)

    @defer.inlineCallbacks
    def close(self, abort=True):
        """Stop listening, close what is still open, wait until every connection is gone.

        Clients the tracker connected are closed cleanly. Accepted connections still
        open are aborted, or with ``abort=False`` left for the server to close: the
        test then fails by its timeout if the server never does.
        """
        ports, self.ports = self.ports, []
        for port in ports:
            yield port.stopListening()
        accepted = set(map(id, self._accepted))
        for protocol, done in zip(self.connections, self._lost):
            transport = getattr(protocol, "transport", None)
            if done.called or transport is None:
                continue
            if id(done) not in accepted:
                transport.loseConnection()
            elif abort:
                transport.abortConnection()
        yield self.idle()


def track_server(running, tracker=None):
    """A tracker (new unless given) watching every listener of a ``tap.start_server`` result.

    ``tracker.idle()`` then fires once the server has closed every connection it
    accepted: what a test waits for after a blocking client in a thread hung up.
    """
    from imapwebpush import tap

    tracker = tracker or ConnectionTracker()
    for child in running.service:
        if isinstance(child, tap.ListeningService):  # the Web Push services have no factory
            tracker.track(child.factory)
    return tracker


@defer.inlineCallbacks
def start_tracked(case, argv):
    """``tap.start_server(argv)`` with its connections tracked (``running.connections``),
    stopped by ``case``'s cleanup with L{stop_tracked}."""
    from imapwebpush import tap

    running = yield tap.start_server(argv)
    running.connections = track_server(running)
    case.addCleanup(stop_tracked, running)
    return running


@defer.inlineCallbacks
def stop_tracked(running):
    """Stop a L{start_tracked} server (once, whatever was stopped already) and wait until
    every connection it accepted is closed."""
    if running.service.running:
        yield running.stop()
    yield running.connections.close(abort=False)
