"""The per-account credential cache: when it assumes, refreshes, waits, fails and throttles.

A fake STS and ``FakeClock`` make every timing exact; the last tests run the real STS client over
loopback (tokens of 20 s, refreshed several times) and the engine's limiter if it is importable.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from datetime import timedelta
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from scanner.client.credentials import Credentials
from scanner.engine.config import RateLimit
from scanner.engine.pacing import ClientRateLimiters
from scanner.errors import AuthError, ConfigError, NetworkError, ServerError, ThrottledError
from scanner.org.accounts import AccountTarget
from scanner.org.cache import MAX_RETRY_AFTER_S, RoleCredentialsCache, SimpleRetry
from scanner.org.rpc import STS, RpcClient
from scanner.org.sts import AssumeRoleRequest, role_arn
from scanner.testing import FakeClock
from tests.org.conftest import Org

A = AccountTarget(account_id="1111111111111111", role_arn=role_arn("1111111111111111", "Reader"))
B = AccountTarget(account_id="2222222222222222", role_arn=role_arn("2222222222222222", "Reader"),
                  external_id="ext-for-b")  # fmt: skip


def target(number: int) -> AccountTarget:
    return AccountTarget(account_id=str(number), role_arn=role_arn(str(number), "Reader"))


class FakeSts:
    """Grants ``ttl`` seconds (default: what was asked); fails with ``failures`` first; can be held."""

    def __init__(self, clock: FakeClock, ttl: float | None = None) -> None:
        self.clock = clock
        self.ttl = ttl
        self.failures: list[Exception] = []
        self.calls: Counter[str] = Counter()
        self.requests: list[AssumeRoleRequest] = []
        self.gate: anyio.Event | None = None
        #: The accounts the gate holds (None: all).
        self.gated: set[str] | None = None
        self.in_flight = 0
        self.peak = 0

    async def assume_role(self, request: AssumeRoleRequest) -> Credentials:
        account = request.account_id
        self.calls[account] += 1
        self.requests.append(request)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.gate is not None and (self.gated is None or account in self.gated):
                await self.gate.wait()
            await anyio.lowlevel.checkpoint()
            if self.failures:
                raise self.failures.pop(0)
            ttl = self.ttl if self.ttl is not None else request.duration_seconds
            serial = self.calls[account]
            return Credentials(
                access_key_id=f"STS.{account}.{serial}",
                access_key_secret=f"secret-{serial}",
                security_token=f"token-{serial}",
                expiration=(self.clock.wall() + timedelta(seconds=ttl)).timestamp(),
                provider=f"assume-role:{account}",
            )
        finally:
            self.in_flight -= 1


def make(ttl: float | None = None, **kwargs: object) -> tuple[RoleCredentialsCache, FakeSts, FakeClock]:
    clock = FakeClock()
    sts = FakeSts(clock, ttl)
    kwargs.setdefault("retrier", SimpleRetry(clock=clock, rng=random.Random(0)))
    return RoleCredentialsCache(sts, clock=clock, **kwargs), sts, clock  # type: ignore[arg-type]


def serial(creds: Credentials) -> int:
    return int(creds.access_key_id.rsplit(".", 1)[1])


@pytest.mark.asyncio
async def test_assumed_on_first_use_then_cached() -> None:
    cache, sts, _clock = make()
    assert sts.calls == {}
    first = await cache.get(A)
    assert await cache.get(A) is first
    assert sts.calls == {A.account_id: 1}
    sent = sts.requests[0]
    assert (sent.role_arn, sent.role_session_name, sent.duration_seconds, sent.external_id) == (
        A.role_arn, "eas-fleet-scanner", 3600, None,
    )  # fmt: skip
    await cache.get(B)
    assert sts.requests[1].external_id == "ext-for-b"


@pytest.mark.asyncio
async def test_refreshed_the_margin_before_expiry() -> None:
    cache, _sts, clock = make(refresh_margin=300)
    first = await cache.get(A)
    clock.advance(3299.0)
    assert await cache.get(A) is first
    clock.advance(1.0)
    second = await cache.get(A)
    assert serial(second) == 2
    stats = cache.statistics()
    assert (stats.assume_role_calls, stats.refreshes, stats.assumed) == (2, 1, {A.account_id: 2})


@pytest.mark.asyncio
async def test_a_lifetime_shorter_than_asked_is_refreshed_at_half_of_it() -> None:
    cache, sts, clock = make(ttl=20)
    await cache.get(A)
    clock.advance(9.9)
    await cache.get(A)
    assert sts.calls[A.account_id] == 1
    clock.advance(0.1)
    await cache.get(A)
    assert sts.calls[A.account_id] == 2
    # Over 200 s of steady use, one AssumeRole per 10 s: the first plus 20 refreshes.
    for _ in range(200):
        clock.advance(1.0)
        await cache.get(A)
    assert cache.statistics().assumed[A.account_id] == 22


@pytest.mark.asyncio
async def test_an_expiration_before_now_by_our_clock_counts_as_the_duration_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache, _sts, clock = make(ttl=-600)
    with caplog.at_level(logging.WARNING, logger="scanner.org.cache"):
        first = await cache.get(A)
    assert "check the local clock" in caplog.text
    clock.advance(3000)
    assert await cache.get(A) is first


@pytest.mark.asyncio
async def test_concurrent_first_users_wait_on_one_assume() -> None:
    cache, sts, _clock = make()
    sts.gate = anyio.Event()
    got: list[Credentials] = []

    async def use() -> None:
        got.append(await cache.get(A))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(use)
        await anyio.wait_all_tasks_blocked()
        assert sts.calls[A.account_id] == 1
        sts.gate.set()
    assert len(got) == 50
    assert len({id(c) for c in got}) == 1


@pytest.mark.asyncio
async def test_while_one_task_refreshes_the_others_keep_the_valid_credentials() -> None:
    cache, sts, clock = make(refresh_margin=300)
    first = await cache.get(A)
    clock.advance(3400)  # inside the margin, still valid
    sts.gate = anyio.Event()
    sts.gated = {A.account_id}
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.get, A)
        await anyio.wait_all_tasks_blocked()
        assert sts.calls[A.account_id] == 2  # the refresh is in flight ...
        with anyio.fail_after(1):
            assert await cache.get(A) is first  # ... and nobody waits for it
        assert await cache.get(B) is not None  # nor does another account
        sts.gate.set()
    assert serial(await cache.get(A)) == 2
    assert sts.calls[A.account_id] == 2


@pytest.mark.asyncio
async def test_once_expired_the_others_wait_for_the_refresh() -> None:
    cache, sts, clock = make(refresh_margin=300)
    await cache.get(A)
    clock.advance(3595)  # within the expiry slack: not handed out any more
    sts.gate = anyio.Event()
    got: list[Credentials] = []

    async def use() -> None:
        got.append(await cache.get(A))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(use)
        await anyio.wait_all_tasks_blocked()
        assert got == []
        sts.gate.set()
    assert [serial(c) for c in got] == [2] * 5
    assert sts.calls[A.account_id] == 2


@pytest.mark.asyncio
async def test_a_role_that_cannot_be_assumed_fails_that_account_for_good() -> None:
    cache, sts, clock = make()
    sts.failures.append(AuthError("no such role", action="AssumeRole", code="EntityNotExist.Role"))
    errors: list[AuthError] = []

    async def use() -> None:
        try:
            await cache.get(A)
        except AuthError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(use)
    clock.advance(10_000)
    with pytest.raises(AuthError) as again:
        await cache.get(A)
    assert again.value.code == "EntityNotExist.Role"
    assert len(errors) == 10
    assert {e.code for e in errors} == {"EntityNotExist.Role"}
    assert sts.calls[A.account_id] == 1
    assert cache.statistics().failed_accounts == (A.account_id,)
    assert serial(await cache.get(B)) == 1  # other accounts are not affected


@pytest.mark.asyncio
async def test_a_role_deleted_mid_scan_leaves_the_granted_credentials_until_they_expire() -> None:
    cache, sts, clock = make(refresh_margin=300)
    first = await cache.get(A)
    clock.advance(3400)
    sts.failures.append(AuthError("gone", code="EntityNotExist.Role"))
    assert await cache.get(A) is first
    assert await cache.get(A) is first
    assert sts.calls[A.account_id] == 2
    clock.advance(200)
    with pytest.raises(AuthError):
        await cache.get(A)
    assert sts.calls[A.account_id] == 2
    assert cache.statistics().failed_accounts == (A.account_id,)


@pytest.mark.asyncio
async def test_throttling_and_5xx_are_retried_with_backoff() -> None:
    cache, sts, clock = make()
    sts.failures += [ThrottledError("slow down", code="Throttling", retry_after_ms=1500), ServerError("oops")]
    creds = await cache.get(A)
    assert serial(creds) == 3
    assert clock.sleeps[0] == 1.5  # the server's hint
    assert 0 <= clock.sleeps[1] <= 1.0  # attempt 2: full jitter up to 2 * 0.5 s
    assert cache.statistics().assume_role_calls == 3


@pytest.mark.asyncio
async def test_a_transient_failure_is_remembered_for_the_backoff_then_retried() -> None:
    cache, sts, clock = make(failure_backoff=10)
    sts.failures += [NetworkError("reset")] * 4
    with pytest.raises(NetworkError) as caught:
        await cache.get(A)
    assert "gave up after 4 attempts" in caught.value.__notes__
    calls = sts.calls[A.account_id]
    with pytest.raises(NetworkError):
        await cache.get(A)
    assert sts.calls[A.account_id] == calls
    clock.advance(10)
    assert serial(await cache.get(A)) == calls + 1
    assert cache.statistics().failed_accounts == ()


@pytest.mark.asyncio
async def test_a_failed_refresh_keeps_the_valid_credentials(caplog: pytest.LogCaptureFixture) -> None:
    cache, sts, clock = make(refresh_margin=300, failure_backoff=30)
    first = await cache.get(A)
    clock.advance(3400)
    sts.failures += [ServerError("down")] * 4
    with caplog.at_level(logging.WARNING, logger="scanner.org.cache"):
        assert await cache.get(A) is first
    assert "still using the current ones" in caplog.text
    assert "secret-1" not in caplog.text
    assert "token-1" not in caplog.text


@pytest.mark.asyncio
async def test_invalidate_after_the_server_refused_the_token() -> None:
    cache, _sts, _clock = make()
    first = await cache.get(A)
    provider = cache.provider(A)
    assert provider.invalidate(first) is True
    second = await provider.get_credentials()
    assert serial(second) == 2
    assert provider.invalidate(first) is False  # already replaced: nothing to do
    assert await cache.get(A) is second
    assert cache.invalidate("999", first) is False


@pytest.mark.asyncio
async def test_a_cancelled_refresh_lets_a_waiter_take_over() -> None:
    cache, sts, _clock = make()
    sts.gate = anyio.Event()
    result: list[Credentials] = []
    first_scope = anyio.CancelScope()

    async def first() -> None:
        with first_scope:
            await cache.get(A)

    async def second() -> None:
        result.append(await cache.get(A))

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(second)
        await anyio.wait_all_tasks_blocked()
        assert sts.calls[A.account_id] == 1  # the second waits on the first's refresh
        first_scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert sts.calls[A.account_id] == 2  # ... and takes over when it is cancelled
        sts.gate.set()
    assert [serial(c) for c in result] == [2]


class RecordingLimiter:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.events: list[tuple[str, object]] = []

    async def acquire(self) -> float:
        self.events.append(("acquire", None))
        return self.clock.monotonic()

    def on_success(self, sent_at: float) -> None:
        self.events.append(("success", sent_at))

    def on_error(self, sent_at: float) -> None:
        self.events.append(("error", sent_at))

    def on_throttle(self, sent_at: float, retry_after_ms: int | None = None) -> None:
        self.events.append(("throttle", retry_after_ms))


@pytest.mark.asyncio
async def test_every_assume_goes_through_the_shared_limiter() -> None:
    clock = FakeClock()
    limiter = RecordingLimiter(clock)
    cache, sts, _ = make(limiter=limiter)
    sts.clock = clock = cache._clock  # type: ignore[assignment]
    sts.failures += [ThrottledError("slow", code="Throttling", retry_after_ms=200), ServerError("x")]
    await cache.get(A)
    await cache.get(B)
    assert [e[0] for e in limiter.events] == ["acquire", "throttle", "acquire", "error", "acquire", "success",
                                              "acquire", "success"]  # fmt: skip
    assert limiter.events[1] == ("throttle", 200)


@pytest.mark.asyncio
async def test_assumes_in_flight_are_capped_across_accounts() -> None:
    cache, sts, _clock = make(max_in_flight=3)
    sts.gate = anyio.Event()
    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(cache.get, target(i))
        await anyio.wait_all_tasks_blocked()
        assert sts.in_flight == 3
        sts.gate.set()
    assert sts.peak == 3
    assert cache.statistics().assume_role_calls == 10


def test_simple_retry_delays() -> None:
    class One(random.Random):
        def random(self) -> float:
            return 1.0

    retry = SimpleRetry(clock=FakeClock(), rng=One(), max_attempts=8, base_delay=0.5, max_delay=4)
    assert [retry.delay(n, ServerError("x")) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]
    assert retry.delay(1, ThrottledError("x", retry_after_ms=3_600_000)) == MAX_RETRY_AFTER_S
    with pytest.raises(ConfigError):
        SimpleRetry(clock=FakeClock(), max_attempts=0)


@pytest.mark.asyncio
async def test_auth_errors_are_not_retried() -> None:
    cache, sts, clock = make()
    sts.failures.append(AuthError("denied", code="NoPermission"))
    with pytest.raises(AuthError):
        await cache.get(A)
    assert sts.calls[A.account_id] == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "kwargs",
    [{"role_session_name": "x"}, {"duration_seconds": 60}, {"max_in_flight": 0}, {"refresh_margin": -1}],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        make(**kwargs)


def test_reprs() -> None:
    cache, _, _ = make()
    assert repr(cache) == "RoleCredentialsCache(accounts=0, assume_role_calls=0)"
    assert "ext-for-b" not in repr(cache.provider(B)) + repr(B)


# --- over loopback -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tokens_of_20_seconds_refreshed_over_a_long_scan(org: Org) -> None:
    org.server.ttl_seconds = 20
    cache = RoleCredentialsCache(org.sts, clock=org.clock)
    targets = [target(3000000000000000 + i) for i in range(5)]
    rpc = RpcClient(STS, org.http, endpoint=org.base_url, clock=org.clock)
    for _ in range(13):  # 65 s of scanning, each account called every 5 s
        for each in targets:
            creds = await cache.get(each)
            await rpc.call("GetCallerIdentity", {}, creds)  # the token is accepted: never expired
        org.clock.advance(5)
    stats = cache.statistics()
    for each in targets:
        # Refreshed every 10 s (half the lifetime): at 10, 20, ..., 60 s.
        assert org.server.assumed[each.account_id] == stats.assumed[each.account_id] == 7
    assert stats.refreshes == 30
    assert stats.assume_role_calls == 35


def engine_limiter(clock: FakeClock) -> Any:
    """The engine's limiter for one scope, as the scheduler's registry makes it."""
    return ClientRateLimiters(RateLimit(), clock).get("sts", "AssumeRole")


@pytest.mark.asyncio
async def test_with_the_engines_limiter(org: Org) -> None:
    cache = RoleCredentialsCache(org.sts, clock=org.clock, limiter=engine_limiter(org.clock))
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(cache.get, target(4000000000000000 + i))
    assert cache.statistics().assume_role_calls == 20
    assert len(org.server.assumed) == 20
