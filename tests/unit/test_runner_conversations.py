"""The runner with conversations: turns of one conversation in order and never overlapping,
conversations concurrent, a failed turn ends its conversation, a stop sends no further turns."""

from __future__ import annotations

import asyncio
import time

from servemark.client.openai import RequestSpec
from servemark.load.runner import RunControl, run_point
from servemark.load.schedule import LoadPoint
from servemark.metrics.record import RequestRecord
from servemark.workload.base import Conversation, renumber


def conversations(n: int, turns: int, first_id: int = 0) -> list[Conversation]:
    out = []
    rid = first_id
    for _ in range(n):
        cid = rid
        specs = []
        for k in range(1, turns + 1):
            specs.append(RequestSpec(rid, "chat", messages=({"role": "user", "content": "x"},),
                                     conversation_id=cid, turn=k))
            rid += 1
        out.append(Conversation(cid, tuple(specs)))
    return out


class TurnSender:
    """Sleeps ``delay`` per request; logs (conversation, turn, start, end) and what overlapped."""

    def __init__(self, delay: float, fail: set[tuple[int, int]] | None = None) -> None:
        self.delay = delay
        self.fail = fail or set()
        self.log: list[tuple[int, int, float, float]] = []
        self.active: dict[int, int] = {}
        self.overlap = False
        self.max_in_flight = 0

    async def __call__(self, spec: RequestSpec, scheduled: float | None) -> RequestRecord:
        cid, turn = spec.conversation_id, spec.turn
        assert cid is not None and turn is not None
        if self.active.get(cid):
            self.overlap = True
        self.active[cid] = self.active.get(cid, 0) + 1
        self.max_in_flight = max(self.max_in_flight, sum(self.active.values()))
        start = time.perf_counter()
        await asyncio.sleep(self.delay)
        end = time.perf_counter()
        self.active[cid] -= 1
        self.log.append((cid, turn, start, end))
        ok = (cid, turn) not in self.fail
        return RequestRecord(spec.request_id, "p", "e", "chat", start, end, ok=ok,
                             error_kind=None if ok else "http_status",
                             conversation_id=cid, turn=turn)


async def test_turns_sequential_conversations_concurrent() -> None:
    send = TurnSender(0.02)
    got: list[RequestRecord] = []
    convs = conversations(8, 3)
    out = await run_point(LoadPoint(concurrency=4), iter(convs), send, got.append,
                          num_requests=8, duration_s=None, control=RunControl())
    assert out.sent == 24 and len(got) == 24
    assert not send.overlap and send.max_in_flight == 4
    by_conv: dict[int, list[tuple[int, float, float]]] = {}
    for cid, turn, start, end in send.log:
        by_conv.setdefault(cid, []).append((turn, start, end))
    assert sorted(by_conv) == [c.conversation_id for c in convs]
    for turns in by_conv.values():
        assert [t for t, _, _ in turns] == [1, 2, 3]
        for (_, _, end_prev), (_, start_next, _) in zip(turns, turns[1:], strict=False):
            assert start_next >= end_prev  # the next turn waits for the previous answer
    assert {(r.conversation_id, r.turn) for r in got} == {(c.conversation_id, k) for c in convs for k in (1, 2, 3)}


async def test_open_loop_schedules_conversations_not_turns() -> None:
    send = TurnSender(0.01)
    scheduled: list[tuple[int | None, float | None]] = []

    async def recording(spec: RequestSpec, when: float | None) -> RequestRecord:
        scheduled.append((spec.turn, when))
        return await send(spec, when)

    await run_point(LoadPoint(request_rate=200, arrival="constant"), iter(conversations(5, 2)),
                    recording, lambda r: None, num_requests=5, duration_s=None, control=RunControl())
    assert len(scheduled) == 10
    # a conversation arrives on the schedule; its later turns follow the previous answer
    assert all(when is not None for turn, when in scheduled if turn == 1)
    assert all(when is None for turn, when in scheduled if turn == 2)


async def test_failed_turn_ends_its_conversation() -> None:
    send = TurnSender(0.001, fail={(3, 2)})
    got: list[RequestRecord] = []
    await run_point(LoadPoint(concurrency=2), iter(conversations(3, 3)), send, got.append,
                    num_requests=3, duration_s=None, control=RunControl())
    turns_of_3 = sorted(r.turn for r in got if r.conversation_id == 3)
    assert turns_of_3 == [1, 2] and len(got) == 8


async def test_stop_sends_no_further_turns() -> None:
    send = TurnSender(0.03)
    control = RunControl(grace_period_s=5)
    control.bind(asyncio.get_running_loop())
    got: list[RequestRecord] = []
    asyncio.get_running_loop().call_later(0.045, control.interrupt)
    await run_point(LoadPoint(concurrency=2), iter(conversations(4, 5)), send, got.append,
                    num_requests=4, duration_s=None, control=control)
    # two conversations started; each finished the turn in flight (turn 2) and sent no more
    assert sorted((r.conversation_id, r.turn) for r in got) == [(0, 1), (0, 2), (5, 1), (5, 2)]


def test_renumber_keeps_conversation_structure() -> None:
    conv = conversations(1, 3)[0]
    moved = renumber(conv, 100)
    assert isinstance(moved, Conversation) and moved.conversation_id == 100
    assert [(t.request_id, t.conversation_id, t.turn) for t in moved.turns] == [(100, 100, 1), (101, 100, 2), (102, 100, 3)]
