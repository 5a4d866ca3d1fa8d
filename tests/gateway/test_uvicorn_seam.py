"""The seam to uvicorn's internals, pinned: a uvicorn that changes them fails here, by name.

`gateway.httpprotocol` subclasses uvicorn's ``HttpToolsProtocol`` (not public API) and
`gateway.server` overrides ``Server.startup`` and ``Server.handle_exit``. The source of every
method they override or rely on is pinned by digest. When ``make lock`` brings a uvicorn that
changes one, a test here fails and says which; re-read the gateway's override against the new
code, then update the digest.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from gateway import httpprotocol
from gateway.limits import ConnectionLimits, open_files
from gateway.server import http_protocol
from gateway.settings import GatewaySettings
from gateway.transport import FLUSH_BYTES

# sha256 (first 16 hex digits) of inspect.getsource() of each method, uvicorn 0.54.0.
PINNED: dict[str, tuple[Callable[..., Any], str]] = {
    # Sets self.loop, self.transport, self.scope's owner: the attributes the override uses.
    "HttpToolsProtocol.__init__": (HttpToolsProtocol.__init__, "4f08999410347141"),
    "HttpToolsProtocol.connection_made": (HttpToolsProtocol.connection_made, "6efb565ff3d36b91"),
    "HttpToolsProtocol.connection_lost": (HttpToolsProtocol.connection_lost, "c91a4c9bf2e29c55"),
    "HttpToolsProtocol.eof_received": (HttpToolsProtocol.eof_received, "5652627579a02369"),
    # Parses what arrives; skipped once the gateway has answered and half-closed (lingering).
    "HttpToolsProtocol.data_received": (HttpToolsProtocol.data_received, "010a7ae59a5d3b1a"),
    "HttpToolsProtocol.handle_websocket_upgrade": (
        HttpToolsProtocol.handle_websocket_upgrade,
        "179c4f769386ab89",
    ),
    "HttpToolsProtocol.on_message_begin": (HttpToolsProtocol.on_message_begin, "96d377fdc7c2baef"),
    "HttpToolsProtocol.on_url": (HttpToolsProtocol.on_url, "37be44e962b04ca8"),
    "HttpToolsProtocol.on_header": (HttpToolsProtocol.on_header, "65d62c044f61fdbd"),
    "HttpToolsProtocol.on_headers_complete": (HttpToolsProtocol.on_headers_complete, "1ea8589acfad92d8"),
    "HttpToolsProtocol.on_body": (HttpToolsProtocol.on_body, "dba9c32aeba35b6a"),
    # Replaced, less its keep-alive timer: the override copies the rest.
    "HttpToolsProtocol.on_response_complete": (HttpToolsProtocol.on_response_complete, "64e254f28e389e76"),
    "HttpToolsProtocol._start_asgi_task": (HttpToolsProtocol._start_asgi_task, "9c08c2571ae9b038"),
    "HttpToolsProtocol.send_400_response": (HttpToolsProtocol.send_400_response, "ae5a4a3782b646fd"),
    # The cycle's state the deadline sweep reads: more_body, response_started, response_complete,
    # waiting_for_100_continue, disconnected, message_event.
    "RequestResponseCycle.__init__": (RequestResponseCycle.__init__, "4d2f220910c33c12"),
    "Server.startup": (uvicorn.Server.startup, "2aa1d70a244bfcf2"),
    "Server.handle_exit": (uvicorn.Server.handle_exit, "553276efa26e09ea"),
}


def digest(method: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(method).encode()).hexdigest()[:16]


def test_the_locked_uvicorn_is_the_series_the_protocol_was_verified_with() -> None:
    assert uvicorn.__version__.startswith(httpprotocol.VERIFIED_UVICORN), (
        f"uvicorn {uvicorn.__version__} is installed, but gateway/httpprotocol.py was verified with "
        f"{httpprotocol.VERIFIED_UVICORN}x: re-check its overrides, then update VERIFIED_UVICORN"
    )
    assert httpprotocol.seam_intact()


@pytest.mark.parametrize("name", sorted(PINNED))
def test_the_uvicorn_code_the_gateway_overrides_is_unchanged(name: str) -> None:
    method, pinned = PINNED[name]
    assert digest(method) == pinned, (
        f"uvicorn {uvicorn.__version__} changed {name}: re-read the gateway's override "
        "(gateway/httpprotocol.py, gateway/server.py) against it, then update its digest here"
    )


def test_every_overridden_hook_is_pinned() -> None:
    overridden = {f"HttpToolsProtocol.{name}" for name in httpprotocol.OVERRIDDEN}
    assert overridden <= set(PINNED)
    protocol_class = httpprotocol.gateway_http_protocol(4096)
    own = {name for name in vars(protocol_class) if callable(vars(protocol_class)[name])}
    assert {name for name in own if hasattr(HttpToolsProtocol, name)} == set(httpprotocol.OVERRIDDEN)


def test_the_flush_threshold_is_uvicorns_high_water_mark() -> None:
    assert FLUSH_BYTES == HIGH_WATER_LIMIT


def test_an_unverified_uvicorn_is_served_with_h11_and_the_same_head_limit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = GatewaySettings(max_header_bytes=8192)
    assert http_protocol(settings)["http"] is not None
    assert http_protocol(settings)["http"] != "h11"
    monkeypatch.setattr(uvicorn, "__version__", "0.99.0")
    with caplog.at_level(logging.WARNING, logger="gateway.server"):
        options = http_protocol(settings)
    assert options == {
        "http": "h11",
        "h11_max_incomplete_event_size": 8192,
        "timeout_keep_alive": 5,
        "limit_concurrency": ConnectionLimits.of(settings, open_files()).ceiling,
    }
    assert "uvicorn 0.99.0 is not the 0.54.x" in caplog.text


def test_a_changed_hook_signature_breaks_the_seam(monkeypatch: pytest.MonkeyPatch) -> None:
    def on_header(self: object, name: bytes, value: bytes, extra: int = 0) -> None:
        del self, name, value, extra

    monkeypatch.setattr(HttpToolsProtocol, "on_header", on_header)
    assert not httpprotocol.seam_intact()
