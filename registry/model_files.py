"""What a model directory holds, read from its files and never by loading weights: the files with
their sizes and SHA-256 (streamed), the architecture, context length and dtype from
`config.json`, the parameter count from the safetensors headers, and the memory estimate.

A safetensors file starts with 8 bytes (little-endian u64: the header's length) and a JSON header
naming each tensor's dtype, shape and byte range; only those bytes are read.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Reported as bytes are hashed: (bytes done, bytes in all).
Progress = Callable[[int, int], None]

HASH_CHUNK = 1024 * 1024
# A safetensors header larger than this is refused as malformed (real ones are a few MiB).
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
# config.json larger than this is not read.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
# Folders that are never part of a model (VCS, the hub's download state).
SKIPPED_DIRS = frozenset({".git", ".cache", ".huggingface", "__pycache__"})
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".gguf", ".h5", ".msgpack")

# Bytes per element of the dtypes that config.json and safetensors headers name.
DTYPE_BYTES = {
    "float32": 4,
    "float": 4,
    "float64": 8,
    "float16": 2,
    "half": 2,
    "bfloat16": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "int8": 1,
    "uint8": 1,
}
# safetensors dtype codes → torch dtype names.
SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}
# config.json keys that give the context length, in order of preference.
CONTEXT_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "n_ctx",
    "max_sequence_length",
)


class ModelFilesError(ValueError):
    """The directory is not a model directory this registry can read (message says why)."""


@dataclass(frozen=True)
class FileEntry:
    """One file: its path relative to the model directory, size and SHA-256."""

    path: str
    size_bytes: int
    sha256: str


@dataclass
class ModelMetadata:
    """What the files say about a model."""

    architecture: str = ""
    model_type: str = ""
    parameter_count: int = 0
    context_length: int = 0
    dtype: str = ""
    weights_bytes: int = 0
    kv_cache_bytes_per_1k_tokens: int = 0
    files: list[FileEntry] = field(default_factory=list)

    @property
    def total_size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    @property
    def memory_bytes_estimate(self) -> int:
        """Weights plus the KV cache of one full context."""
        return self.weights_bytes + self.kv_cache_bytes_per_1k_tokens * self.context_length // 1024


def list_files(directory: Path, roots: Sequence[Path] = ()) -> list[tuple[str, Path]]:
    """The model's files: (path relative to `directory`, real path), sorted. Symlinked files are
    followed (a Hugging Face snapshot is symlinks into the cache's blobs) but, when `roots` are
    given, must resolve under one of them: a link out of the model roots is refused, so nothing
    outside them is hashed or read."""
    real_roots = [os.path.realpath(r) for r in roots]
    found: list[tuple[str, Path]] = []
    for current, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(names):
            path = Path(current) / name
            real = Path(os.path.realpath(path))
            if real_roots and not any(real.is_relative_to(r) for r in real_roots):
                raise ModelFilesError(f"{path.relative_to(directory)} links outside the model roots")
            if not real.is_file():
                continue
            found.append((path.relative_to(directory).as_posix(), real))
    return found


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """The file's SHA-256, read in 1 MiB chunks (memory stays flat for any size)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest()


def hash_files(files: list[tuple[str, Path]], progress: Progress | None = None) -> list[FileEntry]:
    """Each file's size and SHA-256; `progress` gets the bytes hashed so far and in all."""
    total = sum(real.stat().st_size for _, real in files)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    entries = [FileEntry(rel, real.stat().st_size, sha256_file(real, advance)) for rel, real in files]
    if progress is not None:
        progress(total, total)
    return entries


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (only its first bytes are read)."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ModelFilesError(f"{path.name}: too short for a safetensors file")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_SAFETENSORS_HEADER or length > path.stat().st_size - 8:
            raise ModelFilesError(f"{path.name}: safetensors header length {length} is not plausible")
        try:
            header = json.loads(f.read(length))
        except ValueError as err:
            raise ModelFilesError(f"{path.name}: safetensors header is not JSON ({err})") from None
    if not isinstance(header, dict):
        raise ModelFilesError(f"{path.name}: safetensors header is not an object")
    return header


def safetensors_summary(paths: Sequence[Path]) -> tuple[int, int, str]:
    """(parameters, tensor bytes, dominant dtype name) over the safetensors files."""
    parameters = 0
    nbytes = 0
    by_dtype: Counter[str] = Counter()
    for path in paths:
        for name, tensor in safetensors_header(path).items():
            if name == "__metadata__":
                continue
            if not isinstance(tensor, dict) or not isinstance(tensor.get("shape"), list):
                raise ModelFilesError(f"{path.name}: tensor {name[:64]!r} has no shape")
            count = math.prod(int(d) for d in tensor["shape"])
            start, end = tensor.get("data_offsets", (0, 0))
            parameters += count
            nbytes += int(end) - int(start)
            by_dtype[str(tensor.get("dtype", ""))] += int(end) - int(start)
    dominant = by_dtype.most_common(1)[0][0] if by_dtype else ""
    return parameters, nbytes, SAFETENSORS_DTYPES.get(dominant, dominant.lower())


def read_config(directory: Path) -> dict[str, Any]:
    """config.json ({} when absent); a multimodal model's `text_config` fills what the top level
    lacks (its layers and context are the language model's)."""
    path = directory / "config.json"
    if not path.is_file():
        return {}
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelFilesError("config.json is larger than 4 MiB")
    try:
        config = json.loads(path.read_bytes())
    except ValueError as err:
        raise ModelFilesError(f"config.json is not JSON ({err})") from None
    if not isinstance(config, dict):
        raise ModelFilesError("config.json is not an object")
    text = config.get("text_config")
    if isinstance(text, dict):
        config = {**text, **{k: v for k, v in config.items() if v is not None}}
    return config


def _int(config: dict[str, Any], *keys: str) -> int:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def kv_cache_bytes_per_1k(config: dict[str, Any], dtype: str) -> int:
    """KV-cache bytes per 1024 tokens: keys and values of every layer's KV heads at `dtype`; 0 when
    config.json does not give the layers and heads."""
    layers = _int(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = _int(config, "num_attention_heads", "n_head")
    kv_heads = _int(config, "num_key_value_heads", "num_kv_heads") or heads
    hidden = _int(config, "hidden_size", "n_embd", "d_model")
    head_dim = _int(config, "head_dim") or (hidden // heads if heads else 0)
    if not (layers and kv_heads and head_dim):
        return 0
    return 2 * layers * kv_heads * head_dim * DTYPE_BYTES.get(dtype, 2) * 1024


def describe(directory: Path, roots: Sequence[Path] = (), progress: Progress | None = None) -> ModelMetadata:
    """Everything the registry records of a model directory (hashing every file: `progress`)."""
    if not directory.is_dir():
        raise ModelFilesError(f"{directory} is not a directory")
    files = list_files(directory, roots)
    if not files:
        raise ModelFilesError(f"{directory} holds no files")
    config = read_config(directory)
    architectures = config.get("architectures")
    meta = ModelMetadata(
        architecture=str(architectures[0]) if isinstance(architectures, list) and architectures else "",
        model_type=str(config.get("model_type") or ""),
        context_length=_int(config, *CONTEXT_KEYS),
    )
    safetensors = [real for rel, real in files if rel.endswith(".safetensors")]
    st_dtype = ""
    if safetensors:
        meta.parameter_count, meta.weights_bytes, st_dtype = safetensors_summary(safetensors)
    else:  # pickled or GGUF weights: their size; the parameter count would need loading them
        meta.weights_bytes = sum(real.stat().st_size for rel, real in files if rel.endswith(WEIGHT_SUFFIXES))
    config_dtype = config.get("torch_dtype") or config.get("dtype")
    meta.dtype = str(config_dtype) if isinstance(config_dtype, str) else st_dtype
    meta.kv_cache_bytes_per_1k_tokens = kv_cache_bytes_per_1k(config, meta.dtype)
    meta.files = hash_files(files, progress)
    return meta
