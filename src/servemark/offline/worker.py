"""The worker process of one offline measurement: ``python -m servemark.offline.worker IN OUT``.

Reads a job (JSON) from IN, starts vllm.LLM with the job's engine arguments, runs the warm-up
and timed iterations of ``generate`` on B token-id prompts (ignore_eos, max_tokens = O), and
writes the result (JSON) to OUT — also when it fails, with the reason. The only module that
imports vLLM.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from servemark.offline.prompts import candidate_ids, iteration_prompts


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if "out of memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
        return f"out of memory: {text}"
    return text


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Measure one point in this process; returns the result document."""
    import vllm
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    batch, in_len, out_len = job["batch_size"], job["input_len"], job["output_len"]
    warm, iters = job["num_iters_warmup"], job["num_iters"]
    llm = LLM(model=job["model"], **job["engine_args"])
    tok = llm.get_tokenizer()
    model_config = llm.llm_engine.model_config
    vocab = min(len(tok), model_config.get_vocab_size())
    batches = iteration_prompts(batch, in_len, warm + iters,
                                candidate_ids(vocab, tok.all_special_ids), job["seed"])
    params = SamplingParams(n=1, temperature=1.0, top_p=1.0, ignore_eos=True, max_tokens=out_len)
    result: dict[str, Any] = {
        "status": "ok", "latencies_s": [], "input_tokens": [], "output_tokens": [],
        "vllm_version": vllm.__version__, "max_model_len": model_config.max_model_len,
        "dtype": str(model_config.dtype).removeprefix("torch."),
    }
    for index, ids in enumerate(batches):
        prompts = [TokensPrompt(prompt_token_ids=p) for p in ids]
        start = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        if index < warm:
            continue
        result["latencies_s"].append(elapsed)
        result["input_tokens"].append(sum(len(o.prompt_token_ids or ()) for o in outputs))
        result["output_tokens"].append(sum(len(c.token_ids) for o in outputs for c in o.outputs))
    return result


def main(argv: list[str]) -> int:
    job_path, out_path = Path(argv[1]), Path(argv[2])
    job = json.loads(job_path.read_text())
    try:
        result = run(job)
    except BaseException as exc:  # the parent needs the reason whatever happened
        traceback.print_exc()
        _write(out_path, {"status": "failed", "error": _reason(exc)})
        return 1
    _write(out_path, result)
    # The result is on disk: skip vLLM's slow engine shutdown (seconds per point); the parent
    # kills this process group, engine processes included.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":  # vLLM's engine processes are spawned: this guard is required
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.exit(main(sys.argv))
