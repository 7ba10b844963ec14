"""Tokenizers the workloads measure lengths with: a local Hugging Face tokenizer, or the server's.

``encode`` counts the way an OpenAI completions request is counted by vLLM (special tokens
such as BOS included); ``count_chat`` counts a chat request with the chat template applied.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from functools import cached_property
from importlib import resources
from typing import Any, Protocol

from servemark.errors import ConfigError, DependencyError

MIN_DECODED_CHARS = 3  # sample only tokens whose text is > 2 characters (llama-recipes' rule)


class Tokenizer(Protocol):
    name: str

    def encode(self, text: str) -> list[int]:
        """Token ids of a completions prompt, special tokens included."""
        ...

    def encode_body(self, text: str) -> list[int]:
        """Token ids of text alone (no special tokens)."""
        ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def count_chat(self, messages: Sequence[dict[str, str]]) -> int:
        """Prompt tokens of a chat request (template applied, generation prompt added)."""
        ...

    def candidate_ids(self) -> list[int]:
        """Token ids that random prompts may be built from."""
        ...


def corpus_text() -> str:
    """Our own small English corpus (ships with the package)."""
    return resources.files("servemark.data").joinpath("corpus.txt").read_text(encoding="utf-8")


class HFTokenizer:
    """A local Hugging Face tokenizer (directory or cached hub name; never downloads)."""

    def __init__(self, name_or_path: str) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise DependencyError(
                "a local --tokenizer needs the 'transformers' package",
                "pip install 'servemark[tokenizers]'",
            ) from exc
        try:
            self._tok = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load tokenizer {name_or_path!r}: {str(exc).splitlines()[0]}",
                "pass a local tokenizer directory (with tokenizer.json) or a model cached in HF_HOME",
            ) from exc
        self.name = name_or_path
        # we measure prompts of any length; the model's limit is checked against the server's
        self._tok.model_max_length = 1 << 60

    def encode(self, text: str) -> list[int]:
        return list(self._tok(text, add_special_tokens=True)["input_ids"])

    def encode_body(self, text: str) -> list[int]:
        return list(self._tok(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=False))

    def count_chat(self, messages: Sequence[dict[str, str]]) -> int:
        if not getattr(self._tok, "chat_template", None):
            raise ConfigError(
                f"tokenizer {self.name!r} has no chat template",
                "use --api completions, or a tokenizer with a chat_template",
            )
        out = self._tok.apply_chat_template(list(messages), tokenize=True, add_generation_prompt=True)
        if hasattr(out, "keys"):  # newer transformers return a BatchEncoding
            out = out["input_ids"]  # type: ignore[index,call-overload]
        return len(out)

    @cached_property
    def _candidates(self) -> list[int]:
        special = set(self._tok.all_special_ids)
        added = set(getattr(self._tok, "added_tokens_decoder", {}) or {})
        out = []
        for i in range(len(self._tok)):
            if i in special or i in added:
                continue
            if len(self._tok.decode([i])) >= MIN_DECODED_CHARS:
                out.append(i)
        if not out:
            raise ConfigError(f"tokenizer {self.name!r} has no usable tokens", "check the tokenizer")
        return out

    def candidate_ids(self) -> list[int]:
        return self._candidates


class ServerTokenizer:
    """vLLM's ``/tokenize`` and ``/detokenize`` endpoints (blocking; call from a worker thread)."""

    def __init__(self, base_url: str, model: str, headers: dict[str, str] | None = None,
                 timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"{self.base_url}/tokenize"
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._timeout = timeout_s

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            self.base_url + path, json.dumps(body).encode(), self._headers, method="POST"
        )
        with urllib.request.urlopen(req, timeout=self._timeout) as resp:  # noqa: S310 (user URL)
            out = json.loads(resp.read())
        if not isinstance(out, dict):
            raise ValueError(f"unexpected answer from {path}")
        return out

    def available(self) -> bool:
        try:
            return "tokens" in self._post("/tokenize", {"model": self.model, "prompt": "hi"})
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def encode(self, text: str) -> list[int]:
        return list(self._post("/tokenize", {"model": self.model, "prompt": text})["tokens"])

    def encode_body(self, text: str) -> list[int]:
        return list(
            self._post(
                "/tokenize", {"model": self.model, "prompt": text, "add_special_tokens": False}
            )["tokens"]
        )

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._post("/detokenize", {"model": self.model, "tokens": list(ids)})["prompt"])

    def count_chat(self, messages: Sequence[dict[str, str]]) -> int:
        out = self._post(
            "/tokenize",
            {"model": self.model, "messages": list(messages), "add_generation_prompt": True},
        )
        return int(out.get("count", len(out["tokens"])))

    @cached_property
    def _candidates(self) -> list[int]:
        ids = sorted(set(self.encode_body(corpus_text())))
        # keep tokens whose text is long enough, judged by detokenizing them one by one in bulk
        texts = [self.decode([i]) for i in ids]
        out = [i for i, t in zip(ids, texts, strict=True) if len(t) >= MIN_DECODED_CHARS]
        return out or ids

    def candidate_ids(self) -> list[int]:
        return self._candidates


def load_tokenizer(path: str | None, base_url: str, model: str,
                   headers: dict[str, str] | None = None) -> Tokenizer:
    """The tokenizer to count with: ``path`` when given, else the server's ``/tokenize``."""
    if path:
        return HFTokenizer(path)
    remote = ServerTokenizer(base_url, model, headers)
    if remote.available():
        return remote
    raise ConfigError(
        f"the server at {base_url} has no /tokenize endpoint, so prompt lengths cannot be made exact",
        "pass --tokenizer with the model's local tokenizer directory",
    )


def _probe_text() -> str:
    return " ".join(corpus_text().split()[:120])


def verify_tokenizer(tok: Tokenizer, base_url: str, model: str,
                     headers: dict[str, str] | None = None) -> int | None:
    """Check that ``tok`` counts a probe prompt as the server does (blocking).

    Asks the server's ``/tokenize``, else the ``prompt_tokens`` of a 1-token completion. Returns
    the server's count, or None when the server offers neither (then only the per-request
    ``input_len_mismatches`` of the results tell). Raises ConfigError on disagreement.
    """
    if isinstance(tok, ServerTokenizer):
        return None
    text = _probe_text()
    remote = ServerTokenizer(base_url, model, headers)
    try:
        served = len(remote.encode(text))
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        try:
            out = remote._post("/v1/completions", {"model": model, "prompt": text, "max_tokens": 1})
            served = int(out["usage"]["prompt_tokens"])
        except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
            return None
    ours = len(tok.encode(text))
    if ours != served:
        raise ConfigError(
            f"tokenizer {tok.name!r} does not belong to the served model {model!r}: it counts "
            f"{ours} tokens in a probe prompt where the server counts {served}",
            "pass the model's own tokenizer with --tokenizer, or leave it out to use the "
            "server's /tokenize (--no-verify-tokenizer skips this check)",
        )
    return served
