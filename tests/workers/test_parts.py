"""Small pieces: dead-letter headers."""

from __future__ import annotations

from kafkarpc.protocol import DEAD_LETTER_DETAIL, DEAD_LETTER_REASON, DEAD_LETTER_SOURCE
from workers.deadletter import Reason, dead_letter


def test_dead_letters_keep_the_record_and_drop_forged_dead_letter_headers() -> None:
    headers: list[tuple[str, bytes | None]] = [
        ("x-a", b"1"),
        ("rpc-dead-letter-reason", b"forged"),
        ("x-a", None),
    ]
    letter = dead_letter(b"k", b"v", headers, reason=Reason.UNKNOWN_METHOD, source="requests/1/2", detail="d")
    assert (letter.key, letter.value) == (b"k", b"v")
    assert letter.headers == [
        ("x-a", b"1"),
        ("x-a", None),
        (DEAD_LETTER_REASON, b"unknown-method"),
        (DEAD_LETTER_SOURCE, b"requests/1/2"),
        (DEAD_LETTER_DETAIL, b"d"),
    ]
