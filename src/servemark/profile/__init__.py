"""Observe a server while it is measured: Prometheus /metrics sampling, the vLLM torch profiler,
and Nsight Systems kernel summaries."""
