"""Read a model's shape (layers N, hidden size d) from its config.json, locally only.

A directory, a config.json path, or a hub name already in the Hugging Face cache. Nothing is
downloaded; when the config cannot be found the FLOP-rate form is simply not reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from servemark.suites.flops import ModelShape

LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model", "dim")


def shape_from_config(config: dict[str, Any]) -> ModelShape | None:
    """N and d from a config dict (pure); multimodal configs keep them in ``text_config``."""
    for cfg in (config, config.get("text_config") or {}, config.get("llm_config") or {}):
        layers = next((cfg[k] for k in LAYER_KEYS if isinstance(cfg.get(k), int)), None)
        hidden = next((cfg[k] for k in HIDDEN_KEYS if isinstance(cfg.get(k), int)), None)
        if layers and hidden:
            return ModelShape(int(layers), int(hidden))
    return None


def _config_file(model: str) -> Path | None:
    path = Path(model).expanduser()
    if path.is_file():
        return path
    if (path / "config.json").is_file():
        return path / "config.json"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(model, "config.json")
    except Exception:  # not a valid repo id
        return None
    return Path(found) if isinstance(found, str) else None


def load_shape(model: str | None) -> ModelShape | None:
    """The model's shape, or None when its config is not available locally."""
    if not model:
        return None
    file = _config_file(model)
    if file is None:
        return None
    try:
        return shape_from_config(json.loads(file.read_text()))
    except (OSError, ValueError):
        return None
