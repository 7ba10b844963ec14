"""``servemark demo``: build the tiny model, serve it with a real vLLM, benchmark it, tear down."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from servemark.api import bench
from servemark.cli.bench import report_result
from servemark.cli.common import err, handle_errors, parse_list
from servemark.cli.progress import RichBenchProgress
from servemark.demo.tinymodel import build_tiny_model
from servemark.deploy.local import VllmServer, require_vllm
from servemark.deploy.readiness import LoadProgress
from servemark.load.runner import RunControl
from servemark.spec import make_config

SERVED_NAME = "servemark-tiny-llama"


@handle_errors
def demo_command(
    num_requests: Annotated[int, typer.Option(help="Requests per load point")] = 64,
    concurrency: Annotated[str, typer.Option(help="Load points (requests in flight)")] = "1,8",
    input_len: Annotated[int, typer.Option(help="Prompt tokens")] = 128,
    output_len: Annotated[int, typer.Option(help="Output tokens")] = 64,
    output_dir: Annotated[Path | None, typer.Option(help="Run directory")] = None,
    results_root: Annotated[Path, typer.Option(help="Where new run directories are created")] = Path("results"),
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for the server")] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary JSON on stdout")] = False,
) -> None:
    """Build a tiny model offline, serve it with a real (CPU) vLLM, benchmark it, stop the server."""
    config_points = parse_list(concurrency, int, "--concurrency")
    require_vllm()
    err.print("building the tiny demo model (cached after the first run)")
    model_dir = build_tiny_model()
    err.print(f"model: {model_dir}", markup=False)
    server = VllmServer(
        str(model_dir),
        served_model_name=SERVED_NAME,
        extra_args=["--max-model-len", "2048", "--enforce-eager", "--dtype", "bfloat16"],
        env={"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"},
    )
    with server:
        with Progress(SpinnerColumn(), TextColumn("[bold]vLLM[/bold] {task.description}"),
                      BarColumn(), TimeElapsedColumn(), console=err, transient=True) as prog:
            task = prog.add_task("starting", total=None)

            def on_progress(update: LoadProgress) -> None:
                prog.update(task, description=update.stage, completed=update.done or 0,
                            total=update.total)

            server.start(ready_timeout, on_progress)
        err.print(f"vLLM ready at {server.base_url} (log: {server.log_path})", markup=False)
        config = make_config(
            base_url=server.base_url, model=SERVED_NAME, concurrency=config_points,
            num_requests=num_requests, input_len=input_len, output_len=output_len,
            tokenizer=str(model_dir), output_dir=output_dir, results_root=results_root,
        )
        with RichBenchProgress(err) as progress:
            result = bench(config, progress=progress, control=RunControl(config.grace_period_s),
                           handle_signals=True, argv=sys.argv)
    err.print("vLLM server stopped")
    raise typer.Exit(report_result(result, as_json))
