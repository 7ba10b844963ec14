"""Ephemeral ports exhausted (EADDRNOTAVAIL on connect): injected at the transport seam, never by
exhausting this machine's ports."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from servemark.api import _prewarm
from servemark.client.openai import GenerationOptions, RequestSpec
from servemark.client.ports import local_port_range, ports_exhausted_message
from servemark.client.request import Target, execute
from servemark.client.transport import HttpRequest, StreamResponse
from servemark.errors import ConfigError


class NoPortsTransport:
    """A transport whose every connect fails as the kernel does when no source port is free."""

    def __init__(self, wrap: bool = False) -> None:
        self.wrap = wrap
        self.opened = 0

    @asynccontextmanager
    async def open(self, request: HttpRequest) -> AsyncIterator[StreamResponse]:
        self.opened += 1
        err = OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        if self.wrap:  # aiohttp's form of the same failure
            from aiohttp.client_reqrep import ConnectionKey

            key = ConnectionKey("x", 80, False, True, None, None, None)
            raise aiohttp.ClientConnectorError(key, err)
        raise err
        yield  # pragma: no cover

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("wrap", [False, True])
async def test_request_failing_for_lack_of_ports_says_why_and_how_to_fix(wrap: bool) -> None:
    rec = await execute(NoPortsTransport(wrap), Target("http://x"),
                        RequestSpec(1, "completions", prompt="hi"), GenerationOptions(model="m"),
                        t0=0.0, load_point="p")
    assert not rec.ok and rec.error_kind == "local_ports"
    assert rec.error is not None and "EADDRNOTAVAIL" in rec.error
    assert "ip_local_port_range" in rec.error and "--ray-address" in rec.error
    rng = local_port_range()
    if rng is not None:  # the line shows this host's range
        assert f"{rng[0]} {rng[1]}" in rec.error


async def test_warm_up_stops_the_run_with_one_line_before_the_load_point() -> None:
    transport = NoPortsTransport()
    with pytest.raises(ConfigError) as info:
        await _prewarm(transport, "http://x", 8, {})  # type: ignore[arg-type]
    assert transport.opened == 8
    line = info.value.one_line()
    assert "\n" not in line and "out of local ports" in line and "sysctl" in line


def test_message_from_a_given_range(tmp_path: Path) -> None:
    f = tmp_path / "range"
    f.write_text("32768\t60999\n")
    rng = local_port_range(f)
    assert rng == (32768, 60999)
    what, fix = ports_exhausted_message(rng)
    assert "32768 60999" in what and "28,232 ports" in what
    assert "tcp_tw_reuse" in fix and "concurrency" in fix
    assert local_port_range(tmp_path / "missing") is None
    assert "EADDRNOTAVAIL" in ports_exhausted_message(None)[0]
