"""Fixtures of the org tests: a loopback STS + ResourceManager server and clients of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest_asyncio

from scanner.client.credentials import StaticCredentials
from scanner.client.transport import AiohttpTransport
from scanner.org.resourcemanager import ResourceManagerClient
from scanner.org.rpc import RESOURCE_MANAGER, STS, RpcClient
from scanner.org.sts import StsClient
from scanner.testing import FakeClock
from tests.org.server import MANAGEMENT_KEY_ID, MANAGEMENT_SECRET, OrgServer, serve_org

#: Our clock and the server's: the same fake wall time, so signatures and expirations agree.
START = datetime(2026, 12, 6, 2, 0, 0, tzinfo=UTC)


@dataclass
class Org:
    server: OrgServer
    clock: FakeClock
    base_url: str
    http: AiohttpTransport
    sts: StsClient
    rm: ResourceManagerClient


@pytest_asyncio.fixture
async def org() -> AsyncIterator[Org]:
    clock = FakeClock(wall_start=START)
    server = OrgServer(now=clock.wall)
    source = StaticCredentials(MANAGEMENT_KEY_ID, MANAGEMENT_SECRET)
    async with serve_org(server) as base_url, AiohttpTransport() as http:
        yield Org(
            server=server,
            clock=clock,
            base_url=base_url,
            http=http,
            sts=StsClient(RpcClient(STS, http, endpoint=base_url, clock=clock), source=source),
            rm=ResourceManagerClient(
                RpcClient(RESOURCE_MANAGER, http, endpoint=base_url, clock=clock), source=source
            ),
        )
