"""One way to measure a point, offline or online, and what every measurement is annotated with.

``Measurer`` is the seam the sweep and the FOM suite drive: ``measure(point) -> Measurement``,
never raising for a failed point. ``annotate`` adds the hardware, the FLOP-rate counts and the
time stamp, the same way for both modes.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Protocol

from servemark.offline.runner import run_offline
from servemark.suites import hardware as hw
from servemark.suites.flops import ModelShape, decode_flops, prefill_flops
from servemark.suites.measurement import Measurement
from servemark.suites.modelconfig import load_shape
from servemark.suites.online import OnlineMeasurer
from servemark.suites.point import Point, RunSettings


class Measurer(Protocol):
    model: str

    def measure(self, point: Point) -> Measurement: ...

    def __enter__(self) -> Measurer: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")[:120]


class OfflineMeasurer:
    """Each point in a fresh vllm.LLM worker process; worker logs kept in ``log_dir``."""

    def __init__(self, settings: RunSettings, log_dir: Path | None = None) -> None:
        assert settings.model, "offline mode needs a model"
        self.settings = settings
        self.model = settings.model
        self.log_dir = log_dir

    def __enter__(self) -> OfflineMeasurer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        pass

    def measure(self, point: Point) -> Measurement:
        log = None if self.log_dir is None else self.log_dir / f"{_slug(point.label())}.log"
        return run_offline(point, self.settings, log)


def make_measurer(settings: RunSettings, log_dir: Path | None = None) -> Measurer:
    if settings.mode == "online":
        return OnlineMeasurer(settings)
    return OfflineMeasurer(settings, log_dir)


def detect_hardware(settings: RunSettings) -> hw.Hardware:
    """The override, else this machine's — for online runs only when the server is local."""
    if settings.hardware:
        return hw.Hardware(settings.hardware, settings.num_hardware or 1, "given")
    if settings.mode == "online" and not hw.is_local_url(settings.base_url):
        return hw.UNKNOWN
    return hw.detect()


def model_shape(settings: RunSettings, model: str) -> ModelShape | None:
    return load_shape(settings.model_config or settings.model or model)


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def annotate(m: Measurement, settings: RunSettings, hardware: hw.Hardware,
             shape: ModelShape | None, started_at: str | None = None) -> Measurement:
    """Add what every row carries: hardware, devices used, FLOP counts, start time."""
    p = m.point
    m.hardware = hardware.name
    m.num_hardware = settings.num_hardware or hardware.used(p.tensor_parallel, p.pipeline_parallel)
    m.started_at = started_at or m.started_at or now_utc()
    if shape is not None:
        m.flops_prefill = prefill_flops(p.batch_size, shape, p.input_len)
        m.flops_decode = decode_flops(p.batch_size, shape, p.output_len)
    return m
