"""uv.lock read as an installer reads it: which packages, at which versions, a given machine gets.

A package's dependencies carry PEP 508 markers and may ask for extras; a name locked at two versions
(for different Pythons) is told apart by the version the dependency names.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "uv.lock"

Package = Mapping[str, Any]


def load(path: Path = LOCK) -> list[Package]:
    """The lock's [[package]] entries."""
    packages: list[Package] = tomllib.loads(path.read_text())["package"]
    return packages


def project(packages: Iterable[Package]) -> Package:
    """The project's own entry: the one installed from the checkout, not from an index."""
    (own,) = (package for package in packages if "editable" in package["source"])
    return own


def closure(
    packages: Iterable[Package], dependencies: Iterable[Mapping[str, Any]], environment: Mapping[str, str]
) -> dict[str, str]:
    """Canonical name -> version of every package `dependencies` pull in on `environment`."""
    by_name: dict[str, list[Package]] = {}
    for package in packages:
        by_name.setdefault(package["name"], []).append(package)
    found: dict[str, str] = {}
    done: set[tuple[str, str, str]] = set()  # (name, version, extra or "")
    todo = list(dependencies)
    while todo:
        dependency = todo.pop()
        marker = dependency.get("marker")
        if marker is not None and not Marker(marker).evaluate(dict(environment)):
            continue
        (package,) = (
            candidate
            for candidate in by_name[dependency["name"]]
            if dependency.get("version", candidate["version"]) == candidate["version"]
        )
        name, version = package["name"], package["version"]
        for extra in ("", *dependency.get("extra", ())):
            if (name, version, extra) in done:
                continue
            done.add((name, version, extra))
            found[canonicalize_name(name)] = version
            todo.extend(
                package.get("dependencies", [])
                if not extra
                else package.get("optional-dependencies", {}).get(extra, [])
            )
    return found


def runtime(packages: list[Package], environment: Mapping[str, str]) -> dict[str, str]:
    """What `uv sync --frozen --no-editable` installs: the project and its dependencies, no extra."""
    own = project(packages)
    return {
        canonicalize_name(own["name"]): own["version"],
        **closure(packages, own.get("dependencies", []), environment),
    }


def dev_only(packages: list[Package], environment: Mapping[str, str]) -> dict[str, str]:
    """What the dev extra adds to the runtime set (pytest, ruff, mypy, ...)."""
    own = project(packages)
    everything = closure(
        packages, [*own.get("dependencies", []), *own["optional-dependencies"]["dev"]], environment
    )
    installed = runtime(packages, environment)
    return {name: version for name, version in everything.items() if name not in installed}
