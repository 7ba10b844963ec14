"""Offline throughput with vllm.LLM: every measurement in a fresh worker process.

vLLM engines do not release memory reliably in-process, and a crash or an out-of-memory
error must become a recorded failed point rather than end a sweep; so the parent never imports
vLLM (``runner``), and ``worker`` is the only module that does.
"""
