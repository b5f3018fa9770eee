"""Generated images as bytes: PNG (default), JPEG or WebP through Pillow.

Runs in the model's worker thread (never on the event loop: a large PNG takes tens of
milliseconds to deflate). `output_compression` is OpenAI's 0-100 quality of lossy formats; PNG is
lossless and ignores it."""

from __future__ import annotations

import io
from typing import Any

FORMATS = ("png", "jpeg", "webp")
# Quality when the request names none (Pillow's JPEG default is 75; images here are small).
DEFAULT_COMPRESSION = 90
# Pillow advises against JPEG quality above 95 (larger files, no visible gain).
MAX_JPEG_QUALITY = 95


def encode(image: Any, output_format: str, compression: int | None) -> bytes:
    """`image` (a PIL image) encoded as `output_format` ("png", "jpeg" or "webp")."""
    out = io.BytesIO()
    quality = DEFAULT_COMPRESSION if compression is None else compression
    if output_format == "png":
        # No timestamps or other chunks: the same pixels always give the same bytes.
        image.save(out, format="PNG", optimize=False, compress_level=6)
    elif output_format == "jpeg":
        image.convert("RGB").save(out, format="JPEG", quality=min(quality, MAX_JPEG_QUALITY))
    elif output_format == "webp":
        image.save(out, format="WEBP", quality=quality, lossless=quality >= 100)
    else:  # checked by engine.images.options before any work
        raise ValueError(f"unknown output format {output_format!r}")
    return out.getvalue()
