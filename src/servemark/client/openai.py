"""OpenAI-compatible request bodies and response decoding (pure: bytes in, values out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

APIS = ("completions", "chat")
PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """What to send: a prompt (completions) or messages (chat), and the lengths we asked for."""

    request_id: int
    api: str
    prompt: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    input_len: int | None = None  # as counted by the target tokenizer (template applied for chat)
    output_len: int | None = None
    conversation_id: int | None = None  # multi-turn workloads: which conversation, which turn
    turn: int | None = None


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """Options shared by every request of a run."""

    model: str
    stream: bool = True
    ignore_eos: bool = True
    temperature: float | None = 0.0
    extra_body: dict[str, Any] | None = None
    # how each request is sent (see client/request.py): request sent → first token bound,
    # and retries of 429/503 and of connection errors before any response byte
    first_token_timeout_s: float | None = None
    retries: int = 0
    retry_max_wait_s: float = 30.0


def build_body(spec: RequestSpec, opts: GenerationOptions) -> bytes:
    """The JSON body for one request."""
    body: dict[str, Any] = {"model": opts.model}
    if spec.api == "chat":
        body["messages"] = list(spec.messages or ())
    else:
        body["prompt"] = spec.prompt
    if spec.output_len is not None:
        body["max_tokens"] = spec.output_len
    if opts.temperature is not None:
        body["temperature"] = opts.temperature
    if opts.ignore_eos:
        body["ignore_eos"] = True  # vLLM/SGLang extension: outputs of exactly max_tokens
    body["stream"] = opts.stream
    if opts.stream:
        body["stream_options"] = {"include_usage": True}
    if opts.extra_body:
        body.update(opts.extra_body)
    return orjson.dumps(body)


@dataclass(slots=True)
class Delta:
    """What one SSE event carried."""

    text: str = ""
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    error: str | None = None


class MalformedResponse(ValueError):
    """A chunk or body that is not the JSON shape the OpenAI API defines."""


def _error_text(obj: dict[str, Any]) -> str | None:
    err = obj.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or err)
    if err:
        return str(err)
    if obj.get("object") == "error":
        return str(obj.get("message") or obj)
    return None


def _str_or_none(value: Any, what: str, data: bytes) -> str | None:
    if value is None or type(value) is str:
        return value
    raise MalformedResponse(f"{what} is not a string in chunk: {data[:80]!r}")


def _choice_text(choice: dict[str, Any], data: bytes = b"") -> str:
    if "text" in choice:  # completions
        return _str_or_none(choice.get("text"), "'text'", data) or ""
    delta = choice.get("delta") or choice.get("message") or {}
    if type(delta) is not dict:
        raise MalformedResponse(f"unexpected 'delta' in chunk: {data[:80]!r}")
    parts = [_str_or_none(delta.get("content"), "'content'", data) or ""]
    # reasoning models stream their thinking in a separate field; it is generated text too
    for key in ("reasoning_content", "reasoning"):
        if delta.get(key):
            parts.append(_str_or_none(delta[key], repr(key), data) or "")
    return "".join(parts)


def _usage(obj: dict[str, Any], data: bytes) -> dict[str, Any] | None:
    """``usage`` when it is an object whose token counts are integers (or absent)."""
    usage = obj.get("usage")
    if type(usage) is not dict:
        return None
    for key in ("prompt_tokens", "completion_tokens"):
        value = usage.get(key)
        if value is not None and (type(value) is not int or value < 0):
            raise MalformedResponse(f"usage.{key} is not a count in chunk: {data[:80]!r}")
    return usage


_loads = orjson.loads
_JSONError = orjson.JSONDecodeError


def parse_event(data: bytes) -> tuple[str, str | None, dict[str, Any] | None, str | None]:
    """Hot-path decoder of one SSE payload: (text, finish_reason, usage, error).

    Same semantics as :func:`decode_event`, without allocating a Delta per event."""
    try:
        obj = _loads(data)
    except _JSONError as exc:
        raise MalformedResponse(f"stream chunk is not JSON: {data[:80]!r}") from exc
    if type(obj) is not dict:
        raise MalformedResponse(f"stream chunk is not a JSON object: {data[:80]!r}")
    text = ""
    finish = None
    choices = obj.get("choices")
    if choices:
        choice = choices[0] if type(choices) is list else None
        if type(choice) is not dict:
            raise MalformedResponse(f"unexpected 'choices' in chunk: {data[:80]!r}")
        t = choice.get("text")
        if t is None:
            text = _choice_text(choice, data)
        elif type(t) is str:
            text = t
        else:
            raise MalformedResponse(f"'text' is not a string in chunk: {data[:80]!r}")
        finish = choice.get("finish_reason")
        if finish is not None and type(finish) is not str:
            raise MalformedResponse(f"'finish_reason' is not a string in chunk: {data[:80]!r}")
    usage = _usage(obj, data) if "usage" in obj else None
    error = _error_text(obj) if ("error" in obj or obj.get("object") == "error") else None
    return text, finish, usage, error


def decode_event(data: bytes) -> Delta:
    """Decode one SSE data payload (not ``[DONE]``)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedResponse(f"stream chunk is not JSON: {data[:80]!r}") from exc
    if not isinstance(obj, dict):
        raise MalformedResponse(f"stream chunk is not a JSON object: {data[:80]!r}")
    out = Delta(error=_error_text(obj))
    choices = obj.get("choices")
    if choices:
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise MalformedResponse(f"unexpected 'choices' in chunk: {data[:80]!r}")
        choice = choices[0]
        out.text = _choice_text(choice, data)
        out.finish_reason = _str_or_none(choice.get("finish_reason"), "'finish_reason'", data)
    out.usage = _usage(obj, data)
    return out


def decode_body(data: bytes) -> Delta:
    """Decode a whole non-streaming response body."""
    return decode_event(data)


def error_from_body(body: bytes, limit: int = 300) -> str:
    """A short, readable error text from an HTTP error response body."""
    try:
        obj = orjson.loads(body)
        if isinstance(obj, dict):
            text = _error_text(obj) or obj.get("detail") or obj.get("message")
            if text:
                return str(text)[:limit]
    except orjson.JSONDecodeError:
        pass
    return body.decode("utf-8", "replace").strip()[:limit] or "(empty body)"
