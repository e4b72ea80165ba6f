"""What the engine needs from the EAS client: three calls. Tests substitute fakes for it."""

from __future__ import annotations

from typing import Protocol

from scanner.eas.models import Page, Region
from scanner.eas.params import InstanceQuery, ServiceQuery

__all__ = ["EasApi"]


class EasApi(Protocol):
    async def describe_regions(self, region: str = ...) -> list[Region]: ...

    async def list_services(
        self,
        region: str,
        query: ServiceQuery | None = None,
        *,
        page_number: int = 1,
        page_size: int = 100,
    ) -> Page: ...

    async def list_service_instances(
        self,
        region: str,
        service: str,
        query: InstanceQuery | None = None,
        *,
        page_number: int = 1,
        page_size: int = 100,
    ) -> Page: ...
