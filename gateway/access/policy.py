"""`Policy`: which scopes a caller needs for each method, route, publish topic and stream topic.

A JSON object with up to four sections, each mapping names (``*`` globs allowed) to the
scopes that grant access; holding any one of them suffices, and an empty list admits every
authenticated caller:

    {"methods": {"echo": [], "orders.*": ["orders"]},
     "routes":  {"DELETE /orders/{order_id}": ["orders:admin"]},
     "publish": {"events": ["events:write"]},
     "stream":  {"events": ["events:read"]}}

An exact name wins over globs, and a longer glob over a shorter one. A request by a catalog
route is checked against the route's rule (``VERB /template``) if there is one, else its
method's. Anything no rule names is refused: the default is deny.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

SECTIONS = ("methods", "routes", "publish", "stream")


@dataclass(frozen=True, slots=True)
class Resource:
    """What a request asks for."""

    kind: str
    """One of `SECTIONS`."""
    name: str
    """The method, topic or route (``GET /orders/{order_id}``)."""
    method: str | None = None
    """For a route: the method it calls, whose rule applies when the route has none."""

    def __str__(self) -> str:
        return f"{self.kind[:-1] if self.kind in ('methods', 'routes') else self.kind} {self.name}"


class Policy:
    """The rules; built once from the parsed JSON object."""

    def __init__(self, document: dict[str, Any]) -> None:
        unknown = set(document) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown policy sections {sorted(unknown)}; expected {', '.join(SECTIONS)}")
        self._exact: dict[str, dict[str, frozenset[str]]] = {}
        self._globs: dict[str, list[tuple[str, frozenset[str]]]] = {}
        for section in SECTIONS:
            rules = document.get(section, {})
            if not isinstance(rules, dict):
                raise ValueError(f"policy section {section!r} must be an object of name -> scopes")
            for name, scopes in rules.items():
                if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
                    raise ValueError(f"policy {section}.{name}: scopes must be a list of strings")
            self._exact[section] = {n: frozenset(s) for n, s in rules.items() if "*" not in n}
            globs = [(n, frozenset(s)) for n, s in rules.items() if "*" in n]
            self._globs[section] = sorted(globs, key=lambda rule: -len(rule[0]))

    @property
    def empty(self) -> bool:
        """Whether no rule exists (every request is refused)."""
        return not any(self._exact.values()) and not any(self._globs.values())

    def required(self, resource: Resource) -> frozenset[str] | None:
        """Scopes granting ``resource`` (any one suffices; empty: any caller); None: no rule, deny."""
        found = self._rule(resource.kind, resource.name)
        if found is None and resource.method is not None:
            found = self._rule("methods", resource.method)
        return found

    def allows(self, scopes: tuple[str, ...], resource: Resource) -> bool:
        """Whether a caller holding ``scopes`` may have ``resource``."""
        required = self.required(resource)
        return required is not None and (not required or not required.isdisjoint(scopes))

    def _rule(self, section: str, name: str) -> frozenset[str] | None:
        exact = self._exact[section].get(name)
        if exact is not None:
            return exact
        return next((scopes for pattern, scopes in self._globs[section] if fnmatchcase(name, pattern)), None)
