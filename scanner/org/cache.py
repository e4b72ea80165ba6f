"""Per-account temporary credentials: assumed on first use, cached, refreshed before they expire.

::

    cache = RoleCredentialsCache(sts, clock=clock)    # sts: a scanner.org.sts.StsClient
    creds = await cache.get(target)             # AssumeRole the first time, then cached
    provider = cache.provider(target)           # a CredentialsProvider for that account
    cache.invalidate(target.account_id, creds)  # the server said InvalidSecurityToken.Expired

- **When**: an account's role is assumed when something first asks for it, not up front.
- **Refresh**: at ``min(refresh_margin, lifetime / 2)`` before the ``Expiration`` the server
  returned, the lifetime measured from our clock when the answer arrived (a server may grant
  less than ``DurationSeconds``; a lifetime our clock cannot make sense of, because it is not
  positive, is taken to be the duration asked for). While one task refreshes, the others keep
  using the current credentials as long as they are valid; only when there are none (the first
  assume, or they expired) do they wait, on one ``anyio.Event``: one AssumeRole per account at a
  time, and an account's refresh never holds up another account.
- **Failures**: a role that cannot be assumed (``AuthError``: ``EntityNotExist.Role``,
  ``NoPermission``; or ``BadRequestError``) fails that account for good: STS is not asked again
  for it. Anything else (throttled or 5xx after the retries, a network error) is remembered for
  ``failure_backoff`` seconds. Either way, credentials still valid keep being used until they
  expire (a role deleted mid-scan does not void the tokens already granted); after that, or
  when there are none, ``get`` raises a copy of the error.
- **Limits**: every AssumeRole goes through one ``anyio.CapacityLimiter`` (``max_in_flight``)
  and, if given, one rate limiter with the engine's contract (``acquire`` / ``on_success`` /
  ``on_error`` / ``on_throttle``): STS's quota (about 100/s) is one per calling account.
  Throttling and 5xx are retried (``retrier``, default ``SimpleRetry``).
- **Time**: only through the injected ``Clock`` (``monotonic`` for deadlines, ``wall`` to read
  the server's ``Expiration``), so tests drive it with ``scanner.testing.FakeClock``.
"""

from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

import anyio

from scanner.client.credentials import Credentials
from scanner.clock import Clock, SystemClock
from scanner.errors import (
    AuthError,
    BadRequestError,
    ConfigError,
    ScannerError,
    ServerError,
    ThrottledError,
    TransportError,
)
from scanner.org.accounts import AccountTarget
from scanner.org.sts import (
    DEFAULT_DURATION_SECONDS,
    DEFAULT_ROLE_SESSION_NAME,
    AssumeRoleRequest,
)
from scanner.validation import require_positive

__all__ = [
    "DEFAULT_FAILURE_BACKOFF",
    "DEFAULT_MAX_ASSUMES_IN_FLIGHT",
    "DEFAULT_ROLE_REFRESH_MARGIN",
    "MAX_RETRY_AFTER_S",
    "AccountCredentials",
    "AssumeRoleLimiter",
    "CacheStatistics",
    "Retrier",
    "RoleAssumer",
    "RoleCredentialsCache",
    "SimpleRetry",
]

logger = logging.getLogger("scanner.org.cache")

T = TypeVar("T")

#: Refresh this long before the server's Expiration (at most half the lifetime).
DEFAULT_ROLE_REFRESH_MARGIN: Final = 300.0
#: After a transient failure, wait this long before asking STS for that account again.
DEFAULT_FAILURE_BACKOFF: Final = 10.0
DEFAULT_MAX_ASSUMES_IN_FLIGHT: Final = 16
#: A server's retry-after hint is capped at this (issue 11; the engine's constant lives in
#: ``scanner.engine.config``, not imported here to keep this module below the engine).
MAX_RETRY_AFTER_S: Final = 60.0
#: Credentials are not handed out once they are this close to expiry (at most a tenth of the
#: lifetime): a request signed with them could arrive after it.
_EXPIRY_SLACK: Final = 10.0


class AssumeRoleLimiter(Protocol):
    """The engine's per-scope limiter contract (``scanner.engine.pacing``)."""

    async def acquire(self) -> float: ...
    def on_success(self, sent_at: float) -> None: ...
    def on_error(self, sent_at: float) -> None: ...
    def on_throttle(self, sent_at: float, retry_after_ms: int | None = None) -> None: ...


class RoleAssumer(Protocol):
    """What the cache needs of STS (``StsClient``; tests substitute fakes)."""

    async def assume_role(self, request: AssumeRoleRequest) -> Credentials: ...


class Retrier(Protocol):
    """Runs ``attempt`` with retries (the engine's ``Retrier.call`` contract)."""

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T: ...


class SimpleRetry:
    """Retries throttling, 5xx and network errors: ``max_attempts`` in all, exponential backoff
    from ``base_delay`` to ``max_delay`` with full jitter (``rng``), or the server's retry-after
    hint when it gave one (capped at ``MAX_RETRY_AFTER_S``). Sleeps on ``clock``."""

    RETRYABLE: Final = (ThrottledError, ServerError, TransportError)

    def __init__(
        self,
        *,
        clock: Clock,
        rng: random.Random | None = None,
        max_attempts: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 20.0,
    ) -> None:
        require_positive("max_attempts", max_attempts, integer=True)
        if not 0 <= base_delay <= max_delay:
            raise ConfigError("delays must satisfy 0 <= base_delay <= max_delay")
        self._clock = clock
        self._rng = rng or random.Random()
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.retries = 0

    def delay(self, attempt: int, exc: BaseException) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        hint = getattr(exc, "retry_after_ms", None)
        if isinstance(hint, int) and hint > 0:
            return min(float(hint) / 1000.0, MAX_RETRY_AFTER_S)
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling * self._rng.random()

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        for number in range(1, self.max_attempts + 1):
            try:
                return await attempt()
            except self.RETRYABLE as exc:
                if number >= self.max_attempts:
                    exc.add_note(f"gave up after {number} attempts")
                    raise
                self.retries += 1
                await self._clock.sleep(self.delay(number, exc))
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class CacheStatistics:
    """``assume_role_calls``: AssumeRole requests sent (retries included); ``assumed``: per
    account, the credentials obtained (the first, then each refresh); ``refreshes``: the sum of
    those beyond each account's first; ``failed_accounts``: accounts failed for good."""

    assume_role_calls: int
    refreshes: int
    assumed: dict[str, int]
    failed_accounts: tuple[str, ...]


class _Entry:
    __slots__ = ("assumed", "creds", "expires_at", "failure", "failure_until", "flight", "refresh_at")

    def __init__(self) -> None:
        self.creds: Credentials | None = None
        self.refresh_at = -math.inf  # monotonic
        self.expires_at = -math.inf  # monotonic, minus the slack
        self.flight: anyio.Event | None = None
        self.failure: ScannerError | None = None
        self.failure_until = -math.inf
        self.assumed = 0


class RoleCredentialsCache:
    """Assumed-role credentials per account; see the module docstring."""

    def __init__(
        self,
        sts: RoleAssumer,
        *,
        clock: Clock | None = None,
        role_session_name: str = DEFAULT_ROLE_SESSION_NAME,
        duration_seconds: int = DEFAULT_DURATION_SECONDS,
        refresh_margin: float = DEFAULT_ROLE_REFRESH_MARGIN,
        failure_backoff: float = DEFAULT_FAILURE_BACKOFF,
        max_in_flight: int = DEFAULT_MAX_ASSUMES_IN_FLIGHT,
        limiter: AssumeRoleLimiter | None = None,
        retrier: Retrier | None = None,
    ) -> None:
        if not refresh_margin >= 0 or not failure_backoff >= 0:
            raise ConfigError("refresh_margin and failure_backoff must be >= 0")
        require_positive("max_in_flight", max_in_flight, integer=True)
        # Validated now, so that a bad flag fails before the first account is touched.
        AssumeRoleRequest(
            role_arn="acs:ram::1:role/x",
            role_session_name=role_session_name,
            duration_seconds=duration_seconds,
        )
        self._sts = sts
        self._clock: Clock = clock or SystemClock()
        self.role_session_name = role_session_name
        self.duration_seconds = duration_seconds
        self.refresh_margin = refresh_margin
        self.failure_backoff = failure_backoff
        self._slots = anyio.CapacityLimiter(max_in_flight)
        self._limiter = limiter
        self._retrier: Retrier = retrier or SimpleRetry(clock=self._clock)
        self._entries: dict[str, _Entry] = {}
        self._calls = 0

    # --- public --------------------------------------------------------------------------------

    async def get(self, target: AccountTarget) -> Credentials:
        """Valid credentials for ``target``'s account; assumes its role when needed."""
        entry = self._entries.get(target.account_id)
        if entry is None:
            entry = self._entries[target.account_id] = _Entry()
        while True:
            now = self._clock.monotonic()
            creds = entry.creds
            if creds is not None and now < entry.refresh_at:
                return creds
            usable = creds is not None and now < entry.expires_at
            if entry.failure is not None and now < entry.failure_until:
                if usable:
                    assert creds is not None
                    return creds
                raise copy.copy(entry.failure)
            if entry.flight is not None:
                if usable:
                    assert creds is not None
                    return creds  # still valid: do not wait for the refresh in flight
                await entry.flight.wait()
                continue
            return await self._refresh(target, entry)

    def provider(self, target: AccountTarget) -> AccountCredentials:
        """A ``CredentialsProvider`` for one account, backed by this cache."""
        return AccountCredentials(self, target)

    def invalidate(self, account_id: str, credentials: Credentials) -> bool:
        """Forget ``credentials`` (refused by a server as expired), so the next ``get`` assumes
        the role again. False if they had already been replaced (just ``get`` the new ones)."""
        entry = self._entries.get(account_id)
        if entry is None or entry.creds is not credentials:
            return False
        entry.refresh_at = entry.expires_at = -math.inf
        return True

    def statistics(self) -> CacheStatistics:
        assumed = {account: entry.assumed for account, entry in self._entries.items() if entry.assumed}
        return CacheStatistics(
            assume_role_calls=self._calls,
            refreshes=sum(max(0, count - 1) for count in assumed.values()),
            assumed=assumed,
            failed_accounts=tuple(
                account
                for account, entry in self._entries.items()
                if entry.failure is not None and entry.failure_until == math.inf
            ),
        )

    # --- one refresh -----------------------------------------------------------------------------

    async def _refresh(self, target: AccountTarget, entry: _Entry) -> Credentials:
        flight = entry.flight = anyio.Event()
        old = entry.creds
        try:
            request = AssumeRoleRequest(
                role_arn=target.role_arn,
                role_session_name=self.role_session_name,
                duration_seconds=self.duration_seconds,
                external_id=target.external_id,
            )
            try:
                fresh = await self._retrier.call(lambda: self._assume_once(request))
            except ScannerError as exc:
                permanent = isinstance(exc, AuthError | BadRequestError | ConfigError)
                entry.failure = exc
                entry.failure_until = (
                    math.inf if permanent else self._clock.monotonic() + self.failure_backoff
                )
                if old is not None and self._clock.monotonic() < entry.expires_at:
                    logger.warning(
                        "refreshing the credentials of account %s failed; still using the current ones: %s",
                        target.account_id,
                        exc,
                    )
                    return old
                raise
            self._store(entry, fresh)
            logger.debug("assumed %s: %r", target.role_arn, fresh)
            return fresh
        finally:
            entry.flight = None
            flight.set()

    def _store(self, entry: _Entry, fresh: Credentials) -> None:
        now = self._clock.monotonic()
        lifetime = (fresh.expiration or 0.0) - self._clock.wall().timestamp()
        if lifetime <= 0:
            logger.warning(
                "STS granted credentials that expire before now by our clock; check the local clock "
                "(NTP). Treating them as valid for the %d s asked for",
                self.duration_seconds,
            )
            lifetime = float(self.duration_seconds)
        lifetime = min(lifetime, float(self.duration_seconds))
        entry.creds = fresh
        entry.refresh_at = now + lifetime - min(self.refresh_margin, lifetime / 2)
        entry.expires_at = now + lifetime - min(_EXPIRY_SLACK, lifetime / 10)
        entry.failure = None
        entry.failure_until = -math.inf
        entry.assumed += 1

    async def _assume_once(self, request: AssumeRoleRequest) -> Credentials:
        async with self._slots:
            limiter = self._limiter
            sent_at = await limiter.acquire() if limiter is not None else 0.0
            self._calls += 1
            try:
                creds = await self._sts.assume_role(request)
            except ThrottledError as exc:
                if limiter is not None:
                    limiter.on_throttle(sent_at, exc.retry_after_ms)
                raise
            except BaseException:
                if limiter is not None:
                    limiter.on_error(sent_at)
                raise
            if limiter is not None:
                limiter.on_success(sent_at)
            return creds

    def __repr__(self) -> str:
        return f"RoleCredentialsCache(accounts={len(self._entries)}, assume_role_calls={self._calls})"


class AccountCredentials:
    """One account's view of a ``RoleCredentialsCache``: a ``CredentialsProvider``."""

    __slots__ = ("_cache", "target")

    def __init__(self, cache: RoleCredentialsCache, target: AccountTarget) -> None:
        self._cache = cache
        self.target = target

    async def get_credentials(self) -> Credentials:
        return await self._cache.get(self.target)

    def invalidate(self, credentials: Credentials) -> bool:
        return self._cache.invalidate(self.target.account_id, credentials)

    def __repr__(self) -> str:
        return f"AccountCredentials(account_id={self.target.account_id!r})"
