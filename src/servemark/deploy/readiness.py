"""Reading a starting vLLM server's log (pure): loading progress and the lines that explain a failure."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SHARDS = re.compile(r"Loading (?:safetensors|pt) checkpoint shards:\s*(\d+)%.*?(\d+)/(\d+)")
_STAGES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"non-default args|vLLM API server version"), "parsing arguments"),
    (re.compile(r"Resolved architecture|Initializing a V1 LLM engine|EngineCore"), "starting engine"),
    (re.compile(r"Starting to load model|Loading model"), "loading model"),
    (re.compile(r"Loading weights took|Model loading took"), "weights loaded"),
    (re.compile(r"KV cache|GPU KV cache size|CPU KV cache"), "allocating KV cache"),
    (re.compile(r"Capturing CUDA graph|Graph capturing|torch.compile"), "compiling / capturing graphs"),
    (re.compile(r"Starting vLLM API server|Available routes"), "starting HTTP server"),
    (re.compile(r"Application startup complete"), "ready"),
)
_FAILURE = re.compile(
    r"(Error|error:|Traceback|CUDA out of memory|OutOfMemory|No such file|not found|"
    r"does not exist|unrecognized arguments|invalid choice|RuntimeError|ValueError|Killed)"
)


@dataclass(frozen=True, slots=True)
class LoadProgress:
    """What a log line tells about startup: a stage name, and shard counts when loading weights."""

    stage: str
    done: int | None = None
    total: int | None = None


def parse_line(line: str) -> LoadProgress | None:
    m = _SHARDS.search(line)
    if m:
        return LoadProgress("loading weights", int(m.group(2)), int(m.group(3)))
    for pattern, stage in _STAGES:
        if pattern.search(line):
            return LoadProgress(stage)
    return None


def explain_failure(log_tail: list[str], max_lines: int = 12) -> list[str]:
    """The log lines most likely to explain why a server died: the last error lines and the end."""
    hits = [ln for ln in log_tail if _FAILURE.search(ln)]
    picked = hits[-max_lines:] if hits else log_tail[-max_lines:]
    return [ln.rstrip() for ln in picked]
