"""Sphinx configuration for the imapwebpush documentation (``sphinx-build docs docs/_build``)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from imapwebpush import __version__  # noqa: E402

project = "imapwebpush"
author = "the imapwebpush authors"
copyright = "the imapwebpush authors"
version = release = __version__

extensions = []
master_doc = "index"
root_doc = "index"
source_suffix = ".rst"
exclude_patterns = ["_build"]
html_theme = "alabaster"
