"""Every setting is an environment variable the README documents (the operability rule)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from gateway.access.settings import AccessSettings
from gateway.settings import GatewaySettings
from kafkarpc.connection import KafkaSettings
from workers.settings import WorkerSettings

README = (Path(__file__).parents[1] / "README.md").read_text()


def variables(settings: type[BaseSettings]) -> list[str]:
    """The environment variable of each field: its prefix and name, or its first alias."""
    prefix = settings.model_config.get("env_prefix", "")
    names = []
    for field, info in settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
            names.append(alias.choices[0])
        else:
            names.append(f"{prefix}{field}".upper())
    return names


@pytest.mark.parametrize("settings", [GatewaySettings, AccessSettings, WorkerSettings, KafkaSettings])
def test_every_setting_is_in_the_readme(settings: type[BaseSettings]) -> None:
    missing = [name for name in variables(settings) if f"| `{name}` |" not in README]
    assert not missing, f"not in README.md's settings tables: {missing}"
