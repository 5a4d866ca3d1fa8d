"""The handler examples of README.md and docs/WORKERS.md run: each registers, and describes itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workers import HandlerRegistry

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(document: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / document).read_text(), flags=re.S)


@pytest.mark.parametrize(
    ("document", "methods"),
    [
        ("README.md", {"greetings.create", "greetings.get"}),
        ("docs/WORKERS.md", {"orders.create", "orders.get", "report"}),
    ],
)
def test_a_documented_handler_module_registers_and_describes_its_methods(
    document: str, methods: set[str]
) -> None:
    (block,) = [block for block in python_blocks(document) if "HandlerRegistry()" in block]
    namespace: dict[str, object] = {"__name__": f"example_{Path(document).stem.lower()}"}
    exec(compile(block, document, "exec"), namespace)
    registry = namespace["registry"]
    assert isinstance(registry, HandlerRegistry)
    assert {registration.method for registration in registry} == methods
    for registration in registry:
        registration.describe()  # the catalog entry it would announce
