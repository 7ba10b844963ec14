"""Following a batch job's files: its output and the server logs in its run directory, read as
they grow, turned into (source, line) pairs; server lines are reduced to readiness stages."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from servemark.deploy.readiness import parse_line

# lines the job script (templates/_body.sh.j2) prints: each ready replica, and, in a serve-only
# job, that every server is ready and it now serves until the time limit
READY_PREFIX = "servemark: endpoint ready: "
SERVING_LINE = "servemark: serving until the time limit"


def endpoint_of(line: str) -> str | None:
    """The URL of an ``endpoint ready`` line of the job output, else None."""
    if not line.startswith(READY_PREFIX):
        return None
    return line.removeprefix(READY_PREFIX).split(" ", 1)[0] or None


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
           poll_s: float = 1.0, until_serving: bool = False) -> Iterator[tuple[str, str]]:
    """Yield ``("job", line)`` for the batch output and ``("server-rN", stage)`` whenever a
    server's startup stage changes (``loading weights 3/8`` while shards load), until
    ``finished()`` is true and the files are drained; with ``until_serving`` also once a
    serve-only job says all its servers are ready (such a job runs until its time limit)."""
    tails = {"job": _Tail(output)}
    stages: dict[str, str] = {}
    serving = False
    while True:
        done = finished() or serving
        if run_dir is not None:
            for log in sorted(run_dir.glob("server-r*.log")):
                tails.setdefault(log.stem, _Tail(log))
        for name, tail in tails.items():
            for line in tail.read():
                if name == "job":
                    serving = serving or (until_serving and line.startswith(SERVING_LINE))
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
        if not serving:
            time.sleep(poll_s)
