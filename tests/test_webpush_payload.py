"""Push payloads: exact responses, the 3993-octet budget and the SPEC 5.4 fallbacks."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from imapwebpush.decisions import MAX_PUSHES_PER_BURST
from imapwebpush.webpush.limits import MAX_PLAINTEXT
from imapwebpush.webpush.payload import (
    FlagUpdate,
    ListUpdate,
    NewMessage,
    Section,
    Vanished,
    render,
    select_line,
    sync_payload,
    uid_set,
)

RFC3501 = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.siam.edu.example\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n\r\n"
)

SPEC_EXAMPLE = (
    b'* SELECT "INBOX"\r\n'
    b'* 4392 UIDFETCH (FLAGS () ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800" "afternoon meeting" '
    b'(("Fred Foobar" NIL "foobar" "Blurdybloop.example")) (("Fred Foobar" NIL "foobar" '
    b'"Blurdybloop.example")) (("Fred Foobar" NIL "foobar" "Blurdybloop.example")) ((NIL NIL '
    b'"mooch" "owatagu.siam.edu.example")) NIL NIL NIL "<B27397-0100000@Blurdybloop.example>"))\r\n'
)

FETCH_RE = re.compile(rb"\A\* (\d+) UIDFETCH \(FLAGS \(([^)]*)\)( ENVELOPE \(.*\))?\)\Z")


def lines(payload):
    assert payload.endswith(b"\r\n"), payload[-20:]
    return payload[:-2].split(b"\r\n")


def new_messages(count, headers=RFC3501, start=1):
    return tuple(NewMessage(uid, (), headers, order=uid) for uid in range(start, start + count))


def fetched(pushes):
    """uid -> has envelope, over every body; asserts each uid appears once."""
    seen = {}
    for push in pushes:
        for line in lines(push.payload):
            m = FETCH_RE.match(line)
            if m:
                uid = int(m.group(1))
                assert uid not in seen, uid
                seen[uid] = m.group(3) is not None
    return seen


class ResponseTests(unittest.TestCase):
    def test_spec_example(self):
        [push] = render([Section("INBOX", (NewMessage(4392, (), RFC3501),))])
        self.assertEqual(push.payload, SPEC_EXAMPLE)
        self.assertEqual(push.mailboxes, ("INBOX",))

    def test_flags_and_vanished(self):
        [push] = render([Section("Archive", (
            Vanished((9, 3, 4, 5, 6, 7)),
            FlagUpdate(12, frozenset({"$Junk", "\\Seen", "\\Recent", "\\Answered"})),
            FlagUpdate(13, frozenset()),
        ))])
        self.assertEqual(push.payload, (
            b'* SELECT "Archive"\r\n'
            b"* VANISHED 3:7,9\r\n"
            b"* 12 UIDFETCH (FLAGS (\\Answered \\Seen $Junk))\r\n"
            b"* 13 UIDFETCH (FLAGS ())\r\n"
        ))

    def test_invalid_flag_atoms_are_left_out(self):
        [push] = render([Section("INBOX", (FlagUpdate(1, frozenset({"ok", "bad flag", "x)"})),))])
        self.assertEqual(lines(push.payload)[1], b"* 1 UIDFETCH (FLAGS (ok))")

    def test_uid_set(self):
        self.assertEqual(uid_set([9, 3, 4, 5, 7, 6, 11, 12, 20]), "3:7,9,11:12,20")
        self.assertEqual(uid_set([1]), "1")

    def test_long_vanished_is_several_whole_responses(self):
        uids = tuple(range(1, 1000, 2))
        [push] = render([Section("INBOX", (Vanished(uids),))])
        got = []
        for line in lines(push.payload)[1:]:
            self.assertTrue(line.startswith(b"* VANISHED "))
            got.extend(int(u) for u in line[11:].split(b","))
        self.assertEqual(tuple(got), uids)

    def test_list_responses(self):
        [push] = render([Section(None, (
            ListUpdate("Archiv/Überweisungen"),
            ListUpdate('Old "quoted" \\ name', nonexistent=True),
        ))])
        self.assertEqual(push.payload, (
            '* LIST () "/" "Archiv/Überweisungen"\r\n'
            '* LIST (\\NonExistent) "/" "Old \\"quoted\\" \\\\ name"\r\n'
        ).encode("utf-8"))

    def test_mailbox_names_quoted_utf8(self):
        self.assertEqual(select_line('Ä"b'), '* SELECT "Ä\\"b"\r\n'.encode("utf-8"))

    def test_empty_section_is_the_generic_sync(self):
        [push] = render([Section("Sent")])
        self.assertEqual(push.payload, b'* SELECT "Sent"\r\n')
        self.assertEqual(push.synced, ("Sent",))
        self.assertEqual(sync_payload(["A", "B"]), b'* SELECT "A"\r\n* SELECT "B"\r\n')

    def test_nothing_to_say(self):
        self.assertEqual(render([]), [])
        self.assertEqual(render([Section(None, ())]), [])


class SizeTests(unittest.TestCase):
    def test_huge_subject_truncated_at_character_boundary(self):
        headers = RFC3501.replace(b"afternoon meeting", ("é" * 9999 + '"').encode("utf-8"))
        [push] = render([Section("INBOX", (NewMessage(7, ("\\Seen",), headers),))])
        self.assertLessEqual(len(push.payload), MAX_PLAINTEXT)
        self.assertGreater(len(push.payload), MAX_PLAINTEXT - 10)
        text = push.payload.decode("utf-8")  # valid UTF-8
        subject = re.search(r'-0800" "([^"]*)"', text).group(1)
        self.assertEqual(set(subject), {"é"})
        self.assertIn('"<B27397-0100000@Blurdybloop.example>"))\r\n', text)
        self.assertEqual(push.envelopes_dropped, 0)

    def test_few_fit_with_envelopes(self):
        pushes = render([Section("INBOX", new_messages(5))])
        self.assertEqual(len(pushes), 1)
        self.assertEqual(set(fetched(pushes).values()), {True})

    def test_oldest_envelopes_dropped_first(self):
        pushes = render([Section("INBOX", new_messages(20))])
        self.assertEqual(len(pushes), 1)
        self.assertLessEqual(len(pushes[0].payload), MAX_PLAINTEXT)
        seen = fetched(pushes)
        self.assertEqual(sorted(seen), list(range(1, 21)))
        with_envelope = [uid for uid, full in sorted(seen.items()) if full]
        self.assertTrue(with_envelope)
        self.assertEqual(with_envelope, list(range(21 - len(with_envelope), 21)))
        self.assertEqual(pushes[0].envelopes_dropped, 20 - len(with_envelope))

    def test_then_split_into_self_contained_pushes(self):
        pushes = render([Section("INBOX", new_messages(200))])
        self.assertTrue(1 < len(pushes) <= MAX_PUSHES_PER_BURST)
        for push in pushes:
            self.assertLessEqual(len(push.payload), MAX_PLAINTEXT)
            self.assertEqual(lines(push.payload)[0], b'* SELECT "INBOX"')
        self.assertEqual(sorted(fetched(pushes)), list(range(1, 201)))

    def test_finally_the_generic_sync(self):
        pushes = render([Section("INBOX", new_messages(500))])
        self.assertEqual([p.payload for p in pushes], [b'* SELECT "INBOX"\r\n'])
        self.assertEqual(pushes[0].synced, ("INBOX",))

    def test_the_biggest_mailbox_is_synced_first(self):
        pushes = render([
            Section("INBOX", new_messages(2)),
            Section("Lists", new_messages(500, start=100)),
        ])
        self.assertEqual(len(pushes), 1)
        self.assertEqual(lines(pushes[0].payload)[0], b'* SELECT "INBOX"')
        self.assertEqual(lines(pushes[0].payload)[-1], b'* SELECT "Lists"')
        self.assertEqual(sorted(fetched(pushes)), [1, 2])
        self.assertEqual(pushes[0].synced, ("Lists",))
        self.assertEqual(pushes[0].mailboxes, ("INBOX", "Lists"))

    def test_smaller_budget(self):
        pushes = render([Section("INBOX", new_messages(3))], budget=400)
        for push in pushes:
            self.assertLessEqual(len(push.payload), 400)
        self.assertEqual(sorted(fetched(pushes)), [1, 2, 3])

    def test_response_too_big_alone_means_sync(self):
        flags = frozenset("kw%d" % i for i in range(1000))
        [push] = render([Section("INBOX", (FlagUpdate(1, flags),))])
        self.assertEqual(push.payload, b'* SELECT "INBOX"\r\n')

    def test_sync_that_cannot_fit_is_left_out(self):
        self.assertEqual(render([Section("x" * 100)], budget=50), [])

    def test_too_many_list_responses_keep_what_fits(self):
        items = tuple(ListUpdate("box-%04d" % i) for i in range(2000))
        pushes = render([Section(None, items)])
        self.assertEqual(len(pushes), MAX_PUSHES_PER_BURST)
        kept = [item for p in pushes for s in p.sections for item in s.items]
        self.assertEqual(kept, list(items[:len(kept)]))
        for push in pushes:
            self.assertLessEqual(len(push.payload), MAX_PLAINTEXT)

    def test_sections_record_what_each_push_carries(self):
        pushes = render([Section("INBOX", new_messages(200))])
        carried = [m.uid for p in pushes for s in p.sections for m in s.items]
        self.assertEqual(carried, list(range(1, 201)))


headers_strategy = st.one_of(
    st.just(RFC3501),
    st.binary(max_size=300).map(lambda b: b"Subject: " + b + b"\r\n\r\n"),
    st.text(max_size=3000).map(lambda t: b"Subject: " + t.encode("utf-8") + b"\r\nFrom: "
                                + t[:300].encode("utf-8") + b" <a@b.example>\r\n\r\n"),
)
flags_strategy = st.frozensets(st.sampled_from(["\\Seen", "\\Flagged", "$Junk", "kw", "x y"]))
item_strategy = st.one_of(
    st.builds(NewMessage, st.integers(1, 10**9), flags_strategy, headers_strategy,
              st.integers(0, 1000)),
    st.builds(FlagUpdate, st.integers(1, 10**9), flags_strategy),
    st.builds(Vanished, st.lists(st.integers(1, 5000), min_size=1, max_size=300).map(tuple)),
)
mailbox_strategy = st.text(min_size=1, max_size=40)


class PropertyTests(unittest.TestCase):
    @settings(max_examples=150, deadline=None)
    @given(
        sections=st.lists(
            st.builds(Section, mailbox_strategy, st.lists(item_strategy, max_size=60).map(tuple)),
            max_size=4, unique_by=lambda s: s.mailbox),
        budget=st.integers(120, MAX_PLAINTEXT),
    )
    def test_every_body_fits_and_every_response_is_whole(self, sections, budget):
        pushes = render(sections, budget)
        syncs = 0
        for push in pushes:
            self.assertLessEqual(len(push.payload), budget)
            push.payload.decode("utf-8")
            current = None
            for line in lines(push.payload):
                if line.startswith(b"* SELECT "):
                    current = line
                    syncs += 1
                    continue
                # every other response is about the mailbox of a * SELECT in the same body
                self.assertIsNotNone(current, push.payload[:200])
                self.assertTrue(FETCH_RE.match(line) or re.match(rb"\A\* VANISHED [0-9:,]+\Z", line),
                                line[:200])
                self.assertEqual(line.count(b"\r"), 0)
            # what a body says it carries is what it holds
            for section in push.sections:
                for item in section.items:
                    if isinstance(item, (NewMessage, FlagUpdate)):
                        self.assertIn(b"* %d UIDFETCH" % item.uid, push.payload)
        if len(pushes) > MAX_PUSHES_PER_BURST:
            # only generic syncs may take more bodies than the cap
            self.assertTrue(all(not p.sections for p in pushes))
        # nothing is lost: each mailbox with news is either carried or synced
        for section in sections:
            if not section.items or len(select_line(section.mailbox)) > budget:
                continue
            told = [p for p in pushes if section.mailbox in p.mailboxes]
            self.assertTrue(told, section.mailbox)
