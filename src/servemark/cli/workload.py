"""``servemark workload preview|save``: look at a workload, or write it for exact replay; sends nothing.

The workload options are declared once here (``*Opt`` aliases) and reused by ``servemark bench``
so both commands spell them identically.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from servemark.cli.common import err, handle_errors, out
from servemark.errors import ConfigError
from servemark.spec import DEFAULT_NUM_REQUESTS, make_workload_config
from servemark.workload.base import Conversation, WorkItem, requests_of
from servemark.workload.factory import WorkloadPreview, preview, workload_items
from servemark.workload.files import save_jsonl
from servemark.workload.tokenizer import Tokenizer, load_tokenizer

LENGTHS = "128, uniform:64:256, normal:MEAN:STD[:MIN:MAX] or file:lens.txt (one length per line)"

ApiOpt = Annotated[str | None, typer.Option(help="completions or chat (default: chat for the chat and multiturn workloads)")]
WorkloadOpt = Annotated[str, typer.Option(help="random, chat, dataset, multiturn or prefix")]
InputLenOpt = Annotated[str, typer.Option(help=f"Prompt tokens, exact for the target tokenizer: {LENGTHS}")]
OutputLenOpt = Annotated[str, typer.Option(help=f"Output tokens (max_tokens; exact with --ignore-eos): {LENGTHS}")]
TokenizerOpt = Annotated[str | None, typer.Option(help="Local tokenizer dir or cached hub name (default: the server's /tokenize)")]
DatasetOpt = Annotated[Path | None, typer.Option(help="--workload dataset: JSONL, ShareGPT JSON/JSONL or CSV file")]
DatasetFormatOpt = Annotated[str, typer.Option(help="auto, jsonl, sharegpt or csv")]
MinInputLenOpt = Annotated[int | None, typer.Option(help="--workload dataset: drop rows with fewer input tokens")]
MaxInputLenOpt = Annotated[int | None, typer.Option(help="--workload dataset: drop rows with more input tokens")]
TurnsOpt = Annotated[int, typer.Option(help="--workload multiturn: turns per conversation")]
PrefixLenOpt = Annotated[int | None, typer.Option(help="--workload prefix: tokens of the prefix all prompts share")]
SeedOpt = Annotated[int, typer.Option(help="Seed for prompts (and arrivals in bench)")]

app = typer.Typer(help="Preview or save a workload without sending any request.", no_args_is_help=True)


def _tokenizer(tokenizer: str | None, base_url: str | None, model: str | None) -> Tokenizer:
    if tokenizer is None and (base_url is None or model is None):
        raise ConfigError("a workload needs a tokenizer to measure lengths",
                          "pass --tokenizer DIR, or --base-url and --model to use the server's /tokenize")
    return load_tokenizer(tokenizer, base_url or "", model or "")


def _text(item: WorkItem, width: int = 160) -> str:
    spec = requests_of(item)[-1]
    text = spec.prompt if spec.prompt is not None else (spec.messages or ({"content": ""},))[-1]["content"]
    text = text.replace("\n", "⏎")
    return text[:width] + ("…" if len(text) > width else "")


def preview_table(p: WorkloadPreview) -> Table:
    table = Table(title=f"{p.workload}: {p.requests} requests"
                  + (f" in {p.conversations} conversations" if p.conversations else ""),
                  title_justify="left", header_style="bold")
    table.add_column("tokens")
    for col in ("mean", "std", "min", "p50", "p90", "p99", "max"):
        table.add_column(col, justify="right")
    for name, d in (("input", p.input_len), ("output", p.output_len)):
        cells = ["–" if getattr(d, c) is None else f"{getattr(d, c):.1f}"
                 for c in ("mean", "std", "min", "p50", "p90", "p99", "max")]
        table.add_row(name, *cells)
    return table


def samples_table(items: list[WorkItem]) -> Table:
    table = Table(title="samples", title_justify="left", header_style="bold")
    for col in ("id", "input", "output", "text (last message)"):
        table.add_column(col, overflow="fold")
    for item in items:
        spec = requests_of(item)[-1]
        ident = (f"conv {item.conversation_id} ({len(item.turns)} turns)"
                 if isinstance(item, Conversation) else str(spec.request_id))
        table.add_row(ident, str(spec.input_len), str(spec.output_len), _text(item))
    return table


@app.command("preview")
@handle_errors
def preview_command(
    workload: WorkloadOpt = "random",
    input_len: InputLenOpt = "128",
    output_len: OutputLenOpt = "128",
    api: ApiOpt = None,
    tokenizer: TokenizerOpt = None,
    dataset: DatasetOpt = None,
    dataset_format: DatasetFormatOpt = "auto",
    min_input_len: MinInputLenOpt = None,
    max_input_len: MaxInputLenOpt = None,
    turns: TurnsOpt = 3,
    prefix_len: PrefixLenOpt = None,
    seed: SeedOpt = 0,
    num_requests: Annotated[int, typer.Option(help="Work items to build (conversations for multiturn)")] = DEFAULT_NUM_REQUESTS,
    samples: Annotated[int, typer.Option(help="Samples to show")] = 3,
    base_url: Annotated[str | None, typer.Option(help="Server whose /tokenize measures lengths (when no --tokenizer)")] = None,
    model: Annotated[str | None, typer.Option(help="Served model name, with --base-url")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON")] = False,
) -> None:
    """Token-length statistics and a few samples of a workload (sends no generation request)."""
    cfg = make_workload_config(
        workload=workload, input_len=input_len, output_len=output_len, api=api, tokenizer=tokenizer,
        dataset=dataset, dataset_format=dataset_format, min_input_len=min_input_len,
        max_input_len=max_input_len, turns=turns, prefix_len=prefix_len, seed=seed)
    if num_requests < 1:
        raise ConfigError("--num-requests must be ≥ 1", "for example --num-requests 100")
    tok = _tokenizer(tokenizer, base_url, model)
    items = workload_items(cfg, tok, num_requests)
    stats = preview(cfg.workload, items)
    if as_json:
        out.print_json(json.dumps({**asdict(stats), "tokenizer": tok.name}))
        return
    out.print(preview_table(stats))
    out.print(samples_table(items[: max(samples, 0)]))
    err.print(f"tokenizer: {tok.name}; longest request: {stats.max_total_len} tokens (input + output)")


@app.command("save")
@handle_errors
def save_command(
    output: Annotated[Path, typer.Argument(help="JSONL file to write")],
    workload: WorkloadOpt = "random",
    input_len: InputLenOpt = "128",
    output_len: OutputLenOpt = "128",
    api: ApiOpt = None,
    tokenizer: TokenizerOpt = None,
    dataset: DatasetOpt = None,
    dataset_format: DatasetFormatOpt = "auto",
    min_input_len: MinInputLenOpt = None,
    max_input_len: MaxInputLenOpt = None,
    turns: TurnsOpt = 3,
    prefix_len: PrefixLenOpt = None,
    seed: SeedOpt = 0,
    num_requests: Annotated[int, typer.Option(help="Work items to write (conversations for multiturn)")] = DEFAULT_NUM_REQUESTS,
    base_url: Annotated[str | None, typer.Option(help="Server whose /tokenize measures lengths (when no --tokenizer)")] = None,
    model: Annotated[str | None, typer.Option(help="Served model name, with --base-url")] = None,
) -> None:
    """Write a workload as JSONL; `bench --workload dataset --dataset FILE` replays it exactly."""
    cfg = make_workload_config(
        workload=workload, input_len=input_len, output_len=output_len, api=api, tokenizer=tokenizer,
        dataset=dataset, dataset_format=dataset_format, min_input_len=min_input_len,
        max_input_len=max_input_len, turns=turns, prefix_len=prefix_len, seed=seed)
    if num_requests < 1:
        raise ConfigError("--num-requests must be ≥ 1", "for example --num-requests 100")
    tok = _tokenizer(tokenizer, base_url, model)
    items = workload_items(cfg, tok, num_requests)
    rows = save_jsonl(items, output)
    replay = f"--workload dataset --dataset {output} --num-requests {len(items)}"
    if cfg.api == "chat":
        replay += " --api chat"
    err.print(f"wrote {rows} requests to {output}; replay with: servemark bench ... {replay}")
