"""WORKER_LOOP: which event loop the worker runs on."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest
import uvloop

from workers.eventloop import loop_factory
from workers.settings import WorkerSettings


def test_auto_and_uvloop_build_uvloop_where_it_is_installed() -> None:
    for choice in ("auto", "uvloop"):
        factory = loop_factory(choice)
        assert factory is not None
        loop = factory()
        try:
            assert isinstance(loop, uvloop.Loop)
        finally:
            loop.close()


def test_asyncio_leaves_the_standard_library_loop() -> None:
    assert loop_factory("asyncio") is None
    with asyncio.Runner(loop_factory=loop_factory("asyncio")) as runner:
        assert not isinstance(runner.get_loop(), uvloop.Loop)


def test_without_uvloop_auto_falls_back_and_uvloop_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "uvloop" else real(name, *rest)
    )
    assert loop_factory("auto") is None
    with pytest.raises(RuntimeError, match="WORKER_LOOP=uvloop"):
        loop_factory("uvloop")


def test_the_setting_defaults_to_auto_and_refuses_other_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings().loop == "auto"
    monkeypatch.setenv("WORKER_LOOP", "tokio")
    with pytest.raises(ValueError, match="loop"):
        WorkerSettings()
