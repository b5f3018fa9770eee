"""Evaluation results a model card publishes (its `model-index` metadata), parsed with
`huggingface_hub` (`ModelCard.data.eval_results`) at import and stored with the entry: what the
leaderboard ranks besides the recorded benchmarks.

Only numeric values are kept (a card may give "n/a" or a dict); a card whose model-index is
malformed gives none (its metadata errors are ignored: the licence still comes from it)."""

from __future__ import annotations

import math
from pathlib import Path

from huggingface_hub import ModelCard

from registry.db import models

# At most this many results per card (the largest cards carry a few hundred).
MAX_RESULTS = 1000
# Metrics where a lower value ranks first (matched against the metric's type and name).
_LOWER_IS_BETTER = (
    "perplexity",
    "ppl",
    "wer",
    "cer",
    "loss",
    "error",
    "latency",
    "ttft",
    "tpot",
    "e2e",
    "bpb",
)


def higher_is_better(metric: str) -> bool:
    """Whether a higher value of `metric` is better (accuracy, f1, ...); false for perplexity,
    error rates, losses and latencies."""
    lowered = metric.lower()
    return not any(word in lowered for word in _LOWER_IS_BETTER)


def card_evals(directory: Path) -> list[models.ModelEvalResult]:
    """The numeric evaluation results of the card (README.md) in `directory` (unsaved rows)."""
    card_path = directory / "README.md"
    if not card_path.is_file():
        return []
    try:
        card = ModelCard.load(card_path, ignore_metadata_errors=True)
    except (ValueError, OSError):  # unreadable front matter: no results, the import goes on
        return []
    rows: list[models.ModelEvalResult] = []
    for result in card.data.eval_results or []:
        value = result.metric_value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        rows.append(
            models.ModelEvalResult(
                position=len(rows),
                task=str(result.task_type or "")[:200],
                dataset=str(result.dataset_type or result.dataset_name or "")[:200],
                dataset_name=str(result.dataset_name or "")[:200],
                metric=str(result.metric_type or result.metric_name or "")[:200],
                metric_name=str(result.metric_name or "")[:200],
                value=float(value),
                verified=bool(result.verified),
            )
        )
        if len(rows) >= MAX_RESULTS:
            break
    return rows
