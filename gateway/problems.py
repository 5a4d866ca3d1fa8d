"""The one place where failures become RFC 9457 ``application/problem+json`` responses."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TYPE_CHECKING

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from kafkarpc import protocol

from . import correlation
from .errors import GatewayError, MethodNotAllowedError, UnauthenticatedError, WorkerFailedError

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request

log = logging.getLogger(__name__)

CORRELATION_HEADER = "x-correlation-id"
"""HTTP response header carrying the correlation id, on success and error alike."""
WORKER_DETAIL_MAX = 2_048
"""Longest worker ``detail`` copied into a 502, so a worker cannot bloat gateway answers."""


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    retry_after: int | None = None,
    **members: object,
) -> Response:
    """A problem+json response carrying the current correlation id."""
    correlation_id = correlation.current.get()
    if correlation_id is not None:
        members["correlation_id"] = correlation_id
    headers = {CORRELATION_HEADER: correlation_id} if correlation_id else {}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    body = protocol.problem_body(status, title, detail, **members)
    return Response(body, status_code=status, headers=headers, media_type=protocol.PROBLEM_JSON)


def from_error(error: GatewayError) -> Response:
    """The response for a gateway error."""
    members: dict[str, object] = {}
    if isinstance(error, WorkerFailedError):
        members["worker_status"] = error.worker_status
    response = problem(error.status, error.title, error.detail, retry_after=error.retry_after, **members)
    if isinstance(error, MethodNotAllowedError):
        response.raw_headers.append((b"allow", ", ".join(error.allowed).encode()))
    elif isinstance(error, UnauthenticatedError):
        response.raw_headers.append((b"www-authenticate", error.challenge.encode()))
    return response


def worker_error(reply: protocol.Reply) -> WorkerFailedError:
    """A 502 for a worker's 5xx or 1xx reply.

    The caller gets the worker's problem ``detail`` (at most `WORKER_DETAIL_MAX` characters)
    when the reply is problem+json; any other body is not forwarded, since a failing worker's
    body may hold internals (a stack trace), and the detail says only the status.
    """
    if reply.status < 200:
        detail = f"the worker replied with status {reply.status}, which is not a final response"
    else:
        detail = f"the worker failed with status {reply.status}"
    try:
        document = orjson.loads(reply.body) if reply.content_type == protocol.PROBLEM_JSON else None
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("detail"), str):
        detail = document["detail"][:WORKER_DETAIL_MAX]
    return WorkerFailedError(detail, worker_status=reply.status)


def crash(exc: Exception) -> Response:
    """The 500 for a bug: the traceback goes to the log, never to the caller."""
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal Server Error", "the gateway failed; see its logs")


def install(app: FastAPI) -> None:
    """Answer framework errors (unknown route, bad path, crashes) with problem+json too."""

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = problem(exc.status_code, _title(exc.status_code), str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    async def invalid_request(request: Request, exc: Exception) -> Response:
        return problem(400, "Bad Request", "the request does not match the route")

    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return from_error(exc)

    async def crash_handler(request: Request, exc: Exception) -> Response:
        return crash(exc)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(Exception, crash_handler)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
