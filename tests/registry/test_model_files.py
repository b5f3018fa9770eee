"""Metadata from files only: safetensors headers, config.json, streamed hashes, and the model
roots held when links are followed."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from registry import model_files
from registry.model_files import ModelFilesError, describe, safetensors_summary
from tests.registry.models_on_disk import TINY_KV_PER_1K, TINY_PARAMETERS, small_llama, write_safetensors


def test_the_tiny_model_is_described_from_its_files(tiny_model_dir: Path) -> None:
    meta = describe(tiny_model_dir)
    assert meta.architecture == "LlamaForCausalLM" and meta.model_type == "llama"
    assert meta.parameter_count == TINY_PARAMETERS
    assert meta.context_length == 2048 and meta.dtype == "float32"
    assert meta.weights_bytes == TINY_PARAMETERS * 4
    assert meta.kv_cache_bytes_per_1k_tokens == TINY_KV_PER_1K
    assert meta.memory_bytes_estimate == TINY_PARAMETERS * 4 + TINY_KV_PER_1K * 2
    by_path = {f.path: f for f in meta.files}
    weights = tiny_model_dir / "model.safetensors"
    assert by_path["model.safetensors"].sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert by_path["model.safetensors"].size_bytes == weights.stat().st_size
    assert meta.total_size_bytes == sum(p.stat().st_size for p in tiny_model_dir.iterdir() if p.is_file())


def test_minilm_from_its_package(minilm_model_dir: Path) -> None:
    meta = describe(minilm_model_dir)
    assert meta.architecture == "BertModel" and meta.model_type == "bert"
    assert 22_000_000 < meta.parameter_count < 23_000_000  # all-MiniLM-L6-v2: 22.7M
    assert meta.context_length == 512
    assert "1_Pooling/config.json" in {f.path for f in meta.files}  # sub-folders are walked


def test_hashing_reports_progress_and_streams(tmp_path: Path) -> None:
    big = tmp_path / "weights.bin"
    big.write_bytes(b"x" * (3 * model_files.HASH_CHUNK + 5))
    seen: list[tuple[int, int]] = []
    [entry] = model_files.hash_files([("weights.bin", big)], lambda d, t: seen.append((d, t)))
    assert entry.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    assert len(seen) >= 4 and seen[-1] == (big.stat().st_size, big.stat().st_size)


def test_a_pickle_only_model_counts_weight_bytes_without_loading(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"], "n_positions": 1024}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really loaded")
    meta = describe(tmp_path)
    assert meta.parameter_count == 0 and meta.weights_bytes == len(b"\x80\x04not really loaded")
    assert meta.context_length == 1024


def test_dtype_from_the_tensors_when_config_says_none(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "a.safetensors", {"w": ("F16", [4, 4])})
    write_safetensors(tmp_path / "b.safetensors", {"v": ("F16", [2])})
    assert safetensors_summary([tmp_path / "a.safetensors", tmp_path / "b.safetensors"]) == (
        18,
        36,
        "float16",
    )
    assert describe(tmp_path).dtype == "float16"


@pytest.mark.parametrize(
    "content",
    [
        b"\x01",
        struct.pack("<Q", 10**12) + b"{}",
        struct.pack("<Q", 4) + b"nope",
        struct.pack("<Q", 2) + b"[]",
    ],
)
def test_a_malformed_safetensors_header_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "model.safetensors").write_bytes(content)
    with pytest.raises(ModelFilesError):
        describe(tmp_path)


def test_a_link_out_of_the_model_roots_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "models"
    model = small_llama(root / "m")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the catalogue")
    (model / "LICENSE").symlink_to(secret)
    with pytest.raises(ModelFilesError, match="links outside the model roots"):
        describe(model, [root])
    assert describe(model, [tmp_path]).files  # under a root that holds it: fine


def test_small_llama_requirements(tmp_path: Path) -> None:
    meta = describe(small_llama(tmp_path / "m"))
    assert meta.parameter_count == 100 * 64 + 64 and meta.dtype == "bfloat16"
    # 2 x 3 layers x 1 KV head x 16 head size x 2 bytes x 1024
    assert meta.kv_cache_bytes_per_1k_tokens == 2 * 3 * 1 * 16 * 2 * 1024
    assert meta.context_length == 4096
