"""Doctor's verdicts from plain facts, and the child-process probe's failure modes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from servemark.doctor import checks as C
from servemark.doctor import probes as P
from servemark.doctor.run import DoctorOptions, fit_checks
from servemark.errors import ConfigError
from servemark.plan.catalog import resolve_model

NO_SMI = P.Smi(False)


def test_vllm_missing_is_an_error_unless_only_an_endpoint_is_checked() -> None:
    missing = P.ProbeResult("missing")
    c = C.check_vllm(missing, needed=True, accelerators=0)
    assert c.status == "error" and "pip install vllm" in (c.fix or "")
    assert C.check_vllm(missing, needed=False, accelerators=0).status == "warning"


@pytest.mark.parametrize(("platform", "gpus", "status", "needle"), [
    ("CPU", 0, "ok", "CPU build"), ("CUDA", 2, "ok", "CUDA build"), ("ROCM", 1, "ok", "ROCm build"),
    ("CPU", 4, "warning", "4 GPU(s) are visible"), ("CUDA", 0, "warning", "no GPU is visible")])
def test_vllm_build_against_the_hardware(platform: str, gpus: int, status: str, needle: str) -> None:
    probe = P.ProbeResult("ok", {"version": "0.32.0", "platform": platform, "dist": "vllm 0.32.0"})
    c = C.check_vllm(probe, needed=True, accelerators=gpus)
    assert c.status == status and needle in c.detail


def test_child_probe_timeout_and_crash_are_facts_not_our_crash() -> None:
    slow = P.run_probe("import time; time.sleep(30)", timeout_s=1.0)
    assert slow.state == "timeout"
    assert C.check_vllm(slow, True, 0).status == "error"
    crash = P.run_probe("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", timeout_s=20)
    assert crash.state == "crashed" and "signal 11" in (crash.error or "")
    assert "crashed" in C.check_vllm(crash, True, 0).detail
    broken = P.run_probe("raise SystemExit(3)", timeout_s=20)
    assert broken.state == "crashed" and "exit code 3" in (broken.error or "")


def test_accelerators_from_torch_or_nvidia_smi() -> None:
    torch = P.ProbeResult("ok", {"devices": [{"name": "NVIDIA H100 80GB HBM3", "total_bytes": 80 * 2**30}] * 2})
    c = C.check_accelerators(torch, NO_SMI)
    assert c.status == "ok" and c.detail.startswith("2 x NVIDIA H100 80GB HBM3 (80.0 GiB each)")
    smi = P.Smi(True, [P.SmiGpu("NVIDIA A100-SXM4-40GB", 40 * 2**30, 2**30)])
    assert C.devices_of(P.ProbeResult("missing"), smi) == [("NVIDIA A100-SXM4-40GB", 40 * 2**30)]
    broken = C.check_accelerators(P.ProbeResult("missing"), P.Smi(True, error="Failed to initialize NVML"))
    assert broken.status == "warning" and "NVML" in broken.detail
    assert "CPU" in C.check_accelerators(P.ProbeResult("missing"), NO_SMI).detail


def test_uncached_model_offline_is_an_error_online_a_warning(tmp_path: Path) -> None:
    files = P.probe_model_files("meta-llama/Llama-3.1-8B-Instruct", tmp_path)
    assert files.kind == "hub" and not files.has_config
    disk = P.Disk(tmp_path, 100 * 2**30, True)
    off = C.check_model_files("meta-llama/Llama-3.1-8B-Instruct", files, True, 16e9, disk)
    assert off.status == "error" and "HF_HUB_OFFLINE" in off.detail
    assert "hf download meta-llama/Llama-3.1-8B-Instruct" in (off.fix or "")
    on = C.check_model_files("meta-llama/Llama-3.1-8B-Instruct", files, False, 16e9, disk)
    assert on.status == "warning" and "16.0 GB" in on.detail
    full = C.check_model_files("meta-llama/Llama-3.1-8B-Instruct", files, False, 16e9, P.Disk(tmp_path, 2**30, True))
    assert full.status == "error" and "only 1.0 GiB free" in full.detail


def test_cached_snapshot_is_found(tmp_path: Path) -> None:
    snap = tmp_path / "models--org--m" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    assert not P.probe_model_files("org/m", tmp_path).has_weights
    (snap / "model.safetensors").write_bytes(b"x")
    files = P.probe_model_files("org/m", tmp_path)
    assert files.has_config and files.has_weights and files.path == snap
    assert C.check_model_files("org/m", files, True, None, P.Disk(tmp_path, 0, True)).status == "ok"


def test_token_is_reported_by_source_never_by_value(tmp_path: Path) -> None:
    env = {"HF_TOKEN": "hf_SECRET123", "HF_HOME": str(tmp_path)}
    src = P.token_source(env)
    assert src == "$HF_TOKEN"
    assert "hf_SECRET123" not in str(C.check_token(src, None).to_dict())
    (tmp_path / "token").write_text("hf_FILESECRET\n")
    from_file = P.token_source({"HF_HOME": str(tmp_path)})
    assert from_file == str(tmp_path / "token")
    assert "FILESECRET" not in str(C.check_token(from_file, None).to_dict())
    assert P.token_source({"HF_HOME": str(tmp_path / "none")}) is None


def test_hf_cache_location_follows_the_environment(tmp_path: Path) -> None:
    assert P.hf_cache_dir({"HF_HUB_CACHE": str(tmp_path)}) == tmp_path
    assert P.hf_cache_dir({"HF_HOME": str(tmp_path)}) == tmp_path / "hub"
    assert P.hf_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "huggingface" / "hub"


def test_occupied_port_warns_with_a_free_alternative() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not P.port_free(port, "127.0.0.1")
        alt = P.next_free_port(port)
        c = C.check_port(port, False, alt)
        assert c.status == "warning" and f"--port {alt}" in (c.fix or "")
    assert P.port_free(port, "127.0.0.1")


def test_unusable_slurm_is_a_warning() -> None:
    checks = C.check_launchers({"slurm": (["sbatch"], None, "sbatch: fatal: Could not establish a configuration source"),
                                "pbs": ([], None, None), "ray": (["/x/ray"], "ray 2.6", None)})
    assert [c.status for c in checks] == ["warning", "ok", "ok"]
    assert "SLURM_CONF" in (checks[0].fix or "") and "not found" in checks[1].detail


def test_fit_on_given_gpus_suggests_a_layout_that_fits() -> None:
    host = P.Host(2, 2, 16 * 2**30, 8 * 2**30)
    arch = resolve_model("Llama-3.1-70B")
    checks = fit_checks(arch, DoctorOptions(model="x", gpu="H100"), [], host)
    assert checks[0].status == "error" and "TP4 x PP1" in (checks[0].fix or "")
    ok = fit_checks(arch, DoctorOptions(model="x", gpu="H100", num_gpus=4), [], host)
    assert [c.status for c in ok] == ["ok", "ok"] and "TP4 x PP1 H100-SXM" in ok[1].detail
    with pytest.raises(ConfigError):
        fit_checks(arch, DoctorOptions(model="x", gpu="H100", num_gpus=4, tp=3), [], host)


def test_detected_gpus_are_used_and_counted() -> None:
    host = P.Host(2, 2, 16 * 2**30, 8 * 2**30)
    arch = resolve_model("Llama-3.1-8B")
    devices = [("NVIDIA H100 80GB HBM3", int(79.1 * 2**30))]
    checks = fit_checks(arch, DoctorOptions(model="x", tp=2), devices, host)
    assert any(c.name == "gpu count" and c.status == "error" for c in checks)
    assert fit_checks(arch, DoctorOptions(model="x"), devices, host)[0].status == "ok"


def test_cpu_fit_follows_vllms_cpu_reservation(monkeypatch: pytest.MonkeyPatch) -> None:
    arch = resolve_model("Llama-3.2-1B")  # 2.5 GB of bf16 weights
    small = P.Host(2, 2, 16 * 2**30, 10 * 2**30)
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    # default: vLLM reserves 0.9 x 16 GiB = 14.4 GiB > 10 GiB available → it refuses to start
    checks = fit_checks(arch, DoctorOptions(model="x"), [], small)
    assert checks[0].status == "error" and "VLLM_CPU_KVCACHE_SPACE" in (checks[0].fix or "")
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    # 1 GiB of KV: 2 x 16 layers x 8 KV heads x 64 x 2 bytes = 32 KiB per token → 32,768 tokens
    checks = fit_checks(arch, DoctorOptions(model="x", max_model_len=65536), [], small)
    assert checks[0].status == "ok"
    assert checks[1].status == "error" and "32,768" in checks[1].detail
    assert "--max-model-len 32768" in (checks[1].fix or "")


@pytest.mark.parametrize(("args", "needle"), [
    (["--gpu", "no-such-gpu"], "unknown GPU 'no-such-gpu'"),
    (["--num-gpus", "4", "--tp", "3"], "--num-gpus 4 is not --tp 3 x --pp 1"),
    (["--num-gpus", "3", "--pp", "2"], "not a multiple of --pp 2")])
def test_bad_doctor_flags_fail_fast_with_one_line(args: list[str], needle: str) -> None:
    from typer.testing import CliRunner

    from servemark.cli.main import app

    r = CliRunner().invoke(app, ["doctor", *args])
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output
