"""Handlers by method name, registered with a decorator, optionally with HTTP routes.

    registry = HandlerRegistry()

    @registry.handler("orders.create", routes=["POST /orders"], status_code=201)
    async def create(order: NewOrder, headers: ResponseHeaders) -> Order:
        '''Place an order.'''
        ...

    @registry.handler("greet")
    async def greet(request: Request) -> dict[str, str]:   # the raw form
        return {"hello": request.body.decode()}

A typed handler declares its body, path and query parameters and result with annotations
(`workers.endpoint`); a raw one takes the decoded `Request`. Either returns the reply body:
a `Response` (full control), ``bytes`` (sent as-is), ``str`` (text/plain), ``None`` (204), or
anything the return annotation (or else orjson) can serialise (application/json).
``async def`` handlers run on the event loop and must not block it; plain ``def`` handlers
run in a thread pool. A generator handler (either kind, with ``yield``) streams its answer:
each item is one part, serialised by the same rules.

    @registry.handler("count")
    async def count(n: int) -> AsyncIterator[Tick]:
        for i in range(n):
            yield Tick(i=i)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from kafkarpc import catalog, routes
from kafkarpc.errors import ProtocolError
from kafkarpc.protocol import valid_method
from workers.endpoint import Endpoint
from workers.errors import RegistryError

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True, slots=True)
class Registration:
    """One registered handler."""

    method: str
    """Method name it serves."""
    function: Handler
    """The handler itself."""
    is_async: bool
    """Whether it runs on the loop (else in the thread pool; a generator's every step there)."""
    endpoint: Endpoint
    """How its parameters are bound and its result serialised."""
    routes: tuple[routes.Route, ...] = ()
    """HTTP routes that call it, besides ``/rpc/{method}``."""
    status_code: int = 200
    """Status of a successful typed reply."""

    @property
    def streaming(self) -> bool:
        """Whether it is a generator, whose answer is streamed in parts."""
        return self.endpoint.streaming

    def describe(self) -> catalog.Method:
        """This handler as a catalog method: routes, docstring and schemas."""
        doc = inspect.getdoc(self.function) or ""
        summary, _, description = doc.partition("\n")
        body, path, query, output = self.endpoint.schemas()
        return catalog.Method(
            method=self.method,
            routes=tuple(str(route) for route in self.routes),
            summary=summary.strip(),
            description=description.strip(),
            request_content_type="application/json" if body is not None else "*/*",
            body=body,
            path=path,
            query=query,
            response_content_type="application/json" if output is not None else "*/*",
            status=self.status_code,
            output=output,
            streaming=self.streaming,
            cancellable=True,  # the runtime reads cancel records for every method
        )


class HandlerRegistry:
    """Method name -> handler; a method can be registered only once, a route only for one method."""

    def __init__(self) -> None:
        self._handlers: dict[str, Registration] = {}

    def handler(self, method: str, *, routes: Iterable[str] = (), status_code: int = 200) -> Callable[[H], H]:
        """Decorator registering a function for ``method`` (and ``routes``, e.g. ``"GET /orders/{id}"``).

        Raises:
            RegistryError: an illegal method name or route, a name or route already taken, or a
                signature that cannot be bound (`workers.endpoint`).
        """

        def register(function: H) -> H:
            self.add(method, function, routes=routes, status_code=status_code)
            return function

        return register

    def add(
        self, method: str, function: Handler, *, routes: Iterable[str] = (), status_code: int = 200
    ) -> None:
        """Register ``function`` for ``method`` (the non-decorator form)."""
        if not valid_method(method):
            raise RegistryError(f"{method!r} is not a valid method name")
        if method in self._handlers:
            raise RegistryError(f"method {method!r} is already registered")
        if not 200 <= status_code <= 299:
            raise RegistryError(f"{method}: status_code must be 200-299, not {status_code}")
        parsed = _parse(method, routes)
        taken = {(r.verb, r.template): other.method for other in self for r in other.routes}
        for route in parsed:
            if (route.verb, route.template) in taken:
                raise RegistryError(
                    f"route {route} of {method!r} is already {taken[route.verb, route.template]!r}'s"
                )
        parameters = tuple(dict.fromkeys(name for route in parsed for name in route.parameters))
        endpoint = Endpoint(function, method, parameters)
        on_loop = inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
        self._handlers[method] = Registration(method, function, on_loop, endpoint, parsed, status_code)

    def include(self, other: HandlerRegistry) -> None:
        """Add every handler of ``other``; a method or route both define is an error."""
        for registration in other:
            self.add(
                registration.method,
                registration.function,
                routes=[str(route) for route in registration.routes],
                status_code=registration.status_code,
            )

    def get(self, method: str) -> Registration | None:
        """The registration for ``method``, or None if it is unknown."""
        return self._handlers.get(method)

    def __iter__(self) -> Iterator[Registration]:
        return iter(self._handlers.values())

    def __len__(self) -> int:
        return len(self._handlers)

    def __contains__(self, method: object) -> bool:
        return method in self._handlers


def _parse(method: str, texts: Iterable[str]) -> tuple[routes.Route, ...]:
    try:
        return tuple(routes.parse(text) for text in texts)
    except ProtocolError as exc:
        raise RegistryError(f"{method}: {exc}") from None
