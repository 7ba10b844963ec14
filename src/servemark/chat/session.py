"""A chat conversation with an OpenAI-compatible server (library; the CLI drives it).

The history lives here; the server applies the model's chat template (``/v1/chat/completions``),
or, with a ``template`` callable, servemark renders the prompt itself and uses
``/v1/completions``. Answers stream through ``on_delta``; each answer reports its time to first
token and generation speed. An optional safety checker gates prompts before they are sent and
flags answers after they are generated.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from servemark.client.openai import MalformedResponse, error_from_body, parse_event
from servemark.client.sse import SSEParser
from servemark.errors import ConfigError, EndpointError, EndpointUnreachable, ResultsError
from servemark.safety.base import SafetyChecker, Verdict

Message = dict[str, str]
Template = Callable[[list[Message]], str]


@dataclass
class Answer:
    text: str
    ttft_s: float | None
    e2e_s: float
    output_tokens: int | None
    finish_reason: str | None = None
    blocked: Verdict | None = None  # the prompt was not sent
    flagged: Verdict | None = None  # the answer was generated, and the checker flagged it

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens over the whole answer time (first token included). Not the decode rate
        (tokens − 1) / (e2e − ttft): servers may deliver several tokens in one network read,
        which makes that figure meaningless for a single short answer."""
        if not self.output_tokens or self.e2e_s <= 0:
            return None
        return self.output_tokens / self.e2e_s


async def served_models(base_url: str, headers: dict[str, str] | None = None) -> list[str]:
    url = base_url.rstrip("/") + "/v1/models"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s, \
                s.get(url, headers=headers or {}) as resp:
            if resp.status != 200:
                raise EndpointError(f"GET /v1/models answered HTTP {resp.status}",
                                    "is this an OpenAI-compatible server?")
            data = await resp.json(content_type=None)
    except aiohttp.ClientError as exc:
        raise EndpointUnreachable(f"cannot reach {base_url}: {exc}", "is the server running?") from exc
    return [str(m["id"]) for m in data.get("data", []) if isinstance(m, dict) and "id" in m]


class ChatSession:
    """History plus one pooled HTTP session; use ``async with``."""

    def __init__(self, base_url: str, model: str, *, system: str | None = None,
                 headers: dict[str, str] | None = None, template: Template | None = None,
                 max_tokens: int = 512, temperature: float | None = 0.7,
                 checker: SafetyChecker | None = None, timeout_s: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.headers = headers or {}
        self.template = template
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.checker = checker
        self.timeout_s = timeout_s
        self.system: str | None = system
        self.messages: list[Message] = []
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ChatSession:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self.checker is not None:
            await self.checker.close()

    # --- history -------------------------------------------------------------------------
    def reset(self) -> None:
        self.messages.clear()

    def set_system(self, text: str | None) -> None:
        self.system = text or None

    def conversation(self) -> list[Message]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.messages

    def save(self, path: Path) -> None:
        data = {"model": self.model, "system": self.system, "messages": self.messages}
        try:
            Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False))
        except OSError as exc:
            raise ResultsError(f"cannot write {path}: {exc.strerror}", "pick a writable path") from exc

    def load(self, path: Path) -> None:
        try:
            data = json.loads(Path(path).read_text())
            messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in data["messages"]]
        except FileNotFoundError:
            raise ConfigError(f"{path} does not exist", "pass a file written by /save") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is not a saved conversation: {exc}",
                              "pass a file written by /save") from None
        self.system = data.get("system") or None
        self.messages = messages

    # --- one turn ------------------------------------------------------------------------
    def _body(self) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "stream": True,
                                "stream_options": {"include_usage": True}}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.template is not None:
            body["prompt"] = self.template(self.conversation())
            return "/v1/completions", body
        body["messages"] = self.conversation()
        return "/v1/chat/completions", body

    async def ask(self, text: str, on_delta: Callable[[str], None] = lambda s: None) -> Answer:
        """Send a user turn, stream the answer; the turn joins the history when it succeeds."""
        assert self._session is not None, "use ChatSession as an async context manager"
        if self.checker is not None:
            verdict = await self.checker.check(text)
            if verdict.flagged:
                return Answer("", None, 0.0, None, blocked=verdict)
        self.messages.append({"role": "user", "content": text})
        path, body = self._body()
        parts: list[str] = []
        ttft = None
        usage: dict[str, Any] | None = None
        finish = None
        start = time.perf_counter()
        try:
            async with self._session.post(self.base_url + path, json=body, headers=self.headers) as resp:
                if resp.status != 200:
                    raise EndpointError(f"HTTP {resp.status}: {error_from_body(await resp.read())}",
                                        "check --model and the server log")
                parser = SSEParser()
                async for chunk in resp.content.iter_any():
                    for data in parser.feed(chunk):
                        if data == b"[DONE]":
                            continue
                        delta, fin, use, error = parse_event(data)
                        if error:
                            raise EndpointError(f"the server reported: {error}", "see the server log")
                        if delta:
                            if ttft is None:
                                ttft = time.perf_counter() - start
                            parts.append(delta)
                            on_delta(delta)
                        finish = fin or finish
                        usage = use or usage
        except (aiohttp.ClientError, asyncio.TimeoutError, MalformedResponse) as exc:
            self.messages.pop()
            raise EndpointError(f"the answer failed: {type(exc).__name__}: {exc}",
                                "is the server still up?") from exc
        except BaseException:
            self.messages.pop()
            raise
        e2e = time.perf_counter() - start
        answer_text = "".join(parts)
        self.messages.append({"role": "assistant", "content": answer_text})
        tokens = int(usage["completion_tokens"]) if usage and usage.get("completion_tokens") is not None else None
        answer = Answer(answer_text, ttft, e2e, tokens, finish)
        if self.checker is not None and answer_text:
            verdict = await self.checker.check(answer_text)
            if verdict.flagged:
                answer.flagged = verdict
        return answer


def hf_template(tokenizer_path: str) -> Template:
    """Render prompts with a local Hugging Face tokenizer's chat template (for --completions)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        from servemark.errors import DependencyError

        raise DependencyError("--completions needs transformers to apply the chat template",
                              "pip install 'servemark[tokenizers]'") from None
    try:
        tok = AutoTokenizer.from_pretrained(tokenizer_path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load a tokenizer from {tokenizer_path}: {exc}"[:300],
                          "pass a local tokenizer directory with --tokenizer") from None
    if not getattr(tok, "chat_template", None):
        raise ConfigError(f"the tokenizer in {tokenizer_path} has no chat template",
                          "use the chat API (drop --completions) or a tokenizer with a template")

    def render(messages: list[Message]) -> str:
        return str(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    return render
