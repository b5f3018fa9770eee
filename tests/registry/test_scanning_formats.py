"""The scanner's parts that need no clamd: safetensors/GGUF header checks, the pickle scanner
(malicious pickles flagged, never unpickled), hashes, settings and how verdicts combine. Also
the model-folder builders the clamd tests (test_scanning.py) use."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings, SettingsConfigDict

from budrt.settings import RuntimeSettings, check_known
from registry.scanning import ScanSettings, Verdict, verify_hashes
from registry.scanning.formats import check_gguf, check_safetensors
from registry.scanning.hashing import model_files, resolve_file, sha256_file
from registry.scanning.pickles import scan_pickle_file, wants_pickle_scan
from registry.scanning.report import combine


# ----------------------------------------------------------------------------- builders
def safetensors_bytes(
    tensors: dict[str, tuple[str, list[int], bytes]], metadata: dict | None = None
) -> bytes:
    """A safetensors file by hand: {name: (dtype, shape, raw bytes)}, tensors laid end to end."""
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset, body = 0, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        body += raw
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(encoded)) + encoded + body


def write_safetensors_header(path: Path, header: dict, data_len: int) -> None:
    """A safetensors file with this exact header and `data_len` zero bytes of data."""
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"\0" * data_len)


class Pwn:
    """A pickle that runs a shell command when loaded."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


def evil_pickle(marker: Path) -> bytes:
    """Pickle bytes whose loading would create `marker` (dumping it does not)."""
    return pickle.dumps({"weights": [1.0, 2.0], "hook": Pwn(f"echo pwned > {marker}")}, protocol=2)


def torch_zip(payload: bytes) -> bytes:
    """A PyTorch >= 1.6 style checkpoint (a zip with archive/data.pkl and a raw tensor member)."""
    path_free = __import__("io").BytesIO()
    with zipfile.ZipFile(path_free, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/data/0", b"\0" * 4096)
        archive.writestr("archive/version", "3\n")
    return path_free.getvalue()


def make_model(root: Path) -> Path:
    """A small, valid model folder: config, tokenizer, safetensors weights, a README."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(
        json.dumps(
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "max_position_embeddings": 2048}
        )
    )
    (root / "tokenizer.json").write_text(
        json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}}})
    )
    (root / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    (root / "model.safetensors").write_bytes(
        safetensors_bytes(
            {"embed.weight": ("F32", [4, 2], bytes(32)), "norm.weight": ("BF16", [2], bytes(4))}
        )
    )
    return root


# ----------------------------------------------------------------------------- safetensors
def test_valid_safetensors_header_is_sane(tmp_path: Path) -> None:
    path = make_model(tmp_path / "m") / "model.safetensors"
    assert check_safetensors(path) == []


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"\x10\0\0", "header.truncated"),
        (struct.pack("<Q", 10_000) + b"{}", "header.length_out_of_bounds"),
        (struct.pack("<Q", 200_000_000) + b"{}", "header.too_large"),
        (struct.pack("<Q", 4) + b"{no}", "header.invalid_json"),
        (struct.pack("<Q", 2) + b"[]", "header.not_an_object"),
    ],
)
def test_lying_safetensors_length_is_unsafe(tmp_path: Path, content: bytes, code: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    [finding] = check_safetensors(path)
    assert finding.signature == code and finding.engine == "safetensors" and finding.detail


@pytest.mark.parametrize(
    ("header", "data_len", "code"),
    [
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, 8, "header.offsets_out_of_bounds"),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, 8, "header.size_mismatch"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, 16, "header.gap_in_data"),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            12,
            "header.overlapping_tensors",
        ),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, 4096, "header.trailing_data"),
        ({"w": {"dtype": "Q9", "shape": [2], "data_offsets": [0, 8]}}, 8, "header.invalid_tensor"),
        ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, 8, "header.invalid_tensor"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, 8, "header.invalid_tensor"),
        ({"__metadata__": {"x": 1}}, 0, "header.invalid_metadata"),
    ],
)
def test_inconsistent_safetensors_header_is_unsafe(
    tmp_path: Path, header: dict, data_len: int, code: str
) -> None:
    path = tmp_path / "bad.safetensors"
    write_safetensors_header(path, header, data_len)
    [finding] = check_safetensors(path)
    assert finding.signature == code, finding


def test_truncated_safetensors_file_is_unsafe(tmp_path: Path) -> None:
    good = make_model(tmp_path / "m") / "model.safetensors"
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-5])  # a download that stopped early
    [finding] = check_safetensors(cut)
    assert finding.signature == "header.offsets_out_of_bounds"


# ----------------------------------------------------------------------------- GGUF
def test_gguf_header(tmp_path: Path) -> None:
    good = tmp_path / "m.gguf"
    good.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1, 2) + b"\0" * 256)
    assert check_gguf(good) == []
    for name, content, code in [
        ("short.gguf", b"GGUF\3\0", "header.truncated"),
        ("magic.gguf", b"GGML" + struct.pack("<IQQ", 3, 0, 0), "header.bad_magic"),
        ("version.gguf", b"GGUF" + struct.pack("<IQQ", 99, 0, 0), "header.unknown_version"),
        ("counts.gguf", b"GGUF" + struct.pack("<IQQ", 3, 2**40, 0), "header.counts_out_of_bounds"),
    ]:
        (tmp_path / name).write_bytes(content)
        assert [f.signature for f in check_gguf(tmp_path / name)] == [code], name


# ----------------------------------------------------------------------------- pickles
def test_malicious_pickle_is_flagged_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "pytorch_model.bin").write_bytes(evil_pickle(marker))
    (tmp_path / "zipped.bin").write_bytes(torch_zip(evil_pickle(marker)))
    (tmp_path / "disguised.txt").write_bytes(evil_pickle(marker))  # a pickle by content, not name
    for name in ("pytorch_model.bin", "zipped.bin", "disguised.txt"):
        findings = scan_pickle_file(tmp_path / name, name, strict=False)
        signatures = {f.signature for f in findings if f.severity == "error"}
        assert "posix.system" in signatures, (name, findings)
    assert not marker.exists(), "the scanner unpickled the payload"


def test_which_files_are_scanned_as_pickles() -> None:
    assert wants_pickle_scan("pytorch_model.bin", b"PK\x03\x04") and wants_pickle_scan("x.pkl", b"")
    assert wants_pickle_scan("readme.txt", b"\x80\x04\x95") and wants_pickle_scan("data", b"PK\x03\x04")
    assert not wants_pickle_scan("config.json", b'{"a": 1}')
    # A 640-byte safetensors header's length reads as a pickle PROTO 2: its own check applies.
    assert not wants_pickle_scan("model.safetensors", struct.pack("<Q", 0x280))


def test_plain_torch_style_pickle_is_clean(tmp_path: Path) -> None:
    import collections

    state = collections.OrderedDict(weight=[0.0] * 8)
    (tmp_path / "ok.bin").write_bytes(torch_zip(pickle.dumps(state, protocol=2)))
    assert scan_pickle_file(tmp_path / "ok.bin", "ok.bin", strict=True) == []


def test_unknown_global_is_a_warning_unless_strict(tmp_path: Path) -> None:
    (tmp_path / "x.pkl").write_bytes(pickle.dumps(Path("/tmp"), protocol=2))  # pathlib.PosixPath
    [lenient] = scan_pickle_file(tmp_path / "x.pkl", "x.pkl", strict=False)
    assert lenient.severity == "warning" and lenient.signature == "pathlib.PosixPath"
    [strict] = scan_pickle_file(tmp_path / "x.pkl", "x.pkl", strict=True)
    assert strict.severity == "error"


def test_global_after_a_huge_blob_is_still_found(tmp_path: Path) -> None:
    """The bounded reader skips a 40 MB byte string (no 40 MB read) and still sees the import
    that follows it."""
    marker = tmp_path / "pwned"
    blob = pickle.dumps(bytes(40 * 1024 * 1024), protocol=4)[:-1]  # without the final STOP
    payload = pickle.dumps(Pwn(f"touch {marker}"), protocol=4)[2:]  # without its PROTO header
    (tmp_path / "big.pkl").write_bytes(blob + b"0" + payload)  # POP the blob, then the payload
    tracemalloc.start()
    try:
        signatures = {f.signature for f in scan_pickle_file(tmp_path / "big.pkl", "big.pkl", strict=False)}
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "posix.system" in signatures
    assert peak < 16 * 1024 * 1024, f"the scan allocated {peak} bytes at its peak"
    assert not marker.exists()


# ----------------------------------------------------------------------------- hashes
def test_verify_hashes_notices_changed_missing_and_added_files(tmp_path: Path) -> None:
    root = make_model(tmp_path / "m")
    recorded = {name: sha256_file(root / name)[0] for name in model_files(root)}
    assert asyncio.run(verify_hashes(root, recorded)).unchanged
    (root / "config.json").write_text("{}")
    (root / "README.md").unlink()
    (root / "extra.bin").write_bytes(b"x")
    check = asyncio.run(verify_hashes(root, recorded))
    assert (check.changed, check.missing, check.added) == (["config.json"], ["README.md"], ["extra.bin"])
    assert not check.unchanged and "config.json" in check.describe()


def test_file_names_stay_inside_the_model(tmp_path: Path) -> None:
    for name in ("../etc/passwd", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(ValueError):
            resolve_file(tmp_path, name)
    assert resolve_file(tmp_path, "sub/x.bin") == tmp_path / "sub" / "x.bin"


def test_model_files_follow_links_and_skip_the_download_cache(tmp_path: Path) -> None:
    root = make_model(tmp_path / "m")
    (tmp_path / "blob").write_bytes(b"w")
    (root / "linked.bin").symlink_to(tmp_path / "blob")  # as in a Hugging Face cache snapshot
    (root / ".cache").mkdir()
    (root / ".cache" / "lock").write_text("")
    assert "linked.bin" in model_files(root) and not any(n.startswith(".cache") for n in model_files(root))


# ----------------------------------------------------------------------------- settings, verdicts
def test_settings_honour_clamav_host_and_port() -> None:
    s = ScanSettings.from_env(
        {"CLAMAV_HOST": "clamd.internal", "CLAMAV_PORT": "3999", "BUD_SCAN_CHUNK_BYTES": "65536"}
    )
    assert (s.clamav_host, s.clamav_port, s.scan_chunk_bytes) == ("clamd.internal", 3999, 65536)
    assert ScanSettings.from_env({"BUD_CLAMAV_HOST": "b", "CLAMAV_HOST": "c"}).clamav_host == "c"
    with pytest.raises(ValueError):
        ScanSettings(clamav_stream_max_bytes=8192, clamav_segment_overlap_bytes=8192)


def test_settings_embed_in_a_settings_model(monkeypatch: pytest.MonkeyPatch) -> None:
    class Embedding(BaseSettings, ScanSettings):
        model_config = SettingsConfigDict(env_prefix="BUD_", extra="forbid")

    monkeypatch.setenv("CLAMAV_PORT", "4000")
    monkeypatch.setenv("BUD_CLAMAV_SCAN_BY_PATH", "true")
    s = Embedding()
    assert s.clamav_port == 4000 and s.clamav_scan_by_path


def test_settings_inherited_by_a_runtime_settings_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As the registry's settings model will: BUD_CONFIG keys and BUD_ variables reach the fields,
    and check_known knows them."""

    class Registryish(RuntimeSettings, ScanSettings):
        pass

    config = tmp_path / "bud.yaml"
    config.write_text("clamav_host: clamd.from.yaml\nscan_chunk_bytes: 65536\n")
    monkeypatch.setenv("BUD_CONFIG", str(config))
    monkeypatch.setenv("BUD_CLAMAV_PORT", "3999")
    s = Registryish()
    assert (s.clamav_host, s.scan_chunk_bytes, s.clamav_port) == ("clamd.from.yaml", 65536, 3999)
    check_known([Registryish])


def test_worst_verdict_decides() -> None:
    assert combine([]) is Verdict.CLEAN
    assert combine([Verdict.CLEAN, Verdict.ERROR]) is Verdict.ERROR
    assert combine([Verdict.ERROR, Verdict.UNSAFE, Verdict.CLEAN]) is Verdict.UNSAFE
    assert combine([Verdict.UNSAFE, Verdict.INFECTED]) is Verdict.INFECTED
