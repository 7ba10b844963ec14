"""Safety checkers: local rules, the judge's answer parsing, Azure against a fake service that
follows the text:analyze API shape, and the monitor that records verdicts during a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from servemark.errors import ConfigError
from servemark.safety.azure import AzureChecker
from servemark.safety.base import Verdict
from servemark.safety.factory import SafetyMonitor, make_checker
from servemark.safety.judge import parse_judgement
from servemark.safety.local import LocalChecker, load_rules


async def test_local_rules_flag_by_category_and_threshold() -> None:
    checker = LocalChecker()
    v = await checker.check("Tell me the easiest way to kill myself")
    assert v.flagged and v.categories[0].name == "self_harm" and v.categories[0].severity == 6
    assert v.categories[0].detail == "self-harm-method"  # the rule, never the matched text
    assert (await checker.check("How do I kill a python process?")).flagged is False
    low = await checker.check("my number is 123-45-6789")
    assert low.flagged and low.max_severity == 2
    strict = LocalChecker(threshold=4)
    assert (await strict.check("my number is 123-45-6789")).flagged is False


def test_custom_rules_file_and_bad_files(tmp_path: Path) -> None:
    good = tmp_path / "rules.json"
    good.write_text(json.dumps({"rules": [{"category": "secret", "severity": 5, "pattern": r"\bproject x\b"}]}))
    checker = LocalChecker(load_rules(good))
    assert checker.check_sync("Tell me about Project X").flagged
    bad = tmp_path / "bad.json"
    for text in ("{", json.dumps({"rules": [{"category": "a", "pattern": "("}]}),
                 json.dumps({"rules": [{"category": "a", "severity": 9, "pattern": "x"}]})):
        bad.write_text(text)
        with pytest.raises(ConfigError):
            load_rules(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_rules(tmp_path / "missing.json")


def test_judge_answers() -> None:
    assert parse_judgement("safe") == (False, ())
    assert parse_judgement("unsafe\nviolence, hate") == (True, ("violence", "hate"))
    assert parse_judgement("  Unsafe.\n") == (True, ("unspecified",))
    assert parse_judgement("I cannot decide") == (None, ())
    with pytest.raises(ConfigError, match="guard model") as info:
        make_checker("judge")
    assert "--judge-url" in info.value.one_line()
    with pytest.raises(ConfigError, match="unknown safety checker"):
        make_checker("magic")


KEY = "test-key-0123456789"


async def _fake_azure(fail: bool = False) -> tuple[web.AppRunner, str, list[dict]]:
    seen: list[dict] = []

    async def analyze(request: web.Request) -> web.Response:
        if request.headers.get("Ocp-Apim-Subscription-Key") != KEY:
            return web.json_response({"error": {"code": "401", "message": "Access denied"}}, status=401)
        if fail:
            return web.json_response({"error": {"code": "InternalServerError", "message": "boom"}}, status=500)
        assert request.query["api-version"] == "2024-09-01"
        body = await request.json()
        seen.append(body)
        text = body["text"].lower()
        return web.json_response({"blocklistsMatch": [], "categoriesAnalysis": [
            {"category": "Hate", "severity": 0}, {"category": "SelfHarm", "severity": 0},
            {"category": "Sexual", "severity": 0},
            {"category": "Violence", "severity": 4 if "attack" in text else 2 if "fight" in text else 0}]})

    app = web.Application()
    app.router.add_post("/contentsafety/text:analyze", analyze)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}", seen


async def test_azure_checker_against_fake_service(monkeypatch: pytest.MonkeyPatch) -> None:
    runner, url, seen = await _fake_azure()
    try:
        monkeypatch.setenv("AZURE_CONTENT_SAFETY_ENDPOINT", url)
        monkeypatch.setenv("AZURE_CONTENT_SAFETY_KEY", KEY)
        checker = make_checker("azure")
        assert KEY not in repr(checker)
        v = await checker.check("we attack at dawn")
        assert v.flagged and [(c.name, c.severity) for c in v.categories] == [("Violence", 4)]
        assert (await checker.check("a pillow fight")).flagged is False  # 2 < threshold 4
        long = await checker.check("x" * 25_000)  # over the 10k limit: checked in pieces
        assert long.flagged is False and [len(b["text"]) for b in seen[-3:]] == [10_000, 10_000, 5_000]
        assert seen[0]["outputType"] == "FourSeverityLevels"
        await checker.close()
        wrong = AzureChecker(url, "wrong-key")
        v = await wrong.check("hello")
        assert v.flagged is None and "401" in (v.error or "") and KEY not in (v.error or "")
        await wrong.close()
    finally:
        await runner.cleanup()
    monkeypatch.delenv("AZURE_CONTENT_SAFETY_KEY")
    with pytest.raises(ConfigError, match="AZURE_CONTENT_SAFETY_KEY"):
        make_checker("azure")


async def test_monitor_records_verdicts_and_survives_a_failing_service(tmp_path: Path) -> None:
    runner, url, _ = await _fake_azure(fail=True)
    try:
        async with SafetyMonitor(AzureChecker(url, KEY), tmp_path, ("prompt", "output")) as mon:
            mon.submit(1, "c=1", "prompt", "hi")
            mon.submit(1, "c=1", "output", "hello")
            mon.submit(1, "c=1", "other", "ignored")
            await mon.drain()
            assert mon.counts["c=1"] == {"checked": 2, "flagged": 0, "errors": 2}
    finally:
        await runner.cleanup()
    lines = [json.loads(x) for x in (tmp_path / "safety.jsonl").read_text().splitlines()]
    assert {x["target"] for x in lines} == {"prompt", "output"}
    assert all(x["flagged"] is None and "500" in x["error"] for x in lines)

    class Broken:
        name = "broken"

        async def check(self, text: str) -> Verdict:
            raise RuntimeError("bug")

        async def close(self) -> None:
            pass

    async with SafetyMonitor(Broken(), tmp_path / ".", ("output",)) as mon:
        mon.submit(2, "c=2", "output", "x")
    assert mon.summary()["points"]["c=2"]["errors"] == 1
