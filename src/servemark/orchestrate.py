"""``servemark run``: one experiment from a spec — deploy (or attach) → ready → load points →
teardown — with everything in one run directory; ``run --resume`` continues a stopped one.

Run directory: ``experiment.json`` (the validated spec, secrets hidden), ``deployment.json``
(servers, ports, devices, redacted commands), ``server*.log``, and the benchmark's
``requests.jsonl``, ``summary.json``, ``summary.csv``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servemark.api import BenchResult, bench
from servemark.deploy.replicas import Deployment, ReplicaProgress
from servemark.errors import ConfigError, ResultsError, ServerStartError
from servemark.experiment import PLACEHOLDER_URL, DeployConfig, ExperimentSpec, parse_spec
from servemark.load.runner import RunControl
from servemark.progress import BenchProgress
from servemark.spec import BenchConfig
from servemark.store.resume import ResumeState, config_from_doc, load_resume_state
from servemark.store.rundir import default_run_dir, utc_now

EXPERIMENT_JSON = "experiment.json"
DEPLOYMENT_JSON = "deployment.json"


@dataclass
class ExperimentResult:
    """The benchmark result, where it is, and the replicas that died while it ran."""

    run_dir: Path
    bench: BenchResult
    deployment: dict[str, Any] | None = None
    server_errors: list[ServerStartError] = field(default_factory=list)


def run_dir_for(spec: ExperimentSpec) -> Path:
    """The run directory: ``bench.output_dir``, or a fresh one under ``bench.results_root``."""
    cfg = spec.bench_config(None if "base_url" in spec.bench else PLACEHOLDER_URL)
    if cfg.output_dir is not None:
        return cfg.output_dir
    name = spec.name or (Path(spec.deploy.model).name if spec.deploy else cfg.model) or "run"
    return default_run_dir(cfg.results_root, name)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def _public_spec(spec: ExperimentSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"name": spec.name,
                            "deploy": spec.deploy.public_dict() if spec.deploy else None}
    bench_section = dict(spec.bench)
    if bench_section.get("api_key") is not None:
        bench_section["api_key"] = "***"
    data["bench"] = bench_section
    return data


def run_experiment(
    spec: ExperimentSpec,
    *,
    on_deploy_progress: ReplicaProgress | None = None,
    on_ready: Any = None,
    progress: BenchProgress | None = None,
    control: RunControl | None = None,
    handle_signals: bool = False,
    argv: list[str] | None = None,
) -> ExperimentResult:
    """Run the whole experiment; every server started here is stopped before returning."""
    run_dir = run_dir_for(spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / EXPERIMENT_JSON, _public_spec(spec))
    if spec.deploy is None:
        cfg = spec.bench_config(output_dir=run_dir)
        result = bench(cfg, progress=progress, control=control, handle_signals=handle_signals,
                       argv=argv)
        return ExperimentResult(run_dir, result)

    def config_for(deployment: Deployment) -> BenchConfig:
        urls = deployment.base_urls
        model = spec.bench.get("model") or deployment.served_model_name
        return spec.bench_config(urls[0] if len(urls) == 1 else urls, output_dir=run_dir,
                                 model=model)

    return _deploy_and_bench(spec.deploy, run_dir, run_dir, config_for, on_deploy_progress,
                             on_ready, progress=progress, control=control,
                             handle_signals=handle_signals, argv=argv)


def _deploy_and_bench(
    deploy: DeployConfig,
    run_dir: Path,
    logs: Path,
    config_for: Callable[[Deployment], BenchConfig],
    on_deploy_progress: ReplicaProgress | None,
    on_ready: Any,
    resume: ResumeState | None = None,
    **bench_kwargs: Any,
) -> ExperimentResult:
    """Start the servers (logs and ``deployment.json`` in ``logs``), benchmark them with the
    config ``config_for`` builds from the running deployment, stop them; servers that died
    during the run are recorded in ``deployment.json`` and returned as errors."""
    with Deployment(deploy, logs) as deployment:
        deployment.start(on_deploy_progress)
        described = deployment.describe()
        _write_json(logs / DEPLOYMENT_JSON, described)
        if on_ready is not None:
            on_ready(deployment)
        result = bench(config_for(deployment), resume=resume, **bench_kwargs)
        errors = [deployment.failure(i) for i in deployment.dead()]
    if errors:
        described["died"] = [e.message for e in errors]
        _write_json(logs / DEPLOYMENT_JSON, described)
    return ExperimentResult(run_dir, result, described, errors)


HIDDEN = "***"


def recorded_spec(run_dir: Path) -> ExperimentSpec:
    """The spec a run directory was made with; an error when it hid secrets we would need."""
    path = run_dir / EXPERIMENT_JSON
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"cannot read {path}: {exc}",
                           "pass the spec again: servemark run SPEC --resume RUN_DIR") from None
    deploy = data.get("deploy") or {}
    hidden = [k for k, v in (deploy.get("env") or {}).items() if v == HIDDEN]
    hidden += [a for a, b in zip(deploy.get("vllm_args") or [], (deploy.get("vllm_args") or [])[1:],
                                 strict=False) if b == HIDDEN]
    hidden += [a.partition("=")[0] for a in deploy.get("vllm_args") or [] if a.endswith("=" + HIDDEN)]
    if hidden or (data.get("bench") or {}).get("api_key") == HIDDEN:
        what = ", ".join(hidden) or "api_key"
        raise ConfigError(f"{path} does not keep secret values ({what})",
                          "pass the spec again: servemark run SPEC --resume RUN_DIR")
    if not data.get("deploy"):
        data.pop("deploy", None)
    return parse_spec(data, str(path))


def resume_experiment(
    run_dir: Path,
    spec: ExperimentSpec | None = None,
    *,
    on_deploy_progress: ReplicaProgress | None = None,
    on_ready: Any = None,
    progress: BenchProgress | None = None,
    control: RunControl | None = None,
    handle_signals: bool = False,
    argv: list[str] | None = None,
) -> ExperimentResult:
    """Continue a stopped experiment in ``run_dir``: deploy again (when it deployed), then the
    benchmark resumes with its recorded config (finished points kept, only missing requests
    sent). The new servers' logs go to ``run_dir/resume-<time>/``."""
    state = load_resume_state(run_dir)
    spec = spec or recorded_spec(run_dir)
    key = spec.bench.get("api_key")
    key = None if key in (None, HIDDEN) else str(key)
    if spec.deploy is None:
        cfg = config_from_doc(state.doc, run_dir, key)
        result = bench(cfg, progress=progress, control=control, handle_signals=handle_signals,
                       argv=argv, resume=state)
        return ExperimentResult(run_dir, result)
    logs = run_dir / f"resume-{utc_now().replace(':', '')}"

    def config_for(deployment: Deployment) -> BenchConfig:
        urls = deployment.base_urls
        return config_from_doc(state.doc, run_dir, key, base_url=urls[0] if len(urls) == 1 else urls)

    return _deploy_and_bench(spec.deploy, run_dir, logs, config_for, on_deploy_progress, on_ready,
                             resume=state, progress=progress, control=control,
                             handle_signals=handle_signals, argv=argv)
