"""Catalogs of accelerators and models (package data, each entry with its source), and resolving
a model argument: a config.json, a directory, a cached hub name, or a catalog name.

This is the planner's only reader of files; everything else in ``servemark.plan`` is pure.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from servemark.errors import ConfigError
from servemark.plan.arch import ModelArch, parse_hf_config

GIB = 2**30


@dataclass(frozen=True)
class GPU:
    """One accelerator. Bandwidths in GB/s (10^9 bytes/s), peaks in dense TFLOPS."""

    name: str
    vendor: str
    memory_gb: float  # datasheet capacity, 10^9 bytes
    mem_bw_gbs: float
    bf16_tflops: float
    fp8_tflops: float | None
    interconnect: str
    interconnect_gbs: float  # per GPU, one direction
    reported_gib: float | None = None  # what CUDA reports as total memory, when known
    source: str = ""
    note: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def memory_bytes(self) -> float:
        """Datasheet capacity: what the published planning figures divide by."""
        return self.memory_gb * 1e9

    @property
    def device_total_bytes(self) -> float:
        """What the runtime sees as total memory (the reported figure when known, else the
        datasheet capacity — conservative, since HBM is sized in GiB)."""
        return self.reported_gib * GIB if self.reported_gib else self.memory_bytes

    def peak_flops(self, dtype: str) -> float:
        """Dense peak for the compute dtype: FP8 where the weights are FP8 and the GPU has it."""
        if dtype in ("fp8", "int8") and self.fp8_tflops:
            return self.fp8_tflops * 1e12
        return self.bf16_tflops * 1e12


def _data(name: str) -> dict[str, Any]:
    text = resources.files("servemark").joinpath("data", name).read_text()
    return dict(json.loads(text))


@cache
def gpu_catalog() -> dict[str, GPU]:
    out = {}
    for name, d in _data("plan_gpus.json")["gpus"].items():
        out[name] = GPU(name=name, vendor=d["vendor"], memory_gb=d["memory_gb"],
                        mem_bw_gbs=d["mem_bw_gbs"], bf16_tflops=d["bf16_tflops"],
                        fp8_tflops=d.get("fp8_tflops"), interconnect=d["interconnect"],
                        interconnect_gbs=d["interconnect_gbs"], reported_gib=d.get("reported_gib"),
                        source=d["source"], note=d.get("note", ""), aliases=tuple(d.get("aliases", ())))
    return out


def _norm(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def get_gpu(name: str) -> GPU:
    """A GPU by catalog name or alias (case, spaces and dashes ignored)."""
    key = _norm(name)
    for gpu in gpu_catalog().values():
        if key in {_norm(gpu.name), *(_norm(a) for a in gpu.aliases)}:
            return gpu
    raise ConfigError(f"unknown GPU {name!r}",
                      f"choose one of: {', '.join(gpu_catalog())} (see `servemark plan gpus`)")


def custom_gpu(base: GPU | None, memory_gb: float | None = None, mem_bw_gbs: float | None = None,
               tflops: float | None = None, interconnect_gbs: float | None = None) -> GPU:
    """A catalog GPU with some figures overridden, or a GPU described only by those figures."""
    if base is None:
        missing = [flag for flag, v in (("--memory-gb", memory_gb), ("--mem-bw-gbs", mem_bw_gbs),
                                        ("--tflops", tflops)) if v is None]
        if missing:
            raise ConfigError(f"a custom GPU needs {', '.join(missing)}",
                              "or name a catalog GPU with --gpu")
        assert memory_gb is not None and mem_bw_gbs is not None and tflops is not None
        return GPU("custom", "custom", memory_gb, mem_bw_gbs, tflops, None, "custom",
                   interconnect_gbs or 64.0, source="given on the command line")
    changes: dict[str, Any] = {}
    if memory_gb is not None:
        changes.update(memory_gb=memory_gb, reported_gib=None)
    if mem_bw_gbs is not None:
        changes["mem_bw_gbs"] = mem_bw_gbs
    if tflops is not None:
        changes.update(bf16_tflops=tflops, fp8_tflops=None)
    if interconnect_gbs is not None:
        changes["interconnect_gbs"] = interconnect_gbs
    if changes:
        changes["source"] = base.source + " (overridden on the command line)"
    return replace(base, **changes)


@cache
def _model_entries() -> dict[str, dict[str, Any]]:
    return dict(_data("plan_models.json")["models"])


def model_names() -> list[str]:
    return list(_model_entries())


def catalog_model(name: str) -> ModelArch | None:
    key = _norm(name)
    for entry_name, entry in _model_entries().items():
        if key in {_norm(entry_name), *(_norm(a) for a in entry.get("aliases", ()))}:
            return parse_hf_config(entry["config"], entry_name, entry.get("nominal_params"),
                                   entry.get("source"))
    return None


def _hub_cache_dirs() -> list[Path]:
    dirs = []
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]))
    home = os.environ.get("HF_HOME")
    dirs.append(Path(home) / "hub" if home else Path.home() / ".cache" / "huggingface" / "hub")
    return dirs


def _hub_config(repo_id: str) -> Path | None:
    folder = "models--" + repo_id.replace("/", "--")
    for root in _hub_cache_dirs():
        snaps = sorted((root / folder / "snapshots").glob("*/config.json"),
                       key=lambda p: p.stat().st_mtime, reverse=True)
        if snaps:
            return snaps[0]
    return None


def load_config_file(path: Path, name: str | None = None) -> ModelArch:
    try:
        cfg = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check the path") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})",
                          "pass a Hugging Face config.json") from None
    return parse_hf_config(cfg, name or path.parent.name or str(path), source=str(path))


def resolve_model(spec: str) -> ModelArch:
    """MODEL as a user types it: a config.json, a model directory, a cached hub name, or a
    catalog name. Local files win over the catalog, so a user's own config is what is planned."""
    path = Path(spec).expanduser()
    if path.is_file():
        return load_config_file(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            return load_config_file(path / "config.json", path.name)
        raise ConfigError(f"{path} has no config.json", "pass a Hugging Face model directory")
    if "/" in spec and (cached := _hub_config(spec)) is not None:
        arch = load_config_file(cached, spec)
        known = catalog_model(spec)
        return replace(arch, nominal_params=known.nominal_params) if known else arch
    found = catalog_model(spec)
    if found is not None:
        return found
    raise ConfigError(f"unknown model {spec!r} (not a file, a directory, a cached hub model or a catalog name)",
                      f"pass a config.json, or one of: {', '.join(model_names())}")


@cache
def measurement_data() -> dict[str, Any]:
    """The shipped table of published measurements (rows and their sources)."""
    return _data("plan_measurements.json")
