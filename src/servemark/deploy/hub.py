"""Models in the Hugging Face cache: download one (``huggingface_hub``), list what is cached.

The cache is the one vLLM and transformers read (``HF_HUB_CACHE``, else ``HF_HOME/hub``), so a
downloaded model is served without another download. ``HF_TOKEN`` is read by huggingface_hub
itself; we never pass it around, print it or store it. Offline mode (``HF_HUB_OFFLINE=1``)
serves only from the cache and says clearly when a model is not there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servemark.errors import ConfigError, DependencyError, EndpointUnreachable

TRUE = ("1", "true", "yes", "on")


def hub_cache() -> Path:
    """Where the Hugging Face cache lives, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(home) / "hub"


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@dataclass(frozen=True, slots=True)
class CachedModel:
    """One model repository in the cache."""

    repo_id: str
    size_bytes: int
    files: int
    revisions: int
    refs: tuple[str, ...]
    path: Path


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise DependencyError("downloading models needs huggingface_hub",
                              "pip install huggingface_hub") from None
    return huggingface_hub


def download(repo_id: str, revision: str | None = None, allow_patterns: list[str] | None = None,
             cache_dir: Path | None = None) -> Path:
    """Fetch a model snapshot into the cache (or find it there when offline); its local path."""
    hub = _hub()
    from huggingface_hub import errors

    cache = cache_dir or hub_cache()
    local_only = offline()
    try:
        path = hub.snapshot_download(repo_id, revision=revision, cache_dir=str(cache),
                                     allow_patterns=allow_patterns, local_files_only=local_only)
    except errors.HFValidationError:
        raise ConfigError(f"{repo_id!r} is not a valid model name",
                          "use a Hugging Face name such as meta-llama/Llama-3.1-8B-Instruct") from None
    except errors.GatedRepoError:
        raise ConfigError(f"{repo_id} is gated: accept its licence on huggingface.co",
                          "then set HF_TOKEN to a token of that account") from None
    except errors.RepositoryNotFoundError:
        raise ConfigError(f"model {repo_id} was not found on the hub (or is private)",
                          "check the name; for private models set HF_TOKEN") from None
    except errors.RevisionNotFoundError:
        raise ConfigError(f"revision {revision!r} of {repo_id} does not exist",
                          "leave --revision out for the default branch") from None
    except errors.LocalEntryNotFoundError:
        if local_only:
            raise ConfigError(f"{repo_id} is not in the cache ({cache}) and offline mode is on",
                              "unset HF_HUB_OFFLINE to download it, or point HF_HOME at a cache "
                              "that has it") from None
        raise EndpointUnreachable(f"cannot reach the Hugging Face hub to download {repo_id}",
                                  "check the network (or HF_ENDPOINT for a mirror)") from None
    except errors.HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        raise EndpointUnreachable(f"the hub answered HTTP {status} for {repo_id}",
                                  "retry later, or check HF_TOKEN and HF_ENDPOINT") from None
    except OSError as exc:
        raise EndpointUnreachable(f"downloading {repo_id} failed: {exc.strerror or exc}",
                                  "check the network and the free space in the cache") from None
    return Path(str(path))


def cached_models(cache_dir: Path | None = None) -> list[CachedModel]:
    """Model repositories in the cache, largest first."""
    hub = _hub()
    from huggingface_hub import CacheNotFound

    try:
        info = hub.scan_cache_dir(str(cache_dir or hub_cache()))
    except CacheNotFound:
        return []
    out = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        refs = tuple(sorted({ref for rev in repo.revisions for ref in rev.refs}))
        out.append(CachedModel(repo.repo_id, int(repo.size_on_disk), int(repo.nb_files),
                               len(repo.revisions), refs, Path(repo.repo_path)))
    return sorted(out, key=lambda m: (-m.size_bytes, m.repo_id))


def format_size(n: int) -> str:
    """Bytes in binary units (GiB, MiB, KiB), as the rest of servemark states them."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"
