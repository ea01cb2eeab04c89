"""COPY, MOVE, UID variants: COPYUID, TRYCREATE, expunges seen by the mover."""

from tests.harness.imap import ExpungedElsewhereCase, IMAPTestCase, message


class CopyMoveTests(IMAPTestCase):
    def setUp(self):
        super().setUp()
        inbox = self.inbox()
        for n in range(3):
            inbox.add(message("m%d" % n), ["\\Seen"])
        self.trash = self.account().mailbox("Trash")

    def test_copy_copyuid(self):
        validity = self.trash.uidvalidity

        def client():
            w = self.session(select="INBOX")
            copy = w.cmd("c1", "COPY 1,3 Trash")
            uidcopy = w.cmd("c2", "UID COPY 2 Trash")
            w.close()
            return copy, uidcopy

        def check(result):
            copy, uidcopy = result
            self.assertEqual(copy, ["c1 OK [COPYUID %d 1,3 1:2] COPY completed" % validity])
            self.assertEqual(uidcopy, ["c2 OK [COPYUID %d 2 3] COPY completed" % validity])
            self.assertEqual(self.trash.uids(), [1, 2, 3])
            self.assertEqual(self.inbox().uids(), [1, 2, 3])
            self.assertEqual(self.trash.message(2).read(), self.inbox().message(3).read())

        return self.in_thread(client).addCallback(check)

    def test_copy_to_selected_mailbox_announces_exists(self):
        def client():
            w = self.session(select="INBOX")
            lines = w.cmd("c1", "COPY 1 INBOX")
            w.close()
            return lines

        def check(lines):
            self.assertEqual(lines[0], "* 4 EXISTS")
            self.assertTrue(lines[-1].startswith("c1 OK [COPYUID"))

        return self.in_thread(client).addCallback(check)

    def test_move(self):
        validity = self.trash.uidvalidity

        def client():
            w = self.session(select="INBOX")
            move = w.cmd("m1", "MOVE 2:3 Trash")
            uidmove = w.cmd("m2", "UID MOVE 1 Trash")
            w.close()
            return move, uidmove

        def check(result):
            move, uidmove = result
            self.assertEqual(
                move,
                [
                    "* OK [COPYUID %d 2:3 1:2] Moved" % validity,
                    "* 3 EXPUNGE",
                    "* 2 EXPUNGE",
                    "m1 OK MOVE completed",
                ],
            )
            self.assertEqual(
                uidmove,
                ["* OK [COPYUID %d 1 3] Moved" % validity, "* 1 EXPUNGE", "m2 OK MOVE completed"],
            )
            self.assertEqual(self.inbox().uids(), [])
            self.assertEqual(self.trash.uids(), [1, 2, 3])

        return self.in_thread(client).addCallback(check)

    def test_missing_destination_trycreate(self):
        def client():
            w = self.session(select="INBOX")
            copy = w.cmd("c1", "COPY 1 Nowhere")
            move = w.cmd("m1", "MOVE 1 Nowhere")
            c = self.imaplib()
            c.select("INBOX")
            result = c.copy("1", "Nowhere")
            c.logout()
            w.close()
            return copy, move, result

        def check(result):
            copy, move, (typ, data) = result
            self.assertEqual(copy, ["c1 NO [TRYCREATE] No such mailbox"])
            self.assertEqual(move, ["m1 NO [TRYCREATE] No such mailbox"])
            self.assertEqual((typ, data), ("NO", [b"[TRYCREATE] No such mailbox"]))
            self.assertEqual(self.inbox().uids(), [1, 2, 3])

        return self.in_thread(client).addCallback(check)

    def test_move_readonly_refused(self):
        def client():
            w = self.session()
            w.cmd("e1", "EXAMINE INBOX")
            move = w.cmd("m1", "MOVE 1 Trash")
            nowhere = w.cmd("m2", "MOVE 1 Nowhere")
            w.close()
            return move, nowhere

        def check(result):
            move, nowhere = result
            self.assertEqual(move, ["m1 NO [READ-ONLY] The mailbox was opened with EXAMINE"])
            # not [TRYCREATE]: creating the mailbox would not let the MOVE succeed
            self.assertEqual(nowhere, ["m2 NO [READ-ONLY] The mailbox was opened with EXAMINE"])
            self.assertEqual(self.trash.uids(), [])

        return self.in_thread(client).addCallback(check)


class ExpungedByOtherSessionTests(ExpungedElsewhereCase):
    """RFC 2180 4.4 / RFC 5530: COPY or MOVE naming a message another session expunged."""

    def setUp(self):
        super().setUp()
        self.trash = self.account().mailbox("Trash")

    def test_copy_and_move_by_number_copy_nothing(self):
        def client():
            a = self.session(select="INBOX")
            self.expunge_2_elsewhere()
            copy = a.cmd("c1", "COPY 1:3 Trash")
            # the EXPUNGE was told with the NO: now the numbers are 1 and 2
            move = a.cmd("m1", "MOVE 2 Trash")
            a.close()
            return copy, move

        def check(result):
            copy, move = result
            self.assertEqual(copy, ["* 2 EXPUNGE", "c1 NO [EXPUNGEISSUED] Some messages were expunged"])
            validity = self.trash.uidvalidity
            self.assertEqual(
                move,
                ["* OK [COPYUID %d 3 1] Moved" % validity, "* 2 EXPUNGE", "m1 OK MOVE completed"],
            )
            self.assertEqual(self.inbox().uids(), [1])
            self.assertEqual(self.trash.uids(), [1])

        return self.in_thread(client).addCallback(check)

    def test_move_by_number_moves_nothing(self):
        def client():
            a = self.session(select="INBOX")
            self.expunge_2_elsewhere()
            lines = a.cmd("m1", "MOVE 2:3 Trash")
            a.close()
            return lines

        def check(lines):
            self.assertEqual(lines, ["* 2 EXPUNGE", "m1 NO [EXPUNGEISSUED] Some messages were expunged"])
            self.assertEqual(self.inbox().uids(), [1, 3])
            self.assertEqual(self.trash.uids(), [])

        return self.in_thread(client).addCallback(check)

    def test_uid_copy_skips_it_and_tells_the_expunge(self):
        def client():
            a = self.session(select="INBOX")
            self.expunge_2_elsewhere()
            lines = a.cmd("c1", "UID COPY 1:3 Trash")
            a.close()
            return lines

        def check(lines):
            validity = self.trash.uidvalidity
            self.assertEqual(
                lines, ["* 2 EXPUNGE", "c1 OK [COPYUID %d 1,3 1:2] COPY completed" % validity]
            )
            self.assertEqual(self.trash.uids(), [1, 2])

        return self.in_thread(client).addCallback(check)
