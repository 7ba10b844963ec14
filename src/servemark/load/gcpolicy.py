"""Garbage-collector policy during a load point.

Why: at thousands of requests per second the collector's passes — above all the older
generations' walks over everything built before the load (prompts, request specs, tokenizer
state) — take several per cent of the client's CPU. During a point, what exists at its start is
frozen (never scanned again until the point ends) and the young generation is collected less
often; reference cycles made during the run are still collected. ``SERVEMARK_GC=default`` keeps
Python's own settings (to compare, or to debug).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 20_000  # allocations between young-generation passes (Python's default: 700)


@contextmanager
def load_gc() -> Iterator[None]:
    """Freeze the objects that exist now and raise the young threshold until the block ends."""
    if os.environ.get("SERVEMARK_GC", "").lower() == "default" or not gc.isenabled():
        yield
        return
    old = gc.get_threshold()
    gc.freeze()  # no collection first: a full pass over a big heap would delay the point
    gc.set_threshold(max(old[0], YOUNG_THRESHOLD), old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()
