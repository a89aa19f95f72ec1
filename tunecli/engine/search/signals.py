"""Ctrl-C and SIGTERM (what cluster schedulers send before killing) stop a search safely.

Inside a trial's training a signal interrupts at once (the trial is marked interrupted and
queued for retry); anywhere else, e.g. while Optuna writes a result, it only asks the run loop to
stop before the next trial, so no storage write is cut in half (SQLite would stay locked).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

__all__ = ["Interrupted", "StopSignals"]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: stop after marking the running trial; resume continues it."""


class StopSignals:
    """A context manager that owns SIGINT/SIGTERM while a search runs."""

    def __init__(self) -> None:
        self.requested = False
        self.training = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        def handler(signum: int, frame: Any) -> None:
            already = self.requested
            self.requested = True
            if self.training or already:
                self.training = False
                raise Interrupted(f"signal {signum}")

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread (some test runners)
                self.previous[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)

    def raise_if_requested(self) -> None:
        if self.requested:
            raise Interrupted("stop requested")

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Training: a signal interrupts at once."""
        self.raise_if_requested()
        self.training = True
        try:
            yield
        finally:
            self.training = False

    @contextlib.contextmanager
    def held(self, *, then_stop: bool = True) -> Iterator[None]:
        """A storage write during training: a signal waits for the write, then interrupts
        (``then_stop=False``: the write is part of stopping already)."""
        was, self.training = self.training, False
        try:
            yield
        finally:
            self.training = was
        if then_stop:
            self.raise_if_requested()
