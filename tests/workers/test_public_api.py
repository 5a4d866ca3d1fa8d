"""What handler authors import: ``from workers import ...``, nothing deeper."""

from __future__ import annotations

import workers


def test_the_public_surface() -> None:
    assert sorted(workers.__all__) == [
        "Cancellation",
        "HandlerError",
        "HandlerRegistry",
        "Identity",
        "Request",
        "Response",
        "ResponseHeaders",
        "TransientError",
    ]
    assert all(getattr(workers, name) is not None for name in workers.__all__)
