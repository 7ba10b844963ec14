"""vLLM engine arguments passed through from the command line (pure).

``--max-num-seqs 256 --enable-chunked-prefill --no-enable-prefix-caching
--compilation-config '{"level": 3}'`` → ``{"max_num_seqs": 256, "enable_chunked_prefill": True,
"enable_prefix_caching": False, "compilation_config": {"level": 3}}``. Names are checked by
vLLM itself in the worker (an unknown one fails the point with vLLM's message).
"""

from __future__ import annotations

import json
from typing import Any

from servemark.errors import ConfigError


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, true/false, objects, lists), else the string itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_engine_args(tokens: list[str]) -> dict[str, Any]:
    """``--name value`` / ``--name=value`` / ``--flag`` / ``--no-flag`` tokens → kwargs."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or tok == "--":
            raise ConfigError(f"unexpected argument {tok!r}",
                              "engine arguments look like --name value or --name=value")
        name, eq, value = tok[2:].partition("=")
        key = name.replace("-", "_")
        if eq:
            out[key] = parse_value(value)
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            out[key] = parse_value(tokens[i + 1])
            i += 1
        elif key.startswith("no_"):
            out[key[3:]] = False
        else:
            out[key] = True
        i += 1
    return out


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``--engine-arg KEY=VALUE`` items → kwargs."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--engine-arg expects KEY=VALUE, got {item!r}",
                              "e.g. --engine-arg max_num_seqs=256")
        out[key.strip().replace("-", "_")] = parse_value(value)
    return out
