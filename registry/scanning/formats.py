"""Header sanity of the non-pickle weight formats, read without loading any tensor.

- safetensors: an 8-byte little-endian header length N, then N bytes of a JSON object
  (``{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}``), then the
  tensor data. Checked as the `safetensors` library does before it maps the file: N within the
  file (and at most 100 MB), valid UTF-8 JSON, every dtype known, every shape's byte size equal to
  its offsets' span, offsets in bounds, contiguous and covering the whole data section.
- GGUF: magic ``GGUF``, a known version, tensor and metadata counts that fit the file.

Each check returns the findings (empty: sane); reading errors are raised as OSError.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

from registry.scanning.report import Engine, Finding

# The safetensors library refuses headers larger than this (and so do we: it is read whole).
SAFETENSORS_MAX_HEADER = 100_000_000
# Bits per element of each safetensors dtype.
SAFETENSORS_DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "I64": 64,
    "U64": 64,
    "F64": 64,
}
GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = {1, 2, 3}


def _bad(engine: Engine, code: str, detail: str) -> list[Finding]:
    return [Finding(engine=engine, signature=code, detail=detail)]


def check_safetensors(path: Path) -> list[Finding]:
    """The findings of a safetensors file's header (empty when it is sane)."""
    bad = Engine.SAFETENSORS
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        prefix = f.read(8)
        if len(prefix) < 8:
            return _bad(bad, "header.truncated", f"{size} bytes: shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", prefix)
        if n > SAFETENSORS_MAX_HEADER:
            return _bad(bad, "header.too_large", f"header length {n} exceeds {SAFETENSORS_MAX_HEADER}")
        if 8 + n > size:
            return _bad(
                bad,
                "header.length_out_of_bounds",
                f"header length {n} runs past the end of the {size}-byte file",
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return _bad(bad, "header.invalid_json", str(err))
    if not isinstance(header, dict):
        return _bad(bad, "header.not_an_object", f"the header is a JSON {type(header).__name__}")
    data_len = size - 8 - n
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                return _bad(bad, "header.invalid_metadata", "__metadata__ must map strings to strings")
            continue
        problem = _tensor_problem(entry)
        if problem:
            return _bad(bad, "header.invalid_tensor", f"{name}: {problem}")
        begin, end = entry["data_offsets"]
        if end > data_len:
            return _bad(
                bad,
                "header.offsets_out_of_bounds",
                f"{name}: data_offsets end {end} > data section {data_len}",
            )
        bits = SAFETENSORS_DTYPE_BITS[entry["dtype"]] * math.prod(entry["shape"])
        if bits % 8 or bits // 8 != end - begin:
            return _bad(
                bad,
                "header.size_mismatch",
                f"{name}: {entry['dtype']}{entry['shape']} is {bits / 8:g} bytes, offsets span {end - begin}",
            )
        spans.append((begin, end, name))
    # The tensors must tile the data section exactly: no gaps (room to hide a payload), no
    # overlaps, nothing after the last one.
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            code = "header.overlapping_tensors" if begin < position else "header.gap_in_data"
            return _bad(bad, code, f"{name} starts at {begin}, expected {position}")
        position = end
    if position != data_len:
        return _bad(
            bad, "header.trailing_data", f"tensors cover {position} of the {data_len}-byte data section"
        )
    return []


def _tensor_problem(entry: object) -> str:
    if not isinstance(entry, dict):
        return "not an object"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPE_BITS:
        return f"unknown dtype {dtype!r}"
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        return f"invalid shape {shape!r}"
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        return f"invalid data_offsets {offsets!r}"
    return ""


def check_gguf(path: Path) -> list[Finding]:
    """The findings of a GGUF file's fixed header (magic, version, counts that fit the file)."""
    bad = Engine.GGUF
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(24)
    if len(head) < 24:
        return _bad(bad, "header.truncated", f"{size} bytes: shorter than the 24-byte GGUF header")
    if head[:4] != GGUF_MAGIC:
        return _bad(bad, "header.bad_magic", f"magic {head[:4]!r}, expected {GGUF_MAGIC!r}")
    (version,) = struct.unpack("<I", head[4:8])
    if version not in GGUF_VERSIONS:
        # A big-endian GGUF reads as a huge version number little-endian; not served here either.
        return _bad(bad, "header.unknown_version", f"version {version}")
    tensors, kvs = struct.unpack("<QQ", head[8:24])
    # Each tensor info and each metadata pair takes at least 8 (name length) + a few bytes.
    if tensors * 8 + kvs * 12 > size:
        return _bad(
            bad,
            "header.counts_out_of_bounds",
            f"{tensors} tensors and {kvs} metadata pairs cannot fit {size} bytes",
        )
    return []
