"""servemark's client against other load generators, each on one client core, same workload.

One command: ``python benchmarks/loadgen_vs_peers.py``. It installs the peers (guidellm, aiperf,
inference-perf, sglang's bench_serving) in their own virtual environments under ``--cache-dir``
(once; a peer that does not install is reported with the reason), uses vLLM's ``bench serve``
from the Python that has vLLM (``--vllm-python``), starts servemark's stub in its own process
pinned to the last core, and runs every client pinned to core 0: closed loop at each
``--concurrency``, 128-token prompts, 256 output tokens, one token per SSE chunk.

Throughput is counted at the stub from request arrivals past the initial burst of c (closed
loop: a request is sent when one finished), so a tool's start-up, warm-up request and drain do
not count; client CPU is the CPU time of the client's whole process tree over that same window
(sampled with psutil every 0.1 s). Then the same with the
stub pacing chunks (``--paced-ttft`` / ``--paced-itl``): each tool's own mean TTFT and ITL minus the
truth. The tiny demo model's directory is every peer's tokenizer (no hub access needed); the stub
serves that model name. Prints figures; it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from servemark.stub.process import StubProcess  # noqa: E402

MODEL = "tiny"
INPUT_LEN, OUTPUT_LEN = 128, 256
PEERS = ("servemark", "vllm", "sglang", "inference-perf", "aiperf", "guidellm")
# pip requirements per peer venv (sglang: only what bench_serving imports, not the server)
INSTALL = {
    "guidellm": [["guidellm"]],
    "aiperf": [["aiperf"]],
    "inference-perf": [["inference-perf"]],
    "sglang": [["--no-deps", "sglang"],
               ["aiohttp", "numpy", "requests", "tqdm", "transformers", "pillow", "pybase64",
                # what `import sglang.bench_serving` pulls in through sglang.srt (found by trying)
                "orjson", "psutil", "torch", "torchvision", "starlette", "msgspec", "pyzmq",
                "IPython", "datasets", "apache-tvm-ffi", "sentencepiece", "compressed-tensors",
                "gguf"]],
}
NEEDS_PYTHON = {"inference-perf": (3, 12)}  # its releases require Python >= 3.12


def _base_python(peer: str) -> str | None:
    """A Python new enough for the peer: this one, or python3.X on PATH."""
    need = NEEDS_PYTHON.get(peer)
    if need is None or sys.version_info[:2] >= need:
        return sys.executable
    for minor in range(need[1], 16):
        name = f"python3.{minor}"
        candidates = [shutil.which(name), *map(str, Path.home().glob(f".pyenv/versions/3.{minor}*/bin/{name}"))]
        for exe in filter(None, candidates):  # a pyenv shim may exist yet not run
            if subprocess.run([exe, "-c", "pass"], capture_output=True).returncode == 0:
                return exe
    return None


@dataclass
class Job:
    """One client run: the command, where its own results land, how to read them."""

    argv: list[str]
    out_dir: Path
    parse: Callable[[Path], tuple[float | None, float | None]]  # -> (mean TTFT s, mean ITL s)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    tool: str
    concurrency: int
    paced: bool
    requests_per_s: float | None = None
    tokens_per_s: float | None = None
    client_cpu_s: float | None = None
    window_s: float | None = None
    ttft_s: float | None = None
    itl_s: float | None = None
    error: str | None = None

    @property
    def tokens_per_cpu_s(self) -> float | None:
        if self.tokens_per_s is None or not self.client_cpu_s or not self.window_s:
            return None
        return self.tokens_per_s * self.window_s / self.client_cpu_s


# ---------------------------------------------------------------- installing peers


def install(peer: str, cache: Path) -> tuple[Path | None, str | None]:
    """The peer's venv python (installed once), or None and why not."""
    venv = cache / peer
    marker = venv / ".installed"
    py = venv / "bin" / "python"
    if marker.exists():
        return py, None
    log = cache / f"{peer}.install.log"
    if not py.exists():
        base = _base_python(peer)
        if base is None:
            return None, f"needs Python >= {'.'.join(map(str, NEEDS_PYTHON[peer]))}, none on PATH"
        subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    with open(log, "w") as fh:
        for reqs in INSTALL[peer]:
            rc = subprocess.run([str(py), "-m", "pip", "install", "-q", *reqs], stdout=fh,
                                stderr=subprocess.STDOUT).returncode
            if rc:
                tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
                return None, f"pip install {' '.join(reqs)} failed: {tail[0][:200]} (see {log})"
    marker.touch()
    return py, None


# ---------------------------------------------------------------- each tool's command and output


def _json_files(d: Path) -> list[Any]:
    docs = []
    for p in sorted(d.rglob("*.json*")):
        try:
            text = p.read_text()
            if p.suffix == ".jsonl":
                docs.extend(json.loads(line) for line in text.splitlines() if line.strip())
            else:
                docs.append(json.loads(text))
        except (OSError, ValueError):
            continue
    return docs


def _mean(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        for k in ("mean", "avg"):
            if isinstance(value.get(k), int | float):
                return float(value[k])
        for k in ("successful", "successes"):
            if k in value:
                return _mean(value[k])
    return None


def _find_mean(doc: Any, keys: tuple[str, ...]) -> float | None:
    """The first mean found under any of ``keys`` anywhere in a JSON document."""
    if isinstance(doc, dict):
        for k in keys:
            if k in doc and (m := _mean(doc[k])) is not None:
                return m
        children = list(doc.values())
    elif isinstance(doc, list):
        children = doc
    else:
        return None
    for v in children:
        if (m := _find_mean(v, keys)) is not None:
            return m
    return None


def _parser(ttft_keys: tuple[str, ...], itl_keys: tuple[str, ...], scale: float
            ) -> Callable[[Path], tuple[float | None, float | None]]:
    def parse(d: Path) -> tuple[float | None, float | None]:
        docs = _json_files(d)
        ttft = _find_mean(docs, ttft_keys)
        itl = _find_mean(docs, itl_keys)
        return (None if ttft is None else ttft * scale, None if itl is None else itl * scale)
    return parse


def _sharegpt(out: Path, n: int) -> Path:
    """A local ShareGPT-shaped file: sglang's random dataset samples its text from one (and would
    download the real one from the hub otherwise)."""
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "servers", "stream", "tokens"]
    convs = [{"conversations": [
        {"from": "human", "value": " ".join(words[(i + j) % len(words)] for j in range(200))},
        {"from": "gpt", "value": " ".join(words[(i * 3 + j) % len(words)] for j in range(200))}]}
        for i in range(n)]  # it uses at most one conversation per request
    path = out / "sharegpt.json"
    path.write_text(json.dumps(convs))
    return path


def job(tool: str, py: Path, base_url: str, tokenizer: Path, c: int, n: int, out: Path) -> Job:
    out.mkdir(parents=True, exist_ok=True)
    if tool == "servemark":
        argv = [str(py), "-m", "servemark", "bench", "--base-url", base_url, "--model", MODEL,
                "--concurrency", str(c), "--num-requests", str(n), "--input-len", str(INPUT_LEN),
                "--output-len", str(OUTPUT_LEN), "--output-dir", str(out / "run"),
                "--no-server-metrics"]

        def parse(d: Path) -> tuple[float | None, float | None]:
            doc = json.loads((d / "run" / "summary.json").read_text())
            p = doc["points"][0]
            return p["ttft_s"]["mean"], p["itl_s"]["mean"]
        return Job(argv, out, parse, {"PYTHONPATH": str(ROOT / "src")})
    if tool == "vllm":
        code = ("import sys, argparse; from vllm.benchmarks.serve import add_cli_args, main; "
                "p = argparse.ArgumentParser(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))")
        argv = [str(py), "-c", code, "--backend", "openai", "--base-url", base_url,
                "--endpoint", "/v1/completions", "--model", MODEL, "--tokenizer", str(tokenizer),
                "--dataset-name", "random", "--random-input-len", str(INPUT_LEN),
                "--random-output-len", str(OUTPUT_LEN), "--num-prompts", str(n),
                "--max-concurrency", str(c), "--request-rate", "inf", "--ignore-eos",
                "--save-result", "--result-dir", str(out), "--result-filename", "vllm.json",
                "--disable-tqdm"]
        return Job(argv, out, _parser(("mean_ttft_ms",), ("mean_itl_ms",), 1e-3),
                   {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"})
    if tool == "sglang":
        argv = [str(py), "-m", "sglang.bench_serving", "--backend", "vllm", "--base-url", base_url,
                "--model", MODEL, "--tokenizer", str(tokenizer), "--dataset-name", "random",
                "--random-input-len", str(INPUT_LEN), "--random-output-len", str(OUTPUT_LEN),
                "--random-range-ratio", "1", "--num-prompts", str(n), "--max-concurrency", str(c),
                "--output-file", str(out / "sglang.jsonl"), "--disable-tqdm",
                "--dataset-path", str(_sharegpt(out, n))]
        return Job(argv, out, _parser(("mean_ttft_ms",), ("mean_itl_ms",), 1e-3),
                   {"HF_HUB_OFFLINE": "1"})
    if tool == "aiperf":
        argv = [str(py.parent / "aiperf"), "profile", "--model", MODEL, "--url", base_url,
                "--endpoint-type", "completions", "--streaming", "--concurrency", str(c),
                "--request-count", str(n), "--synthetic-input-tokens-mean", str(INPUT_LEN),
                "--synthetic-input-tokens-stddev", "0", "--output-tokens-mean", str(OUTPUT_LEN),
                "--output-tokens-stddev", "0", "--extra-inputs", "ignore_eos:true",
                "--tokenizer", str(tokenizer), "--artifact-dir", str(out), "--ui-type", "none"]
        # no HF_HUB_OFFLINE: aiperf's offline mode looks a local path up in the hub cache
        return Job(argv, out, _parser(("time_to_first_token",), ("inter_token_latency",), 1e-3))
    if tool == "guidellm":  # 0.8's `run` with kind=... options
        argv = [str(py.parent / "guidellm"), "run",
                "--backend", f"kind=openai_http,target={base_url},model={MODEL},"
                             "request_format=/v1/completions",
                "--profile", f"kind=concurrent,streams={c}",
                "--constraint", f"kind=max_requests,count={n}",
                "--tokenizer", f"kind=huggingface_auto,model={tokenizer}",
                "--data", f"kind=synthetic_text,prompt_tokens={INPUT_LEN},output_tokens={OUTPUT_LEN}",
                "--output", f"kind=json,path={out / 'guidellm.json'}",
                "--disable-console-interactive"]
        return Job(argv, out, _parser(("time_to_first_token_ms",), ("inter_token_latency_ms",),
                                      1e-3), {"HF_HUB_OFFLINE": "1"})
    if tool == "inference-perf":
        cfg = {
            "load": {"type": "concurrent", "stages": [{"num_requests": n, "concurrency_level": c}],
                     "worker_max_concurrency": c},
            "api": {"type": "completion", "streaming": True},
            "server": {"type": "vllm", "model_name": MODEL, "base_url": base_url,
                       "ignore_eos": True},
            "tokenizer": {"pretrained_model_name_or_path": str(tokenizer)},
            "data": {"type": "random", "input_distribution": {"mean": INPUT_LEN, "std_dev": 0,
                                                              "min": INPUT_LEN, "max": INPUT_LEN},
                     "output_distribution": {"mean": OUTPUT_LEN, "std_dev": 0,
                                             "min": OUTPUT_LEN, "max": OUTPUT_LEN}},
            "report": {"request_lifecycle": {"summary": True, "per_stage": False,
                                             "per_request": False}},
            "storage": {"local_storage": {"path": str(out)}},
        }
        (out / "config.yml").write_text(json.dumps(cfg))  # JSON is YAML
        argv = [str(py.parent / "inference-perf"), "--config_file", str(out / "config.yml")]
        return Job(argv, out, _parser(("time_to_first_token",), ("inter_token_latency",), 1.0),
                   {"HF_HUB_OFFLINE": "1"})
    raise ValueError(f"unknown tool {tool!r}")


# ---------------------------------------------------------------- running one job


class TreeCPU:
    """Samples the CPU seconds of a process and all its descendants (exited ones included)."""

    def __init__(self, pid: int, period_s: float = 0.1) -> None:
        self.root = psutil.Process(pid)
        self.period_s = period_s
        self.seen: dict[int, float] = {}
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            procs = []
        for p in procs:
            try:
                t = p.cpu_times()
                self.seen[p.pid] = max(self.seen.get(p.pid, 0.0), t.user + t.system)
            except psutil.Error:
                continue
        self.samples.append((time.perf_counter(), sum(self.seen.values())))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.period_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, t: float) -> float:
        """CPU seconds used by time ``t`` (linear between samples)."""
        prev = (self.samples[0][0], 0.0) if self.samples else (t, 0.0)
        for s in self.samples:
            if s[0] >= t:
                span = s[0] - prev[0]
                return prev[1] + (s[1] - prev[1]) * ((t - prev[0]) / span if span > 0 else 1.0)
            prev = s
        return prev[1]


def stub_stats(base_url: str, path: str = "/stub/stats") -> dict[str, Any]:
    with urllib.request.urlopen(base_url + path, timeout=10) as resp:  # noqa: S310
        return json.loads(resp.read())


def run_one(tool: str, py: Path, c: int, n: int, paced: tuple[float, float] | None,
            tokenizer: Path, stub_cpu: int | None, client_cpu: int | None, timeout_s: float,
            tmp: Path) -> Result:
    res = Result(tool, c, paced is not None)
    args = ["--model", MODEL]
    if paced:
        args += ["--ttft", str(paced[0]), "--itl", str(paced[1])]
    # paced: the fast engine (exact schedule from the kernel arrival at any concurrency)
    with StubProcess(*args, cpu=stub_cpu, engine="fast" if paced else None) as stub:
        j = job(tool, py, stub.base_url, tokenizer, c, n, tmp / f"{tool}-c{c}-{'paced' if paced else 'unpaced'}")
        argv = j.argv
        if client_cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(client_cpu), *argv]
        env = {**os.environ, **j.env}
        with open(j.out_dir / "client.log", "w") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    cwd=j.out_dir)
            cpu = TreeCPU(proc.pid)
            try:
                rc = proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = -9
            finally:
                cpu.stop()
        st = stub_stats(stub.base_url, "/stub/times")
    arrivals, tokens = st["requests"], st["tokens"]
    # Closed loop: each request after the first c is sent when one finished at the client, so
    # the arrival rate past the initial burst is the client's completion rate. (The stub's own
    # completions are not: it writes a whole zero-delay response into the socket buffer at once.)
    # Left out: a tool's warm-up request and start-up gap (vLLM and sglang send one test prompt
    # first), the initial burst of c, and the drain.
    # Paced: a request lasts TTFT + 255 gaps whatever the client does, so the window runs from
    # the first of the last n requests (after any warm-up) to the last completion.
    lo, hi = min(c + 2, len(arrivals) // 2), len(arrivals) - 1
    if rc != 0 or hi - lo < 10 or arrivals[hi] <= arrivals[lo] or not tokens:
        tail = (j.out_dir / "client.log").read_text(errors="replace").strip().splitlines()[-3:]
        res.error = f"exit {rc}, {len(tokens)} completions: {' | '.join(tail)[:300]}"
        return res
    if paced:
        t0, t1 = arrivals[max(len(arrivals) - n, 0)], st["completions"][-1]
        res.window_s = t1 - t0
        res.requests_per_s = min(n, len(tokens)) / res.window_s
        res.tokens_per_s = sum(tokens[-n:]) / res.window_s
    else:
        t0, t1 = arrivals[lo], arrivals[hi]
        res.window_s = t1 - t0
        res.requests_per_s = (hi - lo) / res.window_s
        res.tokens_per_s = res.requests_per_s * sum(tokens) / len(tokens)
    res.client_cpu_s = cpu.at(t1) - cpu.at(t0)
    with contextlib.suppress(OSError, ValueError, KeyError, IndexError, TypeError):
        res.ttft_s, res.itl_s = j.parse(j.out_dir)  # best effort: each tool's own report
    return res


# ---------------------------------------------------------------- report


def _f(v: float | None, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def print_table(results: list[Result], paced: tuple[float, float] | None) -> None:
    if paced is None:
        print(f"{'tool':<15} {'c':>4} {'req/s':>8} {'tokens/s':>9} {'CPU/window':>10} "
              f"{'tok/CPU-s':>9} {'mean TTFT ms':>12}")
    else:
        print(f"{'tool':<15} {'c':>4} {'chunks/s':>9} {'CPU/window':>10} "
              f"{'TTFT err ms':>11} {'ITL err ms':>10}  (truth {paced[0] * 1e3:.0f} / "
              f"{paced[1] * 1e3:.0f} ms)")
    for r in results:
        if r.error:
            print(f"{r.tool:<15} {r.concurrency:>4}  failed: {r.error}")
            continue
        util = r.client_cpu_s / r.window_s if r.client_cpu_s is not None and r.window_s else None
        if paced is None:
            ttft_ms = None if r.ttft_s is None else r.ttft_s * 1e3
            print(f"{r.tool:<15} {r.concurrency:>4} {_f(r.requests_per_s, '8.0f')} "
                  f"{_f(r.tokens_per_s, '9,.0f')} {_f(util, '10.0%')} "
                  f"{_f(r.tokens_per_cpu_s, '9,.0f')} {_f(ttft_ms, '12.1f')}")
        else:
            terr = None if r.ttft_s is None else (r.ttft_s - paced[0]) * 1e3
            ierr = None if r.itl_s is None else (r.itl_s - paced[1]) * 1e3
            print(f"{r.tool:<15} {r.concurrency:>4} {_f(r.tokens_per_s, '9,.0f')} "
                  f"{_f(util, '10.0%')} {_f(terr, '+11.2f')} {_f(ierr, '+10.3f')}")


def ratios(results: list[Result]) -> None:
    for c in sorted({r.concurrency for r in results}):
        ok = [r for r in results if r.concurrency == c and not r.error and r.requests_per_s]
        ours = next((r for r in ok if r.tool == "servemark"), None)
        peers = [r for r in ok if r.tool != "servemark"]
        if ours is None or not peers:
            continue
        best = max(peers, key=lambda r: r.requests_per_s or 0)
        best_eff = max(peers, key=lambda r: r.tokens_per_cpu_s or 0)
        eff = (f"{(ours.tokens_per_cpu_s or 0) / best_eff.tokens_per_cpu_s:.2f}x"
               if best_eff.tokens_per_cpu_s and ours.tokens_per_cpu_s else "–")
        print(f"c={c}: servemark / best peer ({best.tool}) = "
              f"{(ours.requests_per_s or 0) / (best.requests_per_s or 1):.2f}x req/s; "
              f"tokens per client CPU-second vs best ({best_eff.tool}): {eff}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated; servemark is ours")
    ap.add_argument("--concurrency", default="64,256")
    ap.add_argument("--num-requests", type=int, default=2500, help="per unpaced run")
    ap.add_argument("--paced-requests", type=int, default=512, help="per paced run (0: skip)")
    ap.add_argument("--only-paced", action="store_true", help="skip the unpaced runs")
    ap.add_argument("--paced-concurrency", type=int, default=256)
    ap.add_argument("--paced-ttft", type=float, default=0.050)
    ap.add_argument("--paced-itl", type=float, default=0.010)
    ap.add_argument("--cache-dir", type=Path,
                    default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "servemark" / "peers")
    ap.add_argument("--vllm-python", default=sys.executable,
                    help="a Python with vLLM installed (for `bench serve`)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per client run")
    ap.add_argument("--keep", type=Path, help="keep each client's logs and reports here")
    args = ap.parse_args()
    from servemark.demo.tinymodel import build_tiny_model

    tokenizer = build_tiny_model()
    ncpu = os.cpu_count() or 1
    stub_cpu, client_cpu = (ncpu - 1, 0) if ncpu > 1 else (None, None)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    pythons: dict[str, Path] = {}
    for tool in args.peers.split(","):
        if tool == "servemark":
            pythons[tool] = Path(sys.executable)
        elif tool == "vllm":
            ok = subprocess.run([args.vllm_python, "-c", "import vllm.benchmarks.serve"],
                                capture_output=True).returncode == 0
            if ok:
                pythons[tool] = Path(args.vllm_python)
            else:
                print(f"vllm: not available in {args.vllm_python} (pass --vllm-python)")
        else:
            py, why = install(tool, args.cache_dir)
            if py is None:
                print(f"{tool}: not installed: {why}")
            else:
                pythons[tool] = py
    print(f"machine: {ncpu} CPUs, stub on CPU {stub_cpu}, clients on CPU {client_cpu}; "
          f"{INPUT_LEN} in / {OUTPUT_LEN} out tokens, 1 token per chunk, closed loop")
    with tempfile.TemporaryDirectory() as scratch:
        tmp = str(args.keep or scratch)
        if not args.only_paced:
            unpaced = [run_one(t, py, c, args.num_requests, None, tokenizer, stub_cpu, client_cpu,
                               args.timeout, Path(tmp))
                       for c in (int(x) for x in args.concurrency.split(","))
                       for t, py in pythons.items()]
            print(f"\nunpaced (zero-delay stub), {args.num_requests} requests per run")
            print_table(unpaced, None)
            ratios(unpaced)
        if args.paced_requests:
            paced = (args.paced_ttft, args.paced_itl)
            rows = [run_one(t, py, args.paced_concurrency, args.paced_requests, paced, tokenizer,
                            stub_cpu, client_cpu, args.timeout, Path(tmp))
                    for t, py in pythons.items()]
            print(f"\npaced stub, {args.paced_requests} requests per run")
            print_table(rows, paced)


if __name__ == "__main__":
    main()
