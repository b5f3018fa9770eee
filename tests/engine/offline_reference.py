"""Reference outputs from vLLM's offline `LLM`, for the engine faithfulness tests.

Runs as its own process (vLLM spawns engine-core processes, which does not mix with pytest):

    python tests/engine/offline_reference.py IN.json OUT.json

IN.json holds one or more jobs, each an offline `LLM` and the requests to run on it:

    {"jobs": [
      {"engine": {"model": DIR, "runner": "generate", "dtype": "float32", "max_model_len": 2048, ...},
       "requests": [
         {"kind": "chat", "messages": [...], "params": {SamplingParams kwargs}},
         {"kind": "completion", "prompt": "text", "params": {...}},
         {"kind": "embed", "inputs": ["text", ...]}]}]}

`engine` is passed to `vllm.LLM(**engine)` as is (plus `kv_cache_memory_bytes` when absent).
Each request runs on its own (one `LLM.chat` / `LLM.generate` / `LLM.embed` call), so no other
request shares its batch. OUT.json: {"jobs": [{"results": [...]}]} with, per generation request,
text, token_ids, prompt_token_ids, finish_reason and per-token logprobs (the decoded token
string, its logprob and the top alternatives, exactly as vLLM's server gets them), and per
embed request the embeddings.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from typing import Any

# The per-engine kv_cache_memory_bytes below only counts when this is unset (vLLM's CPU platform
# lets the variable override it).
os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_KV_CACHE_BYTES = 64 * 1024 * 1024


def _logprobs(completion: Any) -> list[dict[str, Any]] | None:
    if completion.logprobs is None:
        return None
    rows = []
    for token_id, position in zip(completion.token_ids, completion.logprobs, strict=True):
        chosen = position[token_id]
        rows.append(
            {
                "token_id": token_id,
                "token": chosen.decoded_token,
                "logprob": chosen.logprob,
                "rank": chosen.rank,
                # In vLLM's order (the sampled token first, then the top-k): the server's
                # top_logprobs are the first entries of this.
                "top": [
                    {"token_id": tid, "token": lp.decoded_token, "logprob": lp.logprob, "rank": lp.rank}
                    for tid, lp in position.items()
                ],
            }
        )
    return rows


def _generation(output: Any) -> dict[str, Any]:
    completion = output.outputs[0]
    return {
        "text": completion.text,
        "token_ids": list(completion.token_ids),
        "prompt_token_ids": list(output.prompt_token_ids or []),
        "finish_reason": completion.finish_reason,
        "stop_reason": completion.stop_reason,
        "logprobs": _logprobs(completion),
    }


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    from vllm import LLM, SamplingParams

    engine = dict(job["engine"])
    engine.setdefault("kv_cache_memory_bytes", DEFAULT_KV_CACHE_BYTES)
    started = time.monotonic()
    llm = LLM(**engine)
    load_s = time.monotonic() - started
    results: list[dict[str, Any]] = []
    try:
        for request in job["requests"]:
            kind = request["kind"]
            if kind == "embed":
                outputs = llm.embed(request["inputs"], use_tqdm=False)
                results.append(
                    {
                        "embeddings": [list(map(float, o.outputs.embedding)) for o in outputs],
                        "prompt_token_ids": [list(o.prompt_token_ids) for o in outputs],
                    }
                )
                continue
            params = dict(request.get("params", {}))
            if "structured_outputs" in params:
                from vllm.sampling_params import StructuredOutputsParams

                params["structured_outputs"] = StructuredOutputsParams(**params["structured_outputs"])
            params = SamplingParams(**params)
            if kind == "chat":
                (output,) = llm.chat(
                    [request["messages"]],
                    params,
                    use_tqdm=False,
                    tools=request.get("tools"),
                    **request.get("chat_kwargs", {}),
                )
            elif kind == "completion":
                (output,) = llm.generate([request["prompt"]], params, use_tqdm=False)
            else:
                raise ValueError(f"unknown request kind {kind!r}")
            results.append(_generation(output))
    finally:
        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()
    return {"results": results, "load_s": load_s, "run_s": time.monotonic() - started - load_s}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        spec = json.load(f)
    out = {"jobs": [run_job(job) for job in spec["jobs"]]}
    with open(argv[2], "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
