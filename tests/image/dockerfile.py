"""The repository's Dockerfile as a list of instructions, grouped by stage (no builder needed)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    arguments: str  # as written, continuation lines joined

    def words(self) -> list[str]:
        """The arguments split as a shell would (COPY sources and flags, ENV pairs, RUN words)."""
        return shlex.split(self.arguments)

    def flags(self) -> dict[str, str]:
        """`--name=value` options before the arguments (COPY --from=build, --chown=...)."""
        return dict(word[2:].split("=", 1) for word in self.words() if word.startswith("--") and "=" in word)

    def operands(self) -> list[str]:
        return [word for word in self.words() if not word.startswith("--")]


def instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """Every instruction; comments and blank lines dropped, `\\` continuations joined."""
    found: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines inside a continued instruction too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        found.append(Instruction(keyword.upper(), " ".join(arguments.split())))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return found


def stages(path: Path = DOCKERFILE) -> list[list[Instruction]]:
    """The build stages, each from its FROM on; instructions before the first FROM (global ARGs) dropped."""
    result: list[list[Instruction]] = []
    for instruction in instructions(path):
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def env(stage: list[Instruction]) -> dict[str, str]:
    """The environment the stage's ENV instructions set (`KEY=value` form), later ones winning."""
    values: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for word in instruction.words():
                name, _, value = word.partition("=")
                values[name] = value
    return values


def global_args(path: Path = DOCKERFILE) -> dict[str, str]:
    """`ARG NAME=default` before the first FROM, and in any stage (the defaults a build starts from)."""
    values: dict[str, str] = {}
    for instruction in instructions(path):
        if instruction.keyword == "ARG" and "=" in instruction.arguments:
            name, default = instruction.arguments.split("=", 1)
            values[name] = default
    return values


def dockerignore_admits(path: str, dockerignore: Path = ROOT / ".dockerignore") -> bool:
    """Whether the build context holds `path` (relative, /-separated), by .dockerignore's rules.

    As Docker reads them: the last pattern that matches the path or one of its parent
    directories decides; `!` re-admits; `*` and `?` stay within a path element, `**` spans any.
    """
    admitted = True
    parents = path.split("/")
    candidates = ["/".join(parents[: index + 1]) for index in range(len(parents))]
    for raw in dockerignore.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = _pattern(line.lstrip("!").strip().strip("/"))
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            admitted = negate
    return admitted


def _pattern(glob: str) -> re.Pattern[str]:
    regex = ""
    index = 0
    while index < len(glob):
        if glob.startswith("**/", index):
            regex += "(?:.*/)?"
            index += 3
        elif glob.startswith("**", index):
            regex += ".*"
            index += 2
        elif glob[index] == "*":
            regex += "[^/]*"
            index += 1
        elif glob[index] == "?":
            regex += "[^/]"
            index += 1
        else:
            regex += re.escape(glob[index])
            index += 1
    return re.compile(regex)
