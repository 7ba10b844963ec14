"""Builds the optional C accelerator of the client's read path (servemark/client/_fastread.c).

Everything else about the package is in pyproject.toml. ``optional=True``: where it cannot be
compiled (no compiler, not Linux) the install goes on and the client reads in Python.
"""

import sys

from setuptools import Extension, setup

ext = [Extension("servemark.client._fastread", ["src/servemark/client/_fastread.c"],
                 optional=True)] if sys.platform == "linux" else []
setup(ext_modules=ext)
