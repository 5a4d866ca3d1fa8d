"""Worker settings from the environment."""

from __future__ import annotations

import pydantic
import pytest

from workers.settings import WorkerSettings


def test_defaults() -> None:
    settings = WorkerSettings()
    assert settings.reply_topics == frozenset({"replies"})
    assert settings.request_topic == "requests"
    assert settings.dead_letter_topic == "requests.dlt"
    assert settings.metrics_port == 9090
    assert settings.buffer_limit == 4 * settings.concurrency


def test_comma_separated_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_REPLY_TOPICS", "replies, replies.eu")
    monkeypatch.setenv("WORKER_HANDLERS", "a:b,c:d")
    monkeypatch.setenv("WORKER_CONCURRENCY", "8")
    settings = WorkerSettings()
    assert settings.reply_topics == frozenset({"replies", "replies.eu"})
    assert settings.handlers == ("a:b", "c:d")
    assert settings.thread_count == 8


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_REPLY_TOPICS", "replies,no/slashes")
    with pytest.raises(pydantic.ValidationError, match="not a valid topic name"):
        WorkerSettings()
    monkeypatch.delenv("WORKER_REPLY_TOPICS")
    monkeypatch.setenv("WORKER_CONCURRENCY", "0")
    with pytest.raises(pydantic.ValidationError):
        WorkerSettings()
