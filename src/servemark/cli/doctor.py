"""``servemark doctor``: one line per check (ok / warning / error and the fix)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.markup import escape

from servemark.cli.common import err, handle_errors, out
from servemark.doctor import Check, DoctorOptions, blocking, diagnose

MARKS = {"ok": "[green]ok     [/green]", "warning": "[yellow]warning[/yellow]", "error": "[red]error  [/red]"}


def render(check: Check) -> str:
    line = f"{MARKS[check.status]} [bold]{escape(check.name)}[/bold]: {escape(check.detail)}"
    if check.fix:
        line += f"\n        [dim]fix:[/dim] {escape(check.fix)}"
    return line


@handle_errors
def doctor_command(
    model: Annotated[str | None, typer.Option(help="Model to check: directory, hub id (org/name) or catalog name")] = None,
    base_url: Annotated[str | None, typer.Option(help="Also check a running endpoint, e.g. http://localhost:8000")] = None,
    gpu: Annotated[str | None, typer.Option(help="Plan for this catalog GPU (default: the GPUs visible here)")] = None,
    num_gpus: Annotated[int | None, typer.Option(help="GPUs of one server (TP x PP); default TP 1")] = None,
    tp: Annotated[int | None, typer.Option(help="Tensor-parallel size to plan for")] = None,
    pp: Annotated[int, typer.Option(help="Pipeline-parallel size to plan for")] = 1,
    max_model_len: Annotated[int | None, typer.Option(help="--max-model-len to check (default: the model's maximum)")] = None,
    dtype: Annotated[str, typer.Option(help="Weights dtype: auto (the checkpoint's), bf16, fp8, int4 …")] = "auto",
    gpu_memory_utilization: Annotated[float, typer.Option(help="vLLM --gpu-memory-utilization")] = 0.90,
    port: Annotated[int, typer.Option(help="Port a local server would listen on")] = 8000,
    api_key: Annotated[str | None, typer.Option(envvar="OPENAI_API_KEY", show_envvar=True, help="Bearer key for --base-url (never printed)")] = None,
    vllm_timeout: Annotated[float, typer.Option(help="Seconds allowed for importing vLLM")] = 180.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON")] = False,
) -> None:
    """Check the environment before a run: Python, vLLM build, accelerators, HF cache and token,
    ports, launchers; for --model whether it fits; for --base-url the endpoint. Exit 1 on errors."""
    opts = DoctorOptions(model=model, base_url=base_url, api_key=api_key, gpu=gpu, num_gpus=num_gpus, tp=tp,
                         pp=pp, max_model_len=max_model_len, dtype=dtype,
                         gpu_memory_utilization=gpu_memory_utilization, port=port, vllm_timeout_s=vllm_timeout)
    if as_json:
        checks = diagnose(opts)
        doc = {"ok": not blocking(checks), "checks": [c.to_dict() for c in checks]}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        with err.status("checking (importing vLLM takes a while) …"):
            checks = diagnose(opts, on_check=lambda c: out.print(render(c), highlight=False, soft_wrap=True))
        errors = sum(c.status == "error" for c in checks)
        warnings = sum(c.status == "warning" for c in checks)
        summary = f"{errors} error(s), {warnings} warning(s)"
        err.print(f"[red]{summary}: fix the errors before a run[/red]" if errors else f"[green]{summary}[/green]")
    raise typer.Exit(1 if blocking(checks) else 0)
