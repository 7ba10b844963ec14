"""Clock offset of a Ray worker on another machine, from ping-pong samples (pure)."""

from __future__ import annotations

import pytest

from servemark.load.rayworkers import boot_id, clock_offset


def test_offset_from_the_shortest_round_trip() -> None:
    # the worker's clock runs 1000 s ahead of the parent's; one-way delays vary
    true = 1000.0
    samples = []
    for parent, up, down in ((5.0, 0.004, 0.004), (6.0, 0.0005, 0.0007), (7.0, 0.02, 0.001)):
        samples.append((parent - up + true, parent, parent + down + true))
    got = clock_offset(samples)
    assert got == pytest.approx(true, abs=0.0001)  # within half the best round trip (0.6 ms)
    assert abs(got - true) <= (0.0005 + 0.0007) / 2


def test_boot_id_is_stable_on_this_machine() -> None:
    assert boot_id() == boot_id()


def test_ray_init_keeps_our_sigterm_handler() -> None:
    """Ray's driver connect installs a SIGTERM handler calling sys.exit(15); we put ours back."""
    import os
    import signal

    from servemark.rayinit import init_keeping_signals

    got: list[str] = []

    class Stop(Exception):
        pass

    class FakeRay:
        def __init__(self, stop: bool) -> None:
            self.stop = stop

        def init(self, **kwargs):
            def rays(signum, frame):  # what ray.init installs
                raise SystemExit(signum)

            signal.signal(signal.SIGTERM, rays)
            if self.stop:  # a stop while connecting
                os.kill(os.getpid(), signal.SIGTERM)
            return kwargs

    def ours(signum, frame):
        got.append("ours")
        raise Stop

    old = signal.signal(signal.SIGTERM, ours)
    try:
        assert init_keeping_signals(FakeRay(False), address="x") == {"address": "x"}
        assert signal.getsignal(signal.SIGTERM) is ours and got == []
        with pytest.raises(Stop):
            init_keeping_signals(FakeRay(True), address="x")
        assert signal.getsignal(signal.SIGTERM) is ours and got == ["ours"]
    finally:
        signal.signal(signal.SIGTERM, old)
