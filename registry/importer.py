"""Import: where a model's files come from (a local directory under the model roots, or a Hugging
Face repository through `huggingface_hub.snapshot_download`, which honours the HF cache, HF_TOKEN
and offline mode), and the catalogue entry their metadata makes.

Blocking (downloads, hashing): run it in a thread. Progress goes to a callback as
(stage, bytes done, bytes in all).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import constants as hf_constants
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
from tqdm.auto import tqdm

from bud.registry.v1 import registry_pb2
from budrt.errors import echo, failed_precondition, invalid_argument, not_found, unavailable
from registry import model_files
from registry.cards import LicenseFinding, find_license
from registry.db import models
from registry.evals import card_evals

# (stage, bytes done, bytes in all: 0 when unknown)
StageProgress = Callable[[str, int, int], None]

MAX_PATH_CHARS = 4096
HUGGING_FACE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9_.-]{1,96})?$")
REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,99}$")


@dataclass(frozen=True)
class Source:
    """A resolved import source."""

    provider: int  # registry_pb2.ModelProvider
    directory: Path
    hugging_face_id: str = ""
    revision: str = ""


def allowed_directory(value: str, roots: Sequence[Path], param: str) -> Path:
    """`value`, an absolute path, resolved (symlinks followed, `..` applied), when it lies under
    one of the model `roots`; INVALID_ARGUMENT named `param` otherwise, the same whether it
    exists or not (the engine's rule for local models: what the registry lists, an engine may
    load)."""
    if "\0" in value or len(value) > MAX_PATH_CHARS or not os.path.isabs(value):
        raise invalid_argument(f"{param} must be an absolute path: {echo(value)}", param=param)
    resolved = Path(os.path.realpath(value))
    if any(resolved.is_relative_to(os.path.realpath(root)) for root in roots):
        return resolved
    raise invalid_argument(
        f"{param} {echo(value)} is not under the model roots "
        "(<data_dir>/models and the registry_model_roots setting)",
        param=param,
    )


def is_hugging_face_id(value: str) -> bool:
    """Whether `value` has the shape of a Hugging Face repository id (`name`, `org/name`)."""
    return HUGGING_FACE_ID_RE.match(value) is not None and ".." not in value


def check_source(source: str, revision: str, roots: Sequence[Path]) -> None:
    """Refuses (INVALID_ARGUMENT) a source that is neither an allowed directory nor a Hub id."""
    if not source:
        raise invalid_argument("source is required", param="source")
    if source.startswith(("/", "~", ".")):
        allowed_directory(source, roots, "source")
        if revision:
            raise invalid_argument("revision applies to Hugging Face sources only", param="revision")
    elif not is_hugging_face_id(source):
        raise invalid_argument(
            f"invalid source {echo(source)}: an absolute directory or a Hugging Face id (org/name)",
            param="source",
        )
    if revision and not REVISION_RE.match(revision):
        raise invalid_argument(f"invalid revision {echo(revision)}", param="revision")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE, as huggingface_hub read it at import or as the environment says now."""
    return bool(hf_constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").lower() in (
        "1",
        "true",
        "yes",
        "on",
    )


class _Discard:
    """A file that drops what is written (a server's download bars go nowhere)."""

    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        pass


def progress_tqdm(progress: StageProgress, *, quiet: bool) -> type[tqdm]:
    """A tqdm class for `snapshot_download` that reports the bytes written by the download
    (huggingface_hub's "Reconstructing" bar, unit B; its "Downloading bytes" bar counts network
    transfer, which a plain download does not fill) as stage "download". `quiet`: draw nothing
    (the server); otherwise the bars show on stderr (the CLI)."""

    class Reporting(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if quiet:
                kwargs["file"] = _Discard()
            kwargs["disable"] = False  # counted even where bars are off
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            if self.unit == "B" and not str(self.desc).startswith("Downloading bytes"):
                progress("download", int(self.n), int(self.total or 0))
            return shown

    return Reporting


def resolve(
    source: str,
    revision: str,
    roots: Sequence[Path],
    *,
    cache_dir: str = "",
    progress: StageProgress | None = None,
    quiet: bool = True,
) -> Source:
    """The directory holding the source's files: a local directory under `roots`, or the
    snapshot of a Hub repository (downloaded into the HF cache, or taken from it when offline:
    HF_HUB_OFFLINE=1 or `local_files_only`). The revision recorded is the snapshot's commit."""
    check_source(source, revision, roots)
    if source.startswith(("/", "~", ".")):
        directory = allowed_directory(source, roots, "source")
        if not directory.is_dir():
            raise invalid_argument(f"source {echo(source)} is not a directory", param="source")
        return Source(registry_pb2.MODEL_PROVIDER_CUSTOM, directory)
    kwargs: dict[str, Any] = {
        "revision": revision or None,
        "cache_dir": cache_dir or None,
        "token": os.environ.get("HF_TOKEN") or None,
        "local_files_only": hub_offline(),
    }
    if progress is not None:
        kwargs["tqdm_class"] = progress_tqdm(progress, quiet=quiet)
    try:
        snapshot = Path(snapshot_download(source, **kwargs))
    except LocalEntryNotFoundError:
        raise failed_precondition(
            f"{echo(source)} is not in the Hugging Face cache and the hub is offline "
            "(HF_HUB_OFFLINE): fill the cache first",
            param="source",
        ) from None
    except RepositoryNotFoundError:
        raise not_found(f"Hugging Face repository {echo(source)} not found", param="source") from None
    except HfHubHTTPError as err:
        raise unavailable(f"Hugging Face download of {echo(source)} failed: {err}") from None
    return Source(registry_pb2.MODEL_PROVIDER_HUGGING_FACE, snapshot, source, snapshot.name)


def describe(
    source: Source, roots: Sequence[Path], progress: StageProgress | None = None
) -> tuple[model_files.ModelMetadata, LicenseFinding]:
    """The metadata and licence of a resolved source (hashing every file). A Hub snapshot's files
    are links into its cache: they must stay inside that cache."""
    allowed = (
        roots if source.provider == registry_pb2.MODEL_PROVIDER_CUSTOM else [source.directory.parent.parent]
    )
    hashing = (lambda done, total: progress("hashing", done, total)) if progress is not None else None
    try:
        meta = model_files.describe(source.directory, allowed, hashing)
    except model_files.ModelFilesError as err:
        raise invalid_argument(f"cannot register {source.directory.name}: {err}", param="source") from None
    return meta, find_license(source.directory)


def new_row(
    model_id: str,
    name: str,
    source: Source,
    meta: model_files.ModelMetadata,
    found: LicenseFinding,
    tags: Sequence[str] = (),
    description: str = "",
) -> models.RegistryModel:
    """The catalogue entry for an imported or registered model (scan status PENDING)."""
    return models.RegistryModel(
        id=model_id,
        name=name,
        description=description,
        provider=registry_pb2.ModelProvider.Name(source.provider),
        hugging_face_id=source.hugging_face_id,
        revision=source.revision,
        local_path=str(source.directory),
        architecture=meta.architecture,
        model_type=meta.model_type,
        parameter_count=meta.parameter_count,
        context_length=meta.context_length,
        dtype=meta.dtype,
        license_id=found.license_id,
        license_source=found.source,
        card_license_name=found.card_license_name[:200],
        card_license_link=found.card_license_link[:2000],
        license_text=found.text,
        weights_bytes=meta.weights_bytes,
        kv_cache_bytes_per_1k_tokens=meta.kv_cache_bytes_per_1k_tokens,
        total_size_bytes=meta.total_size_bytes,
        tags=list(tags),
        scan_status=registry_pb2.ScanStatus.Name(registry_pb2.SCAN_STATUS_PENDING),
        scan_report={},
        files=[
            models.RegistryModelFile(path=f.path, size_bytes=f.size_bytes, sha256=f.sha256)
            for f in meta.files
        ],
        evals=card_evals(source.directory),
    )
