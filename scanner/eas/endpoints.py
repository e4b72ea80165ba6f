"""Where each region's EAS API lives: public or VPC endpoints, or per-region overrides.

Unlike the SDK's 15-region map, every region id resolves (``pai-eas.{region}.aliyuncs.com``), so a
region Alibaba opens tomorrow works today. Plain ``http`` is refused except to loopback addresses
(a simulator, a local proxy) unless the caller explicitly allows it: signed requests carry an STS
token and must not cross a network in the clear.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

from scanner.errors import ConfigError

__all__ = ["Endpoint", "EndpointResolver", "EndpointType", "default_base_url", "validate_region"]

_REGION_ID = re.compile(r"[a-z]{2}(?:-[a-z0-9]+)+")

_TEMPLATES: Final = {
    "public": "https://pai-eas.{region}.aliyuncs.com",
    "vpc": "https://pai-eas-manage-vpc.{region}.aliyuncs.com",
}


class EndpointType(StrEnum):
    PUBLIC = "public"
    VPC = "vpc"


def validate_region(region: str) -> str:
    if not isinstance(region, str) or not _REGION_ID.fullmatch(region):
        raise ConfigError(
            f"invalid region id {region!r}: expected something like cn-shanghai or ap-southeast-1"
        )
    return region


def default_base_url(region: str, endpoint_type: EndpointType | str = EndpointType.PUBLIC) -> str:
    kind = EndpointType(endpoint_type)
    return _TEMPLATES[kind.value].format(region=validate_region(region))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A region's base URL, split the way the client needs it."""

    region: str
    base_url: str  # scheme://host[:port], no trailing slash
    host: str  # the Host header, with :port when the URL has one (it is signed)
    is_tls: bool


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def parse_base_url(region: str, url: str, *, allow_insecure_http: bool = False) -> Endpoint:
    """Validate a base URL for ``region`` and split it into an ``Endpoint``."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"endpoint for {region} must be an http(s) URL like https://host[:port], got {url!r}"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"endpoint for {region} must be a base URL without a path or query, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"endpoint for {region} has an invalid port: {url!r}") from None
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"refusing plain http to {parts.hostname} for {region}: use https, or a loopback "
            "address, or allow insecure http explicitly"
        )
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = f"{host}:{port}" if port is not None else host
    return Endpoint(
        region=region,
        base_url=f"{parts.scheme}://{netloc}",
        host=netloc,
        is_tls=parts.scheme == "https",
    )


class EndpointResolver:
    """Region id -> ``Endpoint``: an override if one is given, else the public or VPC default."""

    def __init__(
        self,
        overrides: Mapping[str, str] | None = None,
        *,
        endpoint_type: EndpointType | str = EndpointType.PUBLIC,
        allow_insecure_http: bool = False,
    ) -> None:
        try:
            self.endpoint_type = EndpointType(endpoint_type)
        except ValueError:
            raise ConfigError(f"endpoint type must be 'public' or 'vpc', got {endpoint_type!r}") from None
        self._allow_insecure_http = allow_insecure_http
        self._cache: dict[str, Endpoint] = {}
        for region, url in (overrides or {}).items():
            validate_region(region)
            self._cache[region] = parse_base_url(region, url, allow_insecure_http=allow_insecure_http)
        self.overridden_regions: tuple[str, ...] = tuple(self._cache)

    def resolve(self, region: str) -> Endpoint:
        endpoint = self._cache.get(region)
        if endpoint is None:
            endpoint = parse_base_url(region, default_base_url(region, self.endpoint_type))
            self._cache[region] = endpoint
        return endpoint

    def __repr__(self) -> str:
        return (
            f"EndpointResolver(type={self.endpoint_type.value!r}, "
            f"overrides={list(self.overridden_regions)!r})"
        )
