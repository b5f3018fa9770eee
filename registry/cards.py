"""A model's licence, from its model card's metadata (`huggingface_hub.ModelCard`: `license`,
`license_name`, `license_link`) and any LICENSE file. Never guessed: a licence the catalogue does
not know is recorded as unknown, with the card's name and link and the text found."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import ModelCard

from registry.licenses import UNKNOWN, lookup

# Licence files looked for, in order.
LICENSE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "LICENCE.md", "LICENCE.txt", "COPYING")
# At most this much licence text is kept.
MAX_TEXT = 64 * 1024
# The first lines by which a LICENSE file names itself (an exact header, not a guess at a text).
_FILE_HEADERS = (
    ("Apache-2.0", ("apache license", "version 2.0, january 2004")),
    ("MIT", ("mit license", "permission is hereby granted, free of charge")),
)


@dataclass(frozen=True)
class LicenseFinding:
    """What the files say of the licence."""

    license_id: str = UNKNOWN
    # "card" (the card's metadata), "license_file" (a LICENSE file's header), "none".
    source: str = "none"
    card_license_name: str = ""
    card_license_link: str = ""
    text: str = ""


def _license_file_text(directory: Path) -> str:
    for name in LICENSE_FILES:
        path = directory / name
        if path.is_file():
            with path.open("rb") as f:
                return f.read(MAX_TEXT).decode("utf-8", errors="replace")
    return ""


def _file_header_license(text: str) -> str:
    head = " ".join(text[:2000].lower().split())
    for license_id, markers in _FILE_HEADERS:
        if all(marker in head for marker in markers):
            return license_id
    return ""


def find_license(directory: Path) -> LicenseFinding:
    """The licence of the model in `directory`: the card's `license` when the catalogue knows it
    (or its `license_name`, for `license: other`), else the LICENSE file's own header; otherwise
    unknown, with the card's name/link and the LICENSE file's text (or the card's)."""
    text = _license_file_text(directory)
    card_path = directory / "README.md"
    card = ModelCard.load(card_path) if card_path.is_file() else None
    data = card.data.to_dict() if card is not None else {}
    declared = data.get("license")
    if isinstance(declared, list):  # several: only a single one is taken as the licence
        declared = declared[0] if len(declared) == 1 else ""
    declared = declared if isinstance(declared, str) else ""
    name = str(data.get("license_name") or "")
    link = str(data.get("license_link") or "")
    for candidate in (declared, name if declared.lower() in ("other", "") else ""):
        known = lookup(candidate)
        if known is not None:
            return LicenseFinding(known.id, "card", name, link, text)
    if not declared and text and (from_file := _file_header_license(text)):
        return LicenseFinding(from_file, "license_file", "", "", text)
    if not text and card is not None:
        text = card.text[:MAX_TEXT]
    source = "card" if declared or name else ("license_file" if text else "none")
    return LicenseFinding(UNKNOWN, source, name or declared, link, text)
