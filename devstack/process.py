"""Child processes that never outlive the Python process that started them."""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for Popen: the kernel SIGKILLs the child when its parent dies.

    Runs in the child between fork and exec, so an interrupted or killed test run or
    ``make run`` leaves no broker, gateway or worker behind.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
