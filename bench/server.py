"""``python -m bench.server {echo,raw,gateway} [--port N] --loop L --http H``.

B1 (`bench.echo`) runs here under the gateway's own server (`GatewayServer`), unless
``--loop``/``--http`` ask for something else. The gateway runs here
only for A/B experiments on the event loop or HTTP parser, which ``python -m gateway``
fixes at uvloop and httptools. Everything else about them comes from their own settings.
"""

from __future__ import annotations

import argparse
import logging

import uvicorn
from starlette.types import ASGIApp

from gateway.access import AccessSettings
from gateway.app import create_app
from gateway.server import GatewayServer
from gateway.settings import GatewaySettings
from kafkarpc.connection import KafkaSettings

from .echo import create_echo_app
from .httpfloor import echo_app


def build(kind: str) -> ASGIApp:
    """The app to serve: ``echo`` (B1), ``raw`` (`bench.httpfloor`) or ``gateway`` (settings from env)."""
    if kind == "echo":
        return create_echo_app()
    if kind == "raw":
        return echo_app
    return create_app(GatewaySettings(), KafkaSettings(), access=AccessSettings())


def main() -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("kind", choices=["echo", "raw", "gateway"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    parser.add_argument("--http", default="httptools", choices=["httptools", "h11"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.kind == "echo" and args.loop == "uvloop" and args.http == "httptools":
        settings = GatewaySettings(host=args.host, port=args.port)
        GatewayServer(create_echo_app(settings), settings).run()
        return
    # The same flags as gateway/__main__.py: no access log, lifespan on.
    uvicorn.run(
        build(args.kind),
        host=args.host,
        port=args.port,
        loop=args.loop,
        http=args.http,
        access_log=False,
        log_config=None,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
