"""Build a checker from CLI-style options, and run checks beside a benchmark."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import IO, Any

import orjson

from servemark.errors import ConfigError
from servemark.safety.base import SafetyChecker, Verdict

KINDS = ("local", "judge", "azure")
SAFETY_JSONL = "safety.jsonl"


def make_checker(kind: str, *, rules: Path | None = None, judge_url: str | None = None,
                 judge_model: str | None = None, headers: dict[str, str] | None = None,
                 threshold: int | None = None) -> SafetyChecker:
    if kind == "local":
        from servemark.safety.local import LocalChecker, load_rules

        return LocalChecker(load_rules(rules), threshold if threshold is not None else 2)
    if kind == "judge":
        from servemark.safety.judge import JudgeChecker

        if not judge_url or not judge_model:
            raise ConfigError("the judge checker needs a served guard model",
                              "pass --judge-url URL and --judge-model NAME")
        return JudgeChecker(judge_url, judge_model, headers)
    if kind == "azure":
        from servemark.safety.azure import AzureChecker

        return AzureChecker(threshold=threshold if threshold is not None else 4)
    raise ConfigError(f"unknown safety checker {kind!r}", f"choose one of {', '.join(KINDS)}")


class SafetyMonitor:
    """Checks texts in the background during a run (a slow checker must not slow the load),
    writes one line per verdict to ``safety.jsonl`` and counts verdicts per load point."""

    def __init__(self, checker: SafetyChecker, run_dir: Path, targets: tuple[str, ...] = ("output",)):
        self.checker = checker
        self.targets = targets
        self.path = Path(run_dir) / SAFETY_JSONL
        self._file: IO[bytes] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.counts: dict[str, dict[str, int]] = {}

    async def __aenter__(self) -> SafetyMonitor:
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in __aexit__
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.drain()
        await self.checker.close()
        if self._file is not None:
            self._file.close()

    def submit(self, request_id: int, load_point: str, target: str, text: str) -> None:
        if target in self.targets:
            task = asyncio.get_running_loop().create_task(self._one(request_id, load_point, target, text))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _one(self, request_id: int, load_point: str, target: str, text: str) -> None:
        try:
            verdict = await self.checker.check(text)
        except Exception as exc:  # a checker bug is recorded per request, never fatal
            verdict = Verdict(self.checker.name, None, error=f"{type(exc).__name__}: {exc}"[:300])
        c = self.counts.setdefault(load_point, {"checked": 0, "flagged": 0, "errors": 0})
        c["checked"] += 1
        c["flagged"] += verdict.flagged is True
        c["errors"] += verdict.flagged is None
        if self._file is not None:
            line: dict[str, Any] = {"request_id": request_id, "load_point": load_point,
                                    "target": target, **verdict.to_dict()}
            with contextlib.suppress(OSError):
                self._file.write(orjson.dumps(line) + b"\n")

    async def drain(self) -> None:
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def summary(self) -> dict[str, Any]:
        return {"checker": self.checker.name, "targets": list(self.targets),
                "file": SAFETY_JSONL, "points": self.counts}
