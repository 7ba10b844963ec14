"""The throughput / sweep / fom commands as a user runs them: help, and one-line errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from servemark.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize("command", ["throughput", "sweep", "fom"])
def test_help(command: str) -> None:
    res = runner.invoke(app, [command, "--help"])
    assert res.exit_code == 0 and "--csv-format" in res.output


@pytest.mark.parametrize("args, message", [
    (["throughput"], "offline runs need --model"),
    (["throughput", "--model", "m", "--csv-format", "excel"], "unknown CSV format"),
    (["sweep", "--base-url", "http://127.0.0.1:9", "--tp-sizes", "1,2"], "one TP"),
    (["sweep", "--model", "m", "--batch-sizes", "1,x"], "--batch-sizes expects"),
    (["fom", "--base-url", "http://127.0.0.1:9", "--enforce-eager"], "offline runs only"),
    (["fom", "--model", "m", "--scenarios", "FOM9"], "unknown scenario"),
    (["throughput", "--model", "m", "--engine-arg", "novalue"], "KEY=VALUE"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split()) and "Traceback" not in res.output


def test_yaml_spec_errors_name_the_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "s.yaml"
    spec.write_text("model: m\ninput_lens: [16]\nbatch_size: [1]\n")  # typo: batch_sizes
    res = runner.invoke(app, ["sweep", "--spec", str(spec)])
    assert res.exit_code == 2 and "batch_size" in res.output
    assert "s.yaml:3:" in "".join(res.output.split())  # the line in the file (wrapping removed)
    spec.write_text("model: m\ninput_lens: [16]\nbatch_sizes: [1]\nseed: many\n")
    res = runner.invoke(app, ["sweep", "--spec", str(spec)])
    assert res.exit_code == 2 and "s.yaml:4:" in "".join(res.output.split()), res.output
    spec.write_text("mode: online\nbase_url: http://127.0.0.1:9\nengine_args: {max_num_seqs: 8}\n")
    res = runner.invoke(app, ["sweep", "--spec", str(spec)])
    assert res.exit_code == 2 and "offline sweeps only" in " ".join(res.output.split())
