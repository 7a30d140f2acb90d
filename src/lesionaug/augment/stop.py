"""SIGINT (or SIGTERM, as batch schedulers send at a time limit) during a long run: finish what is
in flight, then stop cleanly.

The first signal sets a flag the generation loop checks between batches, so pairs being written
are completed and recorded and the output stays resumable. A second one raises KeyboardInterrupt
at once (files are still written atomically, so nothing is half-written).
"""

from __future__ import annotations

import signal
import threading
from typing import Self


class StopRequest:
    """Context manager that turns SIGINT and SIGTERM into a flag (main thread only; elsewhere inert)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
