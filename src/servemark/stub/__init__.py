"""A fast, scriptable OpenAI-compatible stub server for what a real server cannot do on demand:
exact timing (known TTFT and inter-chunk gaps), zero-delay load, and injected faults."""

from servemark.stub.server import FAULTS, StubConfig, serve

__all__ = ["FAULTS", "StubConfig", "serve"]
