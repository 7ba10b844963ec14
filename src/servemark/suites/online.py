"""Online batch measurement against a served model (the FOM scripts' online mode).

A batch is B separate requests of exactly I prompt tokens (token-exact prompts from
servemark.workload.synthetic) and O output tokens (ignore_eos), sent together; an iteration
ends when the last one completes. Warm-up iterations first, then K timed ones. Throughput is
Σ (input + output) tokens / Σ iteration wall times. A request that fails makes the point fail
with the server's reason (e.g. a prompt longer than the server's max model length).
"""

from __future__ import annotations

import asyncio
import random
import time
from types import TracebackType
from typing import Any

from servemark.client.openai import GenerationOptions, RequestSpec
from servemark.client.probe import EndpointInfo, probe
from servemark.client.request import Target, execute
from servemark.client.transport import AiohttpTransport, Timeouts
from servemark.errors import ConfigError, ServemarkError
from servemark.suites.measurement import Measurement, failed
from servemark.suites.point import Point, RunSettings
from servemark.workload.synthetic import random_prompts
from servemark.workload.tokenizer import Tokenizer, load_tokenizer


def point_seed(seed: int, point: Point) -> int:
    """Distinct, reproducible prompts per point."""
    return (seed * 1_000_003 + point.input_len * 7919 + point.output_len * 104_729
            + point.batch_size * 31 + point.tensor_parallel)


class OnlineMeasurer:
    """Measures points against one server: probes it and loads the tokenizer once.

    Use as a context manager; it owns an event loop and one pooled HTTP session.
    """

    def __init__(self, settings: RunSettings) -> None:
        if not settings.base_url:
            raise ConfigError("online mode needs --base-url", "e.g. --base-url http://localhost:8000")
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._transport = AiohttpTransport(
            max_connections=0, timeouts=Timeouts(30.0, 3600.0, settings.timeout_s))
        self._headers = ({"Authorization": f"Bearer {settings.api_key}"}
                         if settings.api_key else {})
        self.info: EndpointInfo | None = None
        self.model: str = settings.model or ""
        self._tokenizer: Tokenizer | None = None

    def __enter__(self) -> OnlineMeasurer:
        try:
            self._loop.run_until_complete(self._open())
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:  # after Ctrl-C, cancel what is still in flight before closing the session
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._transport.close())
        finally:
            self._loop.close()

    async def _open(self) -> None:
        assert self.settings.base_url is not None
        info = await probe(self._transport, self.settings.base_url, self.settings.model,
                           self._headers)
        if not self.settings.model:
            if len(info.models) != 1:
                raise ConfigError(f"the server serves {len(info.models)} models "
                                  f"({', '.join(info.models)})", "choose one with --model")
            self.model = info.models[0]
        self.info = info
        self._tokenizer = await asyncio.to_thread(
            load_tokenizer, self.settings.tokenizer, self.settings.base_url, self.model,
            self._headers)

    def measure(self, point: Point) -> Measurement:
        started = time.perf_counter()
        m = self._loop.run_until_complete(self._measure(point))
        m.wall_s = time.perf_counter() - started
        return m

    async def _measure(self, point: Point) -> Measurement:
        s, info = self.settings, self.info
        assert info is not None and self._tokenizer is not None
        common: dict[str, Any] = {"num_iters_warmup": s.num_iters_warmup, "precision": s.dtype,
                  "max_model_len": info.max_model_len, "base_url": info.base_url,
                  "framework_version": info.server_version}
        iterations = s.num_iters_warmup + s.num_iters
        try:
            specs = await asyncio.to_thread(
                lambda: list(random_prompts(self._tokenizer,  # type: ignore[arg-type]
                                            point.batch_size * iterations, point.input_len,
                                            point.output_len, "completions",
                                            random.Random(point_seed(s.seed, point)))))
        except (ServemarkError, OSError, ValueError) as exc:
            reason = exc.one_line() if isinstance(exc, ServemarkError) else str(exc)
            return failed(point, "online", self.model, f"building prompts: {reason}", **common)
        opts = GenerationOptions(model=self.model, stream=False, ignore_eos=True, temperature=1.0)
        target = Target(info.base_url, tuple(self._headers.items()))
        t0 = time.perf_counter()
        m = Measurement(point=point, mode="online", model=self.model, status="ok", **common)
        for it in range(iterations):
            batch = [x for x in specs[it * point.batch_size:(it + 1) * point.batch_size]
                     if isinstance(x, RequestSpec)]  # random prompts are single requests
            begin = time.perf_counter()
            records = await asyncio.gather(*(
                execute(self._transport, target, spec, opts, t0=t0, load_point=point.label())
                for spec in batch))
            elapsed = time.perf_counter() - begin
            bad = next((r for r in records if not r.ok), None)
            if bad is not None:
                return failed(point, "online", self.model,
                              f"request failed ({bad.error_kind}): {bad.error}", **common)
            if it < s.num_iters_warmup:
                continue
            m.latencies_s.append(elapsed)
            m.input_tokens.append(sum(r.input_tokens or 0 for r in records))
            m.output_tokens.append(sum(r.output_tokens or 0 for r in records))
        return m
