"""Open-file limits: every in-flight stream holds a socket, so a run with thousands of concurrent
streams needs thousands of file descriptors. Raise the soft limit up to the hard limit when
needed, and say exactly what to do when even that is too low — before the run, not as a storm of
"Too many open files" failures in the middle of it."""

from __future__ import annotations

import resource

from servemark.errors import ConfigError

SPARE_FDS = 64  # log files, results, pipes to workers, the event loop's own


def ensure_open_files(connections: int) -> int:
    """Make room for ``connections`` sockets plus spares; return the soft limit in force."""
    need = connections + SPARE_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or need <= soft:
        return int(soft)
    if hard == resource.RLIM_INFINITY or need <= hard:
        target = need if hard == resource.RLIM_INFINITY else max(need, min(hard, 1 << 20))
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return int(target)
        except (ValueError, OSError):
            pass
    raise ConfigError(
        f"{connections} concurrent streams need about {need} open files, but this process may "
        f"open only {hard if hard != resource.RLIM_INFINITY else soft}",
        f"raise the limit (e.g. `ulimit -n {max(need, 65536)}` or nofile in "
        f"/etc/security/limits.conf), or spread the load with --workers",
    )
