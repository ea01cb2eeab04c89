"""Tests for imapwebpush.store.bus.ChangeBus."""

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from imapwebpush.interfaces import IChangeBus
from imapwebpush.store.bus import ChangeBus, Forwarder
from imapwebpush.events import MailboxCreated


def event(n):
    return MailboxCreated("a@example.org", "box%d" % n)


class Listener:
    def __init__(self, log, name):
        self.log = log
        self.name = name

    def changed(self, event):
        self.log.append((self.name, event.mailbox))


class BusTests(unittest.TestCase):
    def setUp(self):
        self.bus = ChangeBus()
        self.log = []

    def test_interface(self):
        self.assertTrue(verifyObject(IChangeBus, self.bus))

    def test_order_and_callables(self):
        self.bus.subscribe(Listener(self.log, "a"))
        self.bus.subscribe(lambda e: self.log.append(("b", e.mailbox)))
        self.bus.publish(event(1))
        self.assertEqual(self.log, [("a", "box1"), ("b", "box1")])

    def test_subscribe_twice_delivers_once(self):
        listener = Listener(self.log, "a")
        self.bus.subscribe(listener)
        self.bus.subscribe(listener)
        self.bus.publish(event(1))
        self.assertEqual(self.log, [("a", "box1")])

    def test_unsubscribe(self):
        listener = Listener(self.log, "a")
        self.bus.subscribe(listener)
        self.bus.unsubscribe(listener)
        self.bus.unsubscribe(listener)  # unknown: ignored
        self.bus.unsubscribe(object())
        self.bus.publish(event(1))
        self.assertEqual(self.log, [])

    def test_raising_listener_is_logged_and_others_still_called(self):
        def broken(e):
            raise RuntimeError("boom")

        self.bus.subscribe(broken)
        self.bus.subscribe(Listener(self.log, "b"))
        self.bus.publish(event(1))
        self.assertEqual(self.log, [("b", "box1")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_events_published_by_a_listener_come_after(self):
        def first(e):
            self.log.append(("first", e.mailbox))
            if e.mailbox == "box1":
                self.bus.publish(event(2))

        self.bus.subscribe(first)
        self.bus.subscribe(Listener(self.log, "second"))
        self.bus.publish(event(1))
        self.assertEqual(
            self.log,
            [("first", "box1"), ("second", "box1"), ("first", "box2"), ("second", "box2")],
        )

    def test_unsubscribe_during_delivery(self):
        class Once:
            def changed(inner, e):
                self.log.append(("once", e.mailbox))
                self.bus.unsubscribe(inner)

        self.bus.subscribe(Once())
        self.bus.subscribe(Listener(self.log, "b"))
        self.bus.publish(event(1))
        self.bus.publish(event(2))
        self.assertEqual(self.log, [("once", "box1"), ("b", "box1"), ("b", "box2")])

    def test_forwarder(self):
        outer = ChangeBus()
        outer.subscribe(Listener(self.log, "outer"))
        self.bus.subscribe(Forwarder(outer))
        self.bus.publish(event(1))
        self.assertEqual(self.log, [("outer", "box1")])
