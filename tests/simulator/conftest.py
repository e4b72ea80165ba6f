"""Fixtures for the simulator tests: a small simulator per test, and raw clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio

from scanner.simulator import Simulator
from tests.simulator.helpers import RawClient


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(preset="small", seed=1) as simulator:
        yield simulator


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest_asyncio.fixture
async def raw(sim: Simulator, session: aiohttp.ClientSession) -> RawClient:
    return RawClient(session, sim)
