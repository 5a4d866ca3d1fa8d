"""Handler registration and loading by module:object."""

from __future__ import annotations

import pytest

from kafkarpc.protocol import Request
from workers.__main__ import load_registry
from workers.errors import RegistryError
from workers.registry import HandlerRegistry


def test_decorator_registers_async_and_sync_handlers() -> None:
    registry = HandlerRegistry()

    @registry.handler("a")
    async def a(request: Request) -> bytes:
        return b""

    @registry.handler("b")
    def b(request: Request) -> bytes:
        return b""

    first, second = registry.get("a"), registry.get("b")
    assert first is not None
    assert first.is_async
    assert second is not None
    assert not second.is_async
    assert "a" in registry
    assert len(registry) == 2
    assert registry.get("c") is None


def test_duplicates_and_bad_names_are_rejected() -> None:
    registry = HandlerRegistry()
    registry.add("x", lambda request: b"")
    with pytest.raises(RegistryError, match="already registered"):
        registry.add("x", lambda request: b"")
    with pytest.raises(RegistryError, match="not a valid method name"):
        registry.add("bad name", lambda request: b"")


def test_load_registry_merges_specs_and_explains_failures() -> None:
    registry = load_registry(["workers.examples:registry"])
    assert {r.method for r in registry} == {
        "echo",
        "sleep",
        "fail",
        "orders.create",
        "orders.get",
        "orders.list",
        "whoami",
        "report",
        "count",
    }
    with pytest.raises(RegistryError, match="already registered"):
        load_registry(["workers.examples:registry", "workers.examples:registry"])
    with pytest.raises(RegistryError, match="not module:object"):
        load_registry(["workers.examples"])
    with pytest.raises(RegistryError, match="cannot load"):
        load_registry(["workers.nope:registry"])
    with pytest.raises(RegistryError, match="not a HandlerRegistry"):
        load_registry(["workers.examples:orders"])
    with pytest.raises(RegistryError, match="no handlers"):
        load_registry([])
