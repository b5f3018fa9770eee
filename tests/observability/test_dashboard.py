"""The metric names agree everywhere: what the processes export (`budrt.metrics`), the root
README's table, and the Grafana dashboard's queries; and the exposition passes Prometheus' own
linter (`promtool check metrics`: naming conventions, units, `_total` counters)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from budrt import metrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "bud-runtime.json"
_NAME = re.compile(r"\bbud_[a-z_]+")
_SUFFIXES = ("_bucket", "_count", "_sum")
_CALLBACK_FAMILIES = {
    metrics.ENGINE_RUNNING,
    metrics.ENGINE_WAITING,
    metrics.ENGINE_KV_CACHE,
    metrics.ENGINE_PROMPT_TOKENS,
    metrics.ENGINE_GENERATION_TOKENS,
    metrics.DEPLOYMENT_REPLICAS,
}


def _exported() -> set[str]:
    """The names a query may use: each counter's `_total`, each histogram's three series."""
    names = set()
    for family in [*metrics.REGISTRY.collect()]:
        if not family.name.startswith("bud_"):
            continue
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + s for s in _SUFFIXES)
        else:
            names.add(family.name)
    names |= {
        metrics.ENGINE_RUNNING,
        metrics.ENGINE_WAITING,
        metrics.ENGINE_KV_CACHE,
        metrics.DEPLOYMENT_REPLICAS,
    }
    names |= {metrics.ENGINE_PROMPT_TOKENS + "_total", metrics.ENGINE_GENERATION_TOKENS + "_total"}
    return names


def _base(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_the_dashboard_queries_only_exported_series() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    used = {name for expr in exprs for name in _NAME.findall(expr)}
    assert used <= _exported(), used - _exported()
    # Every family the platform exports has a panel.
    missing = {_base(n) for n in _exported()} - {_base(n) for n in used}
    assert not missing, missing


def test_the_readme_lists_every_exported_series() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Observability", 1)[1].split("\n## ", 1)[0]
    listed = {name for name in _NAME.findall(section) if not name.startswith("bud_prompt")}
    listed = {n for n in listed if n.startswith("bud_") and "." not in n}
    histograms = {_base(n) for n in _exported() if n.endswith("_bucket")}
    expected = {n for n in _exported() if not n.endswith(_SUFFIXES)} | histograms
    assert expected <= listed, expected - listed


def test_the_exposition_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    registry = CollectorRegistry()
    for family in metrics.REGISTRY.collect():
        # The callback families come from the sources below (a gateway another test started may
        # have left its own registered in the process's registry).
        if family.name.startswith("bud_") and family.name not in _CALLBACK_FAMILIES:
            registry.register(_Fixed(family))
    sources = metrics._Callbacks()
    state = SimpleNamespace(
        running=1, waiting=0, kv_cache_usage=0.5, prompt_tokens_total=3, generation_tokens_total=2
    )
    sources.add("engine", metrics.engine_stats(lambda: [("m-g1", state)]))
    sources.add("replicas", metrics.replicas(lambda: [("d", "p", 1, True)]))
    registry.register(sources)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=generate_latest(registry), capture_output=True, timeout=30
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


class _Fixed:
    """One family as collected (a registry of its own for the lint)."""

    def __init__(self, family: object) -> None:
        self.family = family

    def collect(self) -> list[object]:
        return [self.family]
