"""Shared CLI plumbing: consoles, list parsing, and turning library errors into one line + exit code."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from types import FrameType
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from servemark.errors import ConfigError, ServemarkError, ServerStartError
from servemark.store.provenance import redact_text

out = Console()  # results
err = Console(stderr=True)  # progress, messages, errors

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/bold red] {escape(redact_text(message))}", highlight=False,
              soft_wrap=True)
    return typer.Exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so every ``with`` that owns a server stops it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """For the duration of a command, SIGTERM and SIGHUP (a closed terminal, ``kill``, a batch
    system's stop) raise :class:`Terminated` instead of ending the process on the spot."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise_terminated) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def handle_errors(fn: F) -> F:
    """Library errors become one red line and an exit code; Ctrl-C exits 130 quietly, SIGTERM
    and SIGHUP 128 + the signal number, after the same cleanup."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with terminate_as_interrupt():
                return fn(*args, **kwargs)
        except ServerStartError as exc:
            if exc.log_tail:
                err.print(redact_text(exc.log_tail), markup=False, highlight=False, style="dim")
            raise fail(exc.one_line(), 1) from None
        except ConfigError as exc:
            raise fail(exc.one_line(), 2) from None
        except ServemarkError as exc:
            raise fail(exc.one_line(), 1) from None
        except Terminated as exc:
            err.print(f"[yellow]stopped by {signal.Signals(exc.signum).name}[/yellow]")
            raise typer.Exit(128 + exc.signum) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/yellow]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def parse_list(text: str | None, kind: type, flag: str) -> list[Any] | None:
    """``"1,8,32"`` → ``[1, 8, 32]``; a clear ConfigError naming the flag otherwise."""
    if text is None:
        return None
    try:
        values = [kind(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        noun = "integers" if kind is int else "numbers"
        raise ConfigError(f"{flag} expects comma-separated {noun}, got {text!r}",
                          f"for example {flag} 1,8,32") from None
    if not values:
        raise ConfigError(f"{flag} is empty", f"for example {flag} 1,8,32")
    return values


def parse_json_object(text: str | None, flag: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag} is not valid JSON: {exc.msg}", f"for example {flag} '{{\"top_p\": 0.9}}'") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} must be a JSON object", f"for example {flag} '{{\"top_p\": 0.9}}'")
    return value
