"""The one exception tree of servemark.

    ServemarkError                 every error we raise on purpose; carries a hint for the user
    ├── ConfigError                invalid or contradictory options, bad spec or workload input
    ├── DependencyError            an optional dependency is missing (says which command installs it)
    ├── EndpointError              the target server cannot be benchmarked
    │   ├── EndpointUnreachable    connection refused, DNS failure, timeout while probing
    │   ├── NotOpenAICompatible    the server answers but does not speak the OpenAI API
    │   └── ModelNotFound          the server does not serve the requested model
    ├── ServerStartError           a server we launched died or never became ready
    ├── JobError                   a batch job (SLURM, PBS) could not be submitted, queried or cancelled
    │   └── JobWaitTimeout         a job is still active when `--timeout` ends the wait (it keeps running)
    └── ResultsError               results could not be written or read

A failed *request* during a run is data (a RequestRecord with an error), never an exception.
"""

from __future__ import annotations


class ServemarkError(Exception):
    """Base class: a message saying what is wrong and a hint saying what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The single line the CLI prints."""
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ConfigError(ServemarkError):
    """Invalid or contradictory options. ``key_path``: the spec key at fault, when known (so
    that a spec file's error can name its line)."""

    key_path: tuple[str, ...] = ()


class DependencyError(ServemarkError):
    """An optional dependency is not installed."""


class EndpointError(ServemarkError):
    """The endpoint cannot be benchmarked."""


class EndpointUnreachable(EndpointError):
    """Nothing answers at the base URL."""


class NotOpenAICompatible(EndpointError):
    """Something answers, but not with the OpenAI API."""


class ModelNotFound(EndpointError):
    """The server does not serve the requested model."""


class ServerStartError(ServemarkError):
    """A server we started exited or did not become ready in time."""

    def __init__(self, message: str, hint: str | None = None, log_tail: str = "") -> None:
        super().__init__(message, hint)
        self.log_tail = log_tail


class JobError(ServemarkError):
    """The batch system refused or failed a submit, status or cancel."""


class JobWaitTimeout(JobError):
    """Waiting for a job gave up before it ended; the job itself keeps running."""


class ResultsError(ServemarkError):
    """Results could not be written or read."""
