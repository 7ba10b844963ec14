"""Azure AI Content Safety text analysis as a checker.

Request/response shape of ``POST {endpoint}/contentsafety/text:analyze?api-version=2024-09-01``
(https://learn.microsoft.com/azure/ai-services/content-safety/quickstart-text): body
``{"text", "categories", "outputType": "FourSeverityLevels"}``, key in the
``Ocp-Apim-Subscription-Key`` header, answer ``{"categoriesAnalysis": [{"category",
"severity"}], "blocklistsMatch": [...]}`` with severities 0/2/4/6. Texts over the service's
10,000-character limit are checked in pieces. Endpoint and key come from the environment; the key
is never logged or recorded.
"""

from __future__ import annotations

import asyncio
import os

import aiohttp

from servemark.errors import ConfigError
from servemark.safety.base import Category, Verdict

API_VERSION = "2024-09-01"
MAX_CHARS = 10_000
ENDPOINT_ENV = "AZURE_CONTENT_SAFETY_ENDPOINT"
KEY_ENV = "AZURE_CONTENT_SAFETY_KEY"
CATEGORIES = ("Hate", "SelfHarm", "Sexual", "Violence")


class AzureChecker:
    name = "azure"

    def __init__(self, endpoint: str | None = None, key: str | None = None, threshold: int = 4,
                 timeout_s: float = 10.0) -> None:
        endpoint = endpoint or os.environ.get(ENDPOINT_ENV)
        key = key or os.environ.get(KEY_ENV)
        if not endpoint or not key:
            raise ConfigError(f"Azure AI Content Safety needs {ENDPOINT_ENV} and {KEY_ENV}",
                              "export both (the key is never logged or recorded)")
        self.url = f"{endpoint.rstrip('/')}/contentsafety/text:analyze?api-version={API_VERSION}"
        self._key = key
        self.threshold = threshold
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never show the key
        return f"AzureChecker({self.url!r}, threshold={self.threshold})"

    async def _analyze(self, text: str) -> dict[str, int]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        body = {"text": text, "categories": list(CATEGORIES), "outputType": "FourSeverityLevels"}
        headers = {"Ocp-Apim-Subscription-Key": self._key, "Content-Type": "application/json"}
        async with self._session.post(self.url, json=body, headers=headers) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                err = data.get("error", {}) if isinstance(data, dict) else {}
                raise RuntimeError(f"HTTP {resp.status} {err.get('code', '')}: {err.get('message', '')}".strip())
        return {str(c["category"]): int(c.get("severity") or 0)
                for c in data.get("categoriesAnalysis", [])}

    async def check(self, text: str) -> Verdict:
        pieces = [text[i:i + MAX_CHARS] for i in range(0, len(text), MAX_CHARS)] or [""]
        try:
            results = await asyncio.gather(*(self._analyze(p) for p in pieces))
        except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError, ValueError, KeyError,
                TypeError) as exc:
            return Verdict(self.name, None, error=f"{type(exc).__name__}: {exc}"[:300])
        worst: dict[str, int] = {}
        for r in results:
            for cat, sev in r.items():
                worst[cat] = max(worst.get(cat, 0), sev)
        cats = tuple(Category(c, s) for c, s in sorted(worst.items()) if s > 0)
        return Verdict(self.name, any(c.severity >= self.threshold for c in cats), cats)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
