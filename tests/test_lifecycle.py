"""The one open/closed state machine, and the four objects that use it."""

from __future__ import annotations

import pytest

from scanner.client.api import EasClient
from scanner.client.credentials import StaticCredentials
from scanner.client.transport import AiohttpTransport
from scanner.errors import UsageError
from scanner.lifecycle import Lifecycle, State
from scanner.scanner import Scanner
from scanner.simulator import Simulator


def test_opened_once_then_closed_for_good() -> None:
    life = Lifecycle("widget")
    with pytest.raises(UsageError, match=r"^The widget is not open: use `async with Widget\(\)`\.$"):
        life.require_open("use `async with Widget()`")
    life.check_openable()
    life.opened()
    assert life.is_open
    life.require_open("unused")
    with pytest.raises(UsageError, match=r"^Cannot open a widget more than once\.$"):
        life.check_openable()
    life.closed()
    assert (life.is_open, life.state) == (False, State.CLOSED)
    with pytest.raises(UsageError, match=r"^The widget has been closed\.$"):
        life.require_open("unused")
    with pytest.raises(UsageError, match=r"^Cannot reopen a widget, once it has been closed\.$"):
        life.check_openable()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "make",
    [
        AiohttpTransport,
        lambda: EasClient(credentials=StaticCredentials("id-1234", "secret-1234")),
        Scanner,
        lambda: Simulator(preset="small"),
    ],
    ids=["transport", "client", "Scanner", "simulator"],
)
async def test_none_of_them_can_be_reopened(make: object) -> None:
    thing = make()  # type: ignore[operator]
    async with thing:
        with pytest.raises(UsageError, match="more than once"):
            await thing.__aenter__()
    with pytest.raises(UsageError, match=r"Cannot reopen .*, once it has been closed"):
        await thing.__aenter__()
