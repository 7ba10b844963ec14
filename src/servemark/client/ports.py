"""Running out of local ports: each connection to one server (IP, port) needs its own ephemeral
source port, so many thousands of concurrent streams from one source IP can exhaust the range
and ``connect`` fails with EADDRNOTAVAIL. This module turns that errno into one line with the fix."""

from __future__ import annotations

import errno
import functools
from pathlib import Path

PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def is_ports_exhausted(exc: BaseException) -> bool:
    """True for a connect that failed because no local (source) port was free."""
    return isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL


def local_port_range(path: Path = PORT_RANGE_FILE) -> tuple[int, int] | None:
    """``net.ipv4.ip_local_port_range`` (None where it cannot be read: not Linux)."""
    try:
        lo, hi = path.read_text().split()[:2]
        return int(lo), int(hi)
    except (OSError, ValueError):
        return None


def ports_exhausted_message(port_range: tuple[int, int] | None) -> tuple[str, str]:
    """(what is wrong, how to fix it) for EADDRNOTAVAIL on connect."""
    if port_range is None:
        what = "out of local ports (EADDRNOTAVAIL): every connection to a server needs its own source port"
    else:
        lo, hi = port_range
        what = (f"out of local ports (EADDRNOTAVAIL): each connection to a server needs its own "
                f"source port and `sysctl net.ipv4.ip_local_port_range` is {lo} {hi} "
                f"({hi - lo + 1:,} ports per source IP and server)")
    fix = ("widen it (sudo sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"), let closed "
           "ports be reused (net.ipv4.tcp_tw_reuse=1), spread the streams over more source IPs or "
           "servers, or run workers on more machines (--ray-address); or lower the concurrency")
    return what, fix


@functools.lru_cache(maxsize=1)
def ports_exhausted_line() -> str:
    """The one line for this host (read once: a storm of failures reads no files)."""
    what, fix = ports_exhausted_message(local_port_range())
    return f"{what} — {fix}"
