"""The embedded default: a tiny model built offline, served by a real vLLM, benchmarked."""
