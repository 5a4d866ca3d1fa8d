"""The worker runtime: serve methods from Kafka with plain Python handlers.

    from workers import HandlerRegistry, Request

    registry = HandlerRegistry()

    @registry.handler("greet")
    async def greet(request: Request) -> dict[str, str]:
        return {"hello": request.body.decode()}

Run it with ``python -m workers --handlers module:registry``; docs/WORKERS.md has the rest.
"""

from kafkarpc.protocol import Identity, Request
from workers.cancellation import Cancellation
from workers.endpoint import ResponseHeaders
from workers.errors import HandlerError, TransientError
from workers.registry import HandlerRegistry
from workers.response import Response

__all__ = [
    "Cancellation",
    "HandlerError",
    "HandlerRegistry",
    "Identity",
    "Request",
    "Response",
    "ResponseHeaders",
    "TransientError",
]
