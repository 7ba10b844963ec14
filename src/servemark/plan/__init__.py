"""Planning before booking a cluster: memory and GPU counts, deployment advice, a roofline
performance predictor, calibration from measured runs, and validation against published numbers.
"""

from __future__ import annotations

from servemark.plan.arch import ModelArch, parse_hf_config
from servemark.plan.catalog import GPU, get_gpu, gpu_catalog, resolve_model
from servemark.plan.memory import MemoryPlan, Runtime, plan_memory
from servemark.plan.predict import Factors, Prediction, Setup, serving, static_batch

__all__ = ["GPU", "Factors", "MemoryPlan", "ModelArch", "Prediction", "Runtime", "Setup",
           "get_gpu", "gpu_catalog", "parse_hf_config", "plan_memory", "resolve_model",
           "serving", "static_batch"]
