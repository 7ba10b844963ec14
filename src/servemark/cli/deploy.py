"""``servemark serve``, ``stop`` and ``ps``: start vLLM servers (one or several replicas), keep
them in the foreground or detach them, list and stop detached ones.

:func:`register` adds these and the experiment (``run``, ``init``) and model (``download``,
``models``) commands to the app.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from servemark.cli.common import Terminated, err, handle_errors, out
from servemark.deploy import registry
from servemark.deploy.preflight import fit_warning, gpu_identity
from servemark.deploy.readiness import LoadProgress
from servemark.deploy.replicas import Deployment, ReplicaProgress
from servemark.errors import ConfigError
from servemark.experiment import DeployConfig, describe_error
from servemark.store.rundir import default_run_dir

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def make_deploy_config(**kwargs: Any) -> DeployConfig:
    try:
        return DeployConfig(**kwargs)
    except ValidationError as exc:
        msg = describe_error(exc, None, DeployConfig).replace("_", "-")
        raise ConfigError(msg, "see `servemark serve --help`") from None


def parse_env(pairs: list[str] | None) -> dict[str, str]:
    env = {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ConfigError(f"--env expects NAME=VALUE, got {pair!r}",
                              "for example --env VLLM_CPU_KVCACHE_SPACE=4")
        env[key] = value
    return env


@contextmanager
def deploy_progress(replicas: int) -> Iterator[ReplicaProgress]:
    """A progress bar per replica, driven by the lines vLLM logs while loading."""
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[name]}[/bold] {task.description}"),
                  BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=err, transient=True) as prog:
        tasks: dict[int, Any] = {}

        def update(index: int, event: LoadProgress) -> None:
            if index not in tasks:
                name = "vLLM" if replicas == 1 else f"replica {index}"
                tasks[index] = prog.add_task("starting", total=None, name=name)
            prog.update(tasks[index], description=event.stage, completed=event.done or 0,
                        total=event.total)

        yield update


@handle_errors
def serve_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model directory or Hugging Face name; vLLM flags follow `--`")],
    replicas: Annotated[str, typer.Option(help="Number of servers on this node, or max (as many as the devices allow)")] = "1",
    device: Annotated[str, typer.Option(help="auto, gpu (CUDA_VISIBLE_DEVICES per replica) or cpu (core binding per replica)")] = "auto",
    cores_per_replica: Annotated[int | None, typer.Option(help="CPU: cores per replica (default: an even share)")] = None,
    served_model_name: Annotated[str | None, typer.Option(help="Name clients use (vLLM's --served-model-name)")] = None,
    host: Annotated[str, typer.Option(help="Address the servers listen on")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="First port (replica i gets PORT+i; default: free ports)")] = None,
    ready_timeout: Annotated[float, typer.Option(help="Seconds until every replica must serve")] = 600.0,
    env: Annotated[list[str] | None, typer.Option(help="NAME=VALUE for the servers' environment (repeatable)")] = None,
    python: Annotated[str | None, typer.Option(help="Python that has vLLM installed (default: this one)")] = None,
    detach: Annotated[bool, typer.Option(help="Leave the servers running; stop them with `servemark stop`")] = False,
    name: Annotated[str | None, typer.Option(help="Name of a detached deployment (default: from the model)")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="Where logs go (default: RESULTS_ROOT/<time>-serve-<model>)")] = None,
    results_root: Annotated[Path, typer.Option(help="Where new run directories are created")] = Path("results"),
) -> None:
    """Start vLLM (any flags after `--`), wait until it serves, keep it running until Ctrl-C."""
    config = make_deploy_config(
        model=model, served_model_name=served_model_name, vllm_args=list(ctx.args), env=parse_env(env),
        replicas=replicas if replicas == "max" else _int(replicas), device=device,
        cores_per_replica=cores_per_replica, host=host, port=port, ready_timeout=ready_timeout,
        python=python,
    )
    if config.device != "cpu" and (warning := fit_warning(model, config.vllm_args, gpu_identity())):
        err.print(f"[yellow]warning[/yellow] {escape(warning)}", soft_wrap=True)
    run_dir = output_dir or default_run_dir(results_root, f"serve-{Path(model).name or model}")
    deployment = Deployment(config, run_dir)
    # SIGTERM/SIGHUP unwind like Ctrl-C (handle_errors), so `with deployment` stops every server
    with deployment:
        count = config.replicas if isinstance(config.replicas, int) else 0
        with deploy_progress(count or 2) as on_progress:
            deployment.start(on_progress)
        (run_dir / "deployment.json").write_text(json.dumps(deployment.describe(), indent=2) + "\n")
        for server, plan in zip(deployment.servers, deployment.plan, strict=True):
            devices = " ".join(f"{k}={v}" for k, v in plan.env.items())
            err.print(f"[green]ready[/green] {server.base_url} {devices} (log: {server.log_path})",
                      highlight=False)
        if detach:
            record = deployment.detach(name)
            err.print(f"detached deployment [bold]{record.name}[/bold]; stop it with: "
                      f"servemark stop {record.name}", highlight=False)
            out.print("\n".join(record.base_urls), highlight=False)
            return
        out.print("\n".join(deployment.base_urls), highlight=False)
        err.print(f"serving {deployment.served_model_name}; Ctrl-C stops every server")
        try:
            while not (dead := deployment.dead()):
                time.sleep(1.0)
        except KeyboardInterrupt as exc:
            err.print("stopping the servers")
            if isinstance(exc, Terminated):
                raise  # exit 128 + signal, after `with deployment` stopped every server
            return
        raise deployment.failure(dead[0])


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--replicas expects an integer or max, got {text!r}",
                          "for example --replicas 2 or --replicas max") from None


@handle_errors
def stop_command(
    name: Annotated[str | None, typer.Argument(help="Deployment to stop (see `servemark ps`)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Stop every detached deployment")] = False,
) -> None:
    """Stop detached deployments: every process of every replica."""
    records = registry.load_all()
    if all_:
        targets = records
    elif name is not None:
        targets = [registry.get(name)]
    elif len(records) == 1:
        targets = records
    elif not records:
        err.print("no detached deployments")
        return
    else:
        raise ConfigError(f"{len(records)} deployments are running ({', '.join(r.name for r in records)})",
                          "name one, or use --all")
    for record in targets:
        alive = registry.stop(record)
        err.print(f"stopped {record.name} ({alive} of {len(record.servers)} servers were running)")


def _age(created_at: str) -> str:
    try:
        seconds = (datetime.now(timezone.utc) - datetime.fromisoformat(created_at)).total_seconds()
    except ValueError:
        return "?"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@handle_errors
def ps_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON")] = False,
) -> None:
    """List detached deployments and whether their servers are still alive."""
    records = registry.load_all()
    if as_json:
        rows = [{**r.to_dict(), "state": r.state()} for r in records]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not records:
        err.print("no detached deployments")
        return
    table = Table(header_style="bold")
    for col in ("name", "state", "model", "endpoints", "pids", "age", "logs"):
        table.add_column(col)
    for r in records:
        state = r.state()
        color = {"running": "green", "degraded": "yellow"}.get(state, "red")
        table.add_row(r.name, f"[{color}]{state}[/{color}]", r.served_model_name,
                      "\n".join(r.base_urls), " ".join(str(s.pid) for s in r.servers),
                      _age(r.created_at), r.run_dir)
    out.print(table)


@handle_errors
def cleanup_command(
    all_: Annotated[bool, typer.Option("--all", help="Also stop detached deployments, Ray nodes started here and batch jobs submitted without --wait")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be stopped")] = False,
) -> None:
    """Stop servers and cancel batch jobs left behind by a servemark that was killed (kill -9,
    OOM, lost node).

    Only processes servemark recorded are signalled, each checked by PID and start time; only
    jobs it recorded are cancelled, on the cluster they went to, under their name."""
    from servemark.deploy.cleanup import cleanup

    seen = False
    for o in cleanup(all_, dry_run):
        seen = seen or o.kind != "note"
        to_out = o.kind == "would" or (o.kind == "kept" and dry_run)
        (out if to_out else err).print(o.text, highlight=False)
    if not seen:
        err.print("nothing left running")


def register(app: typer.Typer) -> None:
    """Add the deploy, experiment and model commands to the servemark app."""
    from servemark.cli.experiment import init_command, run_command
    from servemark.cli.models import download_command, models_command

    app.command("serve", context_settings=PASS_THROUGH)(serve_command)
    app.command("stop")(stop_command)
    app.command("ps")(ps_command)
    app.command("cleanup")(cleanup_command)
    app.command("run")(run_command)
    app.command("init")(init_command)
    app.command("download")(download_command)
    app.command("models")(models_command)
