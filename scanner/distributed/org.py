"""Organisation scans on workers: each member account's credentials, by AssumeRole, in the worker.

``AssumedRoleSource`` is an ``AccountCredentialsSource`` (``scanner.distributed.runner``): each
worker opens its own STS client (over its own HTTP transport) and its own
``scanner.org.RoleCredentialsCache``, whose AssumeRole calls are paced to the worker's share of the
scan's AssumeRole rate (``WorkerSlot.assume_role_rate``; see ``runner`` for why a share and not a
cluster-wide actor). A worker assumes the role of an account when it first gets one of its units,
and keeps the credentials for that account's next units, refreshing them before they expire.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from scanner import CredentialsProvider, DefaultCredentials, RateLimit, Timeouts
from scanner.client.transport import AiohttpTransport
from scanner.clock import SystemClock
from scanner.distributed.runner import WorkerSlot
from scanner.engine.pacing import ClientRateLimiters
from scanner.org import (
    DEFAULT_ROLE_NAME,
    DEFAULT_ROLE_SESSION_NAME,
    STS,
    AccountTarget,
    RoleCredentialsCache,
    RpcClient,
    SimpleRetry,
    StsClient,
    role_arn,
)
from scanner.org.sts import DEFAULT_DURATION_SECONDS

__all__ = ["AssumedRoleSource"]


@dataclass(frozen=True, kw_only=True)
class AssumedRoleSource:
    """Member credentials by AssumeRole into ``acs:ram::<account>:role/<role_name>``.

    ``source``: a picklable zero-argument callable building the management account's credentials
    provider in the worker (default: ``DefaultCredentials(profile)`` of the worker's machine).
    ``sts_endpoint``: STS's base URL (default: the public one). Per account: ``role_arns`` (an
    accounts file's ``role_arn``; else ``role_name`` in the account) and ``external_ids`` (else
    ``external_id``). ``role_duration``: AssumeRole's ``DurationSeconds``.
    """

    source: Callable[[], CredentialsProvider] | None = None
    profile: str | None = None
    role_name: str = DEFAULT_ROLE_NAME
    role_session_name: str = DEFAULT_ROLE_SESSION_NAME
    role_duration: int = DEFAULT_DURATION_SECONDS
    role_arns: Mapping[str, str] = field(default_factory=dict)
    external_id: str | None = field(default=None, repr=False)
    external_ids: Mapping[str, str] = field(default_factory=dict, repr=False)
    sts_endpoint: str | None = None
    allow_insecure_http: bool = False
    timeouts: Timeouts | None = None

    @contextlib.asynccontextmanager
    async def open(self, slot: WorkerSlot) -> AsyncIterator[Callable[[str], CredentialsProvider]]:
        clock = SystemClock()
        async with AiohttpTransport(timeouts=self.timeouts) as transport:
            rpc = RpcClient(
                STS, transport, endpoint=self.sts_endpoint, allow_insecure_http=self.allow_insecure_http
            )
            source = self.source() if self.source is not None else DefaultCredentials(self.profile)
            # This worker's share of the management account's one AssumeRole quota.
            limiter = ClientRateLimiters(RateLimit(requests_per_second=slot.assume_role_rate), clock).get(
                "sts", StsClient.ACTION
            )
            cache = RoleCredentialsCache(
                StsClient(rpc, source=source),
                clock=clock,
                role_session_name=self.role_session_name,
                duration_seconds=self.role_duration,
                limiter=limiter,
                retrier=SimpleRetry(clock=clock),  # AssumeRole throttled or 5xx: retried, as locally
            )

            def provider(account: str) -> CredentialsProvider:
                target = AccountTarget(
                    account_id=account,
                    role_arn=self.role_arns.get(account) or role_arn(account, self.role_name),
                    external_id=self.external_ids.get(account, self.external_id),
                )
                return cache.provider(target)

            yield provider
