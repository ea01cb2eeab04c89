"""The data folder's names stay the ones docs/operating.rst documents.

A renamed file is one an upgraded server no longer finds (users, keys,
subscriptions lost), so each name is pinned here, once.
"""

import os

from twisted.trial import unittest

from imapwebpush import datadir


class LayoutTests(unittest.TestCase):
    def test_names(self):
        data = os.path.join("srv", "imapwebpush-data")
        self.assertEqual(
            {
                "users": datadir.users(data),
                "users_lock": datadir.users_lock(data),
                "mail": datadir.mail(data),
                "vapid": datadir.vapid(data),
                "subscriptions": datadir.subscriptions(data),
                "outbox": datadir.outbox(data),
                "topic_key": datadir.topic_key(data),
                "owed": datadir.owed(data),
                "rate_limits": datadir.rate_limits(data),
                "spool": datadir.spool(data),
                "queue": datadir.queue(data),
                "dkim": datadir.dkim(data),
            },
            {
                "users": os.path.join(data, "users.json"),
                "users_lock": os.path.join(data, ".users.lock"),
                "mail": os.path.join(data, "mail"),
                "vapid": os.path.join(data, "vapid"),
                "subscriptions": os.path.join(data, "webpush-subscriptions.sqlite"),
                "outbox": os.path.join(data, "webpush-outbox.sqlite"),
                "topic_key": os.path.join(data, "webpush-topic.key"),
                "owed": os.path.join(data, "webpush-owed.sqlite"),
                "rate_limits": os.path.join(data, "webpush-rate.sqlite"),
                "spool": os.path.join(data, "spool"),
                "queue": os.path.join(data, "queue"),
                "dkim": os.path.join(data, "dkim"),
            },
        )

    def test_default(self):
        self.assertEqual(datadir.DEFAULT_DATA, "imapwebpush-data")


class PrepareTests(unittest.TestCase):
    def test_creates_the_folder_0700_but_not_its_parents(self):
        parent = os.path.abspath(self.mktemp())
        with self.assertRaises(datadir.DataDirError) as e:
            datadir.prepare(os.path.join(parent, "data"))
        self.assertEqual(str(e.exception), "cannot create data folder %s: %s does not exist"
                         % (os.path.join(parent, "data"), parent))
        os.mkdir(parent)
        path = datadir.prepare(os.path.join(parent, "data"))
        self.assertEqual(path, os.path.join(parent, "data"))
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o700)

    def test_create_false_needs_the_folder(self):
        path = os.path.abspath(self.mktemp())
        with self.assertRaises(datadir.DataDirError) as e:
            datadir.prepare(path, create=False)
        self.assertEqual(str(e.exception), "data folder %s does not exist" % (path,))
