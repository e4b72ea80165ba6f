"""Opened once, closed for good: the lifecycle of everything used as ``async with X(...) as x``.

The transport, the client, the Scanner and the simulator each hold resources (a session, a task
group, sockets) that are created on entry and released on exit, and none can be reopened. They
share this one state machine and httpx's messages for misuse. Imports nothing from ``scanner``
but ``errors``, so every layer can use it.
"""

from __future__ import annotations

import enum

from scanner.errors import UsageError

__all__ = ["Lifecycle", "State"]


class State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class Lifecycle:
    """UNOPENED → OPENED → CLOSED, each at most once. ``name`` is what the messages call the object.

    ::

        async def __aenter__(self):
            self._lifecycle.check_openable()    # UsageError if open or closed already
            ...                                 # acquire; on failure, still UNOPENED (or closed())
            self._lifecycle.opened()
    """

    __slots__ = ("_name", "state")

    def __init__(self, name: str) -> None:
        self._name = name
        self.state = State.UNOPENED

    def check_openable(self) -> None:
        if self.state is State.OPENED:
            raise UsageError(f"Cannot open a {self._name} more than once.")
        if self.state is State.CLOSED:
            raise UsageError(f"Cannot reopen a {self._name}, once it has been closed.")

    def opened(self) -> None:
        self.state = State.OPENED

    def closed(self) -> None:
        self.state = State.CLOSED

    @property
    def is_open(self) -> bool:
        return self.state is State.OPENED

    def require_open(self, how: str) -> None:
        """UsageError unless open: ``how`` says how to open it (e.g. "use `async with X() as x`")."""
        if self.state is State.UNOPENED:
            raise UsageError(f"The {self._name} is not open: {how}.")
        if self.state is State.CLOSED:
            raise UsageError(f"The {self._name} has been closed.")

    def __repr__(self) -> str:
        return f"Lifecycle({self._name!r}, {self.state.value})"
