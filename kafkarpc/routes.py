"""HTTP routes a method can be called by, such as ``GET /orders/{order_id}``: syntax and matching.

Workers declare routes next to their handlers and publish them in the catalog; gateways
match callers' paths against them. Both parse them here, so a route is valid, and means the
same, on both sides.

    route     = VERB " " template
    VERB      = GET | POST | PUT | PATCH | DELETE
    template  = ("/" segment)+ | "/"
    segment   = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" )  ; a literal
              | "{" name "}"                                 ; a parameter: one whole segment

A parameter matches one non-empty segment; its value reaches the worker URL-decoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from .errors import ProtocolError

VERBS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_ROUTE_LENGTH = 256
_LITERAL = re.compile(r"[A-Za-z0-9._~-]+")
_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")


@dataclass(frozen=True, slots=True)
class Route:
    """One parsed route."""

    verb: str
    """The HTTP method, upper case."""
    template: str
    """The path template, e.g. ``/orders/{order_id}``."""
    parameters: tuple[str, ...]
    """Names of the path parameters, in order."""
    _pattern: re.Pattern[str]

    def __str__(self) -> str:
        return f"{self.verb} {self.template}"

    @property
    def literal(self) -> bool:
        """Whether the template has no parameter (it matches one path exactly)."""
        return not self.parameters

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters (URL-decoded) if ``path`` matches the template, else None."""
        found = self._pattern.fullmatch(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


def parse(route: str) -> Route:
    """The `Route` for ``"VERB /template"``.

    Raises:
        ProtocolError: the text is not a route (see the module docstring).
    """
    if len(route) > MAX_ROUTE_LENGTH:
        raise ProtocolError(f"route longer than {MAX_ROUTE_LENGTH} characters")
    verb, _, template = route.partition(" ")
    if verb not in VERBS:
        raise ProtocolError(f"route {route!r}: the verb must be one of {', '.join(VERBS)}")
    if not template.startswith("/"):
        raise ProtocolError(f"route {route!r}: the path must start with /")
    parameters: list[str] = []
    pattern = ""
    for segment in template.split("/")[1:] if template != "/" else []:
        parameter = _PARAMETER.fullmatch(segment)
        if parameter is not None:
            name = parameter.group(1)
            if name in parameters:
                raise ProtocolError(f"route {route!r}: parameter {name} appears twice")
            parameters.append(name)
            pattern += f"/(?P<{name}>[^/]+)"
        elif _LITERAL.fullmatch(segment):
            pattern += "/" + re.escape(segment)
        else:
            raise ProtocolError(f"route {route!r}: {segment!r} is neither a literal segment nor {{name}}")
    return Route(verb, template, tuple(parameters), re.compile(pattern or "/"))
