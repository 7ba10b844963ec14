"""Batch jobs servemark submitted, on disk under ``submitted/`` of the state directory, so that
no job is left running by accident.

A job submitted to be followed (``submit --wait``) is *owned* by that servemark process: when
it stops following — the job ended, Ctrl-C, SIGTERM, SIGHUP, an error — :func:`owning` cancels
the job or, where the user chose so (or ``--timeout`` ran out), lets it run and forgets the
owner. If the owner is killed (``kill -9``, OOM, a lost login node) its record stays, and
``servemark cleanup`` cancels the job. A job submitted without ``--wait`` is meant to run; only
``cleanup --all`` cancels it. A record names the cluster that took the job (the controller
``SLURM_CONF`` leads to), and the job's name: a job is only ever cancelled on the cluster it
was submitted to, and only while the scheduler still shows it under that name — a job id
reused by someone else's job is never touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType

from servemark.deploy.batch import FINAL, UNKNOWN, JobStatus, run_tool
from servemark.deploy.local import signals_deferred
from servemark.deploy.registry import me, process_alive, state_dir
from servemark.errors import JobWaitTimeout, ServemarkError


def submitted_dir() -> Path:
    return state_dir() / "submitted"


@dataclass
class SubmittedJob:
    scheduler: str  # slurm | pbs
    job_id: str
    name: str  # the job name the scheduler shows (the spec's name)
    cluster: str  # which scheduler took it (see cluster_identity)
    submitted_at: float  # epoch seconds
    owner_pid: int | None = None  # the servemark following it; None: meant to keep running
    owner_started_at: float | None = None

    @property
    def owned(self) -> bool:
        return self.owner_pid is not None

    def owner_alive(self) -> bool:
        return (self.owner_pid is not None and self.owner_started_at is not None
                and process_alive(self.owner_pid, self.owner_started_at))

    def mine(self) -> bool:
        pid, started = me()
        return self.owner_pid == pid and abs((self.owner_started_at or 0) - started) <= 2

    @property
    def path(self) -> Path:
        where = hashlib.sha1(self.cluster.encode()).hexdigest()[:8]
        return submitted_dir() / f"{self.scheduler}-{where}-{self.job_id}.json"


def _module(scheduler: str) -> ModuleType:
    from servemark.deploy import pbs, slurm  # here: they import this module

    return {"slurm": slurm, "pbs": pbs}[scheduler]


def _slurm_identity() -> str:
    proc = run_tool(["scontrol", "show", "config"], check=False, timeout_s=30)
    kv = {}
    for line in proc.stdout.splitlines():
        key, eq, value = line.partition("=")
        if eq:
            kv[key.strip()] = value.strip()
    if proc.returncode == 0 and kv.get("ClusterName"):
        host = kv.get("SlurmctldHost[0]") or kv.get("ControlMachine", "")
        return f"slurm:{kv['ClusterName']}@{host}:{kv.get('SlurmctldPort', '')}"
    return f"slurm-conf:{os.environ.get('SLURM_CONF', '/etc/slurm/slurm.conf')}"


def _pbs_identity() -> str:
    from servemark.deploy import pbs

    if pbs.slurm_wrapper():
        return "pbs-on-" + _slurm_identity()
    server = os.environ.get("PBS_SERVER") or os.environ.get("PBS_DEFAULT")
    conf = Path(os.environ.get("PBS_CONF_FILE", "/etc/pbs.conf"))
    if not server and conf.exists():
        for line in conf.read_text(errors="replace").splitlines():
            if line.startswith("PBS_SERVER="):
                server = line.split("=", 1)[1].strip()
    return f"pbs:{server or 'default'}"


@cache
def _identity_cached(scheduler: str, env_key: str) -> str:
    return _slurm_identity() if scheduler == "slurm" else _pbs_identity()


def cluster_identity(scheduler: str) -> str:
    """Which cluster this environment's scheduler commands reach (asked once per environment)."""
    keys = ("SLURM_CONF", "PBS_SERVER", "PBS_DEFAULT", "PBS_CONF_FILE", "PATH")
    return _identity_cached(scheduler, "|".join(os.environ.get(k, "") for k in keys))


def _write(job: SubmittedJob) -> None:
    job.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = job.path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(job), indent=2))
    os.replace(tmp, job.path)


def record(scheduler: str, job_id: str, name: str, *, owned: bool) -> SubmittedJob:
    """Remember, durably, a job just submitted; ``owned``: this process follows it and stops it."""
    pid, started = me()
    job = SubmittedJob(scheduler, job_id, name, cluster_identity(scheduler), time.time(),
                       pid if owned else None, started if owned else None)
    _write(job)
    return job


def load_all() -> list[SubmittedJob]:
    folder = submitted_dir()
    out = []
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            out.append(SubmittedJob(**json.loads(path.read_text())))
        except (json.JSONDecodeError, TypeError):
            continue  # a corrupt record must not block the others
    return out


def forget(job: SubmittedJob) -> None:
    job.path.unlink(missing_ok=True)


def release(job: SubmittedJob) -> None:
    """The job keeps running on purpose: no owner any more (plain ``cleanup`` leaves it)."""
    job.owner_pid = job.owner_started_at = None
    _write(job)


def cancel(job: SubmittedJob) -> None:
    """Cancel the job and forget it; a job that already ended is only forgotten."""
    mod = _module(job.scheduler)
    with signals_deferred():
        try:
            mod.cancel(job.job_id)
        except ServemarkError:
            if not mod.status(job.job_id).done:
                raise
        forget(job)


# ---- following a job we own ----


@dataclass
class Ending:
    """What :func:`owning` did with the jobs of this process when the block ended early."""

    cancelled: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # job id -> why it could not be cancelled


def _wants_cancel(exc: BaseException, ask: Callable[[str], bool], job_id: str) -> bool:
    if isinstance(exc, JobWaitTimeout):
        return False  # the wait had a limit; the job had none
    if isinstance(exc, KeyboardInterrupt) and getattr(exc, "signum", None) is None:
        return ask(job_id)  # Ctrl-C: someone is there
    return True  # SIGTERM / SIGHUP (an interrupt with a ``signum``), an error: no one to ask


@contextmanager
def owning(ask: Callable[[str], bool]) -> Iterator[Ending]:
    """Around submitting and following owned jobs. A normal end forgets their records (they
    ended). An early end cancels them — after asking ``ask(job_id)`` -> cancel? on Ctrl-C —
    except after a wait timeout or a "no", which let them run without an owner."""
    ending = Ending()
    try:
        yield ending
    except BaseException as exc:
        raised: BaseException = exc
        for job in [j for j in load_all() if j.mine()]:
            try:
                stop = _wants_cancel(raised, ask, job.job_id)
            except BaseException as second:  # a signal while asking: no one is answering
                raised, stop = second, True
            if not stop:
                release(job)
                ending.kept.append(job.job_id)
                continue
            try:
                cancel(job)
                ending.cancelled.append(job.job_id)
            except ServemarkError as why:  # the record stays: `servemark cleanup` retries
                ending.failed[job.job_id] = why.one_line()
        if raised is exc:
            raise
        raise raised from None
    else:
        for job in load_all():
            if job.mine():
                forget(job)


# ---- leftovers, for `servemark cleanup` ----


@dataclass
class Review:
    """One recorded job that is still active: ``cancel`` (its owner is gone, or ``--all``),
    ``keep`` (submitted to keep running) or ``elsewhere`` (another cluster: not checked)."""

    job: SubmittedJob
    action: str
    status: JobStatus | None = None


def _same_name(job: SubmittedJob, st: JobStatus) -> bool:
    if not st.name:
        return True  # the scheduler does not say; the cluster and id already match
    return st.name.startswith(job.name) or job.name.startswith(st.name)  # PBS may truncate


def review(all_: bool = False, prune: bool = True) -> Iterator[Review]:
    """The recorded jobs still queued or running, each with what cleanup should do. Records of
    jobs that ended (or whose id now names another job) are deleted when ``prune``; jobs whose
    owner still follows them are its business and not listed."""
    for job in load_all():
        try:
            here = cluster_identity(job.scheduler)
        except ServemarkError:  # the scheduler's commands are not here
            yield Review(job, "elsewhere")
            continue
        if here != job.cluster:
            yield Review(job, "elsewhere")
            continue
        st = _module(job.scheduler).status(job.job_id)
        if st.state in FINAL or st.state == UNKNOWN or not _same_name(job, st):
            if prune:
                forget(job)
            continue
        if job.owned and job.owner_alive():
            continue
        yield Review(job, "cancel" if job.owned or all_ else "keep", st)
