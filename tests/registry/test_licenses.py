"""The licence catalogue and hand-made model cards: known licences with their restrictions,
"other" licences by name, LICENSE files, and unknown ones recorded with their text, never guessed."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import licenses
from registry.cards import find_license
from tests.registry.models_on_disk import card, small_llama


def test_catalogue_lookups_accept_both_spellings() -> None:
    assert licenses.lookup("apache-2.0") is licenses.lookup("Apache-2.0")
    assert licenses.lookup("gpl-3.0") is licenses.lookup("GPL-3.0-only")
    assert licenses.lookup("Llama3.1") is not None
    assert licenses.lookup("my-own-licence") is None
    assert licenses.get("nope") is licenses.UNKNOWN_LICENSE
    ids = [info.id for info in licenses.CATALOGUE]
    assert len(ids) == len(set(ids))


def test_restrictions_are_structured() -> None:
    llama = licenses.get("llama3.1")
    assert llama.commercial_use and llama.user_threshold == 700_000_000 and llama.acceptable_use_policy_url
    assert not licenses.get("CC-BY-NC-4.0").commercial_use
    assert licenses.get("CC-BY-SA-4.0").share_alike
    assert licenses.get("creativeml-openrail-m").use_restrictions
    assert licenses.get("gemma").acceptable_use_policy_url.startswith("https://ai.google.dev/")
    assert not licenses.UNKNOWN_LICENSE.to_proto().known


@pytest.mark.parametrize(
    ("card_license", "expected"),
    [
        ("apache-2.0", "Apache-2.0"),
        ("mit", "MIT"),
        ("llama3.1", "llama3.1"),
        ("gemma", "gemma"),
        ("cc-by-nc-4.0", "CC-BY-NC-4.0"),
        ("openrail", "openrail"),
        ("bigscience-bloom-rail-1.0", "bigscience-bloom-rail-1.0"),
    ],
)
def test_hand_made_cards(tmp_path: Path, card_license: str, expected: str) -> None:
    found = find_license(small_llama(tmp_path / "m", card_license))
    assert (found.license_id, found.source) == (expected, "card")


def test_other_with_a_known_name(tmp_path: Path) -> None:
    found = find_license(
        small_llama(tmp_path / "m", "other", name="llama3", link="https://llama.meta.com/llama3/license/")
    )
    assert found.license_id == "llama3" and found.card_license_link.startswith("https://llama.meta.com")


def test_an_unknown_licence_is_recorded_with_its_text_never_guessed(tmp_path: Path) -> None:
    model = small_llama(
        tmp_path / "m", "other", name="acme-research-only", link="https://acme.example/licence"
    )
    (model / "LICENSE").write_text("ACME Research Licence\nYou may use this model for research only.\n")
    found = find_license(model)
    assert found.license_id == licenses.UNKNOWN
    assert found.card_license_name == "acme-research-only"
    assert found.card_license_link == "https://acme.example/licence"
    assert "research only" in found.text


def test_an_unknown_licence_without_a_file_keeps_the_card_text(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "README.md").write_text(card("weird-1.0", body="Use it kindly. Terms: be nice.\n"))
    found = find_license(model)
    assert found.license_id == licenses.UNKNOWN and found.card_license_name == "weird-1.0"
    assert "be nice" in found.text


def test_a_license_file_names_itself_only_by_its_exact_header(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "LICENSE").write_text(
        "MIT License\n\nCopyright (c) 2024 A\n\nPermission is hereby granted, free of charge, to any person..."
    )
    assert find_license(model).license_id == "MIT"
    (model / "LICENSE").write_text("This is like the MIT licence but with extra rules.")
    found = find_license(model)
    assert (
        found.license_id == licenses.UNKNOWN
        and found.source == "license_file"
        and "extra rules" in found.text
    )


def test_no_card_no_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert find_license(tmp_path).source == "none"


def test_the_minilm_card(minilm_model_dir: Path) -> None:
    assert find_license(minilm_model_dir).license_id == "Apache-2.0"
