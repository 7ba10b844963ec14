"""Following a job's files as they grow: job lines, server stages with shard-loading counts,
and stopping when a serve-only job serves (files written step by step from `finished`)."""

from __future__ import annotations

from pathlib import Path

from servemark.deploy import joblogs

SHARDS = ("Loading safetensors checkpoint shards:   0% Completed | 0/2 [00:00<?, ?it/s]\r"
          "Loading safetensors checkpoint shards:  50% Completed | 1/2 [00:03<00:03, 3.1s/it]\r"
          "Loading safetensors checkpoint shards: 100% Completed | 2/2 [00:06<00:00, 3.0s/it]\n")


def _steps(tmp_path: Path, steps: list[tuple[str, str]]):
    """A `finished` callback that appends one (file, text) step per call, then says done."""
    pending = list(steps)

    def finished() -> bool:
        if not pending:
            return True
        name, text = pending.pop(0)
        with open(tmp_path / name, "a") as fh:
            fh.write(text)
        return False
    return finished


def test_follow_reports_stages_and_shard_progress(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    finished = _steps(tmp_path, [
        ("job.out", "servemark: job 7 on n1; run directory x\n"),
        ("run/server-r0.log", "INFO non-default args: {'model': 'm'}\n"),
        ("run/server-r0.log", "INFO Starting to load model m...\n" + SHARDS[:60]),  # bar half written
        ("run/server-r0.log", SHARDS[60:]),
        ("run/server-r0.log", "INFO Loading weights took 6.1 s\nINFO Application startup complete.\n"),
        ("job.out", "servemark: endpoint ready: http://n1:8000 (replica 0, head node n1)\n"
                    "servemark: benchmark finished (exit 0)\n"),
    ])
    got = list(joblogs.follow(tmp_path / "job.out", run, finished, poll_s=0))
    server = [text for src, text in got if src == "server-r0"]
    assert server == ["parsing arguments", "loading model", "loading weights 0/2",
                      "loading weights 1/2", "loading weights 2/2", "weights loaded", "ready"]
    job = [text for src, text in got if src == "job"]
    assert job[-1] == "servemark: benchmark finished (exit 0)"
    assert [joblogs.endpoint_of(ln) for ln in job if joblogs.endpoint_of(ln)] == ["http://n1:8000"]


def test_serve_only_job_stops_once_serving(tmp_path: Path) -> None:
    """A serve-only job runs until its time limit: -f returns once it says it serves."""
    calls = 0

    def never() -> bool:
        nonlocal calls
        calls += 1
        assert calls < 50, "follow did not stop at the serving line"
        return False

    (tmp_path / "job.out").write_text(
        "servemark: endpoint ready: http://10.0.0.5:8000 (replica 0, head node gpu017)\n"
        "servemark: serving until the time limit; cancel the job to stop\n")
    got = list(joblogs.follow(tmp_path / "job.out", None, never, poll_s=0, until_serving=True))
    assert got[-1][1].startswith(joblogs.SERVING_LINE)
    # without until_serving it keeps following (here: until `finished` says so)
    done = iter([False, False, True])
    got = list(joblogs.follow(tmp_path / "job.out", None, lambda: next(done), poll_s=0))
    assert len(got) == 2


def test_endpoint_of() -> None:
    assert joblogs.endpoint_of("servemark: endpoint ready: http://h:1") == "http://h:1"
    assert joblogs.endpoint_of("servemark: waiting for replica 0 at http://h:1/health") is None
