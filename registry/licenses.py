"""The licence catalogue: SPDX licences and the common model licences, with structured
restrictions (commercial use, attribution, share-alike, user-count thresholds, acceptable-use
policies).

Ids are SPDX ids where SPDX has one (``Apache-2.0``, ``CC-BY-NC-4.0``) and the Hugging Face Hub's
licence ids otherwise (``llama3.1``, ``gemma``, ``creativeml-openrail-m``); a lookup accepts either
spelling, case-insensitively. A licence the catalogue does not know is recorded as
:data:`UNKNOWN` with what the model card said (name, link, text): never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bud.registry.v1 import registry_pb2

UNKNOWN = "unknown"


@dataclass(frozen=True)
class LicenseInfo:
    """One licence of the catalogue."""

    id: str
    name: str
    url: str
    family: str
    commercial_use: bool = True
    attribution_required: bool = False
    share_alike: bool = False
    use_restrictions: bool = False
    user_threshold: int = 0
    acceptable_use_policy_url: str = ""
    notes: str = ""
    # Other spellings that name it (the Hub's lowercase ids, SPDX ids).
    aliases: tuple[str, ...] = field(default=())

    def to_proto(self) -> registry_pb2.License:
        """The licence as the contract's `License` (catalogue fields only)."""
        return registry_pb2.License(
            id=self.id,
            name=self.name,
            url=self.url,
            commercial_use=self.commercial_use,
            known=self.id != UNKNOWN,
            attribution_required=self.attribution_required,
            share_alike=self.share_alike,
            use_restrictions=self.use_restrictions,
            user_threshold=self.user_threshold,
            acceptable_use_policy_url=self.acceptable_use_policy_url,
            family=self.family,
            notes=self.notes,
        )


def _spdx(id_: str, name: str, family: str, **kw: object) -> LicenseInfo:
    return LicenseInfo(id_, name, f"https://spdx.org/licenses/{id_}.html", family, **kw)  # type: ignore[arg-type]


_LLAMA_AUP = "https://llama.meta.com/use-policy"
_OPENRAIL_NOTE = "use-based restrictions (Attachment A) must be passed on to downstream users"

CATALOGUE: tuple[LicenseInfo, ...] = (
    # Permissive
    _spdx(
        "Apache-2.0",
        "Apache License 2.0",
        "permissive",
        attribution_required=True,
        notes="keep the NOTICE file and state changes",
    ),
    _spdx("MIT", "MIT License", "permissive", attribution_required=True, notes="keep the copyright notice"),
    _spdx("BSD-2-Clause", "BSD 2-Clause License", "permissive", attribution_required=True),
    _spdx("BSD-3-Clause", "BSD 3-Clause License", "permissive", attribution_required=True),
    _spdx("ISC", "ISC License", "permissive", attribution_required=True),
    _spdx("Unlicense", "The Unlicense", "public-domain"),
    _spdx("CC0-1.0", "Creative Commons Zero v1.0 Universal", "public-domain"),
    _spdx("CC-BY-4.0", "Creative Commons Attribution 4.0", "permissive", attribution_required=True),
    _spdx("AFL-3.0", "Academic Free License v3.0", "permissive", attribution_required=True),
    _spdx("Artistic-2.0", "Artistic License 2.0", "permissive", attribution_required=True),
    # Copyleft
    _spdx(
        "CC-BY-SA-4.0",
        "Creative Commons Attribution Share Alike 4.0",
        "copyleft",
        attribution_required=True,
        share_alike=True,
    ),
    _spdx(
        "GPL-3.0-only",
        "GNU General Public License v3.0",
        "copyleft",
        attribution_required=True,
        share_alike=True,
        aliases=("gpl-3.0", "GPL-3.0"),
    ),
    _spdx(
        "LGPL-3.0-only",
        "GNU Lesser General Public License v3.0",
        "copyleft",
        attribution_required=True,
        share_alike=True,
        aliases=("lgpl-3.0", "LGPL-3.0"),
    ),
    _spdx(
        "AGPL-3.0-only",
        "GNU Affero General Public License v3.0",
        "copyleft",
        attribution_required=True,
        share_alike=True,
        aliases=("agpl-3.0", "AGPL-3.0"),
    ),
    _spdx("MPL-2.0", "Mozilla Public License 2.0", "copyleft", attribution_required=True, share_alike=True),
    # Non-commercial
    _spdx(
        "CC-BY-NC-4.0",
        "Creative Commons Attribution Non Commercial 4.0",
        "non-commercial",
        commercial_use=False,
        attribution_required=True,
    ),
    _spdx(
        "CC-BY-NC-SA-4.0",
        "Creative Commons Attribution Non Commercial Share Alike 4.0",
        "non-commercial",
        commercial_use=False,
        attribution_required=True,
        share_alike=True,
    ),
    _spdx(
        "CC-BY-NC-ND-4.0",
        "Creative Commons Attribution Non Commercial No Derivatives 4.0",
        "non-commercial",
        commercial_use=False,
        attribution_required=True,
        notes="no derivatives (fine-tunes) may be shared",
    ),
    # OpenRAIL family (Responsible AI Licences): commercial use allowed, use-based restrictions.
    LicenseInfo(
        "openrail",
        "Open RAIL",
        "https://huggingface.co/blog/open_rail",
        "openrail",
        attribution_required=True,
        use_restrictions=True,
        notes=_OPENRAIL_NOTE,
    ),
    LicenseInfo(
        "openrail++",
        "Open RAIL++-M",
        "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/LICENSE.md",
        "openrail",
        attribution_required=True,
        use_restrictions=True,
        notes=_OPENRAIL_NOTE,
    ),
    LicenseInfo(
        "creativeml-openrail-m",
        "CreativeML Open RAIL-M",
        "https://huggingface.co/spaces/CompVis/stable-diffusion-license",
        "openrail",
        attribution_required=True,
        use_restrictions=True,
        notes=_OPENRAIL_NOTE,
    ),
    LicenseInfo(
        "bigscience-openrail-m",
        "BigScience Open RAIL-M",
        "https://bigscience.huggingface.co/blog/bigscience-openrail-m",
        "openrail",
        attribution_required=True,
        use_restrictions=True,
        notes=_OPENRAIL_NOTE,
    ),
    LicenseInfo(
        "bigscience-bloom-rail-1.0",
        "BigScience BLOOM RAIL 1.0",
        "https://bigscience.huggingface.co/blog/the-bigscience-rail-license",
        "openrail",
        attribution_required=True,
        use_restrictions=True,
        notes=_OPENRAIL_NOTE,
    ),
    LicenseInfo(
        "bigcode-openrail-m",
        "BigCode Open RAIL-M v1",
        "https://www.bigcode-project.org/docs/pages/bigcode-openrail",
        "openrail",
        attribution_required=True,
        use_restrictions=True,
        notes=_OPENRAIL_NOTE,
    ),
    # Llama community licences: commercial use up to 700M monthly active users, an AUP, and
    # "Built with Llama" attribution (3.x).
    LicenseInfo(
        "llama2",
        "Llama 2 Community License Agreement",
        "https://ai.meta.com/llama/license/",
        "llama",
        attribution_required=True,
        use_restrictions=True,
        user_threshold=700_000_000,
        acceptable_use_policy_url="https://ai.meta.com/llama/use-policy/",
        notes="a licence from Meta is needed above 700M monthly active users; no use to improve other LLMs",
    ),
    LicenseInfo(
        "llama3",
        "Meta Llama 3 Community License Agreement",
        "https://llama.meta.com/llama3/license/",
        "llama",
        attribution_required=True,
        use_restrictions=True,
        user_threshold=700_000_000,
        acceptable_use_policy_url="https://llama.meta.com/llama3/use-policy/",
        notes="display 'Built with Meta Llama 3'; a licence from Meta above 700M monthly active users",
    ),
    LicenseInfo(
        "llama3.1",
        "Llama 3.1 Community License Agreement",
        "https://github.com/meta-llama/llama-models/blob/main/models/llama3_1/LICENSE",
        "llama",
        attribution_required=True,
        use_restrictions=True,
        user_threshold=700_000_000,
        acceptable_use_policy_url=_LLAMA_AUP,
        notes="display 'Built with Llama'; a licence from Meta above 700M monthly active users",
    ),
    LicenseInfo(
        "llama3.2",
        "Llama 3.2 Community License Agreement",
        "https://github.com/meta-llama/llama-models/blob/main/models/llama3_2/LICENSE",
        "llama",
        attribution_required=True,
        use_restrictions=True,
        user_threshold=700_000_000,
        acceptable_use_policy_url=_LLAMA_AUP,
        notes="display 'Built with Llama'; a licence from Meta above 700M monthly active users",
    ),
    LicenseInfo(
        "llama3.3",
        "Llama 3.3 Community License Agreement",
        "https://github.com/meta-llama/llama-models/blob/main/models/llama3_3/LICENSE",
        "llama",
        attribution_required=True,
        use_restrictions=True,
        user_threshold=700_000_000,
        acceptable_use_policy_url=_LLAMA_AUP,
        notes="display 'Built with Llama'; a licence from Meta above 700M monthly active users",
    ),
    LicenseInfo(
        "llama4",
        "Llama 4 Community License Agreement",
        "https://github.com/meta-llama/llama-models/blob/main/models/llama4/LICENSE",
        "llama",
        attribution_required=True,
        use_restrictions=True,
        user_threshold=700_000_000,
        acceptable_use_policy_url=_LLAMA_AUP,
        notes="display 'Built with Llama'; a licence from Meta above 700M monthly active users",
    ),
    LicenseInfo(
        "gemma",
        "Gemma Terms of Use",
        "https://ai.google.dev/gemma/terms",
        "gemma",
        attribution_required=True,
        use_restrictions=True,
        acceptable_use_policy_url="https://ai.google.dev/gemma/prohibited_use_policy",
        notes="the prohibited use policy binds users; pass the terms on with redistributions",
    ),
)

_BY_NAME: dict[str, LicenseInfo] = {}
for _entry in CATALOGUE:
    for _name in (_entry.id, *_entry.aliases):
        _BY_NAME[_name.lower()] = _entry

UNKNOWN_LICENSE = LicenseInfo(
    UNKNOWN,
    "Unknown licence",
    "",
    "unknown",
    commercial_use=False,
    notes="not in the catalogue: read the recorded text before use",
)


def lookup(name: str) -> LicenseInfo | None:
    """The catalogue's licence named `name` (an id or alias, any case); None when unknown."""
    return _BY_NAME.get(name.strip().lower()) if name else None


def get(license_id: str) -> LicenseInfo:
    """The catalogue's licence with id `license_id`, or :data:`UNKNOWN_LICENSE`."""
    return lookup(license_id) or UNKNOWN_LICENSE
