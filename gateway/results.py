"""`ResultEndpoint`: ``GET /results/{token}``, the result of a ``Prefer: respond-async`` request.

Any replica answers: the token (`gateway.locations`) says where the reply is, and a
`ResultLookup` reads it from the reply topic. The answers:

* the reply found: what the synchronous call would have answered (a streamed reply: for now
  ``application/x-ndjson``, one line per JSON part and ``{"error": <problem>}`` if it failed);
* not yet: 202 with ``Retry-After`` and a ``Location`` that resumes past what was read;
  ``Prefer: wait=N`` (at most ``max_wait``) long-polls first;
* 404 for a bad, tampered or expired token or a reply retention removed, 403 for another
  caller's result, 504 once the deadline has passed without a reply.

Every answer is ``Cache-Control: no-store`` (a result is for its caller alone) and, once the
token is read, carries the request's ``x-correlation-id``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from kafkarpc import protocol

from . import correlation, problems
from .access import IDENTITY
from .errors import ForbiddenError, GatewayError, MethodNotAllowedError, ReplyTimeout, WorkerFailedError
from .headers import ACCEPT, PREFER, accepts_event_stream, prefer_wait
from .locations import PREFIX, ResultGoneError
from .parts import PartFormat
from .rpc import reply_parts

if TYPE_CHECKING:
    from prometheus_client import Counter
    from starlette.types import Receive, Scope, Send

    from .headers import HeaderPolicy
    from .locations import ResultHandle, ResultLocations
    from .lookup import Found

log = logging.getLogger(__name__)

GRACE_SECONDS = 10.0
"""How long after its deadline a reply is still looked for (clock skew, a worker's last write)."""
Headers = list[tuple[bytes, bytes]]
_NO_STORE = (b"cache-control", b"no-store")


def serves(path: str) -> bool:
    """Whether ``path`` is ``/results/{token}`` with a non-empty token and no further segment."""
    return path.startswith(PREFIX) and len(path) > len(PREFIX) and path.find("/", len(PREFIX)) < 0


class Finder(Protocol):
    """Finds results: `ResultLookup`."""

    async def find(self, handle: ResultHandle, wait: float) -> Found:
        """What the reply topic holds of ``handle``'s reply, waiting up to ``wait`` seconds."""


class ResultEndpoint:
    """Serves ``GET /results/{token}``; one instance per app.

    Args:
        locations: Verifies tokens and signs the resumed locations of 202s.
        finder: Reads the reply topic.
        headers: Which reply headers a worker set reach the caller.
        max_wait: Longest ``Prefer: wait`` honoured (``GatewaySettings.max_timeout``).
        retry_after: ``Retry-After`` seconds of a 202.
        lookups: ``rpcgw_result_lookups_total{outcome}``, if counted.
        dropped: Called with the reason for each worker header not passed on.
        clock: Epoch seconds (tests move time).
    """

    def __init__(
        self,
        *,
        locations: ResultLocations,
        finder: Finder,
        headers: HeaderPolicy,
        max_wait: float,
        retry_after: int = 1,
        lookups: Counter | None = None,
        dropped: Callable[[str], object] = lambda reason: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._locations = locations
        self._finder = finder
        self._headers = headers
        self._max_wait = max_wait
        self._retry_after = str(retry_after).encode()
        self._lookups = lookups
        self._dropped = dropped
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        correlation.current.set(None)  # known once the token is read; never a previous request's
        applied: int | None = None
        try:
            if scope["method"] != "GET":
                raise MethodNotAllowedError("use GET", allowed=("GET",))
            handle = self._locations.handle(scope["path"][len(PREFIX) :])
            correlation.current.set(handle.correlation_id)
            _check_caller(scope, handle)
            wait, applied = self._wait(scope, handle)
            status, body, headers, outcome = await self._answer(handle, wait, _accept(scope))
            headers.append((problems.CORRELATION_HEADER.encode(), handle.correlation_id.encode()))
        except GatewayError as error:
            outcome = error.outcome
            log.info("result lookup failed", extra={"outcome": outcome, "detail": error.detail})
            problem = problems.from_error(error)  # carries the correlation id, once known
            status, body, headers = problem.status_code, bytes(problem.body), problem.raw_headers
        except Exception as exc:  # the framework's last-resort handler is bypassed here
            outcome = "error"
            problem = problems.crash(exc)
            status, body, headers = problem.status_code, bytes(problem.body), problem.raw_headers
        if self._lookups is not None:
            self._lookups.labels(outcome).inc()
        headers.append(_NO_STORE)
        if applied is not None:
            headers.append((b"preference-applied", f"wait={applied}".encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _wait(self, scope: Scope, handle: ResultHandle) -> tuple[float, int | None]:
        """Seconds to long-poll, and the ``wait`` preference honoured (for ``Preference-Applied``)."""
        asked: int | None = None
        for name, value in scope["headers"]:
            if name == PREFER and asked is None:
                asked = prefer_wait(value)
        if asked is None or asked > self._max_wait:
            return 0.0, None  # as for /rpc/: a wait above the maximum is not honoured
        # No reply is looked for after the grace period: waiting past it would only delay the 504.
        wait = min(float(asked), handle.deadline_ms / 1000 + GRACE_SECONDS - self._clock())
        return (wait, asked) if wait > 0 else (0.0, None)

    async def _answer(
        self, handle: ResultHandle, wait: float, accept: bytes
    ) -> tuple[int, bytes, Headers, str]:
        started = self._clock()  # a reply written before this is found by a lookup that caught up
        found = await self._finder.find(handle, wait)
        if found.complete:
            return self._reply(found.parts, accept)
        if found.gone:
            raise ResultGoneError("the result is no longer kept (reply topic retention)")
        if found.ended:  # the end record came, but parts before it are missing
            raise WorkerFailedError(
                "the worker's streamed reply is missing parts", worker_status=found.parts[-1].status
            )
        if found.caught_up and started > handle.deadline_ms / 1000 + GRACE_SECONDS:
            raise ReplyTimeout("the request's deadline passed without a reply")
        location = self._locations.location(handle.resumed(found.next_offset))
        headers = [
            (b"location", location.encode()),
            (b"retry-after", self._retry_after),
            (b"content-length", b"0"),
        ]
        return 202, b"", headers, "pending"

    def _reply(self, parts: list[protocol.Reply], accept: bytes) -> tuple[int, bytes, Headers, str]:
        first = parts[0]
        if first.sequence is None:
            status, body, headers = reply_parts(first)
        else:  # a streamed reply, whole by now: written as the live relay writes one
            status, _, _ = reply_parts(first)
            writer = PartFormat.choose(accepts_event_stream(accept), first)
            whole = writer.whole(parts)
            if whole is None:  # raw parts cannot carry the failure: the whole answer is the problem
                raise problems.worker_error(parts[-1])
            body = whole
            headers = [(b"content-type", writer.content_type), (b"content-length", str(len(body)).encode())]
        if first.response_headers:
            headers += self._headers.for_caller(first.response_headers, self._dropped)
        return status, body, headers, "ok" if status < 400 else "rejected"


def _accept(scope: Scope) -> bytes:
    """The caller's ``Accept`` values, comma-joined."""
    return b",".join(value for name, value in scope["headers"] if name == ACCEPT)


def _check_caller(scope: Scope, handle: ResultHandle) -> None:
    """Refuse a result issued to a caller to anyone else; one issued to nobody is the holder's."""
    if handle.subject is None:
        return
    caller: protocol.Identity | None = scope.get(IDENTITY)
    if caller is None or caller.subject != handle.subject:
        raise ForbiddenError("the result belongs to another caller")


OPENAPI_PATH: dict[str, Any] = {
    "get": {
        "summary": "The result of a Prefer: respond-async call",
        "description": (
            "Answers with the worker's reply once it is there, as `/rpc/{method}` would have; until then "
            "202 with `Retry-After` and the `Location` to ask next. `Prefer: wait=N` long-polls. "
            "404: unknown, expired or no longer kept; 403: another caller's; 504: no reply by the deadline."
        ),
        "operationId": "result",
        "parameters": [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {
            "200": {"description": "The worker's reply"},
            "202": {"description": "Not there yet: ask the `Location` again after `Retry-After`"},
            "default": {
                "description": "A problem",
                "content": {protocol.PROBLEM_JSON: {"schema": {"type": "object"}}},
            },
        },
    }
}
"""The OpenAPI path item of ``/results/{token}``, merged into FastAPI's generated document."""
