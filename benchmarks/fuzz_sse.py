"""Coverage-guided fuzzing (atheris) of the SSE framing and the response decoders, for a bounded
time: ``python benchmarks/fuzz_sse.py [--seconds 60]``. libFuzzer prints the executions it ran
("Done N runs in S second(s)").

Any exception other than MalformedResponse, or a value of the wrong type (which would crash the
request path later), is a bug: atheris stops and prints the input.
atheris is optional (``pip install atheris``; Linux x86-64 wheels for CPython 3.11+).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

RUNS = 0
# libFuzzer dictionary format: one quoted token per line, \" escapes a quote
DICT = r"""
"\"text\":"
"\"delta\":"
"\"content\":"
"\"usage\":"
"\"choices\":"
"\"finish_reason\":"
"\"completion_tokens\":"
"null"
"true"
"[1]"
"{}"
"-1"
"1.5"
"data: "
"\x0a\x0a"
"""
SEEDS = [
    b'\x07data: {"choices":[{"index":0,"text":"hi","finish_reason":null}]}\n\n',
    b'\x05data: {"choices":[{"delta":{"content":"x","reasoning_content":"y"}}]}\r\n\r\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\ndata: [DONE]\n\n',
    b'\x40{"error":{"message":"bad","type":"BadRequestError"},"object":"error"}',
    b'\x02data: {"choices":[{"message":{"content":"a"},"finish_reason":"length"}]}\n\n',
]


def one_input(data: bytes) -> None:
    """Split the input into reads (first byte = split step), frame it, decode every event."""
    from servemark.client.openai import (
        MalformedResponse,
        decode_event,
        error_from_body,
        parse_event,
    )
    from servemark.client.sse import SSEParser

    global RUNS
    RUNS += 1
    step = (data[0] if data else 1) or 1
    body = data[1:]
    parser = SSEParser()
    events: list[bytes] = []
    for i in range(0, len(body), step):
        events.extend(parser.feed(body[i:i + step]))
    events.extend(parser.close())
    for event in [*events, body]:
        with contextlib.suppress(MalformedResponse):
            text, finish, usage, error = parse_event(event)
            if not (isinstance(text, str) and isinstance(finish, str | None)
                    and isinstance(usage, dict | None) and isinstance(error, str | None)):
                raise AssertionError(f"parse_event returned ill-typed values for {event!r}")
        with contextlib.suppress(MalformedResponse):
            delta = decode_event(event)
            if not (isinstance(delta.text, str) and isinstance(delta.finish_reason, str | None)):
                raise AssertionError(f"decode_event returned ill-typed values for {event!r}")
    text = error_from_body(body)
    if not isinstance(text, str) or not text:
        raise AssertionError("error_from_body returned no text")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=60, help="fuzzing time budget")
    args, rest = ap.parse_known_args()
    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed: pip install atheris")
    with atheris.instrument_imports(include=["servemark.client.openai", "servemark.client.sse"]):
        import servemark.client.openai  # noqa: F401
        import servemark.client.sse  # noqa: F401
    # a seed corpus of real chunk shapes, so mutations start from valid OpenAI events
    corpus = tempfile.mkdtemp(prefix="fuzz-sse-")
    for i, seed in enumerate(SEEDS):
        Path(corpus, f"seed{i}").write_bytes(seed)
    # orjson is not instrumented, so libFuzzer is told the JSON tokens that matter
    words = Path(corpus, "json.dict")
    words.write_text(DICT)
    rest = [f"-dict={words}", *rest, corpus]
    # libFuzzer ends with "Done N runs in S second(s)": N is the number of executions
    print(f"fuzz_sse: fuzzing for {args.seconds} s", flush=True)
    atheris.Setup([sys.argv[0], f"-max_total_time={args.seconds}", "-max_len=4096",
                   "-timeout=5", *rest], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
