"""The paced stub engine (``--engine fast``): exact schedule, same bytes as the asyncio engine,
HTTP/1.1 keep-alive with pipelined and split requests, and honest ``/stub/stats``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import servemark
from servemark.store.rundir import load_records
from servemark.stub.process import SRC

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the fast engine reads kernel stamps")


def stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url + "/stub/stats", timeout=5) as resp:  # noqa: S310
        return dict(json.loads(resp.read()))


def post(path: str, doc: dict) -> bytes:
    body = json.dumps(doc).encode()
    return (b"POST %s HTTP/1.1\r\nHost: stub\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))


def read_responses(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    """Everything up to the end of ``n`` chunked responses."""
    sock.settimeout(timeout)
    data = b""
    while data.count(b"\r\n0\r\n\r\n") < n:
        more = sock.recv(1 << 16)
        if not more:
            break
        data += more
    return data


def test_bench_against_fast_stub_is_exact(stub_server, tmp_path: Path) -> None:
    """Known truth: first chunk 50 ms after the request reached the stub, then one every 10 ms."""
    stub = stub_server("--engine", "fast", "--ttft", "0.05", "--itl", "0.01")
    result = servemark.bench(servemark.BenchConfig(
        base_url=stub.base_url, concurrency=[16], num_requests=48, input_len=32, output_len=16,
        output_dir=tmp_path / "run", read_timeout_s=5.0))
    p = result.points[0]
    assert p.completed == 48 and p.failed == 0
    recs = load_records(tmp_path / "run").records
    assert len(recs) == 48
    for r in recs:
        assert r.ok and len(r.chunk_times_s) == 16
        assert r.token_source == "usage" and r.output_tokens == 16 and r.input_tokens == 32
        assert r.chunk_times_s[0] >= 0.0499  # never early: the schedule starts after the send
    assert p.ttft_s.mean == pytest.approx(0.050, abs=0.005)
    assert p.itl_s.mean == pytest.approx(0.010, abs=0.0005)
    st = stats(stub.base_url)
    assert st["completions"] == st["requests"] == 48  # the pre-warm reused connections: GETs
    assert st["output_tokens"] == 48 * 16
    assert st["paced_first_chunks"] == 48 and st["paced_next_chunks"] == 48 * 15
    for key in ("first", "next"):
        mean, worst = st[f"mean_{key}_chunk_late_s"], st[f"max_{key}_chunk_late_s"]
        assert 0 <= mean <= worst < 0.05
    assert 0 <= st["mean_parse_delay_s"] <= st["max_parse_delay_s"] < 0.05
    assert st["mean_next_chunk_gap_s"] == pytest.approx(0.010, abs=0.0005)


def test_same_bytes_as_asyncio_engine_keep_alive_pipelined_split(stub_server) -> None:
    """Three requests on one connection: two pipelined in one write, the third split mid-body;
    the fast engine answers them in order with the asyncio engine's exact bytes."""
    args = ("--ttft", "0.01", "--itl", "0.002", "--tokens-per-chunk", "3")
    fast, slow = stub_server("--engine", "fast", *args), stub_server(*args)
    reqs = [post("/v1/completions", {"model": "stub", "prompt": "hello", "max_tokens": 7,
                                     "stream": True, "stream_options": {"include_usage": True}}),
            post("/v1/chat/completions", {"model": "stub", "max_tokens": 4, "stream": True,
                                          "messages": [{"role": "user", "content": "héllo"}]}),
            post("/v1/completions", {"model": "stub", "prompt": "x" * 300, "max_tokens": 2,
                                     "stream": True})]
    wires = []
    for stub in (fast, slow):
        with socket.create_connection(("127.0.0.1", stub.port)) as sock:
            sock.sendall(reqs[0] + reqs[1] + reqs[2][:-40])
            time.sleep(0.05)
            sock.sendall(reqs[2][-40:])
            wires.append(read_responses(sock, 3))
    assert wires[0] == wires[1]
    assert wires[0].count(b"HTTP/1.1 200 OK") == 3 and wires[0].count(b"data: [DONE]") == 3
    assert b'"usage":{"prompt_tokens":5,"completion_tokens":7' in wires[0]
    st = stats(fast.base_url)
    assert st["requests"] == st["completions"] == 3
    # the pipelined second and third started after the one before them: nothing was early
    assert st["mean_first_chunk_late_s"] >= 0


def test_routes_errors_and_non_streaming(stub_server) -> None:
    stub = stub_server("--engine", "fast", "--ttft", "0.03", "--itl", "0.005")
    with urllib.request.urlopen(stub.base_url + "/v1/models", timeout=5) as resp:  # noqa: S310
        assert json.loads(resp.read())["data"][0]["id"] == "stub"
    for path in ("/health", "/ping", "/version"):
        with urllib.request.urlopen(stub.base_url + path, timeout=5) as resp:  # noqa: S310
            assert resp.status == 200
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(stub.base_url + "/nope", timeout=5)  # noqa: S310
    assert err.value.code == 404
    with socket.create_connection(("127.0.0.1", stub.port)) as sock:
        sock.sendall(post("/v1/completions", {"model": "llama", "prompt": "x", "stream": True}))
        sock.settimeout(5)
        wrong = sock.recv(1 << 16)
        assert wrong.startswith(b"HTTP/1.1 404") and b"The model `llama` does not exist." in wrong
        t0 = time.perf_counter()  # the same connection still serves: a non-streamed request
        sock.sendall(post("/v1/chat/completions", {"model": "stub", "max_tokens": 5,
                                                   "messages": [{"role": "user", "content": "hi"}]}))
        whole = b""
        while b"}}" not in whole[-4:]:
            whole += sock.recv(1 << 16)
        elapsed = time.perf_counter() - t0
    head, body = whole.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: %d" % len(body) in head
    doc = json.loads(body)
    assert doc["choices"][0]["message"]["content"] == "tok " * 5
    assert doc["usage"] == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
    assert elapsed >= 0.03 + 4 * 0.005
    st = stats(stub.base_url)
    assert st["requests"] == 2 and st["completions"] == 1  # the 404 is a request, not a completion
    assert st["paced_first_chunks"] == 0  # non-streamed responses are not paced chunks


def test_client_that_goes_away_ends_its_stream(stub_server) -> None:
    stub = stub_server("--engine", "fast", "--ttft", "0.01", "--itl", "0.01")
    with socket.create_connection(("127.0.0.1", stub.port)) as sock:
        sock.sendall(post("/v1/completions", {"model": "stub", "prompt": "x", "max_tokens": 50,
                                              "stream": True}))
        sock.settimeout(5)
        assert sock.recv(1 << 16).startswith(b"HTTP/1.1 200")
    time.sleep(0.1)
    with socket.create_connection(("127.0.0.1", stub.port)) as sock:
        sock.sendall(post("/v1/completions", {"model": "stub", "prompt": "x", "max_tokens": 2,
                                              "stream": True}))
        assert read_responses(sock, 1).count(b"data: [DONE]") == 1
    st = stats(stub.base_url)
    assert st["requests"] == 2 and st["completions"] == 1
    assert st["paced_next_chunks"] < 30  # the dropped stream (49 later chunks) stopped early


def test_fast_engine_refuses_faults() -> None:
    proc = subprocess.run([sys.executable, "-m", "servemark.stub", "--engine", "fast", "--fault",
                           "drop"], capture_output=True, text=True, timeout=30,
                          env={"PYTHONPATH": str(SRC)})
    assert proc.returncode == 2
    assert "--fault needs the asyncio engine" in proc.stderr
