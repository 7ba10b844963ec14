"""Before a run: is there an OpenAI-compatible server at the URL, and does it serve the model?

Turns every way this can go wrong into one EndpointError with a message and a fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import aiohttp
import orjson

from servemark.client.transport import HttpRequest, Transport
from servemark.errors import EndpointUnreachable, ModelNotFound, NotOpenAICompatible


@dataclass
class EndpointInfo:
    base_url: str
    models: list[str] = field(default_factory=list)
    server_version: str | None = None
    max_model_len: int | None = None


async def _get(transport: Transport, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    async with transport.open(HttpRequest("GET", url, None, headers)) as resp:
        return resp.status, await resp.read()


async def probe(transport: Transport, base_url: str, model: str | None,
                headers: dict[str, str] | None = None) -> EndpointInfo:
    """List the served models and read the server version; check ``model`` is served."""
    headers = dict(headers or {})
    base = base_url.rstrip("/")
    info = EndpointInfo(base_url=base)
    try:
        status, body = await _get(transport, base + "/v1/models", headers)
    except (aiohttp.ClientConnectionError, OSError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        os_error = getattr(exc, "os_error", exc)  # aiohttp wraps the OSError
        if isinstance(os_error, OSError) and os_error.errno:
            reason = os.strerror(os_error.errno).lower()
        elif isinstance(exc, TimeoutError):
            reason = "timed out"
        raise EndpointUnreachable(
            f"cannot reach {base}: {reason}",
            "check that the server is running and that --base-url (scheme, host, port) is right",
        ) from exc
    if status in (401, 403):
        raise NotOpenAICompatible(
            f"{base}/v1/models refused us (HTTP {status})",
            "pass the server's key with --api-key or OPENAI_API_KEY",
        )
    if status != 200:
        raise NotOpenAICompatible(
            f"{base} does not look like an OpenAI-compatible server (GET /v1/models gave HTTP {status})",
            "point --base-url at the server root (without /v1), e.g. http://localhost:8000",
        )
    try:
        doc = orjson.loads(body)
        info.models = [str(m["id"]) for m in doc["data"]]
        for m in doc["data"]:
            if model is None or m.get("id") == model:
                if isinstance(m.get("max_model_len"), int):
                    info.max_model_len = m["max_model_len"]
                break
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise NotOpenAICompatible(
            f"{base}/v1/models did not return an OpenAI model list",
            "point --base-url at an OpenAI-compatible server root, e.g. http://localhost:8000",
        ) from exc
    if model is not None and info.models and model not in info.models:
        raise ModelNotFound(
            f"model {model!r} is not served at {base} (it serves: {', '.join(info.models)})",
            "pass one of those names with --model",
        )
    try:
        status, body = await _get(transport, base + "/version", headers)
        if status == 200:
            info.server_version = str(orjson.loads(body).get("version"))
    except (aiohttp.ClientError, OSError, TimeoutError, orjson.JSONDecodeError, AttributeError):
        pass
    return info
