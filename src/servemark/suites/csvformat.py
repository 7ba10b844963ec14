"""CSV formats (pure): our own, with every field and its unit, and the column sets sites parse.

``servemark`` keeps failed points (status, error); the site formats hold measured points only,
since their parsers expect numbers in every row (failures stay in the sweep's journal).
Latencies are seconds and throughputs tokens/s in every format.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from servemark.errors import ConfigError
from servemark.suites.measurement import LATENCY_PERCENTILES, Measurement

Row = dict[str, Any]


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _per_iter(values: list[int]) -> float | int | None:
    if not values:
        return None
    if len(set(values)) == 1:
        return values[0]
    return sum(values) / len(values)


SERVEMARK_COLUMNS: tuple[str, ...] = (
    "timestamp", "status", "error", "mode", "scenario", "model", "hardware", "num_hardware",
    "framework", "framework_version", "precision", "tensor_parallel", "pipeline_parallel",
    "batch_size", "input_len_tokens", "output_len_tokens", "max_model_len_tokens",
    "num_iters_warmup", "num_iters", "input_tokens_per_iter", "output_tokens_per_iter",
    "tokens_exact", "latency_mean_s", "latency_std_s", "latency_min_s", "latency_max_s",
    *(f"latency_p{q}_s" for q in LATENCY_PERCENTILES),
    "throughput_tokens_per_s", "output_tokens_per_s", "flops_per_iter", "flop_rate_tflop_per_s",
    "point_wall_s", "base_url",
)


def servemark_row(m: Measurement) -> Row:
    p, lat = m.point, m.latency
    flops = (None if m.flops_prefill is None or m.flops_decode is None
             else m.flops_prefill + m.flops_decode)
    rate = m.flop_rate_per_s
    row: Row = {
        "timestamp": m.started_at, "status": m.status, "error": m.error, "mode": m.mode,
        "scenario": p.scenario, "model": m.model, "hardware": m.hardware,
        "num_hardware": m.num_hardware, "framework": m.framework,
        "framework_version": m.framework_version, "precision": m.precision,
        "tensor_parallel": p.tensor_parallel, "pipeline_parallel": p.pipeline_parallel,
        "batch_size": p.batch_size, "input_len_tokens": p.input_len,
        "output_len_tokens": p.output_len,
        "max_model_len_tokens": m.max_model_len or p.max_model_len,
        "num_iters_warmup": m.num_iters_warmup, "num_iters": len(m.latencies_s),
        "input_tokens_per_iter": _per_iter(m.input_tokens),
        "output_tokens_per_iter": _per_iter(m.output_tokens),
        "tokens_exact": m.tokens_exact if m.ok else None,
        "latency_mean_s": _r(lat.mean, 6), "latency_std_s": _r(lat.std, 6),
        "latency_min_s": _r(lat.min, 6), "latency_max_s": _r(lat.max, 6),
        "throughput_tokens_per_s": _r(m.throughput_tokens_per_s, 3),
        "output_tokens_per_s": _r(m.output_tokens_per_s, 3),
        "flops_per_iter": flops,
        "flop_rate_tflop_per_s": None if rate is None else round(rate / 1e12, 9),
        "point_wall_s": _r(m.wall_s, 3), "base_url": m.base_url,
    }
    for q in LATENCY_PERCENTILES:
        row[f"latency_p{q}_s"] = _r(getattr(lat, f"p{q}"), 6)
    return row


HARDWARE_COLUMNS = ("Hardware", "Num of Hardware", "Framework", "Model", "Input Output Length",
                    "Batch Size", "Latency", "Throughput")


def hardware_row(m: Measurement) -> Row | None:
    if not m.ok:
        return None
    p = m.point
    return {
        "Hardware": m.hardware, "Num of Hardware": m.num_hardware, "Framework": m.framework,
        "Model": m.model, "Input Output Length": f"{p.input_len}/{p.output_len}",
        "Batch Size": p.batch_size, "Latency": _r(m.latency.mean, 6),
        "Throughput": _r(m.throughput_tokens_per_s, 3),
    }


MODEL_NAME_COLUMNS = ("Model Name", "precision", "throughput", "latency", "batch size",
                      "tensor_parallel", "input length", "output length", "context_length")


def model_name_row(m: Measurement) -> Row | None:
    if not m.ok:
        return None
    p = m.point
    return {
        "Model Name": m.model, "precision": m.precision or "auto",
        "throughput": _r(m.throughput_tokens_per_s, 3), "latency": _r(m.latency.mean, 6),
        "batch size": p.batch_size, "tensor_parallel": p.tensor_parallel,
        "input length": p.input_len, "output length": p.output_len,
        "context_length": m.max_model_len or p.max_model_len or p.input_len + p.output_len,
    }


@dataclass(frozen=True)
class CsvFormat:
    name: str
    columns: tuple[str, ...]
    row: Callable[[Measurement], Row | None]  # None: the point is not written in this format
    description: str


FORMATS: dict[str, CsvFormat] = {
    f.name: f for f in (
        CsvFormat("servemark", SERVEMARK_COLUMNS, servemark_row,
                  "every field with its unit, failed points included"),
        CsvFormat("hardware", HARDWARE_COLUMNS, hardware_row,
                  "Hardware, Num of Hardware, Framework, Model, Input Output Length (I/O), "
                  "Batch Size, Latency (s), Throughput (tokens/s)"),
        CsvFormat("model-name", MODEL_NAME_COLUMNS, model_name_row,
                  "Model Name, precision, throughput, latency, batch size, tensor_parallel, "
                  "input length, output length, context_length"),
    )
}


def get_format(name: str) -> CsvFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown CSV format {name!r}",
                          f"choose one of: {', '.join(FORMATS)}") from None


def render_rows(fmt: CsvFormat, rows: list[Row], header: bool = True) -> str:
    """CSV text of rows in the format's column order (None becomes an empty cell)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fmt.columns), lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))
