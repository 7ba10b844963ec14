"""Following a batch job's files: its output and the server logs in its run directory, read as
they grow, turned into (source, line) pairs; server lines are reduced to readiness stages."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from servemark.deploy.readiness import parse_line


class _Tail:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = ""

    def read(self) -> list[str]:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                fh.seek(self.offset)
                data = fh.read()
                self.offset = fh.tell()
        except FileNotFoundError:
            return []
        text = self.partial + data.replace("\r", "\n")
        lines = text.split("\n")
        self.partial = lines.pop()
        return [ln for ln in lines if ln.strip()]


def follow(output: Path, run_dir: Path | None, finished: Callable[[], bool],
           poll_s: float = 1.0) -> Iterator[tuple[str, str]]:
    """Yield ``("job", line)`` for the batch output and ``("server-rN", stage)`` whenever a
    server's startup stage changes, until ``finished()`` is true and the files are drained."""
    tails = {"job": _Tail(output)}
    stages: dict[str, str] = {}
    while True:
        done = finished()
        if run_dir is not None:
            for log in sorted(run_dir.glob("server-r*.log")):
                tails.setdefault(log.stem, _Tail(log))
        for name, tail in tails.items():
            for line in tail.read():
                if name == "job":
                    yield name, line
                    continue
                update = parse_line(line)
                if update is None:
                    continue
                text = update.stage if update.total is None else \
                    f"{update.stage} {update.done}/{update.total}"
                if stages.get(name) != text:
                    stages[name] = text
                    yield name, text
        if done:
            return
        time.sleep(poll_s)
