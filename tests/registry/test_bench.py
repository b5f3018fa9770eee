"""`budrt bench`: the load generator's arithmetic, the hardware profile, the engine configuration
and the table (unit); and the real command against the in-process stack (app with the registry,
the instant engine, the gateway): a result recorded, listed over REST and ranked on the
leaderboard beside a hand-made card's model-index results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from bud.registry.v1 import registry_pb2 as R
from registry import hardware
from registry.bench import engine_config, parse_concurrency, table
from registry.loadgen import Level, Sample, percentile, prompt_of
from tests.app.conftest import ADMIN_PASSWORD
from tests.gateway.test_fuzz_openapi import in_process_stack, prepare
from tests.registry.models_on_disk import small_llama
from tests.registry.test_benchmarks_leaderboard import card_with_results

ROOT = Path(__file__).resolve().parents[2]


def test_percentiles_and_a_level_as_a_load_point() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile(list(map(float, range(1, 101))), 99) == 99.0
    level = Level(4, duration=2.0, errors=["HTTP 503"])
    level.samples = [Sample(ttft=0.1, e2e=1.1, output_tokens=11, input_tokens=5), Sample(0.3, 0.3, 1, 5)]
    point = level.point()
    assert (point.concurrency, point.requests, point.errors) == (4, 2, 1)
    assert point.requests_per_s == 1.0 and point.output_tokens_per_s == 6.0
    assert point.ttft_p50_ms == pytest.approx(100) and point.ttft_p99_ms == pytest.approx(300)
    # TPOT only from answers of two tokens or more: (1.1 - 0.1) / 10.
    assert point.tpot_p50_ms == pytest.approx(100) and point.tpot_p99_ms == pytest.approx(100)
    assert point.e2e_p99_ms == pytest.approx(1100) and point.output_tokens_mean == 6.0
    assert len(prompt_of(64).split()) == 64


def test_concurrency_levels() -> None:
    assert parse_concurrency("16, 1,4,4") == (1, 4, 16)
    for bad in ("", "0", "a,b", "1,-2", "5000"):
        with pytest.raises(ValueError, match="--concurrency"):
            parse_concurrency(bad)


def test_hardware_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert (
        hardware._cpu_model("processor : 0\nmodel name\t: Intel(R)  Xeon(R) Gold\n")
        == "Intel(R) Xeon(R) Gold"
    )
    assert hardware._memory_bytes("MemTotal:       16384 kB\n") == 16 * 1024**2
    # No nvidia-smi: no GPU.
    monkeypatch.setenv("PATH", str(tmp_path))
    here = hardware.capture()
    assert here.gpu_count == 0 and here.gpu_name == "" and here.cpu_cores == os.cpu_count()
    assert here.key.startswith("cpu | ") and here.memory_bytes > 0
    # A fake nvidia-smi with two GPUs.
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200'\necho 'NVIDIA H200'\n")
    smi.chmod(0o755)
    gpus = hardware.capture()
    assert (gpus.gpu_name, gpus.gpu_count) == ("NVIDIA H200", 2) and gpus.key.startswith("2x NVIDIA H200 | ")


def test_engine_configuration_and_table() -> None:
    deployment = {
        "name": "chat",
        "model": {"hugging_face_id": "org/m"},
        "engine_args": {"max_model_len": 2048, "dtype": "float32"},
        "runner": "RUNNER_GENERATE",
        "caching": True,
        "endpoints": [{"engine_id": "e1"}],
        "scaling": {"max_concurrency": 8},
    }
    assert engine_config(deployment) == {
        "model.hugging_face_id": "org/m",
        "engine_args.max_model_len": "2048",
        "engine_args.dtype": "float32",
        "runner": "RUNNER_GENERATE",
        "caching": "true",
        "replicas": "1",
        "scaling.max_concurrency": "8",
    }
    text = table(
        [R.BenchmarkLoadPoint(concurrency=4, requests=8, ttft_p50_ms=12.345, output_tokens_per_s=99.9)]
    )
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["conc", "ok", "err"] and "12.3 ms" in lines[1] and "99.9" in lines[1]


@pytest.mark.integration  # the in-process stack and a `budrt` subprocess (~30 s)
def test_budrt_bench_records_a_result_shown_on_the_leaderboard(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    with in_process_stack(tmp_path) as (url, api_key):
        target = prepare(url, api_key, ADMIN_PASSWORD)
        auth = {"authorization": f"Bearer {target.token}"}
        chat = next(m for m in target.models if "minilm" not in m and "diffusion" not in m)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BUD_")},
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
            "BUD_DATA_DIR": str(tmp_path / "cli"),
            "OPENAI_API_KEY": api_key,
            "BUDRT_ADMIN_TOKEN": target.token,
        }
        run = subprocess.run(
            [sys.executable, "-m", "budrt", "bench", "--deployment", chat, "--url", url]
            + ["--concurrency", "1,2", "--requests", "4", "--output-tokens", "8", "--notes", "ci"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "recorded rbr_" in run.stdout and "TTFT p50" in run.stdout, run.stdout

        listed = requests.get(
            f"{url}/v1/registry/benchmarks?deployment_name={chat}", headers=auth, timeout=30
        )
        assert listed.status_code == 200, listed.text
        [result] = listed.json()["results"]
        assert (
            result["source"] == "budrt-bench" and result["notes"] == "ci" and result["benchmark"] == "serving"
        )
        assert result["model_name"] and result["model_id"] == ""  # a builtin: no registry entry
        assert [p["concurrency"] for p in result["load_points"]] == [1, 2]
        for point in result["load_points"]:
            assert point["requests"] == 4 and point["errors"] == 0
            assert 0 < point["ttft_p50_ms"] <= point["e2e_p50_ms"] and point["output_tokens_per_s"] > 0
        assert result["hardware"]["cpu_cores"] == os.cpu_count() and result["hardware"]["key"]
        assert result["engine_config"]["runner"] and "caching" in result["engine_config"]
        hw = result["hardware"]["key"]

        # A registered model whose hand-made card carries model-index results, with a result of
        # its own recorded over REST (the model's path).
        directory = small_llama(tmp_path / "models" / "carded")
        (directory / "README.md").write_text(card_with_results("carded", 55.0, 8.0))
        created = requests.post(
            f"{url}/v1/registry/models", json={"local_path": str(directory)}, headers=auth, timeout=30
        )
        assert created.status_code == 200, created.text
        model_id = created.json()["model"]["id"]
        point = {"concurrency": 1, "requests": 4, "ttft_p50_ms": 10**6, "output_tokens_per_s": 0.5}
        posted = requests.post(
            f"{url}/v1/registry/models/{model_id}/benchmarks",
            json={"hardware": result["hardware"], "load_points": [point]},
            headers=auth,
            timeout=30,
        )
        assert posted.status_code == 200 and posted.json()["result"]["model_name"] == "carded", posted.text
        bad = requests.post(
            f"{url}/v1/registry/benchmarks", json={"benchmark": "x"}, headers=auth, timeout=30
        )
        assert (
            bad.status_code == 400
            and bad.json()["details"][1]["fieldViolations"][0]["field"] == "result.metric"
        )
        user = {"authorization": f"Bearer {api_key}"}  # an API key is no login
        assert requests.get(f"{url}/v1/registry/benchmarks", headers=user, timeout=30).status_code == 401

        board = requests.get(f"{url}/v1/registry/leaderboard?refresh=true", headers=auth, timeout=30)
        assert board.status_code == 200, board.text
        entries = board.json()["entries"]
        ttft = [
            (e["rank"], e["model_name"])
            for e in entries
            if e["metric"] == "ttft_p50_ms" and e["hardware_profile"] == hw and e.get("concurrency") == 1
        ]
        assert ttft == [(1, result["model_name"]), (2, "carded")]
        card = [e for e in entries if e["source"] == "model_card" and e["metric"] == "accuracy"]
        assert [(e["rank"], e["model_id"], e["value"]) for e in card] == [(1, model_id, 55.0)]
        one = requests.get(
            f"{url}/v1/registry/leaderboard",
            params={"benchmark": "serving", "metric": "output_tokens_per_s", "hardware_profile": hw},
            headers=auth,
            timeout=30,
        ).json()
        assert (
            {e["concurrency"] for e in one["entries"]} == {1, 2}
            and one["refresh_time"]
            and one["next_refresh_time"]
        )
