"""The library entry point: ``bench(config) -> BenchResult``. The CLI is a thin layer over it.

One call: probe the endpoint, build the workload, run each load point, write every record as it
completes, summarize each point, and always leave a summary (marked partial when interrupted).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servemark.client.fasthttp import FastTransport
from servemark.client.openai import GenerationOptions, RequestSpec
from servemark.client.ports import is_ports_exhausted, local_port_range, ports_exhausted_message
from servemark.client.probe import EndpointInfo, probe
from servemark.client.request import Target, execute
from servemark.client.transport import AiohttpTransport, HttpRequest, Timeouts, Transport
from servemark.errors import ConfigError, ResultsError
from servemark.load import eventloop, steal
from servemark.load.balance import EndpointPicker, make_picker
from servemark.load.limits import ensure_open_files
from servemark.load.looplag import LoopLag
from servemark.load.runner import LiveCounters, RunControl, run_point
from servemark.load.schedule import LoadPoint
from servemark.load.workers import plan_jobs, run_point_workers
from servemark.metrics.accumulate import PointAccumulator
from servemark.metrics.record import RequestRecord
from servemark.metrics.summary import PointSummary, by_endpoint_of, summary_of
from servemark.profile.sampler import MetricsSampler, observe_point, record_window
from servemark.progress import BenchProgress, NullProgress
from servemark.safety.factory import SafetyMonitor, make_checker
from servemark.spec import BenchConfig
from servemark.store import catalog, provenance
from servemark.store.resume import ResumeState, config_from_doc, load_resume_state
from servemark.store.rundir import (
    REQUESTS,
    SCHEMA,
    RunWriter,
    csv_row,
    default_run_dir,
    iter_records,
    utc_now,
)
from servemark.workload.base import (
    Conversation,
    WorkItem,
    Workload,
    count_requests,
    cycle_pool,
    requests_of,
)
from servemark.workload.factory import build_items, make_workload
from servemark.workload.tokenizer import Tokenizer, load_tokenizer, verify_tokenizer

PROMPT_POOL_FOR_DURATION = 1000
# Beyond this many requests per load point the work items are a pool of this many distinct
# ones reused in turn (fresh request ids), so a million-request run's memory stays bounded.
PROMPT_POOL_MAX = 50_000


@dataclass
class BenchResult:
    """What a benchmark produced: one summary per load point and where the files are."""

    run_dir: Path
    points: list[PointSummary]
    partial: bool
    endpoint: EndpointInfo
    model: str
    document: dict[str, Any] = field(default_factory=dict)
    # per load point, what its summary was computed from (bounded; e.g. for metric profiles)
    accumulators: dict[str, PointAccumulator] = field(default_factory=dict)

    def point(self, label: str) -> PointSummary:
        return next(p for p in self.points if p.label == label)


def bench(
    config: BenchConfig,
    progress: BenchProgress | None = None,
    control: RunControl | None = None,
    handle_signals: bool = False,
    argv: list[str] | None = None,
    resume: ResumeState | None = None,
) -> BenchResult:
    """Run a benchmark (blocking). ``handle_signals`` maps Ctrl-C to a graceful stop;
    ``resume`` continues a crashed run (see :func:`resume_bench`)."""
    return eventloop.run(abench(config, progress, control, handle_signals, argv, resume=resume))


def resume_bench(run_dir: Path, api_key: str | None = None, progress: BenchProgress | None = None,
                 control: RunControl | None = None, handle_signals: bool = False,
                 argv: list[str] | None = None) -> BenchResult:
    """Continue a run stopped by a crash or kill: same config, same seed, same request ids;
    finished load points are kept, only the requests not yet recorded are sent."""
    state = load_resume_state(run_dir)
    config = config_from_doc(state.doc, run_dir, api_key)
    return bench(config, progress, control, handle_signals, argv, resume=state)


def _auth_headers(config: BenchConfig) -> dict[str, str]:
    if config.api_key is None:
        return {}
    return {"Authorization": f"Bearer {config.api_key.get_secret_value()}"}


def _prompts(tok: Tokenizer, workload: Workload, n: int, seed: int, point_index: int,
             first_id: int, max_model_len: int | None) -> list[WorkItem]:
    items = build_items(workload, tok, n, seed, point_index, first_id)
    too_long = [s for i in items for s in requests_of(i)
                if max_model_len and (s.input_len or 0) + (s.output_len or 0) > max_model_len]
    if too_long:
        s = too_long[0]
        raise ConfigError(
            f"{len(too_long)} requests exceed the server's max model length {max_model_len} "
            f"(e.g. {s.input_len} input + {s.output_len} output tokens)",
            "shorten --input-len/--output-len (or --max-input-len for datasets), or restart the "
            "server with a larger --max-model-len",
        )
    return items


def _check_same_model(infos: list[EndpointInfo], model: str) -> None:
    """Load balancing compares like with like: every endpoint must serve the model."""
    for info in infos[1:]:
        if model not in info.models:
            raise ConfigError(
                f"{info.base_url} does not serve {model!r} (it serves {', '.join(info.models)})",
                "balance only across endpoints that serve the same model",
            )


def _accumulate_from_disk(run_dir: Path, label: str, threshold_tps: float | None,
                          by_endpoint: bool) -> PointAccumulator:
    """One load point's accumulator rebuilt by streaming requests.jsonl (bounded memory)."""
    acc = PointAccumulator(threshold_tps, by_endpoint=by_endpoint)
    for rec in iter_records(run_dir / REQUESTS):
        if rec is not None and rec.load_point == label:
            acc.add(rec)
    return acc


async def _prewarm(transport: Transport, base_url: str, n: int, headers: dict[str, str]) -> None:
    """Open ``n`` pooled connections before measuring, so a burst of TCP handshakes at the
    start of a load point is not counted as time to first token."""
    url = base_url.rstrip("/") + "/v1/models"

    out_of_ports: list[OSError] = []

    async def one() -> None:
        try:
            async with transport.open(HttpRequest("GET", url, None, headers)) as resp:
                await resp.read()
        except OSError as exc:
            if is_ports_exhausted(exc):
                out_of_ports.append(exc)
        except Exception:  # noqa: S110 - a failed warm-up connection is only a cold one
            pass

    await asyncio.gather(*(one() for _ in range(n)))
    if out_of_ports:  # the load point would fail request by request: say why, before it starts
        raise ConfigError(*ports_exhausted_message(local_port_range()))


async def abench(
    config: BenchConfig,
    progress: BenchProgress | None = None,
    control: RunControl | None = None,
    handle_signals: bool = False,
    argv: list[str] | None = None,
    transport: Transport | None = None,
    tokenizer: Tokenizer | None = None,
    resume: ResumeState | None = None,
) -> BenchResult:
    """Async form of :func:`bench`; ``transport`` and ``tokenizer`` may be injected (tests)."""
    progress = progress or NullProgress()
    control = control or RunControl(config.grace_period_s)
    loop = asyncio.get_running_loop()
    control.bind(loop)
    # SIGTERM and SIGHUP (a closed terminal) stop the run like a second Ctrl-C: in-flight
    # requests are cancelled, the summary is written, callers' `with` blocks stop servers
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) if handle_signals else ()
    previous = {s: signal.getsignal(s) for s in handled}
    if handle_signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, control.interrupt)
            loop.add_signal_handler(signal.SIGTERM, control.cancel)
            loop.add_signal_handler(signal.SIGHUP, control.cancel)
    own_transport = transport is None
    points_cfg = config.load_points()
    max_conn = max((p.concurrency or p.max_concurrency or 0) for p in points_cfg) or 0
    if max_conn:
        ensure_open_files(-(-max_conn // config.workers))  # each process holds its share
    timeouts = Timeouts(config.connect_timeout_s, config.read_timeout_s, config.request_timeout_s)
    net: Transport = transport or (
        FastTransport(max_conn, timeouts) if config.http_client == "fast"
        else AiohttpTransport(max_conn, timeouts)
    )
    headers = _auth_headers(config)
    writer: RunWriter | None = None
    doc: dict[str, Any] = {}
    resources = contextlib.AsyncExitStack()  # background observers (server metrics)
    try:
        checker = None if config.safety_check is None else make_checker(
            config.safety_check, rules=config.safety_rules, headers=headers,
            judge_url=config.judge_url, judge_model=config.judge_model)
        urls = config.base_urls
        progress.message(f"probing {', '.join(urls)}")
        infos = [await probe(net, url, config.model, headers) for url in urls]
        info = infos[0]
        model = config.model
        if model is None:
            if len(info.models) != 1:
                raise ConfigError(
                    f"the server serves {len(info.models)} models ({', '.join(info.models)})",
                    "choose one with --model",
                )
            model = info.models[0]
        _check_same_model(infos, model)
        if tokenizer is None:
            progress.message("loading tokenizer")
            tokenizer = await asyncio.to_thread(
                load_tokenizer, config.tokenizer, urls[0], model, headers
            )
            if config.verify_tokenizer:
                await asyncio.to_thread(verify_tokenizer, tokenizer, urls[0], model, headers)
        workload = await asyncio.to_thread(make_workload, config)
        run_dir = config.output_dir or default_run_dir(config.results_root, model)
        writer = RunWriter(run_dir, resume=resume is not None)
        doc = {
            "schema": SCHEMA,
            "status": "running",
            "partial": True,
            "started_at": utc_now(),
            "finished_at": None,
            "provenance": provenance.collect(argv),
            "endpoint": {"base_url": info.base_url, "models": info.models,
                         "server_version": info.server_version, "max_model_len": info.max_model_len},
            "model": model,
            "tokenizer": tokenizer.name,
            "config": config.public_dict(),
            **({"endpoints": [i.base_url for i in infos], "lb_policy": config.lb_policy}
               if len(infos) > 1 else {}),
            "points": [],
        }
        if resume is not None:  # keep the first attempt's provenance and finished points
            doc = {**resume.doc, "status": "running", "partial": True, "finished_at": None}
            doc["resumes"] = [*doc.get("resumes", []), {
                "at": utc_now(), "records_kept": resume.records_kept,
                "torn_bytes_dropped": resume.torn_bytes}]
        writer.write_summary(doc)
        opts = GenerationOptions(model=model, stream=config.stream, ignore_eos=config.ignore_eos,
                                 temperature=config.temperature, extra_body=config.extra_body,
                                 first_token_timeout_s=config.first_token_timeout_s,
                                 retries=config.retries, retry_max_wait_s=config.retry_max_wait_s)
        targets = {url: Target(url, tuple(headers.items())) for url in urls}
        summaries: list[PointSummary] = []
        accumulators: dict[str, PointAccumulator] = {}
        # a resumed run's clock continues where the recorded one stopped
        t0 = time.perf_counter() - (resume.time_offset_s if resume is not None else 0.0)
        sampler = None
        if config.server_metrics:
            sampler = await resources.enter_async_context(MetricsSampler(
                urls, run_dir, config.metrics_interval_s, headers, t0))
        safety = None
        if checker is not None:
            safety = await resources.enter_async_context(
                SafetyMonitor(checker, run_dir, config.safety_on))
        ray = None
        if config.ray_address:
            from servemark.load.rayworkers import RayCluster

            ray = resources.enter_context(RayCluster(config.ray_address))
        next_id = 0
        for index, point in enumerate(points_cfg):
            if control.stop_requested:
                break
            n = config.effective_num_requests
            pool_size = min(n, PROMPT_POOL_MAX) if n is not None else PROMPT_POOL_FOR_DURATION
            progress.message(f"building {pool_size + config.warmup} {config.workload} work items")
            seed = config.seed * 1_000_003 + index
            specs = await asyncio.to_thread(
                _prompts, tokenizer, workload, pool_size + config.warmup, config.seed, index,
                next_id, info.max_model_len,
            )
            warm, measured = specs[: config.warmup], specs[config.warmup:]
            next_id += count_requests(specs)
            label = point.label
            point_duration = config.duration_s
            prior = None
            if resume is not None:
                if label in resume.done_labels:
                    summaries.append(next(PointSummary.from_dict(p) for p in doc["points"]
                                          if p.get("label") == label))
                    continue
                prior = resume.prior(label)  # ids, counts and accumulator: not the records
                if prior is not None:
                    seen = prior.ids
                    # an item (request or conversation) counts as sent once its first request is recorded
                    measured = [i for i in measured if requests_of(i)[0].request_id not in seen]
                    if n is not None:
                        n = max(0, n - prior.first_requests)
                    warm = []
                    next_id = max(next_id, prior.max_id + 1)
                    if point_duration is not None:
                        point_duration = max(point_duration - prior.elapsed_s, 0.001)

            picker = make_picker(config.lb_policy, urls)  # chosen per request

            def on_text(rec: RequestRecord, text: str) -> None:
                assert safety is not None
                safety.submit(rec.request_id, rec.load_point, "output", text)

            async def send(spec: RequestSpec, scheduled: float | None, label: str = label,
                           picker: EndpointPicker = picker) -> RequestRecord:
                if safety is not None:
                    prompt = spec.prompt or "\n".join(m.get("content", "") for m in spec.messages or ())
                    safety.submit(spec.request_id, label, "prompt", prompt)
                url = picker.acquire()
                try:
                    return await execute(net, targets[url], spec, opts, t0=t0, load_point=label,
                                         scheduled_s=None if scheduled is None else scheduled - t0,
                                         on_text=None if safety is None else on_text)
                finally:
                    picker.release(url)

            if warm:
                progress.message(f"{label}: {len(warm)} warm-up requests (not counted)")
                warm_point = LoadPoint(concurrency=min(len(warm), point.concurrency or point.max_concurrency or 8))
                await run_point(warm_point, iter(warm), send, lambda r: None,
                                num_requests=len(warm), duration_s=None, control=control)
                if control.stop_requested:
                    break

            for url in urls:
                await _prewarm(net, url, min(point.concurrency or point.max_concurrency or 16, 1024)
                               // len(urls) + 1, headers)
            # records are written and folded in as they complete, never kept (bounded memory)
            acc = PointAccumulator(config.threshold_tps, by_endpoint=len(urls) > 1)
            if prior is not None:
                acc.merge(prior.acc)
            live = LiveCounters()

            write_failed: list[ResultsError] = []

            def write_or_stop(write: Callable[[Any], None], data: Any,
                              write_failed: list[ResultsError] = write_failed) -> bool:
                """Append to requests.jsonl; a failed write (disk full) stops the run now and
                keeps what was written."""
                if write_failed:
                    return False
                try:
                    write(data)
                except ResultsError as exc:
                    write_failed.append(exc)
                    control.cancel()
                    return False
                return True

            def on_record(rec: RequestRecord, acc: PointAccumulator = acc,
                          live: LiveCounters = live, write_or_stop=write_or_stop) -> None:
                assert writer is not None
                if write_or_stop(writer.append, rec):
                    acc.add(rec)
                    progress.request_done(rec, live)

            def on_lines(data: bytes, last: RequestRecord, live: LiveCounters = live,
                         write_or_stop=write_or_stop) -> None:
                assert writer is not None
                if write_or_stop(writer.append_lines, data):
                    progress.request_done(last, live)

            progress.point_started(label, n, config.duration_s, live)
            cpu_start = time.process_time()
            # this machine's cores; Ray actors run elsewhere (their hosts are not read)
            ticks_start = steal.read_ticks() if ray is None else None
            loop_lag: float | None = None  # p99 lateness of the (latest) client event loop
            async with observe_point(sampler, label):
                if n == 0:  # resumed after every request of this point was recorded
                    cpu_s = 0.0
                elif config.workers > 1 or ray is not None:
                    if (n is None or n > len(measured)) and any(
                            isinstance(i, Conversation) for i in measured):
                        raise ConfigError("conversations cannot be reused across --workers in a "
                                          "--duration run", "use --num-requests, or drop --workers")
                    common = dict(targets=tuple(targets[u] for u in urls), lb_policy=config.lb_policy,
                                  opts=opts, timeouts=timeouts, http_client=config.http_client, t0=t0,
                                  label=label, grace_period_s=config.grace_period_s,
                                  threshold_tps=config.threshold_tps, by_endpoint=len(urls) > 1)
                    jobs = plan_jobs(point, measured, config.workers, n, point_duration,
                                     random.Random(seed + 7), common)
                    if ray is not None:
                        outcome = await ray.run_point(jobs, on_lines, control, live, acc)
                    else:
                        outcome = await run_point_workers(jobs, on_lines, control, live, acc)
                    if not outcome.complete:  # a worker died: summarize what reached the disk
                        acc = _accumulate_from_disk(writer.path, label, config.threshold_tps,
                                                    len(urls) > 1)
                    cpu_s = (time.process_time() - cpu_start + outcome.cpu_s) / len(jobs)
                    loop_lag = outcome.loop_lag_p99_s
                else:
                    cycled = n is None or n > len(measured)
                    source: Iterator[WorkItem] = (cycle_pool(measured, next_id) if cycled
                                                  else iter(measured))
                    lag = LoopLag().start()
                    try:
                        await run_point(point, source, send, on_record, num_requests=n,
                                        duration_s=point_duration, control=control, live=live,
                                        rng=random.Random(seed + 7))
                    finally:
                        lag.stop()
                    loop_lag = lag.p99_s
                    cpu_s = time.process_time() - cpu_start
            if write_failed:
                raise write_failed[0]
            summary = summary_of(acc, label, point.concurrency, point.request_rate, cpu_s,
                                 num_gpus=config.num_gpus, loop_lag_p99_s=loop_lag,
                                 steal_share=steal.steal_share(ticks_start, steal.read_ticks()))
            if len(urls) > 1:
                summary.by_endpoint = by_endpoint_of(acc, urls, label)
            accumulators[label] = acc
            if sampler is not None:
                record_window(doc, sampler, label, summary.input_tokens_total,
                              summary.output_tokens_total)
            if safety is not None:
                await safety.drain()
                doc["safety"] = safety.summary()
            if n is not None and n > len(measured):  # the reused pool's fresh ids go up to here
                next_id += n * -(-count_requests(measured) // max(len(measured), 1)) + config.workers
            summaries.append(summary)
            doc["points"].append(summary.to_dict())
            writer.write_summary(doc)
            writer.write_csv([csv_row(s, model, config.api) for s in summaries])
            progress.point_finished(summary)

        partial = control.stop_requested
        doc.update(status="interrupted" if partial else "complete", partial=partial,
                   finished_at=utc_now())
        writer.write_summary(doc)
        return BenchResult(run_dir, summaries, partial, info, model, doc, accumulators)
    except BaseException:
        if writer is not None:
            # keep what was measured: mark the run as failed but leave the files in place
            with contextlib.suppress(Exception):
                doc["status"] = "failed"
                doc["finished_at"] = utc_now()
                writer.write_summary(doc)
        raise
    finally:
        await resources.aclose()
        if writer is not None:
            writer.close()
            catalog.register_run(writer.path, config.results_root)  # derived index; never raises
        if own_transport:
            await net.close()
        for sig, handler in previous.items():  # asyncio would leave SIG_DFL behind
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)
