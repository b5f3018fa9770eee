"""Import sources: local directories held to the model roots, and Hugging Face repositories read
from a pre-filled HF cache through the real `snapshot_download` in offline mode (HF_HUB_OFFLINE=1),
as an air-gapped site imports."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from bud.registry.v1 import registry_pb2
from budrt.errors import ServiceError
from registry import importer, operations
from registry.db.migrate import upgrade_database
from registry.db.session import RegistryDatabase
from tests.registry.models_on_disk import COMMIT, TINY_PARAMETERS, hf_cache, small_llama


def test_a_directory_outside_the_roots_is_refused(tmp_path: Path) -> None:
    model = small_llama(tmp_path / "elsewhere" / "m")
    root = tmp_path / "models"
    root.mkdir()
    for source in (str(model), str(root / ".." / "elsewhere" / "m"), "relative/dir/../x", "/etc\0"):
        with pytest.raises(ServiceError) as err:
            importer.resolve(source, "", [root])
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and err.value.param == "source"
    linked = root / "link"
    linked.symlink_to(model)  # a link inside the roots to a directory outside them
    with pytest.raises(ServiceError):
        importer.resolve(str(linked), "", [root])


def test_a_local_directory_under_the_roots(tmp_path: Path) -> None:
    model = small_llama(tmp_path / "m")
    source = importer.resolve(str(model), "", [tmp_path])
    assert source.provider == registry_pb2.MODEL_PROVIDER_CUSTOM and source.directory == model.resolve()


def test_hugging_face_from_the_offline_cache(tmp_path: Path, tiny_model_dir: Path, hub_offline: None) -> None:
    cache = tmp_path / "hf"
    hf_cache(cache, "bud-test/tiny-llama", tiny_model_dir)
    source = importer.resolve("bud-test/tiny-llama", "", [], cache_dir=str(cache))
    assert source.provider == registry_pb2.MODEL_PROVIDER_HUGGING_FACE
    assert source.revision == COMMIT and source.hugging_face_id == "bud-test/tiny-llama"
    meta, found = importer.describe(source, [])
    assert meta.parameter_count == TINY_PARAMETERS and meta.architecture == "LlamaForCausalLM"
    assert {f.path for f in meta.files} >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert found.license_id == "unknown"  # the tiny model has no card: not guessed


def test_hugging_face_revision_pinned_to_the_cached_commit(
    tmp_path: Path, minilm_model_dir: Path, hub_offline: None
) -> None:
    cache = tmp_path / "hf"
    hf_cache(cache, "sentence-transformers/all-MiniLM-L6-v2", minilm_model_dir)
    source = importer.resolve("sentence-transformers/all-MiniLM-L6-v2", COMMIT, [], cache_dir=str(cache))
    meta, found = importer.describe(source, [])
    assert found.license_id == "Apache-2.0" and meta.architecture == "BertModel"


def test_hugging_face_not_cached_while_offline(tmp_path: Path, hub_offline: None) -> None:
    with pytest.raises(ServiceError) as err:
        importer.resolve("bud-test/absent", "", [], cache_dir=str(tmp_path / "hf"))
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION and "HF_HUB_OFFLINE" in err.value.message


@pytest.mark.parametrize("source", ["", "a/b/c", "-x", "x" * 300, "a/../b"])
def test_malformed_sources(source: str) -> None:
    with pytest.raises(ServiceError) as err:
        importer.check_source(source, "", [])
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_run_import_saves_the_entry(tmp_path: Path, tiny_model_dir: Path, hub_offline: None) -> None:
    cache = tmp_path / "hf"
    hf_cache(cache, "bud-test/tiny-llama", tiny_model_dir)
    stages: list[str] = []

    async def run() -> None:
        db = RegistryDatabase(f"sqlite:///{tmp_path / 'r.db'}")
        try:
            await upgrade_database(db)
            row = await operations.run_import(
                db, "bud-test/tiny-llama", "", "", ["chat"], [], str(cache), lambda s, d, t: stages.append(s)
            )
            assert row.name == "bud-test/tiny-llama" and row.scan_status == "SCAN_STATUS_PENDING"
            assert row.tags == ["chat"] and row.revision == COMMIT
        finally:
            await db.dispose()

    asyncio.run(run())
    assert "hashing" in stages and stages[-1] == "metadata"


def test_download_bytes_are_reported_from_the_hubs_bars() -> None:
    seen: list[tuple[str, int, int]] = []
    bar_class = importer.progress_tqdm(lambda *p: seen.append(p), quiet=True)
    reconstruct = bar_class(desc="Reconstructing (incomplete total...)", total=100, unit="B")
    transfer = bar_class(desc="Downloading bytes", total=100, unit="B")
    files = bar_class(desc="Fetching 3 files", total=3)
    reconstruct.update(40)
    transfer.update(90)  # network transfer, not what is written: not reported
    files.update(1)
    reconstruct.update(60)
    assert seen == [("download", 40, 100), ("download", 100, 100)]
