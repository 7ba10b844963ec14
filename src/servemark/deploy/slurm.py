"""SLURM: submit a rendered script with sbatch, read a job's state, cancel it.

State comes from ``squeue`` while the job is active, then ``sacct``. Without accounting
(``sacct`` says storage is disabled) it falls back to ``scontrol show job`` (kept for MinJobAge
after the end) and finally to the ``jobcomp/filetxt`` file when the cluster writes one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from servemark.deploy import submitted
from servemark.deploy.batch import (
    CANCELLED,
    COMPLETED,
    COMPLETING,
    FAILED,
    PENDING,
    RUNNING,
    TIMEOUT,
    UNKNOWN,
    JobRecord,
    JobStatus,
    load_record,
    parse_key_values,
    run_tool,
    save_record,
    wait_for,
)
from servemark.deploy.cluster_spec import ClusterSpec
from servemark.deploy.local import signals_deferred
from servemark.deploy.render import render
from servemark.errors import ConfigError, JobError

_KNOWN = {"PENDING", "RUNNING", "COMPLETING", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
          "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "SUSPENDED",
          "REQUEUED", "RESIZING", "CONFIGURING", "STOPPED", "SIGNALING", "STAGE_OUT"}
_ALIASES = {"CONFIGURING": RUNNING, "SUSPENDED": RUNNING, "STOPPED": RUNNING, "SIGNALING": RUNNING,
            "STAGE_OUT": COMPLETING, "RESIZING": RUNNING, "REQUEUED": PENDING,
            "PD": PENDING, "R": RUNNING, "CG": COMPLETING, "CD": COMPLETED, "F": FAILED,
            "CA": CANCELLED, "TO": TIMEOUT}
_JOB_ID = re.compile(r"^\d+(_\d+)?$")


def normalise_state(raw: str) -> str:
    """``CANCELLED by 0`` → CANCELLED, ``CONFIGURING`` → RUNNING; unknown words → UNKNOWN."""
    word = raw.strip().split(" ")[0].rstrip("+").upper() if raw.strip() else ""
    if word in _ALIASES:
        return _ALIASES[word]
    return word if word in _KNOWN else UNKNOWN


def _exit_code(text: str | None) -> int | None:
    if not text:
        return None
    code, _, _signal = text.partition(":")
    return int(code) if code.isdigit() else None


def check_job_id(job_id: str) -> str:
    job_id = job_id.strip().split(";")[0]
    if not _JOB_ID.match(job_id):
        raise ConfigError(f"{job_id!r} is not a SLURM job id", "for example: servemark slurm status 1234")
    return job_id


def parse_squeue(text: str, job_id: str) -> JobStatus | None:
    """One line of ``squeue -h -o '%i|%j|%T|%M|%D|%R'``."""
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 6 and parts[0] == job_id:
            return JobStatus(job_id, normalise_state(parts[2]), parts[2], name=parts[1],
                             elapsed=parts[3], nodes=parts[5] if parts[2] == "RUNNING" else None,
                             reason=None if parts[2] == "RUNNING" else parts[5], source="squeue")
    return None


def parse_sacct(text: str, job_id: str) -> JobStatus | None:
    """``sacct -n -P -X -o JobID,JobName,State,ExitCode,Elapsed,NodeList`` lines."""
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 6 and parts[0] == job_id:
            return JobStatus(job_id, normalise_state(parts[2]), parts[2], name=parts[1],
                             exit_code=_exit_code(parts[3]), elapsed=parts[4], nodes=parts[5],
                             source="sacct")
    return None


def parse_scontrol(text: str, job_id: str, source: str = "scontrol") -> JobStatus | None:
    """``scontrol -o show job`` (one line per job) or ``jobcomp/filetxt`` lines."""
    found = None
    for line in text.splitlines():
        kv = parse_key_values(line)
        if kv.get("JobId") != job_id:
            continue
        raw = kv.get("JobState", "")
        found = JobStatus(job_id, normalise_state(raw), raw, name=kv.get("JobName") or kv.get("Name"),
                          exit_code=_exit_code(kv.get("ExitCode")), elapsed=kv.get("RunTime"),
                          nodes=kv.get("NodeList"), reason=kv.get("Reason"), source=source,
                          extra={k: kv[k] for k in ("StdOut", "WorkDir") if k in kv})
    return found  # jobcomp may hold a requeued job twice: the last line is the latest


def status(job_id: str) -> JobStatus:
    """The job's state from the best source available (see the module docstring)."""
    job_id = check_job_id(job_id)
    sq = run_tool(["squeue", "-h", "-j", job_id, "-o", "%i|%j|%T|%M|%D|%R"], check=False)
    st = parse_squeue(sq.stdout, job_id) if sq.returncode == 0 else None
    if st is not None:
        return st
    sa = run_tool(["sacct", "-n", "-P", "-X", "-j", job_id, "-o",
                   "JobID,JobName,State,ExitCode,Elapsed,NodeList"], check=False)
    if sa.returncode == 0 and (st := parse_sacct(sa.stdout, job_id)) is not None:
        return st
    sc = run_tool(["scontrol", "-o", "show", "job", job_id], check=False)
    if sc.returncode == 0 and (st := parse_scontrol(sc.stdout, job_id)) is not None:
        return st
    comp = _jobcomp_file()
    if comp is not None and comp.exists():
        st = parse_scontrol(comp.read_text(errors="replace"), job_id, source="jobcomp")
        if st is not None:
            return st
    return JobStatus(job_id, UNKNOWN, source="none",
                     reason="not in squeue, sacct (accounting disabled?), scontrol or jobcomp")


def _jobcomp_file() -> Path | None:
    proc = run_tool(["scontrol", "show", "config"], check=False)
    kv = {}
    for line in proc.stdout.splitlines():
        key, eq, value = line.partition("=")
        if eq:
            kv[key.strip()] = value.strip()
    if kv.get("JobCompType") == "jobcomp/filetxt" and kv.get("JobCompLoc", "").startswith("/"):
        return Path(kv["JobCompLoc"])
    return None


def write_script(spec: ClusterSpec, when: datetime | None = None) -> Path:
    """Render into ``RUN_ROOT/<name>-<time>.sbatch`` (the root is also where outputs go)."""
    root = spec.run_root
    root.mkdir(parents=True, exist_ok=True)
    stamp = (when or datetime.now()).strftime("%Y%m%d-%H%M%S")
    path = root / f"{spec.name}-{stamp}.sbatch"
    path.write_text(render(spec, "slurm"))
    return path


def submit(spec: ClusterSpec, *, owned: bool = False) -> JobRecord:
    """sbatch the rendered script from the current directory; the job id and where things go.
    The job is recorded (deploy.submitted) as ``owned`` by this process (it follows and stops
    it) or as meant to keep running; a signal waits until that record is written."""
    script = write_script(spec)
    with signals_deferred():
        proc = run_tool(["sbatch", "--parsable", str(script)])
        job_id = check_job_id(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "")
        submitted.record("slurm", job_id, spec.name, owned=owned)
    root = spec.run_root.resolve()
    rec = JobRecord("slurm", job_id, spec.name, str(script.resolve()),
                    str(root / f"{spec.name}-{job_id}.out"), str(root / f"{spec.name}-{job_id}"),
                    str(Path.cwd()))
    save_record(rec)
    return rec


def cancel(job_id: str) -> None:
    run_tool(["scancel", check_job_id(job_id)])


def wait(job_id: str, poll_s: float = 2.0, timeout_s: float | None = None,
         on_change: Callable[[JobStatus], None] | None = None) -> JobStatus:
    """Poll until the job reaches a final state; ``on_change`` sees each new state."""
    return wait_for(status, check_job_id(job_id), "slurm", poll_s, timeout_s, on_change)


def output_path(job_id: str) -> Path | None:
    """The job's batch output file: from our submit record, else from scontrol's StdOut."""
    job_id = check_job_id(job_id)
    rec = load_record("slurm", job_id)
    if rec is not None:
        return Path(rec.output)
    sc = run_tool(["scontrol", "-o", "show", "job", job_id], check=False)
    st = parse_scontrol(sc.stdout, job_id) if sc.returncode == 0 else None
    if st is not None and st.extra.get("StdOut"):
        return Path(st.extra["StdOut"])
    return None


def run_dir(job_id: str) -> Path | None:
    """Our submit record's run directory; else the script's RUN_DIR (``RUN_ROOT/NAME-JOB``),
    which is the batch output file (``RUN_ROOT/NAME-JOB.out``) without its suffix."""
    rec = load_record("slurm", check_job_id(job_id))
    if rec is not None:
        return Path(rec.run_dir)
    out = output_path(job_id)
    return out.with_suffix("") if out is not None and out.suffix == ".out" else None


def endpoints(job_id: str) -> list[str]:
    """The URLs a running job serves: the script appends each replica's URL to
    ``RUN_DIR/endpoints`` once its ``/health`` answers."""
    st = status(job_id)
    if st.state != RUNNING:
        raise JobError(f"job {job_id} is {st.state}, not running: nothing to benchmark",
                       f"see: servemark slurm status {job_id}")
    folder = run_dir(job_id)
    if folder is None:
        raise JobError(f"cannot find the run directory of job {job_id}",
                       "it was not submitted with servemark from here")
    path = folder / "endpoints"
    urls = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
    if not urls:
        raise JobError(f"job {job_id} has no ready endpoint yet",
                       f"wait for 'endpoint ready' in: servemark slurm logs {job_id} -f")
    return urls


__all__ = ["COMPLETED", "cancel", "endpoints", "output_path", "parse_sacct", "parse_scontrol", "parse_squeue",
           "status", "submit", "wait", "write_script"]
