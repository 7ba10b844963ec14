"""Sample each endpoint's Prometheus ``/metrics`` in the background while a load point runs.

Every reading is appended to ``server_metrics.jsonl`` in the run directory as it is taken; a
window (one load point) starts with a reading before the first request and ends with one taken
after the last response, once the server's token counters have settled, so counter deltas cover
exactly the window. A server without ``/metrics`` (or one that fails) is recorded as such and
never stops the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson

from servemark.profile.prom import Scrape, parse_exposition
from servemark.profile.window import WindowSummary, summarize_window

SERVER_METRICS = "server_metrics.jsonl"
SETTLE_STEP_S = 0.1
SETTLE_MAX_S = 2.0


class MetricsSampler:
    """Owns the sampling session and the series file of one run (use ``async with``)."""

    def __init__(self, endpoints: Sequence[str], run_dir: Path, interval_s: float = 1.0,
                 headers: dict[str, str] | None = None, t0: float | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.path = Path(run_dir) / SERVER_METRICS
        self.interval_s = interval_s
        self.headers = headers or {}
        self.clock = clock
        self.t0 = clock() if t0 is None else t0
        self.series: dict[tuple[str, str], list[tuple[float, Scrape]]] = {}
        self.errors: dict[str, str] = {}  # endpoint -> why sampling stopped for it
        self._session: aiohttp.ClientSession | None = None
        self._file: IO[bytes] | None = None

    async def __aenter__(self) -> MetricsSampler:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in __aexit__
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self._file is not None:
            self._file.close()

    async def scrape(self, endpoint: str) -> Scrape | None:
        """One reading; None (and the reason remembered) when the endpoint cannot be read."""
        if endpoint in self.errors:
            return None
        assert self._session is not None, "use MetricsSampler as an async context manager"
        try:
            async with self._session.get(endpoint + "/metrics", headers=self.headers) as resp:
                if resp.status != 200:
                    self.errors[endpoint] = f"GET /metrics answered HTTP {resp.status}"
                    return None
                text = await resp.text()
            return parse_exposition(text)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            # a transient failure: keep trying on the next tick
            self._write({"t_s": self.clock() - self.t0, "endpoint": endpoint,
                         "error": f"{type(exc).__name__}: {exc}"})
            return None
        except ValueError as exc:
            self.errors[endpoint] = f"/metrics is not Prometheus text: {exc}"
            return None

    def _write(self, obj: dict[str, Any]) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # losing a sample must not fail the benchmark
                self._file.write(orjson.dumps(obj) + b"\n")

    async def _sample(self, label: str) -> list[Scrape | None]:
        t = self.clock() - self.t0
        scrapes = await asyncio.gather(*(self.scrape(e) for e in self.endpoints))
        for endpoint, s in zip(self.endpoints, scrapes, strict=True):
            if s is not None:
                self.series.setdefault((endpoint, label), []).append((t, s))
                self._write({"t_s": round(t, 4), "endpoint": endpoint, "load_point": label,
                             **s.to_dict()})
        return list(scrapes)

    async def _loop(self, label: str) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self._sample(label)

    async def _settle(self, label: str) -> None:
        """Final reading: repeat until the token counters stop moving (bounded)."""
        def tokens(scrapes: list[Scrape | None]) -> list[tuple[float | None, float | None]]:
            return [(None, None) if s is None else
                    (s.values.get("prompt_tokens_total"), s.values.get("generation_tokens_total"))
                    for s in scrapes]

        previous = tokens(await self._sample(label))
        deadline = self.clock() + SETTLE_MAX_S
        while self.clock() < deadline:
            await asyncio.sleep(SETTLE_STEP_S)
            current = tokens(await self._sample(label))
            if current == previous:
                return
            previous = current

    @contextlib.asynccontextmanager
    async def window(self, label: str) -> AsyncIterator[None]:
        """Sample around the body: a reading first, one per interval, settled readings last."""
        await self._sample(label)
        task = asyncio.create_task(self._loop(label))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):
                await self._settle(label)

    def summaries(self, label: str, client_prompt_tokens: int | None = None,
                  client_output_tokens: int | None = None) -> list[WindowSummary]:
        """One summary per endpoint that answered. With several endpoints the client totals are
        the run's, so only the sum of the servers' deltas is comparable with them."""
        out = []
        for endpoint in self.endpoints:
            series = self.series.get((endpoint, label))
            if series:
                one = len(self.endpoints) == 1
                out.append(summarize_window(endpoint, label, series,
                                            client_prompt_tokens if one else None,
                                            client_output_tokens if one else None))
        return out


def observe_point(sampler: MetricsSampler | None,
                  label: str) -> contextlib.AbstractAsyncContextManager[None]:
    """``async with observe_point(sampler, label):`` — a no-op when sampling is off."""
    return sampler.window(label) if sampler is not None else contextlib.nullcontext()


def record_window(doc: dict[str, Any], sampler: MetricsSampler, label: str,
                  client_prompt_tokens: int, client_output_tokens: int) -> list[WindowSummary]:
    """Add one load point's server-side summary to the run document (summary.json)."""
    section = doc.setdefault("server_metrics", {"file": SERVER_METRICS,
                                                "interval_s": sampler.interval_s, "points": []})
    found = sampler.summaries(label, client_prompt_tokens, client_output_tokens)
    section["points"].extend(w.to_dict() for w in found)
    section["unavailable"] = dict(sampler.errors)
    return found
