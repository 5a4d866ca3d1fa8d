"""Handlers by method name, registered with a decorator.

    registry = HandlerRegistry()

    @registry.handler("greet")
    async def greet(request: Request) -> dict[str, str]:
        return {"hello": request.body.decode()}

A handler takes the decoded `Request` and returns the reply body: a `Response` (full
control), ``bytes`` (sent as-is), ``str`` (text/plain), ``None`` (204) or anything orjson can
serialise (application/json). ``async def`` handlers run on the event loop and must not
block it; plain ``def`` handlers run in a thread pool.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from kafkarpc.protocol import Request, valid_method
from workers.errors import RegistryError

Handler = Callable[[Request], Awaitable[Any]] | Callable[[Request], Any]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True, slots=True)
class Response:
    """A handler's explicit answer."""

    body: bytes = b""
    """Reply value."""
    status: int = 200
    """HTTP status; use `HandlerError` for errors so the body is problem+json."""
    content_type: str = "application/json"
    """Media type of ``body``."""


@dataclass(frozen=True, slots=True)
class Registration:
    """One registered handler."""

    method: str
    """Method name it serves."""
    function: Handler
    """The handler itself."""
    is_async: bool
    """Whether it is awaited on the loop (else it runs in the thread pool)."""


class HandlerRegistry:
    """Method name -> handler; a method can be registered only once."""

    def __init__(self) -> None:
        self._handlers: dict[str, Registration] = {}

    def handler(self, method: str) -> Callable[[H], H]:
        """Decorator registering a function for ``method``.

        Raises:
            RegistryError: the name is not a legal method name or is already taken.
        """

        def register(function: H) -> H:
            self.add(method, function)
            return function

        return register

    def add(self, method: str, function: Handler) -> None:
        """Register ``function`` for ``method`` (the non-decorator form)."""
        if not valid_method(method):
            raise RegistryError(f"{method!r} is not a valid method name")
        if method in self._handlers:
            raise RegistryError(f"method {method!r} is already registered")
        self._handlers[method] = Registration(method, function, inspect.iscoroutinefunction(function))

    def include(self, other: HandlerRegistry) -> None:
        """Add every handler of ``other``; a method both define is an error."""
        for registration in other:
            self.add(registration.method, registration.function)

    def get(self, method: str) -> Registration | None:
        """The registration for ``method``, or None if it is unknown."""
        return self._handlers.get(method)

    def __iter__(self) -> Iterator[Registration]:
        return iter(self._handlers.values())

    def __len__(self) -> int:
        return len(self._handlers)

    def __contains__(self, method: object) -> bool:
        return method in self._handlers
