"""A small reader of the Dockerfiles in deploy/docker/ (no Docker here to build them): the
instructions of each stage, with line continuations joined and `ARG` defaults applied, so the
tests can compare an image's entry point, ports and environment with the services' settings."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "deploy" / "docker"
DOCKERFILES = sorted(DOCKER_DIR.glob("*.Dockerfile"))


@dataclass
class Stage:
    """One `FROM` stage: its base image and its instructions (keyword, argument text)."""

    base: str
    name: str = ""
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def exec_form(self, keyword: str) -> list[str]:
        """The JSON (exec) form of ENTRYPOINT/CMD/HEALTHCHECK CMD."""
        text = self.last(keyword) or ""
        text = text.split("CMD", 1)[1] if keyword == "HEALTHCHECK" else text
        return list(json.loads(text.strip()))

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for text in self.all("ENV"):
            for word in shlex.split(text):
                name, _, value = word.partition("=")
                values[name] = value
        return values


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, argument) pairs, comments dropped and continuations joined."""
    logical: list[str] = []
    current = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    pairs = []
    for text in logical:
        keyword, _, arg = text.partition(" ")
        pairs.append((keyword.upper(), arg.strip()))
    return pairs


def stages(path: Path) -> list[Stage]:
    """The file's stages; `${ARG}` in a FROM resolved from the global ARG defaults."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for keyword, arg in instructions(path):
        if keyword == "ARG" and not found:
            name, _, default = arg.partition("=")
            args[name] = default
        if keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), arg)
            words = image.split()
            found.append(Stage(words[0], words[2] if len(words) > 2 and words[1].upper() == "AS" else ""))
        elif found:
            found[-1].instructions.append((keyword, arg))
    return found
