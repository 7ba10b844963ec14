"""``servemark slurm …`` and ``servemark pbs …``: render, submit, follow and cancel batch jobs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated

import click
import typer

from servemark.cli.common import Terminated, err, handle_errors, out
from servemark.deploy import joblogs, pbs, slurm, submitted
from servemark.deploy.batch import JobStatus
from servemark.deploy.cluster_spec import load_cluster_spec
from servemark.deploy.render import render
from servemark.errors import ConfigError

slurm_app = typer.Typer(help="SLURM batch jobs: render, submit, status, logs, cancel.",
                        no_args_is_help=True)
pbs_app = typer.Typer(help="PBS batch jobs (PBS Pro / OpenPBS): render, submit, status, cancel.",
                      no_args_is_help=True)

SpecArg = Annotated[Path, typer.Argument(help="Cluster spec (YAML)")]
JobArg = Annotated[str, typer.Argument(help="Job id")]
_STYLE = {"COMPLETED": "green", "RUNNING": "cyan", "PENDING": "yellow", "FAILED": "red",
          "CANCELLED": "magenta", "TIMEOUT": "red"}


def _show(st: JobStatus, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(st.as_dict(), indent=2) + "\n")
        return
    style = _STYLE.get(st.state, "white")
    parts = [f"job {st.job_id}", f"[{style}]{st.state}[/{style}]"]
    if st.raw_state and st.raw_state.split(" ")[0] != st.state:
        parts.append(f"({st.raw_state})")
    if st.exit_code is not None:
        parts.append(f"exit {st.exit_code}")
    if st.elapsed:
        parts.append(f"elapsed {st.elapsed}")
    if st.nodes:
        parts.append(f"on {st.nodes}")
    if st.reason and st.reason not in ("None", "(null)"):
        parts.append(f"— {st.reason}")
    out.print(" ".join(parts) + f"  [dim](from {st.source})[/dim]", highlight=False)


def _render(spec: Path, output: Path | None, scheduler: str) -> None:
    text = render(load_cluster_spec(spec), scheduler)  # type: ignore[arg-type]
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        err.print(f"wrote {output}")


def _ask_cancel(job_id: str) -> bool:
    """Ctrl-C while following a job: cancel it? Without a terminal to ask: yes, and say so."""
    if not sys.stdin.isatty():
        err.print(f"\ninterrupted with no terminal to ask: cancelling job {job_id}", highlight=False)
        return True
    try:
        return typer.confirm(f"\ncancel job {job_id}?", default=False, err=True)
    except click.exceptions.Abort:  # Ctrl-C or end of input at the question: its default
        return False


def _submit(mod: ModuleType, spec: Path, wait: bool, timeout: float | None, scheduler: str) -> int:
    """Submit; with ``wait`` follow the job, which deploy.submitted.owning stops if we stop early."""
    cluster_spec = load_cluster_spec(spec)
    ending = submitted.Ending()
    try:
        with submitted.owning(_ask_cancel) as ending:
            rec = mod.submit(cluster_spec, owned=wait)
            out.print(rec.job_id, highlight=False)
            output = f"output {rec.output}\n" if scheduler == "slurm" else ""
            err.print(f"script {rec.script}\n{output}results {rec.run_dir}", highlight=False)
            if not wait:
                return 0
            st = mod.wait(rec.job_id, timeout_s=timeout,
                          on_change=lambda s: err.print(f"job {s.job_id}: {s.state}", highlight=False))
    except BaseException as exc:
        for job_id in ending.cancelled:
            err.print(f"cancelled {job_id}")
        for job_id in ending.kept:
            err.print(f"job {job_id} keeps running; follow it with: servemark {scheduler} status "
                      f"{job_id}", highlight=False)
        for job_id, why in ending.failed.items():
            err.print(f"could not cancel job {job_id} ({why}); `servemark cleanup` retries",
                      highlight=False)
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Terminated):
            return 130
        raise
    _show(st, False)
    run_dir = mod.run_dir(rec.job_id)
    if run_dir is not None:
        err.print(f"run directory: {run_dir}")
    return 0 if st.ok else 1


# ---------------------------------------------------------------- slurm

@slurm_app.command("render")
@handle_errors
def slurm_render(spec: SpecArg,
                 output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to a file")] = None) -> None:
    """Print the complete sbatch script for SPEC."""
    _render(spec, output, "slurm")


@slurm_app.command("submit")
@handle_errors
def slurm_submit(spec: SpecArg,
                 wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it ends")] = False,
                 timeout: Annotated[float | None, typer.Option(help="Seconds to wait at most")] = None) -> None:
    """Render SPEC, submit it with sbatch and print the job id. With --wait the job is stopped
    when the wait ends early (SIGTERM, SIGHUP, error; Ctrl-C asks)."""
    raise typer.Exit(_submit(slurm, spec, wait, timeout, "slurm"))


@slurm_app.command("status")
@handle_errors
def slurm_status(job: JobArg,
                 as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """The job's state (squeue, then sacct; scontrol / jobcomp when accounting is off)."""
    _show(slurm.status(job), as_json)


@slurm_app.command("logs")
@handle_errors
def slurm_logs(job: JobArg,
               follow: Annotated[bool, typer.Option(
                   "-f", "--follow",
                   help="Follow until the job ends (a serve-only job: until all its servers are ready)")] = False,
               ) -> None:
    """Print the job's output; with -f also the servers' startup stages (shard loading), then
    the endpoints once ready."""
    path = slurm.output_path(job)
    if path is None:
        raise ConfigError(f"no output file known for job {job}",
                          "it was not submitted from here and SLURM no longer knows it")
    run_dir = slurm.run_dir(job)
    finished = (lambda: slurm.status(job).done) if follow else (lambda: True)
    urls: list[str] = []
    serving = False
    for source, line in joblogs.follow(path, run_dir, finished, until_serving=follow):
        if source == "job":
            out.print(line, markup=False, highlight=False)
            if (url := joblogs.endpoint_of(line)) is not None:
                urls.append(url)
            serving = serving or line.startswith(joblogs.SERVING_LINE)
        else:
            err.print(f"[dim]{source}:[/dim] {line}", highlight=False)
    if follow and serving:
        for url in urls:
            err.print(f"endpoint: {url}", highlight=False)
        err.print(f"job {job} is serving; benchmark it with: servemark slurm bench {job} ..., "
                  f"stop it with: servemark slurm cancel {job}", highlight=False)


@slurm_app.command("bench", context_settings={"allow_extra_args": True,
                                              "ignore_unknown_options": True})
@handle_errors
def slurm_bench(ctx: typer.Context, job: JobArg) -> None:
    """Benchmark a running job's endpoints from here: `servemark bench` flags follow JOB."""
    for arg in ctx.args:
        if arg.split("=", 1)[0] == "--base-url":
            raise ConfigError("slurm bench sets --base-url itself (the job's endpoints)",
                              "leave --base-url out, or use servemark bench directly")
    urls = slurm.endpoints(job)
    err.print(f"job {job}: benchmarking {', '.join(urls)}", highlight=False)
    from typer.main import get_command

    from servemark.cli.main import app  # here: main imports this module

    args = ["bench", *[w for u in urls for w in ("--base-url", u)], *ctx.args]
    code = get_command(app).main(args=args, prog_name="servemark", standalone_mode=False)
    raise typer.Exit(code if isinstance(code, int) else 0)


@slurm_app.command("cancel")
@handle_errors
def slurm_cancel(job: JobArg) -> None:
    """Cancel the job (scancel)."""
    slurm.cancel(job)
    err.print(f"cancelled {job}")


# ---------------------------------------------------------------- pbs

@pbs_app.command("render")
@handle_errors
def pbs_render(spec: SpecArg,
               output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to a file")] = None) -> None:
    """Print the complete qsub script for SPEC."""
    _render(spec, output, "pbs")


@pbs_app.command("submit")
@handle_errors
def pbs_submit(spec: SpecArg,
               wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it ends")] = False,
               timeout: Annotated[float | None, typer.Option(help="Seconds to wait at most")] = None) -> None:
    """Render SPEC, submit it with qsub and print the job id (--wait: as for slurm submit)."""
    raise typer.Exit(_submit(pbs, spec, wait, timeout, "pbs"))


@pbs_app.command("status")
@handle_errors
def pbs_status(job: JobArg,
               as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """The job's state (qstat -x -f)."""
    _show(pbs.status(job), as_json)


@pbs_app.command("cancel")
@handle_errors
def pbs_cancel(job: JobArg) -> None:
    """Cancel the job (qdel)."""
    pbs.cancel(job)
    err.print(f"cancelled {job}")
