"""``servemark run SPEC`` (deploy or attach → load points → teardown) and ``servemark init``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from servemark.cli.bench import report_result
from servemark.cli.common import err, handle_errors, redact_text
from servemark.cli.deploy import deploy_progress
from servemark.cli.progress import RichBenchProgress
from servemark.deploy.preflight import fit_warning, gpu_identity
from servemark.deploy.replicas import Deployment
from servemark.errors import ConfigError
from servemark.experiment import example_spec, load_spec
from servemark.load.runner import RunControl
from servemark.orchestrate import recorded_spec, resume_experiment, run_experiment


@handle_errors
def run_command(
    spec_path: Annotated[Path | None, typer.Argument(metavar="SPEC", help="Experiment spec (YAML); `servemark init` writes an example")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary JSON on stdout")] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory (stopped by a crash, kill or Ctrl-C): deploy again, send only the missing requests; SPEC is needed only if it had secrets")] = None,
) -> None:
    """Run an experiment spec: deploy (or attach) → wait until ready → load points → teardown."""
    if spec_path is None and resume is None:
        raise ConfigError("give a SPEC file (or --resume RUN_DIR)", "servemark init writes an example")
    spec = load_spec(spec_path) if spec_path is not None else recorded_spec(resume)  # type: ignore[arg-type]
    replicas = spec.deploy.replicas if spec.deploy else 1
    grace = spec.bench_config(None if spec.deploy is None else "http://x").grace_period_s
    if spec.deploy is not None and spec.deploy.device != "cpu" and (
            warning := fit_warning(spec.deploy.model, spec.deploy.vllm_args, gpu_identity())):
        err.print(f"[yellow]warning[/yellow] {escape(warning)}", soft_wrap=True)

    def on_ready(deployment: Deployment) -> None:
        for server in deployment.servers:
            err.print(f"[green]ready[/green] {server.base_url} (log: {server.log_path})", highlight=False)

    with deploy_progress(replicas if isinstance(replicas, int) else 2) as on_progress, \
            RichBenchProgress(err) as progress:
        if resume is not None:
            result = resume_experiment(resume, spec, on_deploy_progress=on_progress,
                                       on_ready=on_ready, progress=progress,
                                       control=RunControl(grace), handle_signals=True,
                                       argv=sys.argv)
        else:
            result = run_experiment(spec, on_deploy_progress=on_progress, on_ready=on_ready,
                                    progress=progress, control=RunControl(grace),
                                    handle_signals=True, argv=sys.argv)
    if spec.deploy is not None:
        err.print("servers stopped")
    code = report_result(result.bench, as_json)
    for exc in result.server_errors:
        if exc.log_tail:
            err.print(redact_text(exc.log_tail), markup=False, highlight=False, style="dim")
        err.print(f"[bold red]server died during the run:[/bold red] {exc.one_line()}", highlight=False)
    raise typer.Exit(code or (1 if result.server_errors else 0))


@handle_errors
def init_command(
    path: Annotated[Path, typer.Argument(help="Where to write the example spec")] = Path("experiment.yaml"),
    model: Annotated[str, typer.Option(help="Model directory or Hugging Face name to put in the spec")] = "/path/to/model",
    served_model_name: Annotated[str, typer.Option(help="Served model name in the spec")] = "my-model",
    cpu: Annotated[bool, typer.Option(help="CPU-friendly vLLM flags and a small workload")] = False,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file")] = False,
) -> None:
    """Write a commented example experiment spec."""
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists", "choose another path or pass --force")
    path.write_text(example_spec(path.name, model, served_model_name, path.stem, cpu=cpu))
    err.print(f"wrote {path}; edit it, then: servemark run {path}", highlight=False)
