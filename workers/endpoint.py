"""`Endpoint`: a handler's signature, read once at registration, FastAPI style.

Each parameter is bound by its annotation:

    Request              the raw request (the untyped form; it keeps working alone)
    Identity             the authenticated caller (``rpc-caller``); without one the answer is 401.
                         ``Identity | None`` takes None instead (a gateway without authentication)
    ResponseHeaders      a dict the handler fills with headers for the caller (``location``, ...)
    Cancellation         set when the answer is no longer wanted (a cancel, the deadline)
    a pydantic model     the JSON body; at most one
    a route parameter    a path parameter (``{order_id}`` in a route), converted to its annotation;
                         called through ``/rpc/{method}``, it may come from the query string
    anything else        a query parameter: a scalar, or ``list[...]`` of one for repeats

pydantic validates and converts them; the first failure answers 422 with pydantic's error
list (locations ``["body", ...]``, ``["path", name]``, ``["query", name]``). A return
annotation serialises the result (pydantic to JSON-able data, then orjson) and, with the
models, describes the method in the catalog. The docstring's first line is the summary.

A generator (``async def`` or ``def`` with ``yield``) streams its answer, one part per item;
its return annotation names the item type: ``AsyncIterator[Model]``, ``Iterator[Model]``,
``AsyncGenerator[Model, None]``, ...
"""

from __future__ import annotations

import inspect
import types
import typing
from collections import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError, create_model

from kafkarpc import catalog
from kafkarpc.protocol import Identity, Request
from workers.cancellation import Cancellation
from workers.errors import HandlerError, RegistryError
from workers.response import Response

# Return annotations that keep the untyped reply rules (`workers.dispatcher`).
UNTYPED_RETURNS: tuple[Any, ...] = (inspect.Signature.empty, Any, bytes, str, None, type(None), Response)
# Return annotations of a generator handler; the first argument is the type of each part.
STREAM_RETURNS: tuple[Any, ...] = (
    abc.AsyncIterator,
    abc.AsyncIterable,
    abc.AsyncGenerator,
    abc.Iterator,
    abc.Iterable,
    abc.Generator,
)


class ResponseHeaders(dict[str, str]):
    """Headers for the HTTP caller; declare a parameter of this type and fill it in."""


@dataclass(frozen=True, slots=True)
class Bound:
    """The arguments for one call, and the headers dict the handler may fill."""

    arguments: dict[str, Any]
    headers: ResponseHeaders | None


class Endpoint:
    """How one handler's parameters come from a request, and how its result becomes a body."""

    def __init__(self, function: Callable[..., Any], method: str, path_parameters: tuple[str, ...]) -> None:
        try:
            hints = typing.get_type_hints(function, include_extras=True)  # keeps Annotated[int, Field(...)]
        except (NameError, TypeError) as exc:
            raise RegistryError(f"{method}: cannot read the handler's annotations: {exc}") from None
        self._request: list[str] = []
        self._headers: str | None = None
        self._cancellations: list[str] = []
        self._callers: dict[str, bool] = {}
        """Parameters that take the caller's `Identity`, and whether each requires one."""
        self._body: tuple[str, type[BaseModel]] | None = None
        path: dict[str, Any] = {}
        query: dict[str, Any] = {}
        parameters = inspect.signature(function).parameters
        for name, parameter in parameters.items():
            annotation = hints.get(name, Request if len(parameters) == 1 else str)
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            kind = _bare(annotation)
            if kind is Request:
                self._request.append(name)
            elif kind is ResponseHeaders:
                self._headers = name
            elif kind is Cancellation:
                self._cancellations.append(name)
            elif kind is Identity or _optional(kind) is Identity:
                self._callers[name] = kind is Identity
            elif inspect.isclass(kind) and issubclass(kind, BaseModel):
                if self._body is not None:
                    raise RegistryError(f"{method}: two body models ({self._body[0]} and {name})")
                self._body = (name, kind)
            elif name in path_parameters:
                path[name] = (annotation, default)
            else:
                query[name] = (annotation, default)
        missing = set(path_parameters) - set(path)
        if missing:
            raise RegistryError(f"{method}: route parameters {sorted(missing)} are not handler parameters")
        self._path = create_model(f"{method}.path", **path) if path else None
        self._query = create_model(f"{method}.query", **query) if query else None
        self._lists = {
            name for name, (annotation, _) in query.items() if typing.get_origin(_bare(annotation)) is list
        }
        self.takes_cancellation = bool(self._cancellations)
        """Whether a parameter takes the request's `Cancellation`."""
        self.streaming = inspect.isasyncgenfunction(function) or inspect.isgeneratorfunction(function)
        """Whether the handler is a generator: its answer is streamed, a part per item."""
        returns = hints.get("return", inspect.Signature.empty)
        if self.streaming:
            returns = _item(returns, method)
        self._output = None if returns in UNTYPED_RETURNS else TypeAdapter(returns)
        self.typed = len(parameters) != 1 or bool(
            self._body
            or path
            or query
            or self._output
            or self._headers
            or self._callers
            or self._cancellations
        )
        """Whether anything but one lone raw `Request` parameter is declared (none is typed too)."""

    def bind(self, request: Request, cancellation: Cancellation | None = None) -> Bound:
        """The handler's arguments for ``request``; ``cancellation`` for a `Cancellation` parameter.

        Raises:
            HandlerError: 422 with pydantic's ``errors`` when the request does not validate.
        """
        arguments: dict[str, Any] = dict.fromkeys(self._request, request)
        if self._cancellations:
            arguments.update(dict.fromkeys(self._cancellations, cancellation or Cancellation()))
        for name, required in self._callers.items():
            if required and request.caller is None:
                raise HandlerError(401, "this method needs an authenticated caller")
            arguments[name] = request.caller
        errors: list[dict[str, Any]] = []
        query = request.query_params()
        if self._path is not None:
            path = request.path_params or {n: v for n, v in query if n in self._path.model_fields}
            arguments.update(_validate(self._path, path, "path", errors))
        if self._query is not None:
            values: dict[str, Any] = {}
            for name, value in query:
                if name in self._lists:
                    values.setdefault(name, []).append(value)
                else:
                    values.setdefault(name, value)
            arguments.update(_validate(self._query, values, "query", errors))
        if self._body is not None:
            name, model = self._body
            try:
                arguments[name] = model.model_validate_json(request.body)
            except ValidationError as exc:
                errors.extend(_errors(exc, "body"))
        if errors:
            raise HandlerError(422, _summary(errors), errors=errors)
        headers = None
        if self._headers is not None:
            headers = arguments[self._headers] = ResponseHeaders()
        return Bound(arguments, headers)

    def serialise(self, result: Any) -> Any:
        """The result (a part, when streaming) as JSON-able data through the return annotation;
        unchanged if untyped."""
        if self._output is None:
            return result
        return self._output.dump_python(result, mode="json")

    def schemas(self) -> tuple[catalog.Schema, catalog.Schema, catalog.Schema, catalog.Schema]:
        """JSON Schemas of the body, the path and the query parameters, and the result."""
        return (
            None if self._body is None else self._body[1].model_json_schema(),
            None if self._path is None else self._path.model_json_schema(),
            None if self._query is None else self._query.model_json_schema(),
            None if self._output is None else self._output.json_schema(mode="serialization"),
        )


def _item(returns: Any, method: str) -> Any:
    """The part type a generator handler's return annotation names."""
    if returns in (inspect.Signature.empty, Any):
        return returns
    if (typing.get_origin(returns) or returns) not in STREAM_RETURNS:
        raise RegistryError(
            f"{method}: a generator handler returns AsyncIterator[...] or Iterator[...], not {returns!r}"
        )
    arguments = typing.get_args(returns)
    return arguments[0] if arguments else Any


def _bare(annotation: Any) -> Any:
    """The type inside ``Annotated[type, ...]``; any other annotation as it is."""
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation


def _optional(annotation: Any) -> Any:
    """``X`` for ``X | None`` (or ``Optional[X]``); None for anything else."""
    arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return arguments[0] if is_union and len(arguments) == 1 else None


def _validate(
    model: type[BaseModel], values: dict[str, Any], where: str, errors: list[dict[str, Any]]
) -> dict[str, Any]:
    try:
        return dict(model.model_validate(values))
    except ValidationError as exc:
        errors.extend(_errors(exc, where))
        return {}


def _errors(exc: ValidationError, where: str) -> list[dict[str, Any]]:
    # Locations and messages only: pydantic's "input" would echo what the caller sent (maybe a
    # secret) and "ctx" may hold objects JSON cannot carry.
    return [
        {"loc": [where, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False)
    ]


def _summary(errors: list[dict[str, Any]]) -> str:
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"
