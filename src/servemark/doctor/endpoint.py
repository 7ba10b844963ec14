"""Probe a running endpoint for doctor (I/O): health, served models, /version, and one short
streamed request that must come back with ``usage`` — the same client code ``bench`` uses."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from servemark.client.openai import GenerationOptions, RequestSpec
from servemark.client.probe import EndpointInfo, probe
from servemark.client.request import Target, execute
from servemark.client.transport import AiohttpTransport, HttpRequest, Timeouts, Transport
from servemark.errors import EndpointError, ModelNotFound
from servemark.metrics.record import RequestRecord


@dataclass
class EndpointFacts:
    base_url: str
    health_status: int | None = None  # HTTP status of GET /health; None: no answer
    error: EndpointError | None = None  # from probing /v1/models
    info: EndpointInfo | None = None
    model: str | None = None  # the model the stream test used
    stream: RequestRecord | None = None
    stream_api: str | None = None
    notes: list[str] = field(default_factory=list)


async def _status(transport: Transport, url: str, headers: dict[str, str]) -> int | None:
    try:
        async with transport.open(HttpRequest("GET", url, None, headers)) as resp:
            await resp.read()
            return resp.status
    except Exception:  # any failure here means "no usable answer"; the models probe explains
        return None


async def _served_name(transport: Transport, base: str, headers: dict[str, str], model: str | None,
                       served: list[str]) -> str | None:
    """The served name for ``model``: itself, or the model whose ``root`` (vLLM lists the path it
    loaded) is that directory, so ``--model DIR`` works with ``--served-model-name``."""
    if model is None:
        return served[0] if len(served) == 1 else None
    if model in served:
        return model
    try:
        async with transport.open(HttpRequest("GET", base + "/v1/models", None, headers)) as resp:
            doc = orjson.loads(await resp.read())
        want = Path(model).expanduser()
        for m in doc.get("data", []):
            root = m.get("root")
            if root and (root == model or Path(root) == want or (want.exists() and Path(root).resolve() == want.resolve())):
                return str(m["id"])
    except Exception:  # an odd listing only means no match
        return None
    return None


async def aprobe_endpoint(base_url: str, model: str | None = None, api_key: str | None = None,
                          timeout_s: float = 10.0, transport: Transport | None = None) -> EndpointFacts:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    net = transport or AiohttpTransport(4, Timeouts(connect=timeout_s, read=timeout_s * 6, total=timeout_s * 12))
    base = base_url.rstrip("/")
    facts = EndpointFacts(base)
    try:
        facts.health_status = await _status(net, base + "/health", headers)
        try:
            facts.info = await probe(net, base, None, headers)
        except EndpointError as exc:
            facts.error = exc
            return facts
        chosen = await _served_name(net, base, headers, model, facts.info.models)
        if model is not None and chosen is None:
            facts.error = ModelNotFound(
                f"model {model!r} is not served at {base} (it serves: {', '.join(facts.info.models)})",
                "pass the served name with --model, or start the server with that model")
            return facts
        if chosen is None:
            facts.notes.append("several models served; pass --model to test streaming on one")
            return facts
        facts.model = chosen
        opts = GenerationOptions(model=chosen, stream=True, ignore_eos=True, temperature=0.0)
        target = Target(base, tuple(headers.items()))
        for api in ("completions", "chat"):
            spec = RequestSpec(0, api, prompt="Hello" if api == "completions" else None,
                               messages=({"role": "user", "content": "Hello"},) if api == "chat" else None,
                               output_len=4)
            rec = await execute(net, target, spec, opts, t0=time.perf_counter())
            facts.stream, facts.stream_api = rec, api
            if rec.status != 404:  # try chat only where completions does not exist
                break
        return facts
    finally:
        if transport is None:
            await net.close()


def probe_endpoint(base_url: str, model: str | None = None, api_key: str | None = None,
                   timeout_s: float = 10.0) -> EndpointFacts:
    return asyncio.run(aprobe_endpoint(base_url, model, api_key, timeout_s))
