"""The built-in checker: regular expressions grouped into categories with severities.

The shipped rules (``servemark/data/safety_rules.json``) are a small, deliberately
conservative starting set; real deployments bring their own file (same format:
``{"rules": [{"category": ..., "severity": 0-7, "pattern": ..., "id": ...}]}``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from servemark.errors import ConfigError
from servemark.safety.base import Category, Verdict


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    severity: int
    pattern: re.Pattern[str]


def load_rules(path: Path | None = None) -> list[Rule]:
    """Rules from a JSON file (default: the shipped set); a clear error for a bad file."""
    where = str(path) if path else "the built-in safety rules"
    try:
        text = (Path(path).read_text() if path is not None else
                resources.files("servemark").joinpath("data/safety_rules.json").read_text())
        items = json.loads(text)["rules"]
        rules = []
        for i, item in enumerate(items):
            severity = int(item.get("severity", 4))
            if not 0 <= severity <= 7:
                raise ValueError(f"rule {i}: severity {severity} is outside 0..7")
            rules.append(Rule(str(item.get("id") or f"rule{i}"), str(item["category"]), severity,
                              re.compile(item["pattern"], re.IGNORECASE)))
        return rules
    except FileNotFoundError:
        raise ConfigError(f"safety rules file {path} does not exist", "pass an existing JSON file") from None
    except (OSError, ValueError, KeyError, TypeError, re.error) as exc:
        raise ConfigError(f"cannot load {where}: {exc}",
                          'expected {"rules": [{"category": "...", "severity": 0-7, "pattern": "..."}]}') from None


class LocalChecker:
    """Flags text when a rule of at least ``threshold`` severity matches."""

    name = "local"

    def __init__(self, rules: list[Rule] | None = None, threshold: int = 2) -> None:
        self.rules = load_rules() if rules is None else rules
        self.threshold = threshold

    def check_sync(self, text: str) -> Verdict:
        found: dict[str, Category] = {}
        for rule in self.rules:
            if rule.pattern.search(text):
                prev = found.get(rule.category)
                if prev is None or rule.severity > prev.severity:
                    found[rule.category] = Category(rule.category, rule.severity, rule.id)
        cats = tuple(sorted(found.values(), key=lambda c: (-c.severity, c.name)))
        return Verdict(self.name, any(c.severity >= self.threshold for c in cats), cats)

    async def check(self, text: str) -> Verdict:
        return self.check_sync(text)

    async def close(self) -> None:
        return None
