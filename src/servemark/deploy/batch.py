"""What SLURM and PBS have in common: one job-state vocabulary, running their commands, and a small
record of the jobs we submitted (where their script, output and run directory are).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from servemark.errors import DependencyError, JobError, JobWaitTimeout

# normalised states; scheduler-specific codes map onto these
PENDING, RUNNING, COMPLETING = "PENDING", "RUNNING", "COMPLETING"
COMPLETED, FAILED, CANCELLED, TIMEOUT = "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"
UNKNOWN = "UNKNOWN"
FINAL = frozenset({COMPLETED, FAILED, CANCELLED, TIMEOUT, "OUT_OF_MEMORY", "NODE_FAIL",
                   "PREEMPTED", "BOOT_FAIL", "DEADLINE"})


@dataclass(slots=True)
class JobStatus:
    """A job as the scheduler reports it. ``source`` names the command that answered."""

    job_id: str
    state: str
    raw_state: str = ""
    name: str | None = None
    exit_code: int | None = None
    elapsed: str | None = None
    nodes: str | None = None
    reason: str | None = None
    source: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.state in FINAL

    @property
    def ok(self) -> bool:
        return self.state == COMPLETED and (self.exit_code in (0, None))

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["done"] = self.done
        return d


def run_tool(args: Sequence[str], *, timeout_s: float = 60, check: bool = True,
             input_text: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a scheduler command; a missing command or a failure becomes a one-line error."""
    if shutil.which(args[0]) is None:
        raise DependencyError(f"{args[0]} is not on PATH",
                              "run this on a login node of the cluster (or load its module)")
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout_s,
                              input=input_text, cwd=cwd, check=False)
    except subprocess.TimeoutExpired:
        raise JobError(f"{args[0]} did not answer within {timeout_s:g} s",
                       "the scheduler may be overloaded; try again") from None
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise JobError(f"{' '.join(args[:2])} failed: {msg[-1] if msg else f'exit {proc.returncode}'}",
                       "check the message above against the spec's scheduler options")
    return proc


def parse_key_values(text: str) -> dict[str, str]:
    """``Key=Value Key2=Value two`` (scontrol -o, jobcomp/filetxt) → dict; values may hold spaces
    only where no ``Word=`` follows, which matches how SLURM prints them."""
    out: dict[str, str] = {}
    key: str | None = None
    for token in text.split():
        name, eq, value = token.partition("=")
        if eq and name and name.replace("/", "").replace(":", "").replace("_", "").isalnum():
            key = name
            out[key] = value
        elif key is not None:
            out[key] += " " + token
    return out


def wait_for(status: Callable[[str], JobStatus], job_id: str, scheduler: str, poll_s: float = 2.0,
             timeout_s: float | None = None,
             on_change: Callable[[JobStatus], None] | None = None) -> JobStatus:
    """Poll ``status`` until the job reaches a final state; ``on_change`` sees each new state."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = None
    while True:
        st = status(job_id)
        if st.state != last and on_change is not None:
            on_change(st)
        last = st.state
        if st.done:
            return st
        if deadline is not None and time.monotonic() > deadline:
            raise JobWaitTimeout(f"job {job_id} is still {st.state} after {timeout_s:g} s",
                           f"follow it with: servemark {scheduler} status {job_id}")
        time.sleep(poll_s)


# ---- the record of jobs we submitted (for `logs JOB` and `status` after the scheduler forgets) ----

def jobs_dir() -> Path:
    from servemark.deploy.registry import state_dir

    return state_dir() / "jobs"


@dataclass(slots=True)
class JobRecord:
    scheduler: str
    job_id: str
    name: str
    script: str
    output: str  # the batch output file (or directory for PBS)
    run_dir: str
    workdir: str


def save_record(rec: JobRecord) -> Path:
    d = jobs_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{rec.scheduler}-{rec.job_id}.json"
    path.write_text(json.dumps(asdict(rec), indent=2))
    return path


def load_record(scheduler: str, job_id: str) -> JobRecord | None:
    path = jobs_dir() / f"{scheduler}-{job_id}.json"
    try:
        return JobRecord(**json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None
