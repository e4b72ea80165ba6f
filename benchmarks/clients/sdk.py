"""The official SDK (``alibabacloud-eas20210701``) pointed at the simulator, used as documented."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from alibabacloud_eas20210701.client import Client
from alibabacloud_tea_openapi.models import Config

from scanner.records import SERVICE_SUMMARY_FIELDS

__all__ = ["PAGE_SIZE", "Calls", "clients", "record_of", "service_summary"]

PAGE_SIZE = 100

T = TypeVar("T")


class Calls:
    """Counts the client's own calls, throttled ones and other failures."""

    def __init__(self) -> None:
        self.requests = self.throttled = self.failed = 0

    def _failed(self, exc: Exception) -> None:
        if "Throttling" in str(getattr(exc, "code", "")):
            self.throttled += 1
        else:
            self.failed += 1

    async def wait(self, call: Awaitable[T]) -> T:
        self.requests += 1
        try:
            return await call
        except Exception as exc:
            self._failed(exc)
            raise

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        self.requests += 1
        try:
            return fn(*args)
        except Exception as exc:
            self._failed(exc)
            raise

    def to_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "throttled": self.throttled, "failed_requests": self.failed}


def clients(job: dict[str, Any]) -> dict[str, Client]:
    """One SDK client per region (the SDK binds a client to one endpoint)."""
    return {
        region: Client(
            Config(
                access_key_id=job["access_key_id"],
                access_key_secret=job["access_key_secret"],
                endpoint=url.removeprefix("http://"),
                protocol="HTTP",
                region_id=region,
            )
        )
        for region, url in job["endpoints"].items()
    }


def service_summary(service: Any) -> dict[str, Any]:
    data = service.to_map()
    return {name: data[name] for name in SERVICE_SUMMARY_FIELDS if name in data}


def record_of(instance: Any, region: str, name: str, summary: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = instance.to_map()
    record["ClusterId"] = region
    record["ServiceName"] = name
    record["Service"] = summary
    return record
