"""Builds the optional C accelerators of the client's read path (servemark/client/_fastread.c,
the per-read callback; servemark/client/_pump.c, the body-reader thread).

Everything else about the package is in pyproject.toml. ``optional=True``: where it cannot be
compiled (no compiler, not Linux) the install goes on and the client reads in Python.
"""

import sys

from setuptools import Extension, setup

ext = [Extension("servemark.client._fastread", ["src/servemark/client/_fastread.c"],
                 depends=["src/servemark/client/_readcommon.h"],
                 optional=True),
       Extension("servemark.client._pump", ["src/servemark/client/_pump.c"],
                 depends=["src/servemark/client/_readcommon.h"],
                 extra_link_args=["-pthread"], optional=True)] if sys.platform == "linux" else []
setup(ext_modules=ext)
