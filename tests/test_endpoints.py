from __future__ import annotations

import pytest

from scanner.eas.endpoints import EndpointResolver, default_base_url
from scanner.errors import ConfigError


@pytest.mark.parametrize("region", ["cn-shanghai", "cn-wulanchabu", "ap-northeast-2", "me-east-1"])
def test_every_region_resolves_not_only_the_sdk_map(region: str) -> None:
    public = EndpointResolver().resolve(region)
    assert public.base_url == f"https://pai-eas.{region}.aliyuncs.com"
    assert public.host == f"pai-eas.{region}.aliyuncs.com"
    vpc = EndpointResolver(endpoint_type="vpc").resolve(region)
    assert vpc.base_url == f"https://pai-eas-manage-vpc.{region}.aliyuncs.com"


def test_overrides_win_and_keep_the_port_in_the_host_header() -> None:
    resolver = EndpointResolver({"cn-shanghai": "http://127.0.0.1:8001/"})
    endpoint = resolver.resolve("cn-shanghai")
    assert (endpoint.base_url, endpoint.host, endpoint.is_tls) == (
        "http://127.0.0.1:8001", "127.0.0.1:8001", False,
    )  # fmt: skip
    assert resolver.resolve("cn-beijing").base_url == "https://pai-eas.cn-beijing.aliyuncs.com"
    assert resolver.overridden_regions == ("cn-shanghai",)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9"])
def test_plain_http_is_fine_to_loopback(url: str) -> None:
    assert EndpointResolver({"cn-shanghai": url}).resolve("cn-shanghai").is_tls is False


def test_plain_http_elsewhere_is_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="refusing plain http"):
        EndpointResolver({"cn-shanghai": "http://10.0.0.5:80"})
    allowed = EndpointResolver({"cn-shanghai": "http://10.0.0.5:80"}, allow_insecure_http=True)
    assert allowed.resolve("cn-shanghai").host == "10.0.0.5:80"


@pytest.mark.parametrize(
    "url", ["ftp://x", "127.0.0.1:80", "https://host/path", "https://host?x=1", "http://h:99999"]
)
def test_malformed_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="cn-shanghai"):
        EndpointResolver({"cn-shanghai": url})


@pytest.mark.parametrize("region", ["", "Shanghai", "cn_shanghai", "cn-shanghai/../x", "x"])
def test_invalid_region_ids_are_refused(region: str) -> None:
    with pytest.raises(ConfigError, match="region"):
        default_base_url(region)


def test_unknown_endpoint_type() -> None:
    with pytest.raises(ConfigError, match="public"):
        EndpointResolver(endpoint_type="internal")
