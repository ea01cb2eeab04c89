"""Packaging; metadata lives in setup.cfg.

``twisted/plugins/`` has no ``__init__.py`` (it is Twisted's namespace), so it is
listed by hand here: ``find_packages`` would not see it.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["imapwebpush", "imapwebpush.*"]) + ["twisted.plugins"],
    package_data={"twisted.plugins": ["imapwebpush_plugin.py"]},
)
