"""The HTTP floor (FH): HTTP echo on uvicorn with httptools and uvloop, no FastAPI, no Kafka.

``python -m bench.httpfloor serve --port N`` serves `echo_app`, a bare ASGI callable that
returns each request's body, in a process of its own (`bench.stack.Stack` starts it). It
is loaded like B1 and S, by the same `bench.loadgen.LoadGenerator` (the same requests and
bodies, keep-alive connections), so FH is the least any Python HTTP front end built on
uvicorn can cost; the gateway's HTTP side is FH plus FastAPI and its own checks (B1).
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.types import Receive, Scope, Send


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer every HTTP request with its own body (so ``GET /healthz`` answers 200, empty)."""
    if scope["type"] != "http":
        return  # lifespan: nothing to start
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(host: str, port: int) -> None:
    """Serve `echo_app` until SIGTERM: uvloop, httptools, no access log, no lifespan."""
    uvicorn.run(
        echo_app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        lifespan="off",
    )


def main(argv: list[str] | None = None) -> None:
    """``serve``: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m bench.httpfloor", description=__doc__)
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
