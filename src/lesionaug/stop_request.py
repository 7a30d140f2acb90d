"""SIGINT during a long run: finish what is in flight, then stop cleanly.

The first Ctrl-C sets a flag the generation loop checks between batches, so pairs being written
are completed and recorded and the output stays resumable. A second Ctrl-C raises
KeyboardInterrupt at once (files are still written atomically, so nothing is half-written).
"""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """Context manager that turns SIGINT into a flag (only in the main thread; elsewhere it is inert)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        self._installed = False

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
