"""CPU time the hypervisor took from this machine's client cores during a load point (Linux).

Why: on a virtual machine whose host is oversubscribed, the vCPUs running the client (and often
the server beside it) are paused for milliseconds at a time. The paused client stamps nothing
and answers nothing, so TTFT and ITL grow by the pauses while client CPU and event-loop figures
look unremarkable. /proc/stat's ``steal`` column counts exactly that time; a run that saw much
of it says so instead of reporting the pauses as the server's latency.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

STAT = "/proc/stat"
# /proc/stat per-CPU columns: user nice system idle iowait irq softirq steal (guest time is
# already counted in user)
_STEAL = 7
_COLUMNS = 8

Ticks = tuple[int, int]  # (steal, all) clock ticks, summed over the CPUs read


def parse_ticks(text: str, cpus: Iterable[int] | None = None) -> Ticks | None:
    """Steal and total ticks of ``cpus`` (all CPUs when None) in a /proc/stat text; None when
    the text has no such lines (not Linux, or a kernel without the steal column)."""
    wanted = None if cpus is None else {f"cpu{c}" for c in cpus}
    steal = total = 0
    seen = False
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        if (wanted is not None and name not in wanted) or len(fields) < _COLUMNS:
            continue
        values = [int(v) for v in fields[:_COLUMNS]]
        steal += values[_STEAL]
        total += sum(values)
        seen = True
    return (steal, total) if seen else None


def steal_share(before: Ticks | None, after: Ticks | None) -> float | None:
    """The share of the interval's CPU time that was stolen; None without both readings or
    when no tick passed."""
    if before is None or after is None:
        return None
    ticks = after[1] - before[1]
    if ticks <= 0:
        return None
    return max(0.0, (after[0] - before[0]) / ticks)


def read_ticks(path: str = STAT) -> Ticks | None:
    """Ticks of the CPUs this process may run on (where its client work runs)."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read()
    except OSError:
        return None
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return parse_ticks(text, cpus)
