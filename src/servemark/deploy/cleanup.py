"""What ``servemark cleanup`` finds and does: leftover servers, deployments, Ray nodes and batch
jobs that a killed servemark (kill -9, OOM, a lost node) left behind.

Why a library function: the decisions (what counts as left behind, what ``--all`` adds, what a
dry run still tidies) are policy, and the CLI should only print. :func:`cleanup` acts as it goes
and yields one :class:`Outcome` per thing found, so a partial pass (Ctrl-C) has already done
and reported what it did.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from servemark.deploy import raynode, registry, submitted

# would: a dry run's finding; done: stopped or cancelled; kept: left running on purpose
# (``--all`` stops it); note: not checked from here
Kind = Literal["would", "done", "kept", "note"]


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    text: str


def cleanup(all_: bool = False, dry_run: bool = False) -> Iterator[Outcome]:
    """Stop what servemark started and no live servemark owns (with ``all_``: also detached
    deployments, Ray nodes started here and jobs submitted without --wait). Only recorded
    processes are signalled (checked by PID and start time) and only recorded jobs cancelled,
    on the cluster they went to, under their name. A dry run changes nothing but stale records
    of jobs that ended."""
    for entry in registry.leftovers():
        what = (f"{entry.kind} pid {entry.server.pid} ({entry.server.base_url}), left by servemark "
                f"pid {entry.owner_pid}")
        if dry_run:
            yield Outcome("would", f"would stop {what}")
            continue
        n = registry.stop_leftover(entry)
        yield Outcome("done", f"stopped {what}: {n} processes were alive")
    for record in registry.load_all():
        if not all_ and record.state() != "dead":
            continue
        alive = sum(len(s.leftovers()) for s in record.servers)
        if not all_ and alive == 0:  # all gone: only the record is stale
            if not dry_run:
                registry.stop(record)
            continue
        if dry_run:
            yield Outcome("would", f"would stop deployment {record.name}")
            continue
        registry.stop(record)
        yield Outcome("done", f"stopped deployment {record.name}")
    for node in raynode.load_all():
        if not all_ and node.alive():
            continue
        if dry_run:
            if node.processes():
                yield Outcome("would", f"would stop Ray {node.role} {node.name!r}")
            continue
        n = raynode.down(node)  # also forgets a node whose processes are all gone
        if n:
            yield Outcome("done", f"stopped Ray {node.role} {node.name!r} ({n} processes)")
    yield from _jobs(all_, dry_run)


def _jobs(all_: bool, dry_run: bool) -> Iterator[Outcome]:
    for rv in submitted.review(all_, prune=not dry_run):
        job = rv.job
        if rv.action == "elsewhere":
            yield Outcome("note", f"{job.scheduler} job {job.job_id} ({job.name}) went to another "
                                  f"cluster ({job.cluster}): not checked from here")
            continue
        why = (f"its servemark pid {job.owner_pid} is gone" if job.owned
               else "submitted without --wait")
        state = rv.status.state if rv.status else "?"
        what = f"{job.scheduler} job {job.job_id} ({job.name}, {state}, {why})"
        if rv.action == "keep":
            yield Outcome("kept", f"left running: {what}; `cleanup --all` cancels it")
            continue
        if dry_run:
            yield Outcome("would", f"would cancel {what}")
            continue
        submitted.cancel(job)
        yield Outcome("done", f"cancelled {what}")
