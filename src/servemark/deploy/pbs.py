"""PBS (PBS Pro / OpenPBS as on ALCF Polaris and Aurora; Torque-style qstat too): qsub, qstat, qdel.

State comes from ``qstat -x -f -F json`` (PBS Pro ≥ 19 keeps finished jobs with -x); servers
without JSON output are read from the text of ``qstat -f``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

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
    run_tool,
    save_record,
    wait_for,
)
from servemark.deploy.cluster_spec import ClusterSpec
from servemark.deploy.local import signals_deferred
from servemark.deploy.render import render
from servemark.errors import ConfigError

# job_state letters (PBS Pro reference guide "Job States"; C is Torque's "completed")
_STATES = {"Q": PENDING, "H": PENDING, "W": PENDING, "T": PENDING, "M": PENDING,
           "R": RUNNING, "B": RUNNING, "S": RUNNING, "U": RUNNING, "E": COMPLETING,
           "F": COMPLETED, "X": COMPLETED, "C": COMPLETED}
_ATTR = re.compile(r"^\s+[A-Za-z_][A-Za-z0-9_.]* = ")
_JOB_ID = re.compile(r"^\d+(\[\d*\])?(\.[A-Za-z0-9._-]+)?$")


def check_job_id(job_id: str) -> str:
    job_id = job_id.strip()
    if not _JOB_ID.match(job_id):
        raise ConfigError(f"{job_id!r} is not a PBS job id",
                          "for example: servemark pbs status 1234567.polaris-pbs-01")
    return job_id


def final_state(exit_status: int | None, comment: str = "") -> str:
    """The end state of a finished job from its Exit_status and comment.

    Exit status conventions (PBS Pro and Torque docs, summarised at
    https://hpc.research.uts.edu.au/TODO/pbs_errors): 0 success; 1–127 the script's exit value;
    128+n or 256+n killed by signal n (qdel and walltime kills send SIGTERM then SIGKILL);
    negative values are PBS's own failures to start the job.
    """
    text = comment.lower()
    if "walltime" in text and ("exceed" in text or "limit" in text):
        return TIMEOUT
    if exit_status is None:
        return COMPLETED if "finished" in text else UNKNOWN
    if exit_status == 0:
        return COMPLETED
    if "deleted" in text or (exit_status > 128 and exit_status % 128 in (9, 15)):
        return CANCELLED
    return FAILED


def _status_from_attrs(job_id: str, a: dict[str, Any], source: str) -> JobStatus:
    raw = str(a.get("job_state", ""))
    state = _STATES.get(raw, UNKNOWN)
    code_raw = a.get("Exit_status", a.get("exit_status"))
    code = int(code_raw) if code_raw is not None and str(code_raw).lstrip("-").isdigit() else None
    comment = str(a.get("comment", ""))
    if state == COMPLETED:
        state = final_state(code, comment)
    used = a.get("resources_used")  # a dict in JSON, dotted keys in text
    elapsed = used.get("walltime") if isinstance(used, dict) else a.get("resources_used.walltime")
    hosts = str(a.get("exec_host", "")) or None
    nodes = ",".join(dict.fromkeys(h.split("/")[0] for h in hosts.split("+"))) if hosts else None
    return JobStatus(job_id, state, raw, name=a.get("Job_Name"), exit_code=code, elapsed=elapsed,
                     nodes=nodes, reason=comment or None, source=source,
                     extra={k: str(a[k]) for k in ("Output_Path", "queue") if k in a})


def parse_qstat_json(text: str, job_id: str) -> JobStatus | None:
    """``qstat -f -F json`` → the status of ``job_id`` (matched with or without the server part)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return None
    for jid, attrs in (doc.get("Jobs") or {}).items():
        if jid == job_id or jid.split(".")[0] == job_id.split(".")[0]:
            return _status_from_attrs(jid, attrs, "qstat-json")
    return None


def parse_qstat_full(text: str) -> dict[str, dict[str, str]]:
    """The text of ``qstat -f``: ``Job Id: X`` blocks of ``key = value`` lines; long values
    continue on lines indented with a tab (PBS Pro) or two spaces without ``=`` (Torque).
    Slurm's Torque wrapper indents the attributes themselves with a tab."""
    jobs: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    key = None
    tab_attrs = False
    for line in text.splitlines():
        if line.startswith("Job Id:"):
            current = jobs.setdefault(line.split(":", 1)[1].strip(), {})
            key = None
            tab_attrs = "\t" in line  # the wrapper writes "Job Id:\t10"
        elif current is None or not line.strip():
            continue
        elif (line.startswith("\t") and not (tab_attrs and _ATTR.match(line))) or (
                key and " = " not in line):
            if key is not None:
                current[key] += line.strip()
        else:
            k, eq, v = line.strip().partition(" = ")
            if eq:
                key = k
                current[key] = v
    return jobs


def parse_qstat_text(text: str, job_id: str) -> JobStatus | None:
    for jid, attrs in parse_qstat_full(text).items():
        if jid == job_id or jid.split(".")[0] == job_id.split(".")[0]:
            return _status_from_attrs(jid, attrs, "qstat")
    return None


def status(job_id: str) -> JobStatus:
    job_id = check_job_id(job_id)
    proc = run_tool(["qstat", "-x", "-f", "-F", "json", job_id], check=False)
    if proc.returncode == 0 and (st := parse_qstat_json(proc.stdout, job_id)) is not None:
        return st
    proc = run_tool(["qstat", "-f", job_id], check=False)
    if proc.returncode == 0 and (st := parse_qstat_text(proc.stdout, job_id)) is not None:
        if st.raw_state == "C" and st.exit_code is None and shutil.which("scontrol"):
            return _from_slurm(st)
        return st
    return JobStatus(job_id, UNKNOWN, source="none", reason="qstat does not know this job (any more)")


def _from_slurm(st: JobStatus) -> JobStatus:
    """Slurm's PBS wrapper (Debian ``slurm-wlm-torque``) reports every ended job as ``C`` without
    an exit status; SLURM itself knows how it ended."""
    from servemark.deploy import slurm

    short = st.job_id.split(".")[0]
    if not short.isdigit():
        return st
    sl = slurm.status(short)
    if sl.state == UNKNOWN:
        return st
    return JobStatus(st.job_id, sl.state, "C", name=st.name, exit_code=sl.exit_code,
                     elapsed=sl.elapsed or st.elapsed, nodes=st.nodes, reason=sl.reason,
                     source=f"qstat+{sl.source}", extra=st.extra)


def slurm_wrapper() -> bool:
    """Whether ``qsub`` is Slurm's PBS wrapper (Debian ``slurm-wlm-torque``), a script over sbatch."""
    path = shutil.which("qsub")
    if path is None:
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except OSError:
        return False
    return head.startswith(b"#!") and b"sbatch" in head


def submit(spec: ClusterSpec, when: datetime | None = None, *, owned: bool = False) -> JobRecord:
    """qsub the rendered script; secrets listed in pass_env go by name with ``-v`` (values stay
    in the environment qsub reads), and only those that are set. Recorded like slurm.submit."""
    root = spec.run_root
    root.mkdir(parents=True, exist_ok=True)
    stamp = (when or datetime.now()).strftime("%Y%m%d-%H%M%S")
    script = root / f"{spec.name}-{stamp}.pbs"
    script.write_text(render(spec, "pbs"))
    # output to a named file on the command line: PBS Pro and Slurm's qsub wrapper both take
    # that (the wrapper passes its own -o to sbatch, which overrides the script's #PBS -o)
    output = root.resolve() / f"{spec.name}-{stamp}.out"
    args = ["qsub", "-j", "oe", "-o", str(output)]
    names = [n for n in spec.environment.pass_env if os.environ.get(n)]
    if names and slurm_wrapper():
        args.append("-V")  # the wrapper would put `-v` values on sbatch's command line (ps)
    elif names:
        args += ["-v", ",".join(names)]
    with signals_deferred():
        proc = run_tool([*args, str(script)])
        job_id = check_job_id(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "")
        submitted.record("pbs", job_id, spec.name, owned=owned)
    short = job_id.split(".")[0]
    rootp = root.resolve()
    rec = JobRecord("pbs", job_id, spec.name, str(script.resolve()), str(output),
                    str(rootp / f"{spec.name}-{short}"), str(Path.cwd()))
    save_record(rec)
    return rec


def cancel(job_id: str) -> None:
    run_tool(["qdel", check_job_id(job_id)])


def wait(job_id: str, poll_s: float = 5.0, timeout_s: float | None = None,
         on_change: Callable[[JobStatus], None] | None = None) -> JobStatus:
    return wait_for(status, check_job_id(job_id), "pbs", poll_s, timeout_s, on_change)


def run_dir(job_id: str) -> Path | None:
    rec = load_record("pbs", check_job_id(job_id))
    return Path(rec.run_dir) if rec is not None else None
