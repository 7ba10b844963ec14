"""The ``servemark`` command: one Typer app, one module per command group."""

from __future__ import annotations

from typing import Annotated

import typer

from servemark._version import __version__
from servemark.cli.bench import bench_command
from servemark.cli.calibrate import calibrate_command
from servemark.cli.cluster import pbs_app, slurm_app
from servemark.cli.demo import demo_command
from servemark.cli.deploy import register as register_deploy
from servemark.cli.doctor import doctor_command
from servemark.cli.fom import register as register_fom
from servemark.cli.observe import app as profile_app
from servemark.cli.observe import chat_command
from servemark.cli.plan import app as plan_app
from servemark.cli.ray import ray_app
from servemark.cli.report import compare_command, report_command, runs_app
from servemark.cli.workload import app as workload_app

app = typer.Typer(
    name="servemark",
    help="Deploy, benchmark, profile and plan LLM inference serving (vLLM and any OpenAI-compatible endpoint).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"servemark {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit")] = False,
) -> None:
    """servemark: benchmark LLM serving correctly."""


app.command("bench")(bench_command)
app.command("demo")(demo_command)
app.command("calibrate")(calibrate_command)
app.command("doctor")(doctor_command)
app.add_typer(plan_app, name="plan")
app.command("report")(report_command)
app.command("compare")(compare_command)
app.add_typer(runs_app, name="runs")
register_deploy(app)
app.add_typer(slurm_app, name="slurm")
app.add_typer(pbs_app, name="pbs")
app.add_typer(ray_app, name="ray")
register_fom(app)
app.add_typer(profile_app, name="profile")
app.command("chat")(chat_command)
app.add_typer(workload_app, name="workload")


def main() -> None:
    app()
