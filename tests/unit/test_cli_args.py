"""CLI argument validation: one clear line, non-zero exit, no traceback — before any network."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from servemark._version import __version__
from servemark.cli.main import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_version() -> None:
    r = invoke("--version")
    assert r.exit_code == 0 and __version__ in r.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--concurrency", "1,x"], "--concurrency expects comma-separated integers"),
        (["--concurrency", "0"], "concurrency values must be integers ≥ 1"),
        (["--request-rate", "-1"], "request_rate values must be > 0"),
        (["--concurrency", "2", "--request-rate", "3"], "not both"),
        (["--max-concurrency", "4", "--concurrency", "2"], "max_concurrency applies to request_rate"),
        (["--input-len", "0"], "invalid input_len"),
        (["--num-requests", "0"], "invalid num_requests"),
        (["--api", "embeddings"], "invalid api"),
        (["--arrival", "gamma", "--request-rate", "1"], "invalid arrival"),
        (["--extra-body", "{bad"], "--extra-body is not valid JSON"),
        (["--extra-body", "[1]"], "--extra-body must be a JSON object"),
    ],
)
def test_invalid_flags(args: list[str], needle: str) -> None:
    r = invoke("bench", "--base-url", "http://127.0.0.1:9", *args)
    assert r.exit_code == 2, r.output
    assert needle in r.output
    assert "Traceback" not in r.output
    error_lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1


def test_bad_url_scheme() -> None:
    r = invoke("bench", "--base-url", "localhost:8000")
    assert r.exit_code == 2 and "must start with http:// or https://" in r.output


def test_every_command_has_help() -> None:
    import typer.main

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        r = invoke(name, "--help")
        assert r.exit_code == 0, name
        assert cmd.help, f"{name} has no help text"
