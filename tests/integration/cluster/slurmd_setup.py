"""A private real SLURM for tests: its own munged, slurmctld and slurmd(s), started by hand.

Everything is private to one ``LocalSlurm``: a fresh directory (conf, munge key and socket,
state, spool, logs), free ports for SlurmctldPort and SlurmdPort, so it never meets a site's or
another test run's SLURM. Clients find it through ``SLURM_CONF`` (``env``). ``stop()`` cancels its
jobs and ends exactly the processes it started, by PID.

Nodes: by default one node named after this host. A node in a network namespace gets its own
``NodeAddr`` and its slurmd runs under ``nsenter`` (``%n`` keeps the slurmd paths apart).
Run ``python tests/integration/cluster/slurmd_setup.py`` to start a one-node SLURM by hand.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def have_slurm() -> bool:
    return all(shutil.which(t) for t in ("slurmctld", "slurmd", "sbatch", "squeue", "munged",
                                         "mungekey"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _mem_mib() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return max(1024, int(line.split()[1]) // 1024 - 1024)  # leave room for the OS
    return 1024


@dataclass(frozen=True)
class SlurmNode:
    """One slurmd: its NodeName, the address slurmctld reaches it at, and a command prefix that
    puts it where it lives (``nsenter --net=...`` for a namespace)."""

    name: str
    addr: str | None = None
    prefix: list[str] = field(default_factory=list)


class LocalSlurm:
    """A private cluster; ``partitions`` maps a name to node names (the first is the default)."""

    def __init__(self, nodes: list[SlurmNode] | None = None, ctld_addr: str | None = None,
                 partitions: dict[str, list[str]] | None = None) -> None:
        self.host = socket.gethostname()
        self.nodes = nodes or [SlurmNode(self.host)]
        self.ctld_addr = ctld_addr
        self.partitions = partitions or {"debug": [n.name for n in self.nodes]}
        self.dir = Path(tempfile.mkdtemp(prefix="sm-slurm-"))  # short: munge's socket path
        self.dir.chmod(0o755)  # munged (user munge) and clients must reach into it
        self.conf = self.dir / "slurm.conf"
        self.munge_socket = self.dir / "munge" / "munge.sock"
        self.ctld_port, self.slurmd_port = free_port(), free_port()
        self.started: list[subprocess.Popen[bytes]] = []

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def _run(self, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **self.env}, check=False)

    def conf_text(self) -> str:
        d, cpus = self.dir, os.cpu_count() or 1
        ctld = f"{self.host}({self.ctld_addr})" if self.ctld_addr else self.host
        node_lines = "".join(
            f"NodeName={n.name}{f' NodeAddr={n.addr}' if n.addr else ''} CPUs={cpus} "
            f"RealMemory={_mem_mib()} State=UNKNOWN\n" for n in self.nodes)
        part_lines = "".join(
            f"PartitionName={p} Nodes={','.join(names)} Default={'YES' if i == 0 else 'NO'} "
            f"MaxTime=INFINITE State=UP OverSubscribe=YES\n"
            for i, (p, names) in enumerate(self.partitions.items()))
        return f"""\
ClusterName=servemark
SlurmctldHost={ctld}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool-%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd-%n.log
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
{node_lines}{part_lines}"""

    def node_states(self) -> list[str]:
        r = self._run("sinfo", "-h", "-N", "-o", "%T")
        return [s.rstrip("*~#$@") for s in r.stdout.split()] if r.returncode == 0 else []

    def node_idle(self) -> bool:
        states = self.node_states()
        return len(states) >= len(self.nodes) and all(
            s in ("idle", "mixed", "allocated") for s in states)

    def _spawn(self, args: list[str], log: str, **kw: object) -> subprocess.Popen[bytes]:
        with open(self.dir / log, "wb") as fh:
            p = subprocess.Popen(args, stdout=fh, stderr=fh, stdin=subprocess.DEVNULL,
                                 env={**os.environ, **self.env}, start_new_session=True,
                                 **kw)  # type: ignore[call-overload]
        self.started.append(p)
        return p

    def _start_munged(self) -> None:
        mdir = self.munge_socket.parent
        mdir.mkdir(mode=0o700)
        key = mdir / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True,
                       capture_output=True, timeout=20)
        munge = pwd.getpwnam("munge")
        for path in (mdir, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        self._spawn(["munged", "--foreground", "--force", f"--socket={self.munge_socket}",
                     f"--key-file={key}", f"--pid-file={mdir}/munged.pid",
                     f"--log-file={mdir}/munged.log", f"--seed-file={mdir}/munged.seed"],
                    "munged.stderr", user=munge.pw_uid, group=munge.pw_gid, extra_groups=[])
        for _ in range(100):
            if self.munge_socket.exists():
                return
            time.sleep(0.1)
        raise RuntimeError(f"munged did not open {self.munge_socket}; see {mdir}/munged.log")

    def start(self, timeout_s: float = 60) -> LocalSlurm:
        try:
            self._start(timeout_s)
        except BaseException:
            self.stop(keep_dir=True)  # its logs say why
            raise
        return self

    def _start(self, timeout_s: float) -> None:
        (self.dir / "state").mkdir()
        self.conf.write_text(self.conf_text())
        self._start_munged()
        # -c: a clean start, no jobs or node states from anywhere else
        self._spawn(["slurmctld", "-D", "-c", "-f", str(self.conf)], "slurmctld.stderr")
        time.sleep(1.0)
        for n in self.nodes:
            self._spawn([*n.prefix, "slurmd", "-D", "-f", str(self.conf), "-N", n.name],
                        f"slurmd-{n.name}.stderr")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for p in self.started:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args!r} exited; see {self.dir}")
            if self.node_idle():
                return
            states = self.node_states()
            if any(s.startswith(("down", "drain")) for s in states):
                for n in self.nodes:
                    self._run("scontrol", "update", f"NodeName={n.name}", "State=RESUME")
            time.sleep(0.5)
        raise RuntimeError(f"the SLURM nodes did not become idle ({self.node_states()}); "
                           f"see {self.dir}/*.log")

    def stop(self, keep_dir: bool = False) -> None:
        """Cancel our jobs, then stop only what this object started (by PID), newest first."""
        if self.started and self.started[-1].poll() is None:
            self._run("scancel", "--full", "--user", pwd.getpwuid(os.getuid()).pw_name)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if not self._run("squeue", "-h").stdout.strip():
                    break
                time.sleep(0.5)
        for p in reversed(self.started):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        self.started.clear()
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    s = LocalSlurm().start()
    print(f"SLURM ready: export SLURM_CONF={s.conf}")
    print("PIDs (munged, slurmctld, slurmd):", [p.pid for p in s.started])
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        s.stop()
