"""``servemark download`` (into the Hugging Face cache) and ``servemark models`` (what is cached)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from servemark.cli.common import err, handle_errors, out
from servemark.deploy.hub import cached_models, download, format_size, hub_cache, offline


@handle_errors
def download_command(
    model: Annotated[str, typer.Argument(help="Hugging Face model name, e.g. meta-llama/Llama-3.1-8B-Instruct")],
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit (default: main)")] = None,
    include: Annotated[list[str] | None, typer.Option(help="Only files matching this glob (repeatable)")] = None,
) -> None:
    """Download a model into the Hugging Face cache (HF_HOME); uses HF_TOKEN, never prints it."""
    mode = " (offline: cache only)" if offline() else ""
    err.print(f"fetching {model} into {hub_cache()}{mode}", highlight=False)
    path = download(model, revision, include)
    err.print(f"[green]ready[/green]: serve it with `servemark serve {model}`", highlight=False)
    out.print(str(path), highlight=False, soft_wrap=True)


@handle_errors
def models_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON")] = False,
) -> None:
    """List the models in the Hugging Face cache with their sizes on disk."""
    models = cached_models()
    if as_json:
        rows = [{"repo_id": m.repo_id, "size_bytes": m.size_bytes, "files": m.files,
                 "revisions": m.revisions, "refs": list(m.refs), "path": str(m.path)} for m in models]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not models:
        err.print(f"no models cached in {hub_cache()}", highlight=False)
        return
    table = Table(title=f"models in {hub_cache()}", header_style="bold", title_justify="left")
    for col, justify in (("model", "left"), ("size", "right"), ("files", "right"), ("refs", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for m in models:
        table.add_row(m.repo_id, format_size(m.size_bytes), str(m.files), ", ".join(m.refs) or "–")
    out.print(table)
    total = sum(m.size_bytes for m in models)
    err.print(f"{len(models)} models, {format_size(total)} in total")
