"""docs/layout.rst names every module of the package, and only modules that exist.

The page is read from the source tree next to tests/; a copy of the tests run
without it (CI runs one) skips, saying why.
"""

import os
import re

from twisted.trial import unittest

import imapwebpush

LAYOUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "layout.rst")
PACKAGE = os.path.dirname(os.path.abspath(imapwebpush.__file__))
ENTRY = re.compile(r"^\* ``([a-z_/]+\.py)``:", re.M)


def package_modules():
    found = set()
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py") and name != "__init__.py":
                found.add(os.path.relpath(os.path.join(folder, name), PACKAGE).replace(os.sep, "/"))
    return found


class LayoutDocTests(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(LAYOUT):
            raise unittest.SkipTest("no docs/layout.rst beside these tests")
        with open(LAYOUT, encoding="utf-8") as f:
            self.listed = ENTRY.findall(f.read())

    def test_every_module_is_listed_once(self):
        modules = package_modules()
        self.assertEqual(sorted(modules - set(self.listed)), [], "modules docs/layout.rst does not name")
        self.assertEqual(len(self.listed), len(set(self.listed)), "a module listed twice")

    def test_every_listed_module_exists(self):
        self.assertEqual(sorted(set(self.listed) - package_modules()), [],
                         "docs/layout.rst names modules that are gone")
