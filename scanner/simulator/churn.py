"""Churn: instances starting, stopping and restarting, services created and deleted, over time.

Each kind of event is a Poisson process at its configured rate (events per second, fleet-wide),
on simulator time. Event times and targets come from a seeded ``random.Random`` and depend only on
the rates and on earlier events, never on when the simulator happens to look: ``advance_to(t)``
applies every event due up to ``t``, so one call to ``advance_to(10)`` and ten calls a second
apart leave the same fleet. The simulator calls it on every request and ground-truth query.

Targets are chosen uniformly: a random live service, then a random live instance of it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Final

from scanner.errors import ConfigError
from scanner.simulator.fleet import Fleet
from scanner.simulator.model import PENDING, RUNNING, Service

__all__ = ["ChurnEngine", "ChurnRates"]

_TRIES: Final = 8  # random picks before an event finds nothing to act on and is skipped


@dataclass(frozen=True, slots=True)
class ChurnRates:
    """Events per second, across the whole fleet. All zero (the default): a still fleet."""

    instance_starts: float = 0.0
    instance_stops: float = 0.0
    instance_restarts: float = 0.0
    service_creates: float = 0.0
    service_deletes: float = 0.0
    #: A created service starts with 1 to this many instances.
    max_new_service_instances: int = 5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"churn rate {f.name} must be a finite number >= 0, got {value!r}")
        if self.max_new_service_instances < 1:
            raise ConfigError("max_new_service_instances must be >= 1")

    @staticmethod
    def kinds() -> tuple[str, str, str, str, str]:
        """The event kinds, in the order of ``rates()``."""
        return (
            "instance_starts",
            "instance_stops",
            "instance_restarts",
            "service_creates",
            "service_deletes",
        )

    def rates(self) -> tuple[float, float, float, float, float]:
        return (
            self.instance_starts,
            self.instance_stops,
            self.instance_restarts,
            self.service_creates,
            self.service_deletes,
        )


class ChurnEngine:
    """Applies churn events to a ``Fleet`` as simulator time passes.

    ``wall_epoch(t)`` maps a simulator time to Unix seconds (start times of new instances).
    """

    def __init__(self, fleet: Fleet, rng: random.Random, wall_epoch: Callable[[float], int]) -> None:
        self._fleet = fleet
        self._rng = rng
        self._wall_epoch = wall_epoch
        self._rates = ChurnRates()
        self._next = [math.inf] * 5
        self._events = [0] * 5

    @property
    def events(self) -> dict[str, int]:
        """Events applied so far, per kind (those that found no target are not counted)."""
        return dict(zip(ChurnRates.kinds(), self._events, strict=True))

    @property
    def rates(self) -> ChurnRates:
        return self._rates

    @property
    def next_event(self) -> float:
        return min(self._next)

    def set_rates(self, rates: ChurnRates, now: float) -> None:
        """New rates from ``now`` on (events due before ``now`` are applied first)."""
        self.advance_to(now)
        self._rates = rates
        for kind, rate in enumerate(rates.rates()):
            self._next[kind] = now + self._rng.expovariate(rate) if rate > 0 else math.inf

    def advance_to(self, t: float) -> int:
        """Apply every event due at or before ``t``; return how many were applied."""
        applied = 0
        nxt = self._next
        while True:
            due = min(nxt)
            if due > t:
                break
            kind = nxt.index(due)  # ties: the lower kind first, deterministically
            self._apply(kind, due)
            applied += 1
            nxt[kind] = due + self._rng.expovariate(self._rates.rates()[kind])
        return applied

    # --- events ---------------------------------------------------------------------------------

    def _pick_service(self, accept: Callable[[Service], bool]) -> Service | None:
        live = self._fleet.live_services()
        if not live:
            return None
        for _ in range(_TRIES):
            service = live[self._rng.randrange(len(live))]
            if accept(service):
                return service
        return None

    def _apply(self, kind: int, t: float) -> None:
        rng = self._rng
        fleet = self._fleet
        wall = self._wall_epoch(t)
        if kind == 0:  # an instance starts
            service = self._pick_service(lambda s: s.status != "Stopped")
            if service is None:
                return
            fleet.start_instance(service, t, wall, RUNNING if rng.random() < 0.85 else PENDING)
        elif kind in (1, 2):  # an instance stops / restarts
            service = self._pick_service(lambda s: s.live_count > 0)
            if service is None:
                return
            index = service.index_at(rng.randrange(service.live_count))
            if kind == 1:
                fleet.stop_instance(service, index, t)
            else:
                fleet.restart_instance(service, index, wall)
        elif kind == 3:  # a service is created
            region = rng.choice(fleet.region_ids())
            count = rng.randint(1, self._rates.max_new_service_instances)
            statuses = [RUNNING if rng.random() < 0.85 else PENDING for _ in range(count)]
            fleet.create_service(region, t, wall, count, statuses)
        else:  # a service is deleted
            service = self._pick_service(lambda s: True)
            if service is None:
                return
            fleet.delete_service(service, t)
        self._events[kind] += 1
