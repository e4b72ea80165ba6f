"""Shared test helpers: the official SDK pointed at a simulator, and a raw signed aiohttp client."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from alibabacloud_eas20210701.client import Client
from alibabacloud_tea_openapi.models import Config
from yarl import URL

from scanner.eas.params import API_VERSION, service_instances_path, services_path
from scanner.eas.signing import EMPTY_BODY_SHA256, canonical_query, format_date, sign
from scanner.simulator import Simulator

_nonces = itertools.count()


def sdk_client(
    sim: Simulator,
    region: str,
    *,
    access_key_id: str | None = None,
    access_key_secret: str | None = None,
    security_token: str | None = None,
    **config: Any,
) -> Client:
    """The official SDK client for one region of ``sim`` (HTTP, explicit endpoint)."""
    return Client(
        Config(
            access_key_id=access_key_id or sim.access_key_id,
            access_key_secret=access_key_secret or sim.access_key_secret,
            security_token=security_token,
            endpoint=sim.endpoints[region].removeprefix("http://"),
            protocol="HTTP",
            region_id=region,
            **config,
        )
    )


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class RawClient:
    """Signs requests with ``scanner.eas.signing.sign`` and sends them with aiohttp, untouched.

    Cheaper than the SDK, and lets a test tamper with a request after signing it.
    """

    session: aiohttp.ClientSession
    sim: Simulator
    access_key_id: str | None = None
    access_key_secret: str | None = None
    security_token: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    def signed(
        self, region: str, action: str, path: str, params: Mapping[str, str], *, nonce: str | None = None
    ) -> tuple[URL, dict[str, str]]:
        base = self.sim.endpoints[region]
        headers = {
            "host": base.removeprefix("http://"),
            "x-acs-action": action,
            "x-acs-version": API_VERSION,
            "x-acs-date": format_date(datetime.now(UTC)),
            "x-acs-signature-nonce": nonce or f"test-nonce-{next(_nonces)}",
            "x-acs-content-sha256": EMPTY_BODY_SHA256,
            "accept": "application/json",
        }
        if self.security_token is not None:
            headers["x-acs-security-token"] = self.security_token
        headers["Authorization"] = sign(
            method="GET",
            canonical_uri=path,
            params=params,
            headers=headers,
            access_key_id=self.access_key_id or self.sim.access_key_id,
            access_key_secret=self.access_key_secret or self.sim.access_key_secret,
        )
        query = canonical_query(params)
        url = URL(f"{base}{path}?{query}" if query else f"{base}{path}", encoded=True)
        return url, {**headers, **self.extra_headers}

    async def send(self, url: URL, headers: Mapping[str, str]) -> Reply:
        async with self.session.get(url, headers=headers) as response:
            return Reply(response.status, dict(response.headers), await response.read())

    async def call(
        self,
        region: str,
        action: str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        nonce: str | None = None,
    ) -> Reply:
        url, headers = self.signed(region, action, path, params or {}, nonce=nonce)
        return await self.send(url, headers)

    async def regions(self, region: str) -> Reply:
        return await self.call(region, "DescribeRegions", "/api/v2/regions")

    async def services(self, region: str, params: Mapping[str, str] | None = None) -> Reply:
        return await self.call(region, "ListServices", services_path(), params)

    async def instances(
        self,
        region: str,
        service: str,
        params: Mapping[str, str] | None = None,
        *,
        cluster: str | None = None,
    ) -> Reply:
        path = service_instances_path(cluster or region, service)
        return await self.call(region, "ListServiceInstances", path, params)

    async def all_instances(
        self, region: str, service: str, params: Mapping[str, str] | None = None
    ) -> list[Any]:
        """Every instance a filtered listing returns, page by page (checking TotalCount adds up)."""
        out: list[Any] = []
        for page in itertools.count(1):
            reply = await self.instances(
                region, service, {**(params or {}), "PageNumber": str(page), "PageSize": "100"}
            )
            assert reply.status == 200, reply.body
            body = reply.json()
            out += body["Instances"]
            if page * 100 >= body["TotalCount"]:
                assert len(out) == body["TotalCount"]
                return out
        raise AssertionError("unreachable")

    async def all_services(self, region: str, params: Mapping[str, str] | None = None) -> list[Any]:
        out: list[Any] = []
        for page in itertools.count(1):
            reply = await self.services(
                region, {**(params or {}), "PageNumber": str(page), "PageSize": "100"}
            )
            assert reply.status == 200, reply.body
            body = reply.json()
            out += body["Services"]
            if page * 100 >= body["TotalCount"]:
                assert len(out) == body["TotalCount"]
                return out
        raise AssertionError("unreachable")
