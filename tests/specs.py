"""The official JSON Schemas the API documents are validated against.

OpenAPI 3.1: `openapi-spec-validator` (a dev dependency) carries it. AsyncAPI 3.0.0: the
AsyncAPI initiative publishes it in the npm package ``@asyncapi/specs``; the tarball is fetched
once from the npm registry, checked against its published sha512, and cached.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import orjson

ASYNCAPI_SPECS = "https://registry.npmjs.org/@asyncapi/specs/-/specs-6.11.1.tgz"
ASYNCAPI_INTEGRITY = (
    "sha512-A3WBLqAKGoJ2+6FWFtpjBlCQ1oFCcs4GxF7zsIGvNqp/klGUHjlA3aAcZ9XMMpLGE8zPeYDz2x9FmO6DSuKraQ=="
)
ASYNCAPI_SCHEMA = "package/schemas/3.0.0-without-$id.json"


def asyncapi_schema() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 JSON Schema (``@asyncapi/specs`` 6.11.1)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kafka-rpc-gateway"
    path = cache / "asyncapi-3.0.0.json"
    if not path.exists():
        with urllib.request.urlopen(ASYNCAPI_SPECS, timeout=60) as response:
            tarball = response.read()
        digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
        if digest != ASYNCAPI_INTEGRITY:
            raise AssertionError(f"{ASYNCAPI_SPECS} does not match its published integrity")
        with tarfile.open(fileobj=io.BytesIO(tarball)) as archive:
            member = archive.extractfile(ASYNCAPI_SCHEMA)
            assert member is not None
            schema = member.read()
        cache.mkdir(parents=True, exist_ok=True)
        path.write_bytes(schema)
    document: dict[str, Any] = orjson.loads(path.read_bytes())
    return document
