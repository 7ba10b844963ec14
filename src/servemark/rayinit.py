"""``ray.init`` without Ray's SIGTERM handler.

Why: connecting a driver replaces the process's SIGTERM handler with one that calls
``sys.exit(15)``, which skips servemark's own handling (stop what we started, keep what was
measured, exit 128 + 15) whenever a batch system or ``kill`` stops a command after it
connected. The handler in place before is put back after the connect, and a SIGTERM that
came during it (Ray's handler raised ``SystemExit(15)``) is handed to that handler.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def init_keeping_signals(ray: Any, **kwargs: Any) -> Any:
    """``ray.init(**kwargs)`` keeping the SIGTERM handler that was in place before it."""
    if threading.current_thread() is not threading.main_thread():
        return ray.init(**kwargs)
    before = signal.getsignal(signal.SIGTERM)
    try:
        return ray.init(**kwargs)
    except SystemExit as exc:
        if exc.code != signal.SIGTERM or not callable(before):
            raise
        signal.signal(signal.SIGTERM, before)
        before(signal.SIGTERM, None)  # ours raises (Terminated); if it returns, so does Ray's
        raise
    finally:
        signal.signal(signal.SIGTERM, before)
