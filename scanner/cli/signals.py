"""SIGINT and SIGTERM: a clean stop first, an immediate exit only at the third signal."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import select
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Final, NoReturn, Protocol

from scanner.cli.outcome import EXIT_INTERRUPTED
from scanner.output.progress import one_line

__all__ = ["Interrupts"]

log = logging.getLogger("scanner.cli")


class TemporaryFiles(Protocol):
    def temp_names(self) -> list[str]: ...


class Interrupts:
    """SIGINT and SIGTERM for the whole run, from the flags to the summary.

    The first signal asks for a clean stop: the scan ends, the output is committed (whole lines)
    and the summary written, and the run exits 130. A second one is absorbed (``timeout`` and many
    supervisors send two): the stop goes on. Only a third ends the process at once, with 130: the
    temporary files are removed, no summary is written.

    The handler only counts and wakes the event loop (``call_soon_threadsafe``, as asyncio's own
    Ctrl-C handler does); what it would say is logged later, from the loop or the next safe point.
    It must not write to ``sys.stderr``: it may have interrupted a write to that very buffer.
    """

    SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
    FORCE_AFTER: Final = 3

    def __init__(self) -> None:
        self.received: list[signal.Signals] = []
        self._reported = 0
        self._files: list[TemporaryFiles] = []
        self._wake: Callable[[], object] | None = None
        self._stop: Callable[[], None] | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """Handle the signals while the block runs (only the main thread can)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def track(self, files: TemporaryFiles) -> None:
        """On a forced exit, remove the temporary files ``files`` has at that moment."""
        self._files.append(files)

    @contextlib.contextmanager
    def stopping(self, stop: Callable[[], None]) -> Iterator[None]:
        """Run ``stop`` on the running event loop at the first signal (at once if one came already)."""
        loop = asyncio.get_running_loop()
        self._stop = stop
        self._wake = functools.partial(loop.call_soon_threadsafe, self._on_loop)
        try:
            if self.received:
                self._on_loop()
            yield
        finally:
            self._wake = self._stop = None

    def report(self) -> None:
        """Log the signals received since the last report (from a safe point, never the handler)."""
        for index in range(self._reported, len(self.received)):
            name = self.received[index].name
            if index == 0:
                log.warning("received %s: stopping", name)
            else:
                log.warning(
                    "received %s again: still stopping (a third signal stops at once, without a summary)",
                    name,
                )
        self._reported = len(self.received)

    def _on_loop(self) -> None:
        self.report()
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()

    def _handle(self, signum: int, frame: object) -> None:
        self.received.append(signal.Signals(signum))
        if len(self.received) >= self.FORCE_AFTER:
            self._force(signal.Signals(signum).name)
        wake = self._wake
        if wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                wake()

    def _force(self, name: str) -> NoReturn:
        left: list[str] = []
        for temp in [temp for files in self._files for temp in files.temp_names()]:
            try:
                os.unlink(temp)
            except FileNotFoundError:  # renamed into place a moment ago
                pass
            except OSError:
                left.append(temp)
        message = f"eas-scan: error: received {name} a third time: stopped at once, without a summary"
        if left:
            message += f"; temporary file(s) that could not be removed: {', '.join(left)}"
        with contextlib.suppress(OSError, ValueError):
            # Only if it cannot block: a stderr nobody reads must not hold up the exit.
            if select.select([], [2], [], 0)[1]:
                os.write(2, one_line(message).encode(errors="replace") + b"\n")
        os._exit(EXIT_INTERRUPTED)  # no cleanup handlers: they could block as the stop did
