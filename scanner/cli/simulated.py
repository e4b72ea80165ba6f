"""``--simulate``: the embedded simulator started for one scan, whichever engine runs it."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from scanner import ConfigError, ScanFailedError

if TYPE_CHECKING:
    from scanner.simulator import Simulator

__all__ = ["start_simulator"]

log = logging.getLogger("scanner.cli")


async def start_simulator(preset: str, regions: list[str] | str | None, stack: AsyncExitStack) -> Simulator:
    """The simulator of ``preset`` (``--simulate``), running until ``stack`` closes.

    A region it does not simulate is refused: the scan would send it to the real endpoint, with the
    simulator's keys.
    """
    from scanner.simulator import Simulator  # only when asked for: a real scan never loads it

    try:
        simulator = await stack.enter_async_context(Simulator(preset=preset))
    except OSError as exc:  # no loopback interface, or no free port on it
        raise ScanFailedError(
            f"cannot start the embedded simulator on 127.0.0.1 ({exc.strerror or exc}): "
            "check that the loopback interface is up, or scan a real account without --simulate"
        ) from exc
    endpoints = simulator.endpoints
    outside = [r for r in regions if r not in endpoints] if isinstance(regions, list) else []
    if outside:
        raise ConfigError(
            f"--regions: the simulated fleet ({preset}) has no {', '.join(outside)}; "
            f"it has {', '.join(endpoints)}"
        )
    log.info("simulator (%s) listening: %s", preset, ", ".join(endpoints.values()))
    return simulator
