"""Parsing what SLURM and PBS commands print, from realistic captured output."""

from __future__ import annotations

import json

from servemark.deploy import pbs, slurm
from servemark.deploy.batch import parse_key_values

SQUEUE = """\
4242|llama405b|RUNNING|12:03|2|gpu[017-018]
4243|replicas|PENDING|0:00|2|(Resources)
"""
SACCT = """\
4240|llama70b|COMPLETED|0:0|00:41:12|gpu003
4241|llama405b|CANCELLED by 1002|0:15|00:02:01|gpu[017-018]
4239|tiny|FAILED|1:0|00:00:31|gpu001
4238|big|TIMEOUT|0:0|02:00:16|gpu[001-004]
4237|oom|OUT_OF_MEMORY|0:125|00:10:00|gpu009
"""
# scontrol -o show job (one line), captured from SLURM 22.05
SCONTROL = (
    "JobId=7 JobName=smtest UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901754 "
    "Nice=0 Account=(null) QOS=(null) JobState=CANCELLED Reason=None Dependency=(null) "
    "Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:15 RunTime=00:00:21 "
    "TimeLimit=00:15:00 TimeMin=N/A SubmitTime=2026-11-25T17:45:01 NodeList=vm BatchHost=vm "
    "NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* "
    "TRES=cpu=1,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=1:0:*:* CoreSpec=* "
    "Command=/tmp/runs/smtest-20261125-174501.sbatch WorkDir=/tmp/work dir "
    "StdErr=/tmp/runs/smtest-7.out StdIn=/dev/null StdOut=/tmp/runs/smtest-7.out Power="
)
JOBCOMP = (
    "JobId=5 UserId=root(0) GroupId=root(0) Name=smtest JobState=COMPLETED Partition=debug "
    "TimeLimit=15 StartTime=2026-11-25T17:40:00 EndTime=2026-11-25T17:41:30 NodeList=vm "
    "NodeCnt=1 ProcCnt=1 WorkDir=/tmp ReservationName= Tres=cpu=1,node=1 Account= QOS= "
    "WcKey= Cluster=unknown DerivedExitCode=0:0 ExitCode=0:0\n"
    "JobId=6 UserId=root(0) GroupId=root(0) Name=smtest JobState=FAILED Partition=debug "
    "NodeList=vm ExitCode=2:0\n"
)


def test_squeue() -> None:
    st = slurm.parse_squeue(SQUEUE, "4242")
    assert st is not None and st.state == "RUNNING" and st.nodes == "gpu[017-018]" and not st.done
    st = slurm.parse_squeue(SQUEUE, "4243")
    assert st is not None and st.state == "PENDING" and st.reason == "(Resources)"
    assert slurm.parse_squeue(SQUEUE, "1") is None


def test_sacct_states_and_exit_codes() -> None:
    got = {j: slurm.parse_sacct(SACCT, j) for j in ("4240", "4241", "4239", "4238", "4237")}
    assert {j: (s.state, s.exit_code) for j, s in got.items() if s} == {
        "4240": ("COMPLETED", 0), "4241": ("CANCELLED", 0), "4239": ("FAILED", 1),
        "4238": ("TIMEOUT", 0), "4237": ("OUT_OF_MEMORY", 0)}
    assert got["4240"].ok and not got["4239"].ok and all(s.done for s in got.values() if s)


def test_scontrol_one_line() -> None:
    kv = parse_key_values(SCONTROL)
    assert kv["TRES"] == "cpu=1,node=1,billing=1" and kv["WorkDir"] == "/tmp/work dir"
    st = slurm.parse_scontrol(SCONTROL, "7")
    assert st is not None and st.state == "CANCELLED" and st.exit_code == 0
    assert st.extra["StdOut"] == "/tmp/runs/smtest-7.out" and st.elapsed == "00:00:21"


def test_jobcomp_file() -> None:
    st5 = slurm.parse_scontrol(JOBCOMP, "5", source="jobcomp")
    st6 = slurm.parse_scontrol(JOBCOMP, "6", source="jobcomp")
    assert st5 is not None and st5.state == "COMPLETED" and st5.name == "smtest"
    assert st6 is not None and st6.state == "FAILED" and st6.exit_code == 2


def test_state_normalisation() -> None:
    assert slurm.normalise_state("CONFIGURING") == "RUNNING"
    assert slurm.normalise_state("CANCELLED by 0") == "CANCELLED"
    assert slurm.normalise_state("COMPLETED+") == "COMPLETED"
    assert slurm.normalise_state("???") == "UNKNOWN"


# PBS Pro `qstat -x -f -F json` (shape as printed by PBS Pro 2022 on Polaris; values invented)
QSTAT_JSON = json.dumps({
    "timestamp": 1764090000, "pbs_version": "2022.1.5", "pbs_server": "polaris-pbs-01",
    "Jobs": {
        "1234567.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov": {
            "Job_Name": "llama405b", "Job_Owner": "ann@polaris-login-02", "job_state": "R",
            "queue": "prod", "server": "polaris-pbs-01", "Account_Name": "MyProject",
            "exec_host": "x3005c0s13b0n0/0*64+x3005c0s13b1n0/0*64",
            "resources_used": {"cpupercent": 12, "walltime": "00:10:03", "ncpus": 128},
            "Resource_List": {"select": "2:system=polaris", "walltime": "02:00:00"},
            "comment": "Job run at Tue Nov 25 at 10:00 on (x3005c0s13b0n0:ncpus=64)+..."},
        "1234568.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov": {
            "Job_Name": "tiny", "job_state": "F", "Exit_status": 0, "queue": "debug",
            "resources_used": {"walltime": "00:03:10"},
            "comment": "Job run at Tue Nov 25 at 09:00 on (x3006c0s1b0n0:ncpus=64) and finished"},
        "1234569.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov": {
            "Job_Name": "slow", "job_state": "F", "Exit_status": 271,
            "comment": "job killed: walltime 7216 exceeded limit 7200"},
        "1234570.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov": {
            "Job_Name": "del", "job_state": "F", "Exit_status": 271,
            "comment": "Job run at Tue Nov 25 at 11:00 on (...) and terminated"},
        "1234571.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov": {
            "Job_Name": "bad", "job_state": "F", "Exit_status": 1},
        "1234572.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov": {
            "Job_Name": "queued", "job_state": "Q", "comment": "Not Running: Insufficient amount of resource: ngpus"},
    }})

# `qstat -f` text (PBS Pro): long values continue on tab-indented lines
QSTAT_TEXT = """\
Job Id: 8810.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov
    Job_Name = aurora405b
    Job_Owner = ann@aurora-uan-0009.hostmgmt1000.cm.aurora.alcf.anl.gov
    resources_used.cpupercent = 0
    resources_used.walltime = 00:42:11
    job_state = F
    queue = prod
    Error_Path = aurora-uan-0009:/home/ann/servemark-jobs/aurora405b.e8810
    exec_host = x4102c5s0b0n0/0*208+x4102c5s1b0n0/0*208
    Output_Path = aurora-uan-0009.hostmgmt1000.cm.aurora.alcf.anl.gov:/home/ann/servemark-j
\tobs/aurora405b.o8810
    Exit_status = 0
    comment = Job run at Tue Nov 25 at 08:00 on (x4102c5s0b0n0:ncpus=208)+(x4102c5s1b0
\tn0:ncpus=208) and finished

Job Id: 8811.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov
    Job_Name = other
    job_state = H
"""


def test_qstat_json() -> None:
    st = pbs.parse_qstat_json(QSTAT_JSON, "1234567")
    assert st is not None and st.state == "RUNNING" and st.elapsed == "00:10:03"
    assert st.nodes == "x3005c0s13b0n0,x3005c0s13b1n0"
    want = {"1234568": ("COMPLETED", 0), "1234569": ("TIMEOUT", 271),
            "1234570": ("CANCELLED", 271), "1234571": ("FAILED", 1), "1234572": ("PENDING", None)}
    for jid, (state, code) in want.items():
        s = pbs.parse_qstat_json(QSTAT_JSON, jid)
        assert s is not None and (s.state, s.exit_code) == (state, code), jid
    assert pbs.parse_qstat_json(QSTAT_JSON, "999") is None
    assert pbs.parse_qstat_json("qstat: Unknown Job Id", "1") is None


def test_qstat_text_with_continuations() -> None:
    jobs = pbs.parse_qstat_full(QSTAT_TEXT)
    attrs = jobs["8810.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"]
    assert attrs["Output_Path"].endswith("/home/ann/servemark-jobs/aurora405b.o8810")
    st = pbs.parse_qstat_text(QSTAT_TEXT, "8810.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov")
    assert st is not None and st.state == "COMPLETED" and st.exit_code == 0 and st.ok
    assert st.elapsed == "00:42:11" and st.nodes == "x4102c5s0b0n0,x4102c5s1b0n0"
    held = pbs.parse_qstat_text(QSTAT_TEXT, "8811")
    assert held is not None and held.state == "PENDING" and held.raw_state == "H"


# `qstat -f 10` of Slurm's PBS wrapper (slurm-wlm-torque, Debian 12), captured on this machine:
# attributes indented with a tab, every ended job "C" and no Exit_status
QSTAT_WRAPPER = (
    "Job Id:\t10\n\tJob_Name = pbsx\n\tJob_Owner = root@localhost\n\tjob_state = R\n"
    "\tqueue = debug\n\texec_host = vm/1\n\tResource_List.walltime = 00:05:00\n"
    "\tResource_List.nodect = 1\n\n"
    "Job Id:\t11\n\tJob_Name = done\n\tjob_state = C\n\tqueue = debug\n"
)


def test_qstat_text_of_slurms_pbs_wrapper() -> None:
    jobs = pbs.parse_qstat_full(QSTAT_WRAPPER)
    assert jobs["10"]["queue"] == "debug" and jobs["10"]["Resource_List.nodect"] == "1"
    st = pbs.parse_qstat_text(QSTAT_WRAPPER, "10")
    assert st is not None and st.state == "RUNNING" and st.name == "pbsx" and st.nodes == "vm"
    ended = pbs.parse_qstat_text(QSTAT_WRAPPER, "11")
    assert ended is not None and ended.raw_state == "C" and ended.exit_code is None


def test_job_ids_are_checked() -> None:
    import pytest

    from servemark.errors import ConfigError

    assert slurm.check_job_id("1234;cluster") == "1234"
    assert pbs.check_job_id("1234567.polaris-pbs-01") == "1234567.polaris-pbs-01"
    for bad in ("", "abc", "12 34", "1;rm"):
        with pytest.raises(ConfigError):
            pbs.check_job_id(bad)
    with pytest.raises(ConfigError):
        slurm.check_job_id("x12")
