"""The submitted-jobs registry's decisions, with a fake scheduler (the real SLURM runs the same
paths in tests/integration/cluster/test_slurm_nothing_left.py)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from servemark.deploy import submitted
from servemark.deploy.batch import JobStatus
from servemark.errors import JobError, JobWaitTimeout


class FakeScheduler:
    def __init__(self) -> None:
        self.jobs: dict[str, JobStatus] = {}
        self.cancelled: list[str] = []
        self.fail_cancel = False

    def status(self, job_id: str) -> JobStatus:
        return self.jobs.get(job_id, JobStatus(job_id, "UNKNOWN"))

    def cancel(self, job_id: str) -> None:
        if self.fail_cancel:
            raise JobError("scancel failed: controller down")
        self.cancelled.append(job_id)
        self.jobs[job_id] = JobStatus(job_id, "CANCELLED", name=self.jobs[job_id].name)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeScheduler:
    monkeypatch.setenv("SERVEMARK_STATE", str(tmp_path))
    sched = FakeScheduler()
    monkeypatch.setattr(submitted, "_module", lambda name: sched)
    monkeypatch.setattr(submitted, "cluster_identity", lambda name: "slurm:test@h:1")
    return sched


def submit(fake: FakeScheduler, job_id: str, owned: bool, name: str = "job") -> submitted.SubmittedJob:
    fake.jobs[job_id] = JobStatus(job_id, "RUNNING", name=name)
    return submitted.record("slurm", job_id, name, owned=owned)


def never_asked(job_id: str) -> bool:
    raise AssertionError("asked")


def test_normal_end_forgets_and_timeout_keeps_running(fake: FakeScheduler) -> None:
    with submitted.owning(never_asked):
        submit(fake, "1", owned=True)
    assert submitted.load_all() == [] and fake.cancelled == []
    with pytest.raises(JobWaitTimeout), submitted.owning(never_asked) as ending:
        submit(fake, "2", owned=True)
        raise JobWaitTimeout("still RUNNING")
    (job,) = submitted.load_all()
    assert ending.kept == ["2"] and not job.owned and fake.cancelled == []


@pytest.mark.parametrize("answer", [True, False])
def test_ctrl_c_asks(fake: FakeScheduler, answer: bool) -> None:
    asked = []
    with pytest.raises(KeyboardInterrupt), submitted.owning(lambda j: asked.append(j) or answer) as ending:
        submit(fake, "3", owned=True)
        raise KeyboardInterrupt
    assert asked == ["3"]
    assert fake.cancelled == (["3"] if answer else [])
    assert (ending.cancelled, ending.kept) == ((["3"], []) if answer else ([], ["3"]))


def test_signal_or_error_cancels_without_asking(fake: FakeScheduler) -> None:
    term = KeyboardInterrupt("SIGTERM")
    term.signum = signal.SIGTERM  # type: ignore[attr-defined]  # as cli.common.Terminated
    with pytest.raises(KeyboardInterrupt), submitted.owning(never_asked):
        submit(fake, "4", owned=True)
        raise term
    with pytest.raises(RuntimeError), submitted.owning(never_asked):
        submit(fake, "5", owned=True)
        raise RuntimeError("bug")
    assert fake.cancelled == ["4", "5"] and submitted.load_all() == []


def test_signal_at_the_question_cancels_and_propagates(fake: FakeScheduler) -> None:
    def ask(job_id: str) -> bool:
        raise SystemExit(143)

    with pytest.raises(SystemExit), submitted.owning(ask):
        submit(fake, "6", owned=True)
        raise KeyboardInterrupt
    assert fake.cancelled == ["6"]


def test_failed_cancel_keeps_the_record_for_cleanup(fake: FakeScheduler) -> None:
    fake.fail_cancel = True
    with pytest.raises(RuntimeError), submitted.owning(never_asked) as ending:
        submit(fake, "7", owned=True)
        raise RuntimeError
    assert "controller down" in ending.failed["7"]
    assert [j.job_id for j in submitted.load_all()] == ["7"]


def test_review(fake: FakeScheduler, monkeypatch: pytest.MonkeyPatch) -> None:
    orphan = submit(fake, "10", owned=True)
    orphan.owner_pid, orphan.owner_started_at = 1, 0.0  # an owner that is gone
    submitted._write(orphan)
    submit(fake, "11", owned=True)  # followed by this (live) process: not cleanup's business
    submit(fake, "12", owned=False)  # meant to run
    submit(fake, "13", owned=False)
    fake.jobs["13"] = JobStatus("13", "COMPLETED", name="job")  # ended: pruned
    submit(fake, "14", owned=False, name="mine")
    fake.jobs["14"] = JobStatus("14", "RUNNING", name="someone-elses")  # id reused: pruned
    other = submit(fake, "15", owned=False)
    submitted.forget(other)
    other.cluster = "slurm:other@x:2"
    submitted._write(other)

    plain = {r.job.job_id: r.action for r in submitted.review(all_=False, prune=False)}
    assert plain == {"10": "cancel", "12": "keep", "15": "elsewhere"}
    assert len(submitted.load_all()) == 6  # no pruning asked (a dry run)
    every = {r.job.job_id: r.action for r in submitted.review(all_=True)}
    assert every == {"10": "cancel", "12": "cancel", "15": "elsewhere"}
    assert sorted(j.job_id for j in submitted.load_all()) == ["10", "11", "12", "15"]
    assert fake.cancelled == []  # review only decides


def test_cleanup_outcomes_for_jobs(fake: FakeScheduler) -> None:
    """servemark cleanup's library side: a dry run reports and cancels nothing; a run cancels the
    orphan, leaves the job meant to run (--all cancels it) and notes the other cluster's."""
    from servemark.deploy.cleanup import cleanup

    orphan = submit(fake, "20", owned=True)
    orphan.owner_pid, orphan.owner_started_at = 1, 0.0
    submitted._write(orphan)
    submit(fake, "21", owned=False)
    other = submit(fake, "22", owned=False)
    submitted.forget(other)
    other.cluster = "slurm:other@x:2"
    submitted._write(other)

    def kinds(outcomes: list) -> dict[str, str]:
        return {re.search(r"job (\d+)", o.text).group(1): o.kind for o in outcomes}

    dry = list(cleanup(all_=False, dry_run=True))
    assert kinds(dry) == {"20": "would", "21": "kept", "22": "note"} and fake.cancelled == []
    assert "would cancel slurm job 20" in dry[0].text and "servemark pid 1 is gone" in dry[0].text
    done = list(cleanup(all_=False))
    assert kinds(done) == {"20": "done", "21": "kept", "22": "note"} and fake.cancelled == ["20"]
    assert kinds(list(cleanup(all_=True))) == {"21": "done", "22": "note"}
    assert fake.cancelled == ["20", "21"]
