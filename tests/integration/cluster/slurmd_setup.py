"""A real one-node SLURM for tests: munged, slurmctld and slurmd started by hand (no systemd).

Everything lives under one state directory (default /tmp/servemark-slurm). When the daemons of
that directory already answer, they are reused and left running; otherwise they are started here
and ``stop()`` ends exactly the processes this object started, by PID.
Run ``python tests/integration/cluster/slurmd_setup.py`` to start them by hand for development.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

STATE_DIR = Path(os.environ.get("SERVEMARK_TEST_SLURM_DIR", "/tmp/servemark-slurm"))
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")


def have_slurm() -> bool:
    return all(shutil.which(t) for t in ("slurmctld", "slurmd", "sbatch", "squeue", "munged"))


def _mem_mib() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024 - 1024  # leave room for the OS
    return 1024


def _conf_text(d: Path, host: str) -> str:
    cpus = os.cpu_count() or 1
    return f"""\
ClusterName=servemark
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={d}/jobcomp.txt
MinJobAge=3600
KillWait=10
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName={host} CPUs={cpus} RealMemory={_mem_mib()} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


class LocalSlurm:
    """Start (or reuse) munged + slurmctld + slurmd; ``env`` holds SLURM_CONF for clients."""

    def __init__(self, state_dir: Path = STATE_DIR) -> None:
        self.dir = state_dir
        self.conf = state_dir / "slurm.conf"
        self.host = socket.gethostname()
        self.started: list[subprocess.Popen[bytes]] = []
        self.started_munged_pid: int | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def _run(self, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **self.env}, check=False)

    def munge_ok(self) -> bool:
        try:
            enc = subprocess.run(["munge", "-n"], capture_output=True, timeout=5, check=False)
            dec = subprocess.run(["unmunge"], input=enc.stdout, capture_output=True, timeout=5,
                                 check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return enc.returncode == 0 and dec.returncode == 0

    def node_idle(self) -> bool:
        if not self.conf.exists():
            return False
        r = self._run("sinfo", "-h", "-N", "-o", "%T")
        states = r.stdout.split()
        return r.returncode == 0 and bool(states) and all(
            s.rstrip("*~#") in ("idle", "mixed", "allocated") for s in states)

    def start(self, timeout_s: float = 60) -> LocalSlurm:
        if not self.munge_ok():
            self._start_munged()
        if self.node_idle():
            return self  # reuse daemons someone already started for this directory
        for sub in ("state", "spool"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(_conf_text(self.dir, self.host))
        env = {**os.environ, **self.env}
        for daemon in ("slurmctld", "slurmd"):
            args = [daemon, "-D", "-f", str(self.conf)]
            if daemon == "slurmctld":
                args.append("-c")  # clean start: forget jobs of a previous run
            log = open(self.dir / f"{daemon}.stderr", "wb")  # noqa: SIM115
            self.started.append(subprocess.Popen(args, stdout=log, stderr=log,
                                                 stdin=subprocess.DEVNULL, env=env,
                                                 start_new_session=True))
            log.close()
            time.sleep(1.0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for p in self.started:
                if p.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{p.args[0]} exited; see {self.dir}/*.log")
            if self.node_idle():
                return self
            r = self._run("sinfo", "-h", "-N", "-o", "%T")
            if "down" in r.stdout or "drain" in r.stdout:
                self._run("scontrol", "update", f"NodeName={self.host}", "State=RESUME")
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the SLURM node did not become idle; see {self.dir}/*.log")

    def _start_munged(self) -> None:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.chown("/run/munge", "munge", "munge")
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["mungekey", "--create", "--force"], check=True)
            shutil.chown(key, "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "munged", "--force"], check=True,
                       timeout=20)
        pidfile = Path("/run/munge/munged.pid")
        for _ in range(50):
            if self.munge_ok():
                break
            time.sleep(0.1)
        if pidfile.exists():
            self.started_munged_pid = int(pidfile.read_text().split()[0])

    def stop(self) -> None:
        """Stop only what this object started (by PID), newest first."""
        for p in reversed(self.started):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        self.started.clear()
        if self.started_munged_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.started_munged_pid, signal.SIGTERM)
            self.started_munged_pid = None


if __name__ == "__main__":
    s = LocalSlurm().start()
    print(f"SLURM ready: export SLURM_CONF={s.conf}")
    print("daemon PIDs:", [p.pid for p in s.started], "munged:", s.started_munged_pid)
