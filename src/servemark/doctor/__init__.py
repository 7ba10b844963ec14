"""``servemark doctor``: is this machine (and this endpoint) ready for a run? Checks are pure
functions of probed facts; the probes (subprocesses, sockets, HTTP) live apart from them."""

from __future__ import annotations

from servemark.doctor.checks import Check, blocking
from servemark.doctor.run import DoctorOptions, diagnose

__all__ = ["Check", "DoctorOptions", "blocking", "diagnose"]
