"""``Simulator``: the embedded EAS, one loopback port per region, all on the caller's event loop.

::

    async with Simulator(preset="small", seed=7) as sim:
        sim.endpoints          # {"cn-hangzhou": "http://127.0.0.1:41234", ...}
        sim.access_key_id, sim.access_key_secret
        ...                    # point a client (or the official SDK) at the endpoints
        sim.counters()         # frozen snapshot
        sim.existed_throughout(t0, t1)   # ground truth, in simulator seconds (sim.now())

Time: ``clock`` (default ``SystemClock``) drives simulator time: churn, latency, the rate limit
and the per-second counters; tests pass ``scanner.testing.FakeClock`` and advance it. Signature
dates are checked against ``auth_clock`` (default: the real clock), since real clients sign with
real time whatever the simulator pretends.
"""

from __future__ import annotations

import dataclasses
import random
import socket
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web

from scanner.clock import Clock, SystemClock
from scanner.errors import ConfigError, UsageError
from scanner.lifecycle import Lifecycle
from scanner.simulator.admin import AdminRoutes, DigestMode
from scanner.simulator.app import EasHandler, RequestIds
from scanner.simulator.auth import AccessKey, Authenticator
from scanner.simulator.cache import PageCache
from scanner.simulator.churn import ChurnEngine, ChurnRates
from scanner.simulator.counters import Counters, CountersSnapshot
from scanner.simulator.derive import epoch_of, mix64, token
from scanner.simulator.digest import Digest, DigestBuilder, content_hash, key_hash
from scanner.simulator.faults import FaultConfig, FaultInjector
from scanner.simulator.fleet import Fleet, InstanceKey
from scanner.simulator.pages import Pages
from scanner.simulator.spec import FleetSpec
from scanner.simulator.spec import preset as preset_spec
from scanner.simulator.throttle import ServerThrottle

__all__ = ["DEFAULT_PAGE_CACHE_BYTES", "Simulator"]

DEFAULT_PAGE_CACHE_BYTES: Final = 256 * 1024 * 1024
_BASE62: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _default_key(seed: int) -> tuple[str, str]:
    """A fixed AccessKey pair per seed, shaped like Alibaba's (``LTAI5t`` + 18, secret of 30)."""
    h = mix64(seed ^ 0xACCE55)
    return "LTAI5t" + token(h, 18, _BASE62), token(h ^ 0x5EC2E7, 30, _BASE62)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Simulator:
    """The embedded PAI-EAS simulator. See the module docstring; use it as ``async with``.

    Keyword arguments:

    - ``preset``: ``"small"``, ``"medium"`` or ``"large"``; or ``spec``: a custom ``FleetSpec``.
    - ``seed``: the fleet, the keys, the request ids, the fault and churn sequences derive from it.
    - ``host`` / ``base_port``: where to listen; region ``i`` gets ``base_port + i`` (0: ephemeral).
    - ``access_key_id`` / ``access_key_secret`` / ``security_token``: the main key (default: a
      fixed pair per seed, no STS token); ``extra_keys``: more accepted keys.
    - ``faults``, ``churn``: initial fault configuration and churn rates (change them at runtime).
    - ``clock`` (simulator time), ``auth_clock`` (signature dates): see the module docstring.
    - ``page_cache_bytes``: the bound of the rendered-page cache (0 disables it).
    """

    def __init__(
        self,
        *,
        preset: str = "small",
        spec: FleetSpec | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        base_port: int = 0,
        access_key_id: str | None = None,
        access_key_secret: str | None = None,
        security_token: str | None = None,
        extra_keys: Sequence[AccessKey] = (),
        faults: FaultConfig | None = None,
        churn: ChurnRates | None = None,
        clock: Clock | None = None,
        auth_clock: Clock | None = None,
        page_cache_bytes: int = DEFAULT_PAGE_CACHE_BYTES,
    ) -> None:
        if (access_key_id is None) != (access_key_secret is None):
            raise ConfigError("give both access_key_id and access_key_secret, or neither")
        if not 0 <= base_port <= 65535:
            raise ConfigError(f"base_port must be 0 (ephemeral) or a port number, got {base_port}")
        self.seed = seed
        self.spec = spec if spec is not None else preset_spec(preset)
        self.fleet = Fleet(self.spec, seed)
        self.host = host
        self.base_port = base_port
        if access_key_id is None or access_key_secret is None:
            access_key_id, access_key_secret = _default_key(seed)
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.security_token = security_token
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._auth_clock: Clock = auth_clock if auth_clock is not None else SystemClock()
        self._auth = Authenticator(
            [AccessKey(access_key_id, access_key_secret, security_token), *extra_keys], self._auth_clock.wall
        )
        self._cache = PageCache(page_cache_bytes)
        self._pages = Pages(self.fleet, self._cache)
        self._faults = FaultInjector(faults or FaultConfig(), random.Random(f"faults/{seed}"))
        self._limiter = ServerThrottle(self._clock.monotonic)
        self._configure_limiter(self._faults.config)
        self._initial_churn = churn or ChurnRates()
        self._churn = ChurnEngine(self.fleet, random.Random(f"churn/{seed}"), self._wall_epoch)
        self._counters = Counters(self._clock.monotonic)
        self._forbidden: set[str] = set()
        self._request_ids = RequestIds(seed)
        self._t0 = 0.0
        self._wall0 = 0
        self._lifecycle = Lifecycle("simulator")
        self._runner: web.ServerRunner | None = None
        self._sockets: list[socket.socket] = []
        self.endpoints: dict[str, str] = {}

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._lifecycle.check_openable()
        self._t0 = self._clock.monotonic()
        self._wall0 = epoch_of(self._clock.wall())
        self._churn.set_rates(self._initial_churn, 0.0)
        regions = self.fleet.region_ids()
        try:
            for index in range(len(regions)):
                self._sockets.append(self._bind(self.base_port + index if self.base_port else 0))
            ports = {
                sock.getsockname()[1]: region for sock, region in zip(self._sockets, regions, strict=True)
            }
            handler = EasHandler(
                pages=self._pages,
                auth=self._auth,
                faults=self._faults,
                limiter=self._limiter,
                counters=self._counters,
                clock=self._clock,
                advance=self._advance,
                port_regions=ports,
                forbidden=self._forbidden,
                request_ids=self._request_ids,
                admin=AdminRoutes(self),
            )
            # access_log=None: no per-request logging work on the hot path.
            self._runner = web.ServerRunner(web.Server(handler, access_log=None))
            await self._runner.setup()
            for sock in self._sockets:
                await web.SockSite(self._runner, sock).start()
        except BaseException:
            await self._shutdown()
            raise
        self.endpoints = {region: _url(self.host, port) for port, region in ports.items()}
        self._lifecycle.opened()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._shutdown()

    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        return sock

    async def _shutdown(self) -> None:
        self._lifecycle.closed()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    def _require_open(self) -> None:
        if not self._lifecycle.is_open:
            raise UsageError(f"the simulator is {self._lifecycle.state.value}; use it inside `async with`")

    # --- time -----------------------------------------------------------------------------------

    def now(self) -> float:
        """Simulator time: seconds on ``clock`` since the simulator started."""
        self._require_open()
        return self._clock.monotonic() - self._t0

    def _wall_epoch(self, t: float) -> int:
        return self._wall0 + int(t)

    def _advance(self) -> None:
        self._churn.advance_to(self._clock.monotonic() - self._t0)

    # --- facts ----------------------------------------------------------------------------------

    @property
    def regions(self) -> list[str]:
        return self.fleet.region_ids()

    def counters(self) -> CountersSnapshot:
        """A frozen snapshot of the server-side counters."""
        cache = self._cache
        return self._counters.snapshot(
            cache_hits=cache.hits,
            cache_misses=cache.misses,
            cache_bytes=cache.bytes,
            cache_entries=len(cache),
            churn=self._churn.events,
        )

    def reset_counters(self) -> None:
        self._counters.reset()
        self._cache.hits = self._cache.misses = 0

    def info(self) -> dict[str, Any]:
        self._advance()
        return {
            "endpoints": dict(self.endpoints),
            "access_key_id": self.access_key_id,
            "regions": self.regions,
            "services": self.fleet.service_count,
            "instances": self.fleet.instance_count,
            "seed": self.seed,
            "now": self.now(),
        }

    # --- ground truth ---------------------------------------------------------------------------

    def expected_records(self) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
        """``(region, service_name, instance, service)`` for every instance alive now, as the API
        would show them (the fleet is brought up to now first)."""
        self._require_open()
        self._advance()
        return self.fleet.expected_records()

    def current_keys(self) -> set[InstanceKey]:
        self._require_open()
        self._advance()
        return set(self.fleet.current_keys())

    def existed_throughout(self, t0: float, t1: float) -> set[InstanceKey]:
        """Instances that existed at every moment of ``[t0, t1]`` (simulator seconds, t1 <= now)."""
        self._require_open()
        self._advance()
        return self.fleet.existed_throughout(t0, t1)

    def existed_at_any(self, t0: float, t1: float) -> set[InstanceKey]:
        """Instances that existed at some moment of ``[t0, t1]`` (simulator seconds, t1 <= now)."""
        self._require_open()
        self._advance()
        return self.fleet.existed_at_any(t0, t1)

    def fleet_digest(
        self,
        mode: DigestMode = "current",
        t0: float | None = None,
        t1: float | None = None,
        *,
        content: bool = False,
    ) -> Digest:
        """The ``scanner.simulator.digest`` digest of the current fleet, or of an interval's ground
        truth (``mode`` "throughout" / "at_any", which need ``t0`` and ``t1``). ``content``: hash
        the whole instance objects (current fleet only)."""
        self._require_open()
        self._advance()
        builder = DigestBuilder()
        if mode == "current":
            if content:
                for region, service_name, instance, _ in self.fleet.expected_records():
                    builder.add_hash(content_hash(region, service_name, instance))
            else:
                for key in self.fleet.current_keys():
                    builder.add_hash(key_hash(*key))
            return builder.result()
        if t0 is None or t1 is None:
            raise ConfigError(f"mode {mode!r} needs t0 and t1")
        if content:
            raise ConfigError("content digests are only for the current fleet")
        keys = (
            self.fleet.existed_throughout(t0, t1)
            if mode == "throughout"
            else self.fleet.existed_at_any(t0, t1)
        )
        for key in keys:
            builder.add_hash(key_hash(*key))
        return builder.result()

    # --- runtime switches -----------------------------------------------------------------------

    @property
    def faults(self) -> FaultConfig:
        return self._faults.config

    def set_faults(self, config: FaultConfig | None = None, /, **changes: Any) -> FaultConfig:
        """Replace the fault configuration (``config``), or change some of its fields (``changes``).

        ``sim.set_faults(FaultConfig())`` switches every fault off. Returns the new configuration.
        """
        base = config if config is not None else self._faults.config
        try:
            new = dataclasses.replace(base, **changes) if changes else base
        except TypeError as exc:
            raise ConfigError(str(exc)) from None
        old = self._faults.config
        self._faults.config = new
        if (new.rate_limit, new.burst) != (old.rate_limit, old.burst):
            self._configure_limiter(new)
        return new

    def _configure_limiter(self, config: FaultConfig) -> None:
        self._limiter.configure(config.rate_limit, config.burst)

    @property
    def churn(self) -> ChurnRates:
        """The churn rates in force (or to be, before the simulator starts)."""
        return self._churn.rates if self._lifecycle.is_open else self._initial_churn

    def set_churn(self, rates: ChurnRates) -> None:
        """New churn rates from now on."""
        if self._lifecycle.is_open:
            self._churn.set_rates(rates, self.now())
        else:
            self._initial_churn = rates

    def forbid_region(self, region: str, forbidden: bool = True) -> None:
        """Answer every request to ``region`` with 403 ``Forbidden.RAM`` (or stop doing so)."""
        if region not in self.fleet.regions:
            raise ConfigError(f"unknown region {region!r}; the simulator has {', '.join(self.regions)}")
        if forbidden:
            self._forbidden.add(region)
        else:
            self._forbidden.discard(region)

    def prewarm(self) -> int:
        """Fill the page cache with the pages a default scan asks for (see ``Pages.prewarm``).

        Returns the number of pages rendered; stops when the cache is full.
        """
        return self._pages.prewarm()

    def add_key(self, key: AccessKey) -> None:
        """Accept one more AccessKey (e.g. an STS triple) from now on."""
        self._auth.add(key)

    def __repr__(self) -> str:
        return (
            f"Simulator(state={self._lifecycle.state.value}, regions={len(self.fleet.regions)}, "
            f"services={self.fleet.service_count}, seed={self.seed})"
        )
