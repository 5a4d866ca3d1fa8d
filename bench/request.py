"""`RequestTemplate`: pre-encoded HTTP requests whose bodies carry a unique nonce each.

The nonce lets every reply be checked against its own request (``echo`` must return the
body unchanged) and lets the stage tap find a request's records on the Kafka topics.
"""

from __future__ import annotations

import secrets


class RequestTemplate:
    """Pre-encoded ``POST`` requests whose JSON bodies differ only in a fixed-width nonce."""

    NONCE_WIDTH = 20

    def __init__(
        self, host: str, port: int, path: str, body_bytes: int, headers: dict[str, str] | None = None
    ) -> None:
        self._tag = secrets.token_hex(4)  # distinguishes runs sharing a topic
        self._prefix = b'{"nonce":"'
        self._suffix_head = b'","pad":"'
        fixed = len(self._prefix) + self.NONCE_WIDTH + len(self._suffix_head) + len(b'"}')
        self._suffix = self._suffix_head + b"x" * max(body_bytes - fixed, 0) + b'"}'
        self.body_bytes = fixed + max(body_bytes - fixed, 0)
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._head = (
            f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n{extra}"
            f"content-length: {self.body_bytes}\r\n\r\n"
        ).encode()

    def nonce(self, index: int) -> str:
        """The nonce of request ``index``."""
        return f"{self._tag}{index:012x}"

    def build(self, index: int) -> tuple[bytes, bytes]:
        """(body, full request bytes) of request ``index``."""
        body = self._prefix + self.nonce(index).encode() + self._suffix
        return body, self._head + body
