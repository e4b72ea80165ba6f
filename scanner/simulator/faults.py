"""Faults on demand: what to break, how often, and the seeded decision for each request.

Every random choice comes from one ``random.Random`` owned by the simulator, drawn in request
order, so the same seed and the same sequence of requests give the same faults. A rate of 0 never
draws a fault; a configuration with no random fault and no latency draws nothing at all.

Rate limiting (``rate_limit``, ``burst``) is not random: it is a token bucket per (region, action)
(``scanner.simulator.throttle``), answered the way Alibaba does: HTTP 429 ``Throttling`` or HTTP
400 ``Throttling.User`` (``throttle_status``), with ``x-acs-retry-after`` in milliseconds when
``retry_after_ms`` is set (``"auto"``: the time until the bucket has a token again).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any, Final, Literal

from scanner.errors import ConfigError

__all__ = ["NO_FAULT", "FaultConfig", "FaultDecision", "FaultInjector", "FaultKind"]


class FaultKind(StrEnum):
    """The kinds of fault the counters report. The first five are drawn at random per request."""

    INTERNAL_ERROR = "internal_error"  # HTTP 500 InternalError
    SERVICE_UNAVAILABLE = "service_unavailable"  # HTTP 503 ServiceUnavailable
    RESET = "reset"  # headers and part of the body, then the connection is reset
    TRUNCATED = "truncated"  # HTTP 200, a well-framed body cut short (invalid JSON)
    NOT_JSON = "not_json"  # HTTP 200, an HTML error page instead of JSON
    SLOW = "slow"  # an extra delay (``slow_ms``), meant to exceed a client's timeout
    THROTTLED = "throttled"  # over the rate limit
    FORBIDDEN = "forbidden"  # the region is switched to Forbidden.RAM


#: The per-request kinds, in the order their rates are laid out on [0, 1).
_EXCLUSIVE: Final = (
    FaultKind.INTERNAL_ERROR,
    FaultKind.SERVICE_UNAVAILABLE,
    FaultKind.RESET,
    FaultKind.TRUNCATED,
    FaultKind.NOT_JSON,
)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """What the simulator breaks. Rates are probabilities per request, in [0, 1].

    - ``latency_ms`` + uniform ``[0, jitter_ms)``: added to every request in scope.
    - ``internal_error_rate``, ``unavailable_rate``, ``reset_rate``, ``truncate_rate``,
      ``not_json_rate``: mutually exclusive per request (their sum must be <= 1).
    - ``slow_rate`` / ``slow_ms``: an extra delay on that fraction of requests (independent).
    - ``rate_limit``: requests per second per (region, action), ``burst`` tokens; None: no limit.
    - ``regions`` / ``actions``: limit latency and random faults to these (None: all).
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    internal_error_rate: float = 0.0
    unavailable_rate: float = 0.0
    reset_rate: float = 0.0
    truncate_rate: float = 0.0
    not_json_rate: float = 0.0
    slow_rate: float = 0.0
    slow_ms: float = 0.0
    rate_limit: float | None = None
    burst: int = 5
    throttle_status: Literal[429, 400] = 429
    retry_after_ms: int | Literal["auto"] | None = None
    regions: frozenset[str] | None = None
    actions: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for name in ("latency_ms", "jitter_ms", "slow_ms"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in (*self._exclusive_names(), "slow_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {value!r}")
        if sum(getattr(self, name) for name in self._exclusive_names()) > 1.0 + 1e-9:
            raise ConfigError("the error, reset, truncate and not-JSON rates must add up to at most 1")
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise ConfigError(f"rate_limit must be > 0 requests/second, got {self.rate_limit!r}")
        if self.burst < 1:
            raise ConfigError(f"burst must be >= 1, got {self.burst!r}")
        if self.throttle_status not in (429, 400):
            raise ConfigError(f"throttle_status must be 429 or 400, got {self.throttle_status!r}")
        if self.retry_after_ms is not None and self.retry_after_ms != "auto":
            if isinstance(self.retry_after_ms, bool) or not isinstance(self.retry_after_ms, int):
                raise ConfigError(
                    f"retry_after_ms must be an integer, 'auto' or None, got {self.retry_after_ms!r}"
                )
            if self.retry_after_ms < 1:
                raise ConfigError(f"retry_after_ms must be >= 1, got {self.retry_after_ms!r}")
        for name in ("regions", "actions"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, frozenset):
                object.__setattr__(self, name, frozenset(value))

    @staticmethod
    def _exclusive_names() -> tuple[str, ...]:
        return ("internal_error_rate", "unavailable_rate", "reset_rate", "truncate_rate", "not_json_rate")

    @property
    def draws(self) -> bool:
        """Whether requests need a random draw at all (any random fault or jitter configured)."""
        return bool(
            self.jitter_ms or self.slow_rate or any(getattr(self, name) for name in self._exclusive_names())
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("regions", "actions"):
            if out[name] is not None:
                out[name] = sorted(out[name])
        return out

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> FaultConfig:
        """Build from JSON-like data (the admin route); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        values = dict(raw)
        for name in ("regions", "actions"):
            if values.get(name) is not None:
                values[name] = frozenset(values[name])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What to do to one request: wait ``delay`` seconds, then maybe break it (``kind``).

    ``cut`` in (0, 1) is where to cut the body for RESET and TRUNCATED.
    """

    delay: float = 0.0
    kind: FaultKind | None = None
    slow: bool = False
    cut: float = 0.5


NO_FAULT: Final = FaultDecision()


class FaultInjector:
    """Draws a ``FaultDecision`` per request from a seeded ``random.Random``."""

    __slots__ = ("_bounds", "_config", "_rng")

    def __init__(self, config: FaultConfig, rng: random.Random) -> None:
        self._rng = rng
        self._config = config
        self._bounds: tuple[tuple[float, FaultKind], ...] = ()
        self.config = config

    @property
    def config(self) -> FaultConfig:
        return self._config

    @config.setter
    def config(self, config: FaultConfig) -> None:
        self._config = config
        bounds = []
        total = 0.0
        for kind, name in zip(_EXCLUSIVE, FaultConfig._exclusive_names(), strict=True):
            rate = getattr(config, name)
            if rate > 0:
                total += rate
                bounds.append((total, kind))
        self._bounds = tuple(bounds)

    def decide(self, region: str, action: str) -> FaultDecision:
        c = self._config
        if (c.regions is not None and region not in c.regions) or (
            c.actions is not None and action not in c.actions
        ):
            return NO_FAULT
        if not c.draws:
            return FaultDecision(delay=c.latency_ms / 1000) if c.latency_ms else NO_FAULT
        rng = self._rng
        # Always the same draws in the same order, whatever happens, so that a sequence of
        # requests maps to a sequence of decisions independently of which faults come out.
        u_kind, u_slow, u_jitter, u_cut = rng.random(), rng.random(), rng.random(), rng.random()
        kind = None
        for bound, candidate in self._bounds:
            if u_kind < bound:
                kind = candidate
                break
        slow = u_slow < c.slow_rate
        delay_ms = c.latency_ms + u_jitter * c.jitter_ms + (c.slow_ms if slow else 0.0)
        return FaultDecision(delay=delay_ms / 1000, kind=kind, slow=slow, cut=0.1 + 0.8 * u_cut)
