"""Reading YAML spec files while keeping where each key is, so that an error in an experiment or
cluster spec names the file, the line and the key (``exp.yaml:12: invalid bench.concurrency``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from servemark.errors import ConfigError


class KeyLines:
    """Line numbers (1-based) of the keys of a YAML document, looked up by key path."""

    def __init__(self, root: yaml.Node | None) -> None:
        self._root = root

    def line(self, path: Sequence[str | int]) -> int | None:
        """The line of the deepest key of ``path`` present in the document (a key the user
        wrote with dashes or without a ``_s`` suffix is found too)."""
        node, found = self._root, None
        for part in path:
            child = None
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                names = {part, part.replace("_", "-"), part.removesuffix("_s"),
                         part.removesuffix("_s").replace("_", "-")}
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value in names:
                        found, child = key.start_mark.line + 1, value
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int | str):
                index = int(part) if str(part).isdigit() else -1
                if 0 <= index < len(node.value):
                    child = node.value[index]
                    found = child.start_mark.line + 1
            if child is None:
                break
            node = child
        return found


def read_yaml(path: Path, hint: str) -> tuple[Any, KeyLines]:
    """The parsed document and where its keys are; one ConfigError naming the file (and the
    line, for a syntax error) otherwise."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"spec file {path} does not exist", hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read spec file {path}: {exc}", hint) from None
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"{where}: not valid YAML ({problem})",
                          "check the indentation and quoting") from None
    return data, KeyLines(root)


def at_line(source: str, lines: KeyLines | None, path: Sequence[str | int]) -> str:
    """``file:line`` for the key at ``path`` when known, else just ``file``."""
    line = lines.line(path) if lines is not None else None
    return f"{source}:{line}" if line is not None else source
