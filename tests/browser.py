"""Open a page in headless Chromium over the DevTools protocol (aiohttp websocket, no extra
packages): console errors, exceptions and log errors, a screenshot, and values from the DOM."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_binary() -> str | None:
    return next((p for name in CHROMIUM_NAMES if (p := shutil.which(name))), None)


@dataclass
class PageResult:
    screenshot_png: bytes
    value: Any  # what the evaluated expression returned
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, log errors
    console: list[str] = field(default_factory=list)  # every console/log message


async def _session(port: int, url: str, expression: str, timeout_s: float) -> PageResult:
    ids = itertools.count(1)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json(content_type=None)
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        async with http.ws_connect(ws_url, max_msg_size=0) as ws:
            pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
            events: list[dict[str, Any]] = []
            loaded = asyncio.Event()

            async def reader() -> None:
                async for msg in ws:
                    data = json.loads(msg.data)
                    if "id" in data and data["id"] in pending:
                        pending.pop(data["id"]).set_result(data)
                    elif "method" in data:
                        events.append(data)
                        if data["method"] == "Page.loadEventFired":
                            loaded.set()

            task = asyncio.create_task(reader())

            async def call(method: str, **params: Any) -> dict[str, Any]:
                i = next(ids)
                fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
                pending[i] = fut
                await ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
                reply = await asyncio.wait_for(fut, timeout_s)
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

            try:
                for domain in ("Page", "Runtime", "Log"):
                    await call(f"{domain}.enable")
                await call("Page.navigate", url=url)
                await asyncio.wait_for(loaded.wait(), timeout_s)
                await asyncio.sleep(0.5)  # let late console messages arrive
                value = (await call("Runtime.evaluate", expression=expression, returnByValue=True)
                         )["result"].get("value")
                metrics = await call("Page.getLayoutMetrics")
                size = metrics.get("cssContentSize") or metrics["contentSize"]
                shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                  clip={"x": 0, "y": 0, "width": size["width"],
                                        "height": min(size["height"], 12000), "scale": 1})
            finally:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
    import base64

    result = PageResult(base64.b64decode(shot["data"]), value)
    for ev in events:
        method, p = ev["method"], ev.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            result.console.append(f"console.{p.get('type')}: {text}")
            if p.get("type") in ("error", "assert"):
                result.errors.append(text)
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            result.errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
        elif method == "Log.entryAdded":
            entry = p.get("entry", {})
            result.console.append(f"log.{entry.get('level')}: {entry.get('text')}")
            if entry.get("level") == "error":
                result.errors.append(str(entry.get("text")))
    return result


def open_page(path: Path, profile_dir: Path, expression: str = "document.title",
              width: int = 1280, height: int = 1600, timeout_s: float = 60.0) -> PageResult:
    """Start a fresh headless Chromium, open ``path``, evaluate ``expression``, screenshot, quit."""
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("chromium not found")
    profile_dir.mkdir(parents=True, exist_ok=True)
    log = open(profile_dir.parent / f"{profile_dir.name}.stderr.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         f"--user-data-dir={profile_dir}", "--remote-debugging-port=0", "--remote-allow-origins=*",
         f"--window-size={width},{height}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        port_file = profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        return asyncio.run(_session(port, path.resolve().as_uri(), expression, timeout_s))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def png_is_blank(png: bytes) -> bool:
    """True when the image is (nearly) one colour."""
    import io

    import numpy as np
    from matplotlib.image import imread

    img = imread(io.BytesIO(png), format="png")
    flat = img[..., :3].reshape(-1, 3)
    return bool(flat.std() < 0.01) or len(np.unique((flat[::97] * 255).astype(int), axis=0)) < 4
